/* file.c — the file connector: spool folders next to an agency's system.
 *
 *   DIR/inbox/     CSV or JSON-lines files dropped here (write elsewhere, then rename
 *                  in) are read row by row, streaming, as soon as inotify reports them
 *   DIR/done/      a file moves here with FILE.receipt once every row is settled
 *                  (acknowledged by the gateway, or rejected)
 *   DIR/rejected/  FILE.errors: one line per refused row, "FILE:LINE: path: rule: why"
 *   DIR/outbox/    one JSON file per delivery, written atomically (write, fsync, rename)
 *
 * Progress per file (byte offset and line of the last whole record submitted) is
 * kept in the spool and committed in the same transaction as the rows it covers, so
 * a kill -9 resumes exactly after the last spooled row. Each row's message id is
 * HMAC(adapter id key, file identity || line): a row re-read for any reason gets the
 * same id and the gateway drops the duplicate.
 *
 * A finished file stays in the spool, marked settled (eof field 2), until the receipt
 * is written and the file moved to done/ after the commit; the mark is deleted in the
 * next cycle. A kill -9 between the commit and the move therefore finds the mark and
 * only publishes the file: deleting the state in the finishing transaction made the
 * restarted adapter read, spool and submit every row of that file a second time. */
#include <signal.h>
#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpx/adapter.h"
#include "cpx/log.h"

#define MOD "file"
#define MAX_FILES 1024
#define MAX_COLS 256
#define MAX_LINE (1u << 20)
#define READ_CHUNK (64u << 10)
#define NAME_MAX_LEN 200

static const char *const file_keys[] = {"dir", "mapping", "rescan_ms", NULL};

typedef struct tracked {
    char name[NAME_MAX_LEN + 1];
    char ident[65];           /* hex SHA-256 of name, size, mtime */
    uint64_t offset, line, records, acked, rejected, pending;
    bool eof, dirty, finishing, gone;
    bool published;           /* receipt written, file moved: forget it next cycle */
} tracked_t;

typedef struct reader {
    tracked_t *t;             /* NULL when no file is open */
    int fd;
    char *buf;                /* raw bytes: [start, end) unread */
    size_t start, end;
    uint64_t buf_off;         /* file offset of buf[0] */
    bool at_eof;
    struct csv_parser csv;
    bool csv_on;
    cpx_transcoder_t *tc;
    /* current record */
    char **fields;
    size_t n_fields, cap_fields;
    uint64_t rec_line;        /* line the record starts on */
    bool rec_open;
    char bad[256];            /* a reason that already condemns the open record */
    /* header */
    char *cols[MAX_COLS];
    size_t n_cols;
    bool header_done;
    uint64_t lineno;          /* physical lines consumed */
    json_t *jrec;             /* jsonl: current object */
} reader_t;

typedef struct fconn {
    cpx_adapter_t *a;
    char inbox[4096], done[4096], rejected[4096], outbox[4096];
    cpx_mapping_t *map;
    bool jsonl;
    int ino;
    bool rescan;
    const char *failpoint;    /* $CPX_FAILPOINT_FILE_PUBLISH: tests only */
    int64_t last_scan, rescan_ms;
    tracked_t *files[MAX_FILES];
    size_t n_files;
    reader_t r;
} fconn_t;

/* ---- tracked files and their state in the spool -------------------------------- */

static void state_key(const tracked_t *t, char *key, size_t size) { snprintf(key, size, "f/%s", t->name); }

static void save_state(fconn_t *fc, tracked_t *t)
{
    char key[NAME_MAX_LEN + 8], val[256];
    state_key(t, key, sizeof key);
    int n = snprintf(val, sizeof val, "1 %s %llu %llu %llu %llu %llu %d", t->ident,
                     (unsigned long long)t->offset, (unsigned long long)t->line,
                     (unsigned long long)t->records, (unsigned long long)t->acked,
                     (unsigned long long)t->rejected, t->finishing ? 2 : t->eof ? 1 : 0);
    cpx_adapter_state_put(fc->a, key, val, (size_t)n);
    t->dirty = false;
}

