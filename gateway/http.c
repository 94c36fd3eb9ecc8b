/* http.c — /healthz, /metrics and the leading-group office dashboard. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <zmq.h>

#include "cases.h"
#include "metrics.h"
#include "server.h"
#include "cpx/auditverify.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"
#include "cpx/vault.h"

#define VIEWS_EP "inproc://cpx-gw-views"
#define VIEW_WAIT_MS 5000
#define MAX_VIEWS_PER_CYCLE 1024
#define MAX_TOKEN 256
#define HEALTH_MAX_LOOP_AGE_MS 5000
#define HOURS 24
#define DAYS 30
#define RING 64
#define DEAD_RECENT 10
#define OVERDUE_CASES 5
#define MAX_TOWNS 512
#define CST_OFFSET_MS (8LL * 3600 * 1000)

extern const unsigned char cpx_gw_dashboard_html[];
extern const size_t cpx_gw_dashboard_html_len;

/* ---- dashboard aggregate, folded from the audit log ------------------------------- */

typedef struct case_rec {
    char id[CPX_MAX_CASE_ID + 1];   /* "" = empty slot */
    uint32_t cats;                  /* bit per Category */
    int16_t town;                   /* index in towns, -1 = unknown */
    uint32_t reports;
} case_rec_t;

typedef struct ref_rec {
    uint8_t mid[CPX_MAX_MESSAGE_ID];
    uint8_t used, closed;
    char to[CPX_MAX_DEPT_CODE + 1];
    char case_id[CPX_MAX_CASE_ID + 1];
    int64_t due_ms;
} ref_rec_t;

typedef struct bucket {
    int64_t t;                      /* hour or day number; -1 = empty */
    uint32_t reports, referrals;
} bucket_t;

typedef struct dead_rec {
    uint64_t seq;
    int64_t time_ms;
    char dept[CPX_MAX_DEPT_CODE + 1];
    char case_id[CPX_MAX_CASE_ID + 1];
} dead_rec_t;

typedef struct agg {
    uint64_t next_seq;
    case_rec_t *cases;
    size_t n_cases, cap_cases;
    ref_rec_t *refs;
    size_t n_refs, cap_refs;
    char towns[MAX_TOWNS][CPX_MAX_DEPT_CODE + 1];
    size_t n_towns;
    uint64_t reports, referrals, dispositions, immediate, escalations, notices, views;
    bucket_t hours[RING], days[RING];
    dead_rec_t dead[DEAD_RECENT];
    size_t n_dead;                  /* total seen; ring index = n % DEAD_RECENT */
} agg_t;

typedef struct verify_state {
    int state;                      /* 0 never, 1 first replay running, 2 passed, 3 FAILED,
                                     * 4 error: the last finished replay's outcome */
    int64_t time_ms;
    uint64_t tree_size, heads, sig_checked;
    double secs;
    char what[256];
} verify_state_t;

struct cpx_gw_http {
    cpx_gw_http_config_t cfg;
    MDB_env *env;                   /* borrowed from the server */
    cpx_gw_metrics_t *metrics;      /* borrowed */
    cpx_audit_t *audit, *vaudit;    /* own: dashboard reads, verifier */
    cpx_outbox_t *ob;
    cpx_gw_cases_t *cases;
    cpx_key_t *gw_pub;
    struct MHD_Daemon *daemon;
    uint16_t port;

    /* views: HTTP threads -> server thread */
    void *push, *pull;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t next_view, committed_view;
    int stopping;
    /* server thread only: views written but not yet committed (rewritten on abort) */
    struct { uint64_t id; char user[64]; char page[32]; char remote[48]; } *held;
    size_t n_held;
    int held_written;

    pthread_mutex_t agg_lock;
    agg_t agg;

    pthread_t vthread;
    int vthread_started;
    pthread_mutex_t vlock;
    pthread_cond_t vcond;
    verify_state_t verify;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)h;
}

static size_t bin_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (size_t)h;
}

/* Open-addressing tables that double at 50% load. */
static case_rec_t *case_find(agg_t *a, const char *id, int create);

static int case_grow(agg_t *a)
{
    size_t cap = a->cap_cases ? a->cap_cases * 2 : 1024;
    case_rec_t *old = a->cases;
    size_t old_cap = a->cap_cases;
    case_rec_t *n = calloc(cap, sizeof *n);
    if (!n)
        return CPX_ERR_NOMEM;
    a->cases = n;
    a->cap_cases = cap;
    a->n_cases = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].id[0]) {
            case_rec_t *c = case_find(a, old[i].id, 1);
            *c = old[i];
        }
    free(old);
    return CPX_OK;
}

static case_rec_t *case_find(agg_t *a, const char *id, int create)
{
    if (!id || !*id)
        return NULL;
    if (create && (a->n_cases + 1) * 2 > a->cap_cases && case_grow(a))
        return NULL;
    if (!a->cap_cases)
        return NULL;
    for (size_t i = str_hash(id) & (a->cap_cases - 1);; i = (i + 1) & (a->cap_cases - 1)) {
        case_rec_t *c = &a->cases[i];
        if (!c->id[0]) {
            if (!create)
                return NULL;
            snprintf(c->id, sizeof c->id, "%s", id);
            c->town = -1;
            a->n_cases++;
            return c;
        }
        if (!strcmp(c->id, id))
            return c;
    }
}

static ref_rec_t *ref_find(agg_t *a, const uint8_t *mid, size_t len, int create);

static int ref_grow(agg_t *a)
{
    size_t cap = a->cap_refs ? a->cap_refs * 2 : 1024;
    ref_rec_t *old = a->refs;
    size_t old_cap = a->cap_refs;
    ref_rec_t *n = calloc(cap, sizeof *n);
    if (!n)
        return CPX_ERR_NOMEM;
    a->refs = n;
    a->cap_refs = cap;
    a->n_refs = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].used) {
            ref_rec_t *r = ref_find(a, old[i].mid, CPX_MAX_MESSAGE_ID, 1);
            *r = old[i];
        }
    free(old);
    return CPX_OK;
}

