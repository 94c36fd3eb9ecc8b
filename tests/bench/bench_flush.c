/* bench_flush — what a commit's flush costs when the store file grows, against the same
 * flush over blocks written with zeros beforehand (gateway/prefill.c).
 *
 *   bench_flush [--dir DIR] [--pages 8,32,128] [--rounds N]
 *
 * Each round writes `pages` 4 KiB pages at the end of the data so far, plus one page at
 * the start (as LMDB writes a commit's pages and then its meta page), and times the
 * fdatasync. "growing": the pages extend the file. "prefilled": the file was written
 * with zeros first (O_DIRECT, then flushed), so the same writes overwrite existing
 * blocks. Prints p50/p99 of both and the ratio, measured in the same run. DIR must be
 * on the disk the gateway's store uses (default: the current directory; /tmp may be
 * tmpfs, where nothing is flushed at all). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* O_DIRECT */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_ROUNDS 10000

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_flush: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Zeros over [0, bytes) with O_DIRECT, flushed: what prefill.c leaves ahead of LMDB. */
static void prefill(const char *path, size_t bytes)
{
    int fd = open(path, O_WRONLY | O_DIRECT);
    void *z;
    if (fd < 0)
        die("open O_DIRECT (the file system refuses it?)");
    if (posix_memalign(&z, PAGE, 1 << 20))
        die("posix_memalign");
    memset(z, 0, 1 << 20);
    for (size_t off = 0; off < bytes; off += 1 << 20)
        if (pwrite(fd, z, 1 << 20, (off_t)off) != 1 << 20)
            die("prefill write");
    if (fdatasync(fd))
        die("fdatasync");
    free(z);
    close(fd);
}

/* Times `rounds` flushes of `pages` new pages plus a meta page; fills q[0..1] = p50, p99. */
static void run(const char *path, int pages, int rounds, int prefilled, double q[2])
{
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    static char page[PAGE];
    memset(page, 0x5a, sizeof page);
    if (pwrite(fd, page, PAGE, 0) != PAGE || fdatasync(fd))
        die("first page");
    close(fd);
    if (prefilled)
        prefill(path, (size_t)(pages + 1) * PAGE * (size_t)(rounds + 1));
    fd = open(path, O_RDWR);
    if (fd < 0)
        die("open");
    double *d = malloc(sizeof *d * (size_t)rounds);
    if (!d)
        die("malloc");
    off_t end = PAGE;
    for (int r = 0; r < rounds; r++) {
        for (int p = 0; p < pages; p++, end += PAGE)
            if (pwrite(fd, page, PAGE, end) != PAGE)
                die("pwrite");
        if (pwrite(fd, page, PAGE, 0) != PAGE)
            die("pwrite meta");
        double t = now_ms();
        if (fdatasync(fd))
            die("fdatasync");
        d[r] = now_ms() - t;
    }
    qsort(d, (size_t)rounds, sizeof *d, cmp);
    q[0] = d[rounds / 2];
    q[1] = d[rounds * 99 / 100];
    free(d);
    close(fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    const char *dir = ".", *list = "8,32,128";
    int rounds = 500;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
            list = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_flush [--dir DIR] [--pages 8,32,128] [--rounds N]\n");
            return 2;
        }
    }
    if (rounds < 10 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_flush: --rounds must be 10..%d\n", MAX_ROUNDS);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_flush.%ld.tmp", dir, (long)getpid());
    printf("# fdatasync of N new 4 KiB pages + 1 meta page, %d rounds each, in %s\n", rounds, dir);
    printf("%-6s %22s %22s %8s\n", "pages", "growing p50/p99 ms", "prefilled p50/p99 ms", "p50 ratio");
    char *copy = strdup(list);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        int pages = atoi(tok);
        if (pages < 1 || pages > 4096) {
            fprintf(stderr, "bench_flush: pages must be 1..4096\n");
            return 2;
        }
        double g[2], p[2];
        /* alternate the order so that drift on a shared host hits both alike */
        run(path, pages, rounds, 0, g);
        run(path, pages, rounds, 1, p);
        double g2[2], p2[2];
        run(path, pages, rounds, 1, p2);
        run(path, pages, rounds, 0, g2);
        g[0] = (g[0] + g2[0]) / 2, g[1] = (g[1] + g2[1]) / 2;
        p[0] = (p[0] + p2[0]) / 2, p[1] = (p[1] + p2[1]) / 2;
        printf("%-6d %10.3f / %-9.3f %10.3f / %-9.3f %8.2f\n", pages, g[0], g[1], p[0], p[1],
               p[0] / g[0]);
    }
    free(copy);
    return 0;
}
