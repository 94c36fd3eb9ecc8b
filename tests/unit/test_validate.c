/* Validation: every rule has an input that passes and one that fails with the right
 * path and rule name. Fixtures are written in the JSON form and mutated as text or
 * as structs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/idnum.h"
#include "cpx/json.h"
#include "cpx/validate.h"

#define NOW 1780000000000LL /* 2026-05-28T20:26:40Z */
#define ID16 "00112233445566778899aabbccddeeff"
#define HASH32 ID16 ID16
#define SIG64 HASH32 HASH32
#define SIG "\"signature\":{\"key_id\":\"0011223344556677\",\"ed25519\":\"" SIG64 "\"}"
#define HEAD(kind) "{\"message_id\":\"" ID16 "\",\"sender\":\"CIVIL_AFFAIRS\",\"created_ms\":1779999940000," \
    "\"priority\":\"URGENT\",\"sensitivity\":\"NORMAL\",\"body_kind\":\"BODY_" kind "\"," SIG ","

static const char *discovery =
    "{\"message_id\":\"" ID16 "\",\"sender\":\"EDUCATION\",\"created_ms\":1779999940000,"
    "\"priority\":\"URGENT\",\"sensitivity\":\"NORMAL\",\"body_kind\":\"BODY_DISCOVERY_REPORT\"," SIG ","
    "\"discovery_report\":{\"reporter\":{\"role\":\"TEACHER\",\"duty_to_report\":true,\"name\":\"王老师\"},"
    "\"channel\":\"SCHOOL\",\"minor\":{\"id_number\":\"320281201506071231\",\"name\":\"张三\",\"sex\":\"MALE\","
    "\"birth_date\":\"2015-06-07\",\"town\":\"TOWN_HUASHI\",\"village\":\"华西村\"},"
    "\"categories\":[{\"category\":\"GUARDIANSHIP_MISSING\",\"father\":\"DETAINED\",\"mother\":\"MISSING\"},"
    "{\"category\":\"HARMED\",\"harm_types\":[\"ABUSE\"]}],"
    "\"observation\":{\"what\":\"孩子身上有伤\",\"observed_ms\":1779996400000}}}";

/* text with the first occurrence of `from` replaced by `to` (NULL from: text as is) */
static char *edit(const char *text, const char *from, const char *to)
{
    const char *at = from ? strstr(text, from) : NULL;
    if (from && !at) {
        fprintf(stderr, "fixture has no '%s'\n", from);
        fail();
    }
    size_t n = strlen(text) + (to ? strlen(to) : 0) + 1;
    char *out = malloc(n);
    if (!at) {
        strcpy(out, text);
        return out;
    }
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static ProtobufCMessage *load_as(const ProtobufCMessageDescriptor *d, const char *text)
{
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    int rc = cpx_json_loads_msg(d, text, strlen(text), &m, &errs);
    if (rc != CPX_OK) {
        char buf[2048];
        cpx_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "fixture does not load: %s\n", buf);
    }
    assert_int_equal(rc, CPX_OK);
    return m;
}

static cpx_envelope_t *load(const char *text)
{
    return (cpx_envelope_t *)load_as(&cpx__v1__envelope__descriptor, text);
}

static cpx_validate_opts_t opts_now = {.now_ms = NOW};

static void dump(const cpx_errors_t *errs)
{
    char buf[4096];
    cpx_errors_format(errs, buf, sizeof buf);
    fprintf(stderr, "  errors: %s\n", buf);
}

static void env_ok(const cpx_envelope_t *e, const cpx_validate_opts_t *o)
{
    cpx_errors_t errs = {0};
    int rc = cpx_validate_envelope(e, o ? o : &opts_now, &errs);
    if (rc != CPX_OK)
        dump(&errs);
    assert_int_equal(rc, CPX_OK);
    assert_int_equal(errs.count, 0);
}

static void env_err(const cpx_envelope_t *e, const cpx_validate_opts_t *o, const char *path,
                    const char *rule)
{
    cpx_errors_t errs = {0};
    assert_int_equal(cpx_validate_envelope(e, o ? o : &opts_now, &errs), CPX_ERR_INVALID);
    for (size_t i = 0; i < errs.count; i++)
        if (!strcmp(errs.items[i].path, path) && !strcmp(errs.items[i].rule, rule)) {
            assert_true(errs.items[i].message[0] != '\0');
            return;
        }
    fprintf(stderr, "wanted %s: %s\n", path, rule);
    dump(&errs);
    fail();
}

/* base with one text edit must pass */
static void ok_with(const char *base, const char *from, const char *to)
{
    char *t = edit(base, from, to);
    cpx_envelope_t *e = load(t);
    env_ok(e, NULL);
    cpx_msg_free(e);
    free(t);
}

/* base with one text edit must fail with path: rule */
static void bad_with(const char *base, const char *from, const char *to, const char *path,
                     const char *rule)
{
    char *t = edit(base, from, to);
    cpx_envelope_t *e = load(t);
    env_err(e, NULL, path, rule);
    cpx_msg_free(e);
    free(t);
}

#define DR "discovery_report."

