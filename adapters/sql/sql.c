/* sql.c — the sql connector: an agency's PostgreSQL database (libpq).
 *
 * In: rows of a table or view (`source`) are read in order of a `cursor` column —
 *       SELECT * FROM source WHERE cursor > $last ORDER BY cursor LIMIT n
 *     each row is mapped like a CSV record (column name = local field) and submitted;
 *     the last cursor value read is kept in the spool and committed in the SAME LMDB
 *     transaction as the rows it covers, so after a crash reading resumes right after
 *     the last spooled row, and a row re-read before that commit gets the same message
 *     id (HMAC of source and cursor value) and is dropped by the gateway as a
 *     duplicate. LISTEN `channel` wakes the reader at once; `poll_ms` is the safety net.
 *     The cursor must be unique and become visible in increasing order (a sequence
 *     assigned under a transaction-level lock, see deploy/jiangyin/adapters/police-110.sql):
 *     a value committed below one already read would never be seen.
 * Out: each delivery is one statement, hence one PostgreSQL transaction:
 *       WITH ins AS (INSERT INTO delivered_table (message_id) VALUES ($1)
 *                    ON CONFLICT DO NOTHING RETURNING message_id)
 *       INSERT INTO delivery_table (...) SELECT ... FROM ins
 *     so a redelivered message inserts nothing and is confirmed again.
 * Refused rows (mapping errors, the gateway's Nacks) are in the spool's rejected area
 * and, when `reject_table` is set, also written there (row key, cursor, reason).
 * The connection is re-established with backoff; nothing is read while it is down and
 * deliveries are answered "not now", so the gateway redelivers them later. */
#include <ctype.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/adapter.h"
#include "cpx/log.h"

#define MOD "sql"
#define MAX_IDENT 63
#define MAX_CURSOR 256
#define MAX_QUEUED_REJECTS 10000

static const char *const sql_keys[] = {"conninfo", "source", "cursor", "channel", "mapping",
                                       "poll_ms", "fetch", "delivery_table", "delivered_table",
                                       "reject_table", "timezone", "reconnect_max_ms", NULL};

typedef struct reject {
    char *key, *cursor, *reason;
} reject_t;

typedef struct sconn {
    cpx_adapter_t *a;
    char conninfo[2048];
    char source[2 * MAX_IDENT + 2], cursor_col[MAX_IDENT + 1], channel[MAX_IDENT + 1];
    char delivery_table[2 * MAX_IDENT + 2], delivered_table[2 * MAX_IDENT + 2];
    char reject_table[2 * MAX_IDENT + 2];
    char timezone[64];
    cpx_mapping_t *map;
    const char *record_key;           /* the mapping's; borrowed */
    PGconn *pg;
    int64_t next_connect_ms, backoff_ms, reconnect_max_ms;
    int64_t last_read_ms, poll_ms;
    long long fetch;
    bool want_read;
    char cursor[MAX_CURSOR + 1];      /* last value spooled ("" before the first row) */
    bool cursor_dirty;
    char q_first[512], q_next[512], q_deliver[1024], q_reject[512];
    reject_t *rq;                     /* rejections waiting for the database */
    size_t n_rq;
    uint64_t rows_read;
} sconn_t;

typedef struct rowctx {
    PGresult *res;
    int row;
} rowctx_t;

/* Identifiers go into SQL text, so only plain (optionally schema-qualified) names. */
static bool ident_ok(const char *s, bool dotted)
{
    size_t part = 0;
    bool dot = false;
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.' && dotted && !dot && part) {
            dot = true;
            part = 0;
            continue;
        }
        if (!(isalnum((unsigned char)*p) || *p == '_') || (part == 0 && isdigit((unsigned char)*p)) ||
            ++part > MAX_IDENT)
            return false;
    }
    return part > 0;
}

/* libpq messages end in newlines; log lines must not. */
static const char *pg_msg(const PGconn *pg, char *buf, size_t size)
{
    snprintf(buf, size, "%s", pg ? PQerrorMessage(pg) : "no connection");
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '"')
            *p = *p == '"' ? '\'' : ' ';
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ')
        buf[--n] = '\0';
    return buf;
}

