/* The gateway's YAML configuration (gateway/config.c, not in libcpx: compiled in here).
 * An operator's file is trusted more than the wire, but a typo must give a
 * file:line:column message, never a crash, overflow or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gateway/config.c"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cpx-fuzz-gwconfig.%d.yaml", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cpx_gw_config_t cfg;
    char err[512];
    err[0] = 'x';
    if (cpx_gw_config_load(path, &cfg, err, sizeof err) != CPX_OK && !memchr(err, 0, sizeof err))
        abort(); /* the message is always terminated */
    unlink(path);
    return 0;
}
