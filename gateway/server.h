/* gateway/server.h — the cpx-gateway server object and its loop.
 *
 * One thread owns the ROUTER socket and every LMDB write: each poll cycle reads up to
 * batch_max frames, processes them in ONE write transaction (writer.c), fills and
 * retries delivery windows (outbox.c) in the same transaction, signs one tree head,
 * commits, and only once that commit is durable sends Acks, Nacks and Deliver frames.
 * The final flush of cycle N (its meta page) runs on a sync thread (syncer.h) while
 * cycle N+1 is read, verified, written and committed; N's replies go out once that
 * flush returned, before N+1's. Submit frames past a cycle's byte budget wait for the
 * next one and are decoded, validated and verified meanwhile by the prepare-ahead
 * thread (ahead.h), and the verification pool (verify.h) does that work for the rest.
 * Replies go out grouped where the client asked for it (Acks, Deliveries frames).
 * Another thread (zap.c) answers CURVE authentication.
 *
 * Caveats: cpx_gw_server_run returns after cpx_gw_server_stop (async-signal-safe: it
 * only sets a flag) once the cycle in progress is committed. */
#ifndef CPX_GW_SERVER_H
#define CPX_GW_SERVER_H

#include <lmdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "cases.h"
#include "session.h"
#include "zap.h"
#include "cpx/audit.h"
#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/outbox.h"
#include "cpx/registry.h"
#include "cpx/route.h"

/* A frame waiting for the cycle's commit. Submission replies keep their fields so
 * that, should the commit fail, they can be turned into retryable Nacks. */
typedef enum { OUT_RAW = 0, OUT_ACK = 1, OUT_NACK = 2, OUT_DELIVER = 3 } cpx_gw_out_kind;

typedef struct cpx_gw_out {
    cpx_gw_out_kind kind;
    uint8_t rid[CPX_GW_MAX_RID];
    size_t rid_len;
    uint8_t *buf;                   /* encoded ServerFrame (OUT_RAW, OUT_NACK, OUT_DELIVER) */
    size_t len;
    uint8_t message_id[CPX_MAX_MESSAGE_ID];
    size_t message_id_len;
    uint64_t leaf_seq;              /* OUT_ACK */
    uint64_t tree_size;             /* OUT_ACK: 0 = the head signed by this cycle */
    char case_id[CPX_MAX_CASE_ID + 1];
    int duplicate;
    /* OUT_ACK: nonzero when the Submit asked for grouped acks; the Acks of one group
     * leave in one Acks frame. OUT_DELIVER: how many deliveries the connection takes in
     * one Deliveries frame (0 or 1: a Deliver frame each). */
    uint32_t group;
} cpx_gw_out_t;

typedef struct cpx_gw_keycache {
    uint8_t pub[CPX_ED25519_PUB_LEN];
    cpx_key_t *key;
} cpx_gw_keycache_t;

#define CPX_GW_KEYCACHE 64
#define CPX_GW_REFUSED_KEYS 256

