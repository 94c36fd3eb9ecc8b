/* Routing by the city's responsibility rules.
 *
 * Loading turns YAML into rules whose "any of" conditions are 64-bit masks over enum
 * values (every routed enum in cpx.v1 has fewer than 64 values, body kinds included)
 * and whose department conditions are bitsets over the departments the configuration
 * names. Routing computes the same masks for the envelope once, then tests each rule
 * with a handful of ANDs. Nothing is allocated per call. */
#include "cpx/route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cpx/err.h"
#include "cpx/idnum.h"

/* ---- compiled form ------------------------------------------------------------ */

/* "Any of" conditions over enum values, one mask each. */
enum {
    M_BODY,
    M_CATEGORY,
    M_HARM,
    M_STREET,
    M_HARDSHIP,
    M_CIRCUMSTANCE,
    M_ILLNESSES,
    M_ECONOMY,
    M_CHANNEL,
    M_SENSITIVITY,
    M_COUNT
};

/* Condition bits of rule_t.need beyond the masks (which use bits 0..M_COUNT-1). */
enum {
    C_IMMEDIATE = 1u << 16,
    C_EXPLICIT = 1u << 17,
    C_ILLNESS = 1u << 18,
    C_DISABILITY = 1u << 19,
    C_PRIORITY = 1u << 20,
    C_MIN_AGE = 1u << 21,
    C_MAX_AGE = 1u << 22,
    C_SENDER = 1u << 23,
    C_TOWN = 1u << 24,
};

#define DEPT_WORDS (CPX_ROUTE_MAX_DEPTS / 64)
#define NO_DEPT 0xffffu

typedef struct target {
    uint16_t dept;  /* index into depts, or NO_DEPT for a variable */
    uint32_t ph;    /* CPX_ROUTE_PH_* when dept == NO_DEPT */
} target_t;

typedef struct rule {
    char name[CPX_ROUTE_MAX_NAME];
    uint32_t need;
    uint64_t mask[M_COUNT];
    bool immediate, explicit_rcpt, illness, disability;
    int min_priority;
    int min_age, max_age;
    uint64_t senders[DEPT_WORDS], towns[DEPT_WORDS];
    size_t n_to;
    target_t to[CPX_MAX_RECIPIENTS];
    uint64_t ack_ms;
    bool ack_set;
    int priority;   /* raise recipients to at least this; 0 = keep the envelope's */
    bool stop;
    bool additional;  /* does not by itself count as routing the message */
} rule_t;

struct cpx_router {
    size_t n_rules;
    rule_t *rules;
    size_t n_depts;
    char depts[CPX_ROUTE_MAX_DEPTS][CPX_MAX_DEPT_CODE + 1];
    uint16_t sorted[CPX_ROUTE_MAX_DEPTS];         /* dept ids in strcmp order */
    uint16_t supervisor[CPX_ROUTE_MAX_DEPTS];     /* NO_DEPT when none */
    uint16_t fallback;
    uint64_t fallback_ack_ms;
    uint64_t default_ack_ms;
    bool needs_age;
};

static const char FALLBACK_RULE[] = "(fallback)";

/* ---- small shared helpers ----------------------------------------------------- */

