/* cpxctl keygen / keyid / sign-file / sigmsg — department keys and the small signing
 * paths an auditor needs to cross-check cpx signatures with stock openssl. */
#include "cpxctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/err.h"
#include "cpx/limits.h"

#define MAX_SIGN_FILE (16u << 20)

/* Department codes become file names: upper-case letters, digits and '_' only. */
static int dept_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > CPX_MAX_DEPT_CODE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((d[i] >= 'A' && d[i] <= 'Z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '_'))
            return 0;
    return 1;
}

static int write_new(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "cpxctl: %s: %s\n", path, strerror(errno));
        return errno == EEXIST ? CPX_ERR_EXISTS : CPX_ERR_IO;
    }
    int ok = fchmod(fd, mode) == 0 && write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "cpxctl: cannot write %s\n", path);
        unlink(path);
        return CPX_ERR_IO;
    }
    return CPX_OK;
}

/* Reads a whole file of at most max bytes into a malloc'd buffer. */
static int read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cpxctl: %s: %s\n", path, strerror(errno));
        return CPX_ERR_IO;
    }
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    int rc = b ? CPX_OK : CPX_ERR_NOMEM;
    while (rc == CPX_OK) {
        if (n == cap) {
            if (cap > max) {
                rc = CPX_ERR_TOO_LARGE;
                break;
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                rc = CPX_ERR_NOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    if (rc == CPX_OK && (ferror(f) || n > max))
        rc = ferror(f) ? CPX_ERR_IO : CPX_ERR_TOO_LARGE;
    fclose(f);
    if (rc != CPX_OK) {
        fprintf(stderr, "cpxctl: %s: %s\n", path, cpx_strerror(rc));
        free(b);
        return rc;
    }
    *out = b;
    *len = n;
    return CPX_OK;
}

static int cmd_keygen(int argc, char **argv)
{
    const char *dept = NULL, *dir = ".";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!dept && argv[i][0] != '-')
            dept = argv[i];
        else {
            fprintf(stderr, "usage: cpxctl keygen DEPT --dir DIR\n");
            return CPXCTL_USAGE;
        }
    }
    if (!dept || !dept_ok(dept)) {
        fprintf(stderr, "cpxctl keygen: DEPT must be a department code (A-Z, 0-9, _; at most "
                        "%u characters)\n", CPX_MAX_DEPT_CODE);
        return CPXCTL_USAGE;
    }
    static const char *suffix[4] = {"sign.key", "sign.pub", "curve.key", "curve.pub"};
    char path[4][4096];
    for (int i = 0; i < 4; i++) {
        int n = snprintf(path[i], sizeof path[i], "%s/%s.%s", dir, dept, suffix[i]);
        if (n < 0 || (size_t)n >= sizeof path[i]) {
            fprintf(stderr, "cpxctl keygen: path too long\n");
            return CPXCTL_USAGE;
        }
        if (access(path[i], F_OK) == 0) {
            fprintf(stderr, "cpxctl keygen: %s exists; refusing to overwrite keys\n", path[i]);
            return CPXCTL_FAIL;
        }
    }
    char zpub[41], zsec[41];
    if (zmq_curve_keypair(zpub, zsec) != 0) {
        fprintf(stderr, "cpxctl keygen: zmq_curve_keypair: %s\n", zmq_strerror(zmq_errno()));
        return CPXCTL_ENV;
    }
    cpx_key_t *key = cpx_key_generate();
    if (!key) {
        cpx_cleanse(zsec, sizeof zsec);
        return CPXCTL_ENV;
    }
    int rc = cpx_key_save_private(key, path[0]);
    if (rc == CPX_OK)
        rc = cpx_key_save_public(key, path[1]);
    char line[42];
    if (rc == CPX_OK) {
        snprintf(line, sizeof line, "%s\n", zsec);
        rc = write_new(path[2], line, strlen(line), 0600);
        cpx_cleanse(line, sizeof line);
    }
    if (rc == CPX_OK) {
        snprintf(line, sizeof line, "%s\n", zpub);
        rc = write_new(path[3], line, strlen(line), 0644);
    }
    cpx_cleanse(zsec, sizeof zsec);
    if (rc != CPX_OK) {
        fprintf(stderr, "cpxctl keygen: %s\n", cpx_strerror(rc));
        cpx_key_destroy(&key);
        return rc == CPX_ERR_EXISTS ? CPXCTL_FAIL : CPXCTL_ENV;
    }
    uint8_t id[CPX_KEY_ID_LEN];
    char hex[2 * CPX_KEY_ID_LEN + 1];
    cpx_key_id(key, id);
    cpx_hex(id, sizeof id, hex);
    cpx_key_destroy(&key);
    printf("dept=%s key_id=%s curve_public=%s\n", dept, hex, zpub);
    /* The gateway's own keys also get the store key (gateway.yaml keys.store_key): made
     * here, where the key folder is writable, not by a gateway that may not write there. */
    if (!strcmp(dept, "GATEWAY")) {
        char sk[4096];
        snprintf(sk, sizeof sk, "%s/GATEWAY.store.key", dir);
        rc = access(sk, F_OK) == 0 ? CPX_OK : cpx_symkey_create(sk);
        if (rc != CPX_OK) {
            fprintf(stderr, "cpxctl keygen: %s: %s\n", sk, cpx_strerror(rc));
            return CPXCTL_ENV;
        }
        printf("store_key=%s (mode 0600)\n", sk);
    }
    return CPXCTL_OK;
}

