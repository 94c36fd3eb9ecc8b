/* validate.c — semantic validation of cpx.v1 messages (rules: docs/validation.md).
 *
 * Two layers. A generic walk over the protobuf-c descriptors checks what holds for
 * every field of every message: enums in range, repeated enums without UNSPECIFIED
 * or duplicates, repeated counts bounded, strings UTF-8 and bounded, every Date a
 * real date. Hand-written checks per envelope, body and category then apply the
 * policy's rules. Neither layer allocates: paths are built in a fixed buffer. */
#include "cpx/validate.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "cpx/idnum.h"
#include "cpx/limits.h"

#define MS_2015_01_01 1420070400000LL  /* 2015-01-01T00:00:00Z, the policy's year */
#define ONE_OFF_MEDICAL_AID_FEN 1000000u  /* CNY 10,000 (policy 三(三)3) */
#define N_TASKS 7                          /* Task values 0..6 */
#define RESP_MAX_DEPTS 16
#define MAX_DEPTH 16                       /* path segments kept */

/* ---- responsibility table ------------------------------------------------------ */

struct cpx_resp_table {
    size_t n[N_TASKS];
    char dept[N_TASKS][RESP_MAX_DEPTS][CPX_MAX_DEPT_CODE + 1];
};

static const cpx_resp_table_t seed_table = {
    .n = {0, 1, 1, 4, 1, 1, 4},
    .dept = {
        {{0}},
        {"CIVIL_AFFAIRS"},
        {"EDUCATION"},
        {"POLICE", "PROCURATORATE", "COURT", "JUSTICE"},
        {"HRSS"},
        {"HEALTH"},
        {"WOMENS_FED", "YOUTH_LEAGUE", "DISABLED_FED", "CIVILIZATION_OFFICE"},
    },
};

const cpx_resp_table_t *cpx_resp_table_default(void)
{
    return &seed_table;
}

bool cpx_resp_table_owns(const cpx_resp_table_t *t, int task, const char *dept)
{
    if (!t)
        t = &seed_table;
    if (task <= 0 || task >= N_TASKS || !dept)
        return false;
    for (size_t i = 0; i < t->n[task]; i++)
        if (!strcmp(t->dept[task][i], dept))
            return true;
    return false;
}

size_t cpx_resp_table_count(const cpx_resp_table_t *t, int task)
{
    if (!t)
        t = &seed_table;
    return task > 0 && task < N_TASKS ? t->n[task] : 0;
}

const char *cpx_resp_table_dept(const cpx_resp_table_t *t, int task, size_t i)
{
    if (!t)
        t = &seed_table;
    if (task <= 0 || task >= N_TASKS || i >= t->n[task])
        return NULL;
    return t->dept[task][i];
}

void cpx_resp_table_destroy(cpx_resp_table_t **p)
{
    if (p && *p) {
        free(*p);
        *p = NULL;
    }
}

/* YAML loader state: a tiny explicit machine over libyaml events. */
typedef struct yload {
    const char *path;
    char *err;
    size_t errlen;
    cpx_resp_table_t *t;
    bool seen[N_TASKS];
} yload_t;

static int yfail(yload_t *y, const yaml_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int yfail(yload_t *y, const yaml_event_t *ev, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (y->err && y->errlen)
        snprintf(y->err, y->errlen, "%s:%zu:%zu: %s", y->path,
                 ev ? ev->start_mark.line + 1 : 0, ev ? ev->start_mark.column + 1 : 0, msg);
    return CPX_ERR_CONFIG;
}

static int ynext(yaml_parser_t *p, yaml_event_t *ev, yload_t *y)
{
    if (!yaml_parser_parse(p, ev)) {
        if (y->err && y->errlen)
            snprintf(y->err, y->errlen, "%s:%zu:%zu: %s", y->path, p->problem_mark.line + 1,
                     p->problem_mark.column + 1, p->problem ? p->problem : "YAML syntax error");
        return CPX_ERR_CONFIG;
    }
    return CPX_OK;
}

static int yadd_dept(yload_t *y, const yaml_event_t *ev, int task)
{
    const char *d = (const char *)ev->data.scalar.value;
    if (!cpx_dept_code_valid(d))
        return yfail(y, ev, "'%.40s' is not a department code ([A-Z][A-Z0-9_]{1,31})", d);
    if (cpx_resp_table_owns(y->t, task, d))
        return yfail(y, ev, "department %s listed twice for this task", d);
    if (y->t->n[task] >= RESP_MAX_DEPTS)
        return yfail(y, ev, "more than %d departments for one task", RESP_MAX_DEPTS);
    snprintf(y->t->dept[task][y->t->n[task]++], CPX_MAX_DEPT_CODE + 1, "%s", d);
    return CPX_OK;
}

/* Parses the task -> departments mapping whose MAPPING_START was just read. */
static int yparse_map(yaml_parser_t *p, yload_t *y, bool top)
{
    for (;;) {
        yaml_event_t key;
        int rc = ynext(p, &key, y);
        if (rc)
            return rc;
        if (key.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key);
            return CPX_OK;
        }
        if (key.type != YAML_SCALAR_EVENT) {
            rc = yfail(y, &key, "expected a task name");
            yaml_event_delete(&key);
            return rc;
        }
        const char *name = (const char *)key.data.scalar.value;
        if (top && !strcmp(name, "responsibilities")) {
            yaml_event_t ms;
            yaml_event_delete(&key);
            if ((rc = ynext(p, &ms, y)))
                return rc;
            if (ms.type != YAML_MAPPING_START_EVENT) {
                rc = yfail(y, &ms, "'responsibilities' must be a mapping of task to departments");
                yaml_event_delete(&ms);
                return rc;
            }
            yaml_event_delete(&ms);
            if ((rc = yparse_map(p, y, false)))
                return rc;
            continue;
        }
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value_by_name(&cpx__v1__task__descriptor, name);
        if (!v || v->value <= 0 || v->value >= N_TASKS) {
            rc = yfail(y, &key, "unknown task '%.40s' (RESCUE_PROTECTION, EDUCATION_SUPPORT, "
                                "JUDICIAL_PROTECTION, EMPLOYMENT_SUPPORT, MEDICAL_PROTECTION, "
                                "PSYCHOLOGICAL_CARE)", name);
            yaml_event_delete(&key);
            return rc;
        }
        int task = v->value;
        if (y->seen[task]) {
            rc = yfail(y, &key, "task %s appears twice", name);
            yaml_event_delete(&key);
            return rc;
        }
        y->seen[task] = true;
        yaml_event_delete(&key);
        yaml_event_t val;
        if ((rc = ynext(p, &val, y)))
            return rc;
        if (val.type == YAML_SCALAR_EVENT) {
            rc = yadd_dept(y, &val, task);
            yaml_event_delete(&val);
            if (rc)
                return rc;
            continue;
        }
        if (val.type != YAML_SEQUENCE_START_EVENT) {
            rc = yfail(y, &val, "expected a list of department codes");
            yaml_event_delete(&val);
            return rc;
        }
        yaml_event_delete(&val);
        for (;;) {
            yaml_event_t it;
            if ((rc = ynext(p, &it, y)))
                return rc;
            if (it.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&it);
                break;
            }
            if (it.type != YAML_SCALAR_EVENT)
                rc = yfail(y, &it, "expected a department code");
            else
                rc = yadd_dept(y, &it, task);
            yaml_event_delete(&it);
            if (rc)
                return rc;
        }
    }
}

