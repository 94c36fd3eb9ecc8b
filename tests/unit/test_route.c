/* Routing: every shipped rule in deploy/jiangyin/routes.yaml with an envelope that
 * must match and one that must not; the fallback; dedupe; variables; and config
 * errors located by file:line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpx/codec.h"
#include "cpx/err.h"
#include "cpx/route.h"

#define ROUTES CPX_SOURCE_DIR "/deploy/jiangyin/routes.yaml"
#define MIN_MS (60 * 1000ull)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)

/* 2025-06-01T12:00:00+08:00 */
#define NOW_MS 1748750400000LL

/* ---- envelope builder: every part lives in one struct on the stack --------------- */

typedef struct eb {
    cpx_envelope_t env;
    uint8_t id[16], reply_id[16];
    char *rcpts[CPX_MAX_RECIPIENTS + 4];
    Cpx__V1__DiscoveryReport dr;
    Cpx__V1__MinorIdentity minor;
    Cpx__V1__Date birth;
    Cpx__V1__CategoryDetail cat[5];
    Cpx__V1__CategoryDetail *catp[5];
    Cpx__V1__HarmType harms[5][8];
    Cpx__V1__StreetSituation streets[5][8];
    Cpx__V1__Hardship hards[5][4];
    Cpx__V1__Circumstance circ[8];
    Cpx__V1__HealthDetail health;
    Cpx__V1__Illness ill[4];
    Cpx__V1__Referral ref;
    Cpx__V1__Disposition disp;
    Cpx__V1__Assessment assess;
    Cpx__V1__FollowUp fu;
    Cpx__V1__ReleaseNotice rel;
    Cpx__V1__SealOrder seal;
    Cpx__V1__SealedAccessRequest sreq;
    Cpx__V1__SealedAccessDecision sdec;
    Cpx__V1__SealedAccessRead sread;
    Cpx__V1__SealedAccessApproval sappr;
    Cpx__V1__Escalation esc;
    Cpx__V1__Notice notice;
    Cpx__V1__ReferralRevocation revoke;
} eb_t;

static void eb_init(eb_t *b, const char *sender)
{
    memset(b, 0, sizeof *b);
    cpx__v1__envelope__init(&b->env);
    for (int i = 0; i < 16; i++) {
        b->id[i] = (uint8_t)(i + 1);
        b->reply_id[i] = (uint8_t)(0xa0 + i);
    }
    b->env.message_id.data = b->id;
    b->env.message_id.len = 16;
    b->env.sender = (char *)sender;
    b->env.created_ms = NOW_MS;
    b->env.priority = CPX__V1__PRIORITY__ROUTINE;
    b->env.sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    b->env.recipients = b->rcpts;
}

/* A discovery report about a minor of the given town, with no category yet. */
static void eb_report(eb_t *b, const char *sender, const char *town)
{
    eb_init(b, sender);
    cpx__v1__discovery_report__init(&b->dr);
    cpx__v1__minor_identity__init(&b->minor);
    cpx__v1__date__init(&b->birth);
    cpx__v1__health_detail__init(&b->health);
    b->minor.town = (char *)(town ? town : "");
    b->birth.year = 2012;
    b->birth.month = 3;
    b->birth.day = 4;
    b->minor.birth_date = &b->birth;
    b->dr.minor = &b->minor;
    b->dr.channel = CPX__V1__CHANNEL__HOTLINE;
    b->dr.categories = b->catp;
    b->dr.circumstances = b->circ;
    b->health.illnesses = b->ill;
    b->env.body_case = CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
    b->env.body_kind = CPX__V1__BODY_KIND__BODY_DISCOVERY_REPORT;
    b->env.discovery_report = &b->dr;
}

static Cpx__V1__CategoryDetail *eb_cat(eb_t *b, Cpx__V1__Category c)
{
    size_t i = b->dr.n_categories++;
    Cpx__V1__CategoryDetail *d = &b->cat[i];
    cpx__v1__category_detail__init(d);
    d->category = c;
    d->harm_types = b->harms[i];
    d->street = b->streets[i];
    d->hardships = b->hards[i];
    b->catp[i] = d;
    return d;
}

static void eb_harm(eb_t *b, Cpx__V1__HarmType h)
{
    Cpx__V1__CategoryDetail *d = eb_cat(b, CPX__V1__CATEGORY__HARMED);
    d->harm_types[d->n_harm_types++] = h;
}

static void eb_street(eb_t *b, Cpx__V1__StreetSituation s)
{
    Cpx__V1__CategoryDetail *d = eb_cat(b, CPX__V1__CATEGORY__STREET_OR_ORPHAN);
    d->street[d->n_street++] = s;
}

static void eb_hardship(eb_t *b, Cpx__V1__Hardship h)
{
    Cpx__V1__CategoryDetail *d = eb_cat(b, CPX__V1__CATEGORY__SPECIAL_HARDSHIP);
    d->hardships[d->n_hardships++] = h;
}

static void eb_circ(eb_t *b, Cpx__V1__Circumstance c)
{
    b->dr.circumstances[b->dr.n_circumstances++] = c;
}

static void eb_health(eb_t *b)
{
    b->dr.health = &b->health;
}

#define EB_BODY(b, field, kind, KIND, init)                                      \
    do {                                                                         \
        init(&(b)->field);                                                       \
        (b)->env.body_case = CPX__V1__ENVELOPE__BODY_##KIND;                     \
        (b)->env.body_kind = CPX__V1__BODY_KIND__BODY_##KIND;                    \
        (b)->env.kind = &(b)->field;                                             \
    } while (0)

static void eb_referral(eb_t *b, const char *sender, const char *to, Cpx__V1__Priority prio)
{
    eb_init(b, sender);
    EB_BODY(b, ref, referral, REFERRAL, cpx__v1__referral__init);
    b->ref.to = (char *)to;
    b->ref.task = CPX__V1__TASK__PSYCHOLOGICAL_CARE;
    b->ref.priority = prio;
    b->env.priority = prio;
}

static void eb_disposition(eb_t *b, const char *sender)
{
    eb_init(b, sender);
    EB_BODY(b, disp, disposition, DISPOSITION, cpx__v1__disposition__init);
    b->disp.referral_id.data = b->reply_id;
    b->disp.referral_id.len = 16;
    b->disp.action = CPX__V1__ACTION__COUNSELLING;
    b->disp.status = CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED;
}

