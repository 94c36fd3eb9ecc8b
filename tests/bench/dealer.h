/* tests/bench/dealer.h — the CURVE DEALER the benchmark and load programs speak through.
 *
 * Keys come from a folder laid out by `cpxctl keygen`: DIR/DEPT.curve.pub,
 * DIR/DEPT.curve.key and DIR/GATEWAY.curve.pub. Unlike cpx_client_new (the adapters'
 * client), the queues are unbounded and nothing lingers on close: a load program keeps
 * its own window of unanswered envelopes and must never block on a send.
 * Returns the connected socket, or NULL when a key cannot be read or the endpoint is bad
 * (cpx_client_read_z85 logs which file). */
#ifndef CPX_BENCH_DEALER_H
#define CPX_BENCH_DEALER_H

#include <stdio.h>
#include <zmq.h>

#include "cpx/client.h"

static inline void *bench_dealer(void *ctx, const char *keydir, const char *dept,
                                 const char *endpoint)
{
    char p[1024], pub[CPX_Z85_KEY_LEN + 1], sec[CPX_Z85_KEY_LEN + 1], spub[CPX_Z85_KEY_LEN + 1];
    snprintf(p, sizeof p, "%s/%s.curve.pub", keydir, dept);
    int rc = cpx_client_read_z85(p, pub);
    snprintf(p, sizeof p, "%s/%s.curve.key", keydir, dept);
    rc |= cpx_client_read_z85(p, sec);
    snprintf(p, sizeof p, "%s/GATEWAY.curve.pub", keydir);
    rc |= cpx_client_read_z85(p, spub);
    if (rc)
        return NULL;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    int hwm = 0, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, spub, CPX_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, CPX_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, CPX_Z85_KEY_LEN);
    if (zmq_connect(s, endpoint)) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

#endif
