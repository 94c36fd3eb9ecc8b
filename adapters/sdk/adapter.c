/* adapter.c — the adapter loop: durable spool, signing, resending, deliveries.
 *
 * Spool layout (one LMDB environment, named databases):
 *   pending   BE64 sequence    -> message id (16) || BE16(origin length) || origin ||
 *                                 signed envelope bytes
 *             Keys grow with every submission, so each cycle APPENDs at the end of the
 *             tree and Acks (which arrive roughly in order) empty whole pages: random
 *             16-byte keys made every insert and delete rewrite a random leaf page, a
 *             write amplification that cost the gateway CPU on a shared machine.
 *             (Spools written before this keyed by message id: id (16) -> BE16 || origin
 *             || envelope. Such entries are still read, acknowledged and resent.)
 *   rejected  origin           -> message id (16, zero for local rejections) || reason
 *   delivered message id       -> status (1 taken, 2 refused)
 *   state     connector key    -> connector bytes
 *   meta      "counters"       -> 9 x BE64, in cpx_adapter_counters_t order (spools
 *                                 written before duplicate_acks hold 8; read as 0)
 * Timers (when to resend) live in memory: after a restart everything pending is due. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cpx/adapter.h"
#include "cpx/envsign.h"
#include "cpx/log.h"
#include "cpx/store.h"

#define MOD "adapter"
#define MAX_FRAMES_PER_CYCLE 20000
#define FRAME_BUDGET (CPX_MAX_FRAME_BYTES - 4096)
#define MAX_INFLIGHT_DELIVERIES 4096
/* Deliveries per Deliveries frame the adapter asks for (docs/protocol.md 2). Per-frame
 * costs (a CURVE box, a routing step, a read, a decode) shrink to under 2% of one per
 * delivery at 64, so larger groups save next to nothing, while a group is also what one
 * lost frame costs (resent only after the gateway's retry delay) and what one decode
 * holds in memory; 64 also splits the gateway's default window (in_flight 256) into
 * several frames rather than one. */
#define DELIVERIES_PER_FRAME 64

typedef struct pend {
    uint8_t id[CPX_ADAPTER_ID_LEN];
    uint64_t seq;                    /* spool key; 0: an old spool's entry keyed by id */
    int64_t due;
    uint32_t attempts;
    uint8_t used;
} pend_t;

typedef struct staged {
    cpx_envelope_t *env;
    char *origin;
    uint8_t *bytes;      /* after signing */
    size_t len;
    unsigned group;      /* signing batch number within the cycle */
} staged_t;

typedef struct confirm {
    uint64_t delivery_id;
    uint8_t id[CPX_ADAPTER_ID_LEN];
    size_t id_len;
    bool ok;
    char reason[160];
} confirm_t;

struct cpx_adapter {
    cpx_adapter_opts_t o;
    char dept[CPX_MAX_DEPT_CODE + 1];
    cpx_client_t *client;
    MDB_env *env;
    MDB_dbi db_pending, db_rejected, db_delivered, db_state, db_meta;
    MDB_txn *txn;                     /* the cycle's write transaction */
    cpx_adapter_counters_t c;
    uint8_t id_key[32];

    pend_t *tab;                      /* open addressing, linear probing */
    size_t tab_cap, tab_n;
    uint64_t next_seq;                /* next pending key */
    bool legacy;                      /* id-keyed entries present: no MDB_APPEND */
    uint32_t *sset;                   /* this cycle's staged ids: index + 1, by id */
    size_t sset_cap;

    staged_t *stage;
    size_t n_stage, cap_stage;
    confirm_t *conf;
    size_t n_conf, cap_conf;
    uint8_t (*inflight)[CPX_ADAPTER_ID_LEN];  /* deliveries the connector still holds */
    size_t n_inflight;

    const cpx_connector_t *conn;
    void *conn_state;
    int64_t last_rx, last_hb, last_status, last_ack;
    bool heard;                       /* the gateway answered since the last silence */
    /* The gateway of this connection has sent Acks or Deliveries frames, so it reads
     * DeliveryAcks frames too (an older one would refuse them: they go singly until then). */
    bool grouped_peer;
    unsigned connections;             /* handshakes with the gateway so far */
    size_t rejected_n;
};

int64_t cpx_adapter_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex16(const uint8_t *id, char out[33]) { cpx_hex(id, CPX_ADAPTER_ID_LEN, out); }

/* ---- pending table ------------------------------------------------------------------ */

static size_t slot_of(const uint8_t *id, size_t cap)
{
    uint64_t h;
    memcpy(&h, id, sizeof h); /* ids are HMAC or random output: already uniform */
    return (size_t)(h & (cap - 1));
}

static pend_t *tab_find(cpx_adapter_t *a, const uint8_t *id)
{
    if (!a->tab_cap)
        return NULL;
    for (size_t i = slot_of(id, a->tab_cap);; i = (i + 1) & (a->tab_cap - 1)) {
        if (!a->tab[i].used)
            return NULL;
        if (!memcmp(a->tab[i].id, id, CPX_ADAPTER_ID_LEN))
            return &a->tab[i];
    }
}

static int tab_grow(cpx_adapter_t *a)
{
    size_t cap = a->tab_cap ? a->tab_cap * 2 : 1024;
    pend_t *t = calloc(cap, sizeof *t);
    if (!t)
        return CPX_ERR_NOMEM;
    for (size_t k = 0; k < a->tab_cap; k++) {
        if (!a->tab[k].used)
            continue;
        size_t i = slot_of(a->tab[k].id, cap);
        while (t[i].used)
            i = (i + 1) & (cap - 1);
        t[i] = a->tab[k];
    }
    free(a->tab);
    a->tab = t;
    a->tab_cap = cap;
    return CPX_OK;
}

static int tab_put(cpx_adapter_t *a, const uint8_t *id, uint64_t seq, int64_t due)
{
    pend_t *p = tab_find(a, id);
    if (p) {
        p->due = due;
        p->seq = seq;
        return CPX_OK;
    }
    if ((a->tab_n + 1) * 2 > a->tab_cap && tab_grow(a) != CPX_OK)
        return CPX_ERR_NOMEM;
    size_t i = slot_of(id, a->tab_cap);
    while (a->tab[i].used)
        i = (i + 1) & (a->tab_cap - 1);
    memcpy(a->tab[i].id, id, CPX_ADAPTER_ID_LEN);
    a->tab[i].due = due;
    a->tab[i].seq = seq;
    a->tab[i].attempts = 0;
    a->tab[i].used = 1;
    a->tab_n++;
    return CPX_OK;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_del(cpx_adapter_t *a, pend_t *p)
{
    size_t mask = a->tab_cap - 1, i = (size_t)(p - a->tab), j = i;
    a->tab[i].used = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!a->tab[j].used)
            break;
        size_t k = slot_of(a->tab[j].id, a->tab_cap);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            a->tab[i] = a->tab[j];
            a->tab[j].used = 0;
            i = j;
        }
    }
    a->tab_n--;
}

