/* cpx-adapter — runs one connector between an agency's system and the gateway.
 *
 *   cpx-adapter --config FILE            run until SIGTERM/SIGINT
 *   cpx-adapter --config FILE --status   print the spool's counters and exit
 *
 * The configuration (docs/adapters.md) names the department, the gateway, the key
 * folder written by `cpxctl keygen`, the spool folder and the connector. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpx/adapter.h"
#include "metrics.h"
#include "cpx/log.h"

#define MOD "adapter"

static const cpx_connector_t *const connectors[] = {
    &cpx_connector_file,
    &cpx_connector_http,
    &cpx_connector_sql,
};

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: cpx-adapter --config FILE [--status] [--run-for MS]\n");
}

static int conf_uint(const cpx_conf_t *c, const char *key, long long dflt, long long max,
                     long long *out)
{
    return cpx_conf_int(c, key, dflt, 0, max, out);
}

/* Creates path and any missing parents (the shipped configs name ../var/DEPT/spool). */
static int mkdir_parents(const char *path, mode_t mode)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

static int print_status(const char *spool)
{
    cpx_adapter_counters_t c;
    size_t pending = 0, rejected = 0;
    int rc = cpx_adapter_spool_status(spool, &c, &pending, &rejected);
    if (rc != CPX_OK) {
        fprintf(stderr, "cpx-adapter: cannot read spool %s: %s\n", spool, cpx_strerror(rc));
        return 1;
    }
    /* duplicate_acks last: scripts match the older lines in their order */
    printf("spool=%s\nspooled=%llu\nsent=%llu\nresent=%llu\nacked=%llu\nnacked=%llu\n"
           "delivered=%llu\nconfirmed=%llu\nfailed=%llu\npending=%zu\nrejected=%zu\n"
           "duplicate_acks=%llu\n",
           spool, (unsigned long long)c.spooled, (unsigned long long)c.sent,
           (unsigned long long)c.resent, (unsigned long long)c.acked,
           (unsigned long long)c.nacked, (unsigned long long)c.delivered,
           (unsigned long long)c.confirmed, (unsigned long long)c.failed, pending, rejected,
           (unsigned long long)c.duplicate_acks);
    return 0;
}

/* The adapter's own /metrics and /healthz (config `metrics: HOST:PORT`); the bound
 * address is written to SPOOL/metrics.endpoint so PORT 0 can be found. */
static cpx_adm_t *start_metrics(const char *listen, const char *dept, const char *spool)
{
    unsigned port = 0;
    cpx_adm_t *adm = cpx_adm_start(listen, dept, &port);
    if (!adm)
        return NULL;
    char path[4096 + 32], host[64];
    const char *colon = strrchr(listen, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    snprintf(path, sizeof path, "%s/metrics.endpoint", spool);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s:%u\n", host, port);
        fclose(f);
    }
    return adm;
}

