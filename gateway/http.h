/* gateway/http.h — the operations endpoint of cpx-gateway (libmicrohttpd):
 *
 *   GET /healthz            200 "ready" when the store is open, the signing key loaded,
 *                           the socket bound and the server loop ran in the last 5 s;
 *                           503 with the reason otherwise. No token.
 *   GET /metrics            Prometheus text format (metrics.c plus store-derived gauges:
 *                           tree size, age of the latest signed head, oldest undelivered
 *                           age per department, overdue referrals, dead letters, last
 *                           verification). No token: bind it to loopback (the default).
 *   GET /  (/dashboard)     the leading-group office's page; GET /api/dashboard the same
 *                           figures as JSON. Token required (Authorization: Bearer T,
 *                           ?token=T — which also sets an HttpOnly cookie — or the
 *                           cookie), checked against the SHA-256 per user from config.
 *
 * Every dashboard view is audited: the connection's thread hands the view to the server
 * thread over an inproc PUSH/PULL pair, the server writes a DASHBOARD_VIEWED leaf in its
 * next cycle (many views share one cycle), and the page is sent only after that cycle has
 * committed (503 if it does not within 5 s). The HTTP threads never write to the store;
 * they read it in their own read transactions. The dashboard's figures are folded
 * incrementally from the audit log (and the envelopes it names), so they survive
 * restarts and agree with `cpxctl audit`; they show counts and case ids only.
 *
 * A verifier thread replays the whole log (cpx_averify_store, one hashing thread) at
 * start and every http.verify_interval_s; the dashboard and /metrics show the result.
 *
 * Caveats: the hooks below are called by the server thread only; all of them accept a
 * gateway without an HTTP endpoint (gw->http == NULL) and then do nothing. */
#ifndef CPX_GW_HTTP_H
#define CPX_GW_HTTP_H

#include <stdint.h>

typedef struct cpx_gw_http cpx_gw_http_t;
struct cpx_gw;

/* Starts the endpoint when gw->cfg.http.listen is set (gw->http stays NULL when not),
 * after the store is open, the key loaded and the socket bound. Writes the bound
 * address to <data_dir>/gateway.http. CPX_OK, or a negative cpx_err (logged). */
int cpx_gw_http_start(struct cpx_gw *gw);
/* Stops the threads and frees; accepts NULL and sets *self_p to NULL. Must run before
 * the LMDB environment closes. */
void cpx_gw_http_destroy(cpx_gw_http_t **self_p);

/* Connections the endpoint still holds: accepted and not yet released, where released
 * means the connection's thread has been joined and its response and buffers freed.
 * 0 without an endpoint. Any thread may call it. A closed connection stays counted
 * until libmicrohttpd's listener thread next wakes (it releases closed connections when
 * it accepts the next one), so a client that wants to know the gateway is done with a
 * connection it has read to the end opens one more and waits until that is the only
 * one left (the HTTP fuzz harness does, so its per-input leak check never sees a
 * connection in flight). */
unsigned cpx_gw_http_connections(const cpx_gw_http_t *self);

/* Socket the server loop polls for dashboard views (NULL without an endpoint). */
void *cpx_gw_http_socket(const cpx_gw_http_t *self);
/* 1 when views wait to be audited. */
int cpx_gw_ops_pending(struct cpx_gw *gw);

/* Cycle hooks: begin (before the first frame), the views (in gw->txn, before the head
 * is signed; CPX_OK or a store error that aborts the cycle), end (after the commit or
 * the abort), and the loop hook (every iteration: publishes gauges, stamps liveness). */
void cpx_gw_ops_begin(struct cpx_gw *gw);
int cpx_gw_ops_cycle(struct cpx_gw *gw);
/* end returns the last dashboard view the committed cycle audited (0: none); its page
 * is released by cpx_gw_ops_durable once that commit is durable. */
uint64_t cpx_gw_ops_end(struct cpx_gw *gw, int committed);
void cpx_gw_ops_durable(struct cpx_gw *gw, uint64_t view);
void cpx_gw_ops_loop(struct cpx_gw *gw);

#endif
