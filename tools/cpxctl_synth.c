/* cpxctl synth — deterministic synthetic envelopes as JSON lines (docs/json.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/codec.h"
#include "cpx/json.h"
#include "cpx/synth.h"
#include "cpxctl.h"

static int synth_usage(void)
{
    fprintf(stderr, "usage: cpxctl synth --seed N --count N [--now MS] [--kind discovery|assessment|"
                    "referral|disposition|follow_up|release_notice|mixed] [--dummy-sign]\n");
    return CPXCTL_USAGE;
}

static int parse_i64(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end)
        return -1;
    *out = v;
    return 0;
}

static int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {
        {"seed", required_argument, 0, 's'}, {"count", required_argument, 0, 'c'},
        {"now", required_argument, 0, 'n'},  {"kind", required_argument, 0, 'k'},
        {"dummy-sign", no_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    long long seed = -1, count = -1, now = 0;
    const char *kind = "discovery";
    int dummy = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': if (parse_i64(optarg, &seed) || seed < 0) return synth_usage(); break;
        case 'c': if (parse_i64(optarg, &count) || count < 0) return synth_usage(); break;
        case 'n': if (parse_i64(optarg, &now) || now <= 0) return synth_usage(); break;
        case 'k': kind = optarg; break;
        case 'd': dummy = 1; break;
        default: return synth_usage();
        }
    }
    if (seed < 0 || count < 0 || optind != argc)
        return synth_usage();
    static const char *const kinds[] = {"discovery", "assessment", "referral", "disposition",
                                        "follow_up", "release_notice", "mixed"};
    int k = -1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(kind, kinds[i]))
            k = i;
    if (k < 0)
        return synth_usage();
    if (!now) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    cpx_synth_t *s = cpx_synth_new((uint64_t)seed);
    if (!s)
        return CPXCTL_ENV;
    uint8_t last_ref[16] = {0};
    const char *last_to = "CIVIL_AFFAIRS";
    char to_buf[40];
    int rc = CPXCTL_OK;
    for (long long i = 0; i < count; i++) {
        /* creation times spread over the hour before now, oldest first */
        int64_t created = now - (count - i) * (3600000LL / (count + 1));
        int which = k == 6 ? (int)(cpx_synth_u64(s) % 6) : k;
        cpx_envelope_t *e = NULL;
        switch (which) {
        case 0: e = cpx_synth_discovery(s, created); break;
        case 1: e = cpx_synth_assessment(s, created, NULL); break;
        case 2:
            e = cpx_synth_referral(s, created, NULL, 0);
            if (e) {
                memcpy(last_ref, e->message_id.data, 16);
                snprintf(to_buf, sizeof to_buf, "%s", e->referral->to);
                last_to = to_buf;
            }
            break;
        case 3: e = cpx_synth_disposition(s, created, last_ref, last_to); break;
        case 4: e = cpx_synth_follow_up(s, created); break;
        default: e = cpx_synth_release_notice(s, created); break;
        }
        if (!e || (dummy && cpx_synth_dummy_sign(e))) {
            cpx_msg_free(e);
            rc = CPXCTL_ENV;
            break;
        }
        char *line = cpx_json_dumps_msg(&e->base);
        cpx_msg_free(e);
        if (!line) {
            rc = CPXCTL_ENV;
            break;
        }
        puts(line);
        free(line);
    }
    cpx_synth_destroy(&s);
    if (fflush(stdout))
        rc = CPXCTL_ENV;
    return rc;
}

CPXCTL_COMMAND("synth", cmd_synth,
               "--seed N --count N [--now MS] [--kind K] [--dummy-sign]: synthetic envelopes as JSON lines")
