/* Routing by the city's responsibility rules: stub until the engine lands. */
#include "cpx/route.h"

#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"

struct cpx_router {
    int unused;
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        strncpy(err, msg, errlen - 1);
        err[errlen - 1] = '\0';
    }
}

cpx_router_t *cpx_router_load(const char *path, char *err, size_t errlen)
{
    (void)path;
    set_err(err, errlen, "routing not implemented yet");
    return NULL;
}

cpx_router_t *cpx_router_load_string(const char *yaml, size_t len, const char *name,
                                     char *err, size_t errlen)
{
    (void)yaml; (void)len; (void)name;
    set_err(err, errlen, "routing not implemented yet");
    return NULL;
}

void cpx_router_destroy(cpx_router_t **self_p)
{
    if (self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

int cpx_router_route(const cpx_router_t *r, const cpx_envelope_t *env,
                     const cpx_route_ctx_t *ctx, cpx_route_t *out)
{
    (void)ctx;
    if (!r || !env || !out)
        return CPX_ERR_ARG;
    return CPX_ERR_STATE;
}

size_t cpx_router_rule_count(const cpx_router_t *r) { (void)r; return 0; }
const char *cpx_router_rule_name(const cpx_router_t *r, size_t i) { (void)r; (void)i; return NULL; }
int cpx_route_age(const Cpx__V1__MinorIdentity *minor, int64_t at_ms) { (void)minor; (void)at_ms; return -1; }