int cpx_resp_table_load(const char *path, cpx_resp_table_t **table_out, char *err,
                        size_t errlen)
{
    if (!path || !table_out)
        return CPX_ERR_ARG;
    *table_out = NULL;
    if (err && errlen)
        err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "%s:0:0: cannot open: %s", path, strerror(errno));
        return CPX_ERR_IO;
    }
    cpx_resp_table_t *t = calloc(1, sizeof *t);
    yaml_parser_t p;
    if (!t || !yaml_parser_initialize(&p)) {
        free(t);
        fclose(f);
        return CPX_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&p, f);
    yload_t y = {.path = path, .err = err, .errlen = errlen, .t = t};
    int rc = CPX_OK;
    bool mapped = false;
    for (;;) {
        yaml_event_t ev;
        if ((rc = ynext(&p, &ev, &y)))
            break;
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (type == YAML_MAPPING_START_EVENT && !mapped) {
            mapped = true;
            yaml_event_delete(&ev);
            if ((rc = yparse_map(&p, &y, true)))
                break;
            continue;
        }
        if (type != YAML_STREAM_START_EVENT && type != YAML_DOCUMENT_START_EVENT &&
            type != YAML_DOCUMENT_END_EVENT) {
            rc = yfail(&y, &ev, "expected one mapping of task to departments");
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    fclose(f);
    if (rc == CPX_OK && !mapped) {
        if (err && errlen)
            snprintf(err, errlen, "%s:1:1: empty: expected a mapping of task to departments", path);
        rc = CPX_ERR_CONFIG;
    }
    if (rc) {
        free(t);
        return rc;
    }
    *table_out = t;
    return CPX_OK;
}

/* ---- small predicates --------------------------------------------------------------- */

bool cpx_dept_code_valid(const char *s)
{
    if (!s || !(s[0] >= 'A' && s[0] <= 'Z'))
        return false;
    size_t i = 1;
    for (; s[i]; i++) {
        char c = s[i];
        if (i >= CPX_MAX_DEPT_CODE)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return i >= 2;
}

bool cpx_case_id_valid(const char *s)
{
    if (!s || strlen(s) != 14)
        return false;
    for (int i = 0; i < 14; i++) {
        char c = s[i];
        bool ok = i < 2 ? (c >= 'A' && c <= 'Z')
                : (i == 2 || i == 7) ? c == '-'
                : (c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    int year = (s[3] - '0') * 1000 + (s[4] - '0') * 100 + (s[5] - '0') * 10 + (s[6] - '0');
    return year >= 2015 && year <= 2199;
}

/* Lead bytes of 3-byte UTF-8 sequences that need no overlong/surrogate check. */
static const uint8_t lead3_plain[256] = {
    [0xe1] = 1, [0xe2] = 1, [0xe3] = 1, [0xe4] = 1, [0xe5] = 1, [0xe6] = 1, [0xe7] = 1,
    [0xe8] = 1, [0xe9] = 1, [0xea] = 1, [0xeb] = 1, [0xec] = 1, [0xee] = 1, [0xef] = 1,
};

bool cpx_utf8_valid_portable(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            /* ASCII: 8 bytes at a time while no high bit and no NUL */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if ((w & 0x8080808080808080ULL) ||
                    ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL))
                    break;
                i += 8;
            }
            if (i >= len)
                break;
            c = s[i];
            if (c < 0x80) {
                if (c == 0)
                    return false;
                i++;
                continue;
            }
        }
        /* The common case for Chinese text and punctuation: a run of 3-byte
         * sequences whose lead byte (0xe1-0xec, 0xee, 0xef) already rules out
         * overlongs and surrogates, so only the two continuation bytes need a
         * look — both in one 16-bit test. */
        if (lead3_plain[c]) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* eight characters per step: 24 bytes as three words, in which the lead
             * and continuation bytes sit at fixed places (A: L C C L C C L C, B: C L C C
             * L C C L, C: C C L C C L C C). One mask and compare per word checks every
             * lead is 0xeX and every continuation 10xxxxxx; the leads' low nibbles,
             * gathered into one word (their places differ across the words), must be
             * neither 0 (0xe0: overlongs) nor 0xd (0xed: surrogates). */
            while (len - i >= 24) {
                uint64_t wa, wb, wc;
                memcpy(&wa, s + i, 8);
                memcpy(&wb, s + i + 8, 8);
                memcpy(&wc, s + i + 16, 8);
                if (((wa & 0xc0f0c0c0f0c0c0f0ULL) ^ 0x80e08080e08080e0ULL) |
                    ((wb & 0xf0c0c0f0c0c0f0c0ULL) ^ 0xe08080e08080e080ULL) |
                    ((wc & 0xc0c0f0c0c0f0c0c0ULL) ^ 0x8080e08080e08080ULL))
                    break;
                uint64_t lo = (wa & 0x000f00000f00000fULL) | (wb & 0x0f00000f00000f00ULL) |
                              (wc & 0x00000f00000f0000ULL);
                uint64_t nd = lo ^ 0x0d0d0d0d0d0d0d0dULL;
                /* per byte v in 0..15: v + 0x7f has its high bit set exactly when v != 0 */
                if (((lo + 0x7f7f7f7f7f7f7f7fULL) & (nd + 0x7f7f7f7f7f7f7f7fULL) &
                     0x8080808080808080ULL) != 0x8080808080808080ULL)
                    break;
                i += 24;
            }
            /* two characters per step: continuation bytes 1, 2, 4, 5 of 8 loaded */
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if ((w & 0x0000c0c000c0c000ULL) != 0x0000808000808000ULL ||
                    !(lead3_plain[s[i]] & lead3_plain[s[i + 3]]))
                    break;
                i += 6;
            }
            if (i >= len || !lead3_plain[s[i]])
                continue;
#endif
            do {
                if (len - i < 3)
                    return false;
                uint16_t cont;
                memcpy(&cont, s + i + 1, 2);
                if ((cont & 0xc0c0) != 0x8080)
                    return false;
                i += 3;
            } while (i < len && lead3_plain[s[i]]);
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1; cp = c & 0x1f; min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2; cp = c & 0x0f; min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return false;  /* continuation byte, overlong lead 0xc0/0xc1, or > U+10FFFF lead */
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            unsigned cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CPX_UTF8_SSSE3 1

/* The lookup algorithm of Keiser and Lemire ("Validating UTF-8 in less than one
 * instruction per byte", 2021, as in simdjson), 16 bytes per step with SSSE3 pshufb.
 * Every error is a property of two adjacent bytes, read from three 16-entry tables
 * (high nibble of the first byte, its low nibble, high nibble of the second); the
 * bits they share name the error. Third and fourth bytes of a sequence are checked by
 * "two continuations in a row must be expected" (must23). The portable validator
 * branches on every run of ASCII, Chinese or other text, and mispredicted branches
 * made it the largest part of validation time on mixed strings; this one branches only
 * on the length. Strings shorter than a block go to the portable validator. */
#define U8_TOO_SHORT (1 << 0)
#define U8_TOO_LONG (1 << 1)
#define U8_OVERLONG_3 (1 << 2)
#define U8_TOO_LARGE (1 << 3)
#define U8_SURROGATE (1 << 4)
#define U8_OVERLONG_2 (1 << 5)
#define U8_TOO_LARGE_1000 (1 << 6)
#define U8_OVERLONG_4 (1 << 6)
#define U8_TWO_CONTS (1 << 7)
#define U8_CARRY (U8_TOO_SHORT | U8_TOO_LONG | U8_TWO_CONTS)

__attribute__((target("ssse3"))) static __m128i u8_block_errors(__m128i in, __m128i prev)
{
    const __m128i nib = _mm_set1_epi8(0x0f);
    const __m128i b1_high = _mm_setr_epi8(
        U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG, U8_TOO_LONG,
        U8_TOO_LONG, (char)U8_TWO_CONTS, (char)U8_TWO_CONTS, (char)U8_TWO_CONTS, (char)U8_TWO_CONTS,
        U8_TOO_SHORT | U8_OVERLONG_2, U8_TOO_SHORT, U8_TOO_SHORT | U8_OVERLONG_3 | U8_SURROGATE,
        (char)(U8_TOO_SHORT | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_OVERLONG_4));
    const __m128i b1_low = _mm_setr_epi8(
        (char)(U8_CARRY | U8_OVERLONG_3 | U8_OVERLONG_2 | U8_OVERLONG_4), (char)(U8_CARRY | U8_OVERLONG_2),
        (char)U8_CARRY, (char)U8_CARRY, (char)(U8_CARRY | U8_TOO_LARGE),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000), (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000), (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000), (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000), (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000 | U8_SURROGATE),
        (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000), (char)(U8_CARRY | U8_TOO_LARGE | U8_TOO_LARGE_1000));
    const __m128i b2_high = _mm_setr_epi8(
        U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT,
        U8_TOO_SHORT,
        (char)(U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE_1000 | U8_OVERLONG_4),
        (char)(U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_OVERLONG_3 | U8_TOO_LARGE),
        (char)(U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE),
        (char)(U8_TOO_LONG | U8_OVERLONG_2 | U8_TWO_CONTS | U8_SURROGATE | U8_TOO_LARGE),
        U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT, U8_TOO_SHORT);
    __m128i prev1 = _mm_alignr_epi8(in, prev, 15);
    __m128i sc = _mm_and_si128(
        _mm_and_si128(_mm_shuffle_epi8(b1_high, _mm_and_si128(_mm_srli_epi16(prev1, 4), nib)),
                      _mm_shuffle_epi8(b1_low, _mm_and_si128(prev1, nib))),
        _mm_shuffle_epi8(b2_high, _mm_and_si128(_mm_srli_epi16(in, 4), nib)));
    /* a byte two after a 111xxxxx lead or three after 1111xxxx must continue it */
    __m128i third = _mm_subs_epu8(_mm_alignr_epi8(in, prev, 14), _mm_set1_epi8((char)(0xe0 - 0x80)));
    __m128i fourth = _mm_subs_epu8(_mm_alignr_epi8(in, prev, 13), _mm_set1_epi8((char)(0xf0 - 0x80)));
    __m128i must23 = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8((char)0x80));
    return _mm_xor_si128(must23, sc);
}

/* pshufb masks that move the first 16 bytes of a string up by 16 - o places, zeros
 * below: the 16 bytes before offset o when o < 16 (see utf8_valid_ssse3). */
