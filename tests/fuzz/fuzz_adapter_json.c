/* The adapters' untrusted local input (adapters/sdk): JSON bodies posted to the http
 * connector's webhook (cpx_adapter_json_to_envelope) and records mapped field by field
 * (cpx_mapping_apply with the shipped EDUCATION mapping; the input is split into
 * comma-separated fields the way a CSV row reaches the mapping). Nothing may crash,
 * leak or read out of bounds; a refusal names path and rule. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/adapter.h"
#include "cpx/codec.h"
#include "cpx/err.h"

#define NCOL 32

static cpx_mapping_t *map;
static int loaded;
static const char *cols[NCOL] = {"学籍号", "姓名", "性别", "身份证号", "出生日期", "学校", "所属镇街",
                                 "村社区", "家庭住址", "辍学日期", "辍学原因", "是否留守", "联系教师", "备注"};

typedef struct row {
    char *v[NCOL];
    size_t n;
} row_t;

static const char *get(void *ctx, const char *field)
{
    row_t *r = ctx;
    for (size_t i = 0; i < r->n && cols[i]; i++)
        if (!strcmp(cols[i], field))
            return r->v[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loaded) {
        char err[256];
        map = cpx_mapping_load(CPX_SOURCE_DIR "/deploy/jiangyin/adapters/education-dropout.yaml", err,
                               sizeof err);
        loaded = 1;
        if (!map)
            fprintf(stderr, "mapping: %s\n", err);
    }
    cpx_envelope_t *env = NULL;
    cpx_errors_t errs = {0};
    if (cpx_adapter_json_to_envelope((const char *)data, size, &env, &errs) == CPX_OK) {
        char *line = cpx_adapter_delivery_json(1, env, NULL, 0);
        free(line);
        cpx_msg_free(env);
    }
    if (map) {
        char *copy = malloc(size + 1);
        if (!copy)
            return 0;
        memcpy(copy, data, size);
        copy[size] = 0;
        row_t r = {.n = 0};
        char *p = copy;
        while (r.n < NCOL) {
            r.v[r.n++] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = 0;
            p = c + 1;
        }
        cpx_errors_t e2 = {0};
        env = NULL;
        if (cpx_mapping_apply(map, get, &r, &env, &e2) == CPX_OK)
            cpx_msg_free(env);
        free(copy);
    }
    return 0;
}