/* ---- connection ------------------------------------------------------------------- */

static void disconnect(sconn_t *s, int64_t now)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 500;
    if (s->backoff_ms > s->reconnect_max_ms)
        s->backoff_ms = s->reconnect_max_ms;
    s->next_connect_ms = now + s->backoff_ms;
}

/* After a failed statement: a lost connection is dropped and retried later. */
static void check_conn(sconn_t *s, int64_t now)
{
    if (s->pg && PQstatus(s->pg) != CONNECTION_OK) {
        char m[512];
        cpx_log_warn(MOD, "msg=\"database connection lost\" error=\"%s\" retry_ms=%lld",
                     pg_msg(s->pg, m, sizeof m), (long long)(s->backoff_ms ? s->backoff_ms * 2 : 500));
        disconnect(s, now);
    }
}

static bool exec_ok(sconn_t *s, const char *sql)
{
    PGresult *r = PQexec(s->pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

static void flush_rejects(sconn_t *s, int64_t now);

static void try_connect(sconn_t *s, int64_t now)
{
    if (s->pg || now < s->next_connect_ms)
        return;
    s->pg = PQconnectdb(s->conninfo);
    char m[512], sql[256];
    if (PQstatus(s->pg) != CONNECTION_OK) {
        cpx_log_warn(MOD, "msg=\"cannot connect to the database\" error=\"%s\" retry_ms=%lld",
                     pg_msg(s->pg, m, sizeof m), (long long)(s->backoff_ms ? s->backoff_ms * 2 : 500));
        disconnect(s, now);
        return;
    }
    /* text values as the mapping expects them: UTF-8, ISO dates, local time */
    snprintf(sql, sizeof sql, "SET client_encoding TO 'UTF8'; SET DateStyle TO 'ISO, YMD'; "
                              "SET TimeZone TO '%s'", s->timezone);
    if (!exec_ok(s, sql)) {
        cpx_log_error(MOD, "msg=\"cannot set session parameters\" error=\"%s\"", pg_msg(s->pg, m, sizeof m));
        disconnect(s, now);
        return;
    }
    if (s->channel[0]) {
        snprintf(sql, sizeof sql, "LISTEN %s", s->channel);
        if (!exec_ok(s, sql)) {
            cpx_log_error(MOD, "msg=\"LISTEN failed\" channel=%s error=\"%s\"", s->channel,
                          pg_msg(s->pg, m, sizeof m));
            disconnect(s, now);
            return;
        }
    }
    cpx_log_info(MOD, "msg=\"connected to the database\" source=%s cursor=%s after=\"%s\" channel=%s",
                 s->source, s->cursor_col, s->cursor, s->channel[0] ? s->channel : "-");
    s->backoff_ms = 0;
    s->want_read = true; /* notifications sent while we were away are lost: look now */
    flush_rejects(s, now);
}

/* ---- rejections -------------------------------------------------------------------- */

static bool write_reject(sconn_t *s, const char *key, const char *cursor, const char *reason)
{
    const char *v[3] = {key, cursor, reason};
    PGresult *r = PQexecParams(s->pg, s->q_reject, 3, NULL, v, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        char m[512];
        cpx_log_warn(MOD, "msg=\"cannot record rejection in the database\" table=%s error=\"%s\"",
                     s->reject_table, pg_msg(s->pg, m, sizeof m));
    }
    PQclear(r);
    return ok;
}

static void flush_rejects(sconn_t *s, int64_t now)
{
    if (!s->n_rq)
        return;
    size_t i = 0;
    for (; i < s->n_rq && s->pg; i++) {
        if (!write_reject(s, s->rq[i].key, s->rq[i].cursor, s->rq[i].reason)) {
            check_conn(s, now);
            break;
        }
        free(s->rq[i].key);
        free(s->rq[i].cursor);
        free(s->rq[i].reason);
    }
    memmove(s->rq, s->rq + i, (s->n_rq - i) * sizeof *s->rq);
    s->n_rq -= i;
}

/* The spool's rejected area is the record; the table is the agency's view of it, written
 * at once when possible and otherwise queued (a crash loses only the copy). */
static void note_reject(sconn_t *s, const char *key, const char *cursor, const char *reason)
{
    if (!s->reject_table[0])
        return;
    if (s->pg && s->n_rq == 0 && write_reject(s, key, cursor, reason))
        return;
    if (s->n_rq >= MAX_QUEUED_REJECTS) {
        cpx_log_warn(MOD, "msg=\"rejection queue full: kept in the spool only\" key=\"%s\"", key);
        return;
    }
    if (!s->rq && !(s->rq = calloc(MAX_QUEUED_REJECTS, sizeof *s->rq)))
        return;
    reject_t *q = &s->rq[s->n_rq];
    q->key = strdup(key);
    q->cursor = strdup(cursor);
    q->reason = strdup(reason);
    if (q->key && q->cursor && q->reason)
        s->n_rq++;
    else {
        free(q->key);
        free(q->cursor);
        free(q->reason);
    }
}

/* origin "s:LEN:CURSOR:KEY": the cursor's length makes it parseable whatever the
 * cursor and key contain (timestamps have ':'). */
static void make_origin(const char *cursor, const char *key, char *out, size_t size)
{
    snprintf(out, size, "s:%zu:%s:%s", strlen(cursor), cursor, key);
}

static bool split_origin(const char *origin, char *cursor, size_t csize, const char **key)
{
    if (strncmp(origin, "s:", 2))
        return false;
    char *end;
    unsigned long cl = strtoul(origin + 2, &end, 10);
    if (*end != ':' || cl >= csize || strlen(end + 1) < cl + 1 || end[1 + cl] != ':')
        return false;
    memcpy(cursor, end + 1, cl);
    cursor[cl] = '\0';
    *key = end + 2 + cl;
    return true;
}

/* ---- reading rows ------------------------------------------------------------------ */

static const char *row_get(void *ctx, const char *name)
{
    rowctx_t *rc = ctx;
    int n = PQnfields(rc->res);
    for (int i = 0; i < n; i++)
        if (!strcmp(PQfname(rc->res, i), name))
            return PQgetisnull(rc->res, rc->row, i) ? "" : PQgetvalue(rc->res, rc->row, i);
    return NULL;
}

/* Maps one row and submits it, or records why it was refused. */
static void take_row(sconn_t *s, PGresult *res, int row, int cursor_col, int key_col)
{
    rowctx_t ctx = {res, row};
    const char *cur = PQgetvalue(res, row, cursor_col);
    const char *key = key_col >= 0 && !PQgetisnull(res, row, key_col) ? PQgetvalue(res, row, key_col) : cur;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1];
    make_origin(cur, key, origin, sizeof origin);
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    int rc = cpx_mapping_apply(s->map, row_get, &ctx, &env, &errs);
    if (rc != CPX_OK) {
        char why[2048], reason[2300];
        if (rc == CPX_ERR_INVALID)
            cpx_errors_format(&errs, why, sizeof why);
        else
            snprintf(why, sizeof why, "mapping: %s", cpx_strerror(rc));
        snprintf(reason, sizeof reason, "row %s=%s: %s", s->record_key ? s->record_key : s->cursor_col,
                 key, why);
        cpx_adapter_reject(s->a, origin, reason);
        note_reject(s, key, cur, reason);
        return;
    }
    char ident[2 * MAX_IDENT + MAX_CURSOR + 8];
    int n = snprintf(ident, sizeof ident, "sql:%s:%s", s->source, cur);
    uint8_t id[CPX_ADAPTER_ID_LEN];
    cpx_adapter_derive_id(s->a, ident, (size_t)n, id);
    if ((rc = cpx_adapter_submit(s->a, &env, id, origin)) != CPX_OK) {
        cpx_msg_free(env);
        cpx_adapter_reject(s->a, origin, "adapter: could not spool");
        note_reject(s, key, cur, "adapter: could not spool");
    }
}

/* Reads new rows while the adapter has room; the cursor moves only over rows taken. */
static void read_rows(sconn_t *s, int64_t now)
{
    while (s->pg && (s->want_read || now - s->last_read_ms >= s->poll_ms)) {
        size_t room = cpx_adapter_room(s->a);
        if (!room)
            return; /* the gateway's Acks make room; reading resumes then */
        long long lim = (long long)room < s->fetch ? (long long)room : s->fetch;
        char limbuf[24];
        snprintf(limbuf, sizeof limbuf, "%lld", lim);
        const char *v[2] = {s->cursor, limbuf};
        PGresult *res = s->cursor[0]
            ? PQexecParams(s->pg, s->q_next, 2, NULL, v, NULL, NULL, 0)
            : PQexecParams(s->pg, s->q_first, 1, NULL, v + 1, NULL, NULL, 0);
        s->last_read_ms = now;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            char m[512];
            cpx_log_error(MOD, "msg=\"cannot read source\" source=%s error=\"%s\"", s->source,
                          pg_msg(s->pg, m, sizeof m));
            PQclear(res);
            check_conn(s, now);
            return;
        }
        int cc = PQfnumber(res, s->cursor_col);
        int kc = s->record_key ? PQfnumber(res, s->record_key) : -1;
        int rows = PQntuples(res);
        if (cc < 0) {
            cpx_log_error(MOD, "msg=\"source has no cursor column\" source=%s cursor=%s", s->source,
                          s->cursor_col);
            PQclear(res);
            s->want_read = false;
            return;
        }
        for (int i = 0; i < rows; i++) {
            const char *cur = PQgetvalue(res, i, cc);
            if (PQgetisnull(res, i, cc) || strlen(cur) > MAX_CURSOR) {
                /* cannot be resumed after: stop here rather than skip or repeat */
                cpx_log_error(MOD, "msg=\"cursor value null or over %d bytes: reading stopped\" after=\"%s\"",
                              MAX_CURSOR, s->cursor);
                PQclear(res);
                s->want_read = false;
                s->last_read_ms = now + 60000;
                return;
            }
            take_row(s, res, i, cc, kc);
            strcpy(s->cursor, cur);
            s->cursor_dirty = true;
            s->rows_read++;
        }
        PQclear(res);
        if (rows < lim)
            s->want_read = false;
    }
}

