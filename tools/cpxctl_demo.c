/* cpxctl demo — a realistic day of the five-step mechanism through a running gateway,
 * acting as every enrolled demo agency at once: reports from schools, hospitals, the
 * 110 centre, the hotline and town offices; Civil Affairs assessing and referring;
 * the receiving agencies disposing. Every department also confirms what it receives,
 * and the command prints what was routed where. Used by deploy/quickstart.sh. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cpx/client.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/err.h"
#include "cpx/synth.h"
#include "cpxctl.h"

#define MAX_DEPTS 64
#define MAX_MSGS 20000

typedef struct dept {
    char code[40];
    cpx_client_t *client;
    cpx_key_t *key;
    unsigned sent, acked, nacked, received;
} dept_t;

typedef struct msg {
    uint8_t id[16];
    int sender;
    int kind;              /* body case */
    char summary[96];
    char case_id[40];
    int acked;             /* 1 ack, -1 nack */
    char routed[256];      /* recipients seen, comma separated */
} msg_t;

typedef struct demo {
    dept_t depts[MAX_DEPTS];
    int n_depts;
    msg_t *msgs;
    int n_msgs;
    int verbose;
} demo_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dept_index(demo_t *d, const char *code)
{
    for (int i = 0; i < d->n_depts; i++)
        if (!strcmp(d->depts[i].code, code))
            return i;
    return -1;
}

static msg_t *find_msg(demo_t *d, const uint8_t *id, size_t len)
{
    if (len != 16)
        return NULL;
    for (int i = d->n_msgs - 1; i >= 0; i--)
        if (!memcmp(d->msgs[i].id, id, 16))
            return &d->msgs[i];
    return NULL;
}

/* Every DEPT.curve.key in the folder (but the gateway's) is a demo department. */
static int load_depts(demo_t *d, const char *endpoint, const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        fprintf(stderr, "cpxctl demo: cannot open key folder %s\n", dir);
        return CPXCTL_ENV;
    }
    struct dirent *de;
    while ((de = readdir(dh)) && d->n_depts < MAX_DEPTS) {
        const char *suffix = ".curve.key";
        size_t n = strlen(de->d_name), s = strlen(suffix);
        if (n <= s || strcmp(de->d_name + n - s, suffix) || n - s >= sizeof d->depts[0].code)
            continue;
        dept_t *dp = &d->depts[d->n_depts];
        memcpy(dp->code, de->d_name, n - s);
        dp->code[n - s] = '\0';
        if (!strcmp(dp->code, "GATEWAY"))
            continue;
        d->n_depts++;
    }
    closedir(dh);
    for (int i = 0; i < d->n_depts; i++) {
        dept_t *dp = &d->depts[i];
        cpx_client_opts_t o;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.sign.key", dir, dp->code);
        dp->key = cpx_key_load_private(path);
        if (!dp->key || cpx_client_opts_from_dir(&o, endpoint, dir, dp->code, NULL) != CPX_OK ||
            !(dp->client = cpx_client_new(&o))) {
            fprintf(stderr, "cpxctl demo: cannot set up %s from %s\n", dp->code, dir);
            return CPXCTL_ENV;
        }
    }
    return d->n_depts ? CPXCTL_OK : CPXCTL_ENV;
}

static void add_routed(msg_t *m, const char *dept)
{
    size_t used = strlen(m->routed);
    if (strstr(m->routed, dept))
        return;
    snprintf(m->routed + used, sizeof m->routed - used, "%s%s", used ? "," : "", dept);
}

/* Signs and submits one envelope from department `from`; takes ownership of env. */
static int submit(demo_t *d, int from, cpx_envelope_t *env, const char *summary)
{
    if (d->n_msgs >= MAX_MSGS) {
        cpx_msg_free(env);
        return CPX_ERR_FULL;
    }
    dept_t *dp = &d->depts[from];
    free(env->sender);
    env->sender = strdup(dp->code);
    int rc = cpx_envsign_sign(env, dp->key);
    if (rc == CPX_OK)
        rc = cpx_client_submit(dp->client, env);
    if (rc == CPX_OK) {
        msg_t *m = &d->msgs[d->n_msgs++];
        memset(m, 0, sizeof *m);
        memcpy(m->id, env->message_id.data, 16);
        m->sender = from;
        m->kind = env->body_case;
        snprintf(m->summary, sizeof m->summary, "%s", summary);
        dp->sent++;
    }
    cpx_msg_free(env);
    return rc;
}

