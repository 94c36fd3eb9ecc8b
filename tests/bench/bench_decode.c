/* bench_decode — decode + validate vs bare protobuf-c unpack of the same bytes.
 *
 * Generator-made discovery reports (~1 KiB encoded, dummy well-formed signature),
 * one core. Prints messages/s and ns/message for cpx_decode_envelope +
 * cpx_validate_envelope + cpx_msg_free, and for protobuf_c_message_unpack +
 * free_unpacked, and their ratio (target <= 2.0).
 *
 * Each round is timed twice: wall clock, and the thread's CPU time. On a loaded
 * machine a round is likely to be preempted, the longer decode+validate round more
 * often than the bare one, so the best wall-clock rounds overstate the ratio; the
 * thread's CPU time leaves out the time the scheduler gave to other processes.
 *
 * usage: bench_decode [N_MESSAGES=2000] [ROUNDS=50] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/synth.h"
#include "cpx/validate.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    int rounds = argc > 2 ? atoi(argv[2]) : 50;
    const int64_t now = 1780000000000LL;
    cpx_synth_t *s = cpx_synth_new(1);
    uint8_t **bufs = calloc((size_t)n, sizeof *bufs);
    size_t *lens = calloc((size_t)n, sizeof *lens), total = 0;
    for (int i = 0; i < n; i++) {
        cpx_envelope_t *e = cpx_synth_discovery(s, now - 1000 * i);
        if (!e || cpx_synth_dummy_sign(e) || cpx_encode(e, &bufs[i], &lens[i])) {
            fprintf(stderr, "generation failed\n");
            return 1;
        }
        total += lens[i];
        cpx_msg_free(e);
    }
    cpx_synth_destroy(&s);
    cpx_validate_opts_t opts = {.now_ms = now};
    double best_full = 1e9, best_bare = 1e9, cpu_full = 1e9, cpu_bare = 1e9;
    size_t invalid = 0;
    /* alternate the two so both see the same machine state; keep the best round */
    for (int r = 0; r < rounds; r++) {
        double c0 = cpu_s(), t0 = now_s();
        for (int i = 0; i < n; i++) {
            cpx_envelope_t *e = NULL;
            cpx_errors_t errs;
            errs.count = 0;
            errs.truncated = false;
            if (cpx_decode_envelope(bufs[i], lens[i], &e) != CPX_OK ||
                cpx_validate_envelope(e, &opts, &errs) != CPX_OK)
                invalid++;
            cpx_msg_free(e);
        }
        double t1 = now_s(), c1 = cpu_s();
        for (int i = 0; i < n; i++) {
            ProtobufCMessage *m =
                protobuf_c_message_unpack(&cpx__v1__envelope__descriptor, NULL, lens[i], bufs[i]);
            protobuf_c_message_free_unpacked(m, NULL);
        }
        double t2 = now_s(), c2 = cpu_s();
        if (c1 - c0 < cpu_full)
            cpu_full = c1 - c0;
        if (c2 - c1 < cpu_bare)
            cpu_bare = c2 - c1;
        if (t1 - t0 < best_full)
            best_full = t1 - t0;
        if (t2 - t1 < best_bare)
            best_bare = t2 - t1;
    }
    if (invalid) {
        fprintf(stderr, "%zu messages failed validation\n", invalid);
        return 1;
    }
    printf("messages: %d discovery reports, average %zu bytes encoded, best of %d rounds\n", n,
           total / (size_t)n, rounds);
    printf("decode+validate+free: %10.0f msg/s  %7.0f ns/msg\n", n / best_full, best_full / n * 1e9);
    printf("bare unpack+free:     %10.0f msg/s  %7.0f ns/msg\n", n / best_bare, best_bare / n * 1e9);
    printf("thread CPU time: decode+validate+free %7.0f ns/msg, bare %7.0f ns/msg\n",
           cpu_full / n * 1e9, cpu_bare / n * 1e9);
    printf("ratio (decode+validate / bare), thread CPU time: %.2f\n", cpu_full / cpu_bare);
    printf("ratio (decode+validate / bare): %.2f (target <= 2.00)\n", best_full / best_bare);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(lens);
    return 0;
}
