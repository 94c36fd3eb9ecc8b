/* JSON form: exact output, round trips for every body kind and frame, strict input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/json.h"
#include "cpx/synth.h"

#define NOW 1780000000000LL
#define ID16 "00112233445566778899aabbccddeeff"
#define ID16B "ffeeddccbbaa99887766554433221100"
#define HASH32 ID16 ID16
#define SIG64 HASH32 HASH32

/* protobuf -> JSON -> protobuf packs to identical bytes, and JSON -> protobuf -> JSON
 * gives identical text. */
static void roundtrip(const ProtobufCMessage *m)
{
    uint8_t *a, *b;
    size_t la, lb;
    assert_int_equal(cpx_encode(m, &a, &la), CPX_OK);
    char *text = cpx_json_dumps_msg(m);
    assert_non_null(text);
    cpx_errors_t errs = {0};
    ProtobufCMessage *back = NULL;
    int rc = cpx_json_loads_msg(m->descriptor, text, strlen(text), &back, &errs);
    if (rc != CPX_OK) {
        char buf[2048];
        cpx_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "%s\n%s\n", text, buf);
    }
    assert_int_equal(rc, CPX_OK);
    assert_int_equal(cpx_encode(back, &b, &lb), CPX_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    char *text2 = cpx_json_dumps_msg(back);
    assert_string_equal(text, text2);
    free(text2);
    free(text);
    free(a);
    free(b);
    cpx_msg_free(back);
}

static void roundtrip_text(const ProtobufCMessageDescriptor *d, const char *text)
{
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    int rc = cpx_json_loads_msg(d, text, strlen(text), &m, &errs);
    if (rc != CPX_OK) {
        char buf[2048];
        cpx_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "%s\n", buf);
    }
    assert_int_equal(rc, CPX_OK);
    roundtrip(m);
    /* and it survives the wire */
    uint8_t *bytes;
    size_t len;
    assert_int_equal(cpx_encode(m, &bytes, &len), CPX_OK);
    ProtobufCMessage *dec = NULL;
    assert_int_equal(cpx_decode(d, bytes, len, CPX_MAX_FRAME_BYTES, &dec), CPX_OK);
    roundtrip(dec);
    cpx_msg_free(dec);
    free(bytes);
    cpx_msg_free(m);
}

static void test_exact_form(void **state)
{
    (void)state;
    const char *in =
        "{\"message_id\":\"" ID16 "\",\"sender\":\"CIVIL_AFFAIRS\",\"recipients\":[\"HEALTH\"],"
        "\"created_ms\":1780000000000,\"priority\":\"URGENT\",\"sensitivity\":\"NORMAL\","
        "\"body_kind\":\"BODY_DISPOSITION\",\"disposition\":{\"referral_id\":\"" ID16B "\","
        "\"action\":\"ONE_OFF_MEDICAL_AID\",\"status\":\"DISPOSITION_DONE\",\"amount_fen\":1000000,"
        "\"illness\":\"LEUKAEMIA\",\"family_economy\":\"LOW_INCOME\",\"notes\":\"已拨付\","
        "\"effective_from\":\"2026-05-28\",\"minor\":{}}}";
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    assert_int_equal(cpx_json_loads_msg(&cpx__v1__envelope__descriptor, in, strlen(in), &m, &errs),
                     CPX_OK);
    cpx_envelope_t *e = (cpx_envelope_t *)m;
    assert_int_equal(e->message_id.len, 16);
    assert_int_equal(e->message_id.data[15], 0xff);
    assert_int_equal(e->body_case, CPX__V1__ENVELOPE__BODY_DISPOSITION);
    assert_int_equal(e->disposition->amount_fen, 1000000);
    assert_int_equal(e->disposition->effective_from->day, 28);
    assert_non_null(e->disposition->minor); /* present though empty */
    char *out = cpx_json_dumps_msg(m);
    assert_string_equal(out, in); /* field order is field-number order, as written */
    free(out);
    /* zero values are omitted */
    e->priority = 0;
    e->disposition->amount_fen = 0;
    out = cpx_json_dumps_msg(m);
    assert_null(strstr(out, "priority"));
    assert_null(strstr(out, "amount_fen"));
    free(out);
    /* an enum value the schema does not know is shown as a number */
    e->priority = 77;
    out = cpx_json_dumps_msg(m);
    assert_non_null(strstr(out, "\"priority\":77"));
    free(out);
    cpx_msg_free(m);
}

