/* http.c — the http connector (in progress: refuses to start until implemented). */
#include "cpx/adapter.h"
#include "cpx/log.h"

static int open_http(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    (void)a;
    (void)sec;
    *state = NULL;
    cpx_log_error("http", "msg=\"the http connector is not implemented yet\"");
    return CPX_ERR_STATE;
}

static int poll_http(void *state, int64_t now_ms)
{
    (void)state;
    (void)now_ms;
    return CPX_OK;
}

static void close_http(void *state) { (void)state; }

const cpx_connector_t cpx_connector_http = {
    .name = "http",
    .open = open_http,
    .poll = poll_http,
    .close = close_http,
};
