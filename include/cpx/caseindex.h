/* cpx/caseindex.h — the gateway's case index: cases, referrals, deadlines, benefits
 * and who took part, in the gateway's LMDB environment (docs/cases.md).
 *
 * The gateway writes it in its cycle transaction, so a case changes atomically with
 * the message that changed it; cpxctl reads it (case show / list / stats). Records
 * are fixed-layout structs stored as bytes with a leading format version (the store
 * is local to one machine; a format change bumps CPX_CASEINDEX_VERSION and readers
 * refuse other versions).
 *
 * Databases:
 *   "ci.case"  case id -> cpx_case_rec_t
 *   "ci.pii"   case id -> AES-256-GCM(minor's name, sex, birth date, household
 *              registration, address), AAD = "cpx.ci.pii" 0x00 case id
 *   "ci.ref"   referral message id -> cpx_referral_rec_t
 *   "ci.part"  dept(32, NUL-padded) | case id -> "" : departments that took part, for
 *              codes outside the built-in list (the seed's departments and towns are
 *              bits of cpx_case_rec_t.parts: no write per message and department)
 *   "ci.dl"    BE64(due_ms) | kind(1) | item(16) | dept(32) -> cpx_deadline_t
 *   "ci.dlx"   kind(1) | case id(32) | item(16) | dept(32) -> BE64(due_ms): find a
 *              deadline to clear (the case id first: new entries append at the right)
 *   "ci.ben"   subject(32) | action(1) -> cpx_benefit_t
 *   "ci.parent" HMAC(parent's citizen ID) | case id -> ParentRole (1 byte)
 * A minor's open case is found from the keys its case record holds (no database of
 * its own: see cpx_caseindex_find_minor).
 * Minors' identifiers appear only as HMAC-SHA-256 under the index key; personal
 * fields only encrypted under the records key. Both keys are files apart from the
 * data (cpx_symkey_*).
 *
 * Caveats: functions taking a txn use it and never commit or abort it; records are
 * plain structs copied out of the store. */
#ifndef CPX_CASEINDEX_H
#define CPX_CASEINDEX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/limits.h"

#define CPX_CASEINDEX_VERSION 3u
#define CPX_CASE_RECENT 4          /* report times kept for the early-warning window */
#define CPX_CASE_MAX_REASON 160

typedef enum cpx_case_state {
    CPX_CASE_NONE = 0,
    CPX_CASE_OPEN = 1,
    CPX_CASE_ASSESSED = 2,
    CPX_CASE_IN_SERVICE = 3,
    CPX_CASE_FOLLOW_UP = 4,
    CPX_CASE_CLOSED = 5,
    CPX_CASE_REOPENED = 6,
} cpx_case_state_t;

typedef enum cpx_ref_state {
    CPX_REF_NONE = 0,
    CPX_REF_SENT = 1,
    CPX_REF_ACCEPTED = 2,
    CPX_REF_IN_PROGRESS = 3,
    CPX_REF_DONE = 4,
    CPX_REF_DECLINED = 5,
    CPX_REF_REVOKED = 6,
    CPX_REF_OVERDUE = 7,
} cpx_ref_state_t;

/* Deadline kinds: the schema's DeadlineKind, plus the gateway's own checks. */
enum {
    CPX_DL_ACKNOWLEDGE = 1,        /* a delivery must be acknowledged (routing ack_within) */
    CPX_DL_ACCEPT = 2,             /* a referral must be accepted (casepolicy accept_within) */
    CPX_DL_ACT = 3,                /* a referral must be done (Referral.due_by_ms) */
    CPX_DL_RISK_UNREFERRED = 10,   /* HIGH/CRITICAL assessment still without an accepted referral */
};

