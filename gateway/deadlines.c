/* deadlines.c — the periodic deadline check: overdue items -> Escalation (audited as
 * ESCALATED), repeated every escalation.repeat until resolved (docs/cases.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caseindex.h"
#include "server.h"
#include "cpx/log.h"

#define LEAD "CIVIL_AFFAIRS"
#define MAX_PER_TICK 256

typedef struct due_list {
    cpx_deadline_t d[MAX_PER_TICK];
    size_t n;
} due_list_t;

static int collect(void *ctx, const cpx_deadline_t *d)
{
    due_list_t *l = ctx;
    l->d[l->n++] = *d;
    return l->n == MAX_PER_TICK;
}

static const char *kind_name(int kind)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__deadline_kind__descriptor, kind);
    return v ? v->name : "?";
}

/* Escalation to the late department's supervisor (registry), to the lead agency, and
 * - while no responsible department has accepted the case - to its first-receiving
 * unit, which stays on the case until then. */
static int escalate(cpx_gw_t *self, cpx_deadline_t *d, int64_t now, const cpx_case_rec_t *rec)
{
    const char *to[3];
    size_t n = 0;
    cpx_dept_t dept;
    char sup[CPX_MAX_DEPT_CODE + 1] = "";
    if (cpx_registry_get(self->reg, self->txn, d->dept, &dept) == CPX_OK && dept.supervisor[0])
        snprintf(sup, sizeof sup, "%s", dept.supervisor);
    if (sup[0] && strcmp(sup, LEAD))
        to[n++] = sup;
    to[n++] = LEAD;
    if (rec && !rec->n_accepted && rec->first_receiver[0] && strcmp(rec->first_receiver, LEAD) &&
        strcmp(rec->first_receiver, sup) && strcmp(rec->first_receiver, d->dept))
        to[n++] = rec->first_receiver;
    Cpx__V1__Escalation e = CPX__V1__ESCALATION__INIT;
    e.item_id = (ProtobufCBinaryData){CPX_MAX_MESSAGE_ID, d->item};
    e.kind = d->kind;
    e.department = d->dept;
    e.due_ms = d->first_due_ms;
    e.overdue_by_ms = now - d->first_due_ms;
    e.level = d->level + 1;
    cpx_envelope_t env = CPX__V1__ENVELOPE__INIT;
    env.body_case = CPX__V1__ENVELOPE__BODY_ESCALATION;
    env.escalation = &e;
    env.priority = CPX__V1__PRIORITY__URGENT;
    char detail[200];
    snprintf(detail, sizeof detail, "deadline=%s dept=%s level=%u due_ms=%lld overdue_by_ms=%lld",
             kind_name(d->kind), d->dept, e.level, (long long)d->first_due_ms,
             (long long)e.overdue_by_ms);
    int rc = cpx_gw_ci_emit(self, &env, to, n, CPX__V1__AUDIT_EVENT__ESCALATED, d->case_id, detail, NULL);
    if (rc)
        return rc;
    self->ci->stat_escalations++;
    cpx_log_warn("cases", "msg=escalated case=%s %s", d->case_id, detail);
    d->level++;
    d->due_ms = now + (int64_t)self->ci->pol.repeat_ms;
    return cpx_caseindex_dl_set(self->ci->idx, self->txn, d);
}

static int handle(cpx_gw_t *self, cpx_deadline_t *d, int64_t now)
{
    cpx_gw_ci_t *ci = self->ci;
    cpx_case_rec_t rec;
    int have = d->case_id[0] && cpx_caseindex_get(ci->idx, self->txn, d->case_id, &rec) == CPX_OK;
    int rc;
    if (d->kind == CPX_DL_RISK_UNREFERRED) {
        if ((rc = cpx_caseindex_dl_clear(ci->idx, self->txn, d->kind, d->case_id, d->item, CPX_MAX_MESSAGE_ID, d->dept)))
            return rc;
        if (!have || rec.n_accepted || rec.state == CPX_CASE_CLOSED)
            return CPX_OK;
        rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__EARLY_WARNING, "high_risk_unreferred",
                              d->case_id, rec.town, NULL, 0,
                              "case %s was assessed HIGH or CRITICAL risk and no referral has been "
                              "accepted since", d->case_id);
        if (!rc) {
            rec.n_notices++;
            rc = cpx_caseindex_put(ci->idx, self->txn, &rec);
        }
        return rc;
    }
    if (d->kind == CPX_DL_ACCEPT || d->kind == CPX_DL_ACT) {
        cpx_referral_rec_t r;
        rc = cpx_caseindex_get_ref(ci->idx, self->txn, d->item, CPX_MAX_MESSAGE_ID, &r);
        int settled = rc == CPX_ERR_NOT_FOUND || (rc == CPX_OK && (!cpx_ref_open(r.state) ||
                      (d->kind == CPX_DL_ACCEPT && r.state != CPX_REF_SENT && r.state != CPX_REF_OVERDUE)));
        if (rc && rc != CPX_ERR_NOT_FOUND)
            return rc;
        if (settled)
            return cpx_caseindex_dl_clear(ci->idx, self->txn, d->kind, d->case_id, d->item, CPX_MAX_MESSAGE_ID, d->dept);
        if (r.state != CPX_REF_OVERDUE && (d->kind == CPX_DL_ACT || r.state == CPX_REF_SENT)) {
            r.state = CPX_REF_OVERDUE;
            r.updated_ms = self->now_ms;
            if ((rc = cpx_caseindex_put_ref(ci->idx, self->txn, &r)))
                return rc;
        }
    }
    if ((rc = escalate(self, d, now, have ? &rec : NULL)))
        return rc;
    if (have) {
        rec.n_escalations++;
        rc = cpx_caseindex_put(ci->idx, self->txn, &rec);
    }
    return rc;
}

static int check(cpx_gw_t *self);

int cpx_gw_ci_tick(cpx_gw_t *self)
{
    int rc = check(self);
    return rc ? rc : cpx_gw_ci_flush(self);
}

static int check(cpx_gw_t *self)
{
    cpx_gw_ci_t *ci = self->ci;
    if (!ci || self->now_ms < ci->next_check_ms)
        return CPX_OK;
    ci->next_check_ms = self->now_ms + (int64_t)ci->pol.check_ms;
    int64_t now = cpx_gw_ci_now(ci);
    due_list_t *l = malloc(sizeof *l);
    if (!l)
        return CPX_ERR_NOMEM;
    l->n = 0;
    int rc = cpx_caseindex_dl_each(ci->idx, self->txn, now, collect, l);
    if (rc > 0)
        rc = CPX_OK;
    for (size_t i = 0; i < l->n && !rc; i++)
        rc = handle(self, &l->d[i], now);
    /* More were due than one tick handles: look again at the next cycle. */
    if (!rc && l->n == MAX_PER_TICK)
        ci->next_check_ms = self->now_ms;
    free(l);
    if (rc)
        cpx_log_error("cases", "msg=\"deadline check failed\" err=%s", cpx_strerror(rc));
    return rc;
}

int64_t cpx_gw_ci_next_due(cpx_gw_t *self)
{
    return self->ci ? self->ci->next_check_ms : INT64_MAX;
}
