/* crypto.c — SHA-256, HMAC, Ed25519 keys, AES-256-GCM and randomness over OpenSSL 3 EVP.
 *
 * SHA-256 is the hot path (Merkle nodes, audit leaves, field commitments: about twenty
 * short hashes per accepted message). It calls OpenSSL's SHA256_Init/Update/Final, the
 * very block functions (SHA extensions where the CPU has them) that the EVP digest of
 * the default provider runs, without EVP's dispatch: 114 ns instead of 205 ns for a
 * 65-byte Merkle node on this project's machines. They are deprecated in OpenSSL 3 but
 * present in every build of it that keeps deprecated functions, as Debian's does. */
/* For SHA256_Init/Update/Final (see above) without deprecation warnings. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "cpx/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "cpx/err.h"
#include "cpx/log.h"

#define MOD "crypto"

/* ---- cached algorithms ------------------------------------------------------------ */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_sha256;
static EVP_CIPHER *g_gcm;

static void init_once(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!g_sha256 || !g_gcm)
        cpx_log_openssl(MOD, "fetching SHA256/AES-256-GCM");
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&g_once, init_once);
    return g_sha256 ? g_sha256 : EVP_sha256();
}

static const EVP_CIPHER *gcm_cipher(void)
{
    pthread_once(&g_once, init_once);
    return g_gcm ? g_gcm : EVP_aes_256_gcm();
}

/* SHA-256 cannot fail short of memory exhaustion or a broken provider; there is no
 * safe value to return, so stop rather than hand out a wrong hash. */
static void hash_fatal(void)
{
    cpx_log_openssl(MOD, "SHA-256 failed");
    abort();
}

void cpx_sha256_v(const cpx_iov_t *iov, size_t n, uint8_t out[CPX_SHA256_LEN])
{
    SHA256_CTX ctx;
    if (!SHA256_Init(&ctx))
        hash_fatal();
    for (size_t i = 0; i < n; i++)
        if (iov[i].len && !SHA256_Update(&ctx, iov[i].base, iov[i].len))
            hash_fatal();
    if (!SHA256_Final(out, &ctx))
        hash_fatal();
    OPENSSL_cleanse(&ctx, sizeof ctx);
}

void cpx_sha256(const void *data, size_t len, uint8_t out[CPX_SHA256_LEN])
{
    cpx_iov_t iov = {data, len};
    cpx_sha256_v(&iov, 1, out);
}

void cpx_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                     uint8_t out[CPX_SHA256_LEN])
{
    static const uint8_t empty[1];
    unsigned int olen = 0;
    if (!HMAC(sha256_md(), key_len ? key : empty, (int)key_len, len ? data : empty, len, out,
              &olen) ||
        olen != CPX_SHA256_LEN)
        hash_fatal();
}

bool cpx_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int cpx_random(void *buf, size_t len)
{
    if (!len)
        return CPX_OK;
    if (len > (size_t)INT32_MAX)
        return CPX_ERR_ARG;
    if (RAND_bytes(buf, (int)len) != 1) {
        cpx_log_openssl(MOD, "RAND_bytes");
        return CPX_ERR_CRYPTO;
    }
    return CPX_OK;
}

void cpx_cleanse(void *p, size_t len)
{
    if (p && len)
        OPENSSL_cleanse(p, len);
}

/* ---- Ed25519 keys ------------------------------------------------------------------ */

struct cpx_key {
    EVP_PKEY *pkey;
    bool priv;
    uint8_t pub[CPX_ED25519_PUB_LEN];
    uint8_t id[CPX_KEY_ID_LEN];
    /* libsodium's form of a private key held here (seed || public key), for cpx_key_sign;
     * has_sk is false for public and delegated keys */
    bool has_sk;
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    /* delegated keys (cpx_key_delegated), like every key made from raw public bytes,
     * have no pkey */
    cpx_key_sign_fn remote_sign;
    void (*remote_release)(void *ctx);
    void *remote_ctx;
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_start(void)
{
    sodium_ok = sodium_init() >= 0;
}

static bool sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_start);
    if (!sodium_ok)
        cpx_log_error(MOD, "msg=\"libsodium did not initialise\"");
    return sodium_ok;
}

