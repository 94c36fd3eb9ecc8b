/* prefill.c — zeros written ahead of LMDB's last page, inside the server's write window. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* O_DIRECT */
#endif
#include "prefill.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpx/log.h"

#define MOD "prefill"
/* One pwrite: a commit that reaches its commit point while one runs waits for it
 * (cpx_gw_prefill_close), so it stays under a millisecond (about 0.6 ms here). */
#define CHUNK ((size_t)1 << 20)
/* What one write window may fill: twice what the last cycle grew the file by, within
 * these bounds. Filled at the window's start, it is done long before the commit in a
 * small cycle; back-to-back chunks would leave one in flight at every commit. */
#define STEP_MIN ((uint64_t)256 << 10)
#define STEP_MAX ((uint64_t)8 << 20)
/* The new blocks and size are flushed after this many bytes (and when caught up), so
 * that the commits' own flushes find them durable already. */
#define SYNC_EVERY ((uint64_t)4 << 20)
#define ALIGN 4096u  /* O_DIRECT: offsets, lengths and the buffer on block boundaries */

struct cpx_gw_prefill {
    MDB_env *env;
    int fd;                 /* data.mdb, O_WRONLY | O_DIRECT */
    uint8_t *zeros;         /* CHUNK bytes, ALIGN-aligned */
    uint64_t ahead;
    uint64_t psize;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int window;             /* the server holds an uncommitted write transaction */
    uint64_t window_id;     /* windows opened so far */
    uint64_t served_id;     /* the last window the thread has filled in */
    int busy;               /* a chunk is being written (only while window is set) */
    int want;               /* the lead fell below half of ahead: fill up */
    int failed;             /* a write failed: off for good (logged) */
    int quit;
    uint64_t frontier;      /* end of the file as last seen by the thread */
    uint64_t last_used;     /* LMDB's end at the last window served */
    uint64_t written;
    uint64_t unsynced;
};

static uint64_t used_bytes(cpx_gw_prefill_t *self, uint64_t *map_size)
{
    MDB_envinfo info;
    if (mdb_env_info(self->env, &info))
        return UINT64_MAX;
    *map_size = info.me_mapsize;
    return ((uint64_t)info.me_last_pgno + 1) * self->psize;
}

/* The range to fill in this window, with the window open (so no commit runs): past the
 * end of the file and past the last committed page, up to ahead bytes past that page,
 * never past the map, and at most one step. 0 when there is nothing to do. */
static uint64_t next_range(cpx_gw_prefill_t *self, off_t *off)
{
    struct stat st;
    uint64_t map_size = 0;
    uint64_t used = used_bytes(self, &map_size);
    if (used == UINT64_MAX || fstat(self->fd, &st))
        return 0;
    uint64_t grown = used > self->last_used ? used - self->last_used : 0;
    self->last_used = used;
    uint64_t start = (uint64_t)st.st_size > used ? (uint64_t)st.st_size : used;
    start = (start + ALIGN - 1) / ALIGN * ALIGN;
    self->frontier = start;
    uint64_t target = used + self->ahead < map_size ? used + self->ahead : map_size;
    if (start >= target)
        return 0;
    uint64_t step = 2 * grown < STEP_MIN ? STEP_MIN : 2 * grown > STEP_MAX ? STEP_MAX : 2 * grown;
    uint64_t len = target - start < step ? target - start : step;
    *off = (off_t)start;
    return len / ALIGN * ALIGN;
}

static void flush_new(cpx_gw_prefill_t *self)
{
    if (!self->unsynced)
        return;
    self->unsynced = 0;
    pthread_mutex_unlock(&self->mu);
    /* Writes nothing of LMDB's that the kernel could not write back by itself at any
     * moment: only makes the new blocks and the file size durable. */
    if (fdatasync(self->fd))
        cpx_log_warn(MOD, "msg=\"flushing the prefilled blocks failed\" err=\"%s\"", strerror(errno));
    pthread_mutex_lock(&self->mu);
}

/* Writes [off, off + len) in chunks while the window stays open. Called and returns
 * with mu held. */
