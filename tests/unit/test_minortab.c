/* The open-case table (cpx/minortab.h): insert, find, delete, prefix collisions (the
 * table keeps every case under a shared prefix), rollback of a cycle's changes (arena
 * included), growth, and a long run of random operations checked against a plain
 * reference list, with commits and rollbacks in between. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpx/err.h"
#include "cpx/minortab.h"

typedef struct got {
    size_t n;
    char ids[1024][24];
} got_t;

static int collect(void *ctx, const char *case_id)
{
    got_t *g = ctx;
    if (g->n < 1024)
        snprintf(g->ids[g->n], sizeof g->ids[0], "%s", case_id);
    g->n++;
    return 0;
}

static got_t lookup(const cpx_minortab_t *t, uint64_t pfx)
{
    got_t g = {0};
    assert_int_equal(cpx_minortab_each(t, pfx, collect, &g), 0);
    return g;
}

static int has(const got_t *g, const char *id)
{
    for (size_t i = 0; i < g->n && i < 1024; i++)
        if (!strcmp(g->ids[i], id))
            return 1;
    return 0;
}

static int stop_at_first(void *ctx, const char *case_id)
{
    (void)case_id;
    ++*(int *)ctx;
    return 7;
}

static void test_basic_and_collisions(void **state)
{
    (void)state;
    cpx_minortab_t *t = cpx_minortab_new();
    assert_non_null(t);
    uint8_t ki[33] = {'I', 1, 2, 3, 4, 5, 6, 7, 8, 9}, kn[33] = {'N', 1, 2, 3, 4, 5, 6, 7, 8, 10};
    uint64_t pi = cpx_minortab_prefix(ki), pn = cpx_minortab_prefix(kn);
    assert_true(pi != pn);  /* the tag is part of the prefix */
    kn[9] = 99;
    assert_int_equal(cpx_minortab_prefix(kn), pn);  /* bytes past the 8th do not count */

    assert_int_equal(lookup(t, pi).n, 0);
    assert_int_equal(cpx_minortab_add(t, pi, "JY-2026-000001"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, pi, "JY-2026-000001"), CPX_OK);  /* once only */
    assert_int_equal(cpx_minortab_add(t, pn, "JY-2026-000001"), CPX_OK);
    assert_int_equal(cpx_minortab_count(t), 2);
    got_t g = lookup(t, pi);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "JY-2026-000001");
    /* another child whose key shares the prefix: both are candidates, the caller's
     * check against the full hash decides */
    assert_int_equal(cpx_minortab_add(t, pi, "JY-2026-000002"), CPX_OK);
    g = lookup(t, pi);
    assert_int_equal(g.n, 2);
    assert_true(has(&g, "JY-2026-000001") && has(&g, "JY-2026-000002"));
    int calls = 0;
    assert_int_equal(cpx_minortab_each(t, pi, stop_at_first, &calls), 7);
    assert_int_equal(calls, 1);
    /* delete removes only the named case's entry */
    assert_int_equal(cpx_minortab_del(t, pi, "JY-2026-000001"), CPX_OK);
    assert_int_equal(cpx_minortab_del(t, pi, "JY-2026-000001"), CPX_OK);  /* absent: fine */
    g = lookup(t, pi);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "JY-2026-000002");
    assert_int_equal(lookup(t, pn).n, 1);
    /* bad ids are refused */
    assert_int_equal(cpx_minortab_add(t, pi, ""), CPX_ERR_ARG);
    assert_int_equal(cpx_minortab_add(t, pi, "JY-2026-0000000000000000000000000001"), CPX_ERR_ARG);
    assert_int_equal(cpx_minortab_del(t, pi, ""), CPX_ERR_ARG);
    cpx_minortab_destroy(&t);
    assert_null(t);
    cpx_minortab_destroy(&t);
}

static void test_rollback(void **state)
{
    (void)state;
    cpx_minortab_t *t = cpx_minortab_new();
    assert_non_null(t);
    assert_int_equal(cpx_minortab_add(t, 11, "A"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, 12, "A"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, 13, "B"), CPX_OK);
    cpx_minortab_commit(t);
    size_t bytes = cpx_minortab_bytes(t);
    /* a cycle: a new case, a close, a delete and re-add of the same entry, a new case
     * added and removed again */
    assert_int_equal(cpx_minortab_add(t, 14, "C"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, 11, "C"), CPX_OK);
    assert_int_equal(cpx_minortab_del(t, 11, "A"), CPX_OK);
    assert_int_equal(cpx_minortab_del(t, 12, "A"), CPX_OK);
    assert_int_equal(cpx_minortab_del(t, 13, "B"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, 13, "B"), CPX_OK);
    assert_int_equal(cpx_minortab_add(t, 15, "D"), CPX_OK);
    assert_int_equal(cpx_minortab_del(t, 15, "D"), CPX_OK);
    assert_int_equal(cpx_minortab_count(t), 3);
    cpx_minortab_rollback(t);
    assert_int_equal(cpx_minortab_count(t), 3);
    got_t g = lookup(t, 11);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "A");
    assert_string_equal(lookup(t, 12).ids[0], "A");
    assert_string_equal(lookup(t, 13).ids[0], "B");
    assert_int_equal(lookup(t, 14).n, 0);
    assert_int_equal(lookup(t, 15).n, 0);
    assert_int_equal(cpx_minortab_bytes(t), bytes);
    /* a second rollback has nothing to undo; a committed change stays */
    cpx_minortab_rollback(t);
    assert_int_equal(cpx_minortab_count(t), 3);
    assert_int_equal(cpx_minortab_add(t, 14, "C"), CPX_OK);
    cpx_minortab_commit(t);
    cpx_minortab_rollback(t);
    assert_string_equal(lookup(t, 14).ids[0], "C");
    cpx_minortab_destroy(&t);
}

