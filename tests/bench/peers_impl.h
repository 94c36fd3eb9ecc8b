/* tests/bench/peers_impl.h — the comparison baselines for the gateway's throughput
 * benchmark (issue 4, "Benchmarks"): bare ZeroMQ forwarding with and without CURVE,
 * RabbitMQ (durable queue, persistent messages, publisher confirms, consumer acks) and
 * NATS JetStream (file storage, async publish, acked push consumer).
 *
 * Header-only (every function `static`) so that bench_peers.c and the gateway
 * benchmark can both include it and measure in one run; the including file compiles
 * the RabbitMQ part only with -DCPX_BENCH_RABBITMQ (link librabbitmq) and the NATS part
 * only with -DCPX_BENCH_NATS (link libnats). Without them those peers report "not built".
 *
 * Every run: one producer, one consumer, the caller's payloads in order. The clock runs
 * from the first send until the producer holds a confirmation for every message AND the
 * consumer has received (verified byte for byte against the payload) and acknowledged
 * every message. Per-message latencies: deliver = send -> consumer receipt, confirm =
 * send -> producer holds the confirmation. With a full window both mostly measure the
 * queue the window allows, not the idle latency.
 *
 * Servers are started by peers_*_start on 127.0.0.1 only, with free ports, in a fresh
 * temporary directory, each in its own process group; peers_server_stop (also run from
 * peers_cleanup_all, which bench programs register with atexit and call from their
 * SIGINT/SIGTERM handler) kills that group and removes the directory.
 *
 * Caveats: one run at a time per process (server bookkeeping is a static table); the
 * including file must define _GNU_SOURCE (CMake does) before any system header. */
#ifndef CPX_BENCH_PEERS_IMPL_H
#define CPX_BENCH_PEERS_IMPL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cpx/codec.h"
#include "cpx/synth.h"

/* Every definition here is static, and an includer uses only some of them. */
#define PEERS_UNUSED __attribute__((unused))
#define PEERS_FN static PEERS_UNUSED

#ifdef CPX_BENCH_RABBITMQ
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#ifdef CPX_BENCH_NATS
#include <nats/nats.h>
#endif

/* ---------------------------------------------------------------- common types */

/* The workload: count payloads, sent in order. Borrowed by every run. */
typedef struct {
    size_t count;
    const uint8_t *const *data;
    const size_t *len;
} peers_payloads_t;

typedef struct {
    size_t window;     /* unconfirmed publishes in flight (producer side) */
    size_t prefetch;   /* unacknowledged deliveries in flight (consumer side) */
    double timeout_s;  /* bound on one peer's measured run */
    int verbose;
} peers_opts_t;

typedef enum { PEERS_SKIPPED = 0, PEERS_OK = 1, PEERS_FAILED = 2 } peers_state_t;

typedef struct {
    char peer[32];
    const char *guarantee;   /* static text: what an acknowledged message survives */
    peers_state_t state;
    char error[256];
    size_t count;
    double seconds, rate;
    double deliver_p50_us, deliver_p99_us;
    double confirm_p50_us, confirm_p99_us;
} peers_result_t;

PEERS_UNUSED static const char PEERS_G_ZMQ[] =
    "none: memory only, forwarder confirms on forward, lost on any crash";
PEERS_UNUSED static const char PEERS_G_RABBIT[] =
    "confirm after the message is written and fsync'd (batched) by the queue";
PEERS_UNUSED static const char PEERS_G_NATS[] =
    "confirm after write() to the file store, NOT fsync'd (2.9: sync every 2 min)";

PEERS_FN peers_opts_t peers_opts_default(void)
{
    peers_opts_t o = { .window = 1000, .prefetch = 1000, .timeout_s = 60.0, .verbose = 0 };
    return o;
}

PEERS_FN uint64_t peers_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

PEERS_FN void peers_fail(peers_result_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
PEERS_FN void peers_fail(peers_result_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (r->state != PEERS_FAILED)   /* keep the first, root-cause error */
        vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->state = PEERS_FAILED;
}

/* Per-message timestamps of one run; filled by producer and consumer threads, each
 * writing only its own arrays, read after both joined. */
typedef struct {
    const peers_payloads_t *p;
    const peers_opts_t *o;
    peers_result_t *r;
    uint64_t *sent_ns, *confirm_ns, *recv_ns;
    uint64_t t0, producer_done, consumer_done;
    _Atomic uint64_t deadline;   /* setup bound, then t0 + timeout once measuring */
    atomic_int abort;        /* either side failed: the other stops waiting */
    pthread_mutex_t lock;    /* guards r->error/state across threads */
    pthread_mutex_t go_lock;
    pthread_cond_t go_cond;
    int consumer_ready, go;
} peers_run_t;

PEERS_FN int peers_run_init(peers_run_t *run, const peers_payloads_t *p,
                          const peers_opts_t *o, peers_result_t *r, const char *name,
                          const char *guarantee)
{
    memset(run, 0, sizeof *run);
    memset(r, 0, sizeof *r);
    snprintf(r->peer, sizeof r->peer, "%s", name);
    r->guarantee = guarantee;
    r->count = p->count;
    run->p = p;
    run->o = o;
    run->r = r;
    if (p->count == 0) {
        peers_fail(r, "no payloads");
        return -1;
    }
    run->sent_ns = calloc(p->count, sizeof(uint64_t));
    run->confirm_ns = calloc(p->count, sizeof(uint64_t));
    run->recv_ns = calloc(p->count, sizeof(uint64_t));
    if (!run->sent_ns || !run->confirm_ns || !run->recv_ns) {
        peers_fail(r, "out of memory for %zu timestamps", p->count);
        return -1;
    }
    pthread_mutex_init(&run->lock, NULL);
    pthread_mutex_init(&run->go_lock, NULL);
    pthread_cond_init(&run->go_cond, NULL);
    atomic_init(&run->abort, 0);
    /* setup (connections, handshakes, subscriptions) gets 30 s on top */
    atomic_init(&run->deadline, peers_now_ns() + (uint64_t)((o->timeout_s + 30.0) * 1e9));
    return 0;
}

PEERS_FN void peers_run_fail(peers_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
PEERS_FN void peers_run_fail(peers_run_t *run, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&run->lock);
    peers_fail(run->r, "%s", buf);
    pthread_mutex_unlock(&run->lock);
    atomic_store(&run->abort, 1);
    /* wake a producer still waiting for the consumer to be ready */
    pthread_mutex_lock(&run->go_lock);
    run->consumer_ready = 1;
    pthread_cond_broadcast(&run->go_cond);
    pthread_mutex_unlock(&run->go_lock);
}

/* The consumer calls this once subscribed; the producer waits for it before t0 so no
 * run measures subscription setup. Bounded: 30 s. */
PEERS_FN void peers_consumer_ready(peers_run_t *run)
{
    pthread_mutex_lock(&run->go_lock);
    run->consumer_ready = 1;
    pthread_cond_broadcast(&run->go_cond);
    pthread_mutex_unlock(&run->go_lock);
}

PEERS_FN int peers_wait_consumer(peers_run_t *run)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&run->go_lock);
    while (!run->consumer_ready) {
        if (pthread_cond_timedwait(&run->go_cond, &run->go_lock, &until) == ETIMEDOUT)
            break;
    }
    int ready = run->consumer_ready;
    pthread_mutex_unlock(&run->go_lock);
    if (!ready) {
        peers_run_fail(run, "consumer not ready after 30 s");
        return -1;
    }
    if (atomic_load(&run->abort))
        return -1;
    run->t0 = peers_now_ns();
    atomic_store(&run->deadline, run->t0 + (uint64_t)(run->o->timeout_s * 1e9));
    return 0;
}

