/* caseindex.c — case tracking hooks: link, apply (state machines), views, emit. */
#include "caseindex.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"
#include "server.h"
#include "verify.h"
#include "cpx/envsign.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define LEAD "CIVIL_AFFAIRS"
#define GATEWAY "GATEWAY"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cpx_gw_ci_now(const cpx_gw_ci_t *ci)
{
    return ci->wall0_ms + (mono_ms() - ci->mono0_ms);
}

/* ---- start / stop ---------------------------------------------------------------- */

static void drop_queue(cpx_gw_ci_t *ci);
static void pre_clear(cpx_gw_ci_t *ci);
static void pre_free(cpx_gw_ci_t *ci);

static int load_key(const char *path, uint8_t key[32])
{
    int rc = cpx_symkey_load(path, key);
    if (rc == CPX_ERR_NOT_FOUND) {
        /* First start: make the key (mode 0600). It lives apart from the data; losing it
         * loses the index's personal fields and minor lookups, so back it up. */
        if ((rc = cpx_symkey_create(path)) && rc != CPX_ERR_EXISTS)
            return rc;
        cpx_log_info("cases", "msg=\"created key file\" path=%s", path);
        rc = cpx_symkey_load(path, key);
    }
    return rc;
}

/* The table of minors' open cases, rebuilt from the committed case records (the
 * durable truth; docs/cases.md): one sequential scan. */
static int load_minors(MDB_env *env, cpx_caseindex_t *idx)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cpx_store_err(rc, "cases: begin");
    rc = cpx_caseindex_minor_load(idx, txn);
    mdb_txn_abort(txn);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    size_t n, bytes;
    cpx_caseindex_minor_stats(idx, &n, &bytes);
    if (rc)
        cpx_log_error("cases", "msg=\"cannot build the open-case table\" err=%s", cpx_strerror(rc));
    else
        cpx_log_info("cases", "msg=\"open-case table built\" keys=%zu bytes=%zu ms=%lld", n, bytes,
                     (long long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    return rc;
}

int cpx_gw_ci_check(const cpx_gw_config_t *cfg, char *err, size_t size)
{
    if (!cfg->cases[0])
        return CPX_OK;
    cpx_gw_casepolicy_t pol;
    int rc = cpx_gw_casepolicy_load(cfg->cases, &pol, err, size);
    if (rc || !pol.views[0])
        return rc;
    cpx_views_t *v = cpx_views_load(pol.views, err, size);
    if (!v)
        return CPX_ERR_CONFIG;
    cpx_views_destroy(&v);
    return CPX_OK;
}

int cpx_gw_ci_start(cpx_gw_t *self)
{
    if (!self->cfg.cases[0])
        return CPX_OK;
    cpx_gw_ci_t *ci = calloc(1, sizeof *ci);
    if (!ci)
        return CPX_ERR_NOMEM;
    char err[1024];
    int rc = cpx_gw_casepolicy_load(self->cfg.cases, &ci->pol, err, sizeof err);
    if (rc) {
        cpx_log_error("cases", "msg=\"invalid case policy\" err=\"%s\"", err);
        fprintf(stderr, "cpx-gateway: %s\n", err);
        free(ci);
        return rc;
    }
    if (ci->pol.views[0] && !(ci->views = cpx_views_load(ci->pol.views, err, sizeof err))) {
        cpx_log_error("cases", "msg=\"invalid view profiles\" err=\"%s\"", err);
        fprintf(stderr, "cpx-gateway: %s\n", err);
        free(ci);
        return CPX_ERR_CONFIG;
    }
    uint8_t ik[32], rk[32];
    if ((rc = load_key(ci->pol.index_key, ik)) || (rc = load_key(ci->pol.records_key, rk))) {
        cpx_log_error("cases", "msg=\"cannot load case index keys\" err=%s", cpx_strerror(rc));
        cpx_views_destroy(&ci->views);
        free(ci);
        return rc;
    }
    ci->idx = cpx_caseindex_open(self->env, ik, rk);
    cpx_cleanse(ik, sizeof ik);
    cpx_cleanse(rk, sizeof rk);
    if (!ci->idx) {
        cpx_views_destroy(&ci->views);
        free(ci);
        return CPX_ERR_STORE;
    }
    if ((rc = load_minors(self->env, ci->idx))) {
        cpx_caseindex_destroy(&ci->idx);
        cpx_views_destroy(&ci->views);
        free(ci);
        return rc;
    }
    ci->wall0_ms = cpx_gw_now_ms();
    ci->mono0_ms = mono_ms();
    self->ci = ci;
    cpx_log_info("cases", "msg=\"case tracking on\" policy=%s views=%s", self->cfg.cases,
                 ci->pol.views[0] ? ci->pol.views : "(none)");
    return CPX_OK;
}

void cpx_gw_ci_destroy(cpx_gw_ci_t **ci_p)
{
    if (!ci_p || !*ci_p)
        return;
    drop_queue(*ci_p);
    free((*ci_p)->q);
    pre_free(*ci_p);
    cpx_caseindex_destroy(&(*ci_p)->idx);
    cpx_views_destroy(&(*ci_p)->views);
    free(*ci_p);
    *ci_p = NULL;
}

/* ---- helpers --------------------------------------------------------------------- */

static const Cpx__V1__MinorIdentity *body_minor(const cpx_envelope_t *env)
{
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT:
        return env->discovery_report ? env->discovery_report->minor : NULL;
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT:
        return env->assessment ? env->assessment->minor : NULL;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION:
        return env->disposition ? env->disposition->minor : NULL;
    default:
        return NULL;
    }
}

static void case_item(const char *case_id, uint8_t item[CPX_MAX_MESSAGE_ID])
{
    uint8_t h[CPX_SHA256_LEN];
    cpx_sha256(case_id, strlen(case_id), h);
    memcpy(item, h, CPX_MAX_MESSAGE_ID);
}

static int refuse(int *code, cpx_errors_t *errs, int c, const char *path, const char *rule,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int refuse(int *code, cpx_errors_t *errs, int c, const char *path, const char *rule,
                  const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *code = c;
    cpx_errors_add(errs, path, rule, "%s", msg);
    return CPX_ERR_INVALID;
}

static int refuse_state(int *code, cpx_errors_t *errs, const char *path, const char *rule,
                        const cpx_case_rec_t *rec)
{
    return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, path, rule,
                  "case %s is %s: %s (docs/cases.md)", rec->id, cpx_case_state_name(rec->state),
                  !strcmp(rule, "close_with_open_referral") ? "a referral is still open"
                  : !strcmp(rule, "close_without_follow_up") ? "a follow-up visit must be recorded first"
                  : !strcmp(rule, "case_closed") ? "only a new report reopens a closed case"
                  : "not allowed in this state");
}

/* ---- the prepare stage ------------------------------------------------------------
 * A new case costs two HMACs (the minor's ID number, name + birth date + town) and the
 * encoding of its personal fields; none needs the store, so they are computed for the
 * whole cycle on the verification pool while the write thread waits for the signature
 * checks anyway, leaving the write thread only lookups and puts. The encryption stays
 * on the write thread: its AAD names the case id, known only there. */

