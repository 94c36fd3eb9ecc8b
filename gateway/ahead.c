/* ahead.c — one thread, one piece of work at a time, handed over under a mutex. Frames
 * are taken one by one by an atomic index, so that a caller who needs the work done
 * (cpx_gw_ahead_wait) takes the rest itself instead of waiting idle. */
#include "ahead.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/log.h"
#include "cpx/store.h"

struct cpx_gw_ahead {
    MDB_env *env;
    cpx_registry_t *reg;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy;                       /* work handed over and not finished */
    int quit;
    cpx_gw_in_t **in;               /* cap entries */
    size_t n, cap;
    size_t next;                    /* atomic: the next frame to take */
    int64_t now_ms;
};

/* Prepares frames until none are left to take. */
static void drain(cpx_gw_ahead_t *self)
{
    if (__atomic_load_n(&self->next, __ATOMIC_RELAXED) >= self->n)
        return;
    MDB_txn *rtxn = NULL;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &rtxn);
    if (rc)  /* frames are still decoded; their keys are resolved in their turn */
        cpx_log_warn("ahead", "msg=\"no read transaction\" err=\"%s\"", mdb_strerror(rc));
    for (;;) {
        size_t i = __atomic_fetch_add(&self->next, 1, __ATOMIC_RELAXED);
        if (i >= self->n)
            break;
        cpx_gw_writer_ahead(self->in[i], self->now_ms, rtxn ? self->reg : NULL, rtxn);
    }
    if (rtxn)
        mdb_txn_abort(rtxn);
}

static void *run(void *arg)
{
    cpx_gw_ahead_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->busy && !self->quit)
            pthread_cond_wait(&self->cv, &self->mu);
        if (self->quit && !self->busy)
            break;
        pthread_mutex_unlock(&self->mu);
        drain(self);
        pthread_mutex_lock(&self->mu);
        self->busy = 0;
        pthread_cond_broadcast(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

cpx_gw_ahead_t *cpx_gw_ahead_new(MDB_env *env, cpx_registry_t *reg)
{
    cpx_gw_ahead_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->env = env;
    self->reg = reg;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    if (pthread_create(&self->th, NULL, run, self)) {
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
        free(self);
        return NULL;
    }
    return self;
}

void cpx_gw_ahead_destroy(cpx_gw_ahead_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_ahead_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->th, NULL);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    free(self->in);
    free(self);
    *self_p = NULL;
}

int cpx_gw_ahead_busy(cpx_gw_ahead_t *self)
{
    pthread_mutex_lock(&self->mu);
    int busy = self->busy;
    pthread_mutex_unlock(&self->mu);
    return busy;
}

void cpx_gw_ahead_wait(cpx_gw_ahead_t *self)
{
    pthread_mutex_lock(&self->mu);
    int busy = self->busy;
    pthread_mutex_unlock(&self->mu);
    if (busy)
        drain(self);  /* the frames not taken yet */
    pthread_mutex_lock(&self->mu);
    while (self->busy)
        pthread_cond_wait(&self->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

void cpx_gw_ahead_start(cpx_gw_ahead_t *self, cpx_gw_in_t *const *in, size_t n, int64_t now_ms)
{
    cpx_gw_ahead_wait(self);
    if (!n)
        return;
    if (n > self->cap) {
        cpx_gw_in_t **p = realloc(self->in, n * sizeof *p);
        if (!p)
            return;  /* not prepared ahead: the cycle does it in the frames' turn */
        self->in = p;
        self->cap = n;
    }
    memcpy(self->in, in, n * sizeof *in);
    pthread_mutex_lock(&self->mu);
    self->n = n;
    __atomic_store_n(&self->next, 0, __ATOMIC_RELAXED);
    self->now_ms = now_ms;
    self->busy = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}
