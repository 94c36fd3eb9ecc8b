/* test_crypto.c — known answers (RFC 8032, FIPS 180, RFC 4231, McGrew-Viega GCM, the
 * stores' counter-nonce records through the AES-256-GCM sealer) and the refusals that
 * must hold: flipped bits, truncation, wrong keys, bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cpx/crypto.h"
#include "cpx/err.h"

/* Test hooks exported by lib/crypto.c (not part of the public API). */
cpx_key_t *cpx_key_from_raw_private_for_test(const uint8_t seed[32]);
int cpx_aead_seal_with_nonce_for_test(const uint8_t key[CPX_AEAD_KEY_LEN],
                                      const uint8_t nonce[CPX_AEAD_NONCE_LEN], const void *aad,
                                      size_t aad_len, const void *pt, size_t pt_len,
                                      uint8_t *out);
void cpx_aead_sealer_set_nonce_for_test(cpx_aead_sealer_t *s, const uint8_t prefix[8],
                                        uint32_t last);

static size_t unhex_alloc(const char *hex, uint8_t **out)
{
    size_t n = strlen(hex) / 2;
    *out = malloc(n ? n : 1);
    assert_non_null(*out);
    char *copy = strndup(hex, 2 * n);
    assert_int_equal(cpx_unhex(copy, *out, n), CPX_OK);
    free(copy);
    return n;
}

static void assert_hex(const uint8_t *got, size_t len, const char *want)
{
    char *hex = malloc(2 * len + 1);
    assert_non_null(hex);
    cpx_hex(got, len, hex);
    assert_string_equal(hex, want);
    free(hex);
}

/* ---- SHA-256 (FIPS 180-2 examples) ------------------------------------------------- */

