/* Adapter SDK: encodings, mappings, and the spool/resend/delivery loop driven through
 * the file connector against an in-test CURVE ROUTER standing in for the gateway
 * (it verifies every sender signature, acks, nacks, drops and delivers on demand). */
#include <dirent.h>
#include <iconv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "cpx/adapter.h"
#include "cpx/envsign.h"

/* ---- helpers ------------------------------------------------------------------ */

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

/* "张三" in GB18030 / GBK, and in UTF-8 */
#define ZHANG_SAN_GB "\xd5\xc5\xc8\xfd"
#define ZHANG_SAN_U8 "\xe5\xbc\xa0\xe4\xb8\x89"

/* ---- transcoder ------------------------------------------------------------------ */

static void test_transcode(void **state)
{
    (void)state;
    assert_null(cpx_transcoder_new("LATIN-1"));
    cpx_transcoder_t *t = cpx_transcoder_new("gb18030");
    assert_non_null(t);
    const char *out;
    size_t len, bad;
    /* GB18030 BOM dropped, Chinese converted */
    const char in[] = "\x84\x31\x95\x33" ZHANG_SAN_GB ",1\n";
    assert_int_equal(cpx_transcode_line(t, in, sizeof in - 1, &out, &len, &bad), CPX_OK);
    assert_int_equal(len, strlen(ZHANG_SAN_U8 ",1\n"));
    assert_memory_equal(out, ZHANG_SAN_U8 ",1\n", len);
    /* a lead byte followed by an invalid trail byte: refused, offset of the sequence */
    const char badin[] = "ab\x81\x20x\n";
    assert_int_equal(cpx_transcode_line(t, badin, sizeof badin - 1, &out, &len, &bad), CPX_ERR_DECODE);
    assert_int_equal(bad, 2);
    /* truncated sequence at the end of the line */
    const char trunc[] = "abc\xd5";
    assert_int_equal(cpx_transcode_line(t, trunc, sizeof trunc - 1, &out, &len, &bad), CPX_ERR_DECODE);
    assert_int_equal(bad, 3);
    cpx_transcoder_destroy(&t);
    assert_null(t);
    cpx_transcoder_destroy(&t);

    t = cpx_transcoder_new("UTF-8");
    const char u8bom[] = "\xef\xbb\xbf" ZHANG_SAN_U8 "\n";
    assert_int_equal(cpx_transcode_line(t, u8bom, sizeof u8bom - 1, &out, &len, &bad), CPX_OK);
    assert_memory_equal(out, ZHANG_SAN_U8 "\n", len);
    /* GB bytes are not UTF-8 */
    const char gb[] = "x" ZHANG_SAN_GB "\n";
    assert_int_equal(cpx_transcode_line(t, gb, sizeof gb - 1, &out, &len, &bad), CPX_ERR_DECODE);
    assert_int_equal(bad, 1);
    const char nul[] = "ab\0c\n";
    assert_int_equal(cpx_transcode_line(t, nul, sizeof nul - 1, &out, &len, &bad), CPX_ERR_DECODE);
    assert_int_equal(bad, 2);
    cpx_transcoder_destroy(&t);
}

/* ---- mapping ------------------------------------------------------------------- */

static const char *MAPPING =
    "encoding: GB18030\n"
    "format: csv\n"
    "record_key: 学籍号\n"
    "fields:\n"
    "  - {from: 姓名, to: discovery_report.minor.name, required: true}\n"
    "  - {from: 身份证号, to: discovery_report.minor.id_number}\n"
    "  - {from: 身份证号, to: discovery_report.minor.id_unknown_reason, default: REPORTER_DOES_NOT_KNOW, map: {\"*\": \"\"}}\n"
    "  - {from: 性别, to: discovery_report.minor.sex, map: {男: MALE, 女: FEMALE}}\n"
    "  - {from: 出生日期, to: discovery_report.minor.birth_date, date: \"%Y/%m/%d\"}\n"
    "  - {from: 镇街, to: discovery_report.minor.town, map: {华士镇: TOWN_HUASHI, 周庄镇: TOWN_ZHOUZHUANG}}\n"
    "  - {from: 学籍号, to: discovery_report.local_ref, required: true}\n"
    "  - {to: discovery_report.channel, const: SCHOOL}\n"
    "  - {to: discovery_report.reporter.role, const: TEACHER}\n"
    "  - {to: discovery_report.reporter.duty_to_report, const: \"true\"}\n"
    "  - {to: \"discovery_report.categories[0].category\", const: SPECIAL_HARDSHIP}\n"
    "  - {to: \"discovery_report.categories[0].hardships\", const: FAMILY_POVERTY}\n"
    "  - {from: 情况, to: discovery_report.circumstances, split: \";\", map: {辍学: SCHOOL_DROPOUT, 留守: LEFT_BEHIND}}\n"
    "  - {from: 备注, to: discovery_report.observation.what, default: 无}\n"
    "  - {from: 发现时间, to: discovery_report.observation.observed_ms, date: \"%Y-%m-%d %H:%M\"}\n";

typedef struct rec {
    const char *const *names;
    const char *const *values;
    size_t n;
} rec_t;

static const char *rec_get(void *ctx, const char *name)
{
    rec_t *r = ctx;
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], name))
            return r->values[i];
    return NULL;
}

static char tmpdir[256];

