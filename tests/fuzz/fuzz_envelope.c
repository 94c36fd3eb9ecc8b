/* Envelope decode + validate + JSON out + JSON back; also the same bytes as a
 * ClientFrame. Nothing may crash, leak or read out of bounds; a valid envelope's
 * JSON form must read back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/json.h"
#include "cpx/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cpx_validate_opts_t opts = {.now_ms = 1780000000000LL};
    cpx_envelope_t *e = NULL;
    if (cpx_decode_envelope(data, size, &e) == CPX_OK) {
        cpx_errors_t errs = {0};
        int rc = cpx_validate_envelope(e, &opts, &errs);
        char buf[512];
        cpx_errors_format(&errs, buf, sizeof buf);
        char *text = cpx_json_dumps_msg(&e->base);
        if (text && rc == CPX_OK) {
            cpx_errors_t jerrs = {0};
            ProtobufCMessage *back = NULL;
            if (cpx_json_loads_msg(&cpx__v1__envelope__descriptor, text, strlen(text), &back,
                                   &jerrs) != CPX_OK)
                abort(); /* a valid envelope's JSON form must read back */
            cpx_msg_free(back);
        }
        free(text);
        cpx_msg_free(e);
    }
    cpx_client_frame_t *f = NULL;
    if (cpx_decode_client_frame(data, size, &f) == CPX_OK) {
        cpx_errors_t errs = {0};
        cpx_validate_client_frame(f, &opts, &errs);
        cpx_msg_free(f);
    }
    return 0;
}
