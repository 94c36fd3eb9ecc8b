/* verify.c — a small fixed pool: workers wait for a generation change, then take jobs
 * by an atomic index until none are left. */
#include "verify.h"

#include <pthread.h>
#include <stdlib.h>

#include "cpx/err.h"
#include "cpx/log.h"

#define MAX_THREADS 16

struct cpx_gw_verify {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t th[MAX_THREADS];
    unsigned n_th;                  /* workers */
    unsigned long gen;              /* incremented per run */
    unsigned busy;                  /* workers still in the current run */
    int quit;
    cpx_gw_vjob_t *jobs;
    size_t n_jobs;
    size_t next;                    /* atomic */
};

static void run_job(cpx_gw_vjob_t *j)
{
    j->rc = CPX_OK;
    if (j->fn) {
        j->fn(j->arg, j->part);
        return;
    }
    if (!j->batch) {
        for (size_t i = 0; i < j->n; i++)
            j->rcs[i] = cpx_envsign_verify(j->envs[i], j->key, &j->res[i]);
        return;
    }
    j->rc = cpx_envsign_verify_batch(j->envs, j->n, j->key, j->res, j->rcs);
    if (j->rc != CPX_ERR_ARG && j->rc != CPX_ERR_NOMEM)
        j->rc = CPX_OK;
}

static void drain(cpx_gw_verify_t *self, cpx_gw_vjob_t *jobs, size_t n)
{
    for (;;) {
        size_t i = __atomic_fetch_add(&self->next, 1, __ATOMIC_RELAXED);
        if (i >= n)
            return;
        run_job(&jobs[i]);
    }
}

static void *worker(void *arg)
{
    cpx_gw_verify_t *self = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->quit && self->gen == seen)
            pthread_cond_wait(&self->work, &self->mu);
        if (self->quit)
            break;
        seen = self->gen;
        cpx_gw_vjob_t *jobs = self->jobs;
        size_t n = self->n_jobs;
        pthread_mutex_unlock(&self->mu);
        drain(self, jobs, n);
        pthread_mutex_lock(&self->mu);
        if (--self->busy == 0)
            pthread_cond_signal(&self->done);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

cpx_gw_verify_t *cpx_gw_verify_new(unsigned threads)
{
    cpx_gw_verify_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->work, NULL);
    pthread_cond_init(&self->done, NULL);
    unsigned want = threads > 1 ? threads - 1 : 0;
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    for (; self->n_th < want; self->n_th++)
        if (pthread_create(&self->th[self->n_th], NULL, worker, self)) {
            cpx_log_error("verify", "msg=\"cannot start a verification thread\"");
            cpx_gw_verify_destroy(&self);
            return NULL;
        }
    return self;
}

void cpx_gw_verify_destroy(cpx_gw_verify_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_verify_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->mu);
    for (unsigned i = 0; i < self->n_th; i++)
        pthread_join(self->th[i], NULL);
    pthread_cond_destroy(&self->work);
    pthread_cond_destroy(&self->done);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

unsigned cpx_gw_verify_threads(const cpx_gw_verify_t *self)
{
    return self ? self->n_th + 1 : 1;
}

void cpx_gw_verify_run(cpx_gw_verify_t *self, cpx_gw_vjob_t *jobs, size_t n)
{
    if (!n)
        return;
    if (!self || !self->n_th || n == 1) {
        for (size_t i = 0; i < n; i++)
            run_job(&jobs[i]);
        return;
    }
    pthread_mutex_lock(&self->mu);
    self->jobs = jobs;
    self->n_jobs = n;
    __atomic_store_n(&self->next, 0, __ATOMIC_RELAXED);
    self->busy = self->n_th;
    self->gen++;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->mu);
    drain(self, jobs, n);
    pthread_mutex_lock(&self->mu);
    while (self->busy)
        pthread_cond_wait(&self->done, &self->mu);
    pthread_mutex_unlock(&self->mu);
}