typedef struct cpx_gw {
    cpx_gw_config_t cfg;
    void *zctx;
    void *router;                   /* ROUTER, CURVE server */
    void *refused;                  /* PULL: ZAP refusals */
    MDB_env *env;
    cpx_registry_t *reg;
    cpx_audit_t *audit;
    cpx_outbox_t *ob;
    cpx_gw_cases_t *cases;
    struct cpx_gw_sealed *sealed;   /* NULL: no vault; SEALED envelopes refused (sealed.c) */
    cpx_router_t *rules;            /* NULL: explicit recipients + CIVIL_AFFAIRS */
    struct cpx_gw_ci *ci;           /* case tracking (caseindex.h); NULL = off */
    cpx_key_t *sign_key;
    cpx_gw_sessions_t *sessions;
    cpx_gw_zap_t *zap;
    struct cpx_gw_metrics *metrics; /* write-path counters (metrics.c) */
    struct cpx_gw_http *http;       /* /metrics, /healthz, dashboard (http.c); NULL = off */
    struct cpx_gw_verify *verify;   /* sender-signature verification pool (verify.h) */
    struct cpx_gw_ahead *ahead;     /* frames of the next cycle prepared early (ahead.h) */
    struct cpx_gw_inq *inq;         /* frames waiting for the next cycle (server.c) */
    cpx_gw_keycache_t keycache[CPX_GW_KEYCACHE];
    size_t n_keycache;

    uint64_t tree_size;             /* committed */
    unsigned failed_cycles;         /* consecutive cycles that applied nothing */
    int64_t now_ms;
    MDB_txn *txn;                   /* the cycle's write transaction */
    int appended;                   /* leaves appended in this cycle */
    uint64_t cycles_since_head;
    uint64_t cycles;                /* cycles begun (a new transaction each) */
    struct {                        /* the last signing key looked up (writer.c) */
        uint64_t cycle;
        char dept[CPX_MAX_DEPT_CODE + 1];
        uint8_t key_id[CPX_KEY_ID_LEN];
        uint8_t pub[CPX_ED25519_PUB_LEN];
        int rc;
    } key_memo;
    uint32_t ack_groups;            /* grouped-acks Submits numbered in this cycle */
    uint8_t *group_buf;             /* one Acks or Deliveries frame being assembled */
    size_t group_cap;

    cpx_gw_out_t *out;              /* replies and deliveries of the cycle */
    size_t n_out, cap_out;
    struct cpx_gw_prefill *prefill; /* zeros past the last page (prefill.h); NULL = off */
    /* The last committed cycle while its background flush runs (server.c, syncer.h):
     * its replies and deliveries, its head's size and the dashboard view it audited,
     * all released only once that commit is durable. */
    struct cpx_gw_syncer *syncer;
    cpx_gw_out_t *out_pending;
    size_t n_out_pending, cap_out_pending;
    uint64_t pending_head, pending_view;
    /* message ids accepted in this cycle -> index in out (open addressing) */
    uint32_t *seen_idx;
    size_t seen_cap;

    /* AUTH_REFUSED rate limit */
    struct { uint8_t key[CPX_CURVE_KEY_LEN]; int64_t last_ms; } refused_keys[CPX_GW_REFUSED_KEYS];
    size_t n_refused_keys;
    int64_t refused_window_ms;
    uint32_t refused_in_window;
    uint64_t refused_suppressed;

    int64_t last_status_ms, last_hb_ms;
    int64_t last_trim_ms;           /* last release of LMDB map pages (server.c) */
    int64_t last_submit_ms;         /* last cycle that read a Submit frame */
    void *map_addr;                 /* LMDB map (found in /proc/self/maps) */
    size_t map_len;
    uint64_t status_sig;            /* what the last status record showed */
    uint64_t stat_accepted, stat_rejected, stat_delivered, stat_confirmed;
} cpx_gw_t;

/* Opens the store, loads keys and rules, starts ZAP and binds. Caller owns the result
 * (cpx_gw_server_destroy). NULL on failure (logged with the reason). */
cpx_gw_t *cpx_gw_server_new(const cpx_gw_config_t *cfg);
void cpx_gw_server_destroy(cpx_gw_t **self_p);

/* Runs until stopped. CPX_OK on a clean stop, negative on a fatal error. */
int cpx_gw_server_run(cpx_gw_t *self);
void cpx_gw_server_stop(void);

/* Internal, shared by writer.c and outbox.c. */
int64_t cpx_gw_now_ms(void);
cpx_gw_out_t *cpx_gw_out_push(cpx_gw_t *self, cpx_gw_out_kind kind, const uint8_t *rid,
                              size_t rid_len);
/* Encodes a ServerFrame into a new out entry. */
int cpx_gw_out_frame(cpx_gw_t *self, const uint8_t *rid, size_t rid_len,
                     const cpx_server_frame_t *frame, cpx_gw_out_kind kind);
/* Appends a leaf in the cycle transaction (counts it). */
int cpx_gw_leaf(cpx_gw_t *self, cpx_audit_leaf_t *leaf, uint64_t *seq);

#endif
