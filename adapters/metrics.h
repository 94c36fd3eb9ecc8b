/* adapters/metrics.h — the adapter's own /metrics and /healthz (libmicrohttpd), for
 * the department's IT staff and the city's monitoring: the same counters as
 * `cpx-adapter --status`, served live. Off unless `metrics:` is configured; listens on
 * loopback unless told otherwise. */
#ifndef CPX_ADAPTER_METRICS_H
#define CPX_ADAPTER_METRICS_H

#include <stddef.h>

#include "cpx/adapter.h"

typedef struct cpx_adm cpx_adm_t;

/* Starts serving on listen ("HOST:PORT"; PORT 0 picks one, written to *port_out when not
 * NULL). Caller owns the result and frees it with cpx_adm_stop. NULL on failure (logged). */
cpx_adm_t *cpx_adm_start(const char *listen, const char *dept, unsigned *port_out);
/* Publishes the counters after a cycle (cheap: a copy under a mutex). */
void cpx_adm_publish(cpx_adm_t *self, const cpx_adapter_counters_t *c, size_t pending);
/* Stops serving and frees; accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_adm_stop(cpx_adm_t **self_p);

#endif