/* Message ids are stored zero-padded to 16 bytes (ids are 16 bytes in practice). */
static ref_rec_t *ref_find(agg_t *a, const uint8_t *mid, size_t len, int create)
{
    uint8_t k[CPX_MAX_MESSAGE_ID] = {0};
    if (!len || len > CPX_MAX_MESSAGE_ID)
        return NULL;
    memcpy(k, mid, len);
    if (create && (a->n_refs + 1) * 2 > a->cap_refs && ref_grow(a))
        return NULL;
    if (!a->cap_refs)
        return NULL;
    for (size_t i = bin_hash(k, sizeof k) & (a->cap_refs - 1);; i = (i + 1) & (a->cap_refs - 1)) {
        ref_rec_t *r = &a->refs[i];
        if (!r->used) {
            if (!create)
                return NULL;
            r->used = 1;
            memcpy(r->mid, k, sizeof k);
            a->n_refs++;
            return r;
        }
        if (!memcmp(r->mid, k, sizeof k))
            return r;
    }
}

static int town_index(agg_t *a, const char *town)
{
    if (!town || !*town)
        return -1;
    for (size_t i = 0; i < a->n_towns; i++)
        if (!strcmp(a->towns[i], town))
            return (int)i;
    if (a->n_towns == MAX_TOWNS)
        return -1;
    snprintf(a->towns[a->n_towns], sizeof a->towns[0], "%s", town);
    return (int)a->n_towns++;
}

static void bump(bucket_t *ring, int64_t t, int report)
{
    bucket_t *b = &ring[(uint64_t)t % RING];
    if (b->t != t) {
        if (b->t > t)
            return;  /* older than the ring holds */
        b->t = t;
        b->reports = b->referrals = 0;
    }
    if (report)
        b->reports++;
    else
        b->referrals++;
}

static void count_time(agg_t *a, int64_t ms, int report)
{
    int64_t local = ms + CST_OFFSET_MS;  /* days and hours in Jiangyin time */
    bump(a->hours, local / 3600000, report);
    bump(a->days, local / 86400000, report);
}

static int fold_accepted(cpx_gw_http_t *h, agg_t *a, MDB_txn *txn, const cpx_audit_leaf_t *l)
{
    case_rec_t *c = case_find(a, l->case_ref, 1);
    const char *kind = l->body_kind ? l->body_kind : "";
    int is_report = !strcmp(kind, "discovery_report"), is_ref = !strcmp(kind, "referral"),
        is_disp = !strcmp(kind, "disposition");
    if (!strcmp(kind, "escalation"))
        a->escalations++;
    if (!is_report && !is_ref && !is_disp)
        return CPX_OK;
    cpx_envelope_t *env = NULL;
    int rc = cpx_gw_cases_envelope_at(h->cases, txn, l->seq, &env);  /* stored under it */
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? CPX_OK : rc;  /* erased at end of retention */
    if (is_report && env->discovery_report) {
        const Cpx__V1__DiscoveryReport *r = env->discovery_report;
        a->reports++;
        count_time(a, l->time_ms, 1);
        if (r->immediate_danger)
            a->immediate++;
        if (c) {
            c->reports++;
            for (size_t i = 0; i < r->n_categories; i++)
                if (r->categories[i] && r->categories[i]->category > 0 && r->categories[i]->category < 32)
                    c->cats |= 1u << r->categories[i]->category;
            if (c->town < 0 && r->minor && r->minor->town)
                c->town = (int16_t)town_index(a, r->minor->town);
        }
    } else if (is_ref && env->referral) {
        a->referrals++;
        count_time(a, l->time_ms, 0);
        ref_rec_t *r = ref_find(a, l->message_id.data, l->message_id.len, 1);
        if (r) {
            snprintf(r->to, sizeof r->to, "%s", env->referral->to ? env->referral->to : "");
            snprintf(r->case_id, sizeof r->case_id, "%s", l->case_ref ? l->case_ref : "");
            r->due_ms = env->referral->due_by_ms;
        }
    } else if (is_disp && env->disposition) {
        a->dispositions++;
        ref_rec_t *r = ref_find(a, env->disposition->referral_id.data, env->disposition->referral_id.len, 0);
        if (r)
            r->closed = 1;
    }
    cpx_msg_free(env);
    return CPX_OK;
}

/* Empties the aggregate (keeping its tables' memory) to fold the log again. */
static void agg_reset(agg_t *a)
{
    if (a->cases)
        memset(a->cases, 0, a->cap_cases * sizeof *a->cases);
    if (a->refs)
        memset(a->refs, 0, a->cap_refs * sizeof *a->refs);
    agg_t keep = *a;
    memset(a, 0, sizeof *a);
    a->cases = keep.cases;
    a->cap_cases = keep.cap_cases;
    a->refs = keep.refs;
    a->cap_refs = keep.cap_refs;
}

