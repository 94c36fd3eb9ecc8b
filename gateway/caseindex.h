/* gateway/caseindex.h — case tracking inside the gateway (docs/cases.md): linking
 * reports to cases, the case and referral state machines, deadlines, the city's rules,
 * view profiles at delivery, and the gateway's own Escalation and Notice messages.
 *
 * Enabled by the gateway configuration key `cases: FILE` (a casepolicy.yaml); without
 * it every hook below is a no-op and self->ci is NULL.
 *
 * Hooks (each a one-line call from the shared gateway code), all in the cycle's
 * write transaction so the index changes atomically with the message:
 *   writer.c  cpx_gw_ci_link   before case resolution: a message about a minor with an
 *                              open case joins it;
 *             cpx_gw_ci_apply  after routing, before acceptance: enforces the rules
 *                              (a refusal names the rule) and updates the index;
 *   outbox.c  cpx_gw_ci_deliver when a Deliver is built: the recipient's view profile;
 *             cpx_gw_ci_acked  on a DeliveryAck TAKEN: the acknowledgement deadline is met;
 *   server.c  cpx_gw_ci_tick   every cycle: overdue deadlines -> Escalation;
 *             cpx_gw_ci_next_due  so an idle gateway wakes for a deadline.
 *
 * Caveats: owned by the server thread. Sealed envelopes never enter the index (the
 * sealed vault, when enabled, keeps them apart; see cpx_gw_ci_apply). */
#ifndef CPX_GW_CASEINDEX_H
#define CPX_GW_CASEINDEX_H

#include <stdint.h>

#include "cases.h"
#include "config.h"
#include "cpx/outbox.h"
#include "cpx/caseindex.h"
#include "cpx/err.h"
#include "cpx/route.h"
#include "cpx/views.h"

struct cpx_gw;
struct cpx_gw_vjob;

#define CPX_GW_CI_MAX_CLOSE_BY 8

/* casepolicy.yaml */
typedef struct cpx_gw_casepolicy {
    char index_key[CPX_GW_PATH_MAX];
    char records_key[CPX_GW_PATH_MAX];
    char views[CPX_GW_PATH_MAX];          /* "" = everyone sees everything */
    uint64_t accept_ms[4];                /* by Priority (0 = unspecified -> ROUTINE) */
    uint64_t act_ms;
    uint64_t repeat_ms;
    uint64_t check_ms;
    uint32_t ew_reports;                  /* 0 = off */
    uint64_t ew_window_ms;
    uint64_t ew_high_risk_ms;             /* 0 = off */
    int ew_dropout;
    uint32_t employment_min_age;          /* 0 = off */
    uint64_t aid_amount_fen;
    uint32_t aid_illnesses;               /* bit (1 << Illness) */
    uint32_t aid_economies;               /* bit (1 << FamilyEconomy) */
    size_t n_close_by;
    char close_by[CPX_GW_CI_MAX_CLOSE_BY][CPX_MAX_DEPT_CODE + 1];  /* "$lead" allowed */
} cpx_gw_casepolicy_t;

/* Loads a policy over the defaults. CPX_OK, or CPX_ERR_CONFIG / CPX_ERR_IO with
 * "file:line:col: key: problem" in err (always terminated). Relative paths are
 * resolved against the policy file's directory. */
int cpx_gw_casepolicy_load(const char *path, cpx_gw_casepolicy_t *pol, char *err, size_t size);

typedef struct cpx_gw_ci {
    cpx_gw_casepolicy_t pol;
    cpx_caseindex_t *idx;
    cpx_views_t *views;
    int64_t wall0_ms, mono0_ms;           /* the deadline clock: see cpx_gw_ci_now */
    int64_t next_check_ms;
    /* the last link decision, read by cpx_gw_ci_apply for the same message */
    uint8_t link_mid[CPX_MAX_MESSAGE_ID];
    int link_by_name;
    /* the minor keys of the message in hand (an HMAC each), computed once */
    uint8_t kc_mid[CPX_MAX_MESSAGE_ID];
    const void *kc_minor;
    int kc_state[2];                      /* 0 not computed, 1 in kc_key, 2 not available */
    uint8_t kc_key[2][1 + CPX_SHA256_LEN];
    /* the prepare stage's work on this cycle's envelopes (cpx_gw_ci_prepare_*): keyed
     * hashes and personal-field encodings computed on the verification pool */
    struct cpx_gw_ci_pre *pre;
    size_t n_pre, cap_pre;
    uint32_t *pre_slot;                   /* open addressing by envelope: index + 1 */
    size_t n_slots;
    struct cpx_gw_ci_part *parts;         /* one per pool thread: scratch and plaintexts */
    size_t n_parts;
    /* the gateway's own envelopes of this cycle, signed together at its end */
    struct cpx_gw_ci_pending *q;
    size_t n_q, cap_q;
    uint64_t stat_linked, stat_escalations, stat_notices;
} cpx_gw_ci_t;

/* Checks cfg's case policy and view profiles (cpx-gateway --check) without opening
 * anything: CPX_OK (also when case tracking is off), else the error in err. */
int cpx_gw_ci_check(const cpx_gw_config_t *cfg, char *err, size_t size);

/* Starts case tracking when cfg names a policy (self->ci stays NULL otherwise).
 * CPX_OK or a negative error (logged: which file and why). */
int cpx_gw_ci_start(struct cpx_gw *self);
void cpx_gw_ci_destroy(cpx_gw_ci_t **ci_p);

