/* rules.c — the city's rules on cases: benefits, release, aged 16+, early warning. */
#include "rules.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "cpx/log.h"

#define LEAD "CIVIL_AFFAIRS"
#define CST_OFFSET_MS (8LL * 3600 * 1000)

static uint32_t today_ymd(int64_t now_ms)
{
    time_t t = (time_t)((now_ms + CST_OFFSET_MS) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
}

static uint32_t ymd(const Cpx__V1__Date *d)
{
    return d && d->year ? d->year * 10000 + d->month * 100 + d->day : 0;
}

static int granting(const Cpx__V1__Disposition *d)
{
    return d->status == CPX__V1__DISPOSITION_STATUS__DISPOSITION_DONE ||
           d->status == CPX__V1__DISPOSITION_STATUS__DISPOSITION_IN_PROGRESS;
}

/* Benefits the no-double-benefit rule watches (三(三)4). */
static int watched(int action)
{
    return action == CPX__V1__ACTION__LIVING_ALLOWANCE ||
           action == CPX__V1__ACTION__ONE_OFF_MEDICAL_AID ||
           action == CPX__V1__ACTION__EDUCATION_AID;
}

static int active(const cpx_benefit_t *b, uint32_t today)
{
    return b->active && (!b->effective_to || b->effective_to >= today);
}

int cpx_gw_rules_check_disposition(cpx_gw_t *self, const cpx_envelope_t *env,
                                   const cpx_case_rec_t *rec, int *code, cpx_errors_t *errs)
{
    const Cpx__V1__Disposition *d = env->disposition;
    const cpx_gw_casepolicy_t *p = &self->ci->pol;
    if (d->action != CPX__V1__ACTION__ONE_OFF_MEDICAL_AID || !granting(d))
        return CPX_OK;
    *code = CPX__V1__ERROR_CODE__RULE_VIOLATION;
    if (d->illness <= 0 || d->illness >= 32 || !(p->aid_illnesses & (1u << d->illness)))
        cpx_errors_add(errs, "disposition.illness", "medical_aid_illness",
                       "the one-off medical aid is only for the listed illnesses (AIDS, leukaemia, "
                       "congenital heart disease, uraemia, malignant tumour, rare disease ...)");
    if (d->family_economy <= 0 || d->family_economy >= 32 ||
        !(p->aid_economies & (1u << d->family_economy)))
        cpx_errors_add(errs, "disposition.family_economy", "medical_aid_family",
                       "the one-off medical aid is only for subsistence-allowance, low-income or "
                       "illness-impoverished families");
    if (d->amount_fen > p->aid_amount_fen)
        cpx_errors_add(errs, "disposition.amount_fen", "medical_aid_amount",
                       "at most %llu fen", (unsigned long long)p->aid_amount_fen);
    cpx_benefit_t b;
    int rc = cpx_caseindex_get_benefit(self->ci->idx, self->txn, rec->subject,
                                       CPX__V1__ACTION__ONE_OFF_MEDICAL_AID, &b);
    if (rc == CPX_OK && memcmp(b.message_id, env->message_id.data, CPX_MAX_MESSAGE_ID))
        cpx_errors_add(errs, "disposition.action", "medical_aid_once",
                       "the one-off medical aid was already granted to this minor (case %s, by %s)",
                       b.case_id, b.dept);
    else if (rc && rc != CPX_ERR_NOT_FOUND)
        return rc;
    if (errs->count)
        return CPX_ERR_INVALID;
    *code = 0;
    return CPX_OK;
}

int cpx_gw_rules_apply_disposition(cpx_gw_t *self, const cpx_envelope_t *env,
                                   cpx_case_rec_t *rec)
{
    const Cpx__V1__Disposition *d = env->disposition;
    if (!watched((int)d->action) || !granting(d) || env->message_id.len != CPX_MAX_MESSAGE_ID)
        return CPX_OK;
    uint32_t today = today_ymd(self->now_ms);
    cpx_benefit_t old;
    int rc = cpx_caseindex_get_benefit(self->ci->idx, self->txn, rec->subject, (uint8_t)d->action, &old);
    if (rc && rc != CPX_ERR_NOT_FOUND)
        return rc;
    int have = rc == CPX_OK;
    /* The same grant reported again (IN_PROGRESS, then DONE) is one benefit. */
    if (have && !strcmp(old.case_id, rec->id) && !strcmp(old.dept, env->sender) &&
        old.action == d->action && active(&old, today)) {
        old.effective_to = ymd(d->effective_to);
        return cpx_caseindex_put_benefit(self->ci->idx, self->txn, rec->subject, &old);
    }
    if (have && active(&old, today)) {
        ProtobufCBinaryData rel[2] = {{CPX_MAX_MESSAGE_ID, old.message_id}, env->message_id};
        const ProtobufCEnumValue *av =
            protobuf_c_enum_descriptor_get_value(&cpx__v1__action__descriptor, (int)d->action);
        rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__DOUBLE_BENEFIT, "no_double_benefit",
                              rec->id, NULL, rel, 2,
                              "%s granted by %s in case %s while one granted by %s in case %s is "
                              "active: pay the higher one only (就高享受)",
                              av ? av->name : "benefit", env->sender, rec->id, old.dept, old.case_id);
        if (rc)
            return rc;
        rec->n_notices++;
    }
    cpx_benefit_t b = {.version = CPX_CASEINDEX_VERSION, .action = (uint8_t)d->action, .active = 1};
    snprintf(b.case_id, sizeof b.case_id, "%s", rec->id);
    snprintf(b.dept, sizeof b.dept, "%s", env->sender);
    memcpy(b.message_id, env->message_id.data, CPX_MAX_MESSAGE_ID);
    b.granted_ms = self->now_ms;
    b.effective_to = ymd(d->effective_to);
    /* Keep the first record for the once-per-minor aid; the latest otherwise. */
    if (have && d->action == CPX__V1__ACTION__ONE_OFF_MEDICAL_AID)
        return CPX_OK;
    return cpx_caseindex_put_benefit(self->ci->idx, self->txn, rec->subject, &b);
}

