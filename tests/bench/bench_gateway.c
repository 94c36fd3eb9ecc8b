/* bench_gateway — durable, audited throughput of a real cpx-gateway process.
 *
 * Generator-made discovery reports (~1 KiB), signed by the sender (batches of 100 with
 * one root signature, or one signature each), fsync on, acknowledged to the sender and
 * confirmed by the recipient (DeliveryAck TAKEN). Reported next to bare CURVE
 * DEALER->ROUTER->DEALER forwarding of the same frames in the same run (peers_impl.h).
 * Also: ack latency at a steady offered rate, and the gateway's resident memory with N
 * messages waiting for an offline department.
 *
 *   bench_gateway [--gateway PATH] [--count N] [--rate R --seconds S] [--rss N] [--skip-peers]
 *                 [--zmq-count N] [--signer process|in-process] [--flows ...] [--rounds N]
 *
 * --rounds N repeats the flows and the peers N times (a fresh gateway store each round,
 * as each peer starts a fresh server) and ends with each ratio's median and range over
 * the rounds: the host's speed drifts over minutes, and one round compares the gateway
 * with each peer only once.
 *
 * --signer in-process runs the gateway with its signing key loaded in-process (the
 * pre-privilege-separation layout) to measure what the cpx-signer round trips cost.
 *
 * Peers (tests/bench/peers_impl.h) run on the per-message-signed frames: bare CURVE
 * forwarding (--zmq-count messages, default max(10 x count/2, 200000), the frames
 * repeated) and, when built with CPX_BENCH_RABBITMQ / CPX_BENCH_NATS, RabbitMQ and NATS
 * JetStream (count/2 messages), each with what it guarantees at confirm.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "dealer.h"
#include "peers_impl.h"
#include "cpx/audit.h"
#include "cpx/client.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/registry.h"
#include "cpx/store.h"
#include "cpx/synth.h"

static char g_dir[512], g_gw_bin[1100];

static const char *dirname_of(const char *p)
{
    static char d[1024];
    snprintf(d, sizeof d, "%s", p);
    char *slash = strrchr(d, '/');
    if (!slash)
        return ".";
    *slash = '\0';
    return d;
}
static pid_t g_gw_pid;

static void die(const char *what)
{
    fprintf(stderr, "bench_gateway: %s\n", what);
    if (g_gw_pid > 0)
        kill(g_gw_pid, SIGKILL);
    exit(1);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        die("write key file");
    close(fd);
}

/* DEPT.curve.key/.pub and DEPT.sign.key; returns the signing key. */
static cpx_key_t *make_keys(const char *dept, uint8_t curve_raw[32])
{
    char pub[41], sec[41], line[64], name[128], p[1024];
    zmq_curve_keypair(pub, sec);
    snprintf(line, sizeof line, "%s\n", sec);
    snprintf(name, sizeof name, "%s.curve.key", dept);
    write_file(name, line, 0600);
    snprintf(line, sizeof line, "%s\n", pub);
    snprintf(name, sizeof name, "%s.curve.pub", dept);
    write_file(name, line, 0644);
    if (curve_raw)
        zmq_z85_decode(curve_raw, pub);
    cpx_key_t *k = cpx_key_generate();
    snprintf(p, sizeof p, "%s/%s.sign.key", g_dir, dept);
    if (!k || cpx_key_save_private(k, p))
        die("signing key");
    return k;
}

static void enroll(const char *data, cpx_key_t *gw_key, const char *dept, const uint8_t curve[32],
                   const cpx_key_t *sign)
{
    MDB_env *env;
    if (cpx_store_open(data, (size_t)16 << 30, 0, &env))
        die("store");
    cpx_registry_t *reg = cpx_registry_open(env);
    cpx_audit_t *audit = cpx_audit_open(env);
    MDB_txn *txn;
    uint8_t raw[32];
    cpx_key_public_raw(sign, raw);
    if (!reg || !audit || mdb_txn_begin(env, NULL, 0, &txn) ||
        cpx_registry_enroll(reg, txn, audit, dept, curve, raw, NULL, wall_ms()) ||
        cpx_audit_sign_head(audit, txn, gw_key, wall_ms(), NULL) || mdb_txn_commit(txn))
        die("enroll");
    cpx_audit_committed(audit);
    cpx_audit_destroy(&audit);
    cpx_registry_destroy(&reg);
    mdb_env_close(env);
}

