/* casepolicy.c — casepolicy.yaml (docs/cases.md, "Configuration"), with
 * file:line:col in every error. */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "caseindex.h"
#include "cpx/validate.h"

typedef struct pctx {
    const char *file;
    char dir[CPX_GW_PATH_MAX];
    yaml_document_t *doc;
    char *err;
    size_t size;
} pctx_t;

static int fail(pctx_t *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(pctx_t *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->size, "%s:%zu:%zu: %s%s%s", c->file, n ? n->start_mark.line + 1 : 1,
             n ? n->start_mark.column + 1 : 1, key ? key : "", key ? ": " : "", msg);
    return CPX_ERR_CONFIG;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *nd(pctx_t *c, int i)
{
    return yaml_document_get_node(c->doc, i);
}

static int get_path(pctx_t *c, yaml_node_t *n, const char *key, char *out)
{
    const char *s = scalar(n);
    if (!s || !*s)
        return fail(c, n, key, "expected a path");
    int w = s[0] == '/' ? snprintf(out, CPX_GW_PATH_MAX, "%s", s)
                        : snprintf(out, CPX_GW_PATH_MAX, "%s/%s", c->dir, s);
    return w < 0 || w >= (int)CPX_GW_PATH_MAX ? fail(c, n, key, "path too long") : CPX_OK;
}

static int get_duration(pctx_t *c, yaml_node_t *n, const char *key, uint64_t *out)
{
    const char *s = scalar(n);
    char *end;
    if (!s || !*s || *s == '-')
        return fail(c, n, key, "expected a duration such as 30s, 5m, 4h, 2d");
    if (!strcmp(s, "none") || !strcmp(s, "0")) {
        *out = 0;
        return CPX_OK;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = !strcmp(end, "ms") ? 1 : !strcmp(end, "s") ? 1000 : !strcmp(end, "m") ? 60000
                 : !strcmp(end, "h") ? 3600000 : !strcmp(end, "d") ? 86400000 : 0;
    if (errno || end == s || !mul || v == 0 || v > 3650ull * 86400000 / mul)
        return fail(c, n, key, "bad duration '%s' (a positive number and ms, s, m, h or d)", s);
    *out = v * mul;
    return CPX_OK;
}

static int get_u32(pctx_t *c, yaml_node_t *n, const char *key, uint32_t hi, uint32_t *out)
{
    const char *s = scalar(n);
    char *end;
    errno = 0;
    unsigned long v = s ? strtoul(s, &end, 10) : 0;
    if (!s || !*s || *s == '-' || errno || *end || v > hi)
        return fail(c, n, key, "expected an integer from 0 to %u", hi);
    *out = (uint32_t)v;
    return CPX_OK;
}

static int get_bool(pctx_t *c, yaml_node_t *n, const char *key, int *out)
{
    const char *s = scalar(n);
    if (s && !strcmp(s, "true"))
        *out = 1;
    else if (s && !strcmp(s, "false"))
        *out = 0;
    else
        return fail(c, n, key, "expected true or false");
    return CPX_OK;
}

/* A list (or one value) of enum names of desc into a bitmask. */
static int get_enum_mask(pctx_t *c, yaml_node_t *n, const char *key,
                         const ProtobufCEnumDescriptor *desc, uint32_t *out)
{
    yaml_node_item_t one[1], *it, *end;
    if (n->type == YAML_SEQUENCE_NODE) {
        it = n->data.sequence.items.start;
        end = n->data.sequence.items.top;
    } else {
        one[0] = (yaml_node_item_t)(n - c->doc->nodes.start + 1);
        it = one;
        end = one + 1;
    }
    *out = 0;
    for (; it < end; it++) {
        yaml_node_t *v = nd(c, *it);
        const char *s = scalar(v);
        const ProtobufCEnumValue *ev = s ? protobuf_c_enum_descriptor_get_value_by_name(desc, s) : NULL;
        if (!ev || ev->value <= 0 || ev->value >= 32)
            return fail(c, v, key, "unknown %s '%s'", desc->short_name, s ? s : "?");
        *out |= 1u << ev->value;
    }
    return CPX_OK;
}

typedef int (*pair_fn)(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                       cpx_gw_casepolicy_t *p);

static int each_pair(pctx_t *c, yaml_node_t *map, const char *key, pair_fn fn,
                     cpx_gw_casepolicy_t *p)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, key, "expected a mapping");
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < map->data.mapping.pairs.top; q++) {
        yaml_node_t *k = nd(c, q->key), *v = nd(c, q->value);
        const char *name = scalar(k);
        if (!name)
            return fail(c, k, key, "keys must be strings");
        int rc = fn(c, name, k, v, p);
        if (rc)
            return rc;
    }
    return CPX_OK;
}

