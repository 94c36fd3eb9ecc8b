/* signerlink.c — starts cpx-signer for the gateway and watches it.
 *
 * The signer is the gateway's child. If it dies, nothing more can be signed: the cycle
 * in progress fails (its senders get retryable Nacks, nothing unsigned is acked) and
 * the gateway stops and exits non-zero for its supervisor, which restarts both. Death is
 * noticed on the channel (EOF/EPIPE when signing) and by SIGCHLD when idle. */
#include "signerlink.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/signer.h"

static volatile sig_atomic_t g_lost;
static volatile pid_t g_pid;

static void lost(void)
{
    g_lost = 1;
    cpx_gw_server_stop();
}

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    int st;
    if (g_pid > 0 && waitpid(g_pid, &st, WNOHANG) == g_pid) {
        g_pid = 0;
        lost();
    }
    errno = saved;
}

int cpx_gw_signer_lost(void) { return g_lost; }

/* keys.signer_program, else cpx-signer beside this executable. */
static int signer_program(const cpx_gw_config_t *cfg, char *out, size_t size)
{
    if (cfg->signer_program[0]) {
        snprintf(out, size, "%s", cfg->signer_program);
        return 0;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return -1;
    slash[1] = '\0';
    snprintf(out, size, "%scpx-signer", self);
    return 0;
}

int cpx_gw_signer_check(const cpx_gw_config_t *cfg, char *err, size_t err_size)
{
    char prog[PATH_MAX + 16];
    if (cfg->signer_in_process)
        return CPX_OK;
    if (signer_program(cfg, prog, sizeof prog)) {
        snprintf(err, err_size, "keys.signer_program: cannot locate cpx-signer; set it");
        return CPX_ERR_CONFIG;
    }
    if (access(prog, X_OK) != 0) {
        snprintf(err, err_size, "keys.signer_program: %s: %s (install cpx-signer beside "
                                "cpx-gateway, or set keys.signer_program)", prog, strerror(errno));
        return CPX_ERR_CONFIG;
    }
    return CPX_OK;
}

cpx_key_t *cpx_gw_signing_key(const cpx_gw_config_t *cfg)
{
    if (cfg->signer_in_process) {
        cpx_log_warn("signer", "msg=\"keys.signer is in-process: the network-facing gateway "
                               "holds its private signing key\"");
        return cpx_key_load_private(cfg->signing_key);
    }
    char prog[PATH_MAX + 16];
    if (signer_program(cfg, prog, sizeof prog)) {
        cpx_log_error("signer", "msg=\"cannot find cpx-signer; set keys.signer_program\"");
        return NULL;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    pid_t pid = 0;
    cpx_key_t *key = cpx_signer_spawn(prog, cfg->signing_key, lost, &pid);
    if (key)
        g_pid = pid;
    return key;
}