static char g_endpoint[256];

static void start_gateway(void)
{
    char cfg[1024], ep[1024];
    snprintf(cfg, sizeof cfg, "%s/gateway.yaml", g_dir);
    snprintf(ep, sizeof ep, "%s/data/gateway.endpoint", g_dir);
    unlink(ep);
    g_gw_pid = fork();
    if (g_gw_pid == 0) {
        char logp[1024];
        snprintf(logp, sizeof logp, "%s/gateway.log", g_dir);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execl(g_gw_bin, g_gw_bin, "--config", cfg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(ep, "r");
        if (f) {
            int ok = fgets(g_endpoint, sizeof g_endpoint, f) != NULL;
            fclose(f);
            if (ok) {
                g_endpoint[strcspn(g_endpoint, "\n")] = '\0';
                return;
            }
        }
        usleep(25000);
    }
    die("gateway did not start (see its log)");
}

static void stop_gateway(void)
{
    if (g_gw_pid <= 0)
        return;
    kill(g_gw_pid, SIGTERM);
    waitpid(g_gw_pid, NULL, 0);
    g_gw_pid = 0;
}

/* VmRSS, or with field "RssAnon:"/"RssFile:" that part (LMDB's map is file-backed). */
static long gateway_mem_kib(const char *field)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)g_gw_pid);
    FILE *f = fopen(p, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            kib = strtol(line + strlen(field), NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

static long gateway_rss_kib(void)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)g_gw_pid);
    FILE *f = fopen(p, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* ---- workload ---------------------------------------------------------------------- */

typedef struct frames {
    size_t n_frames, n_env;
    uint8_t **data;
    size_t *len;
    size_t *env_in_frame;
    uint8_t (*ids)[16];
} frames_t;

/* n reports from POLICE (recipients: to, or none), signed per batch of `batch` (1 = per message). */
static frames_t make_frames(size_t n, size_t batch, const cpx_key_t *key, const char *to, uint64_t seed)
{
    frames_t f = {0};
    f.n_env = n;
    f.n_frames = (n + batch - 1) / batch;
    f.data = calloc(f.n_frames, sizeof *f.data);
    f.len = calloc(f.n_frames, sizeof *f.len);
    f.env_in_frame = calloc(f.n_frames, sizeof *f.env_in_frame);
    f.ids = calloc(n, sizeof *f.ids);
    cpx_synth_t *syn = cpx_synth_new(seed);
    cpx_envelope_t **envs = calloc(batch, sizeof *envs);
    if (!f.data || !f.len || !f.ids || !syn || !envs)
        die("memory");
    size_t done = 0;
    for (size_t fi = 0; fi < f.n_frames; fi++) {
        size_t k = n - done < batch ? n - done : batch;
        for (size_t i = 0; i < k; i++) {
            /* ordinary traffic only: a juvenile-offence report from POLICE is a sealed
             * matter, which this benchmark's gateway (no sealing policy) refuses */
            cpx_envelope_t *e = cpx_synth_ordinary_report(syn, wall_ms() - 1000, "POLICE");
            if (!e)
                die("synth");
            if (to) {
                e->recipients = calloc(1, sizeof *e->recipients);
                e->recipients[0] = strdup(to);
                e->n_recipients = 1;
            }
            memcpy(f.ids[done + i], e->message_id.data, 16);
            envs[i] = e;
        }
        if (batch == 1 ? cpx_envsign_sign(envs[0], key) : cpx_envsign_sign_batch(envs, k, key))
            die("sign");
        /* A batch is answered with one Acks frame (grouped_acks), as a bulk sender would ask. */
        if (cpx_client_encode_submit(envs, k, batch != 1 ? CPX_SUBMIT_BATCH | CPX_SUBMIT_GROUPED_ACKS : 0u,
                                     &f.data[fi], &f.len[fi]))
            die("encode");
        f.env_in_frame[fi] = k;
        for (size_t i = 0; i < k; i++)
            cpx_msg_free(envs[i]);
        done += k;
    }
    free(envs);
    cpx_synth_destroy(&syn);
    return f;
}

static void *open_sock(const char *dept)
{
    static void *ctx;
    if (!ctx)
        ctx = zmq_ctx_new();
    void *s = bench_dealer(ctx, g_dir, dept, g_endpoint);
    if (!s)
        die("connect");
    return s;
}

typedef struct recv_ctx {
    size_t want;
    size_t confirmed;
    double done_at;
    volatile int stop;
} recv_ctx_t;

/* What the recipient needs of one delivery to confirm it. */
typedef struct delivery_ref {
    uint64_t id;
    ProtobufCBinaryData message_id;
} delivery_ref_t;

/* One field at *pos of [0, len) (cpx_wire_field), with a length-delimited field's
 * payload as a pointer. -1 when malformed. */
static int wire_field(const uint8_t *b, size_t len, size_t *pos, uint32_t *num, uint64_t *v,
                      const uint8_t **pl)
{
    unsigned wire;
    size_t at = 0;
    if (cpx_wire_field(b, len, pos, num, &wire, v, &at))
        return -1;
    if (wire == 2)
        *pl = b + at;
    return 0;
}

/* Deliver{delivery_id 1, envelope 2 {message_id 1}} -> ref. */
static int deliver_ref(const uint8_t *b, size_t len, delivery_ref_t *ref)
{
    size_t pos = 0;
    uint32_t num;
    uint64_t v;
    const uint8_t *pl = NULL;
    memset(ref, 0, sizeof *ref);
    while (pos < len) {
        if (wire_field(b, len, &pos, &num, &v, &pl))
            return -1;
        if (num == 1)
            ref->id = v;
        else if (num == 2) {
            size_t ep = 0;
            uint32_t en;
            uint64_t ev;
            const uint8_t *epl = NULL;
            while (ep < v && !wire_field(pl, (size_t)v, &ep, &en, &ev, &epl))
                if (en == 1) {
                    ref->message_id = (ProtobufCBinaryData){(size_t)ev, (uint8_t *)epl};
                    break;
                }
        }
    }
    return ref->id && ref->message_id.len ? 0 : -1;
}

/* The deliveries of a ServerFrame deliver (3) or deliveries (6) frame, read from the
 * wire as a broker benchmark's consumer takes its payload: without decoding the
 * envelopes (the peers' consumers decode nothing either). Returns how many. */
static size_t delivery_refs(const uint8_t *b, size_t len, delivery_ref_t *refs, size_t max)
{
    size_t pos = 0, n = 0;
    uint32_t num;
    uint64_t v;
    const uint8_t *pl = NULL;
    if (wire_field(b, len, &pos, &num, &v, &pl) || pos != len)
        return 0;
    if (num == 3)
        return deliver_ref(pl, (size_t)v, &refs[0]) ? 0 : 1;
    if (num != 6)
        return 0;
    size_t dp = 0;
    uint32_t dn;
    uint64_t dv;
    const uint8_t *dpl = NULL;
    while (dp < v && n < max && !wire_field(pl, (size_t)v, &dp, &dn, &dv, &dpl))
        if (dn == 1 && !deliver_ref(dpl, (size_t)dv, &refs[n]))
            n++;
    return n;
}

/* The delivery ids a recipient has counted: an open-addressing set (ids start at 1, so
 * 0 marks a free slot) of at least twice the flow's size. Delivery ids keep growing
 * across flows and rounds on one gateway, so they cannot index a table of this flow's
 * size. */
typedef struct id_set {
    uint64_t *slot;
    size_t mask;
} id_set_t;

static int id_set_add(id_set_t *set, uint64_t id)
{
    size_t i = (size_t)(id * UINT64_C(0x9E3779B97F4A7C15) >> 20) & set->mask;
    while (set->slot[i] && set->slot[i] != id)
        i = (i + 1) & set->mask;
    if (set->slot[i])
        return 0;
    set->slot[i] = id;
    return 1;
}

/* Confirms the n deliveries of one frame (TAKEN) in one DeliveryAcks frame; counts
 * the distinct ones. */
static void confirm(void *s, const delivery_ref_t *d, size_t n, id_set_t *seen, recv_ctx_t *rc)
{
    static Cpx__V1__DeliveryAck da[CPX_MAX_GROUPED];
    static Cpx__V1__DeliveryAck *dp[CPX_MAX_GROUPED];
    static uint8_t buf[CPX_MAX_GROUPED * 40 + 16];
    if (n > CPX_MAX_GROUPED)
        n = CPX_MAX_GROUPED;
    for (size_t i = 0; i < n; i++) {
        cpx__v1__delivery_ack__init(&da[i]);
        da[i].delivery_id = d[i].id;
        da[i].message_id = d[i].message_id;
        da[i].status = CPX__V1__DELIVERY_STATUS__TAKEN;
        dp[i] = &da[i];
        if (da[i].delivery_id && id_set_add(seen, da[i].delivery_id))
            rc->confirmed++;
    }
    Cpx__V1__DeliveryAcks das = CPX__V1__DELIVERY_ACKS__INIT;
    das.n_acks = n;
    das.acks = dp;
    cpx_client_frame_t cf = CPX__V1__CLIENT_FRAME__INIT;
    if (n == 1) {
        cf.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK;
        cf.delivery_ack = &da[0];
    } else {
        cf.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS;
        cf.delivery_acks = &das;
    }
    size_t len;
    if (!cpx_encode_into(&cf, buf, sizeof buf, &len))
        zmq_send(s, buf, len, 0);
}

/* The recipient: confirms every delivery (TAKEN) until `want` distinct ones. It reads
 * Deliveries frames (its heartbeats say so) and confirms each with one DeliveryAcks. */
static void *receiver(void *arg)
{
    recv_ctx_t *rc = arg;
    void *s = open_sock("CIVIL_AFFAIRS");
    size_t cap = 1024;
    while (cap < 2 * rc->want + 1024)
        cap *= 2;
    id_set_t seen = {calloc(cap, sizeof *seen.slot), cap - 1};
    if (!seen.slot)
        die("memory");
    double last_hb = 0;
    while (!rc->stop && rc->confirmed < rc->want) {
        double t = now_s();
        if (t - last_hb > 0.2) {
            uint8_t hb[16];
            cpx_client_frame_t cf = CPX__V1__CLIENT_FRAME__INIT;
            Cpx__V1__Heartbeat h = CPX__V1__HEARTBEAT__INIT;
            h.deliveries_per_frame = CPX_MAX_GROUPED;
            cf.frame_case = CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT;
            cf.heartbeat = &h;
            size_t len;
            cpx_encode_into(&cf, hb, sizeof hb, &len);
            zmq_send(s, hb, len, 0);
            last_hb = t;
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0) {
            static delivery_ref_t refs[CPX_MAX_GROUPED];
            size_t n = delivery_refs(zmq_msg_data(&m), zmq_msg_size(&m), refs, CPX_MAX_GROUPED);
            if (n)
                confirm(s, refs, n, &seen, rc);
        }
        zmq_msg_close(&m);
    }
    rc->done_at = now_s();
    free(seen.slot);
    /* Let the last DeliveryAcks leave: with linger 0 they were dropped, the gateway
     * redelivered those messages to the next flow's recipient, and that flow counted
     * them as its own (e.g. "20065/20000 confirmed", while the log held each delivery
     * acknowledged exactly once). */
    int linger = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sends all frames (at most `window` unacknowledged envelopes), waits for every Ack. */
/* Ack latency quantiles of a paced flow, in ms: p50, p90, p99, p99.9, max. */
#define N_QUANT 5
static const double quant[N_QUANT] = {0.5, 0.9, 0.99, 0.999, 1.0};

static double send_all(void *s, const frames_t *f, size_t window, double *lat_q,
                       double rate)
{
    size_t acked = 0, sent_env = 0, fi = 0, nacks = 0;
    double *sent_at = rate > 0 ? calloc(f->n_env, sizeof *sent_at) : NULL;
    double *lat = rate > 0 ? calloc(f->n_env, sizeof *lat) : NULL;
    size_t n_lat = 0;
    double t0 = now_s();
    while (acked + nacks < f->n_env) {
        while (fi < f->n_frames && sent_env - acked - nacks < window) {
            if (rate > 0 && now_s() < t0 + (double)fi / rate)
                break;
            if (sent_at)
                sent_at[fi] = now_s();
            zmq_send(s, f->data[fi], f->len[fi], 0);
            sent_env += f->env_in_frame[fi++];
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        /* Paced: wake every millisecond and send what is due. A zero timeout would spin
         * a core that the gateway needs on a 2-core machine and inflate its latency. */
        zmq_poll(&it, 1, rate > 0 ? 1 : 100);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0) {
            cpx_server_frame_t *sf = NULL;
            if (!cpx_decode_server_frame(zmq_msg_data(&m), zmq_msg_size(&m), &sf)) {
                if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACKS) {
                    acked += sf->acks->n_acks;  /* batches only: no latency sampled */
                } else if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACK) {
                    acked++;
                    if (lat) {  /* per-message frames: find the frame by id (sequential scan window) */
                        for (size_t j = n_lat; j < fi; j++)
                            if (!memcmp(f->ids[j], sf->ack->message_id.data, 16)) {
                                lat[n_lat++] = now_s() - sent_at[j];
                                break;
                            }
                    }
                } else if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_NACK) {
                    nacks++;
                    if (nacks < 5)
                        fprintf(stderr, "nack code=%d %s\n", sf->nack->code,
                                sf->nack->n_errors ? sf->nack->errors[0]->message : "");
                }
            }
            cpx_msg_free(sf);
        }
        zmq_msg_close(&m);
    }
    double el = now_s() - t0;
    if (lat && n_lat) {
        qsort(lat, n_lat, sizeof *lat, cmp);
        for (int k = 0; k < N_QUANT; k++) {
            size_t at = (size_t)(n_lat * quant[k]);
            lat_q[k] = lat[at < n_lat ? at : n_lat - 1] * 1000;
        }
    }
    free(sent_at);
    free(lat);
    if (nacks)
        fprintf(stderr, "bench_gateway: %zu nacks\n", nacks);
    return el;
}

