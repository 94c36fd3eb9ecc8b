/* CSV rows through the real file connector (adapters/file/file.c, compiled in here so
 * the harness can see when a file has been read): each input is one file dropped into
 * the inbox of a real adapter using the shipped EDUCATION dropout mapping (GB18030
 * CSV with a header row). The connector transcodes, parses (libcsv, strict), checks
 * the header, maps and spools or rejects each row. Nothing may crash, leak, read out
 * of bounds or stall: every file must be read to its end. Seeds: rosters written the
 * way schools export them (tests/integration/test_adapter_file.py's writer) and the
 * malformed rows of tests/unit/test_adapter_sdk.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../adapters/file/file.c"
#include "adapter_rig.h"

static char conf_text[512];
static unsigned n_file;

static tracked_t *tracked(const char *name)
{
    fconn_t *fc = rig.state;
    return find_file(fc, name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rig.conf_path[0]) {
        rig_init(&cpx_connector_file, "file");
        snprintf(conf_text, sizeof conf_text, "file:\n  dir: exchange\n  mapping: %s\n",
                 CPX_SOURCE_DIR "/deploy/jiangyin/adapters/education-dropout.yaml");
        rig_start(conf_text);
    }
    char tmp[256], name[64], path[256];
    snprintf(name, sizeof name, "roster-%08u.csv", n_file++);
    snprintf(tmp, sizeof tmp, "%s/exchange/.%s", rig.dir, name);
    snprintf(path, sizeof path, "%s/exchange/inbox/%s", rig.dir, name);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    if (rename(tmp, path) != 0)
        abort();
    /* read to its end: still tracked with eof set (rows wait for Acks that never come),
     * or already finished (every row rejected: receipt written, file moved to done/) */
    char receipt[320];
    snprintf(receipt, sizeof receipt, "%s/exchange/done/%s.receipt", rig.dir, name);
    tracked_t *t = NULL;
    bool read = false;
    for (int i = 0; i < 10000 && !read; i++) {
        if (cpx_adapter_cycle(rig.a, 0) != CPX_OK)
            abort();
        read = ((t = tracked(name)) && t->eof) || access(receipt, F_OK) == 0;
    }
    if (!read) {
        fprintf(stderr, "fuzz_adapter_csv: %s was not read to its end\n", name);
        abort();
    }
    rig_next(conf_text);
    return 0;
}
