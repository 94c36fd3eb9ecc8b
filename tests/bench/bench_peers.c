/* bench_peers — the comparison baselines of issue 4's throughput benchmark, alone:
 * bare ZeroMQ forwarding (plain and CURVE), RabbitMQ and NATS JetStream, one producer
 * and one consumer each, the same payloads, one table. See tests/bench/README.md.
 *
 *   bench_peers [--count N] [--size BYTES] [--window W] [--prefetch P]
 *               [--timeout SECONDS] [--only NAME[,NAME...]]
 *
 * Payloads: cpx_synth discovery reports (about 1 KiB) encoded as cpx.v1.Envelope with a
 * dummy signature; --size BYTES switches to seeded random payloads of that size.
 *
 * NAME: zmq-plain, zmq-curve, zmq (both), rabbitmq, nats. Exit 0 when every selected
 * peer was measured, 1 when any failed, 2 on bad usage. A peer whose client library was
 * not compiled in (-DCPX_BENCH_RABBITMQ / -DCPX_BENCH_NATS) is reported as skipped and
 * fails the run only when --only asked for it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "peers_impl.h"

#include <getopt.h>

enum { SEL_ZMQ_PLAIN = 1, SEL_ZMQ_CURVE = 2, SEL_RABBIT = 4, SEL_NATS = 8, SEL_ALL = 15 };

static int parse_only(const char *arg, unsigned *mask)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    *mask = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "zmq-plain"))
            *mask |= SEL_ZMQ_PLAIN;
        else if (!strcmp(t, "zmq-curve"))
            *mask |= SEL_ZMQ_CURVE;
        else if (!strcmp(t, "zmq"))
            *mask |= SEL_ZMQ_PLAIN | SEL_ZMQ_CURVE;
        else if (!strcmp(t, "rabbitmq"))
            *mask |= SEL_RABBIT;
        else if (!strcmp(t, "nats"))
            *mask |= SEL_NATS;
        else {
            fprintf(stderr, "--only: unknown peer '%s' (zmq-plain, zmq-curve, zmq, rabbitmq, "
                            "nats)\n", t);
            return -1;
        }
    }
    return *mask ? 0 : -1;
}

static int parse_size(const char *opt, const char *arg, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || end == arg || v < lo || v > hi) {
        fprintf(stderr, "%s: want an integer in [%zu, %zu], got '%s'\n", opt, lo, hi, arg);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    peers_interrupt();
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_peers [--count N] [--size BYTES (random payloads)] [--window W] "
                 "[--prefetch P] [--timeout S] [--only zmq-plain,zmq-curve,zmq,rabbitmq,nats]\n");
}

static void skipped(peers_result_t *r, const char *name, const char *why)
{
    memset(r, 0, sizeof *r);
    snprintf(r->peer, sizeof r->peer, "%s", name);
    snprintf(r->error, sizeof r->error, "%s", why);
    r->state = PEERS_SKIPPED;
}

int main(int argc, char **argv)
{
    size_t count = 20000, size = 1024, timeout = 60;
    unsigned only = SEL_ALL, explicit_only = 0;
    int random_bytes = 0;   /* default: realistic reports from cpx_synth */
    peers_opts_t o = peers_opts_default();
    static const struct option longopts[] = {
        { "count", required_argument, NULL, 'n' },  { "size", required_argument, NULL, 's' },
        { "window", required_argument, NULL, 'w' }, { "prefetch", required_argument, NULL, 'p' },
        { "timeout", required_argument, NULL, 't' }, { "only", required_argument, NULL, 'o' },
        { "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    while ((c = getopt_long(argc, argv, "n:s:w:p:t:o:vh", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'n': bad = parse_size("--count", optarg, 1, 10000000, &count); break;
        case 's':
            bad = parse_size("--size", optarg, 1, 1 << 20, &size);
            random_bytes = 1;
            break;
        case 'w': bad = parse_size("--window", optarg, 1, 65535, &o.window); break;
        case 'p': bad = parse_size("--prefetch", optarg, 1, 65535, &o.prefetch); break;
        case 't': bad = parse_size("--timeout", optarg, 1, 3600, &timeout); break;
        case 'o': bad = parse_only(optarg, &only); explicit_only = only; break;
        case 'v': o.verbose = 1; break;
        case 'h': usage(stdout); return 0;
        default: bad = 1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    o.timeout_s = (double)timeout;

    atexit(peers_cleanup_all);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C ends it at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    peers_payloads_t p;
    int rc = random_bytes ? peers_payloads_random(&p, count, size, 0x63707862656e6368ull)
                          : peers_payloads_synth(&p, count, 0x63707862656e6368ull);
    if (rc != 0) {
        fprintf(stderr, "bench_peers: no memory for %zu payloads\n", count);
        return 1;
    }
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    printf("bench_peers: %zu messages (%s, mean %.0f bytes), window %zu, prefetch %zu, "
           "libzmq %d.%d.%d\n", count,
           random_bytes ? "random bytes" : "cpx_synth discovery reports, encoded Envelope",
           peers_payloads_mean(&p), o.window, o.prefetch, major, minor, patch);
    fflush(stdout);

    peers_result_t res[4];
    size_t nres = 0;
    char err[256] PEERS_UNUSED;   /* only with a server peer compiled in */
    if (only & SEL_ZMQ_PLAIN)
        peers_run_zmq(&p, &o, 0, &res[nres++]);
    if ((only & SEL_ZMQ_CURVE) && !peers_interrupted)
        peers_run_zmq(&p, &o, 1, &res[nres++]);
    if ((only & SEL_RABBIT) && !peers_interrupted) {
#ifdef CPX_BENCH_RABBITMQ
        peers_result_t *r = &res[nres++];
        uint64_t t = peers_now_ns();
        peers_server_t *srv = peers_rabbit_start(err, sizeof err);
        if (!srv) {
            skipped(r, "rabbitmq", err);
            r->state = PEERS_FAILED;
        } else {
            printf("rabbitmq: node up on 127.0.0.1:%d in %.1f s\n", srv->port,
                   (double)(peers_now_ns() - t) / 1e9);
            fflush(stdout);
            peers_run_rabbitmq(&p, &o, srv, r);
            peers_server_stop(srv);
        }
#else
        skipped(&res[nres++], "rabbitmq", "not built: compile with -DCPX_BENCH_RABBITMQ, "
                                          "link librabbitmq");
#endif
    }
    if ((only & SEL_NATS) && !peers_interrupted) {
#ifdef CPX_BENCH_NATS
        peers_result_t *r = &res[nres++];
        peers_server_t *srv = peers_nats_start(err, sizeof err);
        if (!srv) {
            skipped(r, "nats-js", err);
            r->state = PEERS_FAILED;
        } else {
            peers_run_nats(&p, &o, srv, r);
            peers_server_stop(srv);
        }
#else
        skipped(&res[nres++], "nats-js", "not built: compile with -DCPX_BENCH_NATS, "
                                         "link libnats");
#endif
    }

    printf("\n");
    peers_print_header(stdout);
    int failed = peers_interrupted != 0;
    for (size_t i = 0; i < nres; i++) {
        peers_print_row(stdout, &res[i]);
        if (res[i].state == PEERS_FAILED)
            failed = 1;
        if (res[i].state == PEERS_SKIPPED && explicit_only)
            failed = 1;
    }
    printf("(msgs/s: first send until every message is confirmed to the producer and "
           "received+acked by the consumer;\n deliv = send->consumer receipt, conf = "
           "send->producer confirm, both under a full window)\n");
    peers_payloads_free(&p);
    return failed ? 1 : 0;
}