static void free_frames(frames_t *f)
{
    for (size_t i = 0; i < f->n_frames; i++)
        free(f->data[i]);
    free(f->data);
    free(f->len);
    free(f->env_in_frame);
    free(f->ids);
}

static double run_flow(const frames_t *f, const char *label, double rate, double *rate_out,
                       double lat_out[N_QUANT])
{
    recv_ctx_t rc = {.want = f->n_env};
    pthread_t th;
    pthread_create(&th, NULL, receiver, &rc);
    usleep(300000);  /* the recipient is connected and online */
    void *s = open_sock("POLICE");
    double t0 = now_s(), q[N_QUANT] = {0};
    double ack_el = send_all(s, f, 20000, q, rate);
    double deadline = now_s() + 120;
    while (rc.confirmed < rc.want && now_s() < deadline)
        usleep(2000);
    rc.stop = 1;
    pthread_join(th, NULL);
    double el = (rc.done_at > t0 ? rc.done_at : now_s()) - t0;
    if (rate > 0)
        printf("%-34s offered %.0f msg/s: ack latency p50 %.2f ms, p99 %.2f ms (%zu msgs; "
               "p90 %.2f, p99.9 %.2f, max %.2f ms)\n", label, rate, q[0], q[2], f->n_env, q[1], q[3],
               q[4]);
    else
        printf("%-34s %8.0f msg/s acknowledged+confirmed (%zu msgs, acks %.2f s, all confirmed %.2f s, %zu/%zu confirmed)\n",
               label, f->n_env / el, f->n_env, ack_el, el, rc.confirmed, f->n_env);
    zmq_close(s);
    if (rate_out)
        *rate_out = f->n_env / el;
    if (lat_out)
        memcpy(lat_out, q, sizeof q);
    return el;
}