static void eb_rcpt(eb_t *b, const char *dept)
{
    b->env.recipients[b->env.n_recipients++] = (char *)dept;
}

/* ---- lookup stub: answers for reply_id only ------------------------------------- */

typedef struct fake_store {
    const char *sender, *recipient;
    int calls;
} fake_store_t;

static int fake_lookup(void *arg, const uint8_t *id, size_t len, cpx_route_referral_t *out)
{
    fake_store_t *s = arg;
    s->calls++;
    if (len != 16 || id[0] != 0xa0 || !s->sender)
        return CPX_ERR_NOT_FOUND;
    snprintf(out->sender, sizeof out->sender, "%s", s->sender);
    snprintf(out->recipient, sizeof out->recipient, "%s", s->recipient ? s->recipient : "");
    return CPX_OK;
}

/* ---- assertions on a route --------------------------------------------------------- */

static const cpx_route_recipient_t *find(const cpx_route_t *rt, const char *dept)
{
    for (size_t i = 0; i < rt->n_recipients; i++)
        if (strcmp(rt->recipients[i].dept, dept) == 0)
            return &rt->recipients[i];
    return NULL;
}

static bool matched(const cpx_route_t *rt, const char *rule)
{
    for (size_t i = 0; i < rt->n_matched; i++)
        if (strcmp(rt->matched[i], rule) == 0)
            return true;
    return false;
}

static void expect_rcpt(const cpx_route_t *rt, const char *dept, uint64_t ack, int prio,
                        const char *rule)
{
    const cpx_route_recipient_t *r = find(rt, dept);
    if (!r)
        fail_msg("expected recipient %s", dept);
    assert_int_equal(r->ack_within_ms, ack);
    if (prio >= 0)
        assert_int_equal(r->priority, prio);
    if (rule)
        assert_string_equal(r->rule, rule);
}

static void expect_exact(const cpx_route_t *rt, const char *const *depts)
{
    size_t n = 0;
    for (; depts[n]; n++)
        if (!find(rt, depts[n]))
            fail_msg("expected recipient %s", depts[n]);
    if (rt->n_recipients != n) {
        for (size_t i = 0; i < rt->n_recipients; i++)
            print_message("got %s (%s)\n", rt->recipients[i].dept, rt->recipients[i].rule);
        fail_msg("expected %zu recipients, got %zu", n, rt->n_recipients);
    }
}

#define EXACT(rt, ...) expect_exact((rt), (const char *const[]){__VA_ARGS__, NULL})

static cpx_router_t *load_shipped(void)
{
    char err[1024];
    cpx_router_t *r = cpx_router_load(ROUTES, err, sizeof err);
    if (!r)
        fail_msg("%s", err);
    return r;
}

static int route(const cpx_router_t *r, eb_t *b, fake_store_t *store, const char *case_town,
                 cpx_route_t *out)
{
    cpx_route_ctx_t ctx = {.now_ms = NOW_MS, .lookup = fake_lookup, .lookup_arg = store,
                           .case_town = case_town};
    return cpx_router_route(r, &b->env, &ctx, out);
}

/* ---- one test per shipped rule: a case that must match and one that must not ------ */

typedef struct rule_case {
    const char *rule;
    void (*yes)(eb_t *b, fake_store_t *s);   /* must match; checks in check() */
    void (*no)(eb_t *b, fake_store_t *s);    /* must not match */
    void (*check)(const cpx_route_t *rt);    /* for the matching case */
} rule_case_t;

static void seal_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "COURT");
    EB_BODY(b, seal, seal_order, SEAL_ORDER, cpx__v1__seal_order__init);
    eb_rcpt(b, "EDUCATION");  /* a sender cannot widen a sealing order's audience */
}
static void seal_check(const cpx_route_t *rt)
{
    EXACT(rt, "PROCURATORATE", "POLICE");
    assert_int_equal(rt->n_matched, 1);
    assert_false(rt->unrouted);
}
static void referral_routine(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_referral(b, "CIVIL_AFFAIRS", "WOMENS_FED", CPX__V1__PRIORITY__ROUTINE);
}

static void sreq_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "POLICE");
    EB_BODY(b, sreq, sealed_access_request, SEALED_ACCESS_REQUEST, cpx__v1__sealed_access_request__init);
}
static void sreq_check(const cpx_route_t *rt)
{
    EXACT(rt, "COURT", "PROCURATORATE");
    assert_int_equal(rt->n_matched, 1);
}
static void sapproval_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "COURT");
    EB_BODY(b, sappr, sealed_access_approval, SEALED_ACCESS_APPROVAL, cpx__v1__sealed_access_approval__init);
}
static void sapproval_check(const cpx_route_t *rt)
{
    EXACT(rt, "PROCURATORATE");
}
static void sread_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "POLICE");
    EB_BODY(b, sread, sealed_access_read, SEALED_ACCESS_READ, cpx__v1__sealed_access_read__init);
}

static void sdec_yes(eb_t *b, fake_store_t *s)
{
    eb_init(b, "COURT");
    EB_BODY(b, sdec, sealed_access_decision, SEALED_ACCESS_DECISION, cpx__v1__sealed_access_decision__init);
    b->env.in_reply_to.data = b->reply_id;
    b->env.in_reply_to.len = 16;
    s->sender = "POLICE";
}
static void sdec_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "PROCURATORATE");
    assert_string_equal(find(rt, "POLICE")->rule, "sealed-access-decision");
}

static void sealed_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "POLICE", "TOWN_HUASHI");
    eb_harm(b, CPX__V1__HARM_TYPE__ABUSE);
    eb_circ(b, CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE);
    b->env.sensitivity = CPX__V1__SENSITIVITY__SEALED;
}
static void sealed_check(const cpx_route_t *rt)
{
    /* Neither the town nor Civil Affairs learns of it. */
    EXACT(rt, "COURT", "PROCURATORATE");
    assert_int_equal(rt->n_matched, 1);
}
static void sealed_no(eb_t *b, fake_store_t *s)
{
    sealed_yes(b, s);
    b->env.sensitivity = CPX__V1__SENSITIVITY__NORMAL;
}

