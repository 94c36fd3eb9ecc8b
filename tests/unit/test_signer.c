/* test_signer.c — the signer's policy and protocol (lib/signer.c): it signs the three
 * domain-separated inputs with signatures stock OpenSSL verifies, refuses everything
 * else (including a department-style envelope signing string and near-misses of each
 * form), and a broken channel fails every later signature and reports the loss once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/signer.h"

static const char TAG_HEAD[] = "cpx.v1.sig.tree-head";
static const char TAG_ENV[] = "cpx.v1.sig.envelope";
static const char TAG_BATCH[] = "cpx.v1.sig.batch";

static size_t head_msg(uint8_t *m, uint8_t log_id_byte, uint64_t size)
{
    memset(m, 0, 101);
    memcpy(m, TAG_HEAD, sizeof TAG_HEAD);
    memset(m + sizeof TAG_HEAD, log_id_byte, 32);
    for (int i = 0; i < 8; i++)
        m[sizeof TAG_HEAD + 32 + i] = (uint8_t)(size >> (56 - 8 * i));
    m[sizeof TAG_HEAD + 40 + 7] = 1;  /* timestamp 1 ms */
    memset(m + sizeof TAG_HEAD + 48, 0xab, 32);
    return 101;
}

static size_t env_msg(uint8_t *m)
{
    memcpy(m, TAG_ENV, sizeof TAG_ENV);
    memset(m + sizeof TAG_ENV, 0x5a, 32);
    return sizeof TAG_ENV + 32;
}

static size_t batch_msg(uint8_t *m, uint64_t n)
{
    memcpy(m, TAG_BATCH, sizeof TAG_BATCH);
    for (int i = 0; i < 8; i++)
        m[sizeof TAG_BATCH + i] = (uint8_t)(n >> (56 - 8 * i));
    memset(m + sizeof TAG_BATCH + 8, 0x33, 32);
    return sizeof TAG_BATCH + 8 + 32;
}

static cpx_signer_kind check(cpx_signer_policy_t *p, const uint8_t *m, size_t len)
{
    char why[160];
    cpx_signer_kind k = cpx_signer_check(p, m, len, 1, why, sizeof why);
    if (k == CPX_SIGN_NONE)
        assert_true(why[0] != '\0');  /* every refusal says why */
    return k;
}

static void test_policy_accepts_the_three_forms(void **state)
{
    (void)state;
    cpx_signer_policy_t p = {0};
    uint8_t m[256];
    assert_int_equal(check(&p, m, head_msg(m, 1, 10)), CPX_SIGN_TREE_HEAD);
    assert_int_equal(check(&p, m, head_msg(m, 1, 11)), CPX_SIGN_TREE_HEAD);
    assert_int_equal(check(&p, m, env_msg(m)), CPX_SIGN_ENVELOPE);
    assert_int_equal(check(&p, m, batch_msg(m, 1)), CPX_SIGN_BATCH);
    assert_int_equal(check(&p, m, batch_msg(m, 1000)), CPX_SIGN_BATCH);
}

static void test_policy_refuses_everything_else(void **state)
{
    (void)state;
    cpx_signer_policy_t p = {0};
    uint8_t m[300];
    size_t n;
    assert_int_equal(check(&p, (const uint8_t *)"hello", 5), CPX_SIGN_NONE);
    assert_int_equal(check(&p, m, 0), CPX_SIGN_NONE);
    /* a department's envelope signing string S (docs/signing.md §2), not its sig input */
    static const char S[] = "cpx.v1.envelope\0\0\0\0\x10" "0123456789abcdef";
    assert_int_equal(check(&p, (const uint8_t *)S, sizeof S - 1), CPX_SIGN_NONE);
    /* the tag without its NUL separator, and a digest one byte short or long */
    n = env_msg(m);
    m[sizeof TAG_ENV - 1] = 'x';
    assert_int_equal(check(&p, m, n), CPX_SIGN_NONE);
    n = env_msg(m);
    assert_int_equal(check(&p, m, n - 1), CPX_SIGN_NONE);
    m[n] = 0;
    assert_int_equal(check(&p, m, n + 1), CPX_SIGN_NONE);
    /* batch sizes outside 1..1000 */
    assert_int_equal(check(&p, m, batch_msg(m, 0)), CPX_SIGN_NONE);
    assert_int_equal(check(&p, m, batch_msg(m, 1001)), CPX_SIGN_NONE);
    assert_int_equal(check(&p, m, batch_msg(m, 1) - 1), CPX_SIGN_NONE);
    /* a head of the wrong length, with a negative time, or for another log */
    assert_int_equal(check(&p, m, head_msg(m, 7, 1) + 1), CPX_SIGN_NONE);
    head_msg(m, 7, 1);
    m[sizeof TAG_HEAD + 40] = 0x80;
    assert_int_equal(check(&p, m, 101), CPX_SIGN_NONE);
    assert_int_equal(check(&p, m, head_msg(m, 7, 1)), CPX_SIGN_TREE_HEAD);  /* pins log 7 */
    assert_int_equal(check(&p, m, head_msg(m, 8, 2)), CPX_SIGN_NONE);
    assert_int_equal(check(&p, m, head_msg(m, 7, 2)), CPX_SIGN_TREE_HEAD);
}

