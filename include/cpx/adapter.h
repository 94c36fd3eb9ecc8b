/* cpx/adapter.h — libcpx-adapter: what runs next to an agency's own system.
 *
 * An adapter owns one cpx_client connection to the gateway, a durable local spool
 * (an LMDB environment) and one connector (file, http, sql: a table of functions,
 * cpx_connector_t). The loop, cpx_adapter_run, repeats one *cycle*:
 *   1. read every server frame that is waiting: an Ack removes its submission from
 *      the spool, a non-retryable Nack moves it to the rejected area with its field
 *      errors, a retryable Nack reschedules it after retry_after_ms; a Deliver is
 *      handed to the connector (at most once per message id); an Acks or Deliveries
 *      frame is handled element by element, in order, exactly as its singular frames;
 *   2. let the connector poll its local system and submit new records;
 *   3. sign what was submitted (one Ed25519 signature per batch of up to `batch`
 *      envelopes, or per message), write it into the spool, and commit — ONE durable
 *      LMDB transaction per cycle (group commit), so nothing is sent before it is on
 *      disk and nothing acknowledged is forgotten;
 *   4. send the new submissions (a batch asks for its Acks in one Acks frame), delivery
 *      confirmations (those of the cycle in DeliveryAcks frames once the gateway has
 *      shown it reads grouped frames, singly before) and due resends.
 * Every heartbeat, and one right after each new connection to the gateway, carries
 * opts.client.deliveries_per_frame (0 means 64; 1 asks for one Deliver frame each).
 * Unacknowledged submissions are resent after resend_after_ms, doubling per attempt
 * up to backoff_max_ms, and at once when the gateway is heard again after silence.
 *
 * Connectors call the cpx_adapter_* functions below only from their callbacks (the
 * loop's thread), where the cycle's spool transaction is open.
 *
 * Caveats: one adapter per spool directory (LMDB allows readers alongside, which is
 * how `cpx-adapter --status` works). A submission's message id is its idempotency
 * key: derive it deterministically (cpx_adapter_derive_id) from the local record's
 * identity, so a record re-read after a crash is deduplicated by the gateway. */
#ifndef CPX_ADAPTER_H
#define CPX_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "cpx/client.h"
#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/err.h"

#define CPX_ADAPTER_ID_LEN 16
#define CPX_ADAPTER_MAX_ORIGIN 512   /* a submission's local origin, e.g. "f:roster.csv:0000000042" */
#define CPX_ADAPTER_MAX_FDS 16
/* A connector's deliver() returns this when it will finish later with
 * cpx_adapter_delivery_done. */
#define CPX_ADAPTER_PENDING 1

/* ---- configuration: a YAML document as a tree ------------------------------------ */

typedef struct cpx_conf cpx_conf_t;  /* one node: map, sequence or scalar */

/* Loads a YAML file. Caller owns the result, frees it with cpx_conf_destroy. NULL on
 * failure with err = "file:line:col: what". */
cpx_conf_t *cpx_conf_load(const char *path, char *err, size_t errlen);
void cpx_conf_destroy(cpx_conf_t **self_p);
/* A child of a map by key; key may be dotted ("file.dir"). NULL when absent or when
 * node is not a map. Borrowed, valid as long as the tree. */
const cpx_conf_t *cpx_conf_get(const cpx_conf_t *node, const char *key);
/* The scalar at key (or node itself when key is NULL), or dflt. Borrowed. */
const char *cpx_conf_str(const cpx_conf_t *node, const char *key, const char *dflt);
/* Integer at key, or dflt when absent; CPX_ERR_CONFIG (logged with file:line) when
 * present but not an integer in [min, max]. */
int cpx_conf_int(const cpx_conf_t *node, const char *key, long long dflt, long long min,
                 long long max, long long *out);
