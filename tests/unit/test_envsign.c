/* test_envsign.c — envelope commitments, signatures, batches and redacted views.
 *
 * The known-answer vector (signing bytes, digest, signature) was derived independently
 * with Python (protobuf for wire(F), struct + hashlib + cryptography for the rest); the
 * script is in docs/signing.md, "Worked example". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/envsign.h"
#include "cpx/err.h"

/* Test hooks exported by lib/crypto.c and lib/envsign.c. */
cpx_key_t *cpx_key_from_raw_private_for_test(const uint8_t seed[32]);
void cpx_envsign_set_salt_source_for_test(int (*fn)(uint8_t *salt, size_t len, uint32_t field));
unsigned long cpx_envsign_ed25519_verifies_for_test(void);

static cpx_key_t *g_key, *g_pub, *g_other;

static int setup(void **state)
{
    (void)state;
    g_key = cpx_key_generate();
    g_other = cpx_key_generate();
    uint8_t raw[32];
    cpx_key_public_raw(g_key, raw);
    g_pub = cpx_key_from_raw_public(raw);
    return g_key && g_pub && g_other ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cpx_key_destroy(&g_key);
    cpx_key_destroy(&g_pub);
    cpx_key_destroy(&g_other);
    return 0;
}

/* ---- building envelopes ------------------------------------------------------------- */

static const uint8_t MID[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t IRT[16] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1};

/* Packs a stack-built envelope and decodes it, so the result is heap-owned and freed
 * with cpx_msg_free like any received envelope. */
static cpx_envelope_t *materialise(const cpx_envelope_t *e)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(cpx_encode(e, &buf, &len), CPX_OK);
    cpx_envelope_t *out = NULL;
    assert_int_equal(cpx_decode_envelope(buf, len, &out), CPX_OK);
    free(buf);
    return out;
}

/* A copy through the wire: what a recipient sees. */
static cpx_envelope_t *transit(const cpx_envelope_t *e) { return materialise(e); }

static void header(cpx_envelope_t *e, char **rcpts)
{
    e->message_id.data = (uint8_t *)MID;
    e->message_id.len = 16;
    e->sender = "POLICE";
    e->recipients = rcpts;
    e->n_recipients = 2;
    e->case_id = "JY-2026-000123";
    e->created_ms = 1764374400000;
    e->priority = CPX__V1__PRIORITY__IMMEDIATE;
    e->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
}

/* The known-answer envelope (docs/signing.md). with_health adds field 8. */
static cpx_envelope_t *kat_envelope(int with_health, int with_irt)
{
    static char *rcpts[] = {"CIVIL_AFFAIRS", "EDUCATION"};
    cpx_envelope_t e = CPX__V1__ENVELOPE__INIT;
    header(&e, rcpts);
    if (with_irt) {
        e.in_reply_to.data = (uint8_t *)IRT;
        e.in_reply_to.len = 16;
    }
    Cpx__V1__DiscoveryReport r = CPX__V1__DISCOVERY_REPORT__INIT;
    Cpx__V1__Reporter rep = CPX__V1__REPORTER__INIT;
    rep.role = CPX__V1__REPORTER_ROLE__TEACHER;
    rep.duty_to_report = 1;
    rep.name = "Wang Li";
    r.reporter = &rep;
    r.channel = CPX__V1__CHANNEL__SCHOOL;
    Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
    Cpx__V1__Date bd = CPX__V1__DATE__INIT;
    bd.year = 2015;
    bd.month = 1;
    bd.day = 1;
    m.id_number = "320281201501010014";
    m.name = "Zhang San";
    m.sex = CPX__V1__SEX__MALE;
    m.birth_date = &bd;
    m.town = "TOWN_HUASHI";
    r.minor = &m;
    Cpx__V1__CategoryDetail c1 = CPX__V1__CATEGORY_DETAIL__INIT, c2 = CPX__V1__CATEGORY_DETAIL__INIT;
    Cpx__V1__HarmType harms[] = {CPX__V1__HARM_TYPE__ABUSE, CPX__V1__HARM_TYPE__ABANDONMENT};
    c1.category = CPX__V1__CATEGORY__HARMED;
    c1.harm_types = harms;
    c1.n_harm_types = 2;
    c2.category = CPX__V1__CATEGORY__GUARDIANSHIP_MISSING;
    c2.father = CPX__V1__PARENT_SITUATION__DETAINED;
    c2.mother = CPX__V1__PARENT_SITUATION__MISSING;
    Cpx__V1__CategoryDetail *cats[] = {&c1, &c2};
    r.categories = cats;
    r.n_categories = 2;
    r.immediate_danger = 1;
    Cpx__V1__Circumstance circ[] = {CPX__V1__CIRCUMSTANCE__LEFT_BEHIND,
                                    CPX__V1__CIRCUMSTANCE__MIGRANT_CHILD};
    r.circumstances = circ;
    r.n_circumstances = 2;
    r.local_ref = "SCH-42";
    Cpx__V1__HealthDetail h = CPX__V1__HEALTH_DETAIL__INIT;
    Cpx__V1__Illness ill[] = {CPX__V1__ILLNESS__LEUKAEMIA};
    h.illnesses = ill;
    h.n_illnesses = 1;
    h.family_economy = CPX__V1__FAMILY_ECONOMY__SUBSISTENCE_ALLOWANCE;
    if (with_health)
        r.health = &h;
    e.body_case = CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
    e.discovery_report = &r;
    return materialise(&e);
}

