/* Citizen ID numbers (GB 11643-1999) and calendar helpers. Expected check characters
 * were computed independently once with python3 using the other form of the
 * formula, check = (12 - sum(d_i * 2^(17-i) mod 11)) mod 11, 10 -> 'X'. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/idnum.h"

/* 2026-06-01 in China Standard Time. */
static int64_t today(void)
{
    return cpx_days_from_civil(2026, 6, 1);
}

static void test_known_valid(void **state)
{
    (void)state;
    static const char *ok[] = {"11010519491231002X", "320281201506071231",
                               "320281201201010024", "510107200001010013"};
    cpx_idnum_info_t info;
    assert_int_equal(cpx_idnum_check(ok[0], today(), &info), CPX_IDNUM_OK);
    assert_int_equal(info.region, 110105);
    assert_int_equal(info.year, 1949);
    assert_int_equal(info.month, 12);
    assert_int_equal(info.day, 31);
    assert_false(info.male); /* order code 002 */
    assert_int_equal(cpx_idnum_check(ok[1], today(), &info), CPX_IDNUM_OK);
    assert_true(info.male); /* order code 123 */
    assert_int_equal(info.region, 320281);
    assert_int_equal(cpx_idnum_check(ok[2], today(), &info), CPX_IDNUM_OK);
    assert_false(info.male);
    assert_int_equal(cpx_idnum_check_char("11010519491231002"), 'X');
    assert_int_equal(cpx_idnum_check_char("32028120150607123"), '1');
    assert_int_equal(cpx_idnum_check_char("32028120100229001"), '9');
    assert_int_equal(cpx_idnum_check_char("3202812010022900a"), '?');
    /* the last one above was made without an independent vector: it must at least
     * agree with itself, while the next one was computed independently */
    assert_int_equal(cpx_idnum_check_char("51010720300101001"), '7');
}

static void test_rules(void **state)
{
    (void)state;
    cpx_idnum_info_t info;
    /* wrong check digit: last char of a valid number changed */
    assert_int_equal(cpx_idnum_check("320281201506071232", today(), &info),
                     CPX_IDNUM_CHECK_DIGIT);
    assert_int_equal(info.expected_check, '1');
    /* one transposed digit in the body */
    assert_int_equal(cpx_idnum_check("320281201506071321", today(), NULL),
                     CPX_IDNUM_CHECK_DIGIT);
    /* lower-case x */
    assert_int_equal(cpx_idnum_check("11010519491231002x", today(), &info), CPX_IDNUM_FORMAT);
    assert_int_equal(info.bad_pos, 17);
    /* 17 and 19 characters, empty, NULL */
    assert_int_equal(cpx_idnum_check("32028120150607123", today(), &info), CPX_IDNUM_LENGTH);
    assert_int_equal(info.len, 17);
    assert_int_equal(cpx_idnum_check("3202812015060712311", today(), NULL), CPX_IDNUM_LENGTH);
    assert_int_equal(cpx_idnum_check("", today(), NULL), CPX_IDNUM_LENGTH);
    assert_int_equal(cpx_idnum_check(NULL, today(), NULL), CPX_IDNUM_LENGTH);
    /* non-digit inside; X anywhere but the end */
    assert_int_equal(cpx_idnum_check("3202812015O6071231", today(), &info), CPX_IDNUM_FORMAT);
    assert_int_equal(info.bad_pos, 10);
    assert_int_equal(cpx_idnum_check("X20281201506071231", today(), NULL), CPX_IDNUM_FORMAT);
    /* bad dates with correct check digits */
    assert_int_equal(cpx_idnum_check("320281202302300017", today(), &info), CPX_IDNUM_BIRTH_DATE);
    assert_int_equal(info.month, 2);
    assert_int_equal(info.day, 30);
    assert_int_equal(cpx_idnum_check("320281201002290019", today(), NULL), CPX_IDNUM_BIRTH_DATE);
    assert_int_equal(cpx_idnum_check("440524188001010014", today(), NULL), CPX_IDNUM_BIRTH_DATE);
    /* future birth date */
    assert_int_equal(cpx_idnum_check("510107203001010017", today(), NULL), CPX_IDNUM_BIRTH_DATE);
    /* region */
    assert_int_equal(cpx_idnum_check("000000201201010012", today(), &info), CPX_IDNUM_REGION);
    assert_int_equal(cpx_idnum_check("990281201201010010", today(), NULL), CPX_IDNUM_REGION);
    assert_string_equal(cpx_idnum_rule_name(CPX_IDNUM_CHECK_DIGIT), "check_digit");
    assert_string_equal(cpx_idnum_rule_name(CPX_IDNUM_BIRTH_DATE), "birth_date");
    char msg[256];
    cpx_idnum_describe(CPX_IDNUM_REGION, &info, msg, sizeof msg);
    assert_non_null(strstr(msg, "starts with 00"));
}

