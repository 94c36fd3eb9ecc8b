/* minortab.c — the in-memory open-case table (see cpx/minortab.h). */
#include "cpx/minortab.h"

#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/limits.h"

#define MIN_CAP 1024u
#define UNDO_KEEP 16384u  /* undo capacity kept across commits; more is freed */

typedef struct undo {
    uint64_t pfx;
    uint32_t ref;
    uint32_t added;  /* 1: the change added (pfx, ref); 0: it removed it */
} undo_t;

struct cpx_minortab {
    /* Two arrays rather than one of structs: 12 bytes a slot instead of 16. A slot is
     * empty when ref is 0; ref is 1 + the offset of a NUL-terminated id in the arena. */
    uint64_t *pfx;
    uint32_t *ref;
    size_t cap, n;
    char *arena;
    size_t alen, acap;
    uint32_t last_ref;  /* the id appended last: a case's second key shares it */
    undo_t *undo;
    size_t n_undo, cap_undo;
    size_t arena_mark;  /* alen and last_ref at the last commit */
    uint32_t last_ref_mark;
};

cpx_minortab_t *cpx_minortab_new(void)
{
    cpx_minortab_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cap = MIN_CAP;
    self->pfx = calloc(self->cap, sizeof *self->pfx);
    self->ref = calloc(self->cap, sizeof *self->ref);
    if (!self->pfx || !self->ref)
        cpx_minortab_destroy(&self);
    return self;
}

void cpx_minortab_destroy(cpx_minortab_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_minortab_t *self = *self_p;
    free(self->pfx);
    free(self->ref);
    free(self->arena);
    free(self->undo);
    free(self);
    *self_p = NULL;
}

uint64_t cpx_minortab_prefix(const uint8_t key[33])
{
    uint64_t p;
    memcpy(&p, key + 1, sizeof p);  /* HMAC bytes: uniform, any byte order will do */
    return p ^ ((uint64_t)key[0] * 0x9E3779B97F4A7C15ull);
}

/* The slot a prefix hashes to: its high 32 bits scaled to the capacity (no power of
 * two needed, so the table can grow by half again and stay dense). */
static size_t home(const cpx_minortab_t *self, uint64_t pfx)
{
    return (size_t)(((pfx >> 32) * (uint64_t)self->cap) >> 32);
}

static size_t next(const cpx_minortab_t *self, size_t i)
{
    return i + 1 == self->cap ? 0 : i + 1;
}

static const char *id_of(const cpx_minortab_t *self, uint32_t ref)
{
    return self->arena + ref - 1;
}

/* The slot holding (pfx, case_id), or cap when none. */
static size_t find_slot(const cpx_minortab_t *self, uint64_t pfx, const char *case_id)
{
    for (size_t i = home(self, pfx); self->ref[i]; i = next(self, i))
        if (self->pfx[i] == pfx && !strcmp(id_of(self, self->ref[i]), case_id))
            return i;
    return self->cap;
}

/* Places an entry; the caller made room. */
static void place(cpx_minortab_t *self, uint64_t pfx, uint32_t ref)
{
    size_t i = home(self, pfx);
    while (self->ref[i])
        i = next(self, i);
    self->pfx[i] = pfx;
    self->ref[i] = ref;
    self->n++;
}

/* Empties slot i and shifts later entries of its probe run back, so lookups never
 * need tombstones. */