static bool dept_code_ok(const char *s)
{
    if (!s || !(s[0] >= 'A' && s[0] <= 'Z'))
        return false;
    size_t i = 0;
    for (; s[i]; i++) {
        char c = s[i];
        if (i >= CPX_MAX_DEPT_CODE)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static inline uint64_t bit(int v)
{
    return (v >= 0 && v < 64) ? (1ull << v) : 0;
}

static inline bool set_has(const uint64_t *set, int id)
{
    return id >= 0 && (set[id / 64] >> (id % 64)) & 1u;
}

static int dept_find(const cpx_router_t *r, const char *code)
{
    size_t lo = 0, hi = r->n_depts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(code, r->depts[r->sorted[mid]]);
        if (c == 0)
            return r->sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* ---- loading ------------------------------------------------------------------ */

typedef struct loader {
    const char *file;
    char *err;
    size_t errlen;
    yaml_document_t *doc;
    cpx_router_t *r;
} loader_t;

static int fail_at(loader_t *ld, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(loader_t *ld, yaml_mark_t m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s", ld->file, m.line + 1, m.column + 1, msg);
    return -1;
}

#define FAIL(ld, node, ...) fail_at((ld), (node)->start_mark, __VA_ARGS__)

static yaml_node_t *node_at(loader_t *ld, int id)
{
    return yaml_document_get_node(ld->doc, id);
}

static const char *node_type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

/* The scalar's text, or NULL after reporting why it is not one. */
static const char *scalar(loader_t *ld, yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        FAIL(ld, n, "%s: expected a scalar, found %s", what, node_type_name(n));
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        FAIL(ld, n, "%s: contains a NUL character", what);
        return NULL;
    }
    return s;
}

/* Every key of a mapping must be a scalar, known and not repeated. */
static int check_keys(loader_t *ld, yaml_node_t *map, const char *what,
                      const char *const *known)
{
    if (map->type != YAML_MAPPING_NODE)
        return FAIL(ld, map, "%s: expected a mapping, found %s", what, node_type_name(map));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key);
        const char *ks = scalar(ld, k, what);
        if (!ks)
            return -1;
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            ok = ok || strcmp(ks, known[i]) == 0;
        if (!ok) {
            char list[512] = "";
            size_t used = 0;
            for (size_t i = 0; known[i] && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", known[i]);
            return FAIL(ld, k, "%s: unknown key '%s' (expected one of: %s)", what, ks, list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = node_at(ld, q->key);
            if (qk->type == YAML_SCALAR_NODE && strcmp((const char *)qk->data.scalar.value, ks) == 0)
                return FAIL(ld, k, "%s: key '%s' given twice", what, ks);
        }
    }
    return 0;
}

/* A list value: a sequence of scalars, or one scalar standing for a list of one. */
static int list_items(loader_t *ld, yaml_node_t *n, const char *what, yaml_node_t **items,
                      size_t max, size_t *count)
{
    *count = 0;
    if (n->type == YAML_SCALAR_NODE) {
        if (n->data.scalar.length == 0)
            return FAIL(ld, n, "%s: empty value", what);
        items[(*count)++] = n;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return FAIL(ld, n, "%s: expected a list, found %s", what, node_type_name(n));
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *item = node_at(ld, *it);
        if (item->type != YAML_SCALAR_NODE)
            return FAIL(ld, item, "%s: list items must be scalars, found %s", what, node_type_name(item));
        if (*count >= max)
            return FAIL(ld, item, "%s: more than %zu items", what, max);
        items[(*count)++] = item;
    }
    if (*count == 0)
        return FAIL(ld, n, "%s: empty list", what);
    return 0;
}

static int parse_bool(loader_t *ld, yaml_node_t *n, const char *what, bool *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    if (strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0)
        *out = false;
    else
        return FAIL(ld, n, "%s: expected true or false, found '%s'", what, s);
    return 0;
}

static int parse_int(loader_t *ld, yaml_node_t *n, const char *what, int lo, int hi, int *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return FAIL(ld, n, "%s: expected a whole number from %d to %d, found '%s'", what, lo, hi, s);
    *out = (int)v;
    return 0;
}

/* "5m", "4h", "2d", "30s", "500ms", or "none" (no deadline). */
static int parse_duration(loader_t *ld, yaml_node_t *n, const char *what, uint64_t *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    if (strcmp(s, "none") == 0) {
        *out = 0;
        return 0;
    }
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9' && i < 7; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    const char *unit = s + i;
    uint64_t mul = 0;
    if (strcmp(unit, "ms") == 0)
        mul = 1;
    else if (strcmp(unit, "s") == 0)
        mul = 1000;
    else if (strcmp(unit, "m") == 0)
        mul = 60000;
    else if (strcmp(unit, "h") == 0)
        mul = 3600000;
    else if (strcmp(unit, "d") == 0)
        mul = 86400000;
    if (i == 0 || mul == 0 || v == 0)
        return FAIL(ld, n, "%s: bad duration '%s' (expected a positive number and a unit "
                    "ms, s, m, h or d, e.g. 5m, 4h, 2d; or none)", what, s);
    if (v * mul > 366ull * 86400000)
        return FAIL(ld, n, "%s: duration '%s' is longer than a year", what, s);
    *out = v * mul;
    return 0;
}

static int expected_enum_list(const ProtobufCEnumDescriptor *d, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_values && used < size; i++) {
        if (d->values[i].value == 0)
            continue;
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", d->values[i].name);
    }
    return 0;
}

static int parse_enum(loader_t *ld, yaml_node_t *n, const char *what,
                      const ProtobufCEnumDescriptor *d, int *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, s);
    if (!v || v->value <= 0 || v->value >= 64) {
        char list[700];
        expected_enum_list(d, list, sizeof list);
        return FAIL(ld, n, "%s: unknown %s '%s' (expected one of: %s)", what, d->short_name, s, list);
    }
    *out = v->value;
    return 0;
}

static int parse_body_kind(loader_t *ld, yaml_node_t *n, const char *what, int *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&cpx__v1__envelope__descriptor, s);
    if (!f || f->id < CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT || f->id >= 64) {
        char list[700] = "";
        size_t used = 0;
        const ProtobufCMessageDescriptor *d = &cpx__v1__envelope__descriptor;
        for (unsigned i = 0; i < d->n_fields && used < sizeof list; i++)
            if (d->fields[i].id >= CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                                         d->fields[i].name);
        return FAIL(ld, n, "%s: unknown body kind '%s' (expected one of: %s)", what, s, list);
    }
    *out = (int)f->id;
    return 0;
}

static int dept_intern(loader_t *ld, yaml_node_t *n, const char *what)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    if (!dept_code_ok(s))
        return FAIL(ld, n, "%s: '%s' is not a department code (capital letters, digits and "
                    "'_', starting with a letter, at most %u characters, e.g. POLICE, TOWN_HUASHI)",
                    what, s, CPX_MAX_DEPT_CODE);
    cpx_router_t *r = ld->r;
    for (size_t i = 0; i < r->n_depts; i++)
        if (strcmp(r->depts[i], s) == 0)
            return (int)i;
    if (r->n_depts >= CPX_ROUTE_MAX_DEPTS)
        return FAIL(ld, n, "%s: more than %u distinct departments", what, CPX_ROUTE_MAX_DEPTS);
    strcpy(r->depts[r->n_depts], s);
    r->supervisor[r->n_depts] = NO_DEPT;
    return (int)r->n_depts++;
}