/* Folds the leaves appended since the last call. Caller holds agg_lock. */
static int agg_refresh(cpx_gw_http_t *h)
{
    agg_t *a = &h->agg;
    MDB_txn *txn;
    int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cpx_store_err(rc, "http: begin");
    uint64_t size = 0, start = a->next_seq;
    int refolding = 0;
    rc = cpx_audit_size(h->audit, txn, &size);
    for (; !rc && a->next_seq < size; a->next_seq++) {
        cpx_audit_leaf_t *l = NULL;
        if ((rc = cpx_audit_get_leaf(h->audit, txn, a->next_seq, &l)))
            break;
        if (l->event == CPX__V1__AUDIT_EVENT__SEAL_ORDERED && start > 0 && !refolding) {
            /* A seal order hides cases retroactively, also from leaves folded by earlier
             * calls: fold the log again (this snapshot knows every sealed case, so once
             * per call is enough). */
            refolding = 1;
            cpx_msg_free(l);
            agg_reset(a);
            a->next_seq = UINT64_MAX;  /* the loop's ++ starts it at 0 */
            continue;
        }
        if (cpx_vault_view_withheld(txn, l->case_ref, l->message_id.data, l->message_id.len)) {
            cpx_msg_free(l);  /* sealed: in no ordinary view */
            continue;
        }
        switch (l->event) {
        case CPX__V1__AUDIT_EVENT__ACCEPTED:
            rc = fold_accepted(h, a, txn, l);
            break;
        case CPX__V1__AUDIT_EVENT__DEAD_LETTERED: {
            dead_rec_t *d = &a->dead[a->n_dead++ % DEAD_RECENT];
            d->seq = l->seq;
            d->time_ms = l->time_ms;
            snprintf(d->dept, sizeof d->dept, "%s", l->n_recipients ? l->recipients[0] : "");
            snprintf(d->case_id, sizeof d->case_id, "%s", l->case_ref ? l->case_ref : "");
            break;
        }
        case CPX__V1__AUDIT_EVENT__ESCALATED:
            a->escalations++;
            break;
        case CPX__V1__AUDIT_EVENT__NOTICE_RAISED:
            a->notices++;
            break;
        case CPX__V1__AUDIT_EVENT__DASHBOARD_VIEWED:
            a->views++;
            break;
        default:
            break;
        }
        cpx_msg_free(l);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* ---- dashboard JSON --------------------------------------------------------------- */

static const char *const category_names[] = {"", "STREET_OR_ORPHAN", "GUARDIANSHIP_MISSING",
                                             "HARMED", "SPECIAL_HARDSHIP", "OTHER"};

typedef struct overdue_dept {
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint64_t count;
    int64_t max_late_ms;
    json_t *cases;
} overdue_dept_t;

static json_t *jint(int64_t v)
{
    return json_integer((json_int_t)v);
}

static void add_overdue(json_t *root, agg_t *a, int64_t now, uint64_t *open_out, uint64_t *overdue_out,
                        json_t *warnings)
{
    overdue_dept_t od[64];
    size_t n_od = 0;
    uint64_t open = 0, overdue = 0;
    for (size_t i = 0; i < a->cap_refs; i++) {
        ref_rec_t *r = &a->refs[i];
        if (!r->used || r->closed)
            continue;
        open++;
        if (!r->due_ms || r->due_ms >= now)
            continue;
        overdue++;
        size_t j;
        for (j = 0; j < n_od; j++)
            if (!strcmp(od[j].dept, r->to))
                break;
        if (j == n_od) {
            if (n_od == sizeof od / sizeof od[0])
                continue;
            memset(&od[j], 0, sizeof od[j]);
            snprintf(od[j].dept, sizeof od[j].dept, "%s", r->to);
            od[j].cases = json_array();
            n_od++;
        }
        od[j].count++;
        int64_t late = now - r->due_ms;
        if (late > od[j].max_late_ms)
            od[j].max_late_ms = late;
        if (json_array_size(od[j].cases) < OVERDUE_CASES)
            json_array_append_new(od[j].cases, json_string(r->case_id));
    }
    json_t *arr = json_array();
    for (size_t j = 0; j < n_od; j++) {
        json_t *o = json_object();
        json_object_set_new(o, "department", json_string(od[j].dept));
        json_object_set_new(o, "count", jint((int64_t)od[j].count));
        json_object_set_new(o, "max_late_s", jint(od[j].max_late_ms / 1000));
        json_object_set_new(o, "cases", od[j].cases);
        json_array_append_new(arr, o);
        json_t *w = json_object();
        json_object_set_new(w, "code", json_string("REFERRAL_OVERDUE"));
        json_object_set_new(w, "department", json_string(od[j].dept));
        json_object_set_new(w, "count", jint((int64_t)od[j].count));
        json_object_set_new(w, "late_s", jint(od[j].max_late_ms / 1000));
        json_array_append_new(warnings, w);
    }
    json_object_set_new(root, "overdue", arr);
    *open_out = open;
    *overdue_out = overdue;
}

typedef struct adapters_ctx {
    json_t *arr, *warnings;
    uint64_t online, known;
} adapters_ctx_t;

static int adapter_cb(void *ctx, const char *dept, int online, uint64_t depth, uint64_t unconfirmed,
                      int64_t oldest_sent_ms)
{
    (void)oldest_sent_ms;
    adapters_ctx_t *x = ctx;
    json_t *o = json_object();
    json_object_set_new(o, "department", json_string(dept));
    json_object_set_new(o, "online", json_boolean(online));
    json_object_set_new(o, "queued", jint((int64_t)depth));
    json_object_set_new(o, "unconfirmed", jint((int64_t)unconfirmed));
    json_array_append_new(x->arr, o);
    x->known++;
    x->online += online != 0;
    if (!online && depth) {
        json_t *w = json_object();
        json_object_set_new(w, "code", json_string("OFFLINE_WITH_QUEUE"));
        json_object_set_new(w, "department", json_string(dept));
        json_object_set_new(w, "count", jint((int64_t)depth));
        json_array_append_new(x->warnings, w);
    }
    return 0;
}

static void series_json(json_t *root, const char *name, const bucket_t *ring, int64_t now_t, int n,
                        int64_t unit_ms)
{
    json_t *arr = json_array();
    for (int64_t t = now_t - n + 1; t <= now_t; t++) {
        const bucket_t *b = &ring[(uint64_t)t % RING];
        json_t *o = json_object();
        json_object_set_new(o, "t", jint(t * unit_ms - CST_OFFSET_MS));
        json_object_set_new(o, "reports", jint(b->t == t ? b->reports : 0));
        json_object_set_new(o, "referrals", jint(b->t == t ? b->referrals : 0));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, name, arr);
}

static const char *verify_state_name(int s)
{
    static const char *const n[] = {"never", "running", "passed", "failed", "error"};
    return s >= 0 && s < 5 ? n[s] : "error";
}

/* Builds the dashboard figures. Caller owns the result (json_decref). NULL on error. */
static json_t *dashboard_json(cpx_gw_http_t *h, const char *user)
{
    int64_t now = wall_ms();
    json_t *root = json_object(), *warnings = json_array();
    pthread_mutex_lock(&h->agg_lock);
    int rc = agg_refresh(h);
    agg_t *a = &h->agg;
    json_object_set_new(root, "generated_ms", jint(now));
    json_object_set_new(root, "user", json_string(user));
    json_t *bycat = json_object(), *bytown = json_object();
    uint64_t cats[6] = {0};
    for (size_t i = 0; i < a->cap_cases; i++) {
        const case_rec_t *c = &a->cases[i];
        if (!c->id[0])
            continue;
        for (int k = 1; k <= 5; k++)
            if (c->cats & (1u << k))
                cats[k]++;
        const char *town = c->town >= 0 ? a->towns[c->town] : "UNKNOWN";
        json_t *v = json_object_get(bytown, town);
        json_object_set_new(bytown, town, jint(v ? json_integer_value(v) + 1 : 1));
    }
    for (int k = 1; k <= 5; k++)
        json_object_set_new(bycat, category_names[k], jint((int64_t)cats[k]));
    json_object_set_new(root, "cases_by_category", bycat);
    json_object_set_new(root, "cases_by_town", bytown);
    uint64_t open = 0, overdue = 0;
    add_overdue(root, a, now, &open, &overdue, warnings);
    series_json(root, "hours", a->hours, (now + CST_OFFSET_MS) / 3600000, HOURS, 3600000);
    series_json(root, "days", a->days, (now + CST_OFFSET_MS) / 86400000, DAYS, 86400000);
    json_t *dead = json_array();
    size_t nd = a->n_dead < DEAD_RECENT ? a->n_dead : DEAD_RECENT;
    for (size_t i = 0; i < nd; i++) {
        const dead_rec_t *d = &a->dead[(a->n_dead - 1 - i) % DEAD_RECENT];
        json_t *o = json_object();
        json_object_set_new(o, "seq", jint((int64_t)d->seq));
        json_object_set_new(o, "time_ms", jint(d->time_ms));
        json_object_set_new(o, "department", json_string(d->dept));
        json_object_set_new(o, "case", json_string(d->case_id));
        json_array_append_new(dead, o);
    }
    json_t *totals = json_object();
    json_object_set_new(totals, "cases", jint((int64_t)a->n_cases));
    json_object_set_new(totals, "reports", jint((int64_t)a->reports));
    json_object_set_new(totals, "immediate_danger", jint((int64_t)a->immediate));
    json_object_set_new(totals, "referrals", jint((int64_t)a->referrals));
    json_object_set_new(totals, "referrals_open", jint((int64_t)open));
    json_object_set_new(totals, "referrals_overdue", jint((int64_t)overdue));
    json_object_set_new(totals, "dispositions", jint((int64_t)a->dispositions));
    json_object_set_new(totals, "escalations", jint((int64_t)a->escalations));
    json_object_set_new(totals, "notices", jint((int64_t)a->notices));
    json_object_set_new(totals, "leaves", jint((int64_t)a->next_seq));
    if (a->escalations || a->notices) {
        json_t *w = json_object();
        json_object_set_new(w, "code", json_string("ESCALATIONS"));
        json_object_set_new(w, "count", jint((int64_t)(a->escalations + a->notices)));
        json_array_append_new(warnings, w);
    }
    pthread_mutex_unlock(&h->agg_lock);

    MDB_txn *txn;
    uint64_t dead_count = 0;
    if (!mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn)) {
        cpx_outbox_dead_count(h->ob, txn, &dead_count);
        cpx_sth_t *sth = NULL;
        if (!cpx_audit_get_head(h->audit, txn, 0, &sth)) {
            char hex[65];
            json_t *o = json_object();
            json_object_set_new(o, "tree_size", jint((int64_t)sth->tree_size));
            json_object_set_new(o, "time_ms", jint(sth->timestamp_ms));
            if (sth->root_hash.len == 32) {
                cpx_hex(sth->root_hash.data, 32, hex);
                json_object_set_new(o, "root", json_string(hex));
            }
            json_object_set_new(root, "head", o);
            cpx_msg_free(sth);
        }
        mdb_txn_abort(txn);
    }
    json_t *dl = json_object();
    json_object_set_new(dl, "count", jint((int64_t)dead_count));
    json_object_set_new(dl, "recent", dead);
    json_object_set_new(root, "dead_letters", dl);
    json_object_set_new(totals, "dead_letters", jint((int64_t)dead_count));
    if (dead_count) {
        json_t *w = json_object();
        json_object_set_new(w, "code", json_string("DEAD_LETTERS"));
        json_object_set_new(w, "count", jint((int64_t)dead_count));
        json_array_append_new(warnings, w);
    }

    adapters_ctx_t ac = {json_array(), warnings, 0, 0};
    cpx_gw_metrics_each_dept(h->metrics, adapter_cb, &ac);
    json_object_set_new(root, "adapters", ac.arr);
    json_object_set_new(totals, "adapters_online", jint((int64_t)ac.online));
    json_object_set_new(totals, "adapters_known", jint((int64_t)ac.known));
    json_object_set_new(root, "totals", totals);

    pthread_mutex_lock(&h->vlock);
    verify_state_t v = h->verify;
    pthread_mutex_unlock(&h->vlock);
    json_t *vo = json_object();
    json_object_set_new(vo, "state", json_string(verify_state_name(v.state)));
    json_object_set_new(vo, "time_ms", jint(v.time_ms));
    json_object_set_new(vo, "tree_size", jint((int64_t)v.tree_size));
    json_object_set_new(vo, "heads", jint((int64_t)v.heads));
    json_object_set_new(vo, "signatures", jint((int64_t)v.sig_checked));
    json_object_set_new(vo, "what", json_string(v.what));
    json_object_set_new(root, "verify", vo);
    if (v.state == 3 || v.state == 4) {
        json_t *w = json_object();
        json_object_set_new(w, "code", json_string("VERIFY_FAILED"));
        json_array_append_new(warnings, w);
    }
    json_object_set_new(root, "warnings", warnings);
    if (rc) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- /metrics extras from the store ----------------------------------------------- */

typedef struct oldest_ctx {
    cpx_gw_http_t *h;
    MDB_txn *txn;
    cpx_gw_buf_t *out;
    int64_t now;
} oldest_ctx_t;

/* Each priority class's entries are in acceptance order, so the oldest waiting entry
 * is the first entry of one of the classes. */
typedef struct min_ctx {
    uint64_t min_seq;
    int seen_cls[CPX_OUTBOX_CLASSES];
    size_t n;
} min_ctx_t;

static int min_cb(void *ctx, const cpx_outbox_entry_t *e)
{
    min_ctx_t *m = ctx;
    if (e->cls < CPX_OUTBOX_CLASSES && !m->seen_cls[e->cls]) {
        m->seen_cls[e->cls] = 1;
        if (!m->min_seq || e->accepted_seq < m->min_seq)
            m->min_seq = e->accepted_seq;
        m->n++;
    }
    return 0;
}

static int oldest_cb(void *ctx, const char *dept, int online, uint64_t depth, uint64_t unconfirmed,
                     int64_t oldest_sent_ms)
{
    (void)online;
    (void)unconfirmed;
    (void)oldest_sent_ms;
    oldest_ctx_t *x = ctx;
    double age = 0;
    if (depth) {
        /* A class's entries are in acceptance order, so its first entry is its oldest;
         * walking the first 256 entries finds the head of every non-empty class in the
         * common case (a deep urgent backlog hides older routine ones: the figure is
         * then a lower bound). */
        min_ctx_t m = {0};
        cpx_outbox_each(x->h->ob, x->txn, dept, 256, min_cb, &m);
        cpx_audit_leaf_t *l = NULL;
        if (m.n && !cpx_audit_get_leaf(x->h->audit, x->txn, m.min_seq, &l)) {
            age = l->time_ms && x->now > l->time_ms ? (double)(x->now - l->time_ms) / 1e3 : 0;
            cpx_msg_free(l);
        }
    }
    cpx_gw_buf_printf(x->out, "cpx_oldest_undelivered_age_seconds{department=\"");
    cpx_gw_metrics_label(x->out, dept);
    cpx_gw_buf_printf(x->out, "\"} %.3f\n", age);
    return 0;
}

static void render_metrics(cpx_gw_http_t *h, cpx_gw_buf_t *out)
{
    cpx_gw_metrics_render(h->metrics, out);
    int64_t now = wall_ms();
    MDB_txn *txn;
    if (mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn))
        return;
    uint64_t size = 0, dead = 0;
    cpx_audit_size(h->audit, txn, &size);
    cpx_outbox_dead_count(h->ob, txn, &dead);
    cpx_sth_t *sth = NULL;
    cpx_audit_get_head(h->audit, txn, 0, &sth);
    cpx_gw_buf_printf(out,
                      "# HELP cpx_audit_tree_size Leaves in the audit log.\n"
                      "# TYPE cpx_audit_tree_size gauge\ncpx_audit_tree_size %llu\n"
                      "# HELP cpx_audit_signed_tree_size Tree size of the latest signed head.\n"
                      "# TYPE cpx_audit_signed_tree_size gauge\ncpx_audit_signed_tree_size %llu\n"
                      "# HELP cpx_audit_head_age_seconds Age of the latest signed head.\n"
                      "# TYPE cpx_audit_head_age_seconds gauge\ncpx_audit_head_age_seconds %.3f\n"
                      "# HELP cpx_dead_letters Dead letters held (cpxctl deadletter).\n"
                      "# TYPE cpx_dead_letters gauge\ncpx_dead_letters %llu\n",
                      (unsigned long long)size, (unsigned long long)(sth ? sth->tree_size : 0),
                      sth && now > sth->timestamp_ms ? (double)(now - sth->timestamp_ms) / 1e3 : 0.0,
                      (unsigned long long)dead);
    cpx_msg_free(sth);
    cpx_gw_buf_printf(out, "# HELP cpx_oldest_undelivered_age_seconds Age of the oldest delivery "
                           "waiting for the department (0 when none).\n"
                           "# TYPE cpx_oldest_undelivered_age_seconds gauge\n");
    oldest_ctx_t oc = {h, txn, out, now};
    cpx_gw_metrics_each_dept(h->metrics, oldest_cb, &oc);
    mdb_txn_abort(txn);

    /* overdue referrals (from the folded log) */
    pthread_mutex_lock(&h->agg_lock);
    agg_refresh(h);
    cpx_gw_buf_printf(out, "# HELP cpx_referrals_overdue Open referrals past their due time, by "
                           "receiving department.\n# TYPE cpx_referrals_overdue gauge\n");
    struct { char dept[CPX_MAX_DEPT_CODE + 1]; uint64_t n; } od[64];
    size_t n_od = 0;
    for (size_t i = 0; i < h->agg.cap_refs; i++) {
        const ref_rec_t *r = &h->agg.refs[i];
        if (!r->used || r->closed || !r->due_ms || r->due_ms >= now)
            continue;
        size_t j;
        for (j = 0; j < n_od && strcmp(od[j].dept, r->to); j++)
            ;
        if (j == n_od) {
            if (n_od == 64)
                continue;
            snprintf(od[j].dept, sizeof od[j].dept, "%s", r->to);
            od[j].n = 0;
            n_od++;
        }
        od[j].n++;
    }
    pthread_mutex_unlock(&h->agg_lock);
    for (size_t j = 0; j < n_od; j++) {
        cpx_gw_buf_printf(out, "cpx_referrals_overdue{department=\"");
        cpx_gw_metrics_label(out, od[j].dept);
        cpx_gw_buf_printf(out, "\"} %llu\n", (unsigned long long)od[j].n);
    }
    pthread_mutex_lock(&h->vlock);
    verify_state_t v = h->verify;
    pthread_mutex_unlock(&h->vlock);
    cpx_gw_buf_printf(out,
                      "# HELP cpx_audit_verify_ok 1 when the last full replay of the log passed, "
                      "0 when it failed, -1 before the first.\n"
                      "# TYPE cpx_audit_verify_ok gauge\ncpx_audit_verify_ok %d\n"
                      "# HELP cpx_audit_verify_timestamp_seconds When the last replay finished.\n"
                      "# TYPE cpx_audit_verify_timestamp_seconds gauge\n"
                      "cpx_audit_verify_timestamp_seconds %.3f\n",
                      v.state == 2 ? 1 : v.state >= 3 ? 0 : -1, (double)v.time_ms / 1e3);
}

/* ---- verifier thread -------------------------------------------------------------- */

static void *verifier_main(void *arg)
{
    cpx_gw_http_t *h = arg;
    int64_t next = wall_ms() + 2000;  /* shortly after start: let the server settle */
    pthread_mutex_lock(&h->vlock);
    while (!h->stopping) {
        int64_t now = wall_ms();
        if (now < next) {
            int64_t wait = next - now;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&h->vcond, &h->vlock, &ts);
            continue;
        }
        /* "running" only until the first replay ends: a later re-run keeps showing the
         * last finished result (the dashboard and cpx_audit_verify_ok flickered to
         * "running" / -1 for every periodic replay) */
        if (h->verify.state == 0)
            h->verify.state = 1;
        pthread_mutex_unlock(&h->vlock);

        verify_state_t v = {0};
        cpx_averify_report_t rep;
        memset(&rep, 0, sizeof rep);
        cpx_averify_opts_t opts = {.gateway_pub = h->gw_pub, .sender_signatures = 1, .threads = 1};
        MDB_txn *txn;
        int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
        if (!rc) {
            rc = cpx_averify_store(h->vaudit, txn, &opts, &rep);
            mdb_txn_abort(txn);
        } else {
            rc = cpx_store_err(rc, "http: verify begin");
        }
        v.time_ms = wall_ms();
        v.tree_size = rep.tree_size;
        v.heads = rep.heads;
        v.sig_checked = rep.sig_checked;
        v.secs = rep.secs;
        if (rc == CPX_OK) {
            v.state = 2;
            snprintf(v.what, sizeof v.what, "%llu leaves, %llu heads, %llu sender signatures",
                     (unsigned long long)rep.tree_size, (unsigned long long)rep.heads,
                     (unsigned long long)rep.sig_checked);
        } else if (rc == CPX_ERR_TAMPERED) {
            v.state = 3;
            snprintf(v.what, sizeof v.what, "%s", rep.what);
        } else {
            v.state = 4;
            snprintf(v.what, sizeof v.what, "%s", cpx_strerror(rc));
        }
        if (v.state == 2)
            cpx_log_info("http", "msg=\"audit log verified\" tree_size=%llu heads=%llu secs=%.2f",
                         (unsigned long long)rep.tree_size, (unsigned long long)rep.heads, rep.secs);
        else
            cpx_log_error("http", "msg=\"AUDIT LOG VERIFICATION FAILED\" what=\"%s\"", v.what);
        pthread_mutex_lock(&h->vlock);
        h->verify = v;
        if (!h->cfg.verify_interval_s)
            break;
        next = wall_ms() + (int64_t)h->cfg.verify_interval_s * 1000;
    }
    pthread_mutex_unlock(&h->vlock);
    return NULL;
}