static bool load_state(fconn_t *fc, tracked_t *t, const char *ident)
{
    char key[NAME_MAX_LEN + 8], val[256];
    state_key(t, key, sizeof key);
    int n = cpx_adapter_state_get(fc->a, key, val, sizeof val - 1);
    if (n < 0 || n >= (int)sizeof val)
        return false;
    val[n] = '\0';
    char id[65];
    unsigned long long off, line, rec, ack, rej;
    int eof;
    if (sscanf(val, "1 %64s %llu %llu %llu %llu %llu %d", id, &off, &line, &rec, &ack, &rej, &eof) != 7 ||
        strcmp(id, ident))
        return false; /* another file under the same name: start over */
    t->offset = off;
    t->line = line;
    t->records = rec;
    t->acked = ack;
    t->rejected = rej;
    t->eof = eof != 0;
    t->finishing = eof == 2; /* settled before a crash: publish it, read nothing */
    return true;
}

static tracked_t *find_file(fconn_t *fc, const char *name)
{
    for (size_t i = 0; i < fc->n_files; i++)
        if (!strcmp(fc->files[i]->name, name))
            return fc->files[i];
    return NULL;
}

/* "f:NAME:LINE" with LINE zero-padded, so rejected rows sort by line. */
static void origin_of(const tracked_t *t, uint64_t line, char *out, size_t size)
{
    snprintf(out, size, "f:%s:%010llu", t->name, (unsigned long long)line);
}

static tracked_t *file_of_origin(fconn_t *fc, const char *origin)
{
    if (strncmp(origin, "f:", 2))
        return NULL;
    const char *colon = strrchr(origin, ':');
    if (!colon || colon - origin - 2 > NAME_MAX_LEN)
        return NULL;
    char name[NAME_MAX_LEN + 1];
    memcpy(name, origin + 2, (size_t)(colon - origin - 2));
    name[colon - origin - 2] = '\0';
    return find_file(fc, name);
}

static int file_ident(const char *dir, const char *name, char out[65])
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return CPX_ERR_IO;
    char buf[NAME_MAX_LEN + 96];
    int n = snprintf(buf, sizeof buf, "%s\n%lld\n%lld.%09ld", name, (long long)st.st_size,
                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    uint8_t h[CPX_SHA256_LEN];
    cpx_sha256(buf, (size_t)n, h);
    cpx_hex(h, sizeof h, out);
    return CPX_OK;
}

static int name_cmp(const void *x, const void *y)
{
    return strcmp((*(tracked_t *const *)x)->name, (*(tracked_t *const *)y)->name);
}

/* Picks up new files in inbox/ (sorted by name, so weekly files go in order). */
static void scan_inbox(fconn_t *fc)
{
    DIR *d = opendir(fc->inbox);
    if (!d) {
        cpx_log_error(MOD, "msg=\"cannot read inbox\" dir=\"%s\" err=\"%s\"", fc->inbox, strerror(errno));
        return;
    }
    for (size_t i = 0; i < fc->n_files; i++)
        fc->files[i]->gone = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > NAME_MAX_LEN)
            continue;
        tracked_t *t = find_file(fc, e->d_name);
        char ident[65];
        if (file_ident(fc->inbox, e->d_name, ident) != CPX_OK)
            continue;
        if (t) {
            t->gone = false;
            continue;
        }
        if (fc->n_files == MAX_FILES)
            break;
        t = calloc(1, sizeof *t);
        if (!t)
            break;
        strcpy(t->name, e->d_name);
        strcpy(t->ident, ident);
        if (load_state(fc, t, ident))
            cpx_log_info(MOD, "msg=\"resuming file\" file=\"%s\" line=%llu records=%llu", t->name,
                         (unsigned long long)t->line, (unsigned long long)t->records);
        else
            t->dirty = true;
        fc->files[fc->n_files++] = t;
    }
    closedir(d);
    /* a file removed by hand before it was finished is forgotten */
    for (size_t i = 0; i < fc->n_files;) {
        tracked_t *t = fc->files[i];
        if (t->gone && t != fc->r.t && !t->finishing) {
            cpx_log_warn(MOD, "msg=\"file vanished from inbox\" file=\"%s\"", t->name);
            free(t);
            fc->files[i] = fc->files[--fc->n_files];
        } else {
            i++;
        }
    }
    qsort(fc->files, fc->n_files, sizeof *fc->files, name_cmp);
}

