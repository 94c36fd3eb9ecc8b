/* http.c — the http connector: a local webhook in (libmicrohttpd), callbacks out (libcurl).
 *
 *   POST /v1/messages   Authorization: Bearer TOKEN   [Idempotency-Key: local-id]
 *        body: an envelope in the JSON form without message_id, sender or signature,
 *              e.g. {"priority":"IMMEDIATE","discovery_report":{...}}
 *        202 {"message_id":"..."}  once the message is in the durable spool
 *        400 {"errors":[{"path","rule","message"}]}   401 bad token   413 too large
 *        503 {"retry_after_ms":...} while max_pending submissions await the gateway
 *   Deliveries are POSTed as JSON (cpx_adapter_delivery_json) to `callback`, with the
 *   same bearer token; a 2xx confirms them, anything else is retried with backoff.
 *
 * The daemon runs in the adapter's loop (external epoll, no threads), so a request is
 * answered only after the cycle that spooled it has committed: 202 means durable. The
 * Idempotency-Key header makes the message id HMAC(id key, "http:" key), so a local
 * system that retries a POST after a timeout does not create a second report. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/adapter.h"
#include "cpx/crypto.h"
#include "cpx/log.h"

#define MOD "http"
#define MAX_BODY (256u << 10)
#define MAX_QUEUED_DELIVERIES 4096
#define CALLBACK_TIMEOUT_MS 5000

static const char *const http_keys[] = {"listen", "token_file", "callback", "retry_max_ms", NULL};

typedef struct req {
    char *body;
    size_t len;
    bool too_large;
    bool done;                /* answered or waiting for the commit */
    struct MHD_Connection *conn;
    int status;               /* response prepared after the commit */
    char *reply;
    struct req *next_waiting;
} req_t;

typedef struct outgoing {
    uint64_t delivery_id;
    uint8_t id[CPX_ADAPTER_ID_LEN];
    char *json;
    int64_t due_ms;
    int64_t wait_ms;
    unsigned attempts;
} outgoing_t;

typedef struct hconn {
    cpx_adapter_t *a;
    struct MHD_Daemon *d;
    int epfd;
    char token[256];
    char callback[1024];
    int64_t retry_max_ms;
    req_t *waiting;           /* spooled this cycle: answered after the commit */
    bool resumed;
    CURL *curl;
    outgoing_t *out;
    size_t n_out;
} hconn_t;

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static char *errors_json(const cpx_errors_t *errs)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < errs->count; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "path", errs->items[i].path, "rule",
                                           errs->items[i].rule, "message", errs->items[i].message));
    json_t *o = json_pack("{s:o, s:b}", "errors", a ? a : json_array(), "truncated", errs->truncated);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static bool authorised(hconn_t *h, struct MHD_Connection *c)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7))
        return false;
    size_t n = strlen(h->token);
    return strlen(auth + 7) == n && cpx_ct_equal(auth + 7, h->token, n);
}

