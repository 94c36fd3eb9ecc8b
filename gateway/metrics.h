/* gateway/metrics.h — counters and gauges of the write path, read by the HTTP thread.
 *
 * Every audit leaf the gateway writes passes through cpx_gw_leaf, which calls
 * cpx_gw_metrics_leaf: the counters are therefore derived from the log itself, and a
 * counter moves only when the transaction holding its leaf has committed (leaves of a
 * cycle are held as pending increments and applied by cpx_gw_metrics_commit, dropped
 * by cpx_gw_metrics_abort). Counters start at zero with the process, as Prometheus
 * expects; the dashboard's durable figures come from the log (http.c).
 *
 * Threads: exactly one writer (the server thread) calls the leaf/cycle/publish
 * functions; any number of readers may call cpx_gw_metrics_render concurrently. The
 * series table is append-only with a published count (release/acquire) and every
 * value is a C11 atomic, so neither side ever waits for the other.
 *
 * Sealed records: only two unlabelled totals (requests, refusals) are exported, and
 * they are republished at most every CPX_GW_METRICS_SEALED_PERIOD_MS, so whoever asks
 * about a subject cannot watch a counter to learn whether a sealed record exists. */
#ifndef CPX_GW_METRICS_H
#define CPX_GW_METRICS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"

#define CPX_GW_METRICS_SERIES 8192
#define CPX_GW_METRICS_SEALED_PERIOD_MS (15 * 60 * 1000)

typedef struct cpx_gw_metrics cpx_gw_metrics_t;
struct cpx_gw;

/* A growable text buffer for the renderers. On allocation failure oom is set and
 * further appends are ignored; the caller frees p. */
typedef struct cpx_gw_buf {
    char *p;
    size_t len, cap;
    int oom;
} cpx_gw_buf_t;

void cpx_gw_buf_printf(cpx_gw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cpx_gw_buf_vprintf(cpx_gw_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void cpx_gw_buf_append(cpx_gw_buf_t *b, const char *s, size_t n);

/* Caller owns the result (cpx_gw_metrics_destroy). NULL on allocation failure. */
cpx_gw_metrics_t *cpx_gw_metrics_new(void);
void cpx_gw_metrics_destroy(cpx_gw_metrics_t **self_p);

/* ---- writer thread ---------------------------------------------------------------- */

/* The cycle starts (ack latency is measured from here to the commit). */
void cpx_gw_metrics_begin(cpx_gw_metrics_t *self);
/* A leaf was appended in the cycle's transaction (borrowed for the call). */
void cpx_gw_metrics_leaf(cpx_gw_metrics_t *self, const cpx_audit_leaf_t *leaf);
/* The cycle committed: pending increments become visible and every accepted message
 * of the cycle observes the cycle's latency. */
void cpx_gw_metrics_commit(cpx_gw_metrics_t *self);
/* The cycle aborted: its pending increments are dropped. */
void cpx_gw_metrics_abort(cpx_gw_metrics_t *self);
/* Publishes the server's session table (online, queue depth, unconfirmed deliveries
 * and the oldest of them per department) and stamps the loop as alive. Cheap; does
 * the work at most every 200 ms. */
void cpx_gw_metrics_publish(struct cpx_gw *gw);

/* ---- any thread ------------------------------------------------------------------- */

/* Readiness parts: store open, signing key loaded, socket bound. */
void cpx_gw_metrics_set_ready(cpx_gw_metrics_t *self, int store, int key, int bound);
/* 1 when the three parts are set and the loop ran within max_age_ms, else 0; why
 * (may be NULL) receives a short reason. */
int cpx_gw_metrics_ready(const cpx_gw_metrics_t *self, int64_t max_age_ms, const char **why);

/* Per-department gauges as last published (for the dashboard). fn is called for each
 * department the server knows; stops when fn returns non-zero. */
typedef int (*cpx_gw_metrics_dept_fn)(void *ctx, const char *dept, int online, uint64_t depth,
                                      uint64_t unconfirmed, int64_t oldest_sent_ms);
void cpx_gw_metrics_each_dept(const cpx_gw_metrics_t *self, cpx_gw_metrics_dept_fn fn, void *ctx);

/* Appends the counters, histogram and gauges in Prometheus text format. */
void cpx_gw_metrics_render(const cpx_gw_metrics_t *self, cpx_gw_buf_t *out);

/* Writes a Prometheus label value (backslash, quote and newline escaped). */
void cpx_gw_metrics_label(cpx_gw_buf_t *out, const char *value);

#endif
