/* bench_cases — the case index at city scale, and what case tracking costs the gateway.
 *
 *   bench_cases [--cases N] [--count M] [--rounds R] [--gateway PATH] [--skip-gateway]
 *
 * 1. N cases (default 1,000,000) in a case index as the gateway writes them (case
 *    record with the minor's two keys, encrypted personal fields, one participant,
 *    one deadline), in transactions of 10,000; one in five CLOSED:
 *      - the open-case table rebuilt from the records as the gateway does at start:
 *        time, entries, its bytes and the growth of this process's RSS;
 *      - report-to-case linking latency: HMAC of the ID number + open-case lookup +
 *        case record read, for 100,000 random known minors (p50 / p99 / mean);
 *      - `case stats` latency: a full scan aggregating by status, category and town,
 *        overdue by department and the median time to the first accepted referral
 *        (what cpxctl case stats does), three runs.
 * 2. A real cpx-gateway with the shipped Jiangyin routes, fsync on, M generator-made
 *    reports (default 20,000; batch-signed by 100) acknowledged to the sender: case
 *    tracking off vs on (casepolicy + views) in the same run, same frames, fresh
 *    stores, alternating for R rounds (default 3). Reported: msg/s each, the medians
 *    and the cost in percent (target < 25%).
 * 3. The view applied at delivery: redacting a report for a town office
 *    (decode + redact + encode) vs sending the stored bytes.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cpx/audit.h"
#include "cpx/caseindex.h"
#include "cpx/client.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/registry.h"
#include "cpx/store.h"
#include "cpx/synth.h"
#include "cpx/views.h"

#include "clock.h"
#include "dealer.h"

static int g_rounds = 3;
static char g_dir[512], g_gw_bin[1100], g_endpoint[256], g_src[1024];
#define CPX_SOURCE_DIR g_src
static pid_t g_gw_pid;

static void die(const char *what)
{
    fprintf(stderr, "bench_cases: %s\n", what);
    if (g_gw_pid > 0)
        kill(g_gw_pid, SIGKILL);
    exit(1);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- 1. the index at scale -------------------------------------------------------- */

static const char *const TOWNS[] = {"TOWN_CHENGJIANG", "TOWN_NANZHA", "TOWN_YUNTING", "TOWN_XIAGANG",
                                    "TOWN_SHENGANG", "TOWN_LIGANG", "TOWN_HUANGTU", "TOWN_YUECHENG",
                                    "TOWN_QINGYANG", "TOWN_XUXIAKE", "TOWN_HUASHI", "TOWN_ZHOUZHUANG",
                                    "TOWN_XINQIAO", "TOWN_CHANGJING", "TOWN_GUSHAN", "TOWN_ZHUTANG"};

static void id_for(uint64_t i, char out[19])
{
    /* a syntactically plausible 18-character number per i; the index only hashes it */
    snprintf(out, 19, "320281%04u%02u%02u%03u%c", 2005 + (unsigned)(i % 13), 1 + (unsigned)(i % 12),
             1 + (unsigned)(i % 28), (unsigned)((i / 28) % 1000), "0123456789X"[i % 11]);
    memcpy(out + 14, (char[]){(char)('0' + (i / 1000) % 10), (char)('0' + (i / 10000) % 10),
                              (char)('0' + (i / 100000) % 10)}, 3);
}

typedef struct agg {
    uint64_t total, by_state[8], by_cat[8], town_n[16];
    int64_t *lat;
    size_t n_lat;
    int64_t now;
    uint64_t overdue[4];
} agg_t;

static int agg_case(void *ctx, const cpx_case_rec_t *r)
{
    agg_t *a = ctx;
    a->total++;
    a->by_state[r->state & 7]++;
    for (int c = 1; c < 8; c++)
        if (r->categories & (1u << c))
            a->by_cat[c]++;
    for (size_t t = 0; t < 16; t++)
        if (!strcmp(r->town, TOWNS[t])) {
            a->town_n[t]++;
            break;
        }
    if (r->first_accepted_ms)
        a->lat[a->n_lat++] = r->first_accepted_ms - r->opened_ms;
    return 0;
}

