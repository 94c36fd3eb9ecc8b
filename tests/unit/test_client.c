/* Client: real CURVE over loopback against an in-test ROUTER; refuses a wrong server key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "cpx/client.h"
#include "cpx/err.h"

typedef struct fixture {
    void *ctx, *router;
    char endpoint[64];
    char srv_pub[41], srv_sec[41];
    cpx_client_opts_t opts;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_int_equal(zmq_curve_keypair(f->srv_pub, f->srv_sec), 0);
    f->ctx = zmq_ctx_new();
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    int one = 1;
    zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, f->srv_sec, 40);
    assert_int_equal(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof f->endpoint;
    zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &len);
    f->opts.endpoint = f->endpoint;
    memcpy(f->opts.server_pub, f->srv_pub, 41);
    assert_int_equal(zmq_curve_keypair(f->opts.public_key, f->opts.secret_key), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int zero = 0;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    free(f);
    return 0;
}

static void test_heartbeat_round_trip(void **state)
{
    fixture_t *f = *state;
    cpx_client_t *c = cpx_client_new(&f->opts);
    assert_non_null(c);
    assert_int_equal(cpx_client_heartbeat(c, 42), CPX_OK);

    zmq_pollitem_t it = {.socket = f->router, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&id, f->router, 0) > 0);
    assert_true(zmq_msg_recv(&body, f->router, 0) >= 0);
    cpx_client_frame_t *cf = NULL;
    assert_int_equal(cpx_decode_client_frame(zmq_msg_data(&body), zmq_msg_size(&body), &cf), CPX_OK);
    assert_int_equal(cf->frame_case, CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT);
    assert_int_equal(cf->heartbeat->sent_ms, 0); /* the hello */
    cpx_msg_free(cf);
    zmq_msg_close(&body);
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&id, f->router, 0) > 0);
    assert_true(zmq_msg_recv(&body, f->router, 0) >= 0);
    assert_int_equal(cpx_decode_client_frame(zmq_msg_data(&body), zmq_msg_size(&body), &cf), CPX_OK);
    assert_int_equal(cf->heartbeat->sent_ms, 42);
    cpx_msg_free(cf);

    /* answer with a ServerFrame Ack */
    Cpx__V1__Ack ack = CPX__V1__ACK__INIT;
    ack.leaf_seq = 7;
    ack.case_id = "JY-2026-000001";
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_ACK;
    sf.ack = &ack;
    uint8_t buf[128];
    size_t n;
    assert_int_equal(cpx_encode_into(&sf, buf, sizeof buf, &n), CPX_OK);
    zmq_msg_send(&id, f->router, ZMQ_SNDMORE);
    zmq_send(f->router, buf, n, 0);
    zmq_msg_close(&body);

    cpx_server_frame_t *got = NULL;
    assert_int_equal(cpx_client_recv(c, 5000, &got), CPX_OK);
    assert_int_equal(got->frame_case, CPX__V1__SERVER_FRAME__FRAME_ACK);
    assert_int_equal(got->ack->leaf_seq, 7);
    assert_string_equal(got->ack->case_id, "JY-2026-000001");
    cpx_msg_free(got);
    assert_int_equal(cpx_client_recv(c, 50, &got), CPX_ERR_TIMEOUT);
    cpx_client_destroy(&c);
    assert_null(c);
    cpx_client_destroy(&c); /* harmless twice */
}

/* A client holding the wrong server key must never reach the server. */
static void test_wrong_server_key_never_connects(void **state)
{
    fixture_t *f = *state;
    cpx_client_opts_t o = f->opts;
    char other_sec[41];
    assert_int_equal(zmq_curve_keypair(o.server_pub, other_sec), 0);
    o.send_timeout_ms = 200;
    cpx_client_t *c = cpx_client_new(&o);
    assert_non_null(c);
    cpx_client_heartbeat(c, 1);
    zmq_pollitem_t it = {.socket = f->router, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 700), 0);
    cpx_client_destroy(&c);
}

/* Encodes envs as cpx_client_encode_submit does and decodes the frame back: a Submit of
 * the expected content. Caller frees. */
static cpx_client_frame_t *submit_round_trip(cpx_envelope_t *const *envs, size_t n, unsigned flags,
                                             int content_case)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    cpx_client_frame_t *f = NULL;
    assert_int_equal(cpx_client_encode_submit(envs, n, flags, &buf, &len), CPX_OK);
    assert_int_equal(cpx_decode_client_frame(buf, len, &f), CPX_OK);
    free(buf);
    assert_int_equal(f->frame_case, CPX__V1__CLIENT_FRAME__FRAME_SUBMIT);
    assert_int_equal(f->submit->content_case, content_case);
    return f;
}

/* Submit frames for callers that keep them: a single envelope, or a Batch (even of one,
 * as batch-signed envelopes travel); anything else refused. */
static void test_encode_submit(void **state)
{
    (void)state;
    cpx_envelope_t a = CPX__V1__ENVELOPE__INIT, b = CPX__V1__ENVELOPE__INIT;
    a.sender = "POLICE";
    b.sender = "HEALTH";
    cpx_envelope_t *two[2] = {&a, &b};

    cpx_client_frame_t *f = submit_round_trip(two, 1, 0, CPX__V1__SUBMIT__CONTENT_ENVELOPE);
    assert_string_equal(f->submit->envelope->sender, "POLICE");
    assert_false(f->submit->grouped_acks);
    cpx_msg_free(f);

    f = submit_round_trip(two, 2, CPX_SUBMIT_BATCH, CPX__V1__SUBMIT__CONTENT_BATCH);
    assert_int_equal(f->submit->batch->n_envelopes, 2);
    assert_string_equal(f->submit->batch->envelopes[1]->sender, "HEALTH");
    assert_false(f->submit->grouped_acks);
    cpx_msg_free(f);

    f = submit_round_trip(two, 1, CPX_SUBMIT_BATCH | CPX_SUBMIT_GROUPED_ACKS,
                          CPX__V1__SUBMIT__CONTENT_BATCH);
    assert_int_equal(f->submit->batch->n_envelopes, 1);
    assert_true(f->submit->grouped_acks);
    cpx_msg_free(f);

    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(cpx_client_encode_submit(two, 2, 0, &buf, &len), CPX_ERR_ARG);
    assert_int_equal(cpx_client_encode_submit(two, 0, CPX_SUBMIT_BATCH, &buf, &len), CPX_ERR_ARG);
    assert_int_equal(cpx_client_encode_submit(NULL, 1, 0, &buf, &len), CPX_ERR_ARG);
    assert_int_equal(cpx_client_encode_submit(two, 1, 4u, &buf, &len), CPX_ERR_ARG);
    assert_null(buf);
}

static void test_key_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpx-client-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pub[41], sec[41], path[256];
    zmq_curve_keypair(pub, sec);
    snprintf(path, sizeof path, "%s/k.pub", dir);
    FILE *fp = fopen(path, "w");
    fprintf(fp, "  %s\n", pub);
    fclose(fp);
    char out[41];
    assert_int_equal(cpx_client_read_z85(path, out), CPX_OK);
    assert_string_equal(out, pub);
    fp = fopen(path, "w");
    fprintf(fp, "too-short\n");
    fclose(fp);
    assert_int_equal(cpx_client_read_z85(path, out), CPX_ERR_DECODE);
    unlink(path);
    snprintf(path, sizeof path, "%s/missing.pub", dir);
    assert_int_equal(cpx_client_read_z85(path, out), CPX_ERR_IO);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_heartbeat_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_server_key_never_connects, setup, teardown),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_encode_submit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