/* Signing, like verification (cpx_key_verify), runs on libsodium: about 2.7x faster
 * than EVP_DigestSign here (19 against 52 us), which is most of an adapter's CPU per
 * per-message-signed envelope. Ed25519 signatures are deterministic (RFC 8032 5.1.6),
 * so the bytes are the ones OpenSSL would make (tests/unit/test_crypto.c compares
 * them). The key pair is expanded once from the 32-byte seed OpenSSL holds, and the
 * public half it gives must be the one OpenSSL derived. */
static bool key_expand(cpx_key_t *k)
{
    uint8_t seed[32], pk[crypto_sign_PUBLICKEYBYTES];
    size_t len = sizeof seed;
    bool ok = sodium_ready() && EVP_PKEY_get_raw_private_key(k->pkey, seed, &len) == 1 &&
              len == sizeof seed && crypto_sign_seed_keypair(pk, k->sk, seed) == 0 &&
              !memcmp(pk, k->pub, sizeof pk);
    cpx_cleanse(seed, sizeof seed);
    if (!ok) {
        cpx_log_error(MOD, "msg=\"cannot expand the Ed25519 private key\"");
        cpx_cleanse(k->sk, sizeof k->sk);
    }
    return k->has_sk = ok;
}

/* A key object holding only its public half and id: what every key starts as. */
static cpx_key_t *key_new(const uint8_t pub[CPX_ED25519_PUB_LEN])
{
    cpx_key_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    memcpy(k->pub, pub, sizeof k->pub);
    uint8_t h[CPX_SHA256_LEN];
    cpx_sha256(k->pub, sizeof k->pub, h);
    memcpy(k->id, h, sizeof k->id);
    return k;
}

/* Wraps pkey (taking ownership) after checking it is Ed25519. */
static cpx_key_t *key_wrap(EVP_PKEY *pkey, bool priv, const char *what)
{
    if (!pkey)
        return NULL;
    if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
        cpx_log_error(MOD, "msg=\"not an Ed25519 key\" what=\"%s\"", what);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    uint8_t pub[CPX_ED25519_PUB_LEN];
    size_t len = sizeof pub;
    if (EVP_PKEY_get_raw_public_key(pkey, pub, &len) != 1 || len != sizeof pub) {
        cpx_log_openssl(MOD, "reading raw public key");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    cpx_key_t *k = key_new(pub);
    if (!k) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    k->priv = priv;
    if (priv && !key_expand(k))
        cpx_key_destroy(&k);  /* frees pkey and cleanses */
    return k;
}

cpx_key_t *cpx_key_delegated(const uint8_t pub[CPX_ED25519_PUB_LEN], cpx_key_sign_fn sign,
                             void (*release)(void *ctx), void *ctx)
{
    if (!pub || !sign)
        return NULL;
    cpx_key_t *k = cpx_key_from_raw_public(pub);
    if (!k)
        return NULL;
    k->priv = true;
    k->remote_sign = sign;
    k->remote_release = release;
    k->remote_ctx = ctx;
    return k;
}

bool cpx_key_is_delegated(const cpx_key_t *key) { return key && key->remote_sign; }

cpx_key_t *cpx_key_generate(void)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!pkey) {
        cpx_log_openssl(MOD, "Ed25519 keygen");
        return NULL;
    }
    return key_wrap(pkey, true, "generated");
}

/* Reads one PEM object from path; priv selects PKCS#8 private or SPKI public. */
static cpx_key_t *key_load(const char *path, bool priv)
{
    if (!path)
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        cpx_log_error(MOD, "msg=\"cannot open key\" path=\"%s\" errno=\"%s\"", path,
                      strerror(errno));
        return NULL;
    }
    EVP_PKEY *pkey = priv ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                          : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!pkey) {
        cpx_log_error(MOD, "msg=\"not a PEM %s key\" path=\"%s\"", priv ? "private" : "public",
                      path);
        cpx_log_openssl(MOD, "PEM read");
        return NULL;
    }
    return key_wrap(pkey, priv, path);
}

