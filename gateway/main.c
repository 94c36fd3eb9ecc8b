/* cpx-gateway — the child-protection exchange gateway.
 *   cpx-gateway --config FILE [--check]
 * SIGTERM / SIGINT: finish the cycle in progress (committed, head signed), exit 0.
 * The signing key is held by the cpx-signer child (gateway/signerlink.c); if it dies,
 * the gateway stops (retryable Nacks for the cycle in progress) and exits 1. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "caseindex.h"
#include "config.h"
#include "server.h"
#include "signerlink.h"
#include "cpx/err.h"

static void on_signal(int sig)
{
    (void)sig;
    cpx_gw_server_stop();
}

/* Frames (up to 1 MiB), their decodes and the replies are allocated and freed by the
 * thousand each second. With glibc's defaults, blocks that large are given back to the
 * kernel (mmap, or a trim of the heap's top) and faulted in again, zeroed, on their next
 * use: under a flood that was about 20,000 page faults a second. Keep them in the heap.
 * The trim threshold bounds what each thread's heap keeps free at its top: malloc_trim,
 * which the server runs once submissions stop (trim_map in server.c), returns the main
 * heap's top and every free page inside the heaps, but not the top of another thread's
 * heap. Measured (bench_gateway --rss 300000, then the batch flow's page faults over
 * 3 s): a 32 MiB threshold kept 95-100 MiB resident where the defaults keep 58 MiB,
 * 16 MiB kept 59 MiB with 28,000-33,000 faults, 8 MiB 30,000-44,000, defaults
 * 55,000-76,000. */
static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
}

static int usage(void)
{
    fprintf(stderr, "usage: cpx-gateway --config FILE [--check]\n"
                    "  --check  validate the configuration (and routing rules) and exit\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else
            return usage();
    }
    if (!path)
        return usage();
    cpx_gw_config_t cfg;
    char err[1024];
    cpx_gw_config_defaults(&cfg);
    if (cpx_gw_config_load(path, &cfg, err, sizeof err)) {
        fprintf(stderr, "cpx-gateway: %s\n", err);
        return 2;
    }
    if (check) {
        if (cfg.routes[0]) {
            cpx_router_t *r = cpx_router_load(cfg.routes, err, sizeof err);
            if (!r) {
                fprintf(stderr, "cpx-gateway: %s\n", err);
                return 2;
            }
            cpx_router_destroy(&r);
        }
        if (cpx_gw_signer_check(&cfg, err, sizeof err)) {  /* cpx-signer is installed */
            fprintf(stderr, "cpx-gateway: %s\n", err);
            return 2;
        }
        if (cpx_gw_ci_check(&cfg, err, sizeof err)) {  /* case policy and view profiles */
            fprintf(stderr, "cpx-gateway: %s\n", err);
            return 2;
        }
        printf("configuration ok\n");
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    tune_malloc();

    cpx_gw_t *gw = cpx_gw_server_new(&cfg);
    if (!gw) {
        fprintf(stderr, "cpx-gateway: cannot start (see the log above)\n");
        return 3;
    }
    int rc = cpx_gw_server_run(gw);
    int lost = cpx_gw_signer_lost();  /* before destroy, which ends the signer itself */
    cpx_gw_server_destroy(&gw);
    if (lost)
        fprintf(stderr, "cpx-gateway: the signer process died; stopped without acking "
                        "anything unsigned (restart both)\n");
    return rc || lost ? 1 : 0;
}
