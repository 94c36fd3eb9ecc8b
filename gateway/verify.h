/* gateway/verify.h — sender-signature verification on several threads.
 *
 * Ed25519 verification (~8.5k/s per core) is the largest per-message cost of
 * per-message-signed traffic, and it needs no store access: the cycle resolves each
 * envelope's enrolled key first (in its transaction), then hands (envelopes, key) jobs
 * to this pool. The calling thread works too, so a pool of n threads uses n cores and
 * a pool of 1 is plain sequential verification.
 *
 * Caveats: cpx_gw_verify_run is called by one thread at a time (the server thread);
 * jobs must not be touched by the caller until it returns. */
#ifndef CPX_GW_VERIFY_H
#define CPX_GW_VERIFY_H

#include <stddef.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"

typedef struct cpx_gw_verify cpx_gw_verify_t;

/* One frame's envelopes under one key: n == 1 and !batch: cpx_envsign_verify;
 * batch: cpx_envsign_verify_batch (one Ed25519 check per distinct root). */
typedef struct cpx_gw_vjob {
    cpx_envelope_t *const *envs;
    size_t n;
    int batch;
    const cpx_key_t *key;
    cpx_envsign_result_t *res;      /* n results */
    int *rcs;                       /* n outcomes */
    int rc;                         /* the job's own failure (CPX_ERR_NOMEM, CPX_ERR_ARG) */
    /* Or other work of the prepare stage that needs no store: fn(arg, part) runs
     * instead of a verification (envs etc. unused); part tells apart the jobs of one
     * kind, e.g. which scratch state a job owns. */
    void (*fn)(void *arg, size_t part);
    void *arg;
    size_t part;
} cpx_gw_vjob_t;

/* Starts threads - 1 workers (threads 0 or 1: none). Caller owns the result; free with
 * cpx_gw_verify_destroy. NULL when a thread cannot be started. */
cpx_gw_verify_t *cpx_gw_verify_new(unsigned threads);
void cpx_gw_verify_destroy(cpx_gw_verify_t **self_p);

/* Runs every job to completion, spread over the pool and the calling thread. */
void cpx_gw_verify_run(cpx_gw_verify_t *self, cpx_gw_vjob_t *jobs, size_t n);

/* Number of threads that work on a run (workers + the caller). */
unsigned cpx_gw_verify_threads(const cpx_gw_verify_t *self);

#endif