static int agg_dl(void *ctx, const cpx_deadline_t *d)
{
    agg_t *a = ctx;
    if (d->first_due_ms <= a->now)
        a->overdue[d->kind & 3]++;
    return 0;
}

/* Resident anonymous memory of this process in KiB (RssAnon: the store's map is file
 * backed and dropped at will, so it would only blur the table's figure). */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void bench_index(size_t n_cases)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/index", g_dir);
    MDB_env *env;
    if (cpx_store_open(dir, (size_t)16 << 30, MDB_NOSYNC, &env))
        die("store");
    uint8_t ik[32], rk[32];
    cpx_random(ik, 32);
    cpx_random(rk, 32);
    cpx_caseindex_t *idx = cpx_caseindex_open(env, ik, rk);
    if (!idx)
        die("caseindex");
    int64_t t0 = wall_ms();
    double s0 = now_s();
    const size_t per_txn = 10000;
    for (size_t base = 0; base < n_cases; base += per_txn) {
        MDB_txn *txn;
        if (mdb_txn_begin(env, NULL, 0, &txn))
            die("txn");
        for (size_t i = base; i < base + per_txn && i < n_cases; i++) {
            cpx_case_rec_t r = {.version = CPX_CASEINDEX_VERSION};
            snprintf(r.id, sizeof r.id, "JY-2026-%07zu", i + 1);
            r.state = (uint8_t)(1 + i % 5);
            r.categories = (uint8_t)(1u << (1 + i % 5));
            snprintf(r.town, sizeof r.town, "%s", TOWNS[i % 16]);
            snprintf(r.first_receiver, sizeof r.first_receiver, "EDUCATION");
            r.opened_ms = t0 - (int64_t)(i % 1000) * 3600000;
            if (i % 3)
                r.first_accepted_ms = r.opened_ms + (int64_t)(i % 97) * 600000;
            r.n_reports = 1;
            char idn[19];
            id_for(i, idn);
            Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
            m.id_number = idn;
            m.name = "张小明";
            m.town = (char *)TOWNS[i % 16];
            m.current_address = "华士镇 1 号";
            Cpx__V1__Date born = CPX__V1__DATE__INIT;
            born.year = 2005 + (uint32_t)(i % 13);
            born.month = 1 + (uint32_t)(i % 12);
            born.day = 1 + (uint32_t)(i % 28);
            m.birth_date = &born;
            uint8_t key[33], nkey[33];
            cpx_deadline_t d = {.version = CPX_CASEINDEX_VERSION, .kind = CPX_DL_ACKNOWLEDGE};
            memcpy(d.item, &i, sizeof i);
            snprintf(d.dept, sizeof d.dept, "TOWN_HUASHI");
            snprintf(d.case_id, sizeof d.case_id, "%s", r.id);
            d.due_ms = d.first_due_ms = t0 + (int64_t)(i % 2000) * 60000 - 3600000;
            if (cpx_caseindex_minor_key(idx, &m, 0, key) || cpx_caseindex_minor_key(idx, &m, 1, nkey))
                die("minor key");
            /* the record holds the minor's keys: the open-case table is built from them */
            memcpy(r.subject, key + 1, 32);
            memcpy(r.name_key, nkey + 1, 32);
            r.flags |= CPX_CASE_F_HAS_ID | CPX_CASE_F_NAME_KEY;
            if (cpx_caseindex_set_minor(idx, txn, key, r.id) || cpx_caseindex_set_minor(idx, txn, nkey, r.id) ||
                cpx_caseindex_put_pii(idx, txn, r.id, &m) ||
                cpx_caseindex_add_part(idx, txn, &r, "EDUCATION") || cpx_caseindex_put(idx, txn, &r) ||
                cpx_caseindex_dl_set(idx, txn, &d))
                die("insert");
        }
        if (mdb_txn_commit(txn))
            die("commit");
    }
    mdb_env_sync(env, 1);
    double ins = now_s() - s0;
    MDB_envinfo info;
    mdb_env_info(env, &info);
    MDB_stat st;
    mdb_env_stat(env, &st);
    printf("index: %zu cases written in %.1f s (%.0f cases/s incl. 2 HMACs, AES-GCM, 4 puts each), "
           "store %.0f MiB\n", n_cases, ins, n_cases / ins,
           (double)info.me_last_pgno * st.ms_psize / 1048576.0);
    cpx_caseindex_destroy(&idx);

    /* the gateway's start: a fresh index object, its table rebuilt from the records */
    if (!(idx = cpx_caseindex_open(env, ik, rk)))
        die("caseindex");
    MDB_txn *txn;
    long rss0 = rss_kib();
    double b0 = now_s();
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || cpx_caseindex_minor_load(idx, txn))
        die("table");
    mdb_txn_abort(txn);
    double build = now_s() - b0;
    long rss1 = rss_kib();
    size_t entries, tbytes;
    cpx_caseindex_minor_stats(idx, &entries, &tbytes);
    printf("open-case table rebuilt from %zu case records in %.2f s: %zu keys, %.1f MiB held, "
           "process RSS %+.1f MiB (anonymous memory; the store's mapped pages not counted)\n",
           n_cases, build, entries, tbytes / 1048576.0, (rss1 - rss0) / 1024.0);

    /* linking latency */
    const size_t n_look = 100000;
    double *lat = malloc(n_look * sizeof *lat), sum = 0;
    if (!lat || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
        die("read txn");
    uint64_t x = 88172645463325252ull;
    size_t hits = 0;
    for (size_t k = 0; k < n_look; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t i = (size_t)(x % n_cases);
        char idn[19], found[CPX_MAX_CASE_ID + 1];
        id_for(i, idn);
        Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
        m.id_number = idn;
        uint8_t key[33];
        cpx_case_rec_t r;
        double a = now_s();
        if (!cpx_caseindex_minor_key(idx, &m, 0, key) &&
            !cpx_caseindex_find_minor(idx, txn, key, found) && !cpx_caseindex_get(idx, txn, found, &r))
            hits++;
        lat[k] = now_s() - a;
        sum += lat[k];
    }
    mdb_txn_abort(txn);
    qsort(lat, n_look, sizeof *lat, cmp_d);
    printf("linking (HMAC + open-case lookup + case read), %zu random minors of %zu: p50 %.2f us, "
           "p99 %.2f us, mean %.2f us (%zu found open; a fifth are closed)\n", n_look, n_cases, lat[n_look / 2] * 1e6,
           lat[(size_t)(n_look * 0.99)] * 1e6, sum / n_look * 1e6, hits);
    free(lat);

    /* case stats */
    for (int run = 0; run < 3; run++) {
        agg_t a = {.now = wall_ms()};
        a.lat = malloc(n_cases * sizeof *a.lat);
        double b = now_s();
        if (!a.lat || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
            die("stats txn");
        if (cpx_caseindex_dl_each(idx, txn, INT64_MAX, agg_dl, &a) ||
            cpx_caseindex_each_case(idx, txn, agg_case, &a))
            die("scan");
        mdb_txn_abort(txn);
        qsort(a.lat, a.n_lat, sizeof *a.lat, cmp_i64);
        int64_t med = a.n_lat ? a.lat[a.n_lat / 2] : 0;
        double el = now_s() - b;
        printf("case stats over %llu cases (by status/category/town, overdue by department, median "
               "to first accepted referral %.1f h): %.0f ms (run %d)\n",
               (unsigned long long)a.total, (double)med / 3600000.0, el * 1000, run + 1);
        free(a.lat);
    }
    cpx_caseindex_destroy(&idx);
    mdb_env_close(env);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "bench_cases: could not remove %s\n", dir);
}

