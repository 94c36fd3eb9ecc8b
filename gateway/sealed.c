/* sealed.c — sealing policy, seal orders, and lawful access to sealed records. */
#include "sealed.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "caseindex.h"
#include "cases.h"
#include "server.h"
#include "writer.h"
#include "cpx/audit.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/outbox.h"
#include "cpx/store.h"
#include "cpx/validate.h"

#define MOD "sealed"
#define MAX_LIST 16
#define MAX_RULES 32
#define MAX_MOVE 4096
#define MAX_READ_BYTES (192u << 10)  /* records in one decision: under the envelope limit */
#define GATEWAY_SENDER "GATEWAY"
#define REF_LEN 32                    /* "P:" + 30 hex: fits an outbox case id */
#define MAX_CASES 64                  /* cases one SealOrder seals (named + found by subject) */
#define PARTY_KEY (CPX_VAULT_PSEUDO_LEN + CPX_MAX_DEPT_CODE)

typedef char dept_t[CPX_MAX_DEPT_CODE + 1];

typedef struct list {
    dept_t v[MAX_LIST];
    size_t n;
} list_t;

typedef struct rule {
    dept_t dept;
    int basis;                        /* Cpx__V1__LegalBasis */
    int approval;                     /* 1: the sealing authority must approve */
    int64_t lifetime_ms;
    uint32_t reads;
} rule_t;

struct cpx_gw_sealed {
    cpx_vault_t *vault;
    uint8_t pkey[32];
    MDB_dbi grants, pending, scase, subj, party;
    list_t order_from, juvenile_from, recipients, alert;
    list_t when_party;                /* recipients served only when party to the case */
    rule_t rules[MAX_RULES];
    size_t n_rules;
    int64_t grant_ms;
    uint32_t grant_reads;
};

/* ---- policy ------------------------------------------------------------------------ */

static int cfail(char *err, size_t size, const char *path, const yaml_node_t *n, const char *what)
{
    snprintf(err, size, "%s:%zu:%zu: %s", path, n ? n->start_mark.line + 1 : 0,
             n ? n->start_mark.column + 1 : 0, what);
    return CPX_ERR_CONFIG;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_list(yaml_document_t *d, yaml_node_t *n, list_t *out)
{
    out->n = 0;
    if (scalar(n)) {
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", scalar(n));
        return cpx_dept_code_valid(out->v[0]) ? 0 : -1;
    }
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return -1;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const char *s = scalar(yaml_document_get_node(d, *it));
        if (!s || out->n == MAX_LIST || !cpx_dept_code_valid(s))
            return -1;
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", s);
    }
    return 0;
}

static int in_list(const list_t *l, const char *dept)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], dept))
            return 1;
    return 0;
}

static void resolve(const char *base_dir, const char *p, char *out, size_t size)
{
    if (p[0] == '/')
        snprintf(out, size, "%s", p);
    else
        snprintf(out, size, "%s/%s", base_dir, p);
}

static int load_rule(yaml_document_t *d, yaml_node_t *m, rule_t *r, const cpx_gw_sealed_t *self)
{
    if (m->type != YAML_MAPPING_NODE)
        return -1;
    memset(r, 0, sizeof *r);
    r->lifetime_ms = self->grant_ms;
    r->reads = self->grant_reads;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(d, p->key));
        const char *v = scalar(yaml_document_get_node(d, p->value));
        if (!k || !v)
            return -1;
        if (!strcmp(k, "department") && cpx_dept_code_valid(v))
            snprintf(r->dept, sizeof r->dept, "%s", v);
        else if (!strcmp(k, "basis") && !strcmp(v, "CASE_HANDLING"))
            r->basis = CPX__V1__LEGAL_BASIS__CASE_HANDLING;
        else if (!strcmp(k, "basis") && !strcmp(v, "STATUTORY_QUERY"))
            r->basis = CPX__V1__LEGAL_BASIS__STATUTORY_QUERY;
        else if (!strcmp(k, "approval"))
            r->approval = !strcmp(v, "true") || !strcmp(v, "sealing_authority");
        else if (!strcmp(k, "lifetime_ms"))
            r->lifetime_ms = strtoll(v, NULL, 10);
        else if (!strcmp(k, "reads"))
            r->reads = (uint32_t)strtoul(v, NULL, 10);
        else
            return -1;
    }
    return r->dept[0] && r->basis && r->lifetime_ms > 0 && r->reads > 0 ? 0 : -1;
}

static int load_policy(cpx_gw_sealed_t *self, const char *path, char *vault_key, char *pseudo_key,
                       size_t psize, char *err, size_t esize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, esize, "%s: cannot open", path);
        return CPX_ERR_CONFIG;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = CPX_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, esize, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        fclose(f);
        return CPX_ERR_CONFIG;
    }
    char dir_buf[CPX_GW_PATH_MAX];
    snprintf(dir_buf, sizeof dir_buf, "%s", path);
    const char *dir = dirname(dir_buf);
    self->grant_ms = 24LL * 3600 * 1000;
    self->grant_reads = 3;
    /* art. 286: judicial organs handling the case; JUSTICE is one only when party to it */
    snprintf(self->when_party.v[0], sizeof self->when_party.v[0], "JUSTICE");
    self->when_party.n = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *access = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = cfail(err, esize, path, root, "expected a mapping");
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top && !rc; p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key), *vn = yaml_document_get_node(&doc, p->value);
        const char *k = scalar(kn), *v = scalar(vn);
        if (!k)
            rc = cfail(err, esize, path, kn, "key expected");
        else if (!strcmp(k, "vault_key") && v)
            resolve(dir, v, vault_key, psize);
        else if (!strcmp(k, "pseudonym_key") && v)
            resolve(dir, v, pseudo_key, psize);
        else if (!strcmp(k, "seal_orders_from"))
            rc = get_list(&doc, vn, &self->order_from) ? cfail(err, esize, path, vn, "seal_orders_from: department codes") : 0;
        else if (!strcmp(k, "juvenile_offence_from"))
            rc = get_list(&doc, vn, &self->juvenile_from) ? cfail(err, esize, path, vn, "juvenile_offence_from: department codes") : 0;
        else if (!strcmp(k, "recipients"))
            rc = get_list(&doc, vn, &self->recipients) ? cfail(err, esize, path, vn, "recipients: department codes") : 0;
        else if (!strcmp(k, "alert"))
            rc = get_list(&doc, vn, &self->alert) ? cfail(err, esize, path, vn, "alert: department codes") : 0;
        else if (!strcmp(k, "when_party"))
            rc = get_list(&doc, vn, &self->when_party) ? cfail(err, esize, path, vn, "when_party: department codes") : 0;
        else if (!strcmp(k, "grant_lifetime_ms") && v && atoll(v) > 0)
            self->grant_ms = atoll(v);
        else if (!strcmp(k, "grant_reads") && v && atol(v) > 0)
            self->grant_reads = (uint32_t)atol(v);
        else if (!strcmp(k, "access") && vn->type == YAML_SEQUENCE_NODE)
            access = vn;
        else
            rc = cfail(err, esize, path, kn, "unknown key or bad value");
    }
    if (!rc && access) {
        for (yaml_node_item_t *it = access->data.sequence.items.start;
             it < access->data.sequence.items.top && !rc; it++) {
            yaml_node_t *m = yaml_document_get_node(&doc, *it);
            if (self->n_rules == MAX_RULES || load_rule(&doc, m, &self->rules[self->n_rules++], self))
                rc = cfail(err, esize, path, m,
                           "access: each rule needs department, basis (CASE_HANDLING | "
                           "STATUTORY_QUERY), optional approval, lifetime_ms > 0, reads > 0");
        }
    }
    if (!rc && (!vault_key[0] || !pseudo_key[0]))
        rc = cfail(err, esize, path, root, "vault_key and pseudonym_key are required");
    if (!rc && (!self->order_from.n || !self->recipients.n || !self->alert.n))
        rc = cfail(err, esize, path, root, "seal_orders_from, recipients and alert are required");
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int cpx_gw_sealed_open(const char *policy_path, MDB_env *env, cpx_gw_sealed_t **out, char *err,
                       size_t err_size)
{
    *out = NULL;
    cpx_gw_sealed_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPX_ERR_NOMEM;
    char vk[CPX_GW_PATH_MAX] = "", pk[CPX_GW_PATH_MAX] = "";
    int rc = load_policy(self, policy_path, vk, pk, sizeof vk, err, err_size);
    if (!rc && (rc = cpx_symkey_load(pk, self->pkey)))
        snprintf(err, err_size, "%s: pseudonym key %s: %s", policy_path, pk, cpx_strerror(rc));
    if (!rc && (rc = cpx_vault_open(env, vk, self->pkey, &self->vault)))
        snprintf(err, err_size, "%s: vault key %s: %s%s", policy_path, vk, cpx_strerror(rc),
                 rc == CPX_ERR_TAMPERED ? " (lost or wrong vault key)" : "");
    MDB_txn *txn = NULL;
    if (!rc && (rc = mdb_txn_begin(env, NULL, 0, &txn)))
        rc = cpx_store_err(rc, "sealed: begin");
    if (!rc) {
        int m;
        if ((m = mdb_dbi_open(txn, "sealed.grant", MDB_CREATE, &self->grants)) ||
            (m = mdb_dbi_open(txn, "sealed.pending", MDB_CREATE, &self->pending)) ||
            (m = mdb_dbi_open(txn, "sealed.case", MDB_CREATE, &self->scase)) ||
            (m = mdb_dbi_open(txn, "sealed.subject", MDB_CREATE, &self->subj)) ||
            (m = mdb_dbi_open(txn, "sealed.party", MDB_CREATE, &self->party)) ||
            (m = mdb_txn_commit(txn))) {
            mdb_txn_abort(txn);
            rc = cpx_store_err(m, "sealed: open databases");
        }
    }
    if (rc) {
        if (!err[0])
            snprintf(err, err_size, "%s: %s", policy_path, cpx_strerror(rc));
        cpx_gw_sealed_destroy(&self);
        return rc;
    }
    *out = self;
    return CPX_OK;
}