static void harm_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "EDUCATION", "TOWN_HUASHI");
    eb_harm(b, CPX__V1__HARM_TYPE__DOMESTIC_VIOLENCE);
}
static void harm_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "CIVIL_AFFAIRS", "TOWN_HUASHI");
    expect_rcpt(rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "harm-police");
    expect_rcpt(rt, "CIVIL_AFFAIRS", HOUR_MS, CPX__V1__PRIORITY__URGENT, "harm-civil-affairs");
    expect_rcpt(rt, "TOWN_HUASHI", DAY_MS, CPX__V1__PRIORITY__ROUTINE, "town-office");
    assert_int_equal(rt->priority, CPX__V1__PRIORITY__IMMEDIATE);
    assert_false(rt->unrouted);
}
static void guardianship_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_HUASHI", "TOWN_HUASHI");
    Cpx__V1__CategoryDetail *d = eb_cat(b, CPX__V1__CATEGORY__GUARDIANSHIP_MISSING);
    d->father = CPX__V1__PARENT_SITUATION__DETAINED;
    d->mother = CPX__V1__PARENT_SITUATION__MISSING;
}
static void guardianship_check(const cpx_route_t *rt)
{
    /* The town is the sender: never routed back to it. */
    EXACT(rt, "CIVIL_AFFAIRS");
    expect_rcpt(rt, "CIVIL_AFFAIRS", DAY_MS, CPX__V1__PRIORITY__ROUTINE, "guardianship-missing");
}

static void exploited_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "CIVIL_AFFAIRS", "TOWN_NANZHA");
    eb_street(b, CPX__V1__STREET_SITUATION__COERCED_INTO_BEGGING_OR_CRIME);
}
static void exploited_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "TOWN_NANZHA");
    expect_rcpt(rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "street-exploited-police");
}
static void roaming_no(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_NANZHA", "TOWN_NANZHA");
    eb_street(b, CPX__V1__STREET_SITUATION__BEGGING_OR_ROAMING);
}

static void danger_yes(eb_t *b, fake_store_t *s)
{
    guardianship_yes(b, s);
    b->dr.immediate_danger = true;
}
static void danger_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "CIVIL_AFFAIRS");
    /* Dedupe: the earlier deadline and the higher priority of immediate-danger win. */
    expect_rcpt(rt, "CIVIL_AFFAIRS", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "immediate-danger");
    expect_rcpt(rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "immediate-danger");
}

static void infant_hospital_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "HEALTH", "TOWN_ZHOUZHUANG");
    b->dr.channel = CPX__V1__CHANNEL__HOSPITAL;
    eb_circ(b, CPX__V1__CIRCUMSTANCE__ABANDONED_INFANT);
    b->minor.birth_date = NULL;
}
static void infant_hospital_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "CIVIL_AFFAIRS", "TOWN_ZHOUZHUANG");
    expect_rcpt(rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "abandoned-infant-hospital");
    expect_rcpt(rt, "CIVIL_AFFAIRS", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "abandoned-infant-hospital");
}
static void infant_hotline(eb_t *b, fake_store_t *s)
{
    infant_hospital_yes(b, s);
    b->env.sender = "CIVIL_AFFAIRS";
    b->dr.channel = CPX__V1__CHANNEL__HOTLINE;
}
static void infant_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE", "TOWN_ZHOUZHUANG");
    expect_rcpt(rt, "POLICE", HOUR_MS, CPX__V1__PRIORITY__URGENT, "abandoned-infant");
}
static void plain_harmed_no_circ(eb_t *b, fake_store_t *s)
{
    harm_yes(b, s);
}

static void orphan_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_GUSHAN", "TOWN_GUSHAN");
    eb_street(b, CPX__V1__STREET_SITUATION__ORPHAN);
}
static void orphan_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS");
    expect_rcpt(rt, "CIVIL_AFFAIRS", 4 * HOUR_MS, -1, "street-or-orphan");
}

static void hardship_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_XINQIAO", "TOWN_XINQIAO");
    eb_hardship(b, CPX__V1__HARDSHIP__FAMILY_POVERTY);
}
static void hardship_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS");
}

static void illness_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "HEALTH", "TOWN_XINQIAO");
    eb_hardship(b, CPX__V1__HARDSHIP__SERIOUS_ILLNESS);
    eb_health(b);
    b->health.illnesses[b->health.n_illnesses++] = CPX__V1__ILLNESS__LEUKAEMIA;
    b->health.family_economy = CPX__V1__FAMILY_ECONOMY__LOW_INCOME;
}
static void illness_check(const cpx_route_t *rt)
{
    /* HEALTH is the sender here, so only Civil Affairs and the town. */
    EXACT(rt, "CIVIL_AFFAIRS", "TOWN_XINQIAO");
}
static void illness_yes_from_town(eb_t *b, fake_store_t *s)
{
    illness_yes(b, s);
    b->env.sender = "TOWN_XINQIAO";
}
static void illness_town_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS", "HEALTH");
    expect_rcpt(rt, "HEALTH", DAY_MS, -1, "illness-low-income");
}
static void illness_not_poor(eb_t *b, fake_store_t *s)
{
    illness_yes(b, s);
    b->health.family_economy = CPX__V1__FAMILY_ECONOMY__NOT_POOR;
}

static void other_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "YOUTH_LEAGUE", "TOWN_LIGANG");
    eb_cat(b, CPX__V1__CATEGORY__OTHER)->other_reason = "runs away from home repeatedly";
}
static void other_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS", "TOWN_LIGANG");
    assert_false(rt->unrouted);
}

static void dropout_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_YUECHENG", "TOWN_YUECHENG");
    eb_circ(b, CPX__V1__CIRCUMSTANCE__SCHOOL_DROPOUT);
}
static void dropout_check(const cpx_route_t *rt)
{
    EXACT(rt, "EDUCATION");
    expect_rcpt(rt, "EDUCATION", DAY_MS, -1, "school-dropout");
}
static void left_behind_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_YUECHENG", "TOWN_YUECHENG");
    eb_circ(b, CPX__V1__CIRCUMSTANCE__LEFT_BEHIND);
}
static void left_behind_check(const cpx_route_t *rt)
{
    EXACT(rt, "WOMENS_FED");
    expect_rcpt(rt, "WOMENS_FED", 3 * DAY_MS, -1, "left-behind");
}