/* ---- 2. the gateway, case tracking off vs on ------------------------------------- */

static void write_file(const char *name, const char *text, mode_t mode)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        die("write file");
    close(fd);
}

static cpx_key_t *make_keys(const char *dept, uint8_t curve_raw[32])
{
    char pub[41], sec[41], line[64], name[128], p[1024];
    zmq_curve_keypair(pub, sec);
    snprintf(line, sizeof line, "%s\n", sec);
    snprintf(name, sizeof name, "%s.curve.key", dept);
    write_file(name, line, 0600);
    snprintf(line, sizeof line, "%s\n", pub);
    snprintf(name, sizeof name, "%s.curve.pub", dept);
    write_file(name, line, 0644);
    if (curve_raw)
        zmq_z85_decode(curve_raw, pub);
    cpx_key_t *k = cpx_key_generate();
    snprintf(p, sizeof p, "%s/%s.sign.key", g_dir, dept);
    unlink(p);
    if (!k || cpx_key_save_private(k, p))
        die("signing key");
    return k;
}

static void enroll(const char *data, cpx_key_t *gw_key, const char *dept, const uint8_t curve[32],
                   const cpx_key_t *sign)
{
    MDB_env *env;
    if (cpx_store_open(data, (size_t)16 << 30, 0, &env))
        die("store");
    cpx_registry_t *reg = cpx_registry_open(env);
    cpx_audit_t *audit = cpx_audit_open(env);
    MDB_txn *txn;
    uint8_t raw[32];
    cpx_key_public_raw(sign, raw);
    if (!reg || !audit || mdb_txn_begin(env, NULL, 0, &txn) ||
        cpx_registry_enroll(reg, txn, audit, dept, curve, raw, NULL, wall_ms()) ||
        cpx_audit_sign_head(audit, txn, gw_key, wall_ms(), NULL) || mdb_txn_commit(txn))
        die("enroll");
    cpx_audit_committed(audit);
    cpx_audit_destroy(&audit);
    cpx_registry_destroy(&reg);
    mdb_env_close(env);
}