void cpx_gw_sealed_destroy(cpx_gw_sealed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_vault_destroy(&(*self_p)->vault);
    cpx_cleanse(*self_p, sizeof **self_p);
    free(*self_p);
    *self_p = NULL;
}

cpx_vault_t *cpx_gw_sealed_vault(cpx_gw_sealed_t *self)
{
    return self ? self->vault : NULL;
}

/* ---- helpers ------------------------------------------------------------------------ */

/* The audit's name for a sealed subject: a keyed pseudonym, short enough for an outbox
 * case id, so no leaf, outbox key or status line carries an ID number or case id. */
static void ref_of(const cpx_gw_sealed_t *self, const char *prefix, const char *value,
                   char out[REF_LEN + 1])
{
    char buf[300], p[35];
    snprintf(buf, sizeof buf, "%s%s", prefix, value);
    cpx_audit_pseudonym(self->pkey, buf, p);
    memcpy(out, p, REF_LEN);
    out[REF_LEN] = '\0';
    cpx_cleanse(buf, sizeof buf);
}

static const char *minor_id(const cpx_envelope_t *env)
{
    const Cpx__V1__MinorIdentity *m = NULL;
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT: m = env->discovery_report->minor; break;
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT: m = env->assessment->minor; break;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION: m = env->disposition->minor; break;
    case CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE: return env->release_notice->minor_id_number;
    default: break;
    }
    return m && m->id_number ? m->id_number : "";
}

static int juvenile_offence(const cpx_envelope_t *env)
{
    if (env->body_case != CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT || !env->discovery_report)
        return 0;
    for (size_t i = 0; i < env->discovery_report->n_circumstances; i++)
        if (env->discovery_report->circumstances[i] == CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE)
            return 1;
    return 0;
}

static int case_sealed(cpx_gw_sealed_t *S, MDB_txn *txn, const char *case_id)
{
    if (!case_id || !*case_id)
        return 0;
    uint8_t p[CPX_VAULT_PSEUDO_LEN];
    cpx_vault_pseudo(S->vault, CPX_VAULT_TAG_CASE, case_id, p);
    MDB_val k = {sizeof p, p}, v;
    return mdb_get(txn, S->scase, &k, &v) == 0;
}

/* A minor named by a SealOrder's subject: later messages about them are sealed too. */
static int subject_sealed(cpx_gw_sealed_t *S, MDB_txn *txn, const char *id_number)
{
    if (!id_number || !*id_number)
        return 0;
    uint8_t p[CPX_VAULT_PSEUDO_LEN];
    cpx_vault_pseudo(S->vault, CPX_VAULT_TAG_SUBJECT, id_number, p);
    MDB_val k = {sizeof p, p}, v;
    return mdb_get(txn, S->subj, &k, &v) == 0;
}

/* ---- who is party to a case ------------------------------------------------------------
 * A department in when_party (JUSTICE by default) is party to case C when
 *  (a) it sent a message accepted in C, or
 *  (b) a judicial organ (a recipient not in when_party: POLICE, PROCURATORATE, COURT)
 *      referred C to it: a Referral in C from that organ with `to` = the department.
 * Ordinary messages are found through the audit log's case index (ACCEPTED leaves:
 * sender, body kind, recipients); sealed ones, whose leaves name only a pseudonym, are
 * recorded in "sealed.party" (pseudonym of C | department) when they are accepted. */

static int judicial(const cpx_gw_sealed_t *S, const char *dept)
{
    return in_list(&S->recipients, dept) && !in_list(&S->when_party, dept);
}

static void party_key(const cpx_gw_sealed_t *S, const char *case_id, const char *dept,
                      uint8_t k[PARTY_KEY])
{
    memset(k, 0, PARTY_KEY);
    cpx_vault_pseudo(S->vault, CPX_VAULT_TAG_CASE, case_id, k);
    memcpy(k + CPX_VAULT_PSEUDO_LEN, dept, strnlen(dept, CPX_MAX_DEPT_CODE));
}

static int add_party(cpx_gw_t *gw, const char *case_id, const char *dept)
{
    if (!case_id[0] || !cpx_dept_code_valid(dept))
        return CPX_OK;
    uint8_t k[PARTY_KEY];
    party_key(gw->sealed, case_id, dept, k);
    MDB_val key = {sizeof k, k}, v = {0, ""};
    int rc = mdb_put(gw->txn, gw->sealed->party, &key, &v, 0);
    return rc ? cpx_store_err(rc, "sealed: party") : CPX_OK;
}

typedef struct party_scan {
    cpx_gw_t *gw;
    const char *dept;
} party_scan_t;

static int party_leaf_cb(void *ctx, uint64_t seq)
{
    party_scan_t *p = ctx;
    cpx_audit_leaf_t *leaf = NULL;
    int rc = cpx_audit_get_leaf(p->gw->audit, p->gw->txn, seq, &leaf);
    if (rc)
        return rc;
    int found = 0;
    if (leaf->event == CPX__V1__AUDIT_EVENT__ACCEPTED && leaf->sender) {
        if (!strcmp(leaf->sender, p->dept))
            found = 1;
        else if (leaf->body_kind && !strcmp(leaf->body_kind, "referral") &&
                 judicial(p->gw->sealed, leaf->sender))
            for (size_t i = 0; i < leaf->n_recipients && !found; i++)
                found = !strcmp(leaf->recipients[i], p->dept);
    }
    cpx_msg_free(leaf);
    return found;
}

/* 1 when dept is party to case_id (see above), 0 when not, negative on error. */
static int is_party(cpx_gw_t *gw, const char *case_id, const char *dept)
{
    if (!case_id || !case_id[0])
        return 0;
    uint8_t k[PARTY_KEY];
    party_key(gw->sealed, case_id, dept, k);
    MDB_val key = {sizeof k, k}, v;
    int rc = mdb_get(gw->txn, gw->sealed->party, &key, &v);
    if (rc == 0)
        return 1;
    if (rc != MDB_NOTFOUND)
        return cpx_store_err(rc, "sealed: party get");
    party_scan_t p = {gw, dept};
    rc = cpx_audit_case_foreach(gw->audit, gw->txn, case_id, party_leaf_cb, &p);
    return rc == 1 ? 1 : rc;
}