/* Loads a public key, or the public half of a private key file. */
static cpx_key_t *load_any(const char *path)
{
    FILE *f = fopen(path, "r");
    char head[64] = {0};
    if (f) {
        size_t r = fread(head, 1, sizeof head - 1, f);
        head[r] = '\0';
        fclose(f);
    }
    if (strstr(head, "PRIVATE KEY"))
        return cpx_key_load_private(path);
    return cpx_key_load_public(path);
}

static int cmd_keyid(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cpxctl keyid PUBFILE\n");
        return CPXCTL_USAGE;
    }
    cpx_key_t *key = load_any(argv[1]);
    if (!key)
        return CPXCTL_USAGE;
    uint8_t id[CPX_KEY_ID_LEN], raw[CPX_ED25519_PUB_LEN];
    char hex[2 * CPX_ED25519_PUB_LEN + 1];
    cpx_key_id(key, id);
    cpx_hex(id, sizeof id, hex);
    printf("key_id=%s", hex);
    cpx_key_public_raw(key, raw);
    cpx_hex(raw, sizeof raw, hex);
    printf(" public=%s\n", hex);
    cpx_key_destroy(&key);
    return CPXCTL_OK;
}

static int cmd_sign_file(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cpxctl sign-file KEY FILE SIG\n");
        return CPXCTL_USAGE;
    }
    cpx_key_t *key = cpx_key_load_private(argv[1]);
    if (!key)
        return CPXCTL_ENV;
    uint8_t *msg = NULL, sig[CPX_ED25519_SIG_LEN];
    size_t len = 0;
    int rc = read_all(argv[2], MAX_SIGN_FILE, &msg, &len);
    if (rc == CPX_OK)
        rc = cpx_key_sign(key, msg, len, sig);
    free(msg);
    cpx_key_destroy(&key);
    if (rc == CPX_OK)
        rc = write_new(argv[3], sig, sizeof sig, 0644);
    return rc == CPX_OK ? CPXCTL_OK : CPXCTL_FAIL;
}

/* Writes the exact bytes a per-message envelope signature covers, and the signature,
 * so `openssl pkeyutl -verify -rawin` can check it without cpx. */
static int cmd_sigmsg(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cpxctl sigmsg ENVELOPE.pb MSG_OUT SIG_OUT\n");
        return CPXCTL_USAGE;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_all(argv[1], CPX_MAX_ENVELOPE_BYTES, &buf, &len) != CPX_OK)
        return CPXCTL_USAGE;
    cpx_envelope_t *env = NULL;
    int rc = cpx_decode_envelope(buf, len, &env);
    free(buf);
    if (rc != CPX_OK) {
        fprintf(stderr, "cpxctl sigmsg: %s: %s\n", argv[1], cpx_strerror(rc));
        return CPXCTL_USAGE;
    }
    if (!env->signature || env->signature->ed25519.len != CPX_ED25519_SIG_LEN) {
        fprintf(stderr, "cpxctl sigmsg: envelope has no per-message Ed25519 signature\n");
        cpx_msg_free(env);
        return CPXCTL_FAIL;
    }
    static const char ds[] = "cpx.v1.sig.envelope";
    uint8_t m[sizeof ds + CPX_SHA256_LEN];
    memcpy(m, ds, sizeof ds);
    rc = cpx_envsign_digest(env, m + sizeof ds);
    if (rc == CPX_OK)
        rc = write_new(argv[2], m, sizeof m, 0644);
    if (rc == CPX_OK)
        rc = write_new(argv[3], env->signature->ed25519.data, CPX_ED25519_SIG_LEN, 0644);
    cpx_msg_free(env);
    return rc == CPX_OK ? CPXCTL_OK : CPXCTL_FAIL;
}

/* Debug/test path: commits and signs an encoded envelope with a private key. */
static int cmd_sign_envelope(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cpxctl sign-envelope KEY IN.pb OUT.pb\n");
        return CPXCTL_USAGE;
    }
    cpx_key_t *key = cpx_key_load_private(argv[1]);
    if (!key)
        return CPXCTL_ENV;
    uint8_t *buf = NULL;
    size_t len = 0;
    cpx_envelope_t *env = NULL;
    int rc = read_all(argv[2], CPX_MAX_ENVELOPE_BYTES, &buf, &len);
    if (rc == CPX_OK)
        rc = cpx_decode_envelope(buf, len, &env);
    free(buf);
    buf = NULL;
    if (rc == CPX_OK)
        rc = cpx_envsign_sign(env, key);
    if (rc == CPX_OK)
        rc = cpx_encode(env, &buf, &len);
    if (rc == CPX_OK)
        rc = write_new(argv[3], buf, len, 0644);
    if (rc != CPX_OK)
        fprintf(stderr, "cpxctl sign-envelope: %s\n", cpx_strerror(rc));
    free(buf);
    cpx_msg_free(env);
    cpx_key_destroy(&key);
    return rc == CPX_OK ? CPXCTL_OK : CPXCTL_FAIL;
}

CPXCTL_COMMAND("keygen", cmd_keygen, "DEPT --dir DIR   new Ed25519 signing + CURVE key files (GATEWAY: + store key)")
CPXCTL_COMMAND("keyid", cmd_keyid, "PUBFILE   key id (first 8 bytes of SHA-256 of the key)")
CPXCTL_COMMAND("sign-file", cmd_sign_file, "KEY FILE SIG   raw Ed25519 signature (debug)")
CPXCTL_COMMAND("sigmsg", cmd_sigmsg, "ENV.pb MSG SIG   bytes + signature for openssl pkeyutl")
CPXCTL_COMMAND("sign-envelope", cmd_sign_envelope, "KEY IN.pb OUT.pb   sign an envelope (debug)")