static const struct {
    const char *name;
    uint32_t ph;
} PLACEHOLDERS[] = {
    {"$explicit", CPX_ROUTE_PH_EXPLICIT},
    {"$town", CPX_ROUTE_PH_TOWN},
    {"$referral_to", CPX_ROUTE_PH_REFERRAL_TO},
    {"$referrer", CPX_ROUTE_PH_REFERRER},
    {"$reply_to", CPX_ROUTE_PH_REPLY_TO},
    {"$sender_supervisor", CPX_ROUTE_PH_SENDER_SUPERVISOR},
    {"$sender", CPX_ROUTE_PH_SENDER},
};

static int parse_targets(loader_t *ld, yaml_node_t *n, rule_t *ru)
{
    yaml_node_t *items[CPX_MAX_RECIPIENTS];
    if (list_items(ld, n, "to", items, CPX_MAX_RECIPIENTS, &ru->n_to) < 0)
        return -1;
    for (size_t i = 0; i < ru->n_to; i++) {
        const char *s = (const char *)items[i]->data.scalar.value;
        target_t *t = &ru->to[i];
        if (s[0] == '$') {
            t->dept = NO_DEPT;
            t->ph = 0;
            for (size_t k = 0; k < sizeof PLACEHOLDERS / sizeof PLACEHOLDERS[0]; k++)
                if (strcmp(s, PLACEHOLDERS[k].name) == 0)
                    t->ph = PLACEHOLDERS[k].ph;
            if (!t->ph)
                return FAIL(ld, items[i], "to: unknown variable '%s' (expected one of: $explicit, "
                            "$town, $referral_to, $referrer, $reply_to, $sender_supervisor, $sender)", s);
        } else {
            int id = dept_intern(ld, items[i], "to");
            if (id < 0)
                return -1;
            t->dept = (uint16_t)id;
        }
        for (size_t j = 0; j < i; j++)
            if (ru->to[j].dept == t->dept && ru->to[j].ph == t->ph)
                return FAIL(ld, items[i], "to: '%s' named twice", s);
    }
    return 0;
}

static int parse_mask(loader_t *ld, yaml_node_t *n, const char *key,
                      const ProtobufCEnumDescriptor *d, uint64_t *mask)
{
    yaml_node_t *items[CPX_MAX_REPEATED];
    size_t count;
    if (list_items(ld, n, key, items, CPX_MAX_REPEATED, &count) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        int v;
        if ((d ? parse_enum(ld, items[i], key, d, &v) : parse_body_kind(ld, items[i], key, &v)) < 0)
            return -1;
        *mask |= bit(v);
    }
    return 0;
}

static int parse_dept_set(loader_t *ld, yaml_node_t *n, const char *key, uint64_t *set)
{
    yaml_node_t *items[CPX_MAX_REPEATED];
    size_t count;
    if (list_items(ld, n, key, items, CPX_MAX_REPEATED, &count) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        int id = dept_intern(ld, items[i], key);
        if (id < 0)
            return -1;
        set[id / 64] |= 1ull << (id % 64);
    }
    return 0;
}

static const struct {
    const char *key;
    int slot;
    const ProtobufCEnumDescriptor *desc;  /* NULL: body kind names */
} MASK_KEYS[] = {
    {"body", M_BODY, NULL},
    {"category", M_CATEGORY, &cpx__v1__category__descriptor},
    {"harm", M_HARM, &cpx__v1__harm_type__descriptor},
    {"street", M_STREET, &cpx__v1__street_situation__descriptor},
    {"hardship", M_HARDSHIP, &cpx__v1__hardship__descriptor},
    {"circumstance", M_CIRCUMSTANCE, &cpx__v1__circumstance__descriptor},
    {"illnesses", M_ILLNESSES, &cpx__v1__illness__descriptor},
    {"family_economy", M_ECONOMY, &cpx__v1__family_economy__descriptor},
    {"channel", M_CHANNEL, &cpx__v1__channel__descriptor},
    {"sensitivity", M_SENSITIVITY, &cpx__v1__sensitivity__descriptor},
};

static const char *const MATCH_KEYS[] = {
    "body", "category", "harm", "street", "hardship", "circumstance", "illnesses",
    "family_economy", "channel", "sensitivity", "immediate_danger", "explicit_recipients",
    "illness", "disability", "priority", "min_age", "max_age", "sender", "town", NULL};