/* One round: the gateway's flows, then the peers on the same per-message frames. Every
 * round makes its own envelopes (new message ids), so no round measures another's
 * duplicates, which the gateway answers without writing anything. */
typedef struct round {
    double gw_batch, gw_single;
    double lat[N_QUANT];
    peers_result_t res[3];
} round_t;

static const char *const peer_names[3] = {"bare CURVE forwarding", "RabbitMQ", "NATS JetStream"};

static void run_round(round_t *rd, uint64_t r, size_t count, const char *flows, double lat_rate,
                      double lat_s, int skip_peers, size_t zmq_count, const cpx_key_t *pk)
{
    frames_t fb = make_frames(count, 100, pk, NULL, 1 + 10 * r);
    if (strstr(flows, "batch"))
        run_flow(&fb, "gateway, batch-signed (100/batch)", 0, &rd->gw_batch, NULL);
    size_t n_single = count / 2;
    frames_t fs = make_frames(n_single, 1, pk, NULL, 2 + 10 * r);
    if (strstr(flows, "single"))
        run_flow(&fs, "gateway, per-message signed", 0, &rd->gw_single, NULL);
    frames_t fl = make_frames((size_t)(lat_rate * lat_s), 1, pk, NULL, 3 + 10 * r);
    if (strstr(flows, "latency"))
        run_flow(&fl, "gateway, per-message signed", lat_rate, NULL, rd->lat);

    if (!skip_peers) {
        /* The same single-envelope frames through the peers. ZeroMQ is noisy over a
         * short run, so it gets zmq_count messages (the frames repeated). */
        size_t zn = zmq_count ? zmq_count : (fs.n_frames * 10 > 200000 ? fs.n_frames * 10 : 200000);
        const uint8_t **zd = calloc(zn, sizeof *zd);
        size_t *zl = calloc(zn, sizeof *zl);
        if (!zd || !zl)
            die("memory");
        for (size_t i = 0; i < zn; i++) {
            zd[i] = fs.data[i % fs.n_frames];
            zl[i] = fs.len[i % fs.n_frames];
        }
        peers_payloads_t zp = {.count = zn, .data = (const uint8_t *const *)zd, .len = zl};
        peers_payloads_t p = {.count = fs.n_frames, .data = (const uint8_t *const *)fs.data, .len = fs.len};
        peers_opts_t o = peers_opts_default();
        peers_result_t *res = rd->res;
        peers_run_zmq(&zp, &o, 1, &res[0]);
        char err[256];
        (void)err;
        (void)p;
#ifdef CPX_BENCH_RABBITMQ
        peers_server_t *rs = peers_rabbit_start(err, sizeof err);
        if (rs) {
            peers_run_rabbitmq(&p, &o, rs, &res[1]);
            peers_server_stop(rs);
        } else {
            fprintf(stderr, "bench_gateway: rabbitmq: %s\n", err);
        }
#endif
#ifdef CPX_BENCH_NATS
        peers_server_t *ns = peers_nats_start(err, sizeof err);
        if (ns) {
            peers_run_nats(&p, &o, ns, &res[2]);
            peers_server_stop(ns);
        } else {
            fprintf(stderr, "bench_gateway: nats: %s\n", err);
        }
#endif
        peers_print_header(stdout);
        for (int i = 0; i < 3; i++)
            if (res[i].rate > 0 || i == 0)
                peers_print_row(stdout, &res[i]);
        printf("gateway guarantee: acknowledged = committed to LMDB with fsync, in the signed log, "
               "and confirmed by the recipient's DeliveryAck\n");
        for (int i = 0; i < 3; i++) {
            if (res[i].rate > 0)
                printf("ratio to %-22s batch-signed %.2f, per-message signed %.2f\n", peer_names[i],
                       rd->gw_batch / res[i].rate, rd->gw_single / res[i].rate);
            else
                printf("ratio to %-22s not measured (%s)\n", peer_names[i],
                       res[i].error[0] ? res[i].error : "not built");
        }
        free(zd);
        free(zl);
    }
    free_frames(&fb);
    free_frames(&fs);
    free_frames(&fl);
    fflush(stdout);
}