static int count_pending(void *ctx, const char *origin)
{
    tracked_t *t = file_of_origin(ctx, origin);
    if (t)
        t->pending++;
    return 0;
}

/* ---- reading one file ------------------------------------------------------------ */

static void reader_reset_record(reader_t *r)
{
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->fields[i]);
    r->n_fields = 0;
    r->rec_open = false;
    r->bad[0] = '\0';
}

static void reader_close(reader_t *r)
{
    reader_reset_record(r);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->csv_on)
        csv_free(&r->csv);
    r->csv_on = false;
    cpx_transcoder_destroy(&r->tc);
    for (size_t i = 0; i < r->n_cols; i++)
        free(r->cols[i]);
    r->n_cols = 0;
    r->header_done = false;
    r->t = NULL;
    r->start = r->end = 0;
    r->at_eof = false;
}

static void cb_field(void *s, size_t len, void *data)
{
    reader_t *r = &((fconn_t *)data)->r;
    r->rec_open = true;
    if (r->n_fields == r->cap_fields) {
        size_t cap = r->cap_fields ? r->cap_fields * 2 : 32;
        if (cap > MAX_COLS * 2)
            return; /* counted as a field-count error below */
        char **f = realloc(r->fields, cap * sizeof *f);
        if (!f)
            return;
        r->fields = f;
        r->cap_fields = cap;
    }
    r->fields[r->n_fields++] = strndup(s ? s : "", len);
}

static const char *csv_get(void *ctx, const char *name)
{
    reader_t *r = ctx;
    for (size_t i = 0; i < r->n_cols && i < r->n_fields; i++)
        if (!strcmp(r->cols[i], name))
            return r->fields[i];
    return NULL;
}

static const char *json_get(void *ctx, const char *name)
{
    reader_t *r = ctx;
    static __thread char num[48];
    json_t *v = json_object_get(r->jrec, name);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return num;
    }
    if (json_is_true(v) || json_is_false(v))
        return json_is_true(v) ? "true" : "false";
    return NULL;
}

/* Maps the complete record and submits it, or records why it was refused. */
static void finish_record(fconn_t *fc, cpx_record_get_fn get)
{
    reader_t *r = &fc->r;
    tracked_t *t = r->t;
    char origin[CPX_ADAPTER_MAX_ORIGIN + 1];
    origin_of(t, r->rec_line, origin, sizeof origin);
    t->records++;
    t->dirty = true;
    if (r->bad[0]) {
        cpx_adapter_reject(fc->a, origin, r->bad);
        t->rejected++;
        return;
    }
    cpx_errors_t errs;
    memset(&errs, 0, sizeof errs);
    cpx_envelope_t *env = NULL;
    int rc = cpx_mapping_apply(fc->map, get, r, &env, &errs);
    if (rc != CPX_OK) {
        char reason[2048];
        if (rc == CPX_ERR_INVALID)
            cpx_errors_format(&errs, reason, sizeof reason);
        else
            snprintf(reason, sizeof reason, "mapping: %s", cpx_strerror(rc));
        cpx_adapter_reject(fc->a, origin, reason);
        t->rejected++;
        return;
    }
    char ident[128];
    int n = snprintf(ident, sizeof ident, "%s:%llu", t->ident, (unsigned long long)r->rec_line);
    uint8_t id[CPX_ADAPTER_ID_LEN];
    cpx_adapter_derive_id(fc->a, ident, (size_t)n, id);
    rc = cpx_adapter_submit(fc->a, &env, id, origin);
    if (rc != CPX_OK) {
        cpx_msg_free(env);
        cpx_adapter_reject(fc->a, origin, "adapter: could not spool");
        t->rejected++;
        return;
    }
    t->pending++;
}

