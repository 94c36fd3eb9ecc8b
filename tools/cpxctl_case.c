/* cpxctl case show / list / stats — the case index of a gateway store, read-only
 * (the gateway may be running). Access by role (--as DEPT): CIVIL_AFFAIRS (the
 * leading-group office) and AUDITOR see every case; any other department sees only
 * the cases it took part in (sent or received a message of), and a case it may not
 * see is answered exactly like a case that does not exist. Sealed content never
 * enters the case index, so no view here can show it. */
#include "cpxctl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/audit.h"
#include "cpx/caseindex.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/store.h"
#include "cpx/validate.h"

#define MAX_DEPTS 512
#define MAX_TOWNS 256

typedef struct opts {
    const char *data, *as, *status, *town, *category, *records_key, *case_id;
    int overdue, json;
} opts_t;

typedef struct store {
    MDB_env *env;
    MDB_txn *txn;
    cpx_caseindex_t *idx;
    cpx_audit_t *audit;
    int64_t now_ms;
} store_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_time(int64_t ms, char *out, size_t size)
{
    if (!ms) {
        snprintf(out, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse(int argc, char **argv, opts_t *o, int need_id)
{
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--data") ? &o->data : !strcmp(a, "--as") ? &o->as
                          : !strcmp(a, "--status") ? &o->status : !strcmp(a, "--town") ? &o->town
                          : !strcmp(a, "--category") ? &o->category
                          : !strcmp(a, "--records-key") ? &o->records_key : NULL;
        if (slot && i + 1 < argc)
            *slot = argv[++i];
        else if (!strcmp(a, "--overdue"))
            o->overdue = 1;
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (need_id && !o->case_id && a[0] != '-')
            o->case_id = a;
        else {
            fprintf(stderr, "cpxctl case: unexpected argument '%s'\n", a);
            return CPXCTL_USAGE;
        }
    }
    if (!o->data || (need_id && !o->case_id)) {
        fprintf(stderr, "cpxctl case: --data DIR%s is required\n", need_id ? " and a case id" : "");
        return CPXCTL_USAGE;
    }
    if (o->as && !cpx_dept_code_valid(o->as)) {
        fprintf(stderr, "cpxctl case: --as: '%s' is not a department code\n", o->as);
        return CPXCTL_USAGE;
    }
    if (o->status && cpx_case_state_parse(o->status) < 0) {
        fprintf(stderr, "cpxctl case: --status: one of OPEN, ASSESSED, IN_SERVICE, FOLLOW_UP, "
                        "CLOSED, REOPENED\n");
        return CPXCTL_USAGE;
    }
    if (o->category && !protobuf_c_enum_descriptor_get_value_by_name(&cpx__v1__category__descriptor,
                                                                      o->category)) {
        fprintf(stderr, "cpxctl case: --category: unknown Category '%s'\n", o->category);
        return CPXCTL_USAGE;
    }
    return CPXCTL_OK;
}

static void store_close(store_t *s)
{
    if (s->txn)
        mdb_txn_abort(s->txn);
    cpx_caseindex_destroy(&s->idx);
    cpx_audit_destroy(&s->audit);
    if (s->env)
        mdb_env_close(s->env);
    memset(s, 0, sizeof *s);
}

static int store_open(const opts_t *o, store_t *s)
{
    memset(s, 0, sizeof *s);
    s->now_ms = now_ms();
    int rc = cpx_store_open(o->data, 0, MDB_RDONLY, &s->env);
    if (rc) {
        fprintf(stderr, "cpxctl case: cannot open store %s: %s\n", o->data, cpx_strerror(rc));
        return CPXCTL_ENV;
    }
    uint8_t rk[32];
    int have_rk = 0;
    if (o->records_key) {
        if ((rc = cpx_symkey_load(o->records_key, rk))) {
            fprintf(stderr, "cpxctl case: cannot load %s: %s\n", o->records_key, cpx_strerror(rc));
            store_close(s);
            return CPXCTL_ENV;
        }
        have_rk = 1;
    }
    s->idx = cpx_caseindex_open(s->env, NULL, have_rk ? rk : NULL);
    cpx_cleanse(rk, sizeof rk);
    s->audit = cpx_audit_open(s->env);
    if (!s->idx || !s->audit) {
        fprintf(stderr, "cpxctl case: %s has no case index (case tracking off?)\n", o->data);
        store_close(s);
        return CPXCTL_ENV;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->txn))) {
        cpx_store_err(rc, "case: begin");
        store_close(s);
        return CPXCTL_ENV;
    }
    return CPXCTL_OK;
}

