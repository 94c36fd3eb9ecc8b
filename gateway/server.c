/* server.c — the gateway loop: read a batch, one write transaction, commit, reply. */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ahead.h"
#include "gwkeycheck.h"
#include "http.h"
#include "metrics.h"
#include "caseindex.h"
#include "outbox.h"
#include "sealed.h"
#include "signerlink.h"
#include "prefill.h"
#include "syncer.h"
#include "verify.h"
#include "writer.h"
#include "cpx/client.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/str.h"

/* Submit bytes per cycle: bounds the transaction (LMDB keeps its dirty pages in heap
 * memory until commit, and looks each page up in that list), i.e. about 2,500 signed
 * reports of ~1.6 KiB in one group commit. 4 MiB measured ahead of 2 and 8 MiB in the
 * batch flow of bench_gateway (alternating runs, 80,000 messages). */
#define MAX_CYCLE_BYTES (4u << 20)
/* Frames held between reading and processing. The ROUTER socket fair-queues one message
 * per peer in turn, so if reading stopped at the cycle's budget, a recipient's small
 * DeliveryAcks would be read only as fast as a busy sender's large batches are
 * processed (one each per turn) and deliveries would stall behind the flood. Reading
 * goes on up to this bound instead; Submit frames past the cycle's budget wait, in
 * order, for the next cycle, while confirmations and heartbeats are processed now. */
#define MAX_HELD_BYTES (64u << 20)
#define MAX_REFUSALS_PER_CYCLE 1024
#define RECENT_BYTES (16u << 20)
#define RECENT_ENTRIES 65536u
#define IDLE_STATUS_FACTOR 10

static volatile sig_atomic_t stop_requested;

void cpx_gw_server_stop(void)
{
    stop_requested = 1;
}

int64_t cpx_gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- out list -------------------------------------------------------------------- */

