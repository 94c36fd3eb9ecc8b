/* Synthetic data: deterministic, realistic, and valid. */
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
#include "cpx/synth.h"
#include "cpx/validate.h"

#define NOW 1780000000000LL /* 2026-05-28 */

static void expect_valid(cpx_envelope_t *e, unsigned flags)
{
    cpx_errors_t errs = {0};
    cpx_validate_opts_t opts = {.now_ms = NOW, .flags = flags};
    int rc = cpx_validate_envelope(e, &opts, &errs);
    if (rc != CPX_OK) {
        char buf[4096];
        cpx_errors_format(&errs, buf, sizeof buf);
        fprintf(stderr, "invalid %s: %s\n", cpx_body_kind_name((int)e->body_case), buf);
    }
    assert_int_equal(rc, CPX_OK);
}

static void test_discovery_10000_valid(void **state)
{
    (void)state;
    cpx_synth_t *s = cpx_synth_new(42);
    unsigned roles = 0, channels = 0, cats = 0;
    size_t total = 0, migrants = 0, noid = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t created = NOW - (int64_t)(cpx_synth_u64(s) % 86400000);
        cpx_envelope_t *e = cpx_synth_discovery(s, created);
        assert_non_null(e);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        assert_int_equal(cpx_synth_dummy_sign(e), CPX_OK);
        expect_valid(e, 0);
        const Cpx__V1__DiscoveryReport *r = e->discovery_report;
        roles |= 1u << r->reporter->role;
        channels |= 1u << r->channel;
        for (size_t k = 0; k < r->n_categories; k++)
            cats |= 1u << r->categories[k]->category;
        if (!*r->minor->id_number)
            noid++;
        else if (strncmp(r->minor->id_number, "320281", 6))
            migrants++;
        total += protobuf_c_message_get_packed_size(&e->base);
        cpx_msg_free(e);
    }
    cpx_synth_destroy(&s);
    assert_null(s);
    assert_int_equal(roles, 0x3fe);    /* roles 1..9 */
    assert_int_equal(channels, 0xfe);  /* channels 1..7 */
    assert_int_equal(cats, 0x3e);      /* categories 1..5 */
    assert_true(migrants > 500);
    assert_true(noid > 300);
    size_t avg = total / 10000;
    fprintf(stderr, "average encoded size %zu bytes\n", avg);
    assert_true(avg > 700 && avg < 1400);
}

/* What load programs offer the gateway: from the sender asked for, routed by the
 * gateway (no recipients), never a sealed matter, and still valid. */
static void test_ordinary_report(void **state)
{
    (void)state;
    cpx_synth_t *s = cpx_synth_new(7);
    size_t had_recipients = 0, had_offence = 0;
    for (int i = 0; i < 2000; i++) {
        cpx_envelope_t *plain = cpx_synth_discovery(s, NOW - 1000);
        had_recipients += plain->n_recipients > 0;
        for (size_t c = 0; c < plain->discovery_report->n_circumstances; c++)
            had_offence += plain->discovery_report->circumstances[c] ==
                           CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE;
        cpx_msg_free(plain);
        cpx_envelope_t *e = cpx_synth_ordinary_report(s, NOW - 1000, "HEALTH");
        assert_non_null(e);
        assert_string_equal(e->sender, "HEALTH");
        assert_int_equal(e->n_recipients, 0);
        assert_int_equal(e->sensitivity, CPX__V1__SENSITIVITY__NORMAL);
        const Cpx__V1__DiscoveryReport *r = e->discovery_report;
        for (size_t c = 0; c < r->n_circumstances; c++)
            assert_int_not_equal(r->circumstances[c], CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        cpx_msg_free(e);
    }
    cpx_envelope_t *e = cpx_synth_ordinary_report(s, NOW - 1000, NULL);
    assert_non_null(e);
    assert_true(e->sender && *e->sender);  /* the generator's own sender */
    cpx_msg_free(e);
    cpx_synth_destroy(&s);
    assert_true(had_recipients > 0 && had_offence > 0);  /* so what is cleared is tested */
}

static void test_deterministic(void **state)
{
    (void)state;
    cpx_synth_t *a = cpx_synth_new(7), *b = cpx_synth_new(7), *c = cpx_synth_new(8);
    for (int i = 0; i < 50; i++) {
        cpx_envelope_t *ea = cpx_synth_discovery(a, NOW), *eb = cpx_synth_discovery(b, NOW),
                       *ec = cpx_synth_discovery(c, NOW);
        uint8_t *ba, *bb, *bc;
        size_t la, lb, lc;
        assert_int_equal(cpx_encode(ea, &ba, &la), CPX_OK);
        assert_int_equal(cpx_encode(eb, &bb, &lb), CPX_OK);
        assert_int_equal(cpx_encode(ec, &bc, &lc), CPX_OK);
        assert_int_equal(la, lb);
        assert_memory_equal(ba, bb, la);
        assert_false(la == lc && !memcmp(ba, bc, la));
        free(ba);
        free(bb);
        free(bc);
        cpx_msg_free(ea);
        cpx_msg_free(eb);
        cpx_msg_free(ec);
    }
    cpx_synth_destroy(&a);
    cpx_synth_destroy(&b);
    cpx_synth_destroy(&c);
    cpx_synth_destroy(&c); /* harmless */
}

static void test_other_bodies_valid(void **state)
{
    (void)state;
    cpx_synth_t *s = cpx_synth_new(99);
    static const char *const depts[] = {"CIVIL_AFFAIRS", "EDUCATION", "POLICE", "PROCURATORATE",
                                        "COURT", "JUSTICE", "HRSS", "HEALTH", "WOMENS_FED",
                                        "YOUTH_LEAGUE", "DISABLED_FED", "CIVILIZATION_OFFICE"};
    for (int i = 0; i < 2000; i++) {
        cpx_envelope_t *e = cpx_synth_assessment(s, NOW - 1000, i % 2 ? "JY-2026-000123" : NULL);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        cpx_msg_free(e);
        e = cpx_synth_referral(s, NOW - 1000, i % 3 ? depts[i % 12] : NULL, 0);
        assert_non_null(e);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        assert_true(cpx_resp_table_owns(NULL, e->referral->task, e->referral->to));
        cpx_envelope_t *d = cpx_synth_disposition(s, NOW - 500, e->message_id.data, e->referral->to);
        expect_valid(d, CPX_VALIDATE_UNSIGNED);
        assert_memory_equal(d->disposition->referral_id.data, e->message_id.data, 16);
        cpx_msg_free(d);
        cpx_msg_free(e);
        e = cpx_synth_follow_up(s, NOW - 1000);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        cpx_msg_free(e);
        e = cpx_synth_release_notice(s, NOW - 1000);
        expect_valid(e, CPX_VALIDATE_UNSIGNED);
        cpx_msg_free(e);
    }
    /* a referral of a task the department does not own is refused */
    assert_null(cpx_synth_referral(s, NOW, "HEALTH", 2 /* EDUCATION_SUPPORT */));
    cpx_envelope_t *e = cpx_synth_referral(s, NOW, "HEALTH", 5);
    assert_non_null(e);
    assert_int_equal(e->referral->task, 5);
    cpx_msg_free(e);
    cpx_synth_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovery_10000_valid),
        cmocka_unit_test(test_ordinary_report),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_other_bodies_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