static int sees_all(const opts_t *o)
{
    return !o->as || !strcmp(o->as, "CIVIL_AFFAIRS") || !strcmp(o->as, "AUDITOR");
}

static int may_see(store_t *s, const opts_t *o, const cpx_case_rec_t *r)
{
    return sees_all(o) || cpx_caseindex_took_part(s->idx, s->txn, r, o->as) == 1;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name : "";
}

static void categories(uint8_t bits, char *out, size_t size)
{
    out[0] = '\0';
    size_t off = 0;
    for (int c = 1; c < 8; c++)
        if (bits & (1u << c))
            off += (size_t)snprintf(out + off, size > off ? size - off : 0, "%s%s", off ? "," : "",
                                    enum_name(&cpx__v1__category__descriptor, c));
}

/* ---- overdue deadlines ---------------------------------------------------------- */

typedef struct overdue {
    int64_t now;
    const char *case_id;         /* only this case, or NULL */
    json_t *items;               /* for show */
    char depts[MAX_DEPTS][CPX_MAX_DEPT_CODE + 1];
    uint64_t dept_n[MAX_DEPTS];
    size_t n_depts;
    char (*cases)[CPX_MAX_CASE_ID + 1];  /* sorted after collection */
    size_t n_cases, cap_cases;
} overdue_t;

static int overdue_cb(void *ctx, const cpx_deadline_t *d)
{
    overdue_t *x = ctx;
    if (x->case_id && strcmp(d->case_id, x->case_id))
        return 0;
    int late = d->first_due_ms <= x->now;
    if (x->items) {
        char due[32], mid[33];
        fmt_time(d->first_due_ms, due, sizeof due);
        cpx_hex(d->item, CPX_MAX_MESSAGE_ID, mid);
        json_array_append_new(x->items, json_pack("{s:s,s:s,s:s,s:s,s:b,s:i}", "deadline",
            d->kind == CPX_DL_RISK_UNREFERRED ? "RISK_UNREFERRED"
                : enum_name(&cpx__v1__deadline_kind__descriptor, d->kind),
            "department", d->dept, "item", mid, "due", due, "overdue", late, "escalations",
            (int)d->level));
    }
    if (!late || d->kind == CPX_DL_RISK_UNREFERRED)
        return 0;
    size_t i;
    for (i = 0; i < x->n_depts && strcmp(x->depts[i], d->dept); i++)
        ;
    if (i == x->n_depts && x->n_depts < MAX_DEPTS)
        snprintf(x->depts[x->n_depts++], sizeof x->depts[0], "%s", d->dept);
    if (i < MAX_DEPTS)
        x->dept_n[i]++;
    if (x->n_cases == x->cap_cases) {
        size_t cap = x->cap_cases ? x->cap_cases * 2 : 64;
        void *p = realloc(x->cases, cap * sizeof *x->cases);
        if (!p)
            return CPX_ERR_NOMEM;
        x->cases = p;
        x->cap_cases = cap;
    }
    snprintf(x->cases[x->n_cases++], sizeof x->cases[0], "%s", d->case_id);
    return 0;
}