static int parse_match(loader_t *ld, yaml_node_t *map, rule_t *ru)
{
    if (check_keys(ld, map, "match", MATCH_KEYS) < 0)
        return -1;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        const char *key = (const char *)k->data.scalar.value;
        int rc = 0;
        bool handled = false;
        for (size_t i = 0; i < sizeof MASK_KEYS / sizeof MASK_KEYS[0]; i++) {
            if (strcmp(key, MASK_KEYS[i].key) == 0) {
                rc = parse_mask(ld, v, key, MASK_KEYS[i].desc, &ru->mask[MASK_KEYS[i].slot]);
                ru->need |= 1u << MASK_KEYS[i].slot;
                handled = true;
            }
        }
        if (handled) {
        } else if (strcmp(key, "immediate_danger") == 0) {
            rc = parse_bool(ld, v, key, &ru->immediate);
            ru->need |= C_IMMEDIATE;
        } else if (strcmp(key, "explicit_recipients") == 0) {
            rc = parse_bool(ld, v, key, &ru->explicit_rcpt);
            ru->need |= C_EXPLICIT;
        } else if (strcmp(key, "illness") == 0) {
            rc = parse_bool(ld, v, key, &ru->illness);
            ru->need |= C_ILLNESS;
        } else if (strcmp(key, "disability") == 0) {
            rc = parse_bool(ld, v, key, &ru->disability);
            ru->need |= C_DISABILITY;
        } else if (strcmp(key, "priority") == 0) {
            rc = parse_enum(ld, v, key, &cpx__v1__priority__descriptor, &ru->min_priority);
            ru->need |= C_PRIORITY;
        } else if (strcmp(key, "min_age") == 0) {
            rc = parse_int(ld, v, key, 0, 30, &ru->min_age);
            ru->need |= C_MIN_AGE;
        } else if (strcmp(key, "max_age") == 0) {
            rc = parse_int(ld, v, key, 0, 30, &ru->max_age);
            ru->need |= C_MAX_AGE;
        } else if (strcmp(key, "sender") == 0) {
            rc = parse_dept_set(ld, v, key, ru->senders);
            ru->need |= C_SENDER;
        } else if (strcmp(key, "town") == 0) {
            rc = parse_dept_set(ld, v, key, ru->towns);
            ru->need |= C_TOWN;
        }
        if (rc < 0)
            return -1;
    }
    if ((ru->need & C_MIN_AGE) && (ru->need & C_MAX_AGE) && ru->min_age > ru->max_age)
        return FAIL(ld, map, "match: min_age %d is above max_age %d", ru->min_age, ru->max_age);
    if (ru->need & (C_MIN_AGE | C_MAX_AGE))
        ld->r->needs_age = true;
    return 0;
}

static bool rule_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= CPX_ROUTE_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static const char *const RULE_KEYS[] = {"name", "description", "match", "to", "ack_within",
                                        "priority", "stop", "additional", NULL};

static int parse_rule(loader_t *ld, yaml_node_t *map, rule_t *ru, size_t index)
{
    char what[32];
    snprintf(what, sizeof what, "rule %zu", index + 1);
    if (check_keys(ld, map, what, RULE_KEYS) < 0)
        return -1;
    yaml_node_t *name = NULL, *match = NULL, *to = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        const char *key = (const char *)k->data.scalar.value;
        int rc = 0;
        if (strcmp(key, "name") == 0)
            name = v;
        else if (strcmp(key, "match") == 0)
            match = v;
        else if (strcmp(key, "to") == 0)
            to = v;
        else if (strcmp(key, "description") == 0)
            rc = scalar(ld, v, "description") ? 0 : -1;
        else if (strcmp(key, "ack_within") == 0) {
            rc = parse_duration(ld, v, "ack_within", &ru->ack_ms);
            ru->ack_set = true;
        } else if (strcmp(key, "priority") == 0)
            rc = parse_enum(ld, v, "priority", &cpx__v1__priority__descriptor, &ru->priority);
        else if (strcmp(key, "stop") == 0)
            rc = parse_bool(ld, v, "stop", &ru->stop);
        else if (strcmp(key, "additional") == 0)
            rc = parse_bool(ld, v, "additional", &ru->additional);
        if (rc < 0)
            return -1;
    }
    if (!name)
        return FAIL(ld, map, "%s: missing 'name'", what);
    const char *ns = scalar(ld, name, "name");
    if (!ns)
        return -1;
    if (!rule_name_ok(ns))
        return FAIL(ld, name, "name: '%s' is not a rule name (1 to %u letters, digits, '_', '-', '.')",
                    ns, CPX_ROUTE_MAX_NAME - 1);
    for (size_t i = 0; i < index; i++)
        if (strcmp(ld->r->rules[i].name, ns) == 0)
            return FAIL(ld, name, "name: rule '%s' defined twice", ns);
    strcpy(ru->name, ns);
    if (!match)
        return FAIL(ld, map, "rule '%s': missing 'match' (use 'match: {}' to match every message)", ns);
    if (!to)
        return FAIL(ld, map, "rule '%s': missing 'to' (the recipients)", ns);
    if (parse_match(ld, match, ru) < 0 || parse_targets(ld, to, ru) < 0)
        return -1;
    return 0;
}

static const char *const TOP_KEYS[] = {"version", "fallback", "defaults", "supervisors", "rules", NULL};
static const char *const FALLBACK_KEYS[] = {"to", "ack_within", NULL};
static const char *const DEFAULTS_KEYS[] = {"ack_within", NULL};