/* Reads every waiting frame of every department: acks, nacks, deliveries (confirmed). */
static int pump(demo_t *d, int timeout_ms)
{
    zmq_pollitem_t items[MAX_DEPTS];
    for (int i = 0; i < d->n_depts; i++)
        items[i] = (zmq_pollitem_t){.socket = cpx_client_socket(d->depts[i].client),
                                    .events = ZMQ_POLLIN};
    int n = zmq_poll(items, d->n_depts, timeout_ms);
    int handled = 0;
    for (int i = 0; n > 0 && i < d->n_depts; i++) {
        if (!(items[i].revents & ZMQ_POLLIN))
            continue;
        dept_t *dp = &d->depts[i];
        cpx_server_frame_t *f;
        while (cpx_client_recv(dp->client, 0, &f) == CPX_OK) {
            handled++;
            if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACK) {
                msg_t *m = find_msg(d, f->ack->message_id.data, f->ack->message_id.len);
                if (m && !m->acked) {
                    m->acked = 1;
                    dp->acked++;
                    snprintf(m->case_id, sizeof m->case_id, "%s", f->ack->case_id);
                }
            } else if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_NACK) {
                msg_t *m = find_msg(d, f->nack->message_id.data, f->nack->message_id.len);
                if (m && !m->acked) {
                    m->acked = -1;
                    dp->nacked++;
                    fprintf(stderr, "  refused %s from %s: code %d%s%s\n", m->summary, dp->code,
                            f->nack->code, f->nack->n_errors ? " " : "",
                            f->nack->n_errors ? f->nack->errors[0]->message : "");
                }
            } else if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_DELIVER) {
                Cpx__V1__Deliver *dv = f->deliver;
                dp->received++;
                if (dv->envelope) {
                    msg_t *m = find_msg(d, dv->envelope->message_id.data,
                                        dv->envelope->message_id.len);
                    if (m)
                        add_routed(m, dp->code);
                    cpx_client_confirm(dp->client, dv->delivery_id, dv->envelope->message_id.data,
                                       dv->envelope->message_id.len,
                                       CPX__V1__DELIVERY_STATUS__TAKEN, NULL);
                }
            } else if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_HEARTBEAT) {
                cpx_client_heartbeat(dp->client, now_ms());
            }
            cpx_msg_free(f);
        }
    }
    return handled;
}

static int outstanding(demo_t *d)
{
    int n = 0;
    for (int i = 0; i < d->n_msgs; i++)
        n += d->msgs[i].acked == 0;
    return n;
}

/* Pumps until every submission is answered and deliveries have been quiet for quiet_ms. */
static void settle(demo_t *d, int quiet_ms, int max_ms)
{
    int64_t start = now_ms(), last = start, beat = 0;
    while (now_ms() - start < max_ms) {
        if (now_ms() - beat >= 1000) {
            beat = now_ms();
            for (int i = 0; i < d->n_depts; i++)
                cpx_client_heartbeat(d->depts[i].client, beat);
        }
        if (pump(d, 100) > 0)
            last = now_ms();
        if (!outstanding(d) && now_ms() - last >= quiet_ms)
            break;
    }
}

static const char *category_name(const cpx_envelope_t *env)
{
    if (env->body_case != CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT ||
        !env->discovery_report->n_categories)
        return "";
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &cpx__v1__category__descriptor, env->discovery_report->categories[0]->category);
    return v ? v->name : "?";
}

static void report(demo_t *d)
{
    printf("\n%-4s %-14s %-18s %-28s %s\n", "#", "from", "case", "message", "routed to");
    for (int i = 0; i < d->n_msgs; i++) {
        msg_t *m = &d->msgs[i];
        printf("%-4d %-14s %-18s %-28s %s\n", i + 1, d->depts[m->sender].code,
               m->acked < 0 ? "(refused)" : m->case_id, m->summary,
               m->routed[0] ? m->routed : (m->acked > 0 ? "(queued)" : "-"));
    }
    printf("\n%-20s %6s %6s %6s %9s\n", "department", "sent", "acked", "nacked", "received");
    for (int i = 0; i < d->n_depts; i++) {
        dept_t *dp = &d->depts[i];
        printf("%-20s %6u %6u %6u %9u\n", dp->code, dp->sent, dp->acked, dp->nacked, dp->received);
    }
}

