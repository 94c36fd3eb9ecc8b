/* test_str.c — cpx/str.h: bounded copies and decimal formatting agree with snprintf,
 * including truncation, which the gateway relies on for case ids and leaf details. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cpx/str.h"

static void test_copy_and_truncate(void **state)
{
    (void)state;
    char b[8];
    assert_int_equal(cpx_strcopy(b, sizeof b, "POLICE"), 6);
    assert_string_equal(b, "POLICE");
    assert_int_equal(cpx_strcopy(b, sizeof b, "CIVIL_AFFAIRS"), 7);
    assert_string_equal(b, "CIVIL_A");
    assert_int_equal(cpx_strcopy(b, sizeof b, ""), 0);
    assert_string_equal(b, "");
    assert_int_equal(cpx_strcopy(b, sizeof b, NULL), 0);
    assert_string_equal(b, "");
    char one[1];
    assert_int_equal(cpx_strcopy(one, 1, "x"), 0);
    assert_int_equal(one[0], '\0');
    /* overlapping: copying a buffer's own tail to its start */
    char o[16] = "abcdefgh";
    assert_int_equal(cpx_strcopy(o, sizeof o, o + 2), 6);
    assert_string_equal(o, "cdefgh");
}

static void test_append_like_snprintf(void **state)
{
    (void)state;
    const uint64_t vals[] = {0, 7, 42, 999999, 1000000, 2026, UINT64_MAX};
    const unsigned widths[] = {1, 4, 6};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
            for (size_t size = 1; size <= 32; size++) {
                char want[64], got[64];
                snprintf(want, size, "JY-%0*llu", (int)widths[w], (unsigned long long)vals[i]);
                size_t n = cpx_strcopy(got, size, "JY-");
                n = cpx_strappend_u64(got, size, n, vals[i], widths[w]);
                assert_string_equal(got, want);
                assert_int_equal(n, strlen(want));
            }
    char d[64];
    size_t n = cpx_strcopy(d, sizeof d, "delivery=");
    n = cpx_strappend_u64(d, sizeof d, n, 123, 1);
    n = cpx_strappend(d, sizeof d, n, " attempts=");
    n = cpx_strappend_u64(d, sizeof d, n, 2, 1);
    assert_string_equal(d, "delivery=123 attempts=2");
    assert_int_equal(n, strlen(d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_and_truncate),
        cmocka_unit_test(test_append_like_snprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