#define PRE_PII_MAX 4096u

typedef struct cpx_gw_ci_pre {
    const cpx_envelope_t *env;
    const Cpx__V1__MinorIdentity *m;  /* the body's minor; NULL: a ReleaseNotice's ID number */
    uint8_t mid[CPX_MAX_MESSAGE_ID];
    int8_t state[2];                  /* 0 not computed, 1 in key, 2 not available */
    uint8_t key[2][1 + CPX_SHA256_LEN];
    int want_pii, pii_ok;
    size_t part, pii_off, pii_len;    /* the plaintext in parts[part].buf */
} pre_t;

typedef struct cpx_gw_ci_part {
    cpx_caseindex_worker_t *w;
    uint8_t *buf;                     /* personal-field plaintexts: cleansed after the cycle */
    size_t len, cap;
    cpx_gw_ci_t *ci;
} part_t;

static size_t pre_hash(const void *p, size_t mask)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & mask;
}

static void pre_clear(cpx_gw_ci_t *ci)
{
    for (size_t i = 0; i < ci->n_parts; i++) {
        cpx_cleanse(ci->parts[i].buf, ci->parts[i].len);
        ci->parts[i].len = 0;
    }
    if (ci->n_pre && ci->pre_slot)
        memset(ci->pre_slot, 0, ci->n_slots * sizeof *ci->pre_slot);
    ci->n_pre = 0;
}

static void pre_free(cpx_gw_ci_t *ci)
{
    pre_clear(ci);
    for (size_t i = 0; i < ci->n_parts; i++) {
        cpx_caseindex_worker_destroy(&ci->parts[i].w);
        free(ci->parts[i].buf);
    }
    free(ci->parts);
    free(ci->pre);
    free(ci->pre_slot);
    ci->parts = NULL;
    ci->pre = NULL;
    ci->pre_slot = NULL;
    ci->n_parts = ci->cap_pre = ci->n_slots = 0;
}

void cpx_gw_ci_prepare_begin(cpx_gw_t *self)
{
    if (self->ci)
        pre_clear(self->ci);
}

static const Cpx__V1__MinorIdentity *body_minor(const cpx_envelope_t *env);

void cpx_gw_ci_prepare_add(cpx_gw_t *self, cpx_envelope_t *const *envs, size_t n)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci)
        return;
    for (size_t i = 0; i < n; i++) {
        const cpx_envelope_t *env = envs[i];
        if (!env || env->sensitivity == CPX__V1__SENSITIVITY__SEALED ||
            env->message_id.len != CPX_MAX_MESSAGE_ID)
            continue;
        const Cpx__V1__MinorIdentity *m = body_minor(env);
        int release = env->body_case == CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE &&
                      env->release_notice;
        if (!m && !release)
            continue;
        if (ci->n_pre == ci->cap_pre) {  /* grows to the largest cycle, then reused */
            size_t cap = ci->cap_pre ? ci->cap_pre * 2 : 1024;
            pre_t *p = realloc(ci->pre, cap * sizeof *p);
            if (!p)
                return;  /* the write thread computes what is missing */
            ci->pre = p;
            ci->cap_pre = cap;
        }
        pre_t *p = &ci->pre[ci->n_pre++];
        memset(p, 0, offsetof(pre_t, key));
        p->env = env;
        p->m = m;
        memcpy(p->mid, env->message_id.data, CPX_MAX_MESSAGE_ID);
        /* only a report opens a case and stores personal fields as a rule */
        p->want_pii = m && env->body_case == CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
        p->pii_ok = 0;
    }
}

static int part_room(part_t *pp)
{
    if (pp->cap - pp->len >= PRE_PII_MAX)
        return 1;
    size_t cap = pp->cap ? pp->cap * 2 : 64 * PRE_PII_MAX;
    uint8_t *b = malloc(cap);
    if (!b)
        return 0;
    if (pp->len)
        memcpy(b, pp->buf, pp->len);
    cpx_cleanse(pp->buf, pp->len);  /* plaintexts never left behind in freed memory */
    free(pp->buf);
    pp->buf = b;
    pp->cap = cap;
    return 1;
}

/* One pool job: the entries part, part + n_parts, ... with this part's scratch. */
static void pre_run(void *arg, size_t part)
{
    part_t *pp = arg;
    cpx_gw_ci_t *ci = pp->ci;
    for (size_t i = part; i < ci->n_pre; i += ci->n_parts) {
        pre_t *p = &ci->pre[i];
        Cpx__V1__MinorIdentity rel = CPX__V1__MINOR_IDENTITY__INIT;
        const Cpx__V1__MinorIdentity *m = p->m;
        if (!m) {
            rel.id_number = p->env->release_notice->minor_id_number;
            m = &rel;
        }
        for (int b = 0; b < (p->m ? 2 : 1); b++) {
            int rc = cpx_caseindex_minor_key_w(ci->idx, pp->w, m, b, p->key[b]);
            p->state[b] = (int8_t)(rc == CPX_OK ? 1 : rc == CPX_ERR_NOT_FOUND ? 2 : 0);
        }
        if (p->want_pii && part_room(pp) &&
            cpx_caseindex_pii_encode(m, pp->buf + pp->len, PRE_PII_MAX, &p->pii_len) == CPX_OK) {
            p->part = part;
            p->pii_off = pp->len;
            pp->len += p->pii_len;
            p->pii_ok = 1;
        }
    }
}

size_t cpx_gw_ci_prepare_jobs(cpx_gw_t *self, cpx_gw_vjob_t *jobs, size_t max)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci || !ci->n_pre || !max)
        return 0;
    if (!ci->parts) {
        unsigned t = cpx_gw_verify_threads(self->verify);
        if (!(ci->parts = calloc(t, sizeof *ci->parts)))
            goto none;
        for (ci->n_parts = 0; ci->n_parts < t; ci->n_parts++) {
            ci->parts[ci->n_parts].ci = ci;
            if (!(ci->parts[ci->n_parts].w = cpx_caseindex_worker_new()))
                break;
        }
        if (!ci->n_parts)
            goto none;
    }
    size_t want = ci->n_pre * 2;
    if (want > ci->n_slots) {
        size_t cap = 2048;
        while (cap < want)
            cap *= 2;
        uint32_t *s = calloc(cap, sizeof *s);
        if (!s)
            goto none;
        free(ci->pre_slot);
        ci->pre_slot = s;
        ci->n_slots = cap;
    }
    for (size_t i = 0; i < ci->n_pre; i++) {
        size_t j = pre_hash(ci->pre[i].env, ci->n_slots - 1);
        while (ci->pre_slot[j])
            j = (j + 1) & (ci->n_slots - 1);
        ci->pre_slot[j] = (uint32_t)i + 1;
    }
    size_t nj = ci->n_parts < max ? ci->n_parts : max;
    if (nj > ci->n_pre)
        nj = ci->n_pre;
    /* (pre_run strides by n_parts: with fewer jobs, the entries of the parts left out
     * stay "not computed" and the write thread computes them.) */
    for (size_t k = 0; k < nj; k++)
        jobs[k] = (cpx_gw_vjob_t){.fn = pre_run, .arg = &ci->parts[k], .part = k};
    return nj;