/* May a sealed message of case_id go to dept? The policy's recipients; those in
 * when_party only when party to the case. 1 yes, 0 no, negative on error. */
static int may_receive(cpx_gw_t *gw, const char *case_id, const char *dept)
{
    const cpx_gw_sealed_t *S = gw->sealed;
    if (!in_list(&S->recipients, dept))
        return 0;
    return in_list(&S->when_party, dept) ? is_party(gw, case_id, dept) : 1;
}

/* Leaf fields that let an auditor check the sender's signature from the log alone. */
static void sig_fields(cpx_audit_leaf_t *leaf, const cpx_envelope_t *env,
                       const cpx_envsign_result_t *res, ProtobufCBinaryData *path)
{
    const Cpx__V1__Signature *sig = env->signature;
    leaf->message_id = env->message_id;
    leaf->envelope_digest = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->digest};
    leaf->key_id = sig->key_id;
    leaf->body_kind = (char *)cpx_body_kind_name(env->body_case);
    if (res->batch && sig->batch) {
        leaf->batch_root = (ProtobufCBinaryData){CPX_SHA256_LEN, (uint8_t *)res->batch_root};
        leaf->batch_signature = sig->batch->root_signature;
        leaf->batch_index = sig->batch->index;
        leaf->batch_size = sig->batch->size;
        size_t np = sig->batch->n_path < CPX_MAX_BATCH_PATH ? sig->batch->n_path : CPX_MAX_BATCH_PATH;
        for (size_t i = 0; i < np; i++)
            path[i] = sig->batch->path[i];
        leaf->n_batch_path = np;
        leaf->batch_path = path;
    } else {
        leaf->signature = sig->ed25519;
    }
}

static int queue(cpx_gw_t *gw, const char *dept, const uint8_t *mid, size_t mid_len,
                 uint64_t seq, const char *ref, int priority)
{
    cpx_outbox_entry_t e = {0};
    snprintf(e.dept, sizeof e.dept, "%s", dept);
    e.cls = cpx_outbox_class(priority);
    memcpy(e.message_id, mid, mid_len);
    e.message_id_len = mid_len;
    e.accepted_seq = seq;
    snprintf(e.case_id, sizeof e.case_id, "%s", ref);
    int rc = cpx_outbox_put(gw->ob, gw->txn, &e);
    if (rc)
        return rc;
    cpx_gw_session_t *s = cpx_gw_sessions_get(gw->sessions, dept, 1);
    if (s) {
        s->depth++;
        s->scan_more = 1;
    }
    return CPX_OK;
}

/* Keeps a submitted envelope in the vault with a blank ordinary record at seq. */
static int keep(cpx_gw_t *gw, const cpx_envelope_t *env, cpx_vault_kind kind, uint64_t seq,
                const char *case_id)
{
    cpx_gw_sealed_t *S = gw->sealed;
    uint8_t *buf;
    size_t len;
    int rc = cpx_encode(env, &buf, &len);
    if (rc)
        return rc;
    rc = cpx_vault_put(S->vault, gw->txn, env->message_id.data, kind, buf, len, gw->now_ms);
    cpx_cleanse(buf, len);
    free(buf);
    if (!rc)
        rc = cpx_gw_cases_put_message(gw->cases, gw->txn, seq, env->message_id.data,
                                      env->message_id.len, env->sender, case_id, (const uint8_t *)"", 0);
    return rc;
}

/* A gateway-issued envelope (decision or notice) to one department: signed by the
 * gateway key, kept in the vault, queued under leaf seq. */
static int issue(cpx_gw_t *gw, const char *dept, const uint8_t *reply_to, const char *ref,
                 uint64_t seq, Cpx__V1__SealedAccessDecision *dec, Cpx__V1__Notice *notice)
{
    cpx_envelope_t e = CPX__V1__ENVELOPE__INIT;
    uint8_t mid[CPX_VAULT_ID_LEN];
    int rc = cpx_random(mid, sizeof mid);
    if (rc)
        return rc;
    char *rcpt[1] = {(char *)dept};
    e.message_id = (ProtobufCBinaryData){sizeof mid, mid};
    e.sender = GATEWAY_SENDER;
    e.n_recipients = 1;
    e.recipients = rcpt;
    e.created_ms = gw->now_ms;
    e.priority = CPX__V1__PRIORITY__URGENT;
    e.sensitivity = CPX__V1__SENSITIVITY__SEALED;
    if (reply_to)
        e.in_reply_to = (ProtobufCBinaryData){CPX_VAULT_ID_LEN, (uint8_t *)reply_to};
    if (dec) {
        e.body_case = CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_DECISION;
        e.sealed_access_decision = dec;
    } else {
        e.body_case = CPX__V1__ENVELOPE__BODY_NOTICE;
        e.notice = notice;
    }
    /* envsign needs a heap-owned message: round-trip through the codec */
    uint8_t *buf;
    size_t len;
    if ((rc = cpx_encode(&e, &buf, &len)))
        return rc;
    cpx_envelope_t *owned = NULL;
    rc = cpx_decode_envelope(buf, len, &owned);
    cpx_cleanse(buf, len);
    free(buf);
    if (!rc)
        rc = cpx_envsign_sign(owned, gw->sign_key);
    if (!rc)
        rc = keep(gw, owned, CPX_VAULT_INTERNAL, seq, "");
    if (!rc)
        rc = queue(gw, dept, mid, sizeof mid, seq, ref, e.priority);
    cpx_msg_free(owned);
    return rc;
}

static int leaf_simple(cpx_gw_t *gw, int event, const char *sender, const char *rcpt,
                       const char *ref, const ProtobufCBinaryData *mid, const char *reason,
                       const char *detail, uint64_t ref_seq, uint64_t *seq)
{
    char *r[1] = {(char *)rcpt};
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = event;
    leaf.sender = (char *)sender;
    if (rcpt) {
        leaf.n_recipients = 1;
        leaf.recipients = r;
    }
    leaf.case_ref = (char *)ref;
    if (mid)
        leaf.message_id = *mid;
    leaf.reason = (char *)(reason ? reason : "");
    leaf.detail = (char *)(detail ? detail : "");
    leaf.ref_seq = ref_seq;
    return cpx_gw_leaf(gw, &leaf, seq);
}

/* The request's own leaf (with the sender's signature) and its blank record. */
static int request_leaf(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                        const cpx_envsign_result_t *res, int event, const char *ref,
                        const char *detail, uint64_t *seq)
{
    ProtobufCBinaryData path[CPX_MAX_BATCH_PATH];
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = event;
    leaf.sender = (char *)in->dept;
    leaf.case_ref = (char *)ref;
    leaf.detail = (char *)detail;
    sig_fields(&leaf, env, res, path);
    int rc = cpx_gw_leaf(gw, &leaf, seq);
    return rc ? rc : keep(gw, env, CPX_VAULT_INTERNAL, *seq, "");
}

/* ---- sealed content ------------------------------------------------------------------ */

