/* The sealed-records policy (deploy/jiangyin/sealed.yaml, docs/sealed.md): who may seal,
 * who receives sealed records, who is alerted, and the lawful-access rules. The parser
 * (load_policy, static in gateway/sealed.c, compiled in here) runs before any key or
 * vault is opened; the rest of the gateway comes from cpx_fuzz_gateway. A bad file must
 * give "file: problem", never a crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/sealed.c"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cpx-fuzz-sealed.%d.yaml", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cpx_gw_sealed_t *self = calloc(1, sizeof *self);
    if (!self)
        return 0;
    char vk[CPX_GW_PATH_MAX] = "", pk[CPX_GW_PATH_MAX] = "", err[512];
    err[0] = 'x';
    if (load_policy(self, path, vk, pk, sizeof vk, err, sizeof err) != CPX_OK && !memchr(err, 0, sizeof err))
        abort();
    cpx_gw_sealed_destroy(&self);
    unlink(path);
    return 0;
}