static int cmp_case(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int is_overdue(const overdue_t *x, const char *case_id)
{
    return x->n_cases && bsearch(case_id, x->cases, x->n_cases, sizeof x->cases[0], cmp_case);
}

static int collect_overdue(store_t *s, overdue_t *x)
{
    x->now = s->now_ms;
    int rc = cpx_caseindex_dl_each(s->idx, s->txn, INT64_MAX, overdue_cb, x);
    if (x->n_cases)
        qsort(x->cases, x->n_cases, sizeof x->cases[0], cmp_case);
    return rc;
}

/* ---- show ----------------------------------------------------------------------- */

typedef struct show_ctx {
    store_t *s;
    json_t *arr;
} show_ctx_t;

static int timeline_cb(void *ctx, uint64_t seq)
{
    show_ctx_t *x = ctx;
    cpx_audit_leaf_t *l = NULL;
    if (cpx_audit_get_leaf(x->s->audit, x->s->txn, seq, &l))
        return 0;
    char t[32], mid[33] = "";
    fmt_time(l->time_ms, t, sizeof t);
    if (l->message_id.len == CPX_MAX_MESSAGE_ID)
        cpx_hex(l->message_id.data, l->message_id.len, mid);
    json_t *rc = json_array();
    for (size_t i = 0; i < l->n_recipients; i++)
        json_array_append_new(rc, json_string(l->recipients[i]));
    json_array_append_new(x->arr, json_pack("{s:I,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:s}", "seq",
        (json_int_t)l->seq, "time", t, "event", enum_name(&cpx__v1__audit_event__descriptor, l->event),
        "body", l->body_kind ? l->body_kind : "", "sender", l->sender ? l->sender : "", "recipients",
        rc, "message_id", mid, "detail", l->detail ? l->detail : "", "reason",
        l->reason ? l->reason : ""));
    cpx_msg_free(l);
    return 0;
}

static int ref_cb(void *ctx, const cpx_referral_rec_t *r)
{
    show_ctx_t *x = ctx;
    char sent[32], due[32], mid[33];
    fmt_time(r->sent_ms, sent, sizeof sent);
    fmt_time(r->due_by_ms, due, sizeof due);
    cpx_hex(r->id, CPX_MAX_MESSAGE_ID, mid);
    json_array_append_new(x->arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "referral", mid,
        "from", r->from, "to", r->to, "task", enum_name(&cpx__v1__task__descriptor, r->task),
        "state", cpx_ref_state_name(r->state), "sent", sent, "due_by", due, "action",
        enum_name(&cpx__v1__action__descriptor, r->action), "reason", r->reason));
    return 0;
}

static json_t *case_json(const cpx_case_rec_t *r, int overdue)
{
    char cats[128], opened[32], closed[32], acc[32];
    categories(r->categories, cats, sizeof cats);
    fmt_time(r->opened_ms, opened, sizeof opened);
    fmt_time(r->closed_ms, closed, sizeof closed);
    fmt_time(r->first_accepted_ms, acc, sizeof acc);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:b,s:b}",
        "case", r->id, "status", cpx_case_state_name(r->state), "town", r->town,
        "categories", cats, "risk", enum_name(&cpx__v1__risk_level__descriptor, r->risk),
        "first_receiver", r->first_receiver, "lead", r->lead, "opened", opened, "closed", closed,
        "first_accepted", acc, "reports", (int)r->n_reports, "referrals", (int)r->n_referrals,
        "open_referrals", (int)r->n_open_referrals, "escalations", (int)r->n_escalations,
        "notices", (int)r->n_notices, "match_to_confirm", (r->flags & CPX_CASE_F_MATCH_TO_CONFIRM) != 0,
        "overdue", overdue);
}

