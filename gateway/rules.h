/* gateway/rules.h — the city's rules on cases (docs/cases.md, "The city's rules"):
 * no double benefits, the one-off medical aid, the allowance that ends with the
 * sentence, aged 16+ to HRSS, and early warnings. Called from caseindex.c inside the
 * cycle transaction; checks run before any write so a refusal changes nothing. */
#ifndef CPX_GW_RULES_H
#define CPX_GW_RULES_H

#include "caseindex.h"

struct cpx_gw;

/* Refusals of a granting Disposition (one-off medical aid: listed illness and family,
 * amount, once per minor). CPX_OK, or CPX_ERR_INVALID with *code and errs. */
int cpx_gw_rules_check_disposition(struct cpx_gw *self, const cpx_envelope_t *env,
                                   const cpx_case_rec_t *rec, int *code, cpx_errors_t *errs);
/* Records a granted benefit; a second active one of the same kind for the minor raises
 * a DOUBLE_BENEFIT notice naming both dispositions. */
int cpx_gw_rules_apply_disposition(struct cpx_gw *self, const cpx_envelope_t *env,
                                   cpx_case_rec_t *rec);
/* After a report joined or opened rec: early warnings (reports in window, returning
 * dropout), aged 16+ employment referral, match-to-confirm. */
int cpx_gw_rules_report(struct cpx_gw *self, const cpx_envelope_t *env, cpx_case_rec_t *rec,
                        int linked_by_name);
/* A ReleaseNotice: ALLOWANCE_REVIEW for every case whose guardianship gap rests on
 * that parent. */
int cpx_gw_rules_release(struct cpx_gw *self, const cpx_envelope_t *env, const char *case_id);

#endif
