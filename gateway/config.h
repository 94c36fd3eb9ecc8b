/* gateway/config.h — cpx-gateway configuration (YAML, libyaml).
 *
 * Every error names file:line:column and the key, and the gateway refuses to start
 * on any of them. Relative paths are resolved against the configuration file's
 * directory, so a deployment folder can be moved as a whole. */
#ifndef CPX_GW_CONFIG_H
#define CPX_GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CPX_GW_PATH_MAX 1024
#define CPX_GW_HTTP_USERS 64

/* Dashboard user: a name for the audit log and the SHA-256 of its bearer token. */
typedef struct cpx_gw_http_user {
    char name[64];
    uint8_t token_sha256[32];
} cpx_gw_http_user_t;

/* http: metrics, health and the dashboard (gateway/http.c). Off unless listen is set. */
typedef struct cpx_gw_http_config {
    char listen[64];                /* "127.0.0.1:9400"; port 0 = ephemeral; "" = off */
    uint32_t verify_interval_s;     /* replay the audit log this often; 0 = never */
    size_t n_users;
    cpx_gw_http_user_t users[CPX_GW_HTTP_USERS];
} cpx_gw_http_config_t;

typedef struct cpx_gw_config {
    char endpoint[256];             /* e.g. tcp://127.0.0.1:7400 */
    char data_dir[CPX_GW_PATH_MAX];
    size_t map_size;                /* bytes */
    uint64_t prefill;               /* bytes of zeros kept past the store's last page (0 = off) */
    char curve_secret[CPX_GW_PATH_MAX]; /* Z85 CURVE secret key file */
    char signing_key[CPX_GW_PATH_MAX];  /* Ed25519 private key, PEM (read by cpx-signer) */
    int signer_in_process;          /* keys.signer: in-process (0 = the cpx-signer process) */
    char signer_program[CPX_GW_PATH_MAX]; /* keys.signer_program; "" = beside cpx-gateway */
    char store_key[CPX_GW_PATH_MAX];    /* 32-byte key encrypting the message store at rest */
    char routes[CPX_GW_PATH_MAX];   /* routing rules (YAML); "" = built-in fallback */
    char cases[CPX_GW_PATH_MAX];    /* case policy (YAML, docs/cases.md); "" = no case tracking */
    char sealed[CPX_GW_PATH_MAX];   /* sealing policy (YAML, docs/sealed.md); "" = no vault */
    uint32_t heartbeat_ms;
    uint32_t offline_after_ms;
    uint32_t retry_base_ms;
    uint32_t retry_max_ms;
    uint32_t retry_max_attempts;
    uint32_t queue_limit;           /* waiting deliveries per department */
    uint32_t in_flight;             /* unconfirmed deliveries per department */
    uint32_t batch_max;             /* envelopes per poll cycle (group commit) */
    uint32_t status_interval_ms;    /* status record for cpxctl status */
    uint32_t auth_refused_per_key_ms; /* at most one AUTH_REFUSED leaf per key per ... */
    uint32_t auth_refused_per_min;  /* ... and at most this many per minute overall */
    int log_level;                  /* cpx_log_level */
    cpx_gw_http_config_t http;
} cpx_gw_config_t;

/* Fills cfg with defaults (everything but endpoint, data_dir and keys, which are
 * required in the file). */
void cpx_gw_config_defaults(cpx_gw_config_t *cfg);

/* Loads path over the defaults. CPX_OK, or CPX_ERR_CONFIG / CPX_ERR_IO with a
 * "file:line:col: key: problem" message written into err (always terminated). */
int cpx_gw_config_load(const char *path, cpx_gw_config_t *cfg, char *err, size_t err_size);

#endif