/* Case flags. */
enum {
    CPX_CASE_F_HAS_ID = 1u << 0,           /* subject is the HMAC of a citizen ID number */
    CPX_CASE_F_MATCH_TO_CONFIRM = 1u << 1, /* a report was linked by name+birth+town */
    CPX_CASE_F_FOLLOWUP_DONE = 1u << 2,    /* a follow-up visit is recorded */
    CPX_CASE_F_RETURNING_DROPOUT = 1u << 3,
    CPX_CASE_F_EMPLOYMENT_REFERRED = 1u << 4,
    CPX_CASE_F_WARNED = 1u << 5,           /* an EARLY_WARNING was raised */
    CPX_CASE_F_NAME_KEY = 1u << 6,         /* name_key is set */
    CPX_CASE_F_SEALED = 1u << 7,           /* sealed by order: no view shows it (cpx_caseindex_seal) */
};

typedef struct cpx_case_rec {
    uint32_t version;
    char id[CPX_MAX_CASE_ID + 1];
    uint8_t state;                 /* cpx_case_state_t */
    uint8_t risk;                  /* RiskLevel of the latest assessment */
    uint8_t categories;            /* bit (1 << Category) of every report */
    uint8_t father, mother;        /* ParentSituation, latest report that names them */
    uint8_t flags;                 /* CPX_CASE_F_* */
    uint8_t has_pii;               /* personal fields stored (ci.pii) */
    char town[CPX_MAX_DEPT_CODE + 1];
    char first_receiver[CPX_MAX_DEPT_CODE + 1]; /* sender of the first report */
    char lead[CPX_MAX_DEPT_CODE + 1];           /* receiver of the first accepted referral */
    int64_t opened_ms, updated_ms, closed_ms;
    int64_t first_accepted_ms;     /* first referral accepted (0 = none yet) */
    int64_t last_followup_ms;
    uint32_t n_reports, n_referrals, n_open_referrals, n_accepted;
    uint32_t n_escalations, n_notices;
    int64_t recent[CPX_CASE_RECENT]; /* latest report times, newest first */
    uint8_t subject[CPX_SHA256_LEN]; /* HMAC of the citizen ID (F_HAS_ID) or of "case:" id */
    uint8_t name_key[CPX_SHA256_LEN]; /* HMAC of name+birth+town (F_NAME_KEY) */
    uint32_t birth_ymd;              /* yyyymmdd, 0 = unknown; for the aged-16+ rule */
    uint64_t parts;                  /* departments that took part, by their bit (see add_part) */
} cpx_case_rec_t;

typedef struct cpx_referral_rec {
    uint32_t version;
    uint8_t id[CPX_MAX_MESSAGE_ID];
    char case_id[CPX_MAX_CASE_ID + 1];
    char from[CPX_MAX_DEPT_CODE + 1];
    char to[CPX_MAX_DEPT_CODE + 1];
    uint8_t task;                  /* Task */
    uint8_t state;                 /* cpx_ref_state_t */
    uint8_t priority;
    uint8_t action;                /* the Action of the latest disposition */
    int64_t sent_ms, accept_due_ms, due_by_ms, accepted_ms, updated_ms;
    char reason[CPX_CASE_MAX_REASON];  /* decline reason, or the revocation's reason */
} cpx_referral_rec_t;

typedef struct cpx_deadline {
    uint32_t version;
    uint8_t kind;
    uint8_t item[CPX_MAX_MESSAGE_ID];
    char dept[CPX_MAX_DEPT_CODE + 1];
    char case_id[CPX_MAX_CASE_ID + 1];
    int64_t due_ms;                /* when it is (next) checked */
    int64_t first_due_ms;          /* the original deadline */
    uint32_t level;                /* escalations so far */
} cpx_deadline_t;

typedef struct cpx_benefit {
    uint32_t version;
    uint8_t action;                /* Action */
    char case_id[CPX_MAX_CASE_ID + 1];
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint8_t message_id[CPX_MAX_MESSAGE_ID];  /* the granting disposition */
    int64_t granted_ms;
    uint32_t effective_to;         /* yyyymmdd, 0 = open-ended */
    uint8_t active;
} cpx_benefit_t;

typedef struct cpx_caseindex cpx_caseindex_t;

