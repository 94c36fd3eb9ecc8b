/* outbox.c — delivery windows, retries with backoff, dead letters, confirmations. */
#include "outbox.h"
#include "caseindex.h"
#include "sealed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/str.h"
#include "cpx/log.h"
#include "cpx/store.h"

static int depth_cb(void *ctx, const char *dept, uint64_t depth)
{
    cpx_gw_t *self = ctx;
    cpx_gw_session_t *s = cpx_gw_sessions_get(self->sessions, dept, 1);
    if (s)
        s->depth = depth;
    return 0;
}

int cpx_gw_outbox_load(cpx_gw_t *self)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cpx_store_err(rc, "outbox: begin");
    rc = cpx_outbox_depths(self->ob, txn, depth_cb, self);
    mdb_txn_abort(txn);
    return rc;
}

static int64_t backoff(const cpx_gw_t *self, uint32_t attempt)
{
    uint64_t d = self->cfg.retry_base_ms;
    for (uint32_t i = 1; i < attempt && d < self->cfg.retry_max_ms; i++)
        d *= 2;
    return (int64_t)(d < self->cfg.retry_max_ms ? d : self->cfg.retry_max_ms);
}

static int event_leaf(cpx_gw_t *self, int event, const cpx_outbox_entry_t *e, const char *sender,
                      const char *reason, const char *detail)
{
    char *rcpt[1] = {(char *)e->dept};
    cpx_audit_leaf_t leaf = CPX__V1__AUDIT_LEAF__INIT;
    leaf.event = event;
    leaf.sender = (char *)sender;
    leaf.n_recipients = 1;
    leaf.recipients = rcpt;
    leaf.case_ref = (char *)e->case_id;
    leaf.message_id = (ProtobufCBinaryData){e->message_id_len, (uint8_t *)e->message_id};
    leaf.ref_seq = e->accepted_seq;
    if (reason)
        leaf.reason = (char *)reason;
    if (detail)
        leaf.detail = (char *)detail;
    return cpx_gw_leaf(self, &leaf, NULL);
}

/* ServerFrame{deliver = Deliver{delivery_id 1, envelope 2, attempt 5, leaf_seq 6,
 * case_id 7}} written directly around the stored envelope bytes: the envelope is sent
 * exactly as stored, with no decode and re-encode per delivery. Fields in number order,
 * zero values omitted: the bytes protobuf-c would produce. Caller frees *out. */
static int encode_deliver(const cpx_outbox_entry_t *e, const cpx_gw_msg_t *m, uint8_t **out,
                          size_t *out_len)
{
    size_t cl = strlen(m->case_id);
    size_t inner = 1 + cpx_varint_len(e->seq) + 1 + cpx_varint_len(m->env_len) + m->env_len +
                   (e->attempts ? 1 + cpx_varint_len(e->attempts) : 0) +
                   (e->accepted_seq ? 1 + cpx_varint_len(e->accepted_seq) : 0) +
                   (cl ? 1 + cpx_varint_len(cl) + cl : 0);
    size_t total = 1 + cpx_varint_len(inner) + inner;
    uint8_t *buf = malloc(total), *p = buf;
    if (!buf)
        return CPX_ERR_NOMEM;
    *p++ = (3 << 3) | 2;  /* ServerFrame.deliver */
    p += cpx_varint_put(p, inner);
    *p++ = (1 << 3) | 0;
    p += cpx_varint_put(p, e->seq);
    *p++ = (2 << 3) | 2;
    p += cpx_varint_put(p, m->env_len);
    memcpy(p, m->env, m->env_len);
    p += m->env_len;
    if (e->attempts) {
        *p++ = (5 << 3) | 0;
        p += cpx_varint_put(p, e->attempts);
    }
    if (e->accepted_seq) {
        *p++ = (6 << 3) | 0;
        p += cpx_varint_put(p, e->accepted_seq);
    }
    if (cl) {
        *p++ = (7 << 3) | 2;
        p += cpx_varint_put(p, cl);
        memcpy(p, m->case_id, cl);
        p += cl;
    }
    *out = buf;
    *out_len = (size_t)(p - buf);
    return CPX_OK;
}

/* Sends (attempt + 1) of e to s and persists the count, so a restart resumes it.
 * No leaf per attempt: DELIVERY_ACKNOWLEDGED or DEAD_LETTERED records the outcome
 * (the latter with the number of attempts). */