/* A whole request body is in: map it, spool it (answer after the commit). */
static enum MHD_Result handle(hconn_t *h, struct MHD_Connection *c, req_t *r)
{
    if (r->too_large)
        return respond(c, MHD_HTTP_CONTENT_TOO_LARGE, "{\"errors\":[{\"path\":\"\",\"rule\":\"too_large\",\"message\":\"body over 256 KiB\"}]}");
    if (cpx_adapter_backlogged(h->a) || !cpx_adapter_can_submit(h->a))
        return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"retry_after_ms\":1000}");
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    int rc = cpx_adapter_json_to_envelope(r->body ? r->body : "", r->len, &env, &errs);
    if (rc != CPX_OK) {
        char *e = errors_json(&errs);
        enum MHD_Result ret = respond(c, rc == CPX_ERR_INVALID ? MHD_HTTP_BAD_REQUEST
                                                               : MHD_HTTP_INTERNAL_SERVER_ERROR,
                                      e ? e : "{}");
        free(e);
        return ret;
    }
    uint8_t id[CPX_ADAPTER_ID_LEN];
    const char *ikey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    char ident[300];
    if (ikey && *ikey && strlen(ikey) < 256) {
        int n = snprintf(ident, sizeof ident, "http:%s", ikey);
        cpx_adapter_derive_id(h->a, ident, (size_t)n, id);
    } else if (cpx_random(id, sizeof id) != CPX_OK) {
        cpx_msg_free(env);
        return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "{}");
    }
    char idhex[2 * CPX_ADAPTER_ID_LEN + 1], origin[64];
    cpx_hex(id, sizeof id, idhex);
    snprintf(origin, sizeof origin, "h:%s", idhex);
    if ((rc = cpx_adapter_submit(h->a, &env, id, origin)) != CPX_OK) {
        cpx_msg_free(env);
        return respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"retry_after_ms\":1000}");
    }
    char reply[96];
    snprintf(reply, sizeof reply, "{\"message_id\":\"%s\"}", idhex);
    r->reply = strdup(reply);
    r->status = MHD_HTTP_ACCEPTED;
    r->conn = c;
    r->next_waiting = h->waiting;
    h->waiting = r;
    MHD_suspend_connection(c);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    hconn_t *h = cls;
    req_t *r = *con_cls;
    if (!r) {
        if (strcmp(method, "POST") || strcmp(url, "/v1/messages"))
            return respond(c, strcmp(url, "/v1/messages") ? MHD_HTTP_NOT_FOUND
                                                          : MHD_HTTP_METHOD_NOT_ALLOWED, "{}");
        if (!authorised(h, c))
            return respond(c, MHD_HTTP_UNAUTHORIZED, "{\"errors\":[{\"path\":\"\",\"rule\":\"token\",\"message\":\"bad or missing bearer token\"}]}");
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->len + *upload_size > MAX_BODY) {
            r->too_large = true;
        } else if (!r->too_large) {
            char *b = realloc(r->body, r->len + *upload_size + 1);
            if (!b)
                return MHD_NO;
            memcpy(b + r->len, upload, *upload_size);
            r->body = b;
            r->len += *upload_size;
            r->body[r->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->done) { /* resumed after the commit */
        enum MHD_Result ret = respond(c, r->status, r->reply ? r->reply : "{}");
        return ret;
    }
    r->done = true;
    return handle(h, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req_t *r = *con_cls;
    if (!r)
        return;
    free(r->body);
    free(r->reply);
    free(r);
    *con_cls = NULL;
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    unsigned port;
    memset(sa, 0, sizeof *sa);
    if (sscanf(s, "%63[^:]:%u", host, &port) != 2 || port > 65535)
        return CPX_ERR_CONFIG;
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return CPX_ERR_CONFIG;
    return CPX_OK;
}

static void h_close(void *state)
{
    hconn_t *h = state;
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    if (h->curl)
        curl_easy_cleanup(h->curl);
    for (size_t i = 0; i < h->n_out; i++)
        free(h->out[i].json);
    free(h->out);
    cpx_cleanse(h->token, sizeof h->token);
    free(h);
}

static int h_open(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    hconn_t *h = calloc(1, sizeof *h);
    if (!h)
        return CPX_ERR_NOMEM;
    h->a = a;
    h->epfd = -1;
    const char *listen = cpx_conf_str(sec, "listen", "127.0.0.1:8480");
    const char *cb = cpx_conf_str(sec, "callback", NULL);
    char tpath[4096];
    long long retry_max;
    struct sockaddr_in sa;
    if (cpx_conf_path(sec, "token_file", tpath, sizeof tpath) != CPX_OK || parse_listen(listen, &sa) ||
        cpx_conf_int(sec, "retry_max_ms", 60000, 100, 86400000, &retry_max) != CPX_OK) {
        cpx_log_error(MOD, "msg=\"http connector needs http.token_file and http.listen HOST:PORT\"");
        h_close(h);
        return CPX_ERR_CONFIG;
    }
    h->retry_max_ms = retry_max;
    FILE *f = fopen(tpath, "r");
    size_t n = f ? fread(h->token, 1, sizeof h->token - 1, f) : 0;
    if (f)
        fclose(f);
    while (n && (h->token[n - 1] == '\n' || h->token[n - 1] == '\r' || h->token[n - 1] == ' '))
        n--;
    h->token[n] = '\0';
    if (n < 16) {
        cpx_log_error(MOD, "msg=\"bearer token missing or shorter than 16 characters\" path=\"%s\"", tpath);
        h_close(h);
        return CPX_ERR_CONFIG;
    }
    if (cb) {
        if (strlen(cb) >= sizeof h->callback) {
            h_close(h);
            return CPX_ERR_CONFIG;
        }
        strcpy(h->callback, cb);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        h->curl = curl_easy_init();
    }
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                            ntohs(sa.sin_port), NULL, NULL, on_request, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_LIMIT, 256u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!h->d) {
        cpx_log_error(MOD, "msg=\"cannot listen\" listen=\"%s\"", listen);
        h_close(h);
        return CPX_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    h->epfd = info ? info->epoll_fd : -1;
    cpx_log_info(MOD, "msg=\"webhook listening\" listen=\"%s\" path=/v1/messages callback=\"%s\"", listen,
                 h->callback[0] ? h->callback : "none");
    *state = h;
    return CPX_OK;
}

static int h_fds(void *state, zmq_pollitem_t *items, int max, int *timeout_ms)
{
    hconn_t *h = state;
    int n = 0;
    if (h->epfd >= 0 && max > 0)
        items[n++] = (zmq_pollitem_t){.fd = h->epfd, .events = ZMQ_POLLIN};
    MHD_UNSIGNED_LONG_LONG t;
    if (h->resumed)
        *timeout_ms = 0;
    else if (MHD_get_timeout(h->d, &t) == MHD_YES && (long long)t < *timeout_ms)
        *timeout_ms = (int)t;
    int64_t now = cpx_adapter_now_ms();
    for (size_t i = 0; i < h->n_out; i++) {
        int64_t w = h->out[i].due_ms - now;
        if (w < *timeout_ms)
            *timeout_ms = w < 0 ? 0 : (int)w;
    }
    return n;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

/* POSTs one delivery; 2xx means the local system has it. */
static long post_delivery(hconn_t *h, const outgoing_t *o)
{
    struct curl_slist *hdr = NULL;
    char auth[300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->token);
    hdr = curl_slist_append(hdr, "Content-Type: application/json; charset=utf-8");
    hdr = curl_slist_append(hdr, auth);
    curl_easy_reset(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_URL, h->callback);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, o->json);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long)CALLBACK_TIMEOUT_MS);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, discard);
    long code = 0;
    CURLcode rc = curl_easy_perform(h->curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdr);
    return rc == CURLE_OK ? code : -(long)rc;
}