/* Opens (creating when the environment is writable) the databases. Keys are borrowed
 * and copied; either may be NULL for a reader that needs neither (cpxctl without
 * --key): then personal fields cannot be read and minors cannot be looked up.
 * Caller owns the result; free with cpx_caseindex_destroy. NULL on failure (logged). */
cpx_caseindex_t *cpx_caseindex_open(MDB_env *env, const uint8_t index_key[32],
                                    const uint8_t records_key[32]);
/* Frees (cleansing the keys); accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_caseindex_destroy(cpx_caseindex_t **self_p);

/* ---- cases ---------------------------------------------------------------------- */
int cpx_caseindex_get(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                      cpx_case_rec_t *out);  /* CPX_ERR_NOT_FOUND when absent */
int cpx_caseindex_put(cpx_caseindex_t *self, MDB_txn *txn, const cpx_case_rec_t *rec);

/* Keyed hashes of a minor: by citizen ID number, and by normalised name + birth date
 * + town (the documented fallback rule). out receives 33 bytes: a tag ('I' / 'N')
 * and the HMAC. CPX_ERR_NOT_FOUND when the minor lacks what the rule needs. */
int cpx_caseindex_minor_key(cpx_caseindex_t *self, const Cpx__V1__MinorIdentity *m,
                            int by_name, uint8_t out[1 + CPX_SHA256_LEN]);
/* As cpx_caseindex_minor_key, with w's scratch state: callable from several threads at
 * once, each with its own worker (w NULL: the index's own state, one thread only). */
typedef struct cpx_caseindex_worker cpx_caseindex_worker_t;
cpx_caseindex_worker_t *cpx_caseindex_worker_new(void);
void cpx_caseindex_worker_destroy(cpx_caseindex_worker_t **w_p);
int cpx_caseindex_minor_key_w(cpx_caseindex_t *self, cpx_caseindex_worker_t *w,
                              const Cpx__V1__MinorIdentity *m, int by_name,
                              uint8_t out[1 + CPX_SHA256_LEN]);
/* The subject hash for benefits: HMAC(citizen ID), or HMAC("case:" id) without one. */
void cpx_caseindex_subject(cpx_caseindex_t *self, const char *id_number, const char *case_id,
                           uint8_t out[CPX_SHA256_LEN]);
/* HMAC of a parent's citizen ID number (ReleaseNotice). */
void cpx_caseindex_hmac(cpx_caseindex_t *self, const char *text, uint8_t out[CPX_SHA256_LEN]);

/* A minor's open case: the open (not CLOSED), unsealed case whose record holds key
 * ('I': subject with CPX_CASE_F_HAS_ID; 'N': name_key with CPX_CASE_F_NAME_KEY), the
 * latest opened (then the greatest id) when several do. CPX_ERR_NOT_FOUND when none.
 * With the table built (cpx_caseindex_minor_load) a lookup reads only the records of
 * its candidates; without it, every case record (readers such as cpxctl).
 * set / del keep the table in step with the records the caller writes: set when a
 * case record gains a key or reopens, del when it closes or is sealed (only that
 * case's entry). Without the table both do nothing: the records are the truth. */
int cpx_caseindex_find_minor(cpx_caseindex_t *self, MDB_txn *txn,
                             const uint8_t key[1 + CPX_SHA256_LEN], char *case_id);
int cpx_caseindex_set_minor(cpx_caseindex_t *self, MDB_txn *txn,
                            const uint8_t key[1 + CPX_SHA256_LEN], const char *case_id);
int cpx_caseindex_del_minor(cpx_caseindex_t *self, MDB_txn *txn,
                            const uint8_t key[1 + CPX_SHA256_LEN], const char *case_id);
/* Builds the table from the case records (one scan in id order) visible in txn, for
 * the process that writes the index (the gateway, at start). A table already built is
 * replaced. CPX_ERR_NOMEM / store errors leave the previous state. */
int cpx_caseindex_minor_load(cpx_caseindex_t *self, MDB_txn *txn);
/* The write transaction committed: keep the table's changes. Or it aborted: undo
 * every table change since the last commit. The writer calls one after each write
 * transaction once the table is built. */