static int send_one(cpx_gw_t *self, cpx_gw_session_t *s, cpx_outbox_entry_t *e)
{
    cpx_gw_msg_t m;
    int rc = cpx_gw_cases_get(self->cases, self->txn, e->accepted_seq, &m);
    if (rc)
        return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
    uint8_t *vaulted = NULL;  /* a blank record: the envelope is in the sealed vault */
    if (!m.env_len && (rc = cpx_gw_sealed_bytes(self, e->message_id, e->message_id_len,
                                                &vaulted, &m.env_len)))
        return rc == CPX_ERR_NOT_FOUND ? CPX_ERR_TAMPERED : rc;
    if (vaulted)
        m.env = vaulted;
    e->attempts++;
    cpx_gw_out_t *o = cpx_gw_out_push(self, OUT_DELIVER, s->rid, s->rid_len);
    rc = o ? cpx_gw_ci_deliver(self, e, &m, &o->buf, &o->len) : CPX_ERR_NOMEM;  /* 1: a view */
    if (rc == 0)
        rc = encode_deliver(e, &m, &o->buf, &o->len);
    else if (rc > 0)
        rc = CPX_OK;
    if (vaulted) {
        cpx_cleanse(vaulted, m.env_len);
        free(vaulted);
    }
    if (!o)
        return CPX_ERR_NOMEM;
    if (rc) {
        self->n_out--;
        return rc;
    }
    o->group = s->deliveries_per_frame;  /* grouped into Deliveries frames when > 1 */
    rc = cpx_outbox_update(self->ob, self->txn, e);
    if (!rc)
        self->stat_delivered++;
    cpx_log_debug("outbox", "msg=deliver dept=%s delivery=%llu attempt=%u", e->dept,
                  (unsigned long long)e->seq, e->attempts);
    return rc;
}

static int dead_letter(cpx_gw_t *self, cpx_gw_session_t *s, const cpx_outbox_entry_t *e, const char *reason)
{
    int rc = cpx_outbox_kill(self->ob, self->txn, e, reason, self->now_ms);
    if (rc)
        return rc;
    cpx_log_warn("outbox", "msg=\"dead letter\" dept=%s delivery=%llu reason=\"%s\"", e->dept,
                 (unsigned long long)e->seq, reason);
    if (s->depth)
        s->depth--;
    s->scan_more = 1;
    return event_leaf(self, CPX__V1__AUDIT_EVENT__DEAD_LETTERED, e, "", reason, NULL);
}

static int add_flight(cpx_gw_t *self, cpx_gw_session_t *s, const cpx_outbox_entry_t *e)
{
    cpx_gw_flight_t *f = cpx_gw_flight_add(s, e->seq, e->case_id);
    if (!f)
        return CPX_ERR_FULL;
    f->cls = e->cls;
    f->attempt = e->attempts;
    f->sent_ms = self->now_ms;
    f->due_ms = self->now_ms + backoff(self, e->attempts);
    return CPX_OK;
}

/* Sends e, dead-lettering it instead when it has used up its attempts. */
static int send_or_kill(cpx_gw_t *self, cpx_gw_session_t *s, cpx_outbox_entry_t *e, int *sent)
{
    *sent = 0;
    if (e->attempts >= self->cfg.retry_max_attempts) {
        char reason[96];
        snprintf(reason, sizeof reason, "not confirmed after %u attempts", e->attempts);
        return dead_letter(self, s, e, reason);
    }
    int rc = send_one(self, s, e);
    if (!rc)
        *sent = 1;
    return rc;
}

typedef struct fill {
    cpx_gw_t *self;
    cpx_gw_session_t *s;
    int rc;
} fill_t;

static int fill_cb(void *ctx, const cpx_outbox_entry_t *ce)
{
    fill_t *fl = ctx;
    cpx_gw_t *self = fl->self;
    cpx_gw_session_t *s = fl->s;
    if (s->n_flight >= s->cap_flight)
        return 1;
    if (cpx_gw_flight_find(s, ce->seq) >= 0 || cpx_gw_flight_case_busy(s, ce->case_id))
        return 0;
    cpx_outbox_entry_t e = *ce;
    uint64_t head;
    uint8_t cls;
    int rc = cpx_outbox_case_head(self->ob, self->txn, e.dept, e.case_id, &head, &cls);
    if (rc && rc != CPX_ERR_NOT_FOUND)
        return fl->rc = rc;
    if (!rc && head != e.seq) {
        /* An earlier message of this case waits in a lower class: it goes first, so
         * per-case order holds even when a later message is more urgent. */
        if ((rc = cpx_outbox_get(self->ob, self->txn, e.dept, cls, head, &e)))
            return fl->rc = rc;
        if (cpx_gw_flight_find(s, e.seq) >= 0)
            return 0;
    }
    int sent;
    if ((rc = send_or_kill(self, s, &e, &sent)))
        return fl->rc = rc;
    if (sent)
        add_flight(self, s, &e);
    return 0;
}

