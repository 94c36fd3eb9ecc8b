/* config.c — the gateway's YAML configuration, with file:line:col in every error. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/log.h"

void cpx_gw_config_defaults(cpx_gw_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->map_size = (size_t)4 << 30;
    cfg->prefill = (uint64_t)32 << 20;
    cfg->heartbeat_ms = 1000;
    cfg->offline_after_ms = 5000;
    cfg->retry_base_ms = 2000;
    cfg->retry_max_ms = 1800000;
    cfg->retry_max_attempts = 60;
    cfg->queue_limit = 2000000;
    cfg->in_flight = 256;
    cfg->batch_max = 4096;
    cfg->status_interval_ms = 1000;
    cfg->auth_refused_per_key_ms = 60000;
    cfg->auth_refused_per_min = 60;
    cfg->log_level = CPX_LOG_INFO;
    cfg->http.verify_interval_s = 3600;
}

typedef struct ctx {
    const char *file;
    char dir[CPX_GW_PATH_MAX];
    yaml_document_t *doc;
    yaml_node_t *offline_node, *retry_max_node;  /* for cross-field errors */
    char *err;
    size_t err_size;
} ctx_t;

static int fail(ctx_t *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ctx_t *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_size, "%s:%zu:%zu: %s%s%s", c->file,
             n ? n->start_mark.line + 1 : 1, n ? n->start_mark.column + 1 : 1,
             key ? key : "", key ? ": " : "", msg);
    return CPX_ERR_CONFIG;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_str(ctx_t *c, const yaml_node_t *n, const char *key, char *out, size_t size)
{
    const char *s = scalar(n);
    if (!s)
        return fail(c, n, key, "expected a string");
    if (!*s)
        return fail(c, n, key, "must not be empty");
    if (strlen(s) >= size)
        return fail(c, n, key, "longer than %zu bytes", size - 1);
    memcpy(out, s, strlen(s) + 1);
    return CPX_OK;
}

static int get_path(ctx_t *c, const yaml_node_t *n, const char *key, char *out, size_t size)
{
    char tmp[CPX_GW_PATH_MAX];
    int rc = get_str(c, n, key, tmp, sizeof tmp);
    if (rc)
        return rc;
    int w = tmp[0] == '/' ? snprintf(out, size, "%s", tmp)
                          : snprintf(out, size, "%s/%s", c->dir, tmp);
    if (w < 0 || (size_t)w >= size)
        return fail(c, n, key, "path too long");
    return CPX_OK;
}

/* Unsigned integer with optional size suffix (KiB, MiB, GiB, TiB) within [lo, hi]. */
static int get_u64(ctx_t *c, const yaml_node_t *n, const char *key, uint64_t lo, uint64_t hi,
                   int sizes, uint64_t *out)
{
    const char *s = scalar(n);
    if (!s || !*s || *s == '-' || *s == '+')
        return fail(c, n, key, "expected a non-negative integer");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return fail(c, n, key, "expected a non-negative integer, got '%s'", s);
    uint64_t mul = 1;
    if (*end) {
        static const struct { const char *sfx; uint64_t mul; } sf[] = {
            {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
        size_t i;
        for (i = 0; i < sizeof sf / sizeof sf[0]; i++)
            if (sizes && !strcmp(end, sf[i].sfx))
                break;
        if (i == sizeof sf / sizeof sf[0])
            return fail(c, n, key, "unexpected '%s' after the number%s", end,
                        sizes ? " (units: KiB, MiB, GiB, TiB)" : "");
        mul = sf[i].mul;
    }
    if (v > UINT64_MAX / mul)
        return fail(c, n, key, "too large");
    v *= mul;
    if (v < lo || v > hi)
        return fail(c, n, key, "%llu is out of range [%" PRIu64 ", %" PRIu64 "]", v, lo, hi);
    *out = v;
    return CPX_OK;
}

static int get_u32(ctx_t *c, const yaml_node_t *n, const char *key, uint32_t lo, uint32_t hi,
                   uint32_t *out)
{
    uint64_t v;
    int rc = get_u64(c, n, key, lo, hi, 0, &v);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

static int load_retry(ctx_t *c, yaml_node_t *map, cpx_gw_config_t *cfg)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "retry", "expected a mapping (base_ms, max_ms, max_attempts)");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k);
        int rc;
        if (!name)
            return fail(c, k, "retry", "keys must be strings");
        if (!strcmp(name, "base_ms"))
            rc = get_u32(c, v, "retry.base_ms", 1, 3600000, &cfg->retry_base_ms);
        else if (!strcmp(name, "max_ms"))
            rc = get_u32(c, (c->retry_max_node = v), "retry.max_ms", 1, 86400000, &cfg->retry_max_ms);
        else if (!strcmp(name, "max_attempts"))
            rc = get_u32(c, v, "retry.max_attempts", 1, 1000000, &cfg->retry_max_attempts);
        else
            rc = fail(c, k, "retry", "unknown key '%s' (base_ms, max_ms, max_attempts)", name);
        if (rc)
            return rc;
    }
    return CPX_OK;
}