/* ---- views: HTTP thread side ------------------------------------------------------ */

/* Hands the view to the server thread and waits until its leaf has committed. */
static int audit_view(cpx_gw_http_t *h, const char *user, const char *page, const char *remote)
{
    char msg[256];
    pthread_mutex_lock(&h->lock);
    uint64_t id = ++h->next_view;
    int n = snprintf(msg, sizeof msg, "%llu %s %s %s", (unsigned long long)id, user, page, remote);
    if (n < 0 || (size_t)n >= sizeof msg || zmq_send(h->push, msg, (size_t)n, ZMQ_DONTWAIT) < 0) {
        pthread_mutex_unlock(&h->lock);
        return CPX_ERR_FULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += VIEW_WAIT_MS / 1000;
    int rc = 0;
    while (h->committed_view < id && !h->stopping && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cond, &h->lock, &ts);
    int ok = h->committed_view >= id;
    pthread_mutex_unlock(&h->lock);
    return ok ? CPX_OK : CPX_ERR_TIMEOUT;
}

/* ---- request handling ------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               char *body, size_t len, int must_free, const char *cookie)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"cpx\"");
    if (cookie)
        MHD_add_response_header(r, "Set-Cookie", cookie);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return respond(c, status, "text/plain; charset=utf-8", (char *)msg, strlen(msg), 0, NULL);
}

/* The user whose token the request carries, or NULL. */
static const cpx_gw_http_user_t *authenticate(cpx_gw_http_t *h, struct MHD_Connection *c, int *from_query,
                                              char *token_out, size_t token_size)
{
    const char *tok = NULL;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    *from_query = 0;
    if (auth && !strncmp(auth, "Bearer ", 7))
        tok = auth + 7;
    if (!tok && (tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token")))
        *from_query = 1;
    if (!tok)
        tok = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "cpx_token");
    if (!tok || !*tok || strlen(tok) > MAX_TOKEN)
        return NULL;
    uint8_t d[32];
    cpx_sha256(tok, strlen(tok), d);
    const cpx_gw_http_user_t *found = NULL;
    /* every user compared in constant time, so timing says nothing about which matched */
    for (size_t i = 0; i < h->cfg.n_users; i++)
        if (cpx_ct_equal(d, h->cfg.users[i].token_sha256, 32) && !found)
            found = &h->cfg.users[i];
    if (found && token_out)
        snprintf(token_out, token_size, "%s", tok);
    return found;
}

static void remote_addr(struct MHD_Connection *c, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, size, "-");
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ci->client_addr;
        inet_ntop(AF_INET, &sa->sin_addr, out, (socklen_t)size);
    }
}