/* Born 2009-06-01: 16 on 2025-06-01 (China time), the day of NOW_MS. */
static void training_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_QINGYANG", "TOWN_QINGYANG");
    eb_circ(b, CPX__V1__CIRCUMSTANCE__NEEDS_SKILLS_TRAINING);
    b->birth.year = 2009;
    b->birth.month = 6;
    b->birth.day = 1;
}
static void training_check(const cpx_route_t *rt)
{
    EXACT(rt, "HRSS");
}
static void training_15(eb_t *b, fake_store_t *s)
{
    training_yes(b, s);
    b->birth.day = 2;  /* 16 tomorrow */
}

static void disability_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "TOWN_CHANGJING", "TOWN_CHANGJING");
    eb_circ(b, CPX__V1__CIRCUMSTANCE__MIGRANT_CHILD);
    eb_health(b);
    b->health.disability_grade = 2;
}
static void disability_check(const cpx_route_t *rt)
{
    /* disability is a real route, so the report is not unrouted */
    EXACT(rt, "DISABLED_FED");
    assert_false(rt->unrouted);
}
static void disability_no(eb_t *b, fake_store_t *s)
{
    disability_yes(b, s);
    b->health.disability_grade = 0;
}

static void nohukou_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_report(b, "CIVIL_AFFAIRS", "");
    eb_circ(b, CPX__V1__CIRCUMSTANCE__NO_HOUSEHOLD_REGISTRATION);
}
static void nohukou_check(const cpx_route_t *rt)
{
    /* The report names no town: the case's town (from the context) stands in. */
    EXACT(rt, "POLICE", "TOWN_ZHUTANG");
    assert_false(rt->unresolved & CPX_ROUTE_PH_TOWN);
}

static void town_yes(eb_t *b, fake_store_t *s)
{
    dropout_yes(b, s);
    b->env.sender = "EDUCATION";
}
static void town_check(const cpx_route_t *rt)
{
    EXACT(rt, "TOWN_YUECHENG");
    expect_rcpt(rt, "TOWN_YUECHENG", DAY_MS, -1, "town-office");
}

static void explicit_yes(eb_t *b, fake_store_t *s)
{
    left_behind_yes(b, s);
    eb_rcpt(b, "YOUTH_LEAGUE");
    eb_rcpt(b, "WOMENS_FED");
    eb_rcpt(b, "TOWN_YUECHENG");  /* the sender itself: dropped */
}
static void explicit_check(const cpx_route_t *rt)
{
    EXACT(rt, "WOMENS_FED", "YOUTH_LEAGUE");
    expect_rcpt(rt, "YOUTH_LEAGUE", DAY_MS, -1, "explicit-recipients");
    /* named explicitly and by left-behind: the earlier deadline (1d) wins */
    expect_rcpt(rt, "WOMENS_FED", DAY_MS, -1, "explicit-recipients");
}

static void referral_check(const cpx_route_t *rt)
{
    EXACT(rt, "WOMENS_FED");
    expect_rcpt(rt, "WOMENS_FED", DAY_MS, CPX__V1__PRIORITY__ROUTINE, "referral");
}
static void referral_urgent(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_referral(b, "CIVIL_AFFAIRS", "EDUCATION", CPX__V1__PRIORITY__URGENT);
}
static void referral_urgent_check(const cpx_route_t *rt)
{
    EXACT(rt, "EDUCATION");
    expect_rcpt(rt, "EDUCATION", 4 * HOUR_MS, CPX__V1__PRIORITY__URGENT, "referral-urgent");
}
static void referral_immediate(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_referral(b, "CIVIL_AFFAIRS", "POLICE", CPX__V1__PRIORITY__IMMEDIATE);
}
static void referral_immediate_check(const cpx_route_t *rt)
{
    EXACT(rt, "POLICE");
    expect_rcpt(rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "referral-immediate");
}

static void disposition_yes(eb_t *b, fake_store_t *s)
{
    eb_disposition(b, "WOMENS_FED");
    s->sender = "EDUCATION";
    s->recipient = "WOMENS_FED";
}
static void disposition_check(const cpx_route_t *rt)
{
    EXACT(rt, "EDUCATION", "CIVIL_AFFAIRS");
    expect_rcpt(rt, "EDUCATION", DAY_MS, -1, "disposition");
}

static void revocation_yes(eb_t *b, fake_store_t *s)
{
    eb_init(b, "EDUCATION");
    EB_BODY(b, revoke, referral_revocation, REFERRAL_REVOCATION, cpx__v1__referral_revocation__init);
    b->revoke.referral_id.data = b->reply_id;
    b->revoke.referral_id.len = 16;
    b->revoke.reason = "the child was placed with relatives";
    s->sender = "EDUCATION";
    s->recipient = "WOMENS_FED";
}
static void revocation_check(const cpx_route_t *rt)
{
    /* the withdrawn referral's recipient learns it; not back to the referrer */
    EXACT(rt, "WOMENS_FED", "CIVIL_AFFAIRS");
    expect_rcpt(rt, "WOMENS_FED", DAY_MS, -1, "referral-revocation");
}

static void release_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "JUSTICE");
    EB_BODY(b, rel, release_notice, RELEASE_NOTICE, cpx__v1__release_notice__init);
    b->rel.kind = CPX__V1__RELEASE_KIND__SENTENCE_ENDED;
}
static void release_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS");
}

static void followup_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "WOMENS_FED");
    EB_BODY(b, fu, follow_up, FOLLOW_UP, cpx__v1__follow_up__init);
    b->fu.outcome = CPX__V1__VISIT_OUTCOME__CONCERN;
}
static void followup_check(const cpx_route_t *rt)
{
    /* The case's town comes from the context: a FollowUp names no minor. */
    EXACT(rt, "CIVIL_AFFAIRS", "TOWN_ZHUTANG");
    expect_rcpt(rt, "TOWN_ZHUTANG", 3 * DAY_MS, -1, "assessment-follow-up");
}