cpx_gw_out_t *cpx_gw_out_push(cpx_gw_t *self, cpx_gw_out_kind kind, const uint8_t *rid,
                              size_t rid_len)
{
    if (self->n_out == self->cap_out) {
        size_t cap = self->cap_out ? self->cap_out * 2 : 1024;
        cpx_gw_out_t *n = realloc(self->out, cap * sizeof *n);
        if (!n)
            return NULL;
        self->out = n;
        self->cap_out = cap;
    }
    cpx_gw_out_t *o = &self->out[self->n_out++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->rid_len = rid_len < CPX_GW_MAX_RID ? rid_len : CPX_GW_MAX_RID;
    memcpy(o->rid, rid, o->rid_len);
    return o;
}

int cpx_gw_out_frame(cpx_gw_t *self, const uint8_t *rid, size_t rid_len,
                     const cpx_server_frame_t *frame, cpx_gw_out_kind kind)
{
    cpx_gw_out_t *o = cpx_gw_out_push(self, kind, rid, rid_len);
    if (!o)
        return CPX_ERR_NOMEM;
    int rc = cpx_encode(frame, &o->buf, &o->len);
    if (rc)
        self->n_out--;
    return rc;
}

int cpx_gw_leaf(cpx_gw_t *self, cpx_audit_leaf_t *leaf, uint64_t *seq)
{
    if (!leaf->time_ms)
        leaf->time_ms = self->now_ms;
    int rc = cpx_audit_append(self->audit, self->txn, leaf, seq);
    if (!rc) {
        self->appended++;
        cpx_gw_metrics_leaf(self->metrics, leaf);
    }
    return rc;
}

static void send_frame(cpx_gw_t *self, const uint8_t *rid, size_t rid_len, const void *buf,
                       size_t len)
{
    /* A reply that cannot be queued is dropped: the client resends (idempotent) and the
     * gateway resends unconfirmed deliveries. Nothing durable depends on it. */
    if (zmq_send(self->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(self->router, buf, len, ZMQ_DONTWAIT);
}

static void free_sent(void *data, void *base)
{
    (void)data;
    free(base);
}

/* As send_frame, for [data, data + len) inside the malloc'd block base, which is handed
 * to ZeroMQ instead of copied: it is freed once sent (or dropped), from ZeroMQ's thread.
 * Deliveries make up most of the bytes a gateway sends, and zmq_send's copy of them was
 * about 5% of the server thread (with a page fault for every fresh page it copied into). */
static void send_frame_owned(cpx_gw_t *self, const uint8_t *rid, size_t rid_len, void *base,
                             uint8_t *data, size_t len)
{
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, data, len, free_sent, base)) {
        free(base);
        return;
    }
    if (zmq_send(self->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&m, self->router, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m);  /* frees base */
}

/* ServerFrame{ack} of an OUT_ACK into buf (256 bytes hold any). tree_size: the head
 * this cycle signed, for Acks that do not carry their own. */
#define ACK_FRAME_MAX 256
static int encode_ack(const cpx_gw_out_t *o, uint64_t tree_size, uint8_t *buf, size_t *len)
{
    Cpx__V1__Ack ack = CPX__V1__ACK__INIT;
    ack.message_id = (ProtobufCBinaryData){o->message_id_len, (uint8_t *)o->message_id};
    ack.leaf_seq = o->leaf_seq;
    ack.tree_size = o->tree_size ? o->tree_size : tree_size;
    ack.case_id = (char *)o->case_id;
    ack.duplicate = o->duplicate;
    cpx_server_frame_t f = CPX__V1__SERVER_FRAME__INIT;
    f.frame_case = CPX__V1__SERVER_FRAME__FRAME_ACK;
    f.ack = &ack;
    return cpx_encode_into(&f, buf, ACK_FRAME_MAX, len);
}

static void send_out(cpx_gw_t *self, cpx_gw_out_t *o, uint64_t tree_size)
{
    if (o->kind == OUT_ACK) {
        uint8_t buf[ACK_FRAME_MAX];
        size_t len;
        if (!encode_ack(o, tree_size, buf, &len))
            send_frame(self, o->rid, o->rid_len, buf, len);
        return;
    }
    if (o->buf) {
        send_frame_owned(self, o->rid, o->rid_len, o->buf, o->buf, o->len);
        o->buf = NULL;
    }
}

/* ---- grouped replies ------------------------------------------------------------ */

/* Room for a frame of `need` bytes (plus its tag and length) in self->group_buf, which
 * each group sent hands over to ZeroMQ (send_group). */
static int group_reserve(cpx_gw_t *self, size_t need)
{
    need += 16;
    if (need <= self->group_cap)
        return 1;
    size_t cap = self->group_cap ? self->group_cap : 65536;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(self->group_buf, cap);
    if (!b)
        return 0;
    self->group_buf = b;
    self->group_cap = cap;
    return 1;
}

/* Sends group_buf[16 .. 16 + body) as ServerFrame field `field` (an Acks or a
 * Deliveries message): its tag and length go just before the body. The buffer goes
 * with it. */
static void send_group(cpx_gw_t *self, const uint8_t *rid, size_t rid_len, unsigned field,
                       size_t body)
{
    uint8_t head[16];
    size_t hl = 0;
    head[hl++] = (uint8_t)(field << 3 | 2);
    hl += cpx_varint_put(head + hl, body);
    uint8_t *base = self->group_buf, *start = base + 16 - hl;
    memcpy(start, head, hl);
    self->group_buf = NULL;
    self->group_cap = 0;
    send_frame_owned(self, rid, rid_len, base, start, hl + body);
}

/* The Acks of grouped Submit out[i].group, from i on (a Submit's answers are pushed
 * together; the first Ack of another Submit ends them), as Acks frames of at most
 * CPX_MAX_GROUPED. Each Ack is encoded as ServerFrame{ack}, whose bytes (field 1,
 * length-delimited) are exactly those of one element of Acks.acks (also field 1). The
 * Acks sent are marked done (OUT_RAW, no bytes); Nacks among them go in their turn. */
static void send_ack_group(cpx_gw_t *self, cpx_gw_out_t *out, size_t n, size_t i,
                           uint64_t tree_size)
{
    const uint32_t g = out[i].group;
    const uint8_t *rid = out[i].rid;
    size_t rid_len = out[i].rid_len, body = 0, count = 0;
    for (size_t j = i; j < n; j++) {
        cpx_gw_out_t *o = &out[j];
        if (o->kind != OUT_ACK)
            continue;
        if (o->group != g)
            break;
        size_t len;
        if (count == CPX_MAX_GROUPED) {
            send_group(self, rid, rid_len, CPX__V1__SERVER_FRAME__FRAME_ACKS, body);
            body = count = 0;
        }
        if (!group_reserve(self, body + ACK_FRAME_MAX) ||
            encode_ack(o, tree_size, self->group_buf + 16 + body, &len))
            continue;  /* dropped, as any reply that cannot be sent: the client resends */
        body += len;
        count++;
        o->kind = OUT_RAW;
    }
    if (count)
        send_group(self, rid, rid_len, CPX__V1__SERVER_FRAME__FRAME_ACKS, body);
}

/* A ServerFrame{deliver} as encoded for one delivery: tag byte 0x1a, then the length
 * of the rest. Its bytes with the tag turned into 0x0a are one element of
 * Deliveries.deliveries. */
static int is_deliver_frame(const cpx_gw_out_t *o)
{
    if (o->kind != OUT_DELIVER || !o->buf || o->len < 2 || o->buf[0] != ((3 << 3) | 2))
        return 0;
    uint64_t v;
    size_t k = 1;
    return !cpx_varint_get(o->buf, o->len, &k, &v) && v == o->len - k;
}

/* Consecutive deliveries to one connection that reads Deliveries frames, from i on:
 * one frame of at most out[i].group deliveries and CPX_MAX_FRAME_BYTES. Returns the
 * index after the last one sent. */
static size_t send_deliver_group(cpx_gw_t *self, cpx_gw_out_t *out, size_t n, size_t i)
{
    const cpx_gw_out_t *first = &out[i];
    size_t end = i, body = 0;
    while (end < n && end - i < first->group && is_deliver_frame(&out[end]) &&
           out[end].rid_len == first->rid_len &&
           !memcmp(out[end].rid, first->rid, first->rid_len) &&
           body + out[end].len <= CPX_MAX_FRAME_BYTES - 16)
        body += out[end++].len;
    if (end - i < 2 || !group_reserve(self, body)) {
        /* alone (or not in the usual form): a Deliver frame as it is */
        send_out(self, &out[i], 0);
        return i + 1;
    }
    uint8_t *p = self->group_buf + 16;
    for (size_t j = i; j < end; j++) {
        memcpy(p, out[j].buf, out[j].len);
        *p = (1 << 3) | 2;
        p += out[j].len;
    }
    send_group(self, first->rid, first->rid_len, CPX__V1__SERVER_FRAME__FRAME_DELIVERIES, body);
    return end;
}

/* A cycle's replies, in order; grouped where the client asked for it. */
static void send_outs(cpx_gw_t *self, cpx_gw_out_t *out, size_t n, uint64_t tree_size)
{
    for (size_t i = 0; i < n;) {
        if (out[i].kind == OUT_ACK && out[i].group) {
            send_ack_group(self, out, n, i, tree_size);
            i++;
        } else if (out[i].kind == OUT_DELIVER && out[i].group > 1) {
            i = send_deliver_group(self, out, n, i);
        } else {
            send_out(self, &out[i], tree_size);
            i++;
        }
    }
}

static void out_clear(cpx_gw_t *self)
{
    for (size_t i = 0; i < self->n_out; i++)
        free(self->out[i].buf);
    self->n_out = 0;
    if (self->seen_idx)  /* NULL when the start failed before allocating it */
        memset(self->seen_idx, 0, self->seen_cap * sizeof *self->seen_idx);
}

/* ---- durability of the last commit ----------------------------------------------- */

/* Why the flush of cycle N may run while cycle N+1 is built and committed (LMDB 0.9,
 * environment opened with MDB_NOMETASYNC, no MDB_WRITEMAP):
 *  - mdb_txn_commit(N) writes N's pages, fdatasyncs them, then writes N's meta page
 *    into slot N % 2 without a flush. The pages are on disk before any meta points to
 *    them, so a power cut leaves an intact database; it may undo N (the other slot
 *    holds N-1, durable). LMDB's MDB_NOSYNC instead writes the meta right after the
 *    pages with no flush between them; without a filesystem that keeps write order a
 *    power cut could leave meta N on disk ahead of its pages — a corrupt store — so
 *    it is not used here.
 *  - The sync thread's mdb_env_sync(env, 1) (fdatasync) makes meta N durable. Only
 *    then do N's Acks, Nacks, deliveries and dashboard pages leave the gateway: an
 *    Ack still means "survives power loss".
 *  - Meanwhile N+1 reads, verifies and writes in memory. Its pages come from pages
 *    freed by transactions before N (LMDB reuses nothing newer than the previous
 *    transaction's frees), so snapshot N-1, the durable one, is untouched.
 *  - Committing N+1 writes its meta into slot (N+1) % 2 — over N-1. Before that, N
 *    must be durable, or one power cut could leave neither slot usable. It is: the
 *    commit of N+1 runs its own fdatasync (N+1's pages, and meta N, written before)
 *    before it writes that meta page — LMDB's documented NOMETASYNC behaviour (the
 *    deferred meta flush happens at "the next non-read-only commit or mdb_env_sync").
 *    So N+1 would not need to wait for the sync thread to commit; it waits anyway, just
 *    before its commit, for latency: N's replies go out the moment N is durable instead
 *    of after N+1's commit and its fdatasync (which measured p50 ~50 ms instead of a
 *    few at 5,000 msg/s). The flush of N runs while N+1 reads, decodes, verifies and
 *    writes, so the wait is short or nil; per cycle the server thread pays one fdatasync
 *    (its commit's pages) instead of LMDB's two. A cycle that fails or is abandoned, and
 *    the shutdown, also wait for the pending flush before sending anything. With
 *    MDB_NOSYNC none of this would hold: its commits run no flush. */
static void pending_clear(cpx_gw_t *self)
{
    for (size_t i = 0; i < self->n_out_pending; i++)
        free(self->out_pending[i].buf);
    self->n_out_pending = 0;
    self->pending_view = 0;
}

/* Failpoint for tests (tests/integration/test_gateway_syncfail.py): with
 * $CPX_FAILPOINT_SYNC_FAIL set, the flush of a commit that accepted a message reports
 * EIO, as a failing disk would. Unset in every deployment. */
static int failpoint_sync(const cpx_gw_t *self)
{
    static int read_env, on;
    if (!read_env) {
        on = getenv("CPX_FAILPOINT_SYNC_FAIL") != NULL;
        read_env = 1;
    }
    for (size_t i = 0; on && i < self->n_out_pending; i++)
        if (self->out_pending[i].kind == OUT_ACK && !self->out_pending[i].duplicate)
            return 1;
    return 0;
}

/* Waits for the flush of the last commit, then sends what that cycle answered and
 * releases its dashboard views. It runs before the next commit, so no other commit can
 * have taken the flush's I/O error. A failed flush leaves the commit's durability unknown:
 * nothing of it is sent and the caller stops the gateway (its supervisor restarts it
 * from what is on disk; the senders resend what was not acknowledged). */
static int flush_pending(cpx_gw_t *self)
{
    if (!cpx_gw_syncer_pending(self->syncer))
        return CPX_OK;
    int err = cpx_gw_syncer_wait(self->syncer);
    if (!err && failpoint_sync(self))
        err = EIO;
    if (err) {
        cpx_log_error("server", "msg=\"flushing the last commit failed; its replies are not sent\" "
                      "err=\"%s\" replies=%zu", mdb_strerror(err), self->n_out_pending);
        pending_clear(self);
        return CPX_ERR_STORE;
    }
    send_outs(self, self->out_pending, self->n_out_pending, self->pending_head);
    cpx_gw_ops_durable(self, self->pending_view);
    pending_clear(self);
    return CPX_OK;
}

/* During the next cycle: the last commit's replies go out as soon as its flush has
 * returned, instead of waiting for this cycle to reach its own commit (that wait was
 * most of the ack latency of a busy gateway). A failed flush is kept in *err for the
 * commit point, which then abandons the cycle. */
static void flush_if_done(cpx_gw_t *self, int *err)
{
    if (!*err && cpx_gw_syncer_pending(self->syncer) && cpx_gw_syncer_done(self->syncer))
        *err = flush_pending(self);
}

/* After a commit: its replies wait (swapped out of the cycle's list) for the flush
 * begun here. flush_pending ran before the commit, so nothing else is waiting. */
static void hold_pending(cpx_gw_t *self, uint64_t head_size, uint64_t view)
{
    cpx_gw_out_t *spare = self->out_pending;
    size_t spare_cap = self->cap_out_pending;
    self->out_pending = self->out;
    self->n_out_pending = self->n_out;
    self->cap_out_pending = self->cap_out;
    self->out = spare;
    self->cap_out = spare_cap;
    self->n_out = 0;
    memset(self->seen_idx, 0, self->seen_cap * sizeof *self->seen_idx);
    self->pending_head = head_size;
    self->pending_view = view;
    cpx_gw_syncer_begin(self->syncer);
}

/* After a failed commit: every submission gets a retryable Nack; deliveries are not
 * sent (they were not recorded) and windows restart from the durable outbox. */
/* cycle(): nothing applied, run the frames again one at a time (a positive code). */
#define CYCLE_ISOLATE 1
/* Consecutive failed cycles before the gateway stops (about a minute of failures). */
#define MAX_FAILED_CYCLES 200

static void out_fail(cpx_gw_t *self, int err, int retryable)
{
    int code = err == CPX_ERR_FULL ? CPX__V1__ERROR_CODE__STORE_FULL : CPX__V1__ERROR_CODE__INTERNAL;
    for (size_t i = 0; i < self->n_out; i++) {
        cpx_gw_out_t *o = &self->out[i];
        if (o->kind == OUT_ACK && o->duplicate && o->tree_size)
            continue;  /* from committed data: still true */
        if (o->kind == OUT_DELIVER || o->kind == OUT_RAW) {
            free(o->buf);
            o->buf = NULL;
            continue;
        }
        Cpx__V1__Nack n = CPX__V1__NACK__INIT;
        n.message_id = (ProtobufCBinaryData){o->message_id_len, o->message_id};
        n.code = code;
        n.retryable = retryable;
        n.retry_after_ms = retryable ? 5000 : 0;
        cpx_server_frame_t f = CPX__V1__SERVER_FRAME__INIT;
        f.frame_case = CPX__V1__SERVER_FRAME__FRAME_NACK;
        f.nack = &n;
        free(o->buf);
        o->buf = NULL;
        o->kind = OUT_NACK;
        cpx_encode(&f, &o->buf, &o->len);
    }
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        cpx_gw_flight_clear(s);
        s->scan_more = 1;
    }
    cpx_gw_outbox_load(self);
}

/* ---- status ---------------------------------------------------------------------- */

static int write_status(cpx_gw_t *self)
{
    char buf[16384];
    size_t off = 0;
    uint64_t dead = 0;
    cpx_outbox_dead_count(self->ob, self->txn, &dead);
    off += (size_t)snprintf(buf + off, sizeof buf - off,
                            "updated_ms=%lld\nendpoint=%s\naccepted=%llu rejected=%llu "
                            "delivered=%llu confirmed=%llu dead_letters=%llu\n",
                            (long long)self->now_ms, self->cfg.endpoint,
                            (unsigned long long)self->stat_accepted,
                            (unsigned long long)self->stat_rejected,
                            (unsigned long long)self->stat_delivered,
                            (unsigned long long)self->stat_confirmed, (unsigned long long)dead);
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions) && off < sizeof buf - 256; i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        int64_t oldest = 0;
        for (size_t j = 0; j < s->n_flight; j++)
            if (!oldest || s->flight[j].sent_ms < oldest)
                oldest = s->flight[j].sent_ms;
        off += (size_t)snprintf(buf + off, sizeof buf - off,
                                "dept=%s state=%s last_seen_ms=%lld queued=%llu unconfirmed=%zu "
                                "oldest_unconfirmed_ms=%lld\n",
                                s->dept, s->state == CPX_GW_ONLINE ? "online" : "offline",
                                (long long)s->last_seen_ms, (unsigned long long)s->depth,
                                s->n_flight, (long long)oldest);
    }
    return cpx_outbox_status_set(self->ob, self->txn, buf);
}

