/* idnum.c — GB 11643-1999 citizen ID numbers and calendar helpers. */
#include "cpx/idnum.h"

#include <stdio.h>
#include <string.h>

static const int weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
static const char check_chars[] = "10X98765432";

/* GB/T 2260 province-level codes. */
bool cpx_idnum_province_ok(uint32_t region)
{
    static const unsigned char prov[] = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34,
                                         35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
                                         53, 54, 61, 62, 63, 64, 65, 71, 81, 82};
    unsigned p = region / 10000;
    if (region > 999999)
        return false;
    for (size_t i = 0; i < sizeof prov; i++)
        if (prov[i] == p)
            return true;
    return false;
}

char cpx_idnum_check_char(const char *first17)
{
    unsigned sum = 0;
    for (int i = 0; i < 17; i++) {
        if (first17[i] < '0' || first17[i] > '9')
            return '?';
        sum += (unsigned)(first17[i] - '0') * (unsigned)weights[i];
    }
    return check_chars[sum % 11];
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

cpx_idnum_rule cpx_idnum_check(const char *id, int64_t today_days, cpx_idnum_info_t *info)
{
    cpx_idnum_info_t local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    info->bad_pos = -1;
    size_t len = id ? strnlen(id, CPX_IDNUM_LEN + 1) : 0;
    info->len = len;
    if (len != CPX_IDNUM_LEN)
        return CPX_IDNUM_LENGTH;
    for (int i = 0; i < CPX_IDNUM_LEN; i++) {
        char c = id[i];
        bool ok = (c >= '0' && c <= '9') || (i == 17 && c == 'X');
        if (!ok) {
            info->bad_pos = i;
            return CPX_IDNUM_FORMAT;
        }
    }
    info->region = (uint32_t)digits(id, 6);
    info->year = digits(id + 6, 4);
    info->month = digits(id + 10, 2);
    info->day = digits(id + 12, 2);
    info->male = (id[16] - '0') % 2 == 1;
    info->expected_check = cpx_idnum_check_char(id);
    if (id[17] != info->expected_check)
        return CPX_IDNUM_CHECK_DIGIT;
    if (!cpx_idnum_province_ok(info->region))
        return CPX_IDNUM_REGION;
    if (!cpx_date_valid(info->year, info->month, info->day) ||
        cpx_days_from_civil(info->year, info->month, info->day) > today_days)
        return CPX_IDNUM_BIRTH_DATE;
    return CPX_IDNUM_OK;
}

const char *cpx_idnum_rule_name(cpx_idnum_rule rule)
{
    switch (rule) {
    case CPX_IDNUM_OK: return "ok";
    case CPX_IDNUM_LENGTH: return "length";
    case CPX_IDNUM_FORMAT: return "format";
    case CPX_IDNUM_CHECK_DIGIT: return "check_digit";
    case CPX_IDNUM_REGION: return "region";
    case CPX_IDNUM_BIRTH_DATE: return "birth_date";
    }
    return "unknown";
}

void cpx_idnum_describe(cpx_idnum_rule rule, const cpx_idnum_info_t *info, char *buf,
                        size_t size)
{
    cpx_idnum_info_t none = {.bad_pos = -1};
    if (!info)
        info = &none;
    switch (rule) {
    case CPX_IDNUM_OK:
        snprintf(buf, size, "valid");
        break;
    case CPX_IDNUM_LENGTH:
        snprintf(buf, size, "a citizen ID number has 18 characters, this one has %zu%s",
                 info->len, info->len > CPX_IDNUM_LEN ? " or more" : "");
        break;
    case CPX_IDNUM_FORMAT:
        snprintf(buf, size,
                 "character %d is not allowed: 17 digits then a digit or upper-case X",
                 info->bad_pos + 1);
        break;
    case CPX_IDNUM_CHECK_DIGIT:
        snprintf(buf, size,
                 "check digit mismatch (GB 11643 MOD 11-2): the first 17 digits call for "
                 "'%c'; re-check every digit",
                 info->expected_check);
        break;
    case CPX_IDNUM_REGION:
        snprintf(buf, size, "region code starts with %02u, which is not a province code",
                 (unsigned)(info->region / 10000));
        break;
    case CPX_IDNUM_BIRTH_DATE:
        snprintf(buf, size,
                 "embedded birth date %04d-%02d-%02d is not a real date or is in the future",
                 info->year, info->month, info->day);
        break;
    default:
        snprintf(buf, size, "invalid");
    }
}

int cpx_idnum_make(uint32_t region, int year, int month, int day, unsigned seq, bool male,
                   char out[CPX_IDNUM_LEN + 1])
{
    if (!cpx_idnum_province_ok(region) || !cpx_date_valid(year, month, day) || seq > 499)
        return -1;
    unsigned order = seq * 2 + (male ? 1 : 0);
    snprintf(out, CPX_IDNUM_LEN + 1, "%06u%04d%02d%02d%03u", (unsigned)region, year, month,
             day, order);
    out[17] = cpx_idnum_check_char(out);
    out[18] = '\0';
    return 0;
}

/* ---- calendar --------------------------------------------------------------------- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool cpx_date_valid(int year, int month, int day)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1900 || year > 2199 || month < 1 || month > 12 || day < 1)
        return false;
    int md = mdays[month - 1] + (month == 2 && leap(year));
    return day <= md;
}

/* Howard Hinnant's days_from_civil. */
int64_t cpx_days_from_civil(int year, int month, int day)
{
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void cpx_civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(y + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

int64_t cpx_days_from_ms(int64_t ms)
{
    /* floor((ms + 8 h) / 1 day) without forming ms + 8 h, which overflowed for the
     * times near INT64_MAX an envelope may carry (found by fuzz_envelope under UBSan):
     * ms = q days + r with |r| < 1 day, and r + 8 h moves q by at most one day */
    const int64_t day_ms = 86400000, cst = 8 * 3600000;
    int64_t q = ms / day_ms, r = ms % day_ms + cst;
    return r < 0 ? q - 1 : r >= day_ms ? q + 1 : q;
}

int cpx_age_years(int64_t born, int64_t on)
{
    int by, bm, bd, oy, om, od;
    cpx_civil_from_days(born, &by, &bm, &bd);
    cpx_civil_from_days(on, &oy, &om, &od);
    int age = oy - by;
    if (om < bm || (om == bm && od < bd))
        age--;
    return age;
}