static int make_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpx-adapter-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int drop_tmp(void **state)
{
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

static void test_mapping(void **state)
{
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/m.yaml", tmpdir);
    write_file(path, MAPPING, strlen(MAPPING));
    cpx_mapping_t *m = cpx_mapping_load(path, err, sizeof err);
    assert_non_null(m);
    assert_string_equal(cpx_mapping_encoding(m), "GB18030");

    static const char *const names[] = {"学籍号", "姓名", "身份证号", "性别", "出生日期", "镇街",
                                        "情况", "备注", "发现时间"};
    const char *values[] = {"S0001", " 张三 ", "", "男", "2012/03/04", "华士镇", "辍学; 留守", "",
                            "2026-11-28 08:30"};
    rec_t r = {names, values, 9};
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    assert_int_equal(cpx_mapping_apply(m, rec_get, &r, &env, &errs), CPX_OK);
    assert_int_equal(env->body_case, CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT);
    Cpx__V1__DiscoveryReport *d = env->discovery_report;
    assert_string_equal(d->minor->name, "张三");
    assert_int_equal(d->minor->sex, CPX__V1__SEX__MALE);
    assert_int_equal(d->minor->id_unknown_reason, CPX__V1__ID_UNKNOWN_REASON__REPORTER_DOES_NOT_KNOW);
    assert_int_equal(d->minor->birth_date->year, 2012);
    assert_int_equal(d->minor->birth_date->month, 3);
    assert_int_equal(d->minor->birth_date->day, 4);
    assert_string_equal(d->minor->town, "TOWN_HUASHI");
    assert_int_equal(d->channel, CPX__V1__CHANNEL__SCHOOL);
    assert_int_equal(d->n_categories, 1);
    assert_int_equal(d->categories[0]->category, CPX__V1__CATEGORY__SPECIAL_HARDSHIP);
    assert_int_equal(d->categories[0]->n_hardships, 1);
    assert_int_equal(d->n_circumstances, 2);
    assert_int_equal(d->circumstances[1], CPX__V1__CIRCUMSTANCE__LEFT_BEHIND);
    assert_string_equal(d->observation->what, "无");
    /* 2026-11-28 08:30 in Jiangyin is 00:30 UTC */
    assert_int_equal(d->observation->observed_ms, 1795825800000LL);
    assert_true(d->reporter->duty_to_report);
    cpx_msg_free(env);
    /* with an ID number: no id_unknown_reason ("*" maps to nothing) */
    values[2] = "320281201203040017";
    memset(&errs, 0, sizeof errs);
    assert_int_equal(cpx_mapping_apply(m, rec_get, &r, &env, &errs), CPX_OK);
    assert_string_equal(env->discovery_report->minor->id_number, "320281201203040017");
    assert_int_equal(env->discovery_report->minor->id_unknown_reason, 0);
    cpx_msg_free(env);

    /* bad values: every problem reported, naming the schema path and the rule */
    const char *bad[] = {"S0002", "", "", "X", "2012-03-04", "华士镇", "辍学;逃课", "", ""};
    rec_t rb = {names, bad, 9};
    memset(&errs, 0, sizeof errs);
    assert_int_equal(cpx_mapping_apply(m, rec_get, &rb, &env, &errs), CPX_ERR_INVALID);
    assert_null(env);
    char text[2048];
    cpx_errors_format(&errs, text, sizeof text);
    assert_non_null(strstr(text, "discovery_report.minor.name: required"));
    assert_non_null(strstr(text, "discovery_report.minor.sex: value_map"));
    assert_non_null(strstr(text, "discovery_report.minor.birth_date: date_format"));
    assert_non_null(strstr(text, "discovery_report.circumstances: value_map"));
    assert_int_equal(errs.count, 4);

    /* header check */
    static const char *const cols[] = {"学籍号", "身份证号"};
    memset(&errs, 0, sizeof errs);
    assert_int_equal(cpx_mapping_check_columns(m, cols, 2, &errs), CPX_ERR_INVALID);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].rule, "missing_column");
    cpx_mapping_destroy(&m);
    assert_null(m);

    /* mistakes in the mapping itself are refused at load, naming file:line */
    static const char *const broken[] = {
        "fields:\n  - {from: a, to: discovery_report.minor.nmae}\n",
        "fields:\n  - {from: a, to: discovery_report.minor.sex, map: {x: MALEE}}\n",
        "fields:\n  - {from: a, to: sender}\n",
        "fields:\n  - {from: a, to: discovery_report.minor.birth_date}\n",
        "fields:\n  - {from: a, to: discovery_report.local_ref}\n  - {from: b, to: referral.reason}\n",
        "encoding: BIG5\nfields:\n  - {from: a, to: discovery_report.local_ref}\n",
        "fields: [\n",
    };
    for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
        write_file(path, broken[i], strlen(broken[i]));
        err[0] = '\0';
        assert_null(cpx_mapping_load(path, err, sizeof err));
        assert_non_null(strstr(err, path));
    }
}

static void test_json_envelope(void **state)
{
    (void)state;
    const char *j = "{\"priority\":\"URGENT\",\"discovery_report\":{\"channel\":\"HOTLINE\","
                    "\"minor\":{\"name\":\"李四\",\"birth_date\":\"2015-06-01\"}}}";
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    assert_int_equal(cpx_adapter_json_to_envelope(j, strlen(j), &env, &errs), CPX_OK);
    assert_string_equal(env->discovery_report->minor->name, "李四");
    assert_int_equal(env->priority, CPX__V1__PRIORITY__URGENT);
    char *out = cpx_adapter_delivery_json(7, env, NULL, 0);
    assert_non_null(strstr(out, "\"name\":\"李四\""));
    assert_non_null(strstr(out, "\"delivery_id\":7"));
    free(out);
    cpx_msg_free(env);
    const char *withsender = "{\"sender\":\"POLICE\",\"discovery_report\":{}}";
    memset(&errs, 0, sizeof errs);
    assert_int_equal(cpx_adapter_json_to_envelope(withsender, strlen(withsender), &env, &errs),
                     CPX_ERR_INVALID);
    assert_string_equal(errs.items[0].rule, "set_by_adapter");
    memset(&errs, 0, sizeof errs);
    assert_int_equal(cpx_adapter_json_to_envelope("{\"x\":1}", 7, &env, &errs), CPX_ERR_INVALID);
}