static int cmd_demo(int argc, char **argv)
{
    const char *endpoint = "tcp://127.0.0.1:7400", *keys = NULL;
    long reports = 40, seed = 20151;
    static const struct option opts[] = {{"endpoint", required_argument, 0, 'e'},
                                         {"keys", required_argument, 0, 'k'},
                                         {"reports", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "e:k:n:s:", opts, NULL)) != -1) {
        switch (c) {
        case 'e': endpoint = optarg; break;
        case 'k': keys = optarg; break;
        case 'n': reports = strtol(optarg, NULL, 10); break;
        case 's': seed = strtol(optarg, NULL, 10); break;
        default: goto usage;
        }
    }
    if (!keys || reports < 1 || reports > MAX_MSGS / 4)
        goto usage;

    demo_t *d = calloc(1, sizeof *d);
    d->msgs = calloc(MAX_MSGS, sizeof *d->msgs);
    int rc = load_depts(d, endpoint, keys);
    if (rc != CPXCTL_OK)
        goto done;
    printf("demo: %d departments connected to %s\n", d->n_depts, endpoint);
    cpx_synth_t *syn = cpx_synth_new((uint64_t)seed);
    int64_t t0 = now_ms();

    /* Morning to evening: discovery reports from whoever found the child. */
    int skipped = 0;
    for (long i = 0; i < reports; i++) {
        cpx_envelope_t *env = cpx_synth_discovery(syn, t0 - (reports - i) * 1000);
        int from = env ? dept_index(d, env->sender) : -1;
        if (from < 0) {
            skipped++;
            cpx_msg_free(env);
            continue;
        }
        char summary[96];
        snprintf(summary, sizeof summary, "report %s%s", category_name(env),
                 env->discovery_report->immediate_danger ? " (danger)" : "");
        submit(d, from, env, summary);
        pump(d, 0);
    }
    settle(d, 1500, 30000);

    /* Civil Affairs assesses the new cases and refers each to an agency that owns a need. */
    int ca = dept_index(d, "CIVIL_AFFAIRS");
    int n_reports = d->n_msgs;
    for (int i = 0; ca >= 0 && i < n_reports; i += 2) {
        if (d->msgs[i].acked <= 0 || !d->msgs[i].case_id[0])
            continue;
        char case_id[40];
        snprintf(case_id, sizeof case_id, "%s", d->msgs[i].case_id);
        cpx_envelope_t *a = cpx_synth_assessment(syn, now_ms(), case_id);
        if (a) {
            /* the case id names the child; a generated identity would be another child */
            cpx_msg_free(a->assessment->minor);
            a->assessment->minor = NULL;
            submit(d, ca, a, "assessment");
        }
        /* a referral goes to another agency: the leading office does not refer to itself */
        cpx_envelope_t *r = cpx_synth_referral(syn, now_ms(), NULL, 0);
        for (int tries = 0; r && !strcmp(r->referral->to, "CIVIL_AFFAIRS") && tries < 8; tries++) {
            cpx_msg_free(r);
            r = cpx_synth_referral(syn, now_ms(), NULL, 0);
        }
        if (r && !strcmp(r->referral->to, "CIVIL_AFFAIRS")) {
            cpx_msg_free(r);
            r = NULL;
        }
        if (r) {
            free(r->case_id);
            r->case_id = strdup(case_id);
            char s[96];
            snprintf(s, sizeof s, "referral -> %s", r->referral->to);
            submit(d, ca, r, s);
        }
    }
    settle(d, 1500, 30000);

    /* The receiving agencies answer their referrals. */
    int n_now = d->n_msgs;
    for (int i = n_reports; i < n_now; i++) {
        msg_t *m = &d->msgs[i];
        if (m->kind != CPX__V1__ENVELOPE__BODY_REFERRAL || m->acked <= 0)
            continue;
        const char *to = strstr(m->summary, "-> ");
        int who = to ? dept_index(d, to + 3) : -1;
        if (who < 0)
            continue;
        cpx_envelope_t *dsp = cpx_synth_disposition(syn, now_ms(), m->id, d->depts[who].code);
        if (!dsp)
            continue;
        free(dsp->case_id);
        dsp->case_id = strdup(m->case_id);
        cpx_msg_free(dsp->disposition->minor);
        dsp->disposition->minor = NULL;
        submit(d, who, dsp, "disposition");
    }
    settle(d, 1500, 30000);
    cpx_synth_destroy(&syn);

    report(d);
    int missing = outstanding(d);
    printf("\n%d messages submitted, %d unanswered, %d reports skipped (sender not enrolled)\n",
           d->n_msgs, missing, skipped);
    rc = missing ? CPXCTL_FAIL : CPXCTL_OK;
done:
    for (int i = 0; i < d->n_depts; i++) {
        cpx_client_destroy(&d->depts[i].client);
        cpx_key_destroy(&d->depts[i].key);
    }
    free(d->msgs);
    free(d);
    return rc;
usage:
    fprintf(stderr, "usage: cpxctl demo --keys DIR [--endpoint E] [--reports N] [--seed S]\n");
    return CPXCTL_USAGE;
}

CPXCTL_COMMAND("demo", cmd_demo,
               "a day of reports, referrals and dispositions through a running gateway")