static const uint8_t shift_up[32] = {
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

__attribute__((target("ssse3"))) static bool utf8_valid_ssse3(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    if (len < 16)
        return cpx_utf8_valid_portable(str, len); /* no whole block to load */
    const __m128i zero = _mm_setzero_si128();
    __m128i first = _mm_loadu_si128((const __m128i *)s);
    __m128i prev = zero, in = first, err = zero, nul = zero;
    size_t i = 0;
    for (;;) {
        nul = _mm_or_si128(nul, _mm_cmpeq_epi8(in, zero));
        err = _mm_or_si128(err, u8_block_errors(in, prev));
        prev = in;
        i += 16;
        if (len - i < 16)
            break;
        in = _mm_loadu_si128((const __m128i *)(s + i));
    }
    if (i < len) {
        /* The last 16 bytes, overlapping what was checked: the errors of a place depend
         * only on it and the three bytes before, so checking a place twice is harmless.
         * Copying the tail to a padded buffer instead stalled on store forwarding. */
        size_t o = len - 16;
        in = _mm_loadu_si128((const __m128i *)(s + o));
        prev = o >= 16 ? _mm_loadu_si128((const __m128i *)(s + o - 16))
                       : _mm_shuffle_epi8(first, _mm_loadu_si128((const __m128i *)(shift_up + o)));
        nul = _mm_or_si128(nul, _mm_cmpeq_epi8(in, zero));
        err = _mm_or_si128(err, u8_block_errors(in, prev));
        prev = in;
    }
    /* a sequence cut by the end: lead 0xf0+ in the third-last byte, 0xe0+ in the
     * second-last, 0xc0+ in the last */
    const __m128i max_end = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          (char)(0xf0 - 1), (char)(0xe0 - 1), (char)(0xc0 - 1));
    err = _mm_or_si128(err, _mm_subs_epu8(prev, max_end));
    return _mm_movemask_epi8(nul) == 0 && _mm_movemask_epi8(_mm_cmpeq_epi8(err, zero)) == 0xffff;
}
#endif

bool cpx_utf8_valid(const char *str, size_t len)
{
#ifdef CPX_UTF8_SSSE3
    if (__builtin_cpu_supports("ssse3")) /* a load and a test of libgcc's cpu model */
        return utf8_valid_ssse3(str, len);
#endif
    return cpx_utf8_valid_portable(str, len);
}

/* ---- context, paths and errors -------------------------------------------------------- */

typedef struct vctx {
    cpx_errors_t *errs;
    const cpx_resp_table_t *resp;
    unsigned flags;
    int64_t now_ms;
    int64_t today;                  /* CST day number of now */
    const cpx_envelope_t *env;      /* the envelope being checked, for cross-field rules */
    int64_t created_day;            /* CST day of env->created_ms */
    /* The path is a stack of (name, index) segments, formatted only when an error
     * is reported: descending costs two stores, not a string copy. */
    struct seg {
        const char *name;
        long idx;                   /* -1: not an array element */
    } segs[MAX_DEPTH];
    size_t depth;
} vctx;

static size_t push_seg(vctx *c, const char *name, long idx)
{
    size_t mark = c->depth;
    if (c->depth < MAX_DEPTH)
        c->segs[c->depth] = (struct seg){name, idx};
    c->depth++;
    return mark;
}

static size_t push(vctx *c, const char *name)
{
    return push_seg(c, name, -1);
}

static size_t push_idx(vctx *c, const char *name, size_t i)
{
    return push_seg(c, name, (long)i);
}

static void pop(vctx *c, size_t mark)
{
    c->depth = mark;
}

static void path_add(char *path, size_t *n, const char *s)
{
    size_t l = strlen(s);
    if (l > CPX_MAX_PATH_LEN - 1 - *n)
        l = CPX_MAX_PATH_LEN - 1 - *n;
    memcpy(path + *n, s, l);
    *n += l;
}

/* Adds an error at the current path + "." + field (field NULL: the current path). */
static void verr(vctx *c, const char *field, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verr(vctx *c, const char *field, const char *rule, const char *fmt, ...)
{
    char path[CPX_MAX_PATH_LEN];
    size_t n = 0;
    size_t depth = c->depth < MAX_DEPTH ? c->depth : MAX_DEPTH;
    for (size_t i = 0; i < depth; i++) {
        if (n)
            path_add(path, &n, ".");
        path_add(path, &n, c->segs[i].name);
        if (c->segs[i].idx >= 0) {
            char d[24];
            snprintf(d, sizeof d, "[%ld]", c->segs[i].idx);
            path_add(path, &n, d);
        }
    }
    if (field && *field) {
        if (n)
            path_add(path, &n, ".");
        path_add(path, &n, field);
    }
    path[n] = '\0';
    char msg[sizeof(((cpx_field_error_t *)0)->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cpx_errors_add(c->errs, path, rule, "%s", msg);
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name : "?";
}

static bool has(const char *s)
{
    return s && *s;
}

/* True when field number f of the body was withheld from this (redacted) view. */
static bool withheld(const vctx *c, uint32_t f)
{
    if (!(c->flags & CPX_VALIDATE_REDACTED) || !c->env)
        return false;
    for (size_t i = 0; i < c->env->n_commitments; i++)
        if (c->env->commitments[i] && c->env->commitments[i]->field == f)
            return true;
    return false;
}

static void need_str(vctx *c, const char *field, uint32_t fno, const char *s, const char *why)
{
    if (!has(s) && !withheld(c, fno))
        verr(c, field, "required", "%s", why);
}

static void need_enum(vctx *c, const char *field, uint32_t fno, int v, const char *why)
{
    if (v == 0 && !withheld(c, fno))
        verr(c, field, "required", "%s", why);
}

static void need_id16(vctx *c, const char *field, const ProtobufCBinaryData *b, bool required)
{
    if (b->len == 0) {
        if (required)
            verr(c, field, "required", "a 16-byte message id is required");
    } else if (b->len != CPX_MAX_MESSAGE_ID) {
        verr(c, field, "length", "must be a 16-byte message id, got %zu bytes", b->len);
    }
}

static void need_dept(vctx *c, const char *field, const char *s, bool required)
{
    if (!has(s)) {
        if (required)
            verr(c, field, "required", "a department code is required (e.g. CIVIL_AFFAIRS, TOWN_HUASHI)");
    } else if (!cpx_dept_code_valid(s)) {
        verr(c, field, "dept_code",
             "not a department code: upper-case letter, then 1-31 of A-Z, 0-9, _ (e.g. TOWN_HUASHI)");
    }
}

static void need_case_id(vctx *c, const char *field, const char *s)
{
    if (has(s) && !cpx_case_id_valid(s))
        verr(c, field, "case_id_format",
             "a case id is two upper-case letters, a year from 2015 and six digits, "
             "e.g. JY-2026-000123");
}

/* Checks an ID number; returns true and fills info when valid. */
static bool need_idnum(vctx *c, const char *field, const char *s, bool required,
                       cpx_idnum_info_t *info)
{
    if (!has(s)) {
        if (required)
            verr(c, field, "required", "a citizen ID number is required");
        return false;
    }
    cpx_idnum_info_t local;
    if (!info)
        info = &local;
    cpx_idnum_rule r = cpx_idnum_check(s, c->today, info);
    if (r == CPX_IDNUM_OK)
        return true;
    char msg[200];
    cpx_idnum_describe(r, info, msg, sizeof msg);
    verr(c, field, cpx_idnum_rule_name(r), "%s", msg);
    return false;
}

/* Day number of a present, valid Date; -1 otherwise (the walk reports invalid ones). */
static int64_t day_of(const Cpx__V1__Date *d)
{
    if (!d || !cpx_date_valid((int)d->year, (int)d->month, (int)d->day))
        return -1;
    return cpx_days_from_civil((int)d->year, (int)d->month, (int)d->day);
}

static int64_t need_date(vctx *c, const char *field, uint32_t fno, const Cpx__V1__Date *d,
                         bool required)
{
    if (!d) {
        if (required && !withheld(c, fno))
            verr(c, field, "required", "a date is required");
        return -1;
    }
    return day_of(d);
}

/* ---- the generic walk ----------------------------------------------------------------- */

/* Bounds per field, computed once per message type from the field names (classify)
 * and looked up per message, not per field: the walk visits some fifty fields of six
 * messages per report, and a search of the whole field table for every string and
 * repeated field was a seventh of validation. Each message type's bounds are an array
 * parallel to its descriptor's fields, found through a small hash on the descriptor. */
#define MAX_FIELDS 512
#define MAX_MSG_TYPES 128 /* power of two; the hash below stays under half full */
static uint32_t field_limits[MAX_FIELDS];
static size_t n_field_limits;
static struct msg_limits {
    const ProtobufCMessageDescriptor *md;
    const uint32_t *lim;        /* lim[i]: the bound of md->fields[i] */
} msg_limits[MAX_MSG_TYPES];
static size_t n_msg_types;
static pthread_once_t limits_once = PTHREAD_ONCE_INIT;

static bool name_is(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(name, *list))
            return true;
    return false;
}

/* The bound of a string field (bytes) or a repeated field (elements), by name. */
static uint32_t classify(const ProtobufCFieldDescriptor *fd)
{
    static const char *const dept[] = {"sender", "recipients", "to", "town", "department", 0};
    static const char *const caseid[] = {"case_id", "case_ids", "subject_case_id", 0};
    static const char *const longtext[] = {"what", "notes", "basis", "text", "purpose", 0};
    static const char *const named[] = {"name", "parent_name", "id_number", "parent_id_number",
                                        "minor_id_number", "subject_id_number", "officer_id",
                                        "approver", "visitor", "phone", "order_number",
                                        "requester_case_number", "local_ref", "view_profile",
                                        "organisation", "rule", "path", 0};
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!strcmp(fd->name, "categories"))
            return CPX_MAX_CATEGORIES;
        if (!strcmp(fd->name, "recipients"))
            return CPX_MAX_RECIPIENTS;
        if (!strcmp(fd->name, "path") && fd->type == PROTOBUF_C_TYPE_BYTES)
            return CPX_MAX_BATCH_PATH;
        if (!strcmp(fd->name, "envelopes"))
            return CPX_MAX_BATCH_ENVELOPES;
        if (!strcmp(fd->name, "errors"))
            return CPX_MAX_FIELD_ERRORS;
        return CPX_MAX_REPEATED;
    }
    if (name_is(fd->name, dept))
        return CPX_MAX_DEPT_CODE;
    if (name_is(fd->name, caseid))
        return CPX_MAX_CASE_ID;
    if (name_is(fd->name, longtext))
        return CPX_MAX_LONG_TEXT;
    if (name_is(fd->name, named))
        return CPX_MAX_NAME;
    return CPX_MAX_SHORT_TEXT;
}

