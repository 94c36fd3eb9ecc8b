/* gateway/session.h — one record per department the gateway has heard from or
 * must deliver to: its session state machine, ZeroMQ routing id, queue depth and
 * the window of unconfirmed deliveries.
 *
 * States (explicit; every transition is logged):
 *   OFFLINE --any frame--> ONLINE --silent offline_after_ms--> OFFLINE
 *   ONLINE --frame from a new connection--> ONLINE (deliveries move to it)
 * Deliveries are sent only ONLINE. Going OFFLINE empties the window: its entries stay
 * in the durable outbox and are sent again (attempt + 1) once the peer speaks again,
 * so time offline never counts against retry attempts.
 *
 * Caveats: owned by the server thread; not thread-safe. */
#ifndef CPX_GW_SESSION_H
#define CPX_GW_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/limits.h"

#define CPX_GW_MAX_DEPTS 4096
#define CPX_GW_MAX_RID 256

typedef enum cpx_gw_state {
    CPX_GW_OFFLINE = 0,
    CPX_GW_ONLINE = 1,
} cpx_gw_state_t;

/* One unconfirmed delivery. */
typedef struct cpx_gw_flight {
    uint64_t seq;                   /* delivery id (outbox sequence) */
    int64_t sent_ms;
    int64_t due_ms;                 /* resend (or dead-letter) when not confirmed by then */
    uint32_t attempt;
    uint8_t cls;                    /* priority class of the outbox key */
    char case_id[CPX_MAX_CASE_ID + 1];
} cpx_gw_flight_t;

typedef struct cpx_gw_session {
    char dept[CPX_MAX_DEPT_CODE + 1];
    cpx_gw_state_t state;
    uint8_t rid[CPX_GW_MAX_RID];
    size_t rid_len;
    int64_t last_seen_ms;
    int64_t last_hb_ms;             /* our last heartbeat to it */
    int64_t online_since_ms;
    uint64_t depth;                 /* waiting in the durable outbox (incl. in flight) */
    size_t n_flight;
    size_t cap_flight;
    cpx_gw_flight_t *flight;        /* cap_flight entries */
    /* chained hash indexes over the window: by delivery id and by case */
    int32_t *by_seq, *by_case;      /* n_buckets heads, -1 = empty */
    int32_t *next_seq, *next_case;  /* cap_flight links */
    size_t n_buckets;
    int scan_more;                  /* outbox may hold sendable entries */
    /* Deliveries per frame the current connection reads (its heartbeats say; 0 after
     * a new connection until one does): above 1, Deliveries frames. */
    uint32_t deliveries_per_frame;
} cpx_gw_session_t;

typedef struct cpx_gw_sessions cpx_gw_sessions_t;

/* Caller owns the result; free with cpx_gw_sessions_destroy. NULL on allocation failure. */
cpx_gw_sessions_t *cpx_gw_sessions_new(size_t in_flight);
void cpx_gw_sessions_destroy(cpx_gw_sessions_t **self_p);

/* The department's record, created (OFFLINE) when create is set and absent. NULL when
 * absent and not created, or when the table is full (logged). Borrowed; valid until
 * the table is destroyed (records are never removed or moved). */
cpx_gw_session_t *cpx_gw_sessions_get(cpx_gw_sessions_t *self, const char *dept, int create);

/* A frame arrived from dept over connection rid: ONLINE, remembers rid. Returns 1 when
 * the session (re)became ONLINE or changed connection (the caller then refills its
 * window), 0 otherwise. */
int cpx_gw_session_touch(cpx_gw_session_t *s, const uint8_t *rid, size_t rid_len, int64_t now_ms);

/* ONLINE sessions silent since now - offline_after_ms go OFFLINE (window emptied). */
void cpx_gw_sessions_expire(cpx_gw_sessions_t *self, int64_t now_ms, uint32_t offline_after_ms);

/* Number of records and record i (for iteration). */
size_t cpx_gw_sessions_count(const cpx_gw_sessions_t *self);
cpx_gw_session_t *cpx_gw_sessions_at(cpx_gw_sessions_t *self, size_t i);

/* Window helpers (O(1) expected): add an entry (the caller checked there is room;
 * returns it to be filled — set seq and case_id only through this call), find by
 * delivery id (index or -1), remove index i, is a case in flight, empty the window. */
cpx_gw_flight_t *cpx_gw_flight_add(cpx_gw_session_t *s, uint64_t seq, const char *case_id);
long cpx_gw_flight_find(const cpx_gw_session_t *s, uint64_t seq);
void cpx_gw_flight_remove(cpx_gw_session_t *s, size_t i);
void cpx_gw_flight_clear(cpx_gw_session_t *s);
int cpx_gw_flight_case_busy(const cpx_gw_session_t *s, const char *case_id);

#endif
