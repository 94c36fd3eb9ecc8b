/* zap.c — ZAP handler thread: CURVE key -> department, refusals reported. */
#include "zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define CONTROL_EP "inproc://cpx-gw-zap-control"
#define ZAP_FRAMES 7

struct cpx_gw_zap {
    void *zctx;
    MDB_env *env;
    cpx_registry_t *reg;
    void *control;   /* PAIR, server side: "$TERM" stops the thread */
    pthread_t thread;
};

static void send_str(void *sock, const char *s, int more)
{
    zmq_send(sock, s, strlen(s), more ? ZMQ_SNDMORE : 0);
}

/* Answers one request already read into parts. */
static void answer(cpx_gw_zap_t *self, void *rep, void *refused, zmq_msg_t *parts, int n)
{
    const char *status = "400", *text = "unknown key";
    char code[CPX_MAX_DEPT_CODE + 1] = "";
    int ok_shape = n == ZAP_FRAMES && zmq_msg_size(&parts[0]) == 3 &&
                   !memcmp(zmq_msg_data(&parts[0]), "1.0", 3) &&
                   zmq_msg_size(&parts[5]) == 5 && !memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) &&
                   zmq_msg_size(&parts[6]) == CPX_CURVE_KEY_LEN;
    if (!ok_shape) {
        text = "only CURVE is accepted";
    } else {
        MDB_txn *txn;
        int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
        if (rc) {
            cpx_store_err(rc, "zap: begin");
            status = "500";
            text = "store unavailable";
        } else {
            rc = cpx_registry_by_curve(self->reg, txn, zmq_msg_data(&parts[6]), code);
            mdb_txn_abort(txn);
            if (rc == CPX_OK) {
                status = "200";
                text = "OK";
            } else if (rc == CPX_ERR_REFUSED) {
                text = "key revoked";
            } else if (rc != CPX_ERR_NOT_FOUND) {
                status = "500";
                text = "registry error";
            }
        }
        if (strcmp(status, "200")) {
            char addr[64];
            size_t al = zmq_msg_size(&parts[3]) < sizeof addr - 1 ? zmq_msg_size(&parts[3])
                                                                  : sizeof addr - 1;
            memcpy(addr, zmq_msg_data(&parts[3]), al);
            addr[al] = '\0';
            uint8_t buf[CPX_CURVE_KEY_LEN + sizeof addr];
            memcpy(buf, zmq_msg_data(&parts[6]), CPX_CURVE_KEY_LEN);
            memcpy(buf + CPX_CURVE_KEY_LEN, addr, al);
            /* Never block the handshake path on the server: drop when its queue is full
             * (the server counts what it is told; a flood is capped there anyway). */
            zmq_send(refused, buf, CPX_CURVE_KEY_LEN + al, ZMQ_DONTWAIT);
            cpx_log_info("zap", "msg=refused reason=\"%s\" peer=%s", text, addr);
        }
    }
    /* Reply: version, request id, status code, status text, user id, metadata. */
    send_str(rep, "1.0", 1);
    zmq_send(rep, n > 1 ? zmq_msg_data(&parts[1]) : "", n > 1 ? zmq_msg_size(&parts[1]) : 0,
             ZMQ_SNDMORE);
    send_str(rep, status, 1);
    send_str(rep, text, 1);
    send_str(rep, strcmp(status, "200") ? "" : code, 1);
    zmq_send(rep, "", 0, 0);
}

static void *run(void *arg)
{
    cpx_gw_zap_t *self = arg;
    void *rep = zmq_socket(self->zctx, ZMQ_REP);
    void *refused = zmq_socket(self->zctx, ZMQ_PUSH);
    void *control = zmq_socket(self->zctx, ZMQ_PAIR);
    int linger = 0, hwm = 1000;
    zmq_setsockopt(refused, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(refused, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_bind(rep, "inproc://zeromq.zap.01") || zmq_connect(refused, CPX_GW_ZAP_REFUSED_EP) ||
        zmq_connect(control, CONTROL_EP)) {
        cpx_log_error("zap", "msg=\"cannot set up sockets\" err=\"%s\"", zmq_strerror(zmq_errno()));
        zmq_send(control, "$FAIL", 5, 0);
        goto out;
    }
    zmq_send(control, "$READY", 6, 0);
    for (;;) {
        zmq_pollitem_t items[] = {{rep, 0, ZMQ_POLLIN, 0}, {control, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t parts[ZAP_FRAMES + 1];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, rep, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (n < ZAP_FRAMES + 1)
                parts[n++] = m;
            else
                zmq_msg_close(&m);
        }
        answer(self, rep, refused, parts, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
out:
    zmq_close(rep);
    zmq_close(refused);
    zmq_close(control);
    return NULL;
}

cpx_gw_zap_t *cpx_gw_zap_start(void *zctx, MDB_env *env, cpx_registry_t *reg)
{
    cpx_gw_zap_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->zctx = zctx;
    self->env = env;
    self->reg = reg;
    self->control = zmq_socket(zctx, ZMQ_PAIR);
    if (!self->control || zmq_bind(self->control, CONTROL_EP)) {
        cpx_log_error("zap", "msg=\"control socket\" err=\"%s\"", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, run, self)) {
        cpx_log_error("zap", "msg=\"cannot start thread\"");
        goto fail;
    }
    char buf[8];
    int n = zmq_recv(self->control, buf, sizeof buf, 0);
    if (n != 6 || memcmp(buf, "$READY", 6)) {
        pthread_join(self->thread, NULL);
        goto fail;
    }
    return self;
fail:
    if (self->control)
        zmq_close(self->control);
    free(self);
    return NULL;
}

void cpx_gw_zap_destroy(cpx_gw_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_zap_t *self = *self_p;
    zmq_send(self->control, "$TERM", 5, 0);
    pthread_join(self->thread, NULL);
    zmq_close(self->control);
    free(self);
    *self_p = NULL;
}