none:
    ci->n_pre = 0;  /* nothing prepared: the write thread computes as before */
    return 0;
}

/* The prepared entry of env about minor m, or NULL. */
static const pre_t *pre_find(const cpx_gw_ci_t *ci, const cpx_envelope_t *env,
                             const Cpx__V1__MinorIdentity *m)
{
    if (!ci->n_pre || !ci->pre_slot || env->message_id.len != CPX_MAX_MESSAGE_ID)
        return NULL;
    for (size_t j = pre_hash(env, ci->n_slots - 1);; j = (j + 1) & (ci->n_slots - 1)) {
        uint32_t v = ci->pre_slot[j];
        if (!v)
            return NULL;
        const pre_t *p = &ci->pre[v - 1];
        if (p->env != env)
            continue;
        /* the same envelope, the same minor (a ReleaseNotice: its ID number) */
        int same = p->m ? p->m == m
                        : env->body_case == CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE &&
                              env->release_notice &&
                              m->id_number == env->release_notice->minor_id_number;
        return same && !memcmp(p->mid, env->message_id.data, CPX_MAX_MESSAGE_ID) ? p : NULL;
    }
}

/* The minor's key (by ID or by name) for the message in hand: link and apply need the
 * same HMACs, so they are computed once per message — on the pool when prepared. */
static int minor_key(cpx_gw_t *self, const cpx_envelope_t *env, const Cpx__V1__MinorIdentity *m,
                     int by_name, uint8_t out[1 + CPX_SHA256_LEN])
{
    cpx_gw_ci_t *ci = self->ci;
    const pre_t *p = pre_find(ci, env, m);
    if (p && p->state[by_name]) {
        if (p->state[by_name] == 2)
            return CPX_ERR_NOT_FOUND;
        memcpy(out, p->key[by_name], 1 + CPX_SHA256_LEN);
        return CPX_OK;
    }
    if (env->message_id.len != CPX_MAX_MESSAGE_ID)
        return cpx_caseindex_minor_key(ci->idx, m, by_name, out);
    if (ci->kc_minor != m || memcmp(ci->kc_mid, env->message_id.data, CPX_MAX_MESSAGE_ID)) {
        memcpy(ci->kc_mid, env->message_id.data, CPX_MAX_MESSAGE_ID);
        ci->kc_minor = m;
        ci->kc_state[0] = ci->kc_state[1] = 0;
    }
    if (!ci->kc_state[by_name]) {
        int rc = cpx_caseindex_minor_key(ci->idx, m, by_name, ci->kc_key[by_name]);
        if (rc && rc != CPX_ERR_NOT_FOUND)
            return rc;
        ci->kc_state[by_name] = rc ? 2 : 1;
    }
    if (ci->kc_state[by_name] == 2)
        return CPX_ERR_NOT_FOUND;
    memcpy(out, ci->kc_key[by_name], 1 + CPX_SHA256_LEN);
    return CPX_OK;
}

/* ---- link ------------------------------------------------------------------------ */

/* A message naming a referral (a revocation) belongs to the referral's case. */
static int link_referral(cpx_gw_t *self, const ProtobufCBinaryData *id, char *case_id, char *town)
{
    cpx_referral_rec_t r;
    cpx_case_rec_t rec;
    int rc = id->len == CPX_MAX_MESSAGE_ID
                 ? cpx_caseindex_get_ref(self->ci->idx, self->txn, id->data, id->len, &r)
                 : CPX_ERR_NOT_FOUND;
    if (!rc)
        rc = cpx_caseindex_get(self->ci->idx, self->txn, r.case_id, &rec);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? 0 : rc;  /* unknown: refused as such in apply */
    snprintf(case_id, CPX_MAX_CASE_ID + 1, "%s", rec.id);
    snprintf(town, CPX_MAX_DEPT_CODE + 1, "%s", rec.town);
    return 1;
}

int cpx_gw_ci_link(cpx_gw_t *self, const cpx_envelope_t *env, char *case_id, char *town)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci)
        return 0;
    ci->link_by_name = 0;
    memset(ci->link_mid, 0, sizeof ci->link_mid);
    if ((env->case_id && *env->case_id) || env->in_reply_to.len ||
        env->sensitivity == CPX__V1__SENSITIVITY__SEALED)
        return 0;
    if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION && env->referral_revocation)
        return link_referral(self, &env->referral_revocation->referral_id, case_id, town);
    Cpx__V1__MinorIdentity rel = CPX__V1__MINOR_IDENTITY__INIT;
    const Cpx__V1__MinorIdentity *m = body_minor(env);
    if (env->body_case == CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE && env->release_notice) {
        rel.id_number = env->release_notice->minor_id_number;
        m = &rel;
    }
    if (!m)
        return 0;
    uint8_t key[1 + CPX_SHA256_LEN];
    char found[CPX_MAX_CASE_ID + 1];
    int rc = minor_key(self, env, m, 0, key);
    if (rc == CPX_OK)
        rc = cpx_caseindex_find_minor(ci->idx, self->txn, key, found);
    int by_name = 0;
    if (rc == CPX_ERR_NOT_FOUND && env->body_case == CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT &&
        minor_key(self, env, m, 1, key) == CPX_OK) {
        rc = cpx_caseindex_find_minor(ci->idx, self->txn, key, found);
        by_name = rc == CPX_OK;
    }
    if (rc == CPX_ERR_NOT_FOUND)
        return 0;
    if (rc)
        return rc;
    cpx_case_rec_t rec;
    if ((rc = cpx_caseindex_get(ci->idx, self->txn, found, &rec)))
        return rc == CPX_ERR_NOT_FOUND ? 0 : rc;
    if (by_name && (rec.flags & CPX_CASE_F_HAS_ID) && m->id_number && *m->id_number)
        return 0;  /* both carry ID numbers, and they differ: another child */
    snprintf(case_id, CPX_MAX_CASE_ID + 1, "%s", rec.id);
    snprintf(town, CPX_MAX_DEPT_CODE + 1, "%s", rec.town);
    ci->link_by_name = by_name;
    memcpy(ci->link_mid, env->message_id.data,
           env->message_id.len < CPX_MAX_MESSAGE_ID ? env->message_id.len : CPX_MAX_MESSAGE_ID);
    ci->stat_linked++;
    cpx_log_debug("cases", "msg=linked case=%s by=%s", rec.id, by_name ? "name" : "id");
    return 1;
}

/* ---- new cases and reports ------------------------------------------------------- */

static uint32_t birth_ymd(const Cpx__V1__MinorIdentity *m)
{
    if (m->birth_date && m->birth_date->year)
        return m->birth_date->year * 10000 + m->birth_date->month * 100 + m->birth_date->day;
    if (m->id_number && strlen(m->id_number) == 18) {
        uint32_t v = 0;
        for (int i = 6; i < 14; i++) {
            char c = m->id_number[i];
            if (c < '0' || c > '9')
                return 0;
            v = v * 10 + (uint32_t)(c - '0');
        }
        return v;
    }
    return 0;
}

