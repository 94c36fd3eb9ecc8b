/* JSON text -> Envelope (strict JSON form) -> validate -> JSON again. The second
 * JSON form must read back to the same encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/json.h"
#include "cpx/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cpx_errors_t errs = {0};
    ProtobufCMessage *m = NULL;
    if (cpx_json_loads_msg(&cpx__v1__envelope__descriptor, (const char *)data, size, &m, &errs) !=
        CPX_OK)
        return 0;
    cpx_validate_opts_t opts = {.now_ms = 1780000000000LL};
    cpx_errors_t verrs = {0};
    cpx_validate_envelope((cpx_envelope_t *)m, &opts, &verrs);
    char *text = cpx_json_dumps_msg(m);
    if (text) {
        cpx_errors_t e2 = {0};
        ProtobufCMessage *back = NULL;
        if (cpx_json_loads_msg(&cpx__v1__envelope__descriptor, text, strlen(text), &back, &e2) !=
            CPX_OK)
            abort();
        uint8_t *a, *b;
        size_t la, lb;
        if (cpx_encode(m, &a, &la) == CPX_OK && cpx_encode(back, &b, &lb) == CPX_OK) {
            if (la != lb || memcmp(a, b, la))
                abort();
            free(a);
            free(b);
        }
        cpx_msg_free(back);
        free(text);
    }
    cpx_msg_free(m);
    return 0;
}