/* ---- the loop against an in-test gateway ---------------------------------------- */

typedef struct gw {
    void *ctx, *router;
    char endpoint[64], pub[41], sec[41];
    zmq_msg_t peer;
    bool have_peer;
    cpx_key_t *sender_pub;
    /* behaviour */
    int drop_next;          /* submissions to ignore (lost) */
    bool silent;            /* answer nothing */
    bool ack_twice;         /* answer every Ack again, as a resend would be answered */
    /* record */
    uint8_t (*seen)[16];
    size_t n_seen, n_unique, n_frames, n_batch_frames, n_bad_sig;
    size_t n_grouped_submits, n_acks_frames;   /* grouped_acks Submits, Acks frames sent */
    size_t n_hb, first_hb_per_frame, last_hb_per_frame;  /* heartbeats, their deliveries_per_frame */
    size_t n_dack_frames, n_dacks_frames;      /* DeliveryAck frames, DeliveryAcks frames */
    uint32_t confirmed[1024];                  /* confirmations per delivery id */
} gw_t;

static void gw_start(gw_t *g)
{
    memset(g, 0, sizeof *g);
    assert_int_equal(zmq_curve_keypair(g->pub, g->sec), 0);
    g->ctx = zmq_ctx_new();
    g->router = zmq_socket(g->ctx, ZMQ_ROUTER);
    int one = 1;
    zmq_setsockopt(g->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(g->router, ZMQ_CURVE_SECRETKEY, g->sec, 40);
    assert_int_equal(zmq_bind(g->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof g->endpoint;
    zmq_getsockopt(g->router, ZMQ_LAST_ENDPOINT, g->endpoint, &len);
    g->seen = calloc(100000, 16);
    zmq_msg_init(&g->peer);
}

static void gw_stop(gw_t *g)
{
    int zero = 0;
    zmq_setsockopt(g->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_msg_close(&g->peer);
    zmq_close(g->router);
    zmq_ctx_term(g->ctx);
    free(g->seen);
}

static void gw_send(gw_t *g, const cpx_server_frame_t *sf)
{
    size_t n = protobuf_c_message_get_packed_size(&sf->base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&sf->base, buf);
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, &g->peer);
    zmq_msg_send(&id, g->router, ZMQ_SNDMORE);
    zmq_send(g->router, buf, n, 0);
    free(buf);
}

/* Answers one envelope: a Nack frame, or an Ack — in a frame of its own, or into
 * *grouped (returns true) for an Acks frame of the whole Submit. */
static bool gw_answer(gw_t *g, const cpx_envelope_t *e, Cpx__V1__Ack *grouped)
{
    cpx_envsign_result_t res;
    if (cpx_envsign_verify(e, g->sender_pub, &res) != CPX_OK) {
        g->n_bad_sig++;
        return false;
    }
    if (g->drop_next > 0) {
        g->drop_next--;
        return false;
    }
    bool dup = false;
    for (size_t i = 0; i < g->n_seen && !dup; i++)
        dup = !memcmp(g->seen[i], e->message_id.data, 16);
    if (!dup) {
        memcpy(g->seen[g->n_seen++], e->message_id.data, 16);
        g->n_unique++;
    }
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    const char *name = e->discovery_report && e->discovery_report->minor
                           ? e->discovery_report->minor->name : "";
    if (!strcmp(name, "王五")) {
        Cpx__V1__FieldError fe = CPX__V1__FIELD_ERROR__INIT, *fes[1] = {&fe};
        fe.path = "discovery_report.minor.id_number";
        fe.rule = "check_digit";
        fe.message = "check digit mismatch";
        Cpx__V1__Nack nack = CPX__V1__NACK__INIT;
        nack.message_id = e->message_id;
        nack.code = CPX__V1__ERROR_CODE__INVALID;
        nack.n_errors = 1;
        nack.errors = fes;
        sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_NACK;
        sf.nack = &nack;
        gw_send(g, &sf);
        return false;
    }
    Cpx__V1__Ack ack = CPX__V1__ACK__INIT;
    ack.message_id = e->message_id;
    ack.duplicate = dup;
    if (grouped) {
        *grouped = ack;
        return true;
    }
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_ACK;
    sf.ack = &ack;
    gw_send(g, &sf);
    if (g->ack_twice) {
        ack.duplicate = true;
        gw_send(g, &sf);
    }
    return false;
}

/* A grouped_acks batch: its Acks in one Acks frame (twice with ack_twice), as the
 * gateway answers them. */
static void gw_answer_grouped(gw_t *g, const Cpx__V1__Batch *b)
{
    Cpx__V1__Ack *acks = calloc(b->n_envelopes, sizeof *acks);
    Cpx__V1__Ack **ptrs = calloc(b->n_envelopes, sizeof *ptrs);
    size_t k = 0;
    for (size_t i = 0; i < b->n_envelopes; i++)
        if (gw_answer(g, b->envelopes[i], &acks[k])) {
            ptrs[k] = &acks[k];
            k++;
        }
    Cpx__V1__Acks as = CPX__V1__ACKS__INIT;
    as.n_acks = k;
    as.acks = ptrs;
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_ACKS;
    sf.acks = &as;
    for (int round = 0; k && round < (g->ack_twice ? 2 : 1); round++) {
        gw_send(g, &sf);
        g->n_acks_frames++;
        for (size_t i = 0; i < k; i++)
            acks[i].duplicate = true;
    }
    free(acks);
    free(ptrs);
}

static void gw_note_confirm(gw_t *g, const Cpx__V1__DeliveryAck *a)
{
    if (a->delivery_id < sizeof g->confirmed / sizeof *g->confirmed)
        g->confirmed[a->delivery_id]++;
}

/* Serves whatever is waiting; returns the number of client frames seen. */
static int gw_serve(gw_t *g, cpx_client_frame_t **keep_ack)
{
    int n = 0;
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, g->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return n;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, g->router, 0);
        zmq_msg_copy(&g->peer, &id);
        zmq_msg_close(&id);
        g->have_peer = true;
        n++;
        cpx_client_frame_t *cf = NULL;
        assert_int_equal(cpx_decode_client_frame(zmq_msg_data(&body), zmq_msg_size(&body), &cf), CPX_OK);
        zmq_msg_close(&body);
        g->n_frames++;
        if (!g->silent && cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_SUBMIT) {
            Cpx__V1__Submit *s = cf->submit;
            if (s->content_case == CPX__V1__SUBMIT__CONTENT_ENVELOPE) {
                gw_answer(g, s->envelope, NULL);
            } else if (s->grouped_acks) {
                g->n_batch_frames++;
                g->n_grouped_submits++;
                gw_answer_grouped(g, s->batch);
            } else {
                g->n_batch_frames++;
                for (size_t i = 0; i < s->batch->n_envelopes; i++)
                    gw_answer(g, s->batch->envelopes[i], NULL);
            }
        } else if (cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK) {
            g->n_dack_frames++;
            gw_note_confirm(g, cf->delivery_ack);
        } else if (cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACKS) {
            g->n_dacks_frames++;
            for (size_t i = 0; i < cf->delivery_acks->n_acks; i++)
                gw_note_confirm(g, cf->delivery_acks->acks[i]);
        }
        if (cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT) {
            if (!g->n_hb++)
                g->first_hb_per_frame = cf->heartbeat->deliveries_per_frame;
            g->last_hb_per_frame = cf->heartbeat->deliveries_per_frame;
        }
        if (!g->silent && cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_HEARTBEAT) {
            Cpx__V1__Heartbeat hb = CPX__V1__HEARTBEAT__INIT;
            cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
            sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_HEARTBEAT;
            sf.heartbeat = &hb;
            gw_send(g, &sf);
        }
        if (keep_ack && cf->frame_case == CPX__V1__CLIENT_FRAME__FRAME_DELIVERY_ACK && !*keep_ack) {
            *keep_ack = cf;
            continue;
        }
        cpx_msg_free(cf);
    }
}

typedef struct fx {
    gw_t gw;
    cpx_key_t *sign;
    uint8_t idkey[32];
    char spool[512], dir[512], conf_path[512];
    cpx_conf_t *conf;
    cpx_adapter_opts_t o;
} fx_t;

static int fx_setup(void **state)
{
    make_tmp(state);
    fx_t *f = calloc(1, sizeof *f);
    gw_start(&f->gw);
    f->sign = cpx_key_generate();
    uint8_t raw[32];
    cpx_key_public_raw(f->sign, raw);
    f->gw.sender_pub = cpx_key_from_raw_public(raw);
    memset(f->idkey, 7, sizeof f->idkey);
    snprintf(f->spool, sizeof f->spool, "%s/spool", tmpdir);
    snprintf(f->dir, sizeof f->dir, "%s/exchange", tmpdir);
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/m.yaml", tmpdir);
    write_file(mpath, MAPPING, strlen(MAPPING));
    snprintf(f->conf_path, sizeof f->conf_path, "%s/adapter.yaml", tmpdir);
    const char *c = "file:\n  dir: exchange\n  mapping: m.yaml\n";
    write_file(f->conf_path, c, strlen(c));
    char err[256];
    f->conf = cpx_conf_load(f->conf_path, err, sizeof err);
    assert_non_null(f->conf);
    f->o.client.endpoint = f->gw.endpoint;
    memcpy(f->o.client.server_pub, f->gw.pub, 41);
    zmq_curve_keypair(f->o.client.public_key, f->o.client.secret_key);
    f->o.dept = "EDUCATION";
    f->o.spool_dir = f->spool;
    f->o.sign_key = f->sign;
    f->o.id_key = f->idkey;
    f->o.batch = 64;
    f->o.cycle_max = 100;
    f->o.resend_after_ms = 300;
    f->o.heartbeat_ms = 100;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    gw_stop(&f->gw);
    cpx_key_destroy(&f->sign);
    cpx_key_destroy(&f->gw.sender_pub);
    cpx_conf_destroy(&f->conf);
    free(f);
    return drop_tmp(state);
}

static void run_until(fx_t *f, cpx_adapter_t *a, bool (*done)(fx_t *, cpx_adapter_t *), int max_ms)
{
    for (int t = 0; t < max_ms / 10; t++) {
        assert_int_equal(cpx_adapter_cycle(a, 10), CPX_OK);
        gw_serve(&f->gw, NULL);
        if (done(f, a))
            return;
    }
    fail_msg("condition not reached in %d ms", max_ms);
}

static void put_gb(FILE *fp, const char *u8)
{
    iconv_t cd = iconv_open("GB18030", "UTF-8");
    char out[4096], *ip = (char *)u8, *op = out;
    size_t il = strlen(u8), ol = sizeof out;
    assert_true(iconv(cd, &ip, &il, &op, &ol) != (size_t)-1);
    iconv_close(cd);
    fwrite(out, 1, (size_t)(op - out), fp);
}

/* n rows in GB18030 with a BOM and CRLF line ends, then raw extra bytes */
static void write_roster(const char *dir, const char *name, int n, const char *extra)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/.%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("\x84\x31\x95\x33", fp); /* GB18030 BOM */
    put_gb(fp, "学籍号,姓名,身份证号,性别,出生日期,镇街,情况,备注,发现时间\r\n");
    for (int i = 0; i < n; i++) {
        char row[512];
        snprintf(row, sizeof row, "S%05d,张三%d,,男,2012/01/%02d,华士镇,辍学,\"备注, 有逗号\",\r\n", i,
                 i, i % 28 + 1);
        put_gb(fp, row);
    }
    if (extra)
        fputs(extra, fp);
    fclose(fp);
    char final[1024];
    snprintf(final, sizeof final, "%s/%s", dir, name);
    assert_int_equal(rename(path, final), 0);
}

