/* cpx/views.h — view profiles: what each recipient department may see of a message
 * (minimum necessary; docs/cases.md, "What each department sees").
 *
 * A profile names, per body kind, the top-level body fields withheld from its
 * departments (deploy/jiangyin/views.yaml). Redaction is cpx_envsign_redact: the
 * withheld fields and their salts are removed, every commitment and the signature
 * are kept, so the recipient verifies the rest with the sender's key and learns
 * exactly which field numbers were withheld (Deliver.withheld), nothing more.
 *
 * Caveats: a loaded table is immutable and may be shared between threads. Department
 * patterns are exact codes or a prefix ending in '*' ("TOWN_*"); the first listed
 * match wins, "*" is the default; a department no entry matches sees everything. */
#ifndef CPX_VIEWS_H
#define CPX_VIEWS_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/envsign.h"

#define CPX_VIEWS_MAX_NAME 48
#define CPX_VIEWS_MAX_PROFILES 64
#define CPX_VIEWS_MAX_DEPTS 256
#define CPX_VIEWS_MAX_CONFIG_BYTES (256u << 10)

typedef struct cpx_views cpx_views_t;

/* Loads a views file. NULL on failure with "FILE:LINE:COLUMN: what" in err (always
 * terminated when errlen > 0). Caller owns the result (cpx_views_destroy). */
cpx_views_t *cpx_views_load(const char *path, char *err, size_t errlen);
cpx_views_t *cpx_views_load_string(const char *yaml, size_t len, const char *name, char *err,
                                   size_t errlen);
/* Frees; accepts NULL and *self_p == NULL; sets *self_p = NULL. */
void cpx_views_destroy(cpx_views_t **self_p);

/* The profile applied to dept (borrowed, valid while v lives); "full" when no
 * entry matches. v may be NULL ("full"). */
const char *cpx_views_profile(const cpx_views_t *v, const char *dept);

/* The body field numbers dept's profile withholds for body kind body_case (the
 * Envelope oneof case), as a bitmask (bit f = field f). */
uint32_t cpx_views_mask(const cpx_views_t *v, const char *dept, int body_case);

/* Redacts env in place for dept. withheld (CPX_MAX_BODY_FIELDS entries) receives the
 * field numbers actually withheld (committed and now absent), *n their count;
 * *profile (may be NULL) the profile name (borrowed). env must be one freed with
 * cpx_msg_free. CPX_OK (also when nothing is withheld), or cpx_envsign_redact's error. */
int cpx_views_redact(const cpx_views_t *v, const char *dept, cpx_envelope_t *env,
                     uint32_t *withheld, size_t *n, const char **profile);

/* The same on bytes: decodes, redacts, encodes. *out is malloc'd (caller frees with
 * free()); withheld, n and profile as above. */
int cpx_views_apply(const cpx_views_t *v, const char *dept, const uint8_t *in, size_t len,
                    uint8_t **out, size_t *out_len, uint32_t *withheld, size_t *n,
                    const char **profile);

#endif