static void escalation_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "GATEWAY");
    EB_BODY(b, esc, escalation, ESCALATION, cpx__v1__escalation__init);
    b->esc.department = "POLICE";
    eb_rcpt(b, "POLICE");
}
static void escalation_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS", "POLICE");
    expect_rcpt(rt, "POLICE", 4 * HOUR_MS, -1, "escalation");
}
static void notice_yes(eb_t *b, fake_store_t *s)
{
    (void)s;
    eb_init(b, "GATEWAY");
    EB_BODY(b, notice, notice, NOTICE, cpx__v1__notice__init);
    b->notice.kind = CPX__V1__NOTICE_KIND__EARLY_WARNING;
}
static void notice_check(const cpx_route_t *rt)
{
    EXACT(rt, "CIVIL_AFFAIRS");
}

static const rule_case_t CASES[] = {
    {"seal-order", seal_yes, referral_routine, seal_check},
    {"sealed-access-request", sreq_yes, seal_yes, sreq_check},
    {"sealed-access-request", sapproval_yes, sdec_yes, sapproval_check},
    {"sealed-access-request", sread_yes, referral_routine, NULL},
    {"sealed-access-decision", sdec_yes, sreq_yes, sdec_check},
    {"sealed-content", sealed_yes, sealed_no, sealed_check},
    {"harm-police", harm_yes, guardianship_yes, harm_check},
    {"harm-civil-affairs", harm_yes, exploited_yes, NULL},
    {"street-exploited-police", exploited_yes, roaming_no, exploited_check},
    {"immediate-danger", danger_yes, guardianship_yes, danger_check},
    {"abandoned-infant-hospital", infant_hospital_yes, infant_hotline, infant_hospital_check},
    {"abandoned-infant", infant_hotline, plain_harmed_no_circ, infant_check},
    {"street-or-orphan", orphan_yes, harm_yes, orphan_check},
    {"street-or-orphan", roaming_no, guardianship_yes, NULL},
    {"guardianship-missing", guardianship_yes, orphan_yes, guardianship_check},
    {"special-hardship", hardship_yes, orphan_yes, hardship_check},
    {"illness-low-income", illness_yes, illness_not_poor, illness_check},
    {"illness-low-income", illness_yes_from_town, hardship_yes, illness_town_check},
    {"other-category", other_yes, hardship_yes, other_check},
    {"school-dropout", dropout_yes, left_behind_yes, dropout_check},
    {"skills-training-16", training_yes, training_15, training_check},
    {"left-behind", left_behind_yes, dropout_yes, left_behind_check},
    {"disability", disability_yes, disability_no, disability_check},
    {"no-household-registration", nohukou_yes, orphan_yes, nohukou_check},
    {"town-office", town_yes, referral_routine, town_check},
    {"explicit-recipients", explicit_yes, left_behind_yes, explicit_check},
    {"referral", referral_routine, disposition_yes, referral_check},
    {"referral-urgent", referral_urgent, referral_routine, referral_urgent_check},
    {"referral-immediate", referral_immediate, referral_urgent, referral_immediate_check},
    {"disposition", disposition_yes, referral_routine, disposition_check},
    {"referral-revocation", revocation_yes, disposition_yes, revocation_check},
    {"release-notice", release_yes, followup_yes, release_check},
    {"assessment-follow-up", followup_yes, release_yes, followup_check},
    {"escalation", escalation_yes, notice_yes, escalation_check},
    {"notice", notice_yes, escalation_yes, notice_check},
};

static void test_every_shipped_rule(void **state)
{
    (void)state;
    cpx_router_t *r = load_shipped();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const rule_case_t *c = &CASES[i];
        eb_t b;
        fake_store_t s = {0};
        cpx_route_t rt;
        print_message("rule %s\n", c->rule);
        c->yes(&b, &s);
        assert_int_equal(route(r, &b, &s, "TOWN_ZHUTANG", &rt), CPX_OK);
        if (!matched(&rt, c->rule))
            fail_msg("rule %s did not match its case", c->rule);
        if (c->check)
            c->check(&rt);
        memset(&s, 0, sizeof s);
        c->no(&b, &s);
        assert_int_equal(route(r, &b, &s, "TOWN_ZHUTANG", &rt), CPX_OK);
        if (matched(&rt, c->rule))
            fail_msg("rule %s matched its negative case", c->rule);
    }
    /* A rule added to the file without a case here fails this test. */
    for (size_t i = 0; i < cpx_router_rule_count(r); i++) {
        const char *name = cpx_router_rule_name(r, i);
        bool covered = false;
        for (size_t j = 0; j < sizeof CASES / sizeof CASES[0]; j++)
            covered = covered || strcmp(CASES[j].rule, name) == 0;
        if (!covered)
            fail_msg("shipped rule %s has no test case", name);
    }
    assert_null(cpx_router_rule_name(r, cpx_router_rule_count(r)));
    cpx_router_destroy(&r);
    assert_null(r);
    cpx_router_destroy(&r);
    cpx_router_destroy(NULL);
}

/* ---- fallback, dedupe, sender, variables --------------------------------------- */

static void test_unrouted_fallback(void **state)
{
    (void)state;
    cpx_router_t *r = load_shipped();
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;

    /* Only the additional town rule matches: Civil Affairs gets it too, flagged. */
    eb_report(&b, "POLICE", "TOWN_HUASHI");
    eb_circ(&b, CPX__V1__CIRCUMSTANCE__MIGRANT_CHILD);
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_true(rt.unrouted);
    EXACT(&rt, "TOWN_HUASHI", "CIVIL_AFFAIRS");
    expect_rcpt(&rt, "CIVIL_AFFAIRS", 4 * HOUR_MS, CPX__V1__PRIORITY__ROUTINE, "(fallback)");
    assert_true(matched(&rt, "town-office"));

    /* No body at all: nothing matches; still delivered to the lead, even as sender. */
    eb_init(&b, "CIVIL_AFFAIRS");
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_true(rt.unrouted);
    assert_int_equal(rt.n_matched, 0);
    EXACT(&rt, "CIVIL_AFFAIRS");

    /* A disposition whose referral is unknown still reaches Civil Affairs, unflagged,
     * and says which variable came to nothing. */
    eb_disposition(&b, "EDUCATION");
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_false(rt.unrouted);
    assert_true(rt.unresolved & CPX_ROUTE_PH_REFERRER);
    EXACT(&rt, "CIVIL_AFFAIRS");

    /* No context at all is allowed. */
    assert_int_equal(cpx_router_route(r, &b.env, NULL, &rt), CPX_OK);
    EXACT(&rt, "CIVIL_AFFAIRS");
    assert_int_equal(cpx_router_route(NULL, &b.env, NULL, &rt), CPX_ERR_ARG);
    assert_int_equal(cpx_router_route(r, NULL, NULL, &rt), CPX_ERR_ARG);
    assert_int_equal(cpx_router_route(r, &b.env, NULL, NULL), CPX_ERR_ARG);
    cpx_router_destroy(&r);
}