/* Indexes the minor of a message into rec (hashes only) and stores the encrypted
 * personal fields. */
static int index_minor(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                       const Cpx__V1__MinorIdentity *m)
{
    cpx_gw_ci_t *ci = self->ci;
    uint8_t key[1 + CPX_SHA256_LEN];
    int rc, had_id = (rec->flags & CPX_CASE_F_HAS_ID) != 0;
    if (!had_id && minor_key(self, env, m, 0, key) == CPX_OK) {
        memcpy(rec->subject, key + 1, CPX_SHA256_LEN);
        rec->flags |= CPX_CASE_F_HAS_ID;
        if ((rc = cpx_caseindex_set_minor(ci->idx, self->txn, key, rec->id)))
            return rc;
    }
    if (!(rec->flags & CPX_CASE_F_NAME_KEY) && minor_key(self, env, m, 1, key) == CPX_OK) {
        memcpy(rec->name_key, key + 1, CPX_SHA256_LEN);
        rec->flags |= CPX_CASE_F_NAME_KEY;
        if ((rc = cpx_caseindex_set_minor(ci->idx, self->txn, key, rec->id)))
            return rc;
    }
    if (!rec->town[0] && m->town)
        snprintf(rec->town, sizeof rec->town, "%s", m->town);
    if (!rec->birth_ymd)
        rec->birth_ymd = birth_ymd(m);
    /* The identity of the report that opened the case is kept, replaced only by one that
     * brings the citizen ID number the case lacked: later reports (a neighbour's spelling
     * of the name) do not overwrite it. */
    if (rec->has_pii && (had_id || !(rec->flags & CPX_CASE_F_HAS_ID)))
        return CPX_OK;
    rec->has_pii = 1;
    const pre_t *p = pre_find(ci, env, m);
    if (p && p->pii_ok)
        return cpx_caseindex_put_pii_encoded(ci->idx, self->txn, rec->id,
                                             ci->parts[p->part].buf + p->pii_off, p->pii_len);
    return cpx_caseindex_put_pii(ci->idx, self->txn, rec->id, m);
}

static int minor_keys(cpx_gw_t *self, const cpx_case_rec_t *rec, int set)
{
    uint8_t key[1 + CPX_SHA256_LEN];
    int rc = CPX_OK;
    for (int i = 0; i < 2 && !rc; i++) {
        if (!(rec->flags & (i ? CPX_CASE_F_NAME_KEY : CPX_CASE_F_HAS_ID)))
            continue;
        key[0] = i ? 'N' : 'I';
        memcpy(key + 1, i ? rec->name_key : rec->subject, CPX_SHA256_LEN);
        rc = set ? cpx_caseindex_set_minor(self->ci->idx, self->txn, key, rec->id)
                 : cpx_caseindex_del_minor(self->ci->idx, self->txn, key, rec->id);
    }
    return rc;
}

static void init_case(cpx_gw_t *self, cpx_case_rec_t *rec, const cpx_envelope_t *env,
                      const char *case_id)
{
    memset(rec, 0, sizeof *rec);
    rec->version = CPX_CASEINDEX_VERSION;
    snprintf(rec->id, sizeof rec->id, "%s", case_id);
    rec->state = CPX_CASE_OPEN;
    rec->opened_ms = self->now_ms;
    snprintf(rec->first_receiver, sizeof rec->first_receiver, "%s", env->sender);
}

static int on_report(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec, int is_new,
                     int *code, cpx_errors_t *errs)
{
    const Cpx__V1__DiscoveryReport *r = env->discovery_report;
    int next, rc;
    const char *rule;
    if (!is_new) {
        if (cpx_case_next(rec->state, CPX_CEV_REPORT, rec->n_open_referrals, 0, &next, &rule))
            return refuse_state(code, errs, "case_id", rule, rec);
        if (next == CPX_CASE_REOPENED && rec->state == CPX_CASE_CLOSED) {
            rec->closed_ms = 0;
            rec->flags &= (uint8_t)~CPX_CASE_F_FOLLOWUP_DONE;
            if ((rc = minor_keys(self, rec, 1)))
                return rc;
        }
        rec->state = (uint8_t)next;
    }
    rec->n_reports++;
    memmove(&rec->recent[1], &rec->recent[0], sizeof rec->recent[0] * (CPX_CASE_RECENT - 1));
    rec->recent[0] = self->now_ms;
    for (size_t i = 0; i < r->n_categories; i++) {
        const Cpx__V1__CategoryDetail *c = r->categories[i];
        if (c->category > 0 && c->category < 8)
            rec->categories |= (uint8_t)(1u << c->category);
        if (c->category == CPX__V1__CATEGORY__GUARDIANSHIP_MISSING) {
            if (c->father)
                rec->father = (uint8_t)c->father;
            if (c->mother)
                rec->mother = (uint8_t)c->mother;
        }
    }
    if (r->minor && (rc = index_minor(self, env, rec, r->minor)))
        return rc;
    int by_name = self->ci->link_by_name && env->message_id.len == CPX_MAX_MESSAGE_ID &&
                  !memcmp(self->ci->link_mid, env->message_id.data, CPX_MAX_MESSAGE_ID);
    return cpx_gw_rules_report(self, env, rec, by_name);
}

/* ---- assessments, referrals, dispositions, follow-ups ---------------------------- */

static int on_assessment(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                         int *code, cpx_errors_t *errs)
{
    const Cpx__V1__Assessment *a = env->assessment;
    int next, rc;
    const char *rule;
    if (cpx_case_next(rec->state, CPX_CEV_ASSESSMENT, rec->n_open_referrals, 0, &next, &rule))
        return refuse_state(code, errs, "case_id", rule, rec);
    rec->state = (uint8_t)next;
    rec->risk = (uint8_t)a->risk;
    if (a->minor && (rc = index_minor(self, env, rec, a->minor)))
        return rc;
    const cpx_gw_casepolicy_t *p = &self->ci->pol;
    if (a->risk >= CPX__V1__RISK_LEVEL__HIGH && !rec->n_accepted && p->ew_high_risk_ms) {
        cpx_deadline_t d = {.version = CPX_CASEINDEX_VERSION, .kind = CPX_DL_RISK_UNREFERRED};
        case_item(rec->id, d.item);
        snprintf(d.dept, sizeof d.dept, "%s", LEAD);
        snprintf(d.case_id, sizeof d.case_id, "%s", rec->id);
        d.due_ms = d.first_due_ms = cpx_gw_ci_now(self->ci) + (int64_t)p->ew_high_risk_ms;
        return cpx_caseindex_dl_set(self->ci->idx, self->txn, &d);
    }
    return CPX_OK;
}

