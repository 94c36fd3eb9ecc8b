/* conf.c — a YAML document loaded into a small tree (libyaml's event parser), with
 * file:line kept on every node so configuration errors can say where. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cpx/adapter.h"
#include "cpx/log.h"

#define CONF_MAX_DEPTH 32
#define CONF_MAX_NODES 100000

enum { N_SCALAR, N_MAP, N_SEQ };

struct cpx_conf {
    int type;
    int line;
    char *value;          /* scalar */
    char **keys;          /* map */
    cpx_conf_t **items;   /* map values / sequence items */
    size_t n, cap;
    const char *file;     /* shared, owned by the root */
    char *file_owned;
};

static void node_free(cpx_conf_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->value);
    free(n->file_owned);
    free(n);
}

void cpx_conf_destroy(cpx_conf_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    node_free(*self_p);
    *self_p = NULL;
}

static int add_child(cpx_conf_t *parent, char *key, cpx_conf_t *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        cpx_conf_t **items = realloc(parent->items, cap * sizeof *items);
        if (!items)
            return -1;
        parent->items = items;
        if (parent->type == N_MAP) {
            char **keys = realloc(parent->keys, cap * sizeof *keys);
            if (!keys)
                return -1;
            parent->keys = keys;
        }
        parent->cap = cap;
    }
    if (parent->type == N_MAP)
        parent->keys[parent->n] = key;
    parent->items[parent->n++] = child;
    return 0;
}

typedef struct loader {
    yaml_parser_t parser;
    const char *file;
    char *err;
    size_t errlen;
    size_t nodes;
} loader_t;

static cpx_conf_t *new_node(loader_t *l, int type, int line)
{
    if (++l->nodes > CONF_MAX_NODES)
        return NULL;
    cpx_conf_t *n = calloc(1, sizeof *n);
    if (n) {
        n->type = type;
        n->line = line;
        n->file = l->file;
    }
    return n;
}

/* Parses the node whose first event is ev (consumed by the caller). */
static cpx_conf_t *parse_node(loader_t *l, yaml_event_t *ev, int depth)
{
    int line = (int)ev->start_mark.line + 1;
    if (depth > CONF_MAX_DEPTH) {
        snprintf(l->err, l->errlen, "%s:%d: nested too deeply", l->file, line);
        return NULL;
    }
    if (ev->type == YAML_SCALAR_EVENT) {
        cpx_conf_t *n = new_node(l, N_SCALAR, line);
        if (n && !(n->value = strndup((char *)ev->data.scalar.value, ev->data.scalar.length))) {
            node_free(n);
            n = NULL;
        }
        return n;
    }
    if (ev->type == YAML_ALIAS_EVENT) {
        snprintf(l->err, l->errlen, "%s:%d: aliases are not supported", l->file, line);
        return NULL;
    }
    int is_map = ev->type == YAML_MAPPING_START_EVENT;
    if (!is_map && ev->type != YAML_SEQUENCE_START_EVENT) {
        snprintf(l->err, l->errlen, "%s:%d: unexpected YAML event", l->file, line);
        return NULL;
    }
    cpx_conf_t *n = new_node(l, is_map ? N_MAP : N_SEQ, line);
    if (!n)
        return NULL;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&l->parser, &e))
            goto bad;
        if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            return n;
        }
        char *key = NULL;
        if (is_map) {
            if (e.type != YAML_SCALAR_EVENT) {
                snprintf(l->err, l->errlen, "%s:%d: map keys must be plain scalars", l->file,
                         (int)e.start_mark.line + 1);
                yaml_event_delete(&e);
                node_free(n);
                return NULL;
            }
            key = strndup((char *)e.data.scalar.value, e.data.scalar.length);
            yaml_event_delete(&e);
            if (!key || !yaml_parser_parse(&l->parser, &e)) {
                free(key);
                goto bad;
            }
        }
        cpx_conf_t *child = parse_node(l, &e, depth + 1);
        yaml_event_delete(&e);
        if (!child || add_child(n, key, child) != 0) {
            free(key);
            node_free(child);
            node_free(n);
            return NULL;
        }
    }
bad:
    if (!l->err[0])
        snprintf(l->err, l->errlen, "%s:%zu:%zu: %s", l->file, l->parser.problem_mark.line + 1,
                 l->parser.problem_mark.column + 1,
                 l->parser.problem ? l->parser.problem : "YAML syntax error");
    node_free(n);
    return NULL;
}

