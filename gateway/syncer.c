/* syncer.c — one thread that runs mdb_env_sync on request and signals an eventfd. */
#include "syncer.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cpx/log.h"

struct cpx_gw_syncer {
    MDB_env *env;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int efd;            /* readable after a flush finished */
    int requested;      /* a flush to run */
    int finished;       /* the flush requested has run; rc holds its outcome */
    int rc;
    int pending;        /* server thread's view: begun and not yet waited for */
    int quit;
};

static void *run(void *arg)
{
    cpx_gw_syncer_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->requested && !self->quit)
            pthread_cond_wait(&self->cond, &self->mu);
        if (!self->requested)
            break;  /* quit, nothing left to flush */
        pthread_mutex_unlock(&self->mu);
        /* Only an fdatasync of data.mdb (no LMDB lock taken): safe while the server
         * thread builds the next write transaction, and it covers every commit that
         * returned before it started. */
        int rc = mdb_env_sync(self->env, 1);
        pthread_mutex_lock(&self->mu);
        self->requested = 0;
        self->finished = 1;
        self->rc = rc;
        pthread_cond_broadcast(&self->cond);
        uint64_t one = 1;
        if (write(self->efd, &one, sizeof one) < 0) {
            /* the counter cannot overflow here; wait() does not depend on the fd */
        }
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

cpx_gw_syncer_t *cpx_gw_syncer_new(MDB_env *env)
{
    cpx_gw_syncer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->env = env;
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cond, NULL);
    if (self->efd < 0 || pthread_create(&self->th, NULL, run, self)) {
        cpx_log_error("syncer", "msg=\"cannot start the sync thread\"");
        if (self->efd >= 0)
            close(self->efd);
        pthread_cond_destroy(&self->cond);
        pthread_mutex_destroy(&self->mu);
        free(self);
        return NULL;
    }
    return self;
}

void cpx_gw_syncer_destroy(cpx_gw_syncer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_syncer_t *self = *self_p;
    cpx_gw_syncer_wait(self);
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->th, NULL);
    close(self->efd);
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

void cpx_gw_syncer_begin(cpx_gw_syncer_t *self)
{
    cpx_gw_syncer_wait(self);  /* one in flight: the caller normally waited already */
    pthread_mutex_lock(&self->mu);
    self->requested = 1;
    self->finished = 0;
    self->rc = 0;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    self->pending = 1;
}

int cpx_gw_syncer_pending(const cpx_gw_syncer_t *self)
{
    return self && self->pending;
}

int cpx_gw_syncer_done(cpx_gw_syncer_t *self)
{
    if (!self || !self->pending)
        return 1;
    pthread_mutex_lock(&self->mu);
    int done = self->finished;
    pthread_mutex_unlock(&self->mu);
    return done;
}

int cpx_gw_syncer_wait(cpx_gw_syncer_t *self)
{
    if (!self || !self->pending)
        return 0;
    pthread_mutex_lock(&self->mu);
    while (!self->finished)
        pthread_cond_wait(&self->cond, &self->mu);
    int rc = self->rc;
    pthread_mutex_unlock(&self->mu);
    uint64_t n;
    if (read(self->efd, &n, sizeof n) < 0 && errno != EAGAIN)
        cpx_log_debug("syncer", "msg=\"eventfd read failed\" errno=%d", errno);
    self->pending = 0;
    return rc;
}

int cpx_gw_syncer_fd(const cpx_gw_syncer_t *self)
{
    return self ? self->efd : -1;
}