void cpx_caseindex_minor_commit(cpx_caseindex_t *self);
void cpx_caseindex_minor_rollback(cpx_caseindex_t *self);
/* Entries in the table and bytes it holds (0, 0 when not built). */
void cpx_caseindex_minor_stats(const cpx_caseindex_t *self, size_t *entries, size_t *bytes);

/* Personal fields of the case's minor, encrypted (the MinorIdentity without its ID
 * number, which is kept only as a hash). get: caller frees *out with cpx_msg_free;
 * CPX_ERR_STATE without the records key, CPX_ERR_TAMPERED on a failed tag. */
int cpx_caseindex_put_pii(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          const Cpx__V1__MinorIdentity *m);
/* The two halves of put_pii, so the encoding can be done ahead (on any thread, no
 * key needed): the plaintext stored for m (the identity without its ID number), at
 * most 4096 bytes; and sealing + storing such a plaintext. */
int cpx_caseindex_pii_encode(const Cpx__V1__MinorIdentity *m, uint8_t *buf, size_t size,
                             size_t *len);
int cpx_caseindex_put_pii_encoded(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                                  const uint8_t *pt, size_t n);
int cpx_caseindex_get_pii(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          Cpx__V1__MinorIdentity **out);

/* Records that dept took part in rec's case: a bit of rec->parts (the caller writes rec)
 * for the seed's departments and towns, a ci.part record for any other code. */
int cpx_caseindex_add_part(cpx_caseindex_t *self, MDB_txn *txn, cpx_case_rec_t *rec,
                           const char *dept);
/* 1 when dept took part in rec's case, 0 when not, negative on error. */
int cpx_caseindex_took_part(cpx_caseindex_t *self, MDB_txn *txn, const cpx_case_rec_t *rec,
                            const char *dept);

/* The hook for the sealed vault: a case whose records a SealOrder seals leaves every
 * ordinary view (case show answers "no case", list and stats skip it) and its minor's
 * open-case keys, so a later report opens a new case. CPX_ERR_NOT_FOUND when there is
 * no such case; sealing twice is CPX_OK. */
int cpx_caseindex_seal(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id);

/* Calls fn for every case in id order; fn returns non-zero to stop (returned). */
typedef int (*cpx_caseindex_case_fn)(void *ctx, const cpx_case_rec_t *rec);
int cpx_caseindex_each_case(cpx_caseindex_t *self, MDB_txn *txn, cpx_caseindex_case_fn fn,
                            void *ctx);

/* ---- referrals ------------------------------------------------------------------ */
int cpx_caseindex_get_ref(cpx_caseindex_t *self, MDB_txn *txn, const uint8_t *id, size_t len,
                          cpx_referral_rec_t *out);
int cpx_caseindex_put_ref(cpx_caseindex_t *self, MDB_txn *txn, const cpx_referral_rec_t *r);
/* Every referral of a case (a scan; cases hold a handful). */
typedef int (*cpx_caseindex_ref_fn)(void *ctx, const cpx_referral_rec_t *r);
int cpx_caseindex_each_ref(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                           cpx_caseindex_ref_fn fn, void *ctx);

/* ---- deadlines ------------------------------------------------------------------ */
/* Adds or moves the deadline (kind, case, item, dept). */
int cpx_caseindex_dl_set(cpx_caseindex_t *self, MDB_txn *txn, const cpx_deadline_t *d);
/* The acknowledgement deadlines of one message (item) routed to n departments, each
 * with its due: kept as one record (docs/cases.md); dl_each shows one deadline per
 * pending department, dl_set / dl_clear of kind CPX_DL_ACKNOWLEDGE update it. */
int cpx_caseindex_ack_add(cpx_caseindex_t *self, MDB_txn *txn, const char *case_id,
                          const uint8_t *item, size_t item_len, const char *const *depts,
                          const int64_t *due_ms, size_t n);