/* Generic filler: sets every field of a message (two elements per repeated field,
 * sub-messages two levels deep), so every body kind is exercised without knowing it. */
static void fill(ProtobufCMessage *m, int depth);

static void fill_value(const ProtobufCFieldDescriptor *f, void *p, int depth, int idx)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        *(int *)p = ed->values[ed->n_values - 1 - (idx % (ed->n_values - 1))].value;
        break;
    }
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = 7u + (uint32_t)idx;
        break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = 1764374400000u + (uint64_t)idx;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = 1.5f;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = 2.5;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = 1;
        break;
    case PROTOBUF_C_TYPE_STRING: {
        char buf[48];
        snprintf(buf, sizeof buf, "value of %s #%d", f->name, idx);
        *(char **)p = strdup(buf);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        b->data = malloc(3);
        memcpy(b->data, "\x01\x02\x03", 3);
        b->len = 3;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (depth >= 2) {
            *(void **)p = NULL;
            break;
        }
        const ProtobufCMessageDescriptor *md = f->descriptor;
        ProtobufCMessage *sub = malloc(md->sizeof_message);
        md->message_init(sub);
        fill(sub, depth + 1);
        *(void **)p = sub;
        break;
    }
    }
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static void fill(ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *p = (char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t es = elem_size(f->type);
            char *arr = calloc(2, es);
            for (int k = 0; k < 2; k++)
                fill_value(f, arr + k * es, depth, k);
            *(size_t *)((char *)m + f->quantifier_offset) = 2;
            *(void **)p = arr;
        } else {
            fill_value(f, p, depth, 0);
        }
    }
}

static cpx_envelope_t *filled_envelope(unsigned body_field)
{
    static char *rcpts[] = {"CIVIL_AFFAIRS", "EDUCATION"};
    cpx_envelope_t e = CPX__V1__ENVELOPE__INIT;
    header(&e, rcpts);
    e.in_reply_to.data = (uint8_t *)IRT;
    e.in_reply_to.len = 16;
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&cpx__v1__envelope__descriptor, body_field);
    assert_non_null(fd);
    const ProtobufCMessageDescriptor *md = fd->descriptor;
    ProtobufCMessage *body = malloc(md->sizeof_message);
    md->message_init(body);
    fill(body, 0);
    *(ProtobufCMessage **)((char *)&e + fd->offset) = body;
    e.body_case = (Cpx__V1__Envelope__BodyCase)body_field;
    cpx_envelope_t *out = materialise(&e);
    protobuf_c_message_free_unpacked(body, NULL);
    return out;
}

static ProtobufCMessage *body_of(cpx_envelope_t *e)
{
    return (ProtobufCMessage *)cpx_envelope_body(e);
}

static int verify(const cpx_envelope_t *e, cpx_envsign_result_t *res)
{
    return cpx_envsign_verify(e, g_pub, res);
}

/* ---- known answer ------------------------------------------------------------------- */

static int fixed_salt(uint8_t *salt, size_t len, uint32_t field)
{
    for (size_t i = 0; i < len; i++)
        salt[i] = (uint8_t)(field + i);
    return CPX_OK;
}