cpx_key_t *cpx_key_load_private(const char *path) { return key_load(path, true); }
cpx_key_t *cpx_key_load_public(const char *path) { return key_load(path, false); }

/* A public key from its raw bytes holds no OpenSSL object: verification needs only the
 * bytes (cpx_key_verify), and the gateway makes one of these per frame it verifies
 * ahead, where EVP_PKEY_new_raw_public_key cost about 5 us a time. Writing it as a PEM
 * makes the OpenSSL object then (write_pem_fd). */
cpx_key_t *cpx_key_from_raw_public(const uint8_t raw[CPX_ED25519_PUB_LEN])
{
    return raw ? key_new(raw) : NULL;
}

/* Test hook (not in the public header): a private key from its 32-byte RFC 8032 seed,
 * so known-answer vectors can be checked. */
cpx_key_t *cpx_key_from_raw_private_for_test(const uint8_t seed[32]);
cpx_key_t *cpx_key_from_raw_private_for_test(const uint8_t seed[32])
{
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (!pkey) {
        cpx_log_openssl(MOD, "raw Ed25519 private key");
        return NULL;
    }
    return key_wrap(pkey, true, "raw");
}

/* Writes a PEM through fd; closes fd. */
static int write_pem_fd(int fd, const cpx_key_t *key, bool priv, const char *path)
{
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return CPX_ERR_IO;
    }
    EVP_PKEY *made = NULL;  /* a key from raw bytes has no OpenSSL object yet */
    if (!key->pkey && !priv)
        made = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key->pub, sizeof key->pub);
    EVP_PKEY *pk = key->pkey ? key->pkey : made;
    int ok = pk && (priv ? PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_PUBKEY(f, pk));
    EVP_PKEY_free(made);
    int flushed = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int closed = fclose(f) == 0;
    if (!ok) {
        cpx_log_openssl(MOD, "PEM write");
        return CPX_ERR_CRYPTO;
    }
    if (!flushed || !closed) {
        cpx_log_error(MOD, "msg=\"cannot write key\" path=\"%s\" errno=\"%s\"", path,
                      strerror(errno));
        return CPX_ERR_IO;
    }
    return CPX_OK;
}

int cpx_key_save_private(const cpx_key_t *key, const char *path)
{
    if (!key || !path || !key->priv || key->remote_sign)
        return CPX_ERR_ARG;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        cpx_log_error(MOD, "msg=\"cannot create private key\" path=\"%s\" errno=\"%s\"", path,
                      strerror(e));
        return e == EEXIST ? CPX_ERR_EXISTS : CPX_ERR_IO;
    }
    /* umask may have narrowed the mode; never widen past 0600, but make sure it is 0600. */
    if (fchmod(fd, 0600) != 0) {
        close(fd);
        unlink(path);
        return CPX_ERR_IO;
    }
    int rc = write_pem_fd(fd, key, true, path);
    if (rc != CPX_OK)
        unlink(path);
    return rc;
}

