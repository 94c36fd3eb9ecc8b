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
        free(self->items[i]->flight);
        free(self->items[i]);
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
    s->flight = calloc(self->in_flight, sizeof *s->flight);
    if (!s->flight) {
        free(s);
        return NULL;
    }
    s->cap_flight = self->in_flight;
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
        s->n_flight = 0;
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

long cpx_gw_flight_find(const cpx_gw_session_t *s, uint64_t seq)
{
    for (size_t i = 0; i < s->n_flight; i++)
        if (s->flight[i].seq == seq)
            return (long)i;
    return -1;
}

void cpx_gw_flight_remove(cpx_gw_session_t *s, size_t i)
{
    if (i >= s->n_flight)
        return;
    s->flight[i] = s->flight[--s->n_flight];
}

int cpx_gw_flight_case_busy(const cpx_gw_session_t *s, const char *case_id)
{
    for (size_t i = 0; i < s->n_flight; i++)
        if (!strcmp(s->flight[i].case_id, case_id))
            return 1;
    return 0;
}