static void test_envelope_rules(void **state)
{
    (void)state;
    ok_with(discovery, NULL, NULL);
    bad_with(discovery, "\"message_id\":\"" ID16 "\"", "\"message_id\":\"0011\"", "message_id", "length");
    bad_with(discovery, "\"message_id\":\"" ID16 "\",", "", "message_id", "required");
    bad_with(discovery, "\"sender\":\"EDUCATION\"", "\"sender\":\"education\"", "sender", "dept_code");
    bad_with(discovery, "\"sender\":\"EDUCATION\"", "\"sender\":\"E\"", "sender", "dept_code");
    bad_with(discovery, "\"sender\":\"EDUCATION\",", "", "sender", "required");
    ok_with(discovery, "\"created_ms\"", "\"recipients\":[\"POLICE\",\"CIVIL_AFFAIRS\"],\"created_ms\"");
    bad_with(discovery, "\"created_ms\"", "\"recipients\":[\"POLICE\",\"POLICE\"],\"created_ms\"",
             "recipients[1]", "duplicate");
    bad_with(discovery, "\"created_ms\"", "\"recipients\":[\"POLICE\",\"x\"],\"created_ms\"",
             "recipients[1]", "dept_code");
    ok_with(discovery, "\"created_ms\"", "\"case_id\":\"JY-2026-000123\",\"created_ms\"");
    bad_with(discovery, "\"created_ms\"", "\"case_id\":\"JY-26-123\",\"created_ms\"", "case_id",
             "case_id_format");
    bad_with(discovery, "\"created_ms\"", "\"case_id\":\"JY-2014-000123\",\"created_ms\"", "case_id",
             "case_id_format");
    /* 4 minutes ahead is tolerated, 6 is not */
    ok_with(discovery, "1779999940000", "1780000240000");
    bad_with(discovery, "1779999940000", "1780000360000", "created_ms", "future");
    bad_with(discovery, "1779999940000", "1400000000000", "created_ms", "time_range");
    /* the ends of int64: refused, and no overflow on the way (UBSan aborted here) */
    bad_with(discovery, "1779999940000", "9223372036854775807", "created_ms", "future");
    bad_with(discovery, "1779999940000", "-9223372036854775808", "created_ms", "time_range");
    bad_with(discovery, "\"priority\":\"URGENT\",", "", "priority", "required");
    bad_with(discovery, "\"sensitivity\":\"NORMAL\",", "", "sensitivity", "required");
    ok_with(discovery, "\"created_ms\"", "\"in_reply_to\":\"" ID16 "\",\"created_ms\"");
    bad_with(discovery, "\"created_ms\"", "\"in_reply_to\":\"00\",\"created_ms\"", "in_reply_to", "length");
    bad_with(discovery, "\"body_kind\":\"BODY_DISCOVERY_REPORT\"", "\"body_kind\":\"BODY_ASSESSMENT\"", "body_kind",
             "body_kind");
    bad_with(discovery, "\"body_kind\":\"BODY_DISCOVERY_REPORT\",", "", "body_kind", "body_kind");

    /* enums protobuf accepted but the schema does not know */
    cpx_envelope_t *e = load(discovery);
    e->priority = 9;
    env_err(e, NULL, "priority", "enum_range");
    e->priority = CPX__V1__PRIORITY__URGENT;
    e->discovery_report->channel = 42;
    env_err(e, NULL, DR "channel", "enum_range");
    e->discovery_report->channel = CPX__V1__CHANNEL__SCHOOL;
    e->discovery_report->categories[1]->harm_types[0] = 99;
    env_err(e, NULL, DR "categories[1].harm_types[0]", "enum_range");
    e->discovery_report->categories[1]->harm_types[0] = 0;
    env_err(e, NULL, DR "categories[1].harm_types[0]", "unspecified");
    cpx_msg_free(e);

    e = load(discovery);
    e->body_case = 0;
    env_err(e, NULL, "body", "required");
    e->body_case = CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
    env_ok(e, NULL);
    cpx_msg_free(e);
}

static void test_signature_rules(void **state)
{
    (void)state;
    bad_with(discovery, "," SIG, "", "signature", "required");
    char *t = edit(discovery, "," SIG, "");
    cpx_envelope_t *e = load(t);
    cpx_validate_opts_t unsigned_ok = {.now_ms = NOW, .flags = CPX_VALIDATE_UNSIGNED};
    env_ok(e, &unsigned_ok);
    cpx_msg_free(e);
    free(t);
    bad_with(discovery, "\"key_id\":\"0011223344556677\"", "\"key_id\":\"00112233\"", "signature.key_id",
             "length");
    bad_with(discovery, "\"ed25519\":\"" SIG64 "\"", "\"ed25519\":\"" HASH32 "\"", "signature.ed25519",
             "length");
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"", "", "signature.ed25519", "required");
    const char *batch3 = ",\"batch\":{\"index\":2,\"size\":3,\"path\":[\"" HASH32 "\"],"
                         "\"root_signature\":\"" SIG64 "\"}";
    ok_with(discovery, ",\"ed25519\":\"" SIG64 "\"", batch3);
    bad_with(discovery, "\"" SIG64 "\"}", "\"" SIG64 "\"" "," "\"batch\":{}}",
             "signature.batch", "signature_exclusive");
    /* leaf 2 of 3 has a 1-hash path; leaf 0 of 3 needs 2 */
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"",
             ",\"batch\":{\"index\":0,\"size\":3,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"}",
             "signature.batch.path", "path_length");
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"",
             ",\"batch\":{\"index\":3,\"size\":3,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"}",
             "signature.batch.index", "range");
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"",
             ",\"batch\":{\"index\":0,\"size\":1001,\"root_signature\":\"" SIG64 "\"}",
             "signature.batch.size", "range");
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"",
             ",\"batch\":{\"index\":2,\"size\":3,\"path\":[\"00\"],\"root_signature\":\"" SIG64 "\"}",
             "signature.batch.path[0]", "length");
    bad_with(discovery, ",\"ed25519\":\"" SIG64 "\"",
             ",\"batch\":{\"index\":0,\"size\":1,\"root_signature\":\"00\"}",
             "signature.batch.root_signature", "length");
}

static void test_commitment_rules(void **state)
{
    (void)state;
    const char *c_ok = "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"},{\"field\":3,\"digest\":\""
                       HASH32 "\"}],\"salts\":[{\"field\":3,\"salt\":\"" ID16 "\"}]," SIG;
    ok_with(discovery, SIG, c_ok);
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":3,\"digest\":\"" HASH32 "\"},{\"field\":1,\"digest\":\""
             HASH32 "\"}]," SIG, "commitments[1].field", "order");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"},{\"field\":1,\"digest\":\""
             HASH32 "\"}]," SIG, "commitments[1].field", "order");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":77,\"digest\":\"" HASH32 "\"}]," SIG,
             "commitments[0].field", "unknown_field");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":1,\"digest\":\"" ID16 "\"}]," SIG,
             "commitments[0].digest", "length");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"}],"
             "\"salts\":[{\"field\":2,\"salt\":\"" ID16 "\"}]," SIG, "salts[0].field", "uncommitted");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"}],"
             "\"salts\":[{\"field\":1,\"salt\":\"00\"}]," SIG, "salts[0].salt", "length");
    bad_with(discovery, SIG, "\"commitments\":[{\"field\":1,\"digest\":\"" HASH32 "\"}],"
             "\"salts\":[{\"field\":1,\"salt\":\"" ID16 "\"},{\"field\":1,\"salt\":\"" ID16 "\"}]," SIG,
             "salts[1].field", "duplicate");

    /* a redacted view: minor (field 3) withheld but committed */
    char *t = edit(discovery, SIG, "\"commitments\":[{\"field\":3,\"digest\":\"" HASH32 "\"}]," SIG);
    cpx_envelope_t *e = load(t);
    cpx_msg_free(&e->discovery_report->minor->base);
    e->discovery_report->minor = NULL;
    env_err(e, NULL, DR "minor", "required");
    cpx_validate_opts_t red = {.now_ms = NOW, .flags = CPX_VALIDATE_REDACTED};
    env_ok(e, &red);
    cpx_msg_free(e);
    free(t);
}