int cpx_key_save_public(const cpx_key_t *key, const char *path)
{
    if (!key || !path)
        return CPX_ERR_ARG;
    /* Write beside and rename, so a reader never sees a half-written key. */
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return CPX_ERR_NOMEM;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cpx_log_error(MOD, "msg=\"cannot create public key\" path=\"%s\" errno=\"%s\"", path,
                      strerror(errno));
        free(tmp);
        return CPX_ERR_IO;
    }
    int rc = fchmod(fd, 0644) == 0 ? write_pem_fd(fd, key, false, path)
                                   : (close(fd), CPX_ERR_IO);
    if (rc == CPX_OK && rename(tmp, path) != 0)
        rc = CPX_ERR_IO;
    if (rc != CPX_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

void cpx_key_destroy(cpx_key_t **key_p)
{
    if (!key_p || !*key_p)
        return;
    cpx_key_t *k = *key_p;
    if (k->remote_release)
        k->remote_release(k->remote_ctx);
    EVP_PKEY_free(k->pkey); /* OpenSSL cleanses Ed25519 private material on free */
    cpx_cleanse(k, sizeof *k);
    free(k);
    *key_p = NULL;
}

bool cpx_key_has_private(const cpx_key_t *key) { return key && key->priv; }

void cpx_key_public_raw(const cpx_key_t *key, uint8_t out[CPX_ED25519_PUB_LEN])
{
    memcpy(out, key->pub, CPX_ED25519_PUB_LEN);
}

void cpx_key_id(const cpx_key_t *key, uint8_t out[CPX_KEY_ID_LEN])
{
    memcpy(out, key->id, CPX_KEY_ID_LEN);
}

int cpx_key_sign(const cpx_key_t *key, const void *msg, size_t len,
                 uint8_t sig[CPX_ED25519_SIG_LEN])
{
    if (!key || !key->priv || !sig || (!msg && len))
        return CPX_ERR_ARG;
    if (key->remote_sign)
        return key->remote_sign(key->remote_ctx, msg, len, sig);
    if (!key->has_sk)
        return CPX_ERR_CRYPTO;
    static const uint8_t empty[1];
    if (crypto_sign_detached(sig, NULL, len ? msg : empty, len, key->sk) != 0) {
        cpx_log_error(MOD, "msg=\"Ed25519 sign failed\"");
        return CPX_ERR_CRYPTO;
    }
    return CPX_OK;
}

/* Verification runs on libsodium's Ed25519 (crypto_sign_verify_detached) rather than
 * EVP_DigestVerify: the same RFC 8032 check, about 1.7x faster on this class of
 * machine (13.6k against 8.1k verifications/s per core), and it is the gateway's
 * largest per-message cost for per-message-signed traffic. It is also stricter: it
 * refuses non-canonical and small-order points, which no honest signer produces. Key
 * files stay OpenSSL's (PEM); only the raw key bytes cross over (key_expand). */
int cpx_key_verify(const cpx_key_t *key, const void *msg, size_t len, const uint8_t *sig,
                   size_t sig_len)
{
    if (!key || (!msg && len))
        return CPX_ERR_ARG;
    if (!sig || sig_len != CPX_ED25519_SIG_LEN)
        return CPX_ERR_BAD_SIGNATURE;
    if (!sodium_ready())
        return CPX_ERR_CRYPTO;
    static const uint8_t empty[1];
    int r = crypto_sign_verify_detached(sig, len ? msg : empty, len, key->pub);
    return r == 0 ? CPX_OK : CPX_ERR_BAD_SIGNATURE;
}

/* ---- AES-256-GCM ------------------------------------------------------------------- */

/* Buffers and sizes a seal or an open can take: OpenSSL counts in int. */
static bool aead_args_ok(const void *aad, size_t aad_len, const void *buf, size_t len)
{
    return (aad || !aad_len) && (buf || !len) && aad_len <= (size_t)INT32_MAX &&
           len <= (size_t)INT32_MAX - CPX_AEAD_OVERHEAD;
}

/* Encrypts pt into out = nonce || ciphertext || tag, out already holding the nonce.
 * With key, c is keyed here (a fresh context); without, c is a context keyed before and
 * only the nonce is set: the key schedule is not redone per record. */
static int gcm_seal(EVP_CIPHER_CTX *c, const uint8_t *key, const void *aad, size_t aad_len,
                    const void *pt, size_t pt_len, uint8_t *out)
{
    int outl = 0, finl = 0;
    uint8_t *ct = out + CPX_AEAD_NONCE_LEN;
    int ok = c && EVP_EncryptInit_ex2(c, key ? gcm_cipher() : NULL, key, out, NULL) == 1 &&
             (!aad_len || EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) == 1) &&
             (!pt_len || EVP_EncryptUpdate(c, ct, &outl, pt, (int)pt_len) == 1) &&
             EVP_EncryptFinal_ex(c, ct + (pt_len ? outl : 0), &finl) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CPX_AEAD_TAG_LEN, ct + pt_len) == 1;
    if (!ok) {
        cpx_log_openssl(MOD, "AES-256-GCM seal");
        return CPX_ERR_CRYPTO;
    }
    return CPX_OK;
}