static int seal_message(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                        const cpx_envsign_result_t *res, const char *why)
{
    cpx_gw_sealed_t *S = gw->sealed;
    cpx_errors_t errs = {0};
    char case_id[CPX_MAX_CASE_ID + 1], town[CPX_MAX_DEPT_CODE + 1], ref[REF_LEN + 1];
    int rc = cpx_gw_cases_resolve(gw->cases, gw->txn, env, gw->now_ms, case_id, town, &errs);
    if (rc == CPX_ERR_NOT_FOUND)
        return cpx_gw_writer_refuse(gw, in, env, CPX__V1__ERROR_CODE__UNKNOWN_REFERENCE,
                                    errs.items[0].path, errs.items[0].rule, errs.items[0].message);
    if (rc)
        return rc;
    const char *subject = minor_id(env);
    if (*subject)
        ref_of(S, "", subject, ref);
    else
        ref_of(S, "case:", case_id, ref);

    /* The sender takes part in the case; a judicial organ's referral makes its target
     * party (before routing: the referral itself reaches it). */
    if ((rc = add_party(gw, case_id, in->dept)))
        return rc;
    if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL && env->referral && env->referral->to &&
        judicial(S, in->dept) && (rc = add_party(gw, case_id, env->referral->to)))
        return rc;

    /* Only the policy's recipients (when_party ones only when party to the case), never
     * the sender; explicit recipients outside that are dropped silently (the sender may
     * not widen the audience). */
    const char *rcpt[CPX_MAX_RECIPIENTS];
    size_t n = 0;
    for (size_t i = 0; i < env->n_recipients && n < CPX_MAX_RECIPIENTS; i++) {
        if (!strcmp(env->recipients[i], in->dept))
            continue;
        int ok = may_receive(gw, case_id, env->recipients[i]);
        if (ok < 0)
            return ok;
        if (ok)
            rcpt[n++] = env->recipients[i];
    }
    if (!n)
        for (size_t i = 0; i < S->alert.n && n < CPX_MAX_RECIPIENTS; i++)
            if (strcmp(S->alert.v[i], in->dept))
                rcpt[n++] = S->alert.v[i];

    ProtobufCBinaryData path[CPX_MAX_BATCH_PATH];
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = CPX__V1__AUDIT_EVENT__ACCEPTED;
    leaf.sender = (char *)in->dept;
    leaf.n_recipients = n;
    leaf.recipients = (char **)rcpt;
    leaf.case_ref = ref;
    char detail[64];
    snprintf(detail, sizeof detail, "sealed=%s", why);
    leaf.detail = detail;
    sig_fields(&leaf, env, res, path);
    uint64_t seq;
    if ((rc = cpx_gw_leaf(gw, &leaf, &seq)))
        return rc;
    uint8_t *buf;
    size_t len;
    if ((rc = cpx_encode(env, &buf, &len)))
        return rc;
    rc = cpx_vault_put(S->vault, gw->txn, env->message_id.data, CPX_VAULT_RECORD, buf, len, gw->now_ms);
    cpx_cleanse(buf, len);
    free(buf);
    if (!rc && *subject)
        rc = cpx_vault_index(S->vault, gw->txn, CPX_VAULT_TAG_SUBJECT, subject, env->message_id.data);
    if (!rc)
        rc = cpx_vault_index(S->vault, gw->txn, CPX_VAULT_TAG_CASE, case_id, env->message_id.data);
    if (!rc)
        rc = cpx_gw_cases_put_message(gw->cases, gw->txn, seq, env->message_id.data,
                                      env->message_id.len, in->dept, case_id, (const uint8_t *)"", 0);
    for (size_t i = 0; i < n && !rc; i++)
        rc = queue(gw, rcpt[i], env->message_id.data, env->message_id.len, seq, ref,
                   env->priority);
    if (rc)
        return rc;
    cpx_log_info(MOD, "msg=sealed dept=%s leaf=%llu why=%s", in->dept, (unsigned long long)seq, why);
    return cpx_gw_writer_ack(gw, in, env, seq, case_id);
}

/* ---- seal orders --------------------------------------------------------------------- */

typedef struct move {
    cpx_gw_t *gw;
    uint8_t ids[MAX_MOVE][CPX_VAULT_ID_LEN];
    size_t n;
} move_t;

static void move_add(move_t *m, const uint8_t *id, size_t len)
{
    if (len != CPX_VAULT_ID_LEN || m->n == MAX_MOVE)
        return;
    for (size_t i = 0; i < m->n; i++)
        if (!memcmp(m->ids[i], id, len))
            return;
    memcpy(m->ids[m->n++], id, len);
}

static int case_leaf_cb(void *ctx, uint64_t seq)
{
    move_t *m = ctx;
    cpx_audit_leaf_t *leaf = NULL;
    int rc = cpx_audit_get_leaf(m->gw->audit, m->gw->txn, seq, &leaf);
    if (rc)
        return rc;
    if (leaf->event == CPX__V1__AUDIT_EVENT__ACCEPTED)
        move_add(m, leaf->message_id.data, leaf->message_id.len);
    cpx_msg_free(leaf);
    return 0;
}

typedef struct purge {
    const move_t *m;
    int conditional;                  /* a when_party department: keep its party cases */
    cpx_outbox_entry_t hits[256];
    size_t n;
    size_t skipped;                   /* entries kept: the department is party */
} purge_t;

static int moved(const move_t *m, const uint8_t *id, size_t len)
{
    for (size_t i = 0; i < m->n; i++)
        if (len == CPX_VAULT_ID_LEN && !memcmp(id, m->ids[i], CPX_VAULT_ID_LEN))
            return 1;
    return 0;
}

static int purge_cb(void *ctx, const cpx_outbox_entry_t *e)
{
    purge_t *p = ctx;
    if (!moved(p->m, e->message_id, e->message_id_len))
        return 0;
    if (p->conditional) {
        int party = is_party(p->m->gw, e->case_id, e->dept);
        if (party < 0)
            return party;
        if (party) {
            p->skipped++;
            return 0;
        }
    }
    p->hits[p->n++] = *e;
    return p->n == 256 ? 1 : 0;
}

typedef struct depts {
    dept_t v[256];
    size_t n;
} depts_t;

static int depts_cb(void *ctx, const char *dept, uint64_t depth)
{
    depts_t *d = ctx;
    (void)depth;
    if (d->n < 256)
        snprintf(d->v[d->n++], sizeof d->v[0], "%s", dept);
    return 0;
}

typedef struct dead_purge {
    const move_t *m;
    uint64_t seqs[256];
    size_t n;
} dead_purge_t;

static int dead_cb(void *ctx, const cpx_dead_letter_t *d)
{
    dead_purge_t *p = ctx;
    const cpx_outbox_entry_t *e = &d->entry;
    if (!moved(p->m, e->message_id, e->message_id_len))
        return 0;
    int ok = may_receive(p->m->gw, e->case_id, e->dept);
    if (ok < 0)
        return ok;
    if (!ok)
        p->seqs[p->n++] = e->seq;
    return p->n == 256 ? 1 : 0;
}

/* Removes the moved messages from the outboxes (and dead letters, which a retry would
 * put back) of departments the policy does not allow: they will never be delivered
 * there. */
static int purge_outboxes(cpx_gw_t *gw, const move_t *m, uint64_t *purged)
{
    depts_t *d = calloc(1, sizeof *d);
    purge_t *p = calloc(1, sizeof *p);
    int rc = d && p ? cpx_outbox_depths(gw->ob, gw->txn, depts_cb, d) : CPX_ERR_NOMEM;
    for (size_t i = 0; i < (d ? d->n : 0) && !rc; i++) {
        int cond = in_list(&gw->sealed->when_party, d->v[i]);
        if (in_list(&gw->sealed->recipients, d->v[i]) && !cond)
            continue;
        do {
            p->m = m;
            p->conditional = cond;
            p->n = 0;
            p->skipped = 0;
            if ((rc = cpx_outbox_each(gw->ob, gw->txn, d->v[i], SIZE_MAX, purge_cb, p)) < 0)
                break;
            rc = CPX_OK;
            cpx_gw_session_t *s = cpx_gw_sessions_get(gw->sessions, d->v[i], 1);
            for (size_t j = 0; j < p->n && !rc; j++) {
                rc = cpx_outbox_remove(gw->ob, gw->txn, &p->hits[j]);
                if (!rc && s && s->depth)
                    s->depth--;
                (*purged)++;
            }
            if (s)
                s->scan_more = 1;
        } while (!rc && p->n == 256);
    }
    dead_purge_t *dp = rc ? NULL : calloc(1, sizeof *dp);
    if (!rc && !dp)
        rc = CPX_ERR_NOMEM;
    for (uint64_t from = 0; !rc;) {
        dp->m = m;
        dp->n = 0;
        if ((rc = cpx_outbox_dead_each(gw->ob, gw->txn, from, dead_cb, dp)) < 0)
            break;
        rc = CPX_OK;
        for (size_t j = 0; j < dp->n && !rc; j++) {
            rc = cpx_outbox_dead_remove(gw->ob, gw->txn, dp->seqs[j]);
            (*purged)++;
        }
        if (dp->n < 256)
            break;
        from = dp->seqs[dp->n - 1] + 1;
    }
    free(dp);
    free(d);
    free(p);
    return rc;
}