static int add_deadline(cpx_gw_t *self, uint8_t kind, const uint8_t *item, const char *dept,
                        const char *case_id, int64_t due)
{
    /* Every kind here is keyed by a message the gateway is accepting now: new. */
    cpx_deadline_t d = {.version = CPX_CASEINDEX_VERSION, .kind = kind};
    memcpy(d.item, item, CPX_MAX_MESSAGE_ID);
    snprintf(d.dept, sizeof d.dept, "%s", dept);
    snprintf(d.case_id, sizeof d.case_id, "%s", case_id);
    d.due_ms = d.first_due_ms = due;
    return cpx_caseindex_dl_add(self->ci->idx, self->txn, &d);
}

int cpx_gw_ci_open_referral(cpx_gw_t *self, cpx_case_rec_t *rec, const uint8_t *id,
                            const char *from, const char *to, int task, int priority,
                            int64_t due_by_ms)
{
    const cpx_gw_casepolicy_t *p = &self->ci->pol;
    int64_t now = cpx_gw_ci_now(self->ci);
    cpx_referral_rec_t r = {.version = CPX_CASEINDEX_VERSION};
    memcpy(r.id, id, CPX_MAX_MESSAGE_ID);
    snprintf(r.case_id, sizeof r.case_id, "%s", rec->id);
    snprintf(r.from, sizeof r.from, "%s", from);
    snprintf(r.to, sizeof r.to, "%s", to);
    r.task = (uint8_t)task;
    r.priority = (uint8_t)(priority >= 0 && priority <= 3 ? priority : 0);
    r.state = CPX_REF_SENT;
    r.sent_ms = r.updated_ms = self->now_ms;
    r.accept_due_ms = now + (int64_t)p->accept_ms[r.priority];
    /* due_by is the sender's wall time; deadlines run on the gateway's clock, which at
     * acceptance agrees with the wall clock (cpx_gw_ci_now). */
    r.due_by_ms = due_by_ms > 0 ? due_by_ms : now + (int64_t)p->act_ms;
    int rc;
    if ((rc = cpx_caseindex_put_ref(self->ci->idx, self->txn, &r)) ||
        (rc = add_deadline(self, CPX_DL_ACCEPT, id, to, rec->id, r.accept_due_ms)) ||
        (rc = add_deadline(self, CPX_DL_ACT, id, to, rec->id, r.due_by_ms)))
        return rc;
    rec->n_referrals++;
    rec->n_open_referrals++;
    return cpx_caseindex_add_part(self->ci->idx, self->txn, rec, to);
}

static int on_referral(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                       int *code, cpx_errors_t *errs)
{
    const Cpx__V1__Referral *r = env->referral;
    int next;
    const char *rule;
    if (cpx_case_next(rec->state, CPX_CEV_REFERRAL, rec->n_open_referrals, 0, &next, &rule))
        return refuse_state(code, errs, "case_id", rule, rec);
    if (env->message_id.len != CPX_MAX_MESSAGE_ID)
        return CPX_OK;
    rec->state = (uint8_t)next;
    return cpx_gw_ci_open_referral(self, rec, env->message_id.data, env->sender, r->to, r->task,
                                   r->priority ? r->priority : env->priority, r->due_by_ms);
}

static int on_disposition(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                          int *code, cpx_errors_t *errs)
{
    cpx_gw_ci_t *ci = self->ci;
    const Cpx__V1__Disposition *d = env->disposition;
    const ProtobufCBinaryData *rid = d->referral_id.len ? &d->referral_id : &env->in_reply_to;
    const char *path = d->referral_id.len ? "disposition.referral_id" : "in_reply_to";
    cpx_referral_rec_t r;
    int rc = rid->len == CPX_MAX_MESSAGE_ID
                 ? cpx_caseindex_get_ref(ci->idx, self->txn, rid->data, rid->len, &r)
                 : CPX_ERR_NOT_FOUND;
    if (rc == CPX_ERR_NOT_FOUND)
        return refuse(code, errs, CPX__V1__ERROR_CODE__UNKNOWN_REFERENCE, path, "unknown_referral",
                      "a disposition must answer an existing referral (none with this id)");
    if (rc)
        return rc;
    if (strcmp(r.to, env->sender))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, path, "addressed_to_sender",
                      "that referral was addressed to %s, not to %s", r.to, env->sender);
    if (strcmp(r.case_id, rec->id))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "case_id", "same_case",
                      "the referral belongs to case %s", r.case_id);
    if (d->status == CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED &&
        (!d->decline_reason || !*d->decline_reason))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "disposition.decline_reason",
                      "required", "a declined referral needs a reason");
    int next, cnext;
    const char *rule;
    if (cpx_case_next(rec->state, CPX_CEV_REFERRAL_ACCEPTED, rec->n_open_referrals, 0, &cnext, &rule))
        return refuse_state(code, errs, "case_id", rule, rec);
    if (cpx_ref_next(r.state, (int)d->status, &next, &rule))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "disposition.status", rule,
                      "referral is %s: %s", cpx_ref_state_name(r.state),
                      !strcmp(rule, "referral_closed") ? "it is already closed"
                                                       : "this step is not allowed now");
    if ((rc = cpx_gw_rules_check_disposition(self, env, rec, code, errs)))
        return rc;

    /* ---- checks passed: write ---- */
    int was_unaccepted = r.state == CPX_REF_SENT || r.state == CPX_REF_OVERDUE;
    int answered = next != CPX_REF_SENT;
    if (was_unaccepted && answered) {
        if ((rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_ACCEPT, r.case_id, r.id, CPX_MAX_MESSAGE_ID, r.to)))
            return rc;
    }
    if (was_unaccepted && next != CPX_REF_DECLINED) {
        r.accepted_ms = self->now_ms;
        rec->n_accepted++;
        if (!rec->first_accepted_ms)
            rec->first_accepted_ms = self->now_ms;
        if (!rec->lead[0])
            snprintf(rec->lead, sizeof rec->lead, "%s", env->sender);
        uint8_t item[CPX_MAX_MESSAGE_ID];
        case_item(rec->id, item);
        if ((rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_RISK_UNREFERRED, rec->id, item,
                                         sizeof item, LEAD)))
            return rc;
        rec->state = (uint8_t)cnext;
    }
    if (!cpx_ref_open(next)) {
        if ((rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_ACT, r.case_id, r.id, CPX_MAX_MESSAGE_ID, r.to)))
            return rc;
        if (rec->n_open_referrals)
            rec->n_open_referrals--;
    }
    r.state = (uint8_t)next;
    r.action = (uint8_t)d->action;
    r.updated_ms = self->now_ms;
    if (next == CPX_REF_DECLINED)
        snprintf(r.reason, sizeof r.reason, "%s", d->decline_reason);
    if ((rc = cpx_caseindex_put_ref(ci->idx, self->txn, &r)))
        return rc;
    if (d->minor && (rc = index_minor(self, env, rec, d->minor)))
        return rc;
    return cpx_gw_rules_apply_disposition(self, env, rec);
}