cpx_conf_t *cpx_conf_load(const char *path, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    loader_t l = {.file = path, .err = err, .errlen = errlen};
    char *file_owned = strdup(path);
    l.file = file_owned ? file_owned : path;
    yaml_parser_initialize(&l.parser);
    yaml_parser_set_input_file(&l.parser, f);
    cpx_conf_t *root = NULL;
    yaml_event_t e;
    /* stream start, document start, then the root node */
    for (;;) {
        if (!yaml_parser_parse(&l.parser, &e)) {
            snprintf(err, errlen, "%s:%zu:%zu: %s", path, l.parser.problem_mark.line + 1,
                     l.parser.problem_mark.column + 1,
                     l.parser.problem ? l.parser.problem : "YAML syntax error");
            break;
        }
        if (e.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&e);
            break;
        }
        if (e.type == YAML_STREAM_START_EVENT || e.type == YAML_DOCUMENT_START_EVENT ||
            e.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&e);
            continue;
        }
        if (root) { /* a second document */
            yaml_event_delete(&e);
            break;
        }
        root = parse_node(&l, &e, 0);
        yaml_event_delete(&e);
        if (!root)
            break;
    }
    yaml_parser_delete(&l.parser);
    fclose(f);
    if (!root) {
        if (!err[0])
            snprintf(err, errlen, "%s: empty document", path);
        free(file_owned);
        return NULL;
    }
    if (root->type != N_MAP) {
        snprintf(err, errlen, "%s:%d: the document must be a map", path, root->line);
        node_free(root);
        free(file_owned);
        return NULL;
    }
    root->file_owned = file_owned;
    return root;
}

static const cpx_conf_t *get1(const cpx_conf_t *n, const char *key, size_t klen)
{
    if (!n || n->type != N_MAP)
        return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strlen(n->keys[i]) == klen && memcmp(n->keys[i], key, klen) == 0)
            return n->items[i];
    return NULL;
}

const cpx_conf_t *cpx_conf_get(const cpx_conf_t *node, const char *key)
{
    if (!key)
        return node;
    while (node && *key) {
        const char *dot = strchr(key, '.');
        size_t len = dot ? (size_t)(dot - key) : strlen(key);
        node = get1(node, key, len);
        key += len + (dot ? 1 : 0);
    }
    return node;
}

const char *cpx_conf_str(const cpx_conf_t *node, const char *key, const char *dflt)
{
    const cpx_conf_t *n = cpx_conf_get(node, key);
    return n && n->type == N_SCALAR ? n->value : dflt;
}

const char *cpx_conf_where(const cpx_conf_t *node, char *buf, size_t size)
{
    if (!node)
        snprintf(buf, size, "?");
    else
        snprintf(buf, size, "%s:%d", node->file, node->line);
    return buf;
}

int cpx_conf_int(const cpx_conf_t *node, const char *key, long long dflt, long long min,
                 long long max, long long *out)
{
    const cpx_conf_t *n = cpx_conf_get(node, key);
    *out = dflt;
    if (!n)
        return CPX_OK;
    char where[300];
    if (n->type != N_SCALAR) {
        cpx_log_error("conf", "msg=\"not a number\" key=%s at=\"%s\"", key ? key : "",
                      cpx_conf_where(n, where, sizeof where));
        return CPX_ERR_CONFIG;
    }
    char *end;
    errno = 0;
    long long v = strtoll(n->value, &end, 10);
    if (errno || end == n->value || *end || v < min || v > max) {
        cpx_log_error("conf", "msg=\"integer out of range\" key=%s at=\"%s\" min=%lld max=%lld",
                      key ? key : "", cpx_conf_where(n, where, sizeof where), min, max);
        return CPX_ERR_CONFIG;
    }
    *out = v;
    return CPX_OK;
}

bool cpx_conf_is_map(const cpx_conf_t *node) { return node && node->type == N_MAP; }
bool cpx_conf_is_seq(const cpx_conf_t *node) { return node && node->type == N_SEQ; }
size_t cpx_conf_len(const cpx_conf_t *node)
{
    return node && node->type != N_SCALAR ? node->n : 0;
}
const cpx_conf_t *cpx_conf_at(const cpx_conf_t *node, size_t i)
{
    return node && node->type != N_SCALAR && i < node->n ? node->items[i] : NULL;
}
const char *cpx_conf_key_at(const cpx_conf_t *node, size_t i)
{
    return node && node->type == N_MAP && i < node->n ? node->keys[i] : NULL;
}

int cpx_conf_path(const cpx_conf_t *node, const char *key, char *out, size_t size)
{
    const cpx_conf_t *n = cpx_conf_get(node, key);
    if (!n || n->type != N_SCALAR || !n->value[0])
        return CPX_ERR_NOT_FOUND;
    int w;
    if (n->value[0] == '/') {
        w = snprintf(out, size, "%s", n->value);
    } else {
        const char *slash = strrchr(n->file, '/');
        int dirlen = slash ? (int)(slash - n->file) : 1;
        w = snprintf(out, size, "%.*s/%s", dirlen, slash ? n->file : ".", n->value);
    }
    return w < 0 || (size_t)w >= size ? CPX_ERR_TOO_LARGE : CPX_OK;
}