static bool file_done(fx_t *f, cpx_adapter_t *a)
{
    (void)a;
    char p[1024];
    snprintf(p, sizeof p, "%s/done/roster.csv.receipt", f->dir);
    return access(p, F_OK) == 0;
}

static void test_file_roundtrip(void **state)
{
    fx_t *f = *state;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    char inbox[600];
    snprintf(inbox, sizeof inbox, "%s/inbox", f->dir);
    /* 300 good rows, then: an invalid GB18030 byte, a Nack from the gateway (王五), an
     * unknown sex code, a row with too few fields, a malformed quote */
    write_roster(inbox, "roster.csv", 300,
                 "S90001,\xd5\xc5\x81\x20,,\xc4\xd0,2012/01/01,,,,\r\n"
                 "S90002,\xcd\xf5\xce\xe5,,\xc4\xd0,2012/01/01,,,,\r\n"
                 "S90003,\xc0\xee\xcb\xc4,,X,2012/01/01,,,,\r\n"
                 "S90004,\xc0\xee\xcb\xc4\r\n"
                 "S90005,\"ab\"c,,\xc4\xd0,2012/01/01,,,,\r\n"
                 "S90006,\xc0\xee\xcb\xc4,,\xc5\xae,2012/01/01,,,,\r\n");
    f->gw.drop_next = 5; /* the first five are lost on the way: resent */
    run_until(f, a, file_done, 20000);
    assert_int_equal(f->gw.n_bad_sig, 0);
    assert_int_equal(f->gw.n_unique, 302); /* 300 + 王五 (nacked) + the last good row */
    assert_true(f->gw.n_batch_frames > 0);
    /* batches ask for grouped Acks, and the Acks frames settle them (acked below) */
    assert_int_equal(f->gw.n_grouped_submits, f->gw.n_batch_frames);
    assert_true(f->gw.n_acks_frames > 0);
    cpx_adapter_counters_t c;
    cpx_adapter_counters(a, &c);
    assert_int_equal(c.spooled, 302);
    assert_int_equal(c.acked, 301);
    assert_int_equal(c.nacked, 1);
    assert_int_equal(c.failed, 4);
    assert_true(c.resent >= 5 && c.resent < 100); /* the lost five, not every batch */
    assert_int_equal(cpx_adapter_pending_count(a), 0);

    char p[1024];
    snprintf(p, sizeof p, "%s/done/roster.csv.receipt", f->dir);
    char *receipt = read_all(p);
    assert_non_null(strstr(receipt, "\"acknowledged\": 301"));
    assert_non_null(strstr(receipt, "\"rejected\": 5"));
    assert_non_null(strstr(receipt, "\"records\": 306"));
    free(receipt);
    snprintf(p, sizeof p, "%s/done/roster.csv", f->dir);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/inbox/roster.csv", f->dir);
    assert_int_not_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/rejected/roster.csv.errors", f->dir);
    char *errors = read_all(p);
    assert_non_null(errors);
    /* lines: header is 1, rows start at 2: S90001 is line 302 */
    assert_non_null(strstr(errors, "roster.csv:302: record: encoding: bytes invalid in GB18030 at line 302 byte offset 9"));
    assert_non_null(strstr(errors, "roster.csv:303: INVALID: discovery_report.minor.id_number: check_digit"));
    assert_non_null(strstr(errors, "roster.csv:304: discovery_report.minor.sex: value_map"));
    assert_non_null(strstr(errors, "roster.csv:305: record: field_count"));
    assert_non_null(strstr(errors, "roster.csv:306: record: csv_syntax"));
    free(errors);
    cpx_adapter_destroy(&a);
    assert_null(a);

    size_t pending, rejected;
    assert_int_equal(cpx_adapter_spool_status(f->spool, &c, &pending, &rejected), CPX_OK);
    assert_int_equal(c.acked, 301);
    assert_int_equal(pending, 0);
    assert_int_equal(rejected, 5);
}