/* Decrypts in = nonce || ciphertext || tag into pt, keying c as gcm_seal does. The tag
 * is checked before CPX_OK; on any failure pt is wiped, so unauthenticated plaintext
 * never stays behind. */
static int gcm_open(EVP_CIPHER_CTX *c, const uint8_t *key, const void *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *pt)
{
    if (in_len < CPX_AEAD_OVERHEAD)
        return CPX_ERR_TAMPERED;
    size_t ct_len = in_len - CPX_AEAD_OVERHEAD;
    if (ct_len && !pt)
        return CPX_ERR_ARG;
    const uint8_t *ct = in + CPX_AEAD_NONCE_LEN;
    uint8_t tag[CPX_AEAD_TAG_LEN];
    memcpy(tag, ct + ct_len, sizeof tag);
    int outl = 0, finl = 0;
    int ok = c && EVP_DecryptInit_ex2(c, key ? gcm_cipher() : NULL, key, in, NULL) == 1 &&
             (!aad_len || EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) == 1) &&
             (!ct_len || EVP_DecryptUpdate(c, pt, &outl, ct, (int)ct_len) == 1) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CPX_AEAD_TAG_LEN, tag) == 1;
    if (!ok) {
        cpx_log_openssl(MOD, "AES-256-GCM open");
        if (ct_len)
            cpx_cleanse(pt, ct_len);
        return CPX_ERR_CRYPTO;
    }
    uint8_t dummy[16];
    if (EVP_DecryptFinal_ex(c, ct_len ? pt + outl : dummy, &finl) != 1) {
        ERR_clear_error();  /* a failed tag is an expected outcome, not a fault */
        if (ct_len)
            cpx_cleanse(pt, ct_len);
        return CPX_ERR_TAMPERED;
    }
    return CPX_OK;
}

/* The seal core with a caller-chosen nonce. Exported only for known-answer tests:
 * production code must use cpx_aead_seal or a sealer, which never reuse a nonce. */
int cpx_aead_seal_with_nonce_for_test(const uint8_t key[CPX_AEAD_KEY_LEN],
                                      const uint8_t nonce[CPX_AEAD_NONCE_LEN], const void *aad,
                                      size_t aad_len, const void *pt, size_t pt_len,
                                      uint8_t *out);
