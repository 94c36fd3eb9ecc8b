/* session.c — department sessions: state machine and delivery windows. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/log.h"

struct cpx_gw_sessions {
    size_t n;
    size_t in_flight;
    cpx_gw_session_t *items[CPX_GW_MAX_DEPTS];
};

cpx_gw_sessions_t *cpx_gw_sessions_new(size_t in_flight)
{
    cpx_gw_sessions_t *self = calloc(1, sizeof *self);
    if (self)
        self->in_flight = in_flight ? in_flight : 1;
    return self;
}

void cpx_gw_sessions_destroy(cpx_gw_sessions_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_sessions_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        cpx_gw_session_t *s = self->items[i];
        free(s->flight);
        free(s->next_seq);
        free(s->next_case);
        free(s->by_seq);
        free(s->by_case);
        free(s);
    }
    free(self);
    *self_p = NULL;
}

cpx_gw_session_t *cpx_gw_sessions_get(cpx_gw_sessions_t *self, const char *dept, int create)
{
    /* Tens of departments in a city: a linear scan beats a hash here. */
    for (size_t i = 0; i < self->n; i++)
        if (!strcmp(self->items[i]->dept, dept))
            return self->items[i];
    if (!create)
        return NULL;
    if (self->n == CPX_GW_MAX_DEPTS || strlen(dept) > CPX_MAX_DEPT_CODE) {
        cpx_log_error("session", "msg=\"department table full\" dept=%s", dept);
        return NULL;
    }
    cpx_gw_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap_flight = self->in_flight;
    s->n_buckets = 16;
    while (s->n_buckets < 2 * s->cap_flight)
        s->n_buckets <<= 1;
    s->flight = calloc(s->cap_flight, sizeof *s->flight);
    s->next_seq = calloc(s->cap_flight, sizeof *s->next_seq);
    s->next_case = calloc(s->cap_flight, sizeof *s->next_case);
    s->by_seq = malloc(s->n_buckets * sizeof *s->by_seq);
    s->by_case = malloc(s->n_buckets * sizeof *s->by_case);
    if (!s->flight || !s->next_seq || !s->next_case || !s->by_seq || !s->by_case) {
        free(s->flight);
        free(s->next_seq);
        free(s->next_case);
        free(s->by_seq);
        free(s->by_case);
        free(s);
        return NULL;
    }
    cpx_gw_flight_clear(s);
    snprintf(s->dept, sizeof s->dept, "%s", dept);
    s->state = CPX_GW_OFFLINE;
    s->scan_more = 1;
    self->items[self->n++] = s;
    return s;
}

int cpx_gw_session_touch(cpx_gw_session_t *s, const uint8_t *rid, size_t rid_len, int64_t now_ms)
{
    if (rid_len > CPX_GW_MAX_RID)
        rid_len = CPX_GW_MAX_RID;
    s->last_seen_ms = now_ms;
    int same = s->rid_len == rid_len && !memcmp(s->rid, rid, rid_len);
    if (s->state == CPX_GW_ONLINE && same)
        return 0;
    if (s->state == CPX_GW_ONLINE) {
        cpx_log_info("session", "msg=\"new connection\" dept=%s", s->dept);
        /* Unconfirmed deliveries went to the old connection: send them again now. */
        for (size_t i = 0; i < s->n_flight; i++)
            s->flight[i].due_ms = now_ms;
    } else {
        cpx_log_info("session", "msg=online dept=%s", s->dept);
        s->online_since_ms = now_ms;
        s->last_hb_ms = 0;
    }
    memcpy(s->rid, rid, rid_len);
    s->rid_len = rid_len;
    if (!same)
        s->deliveries_per_frame = 0;  /* until this connection's heartbeat says otherwise */
    s->state = CPX_GW_ONLINE;
    s->scan_more = 1;
    return 1;
}