/* ---- spool helpers -------------------------------------------------------------- */

static int put(cpx_adapter_t *a, MDB_dbi db, const void *k, size_t kl, const void *v, size_t vl)
{
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    return cpx_store_err(mdb_put(a->txn, db, &key, &val, 0), "spool put");
}

/* The spool key of a pending entry: BE64 sequence, or the id for an old spool's entry. */
static MDB_val pend_key(const pend_t *p, uint8_t buf[8])
{
    if (!p->seq)
        return (MDB_val){CPX_ADAPTER_ID_LEN, (void *)p->id};
    cpx_be64_put(buf, p->seq);
    return (MDB_val){8, buf};
}

/* Where BE16(origin length) starts in a pending value with this key. */
static size_t pend_hdr(size_t key_size) { return key_size == 8 ? CPX_ADAPTER_ID_LEN : 0; }

#define N_COUNTERS ((int)(sizeof(cpx_adapter_counters_t) / sizeof(uint64_t)))
#define N_COUNTERS_V1 8 /* before duplicate_acks */

static void save_counters(cpx_adapter_t *a)
{
    uint8_t b[8 * N_COUNTERS];
    const uint64_t *v = &a->c.spooled;
    for (int i = 0; i < N_COUNTERS; i++)
        cpx_be64_put(b + 8 * i, v[i]);
    put(a, a->db_meta, "counters", 8, b, sizeof b);
    uint8_t ns[8];
    cpx_be64_put(ns, a->next_seq);
    put(a, a->db_meta, "next_seq", 8, ns, sizeof ns);
}

static void load_counters(MDB_txn *txn, MDB_dbi db, cpx_adapter_counters_t *c)
{
    MDB_val key = {8, "counters"}, val;
    memset(c, 0, sizeof *c);
    if (mdb_get(txn, db, &key, &val) == MDB_SUCCESS &&
        (val.mv_size == 8 * N_COUNTERS || val.mv_size == 8 * N_COUNTERS_V1)) {
        uint64_t *v = &c->spooled;
        for (int i = 0; i < (int)(val.mv_size / 8); i++)
            v[i] = cpx_be64_get((const uint8_t *)val.mv_data + 8 * i);
    }
}

static int open_dbs(MDB_txn *txn, unsigned flags, MDB_dbi *p, MDB_dbi *r, MDB_dbi *d,
                    MDB_dbi *s, MDB_dbi *m)
{
    int rc;
    if ((rc = mdb_dbi_open(txn, "pending", flags, p)) ||
        (rc = mdb_dbi_open(txn, "rejected", flags, r)) ||
        (rc = mdb_dbi_open(txn, "delivered", flags, d)) ||
        (rc = mdb_dbi_open(txn, "state", flags, s)) || (rc = mdb_dbi_open(txn, "meta", flags, m)))
        return rc;
    return MDB_SUCCESS;
}

static size_t db_count(MDB_txn *txn, MDB_dbi db)
{
    MDB_stat st;
    return mdb_stat(txn, db, &st) == MDB_SUCCESS ? st.ms_entries : 0;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static int load_pending(cpx_adapter_t *a, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, a->db_pending, &cur);
    if (rc)
        return cpx_store_err(rc, "cursor");
    MDB_val k, v;
    int64_t now = mono_ms();
    a->next_seq = 1;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *id;
        uint64_t seq = 0;
        if (k.mv_size == CPX_ADAPTER_ID_LEN) {
            id = k.mv_data;
            a->legacy = true;
        } else if (k.mv_size == 8 && v.mv_size >= CPX_ADAPTER_ID_LEN + 2) {
            id = v.mv_data;
            seq = cpx_be64_get(k.mv_data);
            if (seq >= a->next_seq)
                a->next_seq = seq + 1;
        } else {
            continue;
        }
        if (tab_put(a, id, seq, now) != CPX_OK) {
            mdb_cursor_close(cur);
            return CPX_ERR_NOMEM;
        }
    }
    mdb_cursor_close(cur);
    /* keys must keep growing after the last entry is acknowledged and deleted */
    MDB_val mk = {8, "next_seq"}, mv;
    if (mdb_get(txn, a->db_meta, &mk, &mv) == MDB_SUCCESS && mv.mv_size == 8 &&
        cpx_be64_get(mv.mv_data) > a->next_seq)
        a->next_seq = cpx_be64_get(mv.mv_data);
    return CPX_OK;
}