int cpx_aead_seal_with_nonce_for_test(const uint8_t key[CPX_AEAD_KEY_LEN],
                                      const uint8_t nonce[CPX_AEAD_NONCE_LEN], const void *aad,
                                      size_t aad_len, const void *pt, size_t pt_len,
                                      uint8_t *out)
{
    if (!key || !nonce || !out || !aead_args_ok(aad, aad_len, pt, pt_len))
        return CPX_ERR_ARG;
    memmove(out, nonce, CPX_AEAD_NONCE_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int rc = gcm_seal(c, key, aad, aad_len, pt, pt_len, out);
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int cpx_aead_seal(const uint8_t key[CPX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const void *pt, size_t pt_len, uint8_t *out)
{
    uint8_t nonce[CPX_AEAD_NONCE_LEN];
    int rc = cpx_random(nonce, sizeof nonce);
    if (rc != CPX_OK)
        return rc;
    return cpx_aead_seal_with_nonce_for_test(key, nonce, aad, aad_len, pt, pt_len, out);
}

int cpx_aead_open(const uint8_t key[CPX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *pt)
{
    if (!key || !in || !aead_args_ok(aad, aad_len, NULL, 0) || in_len > (size_t)INT32_MAX)
        return CPX_ERR_ARG;
    if (in_len < CPX_AEAD_OVERHEAD)
        return CPX_ERR_TAMPERED;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int rc = gcm_open(c, key, aad, aad_len, in, in_len, pt);
    EVP_CIPHER_CTX_free(c);
    return rc;
}

/* ---- AES-256-GCM sealer: counter nonces under one keyed context ----------------------- */

#define SEALER_PREFIX_LEN 8

struct cpx_aead_sealer {
    EVP_CIPHER_CTX *enc, *dec;               /* keyed once; each record sets only its nonce */
    uint8_t prefix[SEALER_PREFIX_LEN];       /* random per sealer ... */
    uint32_t count;                          /* ... then the last counter used: never repeats */
};

cpx_aead_sealer_t *cpx_aead_sealer_new(const uint8_t key[CPX_AEAD_KEY_LEN])
{
    if (!key)
        return NULL;
    cpx_aead_sealer_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    int ok = cpx_random(s->prefix, sizeof s->prefix) == CPX_OK &&
             (s->enc = EVP_CIPHER_CTX_new()) && (s->dec = EVP_CIPHER_CTX_new()) &&
             EVP_EncryptInit_ex2(s->enc, gcm_cipher(), key, NULL, NULL) == 1 &&
             EVP_DecryptInit_ex2(s->dec, gcm_cipher(), key, NULL, NULL) == 1;
    if (!ok) {
        cpx_log_openssl(MOD, "keying an AES-256-GCM sealer");
        cpx_aead_sealer_destroy(&s);
    }
    return s;
}

void cpx_aead_sealer_destroy(cpx_aead_sealer_t **s_p)
{
    if (!s_p || !*s_p)
        return;
    EVP_CIPHER_CTX_free((*s_p)->enc);  /* frees cleanse the key schedules */
    EVP_CIPHER_CTX_free((*s_p)->dec);
    cpx_cleanse(*s_p, sizeof **s_p);
    free(*s_p);
    *s_p = NULL;
}

/* Sets the nonce state so that the next seal uses prefix | BE32(last + 1) (last =
 * UINT32_MAX: the next seal draws a new prefix). Exported only for known-answer tests. */
void cpx_aead_sealer_set_nonce_for_test(cpx_aead_sealer_t *s,
                                        const uint8_t prefix[SEALER_PREFIX_LEN], uint32_t last);
void cpx_aead_sealer_set_nonce_for_test(cpx_aead_sealer_t *s,
                                        const uint8_t prefix[SEALER_PREFIX_LEN], uint32_t last)
{
    memcpy(s->prefix, prefix, sizeof s->prefix);
    s->count = last;
}

/* The next nonce: prefix | BE32(count), a new random prefix when the counter wraps. */
static int next_nonce(cpx_aead_sealer_t *s, uint8_t nonce[CPX_AEAD_NONCE_LEN])
{
    if (++s->count == 0) {
        int rc = cpx_random(s->prefix, sizeof s->prefix);
        if (rc) {
            s->count = UINT32_MAX;  /* draw again next time: never counter 1 on the old prefix */
            return rc;
        }
        s->count = 1;
    }
    memcpy(nonce, s->prefix, SEALER_PREFIX_LEN);
    for (int i = 0; i < 4; i++)
        nonce[SEALER_PREFIX_LEN + i] = (uint8_t)(s->count >> (24 - 8 * i));
    return CPX_OK;
}

int cpx_aead_sealer_seal(cpx_aead_sealer_t *s, const void *aad, size_t aad_len, const void *pt,
                         size_t pt_len, uint8_t *out)
{
    if (!s || !out || !aead_args_ok(aad, aad_len, pt, pt_len))
        return CPX_ERR_ARG;
    int rc = next_nonce(s, out);
    return rc ? rc : gcm_seal(s->enc, NULL, aad, aad_len, pt, pt_len, out);
}

int cpx_aead_sealer_open(cpx_aead_sealer_t *s, const void *aad, size_t aad_len,
                         const uint8_t *in, size_t in_len, uint8_t *pt)
{
    if (!s || !in || !aead_args_ok(aad, aad_len, NULL, 0) || in_len > (size_t)INT32_MAX)
        return CPX_ERR_ARG;
    return gcm_open(s->dec, NULL, aad, aad_len, in, in_len, pt);
}

/* ---- symmetric key files ----------------------------------------------------------- */

int cpx_symkey_load(const char *path, uint8_t out[32])
{
    if (!path || !out)
        return CPX_ERR_ARG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cpx_log_error(MOD, "msg=\"cannot open key file\" path=\"%s\" errno=\"%s\"", path,
                      strerror(errno));
        return errno == ENOENT ? CPX_ERR_NOT_FOUND : CPX_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        cpx_log_error(MOD, "msg=\"key file is not a regular file\" path=\"%s\"", path);
        return CPX_ERR_IO;
    }
    if (st.st_mode & 077) {
        close(fd);
        cpx_log_error(MOD, "msg=\"key file readable by group or others; chmod 600\" "
                           "path=\"%s\" mode=%03o", path, (unsigned)(st.st_mode & 0777));
        return CPX_ERR_REFUSED;
    }
    uint8_t buf[80];
    ssize_t n = 0, r;
    while ((size_t)n < sizeof buf && (r = read(fd, buf + n, sizeof buf - (size_t)n)) > 0)
        n += r;
    close(fd);
    int rc = CPX_ERR_INVALID;
    if (n == 32) {
        memcpy(out, buf, 32);
        rc = CPX_OK;
    } else if (n >= 64 && n <= 66) {
        size_t len = (size_t)n;
        while (len > 64 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        char hex[65];
        memcpy(hex, buf, 64);
        hex[64] = '\0';
        if (len == 64 && cpx_unhex(hex, out, 32) == CPX_OK)
            rc = CPX_OK;
        cpx_cleanse(hex, sizeof hex);
    }
    cpx_cleanse(buf, sizeof buf);
    if (rc != CPX_OK)
        cpx_log_error(MOD, "msg=\"key file must hold 32 raw bytes or 64 hex characters\" "
                           "path=\"%s\" size=%zd", path, n);
    return rc;
}

int cpx_symkey_create(const char *path)
{
    if (!path)
        return CPX_ERR_ARG;
    uint8_t key[32];
    char hex[66];
    int rc = cpx_random(key, sizeof key);
    if (rc != CPX_OK)
        return rc;
    cpx_hex(key, sizeof key, hex);
    cpx_cleanse(key, sizeof key);
    hex[64] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        cpx_cleanse(hex, sizeof hex);
        cpx_log_error(MOD, "msg=\"cannot create key file\" path=\"%s\" errno=\"%s\"", path,
                      strerror(e));
        return e == EEXIST ? CPX_ERR_EXISTS : CPX_ERR_IO;
    }
    ssize_t w = fchmod(fd, 0600) == 0 ? write(fd, hex, 65) : -1;
    int ok = w == 65 && fsync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    cpx_cleanse(hex, sizeof hex);
    if (!ok) {
        unlink(path);
        return CPX_ERR_IO;
    }
    return CPX_OK;
}

/* ---- hex ----------------------------------------------------------------------------- */

void cpx_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cpx_unhex(const char *in, uint8_t *out, size_t len)
{
    if (!in || (!out && len))
        return CPX_ERR_ARG;
    for (size_t i = 0; i < len; i++) {
        int hi = nibble(in[2 * i]);
        if (hi < 0)
            return CPX_ERR_DECODE;
        int lo = nibble(in[2 * i + 1]);
        if (lo < 0)
            return CPX_ERR_DECODE;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return in[2 * len] == '\0' ? CPX_OK : CPX_ERR_DECODE;
}
