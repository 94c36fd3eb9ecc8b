/* cpx/client.h — a department's connection to the gateway (docs/protocol.md).
 *
 * A DEALER socket, CURVE client: the gateway's public key is required, so the
 * client talks only to the real gateway. One ZeroMQ message per frame. This is the
 * thin, synchronous layer under cpxctl, the benchmarks and the adapter SDK (which
 * adds the durable spool and resending): it neither spools nor retries by itself.
 *
 * Ownership: the client borrows opts' strings only during cpx_client_new. Frames
 * returned by cpx_client_recv are the caller's (cpx_msg_free).
 *
 * Caveats: a client is used from one thread at a time (ZeroMQ sockets are not
 * thread-safe). Sending never blocks past opts.send_timeout_ms; a full send queue
 * gives CPX_ERR_FULL. */
#ifndef CPX_CLIENT_H
#define CPX_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"

#define CPX_Z85_KEY_LEN 40

typedef struct cpx_client cpx_client_t;

typedef struct cpx_client_opts {
    const char *endpoint;       /* e.g. "tcp://127.0.0.1:7400" */
    char server_pub[CPX_Z85_KEY_LEN + 1];  /* gateway CURVE public key, Z85 */
    char public_key[CPX_Z85_KEY_LEN + 1];  /* this department's CURVE key pair, Z85 */
    char secret_key[CPX_Z85_KEY_LEN + 1];
    int send_timeout_ms;        /* 0: 5000 */
    int send_hwm;               /* 0: 100000 */
    /* Carried by every heartbeat this client sends (the first, queued by cpx_client_new,
     * too): above 1, the gateway may send this connection Deliveries frames of up to
     * that many deliveries (docs/protocol.md 2); 0 or 1: one Deliver frame each. A
     * caller that sets it must read Deliveries frames. At most CPX_MAX_GROUPED counts. */
    unsigned deliveries_per_frame;
} cpx_client_opts_t;

/* Reads a Z85 key (40 characters, surrounding white space ignored) from a file.
 * CPX_ERR_IO or CPX_ERR_DECODE (names the file in the log). */
int cpx_client_read_z85(const char *path, char out[CPX_Z85_KEY_LEN + 1]);

/* Fills opts from a key folder as written by `cpxctl keygen`: DIR/DEPT.curve.key,
 * DIR/DEPT.curve.pub and the gateway's DIR/GATEWAY.curve.pub (or server_pub_path when
 * not NULL). endpoint is borrowed and must outlive the client's creation. */
int cpx_client_opts_from_dir(cpx_client_opts_t *opts, const char *endpoint, const char *dir,
                             const char *dept, const char *server_pub_path);

/* Connects (asynchronously: ZeroMQ reconnects by itself) and queues a first Heartbeat
 * so the gateway knows this department is there; send one every heartbeat interval
 * after that (the gateway marks a silent peer offline). Caller owns the result and
 * frees it with cpx_client_destroy. NULL on failure (logged). */
cpx_client_t *cpx_client_new(const cpx_client_opts_t *opts);
void cpx_client_destroy(cpx_client_t **self_p);

/* The ZeroMQ socket, for zmq_poll. Borrowed. */
void *cpx_client_socket(cpx_client_t *self);

/* Sends one frame (encoded here). CPX_ERR_FULL when the send would block past the
 * timeout; CPX_ERR_NET on other failures. */
int cpx_client_send(cpx_client_t *self, const cpx_client_frame_t *frame);
/* Shorthands: one signed envelope; a batch of signed envelopes (one frame). */
int cpx_client_submit(cpx_client_t *self, const cpx_envelope_t *env);
int cpx_client_submit_batch(cpx_client_t *self, cpx_envelope_t *const *envs, size_t n);
/* The same Submit frame, encoded into a new malloc'd buffer (*out, free()), for callers
 * that keep frames to resend or replay them: a Batch of the n envelopes with
 * CPX_SUBMIT_BATCH (batch-signed envelopes travel in one, even a batch of one), else
 * the single envelope envs[0] (n must be 1); with CPX_SUBMIT_GROUPED_ACKS the gateway
 * answers it with Acks frames instead of an Ack frame per envelope.
 * CPX_OK, CPX_ERR_ARG, or CPX_ERR_NOMEM. */
#define CPX_SUBMIT_BATCH 1u
#define CPX_SUBMIT_GROUPED_ACKS 2u
int cpx_client_encode_submit(cpx_envelope_t *const *envs, size_t n, unsigned flags, uint8_t **out,
                             size_t *len);
/* Confirms a delivery: TAKEN, or REFUSED_BY_LOCAL with a reason. */
int cpx_client_confirm(cpx_client_t *self, uint64_t delivery_id, const uint8_t *message_id,
                       size_t id_len, Cpx__V1__DeliveryStatus status, const char *reason);

/* One confirmation for cpx_client_confirm_many; the pointers are borrowed for the call. */
typedef struct cpx_client_confirmation {
    uint64_t delivery_id;
    const uint8_t *message_id;
    size_t id_len;
    Cpx__V1__DeliveryStatus status;
    const char *reason;         /* REFUSED_BY_LOCAL: why; else NULL */
} cpx_client_confirmation_t;

/* Confirms n deliveries in DeliveryAcks frames (docs/protocol.md 5): as few frames as
 * CPX_MAX_GROUPED confirmations and CPX_MAX_FRAME_BYTES per frame allow, in order;
 * each confirmation means what it would alone. Only for a gateway that reads them (one
 * that has sent Acks or Deliveries frames); others refuse the frame. *sent (may be NULL)
 * receives how many went into frames that were queued: all of them on CPX_OK, the ones
 * before the first frame that could not be queued on CPX_ERR_FULL / CPX_ERR_NET.
 * CPX_ERR_ARG when n is 0 or one confirmation alone exceeds a frame. */
int cpx_client_confirm_many(cpx_client_t *self, const cpx_client_confirmation_t *c, size_t n,
                            size_t *sent);

/* A Heartbeat{sent_ms, deliveries_per_frame from the options}. */
int cpx_client_heartbeat(cpx_client_t *self, int64_t now_ms);

/* How many connections to the gateway completed their CURVE handshake since the last
 * call (the first one counts too). The gateway keeps per-connection settings (e.g.
 * deliveries_per_frame) and a new connection starts without them, so a caller that
 * sees this above 0 should send a heartbeat at once. Never blocks. */
unsigned cpx_client_reconnected(cpx_client_t *self);

/* Waits up to timeout_ms (-1: forever) for one server frame. CPX_ERR_TIMEOUT when none
 * came; CPX_ERR_DECODE for a frame that does not decode (dropped). */
int cpx_client_recv(cpx_client_t *self, int timeout_ms, cpx_server_frame_t **out);

#endif