static int has_circumstance(const Cpx__V1__DiscoveryReport *r, int c)
{
    for (size_t i = 0; i < r->n_circumstances; i++)
        if ((int)r->circumstances[i] == c)
            return 1;
    return 0;
}

int cpx_gw_rules_report(cpx_gw_t *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                        int linked_by_name)
{
    const Cpx__V1__DiscoveryReport *r = env->discovery_report;
    const cpx_gw_casepolicy_t *p = &self->ci->pol;
    int rc;
    if (linked_by_name) {
        rec->flags |= CPX_CASE_F_MATCH_TO_CONFIRM;
        if ((rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__MATCH_TO_CONFIRM, "match_name_birth_town",
                                   rec->id, NULL, &env->message_id, 1,
                                   "report without a matching citizen ID number linked to case %s by "
                                   "name, birth date and town: a person must confirm it is the same child",
                                   rec->id)))
            return rc;
        rec->n_notices++;
    }
    /* Two or more reports within the window: warn once, when the count is reached. */
    if (p->ew_reports >= 2 && p->ew_reports <= CPX_CASE_RECENT) {
        uint32_t n = 0;
        for (size_t i = 0; i < CPX_CASE_RECENT; i++)
            if (rec->recent[i] && self->now_ms - rec->recent[i] <= (int64_t)p->ew_window_ms)
                n++;
        if (n == p->ew_reports) {
            if ((rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__EARLY_WARNING, "reports_in_window",
                                       rec->id, rec->town, &env->message_id, 1,
                                       "%u reports about the minor of case %s within %llu days",
                                       n, rec->id, (unsigned long long)(p->ew_window_ms / 86400000))))
                return rc;
            rec->flags |= CPX_CASE_F_WARNED;
            rec->n_notices++;
        }
    }
    if (p->ew_dropout && has_circumstance(r, CPX__V1__CIRCUMSTANCE__RETURNING_DROPOUT)) {
        rec->flags |= CPX_CASE_F_RETURNING_DROPOUT;
        if ((rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__EARLY_WARNING, "returning_dropout",
                                   rec->id, rec->town, &env->message_id, 1,
                                   "the minor of case %s is a returning dropout", rec->id)))
            return rc;
        rec->n_notices++;
    }
    /* Aged 16+ with a training need: the report itself becomes a referral to HRSS
     * (三(七)3), tracked with its accept/act deadlines; HRSS answers it with a
     * Disposition whose referral_id is the report's message id. */
    if (p->employment_min_age && !(rec->flags & CPX_CASE_F_EMPLOYMENT_REFERRED) &&
        has_circumstance(r, CPX__V1__CIRCUMSTANCE__NEEDS_SKILLS_TRAINING) && r->minor &&
        cpx_route_age(r->minor, env->created_ms ? env->created_ms : self->now_ms) >=
            (int)p->employment_min_age &&
        env->message_id.len == CPX_MAX_MESSAGE_ID && strcmp(env->sender, "HRSS")) {
        rec->flags |= CPX_CASE_F_EMPLOYMENT_REFERRED;
        if ((rc = cpx_gw_ci_open_referral(self, rec, env->message_id.data, env->sender, "HRSS",
                                          CPX__V1__TASK__EMPLOYMENT_SUPPORT, CPX__V1__PRIORITY__ROUTINE, 0)))
            return rc;
        if (rec->state == CPX_CASE_OPEN || rec->state == CPX_CASE_REOPENED ||
            rec->state == CPX_CASE_ASSESSED)
            rec->state = CPX_CASE_IN_SERVICE;
    }
    return CPX_OK;
}