static uint64_t status_signature(cpx_gw_t *self)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
    MIX(self->stat_accepted);
    MIX(self->stat_rejected);
    MIX(self->stat_delivered);
    MIX(self->stat_confirmed);
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        MIX(s->state);
        MIX(s->depth);
        MIX(s->n_flight);
    }
#undef MIX
    return h;
}

/* ---- the cycle ------------------------------------------------------------------- */

typedef struct inbound {
    zmq_msg_t msg;
    cpx_gw_in_t in;
} inbound_t;

typedef struct refusal {
    uint8_t key[CPX_CURVE_KEY_LEN];
    char peer[64];
} refusal_t;

/* The frames that wait for the next cycle while one runs: Submits past its byte budget,
 * and what the cycle reads just before its commit (read_during_commit). */
typedef struct cpx_gw_inq {
    inbound_t *wait;                /* [0, n_wait) of cap */
    size_t n_wait, wait_bytes, cap;
    cpx_gw_in_t **ahead_list;       /* cap entries, for cpx_gw_ahead_start */
} cpx_gw_inq_t;

static int read_frame(cpx_gw_t *self, inbound_t *x);
static int is_submit(const inbound_t *x);

/* Just before a commit: its fdatasync leaves the server thread waiting on the disk for
 * a while, and frames have arrived since the cycle began. They are read now and their
 * Submits handed to the prepare-ahead stage, which decodes and verifies them (Ed25519
 * for per-message signatures, the largest cost of light traffic) during that wait
 * instead of at the start of the next cycle. Only under light load — no Submit waits
 * past the cycle's budget and the stage is idle — and at most one cycle's budget: under
 * a flood the next cycle's frames are best prepared on the pool with the server thread
 * while the stage works on those past the budget, and waiting for the stage here would
 * hold up the commit. */