static int token_safe(const char *t)
{
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '-' || *t == '_' || *t == '.' || *t == '~'))
            return 0;
    return 1;
}

static enum MHD_Result dashboard(cpx_gw_http_t *h, struct MHD_Connection *c, int api)
{
    int from_query;
    char token[MAX_TOKEN + 1];
    const cpx_gw_http_user_t *u = authenticate(h, c, &from_query, token, sizeof token);
    if (!u) {
        static const char page[] =
            "<!doctype html><meta charset=utf-8><title>cpx</title>"
            "<p>需要访问令牌 / Access token required: open <code>/?token=YOUR-TOKEN</code>.";
        return api ? text(c, MHD_HTTP_UNAUTHORIZED, "token required\n")
                   : respond(c, MHD_HTTP_UNAUTHORIZED, "text/html; charset=utf-8", (char *)page,
                             sizeof page - 1, 0, NULL);
    }
    char remote[48];
    remote_addr(c, remote, sizeof remote);
    if (audit_view(h, u->name, api ? "/api/dashboard" : "/", remote))
        return text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                    "this view could not be recorded in the audit log; try again\n");
    json_t *j = dashboard_json(h, u->name);
    if (!j)
        return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "store error\n");
    const char *lang = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lang");
    json_object_set_new(j, "lang", json_string(lang && !strcmp(lang, "en") ? "en" : "zh"));
    char *js = json_dumps(j, JSON_COMPACT | JSON_ESCAPE_SLASH);
    json_decref(j);
    if (!js)
        return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    char cookie[MAX_TOKEN + 80], *ck = NULL;
    if (from_query && token_safe(token)) {
        snprintf(cookie, sizeof cookie, "cpx_token=%s; Path=/; HttpOnly; SameSite=Strict", token);
        ck = cookie;
    }
    if (api)
        return respond(c, MHD_HTTP_OK, "application/json", js, strlen(js), 1, ck);
    /* the page is the compiled-in asset with the figures in place of its marker */
    static const char marker[] = "__CPX_DATA__";
    const char *html = (const char *)cpx_gw_dashboard_html;
    const char *at = strstr(html, marker);
    cpx_gw_buf_t b = {0};
    if (at) {
        cpx_gw_buf_append(&b, html, (size_t)(at - html));
        cpx_gw_buf_append(&b, js, strlen(js));
        cpx_gw_buf_append(&b, at + sizeof marker - 1, cpx_gw_dashboard_html_len - (size_t)(at - html) - (sizeof marker - 1));
    }
    free(js);
    if (b.oom || !b.p) {
        free(b.p);
        return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return respond(c, MHD_HTTP_OK, "text/html; charset=utf-8", b.p, b.len, 1, ck);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size,
                               void **con_cls)
{
    (void)version;
    (void)upload_data;
    cpx_gw_http_t *h = cls;
    if (!*con_cls) {  /* first call: headers only */
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_size)
        return text(c, MHD_HTTP_CONTENT_TOO_LARGE, "no request bodies here\n");
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "read-only\n");
    if (!strcmp(url, "/healthz")) {
        const char *why;
        int ok = cpx_gw_metrics_ready(h->metrics, HEALTH_MAX_LOOP_AGE_MS, &why);
        char *msg = malloc(128);
        if (!msg)
            return MHD_NO;
        snprintf(msg, 128, "%s\n", why);
        return respond(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
                       msg, strlen(msg), 1, NULL);
    }
    if (!strcmp(url, "/metrics")) {
        cpx_gw_buf_t b = {0};
        render_metrics(h, &b);
        if (b.oom || !b.p) {
            free(b.p);
            return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, 1, NULL);
    }
    if (!strcmp(url, "/") || !strcmp(url, "/dashboard"))
        return dashboard(h, c, 0);
    if (!strcmp(url, "/api/dashboard"))
        return dashboard(h, c, 1);
    return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_in *sa)
{
    char host[64];
    snprintf(host, sizeof host, "%s", listen);
    char *colon = strrchr(host, ':');
    if (!colon)
        return CPX_ERR_CONFIG;
    *colon = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return CPX_ERR_CONFIG;
    return CPX_OK;
}