/* ---- over a real socketpair, with cpx_signer_serve in a thread ---------------------- */

typedef struct fx {
    int sfd;
    pthread_t th;
    cpx_key_t *priv;
    cpx_key_t *client;
    int serve_rc;
    int joined;
} fx_t;

static int g_lost_calls;
static void on_lost(void) { g_lost_calls++; }

static void *serve_main(void *arg)
{
    fx_t *f = arg;
    f->serve_rc = cpx_signer_serve(f->sfd, f->priv);
    return NULL;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    f->sfd = sv[1];
    assert_non_null(f->priv = cpx_key_generate());
    assert_int_equal(pthread_create(&f->th, NULL, serve_main, f), 0);
    g_lost_calls = 0;
    assert_non_null(f->client = cpx_signer_connect(sv[0], 0, 5000, on_lost));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    cpx_key_destroy(&f->client);  /* closes the channel: the server sees EOF */
    if (!f->joined) {
        pthread_join(f->th, NULL);
        assert_int_equal(f->serve_rc, CPX_OK);
    }
    close(f->sfd);
    cpx_key_destroy(&f->priv);
    free(f);
    return 0;
}

/* Verification with stock OpenSSL, from the raw public key alone. */
static int openssl_verify(const cpx_key_t *k, const uint8_t *m, size_t len, const uint8_t *sig)
{
    uint8_t raw[32];
    cpx_key_public_raw(k, raw);
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = pk && c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(c, sig, 64, m, len) == 1;
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(pk);
    return ok;
}

static void test_signs_domain_inputs(void **state)
{
    fx_t *f = *state;
    uint8_t a[32], b[32];
    cpx_key_public_raw(f->priv, a);
    cpx_key_public_raw(f->client, b);
    assert_memory_equal(a, b, 32);
    assert_true(cpx_key_has_private(f->client));
    assert_true(cpx_key_is_delegated(f->client));
    uint8_t m[256], sig[64];
    size_t len = head_msg(m, 1, 5);
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_OK);
    assert_true(openssl_verify(f->priv, m, len, sig));
    len = env_msg(m);
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_OK);
    assert_true(openssl_verify(f->priv, m, len, sig));
    m[len - 1] ^= 1;
    assert_false(openssl_verify(f->priv, m, len, sig));  /* the check can fail */
    len = batch_msg(m, 100);
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_OK);
    assert_true(openssl_verify(f->priv, m, len, sig));
    /* a delegated key can never be written out as a private key */
    char path[] = "/tmp/cpx-signer-test.XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    assert_int_equal(cpx_key_save_private(f->client, path), CPX_ERR_ARG);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_refuses_over_the_wire(void **state)
{
    fx_t *f = *state;
    uint8_t sig[64], big[300];
    memset(sig, 0, sizeof sig);
    assert_int_equal(cpx_key_sign(f->client, "arbitrary bytes", 15, sig), CPX_ERR_REFUSED);
    uint8_t zero[64] = {0};
    assert_memory_equal(sig, zero, 64);
    memset(big, 'x', sizeof big);
    assert_int_equal(cpx_key_sign(f->client, big, sizeof big, sig), CPX_ERR_TOO_LARGE);
    uint8_t m[128];
    assert_int_equal(cpx_key_sign(f->client, m, batch_msg(m, 0), sig), CPX_ERR_REFUSED);
    /* still serving after refusals */
    assert_int_equal(cpx_key_sign(f->client, m, env_msg(m), sig), CPX_OK);
    assert_int_equal(g_lost_calls, 0);
}

static void test_dead_signer_fails_every_signature(void **state)
{
    fx_t *f = *state;
    uint8_t m[128], sig[64];
    size_t len = env_msg(m);
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_OK);
    shutdown(f->sfd, SHUT_RDWR);  /* the signer's end goes away, as when it is killed */
    pthread_join(f->th, NULL);
    f->joined = 1;
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_ERR_NET);
    assert_int_equal(g_lost_calls, 1);
    assert_int_equal(cpx_key_sign(f->client, m, len, sig), CPX_ERR_NET);
    assert_int_equal(g_lost_calls, 1);  /* reported once */
}

static void test_bad_hello_is_refused(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    cpx_signer_fail_hello(sv[1], "cannot load signing key /nope");
    assert_null(cpx_signer_connect(sv[0], 0, 1000, NULL));  /* closes sv[0] */
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_null(cpx_signer_connect(sv[0], 0, 100, NULL));  /* silence: times out */
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_accepts_the_three_forms),
        cmocka_unit_test(test_policy_refuses_everything_else),
        cmocka_unit_test_setup_teardown(test_signs_domain_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_over_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_signer_fails_every_signature, setup, teardown),
        cmocka_unit_test(test_bad_hello_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