/* Returns 1 when env joins an existing open case (case_id and town filled), 0 when the
 * usual resolution applies, negative on a store error. */
int cpx_gw_ci_link(struct cpx_gw *self, const cpx_envelope_t *env, char *case_id, char *town);

/* Enforces the case rules on env (already validated, verified and routed) and, when
 * it passes, updates the index, deadlines and raises notices. Returns CPX_OK; or
 * CPX_ERR_INVALID with *code (an ErrorCode) and errs set: the caller refuses the
 * message; or another negative error (store) that aborts the cycle. */
int cpx_gw_ci_apply(struct cpx_gw *self, const cpx_envelope_t *env, const char *case_id,
                    const cpx_route_t *route, int *code, cpx_errors_t *errs);

/* The Deliver frame of outbox entry e (message m) for its recipient when the
 * recipient's view profile withholds fields of it: the redacted envelope, withheld and
 * view_profile set, into *out (malloc'd; caller frees). Returns 1 when built, 0 when
 * nothing is withheld (the caller sends the stored bytes), negative on error. */
int cpx_gw_ci_deliver(struct cpx_gw *self, const cpx_outbox_entry_t *e, const cpx_gw_msg_t *m,
                      uint8_t **out, size_t *out_len);

/* Appends " views=DEPT:profile,..." (the recipients from whom the profile withholds
 * fields of env) to the ACCEPTED leaf's detail at p (room bytes); returns the length
 * written. */
size_t cpx_gw_ci_detail(struct cpx_gw *self, const cpx_envelope_t *env, const cpx_route_t *route,
                        char *p, size_t room);

/* e's department acknowledged the delivery (DeliveryAck TAKEN): that deadline is met. */
int cpx_gw_ci_acked(struct cpx_gw *self, const cpx_outbox_entry_t *e);

/* The prepare stage (writer.c, before the cycle's frames are processed): begin forgets
 * the previous cycle's work; add notes the envelopes of one frame; jobs appends to
 * jobs (room for max) the pool jobs that compute, for every envelope about a minor,
 * the minor's keyed hashes and the encoding of its personal fields, and returns how
 * many. cpx_gw_ci_link / cpx_gw_ci_apply then use the results instead of computing
 * them on the write thread. Results are dropped at the end of the cycle. */
void cpx_gw_ci_prepare_begin(struct cpx_gw *self);
void cpx_gw_ci_prepare_add(struct cpx_gw *self, cpx_envelope_t *const *envs, size_t n);
size_t cpx_gw_ci_prepare_jobs(struct cpx_gw *self, struct cpx_gw_vjob *jobs, size_t max);

/* Escalates every overdue deadline, then signs and stores the gateway's envelopes of
 * the cycle (cpx_gw_ci_flush); in self->txn, after the cycle's frames. */
int cpx_gw_ci_tick(struct cpx_gw *self);
/* Signs (one batch signature) and stores the envelopes queued by cpx_gw_ci_emit. */
int cpx_gw_ci_flush(struct cpx_gw *self);
/* The cycle's transaction aborted: drop what was queued in it and undo its changes
 * to the table of minors' open cases. */
void cpx_gw_ci_aborted(struct cpx_gw *self);
/* The cycle's transaction committed: the table's changes of the cycle stay. */
void cpx_gw_ci_committed(struct cpx_gw *self);
/* When the next deadline check is due (INT64_MAX when off), on self->now_ms's scale. */
int64_t cpx_gw_ci_next_due(struct cpx_gw *self);

/* The deadline clock: the wall time at start plus monotonic time elapsed since, so a
 * wall-clock jump while running neither fires nor suppresses deadlines. */
int64_t cpx_gw_ci_now(const cpx_gw_ci_t *ci);

/* ---- for deadlines.c and rules.c ------------------------------------------------ */
/* Sends a gateway-originated envelope (body set in tmpl, everything else filled here)
 * to the departments in to: queued, and at the end of the cycle batch-signed with the
 * gateway key and written: message store, audit leaf (event ESCALATED or
 * NOTICE_RAISED, with detail), outbox entries. */
int cpx_gw_ci_emit(struct cpx_gw *self, cpx_envelope_t *tmpl, const char *const *to, size_t n_to,
                   int event, const char *case_id, const char *detail, uint8_t mid_out[16]);
/* Opens a referral record with its ACCEPT and ACT deadlines (counted in rec). */
int cpx_gw_ci_open_referral(struct cpx_gw *self, cpx_case_rec_t *rec, const uint8_t *id,
                            const char *from, const char *to, int task, int priority,
                            int64_t due_by_ms);
/* The department a tracked referral (message id) was addressed to, into to (room for
 * CPX_MAX_DEPT_CODE + 1): also for referrals that are not Referral messages (a report's
 * HRSS referral). CPX_ERR_NOT_FOUND when there is none or tracking is off. */
int cpx_gw_ci_referral_to(struct cpx_gw *self, const uint8_t *id, size_t len, char *to);
/* A Notice of kind to CIVIL_AFFAIRS (and extra, may be NULL), relating the messages. */
int cpx_gw_ci_notice(struct cpx_gw *self, int kind, const char *rule, const char *case_id,
                     const char *extra, const ProtobufCBinaryData *related, size_t n_related,
                     const char *fmt, ...) __attribute__((format(printf, 8, 9)));

#endif
