/* sql.c — the sql connector (in progress: refuses to start until implemented). */
#include "cpx/adapter.h"
#include "cpx/log.h"

static int open_sql(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    (void)a;
    (void)sec;
    *state = NULL;
    cpx_log_error("sql", "msg=\"the sql connector is not implemented yet\"");
    return CPX_ERR_STATE;
}

static int poll_sql(void *state, int64_t now_ms)
{
    (void)state;
    (void)now_ms;
    return CPX_OK;
}

static void close_sql(void *state) { (void)state; }

const cpx_connector_t cpx_connector_sql = {
    .name = "sql",
    .open = open_sql,
    .poll = poll_sql,
    .close = close_sql,
};