static int keys_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                   cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "index"))
        return get_path(c, v, "keys.index", p->index_key);
    if (!strcmp(name, "records"))
        return get_path(c, v, "keys.records", p->records_key);
    return fail(c, k, "keys", "unknown key '%s' (index, records)", name);
}

static int accept_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                     cpx_gw_casepolicy_t *p)
{
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value_by_name(&cpx__v1__priority__descriptor, name);
    if (!ev || ev->value <= 0 || ev->value > 3)
        return fail(c, k, "referrals.accept_within", "unknown priority '%s' (ROUTINE, URGENT, IMMEDIATE)", name);
    int rc = get_duration(c, v, "referrals.accept_within", &p->accept_ms[ev->value]);
    if (!rc && ev->value == CPX__V1__PRIORITY__ROUTINE)
        p->accept_ms[0] = p->accept_ms[ev->value];
    return rc;
}

static int referrals_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                        cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "accept_within"))
        return each_pair(c, v, "referrals.accept_within", accept_fn, p);
    if (!strcmp(name, "act_within"))
        return get_duration(c, v, "referrals.act_within", &p->act_ms);
    return fail(c, k, "referrals", "unknown key '%s' (accept_within, act_within)", name);
}

static int escalation_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                         cpx_gw_casepolicy_t *p)
{
    int rc;
    if (!strcmp(name, "repeat"))
        rc = get_duration(c, v, "escalation.repeat", &p->repeat_ms);
    else if (!strcmp(name, "check_every"))
        rc = get_duration(c, v, "escalation.check_every", &p->check_ms);
    else
        return fail(c, k, "escalation", "unknown key '%s' (repeat, check_every)", name);
    if (!rc && (!p->repeat_ms || !p->check_ms))
        return fail(c, v, name, "must be positive");
    return rc;
}

static int ew_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                 cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "reports"))
        return get_u32(c, v, "early_warning.reports", 100, &p->ew_reports);
    if (!strcmp(name, "window"))
        return get_duration(c, v, "early_warning.window", &p->ew_window_ms);
    if (!strcmp(name, "high_risk_unreferred"))
        return get_duration(c, v, "early_warning.high_risk_unreferred", &p->ew_high_risk_ms);
    if (!strcmp(name, "returning_dropout"))
        return get_bool(c, v, "early_warning.returning_dropout", &p->ew_dropout);
    return fail(c, k, "early_warning",
                "unknown key '%s' (reports, window, high_risk_unreferred, returning_dropout)", name);
}

static int aid_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                  cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "amount_fen")) {
        uint32_t a;
        int rc = get_u32(c, v, "rules.medical_aid.amount_fen", 100000000, &a);
        p->aid_amount_fen = a;
        return rc;
    }
    if (!strcmp(name, "illnesses"))
        return get_enum_mask(c, v, "rules.medical_aid.illnesses", &cpx__v1__illness__descriptor,
                             &p->aid_illnesses);
    if (!strcmp(name, "family_economy"))
        return get_enum_mask(c, v, "rules.medical_aid.family_economy",
                             &cpx__v1__family_economy__descriptor, &p->aid_economies);
    return fail(c, k, "rules.medical_aid", "unknown key '%s' (amount_fen, illnesses, family_economy)", name);
}

static int rules_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                    cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "employment_min_age"))
        return get_u32(c, v, "rules.employment_min_age", 18, &p->employment_min_age);
    if (!strcmp(name, "medical_aid"))
        return each_pair(c, v, "rules.medical_aid", aid_fn, p);
    if (!strcmp(name, "close_by")) {
        if (v->type != YAML_SEQUENCE_NODE)
            return fail(c, v, "rules.close_by", "expected a list of department codes or $lead");
        p->n_close_by = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *x = nd(c, *it);
            const char *s = scalar(x);
            if (!s || (strcmp(s, "$lead") && !cpx_dept_code_valid(s)))
                return fail(c, x, "rules.close_by", "'%s' is neither a department code nor $lead", s ? s : "?");
            if (p->n_close_by == CPX_GW_CI_MAX_CLOSE_BY)
                return fail(c, x, "rules.close_by", "at most %d entries", CPX_GW_CI_MAX_CLOSE_BY);
            snprintf(p->close_by[p->n_close_by++], sizeof p->close_by[0], "%s", s);
        }
        return CPX_OK;
    }
    return fail(c, k, "rules", "unknown key '%s' (employment_min_age, medical_aid, close_by)", name);
}