static size_t md_slot(const ProtobufCMessageDescriptor *md)
{
    uint64_t h = (uint64_t)(uintptr_t)md * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 57) & (MAX_MSG_TYPES - 1); /* top 7 bits */
}

static const uint32_t *limits_for(const ProtobufCMessageDescriptor *md)
{
    for (size_t i = md_slot(md);; i = (i + 1) & (MAX_MSG_TYPES - 1)) {
        if (msg_limits[i].md == md)
            return msg_limits[i].lim;
        if (!msg_limits[i].md)
            return NULL;
    }
}

static void limits_add(const ProtobufCMessageDescriptor *md)
{
    size_t i = md_slot(md);
    for (; msg_limits[i].md; i = (i + 1) & (MAX_MSG_TYPES - 1))
        if (msg_limits[i].md == md)
            return; /* message already seen */
    if (n_msg_types + 1 > MAX_MSG_TYPES / 2 || n_field_limits + md->n_fields > MAX_FIELDS)
        return;     /* not expected; its fields get the default bounds (default_limit) */
    uint32_t *lim = &field_limits[n_field_limits];
    for (unsigned k = 0; k < md->n_fields; k++)
        lim[k] = classify(&md->fields[k]);
    n_field_limits += md->n_fields;
    msg_limits[i] = (struct msg_limits){md, lim};
    n_msg_types++;
    for (unsigned k = 0; k < md->n_fields; k++)
        if (md->fields[k].type == PROTOBUF_C_TYPE_MESSAGE)
            limits_add(md->fields[k].descriptor);
}

static void limits_init(void)
{
    limits_add(&cpx__v1__client_frame__descriptor);
    limits_add(&cpx__v1__server_frame__descriptor);
    limits_add(&cpx__v1__audit_leaf__descriptor);
}

static uint32_t default_limit(const ProtobufCFieldDescriptor *fd)
{
    return fd->label == PROTOBUF_C_LABEL_REPEATED ? CPX_MAX_REPEATED : CPX_MAX_SHORT_TEXT;
}

static void walk(vctx *c, const ProtobufCMessage *m);

static void walk_string(vctx *c, uint32_t lim, const char *s)
{
    if (!s)
        return;
    size_t len = strlen(s);
    if (len > lim)
        verr(c, NULL, "too_long", "at most %u bytes of UTF-8, got %zu", lim, len);
    else if (!cpx_utf8_valid(s, len))
        verr(c, NULL, "utf8", "not valid UTF-8 text");
}

static void walk_date(vctx *c, const Cpx__V1__Date *d)
{
    if (!cpx_date_valid((int)d->year, (int)d->month, (int)d->day))
        verr(c, NULL, "date", "%u-%02u-%02u is not a calendar date (year 1900-2199)",
             d->year, d->month, d->day);
}

static void walk_field(vctx *c, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
                       uint32_t lim)
{
    const char *base = (const char *)m;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t which;
        memcpy(&which, base + fd->quantifier_offset, sizeof which);
        if (which != fd->id)
            return;
    }
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n;
        memcpy(&n, base + fd->quantifier_offset, sizeof n);
        if (!n)
            return;
        if (n > lim) {
            size_t mark = push(c, fd->name);
            verr(c, NULL, "too_many", "at most %u entries, got %zu", lim, n);
            pop(c, mark);
            return;
        }
        const void *arr;
        memcpy(&arr, base + fd->offset, sizeof arr);
        if (fd->type == PROTOBUF_C_TYPE_ENUM) {
            const int *v = arr;
            const ProtobufCEnumDescriptor *ed = fd->descriptor;
            uint64_t seen = 0;
            for (size_t i = 0; i < n; i++) {
                size_t mark = push_idx(c, fd->name, i);
                if (v[i] == 0)
                    verr(c, NULL, "unspecified", "%s is not a value here",
                         enum_name(ed, 0));
                else if (!protobuf_c_enum_descriptor_get_value(ed, v[i]))
                    verr(c, NULL, "enum_range", "%d is not a known %s value", v[i], ed->short_name);
                else if (v[i] > 0 && v[i] < 64) {
                    if (seen & (1ULL << v[i]))
                        verr(c, NULL, "duplicate", "%s is listed twice", enum_name(ed, v[i]));
                    seen |= 1ULL << v[i];
                }
                pop(c, mark);
            }
        } else if (fd->type == PROTOBUF_C_TYPE_STRING) {
            char *const *v = arr;
            for (size_t i = 0; i < n; i++) {
                size_t mark = push_idx(c, fd->name, i);
                walk_string(c, lim, v[i]); /* the field's bound, as before: 32 for recipients */
                pop(c, mark);
            }
        } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            ProtobufCMessage *const *v = arr;
            for (size_t i = 0; i < n; i++) {
                if (!v[i])
                    continue;
                size_t mark = push_idx(c, fd->name, i);
                walk(c, v[i]);
                pop(c, mark);
            }
        }
        return;
    }
    switch (fd->type) {
    case PROTOBUF_C_TYPE_ENUM: {
        int v;
        memcpy(&v, base + fd->offset, sizeof v);
        if (v != 0 && !protobuf_c_enum_descriptor_get_value(fd->descriptor, v)) {
            size_t mark = push(c, fd->name);
            verr(c, NULL, "enum_range", "%d is not a known %s value", v,
                 ((const ProtobufCEnumDescriptor *)fd->descriptor)->short_name);
            pop(c, mark);
        }
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s;
        memcpy(&s, base + fd->offset, sizeof s);
        if (s && *s) {
            size_t mark = push(c, fd->name);
            walk_string(c, lim, s);
            pop(c, mark);
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub;
        memcpy(&sub, base + fd->offset, sizeof sub);
        if (sub) {
            size_t mark = push(c, fd->name);
            walk(c, sub);
            pop(c, mark);
        }
        break;
    }
    default:
        break;
    }
}

static void walk(vctx *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *md = m->descriptor;
    /* Fields this schema does not know would travel outside every signature and
     * commitment check the gateway can make: refuse them (upgrade the gateway first). */
    if (m->n_unknown_fields)
        verr(c, NULL, "unknown_field", "field number %u is not in the cpx.v1 schema this gateway speaks",
             m->unknown_fields[0].tag);
    if (md == &cpx__v1__date__descriptor) {
        walk_date(c, (const Cpx__V1__Date *)m);
        return;
    }
    const uint32_t *lim = limits_for(md);
    for (unsigned i = 0; i < md->n_fields; i++)
        walk_field(c, m, &md->fields[i], lim ? lim[i] : default_limit(&md->fields[i]));
}

/* ---- minors --------------------------------------------------------------------------- */

/* Identity rules; for a DiscoveryReport (report = true) also the town and the age. */
static void check_minor(vctx *c, const Cpx__V1__MinorIdentity *mi, bool report)
{
    cpx_idnum_info_t info;
    bool id_ok = false;
    int64_t born = -1;
    if (has(mi->id_number)) {
        id_ok = need_idnum(c, "id_number", mi->id_number, true, &info);
        if (mi->id_unknown_reason != 0)
            verr(c, "id_unknown_reason", "id_or_reason",
                 "give either id_number or id_unknown_reason, not both");
    } else {
        if (mi->id_unknown_reason == 0)
            verr(c, "id_number", "id_or_reason",
                 "give the citizen ID number, or id_unknown_reason with name, sex and birth_date");
        else {
            if (!has(mi->name))
                verr(c, "name", "required", "the name is required when the ID number is unknown "
                     "(a temporary name is acceptable)");
            if (mi->sex == 0)
                verr(c, "sex", "required", "sex is required when the ID number is unknown");
            if (!mi->birth_date)
                verr(c, "birth_date", "required",
                     "the (estimated) birth date is required when the ID number is unknown");
        }
    }
    int64_t bd = day_of(mi->birth_date);
    if (id_ok) {
        born = cpx_days_from_civil(info.year, info.month, info.day);
        if (bd >= 0 && bd != born)
            verr(c, "birth_date", "birth_date_mismatch",
                 "differs from the birth date in the ID number (%04d-%02d-%02d)", info.year,
                 info.month, info.day);
        if ((mi->sex == CPX__V1__SEX__MALE && !info.male) ||
            (mi->sex == CPX__V1__SEX__FEMALE && info.male))
            verr(c, "sex", "sex_mismatch", "differs from the sex the ID number encodes (%s)",
                 info.male ? "MALE" : "FEMALE");
    } else if (bd >= 0 && !has(mi->id_number)) {
        born = bd;
    }
    if (report) {
        need_dept(c, "town", mi->town, true);
        if (born >= 0 && c->env) {
            if (born > c->created_day)
                verr(c, has(mi->id_number) ? "id_number" : "birth_date", "minor_age",
                     "the birth date is after the report was created");
            else if (cpx_age_years(born, c->created_day) >= 18)
                verr(c, has(mi->id_number) ? "id_number" : "birth_date", "minor_age",
                     "the person was 18 or older when the report was created: cpx reports are "
                     "about minors");
        }
    } else {
        need_dept(c, "town", mi->town, false);
    }
}