/* Adds a deadline known to be new (a message just accepted): no lookup first. */
int cpx_caseindex_dl_add(cpx_caseindex_t *self, MDB_txn *txn, const cpx_deadline_t *d);
/* Removes it; CPX_OK also when there was none. */
int cpx_caseindex_dl_clear(cpx_caseindex_t *self, MDB_txn *txn, uint8_t kind, const char *case_id,
                           const uint8_t *item, size_t item_len, const char *dept);
/* Deadlines with due_ms <= until (INT64_MAX: all), records in due order (the pending
 * departments of one message together, at its earliest); fn as above. */
typedef int (*cpx_caseindex_dl_fn)(void *ctx, const cpx_deadline_t *d);
int cpx_caseindex_dl_each(cpx_caseindex_t *self, MDB_txn *txn, int64_t until,
                          cpx_caseindex_dl_fn fn, void *ctx);
/* The earliest due time (INT64_MAX when none). */
int64_t cpx_caseindex_dl_next(cpx_caseindex_t *self, MDB_txn *txn);

/* ---- benefits and parents ------------------------------------------------------- */
int cpx_caseindex_get_benefit(cpx_caseindex_t *self, MDB_txn *txn,
                              const uint8_t subject[CPX_SHA256_LEN], uint8_t action,
                              cpx_benefit_t *out);
int cpx_caseindex_put_benefit(cpx_caseindex_t *self, MDB_txn *txn,
                              const uint8_t subject[CPX_SHA256_LEN], const cpx_benefit_t *b);
int cpx_caseindex_add_parent(cpx_caseindex_t *self, MDB_txn *txn,
                             const uint8_t parent[CPX_SHA256_LEN], const char *case_id,
                             uint8_t role);
/* Cases recorded for a parent hash: fn(ctx, case_id, role). */
int cpx_caseindex_each_parent_case(cpx_caseindex_t *self, MDB_txn *txn,
                                   const uint8_t parent[CPX_SHA256_LEN],
                                   int (*fn)(void *ctx, const char *case_id, uint8_t role),
                                   void *ctx);

/* ---- the state machines (pure; docs/cases.md, "Rules") ------------------------- */
/* Case events. */
enum {
    CPX_CEV_REPORT = 1,            /* a corroborating report */
    CPX_CEV_ASSESSMENT = 2,
    CPX_CEV_REFERRAL = 3,
    CPX_CEV_REFERRAL_ACCEPTED = 4,
    CPX_CEV_FOLLOW_UP = 5,
    CPX_CEV_CLOSE = 6,
    CPX_CEV_ALL_REFERRALS_ENDED = 7,
    CPX_CEV_REFERRAL_REVOKED = 8,  /* a referral of the case withdrawn (ReferralRevocation) */
};
/* The case state after event ev in state s (s unchanged when ev does not move it).
 * CPX_ERR_STATE when the event is not allowed; rule (may be NULL) then receives the
 * name of the rule broken, e.g. "close_with_open_referral". Closing also needs
 * open_referrals == 0 and followup_done. */
int cpx_case_next(int s, int ev, uint32_t open_referrals, int followup_done, int *next,
                  const char **rule);
/* Referral state after a disposition status (DispositionStatus) in state s; same
 * errors (rule "referral_revoked" on a REVOKED referral, "referral_closed" on another
 * ended one). A DECLINED without a reason is refused by the caller (rule required). */
int cpx_ref_next(int s, int disposition_status, int *next, const char **rule);
/* Referral state after a ReferralRevocation in state s: REVOKED from an open state;
 * else CPX_ERR_STATE with rule "referral_closed" (the referral has already ended). */
int cpx_ref_revoke(int s, int *next, const char **rule);
/* True for SENT, ACCEPTED, IN_PROGRESS, OVERDUE: the referral still needs work. */
int cpx_ref_open(int s);

const char *cpx_case_state_name(int s);
const char *cpx_ref_state_name(int s);
/* Parses a state name (case-insensitive); -1 when unknown. */
int cpx_case_state_parse(const char *name);

#endif