static void read_during_commit(cpx_gw_t *self)
{
    cpx_gw_inq_t *q = self->inq;
    if (!q || q->n_wait || stop_requested || cpx_gw_ahead_busy(self->ahead))
        return;
    size_t first = q->n_wait, n_sub = 0;
    while (q->n_wait < q->cap && q->wait_bytes < MAX_CYCLE_BYTES) {
        int r = read_frame(self, &q->wait[q->n_wait]);
        if (r == 0)
            break;
        if (r > 0)
            q->wait_bytes += q->wait[q->n_wait++].in.len;
    }
    for (size_t i = first; i < q->n_wait; i++)
        if (is_submit(&q->wait[i]))
            q->ahead_list[n_sub++] = &q->wait[i].in;
    cpx_gw_ahead_start(self->ahead, q->ahead_list, n_sub, self->now_ms);
}

static int reopen_audit(cpx_gw_t *self)
{
    /* Another process (cpxctl enroll) appended while we were idle: the audit object's
     * cached right edge is stale, so rebuild it from the store. */
    cpx_audit_destroy(&self->audit);
    self->audit = cpx_audit_open(self->env);
    if (!self->audit)
        return CPX_ERR_STORE;
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cpx_store_err(rc, "server: begin");
    rc = cpx_audit_size(self->audit, txn, &self->tree_size);
    mdb_txn_abort(txn);
    /* cpxctl may also have re-queued dead letters: recount and rescan the outboxes. */
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++)
        cpx_gw_sessions_at(self->sessions, i)->scan_more = 1;
    if (!rc)
        rc = cpx_gw_outbox_load(self);
    cpx_log_info("server", "msg=\"audit log changed by another process\" tree_size=%llu",
                 (unsigned long long)self->tree_size);
    if (!rc)
        rc = cpx_gw_gwkey_check(self, 0); /* a rotation by cpxctl: stop signing */
    return rc;
}

/* What the modules keep in memory of a transaction that aborted is taken back: the
 * audit edge, the recent-message copies and case counter, the delivery counter, the
 * case index's caches. */
static void cycle_aborted(cpx_gw_t *self)
{
    cpx_audit_aborted(self->audit);
    cpx_gw_cases_aborted(self->cases);
    cpx_outbox_seq_drop(self->ob);
    cpx_gw_ci_aborted(self);
}