static int minor_age(const vctx *c, const Cpx__V1__MinorIdentity *mi)
{
    int64_t born = -1;
    if (has(mi->id_number)) {
        cpx_idnum_info_t info;
        if (cpx_idnum_check(mi->id_number, c->today, &info) == CPX_IDNUM_OK)
            born = cpx_days_from_civil(info.year, info.month, info.day);
    } else {
        born = day_of(mi->birth_date);
    }
    return born < 0 ? -1 : cpx_age_years(born, c->created_day);
}

/* ---- DiscoveryReport -------------------------------------------------------------------- */

static bool incapacitated(int s)
{
    return s >= CPX__V1__PARENT_SITUATION__DETAINED && s <= CPX__V1__PARENT_SITUATION__PARENT_UNKNOWN;
}

static bool under_duty(int role)
{
    return role == CPX__V1__REPORTER_ROLE__TEACHER || role == CPX__V1__REPORTER_ROLE__DOCTOR ||
           role == CPX__V1__REPORTER_ROLE__COMMUNITY_WORKER ||
           role == CPX__V1__REPORTER_ROLE__RELATIVE;
}

static void not_applicable(vctx *c, const char *field, bool present, const char *cat,
                           const char *for_what)
{
    if (present)
        verr(c, field, "not_applicable", "%s is only for %s, not %s: leave it empty", field,
             for_what, cat);
}

static void check_parent_missing(vctx *c, const char *field, int s)
{
    if (s == 0)
        verr(c, field, "required",
             "GUARDIANSHIP_MISSING needs the %s's situation", field);
    else if (!incapacitated(s))
        verr(c, field, "parent_situation",
             "the %s is %s: guardianship is missing only when both parents are detained, in "
             "compulsory rehabilitation, seriously ill, severely disabled, missing, dead or "
             "unknown (policy 二(二))",
             field, enum_name(&cpx__v1__parent_situation__descriptor, s));
}

static void check_category(vctx *c, const Cpx__V1__CategoryDetail *cd,
                           const Cpx__V1__DiscoveryReport *r)
{
    const char *cat = enum_name(&cpx__v1__category__descriptor, cd->category);
    int k = cd->category;
    if (k == 0) {
        verr(c, "category", "required", "the category is required");
        return;
    }
    bool parents_ok = k == CPX__V1__CATEGORY__GUARDIANSHIP_MISSING ||
                      k == CPX__V1__CATEGORY__STREET_OR_ORPHAN;
    if (!parents_ok) {
        not_applicable(c, "father", cd->father != 0, cat, "GUARDIANSHIP_MISSING or STREET_OR_ORPHAN");
        not_applicable(c, "mother", cd->mother != 0, cat, "GUARDIANSHIP_MISSING or STREET_OR_ORPHAN");
    }
    if (k != CPX__V1__CATEGORY__HARMED)
        not_applicable(c, "harm_types", cd->n_harm_types > 0, cat, "HARMED");
    if (k != CPX__V1__CATEGORY__STREET_OR_ORPHAN)
        not_applicable(c, "street", cd->n_street > 0, cat, "STREET_OR_ORPHAN");
    if (k != CPX__V1__CATEGORY__SPECIAL_HARDSHIP)
        not_applicable(c, "hardships", cd->n_hardships > 0, cat, "SPECIAL_HARDSHIP");
    if (k != CPX__V1__CATEGORY__OTHER)
        not_applicable(c, "other_reason", has(cd->other_reason), cat, "OTHER");

    switch (k) {
    case CPX__V1__CATEGORY__GUARDIANSHIP_MISSING:
        check_parent_missing(c, "father", cd->father);
        check_parent_missing(c, "mother", cd->mother);
        break;
    case CPX__V1__CATEGORY__HARMED:
        if (!cd->n_harm_types)
            verr(c, "harm_types", "required", "HARMED needs at least one harm type");
        break;
    case CPX__V1__CATEGORY__STREET_OR_ORPHAN: {
        if (!cd->n_street)
            verr(c, "street", "required", "STREET_OR_ORPHAN needs at least one street situation");
        bool orphan = false;
        for (size_t i = 0; i < cd->n_street; i++)
            orphan |= cd->street[i] == CPX__V1__STREET_SITUATION__ORPHAN;
        if (orphan) {
            const char *who[2] = {"father", "mother"};
            int s[2] = {cd->father, cd->mother};
            for (int i = 0; i < 2; i++)
                if (s[i] != 0 && s[i] != CPX__V1__PARENT_SITUATION__DEAD &&
                    s[i] != CPX__V1__PARENT_SITUATION__PARENT_UNKNOWN)
                    verr(c, who[i], "orphan_parents",
                         "ORPHAN means both parents are dead or unknown, but the %s is %s",
                         who[i], enum_name(&cpx__v1__parent_situation__descriptor, s[i]));
        }
        break;
    }
    case CPX__V1__CATEGORY__SPECIAL_HARDSHIP:
        if (!cd->n_hardships)
            verr(c, "hardships", "required", "SPECIAL_HARDSHIP needs at least one hardship");
        for (size_t i = 0; i < cd->n_hardships; i++) {
            if (cd->hardships[i] != CPX__V1__HARDSHIP__SERIOUS_ILLNESS)
                continue;
            const Cpx__V1__HealthDetail *h = r->health;
            if ((!h || (!h->n_illnesses && !has(h->notes))) && !withheld(c, 8)) {
                size_t mark = push_idx(c, "hardships", i);
                verr(c, NULL, "illness_detail",
                     "SERIOUS_ILLNESS needs health.illnesses or health.notes in the report");
                pop(c, mark);
            }
        }
        break;
    case CPX__V1__CATEGORY__OTHER:
        if (!has(cd->other_reason))
            verr(c, "other_reason", "required",
                 "OTHER needs the reason the agency proposes the minor for help");
        break;
    default:
        break;
    }
}

static void check_discovery(vctx *c, const Cpx__V1__DiscoveryReport *r)
{
    size_t mark;
    if (!r->reporter) {
        if (!withheld(c, 1))
            verr(c, "reporter", "required", "the reporter is required");
    } else {
        mark = push(c, "reporter");
        int role = r->reporter->role;
        if (role == 0)
            verr(c, "role", "required", "the reporter's role is required");
        else if (protobuf_c_enum_descriptor_get_value(&cpx__v1__reporter_role__descriptor, role) &&
                 (bool)r->reporter->duty_to_report != under_duty(role))
            verr(c, "duty_to_report", "duty_to_report",
                 under_duty(role)
                     ? "a %s is under the duty to report (teachers, doctors, community workers, "
                       "relatives): set duty_to_report"
                     : "a %s is not under the duty to report (only teachers, doctors, community "
                       "workers and relatives are): clear duty_to_report",
                 enum_name(&cpx__v1__reporter_role__descriptor, role));
        pop(c, mark);
    }
    need_enum(c, "channel", 2, r->channel, "the channel the report came through is required");
    int age = -1;
    if (!r->minor) {
        if (!withheld(c, 3))
            verr(c, "minor", "required", "the minor's identity is required");
    } else {
        mark = push(c, "minor");
        check_minor(c, r->minor, true);
        pop(c, mark);
        age = minor_age(c, r->minor);
    }
    if (!r->n_categories) {
        if (!withheld(c, 4))
            verr(c, "categories", "required", "at least one of the five categories is required");
    } else {
        unsigned seen = 0;
        for (size_t i = 0; i < r->n_categories && i < CPX_MAX_CATEGORIES; i++) {
            const Cpx__V1__CategoryDetail *cd = r->categories[i];
            if (!cd)
                continue;
            mark = push_idx(c, "categories", i);
            if (cd->category > 0 && cd->category < 32) {
                if (seen & (1u << cd->category))
                    verr(c, "category", "duplicate", "category %s is listed twice",
                         enum_name(&cpx__v1__category__descriptor, cd->category));
                seen |= 1u << cd->category;
            }
            check_category(c, cd, r);
            pop(c, mark);
        }
    }
    if (!r->observation) {
        if (!withheld(c, 5))
            verr(c, "observation", "required", "what was observed, and when, is required");
    } else {
        mark = push(c, "observation");
        const Cpx__V1__Observation *o = r->observation;
        if (!has(o->what))
            verr(c, "what", "required", "describe what was seen or heard");
        if (o->observed_ms <= 0)
            verr(c, "observed_ms", "required", "when it was observed (UTC ms) is required");
        else if (o->observed_ms > c->now_ms + CPX_MAX_FUTURE_SKEW_MS)
            verr(c, "observed_ms", "future", "is in the future");
        /* observed_ms > 0 here, so subtracting cannot overflow (created_ms + skew could) */
        else if (c->env && o->observed_ms - CPX_MAX_FUTURE_SKEW_MS > c->env->created_ms)
            verr(c, "observed_ms", "after_created", "is after the report was created");
        pop(c, mark);
    }
    for (size_t i = 0; i < r->n_circumstances && i < CPX_MAX_REPEATED; i++) {
        if (r->circumstances[i] == CPX__V1__CIRCUMSTANCE__NEEDS_SKILLS_TRAINING && age >= 0 &&
            age < 16) {
            mark = push_idx(c, "circumstances", i);
            verr(c, NULL, "skills_training_age",
                 "the skills-training channel is for minors aged 16 or over (policy 三(七)3); "
                 "this minor is %d", age);
            pop(c, mark);
        }
    }
    if (r->health && r->health->disability_grade > 4) {
        mark = push(c, "health");
        verr(c, "disability_grade", "range", "disability grade is 1 (most severe) to 4, or 0 for none");
        pop(c, mark);
    }
}