static void test_text_rules(void **state)
{
    (void)state;
    assert_true(cpx_utf8_valid("abc 中文 ✓ 😀", strlen("abc 中文 ✓ 😀")));
    assert_false(cpx_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(cpx_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    assert_false(cpx_utf8_valid("\xed\xa0\x80", 3));     /* surrogate U+D800 */
    assert_false(cpx_utf8_valid("\xf4\x90\x80\x80", 4)); /* U+110000 */
    assert_false(cpx_utf8_valid("\xe4\xb8", 2));         /* truncated */
    assert_false(cpx_utf8_valid("abcdefgh\x80", 9));     /* stray continuation after fast path */
    assert_false(cpx_utf8_valid("abc\0def", 7));         /* NUL */
    assert_true(cpx_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */

    static const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\xff"};
    for (size_t i = 0; i < 4; i++) {
        cpx_envelope_t *e = load(discovery);
        free(e->discovery_report->reporter->name);
        e->discovery_report->reporter->name = strdup(bad[i]);
        env_err(e, NULL, DR "reporter.name", "utf8");
        cpx_msg_free(e);
    }
    char name[CPX_MAX_NAME + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    cpx_envelope_t *e = load(discovery);
    free(e->discovery_report->minor->name);
    e->discovery_report->minor->name = strdup(name);
    env_err(e, NULL, DR "minor.name", "too_long");
    name[CPX_MAX_NAME] = '\0';
    free(e->discovery_report->minor->name);
    e->discovery_report->minor->name = strdup(name);
    env_ok(e, NULL);
    cpx_msg_free(e);
}

static void test_minor_rules(void **state)
{
    (void)state;
    const char *id = "\"id_number\":\"320281201506071231\"";
    bad_with(discovery, id, "\"id_number\":\"320281201506071232\"", DR "minor.id_number", "check_digit");
    bad_with(discovery, id, "\"id_number\":\"32028120150607123\"", DR "minor.id_number", "length");
    bad_with(discovery, id, "\"id_number\":\"11010519491231002x\"", DR "minor.id_number", "format");
    bad_with(discovery, id, "\"id_number\":\"990281201201010010\"", DR "minor.id_number", "region");
    bad_with(discovery, id, "\"id_number\":\"320281202302300017\"", DR "minor.id_number", "birth_date");
    /* born 2030: in the future */
    bad_with(discovery, id, "\"id_number\":\"510107203001010017\"", DR "minor.id_number", "birth_date");
    bad_with(discovery, "\"birth_date\":\"2015-06-07\"", "\"birth_date\":\"2015-06-08\"",
             DR "minor.birth_date", "birth_date_mismatch");
    bad_with(discovery, "\"sex\":\"MALE\"", "\"sex\":\"FEMALE\"", DR "minor.sex", "sex_mismatch");
    ok_with(discovery, "\"sex\":\"MALE\"", "\"sex\":\"SEX_UNKNOWN\"");
    /* 19 years old: not a minor; turning 18 tomorrow: still one */
    char adult[19], almost[19], text[64];
    assert_int_equal(cpx_idnum_make(320281, 2007, 1, 1, 10, true, adult), 0);
    assert_int_equal(cpx_idnum_make(320281, 2008, 5, 30, 10, true, almost), 0);
    snprintf(text, sizeof text, "\"id_number\":\"%s\"", adult);
    char *t = edit(discovery, "\"birth_date\":\"2015-06-07\",", "");
    bad_with(t, id, text, DR "minor.id_number", "minor_age");
    snprintf(text, sizeof text, "\"id_number\":\"%s\"", almost);
    ok_with(t, id, text);
    /* no ID: a reason and name, sex, birth date */
#define NOID_OK "\"id_unknown_reason\":\"NOT_DISCLOSED\""
    const char *noid_ok = NOID_OK;
    char *t2 = edit(discovery, id, noid_ok);
    ok_with(t2, NULL, NULL);
    bad_with(t2, "\"birth_date\":\"2015-06-07\",", "", DR "minor.birth_date", "required");
    bad_with(t2, "\"sex\":\"MALE\",", "", DR "minor.sex", "required");
    bad_with(t2, "\"name\":\"张三\",", "", DR "minor.name", "required");
    bad_with(t2, noid_ok, "\"id_unknown_reason\":\"NOT_DISCLOSED\",\"id_number\":\"320281201506071231\"",
             DR "minor.id_unknown_reason", "id_or_reason");
    bad_with(t2, NOID_OK ",", "", DR "minor.id_number", "id_or_reason");
    bad_with(t2, "\"birth_date\":\"2015-06-07\"", "\"birth_date\":\"2006-06-07\"", DR "minor.birth_date",
             "minor_age");
    free(t2);
    free(t);
    bad_with(discovery, ",\"town\":\"TOWN_HUASHI\"", "", DR "minor.town", "required");
    bad_with(discovery, "\"town\":\"TOWN_HUASHI\"", "\"town\":\"华士镇\"", DR "minor.town", "dept_code");
}

static void test_category_rules(void **state)
{
    (void)state;
    const char *gm = "{\"category\":\"GUARDIANSHIP_MISSING\",\"father\":\"DETAINED\",\"mother\":\"MISSING\"}";
    const char *harmed = "{\"category\":\"HARMED\",\"harm_types\":[\"ABUSE\"]}";
    char *t = edit(discovery, gm, "X");
    char *t1 = edit(t, "X,", "");
    bad_with(t1, harmed, "", DR "categories", "required");
    free(t1);
    free(t);
    bad_with(discovery, harmed, gm, DR "categories[1].category", "duplicate");
    bad_with(discovery, "\"father\":\"DETAINED\"", "\"father\":\"PRESENT_CAPABLE\"",
             DR "categories[0].father", "parent_situation");
    bad_with(discovery, ",\"mother\":\"MISSING\"", "", DR "categories[0].mother", "required");
    ok_with(discovery, "\"father\":\"DETAINED\"", "\"father\":\"PARENT_UNKNOWN\"");
    bad_with(discovery, "\"harm_types\":[\"ABUSE\"]", "\"harm_types\":[]", DR "categories[1].harm_types",
             "required");
    bad_with(discovery, "\"harm_types\":[\"ABUSE\"]", "\"harm_types\":[\"ABUSE\",\"ABUSE\"]",
             DR "categories[1].harm_types[1]", "duplicate");
    bad_with(discovery, "\"mother\":\"MISSING\"}", "\"mother\":\"MISSING\",\"harm_types\":[\"ABUSE\"]}",
             DR "categories[0].harm_types", "not_applicable");
    bad_with(discovery, "\"harm_types\":[\"ABUSE\"]", "\"harm_types\":[\"ABUSE\"],\"father\":\"DEAD\"",
             DR "categories[1].father", "not_applicable");
    /* STREET_OR_ORPHAN */
    ok_with(discovery, harmed, "{\"category\":\"STREET_OR_ORPHAN\",\"street\":[\"ORPHAN\"],"
                               "\"father\":\"DEAD\",\"mother\":\"PARENT_UNKNOWN\"}");
    bad_with(discovery, harmed, "{\"category\":\"STREET_OR_ORPHAN\",\"street\":[\"ORPHAN\"],"
                                "\"father\":\"DETAINED\"}", DR "categories[1].father", "orphan_parents");
    bad_with(discovery, harmed, "{\"category\":\"STREET_OR_ORPHAN\"}", DR "categories[1].street", "required");
    /* SPECIAL_HARDSHIP */
    const char *sh = "{\"category\":\"SPECIAL_HARDSHIP\",\"hardships\":[\"FAMILY_POVERTY\",\"SERIOUS_ILLNESS\"]}";
    bad_with(discovery, harmed, sh, DR "categories[1].hardships[1]", "illness_detail");
    char *t2 = edit(discovery, harmed, sh);
    ok_with(t2, "\"observation\"", "\"health\":{\"illnesses\":[\"LEUKAEMIA\"]},\"observation\"");
    ok_with(t2, "\"observation\"", "\"health\":{\"notes\":\"白血病\"},\"observation\"");
    bad_with(t2, "\"observation\"", "\"health\":{\"disability_grade\":5,\"notes\":\"x\"},\"observation\"",
             DR "health.disability_grade", "range");
    free(t2);
    bad_with(discovery, harmed, "{\"category\":\"SPECIAL_HARDSHIP\"}", DR "categories[1].hardships", "required");
    /* OTHER */
    ok_with(discovery, harmed, "{\"category\":\"OTHER\",\"other_reason\":\"家庭突遭火灾\"}");
    bad_with(discovery, harmed, "{\"category\":\"OTHER\"}", DR "categories[1].other_reason", "required");
    bad_with(discovery, harmed, "{\"category\":\"OTHER\",\"other_reason\":\"x\",\"street\":[\"ORPHAN\"]}",
             DR "categories[1].street", "not_applicable");
    bad_with(discovery, harmed, "{\"harm_types\":[\"ABUSE\"]}", DR "categories[1].category", "required");
}

static void test_report_rules(void **state)
{
    (void)state;
    bad_with(discovery, "\"duty_to_report\":true,", "", DR "reporter.duty_to_report", "duty_to_report");
    bad_with(discovery, "\"role\":\"TEACHER\"", "\"role\":\"NEIGHBOUR\"", DR "reporter.duty_to_report",
             "duty_to_report");
    ok_with(discovery, "\"role\":\"TEACHER\",\"duty_to_report\":true", "\"role\":\"NEIGHBOUR\"");
    ok_with(discovery, "\"role\":\"TEACHER\"", "\"role\":\"RELATIVE\"");
    bad_with(discovery, "\"role\":\"TEACHER\",\"duty_to_report\":true,", "", DR "reporter.role", "required");
    bad_with(discovery, "\"channel\":\"SCHOOL\",", "", DR "channel", "required");
    bad_with(discovery, "\"what\":\"孩子身上有伤\",", "", DR "observation.what", "required");
    bad_with(discovery, "\"observed_ms\":1779996400000", "\"observed_ms\":1780000900000",
             DR "observation.observed_ms", "future");
    bad_with(discovery, "\"observed_ms\":1779996400000", "\"observed_ms\":1780000250000",
             DR "observation.observed_ms", "after_created");
    bad_with(discovery, ",\"observed_ms\":1779996400000", "", DR "observation.observed_ms", "required");
    bad_with(discovery, ",\"observation\":{\"what\":\"孩子身上有伤\",\"observed_ms\":1779996400000}", "",
             DR "observation", "required");
    /* skills training is for 16+; this minor is 10 */
    bad_with(discovery, "\"observation\"", "\"circumstances\":[\"NEEDS_SKILLS_TRAINING\"],\"observation\"",
             DR "circumstances[0]", "skills_training_age");
    ok_with(discovery, "\"observation\"", "\"circumstances\":[\"LEFT_BEHIND\",\"SCHOOL_DROPOUT\"],\"observation\"");
    bad_with(discovery, "\"observation\"", "\"circumstances\":[\"LEFT_BEHIND\",\"LEFT_BEHIND\"],\"observation\"",
             DR "circumstances[1]", "duplicate");
}

static const char *referral = HEAD("REFERRAL")
    "\"referral\":{\"to\":\"EDUCATION\",\"task\":\"EDUCATION_SUPPORT\",\"reason\":\"辍学\","
    "\"due_by_ms\":1780600000000,\"priority\":\"ROUTINE\"}}";

static void test_referral_rules(void **state)
{
    (void)state;
    ok_with(referral, NULL, NULL);
    bad_with(referral, "\"to\":\"EDUCATION\"", "\"to\":\"HEALTH\"", "referral.to", "task_owner");
    bad_with(referral, "\"to\":\"EDUCATION\",", "", "referral.to", "required");
    bad_with(referral, "\"task\":\"EDUCATION_SUPPORT\",", "", "referral.task", "required");
    bad_with(referral, "\"due_by_ms\":1780600000000", "\"due_by_ms\":1779999940000", "referral.due_by_ms",
             "due_by");
    bad_with(referral, ",\"due_by_ms\":1780600000000", "", "referral.due_by_ms", "required");
    bad_with(referral, ",\"priority\":\"ROUTINE\"", "", "referral.priority", "required");
    bad_with(referral, "\"reason\":\"辍学\",", "", "referral.reason", "required");
    /* every owner in the seed's table */
    static const char *const pairs[][2] = {
        {"RESCUE_PROTECTION", "CIVIL_AFFAIRS"}, {"JUDICIAL_PROTECTION", "POLICE"},
        {"JUDICIAL_PROTECTION", "PROCURATORATE"}, {"JUDICIAL_PROTECTION", "COURT"},
        {"JUDICIAL_PROTECTION", "JUSTICE"}, {"EMPLOYMENT_SUPPORT", "HRSS"},
        {"MEDICAL_PROTECTION", "HEALTH"}, {"PSYCHOLOGICAL_CARE", "WOMENS_FED"},
        {"PSYCHOLOGICAL_CARE", "YOUTH_LEAGUE"}, {"PSYCHOLOGICAL_CARE", "DISABLED_FED"},
        {"PSYCHOLOGICAL_CARE", "CIVILIZATION_OFFICE"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char to[64], task[64];
        snprintf(to, sizeof to, "\"to\":\"%s\"", pairs[i][1]);
        snprintf(task, sizeof task, "\"task\":\"%s\"", pairs[i][0]);
        char *t = edit(referral, "\"to\":\"EDUCATION\"", to);
        ok_with(t, "\"task\":\"EDUCATION_SUPPORT\"", task);
        free(t);
    }
    assert_false(cpx_resp_table_owns(NULL, CPX__V1__TASK__MEDICAL_PROTECTION, "CIVIL_AFFAIRS"));
}

static void test_resp_table_yaml(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpx-resp-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/routes.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# local variant\nresponsibilities:\n  EDUCATION_SUPPORT: [EDUCATION, HEALTH]\n"
               "  RESCUE_PROTECTION:\n    - CIVIL_AFFAIRS\n    - TOWN_HUASHI\n");
    fclose(f);
    cpx_resp_table_t *t = NULL;
    char err[256];
    assert_int_equal(cpx_resp_table_load(path, &t, err, sizeof err), CPX_OK);
    assert_true(cpx_resp_table_owns(t, CPX__V1__TASK__EDUCATION_SUPPORT, "HEALTH"));
    assert_true(cpx_resp_table_owns(t, CPX__V1__TASK__RESCUE_PROTECTION, "TOWN_HUASHI"));
    assert_false(cpx_resp_table_owns(t, CPX__V1__TASK__MEDICAL_PROTECTION, "HEALTH"));
    assert_int_equal(cpx_resp_table_count(t, CPX__V1__TASK__RESCUE_PROTECTION), 2);
    /* the same referral is fine under this table, refused under the seed's */
    char *txt = edit(referral, "\"to\":\"EDUCATION\"", "\"to\":\"HEALTH\"");
    cpx_envelope_t *e = load(txt);
    cpx_validate_opts_t o = {.now_ms = NOW, .resp = t};
    env_ok(e, &o);
    env_err(e, NULL, "referral.to", "task_owner");
    cpx_msg_free(e);
    free(txt);
    cpx_resp_table_destroy(&t);
    assert_null(t);
    cpx_resp_table_destroy(&t);

    static const struct {
        const char *yaml, *where;
    } bad[] = {
        {"RESCUE_PROTECTION: [CIVIL_AFFAIRS]\nTEA_MAKING: [HRSS]\n", ":2:1: unknown task"},
        {"RESCUE_PROTECTION: [CIVIL_AFFAIRS, civil]\n", ":1:36: 'civil'"},
        {"RESCUE_PROTECTION: {a: b}\n", ":1:20: expected a list"},
        {"RESCUE_PROTECTION: [A1, A1]\n", ":1:25: department A1 listed twice"},
        {"RESCUE_PROTECTION: [X1]\nRESCUE_PROTECTION: [X2]\n", ":2:1: task RESCUE_PROTECTION appears twice"},
        {"RESCUE_PROTECTION: [X1\n", ":"},
        {"- a\n", ":1:1: expected one mapping"},
        {"", ":1:1: empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        fputs(bad[i].yaml, f);
        fclose(f);
        t = (void *)1;
        assert_int_equal(cpx_resp_table_load(path, &t, err, sizeof err), CPX_ERR_CONFIG);
        assert_null(t);
        if (!strstr(err, bad[i].where) || strncmp(err, path, strlen(path))) {
            fprintf(stderr, "case %zu: %s\n", i, err);
            fail();
        }
    }
    unlink(path);
    assert_int_equal(cpx_resp_table_load(path, &t, err, sizeof err), CPX_ERR_IO);
    rmdir(dir);
}

static const char *disposition = HEAD("DISPOSITION")
    "\"disposition\":{\"referral_id\":\"" ID16 "\",\"action\":\"ONE_OFF_MEDICAL_AID\",\"status\":\"DISPOSITION_DONE\","
    "\"amount_fen\":1000000,\"illness\":\"HAEMOPHILIA\",\"family_economy\":\"SUBSISTENCE_ALLOWANCE\","
    "\"effective_from\":\"2026-05-01\",\"effective_to\":\"2026-06-01\"}}";

static void test_disposition_rules(void **state)
{
    (void)state;
    ok_with(disposition, NULL, NULL);
    bad_with(disposition, "1000000", "500000", "disposition.amount_fen", "medical_aid_amount");
    bad_with(disposition, "HAEMOPHILIA", "OTHER_SERIOUS_ILLNESS", "disposition.illness", "medical_aid_illness");
    bad_with(disposition, ",\"illness\":\"HAEMOPHILIA\"", "", "disposition.illness", "medical_aid_illness");
    bad_with(disposition, "SUBSISTENCE_ALLOWANCE", "NOT_POOR", "disposition.family_economy",
             "medical_aid_family");
    ok_with(disposition, "SUBSISTENCE_ALLOWANCE", "ILLNESS_IMPOVERISHED");
    bad_with(disposition, "\"DISPOSITION_DONE\"", "\"DISPOSITION_DECLINED\"", "disposition.decline_reason", "required");
    ok_with(disposition, "\"DISPOSITION_DONE\"", "\"DISPOSITION_DECLINED\",\"decline_reason\":\"不符合条件\"");
    bad_with(disposition, "\"DISPOSITION_DONE\"", "\"DISPOSITION_DONE\",\"decline_reason\":\"x\"", "disposition.decline_reason",
             "not_applicable");
    bad_with(disposition, "2026-06-01", "2026-04-01", "disposition.effective_to", "date_order");
    bad_with(disposition, "\"referral_id\":\"" ID16 "\"", "\"referral_id\":\"0011\"", "disposition.referral_id",
             "length");
    bad_with(disposition, "\"referral_id\":\"" ID16 "\",", "", "disposition.referral_id", "required");
    bad_with(disposition, "\"action\":\"ONE_OFF_MEDICAL_AID\",", "", "disposition.action", "required");
    bad_with(disposition, ",\"status\":\"DISPOSITION_DONE\"", "", "disposition.status", "required");
}

static void test_other_bodies(void **state)
{
    (void)state;
    /* invalid Date caught wherever it appears */
    const char *fu = HEAD("FOLLOW_UP") "\"follow_up\":{\"visit_date\":\"2026-05-27\",\"visitor\":\"顾\","
                     "\"outcome\":\"STABLE\"}}";
    ok_with(fu, NULL, NULL);
    cpx_envelope_t *e = load(fu);
    e->follow_up->visit_date->day = 30;
    e->follow_up->visit_date->month = 2;
    env_err(e, NULL, "follow_up.visit_date", "date");
    cpx_msg_free(e);
    bad_with(fu, "2026-05-27", "2026-05-30", "follow_up.visit_date", "future");
    bad_with(fu, "\"visit_date\":\"2026-05-27\",", "", "follow_up.visit_date", "required");
    bad_with(fu, ",\"outcome\":\"STABLE\"", "", "follow_up.outcome", "required");

    const char *rel = HEAD("RELEASE_NOTICE") "\"release_notice\":{\"parent_role\":\"FATHER\","
                      "\"parent_id_number\":\"11010519491231002X\",\"kind\":\"SENTENCE_ENDED\","
                      "\"release_date\":\"2026-06-15\",\"minor_id_number\":\"320281201506071231\"}}";
    ok_with(rel, NULL, NULL);
    bad_with(rel, "11010519491231002X", "11010519491231002Y", "release_notice.parent_id_number", "format");
    bad_with(rel, "320281201506071231", "320281201506071230", "release_notice.minor_id_number", "check_digit");
    bad_with(rel, ",\"release_date\":\"2026-06-15\"", "", "release_notice.release_date", "required");
    bad_with(rel, "\"kind\":\"SENTENCE_ENDED\",", "", "release_notice.kind", "required");

    const char *seal = HEAD("SEAL_ORDER") "\"seal_order\":{\"case_ids\":[\"JY-2026-000001\"],"
                       "\"order_number\":\"(2026)苏0281刑封1号\",\"legal_basis\":\"刑事诉讼法第286条\"}}";
    ok_with(seal, NULL, NULL);
    bad_with(seal, "\"case_ids\":[\"JY-2026-000001\"],", "", "seal_order.subject_id_number", "seal_subject");
    bad_with(seal, "JY-2026-000001", "JY-2026-01", "seal_order.case_ids[0]", "case_id_format");
    bad_with(seal, "\"case_ids\"", "\"message_ids\":[\"0011\"],\"case_ids\"", "seal_order.message_ids[0]", "length");
    bad_with(seal, "\"order_number\":\"(2026)苏0281刑封1号\",", "", "seal_order.order_number", "required");

    const char *req = HEAD("SEALED_ACCESS_REQUEST") "\"sealed_access_request\":{\"officer_id\":\"P-7\","
                      "\"subject_id_number\":\"320281201506071231\",\"basis\":\"CASE_HANDLING\","
                      "\"requester_case_number\":\"(2026)澄刑初12号\",\"purpose\":\"审查起诉\"}}";
    ok_with(req, NULL, NULL);
    bad_with(req, "\"basis\"", "\"subject_case_id\":\"JY-2026-000001\",\"basis\"",
             "sealed_access_request.subject_case_id", "one_subject");
    bad_with(req, "\"subject_id_number\":\"320281201506071231\",", "", "sealed_access_request.subject_id_number",
             "one_subject");
    bad_with(req, "\"requester_case_number\":\"(2026)澄刑初12号\",", "",
             "sealed_access_request.requester_case_number", "required");
    bad_with(req, "CASE_HANDLING", "STATUTORY_QUERY", "sealed_access_request.regulation", "required");
    bad_with(req, ",\"purpose\":\"审查起诉\"", "", "sealed_access_request.purpose", "required");
    bad_with(req, "\"officer_id\":\"P-7\",", "", "sealed_access_request.officer_id", "required");
    bad_with(req, ",\"basis\":\"CASE_HANDLING\"", "", "sealed_access_request.basis", "required");

    const char *dec = HEAD("SEALED_ACCESS_DECISION") "\"sealed_access_decision\":{\"request_id\":\"" ID16 "\","
                      "\"outcome\":\"GRANTED\",\"grant_id\":\"" ID16 "\",\"expires_ms\":1780086400000,\"reads_allowed\":1}}";
    ok_with(dec, NULL, NULL);
    bad_with(dec, ",\"reads_allowed\":1", "", "sealed_access_decision.reads_allowed", "required");
    bad_with(dec, "1780086400000", "1779999000000", "sealed_access_decision.expires_ms", "expires");
    ok_with(dec, "\"outcome\":\"GRANTED\",\"grant_id\":\"" ID16 "\",", "\"outcome\":\"NO_RECORD\",");

    const char *rd = HEAD("SEALED_ACCESS_READ") "\"sealed_access_read\":{\"grant_id\":\"" ID16 "\",\"officer_id\":\"P-7\"}}";
    ok_with(rd, NULL, NULL);
    bad_with(rd, "\"grant_id\":\"" ID16 "\",", "", "sealed_access_read.grant_id", "required");

    const char *ap = HEAD("SEALED_ACCESS_APPROVAL") "\"sealed_access_approval\":{\"request_id\":\"" ID16 "\","
                     "\"approve\":true,\"approver\":\"检察官甲\"}}";
    ok_with(ap, NULL, NULL);
    bad_with(ap, "\"approve\":true,", "", "sealed_access_approval.reason", "required");

    const char *esc = HEAD("ESCALATION") "\"escalation\":{\"item_id\":\"" ID16 "\",\"kind\":\"ACT\","
                      "\"department\":\"EDUCATION\",\"due_ms\":1779990000000,\"overdue_by_ms\":9940000,\"level\":1}}";
    ok_with(esc, NULL, NULL);
    bad_with(esc, ",\"level\":1", "", "escalation.level", "range");
    bad_with(esc, "\"department\":\"EDUCATION\"", "\"department\":\"edu\"", "escalation.department", "dept_code");

    const char *no = HEAD("NOTICE") "\"notice\":{\"kind\":\"DOUBLE_BENEFIT\",\"text\":\"重复领取\",\"related\":[\"" ID16 "\"]}}";
    ok_with(no, NULL, NULL);
    bad_with(no, "\"related\":[\"" ID16 "\"]", "\"related\":[\"00\"]", "notice.related[0]", "length");
    bad_with(no, "\"text\":\"重复领取\",", "", "notice.text", "required");

    const char *as = HEAD("ASSESSMENT") "\"assessment\":{\"guardianship\":\"INADEQUATE\",\"risk\":\"HIGH\","
                     "\"needs\":[\"RESCUE_PROTECTION\",\"PSYCHOLOGICAL_CARE\"],\"assessed_on\":\"2026-05-28\"}}";
    ok_with(as, NULL, NULL);
    bad_with(as, "\"PSYCHOLOGICAL_CARE\"", "\"RESCUE_PROTECTION\"", "assessment.needs[1]", "duplicate");
    bad_with(as, "\"risk\":\"HIGH\",", "", "assessment.risk", "required");
    bad_with(as, "2026-05-28", "2026-06-28", "assessment.assessed_on", "future");
    bad_with(as, "2026-05-28", "2014-05-28", "assessment.assessed_on", "date_range");
}

static void test_every_error_reported(void **state)
{
    (void)state;
    char *t1 = edit(discovery, "\"sender\":\"EDUCATION\"", "\"sender\":\"x\"");
    char *t2 = edit(t1, "320281201506071231", "320281201506071232");
    char *t3 = edit(t2, "\"father\":\"DETAINED\"", "\"father\":\"PRESENT_CAPABLE\"");
    cpx_envelope_t *e = load(t3);
    cpx_errors_t errs = {0};
    assert_int_equal(cpx_validate_envelope(e, &opts_now, &errs), CPX_ERR_INVALID);
    assert_int_equal(errs.count, 3);
    /* a second call appends */
    assert_int_equal(cpx_validate_envelope(e, &opts_now, &errs), CPX_ERR_INVALID);
    assert_int_equal(errs.count, 6);
    cpx_msg_free(e);
    free(t1);
    free(t2);
    free(t3);
    assert_int_equal(cpx_validate_envelope(NULL, NULL, &errs), CPX_ERR_ARG);
}

static void frame_err(const char *text, const char *path, const char *rule)
{
    cpx_client_frame_t *f = (cpx_client_frame_t *)load_as(&cpx__v1__client_frame__descriptor, text);
    cpx_errors_t errs = {0};
    int rc = cpx_validate_client_frame(f, &opts_now, &errs);
    cpx_msg_free(f);
    if (!path) {
        if (rc != CPX_OK)
            dump(&errs);
        assert_int_equal(rc, CPX_OK);
        return;
    }
    assert_int_equal(rc, CPX_ERR_INVALID);
    for (size_t i = 0; i < errs.count; i++)
        if (!strcmp(errs.items[i].path, path) && !strcmp(errs.items[i].rule, rule))
            return;
    fprintf(stderr, "wanted %s: %s\n", path, rule);
    dump(&errs);
    fail();
}

static void test_client_frames(void **state)
{
    (void)state;
    /* two copies of the referral with batch proofs 0/2 and 1/2 */
    char *b0 = edit(referral, "\"ed25519\":\"" SIG64 "\"",
                    "\"batch\":{\"index\":0,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"}");
    char *b1 = edit(b0, "\"index\":0", "\"index\":1");
    char *frame = malloc(strlen(b0) + strlen(b1) + 64);
    sprintf(frame, "{\"submit\":{\"batch\":{\"envelopes\":[%s,%s]}}}", b0, b1);
    frame_err(frame, NULL, NULL);
    char *dup = edit(frame, "\"index\":1", "\"index\":0");
    frame_err(dup, "submit.batch.envelopes[1].signature.batch.index", "duplicate");
    char *root = edit(frame, "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64,
                      "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" HASH32 HASH32 "ff");
    free(root);
    /* a root signature differing in the last byte */
    root = edit(frame, "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"",
                "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" HASH32 HASH32 "\"");
    frame_err(root, NULL, NULL);
    free(root);
    root = edit(frame, "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" SIG64 "\"",
                "\"index\":1,\"size\":2,\"path\":[\"" HASH32 "\"],\"root_signature\":\"" HASH32 ID16 "00112233445566778899aabbccddeefe\"");
    frame_err(root, "submit.batch.envelopes[1].signature.batch.root_signature", "batch_root");
    free(root);
    char *size = malloc(strlen(b0) + 64);
    sprintf(size, "{\"submit\":{\"batch\":{\"envelopes\":[%s]}}}", b0);
    frame_err(size, "submit.batch.envelopes[0].signature.batch.size", "batch_size");
    free(size);
    char *ed = malloc(strlen(referral) + 64);
    sprintf(ed, "{\"submit\":{\"batch\":{\"envelopes\":[%s]}}}", referral);
    frame_err(ed, "submit.batch.envelopes[0].signature.batch", "batch_signature");
    sprintf(ed, "{\"submit\":{\"envelope\":%s}}", referral);
    frame_err(ed, NULL, NULL);
    char *inner = edit(ed, "\"to\":\"EDUCATION\"", "\"to\":\"HEALTH\"");
    frame_err(inner, "submit.envelope.referral.to", "task_owner");
    free(inner);
    free(ed);
    frame_err("{\"submit\":{\"batch\":{}}}", "submit.batch.envelopes", "required");
    frame_err("{\"submit\":{}}", "submit.content", "required");
    frame_err("{}", "frame", "required");
    frame_err("{\"heartbeat\":{}}", NULL, NULL);
    frame_err("{\"delivery_ack\":{\"delivery_id\":3,\"message_id\":\"" ID16 "\",\"status\":\"TAKEN\"}}", NULL, NULL);
    frame_err("{\"delivery_ack\":{\"delivery_id\":3,\"message_id\":\"" ID16 "\",\"status\":\"REFUSED_BY_LOCAL\"}}",
              "delivery_ack.reason", "required");
    /* grouped confirmations: each checked as the single one, named by its index */
    frame_err("{\"delivery_acks\":{\"acks\":[{\"delivery_id\":3,\"message_id\":\"" ID16 "\",\"status\":\"TAKEN\"},"
              "{\"delivery_id\":4,\"message_id\":\"" ID16 "\",\"status\":\"REFUSED_BY_LOCAL\",\"reason\":\"x\"}]}}",
              NULL, NULL);
    frame_err("{\"delivery_acks\":{\"acks\":[{\"delivery_id\":3,\"message_id\":\"" ID16 "\",\"status\":\"TAKEN\"},"
              "{\"delivery_id\":4,\"message_id\":\"" ID16 "\",\"status\":\"REFUSED_BY_LOCAL\"}]}}",
              "delivery_acks.acks[1].reason", "required");
    frame_err("{\"delivery_acks\":{\"acks\":[{\"message_id\":\"" ID16 "\",\"status\":\"TAKEN\"}]}}",
              "delivery_acks.acks[0].delivery_id", "required");
    frame_err("{\"delivery_acks\":{}}", "delivery_acks.acks", "required");
    {
        /* more than CPX_MAX_GROUPED confirmations in one frame */
        static Cpx__V1__DeliveryAck a[CPX_MAX_GROUPED + 1];
        static Cpx__V1__DeliveryAck *ap[CPX_MAX_GROUPED + 1];
        static uint8_t id[16] = {1};
        for (size_t i = 0; i <= CPX_MAX_GROUPED; i++) {
            cpx__v1__delivery_ack__init(&a[i]);
            a[i].delivery_id = i + 1;
            a[i].message_id = (ProtobufCBinaryData){16, id};
            a[i].status = CPX__V1__DELIVERY_STATUS__TAKEN;
            ap[i] = &a[i];
        }
        Cpx__V1__DeliveryAcks da = CPX__V1__DELIVERY_ACKS__INIT;
        da.acks = ap;
        da.n_acks = CPX_MAX_GROUPED;
        cpx_client_frame_t f = CPX__V1__CLIENT_FRAME__INIT;
        f.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS;
        f.delivery_acks = &da;
        cpx_errors_t errs = {0};
        assert_int_equal(cpx_validate_client_frame(&f, &opts_now, &errs), CPX_OK);
        da.n_acks = CPX_MAX_GROUPED + 1;
        assert_int_equal(cpx_validate_client_frame(&f, &opts_now, &errs), CPX_ERR_INVALID);
        assert_string_equal(errs.items[0].path, "delivery_acks.acks");
        assert_string_equal(errs.items[0].rule, "too_many");
    }
    free(dup);
    free(frame);
    free(b0);
    free(b1);

    /* the Submit entry point names its paths from "submit" */
    Cpx__V1__Submit sub = CPX__V1__SUBMIT__INIT;
    cpx_errors_t errs = {0};
    assert_int_equal(cpx_validate_submit(&sub, &opts_now, &errs), CPX_ERR_INVALID);
    assert_string_equal(errs.items[0].path, "submit.content");
}

static void test_predicates(void **state)
{
    (void)state;
    assert_true(cpx_dept_code_valid("TOWN_HUASHI"));
    assert_true(cpx_dept_code_valid("A1"));
    assert_false(cpx_dept_code_valid("A"));
    assert_false(cpx_dept_code_valid("1A"));
    assert_false(cpx_dept_code_valid("TOWN-HUASHI"));
    assert_false(cpx_dept_code_valid(""));
    assert_false(cpx_dept_code_valid(NULL));
    assert_true(cpx_dept_code_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"));   /* 32 */
    assert_false(cpx_dept_code_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456")); /* 33 */
    assert_true(cpx_case_id_valid("JY-2026-000123"));
    assert_false(cpx_case_id_valid("jy-2026-000123"));
    assert_false(cpx_case_id_valid("JY-2026-00012"));
    assert_false(cpx_case_id_valid("JY-2026-0001234"));
    assert_false(cpx_case_id_valid("JY_2026_000123"));
}

/* Bytes the schema does not know would travel outside every signature: refused, at the
 * envelope and inside a body alike. */
static void test_unknown_fields_refused(void **state)
{
    (void)state;
    cpx_envelope_t *e = load(discovery);
    uint8_t *buf;
    size_t len;
    assert_int_equal(cpx_encode(e, &buf, &len), CPX_OK);
    cpx_msg_free(e);
    /* field 15 (not in Envelope), varint 1 */
    uint8_t *more = malloc(len + 2);
    memcpy(more, buf, len);
    more[len] = (15 << 3) | 0;
    more[len + 1] = 1;
    cpx_envelope_t *u = NULL;
    assert_int_equal(cpx_decode_envelope(more, len + 2, &u), CPX_OK);
    env_err(u, NULL, "", "unknown_field");
    cpx_msg_free(u);
    free(more);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_rules),   cmocka_unit_test(test_signature_rules),
        cmocka_unit_test(test_commitment_rules), cmocka_unit_test(test_text_rules),
        cmocka_unit_test(test_minor_rules),      cmocka_unit_test(test_category_rules),
        cmocka_unit_test(test_report_rules),     cmocka_unit_test(test_referral_rules),
        cmocka_unit_test(test_resp_table_yaml),  cmocka_unit_test(test_disposition_rules),
        cmocka_unit_test(test_other_bodies),     cmocka_unit_test(test_every_error_reported),
        cmocka_unit_test(test_client_frames),    cmocka_unit_test(test_predicates),
        cmocka_unit_test(test_unknown_fields_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