static int move_one(cpx_gw_t *gw, const uint8_t *id, const char *subject, int *moved)
{
    cpx_gw_sealed_t *S = gw->sealed;
    cpx_gw_msg_t m;
    *moved = 0;
    int rc = cpx_gw_cases_lookup(gw->cases, gw->txn, id, CPX_VAULT_ID_LEN, &m);
    if (rc == CPX_ERR_NOT_FOUND || (!rc && m.env_len == 0))
        return CPX_OK; /* unknown here, or already in the vault */
    if (rc)
        return rc;
    char case_id[CPX_MAX_CASE_ID + 1], sender[CPX_MAX_DEPT_CODE + 1];
    snprintf(case_id, sizeof case_id, "%s", m.case_id);
    snprintf(sender, sizeof sender, "%s", m.sender);
    uint8_t *copy = malloc(m.env_len);
    if (!copy)
        return CPX_ERR_NOMEM;
    size_t len = m.env_len;
    memcpy(copy, m.env, len);
    cpx_envelope_t *env = NULL;
    const char *own = "";
    if (!cpx_decode_envelope(copy, len, &env))
        own = minor_id(env);
    rc = cpx_vault_put(S->vault, gw->txn, id, CPX_VAULT_RECORD, copy, len, gw->now_ms);
    if (!rc && subject && *subject)
        rc = cpx_vault_index(S->vault, gw->txn, CPX_VAULT_TAG_SUBJECT, subject, id);
    if (!rc && *own)
        rc = cpx_vault_index(S->vault, gw->txn, CPX_VAULT_TAG_SUBJECT, own, id);
    if (!rc && case_id[0])
        rc = cpx_vault_index(S->vault, gw->txn, CPX_VAULT_TAG_CASE, case_id, id);
    if (!rc)
        rc = cpx_gw_cases_blank(gw->cases, gw->txn, m.seq);
    cpx_msg_free(env);
    cpx_cleanse(copy, len);
    free(copy);
    if (!rc)
        *moved = 1;
    return rc;
}

/* The cases a SealOrder seals: those it names, and with a subject ID number every case
 * about that minor (the case index's keyed hash of the ID) and every case of a stored
 * message that names the ID (messages of cases the index does not know, or with case
 * tracking off). */
typedef struct order_cases {
    char v[MAX_CASES][CPX_MAX_CASE_ID + 1];
    size_t n;
    int overflow;
    move_t *m;
    const char *subject;
    uint8_t subject_hash[CPX_SHA256_LEN];
} order_cases_t;

static void case_add(order_cases_t *c, const char *case_id)
{
    if (!case_id || !*case_id)
        return;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i], case_id))
            return;
    if (c->n == MAX_CASES) {
        c->overflow = 1;
        return;
    }
    snprintf(c->v[c->n++], sizeof c->v[0], "%s", case_id);
}

static int subject_case_cb(void *ctx, const cpx_case_rec_t *rec)
{
    order_cases_t *c = ctx;
    if ((rec->flags & CPX_CASE_F_HAS_ID) &&
        cpx_ct_equal(rec->subject, c->subject_hash, sizeof c->subject_hash))
        case_add(c, rec->id);
    return 0;
}

static int ids_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if ((*a == 'x' ? 'X' : *a) != (*b == 'x' ? 'X' : *b))
            return 0;
    return *a == *b;
}

static int subject_msg_cb(void *ctx, const cpx_gw_msg_t *m)
{
    order_cases_t *c = ctx;
    size_t n = strlen(c->subject);
    /* cheap filter first: the ID number is a plain string inside the encoded envelope
     * (its check digit may be either case) */
    int maybe = 0;
    for (size_t i = 0; i + n <= m->env_len && !maybe; i++)
        maybe = !strncasecmp((const char *)m->env + i, c->subject, n);
    if (!maybe)
        return 0;
    cpx_envelope_t *env = NULL;
    if (cpx_decode_envelope(m->env, m->env_len, &env) == CPX_OK) {
        if (ids_equal(minor_id(env), c->subject)) {
            move_add(c->m, env->message_id.data, env->message_id.len);
            case_add(c, m->case_id);
        }
        cpx_msg_free(env);
    }
    return 0;
}

static int find_subject_cases(cpx_gw_t *gw, order_cases_t *c)
{
    if (gw->ci && gw->ci->idx) {
        Cpx__V1__MinorIdentity mi = CPX__V1__MINOR_IDENTITY__INIT;
        mi.id_number = (char *)c->subject;
        uint8_t key[1 + CPX_SHA256_LEN];
        if (cpx_caseindex_minor_key(gw->ci->idx, &mi, 0, key) == CPX_OK) {
            memcpy(c->subject_hash, key + 1, CPX_SHA256_LEN);
            int rc = cpx_caseindex_each_case(gw->ci->idx, gw->txn, subject_case_cb, c);
            if (rc)
                return rc;
        }
    }
    return cpx_gw_cases_each(gw->cases, gw->txn, subject_msg_cb, c);
}

static int seal_case(cpx_gw_t *gw, const char *case_id, const char *by, move_t *m)
{
    cpx_gw_sealed_t *S = gw->sealed;
    int rc = cpx_audit_case_foreach(gw->audit, gw->txn, case_id, case_leaf_cb, m);
    uint8_t p[CPX_VAULT_PSEUDO_LEN];
    cpx_vault_pseudo(S->vault, CPX_VAULT_TAG_CASE, case_id, p);
    MDB_val k = {sizeof p, p}, v = {strlen(by), (void *)by};
    if (!rc && (rc = mdb_put(gw->txn, S->scase, &k, &v, 0)))
        rc = cpx_store_err(rc, "sealed: case");
    /* every view without the auditor's key answers as for an unknown case */
    if (!rc)
        rc = cpx_vault_hide_case(S->vault, gw->txn, case_id);
    /* the case leaves every ordinary case view (case show, list, stats, dashboard) */
    if (!rc && gw->ci && (rc = cpx_caseindex_seal(gw->ci->idx, gw->txn, case_id)) == CPX_ERR_NOT_FOUND)
        rc = CPX_OK;
    return rc;
}