cpx_adapter_t *cpx_adapter_new(const cpx_adapter_opts_t *opts, const cpx_connector_t *conn,
                               const cpx_conf_t *conn_section)
{
    if (!opts || !opts->dept || !opts->spool_dir || !opts->sign_key || !opts->id_key || !conn ||
        strlen(opts->dept) > CPX_MAX_DEPT_CODE)
        return NULL;
    cpx_adapter_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->o = *opts;
    strcpy(a->dept, opts->dept);
    memcpy(a->id_key, opts->id_key, sizeof a->id_key);
    a->o.id_key = a->id_key;
    if (!a->o.max_pending)
        a->o.max_pending = 50000;
    if (!a->o.cycle_max)
        a->o.cycle_max = 2000;
    if (a->o.batch > CPX_MAX_BATCH_ENVELOPES)
        a->o.batch = CPX_MAX_BATCH_ENVELOPES;
    if (!a->o.resend_after_ms)
        a->o.resend_after_ms = 10000;
    if (!a->o.backoff_max_ms)
        a->o.backoff_max_ms = 300000;
    if (!a->o.heartbeat_ms)
        a->o.heartbeat_ms = 5000;
    if (!a->o.status_every_ms)
        a->o.status_every_ms = 30000;
    if (!a->o.client.deliveries_per_frame)
        a->o.client.deliveries_per_frame = DELIVERIES_PER_FRAME;
    /* the loop must never stall long on a full send queue */
    if (!a->o.client.send_timeout_ms)
        a->o.client.send_timeout_ms = 200;

    int rc = cpx_store_open(opts->spool_dir, opts->spool_map_size ? opts->spool_map_size : (1ull << 30),
                            0, &a->env);
    if (rc != CPX_OK)
        goto fail;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(a->env, NULL, 0, &txn)) != MDB_SUCCESS) {
        cpx_store_err(rc, "begin");
        goto fail;
    }
    rc = open_dbs(txn, MDB_CREATE, &a->db_pending, &a->db_rejected, &a->db_delivered,
                  &a->db_state, &a->db_meta);
    if (rc == MDB_SUCCESS) {
        load_counters(txn, a->db_meta, &a->c);
        a->rejected_n = db_count(txn, a->db_rejected);
        rc = load_pending(a, txn) == CPX_OK ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), -1);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != MDB_SUCCESS) {
        cpx_store_err(rc, "open spool");
        goto fail;
    }
    a->client = cpx_client_new(&a->o.client);
    if (!a->client)
        goto fail;
    a->conn = conn;
    /* the connector may read its state: give it a transaction */
    if (mdb_txn_begin(a->env, NULL, 0, &a->txn) != MDB_SUCCESS)
        goto fail;
    rc = conn->open(a, conn_section, &a->conn_state);
    if (rc != CPX_OK) {
        mdb_txn_abort(a->txn);
        a->txn = NULL;
        cpx_log_error(MOD, "msg=\"connector failed to open\" connector=%s err=%s", conn->name,
                      cpx_strerror(rc));
        a->conn = NULL;
        goto fail;
    }
    if ((rc = mdb_txn_commit(a->txn)) != MDB_SUCCESS) {
        a->txn = NULL;
        cpx_store_err(rc, "commit");
        goto fail;
    }
    a->txn = NULL;
    a->last_status = mono_ms();
    cpx_log_info(MOD, "msg=\"adapter started\" dept=%s connector=%s endpoint=\"%s\" spool=\"%s\" "
                      "pending=%zu rejected=%zu batch=%u",
                 a->dept, conn->name, opts->client.endpoint, opts->spool_dir, a->tab_n,
                 a->rejected_n, a->o.batch);
    return a;
fail:
    cpx_adapter_destroy(&a);
    return NULL;
}

static size_t sset_slot(const uint8_t *id, size_t cap)
{
    uint64_t h;
    memcpy(&h, id + 8, sizeof h);
    return (size_t)(h & (cap - 1));
}

/* Is id staged in this cycle? When not and add is true, records it as stage[n_stage]. */
static bool sset_check(cpx_adapter_t *a, const uint8_t *id, bool add)
{
    if (!a->sset_cap)
        return false;
    size_t i = sset_slot(id, a->sset_cap);
    for (; a->sset[i]; i = (i + 1) & (a->sset_cap - 1))
        if (!memcmp(a->stage[a->sset[i] - 1].env->message_id.data, id, CPX_ADAPTER_ID_LEN))
            return true;
    if (add)
        a->sset[i] = (uint32_t)a->n_stage + 1;
    return false;
}

static void clear_stage(cpx_adapter_t *a)
{
    if (a->sset && a->n_stage)
        memset(a->sset, 0, a->sset_cap * sizeof *a->sset);
    for (size_t i = 0; i < a->n_stage; i++) {
        cpx_msg_free(a->stage[i].env);
        free(a->stage[i].origin);
        free(a->stage[i].bytes);
    }
    a->n_stage = 0;
}

void cpx_adapter_destroy(cpx_adapter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_adapter_t *a = *self_p;
    if (a->conn && a->conn->close)
        a->conn->close(a->conn_state);
    if (a->txn)
        mdb_txn_abort(a->txn);
    clear_stage(a);
    free(a->stage);
    free(a->sset);
    free(a->conf);
    free(a->inflight);
    free(a->tab);
    cpx_client_destroy(&a->client);
    if (a->env)
        mdb_env_close(a->env);
    cpx_cleanse(a->id_key, sizeof a->id_key);
    free(a);
    *self_p = NULL;
}

/* ---- connector-facing API -------------------------------------------------------- */

const char *cpx_adapter_dept(const cpx_adapter_t *self) { return self->dept; }
size_t cpx_adapter_pending_count(const cpx_adapter_t *self) { return self->tab_n; }
void cpx_adapter_counters(const cpx_adapter_t *self, cpx_adapter_counters_t *out) { *out = self->c; }

bool cpx_adapter_can_submit(const cpx_adapter_t *self)
{
    return self->txn && self->n_stage < self->o.cycle_max &&
           self->tab_n + self->n_stage < self->o.max_pending;
}

size_t cpx_adapter_room(const cpx_adapter_t *self)
{
    if (!self->txn || self->n_stage >= self->o.cycle_max ||
        self->tab_n + self->n_stage >= self->o.max_pending)
        return 0;
    size_t by_cycle = self->o.cycle_max - self->n_stage;
    size_t by_pending = self->o.max_pending - self->tab_n - self->n_stage;
    return by_cycle < by_pending ? by_cycle : by_pending;
}

bool cpx_adapter_backlogged(const cpx_adapter_t *self)
{
    return self->tab_n + self->n_stage >= self->o.max_pending;
}

void cpx_adapter_derive_id(const cpx_adapter_t *self, const void *ident, size_t len,
                           uint8_t out[CPX_ADAPTER_ID_LEN])
{
    uint8_t mac[CPX_SHA256_LEN];
    cpx_hmac_sha256(self->id_key, sizeof self->id_key, ident, len, mac);
    memcpy(out, mac, CPX_ADAPTER_ID_LEN);
}