static int retry_due(cpx_gw_t *self, cpx_gw_session_t *s)
{
    for (size_t i = s->n_flight; i-- > 0;) {
        cpx_gw_flight_t *f = &s->flight[i];
        /* Only a peer heard from since the last attempt can have ignored it: attempts on
         * a connection that has gone quiet are not counted (they wait for it to speak,
         * or for it to be marked offline, which empties the window). */
        if (f->due_ms > self->now_ms || s->last_seen_ms < f->sent_ms)
            continue;
        cpx_outbox_entry_t e;
        int rc = cpx_outbox_get(self->ob, self->txn, s->dept, f->cls, f->seq, &e);
        if (rc == CPX_ERR_NOT_FOUND) {
            cpx_gw_flight_remove(s, i);
            continue;
        }
        if (rc)
            return rc;
        int sent;
        if ((rc = send_or_kill(self, s, &e, &sent)))
            return rc;
        if (sent) {
            f->attempt = e.attempts;
            f->sent_ms = self->now_ms;
            f->due_ms = self->now_ms + backoff(self, e.attempts);
        } else {
            cpx_gw_flight_remove(s, i);
        }
    }
    return CPX_OK;
}

int cpx_gw_outbox_tick(cpx_gw_t *self)
{
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        if (s->state != CPX_GW_ONLINE)
            continue;
        int rc = retry_due(self, s);
        if (rc)
            return rc;
        if (!s->scan_more || s->n_flight >= s->cap_flight)
            continue;
        fill_t fl = {self, s, 0};
        rc = cpx_outbox_each(self->ob, self->txn, s->dept, s->cap_flight * 4 + 64, fill_cb, &fl);
        if (rc || fl.rc)
            return rc ? rc : fl.rc;
        /* Until something is queued or confirmed, a new walk would find the same. */
        s->scan_more = 0;
    }
    return CPX_OK;
}

int cpx_gw_outbox_confirm(cpx_gw_t *self, cpx_gw_session_t *s, const Cpx__V1__DeliveryAck *ack)
{
    long idx = cpx_gw_flight_find(s, ack->delivery_id);
    cpx_outbox_entry_t e;
    int rc = cpx_outbox_get(self->ob, self->txn, s->dept, idx >= 0 ? s->flight[idx].cls : 0xff,
                            ack->delivery_id, &e);
    if (rc == CPX_ERR_NOT_FOUND) {
        cpx_log_debug("outbox", "msg=\"confirmation of nothing queued\" dept=%s delivery=%llu",
                      s->dept, (unsigned long long)ack->delivery_id);
        return CPX_OK;  /* a repeated confirmation: idempotent */
    }
    if (rc)
        return rc;
    if (ack->message_id.len &&
        (ack->message_id.len != e.message_id_len ||
         memcmp(ack->message_id.data, e.message_id, e.message_id_len))) {
        cpx_log_warn("outbox", "msg=\"confirmation names another message\" dept=%s delivery=%llu",
                     s->dept, (unsigned long long)ack->delivery_id);
        return CPX_OK;
    }
    if (ack->status == CPX__V1__DELIVERY_STATUS__TAKEN) {
        if ((rc = cpx_outbox_remove(self->ob, self->txn, &e)) ||
            (rc = cpx_gw_ci_acked(self, &e)))
            return rc;
        if (s->depth)
            s->depth--;
        self->stat_confirmed++;
        char detail[64];
        size_t dl = cpx_strcopy(detail, sizeof detail, "delivery=");
        dl = cpx_strappend_u64(detail, sizeof detail, dl, e.seq, 1);
        dl = cpx_strappend(detail, sizeof detail, dl, " attempts=");
        cpx_strappend_u64(detail, sizeof detail, dl, e.attempts, 1);
        rc = event_leaf(self, CPX__V1__AUDIT_EVENT__DELIVERY_ACKNOWLEDGED, &e, s->dept, NULL, detail);
    } else if (ack->status == CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL) {
        char reason[CPX_OUTBOX_MAX_REASON];
        snprintf(reason, sizeof reason, "refused by local system: %.400s",
                 ack->reason && *ack->reason ? ack->reason : "(no reason given)");
        rc = dead_letter(self, s, &e, reason);
    } else {
        cpx_log_warn("outbox", "msg=\"confirmation without status\" dept=%s", s->dept);
        return CPX_OK;
    }
    if (idx >= 0)
        cpx_gw_flight_remove(s, (size_t)idx);
    s->scan_more = 1;
    return rc;
}

int64_t cpx_gw_outbox_next_due(cpx_gw_t *self)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < cpx_gw_sessions_count(self->sessions); i++) {
        cpx_gw_session_t *s = cpx_gw_sessions_at(self->sessions, i);
        if (s->state != CPX_GW_ONLINE)
            continue;
        if (s->scan_more && s->n_flight < s->cap_flight)
            return 0;
        for (size_t j = 0; j < s->n_flight; j++)
            if (s->flight[j].due_ms < next && s->last_seen_ms >= s->flight[j].sent_ms)
                next = s->flight[j].due_ms;
    }
    return next;
}