/* Set from a SIGINT/SIGTERM handler (peers_interrupt): every wait gives up. */
static volatile sig_atomic_t peers_interrupted;

PEERS_FN int peers_timed_out(peers_run_t *run)
{
    return peers_interrupted || atomic_load(&run->abort) ||
           peers_now_ns() > atomic_load(&run->deadline);
}

/* The consumer's k-th message must be payload k: catches loss, duplication, reordering
 * and corruption in one comparison. */
PEERS_FN int peers_check(peers_run_t *run, size_t k, const void *data, size_t len)
{
    if (k >= run->p->count) {
        peers_run_fail(run, "consumer got message %zu of %zu (duplicate?)", k + 1,
                       run->p->count);
        return -1;
    }
    if (len != run->p->len[k] || memcmp(data, run->p->data[k], len) != 0) {
        peers_run_fail(run, "message %zu differs from payload %zu (len %zu vs %zu)", k, k,
                       len, run->p->len[k]);
        return -1;
    }
    return 0;
}

PEERS_FN int peers_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p50/p99 of later[i] - earlier[i] in microseconds; zeros when any entry is unset. */
PEERS_FN void peers_percentiles(const uint64_t *earlier, const uint64_t *later, size_t n,
                              double *p50, double *p99)
{
    *p50 = *p99 = 0;
    double *d = malloc(n * sizeof *d);
    if (!d)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!later[i] || later[i] < earlier[i]) {
            free(d);
            return;
        }
        d[i] = (double)(later[i] - earlier[i]) / 1e3;
    }
    qsort(d, n, sizeof *d, peers_cmp_double);
    *p50 = d[(n - 1) / 2];
    *p99 = d[(size_t)((double)(n - 1) * 0.99)];
    free(d);
}

PEERS_FN void peers_run_finish(peers_run_t *run)
{
    peers_result_t *r = run->r;
    if (r->state != PEERS_FAILED && run->t0) {
        uint64_t end = run->producer_done > run->consumer_done ? run->producer_done
                                                               : run->consumer_done;
        r->seconds = (double)(end - run->t0) / 1e9;
        r->rate = r->seconds > 0 ? (double)r->count / r->seconds : 0;
        peers_percentiles(run->sent_ns, run->recv_ns, r->count, &r->deliver_p50_us,
                          &r->deliver_p99_us);
        peers_percentiles(run->sent_ns, run->confirm_ns, r->count, &r->confirm_p50_us,
                          &r->confirm_p99_us);
        r->state = PEERS_OK;
    }
    free(run->sent_ns);
    free(run->confirm_ns);
    free(run->recv_ns);
    pthread_mutex_destroy(&run->lock);
    pthread_mutex_destroy(&run->go_lock);
    pthread_cond_destroy(&run->go_cond);
}

/* Confirms for messages [from, to) arrived now (cumulative acks). */
PEERS_FN void peers_mark(uint64_t *ts, size_t from, size_t to)
{
    uint64_t now = peers_now_ns();
    for (size_t i = from; i < to; i++)
        if (!ts[i])
            ts[i] = now;
}

/* ------------------------------------------------------- (a) bare ZeroMQ forwarding */
/* Three contexts, as if producer, forwarder and consumer were three processes, each
 * with its own I/O thread. The forwarder (ROUTER, CURVE server when curve) forwards by
 * routing id "P" -> "C" and, once per drained poll cycle, sends the producer one
 * cumulative confirm (8-byte little-endian count) — the shape of the gateway's group
 * commit without the commit. The consumer acks cumulatively the same way. Back-pressure
 * comes from ROUTER_MANDATORY + HWM = prefetch on the consumer link. */

typedef struct {
    peers_run_t *run;
    void *ctx, *router;
    char endpoint[128];
    int curve;
    char server_pub[41], server_sec[41];
    atomic_int stop;
} peers_zfwd_t;

PEERS_FN void peers_put64(uint8_t b[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

PEERS_FN uint64_t peers_get64(const uint8_t b[8])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

PEERS_FN int peers_zsend_to(void *router, const char *id, const void *data, size_t len)
{
    if (zmq_send(router, id, 1, ZMQ_SNDMORE) < 0)
        return -1;
    return zmq_send(router, data, len, 0) < 0 ? -1 : 0;
}

PEERS_FN void *peers_zfwd_main(void *arg)
{
    peers_zfwd_t *f = arg;
    peers_run_t *run = f->run;
    int hello_p = 0, hello_c = 0, started = 0;
    zmq_pollitem_t item = { f->router, 0, ZMQ_POLLIN, 0 };
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    while (!atomic_load(&f->stop)) {
        int rc = zmq_poll(&item, 1, 100);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            peers_run_fail(run, "forwarder poll: %s", zmq_strerror(errno));
            break;
        }
        if (rc == 0)
            continue;
        uint64_t forwarded = 0;
        /* drain what is there, bounded so confirms keep flowing under load */
        for (int k = 0; k < 4096; k++) {
            if (zmq_msg_recv(&id, f->router, ZMQ_DONTWAIT) < 0) {
                if (errno != EAGAIN)
                    peers_run_fail(run, "forwarder recv: %s", zmq_strerror(errno));
                break;
            }
            if (zmq_msg_recv(&body, f->router, 0) < 0) {
                peers_run_fail(run, "forwarder recv body: %s", zmq_strerror(errno));
                break;
            }
            char who = zmq_msg_size(&id) == 1 ? *(char *)zmq_msg_data(&id) : '?';
            if (who == 'P' && zmq_msg_size(&body) == 0) {
                hello_p = 1;
            } else if (who == 'C' && zmq_msg_size(&body) == 0) {
                hello_c = 1;
            } else if (who == 'P') {
                if (zmq_send(f->router, "C", 1, ZMQ_SNDMORE) < 0 ||
                    zmq_msg_send(&body, f->router, 0) < 0) {
                    peers_run_fail(run, "forwarder to consumer: %s", zmq_strerror(errno));
                    break;
                }
                forwarded++;
            }
            /* 'C' with 8 bytes: the consumer's cumulative ack; nothing to do */
        }
        if (!started && hello_p && hello_c) {
            /* both links are up (CURVE handshakes done): release the producer */
            if (peers_zsend_to(f->router, "P", "", 0) < 0) {
                peers_run_fail(run, "forwarder start: %s", zmq_strerror(errno));
                break;
            }
            started = 1;
        }
        if (forwarded) {
            uint8_t b[8];
            peers_put64(b, forwarded);
            if (peers_zsend_to(f->router, "P", b, 8) < 0) {
                peers_run_fail(run, "forwarder confirm: %s", zmq_strerror(errno));
                break;
            }
        }
        if (atomic_load(&run->abort))
            break;
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    return NULL;
}

typedef struct {
    peers_zfwd_t *f;
    char pub[41], sec[41];
} peers_zclient_t;

/* A DEALER with routing id `id`, connected to the forwarder; NULL on failure. */
PEERS_FN void *peers_zdealer(peers_zfwd_t *f, void *ctx, const char *id, int hwm)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    int linger = 0, big = hwm;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
    zmq_setsockopt(s, ZMQ_SNDHWM, &big, sizeof big);
    zmq_setsockopt(s, ZMQ_RCVHWM, &big, sizeof big);
    if (f->curve) {
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, f->server_pub, 40) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40) != 0) {
            zmq_close(s);
            return NULL;
        }
    }
    int tmo = 1000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_connect(s, f->endpoint) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