bool cpx_conf_is_map(const cpx_conf_t *node);
bool cpx_conf_is_seq(const cpx_conf_t *node);
/* Children of a map or sequence: count, i-th value, i-th key (NULL for sequences). */
size_t cpx_conf_len(const cpx_conf_t *node);
const cpx_conf_t *cpx_conf_at(const cpx_conf_t *node, size_t i);
const char *cpx_conf_key_at(const cpx_conf_t *node, size_t i);
/* Where the node is: "file:line". Borrowed. */
const char *cpx_conf_where(const cpx_conf_t *node, char *buf, size_t size);
/* A path value at key resolved against the folder of the file that holds it. */
int cpx_conf_path(const cpx_conf_t *node, const char *key, char *out, size_t size);

/* ---- source encodings -------------------------------------------------------------- */

typedef struct cpx_transcoder cpx_transcoder_t;

/* UTF-8, GB18030 or GBK (case-insensitive; "GB2312" is read as GBK). NULL for any
 * other name. Caller owns it; free with cpx_transcoder_destroy. */
cpx_transcoder_t *cpx_transcoder_new(const char *encoding);
void cpx_transcoder_destroy(cpx_transcoder_t **self_p);
/* Converts one complete line (bytes up to and including '\n') to UTF-8. A BOM at the
 * very start of the first line is dropped. The result is borrowed until the next
 * call. CPX_ERR_DECODE when a byte sequence is invalid in the encoding: *bad_offset
 * receives its offset within the line; nothing is replaced, ever. */
int cpx_transcode_line(cpx_transcoder_t *self, const char *in, size_t len, const char **out,
                       size_t *out_len, size_t *bad_offset);
const char *cpx_transcoder_name(const cpx_transcoder_t *self);

/* ---- mappings: local record -> envelope ------------------------------------------- */

typedef struct cpx_mapping cpx_mapping_t;

/* A local record: the value of a local field as UTF-8, or NULL when the record has no
 * such field. */
typedef const char *(*cpx_record_get_fn)(void *ctx, const char *local_field);

/* Loads a mapping (docs/adapters.md, "Mappings"). Caller owns it; free with
 * cpx_mapping_destroy. NULL on failure with err = "file:line: what". Every target
 * path is checked against the schema at load time. */
cpx_mapping_t *cpx_mapping_load(const char *path, char *err, size_t errlen);
void cpx_mapping_destroy(cpx_mapping_t **self_p);
/* The declared source encoding ("UTF-8" when none), input format ("csv" when none),
 * CSV delimiter, and the local field naming a record in errors (may be NULL). */
const char *cpx_mapping_encoding(const cpx_mapping_t *m);
const char *cpx_mapping_format(const cpx_mapping_t *m);
char cpx_mapping_delimiter(const cpx_mapping_t *m);
const char *cpx_mapping_record_key(const cpx_mapping_t *m);
/* Checks a CSV header: every local field the mapping reads must be a column. Adds one
 * error per missing column; CPX_ERR_INVALID when any is missing. */
int cpx_mapping_check_columns(const cpx_mapping_t *m, const char *const *cols, size_t n,
                              cpx_errors_t *errs);
/* Builds an envelope from one record. On success *out is the caller's (cpx_msg_free).
 * CPX_ERR_INVALID with errs naming "local field -> schema path", the rule and why. */
int cpx_mapping_apply(const cpx_mapping_t *m, cpx_record_get_fn get, void *ctx,
                      cpx_envelope_t **out, cpx_errors_t *errs);

/* ---- JSON form used by the connectors (cpx/json.h, docs/json.md) ----------------- */

/* An envelope from its JSON form, without message_id, sender or signature (the
 * adapter sets them). On success *out is the caller's (cpx_msg_free). CPX_ERR_INVALID
 * with errs (path + rule) on bad input. */
int cpx_adapter_json_to_envelope(const char *json, size_t len, cpx_envelope_t **out,
                                 cpx_errors_t *errs);
/* A delivery as one line of JSON: {"delivery_id","message_id","sender","case_id",
 * "created_ms","priority","in_reply_to","body_kind","withheld","body"} with the body
 * in the JSON form. Caller frees the result with free(). NULL on failure. */
char *cpx_adapter_delivery_json(uint64_t delivery_id, const cpx_envelope_t *env,
                                const uint32_t *withheld, size_t n_withheld);