int cpx_adapter_submit(cpx_adapter_t *self, cpx_envelope_t **env_p,
                       const uint8_t id[CPX_ADAPTER_ID_LEN], const char *origin)
{
    if (!env_p || !*env_p || !origin || strlen(origin) > CPX_ADAPTER_MAX_ORIGIN)
        return CPX_ERR_ARG;
    if (!cpx_adapter_can_submit(self))
        return CPX_ERR_FULL;
    cpx_envelope_t *env = *env_p;
    uint8_t rid[CPX_ADAPTER_ID_LEN];
    if (!id) {
        if (cpx_random(rid, sizeof rid) != CPX_OK)
            return CPX_ERR_CRYPTO;
        id = rid;
    }
    if (tab_find(self, id) || sset_check(self, id, false)) /* already spooled or staged */
        goto consumed;
    if (!self->sset) {
        /* at most cycle_max staged: keep the set at most half full */
        size_t cap = 64;
        while (cap < 2 * (size_t)self->o.cycle_max)
            cap *= 2;
        if (!(self->sset = calloc(cap, sizeof *self->sset)))
            return CPX_ERR_NOMEM;
        self->sset_cap = cap;
    }
    uint8_t *mid = malloc(CPX_ADAPTER_ID_LEN);
    char *sender = strdup(self->dept);
    char *org = strdup(origin);
    if (self->n_stage == self->cap_stage) {
        size_t cap = self->cap_stage ? self->cap_stage * 2 : 256;
        staged_t *s = realloc(self->stage, cap * sizeof *s);
        if (s) {
            self->stage = s;
            self->cap_stage = cap;
        }
    }
    if (!mid || !sender || !org || self->n_stage == self->cap_stage) {
        free(mid);
        free(sender);
        free(org);
        return CPX_ERR_NOMEM;
    }
    memcpy(mid, id, CPX_ADAPTER_ID_LEN);
    free(env->message_id.data);
    env->message_id.data = mid;
    env->message_id.len = CPX_ADAPTER_ID_LEN;
    if (env->sender && env->sender != protobuf_c_empty_string)
        free(env->sender);
    env->sender = sender;
    if (!env->created_ms)
        env->created_ms = cpx_adapter_now_ms();
    if (env->priority == CPX__V1__PRIORITY__PRIORITY_UNSPECIFIED)
        env->priority = CPX__V1__PRIORITY__ROUTINE;
    if (env->sensitivity == CPX__V1__SENSITIVITY__SENSITIVITY_UNSPECIFIED)
        env->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    sset_check(self, id, true);
    self->stage[self->n_stage++] = (staged_t){.env = env, .origin = org};
    *env_p = NULL;
    return CPX_OK;
consumed:
    cpx_msg_free(env);
    *env_p = NULL;
    return CPX_OK;
}

int cpx_adapter_reject(cpx_adapter_t *self, const char *origin, const char *reason)
{
    if (!self->txn || !origin)
        return CPX_ERR_STATE;
    size_t rl = strlen(reason ? reason : "");
    uint8_t *v = malloc(CPX_ADAPTER_ID_LEN + rl);
    if (!v)
        return CPX_ERR_NOMEM;
    memset(v, 0, CPX_ADAPTER_ID_LEN);
    memcpy(v + CPX_ADAPTER_ID_LEN, reason ? reason : "", rl);
    int rc = put(self, self->db_rejected, origin, strlen(origin), v, CPX_ADAPTER_ID_LEN + rl);
    free(v);
    if (rc == CPX_OK) {
        self->c.failed++;
        self->rejected_n++;
        cpx_log_info(MOD, "msg=\"record rejected locally\" origin=\"%s\" reason=\"%.200s\"", origin,
                     reason ? reason : "");
    }
    return rc;
}

int cpx_adapter_state_put(cpx_adapter_t *self, const char *key, const void *val, size_t len)
{
    if (!self->txn)
        return CPX_ERR_STATE;
    return put(self, self->db_state, key, strlen(key), val, len);
}

int cpx_adapter_state_get(cpx_adapter_t *self, const char *key, void *val, size_t size)
{
    if (!self->txn)
        return CPX_ERR_STATE;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(self->txn, self->db_state, &k, &v);
    if (rc != MDB_SUCCESS)
        return cpx_store_err(rc, "state get");
    memcpy(val, v.mv_data, v.mv_size < size ? v.mv_size : size);
    return (int)v.mv_size;
}

int cpx_adapter_state_del(cpx_adapter_t *self, const char *key)
{
    if (!self->txn)
        return CPX_ERR_STATE;
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_del(self->txn, self->db_state, &k, NULL);
    return rc == MDB_NOTFOUND ? CPX_OK : cpx_store_err(rc, "state del");
}

int cpx_adapter_foreach_pending(cpx_adapter_t *self, int (*fn)(void *ctx, const char *origin),
                                void *ctx)
{
    if (!self->txn)
        return CPX_ERR_STATE;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(self->txn, self->db_pending, &cur);
    if (rc)
        return cpx_store_err(rc, "cursor");
    MDB_val k, v;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1];
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t h = pend_hdr(k.mv_size);
        const uint8_t *p = (const uint8_t *)v.mv_data + h;
        if (v.mv_size < h + 2)
            continue;
        size_t ol = (size_t)p[0] << 8 | p[1];
        if (ol > CPX_ADAPTER_MAX_ORIGIN || h + ol + 2 > v.mv_size)
            continue;
        memcpy(origin, p + 2, ol);
        origin[ol] = '\0';
        if (fn(ctx, origin))
            break;
    }
    mdb_cursor_close(cur);
    return CPX_OK;
}

int cpx_adapter_foreach_rejected(cpx_adapter_t *self, const char *prefix,
                                 int (*fn)(void *ctx, const char *origin, const char *reason),
                                 void *ctx)
{
    if (!self->txn)
        return CPX_ERR_STATE;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(self->txn, self->db_rejected, &cur);
    if (rc)
        return cpx_store_err(rc, "cursor");
    size_t pl = strlen(prefix);
    MDB_val k = {pl, (void *)prefix}, v;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1];
    for (rc = mdb_cursor_get(cur, &k, &v, pl ? MDB_SET_RANGE : MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) || k.mv_size > CPX_ADAPTER_MAX_ORIGIN)
            break;
        memcpy(origin, k.mv_data, k.mv_size);
        origin[k.mv_size] = '\0';
        size_t rl = v.mv_size > CPX_ADAPTER_ID_LEN ? v.mv_size - CPX_ADAPTER_ID_LEN : 0;
        char *reason = strndup((const char *)v.mv_data + CPX_ADAPTER_ID_LEN, rl);
        int stop = reason ? fn(ctx, origin, reason) : 1;
        free(reason);
        if (stop)
            break;
    }
    mdb_cursor_close(cur);
    return CPX_OK;
}

static int stage_confirm(cpx_adapter_t *a, uint64_t delivery_id, const uint8_t *id, size_t id_len,
                         bool ok, const char *reason)
{
    if (a->n_conf == a->cap_conf) {
        size_t cap = a->cap_conf ? a->cap_conf * 2 : 64;
        confirm_t *c = realloc(a->conf, cap * sizeof *c);
        if (!c)
            return CPX_ERR_NOMEM;
        a->conf = c;
        a->cap_conf = cap;
    }
    confirm_t *c = &a->conf[a->n_conf++];
    memset(c, 0, sizeof *c);
    c->delivery_id = delivery_id;
    c->id_len = id_len > CPX_ADAPTER_ID_LEN ? CPX_ADAPTER_ID_LEN : id_len;
    memcpy(c->id, id, c->id_len);
    c->ok = ok;
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    return CPX_OK;
}

