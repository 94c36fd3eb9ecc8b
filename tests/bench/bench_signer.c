/* bench_signer — the cost of signing through cpx-signer (privilege separation) against
 * signing in-process: round-trip latency of one Ed25519 signature over the socketpair,
 * median and p99 of N, measured in alternating rounds in the same run.
 *
 *   bench_signer [--signer PATH] [--n N] [--rounds R]
 *
 * PATH defaults to ../gateway/cpx-signer beside this program. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/signer.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Signs n envelope-digest inputs with key (and verifies each with check, if given, as
 * the signer's client does); fills lat[] (µs); returns failures. */
static int run(const cpx_key_t *key, const cpx_key_t *check, size_t n, double *lat)
{
    static const char tag[] = "cpx.v1.sig.envelope";
    uint8_t m[sizeof tag + 32], sig[CPX_ED25519_SIG_LEN];
    memcpy(m, tag, sizeof tag);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(m + sizeof tag, &i, sizeof i);
        double t0 = now_us();
        bad += cpx_key_sign(key, m, sizeof m, sig) != CPX_OK;
        if (check)
            bad += cpx_key_verify(check, m, sizeof m, sig, sizeof sig) != CPX_OK;
        lat[i] = now_us() - t0;
    }
    return bad;
}

static void pct(double *lat, size_t n, double *p50, double *p99)
{
    qsort(lat, n, sizeof *lat, cmp_d);
    *p50 = lat[n / 2];
    *p99 = lat[(size_t)(n * 0.99)];
}

int main(int argc, char **argv)
{
    char prog[4096];
    size_t n = 5000;
    int rounds = 5;
    char *dir = strdup(argv[0]);
    char *slash = strrchr(dir, '/');
    snprintf(prog, sizeof prog, "%s/../gateway/cpx-signer", slash ? (*slash = 0, dir) : ".");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--signer") && i + 1 < argc) snprintf(prog, sizeof prog, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_signer [--signer PATH] [--n N] [--rounds R]\n");
            return 2;
        }
    }
    free(dir);
    if (n < 100 || rounds < 1)
        return 2;
    char kdir[] = "/tmp/cpx-bench-signer.XXXXXX", kpath[64];
    if (!mkdtemp(kdir))
        return 1;
    snprintf(kpath, sizeof kpath, "%s/sign.key", kdir);
    cpx_key_t *local = cpx_key_generate();
    if (!local || cpx_key_save_private(local, kpath)) {
        fprintf(stderr, "bench_signer: cannot make a key\n");
        return 1;
    }
    cpx_key_t *remote = cpx_signer_spawn(prog, kpath, NULL, NULL);
    unlink(kpath);
    rmdir(kdir);
    if (!remote) {
        fprintf(stderr, "bench_signer: cannot start %s\n", prog);
        return 1;
    }
    double *lat = calloc(n, sizeof *lat);
    double *l50 = calloc((size_t)rounds, sizeof *l50), *r50 = calloc((size_t)rounds, sizeof *r50);
    double *l99 = calloc((size_t)rounds, sizeof *l99), *r99 = calloc((size_t)rounds, sizeof *r99);
    double *v50 = calloc((size_t)rounds, sizeof *v50), *v99 = calloc((size_t)rounds, sizeof *v99);
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        bad += run(local, NULL, n, lat);
        pct(lat, n, &l50[r], &l99[r]);
        bad += run(local, local, n, lat);
        pct(lat, n, &v50[r], &v99[r]);
        bad += run(remote, NULL, n, lat);
        pct(lat, n, &r50[r], &r99[r]);
    }
    qsort(v50, (size_t)rounds, sizeof *v50, cmp_d);
    qsort(v99, (size_t)rounds, sizeof *v99, cmp_d);
    qsort(l50, (size_t)rounds, sizeof *l50, cmp_d);
    qsort(r50, (size_t)rounds, sizeof *r50, cmp_d);
    qsort(l99, (size_t)rounds, sizeof *l99, cmp_d);
    qsort(r99, (size_t)rounds, sizeof *r99, cmp_d);
    int m = rounds / 2;
    printf("# bench_signer: %zu signatures x %d alternating rounds; medians over rounds\n", n, rounds);
    printf("in-process sign                    p50 %7.1f us  p99 %7.1f us\n", l50[m], l99[m]);
    printf("in-process sign + verify           p50 %7.1f us  p99 %7.1f us\n", v50[m], v99[m]);
    printf("through cpx-signer (incl. verify)  p50 %7.1f us  p99 %7.1f us\n", r50[m], r99[m]);
    printf("added per signature vs in-process  p50 %7.1f us (of which the socket round trip "
           "%.1f us)\n", r50[m] - l50[m], r50[m] - v50[m]);
    fflush(stdout);
    printf("failures: %d\n", bad);
    cpx_key_destroy(&remote);
    cpx_key_destroy(&local);
    free(lat);
    free(l50);
    free(r50);
    free(l99);
    free(r99);
    free(v50);
    free(v99);
    return bad ? 1 : 0;
}