static int root_fn(pctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v,
                   cpx_gw_casepolicy_t *p)
{
    if (!strcmp(name, "version")) {
        const char *s = scalar(v);
        return s && !strcmp(s, "1") ? CPX_OK : fail(c, v, "version", "only 1 is known");
    }
    if (!strcmp(name, "keys"))
        return each_pair(c, v, "keys", keys_fn, p);
    if (!strcmp(name, "views"))
        return get_path(c, v, "views", p->views);
    if (!strcmp(name, "referrals"))
        return each_pair(c, v, "referrals", referrals_fn, p);
    if (!strcmp(name, "escalation"))
        return each_pair(c, v, "escalation", escalation_fn, p);
    if (!strcmp(name, "early_warning"))
        return each_pair(c, v, "early_warning", ew_fn, p);
    if (!strcmp(name, "rules"))
        return each_pair(c, v, "rules", rules_fn, p);
    return fail(c, k, NULL, "unknown key '%s' (version, keys, views, referrals, escalation, "
                            "early_warning, rules)", name);
}

static void defaults(cpx_gw_casepolicy_t *p)
{
    memset(p, 0, sizeof *p);
    p->accept_ms[0] = p->accept_ms[1] = 2 * 86400000ull;
    p->accept_ms[2] = 4 * 3600000ull;
    p->accept_ms[3] = 30 * 60000ull;
    p->act_ms = 30 * 86400000ull;
    p->repeat_ms = 86400000ull;
    p->check_ms = 10000;
    p->ew_reports = 2;
    p->ew_window_ms = 30 * 86400000ull;
    p->ew_high_risk_ms = 2 * 86400000ull;
    p->ew_dropout = 1;
    p->employment_min_age = 16;
    p->aid_amount_fen = 1000000;
    p->aid_illnesses = (1u << CPX__V1__ILLNESS__AIDS) | (1u << CPX__V1__ILLNESS__LEUKAEMIA) |
                       (1u << CPX__V1__ILLNESS__APLASTIC_ANAEMIA) | (1u << CPX__V1__ILLNESS__HAEMOPHILIA) |
                       (1u << CPX__V1__ILLNESS__CONGENITAL_HEART_DISEASE) |
                       (1u << CPX__V1__ILLNESS__URAEMIA) | (1u << CPX__V1__ILLNESS__MALIGNANT_TUMOUR) |
                       (1u << CPX__V1__ILLNESS__RARE_DISEASE);
    p->aid_economies = (1u << CPX__V1__FAMILY_ECONOMY__SUBSISTENCE_ALLOWANCE) |
                       (1u << CPX__V1__FAMILY_ECONOMY__LOW_INCOME) |
                       (1u << CPX__V1__FAMILY_ECONOMY__ILLNESS_IMPOVERISHED);
    p->n_close_by = 2;
    snprintf(p->close_by[0], sizeof p->close_by[0], "CIVIL_AFFAIRS");
    snprintf(p->close_by[1], sizeof p->close_by[1], "$lead");
}

int cpx_gw_casepolicy_load(const char *path, cpx_gw_casepolicy_t *pol, char *err, size_t size)
{
    pctx_t c = {.file = path, .err = err, .size = size};
    err[0] = '\0';
    defaults(pol);
    char tmp[CPX_GW_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(c.dir, sizeof c.dir, "%s", dirname(tmp));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, size, "%s: %s", path, strerror(errno));
        return CPX_ERR_IO;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return CPX_ERR_NOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, size, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "parse error");
        rc = CPX_ERR_CONFIG;
    } else {
        c.doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        rc = root ? each_pair(&c, root, NULL, root_fn, pol) : fail(&c, NULL, NULL, "empty file");
        if (!rc && (!pol->index_key[0] || !pol->records_key[0]))
            rc = fail(&c, root, "keys", "index and records key files are required");
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
