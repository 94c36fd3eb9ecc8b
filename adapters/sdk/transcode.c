/* transcode.c — line-by-line conversion of UTF-8 / GB18030 / GBK input to UTF-8 with
 * iconv. Invalid bytes are refused with their offset: an agency must fix its export,
 * we never guess or substitute a character in a child's name. */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpx/adapter.h"

struct cpx_transcoder {
    iconv_t cd;
    const char *name;
    int first;          /* BOM check still due */
    char *buf;
    size_t cap;
};

cpx_transcoder_t *cpx_transcoder_new(const char *encoding)
{
    const char *name = NULL;
    if (!encoding || !strcasecmp(encoding, "UTF-8") || !strcasecmp(encoding, "UTF8"))
        name = "UTF-8";
    else if (!strcasecmp(encoding, "GB18030"))
        name = "GB18030";
    else if (!strcasecmp(encoding, "GBK") || !strcasecmp(encoding, "GB2312") ||
             !strcasecmp(encoding, "CP936"))
        name = "GBK";
    if (!name)
        return NULL;
    cpx_transcoder_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = name;
    t->first = 1;
    /* UTF-8 -> UTF-8 still goes through iconv: it is the validator. */
    t->cd = iconv_open("UTF-8", name);
    if (t->cd == (iconv_t)-1) {
        free(t);
        return NULL;
    }
    return t;
}

void cpx_transcoder_destroy(cpx_transcoder_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    iconv_close((*self_p)->cd);
    free((*self_p)->buf);
    free(*self_p);
    *self_p = NULL;
}

const char *cpx_transcoder_name(const cpx_transcoder_t *self) { return self->name; }

int cpx_transcode_line(cpx_transcoder_t *self, const char *in, size_t len, const char **out,
                       size_t *out_len, size_t *bad_offset)
{
    size_t skip = 0;
    if (self->first) {
        self->first = 0;
        if (len >= 3 && !memcmp(in, "\xEF\xBB\xBF", 3) && !strcmp(self->name, "UTF-8"))
            skip = 3;
        else if (len >= 4 && !memcmp(in, "\x84\x31\x95\x33", 4) && !strcmp(self->name, "GB18030"))
            skip = 4;
    }
    /* UTF-8 output is at most 2x a GBK/GB18030 line (2-byte -> 3-byte, 4-byte -> 4). */
    size_t need = len * 2 + 4;
    if (need > self->cap) {
        char *b = realloc(self->buf, need);
        if (!b)
            return CPX_ERR_NOMEM;
        self->buf = b;
        self->cap = need;
    }
    /* A NUL byte is valid in every one of these encodings but is never text. */
    const char *nul = memchr(in, 0, len);
    if (nul) {
        *bad_offset = (size_t)(nul - in);
        return CPX_ERR_DECODE;
    }
    iconv(self->cd, NULL, NULL, NULL, NULL);
    char *ip = (char *)in + skip, *op = self->buf;
    size_t il = len - skip, ol = self->cap;
    while (il > 0) {
        size_t r = iconv(self->cd, &ip, &il, &op, &ol);
        if (r != (size_t)-1)
            break;
        if (errno == E2BIG) { /* cannot happen with the bound above; refuse rather than loop */
            *bad_offset = (size_t)(ip - in);
            return CPX_ERR_TOO_LARGE;
        }
        /* EILSEQ: invalid sequence; EINVAL: truncated sequence at the end of the line */
        *bad_offset = (size_t)(ip - in);
        return CPX_ERR_DECODE;
    }
    *out = self->buf;
    *out_len = (size_t)(op - self->buf);
    return CPX_OK;
}