static int seal_order(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                      const cpx_envsign_result_t *res)
{
    cpx_gw_sealed_t *S = gw->sealed;
    const Cpx__V1__SealOrder *o = env->seal_order;
    if (!in_list(&S->order_from, in->dept))
        return cpx_gw_writer_refuse(gw, in, env, CPX__V1__ERROR_CODE__RULE_VIOLATION, "sender",
                                    "sealing_authority", "only a sealing authority may order sealing");
    const char *subject = o->subject_id_number ? o->subject_id_number : "";
    char ref[REF_LEN + 1], hex[2 * CPX_VAULT_ID_LEN + 1];
    if (*subject)
        ref_of(S, "", subject, ref);
    else if (o->n_case_ids)
        ref_of(S, "case:", o->case_ids[0], ref);
    else {
        cpx_hex(o->message_ids[0].data, o->message_ids[0].len < 16 ? o->message_ids[0].len : 16, hex);
        ref_of(S, "msg:", hex, ref);
    }
    move_t *m = calloc(1, sizeof *m);
    order_cases_t *c = calloc(1, sizeof *c);
    if (!m || !c) {
        free(m);
        free(c);
        return CPX_ERR_NOMEM;
    }
    m->gw = gw;
    c->m = m;
    c->subject = subject;
    int rc = CPX_OK;
    for (size_t i = 0; i < o->n_message_ids; i++)
        move_add(m, o->message_ids[i].data, o->message_ids[i].len);
    for (size_t i = 0; i < o->n_case_ids; i++)
        case_add(c, o->case_ids[i]);
    if (*subject)
        rc = find_subject_cases(gw, c);
    for (size_t i = 0; i < c->n && !rc; i++)
        rc = seal_case(gw, c->v[i], in->dept, m);
    if (!rc && *subject) {
        uint8_t p[CPX_VAULT_PSEUDO_LEN];
        cpx_vault_pseudo(S->vault, CPX_VAULT_TAG_SUBJECT, subject, p);
        MDB_val k = {sizeof p, p}, v = {strlen(in->dept), (void *)in->dept};
        if ((rc = mdb_put(gw->txn, S->subj, &k, &v, 0)))
            rc = cpx_store_err(rc, "sealed: subject");
    }
    uint64_t n_moved = 0, purged = 0;
    for (size_t i = 0; i < m->n && !rc; i++) {
        int one;
        rc = move_one(gw, m->ids[i], subject, &one);
        n_moved += (uint64_t)one;
    }
    if (!rc && m->n)
        rc = purge_outboxes(gw, m, &purged);
    /* the order goes to the policy's recipients; a when_party one only when party to a
     * sealed case */
    const char *to[MAX_LIST];
    size_t n_to = 0;
    for (size_t i = 0; i < S->recipients.n && !rc; i++) {
        const char *d = S->recipients.v[i];
        int ok = strcmp(d, in->dept) != 0 && !in_list(&S->when_party, d);
        for (size_t j = 0; j < c->n && !ok && !rc; j++)
            if ((rc = is_party(gw, c->v[j], d)) > 0)
                ok = 1, rc = 0;
        if (rc < 0)
            break;
        rc = 0;
        if (ok && strcmp(d, in->dept))
            to[n_to++] = d;
    }
    int overflow = c->overflow || m->n == MAX_MOVE;
    size_t n_cases = c->n;
    free(m);
    free(c);
    if (rc)
        return rc;
    char detail[160];
    snprintf(detail, sizeof detail, "moved=%llu outbox_removed=%llu cases=%zu%s",
             (unsigned long long)n_moved, (unsigned long long)purged, n_cases,
             overflow ? " truncated" : "");
    uint64_t seq;
    if ((rc = request_leaf(gw, in, env, res, CPX__V1__AUDIT_EVENT__SEAL_ORDERED, ref, detail, &seq)))
        return rc;
    for (size_t i = 0; i < n_to && !rc; i++)
        rc = queue(gw, to[i], env->message_id.data, env->message_id.len, seq, ref,
                   CPX__V1__PRIORITY__URGENT);
    if (rc)
        return rc;
    if (overflow)
        cpx_log_warn(MOD, "msg=\"seal order reached its limits (%d cases, %d messages): send another\" leaf=%llu",
                     MAX_CASES, MAX_MOVE, (unsigned long long)seq);
    cpx_log_info(MOD, "msg=\"seal order\" dept=%s leaf=%llu %s", in->dept, (unsigned long long)seq, detail);
    return cpx_gw_writer_ack(gw, in, env, seq, "");
}

/* ---- lawful access ------------------------------------------------------------------- */

/* grant record: dept(33) pseudo(33) expires(8) reads_left(4) */
#define GRANT_LEN (33 + CPX_VAULT_PSEUDO_LEN + 8 + 4)
/* pending record: dept(33) pseudo(33) approver(33) ref(33) rule index(4) */
#define PEND_LEN (33 + CPX_VAULT_PSEUDO_LEN + 33 + 33 + 4)

static const rule_t *find_rule(const cpx_gw_sealed_t *S, const char *dept, int basis)
{
    for (size_t i = 0; i < S->n_rules; i++)
        if (S->rules[i].basis == basis && !strcmp(S->rules[i].dept, dept))
            return &S->rules[i];
    return NULL;
}

static void subject_of(const cpx_gw_sealed_t *S, const char *id_number, const char *case_id,
                       char *tag, const char **value, char ref[REF_LEN + 1])
{
    if (id_number && *id_number) {
        *tag = CPX_VAULT_TAG_SUBJECT;
        *value = id_number;
        ref_of(S, "", id_number, ref);
    } else {
        *tag = CPX_VAULT_TAG_CASE;
        *value = case_id ? case_id : "";
        ref_of(S, "case:", *value, ref);
    }
}

static int decision(cpx_gw_t *gw, const char *dept, const uint8_t *req_id, const char *ref,
                    uint64_t seq, int outcome, const uint8_t *grant_id, int64_t expires,
                    uint32_t reads, ProtobufCBinaryData *records, size_t n_records)
{
    Cpx__V1__SealedAccessDecision d = CPX__V1__SEALED_ACCESS_DECISION__INIT;
    d.request_id = (ProtobufCBinaryData){CPX_VAULT_ID_LEN, (uint8_t *)req_id};
    d.outcome = outcome;
    if (grant_id) {
        d.grant_id = (ProtobufCBinaryData){CPX_VAULT_ID_LEN, (uint8_t *)grant_id};
        d.expires_ms = expires;
        d.reads_allowed = reads;
    }
    d.n_records = n_records;
    d.records = records;
    return issue(gw, dept, req_id, ref, seq, &d, NULL);
}

/* SEALED_ACCESS_ALERT to every sealing authority; one NOTICE_RAISED leaf. */
static int alert(cpx_gw_t *gw, const char *asker, const uint8_t *req_id, const char *ref,
                 const char *what, uint64_t ref_seq)
{
    cpx_gw_sealed_t *S = gw->sealed;
    char text[256];
    snprintf(text, sizeof text, "%s: refused sealed-record %s (subject %s)", asker, what, ref);
    ProtobufCBinaryData rel = {CPX_VAULT_ID_LEN, (uint8_t *)req_id};
    Cpx__V1__Notice n = CPX__V1__NOTICE__INIT;
    n.kind = CPX__V1__NOTICE_KIND__SEALED_ACCESS_ALERT;
    n.text = text;
    n.n_related = 1;
    n.related = &rel;
    n.rule = "sealed.access";
    int rc = CPX_OK;
    for (size_t i = 0; i < S->alert.n && !rc; i++) {
        uint64_t seq;
        rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__NOTICE_RAISED, GATEWAY_SENDER, S->alert.v[i],
                         ref, NULL, "sealed_access_alert", asker, ref_seq, &seq);
        if (!rc)
            rc = issue(gw, S->alert.v[i], NULL, ref, seq, NULL, &n);
    }
    return rc;
}

/* A new grant for dept over (tag, value): GRANTED leaf and decision. */
static int grant(cpx_gw_t *gw, const char *dept, char tag, const char *value, const char *ref,
                 const rule_t *rule, const uint8_t *req_id, uint64_t req_seq, const char *approver)
{
    cpx_gw_sealed_t *S = gw->sealed;
    uint8_t gid[CPX_VAULT_ID_LEN], rec[GRANT_LEN] = {0}, p[CPX_VAULT_PSEUDO_LEN];
    int rc = cpx_random(gid, sizeof gid);
    if (rc)
        return rc;
    int64_t expires = gw->now_ms + rule->lifetime_ms;
    cpx_vault_pseudo(S->vault, tag, value, p);
    memcpy(rec, dept, strlen(dept));
    memcpy(rec + 33, p, sizeof p);
    cpx_be64_put(rec + 33 + sizeof p, (uint64_t)expires);
    cpx_be32_put(rec + 33 + sizeof p + 8, rule->reads);
    MDB_val k = {sizeof gid, gid}, v = {sizeof rec, rec};
    if ((rc = mdb_put(gw->txn, S->grants, &k, &v, 0)))
        return cpx_store_err(rc, "sealed: grant");
    char gh[33], detail[160];
    cpx_hex(gid, sizeof gid, gh);
    snprintf(detail, sizeof detail, "grant=%s expires_ms=%lld reads=%u%s%s", gh, (long long)expires,
             rule->reads, approver[0] ? " approved_by=" : "", approver);
    ProtobufCBinaryData rid = {CPX_VAULT_ID_LEN, (uint8_t *)req_id};
    uint64_t seq;
    if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_GRANTED, GATEWAY_SENDER, dept, ref,
                          &rid, "", detail, req_seq, &seq)))
        return rc;
    return decision(gw, dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__GRANTED, gid, expires,
                    rule->reads, NULL, 0);
}

