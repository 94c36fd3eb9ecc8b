/* metrics.c — the adapter's /metrics (Prometheus text) and /healthz. The HTTP thread
 * never touches the adapter: it reads a snapshot the adapter loop publishes after each
 * cycle, so serving cannot slow or disturb the exchange. */
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cpx/err.h"
#include "cpx/log.h"

#define MOD "adapter.metrics"
/* /healthz fails when the loop has not published for this long (it cycles every 200 ms). */
#define STALE_MS 5000

struct cpx_adm {
    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    char dept[64];
    cpx_adapter_counters_t c;
    size_t pending;
    int64_t published_ms;   /* monotonic; 0 = never */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static char *render_metrics(cpx_adm_t *self, size_t *len)
{
    pthread_mutex_lock(&self->lock);
    cpx_adapter_counters_t c = self->c;
    size_t pending = self->pending;
    int64_t age = self->published_ms ? mono_ms() - self->published_ms : -1;
    pthread_mutex_unlock(&self->lock);
    const struct {
        const char *name, *help;
        unsigned long long v;
    } rows[] = {
        {"cpx_adapter_spooled_total", "Submissions written to the local spool.", (unsigned long long)c.spooled},
        {"cpx_adapter_sent_total", "Envelopes sent to the gateway, resends included.", (unsigned long long)c.sent},
        {"cpx_adapter_resent_total", "Envelopes sent again.", (unsigned long long)c.resent},
        {"cpx_adapter_acked_total", "Submissions acknowledged by the gateway.", (unsigned long long)c.acked},
        {"cpx_adapter_duplicate_acks_total", "Acks for submissions already settled (answers to resends).",
         (unsigned long long)c.duplicate_acks},
        {"cpx_adapter_nacked_total", "Submissions refused for good (in the rejected area).", (unsigned long long)c.nacked},
        {"cpx_adapter_delivered_total", "Deliveries handed to the local system.", (unsigned long long)c.delivered},
        {"cpx_adapter_confirmed_total", "Deliveries confirmed to the gateway.", (unsigned long long)c.confirmed},
        {"cpx_adapter_failed_total", "Local rejections and deliveries the local system refused.", (unsigned long long)c.failed},
    };
    size_t cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        n += (size_t)snprintf(buf + n, cap - n, "# HELP %s %s\n# TYPE %s counter\n%s{department=\"%s\"} %llu\n",
                              rows[i].name, rows[i].help, rows[i].name, rows[i].name, self->dept, rows[i].v);
    n += (size_t)snprintf(buf + n, cap - n,
                          "# HELP cpx_adapter_pending Submissions not yet acknowledged.\n"
                          "# TYPE cpx_adapter_pending gauge\ncpx_adapter_pending{department=\"%s\"} %zu\n"
                          "# HELP cpx_adapter_last_cycle_age_seconds Time since the adapter loop last ran.\n"
                          "# TYPE cpx_adapter_last_cycle_age_seconds gauge\n"
                          "cpx_adapter_last_cycle_age_seconds{department=\"%s\"} %.3f\n",
                          self->dept, pending, self->dept, age < 0 ? -1.0 : age / 1000.0);
    *len = n < cap ? n : cap - 1;
    return buf;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)con_cls;
    cpx_adm_t *self = cls;
    if (*upload_size)
        return MHD_NO;  /* no bodies accepted */
    if (strcmp(method, "GET") != 0)
        return reply(conn, 405, "text/plain", strdup("GET only\n"), 9);
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *body = render_metrics(self, &len);
        return body ? reply(conn, 200, "text/plain; version=0.0.4", body, len) : MHD_NO;
    }
    if (!strcmp(url, "/healthz")) {
        pthread_mutex_lock(&self->lock);
        int64_t at = self->published_ms;
        pthread_mutex_unlock(&self->lock);
        int ok = at && mono_ms() - at < STALE_MS;
        return ok ? reply(conn, 200, "text/plain", strdup("ok\n"), 3)
                  : reply(conn, 503, "text/plain", strdup("adapter loop not running\n"), 25);
    }
    return reply(conn, 404, "text/plain", strdup("not found\n"), 10);
}

cpx_adm_t *cpx_adm_start(const char *listen, const char *dept, unsigned *port_out)
{
    char host[64];
    unsigned port = 0;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || (size_t)(colon - listen) >= sizeof host || sscanf(colon + 1, "%u", &port) != 1 ||
        port > 65535) {
        cpx_log_error(MOD, "msg=\"metrics: expected HOST:PORT\" value=\"%s\"", listen ? listen : "");
        return NULL;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        cpx_log_error(MOD, "msg=\"metrics: not an IPv4 address\" host=\"%s\"", host);
        return NULL;
    }
    cpx_adm_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    snprintf(self->dept, sizeof self->dept, "%s", dept ? dept : "");
    self->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                               handle, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!self->d) {
        cpx_log_error(MOD, "msg=\"metrics: cannot listen\" listen=\"%s\"", listen);
        cpx_adm_stop(&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned bound = info ? info->port : port;
    if (port_out)
        *port_out = bound;
    cpx_log_info(MOD, "msg=\"serving /metrics and /healthz\" host=%s port=%u", host, bound);
    return self;
}

void cpx_adm_publish(cpx_adm_t *self, const cpx_adapter_counters_t *c, size_t pending)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->c = *c;
    self->pending = pending;
    self->published_ms = mono_ms();
    pthread_mutex_unlock(&self->lock);
}

void cpx_adm_stop(cpx_adm_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_adm_t *self = *self_p;
    if (self->d)
        MHD_stop_daemon(self->d);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}
