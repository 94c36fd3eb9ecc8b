/* Audit export bundles (lib/export.c, docs/audit-format.md "Export bundle") are files an
 * auditor receives from elsewhere: parse them, then replay them under the key the bundle
 * names (and under an unrelated key). Every length and count is bounded by the bundle
 * size before allocating; nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/auditverify.h"
#include "cpx/crypto.h"
#include "cpx/err.h"
#include "cpx/export.h"

static cpx_key_t *other;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!other)
        other = cpx_key_generate();
    cpx_bundle_t *b = NULL;
    char why[256];
    cpx_key_t *own = NULL;
    if (cpx_bundle_parse(data, size, &b, why, sizeof why) == CPX_OK) {
        own = cpx_key_from_raw_public(b->gateway_pub);
        cpx_bundle_destroy(&b);
        if (b)
            abort(); /* destroy must clear the pointer */
    }
    cpx_averify_report_t rep;
    cpx_averify_opts_t opts = {.gateway_pub = own ? own : other, .sender_signatures = 1, .threads = 1};
    memset(&rep, 0, sizeof rep);
    cpx_averify_bundle(data, size, &opts, &rep);
    cpx_key_destroy(&own);
    return 0;
}
