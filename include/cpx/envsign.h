/* cpx/envsign.h — how an envelope is signed, verified, and shown redacted.
 *
 * Signed bytes (docs/protocol.md, "Signing", is the normative text):
 *   Each present top-level field F of the body gets a fresh 16-byte salt and a
 *   commitment  C_F = SHA-256("cpx.v1.field" 0x00 || salt || BE32(F) || wire(F))
 *   where wire(F) is the canonical protobuf encoding of the body holding only F.
 *   The envelope signing bytes are
 *     "cpx.v1.envelope" 0x00 || lp(message_id) || lp(sender) || BE32(#recipients)
 *     || lp(recipient)... || lp(case_id) || BE64(created_ms) || BE32(priority)
 *     || lp(in_reply_to) || BE32(sensitivity) || BE32(body_kind)
 *     || BE32(#commitments) || (BE32(field) || digest)... || lp(key_id)
 *   with lp(x) = BE32(len) || x. The envelope digest is SHA-256(signing bytes).
 *   Per message:  Ed25519 over "cpx.v1.sig.envelope" 0x00 || digest.
 *   Per batch:    leaves are the digests (leaf hash SHA-256(0x00 || digest), RFC 9162);
 *                 Ed25519 over "cpx.v1.sig.batch" 0x00 || BE64(size) || root.
 * Because the signature covers commitments, not field bytes, a recipient shown a
 * redacted view (withheld fields and their salts removed, commitments kept) can
 * verify that every field it sees is authentic and learns exactly which fields
 * were withheld, without learning anything about their contents (salts hide
 * low-entropy values). The digest is what the audit log records, so sender
 * signatures are checkable from the log alone.
 *
 * Ownership: functions that change an envelope allocate with malloc, so the
 * envelope must be one freed with cpx_msg_free (decoded, or built by cpx_synth /
 * cpx_json_to_msg); old commitments, salts and signature are freed and replaced. */
#ifndef CPX_ENVSIGN_H
#define CPX_ENVSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "cpx/codec.h"
#include "cpx/crypto.h"
#include "cpx/merkle.h"

#define CPX_SALT_LEN 16
#define CPX_MAX_BODY_FIELDS 32

/* Sets body_kind and (re)computes a salt and commitment for every present body field. */
int cpx_envsign_commit(cpx_envelope_t *env);

/* The signing bytes (caller frees *out with free()) and their SHA-256. */
int cpx_envsign_signing_bytes(const cpx_envelope_t *env, uint8_t **out, size_t *len);
int cpx_envsign_digest(const cpx_envelope_t *env, uint8_t out[CPX_SHA256_LEN]);

/* Commits and signs one envelope with a private key (per-message signature). */
int cpx_envsign_sign(cpx_envelope_t *env, const cpx_key_t *key);

/* Commits every envelope, builds the RFC 9162 tree of their digests, signs the root
 * once and gives each envelope its BatchProof. n in 1..CPX_MAX_BATCH_ENVELOPES. */
int cpx_envsign_sign_batch(cpx_envelope_t *const *envs, size_t n, const cpx_key_t *key);

/* Low-level checks used by the audit verifier, which holds only digests. */
int cpx_envsign_verify_digest(const cpx_key_t *pub, const uint8_t digest[CPX_SHA256_LEN],
                              const uint8_t *sig, size_t sig_len);
/* Recomputes the batch root from digest, index, size and path, and verifies the
 * root signature. root_out (may be NULL) receives the recomputed root. */
int cpx_envsign_verify_batch_digest(const cpx_key_t *pub, const uint8_t digest[CPX_SHA256_LEN],
                                    uint64_t index, uint64_t size, const cpx_hash_t *path,
                                    size_t path_len, const uint8_t *root_sig, size_t sig_len,
                                    cpx_hash_t root_out);

typedef struct cpx_envsign_result {
    uint8_t digest[CPX_SHA256_LEN];
    cpx_hash_t batch_root;          /* set for batch-signed envelopes */
    int batch;                      /* 1 if batch-signed */
    uint32_t withheld[CPX_MAX_BODY_FIELDS];  /* committed fields not present */
    size_t n_withheld;
    char reason[160];               /* why verification failed, for Nacks and logs */
} cpx_envsign_result_t;

/* Verifies an envelope (full or redacted) against the sender's public key:
 * every present body field must have a salt and a matching commitment; committed
 * fields that are absent are reported as withheld; the signature (per message, or
 * batch path + root signature) must verify. CPX_OK, CPX_ERR_BAD_SIGNATURE, or
 * CPX_ERR_INVALID (malformed commitments/salts/proof); res->reason says which. */
int cpx_envsign_verify(const cpx_envelope_t *env, const cpx_key_t *pub,
                       cpx_envsign_result_t *res);

/* Verifies a whole batch as cpx_envsign_verify does each envelope, but checks each
 * distinct (size, root, root_signature) with Ed25519 once: a 1000-envelope batch costs
 * one signature verification plus per-envelope hashing. Envelopes with a per-message
 * signature are verified individually. results[i] and rcs[i] receive each envelope's
 * outcome (arrays of n, caller-owned). Returns CPX_OK when every envelope verifies,
 * else the first failing envelope's code; CPX_ERR_ARG for NULL arguments or
 * n > CPX_MAX_BATCH_ENVELOPES. */
int cpx_envsign_verify_batch(cpx_envelope_t *const *envs, size_t n, const cpx_key_t *pub,
                             cpx_envsign_result_t *results, int *rcs);

/* Removes the given top-level body fields and their salts, keeping the commitments
 * and signature, so cpx_envsign_verify still passes and reports them withheld. */
int cpx_envsign_redact(cpx_envelope_t *env, const uint32_t *fields, size_t n);

#endif