static void inflight_remove(cpx_adapter_t *a, const uint8_t *id)
{
    for (size_t i = 0; i < a->n_inflight; i++)
        if (!memcmp(a->inflight[i], id, CPX_ADAPTER_ID_LEN)) {
            memmove(a->inflight[i], a->inflight[--a->n_inflight], CPX_ADAPTER_ID_LEN);
            return;
        }
}

static bool inflight_has(const cpx_adapter_t *a, const uint8_t *id)
{
    for (size_t i = 0; i < a->n_inflight; i++)
        if (!memcmp(a->inflight[i], id, CPX_ADAPTER_ID_LEN))
            return true;
    return false;
}

int cpx_adapter_delivery_done(cpx_adapter_t *self, uint64_t delivery_id,
                              const uint8_t *message_id, size_t id_len, bool ok, const char *reason)
{
    if (!self->txn || id_len != CPX_ADAPTER_ID_LEN)
        return CPX_ERR_STATE;
    uint8_t status = ok ? 1 : 2;
    int rc = put(self, self->db_delivered, message_id, id_len, &status, 1);
    if (rc != CPX_OK)
        return rc;
    inflight_remove(self, message_id);
    if (!ok)
        self->c.failed++;
    return stage_confirm(self, delivery_id, message_id, id_len, ok, reason);
}

/* ---- server frames ------------------------------------------------------------- */

static void format_errors(const Cpx__V1__Nack *n, char *buf, size_t size)
{
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&cpx__v1__error_code__descriptor, n->code);
    size_t off = (size_t)snprintf(buf, size, "%s", ev ? ev->name : "ERROR");
    for (size_t i = 0; i < n->n_errors && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s: %s: %s", i ? "; " : ": ",
                                n->errors[i]->path, n->errors[i]->rule, n->errors[i]->message);
}

/* Reads the origin out of a pending value (h: pend_hdr of its key). */
static void pending_origin(const MDB_val *v, size_t h, char *origin)
{
    const uint8_t *p = (const uint8_t *)v->mv_data + h;
    size_t ol = v->mv_size >= h + 2 ? ((size_t)p[0] << 8 | p[1]) : 0;
    if (ol > CPX_ADAPTER_MAX_ORIGIN || h + ol + 2 > v->mv_size)
        ol = 0;
    memcpy(origin, p + 2, ol);
    origin[ol] = '\0';
}

static void on_ack(cpx_adapter_t *a, const Cpx__V1__Ack *ack)
{
    if (ack->message_id.len != CPX_ADAPTER_ID_LEN)
        return;
    pend_t *p = tab_find(a, ack->message_id.data);
    if (!p) {
        /* An answer to an entry already settled: typically the gateway answering both
         * the first send and a resend. Counted apart, so that acked counts each spool
         * entry once (acked + nacked + pending == spooled). */
        a->c.duplicate_acks++;
        if (cpx_log_enabled(CPX_LOG_DEBUG)) {
            char idhex[33];
            hex16(ack->message_id.data, idhex);
            cpx_log_debug(MOD, "msg=\"duplicate ack\" id=%s gateway_duplicate=%d", idhex,
                          ack->duplicate ? 1 : 0);
        }
        return;
    }
    uint8_t kb[8];
    MDB_val k = pend_key(p, kb), v;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1] = "";
    if (mdb_get(a->txn, a->db_pending, &k, &v) == MDB_SUCCESS)
        pending_origin(&v, pend_hdr(k.mv_size), origin);
    mdb_del(a->txn, a->db_pending, &k, NULL);
    tab_del(a, p);
    a->c.acked++;
    a->last_ack = mono_ms();
    if (a->conn->result)
        a->conn->result(a->conn_state, origin, ack->message_id.data, true, NULL);
}

static void on_nack(cpx_adapter_t *a, const Cpx__V1__Nack *n)
{
    char idhex[33] = "";
    if (n->message_id.len != CPX_ADAPTER_ID_LEN) {
        cpx_log_warn(MOD, "msg=\"nack without message id\" code=%d", n->code);
        return;
    }
    hex16(n->message_id.data, idhex);
    pend_t *p = tab_find(a, n->message_id.data);
    if (!p)
        return;
    if (n->retryable) {
        int64_t wait = n->retry_after_ms ? (int64_t)n->retry_after_ms : (int64_t)a->o.resend_after_ms;
        p->due = mono_ms() + wait;
        cpx_log_debug(MOD, "msg=\"retryable nack\" id=%s code=%d retry_after_ms=%lld", idhex,
                      n->code, (long long)wait);
        return;
    }
    char reason[2048];
    format_errors(n, reason, sizeof reason);
    uint8_t kb[8];
    MDB_val k = pend_key(p, kb), v;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1] = "";
    if (mdb_get(a->txn, a->db_pending, &k, &v) == MDB_SUCCESS)
        pending_origin(&v, pend_hdr(k.mv_size), origin);
    if (!origin[0])
        snprintf(origin, sizeof origin, "id:%s", idhex);
    size_t rl = strlen(reason);
    uint8_t val[CPX_ADAPTER_ID_LEN + sizeof reason];
    memcpy(val, n->message_id.data, CPX_ADAPTER_ID_LEN);
    memcpy(val + CPX_ADAPTER_ID_LEN, reason, rl);
    put(a, a->db_rejected, origin, strlen(origin), val, CPX_ADAPTER_ID_LEN + rl);
    mdb_del(a->txn, a->db_pending, &k, NULL);
    tab_del(a, p);
    a->c.nacked++;
    a->rejected_n++;
    cpx_log_info(MOD, "msg=\"submission rejected\" id=%s origin=\"%s\" reason=\"%.300s\"", idhex,
                 origin, reason);
    if (a->conn->result)
        a->conn->result(a->conn_state, origin, n->message_id.data, false, reason);
}

