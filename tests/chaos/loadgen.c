/* chaos_loadgen — the chaos suite's steady load, at the rate the benchmarks sustain.
 *
 * Drives a running cpx-gateway exactly as adapters would (docs/protocol.md): one CURVE
 * DEALER per sending department and one for the receiving department, which confirms
 * every Deliver with a DeliveryAck (TAKEN). Messages are the generator's discovery
 * reports (cpx_synth_discovery) without recipients, so the gateway's fallback routes
 * every one to the receiving department (the lead agency), and without the
 * juvenile-offence circumstance, so none is a sealed matter. About 30% of submissions
 * are batches of 10 with one batch signature, the rest single envelopes signed each;
 * everything is signed as it is sent.
 *
 * The send loop is paced to --rate for --seconds with at most --window unanswered
 * envelopes per sender. Every envelope is kept (as its own encoded Submit frame, batch
 * members with their batch proof) until its Ack or a final Nack and resent: after
 * retry_after_ms for a retryable Nack, after --resend-ms (doubling to 10 s) when
 * unanswered. Then it drains: waits up to --drain-seconds until every envelope is
 * answered and every acknowledged one delivered. It prints ONE line of JSON (counts,
 * achieved rate, latencies) and exits 0; it exits 2 on a usage error and 3 when the
 * gateway cannot be reached or the keys cannot be read.
 *
 * Counting mirrors tests/chaos/chaoslib.py's Load: lost = acknowledged but never
 * delivered + never answered; duplicates = a second Ack for a message id naming a
 * different leaf, or a delivery of a message id under a second delivery_id (either
 * means the message was applied twice). A Deliver repeated under the same delivery_id
 * is at-least-once delivery at work and is counted apart (redelivered).
 *
 *   chaos_loadgen --endpoint EP --keys DIR [--senders A,B,C] [--receiver DEPT]
 *                 [--rate R] [--seconds S] [--drain-seconds D] [--window N]
 *                 [--resend-ms MS] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cpx/client.h"
#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/synth.h"

#include "clock.h"
#include "dealer.h"

#define MAX_SENDERS 16
#define BATCH_N 10
#define BATCH_SHARE 0.3
#define HEARTBEAT_S 0.3
#define RESEND_MAX_S 10.0

/* ---- options and time ---------------------------------------------------------------- */

typedef struct opts {
    const char *endpoint, *keys, *receiver;
    char *senders[MAX_SENDERS];
    size_t n_senders;
    double rate, seconds, drain_seconds, resend_s, connect_s;
    size_t window;
    uint64_t seed;
} opts_t;

static void fail(int code, const char *what)
{
    fprintf(stderr, "chaos_loadgen: %s\n", what);
    exit(code);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        fail(1, "out of memory");
    return q;
}

/* ---- growable series of (time, seconds) samples -------------------------------------- */

typedef struct sample {
    double t, v;
} sample_t;

typedef struct series {
    sample_t *s;
    size_t n, cap;
} series_t;

