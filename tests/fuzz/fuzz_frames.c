/* ClientFrame / ServerFrame / Batch decoding as the gateway and the adapters meet them:
 * decode, validate (a batch's envelopes included), re-encode and decode again. Nothing
 * may crash, leak or read out of bounds; what decodes must re-encode to something that
 * decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/validate.h"

/* The re-encoded bytes of m (caller frees), or NULL. */
static uint8_t *packed(const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    if (b)
        protobuf_c_message_pack(m, b);
    return b;
}

/* The gateway keeps a Submit's envelopes as received when cpx_submit_envelope_spans
 * finds them: each span must decode to the envelope the whole frame decodes to. */
static void check_spans(const uint8_t *data, size_t size, const cpx_client_frame_t *cf)
{
    if (cf->frame_case != CPX__V1__CLIENT_FRAME__FRAME_SUBMIT || !cf->submit)
        return;
    cpx_envelope_t *const *envs = NULL;
    size_t n = 0;
    if (cf->submit->content_case == CPX__V1__SUBMIT__CONTENT_ENVELOPE && cf->submit->envelope) {
        envs = &cf->submit->envelope;
        n = 1;
    } else if (cf->submit->content_case == CPX__V1__SUBMIT__CONTENT_BATCH && cf->submit->batch) {
        envs = cf->submit->batch->envelopes;
        n = cf->submit->batch->n_envelopes;
    }
    if (!n || n > CPX_MAX_BATCH_ENVELOPES)
        return;
    static size_t off[CPX_MAX_BATCH_ENVELOPES], len[CPX_MAX_BATCH_ENVELOPES];
    if (cpx_submit_envelope_spans(data, size, n, off, len) != CPX_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        cpx_envelope_t *e = NULL;
        if (len[i] > CPX_MAX_ENVELOPE_BYTES)
            continue;  /* the gateway encodes (and refuses) such an envelope itself */
        if (cpx_decode_envelope(data + off[i], len[i], &e) != CPX_OK)
            abort();  /* the span of an envelope that decoded as part of the frame */
        size_t a, b;
        uint8_t *x = packed(&e->base, &a), *y = packed(&envs[i]->base, &b);
        if (x && y && (a != b || memcmp(x, y, a)))
            abort();  /* a different envelope than the frame's */
        free(x);
        free(y);
        cpx_msg_free(e);
    }
}

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
        check_spans(data, size, cf);
        roundtrip(&cf->base, &cpx__v1__client_frame__descriptor);
        cpx_msg_free(cf);
    }
    /* The gateway decodes client frames into an arena: same verdict, same message. */
    cpx_arena_t *arena = NULL;
    ProtobufCMessage *am = NULL;
    int arc = cpx_decode_in_arena(&cpx__v1__client_frame__descriptor, data, size,
                                  CPX_MAX_FRAME_BYTES, &arena, &am);
    cpx_client_frame_t *plain = NULL;
    int prc = cpx_decode_client_frame(data, size, &plain);
    if (arc != prc && !(arc == CPX_ERR_DECODE && prc == CPX_OK))
        abort();  /* only the arena's coarser memory budget may refuse a little earlier */
    if (arc == CPX_OK) {
        size_t a = protobuf_c_message_get_packed_size(am);
        size_t b = protobuf_c_message_get_packed_size(&plain->base);
        uint8_t *x = malloc(a ? a : 1), *y = malloc(b ? b : 1);
        if (x && y && (a != b || protobuf_c_message_pack(am, x) != a ||
                       protobuf_c_message_pack(&plain->base, y) != b || memcmp(x, y, a)))
            abort();
        free(x);
        free(y);
    }
    cpx_arena_free(&arena);
    cpx_msg_free(plain);
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
