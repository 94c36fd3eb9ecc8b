/* The gateway's case policy (deploy/jiangyin/casepolicy.yaml, docs/cases.md): deadlines,
 * early warnings, key and view paths, loaded by cpx_gw_casepolicy_load over the
 * defaults. gwconfig only reaches the path naming it; this loads the file itself. A bad
 * file must give "file:line:col: key: problem", never a crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caseindex.h"
#include "cpx/err.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/cpx-fuzz-casepolicy.%d.yaml", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cpx_gw_casepolicy_t pol;
    memset(&pol, 0, sizeof pol);
    char err[512];
    err[0] = 'x';
    if (cpx_gw_casepolicy_load(path, &pol, err, sizeof err) != CPX_OK && !memchr(err, 0, sizeof err))
        abort();
    unlink(path);
    return 0;
}
