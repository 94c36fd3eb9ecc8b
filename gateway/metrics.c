/* metrics.c — write-path counters (single writer, lock-free readers). */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

enum {
    M_ACCEPTED = 0,  /* department = sender, kind */
    M_REFUSED,       /* department = sender, kind */
    M_SENT,          /* department = recipient (each attempt) */
    M_DELIVERED,     /* department = recipient (confirmed TAKEN) */
    M_DEAD,          /* department = recipient */
    M_COUNT
};

#define N_EVENTS 32
#define MAX_DEPTS 512
#define INDEX_CAP (2 * CPX_GW_METRICS_SERIES)
#define PUBLISH_EVERY_MS 200
#define KIND_LEN 40

/* ack latency buckets, microseconds */
static const uint64_t bucket_us[] = {1000, 2500, 5000, 10000, 25000, 50000, 100000,
                                     250000, 500000, 1000000, 2500000, 5000000};
#define N_BUCKETS (sizeof bucket_us / sizeof bucket_us[0])

typedef struct series {
    uint8_t metric;
    char dept[CPX_MAX_DEPT_CODE + 1];
    char kind[KIND_LEN];
    _Atomic uint64_t v;
} series_t;

typedef struct dept_gauge {
    char dept[CPX_MAX_DEPT_CODE + 1];
    _Atomic int online;
    _Atomic uint64_t depth, unconfirmed;
    _Atomic int64_t oldest_sent_ms;
} dept_gauge_t;

struct cpx_gw_metrics {
    series_t *series;
    _Atomic size_t n_series;
    int32_t *index;                 /* writer only: hash -> series + 1 */
    dept_gauge_t depts[MAX_DEPTS];
    _Atomic size_t n_depts;

    _Atomic uint64_t events[N_EVENTS];     /* leaves by event (sealed events excluded) */
    _Atomic uint64_t buckets[N_BUCKETS + 1];
    _Atomic uint64_t lat_sum_us, lat_count;
    /* sealed totals: live (writer only) and what is shown */
    uint64_t sealed_req_live, sealed_ref_live;
    int64_t sealed_published_ms;
    _Atomic uint64_t sealed_req, sealed_ref;

    _Atomic int ready_store, ready_key, ready_bound;
    _Atomic int64_t loop_ms;
    int64_t last_publish_ms;

    /* the cycle in progress (writer only) */
    uint32_t *pend;
    size_t n_pend, cap_pend;
    uint32_t pend_events[N_EVENTS];
    uint64_t pend_sealed_req, pend_sealed_ref;
    uint64_t pend_accepted;
    struct timespec cycle_start;
};

/* ---- buffer ----------------------------------------------------------------------- */

void cpx_gw_buf_append(cpx_gw_buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cpx_gw_buf_vprintf(cpx_gw_buf_t *b, const char *fmt, va_list ap)
{
    char small[512];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof small) {
        cpx_gw_buf_append(b, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            cpx_gw_buf_append(b, big, (size_t)n);
            free(big);
        } else {
            b->oom = 1;
        }
    }
    va_end(ap2);
}