static bool all_acked(fx_t *f, cpx_adapter_t *a)
{
    (void)f;
    return file_done(f, a) && cpx_adapter_pending_count(a) == 0;
}

/* A restart mid-file neither loses nor repeats a row; silence then return resends. */
static void test_restart_and_outage(void **state)
{
    fx_t *f = *state;
    f->o.cycle_max = 50;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    char inbox[600];
    snprintf(inbox, sizeof inbox, "%s/inbox", f->dir);
    write_roster(inbox, "roster.csv", 1000, NULL);
    f->gw.silent = true; /* gateway down: nothing acknowledged */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(cpx_adapter_cycle(a, 5), CPX_OK);
        gw_serve(&f->gw, NULL);
    }
    size_t spooled_before = cpx_adapter_pending_count(a);
    assert_true(spooled_before > 0 && spooled_before < 1000);
    cpx_adapter_destroy(&a); /* as if killed: only the spool survives */

    f->gw.silent = false;
    a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    assert_int_equal(cpx_adapter_pending_count(a), spooled_before);
    run_until(f, a, all_acked, 30000);
    assert_int_equal(f->gw.n_unique, 1000);
    assert_int_equal(f->gw.n_bad_sig, 0);
    cpx_adapter_counters_t c;
    cpx_adapter_counters(a, &c);
    assert_int_equal(c.spooled, 1000);
    assert_int_equal(c.acked, 1000);
    cpx_adapter_destroy(&a);
}

