/* cpx/str.h — bounded string copies and number formatting for the hot paths.
 *
 * snprintf(dst, size, "%s", src) runs the whole printf machinery for a copy; the
 * gateway did that several times per message (about 2.5% of its server thread). These
 * do the same with strnlen and memcpy. Contract: size > 0; dst is always terminated;
 * the return value is the length written (truncated to size - 1). */
#ifndef CPX_STR_H
#define CPX_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline size_t cpx_strcopy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memmove(dst, src, n);  /* memmove: callers may pass overlapping buffers */
    dst[n] = '\0';
    return n;
}

/* Appends src at dst + at (at < size), as cpx_strcopy does; returns the new length. */
static inline size_t cpx_strappend(char *dst, size_t size, size_t at, const char *src)
{
    return at + cpx_strcopy(dst + at, size - at, src);
}

/* Decimal v, zero-padded to at least width digits, at dst + at as cpx_strappend does
 * (a number that does not fit is cut off at its end, like snprintf). */
static inline size_t cpx_strappend_u64(char *dst, size_t size, size_t at, uint64_t v,
                                       unsigned width)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width && n < sizeof tmp)
        tmp[n++] = '0';
    char out[24];
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return cpx_strappend(dst, size, at, out);
}

#endif
