/* bench_envsign — envelope signing and verification rates on synthetic discovery
 * reports: per-message sign/verify, batch sign, and cpx_envsign_verify_batch of a
 * 1000-envelope batch (one Ed25519 verification). One core. Usage: bench_envsign [N] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpx/codec.h"
#include "cpx/envsign.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/synth.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 1000;
    if (n == 0 || n > CPX_MAX_BATCH_ENVELOPES)
        n = CPX_MAX_BATCH_ENVELOPES;
    cpx_synth_t *s = cpx_synth_new(42);
    cpx_key_t *key = cpx_key_generate();
    if (!s || !key)
        return 1;
    cpx_envelope_t **envs = calloc(n, sizeof *envs);
    cpx_envsign_result_t *res = calloc(n, sizeof *res);
    int *rcs = calloc(n, sizeof *rcs);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        envs[i] = cpx_synth_discovery(s, 1764374400000 + (int64_t)i);
        if (!envs[i])
            return 1;
        bytes += protobuf_c_message_get_packed_size(&envs[i]->base);
    }
    double t = now();
    for (size_t i = 0; i < n; i++)
        if (cpx_envsign_sign(envs[i], key) != CPX_OK)
            return 1;
    double sign = now() - t;
    t = now();
    for (size_t i = 0; i < n; i++)
        if (cpx_envsign_verify(envs[i], key, &res[i]) != CPX_OK)
            return 1;
    double verify = now() - t;
    int rounds = 20;
    t = now();
    for (int r = 0; r < rounds; r++)
        if (cpx_envsign_sign_batch(envs, n, key) != CPX_OK)
            return 1;
    double bsign = (now() - t) / rounds;
    t = now();
    for (int r = 0; r < rounds; r++)
        if (cpx_envsign_verify_batch(envs, n, key, res, rcs) != CPX_OK)
            return 1;
    double bverify = (now() - t) / rounds;
    printf("envelopes=%zu avg_bytes=%zu\n", n, bytes / n);
    printf("per-message sign:   %8.0f env/s\n", (double)n / sign);
    printf("per-message verify: %8.0f env/s\n", (double)n / verify);
    printf("batch sign:         %8.0f env/s (%.2f ms per batch of %zu)\n", (double)n / bsign,
           bsign * 1e3, n);
    printf("batch verify:       %8.0f env/s (%.2f ms per batch of %zu)\n", (double)n / bverify,
           bverify * 1e3, n);
    for (size_t i = 0; i < n; i++)
        cpx_msg_free(envs[i]);
    free(envs);
    free(res);
    free(rcs);
    cpx_key_destroy(&key);
    cpx_synth_destroy(&s);
    return 0;
}