static int parse_top(loader_t *ld, yaml_node_t *root)
{
    cpx_router_t *r = ld->r;
    if (check_keys(ld, root, "configuration", TOP_KEYS) < 0)
        return -1;
    yaml_node_t *rules = NULL, *fallback = NULL, *version = NULL;
    int fallback_id = -1;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "version") == 0) {
            int ver;
            if (parse_int(ld, v, "version", 1, 1, &ver) < 0)
                return -1;
            version = v;
        } else if (strcmp(key, "rules") == 0) {
            rules = v;
        } else if (strcmp(key, "fallback") == 0) {
            fallback = v;
        } else if (strcmp(key, "defaults") == 0) {
            if (check_keys(ld, v, "defaults", DEFAULTS_KEYS) < 0)
                return -1;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++)
                if (parse_duration(ld, node_at(ld, q->value), "defaults.ack_within", &r->default_ack_ms) < 0)
                    return -1;
        } else if (strcmp(key, "supervisors") == 0) {
            if (v->type != YAML_MAPPING_NODE)
                return FAIL(ld, v, "supervisors: expected a mapping of department to its "
                            "supervising department, found %s", node_type_name(v));
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *qk = node_at(ld, q->key);
                int a = dept_intern(ld, qk, "supervisors");
                if (a < 0)
                    return -1;
                if (r->supervisor[a] != NO_DEPT)
                    return FAIL(ld, qk, "supervisors: '%s' given twice", r->depts[a]);
                int b = dept_intern(ld, node_at(ld, q->value), "supervisors");
                if (b < 0)
                    return -1;
                r->supervisor[a] = (uint16_t)b;
            }
        }
    }
    if (!version)
        return FAIL(ld, root, "configuration: missing 'version: 1'");
    if (fallback) {
        if (check_keys(ld, fallback, "fallback", FALLBACK_KEYS) < 0)
            return -1;
        bool ack_given = false;
        for (yaml_node_pair_t *q = fallback->data.mapping.pairs.start; q < fallback->data.mapping.pairs.top; q++) {
            const char *key = (const char *)node_at(ld, q->key)->data.scalar.value;
            yaml_node_t *v = node_at(ld, q->value);
            if (strcmp(key, "to") == 0) {
                if ((fallback_id = dept_intern(ld, v, "fallback.to")) < 0)
                    return -1;
            } else {
                if (parse_duration(ld, v, "fallback.ack_within", &r->fallback_ack_ms) < 0)
                    return -1;
                ack_given = true;
            }
        }
        if (!ack_given)
            r->fallback_ack_ms = r->default_ack_ms;
    } else {
        r->fallback_ack_ms = r->default_ack_ms;
    }
    if (fallback_id < 0) {
        /* The lead agency by default; interned by hand since no node names it. */
        for (size_t i = 0; i < r->n_depts && fallback_id < 0; i++)
            if (strcmp(r->depts[i], "CIVIL_AFFAIRS") == 0)
                fallback_id = (int)i;
        if (fallback_id < 0) {
            if (r->n_depts >= CPX_ROUTE_MAX_DEPTS)
                return FAIL(ld, root, "more than %u distinct departments", CPX_ROUTE_MAX_DEPTS);
            strcpy(r->depts[r->n_depts], "CIVIL_AFFAIRS");
            r->supervisor[r->n_depts] = NO_DEPT;
            fallback_id = (int)r->n_depts++;
        }
    }
    r->fallback = (uint16_t)fallback_id;

    if (!rules)
        return FAIL(ld, root, "configuration: missing 'rules'");
    if (rules->type != YAML_SEQUENCE_NODE)
        return FAIL(ld, rules, "rules: expected a list of rules, found %s", node_type_name(rules));
    size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
    if (n > CPX_ROUTE_MAX_RULES)
        return FAIL(ld, rules, "rules: %zu rules, at most %u allowed", n, CPX_ROUTE_MAX_RULES);
    r->rules = calloc(n ? n : 1, sizeof *r->rules);
    if (!r->rules)
        return FAIL(ld, rules, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (parse_rule(ld, node_at(ld, rules->data.sequence.items.start[i]), &r->rules[i], i) < 0)
            return -1;
        r->n_rules = i + 1;
    }
    return 0;
}

static int cmp_dept(const void *a, const void *b, void *arg)
{
    const cpx_router_t *r = arg;
    return strcmp(r->depts[*(const uint16_t *)a], r->depts[*(const uint16_t *)b]);
}

static void sort_depts(cpx_router_t *r)
{
    for (size_t i = 0; i < r->n_depts; i++)
        r->sorted[i] = (uint16_t)i;
    qsort_r(r->sorted, r->n_depts, sizeof r->sorted[0], cmp_dept, r);
}

