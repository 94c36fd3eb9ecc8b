/* tests/bench/clock.h — the two clocks the benchmark and load programs time with.
 *
 * now_s: monotonic seconds, for intervals and rates (immune to clock jumps).
 * wall_ms: UTC milliseconds, for the timestamps messages carry (created_ms, sent_ms). */
#ifndef CPX_BENCH_CLOCK_H
#define CPX_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