/* An Ack for an entry already settled counts as a duplicate, never as a second ack:
 * acked + nacked + pending == spooled, also after a restart. */
static void test_duplicate_acks(void **state)
{
    fx_t *f = *state;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    char inbox[600];
    snprintf(inbox, sizeof inbox, "%s/inbox", f->dir);
    write_roster(inbox, "roster.csv", 400, NULL);
    f->gw.ack_twice = true;
    run_until(f, a, all_acked, 20000);
    /* the second answers to the last batch may still be on their way */
    cpx_adapter_counters_t c;
    cpx_adapter_counters(a, &c);
    for (int i = 0; i < 500 && c.duplicate_acks < 400; i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(&f->gw, NULL);
        cpx_adapter_counters(a, &c);
    }
    assert_int_equal(f->gw.n_unique, 400);
    /* settled by the Acks frames of the batches, not by answers to resends */
    assert_true(f->gw.n_acks_frames > 0);
    assert_true(c.resent < 100);
    assert_int_equal(c.spooled, 400);
    assert_int_equal(c.acked, 400);
    assert_int_equal(c.duplicate_acks, 400);
    cpx_adapter_destroy(&a);
    size_t pending, rejected;
    assert_int_equal(cpx_adapter_spool_status(f->spool, &c, &pending, &rejected), CPX_OK);
    assert_int_equal(c.acked, 400);
    assert_int_equal(c.duplicate_acks, 400);
    assert_int_equal(pending, 0);
}

/* Deliveries: written to outbox/ once, confirmed after commit, redelivery confirmed
 * again without a second hand-over. */
static void test_delivery(void **state)
{
    fx_t *f = *state;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    /* let the adapter connect so the router knows its identity */
    for (int i = 0; i < 100 && !f->gw.have_peer; i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(&f->gw, NULL);
    }
    assert_true(f->gw.have_peer);

    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    ref.to = "EDUCATION";
    ref.reason = "辍学三周，需要教育帮扶";
    ref.task = CPX__V1__TASK__EDUCATION_SUPPORT;
    uint8_t mid[16];
    memset(mid, 0xab, sizeof mid);
    cpx_envelope_t env = CPX__V1__ENVELOPE__INIT;
    env.message_id.data = mid;
    env.message_id.len = 16;
    env.sender = "CIVIL_AFFAIRS";
    env.body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
    env.referral = &ref;
    Cpx__V1__Deliver dl = CPX__V1__DELIVER__INIT;
    dl.delivery_id = 42;
    dl.envelope = &env;
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_DELIVER;
    sf.deliver = &dl;
    for (int round = 0; round < 2; round++) {
        gw_send(&f->gw, &sf);
        cpx_client_frame_t *ack = NULL;
        for (int i = 0; i < 300 && !ack; i++) {
            cpx_adapter_cycle(a, 10);
            gw_serve(&f->gw, &ack);
        }
        assert_non_null(ack);
        assert_int_equal(ack->delivery_ack->delivery_id, dl.delivery_id);
        assert_int_equal(ack->delivery_ack->status, CPX__V1__DELIVERY_STATUS__TAKEN);
        assert_memory_equal(ack->delivery_ack->message_id.data, mid, 16);
        cpx_msg_free(ack);
        dl.delivery_id = 43; /* the redelivery has a new delivery id */
    }
    char p[1024];
    snprintf(p, sizeof p, "%s/outbox/abababababababababababababababab.json", f->dir);
    char *json = read_all(p);
    assert_non_null(json);
    assert_non_null(strstr(json, "辍学三周，需要教育帮扶"));
    assert_non_null(strstr(json, "\"body_kind\":\"referral\""));
    free(json);
    cpx_adapter_counters_t c;
    cpx_adapter_counters(a, &c);
    assert_int_equal(c.delivered, 1); /* handed over once */
    assert_int_equal(c.confirmed, 2); /* confirmed twice */
    /* exactly one file in outbox/ */
    snprintf(p, sizeof p, "%s/outbox", f->dir);
    DIR *d = opendir(p);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));)
        files += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 1);
    cpx_adapter_destroy(&a);
}

/* A Deliveries frame of deliveries from..to (delivery id = i, message id from i), plus a
 * redelivery of delivery `again` (new delivery id `again_as`) when again_as is not 0. */