static void test_never_back_to_sender(void **state)
{
    (void)state;
    cpx_router_t *r = load_shipped();
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;
    /* Police report abuse themselves: Civil Affairs and the town, not Police. */
    eb_report(&b, "POLICE", "TOWN_HUASHI");
    eb_harm(&b, CPX__V1__HARM_TYPE__ABUSE);
    b.dr.immediate_danger = true;
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "CIVIL_AFFAIRS", "TOWN_HUASHI");
    assert_false(rt.unrouted);
    assert_true(matched(&rt, "harm-police"));
    cpx_router_destroy(&r);
}

static void test_priority_and_multi_category(void **state)
{
    (void)state;
    cpx_router_t *r = load_shipped();
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;
    /* A left-behind child, abused, who dropped out: every owner, each once. */
    eb_report(&b, "TOWN_HUASHI", "TOWN_HUASHI");
    eb_harm(&b, CPX__V1__HARM_TYPE__ABUSE);
    eb_cat(&b, CPX__V1__CATEGORY__GUARDIANSHIP_MISSING);
    eb_circ(&b, CPX__V1__CIRCUMSTANCE__LEFT_BEHIND);
    eb_circ(&b, CPX__V1__CIRCUMSTANCE__SCHOOL_DROPOUT);
    b.env.priority = CPX__V1__PRIORITY__URGENT;
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "POLICE", "CIVIL_AFFAIRS", "WOMENS_FED", "EDUCATION");
    /* The envelope's URGENT carries to every recipient; rules only raise it. */
    expect_rcpt(&rt, "EDUCATION", DAY_MS, CPX__V1__PRIORITY__URGENT, "school-dropout");
    expect_rcpt(&rt, "CIVIL_AFFAIRS", HOUR_MS, CPX__V1__PRIORITY__URGENT, "harm-civil-affairs");
    expect_rcpt(&rt, "POLICE", 5 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "harm-police");
    assert_int_equal(rt.priority, CPX__V1__PRIORITY__IMMEDIATE);
    assert_true(matched(&rt, "guardianship-missing"));
    cpx_router_destroy(&r);
}

static const char PLACEHOLDER_YAML[] =
    "version: 1\n"
    "defaults: {ack_within: 2h}\n"
    "supervisors: {TOWN_A: CIVIL_AFFAIRS, TOWN_B: TOWN_A}\n"
    "rules:\n"
    "  - name: copy-self\n"
    "    match: {body: follow_up, sender: [TOWN_B]}\n"
    "    to: [$sender, $sender_supervisor, TOWN_B]\n"
    "  - name: reply\n"
    "    match: {body: follow_up}\n"
    "    to: [$reply_to, $referrer]\n"
    "    ack_within: 30s\n"
    "  - name: by-town\n"
    "    match: {town: [TOWN_Q], body: assessment}\n"
    "    to: [$town, HEALTH]\n"
    "    stop: true\n"
    "  - name: after-stop\n"
    "    match: {body: assessment}\n"
    "    to: [EDUCATION]\n"
    "  - name: referral-to\n"
    "    match: {body: referral, max_age: 5}\n"
    "    to: [$referral_to]\n"
    "    priority: URGENT\n"
    "  - name: explicit\n"
    "    match: {explicit_recipients: true}\n"
    "    to: $explicit\n"
    "    ack_within: none\n";

static void test_variables(void **state)
{
    (void)state;
    char err[512];
    cpx_router_t *r = cpx_router_load_string(PLACEHOLDER_YAML, strlen(PLACEHOLDER_YAML),
                                             "ph.yaml", err, sizeof err);
    if (!r)
        fail_msg("%s", err);
    assert_int_equal(cpx_router_rule_count(r), 6);
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;

    /* $sender may route back to the sender; a plain code naming it may not. */
    eb_init(&b, "TOWN_B");
    EB_BODY(&b, fu, follow_up, FOLLOW_UP, cpx__v1__follow_up__init);
    b.env.in_reply_to.data = b.reply_id;
    b.env.in_reply_to.len = 16;
    s.sender = "POLICE";
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "TOWN_B", "TOWN_A", "POLICE");
    expect_rcpt(&rt, "TOWN_B", 2 * HOUR_MS, -1, "copy-self");
    expect_rcpt(&rt, "POLICE", 30000, -1, "reply");
    /* $referrer falls back to in_reply_to when the body is no Disposition; both
     * variables name the same message, looked up once each at most. */
    assert_true(s.calls >= 1 && s.calls <= 2);
    assert_int_equal(rt.unresolved, 0);

    /* The lookup fails: both reply variables unresolved, fallback used. */
    eb_init(&b, "TOWN_C");
    EB_BODY(&b, fu, follow_up, FOLLOW_UP, cpx__v1__follow_up__init);
    s.sender = NULL;
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_true(rt.unrouted);
    assert_int_equal(rt.unresolved, CPX_ROUTE_PH_REPLY_TO | CPX_ROUTE_PH_REFERRER);
    EXACT(&rt, "CIVIL_AFFAIRS");
    expect_rcpt(&rt, "CIVIL_AFFAIRS", 2 * HOUR_MS, -1, "(fallback)");

    /* town condition from the minor; stop ends the search. */
    eb_init(&b, "POLICE");
    EB_BODY(&b, assess, assessment, ASSESSMENT, cpx__v1__assessment__init);
    Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
    m.town = "TOWN_Q";
    b.assess.minor = &m;
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "TOWN_Q", "HEALTH");
    assert_int_equal(rt.n_matched, 1);
    /* another town: the town rule fails, the next applies */
    m.town = "TOWN_R";
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "EDUCATION");
    /* the town from the case when the body has none */
    b.assess.minor = NULL;
    assert_int_equal(route(r, &b, &s, "TOWN_Q", &rt), CPX_OK);
    EXACT(&rt, "TOWN_Q", "HEALTH");
    /* a malformed town from the wire is skipped, not delivered */
    m.town = "town q; DROP";
    b.assess.minor = &m;
    assert_int_equal(route(r, &b, &s, "TOWN_Q", &rt), CPX_OK);
    EXACT(&rt, "EDUCATION");

    /* A Referral names no minor: an unknown age never satisfies an age condition. */
    eb_referral(&b, "CIVIL_AFFAIRS", "HEALTH", CPX__V1__PRIORITY__ROUTINE);
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_true(rt.unrouted);

    /* $explicit with ack none; priority raised by a rule only when it matches. */
    eb_init(&b, "POLICE");
    eb_rcpt(&b, "YOUTH_LEAGUE");
    eb_rcpt(&b, "not a dept");
    eb_rcpt(&b, "YOUTH_LEAGUE");
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "YOUTH_LEAGUE");
    expect_rcpt(&rt, "YOUTH_LEAGUE", 0, CPX__V1__PRIORITY__ROUTINE, "explicit");
    assert_false(rt.unrouted);
    cpx_router_destroy(&r);
}

