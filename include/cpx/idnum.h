/* cpx/idnum.h — citizen ID numbers (公民身份号码, GB 11643-1999) and the calendar
 * helpers the validation rules share.
 *
 * A number is 18 characters: a 6-digit region code (first two digits a real
 * province-level code), the birth date YYYYMMDD, a 3-digit order code whose last
 * digit is odd for males and even for females, and a check character computed with
 * ISO 7064 MOD 11-2 over the first 17 digits ('0'-'9' or upper-case 'X' for 10).
 *
 * Checks run in a fixed order and stop at the first failure, so the reason names
 * the rule a person should look at first: length, format, check_digit, region,
 * birth_date. A mistyped digit almost always shows as check_digit.
 *
 * No function here allocates. */
#ifndef CPX_IDNUM_H
#define CPX_IDNUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CPX_IDNUM_LEN 18

typedef enum cpx_idnum_rule {
    CPX_IDNUM_OK = 0,
    CPX_IDNUM_LENGTH,       /* not exactly 18 characters */
    CPX_IDNUM_FORMAT,       /* not 17 digits + a digit or upper-case X */
    CPX_IDNUM_CHECK_DIGIT,  /* ISO 7064 MOD 11-2 check character mismatch */
    CPX_IDNUM_REGION,       /* first two digits not a province code */
    CPX_IDNUM_BIRTH_DATE,   /* not a calendar date, before 1900, or after today */
} cpx_idnum_rule;

typedef struct cpx_idnum_info {
    uint32_t region;        /* e.g. 320281 */
    int year, month, day;   /* embedded birth date */
    bool male;              /* order code odd */
    char expected_check;    /* the check character the first 17 digits call for */
    size_t len;             /* length seen (for messages) */
    int bad_pos;            /* CPX_IDNUM_FORMAT: 0-based position of the bad character */
} cpx_idnum_info_t;

/* Checks id (NUL-terminated). today_days is the current day as days since
 * 1970-01-01 in China Standard Time (cpx_days_from_ms(now_ms)); a birth date after
 * it fails. info (may be NULL) receives what was decoded, as far as it got.
 * Returns CPX_IDNUM_OK or the first rule broken. */
cpx_idnum_rule cpx_idnum_check(const char *id, int64_t today_days, cpx_idnum_info_t *info);

/* The snake_case rule name ("length", "format", "check_digit", "region",
 * "birth_date"; "ok"). Static string. */
const char *cpx_idnum_rule_name(cpx_idnum_rule rule);

/* A sentence for a person about why id failed (uses info from cpx_idnum_check);
 * always terminated. Never echoes the number itself (it is personal data). */
void cpx_idnum_describe(cpx_idnum_rule rule, const cpx_idnum_info_t *info, char *buf,
                        size_t size);

/* The check character for 17 digits; '?' if any is not a digit. */
char cpx_idnum_check_char(const char *first17);

/* Builds a valid number: region (100000..999999, province code real), birth date,
 * seq 0..499 and sex: the order code is seq*2+1 for males, seq*2 for females.
 * out receives 18 characters and a NUL. Returns 0, or -1 for arguments out of range
 * (no future check: that depends on the day). */
int cpx_idnum_make(uint32_t region, int year, int month, int day, unsigned seq, bool male,
                   char out[CPX_IDNUM_LEN + 1]);

/* True if the two leading digits of region are a province-level code. */
bool cpx_idnum_province_ok(uint32_t region);

/* ---- calendar (proleptic Gregorian) -------------------------------------------- */

/* True for a real date with 1900 <= year <= 2199. */
bool cpx_date_valid(int year, int month, int day);
/* Days since 1970-01-01 of a (valid) date. */
int64_t cpx_days_from_civil(int year, int month, int day);
/* The date of a day number. */
void cpx_civil_from_days(int64_t days, int *year, int *month, int *day);
/* The day number of a UTC millisecond time in China Standard Time (UTC+8), the
 * calendar every date in cpx.v1 is in. */
int64_t cpx_days_from_ms(int64_t ms);
/* Age in whole years on day `on` of someone born on day `born` (negative if on < born). */
int cpx_age_years(int64_t born, int64_t on);

#endif