static const char KAT_SIGNING_BYTES[] =
    "6370782e76312e656e76656c6f70650000000010000102030405060708090a0b0c0d0e0f00000006504f4c"
    "494345000000020000000d434956494c5f4146464149525300000009454455434154494f4e0000000e4a59"
    "2d323032362d3030303132330000019acce8cc0000000003000000000000000100000014000000070000"
    "0001352691426e420771b6a09e5340360b5b583ab67eb21bf5b81823730e0ed0ebdd000000024a8c9577"
    "2e268d5ffba54076a08135d97f0b7e29ae07600d842e5cc9244388be00000003ee5883fa04728287a7d9"
    "f6161e72a524c7efddef0cfea143ba73d7028ba8f9c4000000045cf60a48039166f6d64c38115434790d"
    "464bc0fc1454c718019bcfd7945855c90000000603f077703c533e4b22c0293ce1452f453676ff668b35"
    "03fc129c9adad5796d6d00000007f20f7e4268ce9d7c7dd3f39588bf0667f7137454d55c34d42b6382b8"
    "dbcf8a6100000009356f7a4a00400578594248d3ff559ca67c2e1d5ce5d36d0ae73176c89b415cf90000"
    "000821fe31dfa154a261";
static const char KAT_DIGEST[] =
    "9bb3833287fab277135395d125fcea4929d128dc755387ec021c44d9420902d8";
static const char KAT_SIGNATURE[] =
    "069a8d8004bf0841d63ccc886fb0957202a6586fbdb764601fcef9c7b4658c489d02b0ff19035ccb829a37"
    "8a1322c7debc0629360c13b2630c3fd0d3cb24fb03";

static void test_signing_bytes_known_answer(void **state)
{
    (void)state;
    uint8_t seed[32];
    assert_int_equal(
        cpx_unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32),
        CPX_OK);
    cpx_key_t *k = cpx_key_from_raw_private_for_test(seed);
    assert_non_null(k);
    cpx_envelope_t *e = kat_envelope(0, 0);
    cpx_envsign_set_salt_source_for_test(fixed_salt);
    int rc = cpx_envsign_sign(e, k);
    cpx_envsign_set_salt_source_for_test(NULL);
    assert_int_equal(rc, CPX_OK);

    uint8_t *sb;
    size_t len;
    assert_int_equal(cpx_envsign_signing_bytes(e, &sb, &len), CPX_OK);
    char *hex = malloc(2 * len + 1);
    cpx_hex(sb, len, hex);
    assert_string_equal(hex, KAT_SIGNING_BYTES);
    free(hex);
    free(sb);
    uint8_t d[32];
    char dh[65], sh[129];
    assert_int_equal(cpx_envsign_digest(e, d), CPX_OK);
    cpx_hex(d, 32, dh);
    assert_string_equal(dh, KAT_DIGEST);
    assert_int_equal(e->signature->ed25519.len, 64);
    cpx_hex(e->signature->ed25519.data, 64, sh);
    assert_string_equal(sh, KAT_SIGNATURE);

    cpx_envsign_result_t res;
    assert_int_equal(cpx_envsign_verify(e, k, &res), CPX_OK);
    assert_memory_equal(res.digest, d, 32);
    assert_int_equal(res.n_withheld, 0);
    assert_int_equal(res.batch, 0);
    /* The digest-only check the audit verifier uses. */
    assert_int_equal(cpx_envsign_verify_digest(k, d, e->signature->ed25519.data, 64), CPX_OK);
    d[0] ^= 1;
    assert_int_equal(cpx_envsign_verify_digest(k, d, e->signature->ed25519.data, 64),
                     CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(e);
    cpx_key_destroy(&k);
}

/* ---- every body kind ------------------------------------------------------------------ */

/* Changes one top-level body field's value without removing it; returns 0 when the
 * field cannot be changed that way (a bool, whose only other value means absent). */