static void test_too_many_recipients(void **state)
{
    (void)state;
    static const char yaml[] =
        "version: 1\n"
        "rules:\n"
        "  - {name: all, match: {}, to: [$explicit, POLICE]}\n";
    char err[256];
    cpx_router_t *r = cpx_router_load_string(yaml, strlen(yaml), NULL, err, sizeof err);
    if (!r)
        fail_msg("%s", err);
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;
    static char names[CPX_MAX_RECIPIENTS][16];
    eb_init(&b, "COURT");
    for (unsigned i = 0; i < CPX_MAX_RECIPIENTS; i++) {
        snprintf(names[i], sizeof names[i], "DEPT_%u", i);
        eb_rcpt(&b, names[i]);
    }
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_ERR_TOO_LARGE);
    assert_int_equal(rt.n_recipients, CPX_MAX_RECIPIENTS);
    b.env.n_recipients--;
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    assert_int_equal(rt.n_recipients, CPX_MAX_RECIPIENTS);
    assert_non_null(find(&rt, "POLICE"));
    cpx_router_destroy(&r);
}

/* Dedupe keeps the earliest deadline (with the rule that set it) and, separately,
 * the highest priority, whichever rule brought each; `none` loses to any deadline. */
static void test_dedupe(void **state)
{
    (void)state;
    static const char yaml[] =
        "version: 1\n"
        "rules:\n"
        "  - {name: first, match: {body: referral}, to: [POLICE, HEALTH], ack_within: 1h}\n"
        "  - {name: second, match: {body: referral}, to: [POLICE, $referral_to], ack_within: 2h,"
        " priority: IMMEDIATE}\n"
        "  - {name: third, match: {body: referral}, to: [HEALTH], ack_within: 10m}\n"
        "  - {name: fourth, match: {body: referral}, to: [HEALTH, POLICE], ack_within: none}\n";
    char err[256];
    cpx_router_t *r = cpx_router_load_string(yaml, strlen(yaml), NULL, err, sizeof err);
    if (!r)
        fail_msg("%s", err);
    eb_t b;
    fake_store_t s = {0};
    cpx_route_t rt;
    eb_referral(&b, "CIVIL_AFFAIRS", "HEALTH", CPX__V1__PRIORITY__ROUTINE);
    assert_int_equal(route(r, &b, &s, NULL, &rt), CPX_OK);
    EXACT(&rt, "POLICE", "HEALTH");
    expect_rcpt(&rt, "POLICE", HOUR_MS, CPX__V1__PRIORITY__IMMEDIATE, "first");
    expect_rcpt(&rt, "HEALTH", 10 * MIN_MS, CPX__V1__PRIORITY__IMMEDIATE, "third");
    assert_int_equal(rt.n_matched, 4);
    assert_string_equal(rt.matched[3], "fourth");
    cpx_router_destroy(&r);
}

static void test_age(void **state)
{
    (void)state;
    Cpx__V1__MinorIdentity m = CPX__V1__MINOR_IDENTITY__INIT;
    Cpx__V1__Date d = CPX__V1__DATE__INIT;
    assert_int_equal(cpx_route_age(NULL, NOW_MS), -1);
    assert_int_equal(cpx_route_age(&m, NOW_MS), -1);
    /* 2025-05-31T16:00:00Z is already 2025-06-01 in Jiangyin. */
    const int64_t midnight_cst = 1748707200000LL;
    d.year = 2009;
    d.month = 6;
    d.day = 1;
    m.birth_date = &d;
    assert_int_equal(cpx_route_age(&m, midnight_cst), 16);
    assert_int_equal(cpx_route_age(&m, midnight_cst - 1), 15);
    /* from the ID number when the date is absent or impossible */
    m.id_number = "32028120090602123X";
    d.month = 2;
    d.day = 30;
    assert_int_equal(cpx_route_age(&m, midnight_cst), 15);
    m.birth_date = NULL;
    assert_int_equal(cpx_route_age(&m, midnight_cst + DAY_MS), 16);
    m.id_number = "3202812009O602123X";
    assert_int_equal(cpx_route_age(&m, NOW_MS), -1);
    m.id_number = "32028120091302123X";
    assert_int_equal(cpx_route_age(&m, NOW_MS), -1);
    /* born in the future */
    m.id_number = "32028120300101123X";
    assert_int_equal(cpx_route_age(&m, NOW_MS), -1);
}

/* ---- configuration errors: exact file:line:column --------------------------------- */

typedef struct bad_config {
    const char *yaml;
    const char *expect;  /* prefix of the error */
} bad_config_t;