static void series_add(series_t *x, double t, double v)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 4096;
        x->s = xrealloc(x->s, x->cap * sizeof *x->s);
    }
    x->s[x->n++] = (sample_t){t, v};
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v[0..n) in ms, sorting a copy; -1 when empty. */
static double quantile_ms(const sample_t *s, size_t n, double q)
{
    if (!n)
        return -1;
    double *v = xrealloc(NULL, n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = s[i].v;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(n * q);
    double r = v[k < n ? k : n - 1] * 1e3;
    free(v);
    return r;
}

/* Medians of the first and last third of the samples taken up to t_end (samples are in
 * time order), as chaoslib's Load.creep does; -1 when there are too few (< 9). */
static void thirds_ms(const series_t *x, double t_end, double *first, double *last)
{
    size_t n = 0;
    while (n < x->n && x->s[n].t <= t_end)
        n++;
    *first = *last = -1;
    if (n < 9)
        return;
    *first = quantile_ms(x->s, n / 3, 0.5);
    *last = quantile_ms(x->s + n - n / 3, n / 3, 0.5);
}

/* ---- messages: every envelope sent, found by id ---------------------------------------- */

enum { PENDING, ACKED, REFUSED };

typedef struct msg {
    uint8_t id[16];
    uint8_t sender, state;
    uint32_t slot;          /* index in its sender's outstanding list while PENDING */
    uint8_t *frame;         /* its own Submit frame, kept until answered for resends */
    size_t len;
    double first_sent, due, backoff;
    uint64_t leaf_seq, delivery_id;
    uint32_t deliveries;
} msg_t;

typedef struct book {
    msg_t *m;
    size_t n, cap;
    uint32_t *tab;          /* open addressing on the id's first 8 random bytes; idx+1 */
    size_t tab_cap;
} book_t;

static uint64_t id_hash(const uint8_t id[16])
{
    uint64_t h;
    memcpy(&h, id, 8);
    return h * 0x9e3779b97f4a7c15ull;
}

static void book_insert_index(book_t *b, uint32_t idx)
{
    size_t mask = b->tab_cap - 1, i = id_hash(b->m[idx].id) & mask;
    while (b->tab[i])
        i = (i + 1) & mask;
    b->tab[i] = idx + 1;
}

static msg_t *book_add(book_t *b, const uint8_t id[16])
{
    if ((b->n + 1) * 2 > b->tab_cap) {
        free(b->tab);
        b->tab_cap = b->tab_cap ? b->tab_cap * 2 : 1 << 16;
        b->tab = calloc(b->tab_cap, sizeof *b->tab);
        if (!b->tab)
            fail(1, "out of memory");
        for (size_t i = 0; i < b->n; i++)
            book_insert_index(b, (uint32_t)i);
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1 << 16;
        b->m = xrealloc(b->m, b->cap * sizeof *b->m);
    }
    msg_t *m = &b->m[b->n];
    memset(m, 0, sizeof *m);
    memcpy(m->id, id, 16);
    book_insert_index(b, (uint32_t)b->n++);
    return m;
}

static msg_t *book_find(const book_t *b, const uint8_t *id, size_t len)
{
    if (len != 16 || !b->tab_cap)
        return NULL;
    size_t mask = b->tab_cap - 1;
    for (size_t i = id_hash(id) & mask; b->tab[i]; i = (i + 1) & mask)
        if (!memcmp(b->m[b->tab[i] - 1].id, id, 16))
            return &b->m[b->tab[i] - 1];
    return NULL;
}

/* ---- departments ----------------------------------------------------------------------- */

typedef struct dept {
    const char *name;
    void *sock;
    cpx_key_t *sign;        /* senders only */
    uint32_t *out;          /* indices of PENDING messages */
    size_t n_out, cap_out;
    double heard, last_hb;  /* last frame from the gateway; last heartbeat sent */
} dept_t;

static void *open_dealer(void *ctx, const opts_t *o, const char *name)
{
    void *s = bench_dealer(ctx, o->keys, name, o->endpoint);
    if (!s)
        fail(3, "cannot connect: CURVE keys unreadable (see the log line above) or a bad endpoint");
    return s;
}

static void out_add(dept_t *d, book_t *b, uint32_t idx)
{
    if (d->n_out == d->cap_out) {
        d->cap_out = d->cap_out ? d->cap_out * 2 : 1024;
        d->out = xrealloc(d->out, d->cap_out * sizeof *d->out);
    }
    b->m[idx].slot = (uint32_t)d->n_out;
    d->out[d->n_out++] = idx;
}

static void out_remove(dept_t *d, book_t *b, msg_t *m)
{
    uint32_t last = d->out[--d->n_out];
    d->out[m->slot] = last;
    b->m[last].slot = m->slot;
}

/* ---- the run's state and counters -------------------------------------------------------- */

typedef struct run {
    opts_t o;
    dept_t d[MAX_SENDERS + 1];  /* senders, then the receiver */
    size_t n_d;
    book_t book;
    cpx_synth_t *syn;
    series_t ack_lat, del_lat;
    double t0;
    size_t sent, batches, singles, resent, acked, refused, retryable, delivered;
    size_t duplicates, redelivered, foreign, unknown_acks, window_waits;
    size_t awaiting_delivery;  /* acknowledged, not delivered yet */
    size_t refused_by_code[32], max_outstanding;
} run_t;

static int send_bytes(dept_t *d, const uint8_t *buf, size_t len)
{
    return zmq_send(d->sock, buf, len, ZMQ_DONTWAIT) == (int)len ? 0 : -1;
}

static void send_small(dept_t *d, const cpx_client_frame_t *cf)
{
    uint8_t buf[256];
    size_t len;
    if (!cpx_encode_into(cf, buf, sizeof buf, &len))
        send_bytes(d, buf, len);
}

static void heartbeat(dept_t *d, double now)
{
    cpx_client_frame_t cf = CPX__V1__CLIENT_FRAME__INIT;
    Cpx__V1__Heartbeat h = CPX__V1__HEARTBEAT__INIT;
    h.sent_ms = wall_ms();
    cf.frame_case = CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT;
    cf.heartbeat = &h;
    send_small(d, &cf);
    d->last_hb = now;
}

/* A generator report from `sender` to nobody in particular (the gateway's fallback sends
 * it to the lead agency) and not a sealed matter. */
static cpx_envelope_t *make_report(run_t *r, const char *sender)
{
    cpx_envelope_t *e = cpx_synth_ordinary_report(r->syn, wall_ms() - 1000, sender);
    if (!e)
        fail(1, "cpx_synth_ordinary_report");
    return e;
}

static void encode_submit(cpx_envelope_t **envs, size_t n, uint8_t **out, size_t *len)
{
    if (cpx_client_encode_submit(envs, n, n > 1 ? CPX_SUBMIT_BATCH : 0u, out, len))
        fail(1, "encode");
}

/* One submission from sender si: a batch of BATCH_N or a single envelope, signed now.
 * Every envelope is booked with its own Submit frame for resends. */
static void submit(run_t *r, size_t si, int batch, double now)
{
    dept_t *d = &r->d[si];
    size_t n = batch ? BATCH_N : 1;
    cpx_envelope_t *envs[BATCH_N];
    for (size_t i = 0; i < n; i++)
        envs[i] = make_report(r, d->name);
    if (batch ? cpx_envsign_sign_batch(envs, n, d->sign) : cpx_envsign_sign(envs[0], d->sign))
        fail(1, "signing failed");
    uint8_t *whole = NULL;
    size_t whole_len = 0;
    if (batch)
        encode_submit(envs, n, &whole, &whole_len);
    for (size_t i = 0; i < n; i++) {
        msg_t *m = book_add(&r->book, envs[i]->message_id.data);
        encode_submit(&envs[i], 1, &m->frame, &m->len);
        m->sender = (uint8_t)si;
        m->state = PENDING;
        m->first_sent = now;
        m->backoff = r->o.resend_s;
        m->due = now + m->backoff;
        out_add(d, &r->book, (uint32_t)(m - r->book.m));
        cpx_msg_free(envs[i]);
    }
    /* unsent bytes are not lost: the resend timer sends them again */
    if (batch)
        send_bytes(d, whole, whole_len);
    else
        send_bytes(d, r->book.m[r->book.n - 1].frame, r->book.m[r->book.n - 1].len);
    free(whole);
    r->sent += n;
    if (batch)
        r->batches++;
    else
        r->singles++;
    if (d->n_out > r->max_outstanding)
        r->max_outstanding = d->n_out;
}

/* Sends what the pace asks for by now, as far as the senders' windows allow. */
static void pace(run_t *r, double now)
{
    double want = (now - r->t0) * r->o.rate;
    int blocked = 0;
    while ((double)r->sent < want) {
        size_t si = cpx_synth_u64(r->syn) % r->o.n_senders;
        int batch = (double)(cpx_synth_u64(r->syn) % 1000) < BATCH_SHARE * 1000;
        size_t n = batch ? BATCH_N : 1;
        if (r->d[si].n_out + n > r->o.window) {
            blocked = 1;
            break;
        }
        submit(r, si, batch, now);
    }
    r->window_waits += blocked;
}

static void answered(run_t *r, msg_t *m)
{
    out_remove(&r->d[m->sender], &r->book, m);
    free(m->frame);
    m->frame = NULL;
}

/* Resends every pending envelope whose time has come. */
static void resend_due(run_t *r, double now)
{
    for (size_t si = 0; si < r->o.n_senders; si++) {
        dept_t *d = &r->d[si];
        for (size_t k = 0; k < d->n_out; k++) {
            msg_t *m = &r->book.m[d->out[k]];
            if (m->due > now)
                continue;
            if (send_bytes(d, m->frame, m->len))
                break;
            r->resent++;
            m->backoff = fmin(m->backoff * 2, RESEND_MAX_S);
            m->due = now + m->backoff;
        }
    }
}

/* ---- replies -------------------------------------------------------------------------- */

static void on_ack(run_t *r, const Cpx__V1__Ack *a, double now)
{
    msg_t *m = book_find(&r->book, a->message_id.data, a->message_id.len);
    if (!m) {
        r->unknown_acks++;
        return;
    }
    if (m->state == PENDING) {
        m->state = ACKED;
        m->leaf_seq = a->leaf_seq;
        r->acked++;
        r->awaiting_delivery += m->deliveries == 0;
        series_add(&r->ack_lat, now - r->t0, now - m->first_sent);
        answered(r, m);
    } else if (m->state == ACKED && m->leaf_seq != a->leaf_seq) {
        r->duplicates++;  /* accepted twice: two ACCEPTED leaves for one message */
    }
}

static void on_nack(run_t *r, const Cpx__V1__Nack *n, double now)
{
    msg_t *m = book_find(&r->book, n->message_id.data, n->message_id.len);
    if (n->retryable) {
        r->retryable++;
        if (m && m->state == PENDING)
            m->due = now + n->retry_after_ms / 1000.0;
        return;
    }
    if (m && m->state == PENDING) {
        m->state = REFUSED;
        r->refused++;
        r->refused_by_code[(unsigned)n->code < 32 ? n->code : 0]++;
        answered(r, m);
    }
}

static void on_deliver(run_t *r, dept_t *d, const Cpx__V1__Deliver *dv, double now)
{
    const ProtobufCBinaryData *id = &dv->envelope->message_id;
    msg_t *m = book_find(&r->book, id->data, id->len);
    if (!m) {
        r->foreign++;
    } else if (m->deliveries++ == 0) {
        m->delivery_id = dv->delivery_id;
        r->delivered++;
        r->awaiting_delivery -= m->state == ACKED;
        series_add(&r->del_lat, now - r->t0, now - m->first_sent);
    } else if (m->delivery_id != dv->delivery_id) {
        r->duplicates++;  /* a second outbox entry: delivered as two messages */
    } else {
        r->redelivered++;
    }
    /* confirmed every time: confirmations are idempotent (docs/protocol.md §5) */
    Cpx__V1__DeliveryAck da = CPX__V1__DELIVERY_ACK__INIT;
    da.delivery_id = dv->delivery_id;
    da.message_id = *id;
    da.status = CPX__V1__DELIVERY_STATUS__TAKEN;
    cpx_client_frame_t cf = CPX__V1__CLIENT_FRAME__INIT;
    cf.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK;
    cf.delivery_ack = &da;
    send_small(d, &cf);
}

static void on_frame(run_t *r, dept_t *d, const cpx_server_frame_t *f, double now)
{
    d->heard = now;
    switch (f->frame_case) {
    case CPX__V1__SERVER_FRAME__FRAME_ACK:
        on_ack(r, f->ack, now);
        break;
    case CPX__V1__SERVER_FRAME__FRAME_NACK:
        on_nack(r, f->nack, now);
        break;
    case CPX__V1__SERVER_FRAME__FRAME_DELIVER:
        if (f->deliver->envelope)
            on_deliver(r, d, f->deliver, now);
        break;
    default:
        break;
    }
}

/* Waits up to timeout_ms for any socket, then reads everything waiting on all of them. */
static void pump(run_t *r, int timeout_ms)
{
    zmq_pollitem_t it[MAX_SENDERS + 1];
    for (size_t i = 0; i < r->n_d; i++)
        it[i] = (zmq_pollitem_t){r->d[i].sock, 0, ZMQ_POLLIN, 0};
    zmq_poll(it, (int)r->n_d, timeout_ms);
    double now = now_s();
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (size_t i = 0; i < r->n_d; i++) {
        for (int k = 0; k < 5000 && zmq_msg_recv(&msg, r->d[i].sock, ZMQ_DONTWAIT) >= 0; k++) {
            cpx_server_frame_t *f = NULL;
            if (!cpx_decode_server_frame(zmq_msg_data(&msg), zmq_msg_size(&msg), &f))
                on_frame(r, &r->d[i], f, now);
            cpx_msg_free(f);
        }
    }
    zmq_msg_close(&msg);
}

static void keep_alive(run_t *r, double now)
{
    for (size_t i = 0; i < r->n_d; i++)
        if (now - r->d[i].last_hb >= HEARTBEAT_S)
            heartbeat(&r->d[i], now);
}

/* ---- phases ----------------------------------------------------------------------------- */

/* Every department has heard from the gateway (its heartbeat), or exit 3. */
static void await_connected(run_t *r)
{
    double t_end = now_s() + r->o.connect_s;
    for (;;) {
        double now = now_s();
        keep_alive(r, now);
        pump(r, 50);
        size_t ok = 0;
        for (size_t i = 0; i < r->n_d; i++)
            ok += r->d[i].heard > 0;
        if (ok == r->n_d)
            return;
        if (now > t_end)
            fail(3, "no answer from the gateway (endpoint, keys, enrolment?)");
    }
}

static size_t pending_total(const run_t *r)
{
    size_t n = 0;
    for (size_t si = 0; si < r->o.n_senders; si++)
        n += r->d[si].n_out;
    return n;
}

static int drained(const run_t *r)
{
    return pending_total(r) == 0 && r->awaiting_delivery == 0;
}

static void loop_until(run_t *r, double t_end, int offering)
{
    double last_resend = 0;
    for (;;) {
        double now = now_s();
        if (now >= t_end || (!offering && drained(r)))
            return;
        if (offering)
            pace(r, now);
        keep_alive(r, now);
        if (now - last_resend >= 0.05) {
            resend_due(r, now);
            last_resend = now;
        }
        /* Wake every millisecond to keep the pace; a zero timeout would spin a core the
         * gateway needs on a 2-core machine. */
        pump(r, 1);
    }
}

/* ---- report ------------------------------------------------------------------------------ */

static void print_ms(const char *key, double v, int last)
{
    if (v < 0)
        printf("\"%s\": null%s", key, last ? "" : ", ");
    else
        printf("\"%s\": %.2f%s", key, v, last ? "" : ", ");
}

static void report(const run_t *r, double send_s, double drain_s, int ok)
{
    size_t unanswered = pending_total(r), undelivered = r->awaiting_delivery;
    double af, al, df, dl;
    thirds_ms(&r->ack_lat, r->o.seconds, &af, &al);
    thirds_ms(&r->del_lat, r->o.seconds, &df, &dl);
    printf("{\"sent\": %zu, \"acked\": %zu, \"nacked\": %zu, \"delivered\": %zu, \"duplicates\": %zu, "
           "\"lost\": %zu, \"unanswered\": %zu, \"acked_undelivered\": %zu, \"redelivered\": %zu, "
           "\"foreign\": %zu, \"resent\": %zu, \"retryable_nacks\": %zu, \"nacks\": {",
           r->sent, r->acked, r->refused, r->delivered, r->duplicates, unanswered + undelivered,
           unanswered, undelivered, r->redelivered, r->foreign, r->resent, r->retryable);
    int first = 1;
    for (int c = 0; c < 32; c++) {
        if (!r->refused_by_code[c])
            continue;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&cpx__v1__error_code__descriptor, c);
        printf("%s\"%s\": %zu", first ? "" : ", ", v ? v->name : "?", r->refused_by_code[c]);
        first = 0;
    }
    printf("}, \"drained\": %s, \"offered_rate\": %.0f, \"achieved_rate\": %.1f, \"seconds\": %.1f, "
           "\"drain_seconds\": %.1f, \"batches\": %zu, \"singles\": %zu, \"window\": %zu, "
           "\"window_waits\": %zu, \"max_outstanding\": %zu, ",
           ok ? "true" : "false", r->o.rate, r->sent / send_s, send_s, drain_s, r->batches,
           r->singles, r->o.window, r->window_waits, r->max_outstanding);
    print_ms("ack_ms_first_third_p50", af, 0);
    print_ms("ack_ms_last_third_p50", al, 0);
    print_ms("ack_ms_p99", quantile_ms(r->ack_lat.s, r->ack_lat.n, 0.99), 0);
    print_ms("delivery_ms_first_third_p50", df, 0);
    print_ms("delivery_ms_last_third_p50", dl, 0);
    print_ms("delivery_ms_p99", quantile_ms(r->del_lat.s, r->del_lat.n, 0.99), 1);
    printf("}\n");
    fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: chaos_loadgen --endpoint EP --keys DIR [--senders A,B,C] [--receiver DEPT]\n"
            "                     [--rate R] [--seconds S] [--drain-seconds D] [--window N]\n"
            "                     [--resend-ms MS] [--connect-seconds S] [--seed N]\n");
    exit(2);
}

