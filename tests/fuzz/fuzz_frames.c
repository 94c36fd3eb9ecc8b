/* ClientFrame / ServerFrame / Batch decoding as the gateway and the adapters meet them:
 * decode, validate (a batch's envelopes included), re-encode and decode again. Nothing
 * may crash, leak or read out of bounds; what decodes must re-encode to something that
 * decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/validate.h"

static void roundtrip(const ProtobufCMessage *m, const ProtobufCMessageDescriptor *d)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *back = NULL;
    /* a re-encoded frame may exceed the wire limit only if the original did */
    if (cpx_decode(d, buf, n, n + 1, &back) == CPX_OK)
        cpx_msg_free(back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cpx_validate_opts_t opts = {.now_ms = 1780000000000LL};
    cpx_client_frame_t *cf = NULL;
    if (cpx_decode_client_frame(data, size, &cf) == CPX_OK) {
        cpx_errors_t errs = {0};
        cpx_validate_client_frame(cf, &opts, &errs);
        char buf[256];
        cpx_errors_format(&errs, buf, sizeof buf);
        /* submit, delivery_ack and heartbeat share a oneof union: check the case */
        if (cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_SUBMIT && cf->submit &&
            cf->submit->content_case == CPX__V1__SUBMIT__CONTENT_BATCH && cf->submit->batch)
            for (size_t i = 0; i < cf->submit->batch->n_envelopes; i++) {
                cpx_errors_t e2 = {0};
                cpx_validate_envelope(cf->submit->batch->envelopes[i], &opts, &e2);
            }
        roundtrip(&cf->base, &cpx__v1__client_frame__descriptor);
        cpx_msg_free(cf);
    }
    cpx_server_frame_t *sf = NULL;
    if (cpx_decode_server_frame(data, size, &sf) == CPX_OK) {
        if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_DELIVER && sf->deliver &&
            sf->deliver->envelope) {
            cpx_errors_t errs = {0};
            cpx_validate_envelope(sf->deliver->envelope, &opts, &errs);
        }
        roundtrip(&sf->base, &cpx__v1__server_frame__descriptor);
        cpx_msg_free(sf);
    }
    return 0;
}