static void cb_record(int c, void *data)
{
    fconn_t *fc = data;
    reader_t *r = &fc->r;
    (void)c;
    if (!r->header_done) {
        r->header_done = true;
        cpx_errors_t errs;
        memset(&errs, 0, sizeof errs);
        for (size_t i = 0; i < r->n_fields && i < MAX_COLS; i++) {
            r->cols[r->n_cols++] = r->fields[i];
            r->fields[i] = NULL;
        }
        r->n_fields = 0;
        r->rec_open = false;
        if (cpx_mapping_check_columns(fc->map, (const char *const *)r->cols, r->n_cols, &errs) != CPX_OK) {
            /* a file without the columns the mapping needs: every row would fail */
            cpx_errors_format(&errs, r->bad, sizeof r->bad);
            char origin[CPX_ADAPTER_MAX_ORIGIN + 1];
            origin_of(r->t, 1, origin, sizeof origin);
            cpx_adapter_reject(fc->a, origin, r->bad);
            r->t->rejected++;
            r->t->eof = true; /* nothing more is read from it */
            r->t->dirty = true;
            cpx_log_warn(MOD, "msg=\"file refused: missing columns\" file=\"%s\"", r->t->name);
        }
        return;
    }
    if (r->t->eof) {
        reader_reset_record(r);
        return;
    }
    if (r->n_fields != r->n_cols && !r->bad[0])
        snprintf(r->bad, sizeof r->bad, "record: field_count: %zu fields, the header has %zu",
                 r->n_fields, r->n_cols);
    finish_record(fc, csv_get);
    reader_reset_record(r);
}