static void fill(cpx_gw_prefill_t *self, off_t off, uint64_t len)
{
    while (len && self->window && !self->quit) {
        size_t n = len < CHUNK ? (size_t)len : CHUNK;
        self->busy = 1;
        pthread_mutex_unlock(&self->mu);
        ssize_t w = pwrite(self->fd, self->zeros, n, off);
        int err = errno;
        pthread_mutex_lock(&self->mu);
        self->busy = 0;
        pthread_cond_broadcast(&self->cond);
        if (w != (ssize_t)n) {
            /* EINVAL: the file system takes no O_DIRECT writes; ENOSPC: the disk is
             * full, which LMDB will report on its own. Either way commits stay correct,
             * only slower: stop prefilling. */
            self->failed = 1;
            cpx_log_warn(MOD, "msg=\"prefilling stopped; commits extend the file themselves\" "
                         "err=\"%s\"", w < 0 ? strerror(err) : "short write");
            return;
        }
        off += (off_t)n;
        len -= n;
        self->frontier = (uint64_t)off;
        self->written += n;
        self->unsynced += n;
    }
}

static void *run(void *arg)
{
    cpx_gw_prefill_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->quit && !(self->window && self->want && !self->failed &&
                                self->served_id != self->window_id))
            pthread_cond_wait(&self->cond, &self->mu);
        if (self->quit)
            break;
        self->served_id = self->window_id;
        off_t off = 0;
        uint64_t len = next_range(self, &off);
        if (len)
            fill(self, off, len);
        else
            self->want = 0;  /* caught up: until the lead falls to half */
        if (!len || self->unsynced >= SYNC_EVERY)
            flush_new(self);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

static int data_path(MDB_env *env, char *out, size_t size)
{
    const char *dir = NULL;
    unsigned flags = 0;
    if (mdb_env_get_path(env, &dir) || mdb_env_get_flags(env, &flags) || !dir)
        return -1;
    int n = flags & MDB_NOSUBDIR ? snprintf(out, size, "%s", dir)
                                 : snprintf(out, size, "%s/data.mdb", dir);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Frees what new() set up; the thread, if any, has been joined. */
static void release(cpx_gw_prefill_t *self)
{
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->mu);
    free(self->zeros);
    if (self->fd >= 0)
        close(self->fd);
    free(self);
}

cpx_gw_prefill_t *cpx_gw_prefill_new(MDB_env *env, uint64_t ahead)
{
    if (!env || !ahead)
        return NULL;
    MDB_stat st;
    char path[4096];
    if (mdb_env_stat(env, &st) || data_path(env, path, sizeof path))
        return NULL;
    cpx_gw_prefill_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cond, NULL);
    self->env = env;
    self->psize = st.ms_psize;
    self->ahead = (ahead + ALIGN - 1) / ALIGN * ALIGN;
    self->want = 1;
    self->fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (self->fd < 0) {
        cpx_log_info(MOD, "msg=\"off: the store's file system refuses O_DIRECT\" err=\"%s\"",
                     strerror(errno));
        release(self);
        return NULL;
    }
    if (posix_memalign((void **)&self->zeros, ALIGN, CHUNK)) {
        self->zeros = NULL;
        release(self);
        return NULL;
    }
    memset(self->zeros, 0, CHUNK);
    if (pthread_create(&self->th, NULL, run, self)) {
        cpx_log_error(MOD, "msg=\"cannot start the prefill thread\"");
        release(self);
        return NULL;
    }
    return self;
}

void cpx_gw_prefill_destroy(cpx_gw_prefill_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cpx_gw_prefill_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->quit = 1;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->th, NULL);
    release(self);
    *self_p = NULL;
}

void cpx_gw_prefill_open(cpx_gw_prefill_t *self)
{
    if (!self)
        return;
    uint64_t map_size = 0, used = used_bytes(self, &map_size);
    pthread_mutex_lock(&self->mu);
    self->window = 1;
    self->window_id++;
    /* The thread is woken only when the lead has shrunk to half, not every cycle. */
    if (used != UINT64_MAX && used + self->ahead / 2 > self->frontier && self->frontier < map_size)
        self->want = 1;
    if (self->want && !self->failed)
        pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
}

void cpx_gw_prefill_close(cpx_gw_prefill_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->mu);
    self->window = 0;
    while (self->busy)
        pthread_cond_wait(&self->cond, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

uint64_t cpx_gw_prefill_written(cpx_gw_prefill_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->written;
    pthread_mutex_unlock(&self->mu);
    return n;
}