/* ---- other bodies --------------------------------------------------------------------- */

static void check_assessment(vctx *c, const Cpx__V1__Assessment *a)
{
    need_enum(c, "guardianship", 1, a->guardianship, "the guardianship assessment is required");
    need_enum(c, "risk", 2, a->risk, "the risk level (LOW, MEDIUM, HIGH, CRITICAL) is required");
    int64_t d = need_date(c, "assessed_on", 6, a->assessed_on, true);
    if (d >= 0 && c->env && d > c->created_day)
        verr(c, "assessed_on", "future", "is after the message was created");
    else if (d >= 0 && d < cpx_days_from_civil(2015, 1, 1))
        verr(c, "assessed_on", "date_range", "is before 2015");
    if (a->minor) {
        size_t mark = push(c, "minor");
        check_minor(c, a->minor, false);
        pop(c, mark);
    }
}

static void check_referral(vctx *c, const Cpx__V1__Referral *r)
{
    if (!withheld(c, 1))
        need_dept(c, "to", r->to, true);
    need_enum(c, "task", 2, r->task, "the task being referred is required");
    if (cpx_dept_code_valid(r->to) && r->task > 0 && r->task < N_TASKS &&
        !cpx_resp_table_owns(c->resp, r->task, r->to)) {
        char owners[160] = "";
        size_t used = 0;
        for (size_t i = 0; i < cpx_resp_table_count(c->resp, r->task); i++) {
            int n = snprintf(owners + used, sizeof owners - used, "%s%s", i ? ", " : "",
                             cpx_resp_table_dept(c->resp, r->task, i));
            if (n < 0 || (size_t)n >= sizeof owners - used)
                break;
            used += (size_t)n;
        }
        verr(c, "to", "task_owner", "%s is owned by %s, not by %s (responsibility table)",
             enum_name(&cpx__v1__task__descriptor, r->task), used ? owners : "nobody", r->to);
    }
    if (r->due_by_ms == 0) {
        if (!withheld(c, 4))
            verr(c, "due_by_ms", "required", "the due-by time (UTC ms) is required");
    } else if (c->env && r->due_by_ms <= c->env->created_ms) {
        verr(c, "due_by_ms", "due_by", "must be after the envelope's created_ms");
    }
    need_enum(c, "priority", 5, r->priority, "the referral's priority is required");
    need_str(c, "reason", 3, r->reason, "say why the minor is referred");
}

static bool aid_illness(int i)
{
    return i >= CPX__V1__ILLNESS__AIDS && i <= CPX__V1__ILLNESS__RARE_DISEASE;
}

static void check_disposition(vctx *c, const Cpx__V1__Disposition *d)
{
    need_id16(c, "referral_id", &d->referral_id, !withheld(c, 1));
    need_enum(c, "action", 2, d->action, "the action taken is required");
    need_enum(c, "status", 3, d->status, "the status (ACCEPTED, IN_PROGRESS, DONE, DECLINED) is required");
    bool declined = d->status == CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED;
    if (declined && !has(d->decline_reason) && !withheld(c, 4))
        verr(c, "decline_reason", "required", "say why the referral is declined");
    if (!declined && has(d->decline_reason))
        verr(c, "decline_reason", "not_applicable", "only a DECLINED disposition has a decline reason");
    if (d->action == CPX__V1__ACTION__ONE_OFF_MEDICAL_AID && !declined) {
        if (d->amount_fen != ONE_OFF_MEDICAL_AID_FEN && !withheld(c, 5))
            verr(c, "amount_fen", "medical_aid_amount",
                 "the one-off medical aid is CNY 10,000 (amount_fen 1000000), got %llu fen",
                 (unsigned long long)d->amount_fen);
        if (!aid_illness(d->illness) && !withheld(c, 6))
            verr(c, "illness", "medical_aid_illness",
                 "the one-off medical aid is for AIDS, leukaemia (incl. aplastic anaemia, "
                 "haemophilia), congenital heart disease, uraemia, malignant tumour or a rare "
                 "disease (policy 三(三)3)");
        int fe = d->family_economy;
        if (fe != CPX__V1__FAMILY_ECONOMY__SUBSISTENCE_ALLOWANCE &&
            fe != CPX__V1__FAMILY_ECONOMY__LOW_INCOME &&
            fe != CPX__V1__FAMILY_ECONOMY__ILLNESS_IMPOVERISHED && !withheld(c, 7))
            verr(c, "family_economy", "medical_aid_family",
                 "the one-off medical aid is for subsistence-allowance, low-income or "
                 "illness-impoverished families");
    }
    int64_t from = day_of(d->effective_from), to = day_of(d->effective_to);
    if (from >= 0 && to >= 0 && to <= from)
        verr(c, "effective_to", "date_order", "must be after effective_from");
    if (d->minor) {
        size_t mark = push(c, "minor");
        check_minor(c, d->minor, false);
        pop(c, mark);
    }
}

static void check_follow_up(vctx *c, const Cpx__V1__FollowUp *f)
{
    int64_t d = need_date(c, "visit_date", 1, f->visit_date, true);
    if (d >= 0 && c->env && d > c->created_day)
        verr(c, "visit_date", "future", "is after the message was created");
    need_str(c, "visitor", 2, f->visitor, "who made the visit is required");
    need_enum(c, "outcome", 3, f->outcome, "the visit outcome is required");
}

static void check_revocation(vctx *c, const Cpx__V1__ReferralRevocation *r)
{
    need_id16(c, "referral_id", &r->referral_id, !withheld(c, 1));
    need_str(c, "reason", 2, r->reason, "say why the referral is withdrawn");
}

static void check_release(vctx *c, const Cpx__V1__ReleaseNotice *r)
{
    need_enum(c, "parent_role", 1, r->parent_role, "say whether the father or the mother is released");
    need_idnum(c, "parent_id_number", r->parent_id_number, !withheld(c, 2), NULL);
    need_enum(c, "kind", 4, r->kind, "the kind of release is required");
    need_date(c, "release_date", 5, r->release_date, true);
    need_idnum(c, "minor_id_number", r->minor_id_number, false, NULL);
}

static void check_seal_order(vctx *c, const Cpx__V1__SealOrder *s)
{
    need_idnum(c, "subject_id_number", s->subject_id_number, false, NULL);
    for (size_t i = 0; i < s->n_case_ids && i < CPX_MAX_REPEATED; i++) {
        size_t mark = push_idx(c, "case_ids", i);
        if (!has(s->case_ids[i]))
            verr(c, NULL, "required", "empty case id");
        need_case_id(c, NULL, s->case_ids[i]);
        pop(c, mark);
    }
    for (size_t i = 0; i < s->n_message_ids && i < CPX_MAX_REPEATED; i++) {
        size_t mark = push_idx(c, "message_ids", i);
        need_id16(c, NULL, &s->message_ids[i], true);
        pop(c, mark);
    }
    if (!has(s->subject_id_number) && !s->n_case_ids && !s->n_message_ids &&
        !withheld(c, 1) && !withheld(c, 2) && !withheld(c, 3))
        verr(c, "subject_id_number", "seal_subject",
             "name what is sealed: the subject's ID number, case ids or message ids");
    need_str(c, "order_number", 4, s->order_number, "the sealing order's number is required");
    need_str(c, "legal_basis", 5, s->legal_basis, "the legal basis of the order is required");
    int64_t d = day_of(s->ordered_on);
    if (d >= 0 && c->env && d > c->created_day)
        verr(c, "ordered_on", "future", "is after the message was created");
}

static void check_subject(vctx *c, const char *id, const char *case_id, bool required)
{
    if (has(id) && has(case_id))
        verr(c, "subject_case_id", "one_subject",
             "give subject_id_number or subject_case_id, not both");
    else if (required && !has(id) && !has(case_id))
        verr(c, "subject_id_number", "one_subject",
             "the subject is required: subject_id_number or subject_case_id");
    need_idnum(c, "subject_id_number", id, false, NULL);
    need_case_id(c, "subject_case_id", case_id);
}

