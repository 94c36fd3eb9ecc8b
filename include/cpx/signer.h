/* cpx/signer.h — the gateway's signing key in a separate process (privilege separation).
 *
 * The network-facing gateway never holds its Ed25519 private key. `cpx-signer`
 * (signer/main.c) loads it and answers signing requests over a socketpair; the gateway
 * holds a delegated cpx_key_t (cpx_key_delegated) whose cpx_key_sign goes there, so
 * audit heads and gateway-authored envelopes are signed exactly as before.
 *
 * The signer signs only the three domain-separated inputs the gateway has a reason to
 * sign (docs/signing.md, docs/audit-format.md); anything else is refused and logged:
 *   tree head  "cpx.v1.sig.tree-head" 0x00 || log_id(32) || BE64(size) || BE64(ms) || root(32)
 *              (101 bytes; the log id is pinned to the first head the signer signs)
 *   envelope   "cpx.v1.sig.envelope" 0x00 || digest(32)
 *   batch      "cpx.v1.sig.batch" 0x00 || BE64(n) || root(32), 1 <= n <= 1000
 *
 * Wire (AF_UNIX SOCK_SEQPACKET, one record per message; docs/signing.md §10):
 *   signer -> gateway at start: 'H' || raw public key(32)   or 'E' || reason
 *   gateway -> signer:          'S' || message (at most CPX_SIGNER_MSG_MAX bytes)
 *   signer -> gateway:          'K' || signature(64)  |  'R' || reason (refused)
 *                                                     |  'E' || reason (failed)
 * One request at a time per channel (the client serialises callers). */
#ifndef CPX_SIGNER_H
#define CPX_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cpx/crypto.h"

#define CPX_SIGNER_MSG_MAX 256

typedef enum cpx_signer_kind {
    CPX_SIGN_NONE = 0,       /* refused */
    CPX_SIGN_TREE_HEAD = 1,
    CPX_SIGN_ENVELOPE = 2,
    CPX_SIGN_BATCH = 3,
} cpx_signer_kind;

/* What the signer remembers between requests (the pinned log id). Zero-initialise. */
typedef struct cpx_signer_policy {
    int have_log_id;
    uint8_t log_id[32];
    uint64_t signed_n, refused_n;
} cpx_signer_policy_t;

/* Classifies msg. Returns the kind, or CPX_SIGN_NONE with a one-line reason in why
 * (always terminated). A tree head with a log id other than the pinned one is refused;
 * the first accepted head pins it (only when commit is non-zero). */
cpx_signer_kind cpx_signer_check(cpx_signer_policy_t *policy, const uint8_t *msg, size_t len,
                                 int commit, char *why, size_t why_size);

/* The signer's loop: sends the hello for key, then answers requests on fd until the
 * peer closes it. CPX_OK on a clean EOF, CPX_ERR_NET/CPX_ERR_IO on a broken channel.
 * Every refusal is logged (mod=signer, kind and reason, never the bytes' meaning). */
int cpx_signer_serve(int fd, const cpx_key_t *key);

/* Tells the peer why the signer cannot start ('E' record), e.g. the key did not load. */
void cpx_signer_fail_hello(int fd, const char *reason);

/* Client side. Reads the hello on fd (waiting at most timeout_ms) and returns a
 * delegated key that signs through the channel; it owns fd (and pid, if > 0: reaped
 * on destroy, killed if it does not exit on EOF). Each signature returned is verified
 * against the hello's public key before use. When the channel breaks (EOF, EPIPE,
 * ECONNRESET, no answer within 10 s) every later sign fails with CPX_ERR_NET and
 * on_lost (may be NULL) is called once. NULL on failure (logged); fd is then closed. */
cpx_key_t *cpx_signer_connect(int fd, pid_t pid, int timeout_ms, void (*on_lost)(void));

/* Starts `program --key key_path --fd 3` on one end of a new socketpair (every other
 * descriptor closed in the child) and connects to it as above. *pid_out gets the
 * child's pid (may be NULL). NULL on failure (logged). */
cpx_key_t *cpx_signer_spawn(const char *program, const char *key_path, void (*on_lost)(void),
                            pid_t *pid_out);

#endif