static void on_deliver(cpx_adapter_t *a, const Cpx__V1__Deliver *d)
{
    const cpx_envelope_t *env = d->envelope;
    if (!env || env->message_id.len != CPX_ADAPTER_ID_LEN) {
        cpx_log_warn(MOD, "msg=\"delivery without envelope or id\" delivery_id=%llu",
                     (unsigned long long)d->delivery_id);
        return;
    }
    const uint8_t *id = env->message_id.data;
    char idhex[33];
    hex16(id, idhex);
    if (inflight_has(a, id))
        return; /* the connector is still on it: it will be confirmed once */
    MDB_val k = {CPX_ADAPTER_ID_LEN, (void *)id}, v;
    if (mdb_get(a->txn, a->db_delivered, &k, &v) == MDB_SUCCESS && v.mv_size == 1) {
        bool ok = *(uint8_t *)v.mv_data == 1;
        cpx_log_info(MOD, "msg=\"redelivery confirmed again\" id=%s delivery_id=%llu", idhex,
                     (unsigned long long)d->delivery_id);
        stage_confirm(a, d->delivery_id, id, CPX_ADAPTER_ID_LEN, ok, ok ? NULL : "refused before");
        return;
    }
    a->c.delivered++;
    cpx_adapter_delivery_t dl = {.delivery_id = d->delivery_id, .envelope = env,
                                 .withheld = d->withheld, .n_withheld = d->n_withheld,
                                 .attempt = d->attempt};
    char reason[160] = "";
    int rc = a->conn->deliver ? a->conn->deliver(a->conn_state, &dl, reason, sizeof reason)
                              : CPX_ERR_REFUSED;
    if (rc == CPX_OK || rc == CPX_ERR_REFUSED) {
        cpx_adapter_delivery_done(a, d->delivery_id, id, CPX_ADAPTER_ID_LEN, rc == CPX_OK,
                                  reason[0] ? reason : "refused by the local system");
        cpx_log_info(MOD, "msg=\"delivery %s\" id=%s delivery_id=%llu", rc == CPX_OK ? "taken" : "refused",
                     idhex, (unsigned long long)d->delivery_id);
    } else if (rc == CPX_ADAPTER_PENDING) {
        if (!a->inflight)
            a->inflight = calloc(MAX_INFLIGHT_DELIVERIES, CPX_ADAPTER_ID_LEN);
        if (a->inflight && a->n_inflight < MAX_INFLIGHT_DELIVERIES)
            memcpy(a->inflight[a->n_inflight++], id, CPX_ADAPTER_ID_LEN);
    } else {
        cpx_log_warn(MOD, "msg=\"delivery not taken now\" id=%s err=%s", idhex, cpx_strerror(rc));
    }
}

static void drain_frames(cpx_adapter_t *a)
{
    void *sock = cpx_client_socket(a->client);
    for (int i = 0; i < MAX_FRAMES_PER_CYCLE; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        cpx_server_frame_t *f = NULL;
        int rc = cpx_decode_server_frame(zmq_msg_data(&msg), zmq_msg_size(&msg), &f);
        zmq_msg_close(&msg);
        if (rc != CPX_OK) {
            cpx_log_warn(MOD, "msg=\"undecodable frame from gateway\" err=%s", cpx_strerror(rc));
            continue;
        }
        a->last_rx = mono_ms();
        if (!a->heard) {
            a->heard = true;
            /* the gateway may have restarted: everything unacknowledged is due now */
            int64_t now = mono_ms();
            for (size_t k = 0; k < a->tab_cap; k++)
                if (a->tab[k].used)
                    a->tab[k].due = now;
            cpx_log_info(MOD, "msg=\"gateway heard\" pending=%zu", a->tab_n);
        }
        switch (f->frame_case) {
        case CPX__V1__SERVER_FRAME__FRAME_ACK:
            on_ack(a, f->ack);
            break;
        case CPX__V1__SERVER_FRAME__FRAME_NACK:
            on_nack(a, f->nack);
            break;
        case CPX__V1__SERVER_FRAME__FRAME_DELIVER:
            on_deliver(a, f->deliver);
            break;
        case CPX__V1__SERVER_FRAME__FRAME_ACKS:
            a->grouped_peer = true;
            cpx_log_debug(MOD, "msg=\"acks frame\" n=%zu", f->acks->n_acks);
            for (size_t k = 0; k < f->acks->n_acks; k++)
                on_ack(a, f->acks->acks[k]);
            break;
        case CPX__V1__SERVER_FRAME__FRAME_DELIVERIES:
            a->grouped_peer = true;
            cpx_log_debug(MOD, "msg=\"deliveries frame\" n=%zu", f->deliveries->n_deliveries);
            for (size_t k = 0; k < f->deliveries->n_deliveries; k++)
                on_deliver(a, f->deliveries->deliveries[k]);
            break;
        default:
            break;
        }
        cpx_msg_free(f);
    }
}

/* ---- commit and send ------------------------------------------------------------- */

static int sign_stage(cpx_adapter_t *a)
{
    size_t per = a->o.batch > 1 ? a->o.batch : 1;
    unsigned group = 0;
    for (size_t i = 0; i < a->n_stage; i += per, group++) {
        size_t n = a->n_stage - i < per ? a->n_stage - i : per;
        int rc;
        if (n == 1) {
            rc = cpx_envsign_sign(a->stage[i].env, a->o.sign_key);
        } else {
            cpx_envelope_t *envs[CPX_MAX_BATCH_ENVELOPES];
            for (size_t k = 0; k < n; k++)
                envs[k] = a->stage[i + k].env;
            rc = cpx_envsign_sign_batch(envs, n, a->o.sign_key);
        }
        if (rc != CPX_OK)
            return rc;
        for (size_t k = 0; k < n; k++) {
            staged_t *s = &a->stage[i + k];
            s->group = group;
            size_t ol = strlen(s->origin);
            size_t el = protobuf_c_message_get_packed_size(&s->env->base);
            if (el > CPX_MAX_ENVELOPE_BYTES)
                return CPX_ERR_TOO_LARGE;
            s->bytes = malloc(CPX_ADAPTER_ID_LEN + 2 + ol + el);
            if (!s->bytes)
                return CPX_ERR_NOMEM;
            uint8_t *b = s->bytes;
            memcpy(b, s->env->message_id.data, CPX_ADAPTER_ID_LEN);
            b += CPX_ADAPTER_ID_LEN;
            b[0] = (uint8_t)(ol >> 8);
            b[1] = (uint8_t)ol;
            memcpy(b + 2, s->origin, ol);
            protobuf_c_message_pack(&s->env->base, b + 2 + ol);
            s->len = CPX_ADAPTER_ID_LEN + 2 + ol + el;
        }
    }
    return CPX_OK;
}

/* One ClientFrame{submit{envelope}} or ClientFrame{submit{batch{envelopes...},
 * grouped_acks}} built from already encoded envelopes, so the spool's bytes go out as
 * they are. A batch asks for its Acks in one Acks frame; a gateway that predates them
 * skips the field and answers each envelope with an Ack frame as before. */