static int case_show(int argc, char **argv)
{
    opts_t o;
    store_t s;
    int rc = parse(argc, argv, &o, 1);
    if (rc || (rc = store_open(&o, &s)))
        return rc;
    cpx_case_rec_t r;
    if (cpx_caseindex_get(s.idx, s.txn, o.case_id, &r) || (r.flags & CPX_CASE_F_SEALED) ||
        !may_see(&s, &o, &r)) {
        fprintf(stderr, "cpxctl case: no case %s\n", o.case_id);
        store_close(&s);
        return CPXCTL_FAIL;
    }
    overdue_t *od = calloc(1, sizeof *od);
    if (!od) {
        store_close(&s);
        return CPXCTL_ENV;
    }
    od->case_id = o.case_id;
    od->items = json_array();
    collect_overdue(&s, od);
    json_t *c = case_json(&r, od->n_cases > 0);
    Cpx__V1__MinorIdentity *m = NULL;
    if (o.records_key && sees_all(&o) && cpx_caseindex_get_pii(s.idx, s.txn, o.case_id, &m) == CPX_OK) {
        json_object_set_new(c, "minor_name", json_string(m->name ? m->name : ""));
        cpx_msg_free(m);
    }
    show_ctx_t x = {&s, json_array()};
    cpx_caseindex_each_ref(s.idx, s.txn, o.case_id, ref_cb, &x);
    json_object_set_new(c, "referrals_detail", x.arr);
    json_object_set_new(c, "deadlines", od->items);
    x.arr = json_array();
    cpx_audit_case_foreach(s.audit, s.txn, o.case_id, timeline_cb, &x);
    json_object_set_new(c, "timeline", x.arr);
    if (o.json) {
        char *txt = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(txt ? txt : "{}");
        free(txt);
    } else {
        printf("case %s  %s  town=%s  categories=%s  risk=%s\n", r.id, cpx_case_state_name(r.state),
               r.town[0] ? r.town : "-", json_string_value(json_object_get(c, "categories")),
               json_string_value(json_object_get(c, "risk")));
        printf("  first receiver %s  lead %s  reports %u  referrals %u (open %u)  escalations %u  "
               "notices %u%s\n", r.first_receiver, r.lead[0] ? r.lead : "-", r.n_reports,
               r.n_referrals, r.n_open_referrals, r.n_escalations, r.n_notices,
               (r.flags & CPX_CASE_F_MATCH_TO_CONFIRM) ? "  MATCH_TO_CONFIRM" : "");
        if (json_object_get(c, "minor_name"))
            printf("  minor %s\n", json_string_value(json_object_get(c, "minor_name")));
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(c, "referrals_detail"), i, v)
            printf("  referral %s -> %s  %s  %s  due %s%s%s\n",
                   json_string_value(json_object_get(v, "from")), json_string_value(json_object_get(v, "to")),
                   json_string_value(json_object_get(v, "task")), json_string_value(json_object_get(v, "state")),
                   json_string_value(json_object_get(v, "due_by")),
                   *json_string_value(json_object_get(v, "reason")) ? "  reason: " : "",
                   json_string_value(json_object_get(v, "reason")));
        json_array_foreach(od->items, i, v)
            printf("  deadline %s %s due %s%s (escalated %lld)\n",
                   json_string_value(json_object_get(v, "deadline")),
                   json_string_value(json_object_get(v, "department")),
                   json_string_value(json_object_get(v, "due")),
                   json_is_true(json_object_get(v, "overdue")) ? " OVERDUE" : "",
                   (long long)json_integer_value(json_object_get(v, "escalations")));
        printf("  %-6s %-20s %-22s %-17s %-14s %s\n", "seq", "time", "event", "body", "sender", "to / detail");
        json_array_foreach(json_object_get(c, "timeline"), i, v) {
            char to[512] = "";
            size_t j, off = 0;
            json_t *d;
            json_array_foreach(json_object_get(v, "recipients"), j, d)
                off += (size_t)snprintf(to + off, off < sizeof to ? sizeof to - off : 0, "%s%s",
                                        j ? "," : "", json_string_value(d));
            printf("  %-6lld %-20s %-22s %-17s %-14s %s %s%s\n",
                   (long long)json_integer_value(json_object_get(v, "seq")),
                   json_string_value(json_object_get(v, "time")),
                   json_string_value(json_object_get(v, "event")),
                   json_string_value(json_object_get(v, "body")),
                   json_string_value(json_object_get(v, "sender")), to,
                   json_string_value(json_object_get(v, "detail")),
                   json_string_value(json_object_get(v, "reason")));
        }
    }
    json_decref(c);
    free(od->cases);
    free(od);
    store_close(&s);
    return CPXCTL_OK;
}