void cpx_gw_sessions_expire(cpx_gw_sessions_t *self, int64_t now_ms, uint32_t offline_after_ms)
{
    for (size_t i = 0; i < self->n; i++) {
        cpx_gw_session_t *s = self->items[i];
        if (s->state != CPX_GW_ONLINE || now_ms - s->last_seen_ms < (int64_t)offline_after_ms)
            continue;
        cpx_log_info("session", "msg=offline dept=%s silent_ms=%lld unconfirmed=%zu", s->dept,
                     (long long)(now_ms - s->last_seen_ms), s->n_flight);
        s->state = CPX_GW_OFFLINE;
        cpx_gw_flight_clear(s);
        s->rid_len = 0;
    }
}

size_t cpx_gw_sessions_count(const cpx_gw_sessions_t *self)
{
    return self->n;
}

cpx_gw_session_t *cpx_gw_sessions_at(cpx_gw_sessions_t *self, size_t i)
{
    return i < self->n ? self->items[i] : NULL;
}

static size_t seq_bucket(const cpx_gw_session_t *s, uint64_t seq)
{
    return (size_t)((seq * 0x9e3779b97f4a7c15ull) >> 20) & (s->n_buckets - 1);
}

static size_t case_bucket(const cpx_gw_session_t *s, const char *case_id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = case_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return (size_t)h & (s->n_buckets - 1);
}

void cpx_gw_flight_clear(cpx_gw_session_t *s)
{
    s->n_flight = 0;
    for (size_t i = 0; i < s->n_buckets; i++)
        s->by_seq[i] = s->by_case[i] = -1;
}

static void link_at(cpx_gw_session_t *s, size_t i)
{
    size_t b = seq_bucket(s, s->flight[i].seq);
    s->next_seq[i] = s->by_seq[b];
    s->by_seq[b] = (int32_t)i;
    b = case_bucket(s, s->flight[i].case_id);
    s->next_case[i] = s->by_case[b];
    s->by_case[b] = (int32_t)i;
}

static void unlink_at(cpx_gw_session_t *s, size_t i)
{
    int32_t *p = &s->by_seq[seq_bucket(s, s->flight[i].seq)];
    while (*p != (int32_t)i && *p >= 0)
        p = &s->next_seq[*p];
    if (*p >= 0)
        *p = s->next_seq[i];
    p = &s->by_case[case_bucket(s, s->flight[i].case_id)];
    while (*p != (int32_t)i && *p >= 0)
        p = &s->next_case[*p];
    if (*p >= 0)
        *p = s->next_case[i];
}

cpx_gw_flight_t *cpx_gw_flight_add(cpx_gw_session_t *s, uint64_t seq, const char *case_id)
{
    if (s->n_flight >= s->cap_flight)
        return NULL;
    size_t i = s->n_flight++;
    cpx_gw_flight_t *f = &s->flight[i];
    memset(f, 0, sizeof *f);
    f->seq = seq;
    snprintf(f->case_id, sizeof f->case_id, "%s", case_id);
    link_at(s, i);
    return f;
}

long cpx_gw_flight_find(const cpx_gw_session_t *s, uint64_t seq)
{
    for (int32_t i = s->by_seq[seq_bucket(s, seq)]; i >= 0; i = s->next_seq[i])
        if (s->flight[i].seq == seq)
            return i;
    return -1;
}

void cpx_gw_flight_remove(cpx_gw_session_t *s, size_t i)
{
    if (i >= s->n_flight)
        return;
    unlink_at(s, i);
    size_t last = --s->n_flight;
    if (i != last) {
        unlink_at(s, last);
        s->flight[i] = s->flight[last];
        link_at(s, i);
    }
}

int cpx_gw_flight_case_busy(const cpx_gw_session_t *s, const char *case_id)
{
    for (int32_t i = s->by_case[case_bucket(s, case_id)]; i >= 0; i = s->next_case[i])
        if (!strcmp(s->flight[i].case_id, case_id))
            return 1;
    return 0;
}