static void test_roundtrip_synth(void **state)
{
    (void)state;
    cpx_synth_t *s = cpx_synth_new(3);
    for (int i = 0; i < 300; i++) {
        cpx_envelope_t *e[6] = {
            cpx_synth_discovery(s, NOW),       cpx_synth_assessment(s, NOW, NULL),
            cpx_synth_referral(s, NOW, NULL, 0), NULL,
            cpx_synth_follow_up(s, NOW),       cpx_synth_release_notice(s, NOW),
        };
        e[3] = cpx_synth_disposition(s, NOW, e[2]->message_id.data, e[2]->referral->to);
        for (int k = 0; k < 6; k++) {
            assert_non_null(e[k]);
            assert_int_equal(cpx_synth_dummy_sign(e[k]), CPX_OK);
            roundtrip(&e[k]->base);
            cpx_msg_free(e[k]);
        }
    }
    cpx_synth_destroy(&s);
}

static void test_roundtrip_every_body_and_frame(void **state)
{
    (void)state;
    static const char *envs[] = {
        "{\"message_id\":\"" ID16 "\",\"sender\":\"COURT\",\"created_ms\":1780000000000,"
        "\"priority\":\"URGENT\",\"sensitivity\":\"SEALED\",\"body_kind\":\"BODY_SEAL_ORDER\","
        "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"},{\"field\":4,\"digest\":\"" HASH32 "\"}],"
        "\"salts\":[{\"field\":1,\"salt\":\"" ID16 "\"}],"
        "\"signature\":{\"key_id\":\"0011223344556677\",\"ed25519\":\"" SIG64 "\"},"
        "\"seal_order\":{\"subject_id_number\":\"320281201201010024\",\"case_ids\":[\"JY-2026-000123\"],"
        "\"message_ids\":[\"" ID16 "\"],\"order_number\":\"(2026)苏0281刑封1号\",\"legal_basis\":\"刑事诉讼法第二百八十六条\","
        "\"ordered_on\":\"2026-05-01\"}}",
        "{\"message_id\":\"" ID16 "\",\"sender\":\"POLICE\",\"created_ms\":1780000000000,"
        "\"priority\":\"ROUTINE\",\"sensitivity\":\"SEALED\",\"body_kind\":\"BODY_SEALED_ACCESS_REQUEST\","
        "\"sealed_access_request\":{\"officer_id\":\"P-0001\",\"subject_id_number\":\"320281201201010024\","
        "\"basis\":\"CASE_HANDLING\",\"requester_case_number\":\"JY-2026-000777\",\"purpose\":\"办案需要\"}}",
        "{\"message_id\":\"" ID16 "\",\"sender\":\"COURT\",\"created_ms\":1,\"priority\":\"ROUTINE\","
        "\"sensitivity\":\"SEALED\",\"body_kind\":\"BODY_SEALED_ACCESS_DECISION\",\"sealed_access_decision\":"
        "{\"request_id\":\"" ID16 "\",\"outcome\":\"GRANTED\",\"grant_id\":\"" ID16B "\",\"expires_ms\":1780000900000,"
        "\"reads_allowed\":2,\"records\":[\"0a10\",\"\"],\"approver\":\"审判员\"}}",
        "{\"sealed_access_read\":{\"grant_id\":\"" ID16 "\",\"officer_id\":\"P-1\",\"subject_case_id\":\"JY-2026-000123\"}}",
        "{\"sealed_access_approval\":{\"request_id\":\"" ID16 "\",\"approve\":true,\"approver\":\"检察官\"}}",
        "{\"escalation\":{\"item_id\":\"" ID16 "\",\"kind\":\"ACT\",\"department\":\"EDUCATION\","
        "\"due_ms\":1780000000000,\"overdue_by_ms\":-5,\"level\":2}}",
        "{\"notice\":{\"kind\":\"DOUBLE_BENEFIT\",\"text\":\"同一未成年人重复领取补贴\",\"related\":[\"" ID16 "\",\"" ID16B "\"],\"rule\":\"no_double_benefit\"}}",
        "{\"follow_up\":{\"visit_date\":\"2024-02-29\",\"visitor\":\"顾\",\"outcome\":\"STABLE\",\"recommend_close\":true}}",
        "{\"assessment\":{}}",
        "{\"signature\":{\"key_id\":\"0011223344556677\",\"batch\":{\"index\":2,\"size\":3,"
        "\"path\":[\"" HASH32 "\",\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"}}}",
    };
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++)
        roundtrip_text(&cpx__v1__envelope__descriptor, envs[i]);

    roundtrip_text(&cpx__v1__client_frame__descriptor,
                   "{\"submit\":{\"batch\":{\"envelopes\":[{\"sender\":\"HRSS\"},{\"sender\":\"HRSS\","
                   "\"referral\":{\"to\":\"HRSS\",\"task\":\"EMPLOYMENT_SUPPORT\"}}]}}}");
    roundtrip_text(&cpx__v1__client_frame__descriptor,
                   "{\"delivery_ack\":{\"delivery_id\":\"18446744073709551615\",\"message_id\":\"" ID16 "\","
                   "\"status\":\"REFUSED_BY_LOCAL\",\"reason\":\"本地系统拒收\"}}");
    roundtrip_text(&cpx__v1__client_frame__descriptor, "{\"heartbeat\":{\"sent_ms\":5}}");
    roundtrip_text(&cpx__v1__server_frame__descriptor,
                   "{\"ack\":{\"message_id\":\"" ID16 "\",\"leaf_seq\":7,\"tree_size\":8,"
                   "\"case_id\":\"JY-2026-000001\",\"duplicate\":true}}");
    roundtrip_text(&cpx__v1__server_frame__descriptor,
                   "{\"nack\":{\"message_id\":\"" ID16 "\",\"code\":\"INVALID\",\"errors\":[{\"path\":"
                   "\"discovery_report.minor.id_number\",\"rule\":\"check_digit\",\"message\":\"x\"}],"
                   "\"retryable\":false,\"retry_after_ms\":0}}");
    roundtrip_text(&cpx__v1__server_frame__descriptor,
                   "{\"deliver\":{\"delivery_id\":1,\"envelope\":{\"sender\":\"POLICE\"},\"withheld\":[8,5],"
                   "\"view_profile\":\"police\",\"attempt\":3,\"leaf_seq\":9}}");
    roundtrip_text(&cpx__v1__audit_leaf__descriptor,
                   "{\"seq\":1,\"event\":\"ACCEPTED\",\"sender\":\"POLICE\",\"batch_path\":[\"" HASH32 "\"],"
                   "\"key\":\"" HASH32 "\"}");
}

