/* cpx/crypto.h — hashing, Ed25519 signing keys, HMAC, AES-256-GCM, randomness
 * (OpenSSL 3 EVP; Ed25519 signing and verification on libsodium, which is 2-2.7x
 * faster and makes the same RFC 8032 signatures).
 *
 * Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), the forms
 * `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write, so an
 * auditor can check any signature with stock OpenSSL.
 *
 * Caveats: secrets passed in are borrowed and never copied except into the key
 * object, which cleanses them on destroy. Compare MACs only with cpx_ct_equal. */
#ifndef CPX_CRYPTO_H
#define CPX_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CPX_SHA256_LEN 32
#define CPX_ED25519_PUB_LEN 32
#define CPX_ED25519_SIG_LEN 64
#define CPX_KEY_ID_LEN 8
#define CPX_AEAD_KEY_LEN 32
#define CPX_AEAD_NONCE_LEN 12
#define CPX_AEAD_TAG_LEN 16
#define CPX_AEAD_OVERHEAD (CPX_AEAD_NONCE_LEN + CPX_AEAD_TAG_LEN)

/* SHA-256 of one buffer. */
void cpx_sha256(const void *data, size_t len, uint8_t out[CPX_SHA256_LEN]);

/* SHA-256 over several buffers, as if concatenated. */
typedef struct cpx_iov { const void *base; size_t len; } cpx_iov_t;
void cpx_sha256_v(const cpx_iov_t *iov, size_t n, uint8_t out[CPX_SHA256_LEN]);

/* HMAC-SHA-256. */
void cpx_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                     uint8_t out[CPX_SHA256_LEN]);

/* Constant-time equality (CRYPTO_memcmp). */
bool cpx_ct_equal(const void *a, const void *b, size_t len);

/* Cryptographically secure random bytes; returns CPX_OK or CPX_ERR_CRYPTO. */
int cpx_random(void *buf, size_t len);

/* Wipes memory that held a secret (OPENSSL_cleanse). */
void cpx_cleanse(void *p, size_t len);

/* ---- Ed25519 keys --------------------------------------------------------------- */

typedef struct cpx_key cpx_key_t;  /* opaque: a public key, or a private key with its public half */

/* New random private key. Caller owns the result; free with cpx_key_destroy. NULL on failure. */
cpx_key_t *cpx_key_generate(void);
/* Loads a PEM private key (Ed25519 only). NULL on failure (logged: path and reason). */
cpx_key_t *cpx_key_load_private(const char *path);
/* Loads a PEM public key (Ed25519 only). NULL on failure. */
cpx_key_t *cpx_key_load_public(const char *path);
/* Public key from its 32 raw bytes (cheap: no OpenSSL object until it is saved). NULL
 * only when out of memory. */
cpx_key_t *cpx_key_from_raw_public(const uint8_t raw[CPX_ED25519_PUB_LEN]);
/* Writes the private key as PEM with mode 0600 (fails if the file exists). */
int cpx_key_save_private(const cpx_key_t *key, const char *path);
/* Writes the public key as PEM, mode 0644 (replaces an existing file). */
int cpx_key_save_public(const cpx_key_t *key, const char *path);
/* Frees the key, cleansing private material; accepts NULL and *key_p == NULL; sets *key_p = NULL. */
void cpx_key_destroy(cpx_key_t **key_p);

bool cpx_key_has_private(const cpx_key_t *key);
/* The 32 raw public-key bytes. */
void cpx_key_public_raw(const cpx_key_t *key, uint8_t out[CPX_ED25519_PUB_LEN]);
/* Key id: the first 8 bytes of SHA-256(raw public key). */
void cpx_key_id(const cpx_key_t *key, uint8_t out[CPX_KEY_ID_LEN]);

/* A key whose private half lives elsewhere (the gateway's signer process, lib/signer.c):
 * it carries the public key, and cpx_key_sign hands msg to sign(ctx, ...). The key
 * owns ctx and calls release(ctx) on destroy (release may be NULL). Such a key "has a
 * private key" for callers (it can sign) but can never be saved. NULL on failure. */
typedef int (*cpx_key_sign_fn)(void *ctx, const void *msg, size_t len,
                               uint8_t sig[CPX_ED25519_SIG_LEN]);
cpx_key_t *cpx_key_delegated(const uint8_t pub[CPX_ED25519_PUB_LEN], cpx_key_sign_fn sign,
                             void (*release)(void *ctx), void *ctx);
/* True for a key made by cpx_key_delegated. */
bool cpx_key_is_delegated(const cpx_key_t *key);

/* Ed25519 (pure, RFC 8032) signature over msg. CPX_ERR_ARG without a private key.
 * A delegated key returns whatever its signer answers (CPX_ERR_REFUSED for input the
 * signer does not sign, CPX_ERR_NET when the signer is gone). */
int cpx_key_sign(const cpx_key_t *key, const void *msg, size_t len,
                 uint8_t sig[CPX_ED25519_SIG_LEN]);