static void test_born_today_is_ok(void **state)
{
    (void)state;
    char id[19];
    assert_int_equal(cpx_idnum_make(320281, 2026, 6, 1, 7, true, id), 0);
    assert_int_equal(cpx_idnum_check(id, today(), NULL), CPX_IDNUM_OK);
    assert_int_equal(cpx_idnum_check(id, today() - 1, NULL), CPX_IDNUM_BIRTH_DATE);
}

static void test_make(void **state)
{
    (void)state;
    char id[19];
    assert_int_equal(cpx_idnum_make(320281, 2015, 6, 7, 61, true, id), 0);
    assert_string_equal(id, "320281201506071231");
    assert_int_equal(cpx_idnum_make(110105, 1949, 12, 31, 1, false, id), 0);
    assert_string_equal(id, "11010519491231002X");
    for (unsigned seq = 0; seq < 500; seq += 7) {
        cpx_idnum_info_t info;
        assert_int_equal(cpx_idnum_make(620102, 2012, 2, 29, seq, seq % 2, id), 0);
        assert_int_equal(cpx_idnum_check(id, today(), &info), CPX_IDNUM_OK);
        assert_int_equal(info.male, seq % 2 == 1);
    }
    assert_int_equal(cpx_idnum_make(320281, 2023, 2, 30, 1, true, id), -1);
    assert_int_equal(cpx_idnum_make(990281, 2023, 2, 1, 1, true, id), -1);
    assert_int_equal(cpx_idnum_make(320281, 2023, 2, 1, 500, true, id), -1);
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(cpx_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(cpx_days_from_civil(2000, 3, 1), 11017);
    int y, m, d;
    for (int64_t z = -30000; z < 80000; z += 37) {
        cpx_civil_from_days(z, &y, &m, &d);
        assert_true(cpx_date_valid(y, m, d) || y < 1900);
        assert_int_equal(cpx_days_from_civil(y, m, d), z);
    }
    assert_true(cpx_date_valid(2000, 2, 29));
    assert_false(cpx_date_valid(1900, 2, 29));
    assert_false(cpx_date_valid(2023, 4, 31));
    assert_false(cpx_date_valid(2023, 13, 1));
    assert_false(cpx_date_valid(2023, 0, 1));
    /* 2025-12-31T16:00:00Z is already 2026-01-01 in China */
    assert_int_equal(cpx_days_from_ms(1767196800000LL), cpx_days_from_civil(2026, 1, 1));
    assert_int_equal(cpx_days_from_ms(1767196800000LL - 1), cpx_days_from_civil(2025, 12, 31));
    /* CST midnight is 16:00 UTC; before 1970 and at the ends of int64 (no overflow) */
    assert_int_equal(cpx_days_from_ms(-8 * 3600000LL), 0);
    assert_int_equal(cpx_days_from_ms(-8 * 3600000LL - 1), -1);
    assert_int_equal(cpx_days_from_ms(16 * 3600000LL - 1), 0);
    assert_int_equal(cpx_days_from_ms(16 * 3600000LL), 1);
    assert_int_equal(cpx_days_from_ms(-86400000LL * 3 - 8 * 3600000LL), -3);
    assert_int_equal(cpx_days_from_ms(INT64_MAX), (int64_t)(((__int128)INT64_MAX + 28800000) / 86400000));
    assert_int_equal(cpx_days_from_ms(INT64_MIN), -(int64_t)((-((__int128)INT64_MIN + 28800000) + 86400000 - 1) / 86400000));
    /* ages: the day before the 18th birthday is 17 */
    int64_t born = cpx_days_from_civil(2008, 3, 15);
    assert_int_equal(cpx_age_years(born, cpx_days_from_civil(2026, 3, 14)), 17);
    assert_int_equal(cpx_age_years(born, cpx_days_from_civil(2026, 3, 15)), 18);
    int64_t leapling = cpx_days_from_civil(2008, 2, 29);
    assert_int_equal(cpx_age_years(leapling, cpx_days_from_civil(2026, 2, 28)), 17);
    assert_int_equal(cpx_age_years(leapling, cpx_days_from_civil(2026, 3, 1)), 18);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_valid),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_born_today_is_ok),
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_calendar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