/* ---- random operations against a reference --------------------------------------- */

#define REF_MAX 6000

typedef struct ref_ent {
    uint64_t pfx;
    char id[16];
} ref_ent_t;

typedef struct model {
    ref_ent_t e[REF_MAX];
    size_t n;
} model_t;

static size_t model_find(const model_t *m, uint64_t pfx, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].pfx == pfx && !strcmp(m->e[i].id, id))
            return i;
    return m->n;
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Each of the model's entries is found, and the table holds nothing else. */
static void check_same(const cpx_minortab_t *t, const model_t *m)
{
    assert_int_equal(cpx_minortab_count(t), m->n);
    for (size_t i = 0; i < m->n; i++) {
        got_t g = {0};
        assert_int_equal(cpx_minortab_each(t, m->e[i].pfx, collect, &g), 0);
        size_t want = 0;
        for (size_t j = 0; j < m->n; j++)
            want += m->e[j].pfx == m->e[i].pfx;
        assert_int_equal(g.n, want);
        if (!has(&g, m->e[i].id))
            fail_msg("entry %zu (%s) lost", i, m->e[i].id);
    }
}

static void test_random_against_model(void **state)
{
    (void)state;
    static model_t m, saved;
    cpx_minortab_t *t = cpx_minortab_new();
    assert_non_null(t);
    uint64_t x = 0x243F6A8885A308D3ull;
    saved = m;
    for (int step = 0; step < 60000; step++) {
        uint64_t r = rnd(&x);
        /* few distinct high halves: long probe runs, shared prefixes, wrap-around */
        uint64_t pfx = (rnd(&x) % 64) << 58 | (r % 3000) * 0x9E3779B9ull;
        if (r % 17 == 0)
            pfx = 0xFFFFFFFF00000000ull | (r % 5);  /* the last slot: probes wrap */
        char id[16];
        snprintf(id, sizeof id, "C%u", (unsigned)(rnd(&x) % 4000));
        unsigned op = (unsigned)(r >> 40) % 100;
        if (op < 55 && m.n < REF_MAX) {
            assert_int_equal(cpx_minortab_add(t, pfx, id), CPX_OK);
            if (model_find(&m, pfx, id) == m.n) {
                m.e[m.n].pfx = pfx;
                snprintf(m.e[m.n].id, sizeof m.e[0].id, "%s", id);
                m.n++;
            }
        } else if (op < 90 && m.n) {
            /* mostly entries that are there */
            size_t k = (size_t)(rnd(&x) % m.n);
            uint64_t p = r % 4 ? m.e[k].pfx : pfx;
            const char *d = r % 4 ? m.e[k].id : id;
            size_t at = model_find(&m, p, d);
            assert_int_equal(cpx_minortab_del(t, p, d), CPX_OK);
            if (at < m.n)
                m.e[at] = m.e[--m.n];
        } else if (op < 95) {
            cpx_minortab_commit(t);
            saved = m;
        } else {
            cpx_minortab_rollback(t);
            m = saved;
        }
        if (step % 997 == 0)
            check_same(t, &m);
    }
    check_same(t, &m);
    cpx_minortab_destroy(&t);
}

static void test_growth(void **state)
{
    (void)state;
    cpx_minortab_t *t = cpx_minortab_new();
    assert_non_null(t);
    uint64_t x = 99;
    char id[24];
    for (unsigned i = 0; i < 200000; i++) {
        snprintf(id, sizeof id, "JY-2026-%06u", i);
        assert_int_equal(cpx_minortab_add(t, rnd(&x), id), CPX_OK);
        if (i % 1000 == 999)
            cpx_minortab_commit(t);
    }
    assert_int_equal(cpx_minortab_count(t), 200000);
    /* 12 bytes a slot at a load of 1/2 or more, plus the ids (arena doubles) */
    assert_true(cpx_minortab_bytes(t) < 200000u * 48u);
    x = 99;
    for (unsigned i = 0; i < 200000; i += 777) {
        uint64_t p = rnd(&x);
        for (unsigned j = 1; j < 777 && i + j < 200000; j++)
            (void)rnd(&x);
        snprintf(id, sizeof id, "JY-2026-%06u", i);
        got_t g = lookup(t, p);
        assert_true(has(&g, id));
    }
    cpx_minortab_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_and_collisions),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