/* libmicrohttpd's error logger: its format strings are its own. */
__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '"')
            *p = ' ';
    cpx_log_warn("http", "msg=\"%s\"", msg);
}

int cpx_gw_http_start(cpx_gw_t *gw)
{
    if (!gw->metrics)
        gw->metrics = cpx_gw_metrics_new();
    if (!gw->metrics)
        return CPX_ERR_NOMEM;
    cpx_gw_metrics_set_ready(gw->metrics, gw->env != NULL, gw->sign_key != NULL, gw->router != NULL);
    if (!gw->cfg.http.listen[0])
        return CPX_OK;
    struct sockaddr_in sa;
    if (parse_listen(gw->cfg.http.listen, &sa)) {
        cpx_log_error("http", "msg=\"bad listen address\" listen=%s", gw->cfg.http.listen);
        return CPX_ERR_CONFIG;
    }
    cpx_gw_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return CPX_ERR_NOMEM;
    gw->http = h;
    h->cfg = gw->cfg.http;
    h->env = gw->env;
    h->metrics = gw->metrics;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    pthread_mutex_init(&h->agg_lock, NULL);
    pthread_mutex_init(&h->vlock, NULL);
    pthread_cond_init(&h->vcond, NULL);
    for (int i = 0; i < RING; i++)
        h->agg.hours[i].t = h->agg.days[i].t = -1;
    uint8_t raw[CPX_ED25519_PUB_LEN];
    cpx_key_public_raw(gw->sign_key, raw);
    MDB_txn *kt; /* a rotated log verifies from its first gateway key (cpx/gwkey.h) */
    if (!mdb_txn_begin(gw->env, NULL, MDB_RDONLY, &kt)) {
        cpx_audit_gateway_keys(gw->audit, kt, NULL, raw, NULL);
        mdb_txn_abort(kt);
    }
    int zero = 0, hwm = 4096;
    if (!(h->audit = cpx_audit_open(gw->env)) || !(h->vaudit = cpx_audit_open(gw->env)) ||
        !(h->ob = cpx_outbox_open(gw->env)) || !(h->cases = cpx_gw_cases_share(gw->cases, gw->env)) ||
        !(h->gw_pub = cpx_key_from_raw_public(raw)) ||
        !(h->held = calloc(MAX_VIEWS_PER_CYCLE, sizeof *h->held)) ||
        !(h->pull = zmq_socket(gw->zctx, ZMQ_PULL)) || !(h->push = zmq_socket(gw->zctx, ZMQ_PUSH)) ||
        zmq_setsockopt(h->push, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(h->push, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(h->pull, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_bind(h->pull, VIEWS_EP) || zmq_connect(h->push, VIEWS_EP)) {
        cpx_log_error("http", "msg=\"cannot set up the dashboard\"");
        return CPX_ERR_STORE;
    }
    h->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                     MHD_USE_ERROR_LOG,
                                 0, NULL, NULL, handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                 MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_LIMIT, 64u,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!h->daemon) {
        cpx_log_error("http", "msg=\"cannot listen\" listen=%s err=\"%s\"", gw->cfg.http.listen,
                      strerror(errno));
        return CPX_ERR_NET;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : ntohs(sa.sin_port);
    char addr[64], host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    snprintf(addr, sizeof addr, "%s:%u", host, (unsigned)h->port);
    char path[CPX_GW_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/gateway.http", gw->cfg.data_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s\n", addr);
        fclose(f);
    }
    if (!pthread_create(&h->vthread, NULL, verifier_main, h))
        h->vthread_started = 1;
    cpx_log_info("http", "msg=listening addr=%s users=%zu verify_interval_s=%u", addr, h->cfg.n_users,
                 h->cfg.verify_interval_s);
    return CPX_OK;
}

void cpx_gw_http_destroy(cpx_gw_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_http_t *h = *self_p;
    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_lock(&h->vlock);
    h->stopping = 1;
    pthread_cond_broadcast(&h->vcond);
    pthread_mutex_unlock(&h->vlock);
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    if (h->vthread_started)
        pthread_join(h->vthread, NULL);
    if (h->push)
        zmq_close(h->push);
    if (h->pull)
        zmq_close(h->pull);
    cpx_audit_destroy(&h->audit);
    cpx_audit_destroy(&h->vaudit);
    cpx_outbox_destroy(&h->ob);
    cpx_gw_cases_destroy(&h->cases);
    cpx_key_destroy(&h->gw_pub);
    free(h->agg.cases);
    free(h->agg.refs);
    free(h->held);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->agg_lock);
    pthread_mutex_destroy(&h->vlock);
    pthread_cond_destroy(&h->vcond);
    free(h);
    *self_p = NULL;
}

unsigned cpx_gw_http_connections(const cpx_gw_http_t *self)
{
    if (!self || !self->daemon)
        return 0;
    /* libmicrohttpd counts a connection until its cleanup has joined the thread and
     * destroyed the response, which is after the client has seen the close */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di ? di->num_connections : 0;
}

/* ---- server-thread hooks ---------------------------------------------------------- */

void *cpx_gw_http_socket(const cpx_gw_http_t *self)
{
    return self ? self->pull : NULL;
}

int cpx_gw_ops_pending(cpx_gw_t *gw)
{
    cpx_gw_http_t *h = gw->http;
    if (!h)
        return 0;
    if (h->n_held)
        return 1;
    int ev = 0;
    size_t sz = sizeof ev;
    return !zmq_getsockopt(h->pull, ZMQ_EVENTS, &ev, &sz) && (ev & ZMQ_POLLIN);
}

void cpx_gw_ops_begin(cpx_gw_t *gw)
{
    cpx_gw_metrics_begin(gw->metrics);
    if (gw->http)
        gw->http->held_written = 0;
}

static int write_view(cpx_gw_t *gw, size_t i)
{
    cpx_gw_http_t *h = gw->http;
    char detail[200];
    snprintf(detail, sizeof detail, "user=%s page=%s remote=%s", h->held[i].user, h->held[i].page,
             h->held[i].remote);
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__DASHBOARD_VIEWED;
    leaf.detail = detail;
    return cpx_gw_leaf(gw, &leaf, NULL);
}

int cpx_gw_ops_cycle(cpx_gw_t *gw)
{
    cpx_gw_http_t *h = gw->http;
    if (!h)
        return CPX_OK;
    int rc = CPX_OK;
    /* views held from an aborted cycle first, in order */
    for (size_t i = 0; i < h->n_held && !rc; i++)
        rc = write_view(gw, i);
    while (!rc && h->n_held < MAX_VIEWS_PER_CYCLE) {
        char msg[256];
        int n = zmq_recv(h->pull, msg, sizeof msg - 1, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        msg[n < (int)sizeof msg - 1 ? n : (int)sizeof msg - 1] = '\0';
        unsigned long long id;
        size_t i = h->n_held;
        if (sscanf(msg, "%llu %63s %31s %47s", &id, h->held[i].user, h->held[i].page,
                   h->held[i].remote) != 4)
            continue;
        h->held[i].id = id;
        h->n_held++;
        rc = write_view(gw, i);
    }
    h->held_written = rc == CPX_OK;
    return rc;
}

uint64_t cpx_gw_ops_end(cpx_gw_t *gw, int committed)
{
    if (committed)
        cpx_gw_metrics_commit(gw->metrics);
    else
        cpx_gw_metrics_abort(gw->metrics);
    cpx_gw_http_t *h = gw->http;
    if (!h || !h->n_held || !committed || !h->held_written)
        return 0;
    /* Written and committed: not written again by the next cycle. The pages are shown
     * only once the commit is durable (cpx_gw_ops_durable). */
    uint64_t last = h->held[h->n_held - 1].id;
    h->n_held = 0;
    return last;
}

void cpx_gw_ops_durable(cpx_gw_t *gw, uint64_t view)
{
    cpx_gw_http_t *h = gw->http;
    if (!h || !view)
        return;
    pthread_mutex_lock(&h->lock);
    if (view > h->committed_view)
        h->committed_view = view;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

void cpx_gw_ops_loop(cpx_gw_t *gw)
{
    cpx_gw_metrics_publish(gw);
}
