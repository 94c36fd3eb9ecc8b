/* signer.c — the signing-key process's policy and wire protocol, both ends
 * (contract in include/cpx/signer.h, format in docs/signing.md §10).
 *
 * The policy is the point: a compromised network process may ask the signer for
 * anything, so the signer signs only byte strings that can only be read as a cpx tree
 * head, an envelope digest or a batch root — never arbitrary bytes. */
#include "cpx/signer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpx/audit.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/log.h"

#define MOD "signer"
#define REPLY_TIMEOUT_MS 10000

static const char TAG_HEAD[] = "cpx.v1.sig.tree-head";  /* sizeof includes the 0x00 */
static const char TAG_ENV[] = "cpx.v1.sig.envelope";
static const char TAG_BATCH[] = "cpx.v1.sig.batch";

/* ---- policy ------------------------------------------------------------------------ */

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int has_tag(const uint8_t *msg, size_t len, const char *tag, size_t tag_size)
{
    return len >= tag_size && memcmp(msg, tag, tag_size) == 0;
}

static cpx_signer_kind refuse(char *why, size_t size, const char *reason)
{
    snprintf(why, size, "%s", reason);
    return CPX_SIGN_NONE;
}

static cpx_signer_kind check_head(cpx_signer_policy_t *p, const uint8_t *msg, size_t len,
                                  int commit, char *why, size_t size)
{
    if (len != CPX_STH_SIGNING_LEN)
        return refuse(why, size, "tree head: signing bytes must be 101 bytes");
    const uint8_t *log_id = msg + sizeof TAG_HEAD;
    if (p->have_log_id && memcmp(p->log_id, log_id, sizeof p->log_id) != 0)
        return refuse(why, size, "tree head: log_id differs from the log this signer serves");
    if ((int64_t)be64(msg + sizeof TAG_HEAD + 32 + 8) < 0)
        return refuse(why, size, "tree head: timestamp_ms is negative");
    if (commit && !p->have_log_id) {
        memcpy(p->log_id, log_id, sizeof p->log_id);
        p->have_log_id = 1;
    }
    return CPX_SIGN_TREE_HEAD;
}

cpx_signer_kind cpx_signer_check(cpx_signer_policy_t *p, const uint8_t *msg, size_t len,
                                 int commit, char *why, size_t size)
{
    if (!p || !why || !size)
        return CPX_SIGN_NONE;
    why[0] = '\0';
    if (!msg || !len)
        return refuse(why, size, "empty message");
    if (has_tag(msg, len, TAG_HEAD, sizeof TAG_HEAD))
        return check_head(p, msg, len, commit, why, size);
    if (has_tag(msg, len, TAG_ENV, sizeof TAG_ENV)) {
        if (len != sizeof TAG_ENV + CPX_SHA256_LEN)
            return refuse(why, size, "envelope: must be the tag and a 32-byte digest");
        return CPX_SIGN_ENVELOPE;
    }
    if (has_tag(msg, len, TAG_BATCH, sizeof TAG_BATCH)) {
        if (len != sizeof TAG_BATCH + 8 + CPX_SHA256_LEN)
            return refuse(why, size, "batch: must be the tag, BE64(n) and a 32-byte root");
        uint64_t n = be64(msg + sizeof TAG_BATCH);
        if (n < 1 || n > CPX_MAX_BATCH_ENVELOPES)
            return refuse(why, size, "batch: n must be 1..1000");
        return CPX_SIGN_BATCH;
    }
    return refuse(why, size, "not a cpx signing input (tree head, envelope digest or "
                             "batch root with its domain tag)");
}

/* ---- records ----------------------------------------------------------------------- */