static const bad_config_t BAD[] = {
    /* unknown key in a rule */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "    too: [POLICE]\n",
     "bad.yaml:5:5: rule 1: unknown key 'too' (expected one of: name, description, match, to,"},
    /* unknown key in a match */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match:\n"
     "      body: referral\n"
     "      harms: [ABUSE]\n"
     "    to: [POLICE]\n",
     "bad.yaml:6:7: match: unknown key 'harms'"},
    /* bad enum name */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {harm: [ABUSE, BEATING]}\n"
     "    to: [POLICE]\n",
     "bad.yaml:4:27: harm: unknown HarmType 'BEATING' (expected one of: DOMESTIC_VIOLENCE, ABUSE,"},
    /* UNSPECIFIED is never a condition */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {category: CATEGORY_UNSPECIFIED}\n"
     "    to: [POLICE]\n",
     "bad.yaml:4:23: category: unknown Category 'CATEGORY_UNSPECIFIED'"},
    /* unknown body kind */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: report}\n"
     "    to: [POLICE]\n",
     "bad.yaml:4:19: body: unknown body kind 'report' (expected one of: discovery_report,"},
    /* bad duration */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "    to: [POLICE]\n"
     "    ack_within: 5 minutes\n",
     "bad.yaml:6:17: ack_within: bad duration '5 minutes'"},
    {"version: 1\n"
     "defaults: {ack_within: 0h}\n"
     "rules: []\n",
     "bad.yaml:2:24: defaults.ack_within: bad duration '0h'"},
    /* missing to */
    {"version: 1\n"
     "rules:\n"
     "  - name: lonely\n"
     "    match: {body: referral}\n",
     "bad.yaml:3:5: rule 'lonely': missing 'to' (the recipients)"},
    /* empty to */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "    to: []\n",
     "bad.yaml:5:9: to: empty list"},
    /* department code format */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "    to: [POLICE, civil_affairs]\n",
     "bad.yaml:5:18: to: 'civil_affairs' is not a department code"},
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "    to: [$referee]\n",
     "bad.yaml:5:10: to: unknown variable '$referee'"},
    /* a tab where indentation is expected */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "\tmatch: {body: referral}\n",
     "bad.yaml:4:1: YAML syntax: found a tab character that violates indentation"},
    {"version: 1\n\trules: []\n", "bad.yaml:2:1: YAML syntax: found a tab character"},
    /* an unclosed flow mapping: where it ends and where it began */
    {"version: 1\nrules:\n- {name: a, match: {body: referral}, to: [X]\n",
     "bad.yaml:4:1: YAML syntax: did not find expected ',' or '}' while parsing a flow mapping "
     "(begun at 3:3)"},
    /* inconsistent indentation */
    {"version: 1\n"
     "rules:\n"
     "  - name: a\n"
     "    match: {body: referral}\n"
     "   to: [POLICE]\n",
     "bad.yaml:5:4: YAML syntax:"},
    /* duplicate names and keys */
    {"version: 1\n"
     "rules:\n"
     "  - {name: a, match: {}, to: POLICE}\n"
     "  - {name: a, match: {}, to: POLICE}\n",
     "bad.yaml:4:12: name: rule 'a' defined twice"},
    {"version: 1\n"
     "rules:\n"
     "  - {name: a, match: {body: referral, body: disposition}, to: POLICE}\n",
     "bad.yaml:3:39: match: key 'body' given twice"},
    /* booleans and ages */
    {"version: 1\n"
     "rules:\n"
     "  - {name: a, match: {immediate_danger: yes}, to: POLICE}\n",
     "bad.yaml:3:41: immediate_danger: expected true or false, found 'yes'"},
    {"version: 1\n"
     "rules:\n"
     "  - {name: a, match: {min_age: 16, max_age: 14}, to: HRSS}\n",
     "bad.yaml:3:22: match: min_age 16 is above max_age 14"},
    /* top level */
    {"version: 2\nrules: []\n", "bad.yaml:1:10: version: expected a whole number from 1 to 1"},
    {"rules: []\n", "bad.yaml:1:1: configuration: missing 'version: 1'"},
    {"version: 1\nroutes: []\n", "bad.yaml:2:1: configuration: unknown key 'routes'"},
    {"version: 1\n", "bad.yaml:1:1: configuration: missing 'rules'"},
    {"", "bad.yaml:1:1: empty configuration"},
    {"version: 1\nrules: {}\n", "bad.yaml:2:8: rules: expected a list of rules, found a mapping"},
    {"version: 1\nrules: []\n---\nversion: 1\n", "bad.yaml:4:1: more than one YAML document"},
    {"version: 1\nrules:\n  - {name: a, to: POLICE}\n",
     "bad.yaml:3:5: rule 'a': missing 'match' (use 'match: {}' to match every message)"},
    {"version: 1\nrules:\n  - {match: {}, to: POLICE}\n", "bad.yaml:3:5: rule 1: missing 'name'"},
    {"version: 1\nsupervisors: [A]\nrules: []\n", "bad.yaml:2:14: supervisors: expected a mapping"},
    {"version: 1\nfallback: {to: lead}\nrules: []\n", "bad.yaml:2:16: fallback.to: 'lead' is not a department code"},
};

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char err[1024];
        memset(err, 'x', sizeof err);
        cpx_router_t *r = cpx_router_load_string(BAD[i].yaml, strlen(BAD[i].yaml), "bad.yaml",
                                                 err, sizeof err);
        if (r)
            fail_msg("case %zu loaded", i);
        if (strncmp(err, BAD[i].expect, strlen(BAD[i].expect)) != 0)
            fail_msg("case %zu:\n  expected: %s\n  got:      %s", i, BAD[i].expect, err);
    }
    /* A tiny error buffer is still terminated. */
    char small[8];
    assert_null(cpx_router_load_string("x: [", 4, "f", small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(cpx_router_load_string(NULL, 0, "f", NULL, 0));
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/cpx-route-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/routes.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("version: 1\nrules:\n  - name: a\n    match: {body: referral}\n    to: [POLICE]\n"
          "    ack_within: 4x\n", f);
    fclose(f);
    char err[512], expect[600];
    assert_null(cpx_router_load(path, err, sizeof err));
    snprintf(expect, sizeof expect, "%s:6:17: ack_within: bad duration '4x'", path);
    assert_memory_equal(err, expect, strlen(expect));

    /* Oversized file: refused, not truncated into something that parses. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("version: 1\nrules: []\n", f);
    for (unsigned i = 0; i < CPX_ROUTE_MAX_CONFIG_BYTES / 16 + 1; i++)
        fputs("# padding......\n", f);
    fclose(f);
    assert_null(cpx_router_load(path, err, sizeof err));
    assert_non_null(strstr(err, "at most"));

    unlink(path);
    assert_null(cpx_router_load(path, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_shipped_rule),
        cmocka_unit_test(test_unrouted_fallback),
        cmocka_unit_test(test_never_back_to_sender),
        cmocka_unit_test(test_priority_and_multi_category),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_too_many_recipients),
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
