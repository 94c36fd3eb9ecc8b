/* Routing throughput with the shipped Jiangyin rules: a mix of reports, a referral
 * and a disposition (with a lookup callback), routed in a loop on one core.
 *
 *   bench_route [ROUTES.yaml] [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpx/err.h"
#include "cpx/route.h"

#ifndef CPX_SOURCE_DIR
#define CPX_SOURCE_DIR "."
#endif

static int lookup(void *arg, const uint8_t *id, size_t len, cpx_route_referral_t *out)
{
    (void)arg;
    (void)id;
    (void)len;
    strcpy(out->sender, "EDUCATION");
    strcpy(out->recipient, "WOMENS_FED");
    return CPX_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : CPX_SOURCE_DIR "/deploy/jiangyin/routes.yaml";
    long iters = argc > 2 ? atol(argv[2]) : 2000000;
    char err[512];
    double t0 = now_s();
    cpx_router_t *r = cpx_router_load(path, err, sizeof err);
    double t_load = now_s() - t0;
    if (!r) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }

    /* Report: abused left-behind dropout, with health details and an age rule in play. */
    Cpx__V1__Date birth = CPX__V1__DATE__INIT;
    birth.year = 2009;
    birth.month = 5;
    birth.day = 1;
    Cpx__V1__MinorIdentity minor = CPX__V1__MINOR_IDENTITY__INIT;
    minor.town = "TOWN_HUASHI";
    minor.birth_date = &birth;
    Cpx__V1__HarmType harms[] = {CPX__V1__HARM_TYPE__ABUSE};
    Cpx__V1__CategoryDetail cat = CPX__V1__CATEGORY_DETAIL__INIT;
    cat.category = CPX__V1__CATEGORY__HARMED;
    cat.harm_types = harms;
    cat.n_harm_types = 1;
    Cpx__V1__CategoryDetail *cats[] = {&cat};
    Cpx__V1__Circumstance circ[] = {CPX__V1__CIRCUMSTANCE__LEFT_BEHIND,
                                    CPX__V1__CIRCUMSTANCE__NEEDS_SKILLS_TRAINING};
    Cpx__V1__HealthDetail health = CPX__V1__HEALTH_DETAIL__INIT;
    health.family_economy = CPX__V1__FAMILY_ECONOMY__LOW_INCOME;
    Cpx__V1__DiscoveryReport dr = CPX__V1__DISCOVERY_REPORT__INIT;
    dr.minor = &minor;
    dr.categories = cats;
    dr.n_categories = 1;
    dr.circumstances = circ;
    dr.n_circumstances = 2;
    dr.health = &health;
    dr.channel = CPX__V1__CHANNEL__SCHOOL;

    cpx_envelope_t envs[3];
    for (int i = 0; i < 3; i++) {
        cpx__v1__envelope__init(&envs[i]);
        envs[i].created_ms = 1748750400000LL;
        envs[i].priority = CPX__V1__PRIORITY__ROUTINE;
        envs[i].sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    }
    envs[0].sender = "EDUCATION";
    envs[0].body_case = CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
    envs[0].discovery_report = &dr;

    Cpx__V1__Referral ref = CPX__V1__REFERRAL__INIT;
    ref.to = "WOMENS_FED";
    envs[1].sender = "CIVIL_AFFAIRS";
    envs[1].body_case = CPX__V1__ENVELOPE__BODY_REFERRAL;
    envs[1].referral = &ref;

    uint8_t rid[16] = {1};
    Cpx__V1__Disposition disp = CPX__V1__DISPOSITION__INIT;
    disp.referral_id.data = rid;
    disp.referral_id.len = 16;
    envs[2].sender = "WOMENS_FED";
    envs[2].body_case = CPX__V1__ENVELOPE__BODY_DISPOSITION;
    envs[2].disposition = &disp;

    cpx_route_ctx_t ctx = {.now_ms = 1748750400000LL, .lookup = lookup};
    static cpx_route_t out;
    size_t total_rcpts = 0;
    t0 = now_s();
    for (long i = 0; i < iters; i++) {
        if (cpx_router_route(r, &envs[i % 3], &ctx, &out) != CPX_OK)
            return 1;
        total_rcpts += out.n_recipients;
    }
    double dt = now_s() - t0;
    printf("rules=%zu load_ms=%.3f iterations=%ld seconds=%.3f routes_per_s=%.0f ns_per_route=%.1f "
           "avg_recipients=%.2f\n",
           cpx_router_rule_count(r), t_load * 1e3, iters, dt, (double)iters / dt, dt / (double)iters * 1e9,
           (double)total_rcpts / (double)iters);
    cpx_router_destroy(&r);
    return 0;
}