/* A ReferralRevocation: the referring department (or CIVIL_AFFAIRS, the lead) withdraws
 * an open referral. Its ACCEPT / ACT deadlines and the recipient's acknowledgement
 * deadline of the referral stop (nothing escalates for it any more), it no longer keeps
 * the case from closing, and a Disposition answering it later is refused
 * (referral_revoked). The routing rules deliver the revocation to the recipient. */
static int on_revocation(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                         int *code, cpx_errors_t *errs)
{
    cpx_gw_ci_t *ci = self->ci;
    const Cpx__V1__ReferralRevocation *v = env->referral_revocation;
    cpx_referral_rec_t r;
    int rc = v->referral_id.len == CPX_MAX_MESSAGE_ID
                 ? cpx_caseindex_get_ref(ci->idx, self->txn, v->referral_id.data, v->referral_id.len, &r)
                 : CPX_ERR_NOT_FOUND;
    if (rc == CPX_ERR_NOT_FOUND)
        return refuse(code, errs, CPX__V1__ERROR_CODE__UNKNOWN_REFERENCE,
                      "referral_revocation.referral_id", "unknown_referral",
                      "only an existing referral can be revoked (none with this id)");
    if (rc)
        return rc;
    if (strcmp(r.case_id, rec->id))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "case_id", "same_case",
                      "the referral belongs to case %s", r.case_id);
    if (strcmp(env->sender, r.from) && strcmp(env->sender, LEAD))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "sender", "revoke_by",
                      "only the referring department (%s) or %s may revoke this referral", r.from,
                      LEAD);
    int next, cnext;
    const char *rule;
    if (cpx_case_next(rec->state, CPX_CEV_REFERRAL_REVOKED, rec->n_open_referrals, 0, &cnext, &rule))
        return refuse_state(code, errs, "case_id", rule, rec);
    if (cpx_ref_revoke(r.state, &next, &rule))
        return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION,
                      "referral_revocation.referral_id", rule,
                      "referral is %s: only an open referral (SENT, ACCEPTED, IN_PROGRESS, OVERDUE) "
                      "can be revoked", cpx_ref_state_name(r.state));

    /* ---- checks passed: write ---- */
    if ((rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_ACCEPT, r.case_id, r.id,
                                     CPX_MAX_MESSAGE_ID, r.to)) ||
        (rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_ACT, r.case_id, r.id,
                                     CPX_MAX_MESSAGE_ID, r.to)) ||
        (rc = cpx_caseindex_dl_clear(ci->idx, self->txn, CPX_DL_ACKNOWLEDGE, r.case_id, r.id,
                                     CPX_MAX_MESSAGE_ID, r.to)))
        return rc;
    if (rec->n_open_referrals)
        rec->n_open_referrals--;
    rec->state = (uint8_t)cnext;
    r.state = (uint8_t)next;
    r.updated_ms = self->now_ms;
    snprintf(r.reason, sizeof r.reason, "%s", v->reason);
    return cpx_caseindex_put_ref(ci->idx, self->txn, &r);
}

int cpx_gw_ci_referral_to(cpx_gw_t *self, const uint8_t *id, size_t len, char *to)
{
    cpx_referral_rec_t r;
    if (!self->ci || len != CPX_MAX_MESSAGE_ID ||
        cpx_caseindex_get_ref(self->ci->idx, self->txn, id, len, &r) != CPX_OK)
        return CPX_ERR_NOT_FOUND;
    snprintf(to, CPX_MAX_DEPT_CODE + 1, "%s", r.to);
    return CPX_OK;
}

static int may_close(const cpx_gw_casepolicy_t *p, const cpx_case_rec_t *rec, const char *dept)
{
    for (size_t i = 0; i < p->n_close_by; i++)
        if (!strcmp(p->close_by[i], dept) || (!strcmp(p->close_by[i], "$lead") && rec->lead[0] &&
                                              !strcmp(rec->lead, dept)))
            return 1;
    return 0;
}

static int on_follow_up(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                        int *code, cpx_errors_t *errs)
{
    const Cpx__V1__FollowUp *f = env->follow_up;
    int next, rc;
    const char *rule;
    if (f->recommend_close) {
        if (!may_close(&self->ci->pol, rec, env->sender))
            return refuse(code, errs, CPX__V1__ERROR_CODE__RULE_VIOLATION, "follow_up.recommend_close",
                          "close_by", "only CIVIL_AFFAIRS or the case's lead department (%s) may close it",
                          rec->lead[0] ? rec->lead : "none yet");
        if (cpx_case_next(rec->state, CPX_CEV_CLOSE, rec->n_open_referrals,
                          (rec->flags & CPX_CASE_F_FOLLOWUP_DONE) != 0, &next, &rule))
            return refuse_state(code, errs, "follow_up.recommend_close", rule, rec);
        rec->state = (uint8_t)next;
        rec->closed_ms = self->now_ms;
        rec->last_followup_ms = self->now_ms;
        uint8_t item[CPX_MAX_MESSAGE_ID];
        case_item(rec->id, item);
        if ((rc = cpx_caseindex_dl_clear(self->ci->idx, self->txn, CPX_DL_RISK_UNREFERRED, rec->id, item,
                                         sizeof item, LEAD)))
            return rc;
        return minor_keys(self, rec, 0);  /* a later report about the minor opens a new case */
    }
    if (cpx_case_next(rec->state, CPX_CEV_FOLLOW_UP, rec->n_open_referrals, 0, &next, &rule))
        return refuse_state(code, errs, "case_id", rule, rec);
    rec->state = (uint8_t)next;
    rec->flags |= CPX_CASE_F_FOLLOWUP_DONE;
    rec->last_followup_ms = self->now_ms;
    return CPX_OK;
}

/* ---- apply ----------------------------------------------------------------------- */