/* ---- the adapter ------------------------------------------------------------------ */

typedef struct cpx_adapter cpx_adapter_t;

typedef struct cpx_adapter_counters {
    uint64_t spooled;    /* submissions written to the spool */
    uint64_t sent;       /* envelopes sent, resends included */
    uint64_t resent;
    uint64_t acked;      /* Acks that removed a still-pending spool entry */
    uint64_t nacked;     /* non-retryable Nacks: moved to the rejected area */
    uint64_t delivered;  /* deliveries handed to the connector */
    uint64_t confirmed;  /* DeliveryAcks sent */
    uint64_t failed;     /* local rejections (mapping, encoding) and refused deliveries */
    uint64_t duplicate_acks; /* Acks for entries no longer pending (answers to resends) */
} cpx_adapter_counters_t;

typedef struct cpx_adapter_delivery {
    uint64_t delivery_id;
    const cpx_envelope_t *envelope;  /* borrowed for the call */
    const uint32_t *withheld;
    size_t n_withheld;
    uint32_t attempt;
} cpx_adapter_delivery_t;

typedef struct cpx_connector {
    const char *name;                /* the config's `connector:` value */
    const char *const *config_keys;  /* keys read under the connector's section */
    /* Opens with its config section (may be NULL); *state is the connector's. */
    int (*open)(cpx_adapter_t *a, const cpx_conf_t *section, void **state);
    /* Adds file descriptors to wait on (returns how many, at most max) and may lower
     * *timeout_ms. May be NULL. */
    int (*fds)(void *state, zmq_pollitem_t *items, int max, int *timeout_ms);
    /* Every cycle, inside the spool transaction: read the local system, submit. */
    int (*poll)(void *state, int64_t now_ms);
    /* The fate of a submission, inside the transaction: acked (ok) or rejected (reason
     * "path: rule: message; ..."). May be NULL. */
    void (*result)(void *state, const char *origin, const uint8_t id[CPX_ADAPTER_ID_LEN],
                   bool ok, const char *reason);
    /* A delivery for the local system: CPX_OK taken; CPX_ERR_REFUSED refused for good
     * (reason filled); CPX_ADAPTER_PENDING when it will call cpx_adapter_delivery_done;
     * any other error: not taken now (the gateway redelivers). */
    int (*deliver)(void *state, const cpx_adapter_delivery_t *d, char *reason, size_t rsize);
    /* After each durable commit (the moment to publish local effects). May be NULL. */
    void (*committed)(void *state);
    void (*close)(void *state);
} cpx_connector_t;

typedef struct cpx_adapter_opts {
    cpx_client_opts_t client;    /* endpoint and CURVE keys */
    const char *dept;            /* this department's code: every envelope's sender */
    const char *spool_dir;
    size_t spool_map_size;       /* 0: 1 GiB */
    const cpx_key_t *sign_key;   /* borrowed; must outlive the adapter */
    const uint8_t *id_key;       /* 32 bytes keying cpx_adapter_derive_id; borrowed */
    unsigned batch;              /* envelopes per batch signature; 0/1: per message */
    unsigned max_pending;        /* unacknowledged submissions before reading pauses; 0: 50000 */
    unsigned cycle_max;          /* submissions per cycle; 0: 2000 */
    int resend_after_ms;         /* 0: 10000 */
    int backoff_max_ms;          /* 0: 300000 */
    int heartbeat_ms;            /* 0: 5000 */
    int status_every_ms;         /* 0: 30000 */
} cpx_adapter_opts_t;

/* Opens the spool and connects. Caller owns the result; free with cpx_adapter_destroy
 * (which closes the connector). NULL on failure (logged). */
cpx_adapter_t *cpx_adapter_new(const cpx_adapter_opts_t *opts, const cpx_connector_t *conn,
                               const cpx_conf_t *conn_section);
void cpx_adapter_destroy(cpx_adapter_t **self_p);

/* Runs cycles until *stop becomes nonzero (a signal handler may set it) or, when
 * max_ms >= 0, until max_ms have passed. CPX_OK, or the error that stopped it. */