/* The JSON form of a uint64 above 2^63-1 is a decimal string; both read back. */
static void test_big_uint64(void **state)
{
    (void)state;
    const char *in = "{\"delivery_ack\":{\"delivery_id\":\"18446744073709551615\"}}";
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    assert_int_equal(cpx_json_loads_msg(&cpx__v1__client_frame__descriptor, in, strlen(in), &m, &errs),
                     CPX_OK);
    assert_true(((cpx_client_frame_t *)m)->delivery_ack->delivery_id == UINT64_MAX);
    char *out = cpx_json_dumps_msg(m);
    assert_string_equal(out, in);
    free(out);
    cpx_msg_free(m);
    const char *over = "{\"delivery_ack\":{\"delivery_id\":\"18446744073709551616\"}}";
    assert_int_equal(cpx_json_loads_msg(&cpx__v1__client_frame__descriptor, over, strlen(over), &m, &errs),
                     CPX_ERR_INVALID);
}

static void expect_refused(const char *text, const char *path, const char *rule)
{
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = (void *)1;
    int rc = cpx_json_loads_msg(&cpx__v1__envelope__descriptor, text, strlen(text), &m, &errs);
    assert_true(rc == CPX_ERR_INVALID || rc == CPX_ERR_DECODE);
    assert_null(m);
    for (size_t i = 0; i < errs.count; i++)
        if (!strcmp(errs.items[i].path, path) && !strcmp(errs.items[i].rule, rule))
            return;
    char buf[2048];
    cpx_errors_format(&errs, buf, sizeof buf);
    fprintf(stderr, "wanted %s: %s, got: %s\n", path, rule, buf);
    fail();
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("{\"sendr\":\"POLICE\"}", "sendr", "unknown_key");
    expect_refused("{\"sender\":5}", "sender", "type");
    expect_refused("{\"sender\":{\"a\":1}}", "sender", "type");
    expect_refused("{\"created_ms\":\"5\"}", "created_ms", "type");
    expect_refused("{\"created_ms\":1.5}", "created_ms", "type");
    expect_refused("{\"priority\":\"SOON\"}", "priority", "enum_name");
    expect_refused("{\"priority\":3}", "priority", "type");
    expect_refused("{\"message_id\":\"abc\"}", "message_id", "hex");
    expect_refused("{\"message_id\":\"zz\"}", "message_id", "hex");
    expect_refused("{\"follow_up\":{\"visit_date\":\"2023-02-30\"}}", "follow_up.visit_date", "date");
    expect_refused("{\"follow_up\":{\"visit_date\":\"2023-2-3\"}}", "follow_up.visit_date", "date");
    expect_refused("{\"follow_up\":{\"visit_date\":{\"year\":2023,\"month\":2,\"day\":3}}}",
                   "follow_up.visit_date", "type");
    expect_refused("{\"referral\":{},\"notice\":{}}", "notice", "oneof");
    expect_refused("{\"discovery_report\":{\"categories\":[{\"category\":\"HARMED\"},"
                   "{\"father\":\"NOBODY\"}]}}",
                   "discovery_report.categories[1].father", "enum_name");
    expect_refused("{\"discovery_report\":{\"categories\":{}}}", "discovery_report.categories", "type");
    expect_refused("{\"discovery_report\":{\"immediate_danger\":1}}",
                   "discovery_report.immediate_danger", "type");
    expect_refused("{\"discovery_report\":{\"observation\":{\"what\":{\"deeper\":{}}}}}",
                   "discovery_report.observation.what", "type");
    expect_refused("{\"discovery_report\":[]}", "discovery_report", "type");
    expect_refused("{\"escalation\":{\"level\":-1}}", "escalation.level", "range");
    expect_refused("{\"escalation\":{\"level\":4294967296}}", "escalation.level", "range");
    expect_refused("{\"sender\":\"A\\u0000B\"}", "", "json_syntax");
    expect_refused("{\"sender\":", "", "json_syntax");
    expect_refused("{\"sender\":\"A\",\"sender\":\"B\"}", "", "json_syntax");
    expect_refused("[]", "", "type");

    /* arrays and strings over the limits */
    size_t cap = 70 * 12 + 64;
    char *big = malloc(cap);
    strcpy(big, "{\"recipients\":[");
    for (int i = 0; i < 65; i++)
        strcat(big, i ? ",\"POLICE\"" : "\"POLICE\"");
    strcat(big, "]}");
    expect_refused(big, "recipients", "too_many");
    free(big);
    big = malloc(CPX_MAX_LONG_TEXT + 64);
    strcpy(big, "{\"sender\":\"");
    size_t n = strlen(big);
    memset(big + n, 'A', CPX_MAX_LONG_TEXT + 1);
    strcpy(big + n + CPX_MAX_LONG_TEXT + 1, "\"}");
    expect_refused(big, "sender", "too_long");
    free(big);

    /* every error is reported, not only the first */
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    const char *many = "{\"sender\":1,\"priority\":\"X\",\"bogus\":true,\"referral\":{\"task\":\"Y\"}}";
    assert_int_equal(cpx_json_loads_msg(&cpx__v1__envelope__descriptor, many, strlen(many), &m, &errs),
                     CPX_ERR_INVALID);
    assert_int_equal(errs.count, 4);
    assert_string_equal(errs.items[3].path, "referral.task");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_form),
        cmocka_unit_test(test_roundtrip_synth),
        cmocka_unit_test(test_roundtrip_every_body_and_frame),
        cmocka_unit_test(test_big_uint64),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