typedef struct release_ctx {
    cpx_gw_t *self;
    const cpx_envelope_t *env;
    char done[8][CPX_MAX_CASE_ID + 1];
    size_t n_done;
    int rc;
} release_ctx_t;

static int rests_on(uint8_t situation)
{
    return situation == CPX__V1__PARENT_SITUATION__DETAINED ||
           situation == CPX__V1__PARENT_SITUATION__COMPULSORY_REHAB;
}

static int review_case(void *arg, const char *case_id, uint8_t role)
{
    (void)role;
    release_ctx_t *x = arg;
    cpx_gw_t *self = x->self;
    const Cpx__V1__ReleaseNotice *n = x->env->release_notice;
    for (size_t i = 0; i < x->n_done; i++)
        if (!strcmp(x->done[i], case_id))
            return 0;
    if (x->n_done < 8)
        snprintf(x->done[x->n_done++], sizeof x->done[0], "%s", case_id);
    cpx_case_rec_t rec;
    int rc = cpx_caseindex_get(self->ci->idx, self->txn, case_id, &rec);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? 0 : (x->rc = rc);
    uint8_t sit = n->parent_role == CPX__V1__PARENT_ROLE__FATHER ? rec.father
                : n->parent_role == CPX__V1__PARENT_ROLE__MOTHER ? rec.mother : 0;
    if (!(rec.categories & (1u << CPX__V1__CATEGORY__GUARDIANSHIP_MISSING)) || !rests_on(sit) ||
        rec.state == CPX_CASE_CLOSED)
        return 0;
    ProtobufCBinaryData rel[2] = {x->env->message_id, {0, NULL}};
    size_t nrel = 1;
    cpx_benefit_t b;
    if (cpx_caseindex_get_benefit(self->ci->idx, self->txn, rec.subject,
                                  CPX__V1__ACTION__LIVING_ALLOWANCE, &b) == CPX_OK && b.active)
        rel[nrel++] = (ProtobufCBinaryData){CPX_MAX_MESSAGE_ID, b.message_id};
    rc = cpx_gw_ci_notice(self, CPX__V1__NOTICE_KIND__ALLOWANCE_REVIEW, "allowance_ends_with_sentence",
                          case_id, NULL, rel, nrel,
                          "the %s of the minor of case %s is released (%s): review and stop the "
                          "guardianship-missing living allowance (三(三)2)",
                          n->parent_role == CPX__V1__PARENT_ROLE__MOTHER ? "mother" : "father",
                          case_id, x->env->sender);
    return rc ? (x->rc = rc) : 0;
}

int cpx_gw_rules_release(cpx_gw_t *self, const cpx_envelope_t *env, const char *case_id)
{
    const Cpx__V1__ReleaseNotice *n = env->release_notice;
    release_ctx_t x = {.self = self, .env = env};
    cpx_caseindex_t *idx = self->ci->idx;
    int rc;
    uint8_t parent[CPX_SHA256_LEN];
    int have_parent = n->parent_id_number && *n->parent_id_number;
    if (have_parent)
        cpx_caseindex_hmac(idx, n->parent_id_number, parent);
    /* The case the notice was linked to (by the minor's ID, case_id or in_reply_to)
     * first; then every case recorded earlier for the same parent. */
    if (case_id && *case_id) {
        if (have_parent &&
            (rc = cpx_caseindex_add_parent(idx, self->txn, parent, case_id, (uint8_t)n->parent_role)))
            return rc;
        if ((rc = review_case(&x, case_id, (uint8_t)n->parent_role)) || x.rc)
            return rc ? rc : x.rc;
    }
    if (have_parent) {
        rc = cpx_caseindex_each_parent_case(idx, self->txn, parent, review_case, &x);
        if (rc || x.rc)
            return rc ? rc : x.rc;
    }
    return CPX_OK;
}