/* ---- connector callbacks ---------------------------------------------------------- */

static void s_close(void *state)
{
    sconn_t *s = state;
    if (!s)
        return;
    if (s->pg)
        PQfinish(s->pg);
    for (size_t i = 0; i < s->n_rq; i++) {
        free(s->rq[i].key);
        free(s->rq[i].cursor);
        free(s->rq[i].reason);
    }
    free(s->rq);
    cpx_mapping_destroy(&s->map);
    free(s);
}

static int conf_ident(const cpx_conf_t *sec, const char *key, const char *dflt, bool dotted,
                      char *out, size_t size)
{
    const char *v = cpx_conf_str(sec, key, dflt);
    if (!v) {
        out[0] = '\0';
        return CPX_OK;
    }
    if (!ident_ok(v, dotted) || strlen(v) >= size) {
        char where[256];
        cpx_log_error(MOD, "msg=\"sql.%s must be a plain SQL name%s\" value=\"%s\" at=%s", key,
                      dotted ? " (schema.name allowed)" : "", v,
                      cpx_conf_where(cpx_conf_get(sec, key), where, sizeof where));
        return CPX_ERR_CONFIG;
    }
    snprintf(out, size, "%s", v);
    return CPX_OK;
}

static int s_open(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    sconn_t *s = calloc(1, sizeof *s);
    if (!s)
        return CPX_ERR_NOMEM;
    s->a = a;
    char mpath[4096], err[512];
    long long poll_ms, rmax;
    const char *ci = cpx_conf_str(sec, "conninfo", NULL);
    const char *tz = cpx_conf_str(sec, "timezone", "Asia/Shanghai");
    if (!sec || !ci || strlen(ci) >= sizeof s->conninfo ||
        cpx_conf_path(sec, "mapping", mpath, sizeof mpath) != CPX_OK ||
        conf_ident(sec, "source", NULL, true, s->source, sizeof s->source) ||
        conf_ident(sec, "cursor", NULL, false, s->cursor_col, sizeof s->cursor_col) ||
        !s->source[0] || !s->cursor_col[0] ||
        conf_ident(sec, "channel", NULL, false, s->channel, sizeof s->channel) ||
        conf_ident(sec, "delivery_table", NULL, true, s->delivery_table, sizeof s->delivery_table) ||
        conf_ident(sec, "delivered_table", "cpx_delivered", true, s->delivered_table,
                   sizeof s->delivered_table) ||
        conf_ident(sec, "reject_table", NULL, true, s->reject_table, sizeof s->reject_table) ||
        cpx_conf_int(sec, "poll_ms", 5000, 10, 3600000, &poll_ms) != CPX_OK ||
        cpx_conf_int(sec, "fetch", 1000, 1, 100000, &s->fetch) != CPX_OK ||
        cpx_conf_int(sec, "reconnect_max_ms", 30000, 100, 3600000, &rmax) != CPX_OK ||
        strlen(tz) >= sizeof s->timezone || strpbrk(tz, "'\\")) {
        cpx_log_error(MOD, "msg=\"sql connector needs sql.conninfo, sql.source, sql.cursor and "
                           "sql.mapping (see docs/adapters.md)\"");
        s_close(s);
        return CPX_ERR_CONFIG;
    }
    snprintf(s->conninfo, sizeof s->conninfo, "%s", ci);
    snprintf(s->timezone, sizeof s->timezone, "%s", tz);
    s->poll_ms = poll_ms;
    s->reconnect_max_ms = rmax;
    if (!(s->map = cpx_mapping_load(mpath, err, sizeof err))) {
        cpx_log_error(MOD, "msg=\"bad mapping\" error=\"%s\"", err);
        s_close(s);
        return CPX_ERR_CONFIG;
    }
    s->record_key = cpx_mapping_record_key(s->map);
    if (s->record_key && !ident_ok(s->record_key, false))
        s->record_key = NULL; /* a key column is looked up by name only */
    snprintf(s->q_first, sizeof s->q_first, "SELECT * FROM %s ORDER BY %s LIMIT $1", s->source,
             s->cursor_col);
    snprintf(s->q_next, sizeof s->q_next, "SELECT * FROM %s WHERE %s > $1 ORDER BY %s LIMIT $2",
             s->source, s->cursor_col, s->cursor_col);
    if (s->delivery_table[0])
        snprintf(s->q_deliver, sizeof s->q_deliver,
                 "WITH ins AS (INSERT INTO %s (message_id) VALUES ($1) ON CONFLICT DO NOTHING "
                 "RETURNING message_id), d AS (SELECT $2::jsonb AS j) "
                 "INSERT INTO %s (message_id, delivery_id, sender, case_id, priority, body_kind, delivery) "
                 "SELECT ins.message_id, (d.j->>'delivery_id')::bigint, d.j->>'sender', d.j->>'case_id', "
                 "d.j->>'priority', d.j->>'body_kind', d.j FROM ins, d",
                 s->delivered_table, s->delivery_table);
    if (s->reject_table[0])
        snprintf(s->q_reject, sizeof s->q_reject,
                 "INSERT INTO %s (row_key, cursor_value, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                 s->reject_table);
    /* the cursor committed with the rows it covers */
    int n = cpx_adapter_state_get(a, "sql/cursor", s->cursor, MAX_CURSOR);
    if (n >= 0 && n <= MAX_CURSOR)
        s->cursor[n] = '\0';
    else
        s->cursor[0] = '\0';
    s->last_read_ms = 0;
    try_connect(s, cpx_adapter_now_ms());
    cpx_log_info(MOD, "msg=\"sql connector ready\" source=%s cursor=%s after=\"%s\" mapping=\"%s\" "
                      "delivery_table=%s connected=%s",
                 s->source, s->cursor_col, s->cursor, mpath,
                 s->delivery_table[0] ? s->delivery_table : "-", s->pg ? "yes" : "no");
    *state = s;
    return CPX_OK;
}

static int s_fds(void *state, zmq_pollitem_t *items, int max, int *timeout_ms)
{
    sconn_t *s = state;
    int n = 0;
    int64_t now = cpx_adapter_now_ms(), due;
    if (s->pg && max > 0 && PQsocket(s->pg) >= 0)
        items[n++] = (zmq_pollitem_t){.fd = PQsocket(s->pg), .events = ZMQ_POLLIN};
    if (!s->pg)
        due = s->next_connect_ms;
    else if (s->want_read && !cpx_adapter_backlogged(s->a))
        due = now;
    else
        due = s->last_read_ms + s->poll_ms;
    int64_t wait = due - now;
    if (wait < 0)
        wait = 0;
    if (wait < *timeout_ms)
        *timeout_ms = (int)wait;
    return n;
}

static int s_poll(void *state, int64_t now_ms)
{
    sconn_t *s = state;
    try_connect(s, now_ms);
    if (s->pg) {
        if (!PQconsumeInput(s->pg)) {
            check_conn(s, now_ms);
        } else {
            PGnotify *nt;
            while ((nt = PQnotifies(s->pg))) {
                s->want_read = true;
                PQfreemem(nt);
            }
        }
    }
    if (s->pg && s->n_rq)
        flush_rejects(s, now_ms);
    read_rows(s, now_ms);
    if (s->cursor_dirty) {
        cpx_adapter_state_put(s->a, "sql/cursor", s->cursor, strlen(s->cursor));
        s->cursor_dirty = false;
    }
    return CPX_OK;
}

static void s_result(void *state, const char *origin, const uint8_t id[CPX_ADAPTER_ID_LEN], bool ok,
                     const char *reason)
{
    sconn_t *s = state;
    (void)id;
    char cursor[MAX_CURSOR + 1];
    const char *key;
    if (ok || !split_origin(origin, cursor, sizeof cursor, &key))
        return;
    char full[2300];
    snprintf(full, sizeof full, "row %s=%s: %s", s->record_key ? s->record_key : s->cursor_col, key,
             reason ? reason : "");
    note_reject(s, key, cursor, full);
}

static int s_deliver(void *state, const cpx_adapter_delivery_t *d, char *reason, size_t rsize)
{
    sconn_t *s = state;
    int64_t now = cpx_adapter_now_ms();
    if (!s->delivery_table[0]) {
        snprintf(reason, rsize, "this adapter takes no deliveries (no sql.delivery_table)");
        return CPX_ERR_REFUSED;
    }
    try_connect(s, now);
    if (!s->pg)
        return CPX_ERR_NET; /* not now: the gateway delivers again later */
    char idhex[2 * CPX_ADAPTER_ID_LEN + 1];
    cpx_hex(d->envelope->message_id.data, CPX_ADAPTER_ID_LEN, idhex);
    char *json = cpx_adapter_delivery_json(d->delivery_id, d->envelope, d->withheld, d->n_withheld);
    if (!json)
        return CPX_ERR_NOMEM;
    const char *v[2] = {idhex, json};
    PGresult *r = PQexecParams(s->pg, s->q_deliver, 2, NULL, v, NULL, NULL, 0);
    free(json);
    int rc = CPX_OK;
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        if (!strcmp(PQcmdTuples(r), "0"))
            cpx_log_info(MOD, "msg=\"delivery already in the database\" id=%s", idhex);
    } else {
        const char *state_code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char m[512];
        pg_msg(s->pg, m, sizeof m);
        /* data and constraint errors will not go away by retrying: refuse for good */
        if (state_code && (!strncmp(state_code, "22", 2) || !strncmp(state_code, "23", 2))) {
            snprintf(reason, rsize, "database refused the delivery: %s %.100s", state_code, m);
            rc = CPX_ERR_REFUSED;
        } else {
            cpx_log_warn(MOD, "msg=\"delivery not written\" id=%s sqlstate=%s error=\"%s\"", idhex,
                         state_code ? state_code : "-", m);
            rc = CPX_ERR_NET;
        }
    }
    PQclear(r);
    if (rc == CPX_ERR_NET)
        check_conn(s, now);
    return rc;
}

const cpx_connector_t cpx_connector_sql = {
    .name = "sql",
    .config_keys = sql_keys,
    .open = s_open,
    .fds = s_fds,
    .poll = s_poll,
    .result = s_result,
    .deliver = s_deliver,
    .close = s_close,
};
