/* client.c — DEALER + CURVE connection to the gateway; one frame per message. */
#include "cpx/client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cpx/err.h"
#include "cpx/limits.h"
#include "cpx/log.h"

/* The socket monitor's endpoint: each client has a ZeroMQ context of its own. */
#define MONITOR_ENDPOINT "inproc://cpx-client-monitor"

struct cpx_client {
    void *ctx;
    void *sock;
    void *mon;         /* PAIR reading the DEALER's handshake events */
    uint8_t *buf;      /* reused encode buffer */
    size_t buf_size;
    uint32_t deliveries_per_frame;  /* said in every heartbeat */
};

int cpx_client_read_z85(const char *path, char out[CPX_Z85_KEY_LEN + 1])
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cpx_log_error("client", "msg=\"cannot read key\" path=\"%s\" errno=%d", path, errno);
        return CPX_ERR_IO;
    }
    char line[256];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *s = line;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t len = 0;
    while (s[len] && !isspace((unsigned char)s[len]))
        len++;
    uint8_t raw[32];
    if (len != CPX_Z85_KEY_LEN) {
        cpx_log_error("client", "msg=\"not a Z85 CURVE key\" path=\"%s\" length=%zu", path, len);
        return CPX_ERR_DECODE;
    }
    memcpy(out, s, CPX_Z85_KEY_LEN);
    out[CPX_Z85_KEY_LEN] = '\0';
    if (!zmq_z85_decode(raw, out)) {
        cpx_log_error("client", "msg=\"not a Z85 CURVE key\" path=\"%s\"", path);
        return CPX_ERR_DECODE;
    }
    return CPX_OK;
}

int cpx_client_opts_from_dir(cpx_client_opts_t *opts, const char *endpoint, const char *dir,
                             const char *dept, const char *server_pub_path)
{
    memset(opts, 0, sizeof *opts);
    opts->endpoint = endpoint;
    char path[4096];
    int rc;
    snprintf(path, sizeof path, "%s/%s.curve.key", dir, dept);
    if ((rc = cpx_client_read_z85(path, opts->secret_key)) != CPX_OK)
        return rc;
    snprintf(path, sizeof path, "%s/%s.curve.pub", dir, dept);
    if ((rc = cpx_client_read_z85(path, opts->public_key)) != CPX_OK)
        return rc;
    if (!server_pub_path) {
        snprintf(path, sizeof path, "%s/GATEWAY.curve.pub", dir);
        server_pub_path = path;
    }
    return cpx_client_read_z85(server_pub_path, opts->server_pub);
}