/* ---- list and stats ------------------------------------------------------------- */

typedef struct scan {
    store_t *s;
    const opts_t *o;
    overdue_t *od;
    int state, category;
    json_t *rows;
    /* stats */
    uint64_t total, by_state[8], by_cat[8];
    char towns[MAX_TOWNS][CPX_MAX_DEPT_CODE + 1];
    uint64_t town_n[MAX_TOWNS];
    size_t n_towns;
    int64_t *lat;
    size_t n_lat, cap_lat;
    int stats;
} scan_t;

static int scan_cb(void *ctx, const cpx_case_rec_t *r)
{
    scan_t *x = ctx;
    if (x->state > 0 && r->state != x->state)
        return 0;
    if (x->category > 0 && !(r->categories & (1u << x->category)))
        return 0;
    if (x->o->town && strcmp(r->town, x->o->town))
        return 0;
    int od = is_overdue(x->od, r->id);
    if (x->o->overdue && !od)
        return 0;
    if (!may_see(x->s, x->o, r))
        return 0;
    if (!x->stats) {
        json_array_append_new(x->rows, case_json(r, od));
        return 0;
    }
    x->total++;
    x->by_state[r->state & 7]++;
    for (int c = 1; c < 8; c++)
        if (r->categories & (1u << c))
            x->by_cat[c]++;
    size_t i;
    for (i = 0; i < x->n_towns && strcmp(x->towns[i], r->town); i++)
        ;
    if (i == x->n_towns && x->n_towns < MAX_TOWNS)
        snprintf(x->towns[x->n_towns++], sizeof x->towns[0], "%s", r->town);
    if (i < MAX_TOWNS)
        x->town_n[i]++;
    if (r->first_accepted_ms) {
        if (x->n_lat == x->cap_lat) {
            size_t cap = x->cap_lat ? x->cap_lat * 2 : 1024;
            int64_t *p = realloc(x->lat, cap * sizeof *p);
            if (!p)
                return CPX_ERR_NOMEM;
            x->lat = p;
            x->cap_lat = cap;
        }
        x->lat[x->n_lat++] = r->first_accepted_ms - r->opened_ms;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_scan(int argc, char **argv, int stats)
{
    opts_t o;
    store_t s;
    int rc = parse(argc, argv, &o, 0);
    if (rc || (rc = store_open(&o, &s)))
        return rc;
    scan_t *x = calloc(1, sizeof *x);
    overdue_t *od = calloc(1, sizeof *od);
    if (!x || !od) {
        free(x);
        free(od);
        store_close(&s);
        return CPXCTL_ENV;
    }
    x->s = &s;
    x->o = &o;
    x->od = od;
    x->stats = stats;
    x->state = o.status ? cpx_case_state_parse(o.status) : 0;
    x->category = o.category ? protobuf_c_enum_descriptor_get_value_by_name(
                                   &cpx__v1__category__descriptor, o.category)->value : 0;
    x->rows = json_array();
    rc = collect_overdue(&s, od);
    if (!rc)
        rc = cpx_caseindex_each_case(s.idx, s.txn, scan_cb, x);
    json_t *out;
    if (!stats) {
        out = x->rows;
        x->rows = NULL;
    } else {
        out = json_object();
        json_object_set_new(out, "cases", json_integer((json_int_t)x->total));
        json_t *st = json_object(), *ca = json_object(), *tw = json_object(), *dp = json_object();
        for (int i = 1; i < 7; i++)
            json_object_set_new(st, cpx_case_state_name(i), json_integer((json_int_t)x->by_state[i]));
        for (int c = 1; c < 6; c++)
            json_object_set_new(ca, enum_name(&cpx__v1__category__descriptor, c),
                                json_integer((json_int_t)x->by_cat[c]));
        for (size_t i = 0; i < x->n_towns; i++)
            json_object_set_new(tw, x->towns[i][0] ? x->towns[i] : "-", json_integer((json_int_t)x->town_n[i]));
        /* Overdue items by department: every role sees the counts of the city. */
        for (size_t i = 0; i < od->n_depts; i++)
            json_object_set_new(dp, od->depts[i], json_integer((json_int_t)od->dept_n[i]));
        json_object_set_new(out, "by_status", st);
        json_object_set_new(out, "by_category", ca);
        json_object_set_new(out, "by_town", tw);
        json_object_set_new(out, "overdue_by_department", dp);
        if (x->n_lat) {
            qsort(x->lat, x->n_lat, sizeof *x->lat, cmp_i64);
            int64_t med = x->n_lat % 2 ? x->lat[x->n_lat / 2]
                                       : (x->lat[x->n_lat / 2 - 1] + x->lat[x->n_lat / 2]) / 2;
            json_object_set_new(out, "median_ms_report_to_first_accepted_referral", json_integer(med));
        } else {
            json_object_set_new(out, "median_ms_report_to_first_accepted_referral", json_null());
        }
        json_object_set_new(out, "with_accepted_referral", json_integer((json_int_t)x->n_lat));
    }
    if (o.json) {
        char *txt = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(txt ? txt : "null");
        free(txt);
    } else if (!stats) {
        printf("%-16s %-11s %-16s %-28s %-8s %-14s %s\n", "case", "status", "town", "categories",
               "risk", "lead", "overdue");
        size_t i;
        json_t *v;
        json_array_foreach(out, i, v)
            printf("%-16s %-11s %-16s %-28s %-8s %-14s %s\n", json_string_value(json_object_get(v, "case")),
                   json_string_value(json_object_get(v, "status")),
                   json_string_value(json_object_get(v, "town")),
                   json_string_value(json_object_get(v, "categories")),
                   json_string_value(json_object_get(v, "risk")),
                   json_string_value(json_object_get(v, "lead")),
                   json_is_true(json_object_get(v, "overdue")) ? "yes" : "");
        printf("%zu case(s)\n", json_array_size(out));
    } else {
        const char *k;
        json_t *v;
        printf("cases %lld\n", (long long)json_integer_value(json_object_get(out, "cases")));
        const char *groups[] = {"by_status", "by_category", "by_town", "overdue_by_department"};
        for (size_t g = 0; g < 4; g++) {
            printf("%s:\n", groups[g]);
            json_object_foreach(json_object_get(out, groups[g]), k, v)
                printf("  %-24s %lld\n", k, (long long)json_integer_value(v));
        }
        json_t *m = json_object_get(out, "median_ms_report_to_first_accepted_referral");
        if (json_is_integer(m))
            printf("median report -> first accepted referral: %.1f h (%lld cases)\n",
                   (double)json_integer_value(m) / 3600000.0, (long long)x->n_lat);
        else
            printf("median report -> first accepted referral: - (no case has one)\n");
    }
    json_decref(out);
    json_decref(x->rows);
    free(x->lat);
    free(od->cases);
    free(od);
    free(x);
    store_close(&s);
    return rc ? CPXCTL_ENV : CPXCTL_OK;
}

static int cmd_case(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: cpxctl case show|list|stats ...\n");
        return CPXCTL_USAGE;
    }
    if (!strcmp(argv[1], "show"))
        return case_show(argc, argv);
    if (!strcmp(argv[1], "list"))
        return run_scan(argc, argv, 0);
    if (!strcmp(argv[1], "stats"))
        return run_scan(argc, argv, 1);
    fprintf(stderr, "cpxctl case: unknown subcommand '%s' (show, list, stats)\n", argv[1]);
    return CPXCTL_USAGE;
}

CPXCTL_COMMAND("case", cmd_case,
               "case show ID|list|stats --data DIR [--as DEPT] [--json] [--status S] [--town T]\n"
               "        [--category C] [--overdue] [--records-key FILE]   case index views (docs/cases.md)")