/* cpx_adapter_run, publishing the counters for /metrics after every cycle. */
static int run(cpx_adapter_t *a, cpx_adm_t *adm, int64_t max_ms)
{
    if (!adm)
        return cpx_adapter_run(a, &stop_flag, max_ms);
    int64_t start = cpx_adapter_now_ms();
    int rc = CPX_OK;
    while (!stop_flag) {
        int64_t now = cpx_adapter_now_ms();
        if (max_ms >= 0 && now - start >= max_ms)
            break;
        int wait = 200;
        if (max_ms >= 0 && max_ms - (now - start) < wait)
            wait = (int)(max_ms - (now - start));
        if ((rc = cpx_adapter_cycle(a, wait)) != CPX_OK)
            break;
        cpx_adapter_counters_t c;
        cpx_adapter_counters(a, &c);
        cpx_adm_publish(adm, &c, cpx_adapter_pending_count(a));
    }
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    bool status = false;
    long long run_for = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "--status"))
            status = true;
        else if (!strcmp(argv[i], "--run-for") && i + 1 < argc)
            run_for = atoll(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (!config) {
        usage();
        return 2;
    }
    char err[512];
    cpx_conf_t *conf = cpx_conf_load(config, err, sizeof err);
    if (!conf) {
        cpx_log_error(MOD, "msg=\"bad configuration\" error=\"%s\"", err);
        return 1;
    }
    int exit_code = 1;
    cpx_key_t *sign = NULL;
    cpx_adapter_t *a = NULL;
    cpx_adm_t *adm = NULL;
    uint8_t id_key[32];
    const char *level = cpx_conf_str(conf, "log_level", NULL);
    if (level && cpx_log_level_parse(level) >= 0)
        cpx_log_set_level((cpx_log_level)cpx_log_level_parse(level));

    char spool[4096], keys[4096], path[4096 + 64], gwpub[4096];
    const char *dept = cpx_conf_str(conf, "department", NULL);
    const char *endpoint = cpx_conf_str(conf, "gateway", NULL);
    const char *cname = cpx_conf_str(conf, "connector", NULL);
    if (cpx_conf_path(conf, "spool", spool, sizeof spool) != CPX_OK) {
        cpx_log_error(MOD, "msg=\"configuration needs spool\" config=\"%s\"", config);
        goto out;
    }
    if (status) {
        exit_code = print_status(spool);
        goto out;
    }
    if (!dept || !endpoint || !cname || cpx_conf_path(conf, "keys", keys, sizeof keys) != CPX_OK) {
        cpx_log_error(MOD, "msg=\"configuration needs department, gateway, keys, spool and connector\" config=\"%s\"",
                      config);
        goto out;
    }
    const cpx_connector_t *conn = NULL;
    for (size_t i = 0; i < sizeof connectors / sizeof *connectors; i++)
        if (!strcmp(connectors[i]->name, cname))
            conn = connectors[i];
    if (!conn) {
        cpx_log_error(MOD, "msg=\"unknown connector\" connector=\"%s\" known=\"file,http,sql\"", cname);
        goto out;
    }
    cpx_adapter_opts_t o;
    memset(&o, 0, sizeof o);
    bool have_gwpub = cpx_conf_path(conf, "gateway_key", gwpub, sizeof gwpub) == CPX_OK;
    if (cpx_client_opts_from_dir(&o.client, endpoint, keys, dept, have_gwpub ? gwpub : NULL) != CPX_OK)
        goto out;
    snprintf(path, sizeof path, "%s/%s.sign.key", keys, dept);
    if (!(sign = cpx_key_load_private(path)))
        goto out;
    if (mkdir_parents(spool, 0700) != 0) {
        cpx_log_error(MOD, "msg=\"cannot create spool\" spool=\"%s\" err=\"%s\"", spool, strerror(errno));
        goto out;
    }
    /* The id key makes message ids stable across restarts: it lives with the spool. */
    char idpath[4096 + 16];
    if (cpx_conf_path(conf, "id_key", idpath, sizeof idpath) != CPX_OK)
        snprintf(idpath, sizeof idpath, "%s/id.key", spool);
    if (access(idpath, F_OK) != 0 && cpx_symkey_create(idpath) == CPX_OK)
        cpx_log_info(MOD, "msg=\"created id key\" path=\"%s\"", idpath);
    if (cpx_symkey_load(idpath, id_key) != CPX_OK) {
        cpx_log_error(MOD, "msg=\"cannot read or create id key\" path=\"%s\"", idpath);
        goto out;
    }
    long long batch, max_pending, cycle_max, resend, backoff, hb, st;
    if (conf_uint(conf, "batch", 256, CPX_MAX_BATCH_ENVELOPES, &batch) ||
        conf_uint(conf, "max_pending", 50000, 10000000, &max_pending) ||
        conf_uint(conf, "cycle_max", 2000, 100000, &cycle_max) ||
        conf_uint(conf, "resend_after_ms", 10000, 86400000, &resend) ||
        conf_uint(conf, "backoff_max_ms", 300000, 86400000, &backoff) ||
        conf_uint(conf, "heartbeat_ms", 5000, 3600000, &hb) ||
        conf_uint(conf, "status_every_ms", 30000, 86400000, &st))
        goto out;
    o.dept = dept;
    o.spool_dir = spool;
    o.sign_key = sign;
    o.id_key = id_key;
    o.batch = (unsigned)batch;
    o.max_pending = (unsigned)max_pending;
    o.cycle_max = (unsigned)cycle_max;
    o.resend_after_ms = (int)resend;
    o.backoff_max_ms = (int)backoff;
    o.heartbeat_ms = (int)hb;
    o.status_every_ms = (int)st;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    a = cpx_adapter_new(&o, conn, cpx_conf_get(conf, conn->name));
    if (!a)
        goto out;
    const char *mlisten = cpx_conf_str(conf, "metrics", NULL);
    if (mlisten && !(adm = start_metrics(mlisten, dept, spool)))
        goto out;
    int rc = run(a, adm, run_for);
    if (rc != CPX_OK)
        cpx_log_error(MOD, "msg=\"adapter stopped on error\" err=%s", cpx_strerror(rc));
    else
        cpx_log_info(MOD, "msg=\"adapter stopped\" dept=%s", dept);
    exit_code = rc == CPX_OK ? 0 : 1;
out:
    cpx_adm_stop(&adm);
    cpx_adapter_destroy(&a);
    cpx_key_destroy(&sign);
    cpx_cleanse(id_key, sizeof id_key);
    cpx_conf_destroy(&conf);
    return exit_code;
}
