/* Adapter mappings (docs/adapters.md, "Mappings"): the YAML an agency's IT staff write
 * to turn their records into envelopes (cpx_mapping_load), then one record applied
 * through the loaded mapping (cpx_mapping_apply) and a CSV header checked against it.
 * A typo must give "file:line: what", never a crash, overflow or leak. Seeds: the
 * shipped deploy/jiangyin/adapters mappings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpx/adapter.h"
#include "cpx/codec.h"
#include "cpx/err.h"

static char path[64];

/* One plausible record whatever the field names: every local field has a value that
 * passes most rules (a date, a code, a name), chosen by the field's first byte so the
 * fuzzer can steer it. */
static const char *get(void *ctx, const char *field)
{
    (void)ctx;
    static const char *vals[] = {"2012-03-04", "MALE", "张三", "320281201203041234", "S0001", "", "1"};
    return field[0] ? vals[(unsigned char)field[0] % (sizeof vals / sizeof *vals)] : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cpx-fuzz-mapping.%d.yaml", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    char err[512];
    err[0] = 'x';
    cpx_mapping_t *m = cpx_mapping_load(path, err, sizeof err);
    unlink(path);
    if (!m) {
        if (!memchr(err, 0, sizeof err))
            abort(); /* the message is always terminated */
        return 0;
    }
    (void)cpx_mapping_encoding(m);
    (void)cpx_mapping_format(m);
    (void)cpx_mapping_delimiter(m);
    (void)cpx_mapping_record_key(m);
    static const char *const cols[] = {"学籍号", "姓名", "性别", "身份证号", "出生日期", "所属镇街"};
    cpx_errors_t errs = {0};
    (void)cpx_mapping_check_columns(m, cols, sizeof cols / sizeof *cols, &errs);
    cpx_envelope_t *env = NULL;
    cpx_errors_t e2 = {0};
    if (cpx_mapping_apply(m, get, NULL, &env, &e2) == CPX_OK)
        cpx_msg_free(env);
    cpx_mapping_destroy(&m);
    return 0;
}
