/* adapter_rig.h — a real cpx_adapter for harnesses that drive a connector end to end
 * (fuzz_adapter_csv: the file connector; fuzz_adapter_webhook: the http connector). The adapter has a
 * spool in a temp dir, generated keys, and a gateway endpoint on a loopback port where
 * nothing listens (nothing leaves the machine; submissions stay pending in the spool).
 * The rig is rebuilt with a fresh spool every RIG_INPUTS inputs so the spool and the
 * connector's tracked state stay bounded over long runs. Not a module: included by
 * one harness each. */
#ifndef CPX_FUZZ_ADAPTER_RIG_H
#define CPX_FUZZ_ADAPTER_RIG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cpx/adapter.h"
#include "cpx/crypto.h"
#include "cpx/log.h"

#define RIG_INPUTS 256

typedef struct rig {
    char dir[64];
    char conf_path[128];
    unsigned generation, inputs;
    cpx_conf_t *conf;
    cpx_key_t *sign;
    uint8_t id_key[32];
    cpx_adapter_opts_t o;
    cpx_adapter_t *a;
    const cpx_connector_t *conn;
    const char *section;
    void *state;               /* the connector's state, captured at open */
} rig_t;

static rig_t rig;
static cpx_connector_t rig_conn;

static int rig_open(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    int rc = rig.conn->open(a, sec, state);
    rig.state = rc == CPX_OK ? *state : NULL;
    return rc;
}

static void rig_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

/* A fresh spool and adapter; the connector section comes from conf_text (YAML with
 * paths relative to the rig's dir). Aborts when the rig cannot be built: a harness
 * that silently tests nothing is worse than one that stops. */
static void rig_start(const char *conf_text)
{
    char cmd[160], spool[128];
    snprintf(spool, sizeof spool, "%s/spool-%u", rig.dir, rig.generation);
    snprintf(cmd, sizeof cmd, "rm -rf %s/spool-%u %s/exchange", rig.dir, rig.generation - 1, rig.dir);
    if (rig.generation && system(cmd) != 0)
        abort();
    rig_write(rig.conf_path, conf_text);
    char err[512];
    cpx_conf_destroy(&rig.conf);
    if (!(rig.conf = cpx_conf_load(rig.conf_path, err, sizeof err))) {
        fprintf(stderr, "rig: %s\n", err);
        abort();
    }
    static char spool_keep[128];
    snprintf(spool_keep, sizeof spool_keep, "%s", spool);
    rig.o.spool_dir = spool_keep;
    rig.o.spool_map_size = 64u << 20;
    rig.a = cpx_adapter_new(&rig.o, &rig_conn, cpx_conf_get(rig.conf, rig.section));
    if (!rig.a || !rig.state) {
        fprintf(stderr, "rig: adapter did not start\n");
        abort();
    }
    rig.inputs = 0;
    rig.generation++;
}

static void rig_cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", rig.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "rig: could not remove %s\n", rig.dir);
}

static void rig_init(const cpx_connector_t *conn, const char *section)
{
    snprintf(rig.dir, sizeof rig.dir, "/tmp/cpx-fuzz-rig.%d", (int)getpid());
    snprintf(rig.conf_path, sizeof rig.conf_path, "%s/adapter.yaml", rig.dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", rig.dir, rig.dir);
    if (system(cmd) != 0)
        abort();
    atexit(rig_cleanup); /* libFuzzer ends a timed run with exit() */
    cpx_log_set_level(CPX_LOG_ERROR);
    rig.conn = conn;
    rig.section = section;
    rig_conn = *conn;
    rig_conn.open = rig_open;
    if (!(rig.sign = cpx_key_generate()))
        abort();
    memset(rig.id_key, 7, sizeof rig.id_key);
    char spub[41], ssec[41];
    zmq_curve_keypair(spub, ssec);
    static const char endpoint[] = "tcp://127.0.0.1:9"; /* discard port: nothing answers */
    rig.o.client.endpoint = endpoint;
    memcpy(rig.o.client.server_pub, spub, 41);
    zmq_curve_keypair(rig.o.client.public_key, rig.o.client.secret_key);
    rig.o.dept = "EDUCATION";
    rig.o.sign_key = rig.sign;
    rig.o.id_key = rig.id_key;
    rig.o.batch = 64;
    rig.o.cycle_max = 2000;
    rig.o.max_pending = 1000000;
    rig.o.resend_after_ms = 600000;  /* no resend storms against the closed port */
    rig.o.heartbeat_ms = 600000;
}

/* Called after each input: every RIG_INPUTS inputs the adapter and its spool are
 * replaced (conf_text as for rig_start). */
static void rig_next(const char *conf_text)
{
    if (++rig.inputs < RIG_INPUTS)
        return;
    cpx_adapter_destroy(&rig.a);
    rig.state = NULL;
    rig_start(conf_text);
}

#endif