PEERS_FN void *peers_zconsumer_main(void *arg)
{
    peers_zfwd_t *f = arg;
    peers_run_t *run = f->run;
    size_t n = run->p->count, got = 0, unacked = 0;
    size_t ack_every = run->o->prefetch / 4 ? run->o->prefetch / 4 : 1;
    void *ctx = zmq_ctx_new();
    void *s = ctx ? peers_zdealer(f, ctx, "C", (int)run->o->prefetch) : NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (!s || zmq_send(s, "", 0, 0) < 0) {
        peers_run_fail(run, "consumer socket: %s", zmq_strerror(errno));
        goto out;
    }
    peers_consumer_ready(run);
    while (got < n) {
        if (zmq_msg_recv(&m, s, 0) < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (peers_timed_out(run)) {
                    peers_run_fail(run, "zmq consumer: timeout with %zu of %zu", got, n);
                    break;
                }
                if (atomic_load(&run->abort))
                    break;
                continue;
            }
            peers_run_fail(run, "zmq consumer recv: %s", zmq_strerror(errno));
            break;
        }
        run->recv_ns[got] = peers_now_ns();
        if (peers_check(run, got, zmq_msg_data(&m), zmq_msg_size(&m)) != 0)
            break;
        got++;
        unacked++;
        if ((got & 1023) == 0 && peers_timed_out(run)) {
            peers_run_fail(run, "consumer: timeout with %zu of %zu received", got, n);
            break;
        }
        int events = 0;
        size_t elen = sizeof events;
        zmq_getsockopt(s, ZMQ_EVENTS, &events, &elen);
        if (unacked >= ack_every || got == n || !(events & ZMQ_POLLIN)) {
            uint8_t b[8];
            peers_put64(b, unacked);
            if (zmq_send(s, b, 8, 0) < 0) {
                peers_run_fail(run, "zmq consumer ack: %s", zmq_strerror(errno));
                break;
            }
            unacked = 0;
        }
    }
    run->consumer_done = peers_now_ns();
out:
    zmq_msg_close(&m);
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    return NULL;
}

/* Measures (a): bare forwarding, CURVE on both links when curve != 0. Returns 0 when
 * measured, -1 with r->error set otherwise. */