static int access_request(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                          const cpx_envsign_result_t *res)
{
    cpx_gw_sealed_t *S = gw->sealed;
    const Cpx__V1__SealedAccessRequest *r = env->sealed_access_request;
    char tag, ref[REF_LEN + 1];
    const char *value;
    subject_of(S, r->subject_id_number, r->subject_case_id, &tag, &value, ref);
    const ProtobufCEnumValue *bv =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__legal_basis__descriptor, r->basis);
    char detail[400];
    snprintf(detail, sizeof detail, "basis=%s officer=%.64s case_number=%.64s regulation=%.96s",
             bv ? bv->name : "?", r->officer_id ? r->officer_id : "",
             r->requester_case_number ? r->requester_case_number : "",
             r->regulation ? r->regulation : "");
    uint64_t req_seq, seq;
    int rc = request_leaf(gw, in, env, res, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REQUESTED, ref,
                          detail, &req_seq);
    if (rc)
        return rc;
    /* The same work whatever the answer will be: the lookup always runs. */
    long n = cpx_vault_count(S->vault, gw->txn, tag, value);
    if (n < 0)
        return (int)n;
    const rule_t *rule = find_rule(S, in->dept, r->basis);
    const uint8_t *req_id = env->message_id.data;
    if (!rule) {
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED, GATEWAY_SENDER,
                              in->dept, ref, &env->message_id, "not_allowed", detail, req_seq, &seq)) ||
            (rc = decision(gw, in->dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__NO_RECORD,
                           NULL, 0, 0, NULL, 0)) ||
            (rc = alert(gw, in->dept, req_id, ref, "access request", req_seq)))
            return rc;
    } else if (n == 0) {
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED, GATEWAY_SENDER,
                              in->dept, ref, &env->message_id, "no_record", detail, req_seq, &seq)) ||
            (rc = decision(gw, in->dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__NO_RECORD,
                           NULL, 0, 0, NULL, 0)))
            return rc;
    } else if (rule->approval) {
        uint8_t p[CPX_VAULT_PSEUDO_LEN], rec[PEND_LEN] = {0};
        cpx_vault_pseudo(S->vault, tag, value, p);
        char approver[CPX_MAX_DEPT_CODE + 1];
        MDB_val sk = {sizeof p, p}, sv;
        if (tag == CPX_VAULT_TAG_SUBJECT && !mdb_get(gw->txn, S->subj, &sk, &sv) &&
            sv.mv_size <= CPX_MAX_DEPT_CODE)
            snprintf(approver, sizeof approver, "%.*s", (int)sv.mv_size, (const char *)sv.mv_data);
        else
            snprintf(approver, sizeof approver, "%s", S->alert.v[0]);
        memcpy(rec, in->dept, strlen(in->dept));
        memcpy(rec + 33, p, sizeof p);
        memcpy(rec + 33 + sizeof p, approver, strlen(approver));
        memcpy(rec + 33 + sizeof p + 33, ref, REF_LEN);
        cpx_be32_put(rec + 33 + sizeof p + 66, (uint32_t)(rule - S->rules));
        MDB_val k = {CPX_VAULT_ID_LEN, (void *)req_id}, v = {sizeof rec, rec};
        if ((rc = mdb_put(gw->txn, S->pending, &k, &v, 0)))
            return cpx_store_err(rc, "sealed: pending");
        char d2[96];
        snprintf(d2, sizeof d2, "outcome=PENDING_APPROVAL approver=%s", approver);
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REQUESTED, GATEWAY_SENDER,
                              in->dept, ref, &env->message_id, "", d2, req_seq, &seq)) ||
            (rc = decision(gw, in->dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__PENDING_APPROVAL,
                           NULL, 0, 0, NULL, 0)) ||
            (rc = queue(gw, approver, req_id, CPX_VAULT_ID_LEN, req_seq, ref, CPX__V1__PRIORITY__URGENT)))
            return rc;
    } else {
        if ((rc = grant(gw, in->dept, tag, value, ref, rule, req_id, req_seq, "")))
            return rc;
    }
    return cpx_gw_writer_ack(gw, in, env, req_seq, "");
}

typedef struct collect {
    cpx_gw_t *gw;
    ProtobufCBinaryData recs[CPX_MAX_REPEATED];
    size_t n, bytes;
    int truncated;
} collect_t;

static int collect_cb(void *ctx, const uint8_t id[CPX_VAULT_ID_LEN])
{
    collect_t *c = ctx;
    uint8_t *pt;
    size_t len;
    cpx_vault_kind kind;
    int rc = cpx_vault_get(c->gw->sealed->vault, c->gw->txn, id, &pt, &len, &kind);
    if (rc)
        return rc;
    if (kind != CPX_VAULT_RECORD) {
        cpx_cleanse(pt, len);
        free(pt);
        return 0;
    }
    if (c->n == CPX_MAX_REPEATED || c->bytes + len > MAX_READ_BYTES) {
        c->truncated = 1;
        cpx_cleanse(pt, len);
        free(pt);
        return 1;
    }
    c->recs[c->n++] = (ProtobufCBinaryData){len, pt};
    c->bytes += len;
    return 0;
}

static int access_read(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                       const cpx_envsign_result_t *res)
{
    cpx_gw_sealed_t *S = gw->sealed;
    const Cpx__V1__SealedAccessRead *r = env->sealed_access_read;
    char tag, ref[REF_LEN + 1], gh[33] = "";
    const char *value;
    subject_of(S, r->subject_id_number, r->subject_case_id, &tag, &value, ref);
    if (r->grant_id.len == CPX_VAULT_ID_LEN)
        cpx_hex(r->grant_id.data, CPX_VAULT_ID_LEN, gh);
    char detail[160];
    snprintf(detail, sizeof detail, "grant=%s officer=%.64s", gh, r->officer_id ? r->officer_id : "");
    uint64_t req_seq, seq;
    int rc = request_leaf(gw, in, env, res, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_READ, ref, detail,
                          &req_seq);
    if (rc)
        return rc;
    const char *why = NULL;
    uint8_t rec[GRANT_LEN], p[CPX_VAULT_PSEUDO_LEN];
    MDB_val k = {r->grant_id.len, r->grant_id.data}, v;
    rc = r->grant_id.len == CPX_VAULT_ID_LEN ? mdb_get(gw->txn, S->grants, &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND || (!rc && v.mv_size != GRANT_LEN)) {
        why = "unknown_grant";
    } else if (rc) {
        return cpx_store_err(rc, "sealed: grant get");
    } else {
        memcpy(rec, v.mv_data, GRANT_LEN);
        cpx_vault_pseudo(S->vault, tag, value, p);
        int64_t expires = (int64_t)cpx_be64_get(rec + 33 + sizeof p);
        uint32_t left = cpx_be32_get(rec + 33 + sizeof p + 8);
        if (strncmp((const char *)rec, in->dept, 33))
            why = "other_department";
        else if (!cpx_ct_equal(rec + 33, p, sizeof p))
            why = "rescoped";
        else if (gw->now_ms > expires)
            why = "expired";
        else if (left == 0)
            why = "exhausted";
    }
    const uint8_t *req_id = env->message_id.data;
    if (why) {
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED, GATEWAY_SENDER,
                              in->dept, ref, &env->message_id, why, detail, req_seq, &seq)) ||
            (rc = decision(gw, in->dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__NO_RECORD,
                           NULL, 0, 0, NULL, 0)) ||
            (rc = alert(gw, in->dept, req_id, ref, "read", req_seq)))
            return rc;
        return cpx_gw_writer_ack(gw, in, env, req_seq, "");
    }
    uint32_t left = cpx_be32_get(rec + 33 + sizeof p + 8) - 1;
    int64_t expires = (int64_t)cpx_be64_get(rec + 33 + sizeof p);
    cpx_be32_put(rec + 33 + sizeof p + 8, left);
    MDB_val nv = {GRANT_LEN, rec};
    if ((rc = mdb_put(gw->txn, S->grants, &k, &nv, 0)))
        return cpx_store_err(rc, "sealed: grant put");
    collect_t *c = calloc(1, sizeof *c);
    if (!c)
        return CPX_ERR_NOMEM;
    c->gw = gw;
    rc = cpx_vault_lookup(S->vault, gw->txn, tag, value, collect_cb, c);
    if (rc == 1)
        rc = CPX_OK;
    char d2[200];
    snprintf(d2, sizeof d2, "%s records=%zu reads_left=%u%s", detail, c->n, left,
             c->truncated ? " truncated" : "");
    if (!rc)
        rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_READ, GATEWAY_SENDER, in->dept, ref,
                         &env->message_id, "", d2, req_seq, &seq);
    if (!rc)
        rc = decision(gw, in->dept, req_id, ref, seq, CPX__V1__ACCESS_OUTCOME__GRANTED,
                      r->grant_id.data, expires, left, c->recs, c->n);
    for (size_t i = 0; i < c->n; i++) {
        cpx_cleanse(c->recs[i].data, c->recs[i].len);
        free(c->recs[i].data);
    }
    free(c);
    return rc ? rc : cpx_gw_writer_ack(gw, in, env, req_seq, "");
}