cpx_client_t *cpx_client_new(const cpx_client_opts_t *opts)
{
    if (!opts || !opts->endpoint || !opts->server_pub[0] || !opts->public_key[0] ||
        !opts->secret_key[0])
        return NULL;
    cpx_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = zmq_ctx_new();
    self->sock = self->ctx ? zmq_socket(self->ctx, ZMQ_DEALER) : NULL;
    if (!self->sock)
        goto fail;
    int timeout = opts->send_timeout_ms ? opts->send_timeout_ms : 5000;
    int hwm = opts->send_hwm ? opts->send_hwm : 100000;
    int linger = 2000;
    int64_t maxmsg = CPX_MAX_FRAME_BYTES;
    self->deliveries_per_frame = opts->deliveries_per_frame < CPX_MAX_GROUPED
                                     ? opts->deliveries_per_frame
                                     : CPX_MAX_GROUPED;
    /* Watched before connecting, so the first handshake is counted as well. */
    int zero = 0;
    if (zmq_socket_monitor(self->sock, MONITOR_ENDPOINT, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ||
        !(self->mon = zmq_socket(self->ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(self->mon, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_connect(self->mon, MONITOR_ENDPOINT)) {
        cpx_log_error("client", "msg=\"cannot monitor the connection\" zmq=\"%s\"",
                      zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, opts->server_pub, CPX_Z85_KEY_LEN) ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, opts->public_key, CPX_Z85_KEY_LEN) ||
        zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, opts->secret_key, CPX_Z85_KEY_LEN) ||
        zmq_setsockopt(self->sock, ZMQ_SNDTIMEO, &timeout, sizeof timeout) ||
        zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        zmq_connect(self->sock, opts->endpoint)) {
        cpx_log_error("client", "msg=\"cannot connect\" endpoint=\"%s\" zmq=\"%s\"",
                      opts->endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* The gateway's ROUTER learns a peer only when it speaks: announce ourselves so
     * deliveries can start before we submit anything. */
    cpx_client_heartbeat(self, 0);
    return self;
fail:
    cpx_client_destroy(&self);
    return NULL;
}

void cpx_client_destroy(cpx_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_client_t *self = *self_p;
    if (self->mon)
        zmq_close(self->mon);
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

void *cpx_client_socket(cpx_client_t *self) { return self ? self->sock : NULL; }

int cpx_client_send(cpx_client_t *self, const cpx_client_frame_t *frame)
{
    size_t n = protobuf_c_message_get_packed_size(&frame->base);
    if (n > CPX_MAX_FRAME_BYTES)
        return CPX_ERR_TOO_LARGE;
    if (n > self->buf_size) {
        uint8_t *b = realloc(self->buf, n);
        if (!b)
            return CPX_ERR_NOMEM;
        self->buf = b;
        self->buf_size = n;
    }
    size_t len = protobuf_c_message_pack(&frame->base, self->buf);
    if (zmq_send(self->sock, self->buf, len, 0) < 0)
        return zmq_errno() == EAGAIN ? CPX_ERR_FULL : CPX_ERR_NET;
    return CPX_OK;
}

/* The Submit frame around envs: the parts live in the caller's frame (no allocation).
 * batch: a Batch even of one envelope (cpx_client_submit_batch's contract). */
typedef struct submit_parts {
    cpx_client_frame_t frame;
    Cpx__V1__Submit sub;
    Cpx__V1__Batch batch;
} submit_parts_t;

static void submit_frame(submit_parts_t *p, cpx_envelope_t *const *envs, size_t n, unsigned flags)
{
    *p = (submit_parts_t){CPX__V1__CLIENT_FRAME__INIT, CPX__V1__SUBMIT__INIT, CPX__V1__BATCH__INIT};
    p->sub.grouped_acks = (flags & CPX_SUBMIT_GROUPED_ACKS) != 0;
    if (flags & CPX_SUBMIT_BATCH) {
        p->batch.n_envelopes = n;
        p->batch.envelopes = (cpx_envelope_t **)envs;
        p->sub.content_case = CPX__V1__SUBMIT__CONTENT_BATCH;
        p->sub.batch = &p->batch;
    } else {
        p->sub.content_case = CPX__V1__SUBMIT__CONTENT_ENVELOPE;
        p->sub.envelope = envs[0];
    }
    p->frame.frame_case = CPX__V1__CLIENT_FRAME__FRAME_SUBMIT;
    p->frame.submit = &p->sub;
}

int cpx_client_submit(cpx_client_t *self, const cpx_envelope_t *env)
{
    submit_parts_t p;
    cpx_envelope_t *e = (cpx_envelope_t *)env;
    submit_frame(&p, &e, 1, 0u);
    return cpx_client_send(self, &p.frame);
}

int cpx_client_submit_batch(cpx_client_t *self, cpx_envelope_t *const *envs, size_t n)
{
    submit_parts_t p;
    submit_frame(&p, envs, n, CPX_SUBMIT_BATCH);
    return cpx_client_send(self, &p.frame);
}

int cpx_client_encode_submit(cpx_envelope_t *const *envs, size_t n, unsigned flags, uint8_t **out,
                             size_t *len)
{
    if (!envs || !n || !envs[0] || !out || !len || (!(flags & CPX_SUBMIT_BATCH) && n != 1) ||
        (flags & ~(CPX_SUBMIT_BATCH | CPX_SUBMIT_GROUPED_ACKS)))
        return CPX_ERR_ARG;
    submit_parts_t p;
    submit_frame(&p, envs, n, flags);
    return cpx_encode(&p.frame, out, len);
}

static void fill_ack(Cpx__V1__DeliveryAck *a, const cpx_client_confirmation_t *c)
{
    *a = (Cpx__V1__DeliveryAck)CPX__V1__DELIVERY_ACK__INIT;
    a->delivery_id = c->delivery_id;
    a->message_id = (ProtobufCBinaryData){c->id_len, (uint8_t *)c->message_id};
    a->status = c->status;
    if (c->reason)
        a->reason = (char *)c->reason;
}

int cpx_client_confirm(cpx_client_t *self, uint64_t delivery_id, const uint8_t *message_id,
                       size_t id_len, Cpx__V1__DeliveryStatus status, const char *reason)
{
    const cpx_client_confirmation_t c = {delivery_id, message_id, id_len, status, reason};
    Cpx__V1__DeliveryAck ack;
    fill_ack(&ack, &c);
    cpx_client_frame_t frame = CPX__V1__CLIENT_FRAME__INIT;
    frame.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK;
    frame.delivery_ack = &ack;
    return cpx_client_send(self, &frame);
}

/* How many of c[0..n) fit in one DeliveryAcks frame (filling acks[]): at most
 * CPX_MAX_GROUPED, and the frame (ClientFrame tag and length, DeliveryAcks, one tag and
 * length per element) within CPX_MAX_FRAME_BYTES. */
static size_t fill_group(Cpx__V1__DeliveryAck *acks, const cpx_client_confirmation_t *c, size_t n)
{
    const size_t budget = CPX_MAX_FRAME_BYTES - 8;  /* the frame's own tag and length */
    size_t k = 0, bytes = 0;
    for (; k < n && k < CPX_MAX_GROUPED; k++) {
        fill_ack(&acks[k], &c[k]);
        size_t sz = protobuf_c_message_get_packed_size(&acks[k].base);
        size_t el = 1 + cpx_varint_len(sz) + sz;
        if (bytes + el > budget)
            break;
        bytes += el;
    }
    return k;
}

int cpx_client_confirm_many(cpx_client_t *self, const cpx_client_confirmation_t *c, size_t n,
                            size_t *sent)
{
    if (sent)
        *sent = 0;
    if (!self || !c || !n)
        return CPX_ERR_ARG;
    size_t per = n < CPX_MAX_GROUPED ? n : CPX_MAX_GROUPED;
    Cpx__V1__DeliveryAck *acks = malloc(per * sizeof *acks);
    Cpx__V1__DeliveryAck **ptrs = malloc(per * sizeof *ptrs);
    int rc = acks && ptrs ? CPX_OK : CPX_ERR_NOMEM;
    for (size_t i = 0; i < per && !rc; i++)
        ptrs[i] = &acks[i];
    for (size_t done = 0; done < n && !rc;) {
        size_t k = fill_group(acks, c + done, n - done);
        if (!k) {
            rc = CPX_ERR_ARG;  /* one confirmation larger than a frame */
            break;
        }
        Cpx__V1__DeliveryAcks da = CPX__V1__DELIVERY_ACKS__INIT;
        da.n_acks = k;
        da.acks = ptrs;
        cpx_client_frame_t frame = CPX__V1__CLIENT_FRAME__INIT;
        frame.frame_case = CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS;
        frame.delivery_acks = &da;
        if ((rc = cpx_client_send(self, &frame)) == CPX_OK) {
            done += k;
            if (sent)
                *sent = done;
        }
    }
    free(acks);
    free(ptrs);
    return rc;
}

unsigned cpx_client_reconnected(cpx_client_t *self)
{
    unsigned n = 0;
    zmq_msg_t m;
    /* Each event is two parts: 2 bytes event and 4 bytes value, then the endpoint. */
    while (self && self->mon) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&m) >= 2)
            memcpy(&event, zmq_msg_data(&m), sizeof event);
        n += event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
        while (zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, self->mon, 0) < 0)
                break;
        }
        zmq_msg_close(&m);
    }
    return n;
}

int cpx_client_heartbeat(cpx_client_t *self, int64_t now_ms)
{
    Cpx__V1__Heartbeat hb = CPX__V1__HEARTBEAT__INIT;
    hb.sent_ms = now_ms;
    hb.deliveries_per_frame = self->deliveries_per_frame;
    cpx_client_frame_t frame = CPX__V1__CLIENT_FRAME__INIT;
    frame.frame_case = CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT;
    frame.heartbeat = &hb;
    return cpx_client_send(self, &frame);
}

int cpx_client_recv(cpx_client_t *self, int timeout_ms, cpx_server_frame_t **out)
{
    *out = NULL;
    zmq_pollitem_t item = {.socket = self->sock, .events = ZMQ_POLLIN};
    int n = zmq_poll(&item, 1, timeout_ms);
    if (n < 0)
        return CPX_ERR_NET;
    if (n == 0)
        return CPX_ERR_TIMEOUT;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return zmq_errno() == EAGAIN ? CPX_ERR_TIMEOUT : CPX_ERR_NET;
    }
    int rc = cpx_decode_server_frame(zmq_msg_data(&msg), zmq_msg_size(&msg), out);
    zmq_msg_close(&msg);
    return rc;
}