static void remove_slot(cpx_minortab_t *self, size_t i)
{
    for (size_t j = next(self, i);; j = next(self, j)) {
        if (!self->ref[j])
            break;
        size_t k = home(self, self->pfx[j]);
        /* j stays when its home lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        self->pfx[i] = self->pfx[j];
        self->ref[i] = self->ref[j];
        i = j;
    }
    self->ref[i] = 0;
    self->n--;
}

/* Keeps the load at or under 3/4 for one more entry. */
static int room(cpx_minortab_t *self)
{
    if ((self->n + 1) * 4 <= self->cap * 3)
        return CPX_OK;
    /* by half again: right after growing the load is 1/2, not 3/8, so at a million
     * open cases the table holds about 20 bytes a key rather than 30 */
    size_t cap = self->cap + self->cap / 2;
    if (cap > UINT32_MAX)
        return CPX_ERR_NOMEM;
    uint64_t *pfx = malloc(cap * sizeof *pfx);
    uint32_t *ref = calloc(cap, sizeof *ref);
    if (!pfx || !ref) {
        free(pfx);
        free(ref);
        return CPX_ERR_NOMEM;
    }
    cpx_minortab_t old = *self;
    self->pfx = pfx;
    self->ref = ref;
    self->cap = cap;
    self->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.ref[i])
            place(self, old.pfx[i], old.ref[i]);
    free(old.pfx);
    free(old.ref);
    return CPX_OK;
}

static int undo_room(cpx_minortab_t *self)
{
    if (self->n_undo < self->cap_undo)
        return CPX_OK;
    size_t cap = self->cap_undo ? self->cap_undo * 2 : 256;
    undo_t *u = realloc(self->undo, cap * sizeof *u);
    if (!u)
        return CPX_ERR_NOMEM;
    self->undo = u;
    self->cap_undo = cap;
    return CPX_OK;
}

/* The arena reference of case_id: the last one appended when it is the same case (a
 * case's keys are added together), else a new copy. 0 when out of memory. */
static uint32_t intern(cpx_minortab_t *self, const char *case_id, size_t len)
{
    if (self->last_ref && !strcmp(id_of(self, self->last_ref), case_id))
        return self->last_ref;
    if (self->alen + len + 1 > UINT32_MAX - 1)
        return 0;
    if (self->alen + len + 1 > self->acap) {
        size_t cap = self->acap ? self->acap * 2 : 64 * 1024;
        while (cap < self->alen + len + 1)
            cap *= 2;
        char *a = realloc(self->arena, cap);
        if (!a)
            return 0;
        self->arena = a;
        self->acap = cap;
    }
    memcpy(self->arena + self->alen, case_id, len + 1);
    self->last_ref = (uint32_t)self->alen + 1;
    self->alen += len + 1;
    return self->last_ref;
}

int cpx_minortab_add(cpx_minortab_t *self, uint64_t pfx, const char *case_id)
{
    size_t len = case_id ? strlen(case_id) : 0;
    if (!len || len > CPX_MAX_CASE_ID)
        return CPX_ERR_ARG;
    if (find_slot(self, pfx, case_id) != self->cap)
        return CPX_OK;
    int rc;
    if ((rc = undo_room(self)) || (rc = room(self)))
        return rc;
    uint32_t ref = intern(self, case_id, len);
    if (!ref)
        return CPX_ERR_NOMEM;
    place(self, pfx, ref);
    self->undo[self->n_undo++] = (undo_t){pfx, ref, 1};
    return CPX_OK;
}

int cpx_minortab_del(cpx_minortab_t *self, uint64_t pfx, const char *case_id)
{
    if (!case_id || !*case_id)
        return CPX_ERR_ARG;
    size_t i = find_slot(self, pfx, case_id);
    if (i == self->cap)
        return CPX_OK;
    int rc = undo_room(self);
    if (rc)
        return rc;
    self->undo[self->n_undo++] = (undo_t){pfx, self->ref[i], 0};
    remove_slot(self, i);
    return CPX_OK;
}

int cpx_minortab_each(const cpx_minortab_t *self, uint64_t pfx, cpx_minortab_fn fn, void *ctx)
{
    for (size_t i = home(self, pfx); self->ref[i]; i = next(self, i)) {
        if (self->pfx[i] != pfx)
            continue;
        int rc = fn(ctx, id_of(self, self->ref[i]));
        if (rc)
            return rc;
    }
    return 0;
}

void cpx_minortab_commit(cpx_minortab_t *self)
{
    self->n_undo = 0;
    self->arena_mark = self->alen;
    self->last_ref_mark = self->last_ref;
    if (self->cap_undo > UNDO_KEEP) {  /* a rebuild or a huge cycle: give it back */
        free(self->undo);
        self->undo = NULL;
        self->cap_undo = 0;
    }
}

void cpx_minortab_rollback(cpx_minortab_t *self)
{
    while (self->n_undo) {
        const undo_t *u = &self->undo[--self->n_undo];
        if (u->added) {
            size_t i = home(self, u->pfx);
            while (self->ref[i] && !(self->ref[i] == u->ref && self->pfx[i] == u->pfx))
                i = next(self, i);
            if (self->ref[i])
                remove_slot(self, i);
        } else {
            /* it was there when removed, so the load stays within what it was */
            place(self, u->pfx, u->ref);
        }
    }
    /* every entry pointing past the mark was added since, and has just been removed */
    self->alen = self->arena_mark;
    self->last_ref = self->last_ref_mark;
}

size_t cpx_minortab_count(const cpx_minortab_t *self)
{
    return self->n;
}

size_t cpx_minortab_bytes(const cpx_minortab_t *self)
{
    return sizeof *self + self->cap * (sizeof *self->pfx + sizeof *self->ref) + self->acap +
           self->cap_undo * sizeof *self->undo;
}