/* keys.signer: process (default: the key lives in cpx-signer) or in-process. */
static int get_signer_mode(ctx_t *c, const yaml_node_t *v, cpx_gw_config_t *cfg)
{
    const char *s = scalar(v);
    if (s && !strcmp(s, "process"))
        cfg->signer_in_process = 0;
    else if (s && !strcmp(s, "in-process"))
        cfg->signer_in_process = 1;
    else
        return fail(c, v, "keys.signer", "expected process or in-process");
    return CPX_OK;
}

static int load_keys(ctx_t *c, yaml_node_t *map, cpx_gw_config_t *cfg)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "keys", "expected a mapping (curve_secret, signing_key, store_key, "
                                    "signer, signer_program)");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k);
        int rc;
        if (!name)
            return fail(c, k, "keys", "keys must be strings");
        if (!strcmp(name, "curve_secret"))
            rc = get_path(c, v, "keys.curve_secret", cfg->curve_secret, sizeof cfg->curve_secret);
        else if (!strcmp(name, "signing_key"))
            rc = get_path(c, v, "keys.signing_key", cfg->signing_key, sizeof cfg->signing_key);
        else if (!strcmp(name, "store_key"))
            rc = get_path(c, v, "keys.store_key", cfg->store_key, sizeof cfg->store_key);
        else if (!strcmp(name, "signer"))
            rc = get_signer_mode(c, v, cfg);
        else if (!strcmp(name, "signer_program"))
            rc = get_path(c, v, "keys.signer_program", cfg->signer_program,
                          sizeof cfg->signer_program);
        else
            rc = fail(c, k, "keys", "unknown key '%s' (curve_secret, signing_key, store_key, "
                                    "signer, signer_program)", name);
        if (rc)
            return rc;
    }
    return CPX_OK;
}

/* http: {listen: "127.0.0.1:9400", verify_interval_s: N,
 *        users: [{name: office1, token_sha256: <64 hex>}, ...]} */
static int load_http_user(ctx_t *c, yaml_node_t *map, cpx_gw_http_config_t *h)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "http.users", "each user is a mapping (name, token_sha256)");
    if (h->n_users == CPX_GW_HTTP_USERS)
        return fail(c, map, "http.users", "at most %d users", CPX_GW_HTTP_USERS);
    cpx_gw_http_user_t *u = &h->users[h->n_users];
    int have_token = 0;
    memset(u, 0, sizeof *u);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k), *val = scalar(v);
        if (name && !strcmp(name, "name")) {
            int rc = get_str(c, v, "http.users.name", u->name, sizeof u->name);
            if (rc)
                return rc;
            for (const char *q = u->name; *q; q++)
                if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                      *q == '_' || *q == '-' || *q == '.'))
                    return fail(c, v, "http.users.name", "use letters, digits, '_', '-', '.'");
        } else if (name && !strcmp(name, "token_sha256")) {
            if (!val || strlen(val) != 64 || cpx_unhex(val, u->token_sha256, 32))
                return fail(c, v, "http.users.token_sha256",
                            "expected 64 hex digits (printf %%s TOKEN | sha256sum)");
            have_token = 1;
        } else {
            return fail(c, k, "http.users", "unknown key '%s' (name, token_sha256)", name ? name : "?");
        }
    }
    if (!u->name[0] || !have_token)
        return fail(c, map, "http.users", "each user needs name and token_sha256");
    for (size_t i = 0; i < h->n_users; i++)
        if (!strcmp(h->users[i].name, u->name))
            return fail(c, map, "http.users", "user '%s' listed twice", u->name);
    h->n_users++;
    return CPX_OK;
}

