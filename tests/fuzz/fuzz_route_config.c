/* libFuzzer: the routing configuration loader must refuse any bytes with a message
 * (or load them), never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpx/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    cpx_router_t *r = cpx_router_load_string((const char *)data, size, "fuzz.yaml", err, sizeof err);
    if (!r && err[0] == '\0')
        __builtin_trap();  /* every refusal says why */
    cpx_router_destroy(&r);
    return 0;
}