static void check_access_request(vctx *c, const Cpx__V1__SealedAccessRequest *r)
{
    need_str(c, "officer_id", 1, r->officer_id, "the requesting officer's id is required");
    check_subject(c, r->subject_id_number, r->subject_case_id, true);
    need_enum(c, "basis", 4, r->basis, "the legal basis (CASE_HANDLING or STATUTORY_QUERY) is required");
    if (r->basis == CPX__V1__LEGAL_BASIS__CASE_HANDLING)
        need_str(c, "requester_case_number", 5, r->requester_case_number,
                 "CASE_HANDLING needs the number of the case being handled");
    if (r->basis == CPX__V1__LEGAL_BASIS__STATUTORY_QUERY)
        need_str(c, "regulation", 6, r->regulation,
                 "STATUTORY_QUERY needs the regulation that allows the query");
    need_str(c, "purpose", 7, r->purpose, "the purpose of the request is required");
}

static void check_access_decision(vctx *c, const Cpx__V1__SealedAccessDecision *d)
{
    need_id16(c, "request_id", &d->request_id, true);
    need_enum(c, "outcome", 2, d->outcome, "the outcome is required");
    if (d->outcome == CPX__V1__ACCESS_OUTCOME__GRANTED) {
        need_id16(c, "grant_id", &d->grant_id, true);
        if (c->env && d->expires_ms <= c->env->created_ms)
            verr(c, "expires_ms", "expires", "a grant must expire after it is given");
        if (d->reads_allowed == 0)
            verr(c, "reads_allowed", "required", "a grant allows at least one read");
    } else {
        need_id16(c, "grant_id", &d->grant_id, false);
    }
    for (size_t i = 0; i < d->n_records && i < CPX_MAX_REPEATED; i++)
        if (d->records[i].len > CPX_MAX_ENVELOPE_BYTES) {
            size_t mark = push_idx(c, "records", i);
            verr(c, NULL, "too_large", "a record is at most %u bytes", CPX_MAX_ENVELOPE_BYTES);
            pop(c, mark);
        }
}

static void check_access_read(vctx *c, const Cpx__V1__SealedAccessRead *r)
{
    need_id16(c, "grant_id", &r->grant_id, true);
    need_str(c, "officer_id", 2, r->officer_id, "the reading officer's id is required");
    check_subject(c, r->subject_id_number, r->subject_case_id, false);
}

static void check_access_approval(vctx *c, const Cpx__V1__SealedAccessApproval *a)
{
    need_id16(c, "request_id", &a->request_id, true);
    need_str(c, "approver", 3, a->approver, "the approver is required");
    if (!a->approve)
        need_str(c, "reason", 4, a->reason, "a refusal needs a reason");
}

static void check_escalation(vctx *c, const Cpx__V1__Escalation *e)
{
    need_id16(c, "item_id", &e->item_id, true);
    need_enum(c, "kind", 2, e->kind, "the deadline kind is required");
    need_dept(c, "department", e->department, true);
    if (e->due_ms <= 0)
        verr(c, "due_ms", "required", "the missed deadline (UTC ms) is required");
    if (e->overdue_by_ms < 0)
        verr(c, "overdue_by_ms", "range", "cannot be negative");
    if (e->level == 0)
        verr(c, "level", "range", "escalation levels start at 1");
}

static void check_notice(vctx *c, const Cpx__V1__Notice *n)
{
    need_enum(c, "kind", 1, n->kind, "the notice kind is required");
    need_str(c, "text", 2, n->text, "the notice text is required");
    for (size_t i = 0; i < n->n_related && i < CPX_MAX_REPEATED; i++) {
        size_t mark = push_idx(c, "related", i);
        need_id16(c, NULL, &n->related[i], true);
        pop(c, mark);
    }
}

/* ---- envelope --------------------------------------------------------------------------- */

/* Expected RFC 9162 inclusion-path length of leaf m in a tree of n leaves. */
static size_t path_len(uint64_t m, uint64_t n)
{
    size_t len = 0;
    while (n > 1) {
        uint64_t k = 1;
        while (k * 2 < n)
            k *= 2;
        if (m < k) {
            n = k;
        } else {
            m -= k;
            n -= k;
        }
        len++;
    }
    return len;
}

static void check_signature(vctx *c, const Cpx__V1__Signature *s)
{
    size_t mark = push(c, "signature");
    if (s->key_id.len != 8)
        verr(c, "key_id", s->key_id.len ? "length" : "required",
             "the key id is the first 8 bytes of SHA-256 of the public key, got %zu bytes",
             s->key_id.len);
    bool ed = s->ed25519.len > 0;
    if (ed && s->batch)
        verr(c, "batch", "signature_exclusive",
             "a signature is either ed25519 or batch, not both");
    else if (!ed && !s->batch)
        verr(c, "ed25519", "required", "an ed25519 signature or a batch proof is required");
    if (ed && s->ed25519.len != 64)
        verr(c, "ed25519", "length", "an Ed25519 signature is 64 bytes, got %zu", s->ed25519.len);
    if (s->batch) {
        const Cpx__V1__BatchProof *b = s->batch;
        size_t m2 = push(c, "batch");
        if (b->size == 0 || b->size > CPX_MAX_BATCH_ENVELOPES)
            verr(c, "size", "range", "a batch holds 1 to %u envelopes", CPX_MAX_BATCH_ENVELOPES);
        else if (b->index >= b->size)
            verr(c, "index", "range", "the index must be less than the batch size");
        else if (b->n_path <= CPX_MAX_BATCH_PATH && b->n_path != path_len(b->index, b->size))
            verr(c, "path", "path_length",
                 "leaf %llu of %llu needs an inclusion path of %zu hashes, got %zu",
                 (unsigned long long)b->index, (unsigned long long)b->size,
                 path_len(b->index, b->size), b->n_path);
        for (size_t i = 0; i < b->n_path && i <= CPX_MAX_BATCH_PATH; i++)
            if (b->path[i].len != 32) {
                size_t m3 = push_idx(c, "path", i);
                verr(c, NULL, "length", "a path entry is a 32-byte hash, got %zu", b->path[i].len);
                pop(c, m3);
            }
        if (b->root_signature.len != 64)
            verr(c, "root_signature", b->root_signature.len ? "length" : "required",
                 "the batch root signature is 64 bytes, got %zu", b->root_signature.len);
        pop(c, m2);
    }
    pop(c, mark);
}

static void check_commitments(vctx *c, const cpx_envelope_t *e)
{
    const ProtobufCMessage *body = cpx_envelope_body(e);
    uint32_t prev = 0;
    for (size_t i = 0; i < e->n_commitments && i < CPX_MAX_REPEATED; i++) {
        const Cpx__V1__FieldCommitment *fc = e->commitments[i];
        if (!fc)
            continue;
        size_t mark = push_idx(c, "commitments", i);
        if (fc->field <= prev)
            verr(c, "field", "order", "commitments must be sorted by field number, without repeats");
        else if (body && !protobuf_c_message_descriptor_get_field(body->descriptor, fc->field))
            verr(c, "field", "unknown_field", "%u is not a field of %s", fc->field,
                 body->descriptor->short_name);
        prev = fc->field;
        if (fc->digest.len != 32)
            verr(c, "digest", "length", "a commitment is a 32-byte SHA-256 digest, got %zu",
                 fc->digest.len);
        pop(c, mark);
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < e->n_salts && i < CPX_MAX_REPEATED; i++) {
        const Cpx__V1__FieldSalt *fs = e->salts[i];
        if (!fs)
            continue;
        size_t mark = push_idx(c, "salts", i);
        if (fs->salt.len != 16)
            verr(c, "salt", "length", "a salt is 16 bytes, got %zu", fs->salt.len);
        bool committed = false;
        for (size_t j = 0; j < e->n_commitments; j++)
            if (e->commitments[j] && e->commitments[j]->field == fs->field)
                committed = true;
        if (!committed)
            verr(c, "field", "uncommitted", "salt for field %u, which has no commitment", fs->field);
        else if (fs->field < 64) {
            if (seen & (1ULL << fs->field))
                verr(c, "field", "duplicate", "two salts for field %u", fs->field);
            seen |= 1ULL << fs->field;
        }
        pop(c, mark);
    }
}

static void check_body(vctx *c, const cpx_envelope_t *e)
{
    const char *name = cpx_body_kind_name((int)e->body_case);
    size_t mark = push(c, name);
    switch (e->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT: check_discovery(c, e->discovery_report); break;
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT: check_assessment(c, e->assessment); break;
    case CPX__V1__ENVELOPE__BODY_REFERRAL: check_referral(c, e->referral); break;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION: check_disposition(c, e->disposition); break;
    case CPX__V1__ENVELOPE__BODY_FOLLOW_UP: check_follow_up(c, e->follow_up); break;
    case CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE: check_release(c, e->release_notice); break;
    case CPX__V1__ENVELOPE__BODY_SEAL_ORDER: check_seal_order(c, e->seal_order); break;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_REQUEST:
        check_access_request(c, e->sealed_access_request);
        break;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_DECISION:
        check_access_decision(c, e->sealed_access_decision);
        break;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_READ: check_access_read(c, e->sealed_access_read); break;
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_APPROVAL:
        check_access_approval(c, e->sealed_access_approval);
        break;
    case CPX__V1__ENVELOPE__BODY_ESCALATION: check_escalation(c, e->escalation); break;
    case CPX__V1__ENVELOPE__BODY_NOTICE: check_notice(c, e->notice); break;
    case CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION:
        check_revocation(c, e->referral_revocation);
        break;
    default: break;
    }
    pop(c, mark);
}