/* The median of v[0..n) (n >= 1; sorts v), and its range in *lo, *hi. */
static double median(double *v, int n, double *lo, double *hi)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    *lo = v[0];
    *hi = v[n - 1];
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Over all rounds: each ratio's median and range, and the ack latency's. The host's
 * speed drifts over minutes, so the gateway and each peer are compared within a round
 * (measured minutes apart, in the same order each time) and the rounds summarised. */
static void print_medians(const round_t *rounds, int n, int skip_peers)
{
    double v[64];
    printf("## over %d rounds: median (min-max)\n", n);
    for (int q = 0; q < N_QUANT; q += 2) {
        for (int r = 0; r < n; r++)
            v[r] = rounds[r].lat[q];
        double lo, hi, med = median(v, n, &lo, &hi);
        if (hi > 0)
            printf("ack latency %-6s %.2f ms (%.2f-%.2f)\n",
                   q == 0 ? "p50" : q == 2 ? "p99" : "max", med, lo, hi);
    }
    for (int k = 0; k < 2; k++) {
        for (int r = 0; r < n; r++)
            v[r] = k ? rounds[r].gw_single : rounds[r].gw_batch;
        double lo, hi, med = median(v, n, &lo, &hi);
        printf("gateway %-14s %.0f msg/s\n", k ? "per-message" : "batch-signed", med);
    }
    for (int i = 0; i < 3 && !skip_peers; i++) {
        for (int k = 0; k < 2; k++) {
            int m = 0;
            for (int r = 0; r < n; r++)
                if (rounds[r].res[i].rate > 0)
                    v[m++] = (k ? rounds[r].gw_single : rounds[r].gw_batch) / rounds[r].res[i].rate;
            double lo, hi, med = m ? median(v, m, &lo, &hi) : 0;
            if (m)
                printf("ratio to %-22s %-13s %.2f (%.2f-%.2f over %d rounds)\n", peer_names[i],
                       k ? "per-message" : "batch-signed", med, lo, hi, m);
        }
    }
}