static int apply(cpx_gw_t *self, const cpx_envelope_t *env, const char *case_id,
                 const cpx_route_t *route, int *code, cpx_errors_t *errs)
{
    cpx_gw_ci_t *ci = self->ci;
    *code = 0;
    /* Sealed envelopes never enter the ordinary case index or its views: the sealed
     * vault keeps them (by keyed pseudonym) and answers for them itself. */
    if (!ci || !case_id || !case_id[0] || env->sensitivity == CPX__V1__SENSITIVITY__SEALED)
        return CPX_OK;
    cpx_case_rec_t rec;
    int rc = cpx_caseindex_get(ci->idx, self->txn, case_id, &rec);
    int is_new = rc == CPX_ERR_NOT_FOUND;
    if (is_new)
        init_case(self, &rec, env, case_id);
    else if (rc)
        return rc;
    else if (rec.flags & CPX_CASE_F_SEALED)
        return CPX_OK;  /* sealed by order: the vault answers for it, not the index */
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT:
        rc = on_report(self, env, &rec, is_new, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT:
        rc = on_assessment(self, env, &rec, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_REFERRAL:
        rc = on_referral(self, env, &rec, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION:
        rc = on_disposition(self, env, &rec, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_FOLLOW_UP:
        rc = on_follow_up(self, env, &rec, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION:
        rc = on_revocation(self, env, &rec, code, errs);
        break;
    case CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE:
        rc = cpx_gw_rules_release(self, env, case_id);
        break;
    default:
        rc = CPX_OK;
    }
    if (rc)
        return rc;
    /* benefits of a minor without an ID number are keyed by the case */
    if (!(rec.flags & CPX_CASE_F_HAS_ID) && is_new)
        cpx_caseindex_subject(ci->idx, NULL, case_id, rec.subject);
    if ((rc = cpx_caseindex_add_part(ci->idx, self->txn, &rec, env->sender)))
        return rc;
    int64_t now = cpx_gw_ci_now(ci);
    const char *ack_dept[CPX_MAX_RECIPIENTS];
    int64_t ack_due[CPX_MAX_RECIPIENTS];
    size_t n_ack = 0;
    for (size_t i = 0; i < route->n_recipients && i < CPX_MAX_RECIPIENTS; i++) {
        const cpx_route_recipient_t *x = &route->recipients[i];
        if ((rc = cpx_caseindex_add_part(ci->idx, self->txn, &rec, x->dept)))
            return rc;
        if (x->ack_within_ms) {
            ack_dept[n_ack] = x->dept;
            ack_due[n_ack++] = now + (int64_t)x->ack_within_ms;
        }
    }
    if (env->message_id.len == CPX_MAX_MESSAGE_ID &&
        (rc = cpx_caseindex_ack_add(ci->idx, self->txn, case_id, env->message_id.data,
                                    env->message_id.len, ack_dept, ack_due, n_ack)))
        return rc;
    rec.updated_ms = self->now_ms;
    return cpx_caseindex_put(ci->idx, self->txn, &rec);
}

int cpx_gw_ci_apply(cpx_gw_t *self, const cpx_envelope_t *env, const char *case_id,
                    const cpx_route_t *route, int *code, cpx_errors_t *errs)
{
    int rc = apply(self, env, case_id, route, code, errs);
    if (rc && rc != CPX_ERR_INVALID)
        cpx_log_error("cases", "msg=\"case index update failed\" case=%s body=%s err=%s", case_id,
                      cpx_body_kind_name(env->body_case), cpx_strerror(rc));
    return rc;
}

/* ---- views ----------------------------------------------------------------------- */

static int withholds_any(const cpx_views_t *v, const char *dept)
{
    for (int bc = 20; bc <= CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION; bc++)
        if (cpx_views_mask(v, dept, bc))
            return 1;
    return 0;
}

int cpx_gw_ci_deliver(cpx_gw_t *self, const cpx_outbox_entry_t *e, const cpx_gw_msg_t *m,
                      uint8_t **out, size_t *out_len)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci || !ci->views || !withholds_any(ci->views, e->dept))
        return 0;
    cpx_envelope_t *env = NULL;
    int rc = cpx_decode_envelope(m->env, m->env_len, &env);
    if (rc)
        return rc;
    uint32_t withheld[CPX_MAX_BODY_FIELDS];
    size_t n = 0;
    const char *profile = NULL;
    if (env->sensitivity != CPX__V1__SENSITIVITY__SEALED)
        rc = cpx_views_redact(ci->views, e->dept, env, withheld, &n, &profile);
    if (rc || !n) {
        cpx_msg_free(env);
        if (rc)
            cpx_log_error("cases", "msg=\"view not applied\" dept=%s err=%s", e->dept, cpx_strerror(rc));
        return rc ? rc : 0;
    }
    Cpx__V1__Deliver d = CPX__V1__DELIVER__INIT;
    d.delivery_id = e->seq;
    d.envelope = env;
    d.n_withheld = n;
    d.withheld = withheld;
    d.view_profile = (char *)profile;
    d.attempt = e->attempts;
    d.leaf_seq = e->accepted_seq;
    d.case_id = (char *)m->case_id;
    cpx_server_frame_t f = CPX__V1__SERVER_FRAME__INIT;
    f.frame_case = CPX__V1__SERVER_FRAME__FRAME_DELIVER;
    f.deliver = &d;
    rc = cpx_encode(&f, out, out_len);
    cpx_msg_free(env);
    if (rc)
        cpx_log_error("cases", "msg=\"view not applied\" dept=%s err=%s", e->dept, cpx_strerror(rc));
    return rc ? rc : 1;
}

size_t cpx_gw_ci_detail(cpx_gw_t *self, const cpx_envelope_t *env, const cpx_route_t *route,
                        char *p, size_t room)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci || !ci->views || room < 2 || env->sensitivity == CPX__V1__SENSITIVITY__SEALED)
        return 0;
    size_t off = 0;
    for (size_t i = 0; i < route->n_recipients; i++) {
        uint32_t mask = cpx_views_mask(ci->views, route->recipients[i].dept, (int)env->body_case);
        int hit = 0;
        for (size_t j = 0; j < env->n_commitments && !hit; j++)
            hit = env->commitments[j]->field < 32 && (mask & (1u << env->commitments[j]->field));
        if (!hit)
            continue;
        int w = snprintf(p + off, room - off, "%s%s:%s", off ? "," : " views=",
                         route->recipients[i].dept,
                         cpx_views_profile(ci->views, route->recipients[i].dept));
        if (w < 0 || (size_t)w >= room - off) {
            p[off] = '\0';
            break;
        }
        off += (size_t)w;
    }
    return off;
}

int cpx_gw_ci_acked(cpx_gw_t *self, const cpx_outbox_entry_t *e)
{
    if (!self->ci)
        return CPX_OK;
    int rc = cpx_caseindex_dl_clear(self->ci->idx, self->txn, CPX_DL_ACKNOWLEDGE, e->case_id,
                                    e->message_id, e->message_id_len, e->dept);
    if (rc)
        cpx_log_error("cases", "msg=\"acknowledgement deadline not cleared\" dept=%s err=%s", e->dept,
                      cpx_strerror(rc));
    return rc;
}

/* ---- the gateway's own messages ------------------------------------------------- */

typedef struct cpx_gw_ci_pending {
    cpx_envelope_t *env;           /* committed at flush; owned */
    int event;
    char detail[200];
} pending_t;