static void start_gateway(const char *cfg_name)
{
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/%s", g_dir, cfg_name);
    g_gw_pid = fork();
    if (g_gw_pid == 0) {
        char logp[1024];
        snprintf(logp, sizeof logp, "%s/gateway.log", g_dir);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execl(g_gw_bin, g_gw_bin, "--config", cfg, (char *)NULL);
        _exit(127);
    }
}

static int wait_endpoint(const char *data)
{
    char ep[1024];
    snprintf(ep, sizeof ep, "%s/%s/gateway.endpoint", g_dir, data);
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(ep, "r");
        if (f) {
            int ok = fgets(g_endpoint, sizeof g_endpoint, f) != NULL;
            fclose(f);
            if (ok) {
                g_endpoint[strcspn(g_endpoint, "\n")] = '\0';
                return 0;
            }
        }
        usleep(25000);
    }
    return -1;
}

/* Stops the gateway; returns the CPU seconds (user + system) it used. */
static double stop_gateway(void)
{
    if (g_gw_pid <= 0)
        return 0;
    kill(g_gw_pid, SIGTERM);
    struct rusage ru;
    int st;
    wait4(g_gw_pid, &st, 0, &ru);
    g_gw_pid = 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

typedef struct frames {
    size_t n_frames, n_env;
    uint8_t **data;
    size_t *len, *env_in_frame;
} frames_t;

static frames_t make_frames(size_t n, size_t batch, const cpx_key_t *key)
{
    frames_t f = {0};
    f.n_env = n;
    f.n_frames = (n + batch - 1) / batch;
    f.data = calloc(f.n_frames, sizeof *f.data);
    f.len = calloc(f.n_frames, sizeof *f.len);
    f.env_in_frame = calloc(f.n_frames, sizeof *f.env_in_frame);
    cpx_synth_t *syn = cpx_synth_new(7);
    cpx_envelope_t **envs = calloc(batch, sizeof *envs);
    if (!f.data || !f.len || !f.env_in_frame || !syn || !envs)
        die("memory");
    size_t done = 0;
    for (size_t fi = 0; fi < f.n_frames; fi++) {
        size_t k = n - done < batch ? n - done : batch;
        for (size_t i = 0; i < k; i++) {
            cpx_envelope_t *e = cpx_synth_discovery(syn, wall_ms() - 1000);
            if (!e)
                die("synth");
            free(e->sender);
            e->sender = strdup("POLICE");
            for (size_t r = 0; r < e->n_recipients; r++)
                free(e->recipients[r]);
            free(e->recipients);
            e->recipients = NULL;
            e->n_recipients = 0;
            if (e->case_id && *e->case_id) {  /* every report opens or links by minor */
                free(e->case_id);
                e->case_id = (char *)protobuf_c_empty_string;
            }
            e->in_reply_to.len = 0;
            e->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
            envs[i] = e;
        }
        if (cpx_envsign_sign_batch(envs, k, key))
            die("sign");
        if (cpx_client_encode_submit(envs, k, CPX_SUBMIT_BATCH, &f.data[fi], &f.len[fi]))
            die("encode");
        f.env_in_frame[fi] = k;
        for (size_t i = 0; i < k; i++)
            cpx_msg_free(envs[i]);
        done += k;
    }
    free(envs);
    cpx_synth_destroy(&syn);
    return f;
}

static void *open_sock(const char *dept)
{
    static void *ctx;
    if (!ctx)
        ctx = zmq_ctx_new();
    void *s = bench_dealer(ctx, g_dir, dept, g_endpoint);
    if (!s)
        die("connect");
    return s;
}

/* Sends every frame (window of unacknowledged envelopes), waits for every Ack. */
static double send_all(const frames_t *f, size_t *nacks_out)
{
    void *s = open_sock("POLICE");
    size_t acked = 0, nacks = 0, sent = 0, fi = 0;
    double t0 = now_s();
    while (acked + nacks < f->n_env && now_s() - t0 < 600) {
        while (fi < f->n_frames && sent - acked - nacks < 20000) {
            zmq_send(s, f->data[fi], f->len[fi], 0);
            sent += f->env_in_frame[fi++];
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 100);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0) {
            cpx_server_frame_t *sf = NULL;
            if (!cpx_decode_server_frame(zmq_msg_data(&m), zmq_msg_size(&m), &sf)) {
                if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_ACK)
                    acked++;
                else if (sf->frame_case == CPX__V1__SERVER_FRAME__FRAME_NACK) {
                    if (nacks++ < 3)
                        fprintf(stderr, "nack code=%d %s\n", sf->nack->code,
                                sf->nack->n_errors ? sf->nack->errors[0]->message : "");
                }
            }
            cpx_msg_free(sf);
        }
        zmq_msg_close(&m);
    }
    double el = now_s() - t0;
    zmq_close(s);
    *nacks_out = nacks;
    return el;
}