static int load_http(ctx_t *c, yaml_node_t *map, cpx_gw_config_t *cfg)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "http", "expected a mapping (listen, verify_interval_s, users)");
    cpx_gw_http_config_t *h = &cfg->http;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k);
        int rc = CPX_OK;
        if (!name)
            return fail(c, k, "http", "keys must be strings");
        if (!strcmp(name, "listen")) {
            rc = get_str(c, v, "http.listen", h->listen, sizeof h->listen);
            const char *colon = rc ? NULL : strrchr(h->listen, ':');
            char *end = NULL;
            unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
            if (!rc && (!colon || colon == h->listen || !colon[1] || *end || port > 65535))
                rc = fail(c, v, "http.listen", "expected IPv4-ADDRESS:PORT, e.g. 127.0.0.1:9400");
        } else if (!strcmp(name, "verify_interval_s")) {
            rc = get_u32(c, v, "http.verify_interval_s", 0, 30 * 86400, &h->verify_interval_s);
        } else if (!strcmp(name, "users")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return fail(c, v, "http.users", "expected a list of {name, token_sha256}");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top && !rc; it++)
                rc = load_http_user(c, yaml_document_get_node(c->doc, *it), h);
        } else {
            rc = fail(c, k, "http", "unknown key '%s' (listen, verify_interval_s, users)", name);
        }
        if (rc)
            return rc;
    }
    return CPX_OK;
}