static void gw_send_deliveries(gw_t *g, uint64_t from, uint64_t to, uint64_t again, uint64_t again_as)
{
    size_t n = (size_t)(to - from + 1) + (again_as != 0);
    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    ref.to = "EDUCATION";
    ref.reason = "辍学三周，需要教育帮扶";
    ref.task = CPX__V1__TASK__EDUCATION_SUPPORT;
    cpx_envelope_t *envs = calloc(n, sizeof *envs);
    Cpx__V1__Deliver *dls = calloc(n, sizeof *dls), **ptrs = calloc(n, sizeof *ptrs);
    uint8_t (*mids)[16] = calloc(n, 16);
    for (size_t i = 0; i < n; i++) {
        uint64_t id = i + from <= to ? i + from : again;
        memset(mids[i], 0xcd, 16);
        mids[i][0] = (uint8_t)(id >> 8);
        mids[i][1] = (uint8_t)id;
        envs[i] = (cpx_envelope_t)CPX__V1__ENVELOPE__INIT;
        envs[i].message_id = (ProtobufCBinaryData){16, mids[i]};
        envs[i].sender = "CIVIL_AFFAIRS";
        envs[i].body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
        envs[i].referral = &ref;
        dls[i] = (Cpx__V1__Deliver)CPX__V1__DELIVER__INIT;
        dls[i].delivery_id = i + from <= to ? id : again_as;
        dls[i].envelope = &envs[i];
        ptrs[i] = &dls[i];
    }
    Cpx__V1__Deliveries ds = CPX__V1__DELIVERIES__INIT;
    ds.n_deliveries = n;
    ds.deliveries = ptrs;
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_DELIVERIES;
    sf.deliveries = &ds;
    gw_send(g, &sf);
    free(envs);
    free(dls);
    free(ptrs);
    free(mids);
}

/* One Deliver frame of delivery `id` (message id from id, as gw_send_deliveries). */
static void gw_send_deliver(gw_t *g, uint64_t id)
{
    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    ref.to = "EDUCATION";
    ref.reason = "r";
    ref.task = CPX__V1__TASK__EDUCATION_SUPPORT;
    uint8_t mid[16];
    memset(mid, 0xcd, sizeof mid);
    mid[0] = (uint8_t)(id >> 8);
    mid[1] = (uint8_t)id;
    cpx_envelope_t env = CPX__V1__ENVELOPE__INIT;
    env.message_id = (ProtobufCBinaryData){16, mid};
    env.sender = "CIVIL_AFFAIRS";
    env.body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
    env.referral = &ref;
    Cpx__V1__Deliver dl = CPX__V1__DELIVER__INIT;
    dl.delivery_id = id;
    dl.envelope = &env;
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_DELIVER;
    sf.deliver = &dl;
    gw_send(g, &sf);
}

static size_t outbox_files(const fx_t *f)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/outbox", f->dir);
    DIR *d = opendir(p);
    size_t files = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        files += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return files;
}

static bool confirmed_upto(const gw_t *g, uint64_t last)
{
    for (uint64_t i = 1; i <= last; i++)
        if (!g->confirmed[i])
            return false;
    return true;
}

/* The gateway comes back on the same endpoint: a new ROUTER (the adapter's DEALER
 * reconnects, a new connection). */