static double run_gateway(const char *label, const char *cfg_name, const char *data,
                          cpx_key_t *gw_key, const uint8_t curve[32], const cpx_key_t *police,
                          const frames_t *f, double *cpu_us)
{
    char dpath[700];
    snprintf(dpath, sizeof dpath, "%s/%s", g_dir, data);
    enroll(dpath, gw_key, "POLICE", curve, police);
    start_gateway(cfg_name);
    if (wait_endpoint(data))
        die("gateway did not start (see gateway.log)");
    usleep(200000);
    size_t nacks;
    double el = send_all(f, &nacks);
    /* CPU per message (start-up and idle included, the same in both modes) is what case
     * tracking adds; wall-clock rates on a shared 2-core machine swing with its load. */
    *cpu_us = stop_gateway() / (double)f->n_env * 1e6;
    double rate = (double)(f->n_env - nacks) / el;
    printf("%-38s %7.0f msg/s accepted and acknowledged, gateway CPU %5.1f us/msg (%zu reports, "
           "%zu nacks)\n", label, rate, *cpu_us, f->n_env, nacks);
    return rate;
}

static void bench_gateway_on_off(size_t count)
{
    char p[1200], text[4096];
    uint8_t curve[32];
    cpx_key_t *gw_key = make_keys("GATEWAY", NULL);
    cpx_key_t *police = make_keys("POLICE", curve);
    snprintf(p, sizeof p, "%s/GATEWAY.sign.pub", g_dir);
    cpx_key_save_public(gw_key, p);
    const char *src = CPX_SOURCE_DIR;
    frames_t f = {0};
    /* Alternating runs, fresh stores, the same frames; medians (the machine is shared). */
    double off[8], on[8], coff[8], con[8];
    int rounds = g_rounds;
    for (int r = 0; r < rounds * 2; r++) {
        char name[32], data[32], label[64];
        int tracking = r % 2;
        snprintf(data, sizeof data, "data%d", r);
        snprintf(text, sizeof text,
                 "endpoint: tcp://127.0.0.1:0\ndata_dir: %s\nmap_size: 4GiB\nkeys:\n"
                 "  curve_secret: GATEWAY.curve.key\n  signing_key: GATEWAY.sign.key\n"
                 "  store_key: GATEWAY.store.key\n"
                 "routes: %s/deploy/jiangyin/routes.yaml\nlog_level: warn\nbatch_max: 4096\n%s",
                 data, src, tracking ? "cases: casepolicy.yaml\n" : "");
        snprintf(name, sizeof name, "gw%d.yaml", r);
        write_file(name, text, 0644);
        if (r == 0) {
            snprintf(text, sizeof text,
                     "version: 1\nkeys:\n  index: CASES.index.key\n  records: CASES.records.key\n"
                     "views: %s/deploy/jiangyin/views.yaml\n", src);
            write_file("casepolicy.yaml", text, 0644);
            printf("building %zu signed reports ...\n", count);
            f = make_frames(count, 100, police);
        }
        snprintf(label, sizeof label, "gateway, case tracking %s (round %d)", tracking ? "on " : "off",
                 r / 2 + 1);
        double cpu;
        double rate = run_gateway(label, name, data, gw_key, curve, police, &f, &cpu);
        (tracking ? on : off)[r / 2] = rate;
        (tracking ? con : coff)[r / 2] = cpu;
    }
    qsort(off, (size_t)rounds, sizeof off[0], cmp_d);
    qsort(on, (size_t)rounds, sizeof on[0], cmp_d);
    qsort(coff, (size_t)rounds, sizeof coff[0], cmp_d);
    qsort(con, (size_t)rounds, sizeof con[0], cmp_d);
    double moff = off[rounds / 2], mon = on[rounds / 2], cpoff = coff[rounds / 2], cpon = con[rounds / 2];
    printf("median of %d: off %.0f msg/s, on %.0f msg/s: case tracking costs %.1f%% of throughput; "
           "gateway CPU %.1f -> %.1f us/msg: %.1f%% of capacity (target < 25%%)\n", rounds, moff,
           mon, (1.0 - mon / moff) * 100.0, cpoff, cpon, (1.0 - cpoff / cpon) * 100.0);
    for (size_t i = 0; i < f.n_frames; i++)
        free(f.data[i]);
    free(f.data);
    free(f.len);
    free(f.env_in_frame);
    cpx_key_destroy(&gw_key);
    cpx_key_destroy(&police);
}

