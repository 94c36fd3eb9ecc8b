/* cpx/route.h — routing by the city's responsibility rules.
 *
 * A router is compiled once from YAML (deploy/jiangyin/routes.yaml; language in
 * docs/routing.md) into rules whose conditions are bitsets, so routing one envelope
 * is a few AND operations per rule and allocates nothing. Rules are tried in file
 * order; every rule whose conditions all hold adds its recipients; a rule with
 * `stop: true` ends the search when it matches.
 *
 * Nothing is dropped: when no rule matches, or the matching rules resolve to no
 * department at all, the fallback department (CIVIL_AFFAIRS unless configured)
 * receives the message and `unrouted` is set so the gateway flags it.
 *
 * Caveats:
 *  - Route only validated envelopes (cpx_validate_*). The router tolerates anything
 *    (it never reads past counts or trusts enum values), but wire-derived department
 *    codes ($explicit, $town, $referral_to) that are not well-formed are skipped
 *    rather than reported.
 *  - The router does not know which departments are enrolled: a recipient may be a
 *    department (say a town office) that has not enrolled yet. The gateway decides
 *    what to do with it (hold in its outbox, dead-letter).
 *  - A loaded router is immutable: cpx_router_route may be called from several
 *    threads at once on the same router. */
#ifndef CPX_ROUTE_H
#define CPX_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/limits.h"

#define CPX_ROUTE_MAX_RULES     256u  /* rules in one configuration */
#define CPX_ROUTE_MAX_NAME      64u   /* rule name, including the terminating NUL */
#define CPX_ROUTE_MAX_MATCHED   32u   /* matched rule names reported per message */
#define CPX_ROUTE_MAX_DEPTS     256u  /* distinct department codes named in a config */
#define CPX_ROUTE_MAX_CONFIG_BYTES (1u << 20)

typedef struct cpx_router cpx_router_t;

/* What a Disposition (or any reply) needs to know about the message it answers. */
typedef struct cpx_route_referral {
    char sender[CPX_MAX_DEPT_CODE + 1];     /* who sent the referral */
    char recipient[CPX_MAX_DEPT_CODE + 1];  /* Referral.to, or "" when not a referral */
} cpx_route_referral_t;

/* Looks up a stored message by id (16 bytes). Returns CPX_OK and fills *out, or
 * CPX_ERR_NOT_FOUND (any other negative value is treated the same way). Called at
 * most twice per route. */
typedef int (*cpx_route_lookup_fn)(void *arg, const uint8_t *message_id, size_t len,
                                   cpx_route_referral_t *out);

typedef struct cpx_route_ctx {
    int64_t now_ms;                  /* used for ages when the envelope has no created_ms */
    cpx_route_lookup_fn lookup;      /* may be NULL: $referrer / $reply_to then resolve to nothing */
    void *lookup_arg;
    const char *case_town;           /* may be NULL: the town of the envelope's case, used for
                                      * $town and `town:` when the body names no minor's town */
} cpx_route_ctx_t;

/* Placeholders, as bits of cpx_route_t.unresolved. */
enum {
    CPX_ROUTE_PH_EXPLICIT = 1u << 0,
    CPX_ROUTE_PH_TOWN = 1u << 1,
    CPX_ROUTE_PH_REFERRAL_TO = 1u << 2,
    CPX_ROUTE_PH_REFERRER = 1u << 3,
    CPX_ROUTE_PH_REPLY_TO = 1u << 4,
    CPX_ROUTE_PH_SENDER_SUPERVISOR = 1u << 5,
    CPX_ROUTE_PH_SENDER = 1u << 6,
};

typedef struct cpx_route_recipient {
    char dept[CPX_MAX_DEPT_CODE + 1];
    uint64_t ack_within_ms;          /* after acceptance; 0 = no acknowledgement deadline */
    int priority;                    /* Cpx__V1__Priority: max(envelope, rule's `priority`) */
    char rule[CPX_ROUTE_MAX_NAME];   /* the rule that gave this recipient its deadline */
} cpx_route_recipient_t;

typedef struct cpx_route {
    size_t n_recipients;
    cpx_route_recipient_t recipients[CPX_MAX_RECIPIENTS];
    bool unrouted;                   /* the fallback was used: flag (Notice UNROUTED) */
    int priority;                    /* highest recipient priority: the delivery class */
    uint32_t unresolved;             /* CPX_ROUTE_PH_* bits that resolved to nothing */
    size_t n_matched;
    bool matched_truncated;          /* more than CPX_ROUTE_MAX_MATCHED rules matched */
    char matched[CPX_ROUTE_MAX_MATCHED][CPX_ROUTE_MAX_NAME];
} cpx_route_t;

/* Loads and compiles a routing configuration file. Returns NULL on failure with a
 * message in err (always terminated when errlen > 0) of the form
 * "FILE:LINE:COLUMN: what is wrong" (1-based line and column). Caller owns the
 * result and frees it with cpx_router_destroy. */
cpx_router_t *cpx_router_load(const char *path, char *err, size_t errlen);

/* As cpx_router_load, from len bytes of YAML in memory; name stands for the file in
 * error messages ("<string>" when NULL). */
cpx_router_t *cpx_router_load_string(const char *yaml, size_t len, const char *name,
                                     char *err, size_t errlen);

/* Frees a router; accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_router_destroy(cpx_router_t **self_p);

/* Routes one envelope into *out (overwritten; no allocation). Returns CPX_OK;
 * CPX_ERR_ARG when r, env or out is NULL (ctx may be NULL); CPX_ERR_TOO_LARGE when
 * more than CPX_MAX_RECIPIENTS distinct departments result — out then holds the
 * first CPX_MAX_RECIPIENTS and the gateway must refuse the message rather than
 * deliver it to only some of them. Recipients are deduplicated (the earliest
 * non-zero deadline and the highest priority win); the sender is never a
 * recipient unless a rule names `$sender` (or the fallback is the sender). */
int cpx_router_route(const cpx_router_t *r, const cpx_envelope_t *env,
                     const cpx_route_ctx_t *ctx, cpx_route_t *out);

/* Number of rules, and the name of rule i (borrowed; valid while r lives; NULL when
 * i is out of range). For status output and tests. */
size_t cpx_router_rule_count(const cpx_router_t *r);
const char *cpx_router_rule_name(const cpx_router_t *r, size_t i);

/* The age in whole years, at at_ms (UTC ms, read as Jiangyin local time UTC+8), of
 * a minor born on the given date or, when the date is absent, on the date encoded in
 * the 18-character citizen ID number. Returns -1 when neither gives a usable date.
 * Exposed for tests and the validator. */
int cpx_route_age(const Cpx__V1__MinorIdentity *minor, int64_t at_ms);

#endif
