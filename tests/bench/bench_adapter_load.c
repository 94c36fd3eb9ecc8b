/* bench_adapter_load — the gateway's own batch-submit throughput for the rows an adapter
 * benchmark pushes, the yardstick of tests/bench/bench_adapter.py.
 *
 *   bench_adapter_load --keys DIR --dept DEPT --endpoint tcp://127.0.0.1:PORT
 *                      --mapping MAP.yaml --csv ROWS.csv [--batch 256] [--window 50000]
 *                      [--progress]   ("progress DONE TOTAL" lines on stderr)
 *
 * Maps every CSV row with the same mapping the adapter uses (not timed), then times:
 * batch-signing (cpx_envsign_sign_batch, `batch` envelopes per signature), submitting
 * one frame per batch straight to the gateway with cpx_client, and waiting for every
 * Ack (at most `window` unacknowledged). Prints "rows=N seconds=S rows_per_s=R".
 * No spool, no resend, no LMDB of its own: the fastest a sender can go through this
 * gateway. */
#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/adapter.h"
#include "cpx/envsign.h"

#include "clock.h"

#define MAX_COLS 256

static void die(const char *why)
{
    fprintf(stderr, "bench_adapter_load: %s\n", why);
    exit(1);
}

typedef struct rows {
    const cpx_mapping_t *map;
    char *cols[MAX_COLS];
    size_t n_cols;
    char *fields[MAX_COLS];
    size_t n_fields;
    bool header;
    cpx_envelope_t **envs;
    size_t n, cap;
    size_t refused;
} rows_t;

static const char *get(void *ctx, const char *name)
{
    rows_t *r = ctx;
    for (size_t i = 0; i < r->n_cols && i < r->n_fields; i++)
        if (!strcmp(r->cols[i], name))
            return r->fields[i];
    return NULL;
}

static void on_field(void *s, size_t len, void *ctx)
{
    rows_t *r = ctx;
    if (r->n_fields < MAX_COLS)
        r->fields[r->n_fields++] = strndup(s ? s : "", len);
}

static void on_record(int c, void *ctx)
{
    rows_t *r = ctx;
    (void)c;
    if (!r->header) {
        r->header = true;
        memcpy(r->cols, r->fields, r->n_fields * sizeof *r->fields);
        r->n_cols = r->n_fields;
        r->n_fields = 0;
        return;
    }
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    if (cpx_mapping_apply(r->map, get, r, &env, &errs) == CPX_OK) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 4096;
            if (!(r->envs = realloc(r->envs, r->cap * sizeof *r->envs)))
                die("memory");
        }
        r->envs[r->n++] = env;
    } else {
        r->refused++;
    }
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->fields[i]);
    r->n_fields = 0;
}

/* Line by line through the mapping's encoding, as the file connector reads. */
static void read_csv(const char *path, rows_t *r)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open csv");
    cpx_transcoder_t *tc = cpx_transcoder_new(cpx_mapping_encoding(r->map));
    struct csv_parser p;
    if (!tc || csv_init(&p, CSV_STRICT | CSV_APPEND_NULL))
        die("transcoder/csv");
    csv_set_delim(&p, (unsigned char)cpx_mapping_delimiter(r->map));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        const char *u8;
        size_t ulen, bad;
        if (cpx_transcode_line(tc, line, (size_t)n, &u8, &ulen, &bad) != CPX_OK) {
            r->refused++;
            continue;
        }
        csv_parse(&p, u8, ulen, on_field, on_record, r);
    }
    csv_fini(&p, on_field, on_record, r);
    csv_free(&p);
    free(line);
    fclose(f);
    cpx_transcoder_destroy(&tc);
}