static int access_approval(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                           const cpx_envsign_result_t *res)
{
    cpx_gw_sealed_t *S = gw->sealed;
    const Cpx__V1__SealedAccessApproval *a = env->sealed_access_approval;
    MDB_val k = {a->request_id.len, a->request_id.data}, v;
    int rc = a->request_id.len == CPX_VAULT_ID_LEN ? mdb_get(gw->txn, S->pending, &k, &v) : MDB_NOTFOUND;
    uint8_t rec[PEND_LEN];
    if (!rc && v.mv_size == PEND_LEN)
        memcpy(rec, v.mv_data, PEND_LEN);
    if (rc == MDB_NOTFOUND || (!rc && (v.mv_size != PEND_LEN ||
                                       strncmp((const char *)rec + 33 + CPX_VAULT_PSEUDO_LEN, in->dept, 33))))
        return cpx_gw_writer_refuse(gw, in, env, CPX__V1__ERROR_CODE__UNKNOWN_REFERENCE,
                                    "sealed_access_approval.request_id", "pending",
                                    "no request waits for this department's approval");
    if (rc)
        return cpx_store_err(rc, "sealed: pending get");
    char dept[34] = "", ref[REF_LEN + 1];
    memcpy(dept, rec, 33);
    memcpy(ref, rec + 33 + CPX_VAULT_PSEUDO_LEN + 33, REF_LEN);
    ref[REF_LEN] = '\0';
    uint32_t ri = cpx_be32_get(rec + 33 + CPX_VAULT_PSEUDO_LEN + 66);
    uint8_t req_id[CPX_VAULT_ID_LEN];
    memcpy(req_id, a->request_id.data, sizeof req_id);
    char detail[96];
    snprintf(detail, sizeof detail, "%s by=%.48s", a->approve ? "approved" : "refused",
             a->approver ? a->approver : "");
    uint64_t seq, gseq, dseq;
    if ((rc = request_leaf(gw, in, env, res, a->approve ? CPX__V1__AUDIT_EVENT__SEALED_ACCESS_GRANTED
                                                        : CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED,
                           ref, detail, &seq)))
        return rc;
    /* each gateway-issued envelope is keyed by a leaf of its own */
    if ((rc = leaf_simple(gw, a->approve ? CPX__V1__AUDIT_EVENT__SEALED_ACCESS_GRANTED
                                         : CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED,
                          GATEWAY_SENDER, dept, ref, &a->request_id,
                          a->approve ? "" : "approval_refused", detail, seq, &gseq)))
        return rc;
    if ((rc = mdb_del(gw->txn, S->pending, &k, NULL)))
        return cpx_store_err(rc, "sealed: pending del");
    if (a->approve && ri < S->n_rules) {
        /* The grant covers the pending request's scope: re-derive it from the stored
         * pseudonym by granting over the stored index key. */
        uint8_t gid[CPX_VAULT_ID_LEN], g[GRANT_LEN] = {0};
        if ((rc = cpx_random(gid, sizeof gid)))
            return rc;
        const rule_t *rule = &S->rules[ri];
        int64_t expires = gw->now_ms + rule->lifetime_ms;
        memcpy(g, rec, 33 + CPX_VAULT_PSEUDO_LEN);
        cpx_be64_put(g + 33 + CPX_VAULT_PSEUDO_LEN, (uint64_t)expires);
        cpx_be32_put(g + 33 + CPX_VAULT_PSEUDO_LEN + 8, rule->reads);
        MDB_val gk = {sizeof gid, gid}, gv = {sizeof g, g};
        if ((rc = mdb_put(gw->txn, S->grants, &gk, &gv, 0)))
            return cpx_store_err(rc, "sealed: grant");
        if ((rc = decision(gw, dept, req_id, ref, gseq, CPX__V1__ACCESS_OUTCOME__GRANTED, gid,
                           expires, rule->reads, NULL, 0)))
            return rc;
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_GRANTED, GATEWAY_SENDER, in->dept,
                              ref, &a->request_id, "", "approval confirmed", seq, &dseq)))
            return rc;
        rc = decision(gw, in->dept, req_id, ref, dseq, CPX__V1__ACCESS_OUTCOME__APPROVED, NULL, 0, 0,
                      NULL, 0);
    } else {
        if ((rc = decision(gw, dept, req_id, ref, gseq, CPX__V1__ACCESS_OUTCOME__NO_RECORD, NULL, 0,
                           0, NULL, 0)))
            return rc;
        if ((rc = leaf_simple(gw, CPX__V1__AUDIT_EVENT__SEALED_ACCESS_REFUSED, GATEWAY_SENDER, in->dept,
                              ref, &a->request_id, "approval_refused", "refusal confirmed", seq, &dseq)))
            return rc;
        rc = decision(gw, in->dept, req_id, ref, dseq, CPX__V1__ACCESS_OUTCOME__REFUSED, NULL, 0, 0,
                      NULL, 0);
    }
    return rc ? rc : cpx_gw_writer_ack(gw, in, env, seq, "");
}

/* ---- entry points ------------------------------------------------------------------ */

static int replies_to_sealed(cpx_gw_t *gw, const cpx_envelope_t *env)
{
    if (!env->in_reply_to.len)
        return 0;
    return cpx_vault_is_sealed(gw->sealed->vault, gw->txn, env->in_reply_to.data,
                               env->in_reply_to.len) == 1;
}

int cpx_gw_sealed_submit(cpx_gw_t *gw, const cpx_gw_in_t *in, const cpx_envelope_t *env,
                         const cpx_envsign_result_t *res, int *handled)
{
    cpx_gw_sealed_t *S = gw->sealed;
    *handled = 0;
    int rc = cpx_vault_sync(S->vault, gw->txn);
    if (rc)
        return rc;
    *handled = 1;
    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_SEAL_ORDER: return seal_order(gw, in, env, res);
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_REQUEST: return access_request(gw, in, env, res);
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_READ: return access_read(gw, in, env, res);
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_APPROVAL: return access_approval(gw, in, env, res);
    case CPX__V1__ENVELOPE__BODY_SEALED_ACCESS_DECISION:
        return cpx_gw_writer_refuse(gw, in, env, CPX__V1__ERROR_CODE__RULE_VIOLATION, "body",
                                    "gateway_issued", "only the gateway issues access decisions");
    default: break;
    }
    if (env->sensitivity == CPX__V1__SENSITIVITY__SEALED)
        return seal_message(gw, in, env, res, "marked");
    if (juvenile_offence(env) && in_list(&S->juvenile_from, in->dept))
        return seal_message(gw, in, env, res, "juvenile_offence");
    if (case_sealed(S, gw->txn, env->case_id))
        return seal_message(gw, in, env, res, "sealed_case");
    if (subject_sealed(S, gw->txn, minor_id(env)))
        return seal_message(gw, in, env, res, "sealed_subject");
    if (replies_to_sealed(gw, env))
        return seal_message(gw, in, env, res, "reply_to_sealed");
    *handled = 0;
    return CPX_OK;
}

int cpx_gw_sealed_bytes(cpx_gw_t *gw, const uint8_t *id, size_t id_len, uint8_t **out, size_t *len)
{
    if (!gw->sealed || id_len != CPX_VAULT_ID_LEN)
        return CPX_ERR_NOT_FOUND;
    return cpx_vault_get(gw->sealed->vault, gw->txn, id, out, len, NULL);
}
