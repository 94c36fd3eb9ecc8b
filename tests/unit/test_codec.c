/* Codec: limits checked before unpack, bounded decode, round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/limits.h"

static void test_roundtrip_envelope(void **state)
{
    (void)state;
    Cpx__V1__Envelope env = CPX__V1__ENVELOPE__INIT;
    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    env.message_id.data = id;
    env.message_id.len = 16;
    env.sender = "CIVIL_AFFAIRS";
    env.created_ms = 1764370000000;
    env.priority = CPX__V1__PRIORITY__URGENT;
    env.body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
    env.referral = &ref;
    ref.to = "WOMENS_FED";
    ref.task = CPX__V1__TASK__PSYCHOLOGICAL_CARE;
    uint8_t *buf;
    size_t len;
    assert_int_equal(cpx_encode(&env, &buf, &len), CPX_OK);
    cpx_envelope_t *out = NULL;
    assert_int_equal(cpx_decode_envelope(buf, len, &out), CPX_OK);
    assert_string_equal(out->sender, "CIVIL_AFFAIRS");
    assert_int_equal(out->body_case, CPX__V1__ENVELOPE__BODY_REFERRAL);
    assert_string_equal(out->referral->to, "WOMENS_FED");
    assert_memory_equal(out->message_id.data, id, 16);
    assert_string_equal(cpx_body_kind_name(out->body_case), "referral");
    assert_ptr_equal(cpx_envelope_body(out), &out->referral->base);
    cpx_msg_free(out);
    free(buf);
}

static void test_refuses_oversize_before_unpack(void **state)
{
    (void)state;
    size_t len = CPX_MAX_ENVELOPE_BYTES + 1;
    uint8_t *buf = calloc(1, len);
    cpx_envelope_t *out = (void *)1;
    assert_int_equal(cpx_decode_envelope(buf, len, &out), CPX_ERR_TOO_LARGE);
    assert_null(out);
    free(buf);
}

static void test_refuses_garbage(void **state)
{
    (void)state;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cpx_envelope_t *out = NULL;
    assert_int_equal(cpx_decode_envelope(junk, sizeof junk, &out), CPX_ERR_DECODE);
    assert_null(out);
    /* a length-delimited field claiming more bytes than present */
    const uint8_t trunc[] = {0x12, 0x7f, 'A'};
    assert_int_equal(cpx_decode_envelope(trunc, sizeof trunc, &out), CPX_ERR_DECODE);
}

/* Many tiny repeated sub-messages: each costs a full struct on the heap, so the
 * memory budget must stop the decode rather than the machine. */
static void test_memory_budget(void **state)
{
    (void)state;
    /* Batch{ repeated Envelope = 1 } with empty envelopes: 2 bytes each on the wire,
     * sizeof(Envelope) (~200 bytes) each in memory. */
    size_t n = CPX_MAX_FRAME_BYTES / 2;
    uint8_t *buf = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = 0x0a;
        buf[2 * i + 1] = 0x00;
    }
    ProtobufCMessage *out = NULL;
    int rc = cpx_decode(&cpx__v1__batch__descriptor, buf, n * 2, CPX_MAX_FRAME_BYTES, &out);
    assert_int_equal(rc, CPX_ERR_DECODE);
    assert_null(out);
    /* a few of them decode fine */
    assert_int_equal(cpx_decode(&cpx__v1__batch__descriptor, buf, 20, CPX_MAX_FRAME_BYTES, &out),
                     CPX_OK);
    assert_int_equal(((Cpx__V1__Batch *)out)->n_envelopes, 10);
    cpx_msg_free(out);
    free(buf);
}

/* The arena decode gives the same message as the plain one (re-encoded byte for byte),
 * across block boundaries, and refuses exactly what cpx_decode refuses. */
