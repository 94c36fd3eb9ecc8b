/* gateway/ahead.h — the prepare-ahead stage: frames waiting for the next cycle are
 * decoded, validated, encoded and verified on a thread of their own while the server
 * thread writes and commits the current cycle.
 *
 * Why: under a steady flood the server thread alone can write, and it was also waiting
 * for that CPU work of each cycle's frames (about a third of a cycle) before writing.
 * Frames that carry over to the next cycle (past a cycle's byte budget) are known one
 * cycle early; preparing them then takes that work off the writer's path. Keys are
 * resolved in a read transaction (the last commit's view); the writer resolves each
 * key again in its own transaction and verifies again if the key changed
 * (cpx_gw_writer_ahead, writer.h).
 *
 * Caveats: one caller (the server thread). Between cpx_gw_ahead_start and
 * cpx_gw_ahead_wait the frames belong to the stage: the caller must not touch, move or
 * free them. */
#ifndef CPX_GW_AHEAD_H
#define CPX_GW_AHEAD_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "writer.h"
#include "cpx/registry.h"

typedef struct cpx_gw_ahead cpx_gw_ahead_t;

/* Starts the stage's thread. Caller owns the result (cpx_gw_ahead_destroy, which waits
 * for work in progress). NULL when the thread cannot be started. */
cpx_gw_ahead_t *cpx_gw_ahead_new(MDB_env *env, cpx_registry_t *reg);
void cpx_gw_ahead_destroy(cpx_gw_ahead_t **self_p);

/* Hands over n frames (the array is copied; the frames are not) to prepare with the
 * clock now_ms. Waits first for any earlier work. */
void cpx_gw_ahead_start(cpx_gw_ahead_t *self, cpx_gw_in_t *const *in, size_t n, int64_t now_ms);

/* Returns once the frames handed over are prepared (at once when none are). */
void cpx_gw_ahead_wait(cpx_gw_ahead_t *self);

/* 1 while frames handed over are not all prepared (cpx_gw_ahead_start would wait). */
int cpx_gw_ahead_busy(cpx_gw_ahead_t *self);

#endif