static int reader_open(fconn_t *fc, tracked_t *t)
{
    reader_t *r = &fc->r;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", fc->inbox, t->name);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return CPX_ERR_IO;
    r->tc = cpx_transcoder_new(cpx_mapping_encoding(fc->map));
    if (!r->buf)
        r->buf = malloc(MAX_LINE + READ_CHUNK);
    if (!r->tc || !r->buf)
        return CPX_ERR_NOMEM;
    if (!fc->jsonl) {
        if (csv_init(&r->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
            return CPX_ERR_NOMEM;
        r->csv_on = true;
        csv_set_delim(&r->csv, (unsigned char)cpx_mapping_delimiter(fc->map));
    }
    r->t = t;
    r->start = r->end = 0;
    r->buf_off = 0;
    r->at_eof = false;
    r->header_done = fc->jsonl;
    return CPX_OK;
}

/* The next whole line (with its '\n', or the tail at end of file). 0 at end. */
static size_t next_line(reader_t *r, const char **line, bool *too_long)
{
    *too_long = false;
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl) {
            *line = r->buf + r->start;
            size_t n = (size_t)(nl - *line) + 1;
            r->start += n;
            return n;
        }
        if (r->at_eof) {
            size_t n = r->end - r->start;
            *line = r->buf + r->start;
            r->start = r->end;
            return n;
        }
        if (r->end - r->start >= MAX_LINE) {
            /* refuse the line, skip to its end */
            *too_long = true;
            *line = r->buf + r->start;
            size_t n = r->end - r->start;
            r->start = r->end;
            return n;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->buf_off += r->start;
            r->end -= r->start;
            r->start = 0;
        }
        ssize_t got = read(r->fd, r->buf + r->end, READ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            r->at_eof = true;
        else
            r->end += (size_t)got;
    }
}

/* Restarts the CSV parser after a syntax or encoding error. */
static void csv_restart(fconn_t *fc)
{
    reader_t *r = &fc->r;
    csv_free(&r->csv);
    csv_init(&r->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
    csv_set_delim(&r->csv, (unsigned char)cpx_mapping_delimiter(fc->map));
}

/* Condemns the record the current line belongs to and starts clean after it. */
static void refuse_record(fconn_t *fc, const char *why)
{
    reader_t *r = &fc->r;
    snprintf(r->bad, sizeof r->bad, "%s", why);
    if (r->csv_on)
        csv_restart(fc);
    if (!r->header_done) {
        /* without a readable header the file cannot be mapped at all */
        r->header_done = true;
        r->t->eof = true;
    }
    finish_record(fc, csv_get);
    reader_reset_record(r);
}

/* Feeds physical line r->lineno; returns true when a record boundary follows it. */
static bool feed_line(fconn_t *fc, const char *line, size_t len, bool too_long)
{
    reader_t *r = &fc->r;
    uint64_t lineno = r->lineno;
    bool fresh = fc->jsonl || r->csv.pstate == 0;
    if (fresh && r->n_fields == 0)
        r->rec_line = lineno;
    const char *u8 = NULL;
    size_t u8len = 0, bad = 0;
    int rc = too_long ? CPX_ERR_TOO_LARGE : cpx_transcode_line(r->tc, line, len, &u8, &u8len, &bad);
    if (rc != CPX_OK) {
        char why[256];
        if (rc == CPX_ERR_DECODE)
            snprintf(why, sizeof why, "record: encoding: bytes invalid in %s at line %llu byte offset %zu (file offset %llu)",
                     cpx_mapping_encoding(fc->map), (unsigned long long)lineno, bad,
                     (unsigned long long)(r->buf_off + (size_t)(line - r->buf) + bad));
        else
            snprintf(why, sizeof why, "record: line_too_long: line %llu is over %u bytes",
                     (unsigned long long)lineno, MAX_LINE);
        refuse_record(fc, why);
        return true;
    }
    if (fc->jsonl) {
        size_t n = u8len;
        while (n && (u8[n - 1] == '\n' || u8[n - 1] == '\r' || u8[n - 1] == ' '))
            n--;
        if (n == 0)
            return true; /* blank line */
        json_error_t jerr;
        r->jrec = json_loadb(u8, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(r->jrec))
            snprintf(r->bad, sizeof r->bad, "record: json: not a JSON object (column %d: %s)",
                     jerr.column, r->jrec ? "not an object" : jerr.text);
        finish_record(fc, json_get);
        json_decref(r->jrec);
        r->jrec = NULL;
        reader_reset_record(r);
        return true;
    }
    size_t used = csv_parse(&r->csv, u8, u8len, cb_field, cb_record, fc);
    if (used != u8len) {
        char why[128];
        snprintf(why, sizeof why, "record: csv_syntax: %s", csv_strerror(csv_error(&r->csv)));
        refuse_record(fc, why);
        return true;
    }
    return r->csv.pstate == 0 && r->n_fields == 0;
}

/* Opens the file's reading position: parses the header, then skips what earlier
 * runs already spooled (state offset/line). */
static void reader_start(fconn_t *fc)
{
    reader_t *r = &fc->r;
    tracked_t *t = r->t;
    const char *line;
    bool too_long;
    r->lineno = 0;
    while (!r->header_done && !t->eof) {
        size_t n = next_line(r, &line, &too_long);
        if (n == 0)
            break;
        r->lineno++;
        feed_line(fc, line, n, too_long);
    }
    uint64_t here = r->buf_off + r->start;
    if (t->offset > here) {
        if (lseek(r->fd, (off_t)t->offset, SEEK_SET) < 0) {
            t->eof = true;
            return;
        }
        r->buf_off = t->offset;
        r->start = r->end = 0;
        r->at_eof = false;
        r->lineno = t->line;
    } else {
        t->offset = here;
        t->line = r->lineno;
        t->dirty = true;
    }
}

/* Reads records from the open file while the adapter takes them. */
static void read_some(fconn_t *fc)
{
    reader_t *r = &fc->r;
    tracked_t *t = r->t;
    const char *line;
    bool too_long;
    while (!t->eof && cpx_adapter_can_submit(fc->a)) {
        size_t n = next_line(r, &line, &too_long);
        if (n == 0) {
            if (r->csv_on && r->csv.pstate != 0 &&
                csv_fini(&r->csv, cb_field, cb_record, fc) != 0) {
                r->rec_open = true;
                refuse_record(fc, "record: csv_syntax: unterminated quoted field at end of file");
            }
            t->eof = true;
            t->dirty = true;
            break;
        }
        r->lineno++;
        if (feed_line(fc, line, n, too_long)) {
            t->line = r->lineno;
            t->offset = r->buf_off + r->start;
            t->dirty = true;
        }
    }
    if (t->eof)
        cpx_log_info(MOD, "msg=\"file read\" file=\"%s\" records=%llu rejected=%llu", t->name,
                     (unsigned long long)t->records, (unsigned long long)t->rejected);
}

/* ---- finishing a file -------------------------------------------------------------- */

static int write_atomic(const char *dir, const char *name, const char *data, size_t len)
{
    char tmp[8192], path[8192];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return CPX_ERR_IO;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return CPX_ERR_IO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return CPX_ERR_IO;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return CPX_OK;
}

typedef struct errbuf {
    char *data;
    size_t len, cap;
    const char *name;
} errbuf_t;

static int collect_error(void *ctx, const char *origin, const char *reason)
{
    errbuf_t *b = ctx;
    const char *colon = strrchr(origin, ':');
    unsigned long long line = colon ? strtoull(colon + 1, NULL, 10) : 0;
    size_t need = strlen(b->name) + strlen(reason) + 48;
    if (b->len + need > b->cap) {
        size_t cap = (b->cap + need) * 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 1;
        b->data = d;
        b->cap = cap;
    }
    b->len += (size_t)snprintf(b->data + b->len, b->cap - b->len, "%s:%llu: %s\n", b->name, line, reason);
    return 0;
}

/* Inside the transaction: writes FILE.errors from the spool's rejected area, then
 * marks the file for moving once this cycle is committed. */
static void finish_file(fconn_t *fc, tracked_t *t)
{
    if (t->rejected) {
        char prefix[NAME_MAX_LEN + 4];
        snprintf(prefix, sizeof prefix, "f:%s:", t->name);
        errbuf_t b = {.name = t->name};
        cpx_adapter_foreach_rejected(fc->a, prefix, collect_error, &b);
        char ename[NAME_MAX_LEN + 8];
        snprintf(ename, sizeof ename, "%s.errors", t->name);
        if (write_atomic(fc->rejected, ename, b.data ? b.data : "", b.len) != CPX_OK)
            cpx_log_error(MOD, "msg=\"cannot write errors file\" file=\"%s\"", ename);
        free(b.data);
    }
    t->finishing = true;
    save_state(fc, t);
}

/* Inside the transaction after publish_file: the settled mark is no longer needed. */
static void forget_published(fconn_t *fc)
{
    for (size_t i = 0; i < fc->n_files;) {
        tracked_t *t = fc->files[i];
        if (t->published) {
            char key[NAME_MAX_LEN + 8];
            state_key(t, key, sizeof key);
            cpx_adapter_state_del(fc->a, key);
            free(t);
            fc->files[i] = fc->files[--fc->n_files];
        } else {
            i++;
        }
    }
}

/* After the commit: receipt, then the move that tells the agency it is done. */
static void publish_file(fconn_t *fc, tracked_t *t)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s?, s:I}", "file", t->name, "identity",
                          t->ident, "records", (json_int_t)t->records, "acknowledged",
                          (json_int_t)t->acked, "rejected", (json_int_t)t->rejected,
                          "errors_file", t->rejected ? "../rejected/" : NULL,
                          "completed_ms", (json_int_t)cpx_adapter_now_ms());
    if (j && t->rejected) {
        char ename[NAME_MAX_LEN + 24];
        snprintf(ename, sizeof ename, "../rejected/%s.errors", t->name);
        json_object_set_new(j, "errors_file", json_string(ename));
    }
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    char rname[NAME_MAX_LEN + 16], from[8192], to[8192];
    snprintf(rname, sizeof rname, "%s.receipt", t->name);
    if (!text || write_atomic(fc->done, rname, text, strlen(text)) != CPX_OK)
        cpx_log_error(MOD, "msg=\"cannot write receipt\" file=\"%s\"", t->name);
    free(text);
    snprintf(from, sizeof from, "%s/%s", fc->inbox, t->name);
    snprintf(to, sizeof to, "%s/%s", fc->done, t->name);
    if (rename(from, to) != 0)
        cpx_log_error(MOD, "msg=\"cannot move file to done\" file=\"%s\" err=\"%s\"", t->name,
                      strerror(errno));
    cpx_log_info(MOD, "msg=\"file done\" file=\"%s\" records=%llu acknowledged=%llu rejected=%llu",
                 t->name, (unsigned long long)t->records, (unsigned long long)t->acked,
                 (unsigned long long)t->rejected);
}