static void test_sha256_vectors(void **state)
{
    (void)state;
    uint8_t h[32];
    cpx_sha256("", 0, h);
    assert_hex(h, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cpx_sha256("abc", 3, h);
    assert_hex(h, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cpx_sha256(m448, strlen(m448), h);
    assert_hex(h, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    cpx_sha256(million, 1000000, h);
    assert_hex(h, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* The same through the vector form, split unevenly. */
    cpx_iov_t iov[3] = {{million, 1}, {million + 1, 499999}, {million + 500000, 500000}};
    cpx_sha256_v(iov, 3, h);
    assert_hex(h, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
    cpx_iov_t abc[3] = {{"a", 1}, {"", 0}, {"bc", 2}};
    cpx_sha256_v(abc, 3, h);
    assert_hex(h, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cpx_sha256("abd", 3, h);
    char hex[65];
    cpx_hex(h, 32, hex);
    assert_string_not_equal(hex,
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ---- HMAC-SHA-256 (RFC 4231 test cases 1-4) ------------------------------------------ */

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t h[32], key[25], data[50];

    memset(key, 0x0b, 20);
    cpx_hmac_sha256(key, 20, "Hi There", 8, h);
    assert_hex(h, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    cpx_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, h);
    assert_hex(h, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    cpx_hmac_sha256(key, 20, data, 50, h);
    assert_hex(h, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    cpx_hmac_sha256(key, 25, data, 50, h);
    assert_hex(h, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    /* A one-bit change of the key changes the MAC. */
    key[0] ^= 1;
    cpx_hmac_sha256(key, 25, data, 50, h);
    char hex[65];
    cpx_hex(h, 32, hex);
    assert_string_not_equal(hex,
                            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
}

static void test_ct_equal_and_hex(void **state)
{
    (void)state;
    assert_true(cpx_ct_equal("abcd", "abcd", 4));
    assert_false(cpx_ct_equal("abcd", "abce", 4));
    uint8_t b[2];
    assert_int_equal(cpx_unhex("0aFf", b, 2), CPX_OK);
    assert_int_equal(b[0], 0x0a);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(cpx_unhex("0aF", b, 2), CPX_ERR_DECODE);
    assert_int_equal(cpx_unhex("0aFf0", b, 2), CPX_ERR_DECODE);
    assert_int_equal(cpx_unhex("0g00", b, 2), CPX_ERR_DECODE);
    uint8_t r1[32] = {0}, r2[32] = {0};
    assert_int_equal(cpx_random(r1, 32), CPX_OK);
    assert_int_equal(cpx_random(r2, 32), CPX_OK);
    assert_false(cpx_ct_equal(r1, r2, 32));
}

/* ---- Ed25519 (RFC 8032 section 7.1) ------------------------------------------------ */

static const struct {
    const char *secret, *public, *message, *signature;
} rfc8032[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
     "1cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
     "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
     "984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    /* TEST SHA(abc): the message is SHA-512("abc"). */
    {"833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23"
     "a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c6"
     "6431e0303dca179c138ac17ad9bef1177331a704"},
};

static void test_ed25519_rfc8032(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof rfc8032 / sizeof rfc8032[0]; t++) {
        uint8_t *seed, *pub, *msg, *want;
        assert_int_equal(unhex_alloc(rfc8032[t].secret, &seed), 32);
        assert_int_equal(unhex_alloc(rfc8032[t].public, &pub), 32);
        size_t mlen = unhex_alloc(rfc8032[t].message, &msg);
        assert_int_equal(unhex_alloc(rfc8032[t].signature, &want), 64);

        cpx_key_t *k = cpx_key_from_raw_private_for_test(seed);
        assert_non_null(k);
        assert_true(cpx_key_has_private(k));
        uint8_t raw[32], sig[64], id[8], h[32];
        cpx_key_public_raw(k, raw);
        assert_memory_equal(raw, pub, 32);
        cpx_key_id(k, id);
        cpx_sha256(pub, 32, h);
        assert_memory_equal(id, h, 8);

        assert_int_equal(cpx_key_sign(k, msg, mlen, sig), CPX_OK);
        assert_memory_equal(sig, want, 64);

        cpx_key_t *p = cpx_key_from_raw_public(pub);
        assert_non_null(p);
        assert_false(cpx_key_has_private(p));
        assert_int_equal(cpx_key_verify(p, msg, mlen, want, 64), CPX_OK);
        assert_int_equal(cpx_key_sign(p, msg, mlen, sig), CPX_ERR_ARG);

        /* Flipped bit anywhere in the signature. */
        for (size_t bit = 0; bit < 512; bit += 37) {
            want[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(cpx_key_verify(p, msg, mlen, want, 64), CPX_ERR_BAD_SIGNATURE);
            want[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        /* Flipped bit in the message, or a byte appended. */
        if (mlen) {
            msg[mlen - 1] ^= 0x80;
            assert_int_equal(cpx_key_verify(p, msg, mlen, want, 64), CPX_ERR_BAD_SIGNATURE);
            msg[mlen - 1] ^= 0x80;
        }
        uint8_t *longer = malloc(mlen + 1);
        if (mlen)
            memcpy(longer, msg, mlen);
        longer[mlen] = 0;
        assert_int_equal(cpx_key_verify(p, longer, mlen + 1, want, 64), CPX_ERR_BAD_SIGNATURE);
        free(longer);
        /* The same signature made malleable, S + L (the group order): RFC 8032 5.1.7
         * requires S < L, so it must be refused although it verifies "mathematically". */
        {
            static const uint8_t order[32] = {
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
            uint8_t mal[64];
            memcpy(mal, want, 64);
            unsigned carry = 0;
            for (size_t i = 0; i < 32; i++) {
                carry += (unsigned)mal[32 + i] + order[i];
                mal[32 + i] = (uint8_t)carry;
                carry >>= 8;
            }
            assert_int_equal(cpx_key_verify(p, msg, mlen, mal, 64), CPX_ERR_BAD_SIGNATURE);
        }
        /* Truncated or overlong signature. */
        assert_int_equal(cpx_key_verify(p, msg, mlen, want, 63), CPX_ERR_BAD_SIGNATURE);
        assert_int_equal(cpx_key_verify(p, msg, mlen, want, 0), CPX_ERR_BAD_SIGNATURE);
        assert_int_equal(cpx_key_verify(p, msg, mlen, NULL, 64), CPX_ERR_BAD_SIGNATURE);
        /* Wrong key: the next vector's public key. */
        uint8_t *other;
        unhex_alloc(rfc8032[(t + 1) % 4].public, &other);
        cpx_key_t *q = cpx_key_from_raw_public(other);
        assert_non_null(q);
        assert_int_equal(cpx_key_verify(q, msg, mlen, want, 64), CPX_ERR_BAD_SIGNATURE);

        cpx_key_destroy(&q);
        cpx_key_destroy(&p);
        cpx_key_destroy(&k);
        assert_null(k);
        cpx_key_destroy(&k); /* a second destroy is harmless */
        cpx_key_destroy(NULL);
        free(other);
        free(seed);
        free(pub);
        free(msg);
        free(want);
    }
}

static void test_ed25519_generate(void **state)
{
    (void)state;
    cpx_key_t *a = cpx_key_generate(), *b = cpx_key_generate();
    assert_non_null(a);
    assert_non_null(b);
    uint8_t ra[32], rb[32], sig[64];
    cpx_key_public_raw(a, ra);
    cpx_key_public_raw(b, rb);
    assert_memory_not_equal(ra, rb, 32);
    assert_int_equal(cpx_key_sign(a, "hello", 5, sig), CPX_OK);
    assert_int_equal(cpx_key_verify(a, "hello", 5, sig, 64), CPX_OK);
    assert_int_equal(cpx_key_verify(b, "hello", 5, sig, 64), CPX_ERR_BAD_SIGNATURE);
    cpx_key_destroy(&a);
    cpx_key_destroy(&b);
}

/* cpx_key_sign runs on libsodium, OpenSSL holds the key files: for random keys and
 * messages of every length from 0, the signature must be the very bytes OpenSSL makes
 * (Ed25519 is deterministic), and verify under both. */
static void test_ed25519_same_as_openssl(void **state)
{
    (void)state;
    uint8_t seed[32], msg[300], ours[64], theirs[64];
    for (size_t t = 0; t < 64; t++) {
        assert_int_equal(cpx_random(seed, sizeof seed), CPX_OK);
        size_t len = t == 0 ? 0 : (t * 37) % sizeof msg;
        assert_int_equal(cpx_random(msg, sizeof msg), CPX_OK);
        cpx_key_t *k = cpx_key_from_raw_private_for_test(seed);
        assert_non_null(k);
        assert_int_equal(cpx_key_sign(k, len ? msg : NULL, len, ours), CPX_OK);

        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        assert_non_null(pk);
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        size_t sl = sizeof theirs;
        assert_int_equal(EVP_DigestSignInit_ex(c, NULL, NULL, NULL, NULL, pk, NULL), 1);
        assert_int_equal(EVP_DigestSign(c, theirs, &sl, msg, len), 1);
        assert_int_equal(sl, 64);
        assert_memory_equal(ours, theirs, 64);
        assert_int_equal(EVP_DigestVerifyInit_ex(c, NULL, NULL, NULL, NULL, pk, NULL), 1);
        assert_int_equal(EVP_DigestVerify(c, ours, 64, msg, len), 1);
        EVP_MD_CTX_free(c);
        EVP_PKEY_free(pk);
        assert_int_equal(cpx_key_verify(k, len ? msg : NULL, len, ours, 64), CPX_OK);
        ours[t % 64] ^= 0x10;
        assert_int_equal(cpx_key_verify(k, len ? msg : NULL, len, ours, 64), CPX_ERR_BAD_SIGNATURE);
        cpx_key_destroy(&k);
    }
}

/* ---- PEM files ----------------------------------------------------------------------- */

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/cpx_test_crypto.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *name)
{
    static char buf[8][128];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

static void test_pem_round_trip(void **state)
{
    (void)state;
    const char *priv = path_in("a.sign.key"), *pub = path_in("a.sign.pub");
    cpx_key_t *k = cpx_key_generate();
    assert_non_null(k);
    mode_t old = umask(0);
    assert_int_equal(cpx_key_save_private(k, priv), CPX_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Never overwritten. */
    assert_int_equal(cpx_key_save_private(k, priv), CPX_ERR_EXISTS);
    assert_int_equal(cpx_key_save_public(k, pub), CPX_OK);
    assert_int_equal(cpx_key_save_public(k, pub), CPX_OK); /* public replaces */
    assert_int_equal(stat(pub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    cpx_key_t *lk = cpx_key_load_private(priv), *lp = cpx_key_load_public(pub);
    assert_non_null(lk);
    assert_non_null(lp);
    assert_true(cpx_key_has_private(lk));
    assert_false(cpx_key_has_private(lp));
    uint8_t r0[32], r1[32], r2[32], sig[64];
    cpx_key_public_raw(k, r0);
    cpx_key_public_raw(lk, r1);
    cpx_key_public_raw(lp, r2);
    assert_memory_equal(r0, r1, 32);
    assert_memory_equal(r0, r2, 32);
    assert_int_equal(cpx_key_sign(lk, "x", 1, sig), CPX_OK);
    assert_int_equal(cpx_key_verify(lp, "x", 1, sig, 64), CPX_OK);
    /* A public key file is not a private key and vice versa. */
    assert_null(cpx_key_load_private(pub));
    cpx_key_t *swapped = cpx_key_load_public(priv);
    assert_null(swapped);
    assert_int_equal(cpx_key_save_private(lp, path_in("pub-as-priv")), CPX_ERR_ARG);
    assert_null(cpx_key_load_private(path_in("missing")));
    /* A key made from the raw public bytes (no OpenSSL object) is written as the same
     * PEM, has the same id, verifies, and cannot sign. */
    cpx_key_t *rk = cpx_key_from_raw_public(r0);
    assert_non_null(rk);
    uint8_t id0[CPX_KEY_ID_LEN], id1[CPX_KEY_ID_LEN];
    cpx_key_id(k, id0);
    cpx_key_id(rk, id1);
    assert_memory_equal(id0, id1, sizeof id0);
    assert_int_equal(cpx_key_verify(rk, "x", 1, sig, 64), CPX_OK);
    assert_int_equal(cpx_key_sign(rk, "x", 1, sig), CPX_ERR_ARG);
    assert_int_equal(cpx_key_save_public(rk, path_in("raw.sign.pub")), CPX_OK);
    cpx_key_t *rl = cpx_key_load_public(path_in("raw.sign.pub"));
    assert_non_null(rl);
    cpx_key_public_raw(rl, r1);
    assert_memory_equal(r0, r1, 32);
    cpx_key_destroy(&rl);
    cpx_key_destroy(&rk);
    cpx_key_destroy(&k);
    cpx_key_destroy(&lk);
    cpx_key_destroy(&lp);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_pem_refuses_other_keys(void **state)
{
    (void)state;
    write_file(path_in("garbage.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n", 33, 0600);
    assert_null(cpx_key_load_private(path_in("garbage.pem")));
    assert_null(cpx_key_load_public(path_in("garbage.pem")));
    write_file(path_in("empty.pem"), "", 0, 0600);
    assert_null(cpx_key_load_private(path_in("empty.pem")));

    const char *types[] = {"RSA", "EC"};
    for (int i = 0; i < 2; i++) {
        EVP_PKEY *pk = i == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)
                              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        assert_non_null(pk);
        char name[32];
        snprintf(name, sizeof name, "%s.key", types[i]);
        FILE *f = fopen(path_in(name), "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
        fclose(f);
        snprintf(name, sizeof name, "%s.pub", types[i]);
        f = fopen(path_in(name), "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PUBKEY(f, pk), 1);
        fclose(f);
        EVP_PKEY_free(pk);
        snprintf(name, sizeof name, "%s.key", types[i]);
        assert_null(cpx_key_load_private(path_in(name)));
        snprintf(name, sizeof name, "%s.pub", types[i]);
        assert_null(cpx_key_load_public(path_in(name)));
    }
}

/* ---- AES-256-GCM (McGrew & Viega, GCM spec test cases 13, 14, 16) ------------------- */

static void test_aead_known_answer(void **state)
{
    (void)state;
    uint8_t zero_key[32] = {0}, zero_iv[12] = {0}, zero_pt[16] = {0}, out[64 + 28], pt[64];

    /* TC13: empty plaintext, tag only. */
    assert_int_equal(cpx_aead_seal_with_nonce_for_test(zero_key, zero_iv, NULL, 0, NULL, 0, out),
                     CPX_OK);
    assert_memory_equal(out, zero_iv, 12);
    assert_hex(out + 12, 16, "530f8afbc74536b9a963b4f1c4cb738b");
    assert_int_equal(cpx_aead_open(zero_key, NULL, 0, out, 28, NULL), CPX_OK);

    /* TC14: one zero block. */
    assert_int_equal(
        cpx_aead_seal_with_nonce_for_test(zero_key, zero_iv, NULL, 0, zero_pt, 16, out), CPX_OK);
    assert_hex(out + 12, 32,
               "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");

    /* TC16: 60-byte plaintext with 20 bytes of AAD. */
    uint8_t *key, *iv, *p, *aad;
    unhex_alloc("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", &key);
    unhex_alloc("cafebabefacedbaddecaf888", &iv);
    size_t plen = unhex_alloc("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                              &p);
    size_t alen = unhex_alloc("feedfacedeadbeeffeedfacedeadbeefabaddad2", &aad);
    assert_int_equal(plen, 60);
    assert_int_equal(cpx_aead_seal_with_nonce_for_test(key, iv, aad, alen, p, plen, out), CPX_OK);
    assert_hex(out + 12, 60 + 16,
               "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
               "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
               "76fc6ece0f4e1768cddf8853bb2d551b");
    size_t n = 12 + 60 + 16;
    assert_int_equal(cpx_aead_open(key, aad, alen, out, n, pt), CPX_OK);
    assert_memory_equal(pt, p, 60);

    /* Every single-bit change of nonce, ciphertext or tag is refused, and no plaintext
     * is left in the output buffer. */
    for (size_t bit = 0; bit < n * 8; bit += 13) {
        out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(pt, 0xee, sizeof pt);
        assert_int_equal(cpx_aead_open(key, aad, alen, out, n, pt), CPX_ERR_TAMPERED);
        for (size_t i = 0; i < 60; i++)
            assert_int_equal(pt[i], 0);
        out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Wrong AAD, missing AAD, wrong key, truncated. */
    aad[0] ^= 1;
    assert_int_equal(cpx_aead_open(key, aad, alen, out, n, pt), CPX_ERR_TAMPERED);
    aad[0] ^= 1;
    assert_int_equal(cpx_aead_open(key, NULL, 0, out, n, pt), CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_open(key, aad, alen - 1, out, n, pt), CPX_ERR_TAMPERED);
    key[31] ^= 1;
    assert_int_equal(cpx_aead_open(key, aad, alen, out, n, pt), CPX_ERR_TAMPERED);
    key[31] ^= 1;
    assert_int_equal(cpx_aead_open(key, aad, alen, out, n - 1, pt), CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_open(key, aad, alen, out, 27, pt), CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_open(key, aad, alen, out, n, pt), CPX_OK);
    free(key);
    free(iv);
    free(p);
    free(aad);
}

/* ---- the stores' record format: counter nonce, AES-256-GCM ------------------------- */

/* Fixed inputs of the stores' sealed records (computed with an independent AES-GCM,
 * Python's cryptography): key 00..1f, nonce = prefix f0e1d2c3b4a59687 | BE32(counter),
 * the message store's AAD for seq 42 sent by TOWN_HUASHI in case JY-2026-000042. A
 * change here means records already on disk no longer open. */
static const uint8_t KAT_KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t KAT_PREFIX[8] = {0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87};
static const char KAT_PT[] = "cpx known-answer envelope\x00\x01\x02\xff"; /* 29 bytes */
#define KAT_PT_LEN (sizeof KAT_PT - 1)
static const char KAT_AAD[] = "cpx.v1.store\0"
                              "\0\0\0\0\0\0\0\x2a"
                              "\x0bTOWN_HUASHI\x0eJY-2026-000042";
#define KAT_AAD_LEN (sizeof KAT_AAD - 1)
static const char KAT_COUNTER1[] =
    "f0e1d2c3b4a5968700000001"
    "71d0c5cc2465396f805ab58f3ea010a3e04f36dbb61b021890d705e385"
    "b3f6900fe24187c706db216135ee6472";
static const char KAT_COUNTER2[] =
    "f0e1d2c3b4a5968700000002"
    "b9201a8e4e2357770e31c44b37154a8a382e007b77a8b9132324f873aa"
    "8b12df4917a518b670ec0d2ab0d97604";

/* A refused open leaves no plaintext behind. */
static void assert_wiped(const uint8_t *pt, size_t len)
{
    for (size_t i = 0; i < len; i++)
        assert_int_equal(pt[i], 0);
}

static void kat_nonce(uint32_t counter, uint8_t nonce[CPX_AEAD_NONCE_LEN])
{
    memcpy(nonce, KAT_PREFIX, sizeof KAT_PREFIX);
    for (int i = 0; i < 4; i++)
        nonce[8 + i] = (uint8_t)(counter >> (24 - 8 * i));
}

static void test_aead_counter_nonce_known_answer(void **state)
{
    (void)state;
    assert_int_equal(KAT_PT_LEN, 29);
    assert_int_equal(KAT_AAD_LEN, 13 + 8 + 2 + 11 + 14);
    uint8_t nonce[CPX_AEAD_NONCE_LEN], out[KAT_PT_LEN + CPX_AEAD_OVERHEAD], pt[KAT_PT_LEN];
    kat_nonce(1, nonce);
    assert_int_equal(cpx_aead_seal_with_nonce_for_test(KAT_KEY, nonce, KAT_AAD, KAT_AAD_LEN,
                                                       KAT_PT, KAT_PT_LEN, out), CPX_OK);
    assert_hex(out, sizeof out, KAT_COUNTER1);
    kat_nonce(2, nonce);
    assert_int_equal(cpx_aead_seal_with_nonce_for_test(KAT_KEY, nonce, KAT_AAD, KAT_AAD_LEN,
                                                       KAT_PT, KAT_PT_LEN, out), CPX_OK);
    assert_hex(out, sizeof out, KAT_COUNTER2);
    assert_int_equal(cpx_aead_open(KAT_KEY, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt), CPX_OK);
    assert_memory_equal(pt, KAT_PT, KAT_PT_LEN);

    /* Refused: a flipped tag byte, another record's AAD (seq 43); nothing left in pt. */
    out[sizeof out - 1] ^= 0x80;
    memset(pt, 0xee, sizeof pt);
    assert_int_equal(cpx_aead_open(KAT_KEY, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt),
                     CPX_ERR_TAMPERED);
    assert_wiped(pt, sizeof pt);
    out[sizeof out - 1] ^= 0x80;
    char aad43[KAT_AAD_LEN];
    memcpy(aad43, KAT_AAD, KAT_AAD_LEN);
    aad43[13 + 7] = 0x2b;
    memset(pt, 0xee, sizeof pt);
    assert_int_equal(cpx_aead_open(KAT_KEY, aad43, KAT_AAD_LEN, out, sizeof out, pt),
                     CPX_ERR_TAMPERED);
    assert_wiped(pt, sizeof pt);
}

/* The sealer writes exactly the known records: prefix | BE32(1), then BE32(2). */
static void test_aead_sealer_known_answer(void **state)
{
    (void)state;
    uint8_t out[KAT_PT_LEN + CPX_AEAD_OVERHEAD], pt[KAT_PT_LEN];
    cpx_aead_sealer_t *s = cpx_aead_sealer_new(KAT_KEY);
    assert_non_null(s);
    cpx_aead_sealer_set_nonce_for_test(s, KAT_PREFIX, 0);
    assert_int_equal(cpx_aead_sealer_seal(s, KAT_AAD, KAT_AAD_LEN, KAT_PT, KAT_PT_LEN, out), CPX_OK);
    assert_hex(out, sizeof out, KAT_COUNTER1);
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt), CPX_OK);
    assert_memory_equal(pt, KAT_PT, KAT_PT_LEN);
    assert_int_equal(cpx_aead_sealer_seal(s, KAT_AAD, KAT_AAD_LEN, KAT_PT, KAT_PT_LEN, out), CPX_OK);
    assert_hex(out, sizeof out, KAT_COUNTER2);
    assert_int_equal(cpx_aead_open(KAT_KEY, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt), CPX_OK);
    assert_memory_equal(pt, KAT_PT, KAT_PT_LEN);
    cpx_aead_sealer_destroy(&s);
    assert_null(s);
    cpx_aead_sealer_destroy(&s);  /* twice: a no-op */
    cpx_aead_sealer_destroy(NULL);
}

/* A sealer refuses what cpx_aead_open refuses, wipes pt, and stays usable after. */
static void test_aead_sealer_refusals(void **state)
{
    (void)state;
    uint8_t out[KAT_PT_LEN + CPX_AEAD_OVERHEAD], pt[KAT_PT_LEN];
    assert_int_equal(cpx_unhex(KAT_COUNTER1, out, sizeof out), CPX_OK);
    cpx_aead_sealer_t *s = cpx_aead_sealer_new(KAT_KEY);
    assert_non_null(s);
    out[sizeof out - 1] ^= 0x80;  /* a flipped tag byte */
    memset(pt, 0xee, sizeof pt);
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt),
                     CPX_ERR_TAMPERED);
    assert_wiped(pt, sizeof pt);
    out[sizeof out - 1] ^= 0x80;
    memset(pt, 0xee, sizeof pt);
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN - 1, out, sizeof out, pt),
                     CPX_ERR_TAMPERED);  /* wrong AAD */
    assert_wiped(pt, sizeof pt);
    assert_int_equal(cpx_aead_sealer_open(s, NULL, 0, out, sizeof out, pt), CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN, out, CPX_AEAD_OVERHEAD - 1, pt),
                     CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN, out, sizeof out, NULL),
                     CPX_ERR_ARG);
    assert_int_equal(cpx_aead_sealer_open(s, NULL, 1, out, sizeof out, pt), CPX_ERR_ARG);
    assert_int_equal(cpx_aead_sealer_seal(s, KAT_AAD, KAT_AAD_LEN, NULL, 1, out), CPX_ERR_ARG);
    assert_int_equal(cpx_aead_sealer_seal(NULL, KAT_AAD, KAT_AAD_LEN, KAT_PT, 1, out), CPX_ERR_ARG);
    /* after the refusals the same sealer still opens the good record */
    assert_int_equal(cpx_aead_sealer_open(s, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt), CPX_OK);
    assert_memory_equal(pt, KAT_PT, KAT_PT_LEN);
    /* another key refuses it */
    uint8_t other[32];
    memcpy(other, KAT_KEY, 32);
    other[0] ^= 1;
    cpx_aead_sealer_t *o = cpx_aead_sealer_new(other);
    assert_non_null(o);
    assert_int_equal(cpx_aead_sealer_open(o, KAT_AAD, KAT_AAD_LEN, out, sizeof out, pt),
                     CPX_ERR_TAMPERED);
    cpx_aead_sealer_destroy(&o);
    cpx_aead_sealer_destroy(&s);
}

/* Fresh sealers count from 1 under their own random prefix; a wrapped counter draws a
 * new prefix and counts from 1 again, never reusing prefix | BE32(0) or a past nonce. */
static void test_aead_sealer_nonces(void **state)
{
    (void)state;
    uint8_t a[1 + CPX_AEAD_OVERHEAD], b[1 + CPX_AEAD_OVERHEAD], pt[1];
    cpx_aead_sealer_t *s = cpx_aead_sealer_new(KAT_KEY), *t = cpx_aead_sealer_new(KAT_KEY);
    assert_non_null(s);
    assert_non_null(t);
    assert_int_equal(cpx_aead_sealer_seal(s, NULL, 0, "x", 1, a), CPX_OK);
    assert_int_equal(cpx_aead_sealer_seal(t, NULL, 0, "x", 1, b), CPX_OK);
    assert_memory_equal(a + 8, ((const uint8_t[4]){0, 0, 0, 1}), 4);
    assert_memory_equal(b + 8, ((const uint8_t[4]){0, 0, 0, 1}), 4);
    assert_memory_not_equal(a, b, 8);
    assert_int_equal(cpx_aead_sealer_open(t, NULL, 0, a, sizeof a, pt), CPX_OK);  /* same key */
    assert_int_equal(pt[0], 'x');

    cpx_aead_sealer_set_nonce_for_test(s, KAT_PREFIX, UINT32_MAX - 1);
    assert_int_equal(cpx_aead_sealer_seal(s, NULL, 0, "x", 1, a), CPX_OK);
    assert_memory_equal(a, KAT_PREFIX, 8);
    assert_memory_equal(a + 8, ((const uint8_t[4]){0xff, 0xff, 0xff, 0xff}), 4);
    assert_int_equal(cpx_aead_sealer_seal(s, NULL, 0, "x", 1, b), CPX_OK);
    assert_memory_not_equal(b, KAT_PREFIX, 8);
    assert_memory_equal(b + 8, ((const uint8_t[4]){0, 0, 0, 1}), 4);
    assert_int_equal(cpx_aead_open(KAT_KEY, NULL, 0, b, sizeof b, pt), CPX_OK);
    /* and cpx_aead_seal's records open with a sealer */
    assert_int_equal(cpx_aead_seal(KAT_KEY, "r", 1, "y", 1, a), CPX_OK);
    assert_int_equal(cpx_aead_sealer_open(s, "r", 1, a, sizeof a, pt), CPX_OK);
    assert_int_equal(pt[0], 'y');
    cpx_aead_sealer_destroy(&s);
    cpx_aead_sealer_destroy(&t);
}

static void test_aead_round_trip(void **state)
{
    (void)state;
    uint8_t key[32], key2[32];
    assert_int_equal(cpx_random(key, 32), CPX_OK);
    assert_int_equal(cpx_random(key2, 32), CPX_OK);
    const char msg[] = "sealed juvenile record 320281";
    size_t len = sizeof msg;
    uint8_t a[sizeof msg + CPX_AEAD_OVERHEAD], b[sizeof msg + CPX_AEAD_OVERHEAD];
    char pt[sizeof msg];
    assert_int_equal(cpx_aead_seal(key, "case-1", 6, msg, len, a), CPX_OK);
    assert_int_equal(cpx_aead_seal(key, "case-1", 6, msg, len, b), CPX_OK);
    /* A fresh nonce every time. */
    assert_memory_not_equal(a, b, CPX_AEAD_NONCE_LEN);
    assert_int_equal(cpx_aead_open(key, "case-1", 6, a, sizeof a, (uint8_t *)pt), CPX_OK);
    assert_string_equal(pt, msg);
    assert_int_equal(cpx_aead_open(key, "case-2", 6, a, sizeof a, (uint8_t *)pt),
                     CPX_ERR_TAMPERED);
    assert_int_equal(cpx_aead_open(key2, "case-1", 6, a, sizeof a, (uint8_t *)pt),
                     CPX_ERR_TAMPERED);
    a[sizeof a - 1] ^= 0x01; /* tag */
    assert_int_equal(cpx_aead_open(key, "case-1", 6, a, sizeof a, (uint8_t *)pt),
                     CPX_ERR_TAMPERED);
}

/* ---- symmetric key files ------------------------------------------------------------- */

static void test_symkey(void **state)
{
    (void)state;
    uint8_t k1[32], k2[32];
    const char *p = path_in("vault.key");
    assert_int_equal(cpx_symkey_create(p), CPX_OK);
    assert_int_equal(cpx_symkey_create(p), CPX_ERR_EXISTS);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(cpx_symkey_load(p, k1), CPX_OK);
    assert_int_equal(cpx_symkey_load(p, k2), CPX_OK);
    assert_memory_equal(k1, k2, 32);

    /* Raw 32 bytes and 64 hex characters both load to the same key. */
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(i * 7);
    char hex[66];
    cpx_hex(raw, 32, hex);
    write_file(path_in("raw.key"), raw, 32, 0600);
    write_file(path_in("hex.key"), hex, 64, 0600);
    assert_int_equal(cpx_symkey_load(path_in("raw.key"), k1), CPX_OK);
    assert_memory_equal(k1, raw, 32);
    assert_int_equal(cpx_symkey_load(path_in("hex.key"), k1), CPX_OK);
    assert_memory_equal(k1, raw, 32);

    /* Readable by group or others: refused. */
    chmod(path_in("raw.key"), 0640);
    assert_int_equal(cpx_symkey_load(path_in("raw.key"), k1), CPX_ERR_REFUSED);
    chmod(path_in("raw.key"), 0604);
    assert_int_equal(cpx_symkey_load(path_in("raw.key"), k1), CPX_ERR_REFUSED);
    /* Wrong sizes and non-hex content. */
    write_file(path_in("short.key"), raw, 31, 0600);
    assert_int_equal(cpx_symkey_load(path_in("short.key"), k1), CPX_ERR_INVALID);
    write_file(path_in("long.key"), hex, 33, 0600);
    assert_int_equal(cpx_symkey_load(path_in("long.key"), k1), CPX_ERR_INVALID);
    hex[10] = 'z';
    write_file(path_in("bad.key"), hex, 64, 0600);
    assert_int_equal(cpx_symkey_load(path_in("bad.key"), k1), CPX_ERR_INVALID);
    assert_int_equal(cpx_symkey_load(path_in("nope.key"), k1), CPX_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_ct_equal_and_hex),
        cmocka_unit_test(test_ed25519_rfc8032),
        cmocka_unit_test(test_ed25519_generate),
        cmocka_unit_test(test_ed25519_same_as_openssl),
        cmocka_unit_test(test_pem_round_trip),
        cmocka_unit_test(test_pem_refuses_other_keys),
        cmocka_unit_test(test_aead_known_answer),
        cmocka_unit_test(test_aead_counter_nonce_known_answer),
        cmocka_unit_test(test_aead_sealer_known_answer),
        cmocka_unit_test(test_aead_sealer_refusals),
        cmocka_unit_test(test_aead_sealer_nonces),
        cmocka_unit_test(test_aead_round_trip),
        cmocka_unit_test(test_symkey),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