static void test_arena_decode(void **state)
{
    (void)state;
    /* a batch of 300 referrals: far more allocations than the first block holds */
    Cpx__V1__Envelope envs[300], *ptrs[300];
    Cpx__V1__Referral refs[300];
    uint8_t ids[300][16];
    for (size_t i = 0; i < 300; i++) {
        Cpx__V1__Envelope e = CPX__V1__ENVELOPE__INIT;
        Cpx__V1__Referral r = CPX__V1__REFERRAL__INIT;
        envs[i] = e;
        refs[i] = r;
        memset(ids[i], (int)i, 16);
        envs[i].message_id = (ProtobufCBinaryData){16, ids[i]};
        envs[i].sender = "CIVIL_AFFAIRS";
        envs[i].body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
        envs[i].referral = &refs[i];
        refs[i].to = i % 2 ? "WOMENS_FED" : "EDUCATION";
        ptrs[i] = &envs[i];
    }
    Cpx__V1__Batch b = CPX__V1__BATCH__INIT;
    b.n_envelopes = 300;
    b.envelopes = ptrs;
    uint8_t *buf, *again;
    size_t len, len2;
    assert_int_equal(cpx_encode(&b, &buf, &len), CPX_OK);
    cpx_arena_t *arena = NULL;
    ProtobufCMessage *m = NULL;
    assert_int_equal(cpx_decode_in_arena(&cpx__v1__batch__descriptor, buf, len, CPX_MAX_FRAME_BYTES,
                                         &arena, &m), CPX_OK);
    assert_non_null(arena);
    Cpx__V1__Batch *out = (Cpx__V1__Batch *)m;
    assert_int_equal(out->n_envelopes, 300);
    assert_string_equal(out->envelopes[299]->referral->to, "WOMENS_FED");
    assert_memory_equal(out->envelopes[17]->message_id.data, ids[17], 16);
    assert_int_equal((uintptr_t)out->envelopes[5] % 16, 0);  /* aligned for any field */
    assert_int_equal(cpx_encode(m, &again, &len2), CPX_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(again, buf, len);
    cpx_arena_free(&arena);
    assert_null(arena);
    cpx_arena_free(&arena);  /* a second free is harmless */
    cpx_arena_free(NULL);
    free(again);
    free(buf);

    /* refusals: oversize before unpack, garbage, and the memory budget */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(cpx_decode_in_arena(&cpx__v1__envelope__descriptor, junk, sizeof junk,
                                         CPX_MAX_ENVELOPE_BYTES, &arena, &m), CPX_ERR_DECODE);
    assert_null(arena);
    assert_null(m);
    assert_int_equal(cpx_decode_in_arena(&cpx__v1__envelope__descriptor, junk, sizeof junk, 4,
                                         &arena, &m), CPX_ERR_TOO_LARGE);
    size_t n = CPX_MAX_FRAME_BYTES / 2;
    uint8_t *empties = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        empties[2 * i] = 0x0a;
        empties[2 * i + 1] = 0x00;
    }
    assert_int_equal(cpx_decode_in_arena(&cpx__v1__batch__descriptor, empties, n * 2,
                                         CPX_MAX_FRAME_BYTES, &arena, &m), CPX_ERR_DECODE);
    assert_null(arena);
    assert_null(m);
    free(empties);
}

static void test_encode_into_bounds(void **state)
{
    (void)state;
    Cpx__V1__Heartbeat hb = CPX__V1__HEARTBEAT__INIT;
    hb.sent_ms = 1234567;
    uint8_t small[2], big[32];
    size_t len = 0;
    assert_int_equal(cpx_encode_into(&hb, small, sizeof small, &len), CPX_ERR_TOO_LARGE);
    assert_int_equal(cpx_encode_into(&hb, big, sizeof big, &len), CPX_OK);
    assert_true(len > 2);
}

/* An envelope with a distinct sender and id, encoded standalone into *out. */
static cpx_envelope_t *span_env(unsigned i, uint8_t id[16])
{
    static char senders[4][16] = {"POLICE", "HEALTH", "EDUCATION", "CIVIL_AFFAIRS"};
    cpx_envelope_t *e = calloc(1, sizeof *e);
    cpx__v1__envelope__init(e);
    e->sender = senders[i % 4];
    memset(id, (int)i + 1, 16);
    e->message_id = (ProtobufCBinaryData){16, id};
    e->created_ms = 1700000000000 + i;
    return e;
}

