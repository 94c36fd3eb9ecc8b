/* UTF-8 validation: the fast paths (ASCII words, runs of 3-byte characters, two at a
 * time) must agree with a plain reference decoder on every input, including bad
 * bytes placed exactly where the fast paths change step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/validate.h"

/* Reference: Unicode 15 table 3-7, byte by byte; NUL refused as cpx does. */
static bool ref_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) { i++; continue; }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) n = 1;
        else if (c == 0xe0) { n = 2; lo = 0xa0; }
        else if (c >= 0xe1 && c <= 0xec) n = 2;
        else if (c == 0xed) { n = 2; hi = 0x9f; }
        else if (c >= 0xee && c <= 0xef) n = 2;
        else if (c == 0xf0) { n = 3; lo = 0x90; }
        else if (c >= 0xf1 && c <= 0xf3) n = 3;
        else if (c == 0xf4) { n = 3; hi = 0x8f; }
        else return false;
        if (len - i <= n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Pieces that a generated string is made of: mostly valid, some deliberately not. */
static const char *const pieces[] = {
    "a", "Z", "0", " ", "江", "阴", "华士镇", "，", "。", "\xef\xbc\x88", "é", "\xf0\x9f\x98\x80",
    "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xf4\x8f\xbf\xbf",
    /* invalid: overlong, surrogate, > U+10FFFF, lone continuation, bad lead, truncated */
    "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80", "\xff", "\xe6\xb1",
    "\xe6\x41\x9f",
};

static void test_agrees_with_reference(void **state)
{
    (void)state;
    uint8_t buf[96];
    size_t npieces = sizeof pieces / sizeof pieces[0];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = 0;
        int k = (int)(next() % 12);
        for (int j = 0; j < k; j++) {
            /* 1 in 16 pieces from the invalid tail */
            size_t p = next() % 16 == 0 ? 16 + next() % (npieces - 16) : next() % 16;
            size_t pl = strlen(pieces[p]);
            if (len + pl > sizeof buf)
                break;
            memcpy(buf + len, pieces[p], pl);
            len += pl;
        }
        if (next() % 8 == 0 && len) /* a random byte flipped anywhere */
            buf[next() % len] ^= (uint8_t)(1u << (next() % 8));
        bool want = ref_valid(buf, len);
        bool got = cpx_utf8_valid((const char *)buf, len);
        bool got_portable = cpx_utf8_valid_portable((const char *)buf, len);
        if (want != got || want != got_portable) {
            char hex[3 * sizeof buf + 1] = "";
            for (size_t i = 0; i < len; i++)
                snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
            fail_msg("disagree on [%s]: reference %d, cpx %d, portable %d", hex, want, got,
                     got_portable);
        }
    }
}

/* Long runs of 3-byte characters (the validator checks 24 bytes at a time there):
 * every lead from 0xe0 to 0xef with continuations in and out of its allowed range
 * (0xe0 needs >= 0xa0, 0xed < 0xa0), ASCII at the start to vary where runs begin, and
 * now and then one byte changed; each must agree with the reference decoder. */
static void test_agrees_on_long_cjk_runs(void **state)
{
    (void)state;
    uint8_t buf[160];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = next() % 3; /* ASCII lead-in */
        memset(buf, 'a', len);
        size_t chars = 8 + next() % 40;
        bool rare = next() % 4 == 0; /* runs with 0xe0/0xed leads and out-of-range bytes */
        for (size_t j = 0; j < chars && len + 3 <= sizeof buf; j++) {
            uint8_t lead = rare && next() % 8 == 0 ? (uint8_t)(0xe0 + next() % 16)
                                                  : (uint8_t)(0xe4 + next() % 6);
            buf[len++] = lead;
            buf[len++] = (uint8_t)(0x80 + next() % 64);
            buf[len++] = (uint8_t)(0x80 + next() % 64);
        }
        if (next() % 4 == 0 && len) /* one byte changed anywhere */
            buf[next() % len] = (uint8_t)next();
        bool want = ref_valid(buf, len);
        bool got = cpx_utf8_valid((const char *)buf, len);
        bool got_portable = cpx_utf8_valid_portable((const char *)buf, len);
        if (want != got || want != got_portable) {
            char hex[3 * sizeof buf + 1] = "";
            for (size_t i = 0; i < len; i++)
                snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
            fail_msg("disagree on [%s]: reference %d, cpx %d, portable %d", hex, want, got,
                     got_portable);
        }
    }
}

/* A bad continuation byte at each offset of a long run of 3-byte characters. */
static void test_bad_byte_in_every_position(void **state)
{
    (void)state;
    char s[64] = "";
    for (int i = 0; i < 20; i++)
        strcat(s, "江");
    size_t len = strlen(s);
    assert_true(cpx_utf8_valid(s, len));
    for (size_t pos = 0; pos < len; pos++) {
        char t[64];
        memcpy(t, s, len);
        t[pos] = 'A';
        assert_false(cpx_utf8_valid(t, len));
        assert_false(cpx_utf8_valid_portable(t, len));
        memcpy(t, s, len);
        assert_false(cpx_utf8_valid(t, pos % 3 ? pos : pos + 1)); /* cut mid-character */
        assert_false(cpx_utf8_valid_portable(t, pos % 3 ? pos : pos + 1));
    }
    assert_false(cpx_utf8_valid("abc\0def", 7));
    assert_false(cpx_utf8_valid_portable("abc\0def", 7));
    /* NUL at each place of a 40-byte string (both sides of the 16-byte blocks), and the
     * zero padding past the end is not taken for text */
    char z[41];
    memset(z, 'x', 40);
    z[40] = '\0';
    assert_true(cpx_utf8_valid(z, 40));
    for (size_t pos = 0; pos < 40; pos++) {
        z[pos] = '\0';
        assert_false(cpx_utf8_valid(z, 40));
        assert_true(cpx_utf8_valid(z, pos));
        z[pos] = 'x';
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_reference),
        cmocka_unit_test(test_agrees_on_long_cjk_runs),
        cmocka_unit_test(test_bad_byte_in_every_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