/* ---- 3. views at delivery -------------------------------------------------------- */

static void bench_views(void)
{
    char path[1200], err[256];
    snprintf(path, sizeof path, "%s/deploy/jiangyin/views.yaml", CPX_SOURCE_DIR);
    cpx_views_t *v = cpx_views_load(path, err, sizeof err);
    cpx_key_t *key = cpx_key_generate();
    cpx_synth_t *syn = cpx_synth_new(3);
    if (!v || !key || !syn)
        die(v ? "keys" : err);
    const size_t n = 20000;
    uint8_t **bytes = calloc(n, sizeof *bytes);
    size_t *len = calloc(n, sizeof *len);
    for (size_t i = 0; i < n; i++) {
        cpx_envelope_t *e = cpx_synth_discovery(syn, wall_ms());
        if (!e || cpx_envsign_sign(e, key) || cpx_encode(e, &bytes[i], &len[i]))
            die("synth");
        cpx_msg_free(e);
    }
    size_t total = 0, withheld = 0;
    double t = now_s();
    for (size_t i = 0; i < n; i++) {
        uint8_t *out;
        size_t ol, nw;
        uint32_t wh[CPX_MAX_BODY_FIELDS];
        if (cpx_views_apply(v, "TOWN_HUASHI", bytes[i], len[i], &out, &ol, wh, &nw, NULL))
            die("apply");
        total += ol;
        withheld += nw;
        free(out);
    }
    double el = now_s() - t;
    printf("view at delivery (town-office: decode + redact + encode), %zu reports: %.2f us each "
           "(%.0f/s on one core), %.1f fields withheld on average; unredacted recipients: stored "
           "bytes, no decode\n", n, el / n * 1e6, n / el, (double)withheld / n);
    for (size_t i = 0; i < n; i++)
        free(bytes[i]);
    free(bytes);
    free(len);
    (void)total;
    cpx_synth_destroy(&syn);
    cpx_key_destroy(&key);
    cpx_views_destroy(&v);
}