static int send_rec(int fd, char type, const void *body, size_t len)
{
    uint8_t buf[1 + CPX_SIGNER_MSG_MAX];
    if (len > CPX_SIGNER_MSG_MAX)
        len = CPX_SIGNER_MSG_MAX;
    buf[0] = (uint8_t)type;
    if (len)
        memcpy(buf + 1, body, len);
    ssize_t w;
    do
        w = send(fd, buf, 1 + len, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w == (ssize_t)(1 + len) ? CPX_OK : CPX_ERR_NET;
}

/* One record into buf; its length, 0 on EOF, -1 on error (errno kept). A record longer
 * than buf is reported truncated (MSG_TRUNC gives its real length). */
static ssize_t recv_rec(int fd, uint8_t *buf, size_t cap)
{
    ssize_t r;
    do
        r = recv(fd, buf, cap, MSG_TRUNC);
    while (r < 0 && errno == EINTR);
    return r;
}

/* ---- server (cpx-signer) ------------------------------------------------------------- */

void cpx_signer_fail_hello(int fd, const char *reason)
{
    send_rec(fd, 'E', reason, strlen(reason));
}

static void answer(int fd, cpx_signer_policy_t *pol, const cpx_key_t *key, const uint8_t *msg,
                   size_t len, size_t real_len)
{
    static const char *const kind_names[] = {"none", "tree_head", "envelope", "batch"};
    char why[160];
    cpx_signer_kind kind = real_len > len
                               ? refuse(why, sizeof why, "message longer than 256 bytes")
                               : cpx_signer_check(pol, msg, len, 0, why, sizeof why);
    if (kind == CPX_SIGN_NONE) {
        pol->refused_n++;
        cpx_log_warn(MOD, "msg=\"refused to sign\" reason=\"%s\" len=%zu refused_total=%llu", why,
                     real_len, (unsigned long long)pol->refused_n);
        send_rec(fd, 'R', why, strlen(why));
        return;
    }
    uint8_t sig[CPX_ED25519_SIG_LEN];
    int rc = cpx_key_sign(key, msg, len, sig);
    if (rc) {
        const char *e = cpx_strerror(rc);
        send_rec(fd, 'E', e, strlen(e));
        return;
    }
    cpx_signer_check(pol, msg, len, 1, why, sizeof why);  /* pins the log id */
    pol->signed_n++;
    cpx_log_debug(MOD, "msg=signed kind=%s", kind_names[kind]);
    send_rec(fd, 'K', sig, sizeof sig);
}

int cpx_signer_serve(int fd, const cpx_key_t *key)
{
    if (fd < 0 || !cpx_key_has_private(key))
        return CPX_ERR_ARG;
    uint8_t pub[CPX_ED25519_PUB_LEN];
    cpx_key_public_raw(key, pub);
    if (send_rec(fd, 'H', pub, sizeof pub))
        return CPX_ERR_NET;
    cpx_signer_policy_t pol = {0};
    uint8_t buf[1 + CPX_SIGNER_MSG_MAX];
    for (;;) {
        ssize_t r = recv_rec(fd, buf, sizeof buf);
        if (r == 0) {
            cpx_log_info(MOD, "msg=\"gateway closed the channel\" signed=%llu refused=%llu",
                         (unsigned long long)pol.signed_n, (unsigned long long)pol.refused_n);
            return CPX_OK;
        }
        if (r < 0) {
            cpx_log_error(MOD, "msg=\"channel failed\" errno=\"%s\"", strerror(errno));
            return CPX_ERR_NET;
        }
        size_t got = (size_t)r < sizeof buf ? (size_t)r : sizeof buf;
        if (buf[0] != 'S') {
            pol.refused_n++;
            cpx_log_warn(MOD, "msg=\"refused: unknown request type\" type=%u", buf[0]);
            send_rec(fd, 'R', "unknown request type", 20);
            continue;
        }
        answer(fd, &pol, key, buf + 1, got - 1, (size_t)r - 1);
    }
}

/* ---- client (the gateway) ------------------------------------------------------------ */

typedef struct link {
    int fd;
    pid_t pid;
    int lost;
    void (*on_lost)(void);
    cpx_key_t *pub;            /* to check every signature the signer returns */
    pthread_mutex_t mu;
} link_t;

/* Waits for fd to become readable; 1 ready, 0 timeout, -1 error. */
static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms);
        if (r >= 0)
            return r > 0 ? 1 : 0;
        if (errno != EINTR)
            return -1;
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            return 0;
        timeout_ms -= (int)spent;
        t0 = t1;
    }
}

static void mark_lost(link_t *l, const char *what)
{
    if (l->lost)
        return;
    l->lost = 1;
    cpx_log_error(MOD, "msg=\"signer process is gone: nothing more can be signed\" "
                       "what=\"%s\" pid=%ld", what, (long)l->pid);
    if (l->on_lost)
        l->on_lost();
}