static int cycle(cpx_gw_t *self, inbound_t *const *in, size_t n_in, refusal_t *ref, size_t n_ref,
                 int status_due)
{
    MDB_txn *txn;
    int rc;
    for (int attempt = 0;; attempt++) {
        if ((rc = mdb_txn_begin(self->env, NULL, 0, &txn)))
            return cpx_store_err(rc, "server: begin cycle");
        uint64_t size = 0;
        if ((rc = cpx_audit_size(self->audit, txn, &size))) {
            mdb_txn_abort(txn);
            return rc;
        }
        if (size == self->tree_size)
            break;
        mdb_txn_abort(txn);
        if (attempt || (rc = reopen_audit(self)))
            return rc ? rc : CPX_ERR_STATE;
    }
    self->txn = txn;
    cpx_gw_prefill_open(self->prefill);  /* zeros past the end until the commit point */
    self->appended = 0;
    self->cycles++;  /* also ends what writer.c remembered of the last transaction */
    cpx_gw_ops_begin(self);

    /* The delivery and case counters stay in memory until the commit point below. */
    rc = cpx_outbox_seq_begin(self->ob, txn);
    if (!rc)
        rc = cpx_gw_cases_counter_begin(self->cases, txn);
    cpx_gw_in_t **inp = n_in ? malloc(n_in * sizeof *inp) : NULL;
    if (!rc && n_in && !inp)
        rc = CPX_ERR_NOMEM;
    for (size_t i = 0; i < n_in && !rc; i++)
        inp[i] = &in[i]->in;
    int sync_rc = CPX_OK;
    if (!rc)
        rc = cpx_gw_writer_prepare(self, inp, n_in);
    for (size_t i = 0; i < n_in && !rc; i++) {
        flush_if_done(self, &sync_rc);
        rc = cpx_gw_writer_frame(self, &in[i]->in);
    }
    flush_if_done(self, &sync_rc);
    for (size_t i = 0; i < n_in; i++)
        cpx_gw_writer_release(&in[i]->in);
    free(inp);
    for (size_t i = 0; i < n_ref && !rc; i++)
        rc = cpx_gw_writer_auth_refused(self, ref[i].key, ref[i].peer);
    if (!rc)
        rc = cpx_gw_ops_cycle(self);
    if (!rc)
        rc = cpx_gw_ci_tick(self);  /* overdue deadlines -> escalations, delivered below */
    if (!rc)
        rc = cpx_gw_outbox_tick(self);
    if (!rc && status_due)
        rc = write_status(self);
    if (!rc)  /* nothing after this point takes a delivery id or a case number */
        rc = cpx_outbox_seq_end(self->ob, txn);
    if (!rc)
        rc = cpx_gw_cases_counter_end(self->cases, txn);
    if (!rc)
        rc = cpx_gw_cases_fold_ids(self->cases, txn);

    uint64_t head_size = self->tree_size;
    if (!rc && self->appended) {
        cpx_sth_t *sth = NULL;
        rc = cpx_audit_sign_head(self->audit, txn, self->sign_key, self->now_ms, &sth);
        if (!rc)
            head_size = sth->tree_size;
        cpx_msg_free(sth);
    }
    /* Acks of this cycle carry the size of the head it signed. */
    for (size_t i = 0; i < self->n_out && !rc; i++)
        if (self->out[i].kind == OUT_ACK && !self->out[i].tree_size)
            self->out[i].tree_size = head_size;
    /* The previous cycle's replies go out once its flush returned, before this cycle
     * commits and before anything of it (see the comment above pending_clear). */
    if (!sync_rc)
        sync_rc = flush_pending(self);
    cpx_gw_prefill_close(self->prefill);  /* nothing is written past the end from here */
    if (sync_rc) {
        mdb_txn_abort(txn);
        self->txn = NULL;
        cycle_aborted(self);
        out_clear(self);
        cpx_gw_ops_end(self, 0);
        return sync_rc;
    }
    if (!rc)
        read_during_commit(self);
    if (!rc && (rc = mdb_txn_commit(txn)))
        rc = cpx_store_err(rc, "server: commit");
    else if (rc)
        mdb_txn_abort(txn);
    self->txn = NULL;
    const int retryable = 1;  /* answers pushed before the failure: always retry */
    if (rc) {
        cycle_aborted(self);
        if (rc != CPX_ERR_FULL && rc != CPX_ERR_STORE && n_in > 1) {
            /* Nothing was applied. One frame may be the cause: the caller runs this
             * cycle's frames again one by one, so only the culprit is refused and one
             * department's bad message cannot stop everyone's traffic. */
            cpx_log_warn("server", "msg=\"cycle failed, retrying its frames one by one\" err=%s frames=%zu",
                         cpx_strerror(rc), n_in);
            out_clear(self);
            cpx_gw_ops_end(self, 0);
            return CYCLE_ISOLATE;
        }
        /* A lone envelope that fails deterministically is refused for good (its
         * sender keeps it in the rejected area); everything else is retried. */
        int deterministic = n_in == 1 && (rc == CPX_ERR_TOO_LARGE || rc == CPX_ERR_INVALID ||
                                          rc == CPX_ERR_DECODE || rc == CPX_ERR_ARG);
        cpx_log_error("server", "msg=\"cycle failed, nothing applied\" err=%s frames=%zu",
                      cpx_strerror(rc), n_in);
        out_fail(self, rc, retryable);
        int code = rc == CPX_ERR_FULL ? CPX__V1__ERROR_CODE__STORE_FULL : CPX__V1__ERROR_CODE__INTERNAL;
        for (size_t i = 0; i < n_in; i++)
            cpx_gw_writer_nack_unanswered(self, &in[i]->in, code, deterministic);
        self->failed_cycles++;
    } else {
        cpx_audit_committed(self->audit);
        cpx_gw_cases_committed(self->cases);
        cpx_gw_ci_committed(self);
        self->tree_size = head_size;
        self->failed_cycles = 0;
    }
    uint64_t view = cpx_gw_ops_end(self, rc == CPX_OK);
    if (!rc) {
        hold_pending(self, head_size, view);  /* sent once durable: flush_pending */
        return CPX_OK;
    }
    send_outs(self, self->out, self->n_out, head_size);
    out_clear(self);
    /* Keep serving through failures; only a long unbroken run of them (the store or
     * the log in a state no cycle can fix) stops the gateway for its supervisor. */
    if (rc && rc != CPX_ERR_FULL && self->failed_cycles >= MAX_FAILED_CYCLES) {
        cpx_log_error("server", "msg=\"giving up after consecutive failed cycles\" n=%u err=%s",
                      self->failed_cycles, cpx_strerror(rc));
        return rc;
    }
    return CPX_OK;
}

/* Without MDB_WRITEMAP LMDB's map is read-only and MAP_SHARED, and every page a lookup
 * touched stays in this process's RSS (RssFile) — with a million waiting messages that
 * is gigabytes of index and record pages. Dropping the mapping's pages is safe (they
 * refault from the page cache, also for the ZAP thread's readers) and cheap at this
 * interval; the hot pages come back on the next cycle. */
#define TRIM_INTERVAL_MS 1000

/* LMDB does not export its map address (mdb_env_info's me_mapaddr is only set for
 * MDB_FIXEDMAP): find the mapping of data.mdb by inode in /proc/self/maps. */
static int find_map(cpx_gw_t *self)
{
    char path[CPX_GW_PATH_MAX + 16], line[1024];
    snprintf(path, sizeof path, "%s/data.mdb", self->cfg.data_dir);
    struct stat st;
    if (stat(path, &st))
        return CPX_ERR_IO;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return CPX_ERR_IO;
    int rc = CPX_ERR_NOT_FOUND;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, ino;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &ino) == 3 &&
            ino == (unsigned long)st.st_ino && hi > lo) {
            self->map_addr = (void *)lo;
            self->map_len = hi - lo;
            rc = CPX_OK;
            break;
        }
    }
    fclose(f);
    return rc;
}

static void trim_map(cpx_gw_t *self, int idle)
{
    if (self->now_ms - self->last_trim_ms < TRIM_INTERVAL_MS)
        return;
    self->last_trim_ms = self->now_ms;
    MDB_envinfo info;
    MDB_stat st;
    if ((!self->map_addr && find_map(self)) || mdb_env_info(self->env, &info) ||
        mdb_env_stat(self->env, &st))
        return;
    size_t len = (size_t)(info.me_last_pgno + 1) * st.ms_psize;
    if (len > self->map_len)
        len = self->map_len;
    if (madvise(self->map_addr, len, MADV_DONTNEED))
        cpx_log_debug("server", "msg=\"madvise failed\" err=\"%s\"", strerror(errno));
    /* The heap too, once submissions stop: a flood's frames and decodes are freed after
     * their cycle, but malloc keeps the pages (main.c keeps blocks of frame size in the
     * heap) unless told. Not while they flow: trimming a large heap takes milliseconds,
     * which showed as ack latency spikes of 20-45 ms at 5,000 msg/s. Heartbeats and
     * other frames without submissions do not hold it back: connected clients send one
     * every second, and a trim that waited for a loop with no frame at all rarely ran. */
    if (idle)
        malloc_trim(0);
}

