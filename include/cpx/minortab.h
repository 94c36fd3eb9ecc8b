/* cpx/minortab.h — the in-memory open-case table behind cpx_caseindex_find_minor
 * (docs/cases.md, "Finding a minor's open case").
 *
 * A multimap from an 8-byte prefix of a minor key (tag + HMAC) to case ids, in one
 * open-addressing array (linear probing, backward-shift deletion) plus an arena of
 * case-id strings that a case's two keys share. It holds candidates only: a caller
 * confirms each against the full hash in the case record, so two children whose keys
 * share a prefix are never linked. The store's case records are the durable truth;
 * the table is rebuilt from them at start (cpx_caseindex_minor_load).
 *
 * Changes are noted in an undo list until cpx_minortab_commit; cpx_minortab_rollback
 * undoes every change since (the cycle's transaction aborted), including the arena.
 *
 * Caveats: one thread; the arena keeps the ids of cases removed since the table was
 * built (about 16 bytes a case) until it is rebuilt. */
#ifndef CPX_MINORTAB_H
#define CPX_MINORTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct cpx_minortab cpx_minortab_t;

/* NULL when out of memory. Free with cpx_minortab_destroy (accepts NULL, *p NULL). */
cpx_minortab_t *cpx_minortab_new(void);
void cpx_minortab_destroy(cpx_minortab_t **self_p);

/* The table's prefix of a 33-byte minor key (tag, HMAC): the HMAC's first 8 bytes
 * with the tag folded in, so an 'I' and an 'N' key of equal bytes differ. */
uint64_t cpx_minortab_prefix(const uint8_t key[33]);

/* Records (prefix, case id); CPX_OK also when it is already there. CPX_ERR_NOMEM
 * leaves the table as it was; CPX_ERR_ARG for an empty or over-long id. */
int cpx_minortab_add(cpx_minortab_t *self, uint64_t prefix, const char *case_id);
/* Removes (prefix, case id); CPX_OK also when absent. CPX_ERR_NOMEM (the undo list
 * cannot grow) leaves the table as it was. */
int cpx_minortab_del(cpx_minortab_t *self, uint64_t prefix, const char *case_id);
/* Calls fn for each case id recorded under prefix (any order); fn returns non-zero to
 * stop, which is returned. */
typedef int (*cpx_minortab_fn)(void *ctx, const char *case_id);
int cpx_minortab_each(const cpx_minortab_t *self, uint64_t prefix, cpx_minortab_fn fn,
                      void *ctx);

/* Keeps every change so far (forgets the undo list). */
void cpx_minortab_commit(cpx_minortab_t *self);
/* Undoes every change since the last commit, newest first. */
void cpx_minortab_rollback(cpx_minortab_t *self);

/* Entries held, and bytes allocated (array, arena, undo list). */
size_t cpx_minortab_count(const cpx_minortab_t *self);
size_t cpx_minortab_bytes(const cpx_minortab_t *self);

#endif