int cpx_gw_ci_emit(cpx_gw_t *self, cpx_envelope_t *tmpl, const char *const *to, size_t n_to,
                   int event, const char *case_id, const char *detail, uint8_t mid_out[16])
{
    cpx_gw_ci_t *ci = self->ci;
    uint8_t mid[CPX_MAX_MESSAGE_ID];
    int rc = cpx_random(mid, sizeof mid);
    if (rc)
        return rc;
    if (ci->n_q == ci->cap_q) {
        size_t cap = ci->cap_q ? ci->cap_q * 2 : 64;
        pending_t *q = realloc(ci->q, cap * sizeof *q);
        if (!q)
            return CPX_ERR_NOMEM;
        ci->q = q;
        ci->cap_q = cap;
    }
    tmpl->message_id = (ProtobufCBinaryData){sizeof mid, mid};
    tmpl->sender = GATEWAY;
    tmpl->n_recipients = n_to;
    tmpl->recipients = (char **)to;
    tmpl->case_id = (char *)(case_id ? case_id : "");
    tmpl->created_ms = self->now_ms;
    if (!tmpl->priority)
        tmpl->priority = CPX__V1__PRIORITY__URGENT;
    tmpl->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    /* Re-decoded so the signing code owns every part; signed at the end of the cycle. */
    uint8_t *buf = NULL;
    size_t len;
    cpx_envelope_t *env = NULL;
    if (!(rc = cpx_encode(tmpl, &buf, &len)) && !(rc = cpx_decode_envelope(buf, len, &env))) {
        pending_t *p = &ci->q[ci->n_q++];
        p->env = env;
        p->event = event;
        snprintf(p->detail, sizeof p->detail, "%s", detail ? detail : "");
        if (mid_out)
            memcpy(mid_out, mid, sizeof mid);
    }
    free(buf);
    tmpl->message_id = (ProtobufCBinaryData){0, NULL};
    return rc;
}

/* Stores and queues one signed gateway envelope: message store, audit leaf, outboxes. */
static int store_one(cpx_gw_t *self, const pending_t *p, const cpx_envsign_result_t *res)
{
    cpx_envelope_t *env = p->env;
    const Cpx__V1__BatchProof *bp = env->signature->batch;
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = p->event;
    leaf.sender = GATEWAY;
    leaf.n_recipients = env->n_recipients;
    leaf.recipients = env->recipients;
    leaf.case_ref = env->case_id;
    leaf.message_id = env->message_id;
    leaf.envelope_digest = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->digest};
    leaf.key_id = env->signature->key_id;
    leaf.body_kind = (char *)cpx_body_kind_name(env->body_case);
    leaf.detail = (char *)p->detail;
    leaf.batch_root = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->batch_root};
    leaf.batch_signature = bp->root_signature;
    leaf.batch_index = bp->index;
    leaf.batch_size = bp->size;
    leaf.n_batch_path = bp->n_path;
    leaf.batch_path = bp->path;
    uint64_t seq;
    uint8_t *bytes = NULL;
    size_t len;
    int rc;
    if ((rc = cpx_gw_leaf(self, &leaf, &seq)) || (rc = cpx_encode(env, &bytes, &len)) ||
        (rc = cpx_gw_cases_put_message(self->cases, self->txn, seq, env->message_id.data,
                                       env->message_id.len, GATEWAY, env->case_id, bytes, len))) {
        free(bytes);
        return rc;
    }
    free(bytes);
    for (size_t i = 0; i < env->n_recipients; i++) {
        cpx_outbox_entry_t e = {0};
        snprintf(e.dept, sizeof e.dept, "%s", env->recipients[i]);
        e.cls = cpx_outbox_class((int)env->priority);
        memcpy(e.message_id, env->message_id.data, env->message_id.len);
        e.message_id_len = env->message_id.len;
        e.accepted_seq = seq;
        snprintf(e.case_id, sizeof e.case_id, "%s", env->case_id);
        if ((rc = cpx_outbox_put(self->ob, self->txn, &e)))
            return rc;
        cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, e.dept, 1);
        if (s) {
            s->depth++;
            s->scan_more = 1;
        }
    }
    return CPX_OK;
}

static void drop_queue(cpx_gw_ci_t *ci)
{
    for (size_t i = 0; i < ci->n_q; i++)
        cpx_msg_free(ci->q[i].env);
    ci->n_q = 0;
}

int cpx_gw_ci_flush(cpx_gw_t *self)
{
    cpx_gw_ci_t *ci = self->ci;
    if (ci)
        pre_clear(ci);  /* the cycle's frames are gone: so is what was prepared for them */
    if (!ci || !ci->n_q)
        return CPX_OK;
    /* The gateway's envelopes of one cycle share one Ed25519 signature (a batch, as
     * departments' adapters sign theirs): a burst of notices costs one signature. */
    cpx_envelope_t *envs[CPX_MAX_BATCH_ENVELOPES];
    cpx_envsign_result_t *res = calloc(CPX_MAX_BATCH_ENVELOPES, sizeof *res);
    int rcs[CPX_MAX_BATCH_ENVELOPES];
    int rc = res ? CPX_OK : CPX_ERR_NOMEM;
    for (size_t off = 0; off < ci->n_q && !rc; off += CPX_MAX_BATCH_ENVELOPES) {
        size_t k = ci->n_q - off < CPX_MAX_BATCH_ENVELOPES ? ci->n_q - off : CPX_MAX_BATCH_ENVELOPES;
        for (size_t i = 0; i < k; i++)
            envs[i] = ci->q[off + i].env;
        if ((rc = cpx_envsign_sign_batch(envs, k, self->sign_key)) ||
            (rc = cpx_envsign_verify_batch(envs, k, self->sign_key, res, rcs)))
            break;
        for (size_t i = 0; i < k && !rc; i++)
            rc = store_one(self, &ci->q[off + i], &res[i]);
    }
    free(res);
    drop_queue(ci);
    if (rc)
        cpx_log_error("cases", "msg=\"gateway messages not stored\" err=%s", cpx_strerror(rc));
    return rc;
}

void cpx_gw_ci_aborted(cpx_gw_t *self)
{
    if (self->ci) {
        drop_queue(self->ci);
        pre_clear(self->ci);
        cpx_caseindex_minor_rollback(self->ci->idx);  /* the table follows the records */
    }
}

void cpx_gw_ci_committed(cpx_gw_t *self)
{
    if (self->ci)
        cpx_caseindex_minor_commit(self->ci->idx);
}

int cpx_gw_ci_notice(cpx_gw_t *self, int kind, const char *rule, const char *case_id,
                     const char *extra, const ProtobufCBinaryData *related, size_t n_related,
                     const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Cpx__V1__Notice n = CPX__V1__NOTICE__INIT;
    n.kind = kind;
    n.text = text;
    n.rule = (char *)rule;
    n.n_related = n_related;
    n.related = (ProtobufCBinaryData *)related;
    cpx_envelope_t env = CPX__V1__ENVELOPE__INIT;
    env.body_case = CPX__V1__ENVELOPE__BODY_NOTICE;
    env.notice = &n;
    env.priority = CPX__V1__PRIORITY__URGENT;
    const char *to[2] = {LEAD, extra};
    size_t n_to = extra && *extra && strcmp(extra, LEAD) ? 2 : 1;
    const ProtobufCEnumValue *kv =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__notice_kind__descriptor, kind);
    char detail[160];
    snprintf(detail, sizeof detail, "notice=%s rule=%s", kv ? kv->name : "?", rule ? rule : "");
    int rc = cpx_gw_ci_emit(self, &env, to, n_to, CPX__V1__AUDIT_EVENT__NOTICE_RAISED, case_id,
                            detail, NULL);
    if (!rc) {
        self->ci->stat_notices++;
        cpx_log_info("cases", "msg=notice kind=%s rule=%s case=%s", kv ? kv->name : "?",
                     rule ? rule : "", case_id ? case_id : "");
    }
    return rc;
}