int main(int argc, char **argv)
{
    size_t count = 50000, rss_n = 0, zmq_count = 0;
    double lat_rate = 5000, lat_s = 3;
    int skip_peers = 0, n_rounds = 1;
    const char *signer = "process", *flows = "batch,single,latency";
    snprintf(g_gw_bin, sizeof g_gw_bin, "%.1024s/../gateway/cpx-gateway", dirname_of(argv[0]));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gateway") && i + 1 < argc) snprintf(g_gw_bin, sizeof g_gw_bin, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rss") && i + 1 < argc) rss_n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) lat_rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) lat_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--skip-peers")) skip_peers = 1;
        else if (!strcmp(argv[i], "--signer") && i + 1 < argc) signer = argv[++i];
        else if (!strcmp(argv[i], "--zmq-count") && i + 1 < argc) zmq_count = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--flows") && i + 1 < argc) flows = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) n_rounds = atoi(argv[++i]);
        else {
            n_rounds = 0;
            break;
        }
    }
    if (n_rounds < 1 || n_rounds > 9) {
        fprintf(stderr, "usage: bench_gateway [--gateway PATH] [--count N] [--rate R --seconds S] [--rss N] [--skip-peers] [--zmq-count N] [--signer process|in-process] [--flows batch,single,latency] [--rounds 1..9]\n");
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/cpx-bench-gw.XXXXXX");
    if (!mkdtemp(g_dir))
        die("mkdtemp");
    atexit(peers_cleanup_all);
    uint8_t cp[32], cc[32];
    cpx_key_t *gk = make_keys("GATEWAY", NULL);
    cpx_key_t *pk = make_keys("POLICE", cp);
    cpx_key_t *ck = make_keys("CIVIL_AFFAIRS", cc);
    char data[600], cfg[2048];
    snprintf(data, sizeof data, "%s/data", g_dir);
    enroll(data, gk, "POLICE", cp, pk);
    enroll(data, gk, "CIVIL_AFFAIRS", cc, ck);
    snprintf(cfg, sizeof cfg,
             "endpoint: tcp://127.0.0.1:0\ndata_dir: data\nmap_size: 16GiB\n"
             "keys:\n  curve_secret: GATEWAY.curve.key\n  signing_key: GATEWAY.sign.key\n"
             "  store_key: GATEWAY.store.key\n"
             "  signer: %s\n"
             "heartbeat_ms: 1000\noffline_after_ms: 10000\nin_flight: 16384\nqueue_limit: 3000000\n",
             signer);
    write_file("gateway.yaml", cfg, 0644);
    start_gateway();
    printf("# bench_gateway: gateway %s, store %s (fsync per commit), CURVE on every link, "
           "signing key %s\n", g_gw_bin, g_dir,
           strcmp(signer, "in-process") ? "in the cpx-signer process" : "in-process");

    round_t *rounds = calloc((size_t)n_rounds, sizeof *rounds);
    if (!rounds)
        die("memory");
    for (int r = 0; r < n_rounds; r++) {
        if (n_rounds > 1)
            printf("## round %d of %d\n", r + 1, n_rounds);
        if (r) {  /* a fresh store, as each peer gets a fresh server */
            stop_gateway();
            char cmd[700];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", data);
            if (system(cmd))
                die("rm data");
            enroll(data, gk, "POLICE", cp, pk);
            enroll(data, gk, "CIVIL_AFFAIRS", cc, ck);
            start_gateway();
        }
        run_round(&rounds[r], (uint64_t)r, count, flows, lat_rate, lat_s, skip_peers, zmq_count, pk);
    }
    if (n_rounds > 1)
        print_medians(rounds, n_rounds, skip_peers);
    free(rounds);

    if (rss_n) {
        /* rss_n messages for TOWN_HUASHI (never connects; CIVIL_AFFAIRS also gets a copy,
         * and is disconnected now): measure the gateway's resident memory */
        void *s = open_sock("POLICE");
        size_t chunk = 100000, done = 0;
        long rss0 = gateway_rss_kib();
        double t0 = now_s();
        while (done < rss_n) {
            size_t k = rss_n - done < chunk ? rss_n - done : chunk;
            frames_t fr = make_frames(k, 100, pk, "TOWN_HUASHI", 100 + done);
            double q[N_QUANT];
            send_all(s, &fr, 20000, q, 0);
            free_frames(&fr);
            done += k;
        }
        /* At the last Ack the sample lands anywhere in the gateway's one-second trim of
         * the pages its lookups touched (tens to hundreds of MiB of the LMDB map under
         * load); the waiting state is what the figure is about, so it is sampled again
         * once a few trims have run, and both are printed. */
        double ingest_s = now_s() - t0;
        double rss_last = gateway_rss_kib() / 1024.0, file_last = gateway_mem_kib("RssFile:") / 1024.0;
        struct timespec settle = {3, 0};
        nanosleep(&settle, NULL);
        printf("waiting messages: %zu for TOWN_HUASHI (+%zu for CIVIL_AFFAIRS, offline) in %.1f s; "
               "gateway RSS while they wait (3 s after the last Ack) %.1f MiB (was %.1f MiB before): "
               "anonymous %.1f MiB, file-backed LMDB map %.1f MiB; at the last Ack %.1f MiB "
               "(map %.1f MiB)\n",
               rss_n, rss_n, ingest_s, gateway_rss_kib() / 1024.0, rss0 / 1024.0,
               gateway_mem_kib("RssAnon:") / 1024.0, gateway_mem_kib("RssFile:") / 1024.0, rss_last,
               file_last);
        zmq_close(s);
    }
    stop_gateway();
    cpx_key_destroy(&gk);
    cpx_key_destroy(&pk);
    cpx_key_destroy(&ck);
    if (!getenv("CPX_KEEP_TMP")) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd)) {}
    }
    return 0;
}