static void gw_restart(gw_t *g)
{
    int zero = 0, one = 1;
    zmq_setsockopt(g->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(g->router);
    g->router = zmq_socket(g->ctx, ZMQ_ROUTER);
    zmq_setsockopt(g->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(g->router, ZMQ_CURVE_SECRETKEY, g->sec, 40);
    int rc = -1;
    for (int i = 0; i < 100 && rc; i++, usleep(rc ? 20000 : 0))
        rc = zmq_bind(g->router, g->endpoint);
    assert_int_equal(rc, 0);
    g->have_peer = false;
    g->n_hb = 0;
}

/* Grouped deliveries: the adapter asks for Deliveries frames (in its first heartbeat and
 * right after a reconnect), hands every element to the connector once, and confirms
 * what a cycle took in DeliveryAcks frames — nothing lost, nothing twice. */
static void test_grouped_deliveries(void **state)
{
    fx_t *f = *state;
    gw_t *g = &f->gw;
    f->o.heartbeat_ms = 60000; /* no periodic heartbeat during the test: only the ones asked for */
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    /* the hello, queued by cpx_adapter_new: no cycle has run yet, so the first one sees
     * the first handshake and the Deliveries frames below together (they are from this
     * first connection: grouped confirmations at once) */
    for (int i = 0; i < 300 && !g->have_peer; i++) {
        usleep(10000);
        gw_serve(g, NULL);
    }
    assert_true(g->have_peer);
    assert_int_equal(g->first_hb_per_frame, 64); /* the hello already asks for them */

    /* 100 deliveries in two frames (64 + 36), the second also redelivering delivery 5
     * as delivery 101 */
    gw_send_deliveries(g, 1, 64, 0, 0);
    gw_send_deliveries(g, 65, 100, 5, 101);
    for (int i = 0; i < 500 && !confirmed_upto(g, 101); i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    assert_true(confirmed_upto(g, 101));
    for (uint64_t i = 1; i <= 101; i++)
        assert_int_equal(g->confirmed[i], 1);
    assert_int_equal(g->n_dack_frames, 0); /* no DeliveryAck frame: the cycle's in one */
    assert_true(g->n_dacks_frames >= 1 && g->n_dacks_frames <= 2);
    assert_int_equal(outbox_files(f), 100);
    cpx_adapter_counters_t c;
    cpx_adapter_counters(a, &c);
    assert_int_equal(c.delivered, 100); /* handed over once each */
    assert_int_equal(c.confirmed, 101); /* the redelivery confirmed again */

    /* the gateway restarts: the new connection hears deliveries_per_frame at once, long
     * before the next periodic heartbeat */
    gw_restart(g);
    for (int i = 0; i < 300 && !g->n_hb; i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    assert_int_equal(g->n_hb, 1);
    assert_int_equal(g->last_hb_per_frame, 64);
    /* until the new gateway sends a grouped frame (it may be an older build), several
     * confirmations of one cycle go singly; then grouped again */
    size_t before = g->n_dacks_frames, singles = g->n_dack_frames;
    for (uint64_t id = 102; id <= 104; id++)
        gw_send_deliver(g, id);
    for (int i = 0; i < 300 && !confirmed_upto(g, 104); i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    assert_true(confirmed_upto(g, 104));
    assert_int_equal(g->n_dack_frames, singles + 3);
    assert_int_equal(g->n_dacks_frames, before);
    gw_send_deliveries(g, 105, 107, 0, 0);
    for (int i = 0; i < 300 && !confirmed_upto(g, 107); i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    assert_true(confirmed_upto(g, 107));
    assert_int_equal(g->n_dacks_frames, before + 1);
    assert_int_equal(g->n_dack_frames, singles + 3);
    assert_int_equal(outbox_files(f), 106);
    cpx_adapter_destroy(&a);
}

/* A gateway that never sends grouped frames gets one DeliveryAck frame per
 * confirmation, even for several in one cycle. */
static void test_singular_confirms_for_old_gateway(void **state)
{
    fx_t *f = *state;
    gw_t *g = &f->gw;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    for (int i = 0; i < 300 && !g->have_peer; i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    ref.to = "EDUCATION";
    ref.reason = "r";
    ref.task = CPX__V1__TASK__EDUCATION_SUPPORT;
    uint8_t mid[16];
    cpx_envelope_t env = CPX__V1__ENVELOPE__INIT;
    env.message_id = (ProtobufCBinaryData){16, mid};
    env.sender = "CIVIL_AFFAIRS";
    env.body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
    env.referral = &ref;
    Cpx__V1__Deliver dl = CPX__V1__DELIVER__INIT;
    dl.envelope = &env;
    cpx_server_frame_t sf = CPX__V1__SERVER_FRAME__INIT;
    sf.frame_case = CPX__V1__SERVER_FRAME__FRAME_DELIVER;
    sf.deliver = &dl;
    for (uint64_t i = 1; i <= 5; i++) { /* sent back to back: read in one cycle */
        memset(mid, (int)i, sizeof mid);
        dl.delivery_id = i;
        gw_send(g, &sf);
    }
    for (int i = 0; i < 300 && !confirmed_upto(g, 5); i++) {
        cpx_adapter_cycle(a, 10);
        gw_serve(g, NULL);
    }
    assert_true(confirmed_upto(g, 5));
    assert_int_equal(g->n_dack_frames, 5);
    assert_int_equal(g->n_dacks_frames, 0);
    cpx_adapter_destroy(&a);
}

/* Missing columns: the whole file is refused with the reason; nothing is sent. */
static void test_missing_columns(void **state)
{
    fx_t *f = *state;
    cpx_adapter_t *a = cpx_adapter_new(&f->o, &cpx_connector_file, cpx_conf_get(f->conf, "file"));
    assert_non_null(a);
    char p[1024];
    snprintf(p, sizeof p, "%s/inbox/roster.csv", f->dir);
    const char *csv = "\xd1\xa7\xbc\xae\xba\xc5,x\nS1,y\n";
    write_file(p, csv, strlen(csv));
    run_until(f, a, file_done, 5000);
    snprintf(p, sizeof p, "%s/rejected/roster.csv.errors", f->dir);
    char *errors = read_all(p);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "roster.csv:1: discovery_report.minor.name: missing_column"));
    free(errors);
    assert_int_equal(f->gw.n_unique, 0);
    cpx_adapter_destroy(&a);
}

/* Every mapping and config shipped for Jiangyin loads (paths checked against the schema). */
static void test_deploy_files(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/deploy/jiangyin/adapters", CPX_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int mappings = 0, configs = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml"))
            continue;
        char path[1024], err[512] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        cpx_conf_t *c = cpx_conf_load(path, err, sizeof err);
        if (!c)
            fail_msg("%s", err);
        if (cpx_conf_get(c, "fields")) {
            cpx_mapping_t *m = cpx_mapping_load(path, err, sizeof err);
            if (!m)
                fail_msg("%s", err);
            cpx_mapping_destroy(&m);
            mappings++;
        } else {
            const char *conn = cpx_conf_str(c, "connector", "");
            assert_non_null(cpx_conf_str(c, "department", NULL));
            assert_non_null(cpx_conf_get(c, conn));
            char mp[1024];
            if (cpx_conf_path(cpx_conf_get(c, conn), "mapping", mp, sizeof mp) == CPX_OK)
                assert_int_equal(access(mp, R_OK), 0);
            configs++;
        }
        cpx_conf_destroy(&c);
    }
    closedir(d);
    assert_true(mappings >= 5);
    assert_true(configs >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transcode),
        cmocka_unit_test_setup_teardown(test_mapping, make_tmp, drop_tmp),
        cmocka_unit_test(test_json_envelope),
        cmocka_unit_test(test_deploy_files),
        cmocka_unit_test_setup_teardown(test_file_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_and_outage, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_acks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delivery, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grouped_deliveries, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_singular_confirms_for_old_gateway, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_missing_columns, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