/* ---- connector callbacks --------------------------------------------------------- */

/* dir and any missing parents (configs name ../var/DEPT/exchange). */
static int mkdir_parents(const char *dir)
{
    char buf[4096];
    if (strlen(dir) >= sizeof buf)
        return -1;
    strcpy(buf, dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

static int mkdir_p(const char *base, const char *sub, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", base, sub);
    if (mkdir(out, 0750) != 0 && errno != EEXIST) {
        cpx_log_error(MOD, "msg=\"cannot create folder\" dir=\"%s\" err=\"%s\"", out, strerror(errno));
        return CPX_ERR_IO;
    }
    return CPX_OK;
}

static void f_close(void *state)
{
    fconn_t *fc = state;
    if (!fc)
        return;
    reader_close(&fc->r);
    free(fc->r.buf);
    free(fc->r.fields);
    for (size_t i = 0; i < fc->n_files; i++)
        free(fc->files[i]);
    cpx_mapping_destroy(&fc->map);
    if (fc->ino >= 0)
        close(fc->ino);
    free(fc);
}

static int f_open(cpx_adapter_t *a, const cpx_conf_t *sec, void **state)
{
    fconn_t *fc = calloc(1, sizeof *fc);
    if (!fc)
        return CPX_ERR_NOMEM;
    fc->a = a;
    fc->ino = -1;
    fc->r.fd = -1;
    char dir[4096], mpath[4096], err[512];
    long long rescan;
    if (cpx_conf_path(sec, "dir", dir, sizeof dir) != CPX_OK ||
        cpx_conf_path(sec, "mapping", mpath, sizeof mpath) != CPX_OK ||
        cpx_conf_int(sec, "rescan_ms", 5000, 100, 3600000, &rescan) != CPX_OK) {
        cpx_log_error(MOD, "msg=\"file connector needs file.dir and file.mapping\"");
        f_close(fc);
        return CPX_ERR_CONFIG;
    }
    fc->rescan_ms = rescan;
    if (!(fc->map = cpx_mapping_load(mpath, err, sizeof err))) {
        cpx_log_error(MOD, "msg=\"bad mapping\" error=\"%s\"", err);
        f_close(fc);
        return CPX_ERR_CONFIG;
    }
    fc->jsonl = !strcmp(cpx_mapping_format(fc->map), "jsonl");
    fc->failpoint = getenv("CPX_FAILPOINT_FILE_PUBLISH");
    if (mkdir_parents(dir) != 0 ||
        mkdir_p(dir, "inbox", fc->inbox, sizeof fc->inbox) ||
        mkdir_p(dir, "done", fc->done, sizeof fc->done) ||
        mkdir_p(dir, "rejected", fc->rejected, sizeof fc->rejected) ||
        mkdir_p(dir, "outbox", fc->outbox, sizeof fc->outbox)) {
        f_close(fc);
        return CPX_ERR_IO;
    }
    fc->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fc->ino < 0 || inotify_add_watch(fc->ino, fc->inbox, IN_CLOSE_WRITE | IN_MOVED_TO) < 0)
        cpx_log_warn(MOD, "msg=\"inotify unavailable: polling the inbox\" every_ms=%lld", rescan);
    scan_inbox(fc);
    cpx_adapter_foreach_pending(a, count_pending, fc);
    cpx_log_info(MOD, "msg=\"file connector ready\" dir=\"%s\" mapping=\"%s\" format=%s encoding=%s files=%zu",
                 dir, mpath, cpx_mapping_format(fc->map), cpx_mapping_encoding(fc->map), fc->n_files);
    *state = fc;
    return CPX_OK;
}

static bool reading_possible(const fconn_t *fc)
{
    for (size_t i = 0; i < fc->n_files; i++)
        if (!fc->files[i]->eof)
            return true;
    return false;
}

static int f_fds(void *state, zmq_pollitem_t *items, int max, int *timeout_ms)
{
    fconn_t *fc = state;
    int n = 0;
    if (fc->ino >= 0 && max > 0) {
        items[n++] = (zmq_pollitem_t){.fd = fc->ino, .events = ZMQ_POLLIN};
    }
    if ((reading_possible(fc) && !cpx_adapter_backlogged(fc->a)) || fc->rescan)
        *timeout_ms = 0;
    return n;
}

static int f_poll(void *state, int64_t now_ms)
{
    fconn_t *fc = state;
    char evbuf[4096];
    if (fc->ino >= 0) {
        ssize_t got;
        while ((got = read(fc->ino, evbuf, sizeof evbuf)) > 0)
            fc->rescan = true;
    }
    forget_published(fc);
    if (fc->rescan || now_ms - fc->last_scan >= fc->rescan_ms) {
        fc->rescan = false;
        fc->last_scan = now_ms;
        scan_inbox(fc);
    }
    /* read: one file at a time, in name order */
    while (cpx_adapter_can_submit(fc->a)) {
        if (!fc->r.t) {
            tracked_t *next = NULL;
            for (size_t i = 0; i < fc->n_files && !next; i++)
                if (!fc->files[i]->eof)
                    next = fc->files[i];
            if (!next)
                break;
            if (reader_open(fc, next) != CPX_OK) {
                cpx_log_error(MOD, "msg=\"cannot open file\" file=\"%s\"", next->name);
                reader_close(&fc->r);
                next->eof = true;
                next->dirty = true;
                break;
            }
            cpx_log_info(MOD, "msg=\"reading file\" file=\"%s\" from_line=%llu", next->name,
                         (unsigned long long)next->line);
            reader_start(fc);
        }
        read_some(fc);
        if (fc->r.t->eof)
            reader_close(&fc->r);
        else
            break;
    }
    for (size_t i = 0; i < fc->n_files; i++) {
        tracked_t *t = fc->files[i];
        if (t->eof && t->pending == 0 && !t->finishing && t != fc->r.t)
            finish_file(fc, t);
        else if (t->dirty && !t->finishing)
            save_state(fc, t);
    }
    return CPX_OK;
}

static void f_result(void *state, const char *origin, const uint8_t id[CPX_ADAPTER_ID_LEN], bool ok,
                     const char *reason)
{
    fconn_t *fc = state;
    tracked_t *t = file_of_origin(fc, origin);
    if (!t)
        return;
    if (t->pending)
        t->pending--;
    if (ok)
        t->acked++;
    else
        t->rejected++;
    t->dirty = true;
}

static void f_committed(void *state)
{
    fconn_t *fc = state;
    for (size_t i = 0; i < fc->n_files; i++) {
        tracked_t *t = fc->files[i];
        if (t->finishing && !t->published) {
            /* Failpoint for tests (test_adapter_file.py): die as kill -9 would, after
             * the commit that settled this file and before it is published. Unset in
             * every deployment. */
            if (fc->failpoint && !strcmp(fc->failpoint, t->name))
                raise(SIGKILL);
            publish_file(fc, t);
            t->published = true;
        }
    }
    qsort(fc->files, fc->n_files, sizeof *fc->files, name_cmp);
}

static int f_deliver(void *state, const cpx_adapter_delivery_t *d, char *reason, size_t rsize)
{
    fconn_t *fc = state;
    char idhex[2 * CPX_ADAPTER_ID_LEN + 1], name[64], path[8192];
    cpx_hex(d->envelope->message_id.data, CPX_ADAPTER_ID_LEN, idhex);
    snprintf(name, sizeof name, "%s.json", idhex);
    snprintf(path, sizeof path, "%s/%s", fc->outbox, name);
    if (access(path, F_OK) == 0)
        return CPX_OK; /* written before a crash: the local system has it once */
    char *json = cpx_adapter_delivery_json(d->delivery_id, d->envelope, d->withheld, d->n_withheld);
    if (!json)
        return CPX_ERR_NOMEM;
    size_t len = strlen(json);
    json[len] = '\0';
    char *line = malloc(len + 2);
    int rc = CPX_ERR_NOMEM;
    if (line) {
        memcpy(line, json, len);
        line[len] = '\n';
        rc = write_atomic(fc->outbox, name, line, len + 1);
        free(line);
    }
    free(json);
    if (rc != CPX_OK)
        snprintf(reason, rsize, "cannot write outbox file");
    return rc;
}

const cpx_connector_t cpx_connector_file = {
    .name = "file",
    .config_keys = file_keys,
    .open = f_open,
    .fds = f_fds,
    .poll = f_poll,
    .result = f_result,
    .deliver = f_deliver,
    .committed = f_committed,
    .close = f_close,
};