static void heartbeats(cpx_gw_t *self)
{
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        if (s->state != CPX_GW_ONLINE || self->now_ms - s->last_hb_ms < (int64_t)self->cfg.heartbeat_ms)
            continue;
        Cpx__V1__Heartbeat hb = CPX__V1__HEARTBEAT__INIT;
        hb.sent_ms = self->now_ms;
        hb.queued = s->depth;
        cpx_server_frame_t f = CPX__V1__SERVER_FRAME__INIT;
        f.frame_case = CPX__V1__SERVER_FRAME__FRAME_HEARTBEAT;
        f.heartbeat = &hb;
        uint8_t buf[64];
        size_t len;
        if (!cpx_encode_into(&f, buf, sizeof buf, &len))
            send_frame(self, s->rid, s->rid_len, buf, len);
        s->last_hb_ms = self->now_ms;
    }
}

/* A Submit frame (ClientFrame field 1): the first byte of a ClientFrame is the tag
 * of its one field. Anything else is small and cheap to apply. */
static int is_submit(const inbound_t *x)
{
    return x->in.len > 0 && (x->in.data[0] >> 3) == 1;
}

/* Moves a frame into another slot (zmq_msg_move: a small message's bytes live inside
 * the zmq_msg_t, so in.data is taken again). */
static void inbound_move(inbound_t *dst, inbound_t *src)
{
    zmq_msg_init(&dst->msg);
    zmq_msg_move(&dst->msg, &src->msg);
    dst->in = src->in;
    dst->in.data = zmq_msg_data(&dst->msg);
    zmq_msg_close(&src->msg);
}

/* Reads one client frame into x. 1: read; 0: nothing waiting; -1: dropped (not one
 * frame, or no authenticated department), read on. */
static int read_frame(cpx_gw_t *self, inbound_t *x)
{
    zmq_msg_t rid;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&rid);
        return 0;
    }
    zmq_msg_init(&x->msg);
    int ok = zmq_msg_more(&rid) && zmq_msg_recv(&x->msg, self->router, 0) >= 0;
    int extra = ok && zmq_msg_more(&x->msg);
    while (extra) {  /* one frame per message: drop anything after it */
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        extra = zmq_msg_recv(&junk, self->router, 0) >= 0 && zmq_msg_more(&junk);
        zmq_msg_close(&junk);
        ok = 0;
    }
    const char *user = ok ? zmq_msg_gets(&x->msg, "User-Id") : NULL;
    if (!user || !*user || strlen(user) > CPX_MAX_DEPT_CODE) {
        zmq_msg_close(&rid);
        zmq_msg_close(&x->msg);
        return -1;
    }
    memset(&x->in, 0, sizeof x->in);
    x->in.rid_len = zmq_msg_size(&rid) < CPX_GW_MAX_RID ? zmq_msg_size(&rid) : CPX_GW_MAX_RID;
    memcpy(x->in.rid, zmq_msg_data(&rid), x->in.rid_len);
    zmq_msg_close(&rid);
    cpx_strcopy(x->in.dept, sizeof x->in.dept, user);
    x->in.data = zmq_msg_data(&x->msg);
    x->in.len = zmq_msg_size(&x->msg);
    cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, x->in.dept, 1);
    if (s)
        cpx_gw_session_touch(s, x->in.rid, x->in.rid_len, self->now_ms);
    return 1;
}

