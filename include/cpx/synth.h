/* cpx/synth.h — deterministic synthetic messages for Jiangyin, for tests, benchmarks
 * and demonstrations. Never real people: names, addresses and ID numbers are drawn
 * from a seeded PRNG (splitmix64), so the same seed gives byte-identical output on
 * every machine.
 *
 * Every generated envelope is unsigned (no signature, commitments or salts),
 * malloc-built (free with cpx_msg_free, or hand it to cpx_envsign_sign) and passes
 * cpx_validate_envelope with CPX_VALIDATE_UNSIGNED, or without it once a signature is
 * attached (cpx_synth_dummy_sign gives a well-formed but unverifiable one), as long
 * as the validator's now is at or after created_ms.
 *
 * Discovery reports cover all five categories with consistent sub-conditions, every
 * reporter role and channel, the sixteen towns and streets (department codes
 * TOWN_<PINYIN>), local (320281) and migrant children, ages 0-17, and a Chinese
 * narrative; they average about 1 KiB encoded. */
#ifndef CPX_SYNTH_H
#define CPX_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"

typedef struct cpx_synth cpx_synth_t;

/* A generator seeded with seed. Caller owns it; free with cpx_synth_destroy. NULL on
 * allocation failure. */
cpx_synth_t *cpx_synth_new(uint64_t seed);
void cpx_synth_destroy(cpx_synth_t **self_p);

/* The next 64 random bits (splitmix64). */
uint64_t cpx_synth_u64(cpx_synth_t *self);

/* Each generator returns a new envelope the caller owns (cpx_msg_free), or NULL when
 * memory runs out. created_ms is the envelope's creation time (UTC ms, after 2015). */
cpx_envelope_t *cpx_synth_discovery(cpx_synth_t *self, int64_t created_ms);
/* A discovery report from sender (NULL: the generator's own choice) that the gateway
 * routes as ordinary traffic: no explicit recipients, NORMAL sensitivity, and no
 * juvenile-offence circumstance (that would make it a sealed matter). What load and
 * benchmark programs offer a gateway. */
cpx_envelope_t *cpx_synth_ordinary_report(cpx_synth_t *self, int64_t created_ms,
                                          const char *sender);
/* An Assessment by CIVIL_AFFAIRS (or a town office); case_id may be NULL. */
cpx_envelope_t *cpx_synth_assessment(cpx_synth_t *self, int64_t created_ms, const char *case_id);
/* A Referral from CIVIL_AFFAIRS to `to` (NULL: a random owner of the task) of task
 * (a Cpx__V1__Task value; 0: random among those `to` owns in the seed's table).
 * Returns NULL if `to` owns no task / does not own task. */
cpx_envelope_t *cpx_synth_referral(cpx_synth_t *self, int64_t created_ms, const char *to,
                                   int task);
/* A Disposition from sender answering referral_id (16 bytes), with an action that
 * sender would take. */
cpx_envelope_t *cpx_synth_disposition(cpx_synth_t *self, int64_t created_ms,
                                      const uint8_t referral_id[16], const char *sender);
/* A FollowUp visit record from a town office. */
cpx_envelope_t *cpx_synth_follow_up(cpx_synth_t *self, int64_t created_ms);
/* A ReleaseNotice from JUSTICE or POLICE. */
cpx_envelope_t *cpx_synth_release_notice(cpx_synth_t *self, int64_t created_ms);

/* Attaches a well-formed dummy per-message signature (key id 8 bytes of 0x5a, a
 * 64-byte "signature" of 0xa5) replacing any signature: enough for validation and
 * benchmarks, never for envsign. Returns CPX_OK or CPX_ERR_NOMEM. */
int cpx_synth_dummy_sign(cpx_envelope_t *env);

#endif