/* Builds ClientFrame{submit{...}} by hand: payload is the Submit's bytes. */
static size_t frame_of(const uint8_t *submit, size_t n, uint8_t *out)
{
    out[0] = 0x0a;
    size_t k = 1, v = n;
    while (v >= 0x80) {
        out[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[k++] = (uint8_t)v;
    memcpy(out + k, submit, n);
    return k + n;
}

static void test_submit_envelope_spans(void **state)
{
    (void)state;
    uint8_t ids[3][16];
    cpx_envelope_t *e[3];
    for (unsigned i = 0; i < 3; i++)
        e[i] = span_env(i, ids[i]);
    Cpx__V1__Batch b = CPX__V1__BATCH__INIT;
    b.envelopes = e;
    b.n_envelopes = 3;
    Cpx__V1__Submit sub = CPX__V1__SUBMIT__INIT;
    sub.content_case = CPX__V1__SUBMIT__CONTENT_BATCH;
    sub.batch = &b;
    sub.grouped_acks = 1;
    cpx_client_frame_t f = CPX__V1__CLIENT_FRAME__INIT;
    f.frame_case = CPX__V1__CLIENT_FRAME__FRAME_SUBMIT;
    f.submit = &sub;
    uint8_t buf[4096], one[512];
    size_t len, off[4], lens[4];
    assert_int_equal(cpx_encode_into(&f, buf, sizeof buf, &len), CPX_OK);
    assert_int_equal(cpx_submit_envelope_spans(buf, len, 3, off, lens), CPX_OK);
    for (unsigned i = 0; i < 3; i++) {  /* each span is the envelope's own encoding */
        size_t ol;
        assert_int_equal(cpx_encode_into(e[i], one, sizeof one, &ol), CPX_OK);
        assert_int_equal(lens[i], ol);
        assert_memory_equal(buf + off[i], one, ol);
    }
    /* the wrong count, a cut frame, a frame twice over */
    assert_int_equal(cpx_submit_envelope_spans(buf, len, 2, off, lens), CPX_ERR_DECODE);
    assert_int_equal(cpx_submit_envelope_spans(buf, len, 4, off, lens), CPX_ERR_DECODE);
    assert_int_equal(cpx_submit_envelope_spans(buf, len - 1, 3, off, lens), CPX_ERR_DECODE);
    uint8_t twice[8192];
    memcpy(twice, buf, len);
    memcpy(twice + len, buf, len);
    assert_int_equal(cpx_submit_envelope_spans(twice, 2 * len, 3, off, lens), CPX_ERR_DECODE);
    assert_int_equal(cpx_submit_envelope_spans(NULL, 0, 1, off, lens), CPX_ERR_DECODE);

    /* a single envelope */
    sub.content_case = CPX__V1__SUBMIT__CONTENT_ENVELOPE;
    sub.envelope = e[1];
    sub.grouped_acks = 0;
    assert_int_equal(cpx_encode_into(&f, buf, sizeof buf, &len), CPX_OK);
    assert_int_equal(cpx_submit_envelope_spans(buf, len, 1, off, lens), CPX_OK);
    size_t ol;
    assert_int_equal(cpx_encode_into(e[1], one, sizeof one, &ol), CPX_OK);
    assert_int_equal(lens[0], ol);
    assert_memory_equal(buf + off[0], one, ol);

    /* Submit shapes that decode but are not plain: content twice (envelope then batch),
     * an unknown field, grouped_acks as a length-delimited field */
    uint8_t s[1024], fr[1100];
    size_t sl = 0;
    s[sl++] = 0x0a;
    s[sl++] = (uint8_t)ol;
    memcpy(s + sl, one, ol);
    sl += ol;
    size_t fl = frame_of(s, sl, fr);
    assert_int_equal(cpx_submit_envelope_spans(fr, fl, 1, off, lens), CPX_OK);
    uint8_t s2[1100];
    memcpy(s2, s, sl);
    s2[sl] = 0x12;  /* batch {} after the envelope */
    s2[sl + 1] = 0;
    fl = frame_of(s2, sl + 2, fr);
    assert_int_equal(cpx_submit_envelope_spans(fr, fl, 1, off, lens), CPX_ERR_DECODE);
    s2[sl] = 0x20;  /* field 4, varint */
    s2[sl + 1] = 1;
    fl = frame_of(s2, sl + 2, fr);
    assert_int_equal(cpx_submit_envelope_spans(fr, fl, 1, off, lens), CPX_ERR_DECODE);
    s2[sl] = 0x1a;  /* field 3 (grouped_acks) length-delimited */
    s2[sl + 1] = 0;
    fl = frame_of(s2, sl + 2, fr);
    assert_int_equal(cpx_submit_envelope_spans(fr, fl, 1, off, lens), CPX_ERR_DECODE);
    s2[sl] = 0x18;  /* field 3 as a varint: the plain shape */
    s2[sl + 1] = 1;
    fl = frame_of(s2, sl + 2, fr);
    assert_int_equal(cpx_submit_envelope_spans(fr, fl, 1, off, lens), CPX_OK);
    /* a heartbeat frame is not a Submit */
    uint8_t hb[2] = {0x1a, 0};
    assert_int_equal(cpx_submit_envelope_spans(hb, 2, 1, off, lens), CPX_ERR_DECODE);
    for (unsigned i = 0; i < 3; i++)
        free(e[i]);
}

/* Known encodings (protobuf's own examples: 1, 150, 300) and the extremes. */
static void test_varints(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t n;
        uint8_t b[10];
    } kat[] = {
        {0, 1, {0x00}},
        {1, 1, {0x01}},
        {127, 1, {0x7f}},
        {128, 2, {0x80, 0x01}},
        {150, 2, {0x96, 0x01}},
        {300, 2, {0xac, 0x02}},
        {16384, 3, {0x80, 0x80, 0x01}},
        {UINT64_MAX, 10, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint8_t out[12];
        memset(out, 0xee, sizeof out);
        assert_int_equal(cpx_varint_len(kat[i].v), kat[i].n);
        assert_int_equal(cpx_varint_put(out, kat[i].v), kat[i].n);
        assert_memory_equal(out, kat[i].b, kat[i].n);
        assert_int_equal(out[kat[i].n], 0xee);  /* nothing written past it */
        size_t pos = 0;
        uint64_t back = 1;
        assert_int_equal(cpx_varint_get(out, sizeof out, &pos, &back), 0);
        assert_int_equal(pos, kat[i].n);
        assert_true(back == kat[i].v);
        pos = 0;  /* cut one byte short */
        assert_int_equal(cpx_varint_get(out, kat[i].n - 1, &pos, &back), -1);
    }
    /* eleven bytes of continuation: not a varint */
    uint8_t long_one[12];
    memset(long_one, 0x80, sizeof long_one);
    size_t pos = 0;
    uint64_t v;
    assert_int_equal(cpx_varint_get(long_one, sizeof long_one, &pos, &v), -1);
}

/* cpx_wire_field: field 1 = varint 150, field 2 = "ab", field 3 fixed64, field 4 fixed32,
 * in that order; then the refusals. */
static void test_wire_field(void **state)
{
    (void)state;
    const uint8_t msg[] = {0x08, 0x96, 0x01, 0x12, 0x02, 'a', 'b',
                           0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4};
    size_t pos = 0, payload = 0;
    uint32_t field;
    unsigned wire;
    uint64_t v = 0;
    assert_int_equal(cpx_wire_field(msg, sizeof msg, &pos, &field, &wire, &v, &payload), 0);
    assert_true(field == 1 && wire == 0 && v == 150 && pos == 3);
    assert_int_equal(cpx_wire_field(msg, sizeof msg, &pos, &field, &wire, &v, &payload), 0);
    assert_true(field == 2 && wire == 2 && v == 2 && payload == 5 && pos == 7);
    assert_memory_equal(msg + payload, "ab", 2);
    assert_int_equal(cpx_wire_field(msg, sizeof msg, &pos, &field, &wire, &v, &payload), 0);
    assert_true(field == 3 && wire == 1 && pos == 16);
    assert_int_equal(cpx_wire_field(msg, sizeof msg, &pos, &field, &wire, &v, &payload), 0);
    assert_true(field == 4 && wire == 5 && pos == sizeof msg);

    const struct { uint8_t b[4]; size_t n; } bad[] = {
        {{0x00, 0x01}, 2},        /* field 0 */
        {{0x0b, 0x0c}, 2},        /* a group (wire type 3) */
        {{0x0e, 0x01}, 2},        /* wire type 6 */
        {{0x12, 0x05, 'a'}, 3},   /* length past the end */
        {{0x19, 1, 2}, 3},        /* fixed64 past the end */
        {{0x25, 1}, 2},           /* fixed32 past the end */
        {{0x08}, 1},              /* varint missing */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pos = 0;
        assert_int_equal(cpx_wire_field(bad[i].b, bad[i].n, &pos, &field, &wire, &v, &payload), -1);
    }
}

static void test_strerror_and_errors(void **state)
{
    (void)state;
    assert_string_equal(cpx_strerror(CPX_OK), "ok");
    assert_string_equal(cpx_strerror(-9999), "unknown error");
    cpx_errors_t errs = {0};
    for (int i = 0; i < 40; i++)
        cpx_errors_add(&errs, "a.b", "rule", "n=%d", i);
    assert_int_equal(errs.count, CPX_MAX_FIELD_ERRORS);
    assert_true(errs.truncated);
    char buf[64];
    cpx_errors_format(&errs, buf, sizeof buf);
    assert_true(strncmp(buf, "a.b: rule: n=0; ", 16) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_envelope),
        cmocka_unit_test(test_refuses_oversize_before_unpack),
        cmocka_unit_test(test_refuses_garbage),
        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_arena_decode),
        cmocka_unit_test(test_encode_into_bounds),
        cmocka_unit_test(test_submit_envelope_spans),
        cmocka_unit_test(test_varints),
        cmocka_unit_test(test_wire_field),
        cmocka_unit_test(test_strerror_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
