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
#include "cpx/limits.h"

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

/* The next client frame the router reads (5 s at most); the caller frees it. */
static cpx_client_frame_t *router_read(void *router)
{
    zmq_pollitem_t it = {.socket = router, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&id, router, 0) > 0);
    assert_true(zmq_msg_recv(&body, router, 0) >= 0);
    cpx_client_frame_t *cf = NULL;
    assert_int_equal(cpx_decode_client_frame(zmq_msg_data(&body), zmq_msg_size(&body), &cf), CPX_OK);
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    return cf;
}

/* deliveries_per_frame rides on every heartbeat, the hello included, capped at 1000. */
static void test_heartbeat_deliveries_per_frame(void **state)
{
    fixture_t *f = *state;
    cpx_client_opts_t o = f->opts;
    o.deliveries_per_frame = 64;
    cpx_client_t *c = cpx_client_new(&o);
    assert_non_null(c);
    assert_int_equal(cpx_client_heartbeat(c, 5), CPX_OK);
    for (int64_t sent = 0; sent <= 5; sent += 5) {
        cpx_client_frame_t *cf = router_read(f->router);
        assert_int_equal(cf->frame_case, CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT);
        assert_int_equal(cf->heartbeat->sent_ms, sent);
        assert_int_equal(cf->heartbeat->deliveries_per_frame, 64);
        cpx_msg_free(cf);
    }
    cpx_client_destroy(&c);

    o.deliveries_per_frame = 5000;
    c = cpx_client_new(&o);
    cpx_client_frame_t *cf = router_read(f->router);
    assert_int_equal(cf->heartbeat->deliveries_per_frame, 1000);
    cpx_msg_free(cf);
    cpx_client_destroy(&c);
}

/* Many confirmations leave in DeliveryAcks frames of at most 1000 and 1 MiB, in order,
 * each one as given. */
static void test_confirm_many(void **state)
{
    fixture_t *f = *state;
    cpx_client_t *c = cpx_client_new(&f->opts);
    assert_non_null(c);
    cpx_msg_free(router_read(f->router)); /* the hello */

    enum { N = 2500 };
    cpx_client_confirmation_t *cs = calloc(N, sizeof *cs);
    uint8_t ids[N][16];
    for (size_t i = 0; i < N; i++) {
        memset(ids[i], (int)(i & 0xff), 16);
        cs[i] = (cpx_client_confirmation_t){.delivery_id = i + 1, .message_id = ids[i], .id_len = 16,
                                            .status = CPX__V1__DELIVERY_STATUS__TAKEN};
    }
    cs[1700].status = CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL;
    cs[1700].reason = "no such pupil";
    size_t sent = 99;
    assert_int_equal(cpx_client_confirm_many(c, cs, N, &sent), CPX_OK);
    assert_int_equal(sent, N);
    static const size_t want[] = {1000, 1000, 500};
    uint64_t next = 1;
    for (size_t k = 0; k < 3; k++) {
        cpx_client_frame_t *cf = router_read(f->router);
        assert_int_equal(cf->frame_case, CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS);
        assert_int_equal(cf->delivery_acks->n_acks, want[k]);
        for (size_t i = 0; i < cf->delivery_acks->n_acks; i++, next++) {
            const Cpx__V1__DeliveryAck *a = cf->delivery_acks->acks[i];
            assert_int_equal(a->delivery_id, next);
            assert_int_equal(a->message_id.len, 16);
            assert_memory_equal(a->message_id.data, ids[next - 1], 16);
            assert_int_equal(a->status, next == 1701 ? CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL
                                                     : CPX__V1__DELIVERY_STATUS__TAKEN);
            assert_string_equal(a->reason, next == 1701 ? "no such pupil" : "");
        }
        cpx_msg_free(cf);
    }

    /* long reasons: the byte limit, not the count, cuts the frames */
    size_t rl = 3000;
    char *reason = malloc(rl + 1);
    memset(reason, 'r', rl);
    reason[rl] = '\0';
    for (size_t i = 0; i < 1000; i++) {
        cs[i].status = CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL;
        cs[i].reason = reason;
    }
    assert_int_equal(cpx_client_confirm_many(c, cs, 1000, &sent), CPX_OK);
    assert_int_equal(sent, 1000);
    size_t got = 0, frames = 0;
    while (got < 1000) {
        cpx_client_frame_t *cf = router_read(f->router);
        assert_int_equal(cf->frame_case, CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS);
        assert_true(cf->delivery_acks->n_acks < 1000);
        assert_int_equal(cf->delivery_acks->acks[0]->delivery_id, got + 1);
        assert_int_equal(strlen(cf->delivery_acks->acks[0]->reason), rl);
        got += cf->delivery_acks->n_acks;
        frames++;
        cpx_msg_free(cf);
    }
    assert_int_equal(got, 1000);
    assert_int_equal(frames, 3); /* 3 MB in frames of at most 1 MiB */

    /* refused: nothing, and one confirmation larger than any frame */
    assert_int_equal(cpx_client_confirm_many(c, cs, 0, &sent), CPX_ERR_ARG);
    char *huge = malloc(CPX_MAX_FRAME_BYTES + 1);
    memset(huge, 'h', CPX_MAX_FRAME_BYTES);
    huge[CPX_MAX_FRAME_BYTES] = '\0';
    cs[0].reason = huge;
    assert_int_equal(cpx_client_confirm_many(c, cs, 2, &sent), CPX_ERR_ARG);
    assert_int_equal(sent, 0);
    free(huge);
    free(reason);
    free(cs);
    cpx_client_destroy(&c);
}

/* Each completed handshake is counted once: the first, and the one after the gateway
 * came back on the same endpoint. */
static void test_reconnected(void **state)
{
    fixture_t *f = *state;
    cpx_client_t *c = cpx_client_new(&f->opts);
    assert_non_null(c);
    cpx_msg_free(router_read(f->router));
    unsigned n = 0;
    for (int i = 0; i < 500 && !n; i++, usleep(10000))
        n = cpx_client_reconnected(c);
    assert_int_equal(n, 1);
    assert_int_equal(cpx_client_reconnected(c), 0);

    /* the gateway restarts: a new ROUTER on the same endpoint, the DEALER reconnects */
    int zero = 0, one = 1;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(f->router);
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, f->srv_sec, 40);
    int rc = -1;
    for (int i = 0; i < 100 && rc; i++, usleep(rc ? 20000 : 0))
        rc = zmq_bind(f->router, f->endpoint);
    assert_int_equal(rc, 0);
    n = 0;
    for (int i = 0; i < 500 && !n; i++, usleep(10000))
        n = cpx_client_reconnected(c);
    assert_int_equal(n, 1);
    assert_int_equal(cpx_client_heartbeat(c, 9), CPX_OK);
    cpx_client_frame_t *cf = router_read(f->router);
    assert_int_equal(cf->heartbeat->sent_ms, 9);
    cpx_msg_free(cf);
    cpx_client_destroy(&c);
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
        cmocka_unit_test_setup_teardown(test_heartbeat_deliveries_per_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirm_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnected, setup, teardown),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_encode_submit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