static void parse(int argc, char **argv, opts_t *o)
{
    static char senders[512] = "POLICE,EDUCATION,HEALTH";
    *o = (opts_t){.receiver = "CIVIL_AFFAIRS", .rate = 1000, .seconds = 10, .drain_seconds = 120,
                  .resend_s = 3.0, .connect_s = 15, .window = 2000, .seed = (uint64_t)wall_ms() ^ (uint64_t)getpid()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--endpoint")) o->endpoint = v;
        else if (!strcmp(a, "--keys")) o->keys = v;
        else if (!strcmp(a, "--senders")) snprintf(senders, sizeof senders, "%s", v);
        else if (!strcmp(a, "--receiver")) o->receiver = v;
        else if (!strcmp(a, "--rate")) o->rate = atof(v);
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--drain-seconds")) o->drain_seconds = atof(v);
        else if (!strcmp(a, "--window")) o->window = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--resend-ms")) o->resend_s = atof(v) / 1000.0;
        else if (!strcmp(a, "--connect-seconds")) o->connect_s = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else usage();
    }
    for (char *tok = strtok(senders, ","); tok; tok = strtok(NULL, ","))
        if (*tok && o->n_senders < MAX_SENDERS)
            o->senders[o->n_senders++] = tok;
    if (!o->endpoint || !o->keys || !o->n_senders || o->rate <= 0 || o->seconds < 0 ||
        o->window < BATCH_N || o->resend_s <= 0)
        usage();
}