static int mutate_value(const ProtobufCFieldDescriptor *f, void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        int cur = *(int *)p;
        for (unsigned i = 0; i < ed->n_values; i++)
            if (ed->values[i].value != 0 && ed->values[i].value != cur) {
                *(int *)p = ed->values[i].value;
                return 1;
            }
        return 0;
    }
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
        *(uint32_t *)p ^= 0x100;
        return 1;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        *(uint64_t *)p ^= 1;
        return 1;
    case PROTOBUF_C_TYPE_STRING:
        (*(char **)p)[0] ^= 1;
        return 1;
    case PROTOBUF_C_TYPE_BYTES:
        ((ProtobufCBinaryData *)p)->data[0] ^= 1;
        return 1;
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *sub = *(ProtobufCMessage **)p;
        const ProtobufCMessageDescriptor *md = sub->descriptor;
        for (unsigned i = 0; i < md->n_fields; i++) {
            const ProtobufCFieldDescriptor *sf = &md->fields[i];
            void *sp = (char *)sub + sf->offset;
            if (sf->label == PROTOBUF_C_LABEL_REPEATED) {
                if (*(size_t *)((char *)sub + sf->quantifier_offset) == 0)
                    continue;
                sp = *(void **)sp;
            }
            if (sf->type == PROTOBUF_C_TYPE_MESSAGE && !*(void **)sp)
                continue;
            if (mutate_value(sf, sp))
                return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

static void test_every_body_kind(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *ed = &cpx__v1__envelope__descriptor;
    int kinds = 0;
    for (unsigned i = 0; i < ed->n_fields; i++) {
        const ProtobufCFieldDescriptor *bf = &ed->fields[i];
        if (!(bf->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        kinds++;
        cpx_envelope_t *e = filled_envelope(bf->id);
        assert_int_equal(cpx_envsign_sign(e, g_key), CPX_OK);
        assert_int_equal((int)e->body_kind, (int)bf->id);
        assert_true(e->n_commitments > 0);
        cpx_envsign_result_t res;
        assert_int_equal(verify(e, &res), CPX_OK);
        cpx_envelope_t *r = transit(e);
        assert_int_equal(verify(r, &res), CPX_OK);
        assert_int_equal(cpx_envsign_verify(r, g_other, &res), CPX_ERR_BAD_SIGNATURE);
        cpx_msg_free(r);

        /* Every top-level body field, changed in transit, is caught. */
        const ProtobufCMessageDescriptor *md = bf->descriptor;
        for (unsigned j = 0; j < md->n_fields; j++) {
            const ProtobufCFieldDescriptor *f = &md->fields[j];
            r = transit(e);
            ProtobufCMessage *b = body_of(r);
            void *p = (char *)b + f->offset;
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                p = *(void **)p;
            int changed = mutate_value(f, p);
            int rc = verify(r, &res);
            if (changed) {
                if (rc != CPX_ERR_BAD_SIGNATURE)
                    fail_msg("%s.%s changed: rc %d (%s)", bf->name, f->name, rc, res.reason);
            } else {
                assert_int_equal(f->type, PROTOBUF_C_TYPE_BOOL);
                *(protobuf_c_boolean *)p = 0; /* now absent but its salt remains */
                assert_int_equal(verify(r, &res), CPX_ERR_INVALID);
            }
            cpx_msg_free(r);
        }
        cpx_msg_free(e);
    }
    assert_int_equal(kinds, 14);  /* 20 (discovery_report) .. 33 (referral_revocation) */
}

/* ---- header fields ------------------------------------------------------------------------ */

static void test_header_fields_are_signed(void **state)
{
    (void)state;
    cpx_envelope_t *e = kat_envelope(1, 1);
    assert_int_equal(cpx_envsign_sign(e, g_key), CPX_OK);
    cpx_envsign_result_t res;
    assert_int_equal(verify(e, &res), CPX_OK);
    for (int which = 0; which < 14; which++) {
        cpx_envelope_t *r = transit(e);
        switch (which) {
        case 0: r->sender[0] ^= 1; break;
        case 1: r->recipients[1][0] ^= 1; break;
        case 2: r->n_recipients = 1; break;
        case 3: r->case_id[3] ^= 1; break;
        case 4: r->created_ms ^= 1; break;
        case 5: r->priority = CPX__V1__PRIORITY__ROUTINE; break;
        case 6: r->sensitivity = CPX__V1__SENSITIVITY__SEALED; break;
        case 7: r->body_kind = CPX__V1__BODY_KIND__BODY_REFERRAL; break;
        case 8: r->in_reply_to.data[15] ^= 1; break;
        case 9: r->message_id.data[0] ^= 0x80; break;
        case 10: r->signature->key_id.data[7] ^= 1; break;
        case 11: r->signature->ed25519.data[10] ^= 4; break;
        case 12: r->commitments[2]->digest.data[31] ^= 1; break;
        case 13: r->salts[0]->salt.data[0] ^= 1; break;
        }
        int rc = verify(r, &res);
        if (rc != CPX_ERR_BAD_SIGNATURE)
            fail_msg("header change %d: rc %d (%s)", which, rc, res.reason);
        assert_true(res.reason[0] != '\0');
        r->n_recipients = 2;
        cpx_msg_free(r);
    }
    /* Truncated signature, or none at all. */
    cpx_envelope_t *r = transit(e);
    r->signature->ed25519.len = 63;
    assert_int_equal(verify(r, &res), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(r);
    r = transit(e);
    cpx_msg_free(r->signature);
    r->signature = NULL;
    assert_int_equal(verify(r, &res), CPX_ERR_INVALID);
    cpx_msg_free(r);
    cpx_msg_free(e);
}

static void test_commitment_structure(void **state)
{
    (void)state;
    cpx_envelope_t *e = kat_envelope(0, 0);
    assert_int_equal(cpx_envsign_sign(e, g_key), CPX_OK);
    cpx_envsign_result_t res;

    /* A body field added after signing, without a commitment. */
    cpx_envelope_t *r = kat_envelope(1, 0);
    cpx_envelope_t *s = transit(e);
    ProtobufCMessage *tmp = (ProtobufCMessage *)s->discovery_report;
    s->discovery_report = r->discovery_report;
    r->discovery_report = (Cpx__V1__DiscoveryReport *)tmp;
    assert_int_equal(verify(s, &res), CPX_ERR_INVALID);
    assert_non_null(strstr(res.reason, "not committed"));
    cpx_msg_free(r);
    cpx_msg_free(s);

    /* Commitments reordered. */
    s = transit(e);
    Cpx__V1__FieldCommitment *c = s->commitments[0];
    s->commitments[0] = s->commitments[1];
    s->commitments[1] = c;
    assert_int_equal(verify(s, &res), CPX_ERR_INVALID);
    assert_non_null(strstr(res.reason, "ascending"));
    cpx_msg_free(s);

    /* A commitment dropped (its field then has none). */
    s = transit(e);
    s->n_commitments--;
    assert_int_equal(verify(s, &res), CPX_ERR_INVALID);
    s->n_commitments++;
    cpx_msg_free(s);

    /* A salt of the wrong length, a duplicated salt. */
    s = transit(e);
    s->salts[1]->salt.len = 15;
    assert_int_equal(verify(s, &res), CPX_ERR_INVALID);
    s->salts[1]->salt.len = 16;
    s->salts[1]->field = s->salts[0]->field;
    assert_int_equal(verify(s, &res), CPX_ERR_INVALID);
    cpx_msg_free(s);

    /* Re-committing after signing invalidates the signature. */
    s = transit(e);
    assert_int_equal(cpx_envsign_commit(s), CPX_OK);
    assert_int_equal(verify(s, &res), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(s);

    /* Signed by someone else's key. */
    s = transit(e);
    assert_int_equal(cpx_envsign_sign(s, g_other), CPX_OK);
    assert_int_equal(verify(s, &res), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(s);
    cpx_msg_free(e);
}

/* ---- redaction ---------------------------------------------------------------------------- */

static void test_redaction(void **state)
{
    (void)state;
    cpx_envelope_t *e = kat_envelope(1, 0);
    assert_int_equal(cpx_envsign_sign(e, g_key), CPX_OK);
    cpx_envsign_result_t res;
    assert_int_equal(verify(e, &res), CPX_OK);
    assert_int_equal(res.n_withheld, 0);

    const uint32_t withheld[] = {1 /* reporter */, 8 /* health */};
    cpx_envelope_t *v = transit(e);
    assert_int_equal(cpx_envsign_redact(v, withheld, 2), CPX_OK);
    assert_null(v->discovery_report->reporter);
    assert_null(v->discovery_report->health);
    assert_non_null(v->discovery_report->minor);
    assert_int_equal(v->n_commitments, e->n_commitments);
    assert_int_equal(v->n_salts, e->n_salts - 2);
    assert_int_equal(verify(v, &res), CPX_OK);
    assert_int_equal(res.n_withheld, 2);
    assert_int_equal(res.withheld[0], 1);
    assert_int_equal(res.withheld[1], 8);
    /* The digest is the sender's, so the audit log entry still matches. */
    uint8_t d[32];
    assert_int_equal(cpx_envsign_digest(e, d), CPX_OK);
    assert_memory_equal(res.digest, d, 32);
    /* What the recipient decodes verifies the same way. */
    cpx_envelope_t *w = transit(v);
    assert_int_equal(verify(w, &res), CPX_OK);
    assert_int_equal(res.n_withheld, 2);
    cpx_msg_free(w);

    /* A field altered in the redacted view. */
    w = transit(v);
    w->discovery_report->minor->name[0] ^= 1;
    assert_int_equal(verify(w, &res), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(w);

    /* A field removed but its salt left behind. */
    w = transit(e);
    cpx_msg_free(w->discovery_report->reporter);
    w->discovery_report->reporter = NULL;
    assert_int_equal(verify(w, &res), CPX_ERR_INVALID);
    assert_non_null(strstr(res.reason, "absent"));
    cpx_msg_free(w);

    /* A withheld field put back with a made-up salt. */
    w = transit(v);
    cpx_envelope_t *full = transit(e);
    w->discovery_report->reporter = full->discovery_report->reporter;
    full->discovery_report->reporter = NULL;
    assert_int_equal(verify(w, &res), CPX_ERR_INVALID); /* present without its salt */
    cpx_msg_free(full);
    cpx_msg_free(w);

    /* Redacting everything leaves an empty body that still verifies. */
    w = transit(e);
    uint32_t all[CPX_MAX_BODY_FIELDS];
    for (size_t i = 0; i < w->n_commitments; i++)
        all[i] = w->commitments[i]->field;
    assert_int_equal(cpx_envsign_redact(w, all, w->n_commitments), CPX_OK);
    assert_int_equal(verify(w, &res), CPX_OK);
    assert_int_equal(res.n_withheld, e->n_commitments);
    cpx_msg_free(w);
    cpx_msg_free(v);
    cpx_msg_free(e);
}

/* ---- batches -------------------------------------------------------------------------------- */

static void swap_path(Cpx__V1__BatchProof *a, Cpx__V1__BatchProof *b)
{
    ProtobufCBinaryData *p = a->path;
    size_t n = a->n_path;
    a->path = b->path;
    a->n_path = b->n_path;
    b->path = p;
    b->n_path = n;
}

static void run_batch(size_t n)
{
    cpx_envelope_t **envs = calloc(n, sizeof *envs);
    for (size_t i = 0; i < n; i++) {
        envs[i] = kat_envelope(i % 2, 0);
        envs[i]->message_id.data[0] = (uint8_t)i;
        envs[i]->message_id.data[1] = (uint8_t)(i >> 8);
    }
    assert_int_equal(cpx_envsign_sign_batch(envs, n, g_key), CPX_OK);
    cpx_envsign_result_t *res = calloc(n, sizeof *res);
    int *rcs = calloc(n, sizeof *rcs);
    cpx_hash_t root;
    for (size_t i = 0; i < n; i++) {
        Cpx__V1__BatchProof *p = envs[i]->signature->batch;
        assert_non_null(p);
        assert_int_equal(p->index, i);
        assert_int_equal(p->size, n);
        assert_int_equal(envs[i]->signature->ed25519.len, 0);
        if (i < 8 || i == n - 1) {
            assert_int_equal(verify(envs[i], &res[0]), CPX_OK);
            assert_int_equal(res[0].batch, 1);
            if (i == 0)
                memcpy(root, res[0].batch_root, 32);
            assert_memory_equal(res[0].batch_root, root, 32);
        }
    }
    unsigned long before = cpx_envsign_ed25519_verifies_for_test();
    assert_int_equal(cpx_envsign_verify_batch(envs, n, g_pub, res, rcs), CPX_OK);
    assert_int_equal(cpx_envsign_ed25519_verifies_for_test() - before, 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcs[i], CPX_OK);

    cpx_envsign_result_t r;
    Cpx__V1__BatchProof *p0 = envs[0]->signature->batch;
    /* Wrong index, wrong size (both ways). */
    p0->index = n;
    assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
    p0->index = 0;
    p0->size = n + 1;
    assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
    if (n > 1) {
        p0->size = n - 1;
        assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
    }
    p0->size = n;
    if (n > 1) {
        /* The path of another index, and the index of another path. */
        Cpx__V1__BatchProof *pl = envs[n - 1]->signature->batch;
        swap_path(p0, pl);
        assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
        assert_int_equal(verify(envs[n - 1], &r), CPX_ERR_BAD_SIGNATURE);
        swap_path(p0, pl);
        p0->index = 1;
        assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
        p0->index = 0;
        /* Truncated path. */
        p0->n_path--;
        assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
        p0->n_path++;
        /* A flipped bit in a path hash. */
        p0->path[0].data[5] ^= 1;
        assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
        p0->path[0].data[5] ^= 1;
    }
    /* A flipped root signature, and an altered member inside the batch. */
    p0->root_signature.data[0] ^= 1;
    assert_int_equal(verify(envs[0], &r), CPX_ERR_BAD_SIGNATURE);
    p0->root_signature.data[0] ^= 1;
    assert_int_equal(verify(envs[0], &r), CPX_OK);
    envs[n / 2]->created_ms++;
    before = cpx_envsign_ed25519_verifies_for_test();
    assert_int_equal(cpx_envsign_verify_batch(envs, n, g_pub, res, rcs), CPX_ERR_BAD_SIGNATURE);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcs[i], i == n / 2 ? CPX_ERR_BAD_SIGNATURE : CPX_OK);
    assert_true(cpx_envsign_ed25519_verifies_for_test() - before <= 2);
    envs[n / 2]->created_ms--;
    if (n > 1) {
        /* In a whole batch the tree is built once and each path compared with it: a
         * member with a wrong path (or claiming another's index) is refused alone, as
         * when its path is hashed up to the root. */
        p0->path[0].data[5] ^= 1;
        assert_int_equal(cpx_envsign_verify_batch(envs, n, g_pub, res, rcs), CPX_ERR_BAD_SIGNATURE);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(rcs[i], i == 0 ? CPX_ERR_BAD_SIGNATURE : CPX_OK);
        p0->path[0].data[5] ^= 1;
        p0->index = 1;
        assert_int_equal(cpx_envsign_verify_batch(envs, n, g_pub, res, rcs), CPX_ERR_BAD_SIGNATURE);
        assert_int_equal(rcs[0], CPX_ERR_BAD_SIGNATURE);
        for (size_t i = 1; i < n; i++)
            assert_int_equal(rcs[i], CPX_OK);
        p0->index = 0;
        assert_int_equal(cpx_envsign_verify_batch(envs, n, g_pub, res, rcs), CPX_OK);
        for (size_t i = 0; i < n; i++)
            assert_memory_equal(res[i].batch_root, root, 32);
    }
    /* Redacted members of a batch still verify. */
    const uint32_t rep = 1;
    assert_int_equal(cpx_envsign_redact(envs[n - 1], &rep, 1), CPX_OK);
    assert_int_equal(verify(envs[n - 1], &r), CPX_OK);
    assert_int_equal(r.n_withheld, 1);

    /* The low-level digest check the audit verifier uses. */
    uint8_t d[32];
    assert_int_equal(cpx_envsign_digest(envs[0], d), CPX_OK);
    cpx_hash_t path[CPX_MAX_BATCH_PATH], got;
    for (size_t i = 0; i < p0->n_path; i++)
        memcpy(path[i], p0->path[i].data, 32);
    assert_int_equal(cpx_envsign_verify_batch_digest(g_pub, d, 0, n, path, p0->n_path,
                                                     p0->root_signature.data, 64, got),
                     CPX_OK);
    assert_memory_equal(got, root, 32);
    assert_int_not_equal(cpx_envsign_verify_batch_digest(g_pub, d, 0, n + 1, path, p0->n_path,
                                                         p0->root_signature.data, 64, NULL),
                         CPX_OK);

    for (size_t i = 0; i < n; i++)
        cpx_msg_free(envs[i]);
    free(envs);
    free(res);
    free(rcs);
}

static void test_batch_1(void **state) { (void)state; run_batch(1); }
static void test_batch_2(void **state) { (void)state; run_batch(2); }
static void test_batch_3(void **state) { (void)state; run_batch(3); }
static void test_batch_7(void **state) { (void)state; run_batch(7); }
static void test_batch_1000(void **state) { (void)state; run_batch(1000); }

/* The batch signer's paths and root are exactly merkle.c's RFC 9162 ones. */
static void test_batch_paths_match_merkle(void **state)
{
    (void)state;
    cpx_envelope_t *envs[40];
    cpx_hash_t leaves[40], root, path[CPX_MAX_BATCH_PATH];
    for (size_t n = 1; n <= 40; n++) {
        for (size_t i = 0; i < n; i++) {
            envs[i] = kat_envelope(0, 0);
            envs[i]->created_ms += (int64_t)i;
        }
        assert_int_equal(cpx_envsign_sign_batch(envs, n, g_key), CPX_OK);
        for (size_t i = 0; i < n; i++) {
            uint8_t d[32];
            assert_int_equal(cpx_envsign_digest(envs[i], d), CPX_OK);
            cpx_merkle_leaf_hash(d, 32, leaves[i]);
        }
        cpx_merkle_root(leaves, n, root);
        for (size_t i = 0; i < n; i++) {
            size_t plen = 0;
            assert_int_equal(cpx_merkle_path(leaves, n, i, path, CPX_MAX_BATCH_PATH, &plen),
                             CPX_OK);
            const Cpx__V1__BatchProof *p = envs[i]->signature->batch;
            assert_int_equal(p->n_path, plen);
            for (size_t k = 0; k < plen; k++)
                assert_memory_equal(p->path[k].data, path[k], 32);
            cpx_envsign_result_t res;
            assert_int_equal(verify(envs[i], &res), CPX_OK);
            assert_memory_equal(res.batch_root, root, 32);
            assert_int_equal(cpx_merkle_verify_inclusion(leaves[i], i, n, path, plen, root),
                             CPX_OK);
        }
        for (size_t i = 0; i < n; i++)
            cpx_msg_free(envs[i]);
    }
}

static void test_batch_refusals(void **state)
{
    (void)state;
    cpx_envelope_t *e = kat_envelope(0, 0);
    assert_int_equal(cpx_envsign_sign_batch(&e, 0, g_key), CPX_ERR_ARG);
    assert_int_equal(cpx_envsign_sign_batch(&e, CPX_MAX_BATCH_ENVELOPES + 1, g_key), CPX_ERR_ARG);
    assert_int_equal(cpx_envsign_sign_batch(&e, 1, g_pub), CPX_ERR_ARG);
    assert_int_equal(cpx_envsign_sign(e, g_pub), CPX_ERR_ARG);
    /* Mixed per-message and batch envelopes in one verify_batch call. */
    cpx_envelope_t *f = kat_envelope(1, 0);
    assert_int_equal(cpx_envsign_sign(e, g_key), CPX_OK);
    assert_int_equal(cpx_envsign_sign_batch(&f, 1, g_key), CPX_OK);
    cpx_envelope_t *both[2] = {e, f};
    cpx_envsign_result_t res[2];
    int rcs[2];
    assert_int_equal(cpx_envsign_verify_batch(both, 2, g_pub, res, rcs), CPX_OK);
    assert_int_equal(res[0].batch, 0);
    assert_int_equal(res[1].batch, 1);
    assert_int_equal(cpx_envsign_verify_batch(both, 2, g_other, res, rcs), CPX_ERR_BAD_SIGNATURE);
    cpx_msg_free(e);
    cpx_msg_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signing_bytes_known_answer),
        cmocka_unit_test(test_every_body_kind),
        cmocka_unit_test(test_header_fields_are_signed),
        cmocka_unit_test(test_commitment_structure),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_batch_1),
        cmocka_unit_test(test_batch_2),
        cmocka_unit_test(test_batch_3),
        cmocka_unit_test(test_batch_7),
        cmocka_unit_test(test_batch_1000),
        cmocka_unit_test(test_batch_paths_match_merkle),
        cmocka_unit_test(test_batch_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