PEERS_FN int peers_run_zmq(const peers_payloads_t *p, const peers_opts_t *o, int curve,
                         peers_result_t *r)
{
    peers_run_t run;
    if (peers_run_init(&run, p, o, r, curve ? "zmq-curve" : "zmq-plain", PEERS_G_ZMQ) != 0)
        return -1;
    peers_zfwd_t f;
    memset(&f, 0, sizeof f);
    f.run = &run;
    f.curve = curve;
    atomic_init(&f.stop, 0);
    void *pctx = NULL, *ps = NULL;
    pthread_t fwd_t, cons_t;
    int fwd_started = 0, cons_started = 0;

    if (curve && !zmq_has("curve")) {
        peers_fail(r, "libzmq built without CURVE");
        goto done;
    }
    f.ctx = zmq_ctx_new();
    f.router = f.ctx ? zmq_socket(f.ctx, ZMQ_ROUTER) : NULL;
    if (!f.router) {
        peers_fail(r, "router socket: %s", zmq_strerror(errno));
        goto done;
    }
    int one = 1, linger = 0, hwm = (int)o->prefetch, tmo = 5000;
    zmq_setsockopt(f.router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(f.router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(f.router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(f.router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* a dead consumer must not wedge the forwarder forever */
    zmq_setsockopt(f.router, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    if (curve) {
        if (zmq_curve_keypair(f.server_pub, f.server_sec) != 0 ||
            zmq_setsockopt(f.router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(f.router, ZMQ_CURVE_SECRETKEY, f.server_sec, 40) != 0) {
            peers_fail(r, "curve setup: %s", zmq_strerror(errno));
            goto done;
        }
    }
    size_t elen = sizeof f.endpoint;
    if (zmq_bind(f.router, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(f.router, ZMQ_LAST_ENDPOINT, f.endpoint, &elen) != 0) {
        peers_fail(r, "bind tcp://127.0.0.1:*: %s", zmq_strerror(errno));
        goto done;
    }
    if (pthread_create(&fwd_t, NULL, peers_zfwd_main, &f) != 0) {
        peers_fail(r, "forwarder thread");
        goto done;
    }
    fwd_started = 1;
    if (pthread_create(&cons_t, NULL, peers_zconsumer_main, &f) != 0) {
        peers_fail(r, "consumer thread");
        goto done;
    }
    cons_started = 1;

    pctx = zmq_ctx_new();
    ps = pctx ? peers_zdealer(&f, pctx, "P", (int)o->window) : NULL;
    if (!ps || zmq_send(ps, "", 0, 0) < 0) {
        peers_run_fail(&run, "producer socket: %s", zmq_strerror(errno));
        goto done;
    }
    if (peers_wait_consumer(&run) != 0)
        goto done;
    /* the forwarder's empty frame says both handshakes are complete */
    uint8_t buf[16];
    for (int tries = 0;; tries++) {
        int rc = zmq_recv(ps, buf, sizeof buf, 0);
        if (rc == 0)
            break;
        if (rc < 0 && errno == EAGAIN && tries < 30 && !atomic_load(&run.abort))
            continue;
        peers_run_fail(&run, "no start signal from the forwarder (%s)",
                       rc < 0 ? zmq_strerror(errno) : "unexpected frame");
        goto done;
    }
    run.t0 = peers_now_ns();
    atomic_store(&run.deadline, run.t0 + (uint64_t)(o->timeout_s * 1e9));

    size_t n = p->count, sent = 0, acked = 0;
    while (acked < n) {
        if ((sent & 1023) == 0 && peers_timed_out(&run)) {
            peers_run_fail(&run, "producer: timeout with %zu sent, %zu of %zu confirmed", sent,
                           acked, n);
            goto done;
        }
        while (sent < n && sent - acked < o->window) {
            run.sent_ns[sent] = peers_now_ns();
            if (zmq_send(ps, p->data[sent], p->len[sent], 0) < 0) {
                peers_run_fail(&run, "producer send: %s", zmq_strerror(errno));
                goto done;
            }
            sent++;
            if ((sent & 63) == 0)
                break;   /* look at confirms now and then while the window is open */
        }
        int flags = (sent < n && sent - acked < o->window) ? ZMQ_DONTWAIT : 0;
        int rc = zmq_recv(ps, buf, sizeof buf, flags);
        if (rc < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (peers_timed_out(&run)) {
                    peers_run_fail(&run, "producer: timeout with %zu of %zu confirmed",
                                   acked, n);
                    goto done;
                }
                continue;
            }
            peers_run_fail(&run, "producer recv: %s", zmq_strerror(errno));
            goto done;
        }
        uint64_t c = rc == 8 ? peers_get64(buf) : 0;
        if (c == 0 || c > sent - acked) {
            peers_run_fail(&run, "producer: bad confirm frame (%d bytes, %llu)", rc,
                           (unsigned long long)c);
            goto done;
        }
        peers_mark(run.confirm_ns, acked, acked + c);
        acked += c;
    }
    run.producer_done = peers_now_ns();

done:
    if (r->state == PEERS_FAILED)
        atomic_store(&run.abort, 1);
    if (cons_started)
        pthread_join(cons_t, NULL);
    atomic_store(&f.stop, 1);
    if (fwd_started)
        pthread_join(fwd_t, NULL);
    if (ps)
        zmq_close(ps);
    if (pctx)
        zmq_ctx_term(pctx);
    if (f.router)
        zmq_close(f.router);
    if (f.ctx)
        zmq_ctx_term(f.ctx);
    peers_run_finish(&run);
    return r->state == PEERS_OK ? 0 : -1;
}

/* ------------------------------------------------------------- server processes */

typedef struct {
    int used;
    pid_t pid;              /* leader of its own process group */
    pid_t extra_pid;        /* epmd for RabbitMQ, own group too; 0 if none */
    char dir[256];
    char log[300];
    int port;
    char name[16];
} peers_server_t;

static peers_server_t peers_servers[4];

/* A port on 127.0.0.1 nothing listens on right now (the kernel's pick). */
PEERS_FN int peers_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

PEERS_FN int peers_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

PEERS_FN int peers_write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    int rc = fputs(text, fp) < 0 ? -1 : 0;
    return fclose(fp) != 0 ? -1 : rc;
}

/* Starts argv in its own process group with env added, output to log; 0 on failure. */
PEERS_FN pid_t peers_spawn(char *const argv[], char *const env[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);   /* also here: no window where a kill(-pid) misses it */
    return pid;
}

PEERS_FN int peers_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

PEERS_FN void peers_kill_group(pid_t pid, double grace_s)
{
    if (pid <= 0)
        return;
    kill(-pid, SIGTERM);
    uint64_t until = peers_now_ns() + (uint64_t)(grace_s * 1e9);
    int reaped = 0;
    while (peers_now_ns() < until) {
        if (!reaped && waitpid(pid, NULL, WNOHANG) == pid)
            reaped = 1;
        if (reaped && kill(-pid, 0) != 0)
            return;   /* the whole group is gone */
        usleep(50000);
    }
    kill(-pid, SIGKILL);
    if (!reaped)
        waitpid(pid, NULL, 0);
}

/* Kills the server's process groups and removes its directory; accepts NULL and an
 * already stopped server. */
PEERS_FN void peers_server_stop(peers_server_t *s)
{
    if (!s || !s->used)
        return;
    peers_kill_group(s->pid, 5.0);
    peers_kill_group(s->extra_pid, 2.0);
    if (s->dir[0])
        nftw(s->dir, peers_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    memset(s, 0, sizeof *s);
}

/* For atexit: stop whatever is still running and remove its directory. */
PEERS_FN void peers_cleanup_all(void)
{
    for (size_t i = 0; i < sizeof peers_servers / sizeof peers_servers[0]; i++)
        peers_server_stop(&peers_servers[i]);
}

/* Async-signal-safe: for a SIGINT/SIGTERM handler. Kills every server now and makes
 * every wait give up, so the program reaches its normal cleanup (peers_cleanup_all)
 * within about a second. */
PEERS_FN void peers_interrupt(void)
{
    peers_interrupted = 1;
    for (size_t i = 0; i < sizeof peers_servers / sizeof peers_servers[0]; i++) {
        if (!peers_servers[i].used)
            continue;
        if (peers_servers[i].pid > 0)
            kill(-peers_servers[i].pid, SIGKILL);
        if (peers_servers[i].extra_pid > 0)
            kill(-peers_servers[i].extra_pid, SIGKILL);
    }
}

PEERS_FN peers_server_t *peers_server_new(const char *name, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof peers_servers / sizeof peers_servers[0]; i++) {
        peers_server_t *s = &peers_servers[i];
        if (s->used)
            continue;
        memset(s, 0, sizeof *s);
        const char *tmp = getenv("TMPDIR");
        snprintf(s->dir, sizeof s->dir, "%s/cpxbench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
                 name);
        if (!mkdtemp(s->dir)) {
            snprintf(err, errlen, "mkdtemp %s: %s", s->dir, strerror(errno));
            s->dir[0] = 0;
            return NULL;
        }
        s->used = 1;
        snprintf(s->name, sizeof s->name, "%s", name);
        size_t dl = strlen(s->dir);   /* snprintf from s->dir into s->log trips -Wrestrict */
        memcpy(s->log, s->dir, dl);
        memcpy(s->log + dl, "/server.log", sizeof "/server.log");
        return s;
    }
    snprintf(err, errlen, "too many servers");
    return NULL;
}

/* Last lines of the server's log, for an error message. */
PEERS_FN void peers_server_log_tail(const peers_server_t *s, FILE *out)
{
    FILE *fp = fopen(s->log, "r");
    if (!fp)
        return;
    char buf[4096];
    if (fseek(fp, -(long)(sizeof buf - 1), SEEK_END) != 0)
        rewind(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = 0;
    fclose(fp);
    fprintf(out, "--- last output of %s (%s) ---\n%s\n---\n", s->name, s->log, buf);
}

/* Polls until ready(s) succeeds, the server exits, or timeout_s passes. */
PEERS_FN int peers_server_wait(peers_server_t *s, int (*ready)(peers_server_t *),
                             double timeout_s, char *err, size_t errlen)
{
    uint64_t until = peers_now_ns() + (uint64_t)(timeout_s * 1e9);
    while (peers_now_ns() < until && !peers_interrupted) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            snprintf(err, errlen, "%s exited during start (status %d); end of its log "
                     "printed above", s->name, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
            s->pid = 0;
            return -1;
        }
        if (ready(s))
            return 0;
        usleep(200000);
    }
    if (peers_interrupted)
        snprintf(err, errlen, "%s start interrupted", s->name);
    else
        snprintf(err, errlen, "%s not ready after %.0f s; end of its log printed above",
                 s->name, timeout_s);
    return -1;
}

/* ------------------------------------------------------------------ (b1) RabbitMQ */
#ifdef CPX_BENCH_RABBITMQ

#define PEERS_RMQ_QUEUE "cpxbench"

PEERS_FN int peers_amqp_ok(amqp_rpc_reply_t x, char *err, size_t errlen, const char *what)
{
    switch (x.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        snprintf(err, errlen, "%s: missing RPC reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(x.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (x.reply.id == AMQP_CONNECTION_CLOSE_METHOD ||
            x.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            /* both close methods start with reply_code, reply_text */
            amqp_connection_close_t *m = x.reply.decoded;
            snprintf(err, errlen, "%s: server closed: %u %.*s", what, m->reply_code,
                     (int)m->reply_text.len, (char *)m->reply_text.bytes);
        } else {
            snprintf(err, errlen, "%s: server exception 0x%08x", what, x.reply.id);
        }
        break;
    }
    return -1;
}

/* A logged-in connection with channel 1 open; NULL with err set on failure. */
PEERS_FN amqp_connection_state_t peers_amqp_connect(int port, char *err, size_t errlen)
{
    amqp_connection_state_t c = amqp_new_connection();
    if (!c) {
        snprintf(err, errlen, "amqp_new_connection");
        return NULL;
    }
    amqp_socket_t *sock = amqp_tcp_socket_new(c);
    int st;
    if (!sock || (st = amqp_socket_open(sock, "127.0.0.1", port)) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "connect 127.0.0.1:%d: %s", port,
                 sock ? amqp_error_string2(st) : "no socket");
        amqp_destroy_connection(c);
        return NULL;
    }
    if (peers_amqp_ok(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
                                 "guest"),
                      err, errlen, "login") != 0) {
        amqp_destroy_connection(c);
        return NULL;
    }
    amqp_channel_open(c, 1);
    if (peers_amqp_ok(amqp_get_rpc_reply(c), err, errlen, "channel.open") != 0) {
        amqp_connection_close(c, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(c);
        return NULL;
    }
    return c;
}

PEERS_FN void peers_amqp_close(amqp_connection_state_t c)
{
    if (!c)
        return;
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

PEERS_FN int peers_rabbit_ready(peers_server_t *s)
{
    char err[128];
    amqp_connection_state_t c = peers_amqp_connect(s->port, err, sizeof err);
    if (!c)
        return 0;
    peers_amqp_close(c);
    return 1;
}

/* Starts a private RabbitMQ node (AMQP, distribution and epmd all on 127.0.0.1, free
 * ports, no plugins) and waits until guest can log in. NULL with err set on failure
 * (everything started is stopped again). */
PEERS_FN peers_server_t *peers_rabbit_start(char *err, size_t errlen)
{
    peers_server_t *s = peers_server_new("rabbitmq", err, errlen);
    if (!s)
        return NULL;
    int amqp = peers_free_port(), dist = peers_free_port(), epmd = peers_free_port();
    if (amqp < 0 || dist < 0 || epmd < 0 || amqp == dist || dist == epmd || amqp == epmd) {
        snprintf(err, errlen, "no free ports on 127.0.0.1");
        goto fail;
    }
    s->port = amqp;
    char path[400], conf[256];
    snprintf(path, sizeof path, "%s/rabbitmq.conf", s->dir);
    snprintf(conf, sizeof conf, "listeners.tcp.default = 127.0.0.1:%d\n", amqp);
    if (peers_write_file(path, conf) != 0)
        goto io;
    snprintf(path, sizeof path, "%s/enabled_plugins", s->dir);
    if (peers_write_file(path, "[].\n") != 0)
        goto io;
    /* an empty env file: the system's /etc/rabbitmq/rabbitmq-env.conf must not apply */
    snprintf(path, sizeof path, "%s/rabbitmq-env.conf", s->dir);
    if (peers_write_file(path, "") != 0)
        goto io;

    /* our own epmd, so the node registers nowhere but here, on loopback */
    char eport[16];
    snprintf(eport, sizeof eport, "%d", epmd);
    char *eargv[] = { "epmd", "-address", "127.0.0.1", "-port", eport, NULL };
    s->extra_pid = peers_spawn(eargv, NULL, s->log);
    if (!s->extra_pid) {
        snprintf(err, errlen, "cannot start epmd: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < 50 && !peers_port_open(epmd); i++)
        usleep(100000);

    static char envbuf[16][512];
    int k = 0;
#define PEERS_ENV(...) snprintf(envbuf[k++], sizeof envbuf[0], __VA_ARGS__)
    PEERS_ENV("HOME=%s", s->dir);   /* the Erlang cookie goes here */
    PEERS_ENV("RABBITMQ_CONF_ENV_FILE=%s/rabbitmq-env.conf", s->dir);
    PEERS_ENV("RABBITMQ_NODENAME=cpxbench-%d@localhost", (int)getpid());
    PEERS_ENV("RABBITMQ_NODE_IP_ADDRESS=127.0.0.1");
    PEERS_ENV("RABBITMQ_NODE_PORT=%d", amqp);
    PEERS_ENV("RABBITMQ_DIST_PORT=%d", dist);
    PEERS_ENV("RABBITMQ_MNESIA_BASE=%s/mnesia", s->dir);
    PEERS_ENV("RABBITMQ_LOG_BASE=%s/log", s->dir);
    PEERS_ENV("RABBITMQ_CONFIG_FILE=%s/rabbitmq", s->dir);
    PEERS_ENV("RABBITMQ_ADVANCED_CONFIG_FILE=%s/advanced.config", s->dir);
    PEERS_ENV("RABBITMQ_ENABLED_PLUGINS_FILE=%s/enabled_plugins", s->dir);
    PEERS_ENV("RABBITMQ_PLUGINS_EXPAND_DIR=%s/plugins-expand", s->dir);
    PEERS_ENV("ERL_EPMD_ADDRESS=127.0.0.1");
    PEERS_ENV("ERL_EPMD_PORT=%d", epmd);
    /* the distribution listener binds 0.0.0.0 unless told otherwise */
    PEERS_ENV("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface "
              "{127,0,0,1}");
#undef PEERS_ENV
    char *env[17];
    for (int i = 0; i < k; i++)
        env[i] = envbuf[i];
    env[k] = NULL;
    const char *bin = getenv("CPX_RABBITMQ_SERVER");
    char binbuf[256];
    snprintf(binbuf, sizeof binbuf, "%s",
             bin && *bin ? bin : "/usr/lib/rabbitmq/bin/rabbitmq-server");
    char *argv[] = { binbuf, NULL };
    s->pid = peers_spawn(argv, env, s->log);
    if (!s->pid) {
        snprintf(err, errlen, "cannot start %.100s: %s", binbuf, strerror(errno));
        goto fail;
    }
    if (peers_server_wait(s, peers_rabbit_ready, 90.0, err, errlen) != 0) {
        peers_server_log_tail(s, stderr);
        goto fail;
    }
    return s;
io:
    snprintf(err, errlen, "writing %.150s: %s", s->dir, strerror(errno));
fail:
    peers_server_stop(s);
    return NULL;
}

typedef struct {
    peers_run_t *run;
    int port;
} peers_rmq_t;

PEERS_FN void *peers_rmq_consumer_main(void *arg)
{
    peers_rmq_t *q = arg;
    peers_run_t *run = q->run;
    char err[256];
    size_t n = run->p->count, got = 0, unacked = 0;
    size_t ack_every = run->o->prefetch / 4 ? run->o->prefetch / 4 : 1;
    amqp_connection_state_t c = peers_amqp_connect(q->port, err, sizeof err);
    if (!c) {
        peers_run_fail(run, "rabbitmq consumer: %s", err);
        return NULL;
    }
    amqp_basic_qos(c, 1, 0, (uint16_t)(run->o->prefetch > 65535 ? 65535 : run->o->prefetch),
                   0);
    if (peers_amqp_ok(amqp_get_rpc_reply(c), err, sizeof err, "basic.qos") != 0) {
        peers_run_fail(run, "rabbitmq consumer: %s", err);
        goto out;
    }
    amqp_basic_consume(c, 1, amqp_cstring_bytes(PEERS_RMQ_QUEUE), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (peers_amqp_ok(amqp_get_rpc_reply(c), err, sizeof err, "basic.consume") != 0) {
        peers_run_fail(run, "rabbitmq consumer: %s", err);
        goto out;
    }
    peers_consumer_ready(run);
    uint64_t last_tag = 0;
    while (got < n) {
        amqp_envelope_t env;
        struct timeval tv = { 1, 0 };
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t x = amqp_consume_message(c, &env, &tv, 0);
        if (x.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            x.library_error == AMQP_STATUS_TIMEOUT) {
            if (peers_timed_out(run)) {
                peers_run_fail(run, "rabbitmq consumer: timeout with %zu of %zu", got, n);
                break;
            }
            continue;
        }
        if (peers_amqp_ok(x, err, sizeof err, "consume") != 0) {
            peers_run_fail(run, "rabbitmq consumer: %s", err);
            break;
        }
        run->recv_ns[got] = peers_now_ns();
        int bad = peers_check(run, got, env.message.body.bytes, env.message.body.len);
        last_tag = env.delivery_tag;
        amqp_destroy_envelope(&env);
        if (bad)
            break;
        got++;
        unacked++;
        if ((got & 1023) == 0 && peers_timed_out(run)) {
            peers_run_fail(run, "consumer: timeout with %zu of %zu received", got, n);
            break;
        }
        if (unacked >= ack_every || got == n ||
            (!amqp_data_in_buffer(c) && !amqp_frames_enqueued(c))) {
            /* one ack covers every delivery up to last_tag */
            if (amqp_basic_ack(c, 1, last_tag, 1) != AMQP_STATUS_OK) {
                peers_run_fail(run, "rabbitmq consumer: basic.ack failed");
                break;
            }
            unacked = 0;
        }
    }
    run->consumer_done = peers_now_ns();
out:
    peers_amqp_close(c);
    return NULL;
}

/* Handles one frame from the producer's connection: confirms advance *acked. */
PEERS_FN int peers_rmq_confirm(peers_run_t *run, amqp_frame_t *fr, size_t sent, size_t *acked,
                             uint8_t *confirmed)
{
    if (fr->frame_type != AMQP_FRAME_METHOD)
        return 0;
    amqp_method_number_t id = fr->payload.method.id;
    if (id == AMQP_BASIC_ACK_METHOD) {
        amqp_basic_ack_t *a = fr->payload.method.decoded;
        size_t tag = (size_t)a->delivery_tag;
        if (tag == 0 || tag > sent) {
            peers_run_fail(run, "rabbitmq: confirm for unknown tag %zu", tag);
            return -1;
        }
        size_t from = a->multiple ? 0 : tag - 1;
        uint64_t now = peers_now_ns();
        for (size_t i = from; i < tag; i++) {
            if (!confirmed[i]) {
                confirmed[i] = 1;
                run->confirm_ns[i] = now;
                (*acked)++;
            }
        }
        return 0;
    }
    if (id == AMQP_BASIC_NACK_METHOD) {
        amqp_basic_nack_t *a = fr->payload.method.decoded;
        peers_run_fail(run, "rabbitmq: publish %llu nacked by the broker",
                       (unsigned long long)a->delivery_tag);
        return -1;
    }
    if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_channel_close_t *m = fr->payload.method.decoded;
        peers_run_fail(run, "rabbitmq: broker closed: %u %.*s", m->reply_code,
                       (int)m->reply_text.len, (char *)m->reply_text.bytes);
        return -1;
    }
    return 0;
}

/* Measures (b1) against a server from peers_rabbit_start. Returns 0 when measured. */
PEERS_FN int peers_run_rabbitmq(const peers_payloads_t *p, const peers_opts_t *o,
                              const peers_server_t *srv, peers_result_t *r)
{
    peers_run_t run;
    if (peers_run_init(&run, p, o, r, "rabbitmq", PEERS_G_RABBIT) != 0)
        return -1;
    char err[256];
    pthread_t cons_t;
    int cons_started = 0;
    uint8_t *confirmed = calloc(p->count, 1);
    amqp_connection_state_t c = confirmed ? peers_amqp_connect(srv->port, err, sizeof err)
                                          : NULL;
    if (!c) {
        peers_fail(r, "rabbitmq producer: %s", confirmed ? err : "out of memory");
        goto done;
    }
    /* a fresh durable queue: delete leftovers of an earlier run on this node */
    amqp_queue_delete(c, 1, amqp_cstring_bytes(PEERS_RMQ_QUEUE), 0, 0);
    if (peers_amqp_ok(amqp_get_rpc_reply(c), err, sizeof err, "queue.delete") != 0 ||
        (amqp_queue_declare(c, 1, amqp_cstring_bytes(PEERS_RMQ_QUEUE), 0, 1, 0, 0,
                            amqp_empty_table),
         peers_amqp_ok(amqp_get_rpc_reply(c), err, sizeof err, "queue.declare")) != 0 ||
        (amqp_confirm_select(c, 1),
         peers_amqp_ok(amqp_get_rpc_reply(c), err, sizeof err, "confirm.select")) != 0) {
        peers_fail(r, "rabbitmq producer: %s", err);
        goto done;
    }
    peers_rmq_t q = { &run, srv->port };
    if (pthread_create(&cons_t, NULL, peers_rmq_consumer_main, &q) != 0) {
        peers_fail(r, "consumer thread");
        goto done;
    }
    cons_started = 1;
    if (peers_wait_consumer(&run) != 0)
        goto done;

    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    size_t n = p->count, sent = 0, acked = 0;
    while (acked < n) {
        if ((sent & 1023) == 0 && peers_timed_out(&run)) {
            peers_run_fail(&run, "producer: timeout with %zu sent, %zu of %zu confirmed", sent,
                           acked, n);
            goto done;
        }
        while (sent < n && sent - acked < o->window) {
            amqp_bytes_t body = { p->len[sent], (void *)p->data[sent] };
            run.sent_ns[sent] = peers_now_ns();
            int st = amqp_basic_publish(c, 1, amqp_empty_bytes,
                                        amqp_cstring_bytes(PEERS_RMQ_QUEUE), 0, 0, &props,
                                        body);
            if (st != AMQP_STATUS_OK) {
                peers_run_fail(&run, "rabbitmq publish: %s", amqp_error_string2(st));
                goto done;
            }
            sent++;
            if ((sent & 63) == 0)
                break;
        }
        /* wait only when the window is full or everything is sent */
        int must_wait = !(sent < n && sent - acked < o->window);
        struct timeval tv = { must_wait ? 1 : 0, 0 };
        amqp_frame_t fr;
        amqp_maybe_release_buffers(c);
        int st = amqp_simple_wait_frame_noblock(c, &fr, &tv);
        if (st == AMQP_STATUS_TIMEOUT) {
            if (peers_timed_out(&run)) {
                peers_run_fail(&run, "rabbitmq producer: timeout with %zu of %zu confirmed",
                               acked, n);
                goto done;
            }
            continue;
        }
        if (st != AMQP_STATUS_OK) {
            peers_run_fail(&run, "rabbitmq producer: %s", amqp_error_string2(st));
            goto done;
        }
        if (peers_rmq_confirm(&run, &fr, sent, &acked, confirmed) != 0)
            goto done;
    }
    run.producer_done = peers_now_ns();

done:
    if (r->state == PEERS_FAILED)
        atomic_store(&run.abort, 1);
    if (cons_started)
        pthread_join(cons_t, NULL);
    peers_amqp_close(c);
    free(confirmed);
    peers_run_finish(&run);
    return r->state == PEERS_OK ? 0 : -1;
}
#endif /* CPX_BENCH_RABBITMQ */

/* ------------------------------------------------------------ (b2) NATS JetStream */
#ifdef CPX_BENCH_NATS

#define PEERS_NATS_STREAM "CPXBENCH"
#define PEERS_NATS_SUBJECT "cpxbench.msg"

PEERS_FN int peers_nats_ready(peers_server_t *s)
{
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", s->port);
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
        return 0;
    jsCtx *js = NULL;
    jsAccountInfo *ai = NULL;
    int ok = natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
             js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK;
    jsAccountInfo_Destroy(ai);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return ok;
}

/* Starts nats-server with JetStream (file store in a fresh directory) on 127.0.0.1 and
 * a free port; waits until JetStream answers. NULL with err set on failure. */
PEERS_FN peers_server_t *peers_nats_start(char *err, size_t errlen)
{
    peers_server_t *s = peers_server_new("nats", err, errlen);
    if (!s)
        return NULL;
    s->port = peers_free_port();
    if (s->port < 0) {
        snprintf(err, errlen, "no free port on 127.0.0.1");
        goto fail;
    }
    char port[16], sd[300];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(sd, sizeof sd, "%s/js", s->dir);
    const char *bin = getenv("CPX_NATS_SERVER");
    char binbuf[256];
    snprintf(binbuf, sizeof binbuf, "%s", bin && *bin ? bin : "nats-server");
    char *argv[] = { binbuf, "-a", "127.0.0.1", "-p", port, "-js", "-sd", sd, NULL };
    s->pid = peers_spawn(argv, NULL, s->log);
    if (!s->pid) {
        snprintf(err, errlen, "cannot start nats-server: %s", strerror(errno));
        goto fail;
    }
    if (peers_server_wait(s, peers_nats_ready, 30.0, err, errlen) != 0) {
        peers_server_log_tail(s, stderr);
        goto fail;
    }
    return s;
fail:
    peers_server_stop(s);
    return NULL;
}

typedef struct {
    peers_run_t *run;
    const char *url;
} peers_nats_t;

PEERS_FN void *peers_nats_consumer_main(void *arg)
{
    peers_nats_t *q = arg;
    peers_run_t *run = q->run;
    size_t n = run->p->count, got = 0, unacked = 0;
    size_t ack_every = run->o->prefetch / 4 ? run->o->prefetch / 4 : 1;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus st = natsConnection_ConnectTo(&nc, q->url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    if (st == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = PEERS_NATS_STREAM;
        so.ManualAck = true;
        /* AckAll: one ack covers every earlier message, like basic.ack multiple */
        so.Config.AckPolicy = js_AckAll;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.MaxAckPending = (int64_t)run->o->prefetch;
        st = js_SubscribeSync(&sub, js, PEERS_NATS_SUBJECT, NULL, &so, &jerr);
    }
    if (st != NATS_OK) {
        peers_run_fail(run, "nats consumer: %s (js err %d)", natsStatus_GetText(st),
                       (int)jerr);
        goto out;
    }
    /* the library's own buffer must hold what the server may push unacked */
    natsSubscription_SetPendingLimits(sub, -1, -1);
    peers_consumer_ready(run);
    while (got < n) {
        natsMsg *m = NULL;
        st = natsSubscription_NextMsg(&m, sub, 1000);
        if (st == NATS_TIMEOUT) {
            if (peers_timed_out(run)) {
                peers_run_fail(run, "nats consumer: timeout with %zu of %zu", got, n);
                break;
            }
            if (atomic_load(&run->abort))
                break;
            continue;
        }
        if (st != NATS_OK) {
            peers_run_fail(run, "nats consumer: %s", natsStatus_GetText(st));
            break;
        }
        run->recv_ns[got] = peers_now_ns();
        if (peers_check(run, got, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m))) {
            natsMsg_Destroy(m);
            break;
        }
        got++;
        unacked++;
        if ((got & 1023) == 0 && peers_timed_out(run)) {
            peers_run_fail(run, "consumer: timeout with %zu of %zu received", got, n);
            natsMsg_Destroy(m);
            break;
        }
        int pending = 0;
        natsSubscription_GetPending(sub, &pending, NULL);
        if (got == n) {
            /* the last ack waits for the server: the run ends with every ack applied */
            st = natsMsg_AckSync(m, NULL, &jerr);
        } else if (unacked >= ack_every || pending == 0) {
            st = natsMsg_Ack(m, NULL);
            unacked = 0;
        }
        natsMsg_Destroy(m);
        if (st != NATS_OK) {
            peers_run_fail(run, "nats consumer ack: %s", natsStatus_GetText(st));
            break;
        }
    }
    run->consumer_done = peers_now_ns();
out:
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return NULL;
}

typedef struct {
    peers_run_t *run;
    atomic_size_t acked;
    atomic_size_t failed;
} peers_nats_pub_t;

/* Runs on the library's thread: stream sequence s is publish s-1 of a fresh stream. */
PEERS_FN void peers_nats_ack_cb(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                              void *closure)
{
    (void)js;
    peers_nats_pub_t *pub = closure;
    if (pa && pa->Sequence >= 1 && pa->Sequence <= pub->run->p->count) {
        pub->run->confirm_ns[pa->Sequence - 1] = peers_now_ns();
        atomic_fetch_add(&pub->acked, 1);
    } else {
        atomic_fetch_add(&pub->failed, 1);
        if (pae)
            peers_run_fail(pub->run, "nats publish failed: %s (%s)",
                           natsStatus_GetText(pae->Err), pae->ErrText ? pae->ErrText : "");
        else
            peers_run_fail(pub->run, "nats publish: unexpected ack sequence");
    }
    natsMsg_Destroy(msg);
}

/* Measures (b2) against a server from peers_nats_start. Returns 0 when measured. */
PEERS_FN int peers_run_nats(const peers_payloads_t *p, const peers_opts_t *o,
                          const peers_server_t *srv, peers_result_t *r)
{
    peers_run_t run;
    if (peers_run_init(&run, p, o, r, "nats-js", PEERS_G_NATS) != 0)
        return -1;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", srv->port);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    pthread_t cons_t;
    int cons_started = 0;
    peers_nats_pub_t pub;
    pub.run = &run;
    atomic_init(&pub.acked, 0);
    atomic_init(&pub.failed, 0);

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = (int64_t)o->window;
    jo.PublishAsync.AckHandler = peers_nats_ack_cb;
    jo.PublishAsync.AckHandlerClosure = &pub;
    jo.PublishAsync.StallWait = (int64_t)(o->timeout_s * 1000);
    natsStatus st = natsConnection_ConnectTo(&nc, url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, &jo);
    if (st != NATS_OK) {
        peers_fail(r, "nats producer: %s", natsStatus_GetText(st));
        goto done;
    }
    /* a fresh stream, so stream sequence = publish order */
    js_DeleteStream(js, PEERS_NATS_STREAM, NULL, NULL);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = { PEERS_NATS_SUBJECT };
    cfg.Name = PEERS_NATS_STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    st = js_AddStream(&si, js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (st != NATS_OK) {
        peers_fail(r, "nats add stream: %s (js err %d)", natsStatus_GetText(st), (int)jerr);
        goto done;
    }
    peers_nats_t q = { &run, url };
    if (pthread_create(&cons_t, NULL, peers_nats_consumer_main, &q) != 0) {
        peers_fail(r, "consumer thread");
        goto done;
    }
    cons_started = 1;
    if (peers_wait_consumer(&run) != 0)
        goto done;

    size_t n = p->count;
    for (size_t i = 0; i < n; i++) {
        run.sent_ns[i] = peers_now_ns();
        /* blocks (up to StallWait) while `window` publishes are unconfirmed */
        st = js_PublishAsync(js, PEERS_NATS_SUBJECT, p->data[i], (int)p->len[i], NULL);
        if (st != NATS_OK) {
            peers_run_fail(&run, "nats publish %zu: %s", i, natsStatus_GetText(st));
            goto done;
        }
        if ((i & 1023) == 0 && peers_timed_out(&run)) {
            peers_run_fail(&run, "nats producer: timeout with %zu of %zu sent", i, n);
            goto done;
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = (int64_t)(o->timeout_s * 1000);
    st = js_PublishAsyncComplete(js, &po);
    if (st != NATS_OK) {
        peers_run_fail(&run, "nats publish complete: %s", natsStatus_GetText(st));
        goto done;
    }
    /* the pending count drops before the callback runs: wait for the callbacks too */
    while (atomic_load(&pub.acked) + atomic_load(&pub.failed) < n && !peers_timed_out(&run))
        usleep(100);
    if (atomic_load(&pub.acked) < n) {
        peers_run_fail(&run, "nats: %zu of %zu publishes confirmed", atomic_load(&pub.acked),
                       n);
        goto done;
    }
    run.producer_done = peers_now_ns();

done:
    if (r->state == PEERS_FAILED)
        atomic_store(&run.abort, 1);
    if (cons_started)
        pthread_join(cons_t, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    peers_run_finish(&run);
    return r->state == PEERS_OK ? 0 : -1;
}
#endif /* CPX_BENCH_NATS */

/* ------------------------------------------------------------------ payloads, table */

/* count payloads of size bytes from a seeded generator (xorshift: reproducible, not
 * compressible). Caller owns the result and frees it with peers_payloads_free. */
PEERS_FN int peers_payloads_random(peers_payloads_t *out, size_t count, size_t size,
                                 uint64_t seed)
{
    memset(out, 0, sizeof *out);
    uint8_t **data = calloc(count ? count : 1, sizeof *data);
    size_t *len = calloc(count ? count : 1, sizeof *len);
    uint8_t *block = malloc(count > 0 && size > 0 ? count * size : 1);
    if (!data || !len || !block) {
        free(data);
        free(len);
        free(block);
        return -1;
    }
    uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < count * size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        block[i] = (uint8_t)x;
    }
    for (size_t i = 0; i < count; i++) {
        data[i] = block + i * size;
        len[i] = size;
    }
    out->count = count;
    out->data = (const uint8_t *const *)data;
    out->len = len;
    return 0;
}

/* count realistic payloads: cpx_synth discovery reports (about 1 KiB, every category,
 * Chinese narratives) with a dummy signature attached, encoded as cpx.v1.Envelope —
 * deterministic for a seed. Caller owns the result and frees it with
 * peers_payloads_free. Returns -1 when memory runs out. */
PEERS_FN int peers_payloads_synth(peers_payloads_t *out, size_t count, uint64_t seed)
{
    memset(out, 0, sizeof *out);
    uint8_t **data = calloc(count ? count : 1, sizeof *data);
    size_t *len = calloc(count ? count : 1, sizeof *len);
    cpx_synth_t *syn = cpx_synth_new(seed);
    size_t total = 0, made = 0;
    uint8_t *block = NULL;
    if (!data || !len || !syn)
        goto fail;
    /* 2026-01-01T00:00:00Z: fixed, so the bytes do not depend on the day of the run */
    const int64_t created_ms = 1767225600000LL;
    for (; made < count; made++) {
        cpx_envelope_t *env = cpx_synth_discovery(syn, created_ms + (int64_t)made);
        int rc = env ? cpx_synth_dummy_sign(env) : -1;
        if (rc == 0)
            rc = cpx_encode(env, &data[made], &len[made]);
        cpx_msg_free(env);
        if (rc != 0)
            goto fail;
        total += len[made];
    }
    /* one block, so peers_payloads_free treats both kinds alike */
    block = malloc(total ? total : 1);
    if (!block)
        goto fail;
    for (size_t i = 0, off = 0; i < count; i++) {
        memcpy(block + off, data[i], len[i]);
        free(data[i]);
        data[i] = block + off;
        off += len[i];
    }
    cpx_synth_destroy(&syn);
    out->count = count;
    out->data = (const uint8_t *const *)data;
    out->len = len;
    return 0;
fail:
    for (size_t i = 0; data && i < made; i++)
        free(data[i]);
    free(data);
    free(len);
    cpx_synth_destroy(&syn);
    return -1;
}

/* Mean payload size, for the table's heading. */
PEERS_FN double peers_payloads_mean(const peers_payloads_t *p)
{
    double sum = 0;
    for (size_t i = 0; i < p->count; i++)
        sum += (double)p->len[i];
    return p->count ? sum / (double)p->count : 0;
}

/* Frees payloads from peers_payloads_random; accepts an empty set. */
PEERS_FN void peers_payloads_free(peers_payloads_t *p)
{
    if (p->count)
        free((void *)p->data[0]);
    free((void *)p->data);
    free((void *)p->len);
    memset(p, 0, sizeof *p);
}

PEERS_FN void peers_print_header(FILE *out)
{
    fprintf(out, "%-10s %8s %8s %11s %11s %11s %11s  %s\n", "peer", "msgs", "msgs/s",
            "deliv p50us", "deliv p99us", "conf p50us", "conf p99us", "guarantee");
}

/* One table row; a failed or skipped peer prints its reason instead of figures. */
PEERS_FN void peers_print_row(FILE *out, const peers_result_t *r)
{
    if (r->state == PEERS_OK)
        fprintf(out, "%-10s %8zu %8.0f %11.0f %11.0f %11.0f %11.0f  %s\n", r->peer,
                r->count, r->rate, r->deliver_p50_us, r->deliver_p99_us, r->confirm_p50_us,
                r->confirm_p99_us, r->guarantee);
    else
        fprintf(out, "%-10s %8s %8s  %s: %s\n", r->peer, "-", "-",
                r->state == PEERS_FAILED ? "FAILED" : "skipped", r->error);
}

#endif /* CPX_BENCH_PEERS_IMPL_H */