int cpx_adapter_run(cpx_adapter_t *self, volatile int *stop, int64_t max_ms);
/* One cycle, waiting up to wait_ms for something to do. */
int cpx_adapter_cycle(cpx_adapter_t *self, int wait_ms);

/* Submits an envelope: takes ownership of env (cpx_msg_free-able) and sets *env_p to
 * NULL. Fills sender, created_ms (when 0) and message_id (random when id is NULL).
 * origin (<= CPX_ADAPTER_MAX_ORIGIN) names the local record for results and errors.
 * Spooled at this cycle's commit. CPX_ERR_FULL when the spool or the cycle is full:
 * try again next cycle. */
int cpx_adapter_submit(cpx_adapter_t *self, cpx_envelope_t **env_p,
                       const uint8_t id[CPX_ADAPTER_ID_LEN], const char *origin);
/* True while more submissions fit in this cycle and under max_pending. */
bool cpx_adapter_can_submit(const cpx_adapter_t *self);
/* How many more submissions fit in this cycle (0 outside a cycle): lets a connector
 * fetch no more local records than it can submit. */
size_t cpx_adapter_room(const cpx_adapter_t *self);
/* True when max_pending submissions are unacknowledged: reading should wait for Acks
 * (the gateway's socket wakes the loop), not spin. */
bool cpx_adapter_backlogged(const cpx_adapter_t *self);
/* Records a local rejection (mapping or encoding error) in the rejected area under
 * origin, without sending anything. Counted as failed. */
int cpx_adapter_reject(cpx_adapter_t *self, const char *origin, const char *reason);
/* HMAC-SHA-256(id_key, ident) truncated to 16 bytes: a stable message id. */
void cpx_adapter_derive_id(const cpx_adapter_t *self, const void *ident, size_t len,
                           uint8_t out[CPX_ADAPTER_ID_LEN]);

/* Connector state kept in the spool, committed with the cycle. get copies at most
 * size bytes and returns the stored length (CPX_ERR_NOT_FOUND when absent). */
int cpx_adapter_state_put(cpx_adapter_t *self, const char *key, const void *val, size_t len);
int cpx_adapter_state_get(cpx_adapter_t *self, const char *key, void *val, size_t size);
int cpx_adapter_state_del(cpx_adapter_t *self, const char *key);

/* Visits every unacknowledged submission's origin (e.g. to count per file at open)
 * and every rejected entry whose origin starts with prefix. Return nonzero from fn
 * to stop. */
int cpx_adapter_foreach_pending(cpx_adapter_t *self,
                                int (*fn)(void *ctx, const char *origin), void *ctx);
int cpx_adapter_foreach_rejected(cpx_adapter_t *self, const char *prefix,
                                 int (*fn)(void *ctx, const char *origin, const char *reason),
                                 void *ctx);

/* Finishes a delivery the connector answered CPX_ADAPTER_PENDING: taken (ok) or
 * refused for good (reason). Confirmed to the gateway after the next commit. */
int cpx_adapter_delivery_done(cpx_adapter_t *self, uint64_t delivery_id,
                              const uint8_t *message_id, size_t id_len, bool ok,
                              const char *reason);

/* Counters as of the last commit. */
void cpx_adapter_counters(const cpx_adapter_t *self, cpx_adapter_counters_t *out);
size_t cpx_adapter_pending_count(const cpx_adapter_t *self);
const char *cpx_adapter_dept(const cpx_adapter_t *self);
int64_t cpx_adapter_now_ms(void);

/* Reads the counters and the number of pending and rejected entries from a spool
 * directory without disturbing a running adapter. */
int cpx_adapter_spool_status(const char *spool_dir, cpx_adapter_counters_t *c,
                             size_t *pending, size_t *rejected);

/* ---- connectors built into cpx-adapter ------------------------------------------- */

extern const cpx_connector_t cpx_connector_file;
extern const cpx_connector_t cpx_connector_http;
extern const cpx_connector_t cpx_connector_sql;

#endif
