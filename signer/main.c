/* cpx-signer — holds the gateway's Ed25519 signing key so the network-facing gateway
 * never does (privilege separation; include/cpx/signer.h, docs/operations.md).
 *   cpx-signer --key FILE --fd N
 * Started by cpx-gateway (fork + exec) on one end of a socketpair passed as fd N; signs
 * only tree heads, envelope digests and batch roots; exits when the gateway closes the
 * channel (including when the gateway dies). Not meant to be run by hand. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/signer.h"

static int usage(void)
{
    fprintf(stderr, "usage: cpx-signer --key FILE --fd N  (started by cpx-gateway)\n");
    return 2;
}

/* Non-dumpable: no core dump, and no ptrace or /proc/PID/mem by other processes of the
 * same user (the gateway included), so the key stays in this address space. (Not
 * setrlimit(RLIMIT_CORE): the unit's system-call filter forbids @resources, and
 * non-dumpable already means no core.) */
static void harden(void)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        cpx_log_warn("signer", "msg=\"cannot make the signer non-dumpable\"");
    /* the gateway going away closes the channel; this covers a gateway stopped hard */
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
}

int main(int argc, char **argv)
{
    const char *key_path = NULL;
    int fd = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key_path = argv[++i];
        else if (!strcmp(argv[i], "--fd") && i + 1 < argc)
            fd = atoi(argv[++i]);
        else
            return usage();
    }
    if (!key_path || fd < 3)
        return usage();
    harden();
    signal(SIGPIPE, SIG_IGN);
    cpx_key_t *key = cpx_key_load_private(key_path);
    if (!key) {
        char why[1200];
        snprintf(why, sizeof why, "cannot load signing key %s (see the log)", key_path);
        cpx_signer_fail_hello(fd, why);
        return 3;
    }
    int rc = cpx_signer_serve(fd, key);
    cpx_key_destroy(&key);
    close(fd);
    return rc == CPX_OK ? 0 : 1;
}
