/* View profiles (deploy/jiangyin/views.yaml, cpx/views.h): what each department may
 * see of a message. Loaded from memory (cpx_views_load_string), then queried for a few
 * departments and body kinds. A bad file must give "FILE:LINE:COLUMN: what", never a
 * crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/views.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    err[0] = 'x';
    cpx_views_t *v = cpx_views_load_string((const char *)data, size, "views.yaml", err, sizeof err);
    if (!v) {
        if (!memchr(err, 0, sizeof err))
            abort();
        return 0;
    }
    static const char *const depts[] = {"EDUCATION", "WOMENS_FED", "TOWN_HUASHI", "POLICE", "X"};
    for (size_t i = 0; i < sizeof depts / sizeof *depts; i++) {
        (void)cpx_views_profile(v, depts[i]);
        for (int body = 0; body < 40; body++)
            (void)cpx_views_mask(v, depts[i], body);
    }
    cpx_views_destroy(&v);
    return 0;
}