int main(int argc, char **argv)
{
    static run_t r;
    parse(argc, argv, &r.o);
    void *ctx = zmq_ctx_new();
    r.syn = cpx_synth_new(r.o.seed);
    if (!ctx || !r.syn)
        fail(1, "setup");
    for (size_t i = 0; i < r.o.n_senders; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s.sign.key", r.o.keys, r.o.senders[i]);
        r.d[i].name = r.o.senders[i];
        if (!(r.d[i].sign = cpx_key_load_private(p)))
            fail(3, "cannot load a sender's signing key");
        r.d[i].sock = open_dealer(ctx, &r.o, r.d[i].name);
    }
    r.n_d = r.o.n_senders + 1;
    r.d[r.o.n_senders].name = r.o.receiver;
    r.d[r.o.n_senders].sock = open_dealer(ctx, &r.o, r.o.receiver);
    await_connected(&r);

    r.t0 = now_s();
    loop_until(&r, r.t0 + r.o.seconds, 1);
    double t_send = now_s();
    loop_until(&r, t_send + r.o.drain_seconds, 0);
    double t_end = now_s();
    report(&r, fmax(t_send - r.t0, 1e-3), t_end - t_send, drained(&r));

    for (size_t i = 0; i < r.n_d; i++) {
        zmq_close(r.d[i].sock);
        cpx_key_destroy(&r.d[i].sign);
        free(r.d[i].out);
    }
    for (size_t i = 0; i < r.book.n; i++)
        free(r.book.m[i].frame);
    free(r.book.m);
    free(r.book.tab);
    free(r.ack_lat.s);
    free(r.del_lat.s);
    cpx_synth_destroy(&r.syn);
    zmq_ctx_term(ctx);
    return 0;
}