cpx_router_t *cpx_router_load_string(const char *yaml, size_t len, const char *name,
                                     char *err, size_t errlen)
{
    loader_t ld = {.file = name ? name : "<string>", .err = err, .errlen = errlen};
    yaml_mark_t start = {0, 0, 0};
    if (err && errlen)
        err[0] = '\0';
    if (!yaml) {
        fail_at(&ld, start, "no configuration given");
        return NULL;
    }
    if (len > CPX_ROUTE_MAX_CONFIG_BYTES) {
        fail_at(&ld, start, "configuration is %zu bytes, at most %u allowed", len,
                CPX_ROUTE_MAX_CONFIG_BYTES);
        return NULL;
    }
    cpx_router_t *r = calloc(1, sizeof *r);
    if (!r) {
        fail_at(&ld, start, "out of memory");
        return NULL;
    }
    ld.r = r;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fail_at(&ld, start, "out of memory");
        free(r);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int rc = -1;
    if (!yaml_parser_load(&parser, &doc)) {
        char where[64] = "";
        if (parser.context && parser.context_mark.line != parser.problem_mark.line)
            snprintf(where, sizeof where, " (begun at %zu:%zu)", parser.context_mark.line + 1,
                     parser.context_mark.column + 1);
        fail_at(&ld, parser.problem_mark, "YAML syntax: %s%s%s%s",
                parser.problem ? parser.problem : "error", parser.context ? " " : "",
                parser.context ? parser.context : "", where);
        yaml_parser_delete(&parser);
        cpx_router_destroy(&r);
        return NULL;
    }
    ld.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        fail_at(&ld, start, "empty configuration");
    } else {
        rc = parse_top(&ld, root);
        if (rc == 0) {
            /* One document only: a second would be silently ignored otherwise. */
            yaml_document_t extra;
            if (!yaml_parser_load(&parser, &extra)) {
                rc = fail_at(&ld, parser.problem_mark, "YAML syntax: %s",
                             parser.problem ? parser.problem : "error");
            } else {
                yaml_node_t *x = yaml_document_get_root_node(&extra);
                if (x)
                    rc = fail_at(&ld, x->start_mark, "more than one YAML document");
                yaml_document_delete(&extra);
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc < 0) {
        cpx_router_destroy(&r);
        return NULL;
    }
    sort_depts(r);
    return r;
}

cpx_router_t *cpx_router_load(const char *path, char *err, size_t errlen)
{
    loader_t ld = {.file = path ? path : "<null>", .err = err, .errlen = errlen};
    yaml_mark_t start = {0, 0, 0};
    if (!path) {
        fail_at(&ld, start, "no configuration file given");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail_at(&ld, start, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* Read one byte past the limit so an oversized file is refused, not truncated. */
    size_t cap = CPX_ROUTE_MAX_CONFIG_BYTES + 1;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        fail_at(&ld, start, "out of memory");
        return NULL;
    }
    size_t len = fread(buf, 1, cap, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fail_at(&ld, start, "read error");
        return NULL;
    }
    cpx_router_t *r = cpx_router_load_string(buf, len, path, err, errlen);
    free(buf);
    return r;
}

void cpx_router_destroy(cpx_router_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->rules);
    free(*self_p);
    *self_p = NULL;
}

size_t cpx_router_rule_count(const cpx_router_t *r)
{
    return r ? r->n_rules : 0;
}

const char *cpx_router_rule_name(const cpx_router_t *r, size_t i)
{
    return (r && i < r->n_rules) ? r->rules[i].name : NULL;
}

/* ---- ages --------------------------------------------------------------------- */

int cpx_route_age(const Cpx__V1__MinorIdentity *minor, int64_t at_ms)
{
    if (!minor)
        return -1;
    int by, bm, bd;
    const Cpx__V1__Date *b = minor->birth_date;
    if (b && b->year <= 9999 && b->month <= 12 && b->day <= 31 &&
        cpx_date_valid((int)b->year, (int)b->month, (int)b->day)) {
        by = (int)b->year;
        bm = (int)b->month;
        bd = (int)b->day;
    } else if (minor->id_number && strlen(minor->id_number) == CPX_IDNUM_LEN) {
        /* Only the embedded date matters here; the validator judges the rest. */
        const char *s = minor->id_number + 6;
        for (int i = 0; i < 8; i++)
            if (s[i] < '0' || s[i] > '9')
                return -1;
        by = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        bm = (s[4] - '0') * 10 + (s[5] - '0');
        bd = (s[6] - '0') * 10 + (s[7] - '0');
        if (!cpx_date_valid(by, bm, bd))
            return -1;
    } else {
        return -1;
    }
    int age = cpx_age_years(cpx_days_from_civil(by, bm, bd), cpx_days_from_ms(at_ms));
    return age >= 0 ? age : -1;
}

/* ---- routing ------------------------------------------------------------------ */

typedef struct facts {
    uint64_t mask[M_COUNT];
    bool immediate, explicit_rcpt, illness, disability;
    int priority;
    int age;
    int sender_id, town_id;
    const char *sender;
    const char *town;
    const Cpx__V1__MinorIdentity *minor;
    /* Lazily looked-up replies: 0 = not yet, 1 = found, -1 = not found. */
    int referrer_state, reply_state;
    cpx_route_referral_t referrer, reply;
} facts_t;

static void add_categories(facts_t *f, const Cpx__V1__DiscoveryReport *dr)
{
    for (size_t i = 0; i < dr->n_categories; i++) {
        const Cpx__V1__CategoryDetail *c = dr->categories[i];
        if (!c)
            continue;
        f->mask[M_CATEGORY] |= bit((int)c->category);
        for (size_t j = 0; j < c->n_harm_types; j++)
            f->mask[M_HARM] |= bit((int)c->harm_types[j]);
        for (size_t j = 0; j < c->n_street; j++)
            f->mask[M_STREET] |= bit((int)c->street[j]);
        for (size_t j = 0; j < c->n_hardships; j++)
            f->mask[M_HARDSHIP] |= bit((int)c->hardships[j]);
    }
}

static void gather(const cpx_router_t *r, const cpx_envelope_t *env, const cpx_route_ctx_t *ctx,
                   facts_t *f)
{
    memset(f, 0, sizeof *f);
    f->age = -1;
    f->sender = env->sender ? env->sender : "";
    f->sender_id = dept_find(r, f->sender);
    f->priority = (int)env->priority;
    f->explicit_rcpt = env->n_recipients > 0;
    f->mask[M_SENSITIVITY] = bit((int)env->sensitivity);
    if (env->body_case >= CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT)
        f->mask[M_BODY] = bit((int)env->body_case);

    switch (env->body_case) {
    case CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT: {
        const Cpx__V1__DiscoveryReport *dr = env->discovery_report;
        if (!dr)
            break;
        f->minor = dr->minor;
        f->mask[M_CHANNEL] = bit((int)dr->channel);
        f->immediate = dr->immediate_danger;
        add_categories(f, dr);
        for (size_t i = 0; i < dr->n_circumstances; i++)
            f->mask[M_CIRCUMSTANCE] |= bit((int)dr->circumstances[i]);
        if (dr->health) {
            for (size_t i = 0; i < dr->health->n_illnesses; i++)
                f->mask[M_ILLNESSES] |= bit((int)dr->health->illnesses[i]);
            f->illness = dr->health->n_illnesses > 0;
            f->disability = dr->health->disability_grade > 0;
            f->mask[M_ECONOMY] = bit((int)dr->health->family_economy);
        }
        if (f->mask[M_HARDSHIP] & bit(CPX__V1__HARDSHIP__SERIOUS_ILLNESS))
            f->illness = true;
        if (f->mask[M_HARDSHIP] & bit(CPX__V1__HARDSHIP__SEVERE_DISABILITY))
            f->disability = true;
        break;
    }
    case CPX__V1__ENVELOPE__BODY_ASSESSMENT:
        if (env->assessment)
            f->minor = env->assessment->minor;
        break;
    case CPX__V1__ENVELOPE__BODY_DISPOSITION:
        if (env->disposition) {
            f->minor = env->disposition->minor;
            f->mask[M_ILLNESSES] = bit((int)env->disposition->illness);
            f->illness = env->disposition->illness != 0;
            f->mask[M_ECONOMY] = bit((int)env->disposition->family_economy);
        }
        break;
    default:
        break;
    }
    /* Value 0 (UNSPECIFIED) is never a rule's value: clear it so masks mean "known". */
    for (int i = 0; i < M_COUNT; i++)
        f->mask[i] &= ~1ull;

    if (f->minor && f->minor->town && f->minor->town[0])
        f->town = f->minor->town;
    else if (ctx && ctx->case_town && ctx->case_town[0])
        f->town = ctx->case_town;
    f->town_id = f->town ? dept_find(r, f->town) : -1;
    if (r->needs_age && f->minor) {
        int64_t at = env->created_ms ? env->created_ms : (ctx ? ctx->now_ms : 0);
        f->age = cpx_route_age(f->minor, at);
    }
}

static bool rule_matches(const rule_t *ru, const facts_t *f)
{
    uint32_t need = ru->need;
    for (int i = 0; i < M_COUNT; i++)
        if ((need >> i) & 1u && !(ru->mask[i] & f->mask[i]))
            return false;
    if (!(need & ~((1u << M_COUNT) - 1)))
        return true;
    if ((need & C_IMMEDIATE) && ru->immediate != f->immediate)
        return false;
    if ((need & C_EXPLICIT) && ru->explicit_rcpt != f->explicit_rcpt)
        return false;
    if ((need & C_ILLNESS) && ru->illness != f->illness)
        return false;
    if ((need & C_DISABILITY) && ru->disability != f->disability)
        return false;
    if ((need & C_PRIORITY) && f->priority < ru->min_priority)
        return false;
    if ((need & (C_MIN_AGE | C_MAX_AGE)) && f->age < 0)
        return false;
    if ((need & C_MIN_AGE) && f->age < ru->min_age)
        return false;
    if ((need & C_MAX_AGE) && f->age > ru->max_age)
        return false;
    if ((need & C_SENDER) && !set_has(ru->senders, f->sender_id))
        return false;
    if ((need & C_TOWN) && !set_has(ru->towns, f->town_id))
        return false;
    return true;
}

/* Adds or merges one recipient; returns false when out is full. */
static bool add_recipient(cpx_route_t *out, const char *dept, uint64_t ack_ms, int prio,
                          const char *rule)
{
    for (size_t i = 0; i < out->n_recipients; i++) {
        cpx_route_recipient_t *rc = &out->recipients[i];
        if (strcmp(rc->dept, dept) != 0)
            continue;
        if (ack_ms && (!rc->ack_within_ms || ack_ms < rc->ack_within_ms)) {
            rc->ack_within_ms = ack_ms;
            memcpy(rc->rule, rule, strlen(rule) + 1);
        }
        if (prio > rc->priority)
            rc->priority = prio;
        return true;
    }
    if (out->n_recipients >= CPX_MAX_RECIPIENTS)
        return false;
    cpx_route_recipient_t *rc = &out->recipients[out->n_recipients++];
    memcpy(rc->dept, dept, strlen(dept) + 1);
    rc->ack_within_ms = ack_ms;
    rc->priority = prio;
    memcpy(rc->rule, rule, strlen(rule) + 1);
    return true;
}

static int lookup(const cpx_route_ctx_t *ctx, ProtobufCBinaryData id, cpx_route_referral_t *out)
{
    if (!ctx || !ctx->lookup || id.len == 0 || !id.data)
        return -1;
    memset(out, 0, sizeof *out);
    if (ctx->lookup(ctx->lookup_arg, id.data, id.len, out) != CPX_OK)
        return -1;
    out->sender[CPX_MAX_DEPT_CODE] = '\0';
    out->recipient[CPX_MAX_DEPT_CODE] = '\0';
    return 1;
}

typedef struct emit {
    cpx_route_t *out;
    const facts_t *f;
    const rule_t *ru;
    uint64_t ack_ms;
    int prio;
    bool any;       /* some department resolved (before dropping the sender) */
    bool overflow;
} emit_t;

static void emit(emit_t *e, const char *dept, bool to_sender_allowed)
{
    if (!dept_code_ok(dept))
        return;
    e->any = true;
    if (!to_sender_allowed && strcmp(dept, e->f->sender) == 0)
        return;
    if (!add_recipient(e->out, dept, e->ack_ms, e->prio, e->ru->name))
        e->overflow = true;
}

static void resolve(const cpx_router_t *r, const cpx_envelope_t *env, const cpx_route_ctx_t *ctx,
                    facts_t *f, emit_t *e, const target_t *t)
{
    if (t->dept != NO_DEPT) {
        emit(e, r->depts[t->dept], false);
        return;
    }
    bool before = e->any;
    e->any = false;
    switch (t->ph) {
    case CPX_ROUTE_PH_EXPLICIT:
        for (size_t i = 0; i < env->n_recipients; i++)
            if (env->recipients[i])
                emit(e, env->recipients[i], false);
        break;
    case CPX_ROUTE_PH_TOWN:
        if (f->town)
            emit(e, f->town, false);
        break;
    case CPX_ROUTE_PH_REFERRAL_TO:
        if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL && env->referral && env->referral->to)
            emit(e, env->referral->to, false);
        if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION &&
            env->referral_revocation) {
            /* the referral withdrawn: its recipient must learn that it is */
            if (!f->referrer_state)
                f->referrer_state = lookup(ctx, env->referral_revocation->referral_id, &f->referrer);
            if (f->referrer_state > 0 && f->referrer.recipient[0])
                emit(e, f->referrer.recipient, false);
        }
        break;
    case CPX_ROUTE_PH_REFERRER:
        if (!f->referrer_state) {
            ProtobufCBinaryData id = env->in_reply_to;
            if (env->body_case == CPX__V1__ENVELOPE__BODY_DISPOSITION && env->disposition &&
                env->disposition->referral_id.len)
                id = env->disposition->referral_id;
            if (env->body_case == CPX__V1__ENVELOPE__BODY_REFERRAL_REVOCATION &&
                env->referral_revocation)
                id = env->referral_revocation->referral_id;
            f->referrer_state = lookup(ctx, id, &f->referrer);
        }
        if (f->referrer_state > 0)
            emit(e, f->referrer.sender, false);
        break;
    case CPX_ROUTE_PH_REPLY_TO:
        if (!f->reply_state)
            f->reply_state = lookup(ctx, env->in_reply_to, &f->reply);
        if (f->reply_state > 0)
            emit(e, f->reply.sender, false);
        break;
    case CPX_ROUTE_PH_SENDER_SUPERVISOR:
        if (f->sender_id >= 0 && r->supervisor[f->sender_id] != NO_DEPT)
            emit(e, r->depts[r->supervisor[f->sender_id]], false);
        break;
    case CPX_ROUTE_PH_SENDER:
        emit(e, f->sender, true);
        break;
    default:
        break;
    }
    if (!e->any)
        e->out->unresolved |= t->ph;
    e->any = e->any || before;
}

