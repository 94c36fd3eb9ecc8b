/* libFuzzer: routing any decodable envelope (validated or not) with the shipped
 * rules never crashes, never reads past counts, and always yields a recipient.
 * Run from the source tree, or set CPX_ROUTES to a rules file. Seeds:
 * tests/fuzz/corpus/fuzz_route/ (encoded envelopes). */
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/route.h"

#ifndef CPX_SOURCE_DIR
#define CPX_SOURCE_DIR "."
#endif

static cpx_router_t *router;

static int lookup(void *arg, const uint8_t *id, size_t len, cpx_route_referral_t *out)
{
    (void)arg;
    if (len == 0 || id[0] & 1)
        return CPX_ERR_NOT_FOUND;
    memcpy(out->sender, "EDUCATION", 10);
    return CPX_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!router) {
        const char *path = getenv("CPX_ROUTES");
        char err[512];
        router = cpx_router_load(path ? path : CPX_SOURCE_DIR "/deploy/jiangyin/routes.yaml",
                                 err, sizeof err);
        if (!router) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
    }
    cpx_envelope_t *env = NULL;
    if (cpx_decode_envelope(data, size, &env) != CPX_OK)
        return 0;
    cpx_route_ctx_t ctx = {.now_ms = 1748750400000LL, .lookup = lookup};
    static cpx_route_t out;
    int rc = cpx_router_route(router, env, &ctx, &out);
    if (rc != CPX_OK && rc != CPX_ERR_TOO_LARGE)
        __builtin_trap();
    if (out.unrouted && out.n_recipients == 0)
        __builtin_trap();  /* the fallback always receives an unrouted message */
    if (rc == CPX_OK && out.n_recipients == 0 && !out.unrouted) {
        /* only possible when every resolved recipient was the sender */
        if (out.n_matched == 0)
            __builtin_trap();
    }
    cpx_msg_free(env);
    return 0;
}