/* CPX_OK if sig is a valid signature of msg, CPX_ERR_BAD_SIGNATURE otherwise
 * (including a sig_len other than 64). */
int cpx_key_verify(const cpx_key_t *key, const void *msg, size_t len,
                   const uint8_t *sig, size_t sig_len);

/* ---- AES-256-GCM ---------------------------------------------------------------- */

/* Encrypts pt into out = nonce(12) || ciphertext || tag(16); out must hold
 * pt_len + CPX_AEAD_OVERHEAD bytes. A fresh random nonce every call. aad is bound
 * (may be NULL with aad_len 0). */
int cpx_aead_seal(const uint8_t key[CPX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const void *pt, size_t pt_len, uint8_t *out);
/* Decrypts in (as written by cpx_aead_seal, in_len >= CPX_AEAD_OVERHEAD) into pt
 * (in_len - CPX_AEAD_OVERHEAD bytes). CPX_ERR_TAMPERED when the tag fails: wrong
 * key, wrong aad or altered bytes — never returns unauthenticated plaintext. */
int cpx_aead_open(const uint8_t key[CPX_AEAD_KEY_LEN], const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *pt);

/* ---- AES-256-GCM sealer: counter nonces, one keyed context ----------------------- */

/* For a store that seals many records under one key (the gateway's message store, the
 * case index's personal fields): the key schedule is done once, not per record, and no
 * random draw is made per record.
 *
 * Nonce (NIST SP 800-38D 8.2.1, deterministic construction): 8 bytes drawn at random
 * when the sealer is made | BE32 counter, 1 for the first record sealed and one more for
 * each next one; when the counter wraps a new 8-byte field is drawn and counting starts
 * again at 1. So a sealer never repeats a nonce, and sealers under one key (one per
 * thread, per process, per run) repeat one only if their random fields collide.
 * Output: out = nonce(12) || ciphertext(pt_len) || tag(16), the layout of
 * cpx_aead_seal: cpx_aead_open opens a sealer's records and cpx_aead_sealer_open opens
 * cpx_aead_seal's. The caller's stored bytes are exactly this; nothing else is framed.
 * AAD: bound by the tag, never stored; aad may be NULL with aad_len 0.
 *
 * Caveats: a sealer is state (cipher contexts, the counter): one per thread. The key is
 * held only inside the cipher contexts, which are cleansed on destroy. */
typedef struct cpx_aead_sealer cpx_aead_sealer_t;

/* A sealer under key (copied into its cipher contexts). Caller owns the result; free with
 * cpx_aead_sealer_destroy. NULL on failure (logged). */
cpx_aead_sealer_t *cpx_aead_sealer_new(const uint8_t key[CPX_AEAD_KEY_LEN]);
/* Frees the sealer, cleansing its key; accepts NULL and *s_p == NULL; sets *s_p = NULL. */
void cpx_aead_sealer_destroy(cpx_aead_sealer_t **s_p);
/* Seals pt into out, which must hold pt_len + CPX_AEAD_OVERHEAD bytes, under the next
 * nonce. CPX_OK; CPX_ERR_ARG for a NULL buffer with a non-zero length or a length beyond
 * what OpenSSL takes (about INT32_MAX); CPX_ERR_CRYPTO when the random source or
 * OpenSSL fails (out is then no record; a failed nonce draw is retried by the next seal,
 * never skipped). */
int cpx_aead_sealer_seal(cpx_aead_sealer_t *s, const void *aad, size_t aad_len, const void *pt,
                         size_t pt_len, uint8_t *out);
/* Opens in (in_len bytes in the layout above) into pt, which must hold
 * in_len - CPX_AEAD_OVERHEAD bytes, with the sealer's key: as cpx_aead_open, without
 * keying a context per call. CPX_OK; CPX_ERR_TAMPERED when in_len < CPX_AEAD_OVERHEAD or
 * the tag fails (wrong key, wrong aad, altered bytes), pt then wiped; CPX_ERR_ARG for bad
 * arguments; CPX_ERR_CRYPTO when OpenSSL fails (pt wiped). */
int cpx_aead_sealer_open(cpx_aead_sealer_t *s, const void *aad, size_t aad_len,
                         const uint8_t *in, size_t in_len, uint8_t *pt);

/* Reads a 32-byte symmetric key file (raw bytes, or 64 hex characters); refuses a file
 * readable by group or others. Generates one (mode 0600) with cpx_symkey_create. */
int cpx_symkey_load(const char *path, uint8_t out[32]);
int cpx_symkey_create(const char *path);

/* Lower-case hex of len bytes into out (2*len+1 bytes, terminated). */
void cpx_hex(const uint8_t *in, size_t len, char *out);
/* Parses exactly 2*len hex characters; CPX_ERR_DECODE otherwise. */
int cpx_unhex(const char *in, uint8_t *out, size_t len);

#endif