static int send_envelopes(cpx_adapter_t *a, const uint8_t *const *envs, const size_t *lens,
                          size_t n)
{
    size_t inner = 0;
    for (size_t i = 0; i < n; i++)
        inner += 1 + cpx_varint_len(lens[i]) + lens[i];
    size_t submit_len = n == 1 ? inner : 1 + cpx_varint_len(inner) + inner + 2;
    size_t total = 1 + cpx_varint_len(submit_len) + submit_len;
    if (total > CPX_MAX_FRAME_BYTES)
        return CPX_ERR_TOO_LARGE;
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, total))
        return CPX_ERR_NOMEM;
    uint8_t *p = zmq_msg_data(&msg);
    *p++ = 0x0a; /* ClientFrame.submit */
    p += cpx_varint_put(p, submit_len);
    if (n > 1) {
        *p++ = 0x12; /* Submit.batch */
        p += cpx_varint_put(p, inner);
    }
    for (size_t i = 0; i < n; i++) {
        *p++ = 0x0a; /* Submit.envelope or Batch.envelopes */
        p += cpx_varint_put(p, lens[i]);
        memcpy(p, envs[i], lens[i]);
        p += lens[i];
    }
    if (n > 1) {
        *p++ = 0x18; /* Submit.grouped_acks = true */
        *p++ = 0x01;
    }
    if (zmq_msg_send(&msg, cpx_client_socket(a->client), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return zmq_errno() == EAGAIN ? CPX_ERR_FULL : CPX_ERR_NET;
    }
    a->c.sent += n;
    return CPX_OK;
}

static void send_staged(cpx_adapter_t *a, int64_t now)
{
    const uint8_t *envs[CPX_MAX_BATCH_ENVELOPES];
    size_t lens[CPX_MAX_BATCH_ENVELOPES];
    size_t i = 0;
    bool full = false;
    while (i < a->n_stage && !full) {
        size_t n = 0, bytes = 0;
        unsigned g = a->stage[i].group;
        while (i + n < a->n_stage && a->stage[i + n].group == g && n < CPX_MAX_BATCH_ENVELOPES) {
            staged_t *s = &a->stage[i + n];
            size_t hdr = CPX_ADAPTER_ID_LEN + 2 + strlen(s->origin);
            if (n && bytes + s->len > FRAME_BUDGET)
                break;
            envs[n] = s->bytes + hdr;
            lens[n] = s->len - hdr;
            bytes += lens[n] + 8;
            n++;
        }
        /* a batch-signed envelope carries its own proof, so a batch may span frames */
        int rc = send_envelopes(a, envs, lens, n);
        if (rc == CPX_ERR_FULL) {
            full = true; /* left for the resend timer */
        } else if (rc != CPX_OK) {
            cpx_log_warn(MOD, "msg=\"send failed\" err=%s n=%zu", cpx_strerror(rc), n);
        }
        for (size_t k = 0; k < n; k++) {
            pend_t *p = tab_find(a, a->stage[i + k].env->message_id.data);
            if (p)
                p->due = now + (full ? 1000 : a->o.resend_after_ms);
        }
        i += n;
    }
}

static int64_t backoff(const cpx_adapter_t *a, uint32_t attempts)
{
    int64_t d = a->o.resend_after_ms;
    for (uint32_t i = 0; i < attempts && d < a->o.backoff_max_ms; i++)
        d *= 2;
    return d < a->o.backoff_max_ms ? d : a->o.backoff_max_ms;
}

static void resend_due(cpx_adapter_t *a, int64_t now)
{
    /* While Acks keep coming the gateway is working through what we sent: resending
     * now would only add duplicates to its queue (and, under load, snowball). Resend
     * once it has been quiet for a while; lost frames are repaired then. */
    if (now - a->last_ack < a->o.resend_after_ms / 2)
        return;
    MDB_txn *rt = NULL;
    size_t budget = a->o.cycle_max;
    for (size_t k = 0; k < a->tab_cap && budget; k++) {
        pend_t *p = &a->tab[k];
        if (!p->used || p->due > now)
            continue;
        if (!rt && mdb_txn_begin(a->env, NULL, MDB_RDONLY, &rt) != MDB_SUCCESS)
            return;
        uint8_t kb[8];
        MDB_val key = pend_key(p, kb), v;
        size_t h = pend_hdr(key.mv_size);
        if (mdb_get(rt, a->db_pending, &key, &v) != MDB_SUCCESS || v.mv_size < h + 2) {
            p->due = now + a->o.backoff_max_ms; /* cannot happen: the table mirrors the spool */
            continue;
        }
        const uint8_t *b = (const uint8_t *)v.mv_data + h;
        size_t hdr = 2 + ((size_t)b[0] << 8 | b[1]);
        if (h + hdr > v.mv_size)
            continue;
        const uint8_t *env = b + hdr;
        size_t len = v.mv_size - h - hdr;
        int rc = send_envelopes(a, &env, &len, 1);
        if (rc == CPX_ERR_FULL)
            break;
        p->attempts++;
        p->due = now + backoff(a, p->attempts);
        a->c.resent++;
        budget--;
    }
    if (rt)
        mdb_txn_abort(rt);
}

/* The cycle's confirmations in DeliveryAcks frames (cpx_client_confirm_many splits them
 * at 1000 and at the frame size limit). */
static void send_confirms_grouped(cpx_adapter_t *a)
{
    cpx_client_confirmation_t *cs = malloc(a->n_conf * sizeof *cs);
    if (!cs)
        return; /* not confirmed now: the gateway redelivers, and they are confirmed again */
    for (size_t i = 0; i < a->n_conf; i++) {
        const confirm_t *c = &a->conf[i];
        cs[i] = (cpx_client_confirmation_t){
            .delivery_id = c->delivery_id, .message_id = c->id, .id_len = c->id_len,
            .status = c->ok ? CPX__V1__DELIVERY_STATUS__TAKEN : CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL,
            .reason = c->ok ? NULL : c->reason};
    }
    size_t sent = 0;
    cpx_client_confirm_many(a->client, cs, a->n_conf, &sent);
    a->c.confirmed += sent;
    free(cs);
    a->n_conf = 0;
}