int cpx_router_route(const cpx_router_t *r, const cpx_envelope_t *env,
                     const cpx_route_ctx_t *ctx, cpx_route_t *out)
{
    if (!r || !env || !out)
        return CPX_ERR_ARG;
    facts_t f;
    gather(r, env, ctx, &f);
    out->n_recipients = 0;
    out->unrouted = false;
    out->unresolved = 0;
    out->n_matched = 0;
    out->matched_truncated = false;
    int env_prio = f.priority;
    if (env_prio < 0 || env_prio > CPX__V1__PRIORITY__IMMEDIATE)
        env_prio = 0;

    bool routed = false, overflow = false;
    for (size_t i = 0; i < r->n_rules; i++) {
        const rule_t *ru = &r->rules[i];
        if (!rule_matches(ru, &f))
            continue;
        if (out->n_matched < CPX_ROUTE_MAX_MATCHED)
            memcpy(out->matched[out->n_matched++], ru->name, strlen(ru->name) + 1);
        else
            out->matched_truncated = true;
        emit_t e = {
            .out = out, .f = &f, .ru = ru,
            .ack_ms = ru->ack_set ? ru->ack_ms : r->default_ack_ms,
            .prio = ru->priority > env_prio ? ru->priority : env_prio,
        };
        for (size_t j = 0; j < ru->n_to; j++)
            resolve(r, env, ctx, &f, &e, &ru->to[j]);
        overflow = overflow || e.overflow;
        if (e.any && !ru->additional)
            routed = true;
        if (ru->stop)
            break;
    }
    if (!routed) {
        /* Nothing is dropped: the lead agency gets it, even when it sent it, because a
         * person there must look at every message the rules do not cover. */
        out->unrouted = true;
        if (!add_recipient(out, r->depts[r->fallback], r->fallback_ack_ms, env_prio, FALLBACK_RULE))
            overflow = true;
    }
    out->priority = env_prio;
    for (size_t i = 0; i < out->n_recipients; i++)
        if (out->recipients[i].priority > out->priority)
            out->priority = out->recipients[i].priority;
    return overflow ? CPX_ERR_TOO_LARGE : CPX_OK;
}