static int load_root(ctx_t *c, yaml_node_t *root, cpx_gw_config_t *cfg)
{
    if (!root)
        return fail(c, NULL, NULL, "empty configuration");
    if (root->type != YAML_MAPPING_NODE)
        return fail(c, root, NULL, "expected a mapping at the top level");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k);
        int rc;
        uint64_t u64;
        if (!name)
            return fail(c, k, NULL, "keys must be strings");
        if (!strcmp(name, "endpoint")) {
            rc = get_str(c, v, name, cfg->endpoint, sizeof cfg->endpoint);
            if (!rc && strncmp(cfg->endpoint, "tcp://", 6) && strncmp(cfg->endpoint, "ipc://", 6))
                rc = fail(c, v, name, "must start with tcp:// or ipc://");
        } else if (!strcmp(name, "data_dir")) {
            rc = get_path(c, v, name, cfg->data_dir, sizeof cfg->data_dir);
        } else if (!strcmp(name, "map_size")) {
            rc = get_u64(c, v, name, (uint64_t)1 << 20, (uint64_t)1 << 40, 1, &u64);
            if (!rc)
                cfg->map_size = (size_t)u64;
        } else if (!strcmp(name, "prefill")) {
            rc = get_u64(c, v, name, 0, (uint64_t)1 << 40, 1, &cfg->prefill);
        } else if (!strcmp(name, "keys")) {
            rc = load_keys(c, v, cfg);
        } else if (!strcmp(name, "routes")) {
            rc = get_path(c, v, name, cfg->routes, sizeof cfg->routes);
        } else if (!strcmp(name, "cases")) {
            rc = get_path(c, v, name, cfg->cases, sizeof cfg->cases);
        } else if (!strcmp(name, "sealed")) {
            rc = get_path(c, v, name, cfg->sealed, sizeof cfg->sealed);
        } else if (!strcmp(name, "heartbeat_ms")) {
            rc = get_u32(c, v, name, 50, 600000, &cfg->heartbeat_ms);
        } else if (!strcmp(name, "offline_after_ms")) {
            rc = get_u32(c, (c->offline_node = v), name, 100, 86400000, &cfg->offline_after_ms);
        } else if (!strcmp(name, "retry")) {
            rc = load_retry(c, v, cfg);
        } else if (!strcmp(name, "queue_limit")) {
            rc = get_u32(c, v, name, 1, 100000000, &cfg->queue_limit);
        } else if (!strcmp(name, "in_flight")) {
            rc = get_u32(c, v, name, 1, 65536, &cfg->in_flight);
        } else if (!strcmp(name, "batch_max")) {
            rc = get_u32(c, v, name, 1, 65536, &cfg->batch_max);
        } else if (!strcmp(name, "head_interval")) {
            /* Every committed cycle signs one head and its Acks carry that head's size
             * (docs/protocol.md): a longer interval would hold Acks back for a head. */
            const char *s = scalar(v);
            rc = s && (!strcmp(s, "batch") || !strcmp(s, "1"))
                     ? CPX_OK
                     : fail(c, v, name, "only batch (one signed head per committed cycle) is supported");
        } else if (!strcmp(name, "status_interval_ms")) {
            rc = get_u32(c, v, name, 100, 3600000, &cfg->status_interval_ms);
        } else if (!strcmp(name, "auth_refused_per_key_ms")) {
            rc = get_u32(c, v, name, 0, 86400000, &cfg->auth_refused_per_key_ms);
        } else if (!strcmp(name, "auth_refused_per_min")) {
            rc = get_u32(c, v, name, 1, 100000, &cfg->auth_refused_per_min);
        } else if (!strcmp(name, "http")) {
            rc = load_http(c, v, cfg);
        } else if (!strcmp(name, "log_level")) {
            const char *s = scalar(v);
            int lvl = s ? cpx_log_level_parse(s) : -1;
            rc = lvl < 0 ? fail(c, v, name, "expected error, warn, info or debug") : CPX_OK;
            if (!rc)
                cfg->log_level = lvl;
        } else {
            rc = fail(c, k, NULL, "unknown key '%s'", name);
        }
        if (rc)
            return rc;
    }
    static const struct { size_t off; const char *name; } required[] = {
        {offsetof(cpx_gw_config_t, endpoint), "endpoint"},
        {offsetof(cpx_gw_config_t, data_dir), "data_dir"},
        {offsetof(cpx_gw_config_t, curve_secret), "keys.curve_secret"},
        {offsetof(cpx_gw_config_t, signing_key), "keys.signing_key"},
        {offsetof(cpx_gw_config_t, store_key), "keys.store_key"},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!((const char *)cfg)[required[i].off])
            return fail(c, root, required[i].name, "required");
    if (!strcmp(cfg->store_key, cfg->signing_key) || !strcmp(cfg->store_key, cfg->curve_secret))
        return fail(c, root, "keys.store_key", "must be a key file of its own (not the signing or CURVE key)");
    if (cfg->offline_after_ms <= cfg->heartbeat_ms)
        return fail(c, c->offline_node ? c->offline_node : root, "offline_after_ms", "must be greater than heartbeat_ms (%u)",
                    cfg->heartbeat_ms);
    if (cfg->retry_max_ms < cfg->retry_base_ms)
        return fail(c, c->retry_max_node ? c->retry_max_node : root, "retry.max_ms", "must be at least retry.base_ms (%u)",
                    cfg->retry_base_ms);
    return CPX_OK;
}

int cpx_gw_config_load(const char *path, cpx_gw_config_t *cfg, char *err, size_t err_size)
{
    ctx_t c = {.file = path, .err = err, .err_size = err_size};
    err[0] = '\0';
    char tmp[CPX_GW_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(c.dir, sizeof c.dir, "%s", dirname(tmp));

    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return CPX_ERR_IO;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        snprintf(err, err_size, "%s: libyaml initialisation failed", path);
        return CPX_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_size, "%s:%zu:%zu: %s%s%s", path, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "parse error",
                 parser.context ? " " : "", parser.context ? parser.context : "");
        rc = CPX_ERR_CONFIG;
    } else {
        c.doc = &doc;
        rc = load_root(&c, yaml_document_get_root_node(&doc), cfg);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