int cpx_gw_server_run(cpx_gw_t *self)
{
    size_t cap_in = self->cfg.batch_max;
    /* Frames are read into buf[0]; those that wait for the next cycle move to buf[1],
     * and the two swap. now[] lists the frames of this cycle in arrival order. */
    inbound_t *buf[2] = {calloc(cap_in, sizeof(inbound_t)), calloc(cap_in, sizeof(inbound_t))};
    inbound_t **now = calloc(cap_in, sizeof *now);
    cpx_gw_in_t **ahead_list = calloc(cap_in, sizeof *ahead_list);
    refusal_t *ref = calloc(MAX_REFUSALS_PER_CYCLE, sizeof *ref);
    if (!buf[0] || !buf[1] || !now || !ahead_list || !ref) {
        free(buf[0]);
        free(buf[1]);
        free(now);
        free(ahead_list);
        free(ref);
        return CPX_ERR_NOMEM;
    }
    size_t n_held = 0, held_bytes = 0;  /* frames waiting in buf[0][0..n_held) */
    int rc = CPX_OK;
    /* On SIGTERM nothing more is read, and the frames already read are still applied. */
    while (!stop_requested || n_held) {
        self->now_ms = cpx_gw_now_ms();
        int64_t next = cpx_gw_outbox_next_due(self);
        int64_t hb = self->last_hb_ms + self->cfg.heartbeat_ms;
        if (hb < next)
            next = hb;
        int64_t timeout = n_held ? 0 : next - self->now_ms;
        if (timeout > 1000)
            timeout = 1000;
        if (timeout < 0)
            timeout = 0;
        zmq_pollitem_t items[4] = {{self->router, 0, ZMQ_POLLIN, 0},
                                   {self->refused, 0, ZMQ_POLLIN, 0}};
        int n_items = 2;
        if (self->http)
            items[n_items++] = (zmq_pollitem_t){cpx_gw_http_socket(self->http), 0, ZMQ_POLLIN, 0};
        /* The last commit's flush: its replies go out as soon as it is durable, even
         * when nothing else arrives. */
        if (cpx_gw_syncer_pending(self->syncer))
            items[n_items++] = (zmq_pollitem_t){NULL, cpx_gw_syncer_fd(self->syncer), ZMQ_POLLIN, 0};
        if (zmq_poll(items, n_items, (long)timeout) < 0 && zmq_errno() != EINTR) {
            cpx_log_error("server", "msg=\"poll failed\" err=\"%s\"", zmq_strerror(zmq_errno()));
            rc = CPX_ERR_NET;
            break;
        }
        self->now_ms = cpx_gw_now_ms();
        if (cpx_gw_syncer_done(self->syncer) && (rc = flush_pending(self)))
            break;

        inbound_t *in = buf[0];
        size_t n_all = n_held;
        while (!stop_requested && n_all < cap_in && held_bytes < MAX_HELD_BYTES) {
            int r = read_frame(self, &in[n_all]);
            if (r == 0)
                break;
            if (r > 0)
                held_bytes += in[n_all++].in.len;
        }
        /* The frames held from the last cycle may still be in the prepare-ahead stage. */
        cpx_gw_ahead_wait(self->ahead);
        /* This cycle: every frame but the Submit frames past the byte budget (the first
         * Submit always goes, however large); those, and every Submit after the first
         * that waits, wait in buf[1], in order. */
        size_t n_in = 0, n_wait = 0, cycle_bytes = 0, wait_bytes = 0;
        for (size_t i = 0; i < n_all; i++) {
            inbound_t *x = &in[i];
            int over = cycle_bytes && cycle_bytes + x->in.len > MAX_CYCLE_BYTES;
            if (is_submit(x) && (n_wait || over)) {
                wait_bytes += x->in.len;
                inbound_move(&buf[1][n_wait++], x);
                continue;
            }
            if (is_submit(x))
                cycle_bytes += x->in.len;
            now[n_in++] = x;
        }
        /* Those that wait are prepared while this cycle writes (ahead.h): as many as the
         * next cycle can take. A decoded frame holds a few times its bytes, so preparing
         * everything held (up to MAX_HELD_BYTES under a flood) would cost hundreds of MiB
         * for frames that would only wait again. */
        size_t n_ahead = 0, ahead_bytes = 0;
        for (size_t i = 0; i < n_wait && ahead_bytes < MAX_CYCLE_BYTES; i++) {
            ahead_bytes += buf[1][i].in.len;
            if (!buf[1][i].in.ahead)  /* not prepared in an earlier wait */
                ahead_list[n_ahead++] = &buf[1][i].in;
        }
        cpx_gw_ahead_start(self->ahead, ahead_list, n_ahead, self->now_ms);
        cpx_gw_inq_t inq = {.wait = buf[1], .n_wait = n_wait, .wait_bytes = wait_bytes,
                            .cap = cap_in, .ahead_list = ahead_list};
        size_t n_ref = 0;
        while (n_ref < MAX_REFUSALS_PER_CYCLE) {
            uint8_t rbuf[CPX_CURVE_KEY_LEN + 64];
            int n = zmq_recv(self->refused, rbuf, sizeof rbuf - 1, ZMQ_DONTWAIT);
            if (n < 0)
                break;
            if (n < (int)CPX_CURVE_KEY_LEN)
                continue;
            memcpy(ref[n_ref].key, rbuf, CPX_CURVE_KEY_LEN);
            size_t pl = (size_t)n - CPX_CURVE_KEY_LEN;
            if (pl >= sizeof ref[n_ref].peer)
                pl = sizeof ref[n_ref].peer - 1;
            memcpy(ref[n_ref].peer, rbuf + CPX_CURVE_KEY_LEN, pl);
            ref[n_ref].peer[pl] = '\0';
            n_ref++;
        }
        cpx_gw_sessions_expire(self->sessions, self->now_ms, self->cfg.offline_after_ms);

        int active = n_in || n_ref || cpx_gw_outbox_next_due(self) <= self->now_ms ||
                     cpx_gw_ops_pending(self) || cpx_gw_ci_next_due(self) <= self->now_ms;
        /* The status record is rewritten when something it shows changed (at most once
         * per interval), and otherwise only every IDLE_STATUS_FACTOR intervals, so an idle
         * gateway does not fsync every second. */
        uint32_t si = self->cfg.status_interval_ms;
        int64_t since = self->now_ms - self->last_status_ms;
        uint64_t sig = status_signature(self);
        int status_due = since >= (int64_t)si &&
                         (sig != self->status_sig || since >= (int64_t)si * IDLE_STATUS_FACTOR);
        if (status_due)
            self->status_sig = sig;
        if (active || status_due) {
            self->inq = &inq;
            rc = cycle(self, now, n_in, ref, n_ref, status_due);
            if (rc == CYCLE_ISOLATE) {
                rc = CPX_OK;
                for (size_t i = 0; i < n_in && !rc; i++)
                    rc = cycle(self, &now[i], 1, i ? NULL : ref, i ? 0 : n_ref, 0);
            }
            if (status_due)
                self->last_status_ms = self->now_ms;
        }
        self->inq = NULL;
        n_wait = inq.n_wait;  /* with what the cycle read before its commit */
        wait_bytes = inq.wait_bytes;
        for (size_t i = 0; i < n_in; i++)
            zmq_msg_close(&now[i]->msg);
        /* The waiting frames become the head of the next read. */
        inbound_t *t = buf[0];
        buf[0] = buf[1];
        buf[1] = t;
        n_held = n_wait;
        held_bytes = wait_bytes;
        if (rc)
            break;
        if (cycle_bytes || n_wait)
            self->last_submit_ms = self->now_ms;
        trim_map(self, self->now_ms - self->last_submit_ms >= TRIM_INTERVAL_MS);
        if (self->now_ms - self->last_hb_ms >= (int64_t)self->cfg.heartbeat_ms / 4) {
            heartbeats(self);
            self->last_hb_ms = self->now_ms;
        }
        cpx_gw_ops_loop(self);
    }
    /* Frames read but not processed get no answer: their senders resend them. */
    cpx_gw_ahead_wait(self->ahead);
    for (size_t i = 0; i < n_held; i++) {
        cpx_gw_writer_release(&buf[0][i].in);
        zmq_msg_close(&buf[0][i].msg);
    }
    /* The last cycle's replies once it is durable (or nothing, if its flush failed). */
    int frc = flush_pending(self);
    if (!rc)
        rc = frc;
    free(buf[0]);
    free(buf[1]);
    free(now);
    free(ahead_list);
    free(ref);
    cpx_log_info("server", "msg=stopped tree_size=%llu accepted=%llu",
                 (unsigned long long)self->tree_size, (unsigned long long)self->stat_accepted);
    return rc;
}

/* ---- setup ----------------------------------------------------------------------- */

static int bind_router(cpx_gw_t *self)
{
    char secret[CPX_Z85_KEY_LEN + 1], pub[CPX_Z85_KEY_LEN + 1];
    int rc = cpx_client_read_z85(self->cfg.curve_secret, secret);
    if (rc) {
        cpx_log_error("server", "msg=\"cannot read CURVE secret key\" path=%s", self->cfg.curve_secret);
        return rc;
    }
    if (zmq_curve_public(pub, secret)) {
        cpx_log_error("server", "msg=\"invalid CURVE secret key\" path=%s", self->cfg.curve_secret);
        return CPX_ERR_CONFIG;
    }
    self->router = zmq_socket(self->zctx, ZMQ_ROUTER);
    int one = 1, hwm = 200000, linger = 2000, hs = 5000;
    int64_t max = CPX_MAX_FRAME_BYTES;
    if (!self->router ||
        zmq_setsockopt(self->router, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(self->router, ZMQ_CURVE_SECRETKEY, secret, CPX_Z85_KEY_LEN) ||
        zmq_setsockopt(self->router, ZMQ_ZAP_DOMAIN, "cpx", 3) ||
        zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &max, sizeof max) ||
        zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(self->router, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(self->router, ZMQ_HANDSHAKE_IVL, &hs, sizeof hs) ||
        zmq_bind(self->router, self->cfg.endpoint)) {
        cpx_log_error("server", "msg=\"cannot bind\" endpoint=%s err=\"%s\"", self->cfg.endpoint,
                      zmq_strerror(zmq_errno()));
        cpx_cleanse(secret, sizeof secret);
        return CPX_ERR_NET;
    }
    cpx_cleanse(secret, sizeof secret);
    char ep[256];
    size_t el = sizeof ep;
    zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, ep, &el);
    /* The bound endpoint (an ephemeral port when the config says :0) for tools and tests. */
    char path[CPX_GW_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/gateway.endpoint", self->cfg.data_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s\n", ep);
        fclose(f);
    }
    snprintf(self->cfg.endpoint, sizeof self->cfg.endpoint, "%s", ep);
    cpx_log_info("server", "msg=listening endpoint=%s curve_public=%s tree_size=%llu", ep, pub,
                 (unsigned long long)self->tree_size);
    return CPX_OK;
}

