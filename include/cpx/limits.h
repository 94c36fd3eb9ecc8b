/* cpx/limits.h — every bound cpx enforces, in one place.
 *
 * Limits on untrusted input are checked before anything is allocated for it.
 * Configuration may lower these, never raise them past the compiled maximum. */
#ifndef CPX_LIMITS_H
#define CPX_LIMITS_H

/* Frames and envelopes. */
#define CPX_MAX_FRAME_BYTES        (1u << 20)   /* one ZeroMQ message, enrolled peer */
#define CPX_MAX_FRAME_BYTES_UNAUTH 4096u        /* before authentication */
#define CPX_MAX_ENVELOPE_BYTES     (256u << 10) /* one envelope */
#define CPX_MAX_DECODE_MEMORY      (8u << 20)   /* heap one decode may take */
#define CPX_MAX_BATCH_ENVELOPES    1000u
#define CPX_MAX_GROUPED            1000u        /* Acks, Deliveries, DeliveryAcks per frame */
#define CPX_MAX_RECIPIENTS         32u
#define CPX_MAX_CATEGORIES         5u
#define CPX_MAX_REPEATED           64u          /* any other repeated field */
#define CPX_MAX_BATCH_PATH         20u          /* log2(CPX_MAX_BATCH_ENVELOPES) rounded up */
#define CPX_MAX_MESSAGE_ID         16u

/* Strings (bytes of UTF-8). */
#define CPX_MAX_DEPT_CODE          32u
#define CPX_MAX_CASE_ID            32u
#define CPX_MAX_NAME               128u
#define CPX_MAX_SHORT_TEXT         256u  /* addresses, places, reasons */
#define CPX_MAX_LONG_TEXT          8192u /* narratives, notes */

/* Validation. */
#define CPX_MAX_FIELD_ERRORS       32u
#define CPX_MAX_FUTURE_SKEW_MS     (5 * 60 * 1000)  /* created_ms may lead now by this */
#define CPX_MAX_PATH_LEN           128u

/* Audit log. */
#define CPX_MAX_LEAF_BYTES         (16u << 10)
#define CPX_MAX_PROOF_PATH         64u

#endif