static void check_envelope(vctx *c, const cpx_envelope_t *e)
{
    const cpx_envelope_t *outer = c->env;
    c->env = e;
    c->created_day = cpx_days_from_ms(e->created_ms);

    need_id16(c, "message_id", &e->message_id, true);
    need_dept(c, "sender", e->sender, true);
    for (size_t i = 0; i < e->n_recipients && i < CPX_MAX_RECIPIENTS; i++) {
        size_t mark = push_idx(c, "recipients", i);
        need_dept(c, NULL, e->recipients[i], true);
        for (size_t j = 0; j < i; j++)
            if (e->recipients[i] && e->recipients[j] && !strcmp(e->recipients[i], e->recipients[j])) {
                verr(c, NULL, "duplicate", "%s is listed twice", e->recipients[i]);
                break;
            }
        pop(c, mark);
    }
    need_case_id(c, "case_id", e->case_id);
    if (e->created_ms <= MS_2015_01_01)
        verr(c, "created_ms", e->created_ms ? "time_range" : "required",
             "the creation time (UTC ms) is required and after 2015-01-01");
    else if (e->created_ms > c->now_ms + CPX_MAX_FUTURE_SKEW_MS)
        verr(c, "created_ms", "future",
             "is more than 5 minutes ahead of the gateway's clock: check the sender's clock");
    need_enum(c, "priority", 0, e->priority, "the priority (ROUTINE, URGENT, IMMEDIATE) is required");
    need_id16(c, "in_reply_to", &e->in_reply_to, false);
    need_enum(c, "sensitivity", 0, e->sensitivity, "the sensitivity (NORMAL or SEALED) is required");
    if (e->body_case == 0) {
        verr(c, "body", "required", "the envelope carries no body");
    } else {
        if ((int)e->body_kind != (int)e->body_case)
            verr(c, "body_kind", "body_kind", "must be %s, the kind of the body it carries",
                 enum_name(&cpx__v1__body_kind__descriptor, (int)e->body_case));
        if (cpx_envelope_body(e))
            check_body(c, e);
        else
            verr(c, cpx_body_kind_name((int)e->body_case), "required", "the body is empty");
    }
    if (e->signature)
        check_signature(c, e->signature);
    else if (!(c->flags & CPX_VALIDATE_UNSIGNED))
        verr(c, "signature", "required", "the sender's signature is required");
    check_commitments(c, e);
    walk(c, &e->base);
    c->env = outer;
}

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ctx_init(vctx *c, const cpx_validate_opts_t *opts, cpx_errors_t *errs)
{
    pthread_once(&limits_once, limits_init);
    memset(c, 0, offsetof(vctx, segs));
    c->depth = 0;
    c->errs = errs;
    c->resp = opts && opts->resp ? opts->resp : &seed_table;
    c->flags = opts ? opts->flags : 0;
    c->now_ms = opts && opts->now_ms ? opts->now_ms : clock_ms();
    c->today = cpx_days_from_ms(c->now_ms);
}

static int result(const cpx_errors_t *errs, size_t before, bool trunc_before)
{
    return errs->count > before || (errs->truncated && !trunc_before) ? CPX_ERR_INVALID : CPX_OK;
}

int cpx_validate_envelope(const cpx_envelope_t *env, const cpx_validate_opts_t *opts,
                          cpx_errors_t *errs)
{
    if (!env || !errs)
        return CPX_ERR_ARG;
    size_t before = errs->count;
    bool tb = errs->truncated;
    vctx c;
    ctx_init(&c, opts, errs);
    check_envelope(&c, env);
    return result(errs, before, tb);
}

static void check_submit(vctx *c, const Cpx__V1__Submit *s)
{
    size_t mark;
    switch (s->content_case) {
    case CPX__V1__SUBMIT__CONTENT_ENVELOPE:
        mark = push(c, "envelope");
        if (s->envelope)
            check_envelope(c, s->envelope);
        pop(c, mark);
        return;
    case CPX__V1__SUBMIT__CONTENT_BATCH:
        break;
    default:
        verr(c, "content", "required", "a Submit carries an envelope or a batch");
        return;
    }
    const Cpx__V1__Batch *b = s->batch;
    mark = push(c, "batch");
    if (!b || b->n_envelopes == 0) {
        verr(c, "envelopes", "required", "a batch holds at least one envelope");
    } else if (b->n_envelopes > CPX_MAX_BATCH_ENVELOPES) {
        verr(c, "envelopes", "too_many", "a batch holds at most %u envelopes, got %zu",
             CPX_MAX_BATCH_ENVELOPES, b->n_envelopes);
    } else {
        uint8_t seen[(CPX_MAX_BATCH_ENVELOPES + 7) / 8] = {0};
        const ProtobufCBinaryData *root = NULL;
        for (size_t i = 0; i < b->n_envelopes; i++) {
            const cpx_envelope_t *e = b->envelopes[i];
            size_t m2 = push_idx(c, "envelopes", i);
            if (e) {
                check_envelope(c, e);
                const Cpx__V1__BatchProof *bp = e->signature ? e->signature->batch : NULL;
                if (!bp) {
                    verr(c, "signature.batch", "batch_signature",
                         "every envelope of a batch carries a batch proof");
                } else {
                    if (bp->size != b->n_envelopes)
                        verr(c, "signature.batch.size", "batch_size",
                             "the proof is for a batch of %llu, this batch holds %zu",
                             (unsigned long long)bp->size, b->n_envelopes);
                    else if (bp->index < b->n_envelopes) {
                        if (seen[bp->index / 8] & (1u << (bp->index % 8)))
                            verr(c, "signature.batch.index", "duplicate",
                                 "two envelopes claim batch index %llu",
                                 (unsigned long long)bp->index);
                        seen[bp->index / 8] |= (uint8_t)(1u << (bp->index % 8));
                    }
                    if (!root)
                        root = &bp->root_signature;
                    else if (root->len != bp->root_signature.len ||
                             (root->len && memcmp(root->data, bp->root_signature.data, root->len)))
                        verr(c, "signature.batch.root_signature", "batch_root",
                             "all envelopes of a batch share one root signature");
                }
            }
            pop(c, m2);
        }
    }
    pop(c, mark);
}

int cpx_validate_submit(const Cpx__V1__Submit *submit, const cpx_validate_opts_t *opts,
                        cpx_errors_t *errs)
{
    if (!submit || !errs)
        return CPX_ERR_ARG;
    size_t before = errs->count;
    bool tb = errs->truncated;
    vctx c;
    ctx_init(&c, opts, errs);
    size_t mark = push(&c, "submit");
    check_submit(&c, submit);
    pop(&c, mark);
    return result(errs, before, tb);
}

static void check_delivery_ack(vctx *c, const Cpx__V1__DeliveryAck *a)
{
    if (a->delivery_id == 0)
        verr(c, "delivery_id", "required", "the delivery id being acknowledged is required");
    need_id16(c, "message_id", &a->message_id, true);
    need_enum(c, "status", 0, a->status, "the delivery status is required");
    if (a->status == CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL && !has(a->reason))
        verr(c, "reason", "required", "say why the local system refused the delivery");
    walk(c, &a->base);
}

int cpx_validate_client_frame(const cpx_client_frame_t *f, const cpx_validate_opts_t *opts,
                              cpx_errors_t *errs)
{
    if (!f || !errs)
        return CPX_ERR_ARG;
    size_t before = errs->count;
    bool tb = errs->truncated;
    vctx c;
    ctx_init(&c, opts, errs);
    size_t mark;
    switch (f->frame_case) {
    case CPX__V1__CLIENT_FRAME__FRAME_SUBMIT:
        mark = push(&c, "submit");
        if (f->submit)
            check_submit(&c, f->submit);
        pop(&c, mark);
        break;
    case CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK:
        mark = push(&c, "delivery_ack");
        check_delivery_ack(&c, f->delivery_ack);
        pop(&c, mark);
        break;
    case CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS: {
        const Cpx__V1__DeliveryAcks *d = f->delivery_acks;
        mark = push(&c, "delivery_acks");
        if (d->n_acks == 0)
            verr(&c, "acks", "required", "a DeliveryAcks frame holds at least one confirmation");
        else if (d->n_acks > CPX_MAX_GROUPED)
            verr(&c, "acks", "too_many", "a DeliveryAcks frame holds at most %u confirmations, got %zu",
                 CPX_MAX_GROUPED, d->n_acks);
        for (size_t i = 0; i < d->n_acks && i < CPX_MAX_GROUPED; i++) {
            size_t m2 = push_idx(&c, "acks", i);
            check_delivery_ack(&c, d->acks[i]);
            pop(&c, m2);
        }
        pop(&c, mark);
        break;
    }
    case CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT:
        break;
    default:
        verr(&c, "frame", "required", "the frame is empty");
    }
    return result(errs, before, tb);
}