cpx_gw_t *cpx_gw_server_new(const cpx_gw_config_t *cfg)
{
    cpx_gw_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    cpx_log_set_level((cpx_log_level)cfg->log_level);
    char err[512];
    MDB_txn *txn;
    int rc;
    /* MDB_NOMETASYNC: each commit flushes its pages; the meta page is flushed by the
     * sync thread while the next cycle is built (see the comment above pending_clear).
     * Only this process's handle: cpxctl and the adapters keep LMDB's full sync. */
    if ((rc = cpx_store_open(cfg->data_dir, cfg->map_size, MDB_NOMETASYNC, &self->env))) {
        cpx_log_error("server", "msg=\"cannot open store\" dir=%s err=%s", cfg->data_dir, cpx_strerror(rc));
        goto fail;
    }
    if (!(self->reg = cpx_registry_open(self->env)) || !(self->audit = cpx_audit_open(self->env)) ||
        !(self->ob = cpx_outbox_open(self->env)))
        goto fail;
    if ((rc = cpx_gw_cases_open(self->env, cfg->store_key, &self->cases, err, sizeof err))) {
        cpx_log_error("server", "msg=\"cannot open the message store\" err=\"%s\"", err);
        fprintf(stderr, "cpx-gateway: keys.store_key: %s\n", err);
        goto fail;
    }
    /* Deliveries mostly follow acceptance within a cycle or two: recent messages are
     * kept in the clear for them (16 MiB: some 10,000 reports, several cycles). */
    if (cpx_gw_cases_keep_recent(self->cases, RECENT_BYTES, RECENT_ENTRIES) ||
        cpx_gw_cases_index_live(self->cases, self->env))
        goto fail;
    if (!(self->sign_key = cpx_gw_signing_key(cfg))) {  /* gateway/signerlink.c */
        cpx_log_error("server", "msg=\"cannot load signing key\" path=%s", cfg->signing_key);
        goto fail;
    }
    if (cpx_gw_gwkey_check(self, 1))
        goto fail;
    if (cpx_gw_ci_start(self))  /* case tracking, when cfg->cases names a policy */
        goto fail;
    if (cfg->sealed[0] && cpx_gw_sealed_open(cfg->sealed, self->env, &self->sealed, err, sizeof err)) {
        cpx_log_error("server", "msg=\"cannot open the sealed vault\" err=\"%s\"", err);
        fprintf(stderr, "cpx-gateway: %s\n", err);
        goto fail;
    }
    if (cfg->routes[0] && !(self->rules = cpx_router_load(cfg->routes, err, sizeof err))) {
        cpx_log_error("server", "msg=\"invalid routing rules\" err=\"%s\"", err);
        fprintf(stderr, "cpx-gateway: %s\n", err);
        goto fail;
    }
    if (!(self->sessions = cpx_gw_sessions_new(cfg->in_flight)) ||
        !(self->syncer = cpx_gw_syncer_new(self->env)))
        goto fail;
    self->prefill = cpx_gw_prefill_new(self->env, cfg->prefill);  /* NULL: off */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!(self->verify = cpx_gw_verify_new(cores > 1 ? (unsigned)(cores < 8 ? cores : 8) : 1)) ||
        !(self->ahead = cpx_gw_ahead_new(self->env, self->reg)))
        goto fail;
    self->seen_cap = 1;
    while (self->seen_cap < 2 * ((size_t)cfg->batch_max * 4 + CPX_MAX_BATCH_ENVELOPES))
        self->seen_cap <<= 1;
    if (!(self->seen_idx = calloc(self->seen_cap, sizeof *self->seen_idx)))
        goto fail;
    if ((rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn))) {
        cpx_store_err(rc, "server: begin");
        goto fail;
    }
    rc = cpx_audit_size(self->audit, txn, &self->tree_size);
    mdb_txn_abort(txn);
    if (rc || cpx_gw_outbox_load(self))
        goto fail;

    self->zctx = zmq_ctx_new();
    self->refused = zmq_socket(self->zctx, ZMQ_PULL);
    if (!self->refused || zmq_bind(self->refused, CPX_GW_ZAP_REFUSED_EP))
        goto fail;
    if (!(self->zap = cpx_gw_zap_start(self->zctx, self->env, self->reg)))
        goto fail;
    if (bind_router(self))
        goto fail;
    if (cpx_gw_http_start(self))
        goto fail;
    return self;
fail:
    cpx_gw_server_destroy(&self);
    return NULL;
}

void cpx_gw_server_destroy(cpx_gw_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_t *self = *self_p;
    cpx_gw_http_destroy(&self->http);  /* its threads read the store: stop them first */
    if (self->router)
        zmq_close(self->router);
    cpx_gw_zap_destroy(&self->zap);
    if (self->refused)
        zmq_close(self->refused);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    for (size_t i = 0; i < self->n_keycache; i++)
        cpx_key_destroy(&self->keycache[i].key);
    cpx_gw_syncer_destroy(&self->syncer);  /* waits for a flush in flight */
    cpx_gw_prefill_destroy(&self->prefill);
    pending_clear(self);
    free(self->out_pending);
    free(self->group_buf);
    out_clear(self);
    free(self->out);
    free(self->seen_idx);
    cpx_gw_sessions_destroy(&self->sessions);
    cpx_gw_metrics_destroy(&self->metrics);
    cpx_gw_ahead_destroy(&self->ahead);
    cpx_gw_verify_destroy(&self->verify);
    cpx_router_destroy(&self->rules);
    cpx_key_destroy(&self->sign_key);
    cpx_gw_ci_destroy(&self->ci);
    cpx_gw_cases_destroy(&self->cases);
    cpx_gw_sealed_destroy(&self->sealed);
    cpx_outbox_destroy(&self->ob);
    cpx_audit_destroy(&self->audit);
    cpx_registry_destroy(&self->reg);
    if (self->env)
        mdb_env_close(self->env);
    free(self);
    *self_p = NULL;
}