static void send_confirms(cpx_adapter_t *a)
{
    if (a->grouped_peer && a->n_conf > 1) {
        send_confirms_grouped(a);
        return;
    }
    for (size_t i = 0; i < a->n_conf; i++) {
        confirm_t *c = &a->conf[i];
        int rc = cpx_client_confirm(a->client, c->delivery_id, c->id, c->id_len,
                                    c->ok ? CPX__V1__DELIVERY_STATUS__TAKEN
                                          : CPX__V1__DELIVERY_STATUS__REFUSED_BY_LOCAL,
                                    c->ok ? NULL : c->reason);
        if (rc == CPX_OK)
            a->c.confirmed++;
        /* a lost confirmation is repaired by the gateway's redelivery (deduped above) */
    }
    a->n_conf = 0;
}

static void log_status(cpx_adapter_t *a)
{
    cpx_log_info(MOD, "msg=status dept=%s spooled=%llu sent=%llu resent=%llu acked=%llu "
                      "nacked=%llu delivered=%llu confirmed=%llu failed=%llu pending=%zu "
                      "rejected=%zu duplicate_acks=%llu gateway=%s",
                 a->dept, (unsigned long long)a->c.spooled, (unsigned long long)a->c.sent,
                 (unsigned long long)a->c.resent, (unsigned long long)a->c.acked,
                 (unsigned long long)a->c.nacked, (unsigned long long)a->c.delivered,
                 (unsigned long long)a->c.confirmed, (unsigned long long)a->c.failed, a->tab_n,
                 a->rejected_n, (unsigned long long)a->c.duplicate_acks,
                 a->heard ? "up" : "silent");
}

int cpx_adapter_cycle(cpx_adapter_t *self, int wait_ms)
{
    cpx_adapter_t *a = self;
    zmq_pollitem_t items[1 + CPX_ADAPTER_MAX_FDS];
    items[0] = (zmq_pollitem_t){.socket = cpx_client_socket(a->client), .events = ZMQ_POLLIN};
    int n = 1;
    int timeout = wait_ms;
    if (a->conn->fds)
        n += a->conn->fds(a->conn_state, items + 1, CPX_ADAPTER_MAX_FDS, &timeout);
    if (zmq_poll(items, n, timeout) < 0 && zmq_errno() != EINTR)
        return CPX_ERR_NET;

    int rc = mdb_txn_begin(a->env, NULL, 0, &a->txn);
    if (rc != MDB_SUCCESS)
        return cpx_store_err(rc, "begin cycle");
    drain_frames(a);
    rc = a->conn->poll(a->conn_state, cpx_adapter_now_ms());
    if (rc != CPX_OK)
        cpx_log_warn(MOD, "msg=\"connector poll failed\" err=%s", cpx_strerror(rc));
    int64_t now = mono_ms();
    if (a->n_stage) {
        if ((rc = sign_stage(a)) != CPX_OK) {
            cpx_log_error(MOD, "msg=\"signing failed\" err=%s n=%zu", cpx_strerror(rc), a->n_stage);
            goto abort;
        }
        for (size_t i = 0; i < a->n_stage; i++) {
            staged_t *s = &a->stage[i];
            uint8_t kb[8];
            uint64_t seq = a->next_seq++;
            cpx_be64_put(kb, seq);
            MDB_val key = {8, kb}, val = {s->len, s->bytes};
            if ((rc = cpx_store_err(mdb_put(a->txn, a->db_pending, &key, &val,
                                            a->legacy ? 0 : MDB_APPEND), "spool put")) != CPX_OK ||
                (rc = tab_put(a, s->env->message_id.data, seq, now + a->o.resend_after_ms)) != CPX_OK)
                goto abort;
        }
        a->c.spooled += a->n_stage;
    }
    save_counters(a);
    rc = mdb_txn_commit(a->txn);
    a->txn = NULL;
    if (rc != MDB_SUCCESS) {
        rc = cpx_store_err(rc, "commit cycle");
        goto fail;
    }
    if (a->conn->committed)
        a->conn->committed(a->conn_state);
    unsigned handshakes = cpx_client_reconnected(a->client);
    if (handshakes) {
        /* A new connection starts with singular frames: say deliveries_per_frame on it
         * before this cycle's frames. After a reconnect the gateway may also be another
         * build: confirm singly until it shows it reads grouped frames (the first
         * connection's frames may already have shown it). */
        if (a->connections)
            a->grouped_peer = false;
        a->connections += handshakes;
        a->last_hb = now;
        cpx_client_heartbeat(a->client, cpx_adapter_now_ms());
    }
    send_staged(a, now);
    clear_stage(a);
    send_confirms(a);
    resend_due(a, now);
    if (now - a->last_hb >= a->o.heartbeat_ms) {
        a->last_hb = now;
        cpx_client_heartbeat(a->client, cpx_adapter_now_ms());
        if (a->heard && now - a->last_rx > 3LL * a->o.heartbeat_ms) {
            a->heard = false;
            cpx_log_warn(MOD, "msg=\"gateway silent\" since_ms=%lld pending=%zu",
                         (long long)(now - a->last_rx), a->tab_n);
        }
    }
    if (now - a->last_status >= a->o.status_every_ms) {
        a->last_status = now;
        log_status(a);
    }
    return CPX_OK;
abort:
    mdb_txn_abort(a->txn);
    a->txn = NULL;
fail:
    /* Memory (connector progress, timers) is now ahead of the spool: the caller must
     * stop; a restart resumes from what was committed. */
    clear_stage(a);
    return rc;
}

int cpx_adapter_run(cpx_adapter_t *self, volatile int *stop, int64_t max_ms)
{
    int64_t start = mono_ms();
    int rc = CPX_OK;
    while (!(stop && *stop)) {
        int64_t now = mono_ms();
        if (max_ms >= 0 && now - start >= max_ms)
            break;
        int wait = 200;
        if (max_ms >= 0 && max_ms - (now - start) < wait)
            wait = (int)(max_ms - (now - start));
        if ((rc = cpx_adapter_cycle(self, wait)) != CPX_OK)
            break;
    }
    log_status(self);
    return rc;
}

int cpx_adapter_spool_status(const char *spool_dir, cpx_adapter_counters_t *c, size_t *pending,
                             size_t *rejected)
{
    MDB_env *env;
    int rc = cpx_store_open(spool_dir, 0, MDB_RDONLY, &env);
    if (rc != CPX_OK)
        return rc;
    MDB_txn *txn;
    MDB_dbi p, r, d, s, m;
    rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc == MDB_SUCCESS) {
        rc = open_dbs(txn, 0, &p, &r, &d, &s, &m);
        if (rc == MDB_SUCCESS) {
            load_counters(txn, m, c);
            *pending = db_count(txn, p);
            *rejected = db_count(txn, r);
        }
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return cpx_store_err(rc, "spool status");
}