static int h_poll(void *state, int64_t now_ms)
{
    hconn_t *h = state;
    h->resumed = false;
    MHD_run(h->d);
    for (size_t i = 0; i < h->n_out;) {
        outgoing_t *o = &h->out[i];
        if (o->due_ms > now_ms) {
            i++;
            continue;
        }
        long code = post_delivery(h, o);
        char idhex[33];
        cpx_hex(o->id, sizeof o->id, idhex);
        if (code >= 200 && code < 300) {
            cpx_adapter_delivery_done(h->a, o->delivery_id, o->id, CPX_ADAPTER_ID_LEN, true, NULL);
            cpx_log_info(MOD, "msg=\"delivery posted\" id=%s attempts=%u status=%ld", idhex,
                         o->attempts + 1, code);
            free(o->json);
            h->out[i] = h->out[--h->n_out];
            continue;
        }
        o->attempts++;
        o->due_ms = now_ms + o->wait_ms;
        o->wait_ms = o->wait_ms * 2 > h->retry_max_ms ? h->retry_max_ms : o->wait_ms * 2;
        cpx_log_warn(MOD, "msg=\"callback failed, will retry\" id=%s status=%ld attempts=%u retry_in_ms=%lld",
                     idhex, code, o->attempts, (long long)(o->due_ms - now_ms));
        i++;
    }
    return CPX_OK;
}

static void h_committed(void *state)
{
    hconn_t *h = state;
    for (req_t *r = h->waiting, *next; r; r = next) {
        next = r->next_waiting;
        MHD_resume_connection(r->conn);
        h->resumed = true;
    }
    h->waiting = NULL;
}

static int h_deliver(void *state, const cpx_adapter_delivery_t *d, char *reason, size_t rsize)
{
    hconn_t *h = state;
    if (!h->callback[0]) {
        snprintf(reason, rsize, "no callback configured");
        return CPX_ERR_REFUSED;
    }
    for (size_t i = 0; i < h->n_out; i++)
        if (!memcmp(h->out[i].id, d->envelope->message_id.data, CPX_ADAPTER_ID_LEN))
            return CPX_ADAPTER_PENDING;
    if (h->n_out == MAX_QUEUED_DELIVERIES)
        return CPX_ERR_FULL; /* not taken now: the gateway delivers it again later */
    outgoing_t *out = realloc(h->out, (h->n_out + 1) * sizeof *out);
    if (!out)
        return CPX_ERR_NOMEM;
    h->out = out;
    outgoing_t *o = &h->out[h->n_out];
    memset(o, 0, sizeof *o);
    o->json = cpx_adapter_delivery_json(d->delivery_id, d->envelope, d->withheld, d->n_withheld);
    if (!o->json)
        return CPX_ERR_NOMEM;
    o->delivery_id = d->delivery_id;
    memcpy(o->id, d->envelope->message_id.data, CPX_ADAPTER_ID_LEN);
    o->due_ms = 0;
    o->wait_ms = 500;
    h->n_out++;
    return CPX_ADAPTER_PENDING;
}

const cpx_connector_t cpx_connector_http = {
    .name = "http",
    .config_keys = http_keys,
    .open = h_open,
    .fds = h_fds,
    .poll = h_poll,
    .deliver = h_deliver,
    .committed = h_committed,
    .close = h_close,
};