static int link_sign(void *ctx, const void *msg, size_t len, uint8_t sig[CPX_ED25519_SIG_LEN])
{
    link_t *l = ctx;
    if (len > CPX_SIGNER_MSG_MAX)
        return CPX_ERR_TOO_LARGE;
    pthread_mutex_lock(&l->mu);
    int rc = CPX_ERR_NET;
    uint8_t buf[1 + CPX_SIGNER_MSG_MAX];
    ssize_t r = -1;
    if (l->lost)
        goto out;
    if (send_rec(l->fd, 'S', msg, len)) {
        mark_lost(l, errno == EPIPE ? "EPIPE" : strerror(errno));
        goto out;
    }
    int ready = wait_readable(l->fd, REPLY_TIMEOUT_MS);
    if (ready > 0)
        r = recv_rec(l->fd, buf, sizeof buf);
    if (ready <= 0 || r <= 0) {
        mark_lost(l, ready == 0 ? "no answer within 10 s" : r == 0 ? "EOF" : strerror(errno));
        goto out;
    }
    if (buf[0] == 'K' && r == 1 + CPX_ED25519_SIG_LEN) {
        memcpy(sig, buf + 1, CPX_ED25519_SIG_LEN);
        /* A signer that answers with a wrong key or garbage must not put a bad
         * signature into the log. */
        rc = cpx_key_verify(l->pub, msg, len, sig, CPX_ED25519_SIG_LEN);
        if (rc)
            cpx_log_error(MOD, "msg=\"signer returned a signature that does not verify\"");
    } else if (buf[0] == 'R') {
        size_t n = (size_t)r < sizeof buf ? (size_t)r - 1 : sizeof buf - 1;
        cpx_log_error(MOD, "msg=\"signer refused\" reason=\"%.*s\"", (int)n, (const char *)buf + 1);
        rc = CPX_ERR_REFUSED;
    } else {
        size_t n = (size_t)r < sizeof buf ? (size_t)r - 1 : sizeof buf - 1;
        cpx_log_error(MOD, "msg=\"signer failed\" type=%u reason=\"%.*s\"", buf[0], (int)n,
                      (const char *)buf + 1);
        rc = CPX_ERR_CRYPTO;
    }
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Reaps the child: it exits on EOF at once; one that does not within 2 s is killed. */
static void reap(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        pid_t w = waitpid(pid, NULL, WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD))
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void link_release(void *ctx)
{
    link_t *l = ctx;
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    if (l->pid > 0)
        reap(l->pid);
    cpx_key_destroy(&l->pub);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static int read_hello(int fd, int timeout_ms, uint8_t pub[CPX_ED25519_PUB_LEN])
{
    uint8_t buf[1 + CPX_SIGNER_MSG_MAX];
    int ready = wait_readable(fd, timeout_ms);
    ssize_t r = ready > 0 ? recv_rec(fd, buf, sizeof buf) : -1;
    if (r > 0 && buf[0] == 'H' && r == 1 + CPX_ED25519_PUB_LEN) {
        memcpy(pub, buf + 1, CPX_ED25519_PUB_LEN);
        return CPX_OK;
    }
    if (r > 0 && buf[0] == 'E') {
        size_t n = (size_t)r < sizeof buf ? (size_t)r - 1 : sizeof buf - 1;
        cpx_log_error(MOD, "msg=\"signer could not start\" reason=\"%.*s\"", (int)n,
                      (const char *)buf + 1);
    } else {
        cpx_log_error(MOD, "msg=\"no hello from the signer\" what=\"%s\"",
                      ready == 0 ? "timeout" : r == 0 ? "EOF" : "bad record");
    }
    return CPX_ERR_NET;
}

cpx_key_t *cpx_signer_connect(int fd, pid_t pid, int timeout_ms, void (*on_lost)(void))
{
    link_t *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return NULL;
    }
    l->fd = fd;
    l->pid = pid;
    l->on_lost = on_lost;
    pthread_mutex_init(&l->mu, NULL);
    uint8_t pub[CPX_ED25519_PUB_LEN];
    cpx_key_t *key = NULL;
    if (read_hello(fd, timeout_ms, pub) == CPX_OK && (l->pub = cpx_key_from_raw_public(pub)))
        key = cpx_key_delegated(pub, link_sign, link_release, l);
    if (!key)
        link_release(l);
    return key;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_child(int fd, const char *program, const char *key_path)
{
    if (fd != 3) {
        if (dup2(fd, 3) < 0)
            _exit(127);
    } else if (fcntl(3, F_SETFD, 0) < 0) {
        _exit(127);
    }
    /* the store, sockets, log files: none of the signer's business */
    if (close_range(4, ~0U, 0) != 0)
        for (int i = 4; i < 65536; i++)
            close(i);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *const argv[] = {(char *)"cpx-signer", (char *)"--key", (char *)key_path,
                          (char *)"--fd", (char *)"3", NULL};
    execv(program, argv);
    _exit(127);
}

cpx_key_t *cpx_signer_spawn(const char *program, const char *key_path, void (*on_lost)(void),
                            pid_t *pid_out)
{
    if (!program || !key_path)
        return NULL;
    if (access(program, X_OK) != 0) {
        cpx_log_error(MOD, "msg=\"cannot run the signer\" program=\"%s\" errno=\"%s\"", program,
                      strerror(errno));
        return NULL;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        cpx_log_error(MOD, "msg=\"socketpair failed\" errno=\"%s\"", strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        cpx_log_error(MOD, "msg=\"fork failed\" errno=\"%s\"", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0)
        exec_child(sv[1], program, key_path);
    close(sv[1]);
    if (pid_out)
        *pid_out = pid;
    cpx_key_t *key = cpx_signer_connect(sv[0], pid, 10000, on_lost);
    if (key)
        cpx_log_info(MOD, "msg=\"signer started\" pid=%ld program=\"%s\"", (long)pid, program);
    return key;
}