int main(int argc, char **argv)
{
    const char *keys = NULL, *dept = NULL, *endpoint = NULL, *mpath = NULL, *csvp = NULL;
    size_t batch = 256, window = 50000;
    bool progress = false;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--progress")) {
            progress = true;
            i--;
            continue;
        }
        if (i + 1 >= argc)
            die("option without value");
        if (!strcmp(argv[i], "--keys")) keys = argv[i + 1];
        else if (!strcmp(argv[i], "--dept")) dept = argv[i + 1];
        else if (!strcmp(argv[i], "--endpoint")) endpoint = argv[i + 1];
        else if (!strcmp(argv[i], "--mapping")) mpath = argv[i + 1];
        else if (!strcmp(argv[i], "--csv")) csvp = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--window")) window = strtoul(argv[i + 1], NULL, 10);
        else die("unknown option");
    }
    if (!keys || !dept || !endpoint || !mpath || !csvp || batch < 1 || batch > CPX_MAX_BATCH_ENVELOPES)
        die("usage: --keys DIR --dept DEPT --endpoint EP --mapping MAP --csv FILE [--batch N] [--window N]");
    char err[512], path[4096];
    rows_t r;
    memset(&r, 0, sizeof r);
    cpx_mapping_t *map = cpx_mapping_load(mpath, err, sizeof err);
    if (!map)
        die(err);
    r.map = map;
    read_csv(csvp, &r);
    snprintf(path, sizeof path, "%s/%s.sign.key", keys, dept);
    cpx_key_t *key = cpx_key_load_private(path);
    cpx_client_opts_t o;
    memset(&o, 0, sizeof o);
    if (!key || cpx_client_opts_from_dir(&o, endpoint, keys, dept, NULL) != CPX_OK)
        die("keys");
    cpx_client_t *c = cpx_client_new(&o);
    if (!c)
        die("client");
    for (size_t i = 0; i < r.n; i++) {
        cpx_envelope_t *e = r.envs[i];
        uint8_t *id = malloc(CPX_ADAPTER_ID_LEN);
        if (!id || cpx_random(id, CPX_ADAPTER_ID_LEN) != CPX_OK)
            die("id");
        free(e->message_id.data);
        e->message_id.data = id;
        e->message_id.len = CPX_ADAPTER_ID_LEN;
        if (e->sender && e->sender != protobuf_c_empty_string)
            free(e->sender);
        e->sender = strdup(dept);
        e->created_ms = cpx_adapter_now_ms();
        if (!e->priority)
            e->priority = CPX__V1__PRIORITY__ROUTINE;
        if (!e->sensitivity)
            e->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    }
    /* one round trip first, so the CURVE handshake is not timed */
    cpx_client_heartbeat(c, cpx_adapter_now_ms());
    cpx_server_frame_t *f = NULL;
    if (cpx_client_recv(c, 10000, &f) != CPX_OK)
        die("no answer from the gateway");
    cpx_msg_free(f);

    double t0 = now_s(), last_hb = t0, last_prog = t0;
    size_t sent = 0, acked = 0, nacked = 0;
    while (acked + nacked < r.n) {
        while (sent < r.n && sent - acked - nacked < window) {
            size_t k = r.n - sent < batch ? r.n - sent : batch;
            if ((k == 1 ? cpx_envsign_sign(r.envs[sent], key)
                        : cpx_envsign_sign_batch(r.envs + sent, k, key)) != CPX_OK)
                die("sign");
            int rc = k == 1 ? cpx_client_submit(c, r.envs[sent]) : cpx_client_submit_batch(c, r.envs + sent, k);
            if (rc != CPX_OK)
                die("submit");
            sent += k;
            if (cpx_client_recv(c, 0, &f) == CPX_OK) {
                if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACK)
                    acked++;
                else if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_NACK && !f->nack->retryable)
                    nacked++;
                cpx_msg_free(f);
            }
        }
        if (cpx_client_recv(c, 1000, &f) == CPX_OK) {
            if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACK)
                acked++;
            else if (f->frame_case == CPX__V1__SERVER_FRAME__FRAME_NACK) {
                if (f->nack->retryable)
                    die("retryable nack: rerun with a smaller --window");
                nacked++;
            }
            cpx_msg_free(f);
        }
        if (progress && now_s() - last_prog > 0.2) {
            last_prog = now_s();
            fprintf(stderr, "progress %zu %zu\n", acked + nacked, r.n);
        }
        if (now_s() - last_hb > 1) {
            last_hb = now_s();
            cpx_client_heartbeat(c, cpx_adapter_now_ms());
        }
        if (now_s() - t0 > 600)
            die("timeout");
    }
    double dt = now_s() - t0;
    printf("rows=%zu acked=%zu nacked=%zu refused_by_mapping=%zu seconds=%.3f rows_per_s=%.0f\n", r.n, acked,
           nacked, r.refused, dt, r.n / dt);
    for (size_t i = 0; i < r.n; i++)
        cpx_msg_free(r.envs[i]);
    free(r.envs);
    for (size_t i = 0; i < r.n_cols; i++)
        free(r.cols[i]);
    cpx_client_destroy(&c);
    cpx_key_destroy(&key);
    cpx_mapping_destroy(&map);
    return nacked ? 1 : 0;
}