void cpx_gw_buf_printf(cpx_gw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cpx_gw_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void cpx_gw_metrics_label(cpx_gw_buf_t *out, const char *value)
{
    for (const char *s = value; *s; s++) {
        if (*s == '\\' || *s == '"')
            cpx_gw_buf_append(out, "\\", 1);
        if (*s == '\n')
            cpx_gw_buf_append(out, "\\n", 2);
        else
            cpx_gw_buf_append(out, s, 1);
    }
}

/* ---- lifecycle -------------------------------------------------------------------- */

cpx_gw_metrics_t *cpx_gw_metrics_new(void)
{
    cpx_gw_metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->series = calloc(CPX_GW_METRICS_SERIES, sizeof *self->series);
    self->index = calloc(INDEX_CAP, sizeof *self->index);
    if (!self->series || !self->index) {
        cpx_gw_metrics_destroy(&self);
        return NULL;
    }
    return self;
}

void cpx_gw_metrics_destroy(cpx_gw_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_metrics_t *self = *self_p;
    free(self->series);
    free(self->index);
    free(self->pend);
    free(self);
    *self_p = NULL;
}

static int64_t mono_us(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000000 + (b->tv_nsec - a->tv_nsec) / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- writer side ------------------------------------------------------------------ */

static uint32_t hash3(int metric, const char *dept, const char *kind)
{
    uint32_t h = 2166136261u ^ (uint32_t)metric;
    for (const char *s = dept; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ '|') * 16777619u;
    for (const char *s = kind; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The series (metric, dept, kind), created when new; -1 when the table is full. */
static long series_slot(cpx_gw_metrics_t *self, int metric, const char *dept, const char *kind)
{
    if (!dept)
        dept = "";
    if (!kind)
        kind = "";
    size_t i = hash3(metric, dept, kind) & (INDEX_CAP - 1);
    for (;; i = (i + 1) & (INDEX_CAP - 1)) {
        int32_t v = self->index[i];
        if (!v)
            break;
        series_t *s = &self->series[v - 1];
        if (s->metric == metric && !strcmp(s->dept, dept) && !strcmp(s->kind, kind))
            return v - 1;
    }
    size_t n = atomic_load_explicit(&self->n_series, memory_order_relaxed);
    if (n == CPX_GW_METRICS_SERIES)
        return -1;
    series_t *s = &self->series[n];
    s->metric = (uint8_t)metric;
    snprintf(s->dept, sizeof s->dept, "%s", dept);
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    atomic_store_explicit(&s->v, 0, memory_order_relaxed);
    atomic_store_explicit(&self->n_series, n + 1, memory_order_release);
    self->index[i] = (int32_t)n + 1;
    return (long)n;
}

static void pend(cpx_gw_metrics_t *self, int metric, const char *dept, const char *kind)
{
    long slot = series_slot(self, metric, dept, kind);
    if (slot < 0)
        return;
    if (self->n_pend == self->cap_pend) {
        size_t cap = self->cap_pend ? self->cap_pend * 2 : 1024;
        uint32_t *p = realloc(self->pend, cap * sizeof *p);
        if (!p)
            return;  /* a metric lost under memory pressure; nothing durable depends on it */
        self->pend = p;
        self->cap_pend = cap;
    }
    self->pend[self->n_pend++] = (uint32_t)slot;
}

void cpx_gw_metrics_begin(cpx_gw_metrics_t *self)
{
    if (self)
        clock_gettime(CLOCK_MONOTONIC, &self->cycle_start);
}

static int sealed_event(int ev)
{
    return ev >= CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REQUESTED &&
           ev <= CPX__V1__AUDIT_EVENT__SEAL_ORDERED;
}

void cpx_gw_metrics_leaf(cpx_gw_metrics_t *self, const cpx_audit_leaf_t *leaf)
{
    if (!self || !leaf)
        return;
    int ev = (int)leaf->event;
    if (ev == CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REQUESTED)
        self->pend_sealed_req++;
    else if (ev == CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED)
        self->pend_sealed_ref++;
    if (ev >= 0 && ev < N_EVENTS && !sealed_event(ev))
        self->pend_events[ev]++;
    /* A sealed leaf carries only a pseudonym, but its department and kind labels
     * could still tell who asked about whom when: count it in the totals only. */
    if (leaf->case_ref && !strncmp(leaf->case_ref, "P:", 2))
        return;
    const char *rcpt = leaf->n_recipients ? leaf->recipients[0] : "";
    const char *kind = leaf->body_kind && *leaf->body_kind ? leaf->body_kind : "unknown";
    switch (ev) {
    case CPX__V1__AUDIT_EVENT__ACCEPTED:
        pend(self, M_ACCEPTED, leaf->sender, kind);
        self->pend_accepted++;
        break;
    case CPX__V1__AUDIT_EVENT__REJECTED:
        pend(self, M_REFUSED, leaf->sender, kind);
        break;
    case CPX__V1__AUDIT_EVENT__DELIVERED:
        pend(self, M_SENT, rcpt, "");
        break;
    case CPX__V1__AUDIT_EVENT__DELIVERY_ACKNOWLEDGED:
        pend(self, M_DELIVERED, rcpt, "");
        break;
    case CPX__V1__AUDIT_EVENT__DEAD_LETTERED:
        pend(self, M_DEAD, rcpt, "");
        break;
    default:
        break;
    }
}

static void pend_clear(cpx_gw_metrics_t *self)
{
    self->n_pend = 0;
    memset(self->pend_events, 0, sizeof self->pend_events);
    self->pend_sealed_req = self->pend_sealed_ref = 0;
    self->pend_accepted = 0;
}

void cpx_gw_metrics_commit(cpx_gw_metrics_t *self)
{
    if (!self)
        return;
    for (size_t i = 0; i < self->n_pend; i++)
        atomic_fetch_add_explicit(&self->series[self->pend[i]].v, 1, memory_order_relaxed);
    for (int e = 0; e < N_EVENTS; e++)
        if (self->pend_events[e])
            atomic_fetch_add_explicit(&self->events[e], self->pend_events[e], memory_order_relaxed);
    if (self->pend_accepted) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t us = mono_us(&self->cycle_start, &now);
        if (us < 0)
            us = 0;
        size_t b = 0;
        while (b < N_BUCKETS && (uint64_t)us > bucket_us[b])
            b++;
        atomic_fetch_add_explicit(&self->buckets[b], self->pend_accepted, memory_order_relaxed);
        atomic_fetch_add_explicit(&self->lat_sum_us, (uint64_t)us * self->pend_accepted,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&self->lat_count, self->pend_accepted, memory_order_relaxed);
    }
    self->sealed_req_live += self->pend_sealed_req;
    self->sealed_ref_live += self->pend_sealed_ref;
    pend_clear(self);
}

void cpx_gw_metrics_abort(cpx_gw_metrics_t *self)
{
    if (self)
        pend_clear(self);
}

static dept_gauge_t *dept_gauge(cpx_gw_metrics_t *self, const char *dept)
{
    size_t n = atomic_load_explicit(&self->n_depts, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(self->depts[i].dept, dept))
            return &self->depts[i];
    if (n == MAX_DEPTS)
        return NULL;
    dept_gauge_t *g = &self->depts[n];
    snprintf(g->dept, sizeof g->dept, "%s", dept);
    atomic_store_explicit(&self->n_depts, n + 1, memory_order_release);
    return g;
}

void cpx_gw_metrics_publish(struct cpx_gw *gw)
{
    cpx_gw_metrics_t *self = gw ? gw->metrics : NULL;
    if (!self)
        return;
    int64_t now = wall_ms();
    atomic_store_explicit(&self->loop_ms, now, memory_order_relaxed);
    if (now - self->last_publish_ms < PUBLISH_EVERY_MS && now >= self->last_publish_ms)
        return;
    self->last_publish_ms = now;
    for (size_t i = 0; i < cpx_gw_sessions_count(gw->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(gw->sessions, i);
        dept_gauge_t *g = dept_gauge(self, s->dept);
        if (!g)
            break;
        int64_t oldest = 0;
        for (size_t j = 0; j < s->n_flight; j++)
            if (!oldest || s->flight[j].sent_ms < oldest)
                oldest = s->flight[j].sent_ms;
        atomic_store_explicit(&g->online, s->state == CPX_GW_ONLINE, memory_order_relaxed);
        atomic_store_explicit(&g->depth, s->depth, memory_order_relaxed);
        atomic_store_explicit(&g->unconfirmed, s->n_flight, memory_order_relaxed);
        atomic_store_explicit(&g->oldest_sent_ms, oldest, memory_order_relaxed);
    }
    if (now - self->sealed_published_ms >= CPX_GW_METRICS_SEALED_PERIOD_MS) {
        self->sealed_published_ms = now;
        atomic_store_explicit(&self->sealed_req, self->sealed_req_live, memory_order_relaxed);
        atomic_store_explicit(&self->sealed_ref, self->sealed_ref_live, memory_order_relaxed);
    }
}

/* ---- readers ---------------------------------------------------------------------- */

void cpx_gw_metrics_set_ready(cpx_gw_metrics_t *self, int store, int key, int bound)
{
    if (!self)
        return;
    atomic_store(&self->ready_store, store);
    atomic_store(&self->ready_key, key);
    atomic_store(&self->ready_bound, bound);
}

int cpx_gw_metrics_ready(const cpx_gw_metrics_t *self, int64_t max_age_ms, const char **why)
{
    const char *w = NULL;
    if (!self)
        w = "no metrics";
    else if (!atomic_load(&self->ready_store))
        w = "store not open";
    else if (!atomic_load(&self->ready_key))
        w = "signing key not loaded";
    else if (!atomic_load(&self->ready_bound))
        w = "socket not bound";
    else if (wall_ms() - atomic_load(&self->loop_ms) > max_age_ms)
        w = "server loop not running";
    if (why)
        *why = w ? w : "ready";
    return w == NULL;
}

void cpx_gw_metrics_each_dept(const cpx_gw_metrics_t *self, cpx_gw_metrics_dept_fn fn, void *ctx)
{
    size_t n = atomic_load_explicit(&self->n_depts, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        const dept_gauge_t *g = &self->depts[i];
        if (fn(ctx, g->dept, atomic_load_explicit(&g->online, memory_order_relaxed),
               atomic_load_explicit(&g->depth, memory_order_relaxed),
               atomic_load_explicit(&g->unconfirmed, memory_order_relaxed),
               atomic_load_explicit(&g->oldest_sent_ms, memory_order_relaxed)))
            break;
    }
}

static void render_family(const cpx_gw_metrics_t *self, cpx_gw_buf_t *out, int metric,
                          const char *name, const char *help, int with_kind)
{
    cpx_gw_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    size_t n = atomic_load_explicit(&self->n_series, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        const series_t *s = &self->series[i];
        if (s->metric != metric)
            continue;
        cpx_gw_buf_printf(out, "%s{department=\"", name);
        cpx_gw_metrics_label(out, s->dept);
        if (with_kind) {
            cpx_gw_buf_append(out, "\",kind=\"", 8);
            cpx_gw_metrics_label(out, s->kind);
        }
        cpx_gw_buf_printf(out, "\"} %llu\n",
                          (unsigned long long)atomic_load_explicit(&s->v, memory_order_relaxed));
    }
}

static const char *event_name(int ev)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__audit_event__descriptor, ev);
    return v ? v->name : NULL;
}

void cpx_gw_metrics_render(const cpx_gw_metrics_t *self, cpx_gw_buf_t *out)
{
    render_family(self, out, M_ACCEPTED, "cpx_messages_accepted_total",
                  "Envelopes accepted (ACCEPTED leaves) by sender and body kind.", 1);
    render_family(self, out, M_REFUSED, "cpx_messages_refused_total",
                  "Envelopes refused (REJECTED leaves) by sender and body kind.", 1);
    render_family(self, out, M_SENT, "cpx_deliveries_sent_total",
                  "Deliver frames sent (each attempt) by recipient.", 0);
    render_family(self, out, M_DELIVERED, "cpx_messages_delivered_total",
                  "Deliveries confirmed TAKEN by the recipient.", 0);
    render_family(self, out, M_DEAD, "cpx_messages_dead_lettered_total",
                  "Deliveries moved to the dead letters, by recipient.", 0);

    cpx_gw_buf_printf(out, "# HELP cpx_audit_leaves_total Audit leaves committed by event "
                           "(sealed-access events excluded).\n# TYPE cpx_audit_leaves_total counter\n");
    for (int e = 1; e < N_EVENTS; e++) {
        const char *nm = event_name(e);
        if (!nm || sealed_event(e))
            continue;
        cpx_gw_buf_printf(out, "cpx_audit_leaves_total{event=\"%s\"} %llu\n", nm,
                          (unsigned long long)atomic_load_explicit(&self->events[e], memory_order_relaxed));
    }
    cpx_gw_buf_printf(out,
                      "# HELP cpx_sealed_access_requests_total Sealed-record access requests "
                      "(total only; republished every %d min).\n"
                      "# TYPE cpx_sealed_access_requests_total counter\n"
                      "cpx_sealed_access_requests_total %llu\n"
                      "# HELP cpx_sealed_access_refusals_total Sealed-record access refusals "
                      "(total only; republished every %d min).\n"
                      "# TYPE cpx_sealed_access_refusals_total counter\n"
                      "cpx_sealed_access_refusals_total %llu\n",
                      CPX_GW_METRICS_SEALED_PERIOD_MS / 60000,
                      (unsigned long long)atomic_load(&self->sealed_req),
                      CPX_GW_METRICS_SEALED_PERIOD_MS / 60000,
                      (unsigned long long)atomic_load(&self->sealed_ref));

    cpx_gw_buf_printf(out, "# HELP cpx_ack_latency_seconds From the start of the cycle that "
                           "read a Submit to that cycle's commit (its Ack follows once the commit is flushed).\n"
                           "# TYPE cpx_ack_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t b = 0; b <= N_BUCKETS; b++) {
        cum += atomic_load_explicit(&self->buckets[b], memory_order_relaxed);
        if (b < N_BUCKETS)
            cpx_gw_buf_printf(out, "cpx_ack_latency_seconds_bucket{le=\"%g\"} %llu\n",
                              (double)bucket_us[b] / 1e6, (unsigned long long)cum);
        else
            cpx_gw_buf_printf(out, "cpx_ack_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                              (unsigned long long)cum);
    }
    cpx_gw_buf_printf(out, "cpx_ack_latency_seconds_sum %.6f\ncpx_ack_latency_seconds_count %llu\n",
                      (double)atomic_load(&self->lat_sum_us) / 1e6,
                      (unsigned long long)atomic_load(&self->lat_count));

    size_t nd = atomic_load_explicit(&self->n_depts, memory_order_acquire);
    int64_t now = wall_ms();
    unsigned online = 0;
    static const char *const gnames[] = {"cpx_department_online", "cpx_queue_depth",
                                         "cpx_deliveries_unconfirmed",
                                         "cpx_oldest_unconfirmed_age_seconds"};
    static const char *const ghelp[] = {
        "1 when the department's adapter is connected.",
        "Deliveries waiting in the department's outbox (including unconfirmed).",
        "Deliveries sent and not yet confirmed.",
        "Age of the oldest unconfirmed delivery (0 when none)."};
    for (int g = 0; g < 4; g++) {
        cpx_gw_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", gnames[g], ghelp[g], gnames[g]);
        for (size_t i = 0; i < nd; i++) {
            const dept_gauge_t *d = &self->depts[i];
            cpx_gw_buf_printf(out, "%s{department=\"", gnames[g]);
            cpx_gw_metrics_label(out, d->dept);
            cpx_gw_buf_append(out, "\"} ", 3);
            int64_t oldest = atomic_load(&d->oldest_sent_ms);
            switch (g) {
            case 0:
                online += (unsigned)atomic_load(&d->online);
                cpx_gw_buf_printf(out, "%d\n", atomic_load(&d->online));
                break;
            case 1:
                cpx_gw_buf_printf(out, "%llu\n", (unsigned long long)atomic_load(&d->depth));
                break;
            case 2:
                cpx_gw_buf_printf(out, "%llu\n", (unsigned long long)atomic_load(&d->unconfirmed));
                break;
            default:
                cpx_gw_buf_printf(out, "%.3f\n", oldest && now > oldest ? (double)(now - oldest) / 1e3 : 0.0);
            }
        }
    }
    cpx_gw_buf_printf(out, "# HELP cpx_adapters_connected Departments connected now.\n"
                           "# TYPE cpx_adapters_connected gauge\ncpx_adapters_connected %u\n",
                      online);
}