int main(int argc, char **argv)
{
    size_t n_cases = 1000000, count = 20000;
    int skip_gw = 0;
    /* The source tree from this file's path (CMake compiles it by absolute path) unless
     * CPX_SOURCE_DIR says otherwise; the gateway next to this binary's build tree. */
    const char *env_src = getenv("CPX_SOURCE_DIR");
    snprintf(g_src, sizeof g_src, "%s", env_src ? env_src : __FILE__);
    char *cut = env_src ? NULL : strstr(g_src, "/tests/bench/");
    if (cut)
        *cut = '\0';
    snprintf(g_gw_bin, sizeof g_gw_bin, "%s", argv[0]);
    char *slash = strrchr(g_gw_bin, '/');
    snprintf(slash ? slash + 1 : g_gw_bin, sizeof g_gw_bin - (size_t)(slash ? slash + 1 - g_gw_bin : 0),
             "../gateway/cpx-gateway");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cases") && i + 1 < argc)
            n_cases = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--gateway") && i + 1 < argc)
            snprintf(g_gw_bin, sizeof g_gw_bin, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            g_rounds = atoi(argv[++i]) < 1 ? 1 : atoi(argv[i]) > 8 ? 8 : atoi(argv[i]);
        else if (!strcmp(argv[i], "--skip-gateway"))
            skip_gw = 1;
        else {
            fprintf(stderr, "usage: bench_cases [--cases N] [--count M] [--rounds R] [--gateway PATH] [--skip-gateway]\n");
            return 2;
        }
    }
    if (!n_cases)
        n_cases = 1;
    snprintf(g_dir, sizeof g_dir, "/tmp/bench_cases.XXXXXX");
    if (!mkdtemp(g_dir))
        die("mkdtemp");
    bench_index(n_cases);
    bench_views();
    if (!skip_gw)
        bench_gateway_on_off(count);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) ? 1 : 0;
}
