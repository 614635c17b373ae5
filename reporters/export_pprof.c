/* export_pprof.c: the capture as a gzipped profile.proto (the format of
 * github.com/google/pprof, which `go tool pprof`, Pyroscope and speedscope
 * read).
 *
 * Sample types follow Go's heap profiles, so tools that know those (pprof's
 * -sample_index, Pyroscope's memory views) work unchanged:
 *   alloc_objects/count  allocations made over the whole run
 *   alloc_space/bytes    bytes allocated over the whole run
 *   inuse_objects/count  allocations live in the view: at the high-water
 *                        mark, or with --leaks when tracing ended
 *   inuse_space/bytes    bytes live in the view (default_sample_type)
 * Unlike Go's, nothing is sampled: every allocation is counted (period 1).
 * One Sample per distinct stack (trace-tree node) with any amount; one
 * Location per distinct run of frames that were inlined into one another,
 * its Lines innermost first as the format wants; one Function per (name,
 * file). A Mapping per shared object (the program first, which pprof
 * takes for the main binary), with its path, build id and address range,
 * marked as already symbolized; Python frames have none. Locations carry
 * no address: memtrace symbolizes offline, so pprof has nothing to look
 * up. Comments say which moment the inuse values describe.
 *
 * The protobuf is written by hand (varints and length-delimited fields are
 * all it takes) and streamed through zlib's deflate in gzip mode: samples
 * go out as they are made, and only the string, function and location
 * tables are held until the end (protobuf lets fields come in any order).
 * Strings are made valid UTF-8 (an invalid byte becomes U+FFFD), as
 * proto3's string type requires. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "export.h"
#include "json.h"
#include "memtrace/reporters.h"
#include "report_util.h"

/* Field numbers of profile.proto. */
enum {
    PB_PROFILE_SAMPLE_TYPE = 1, PB_PROFILE_SAMPLE = 2, PB_PROFILE_MAPPING = 3,
    PB_PROFILE_LOCATION = 4, PB_PROFILE_FUNCTION = 5,
    PB_PROFILE_STRING_TABLE = 6, PB_PROFILE_TIME_NANOS = 9,
    PB_PROFILE_DURATION_NANOS = 10, PB_PROFILE_PERIOD_TYPE = 11,
    PB_PROFILE_PERIOD = 12, PB_PROFILE_COMMENT = 13,
    PB_PROFILE_DEFAULT_SAMPLE_TYPE = 14,
    PB_VALUE_TYPE_TYPE = 1, PB_VALUE_TYPE_UNIT = 2,
    PB_SAMPLE_LOCATION_ID = 1, PB_SAMPLE_VALUE = 2,
    PB_MAPPING_ID = 1, PB_MAPPING_MEMORY_START = 2, PB_MAPPING_MEMORY_LIMIT = 3,
    PB_MAPPING_FILENAME = 5, PB_MAPPING_BUILD_ID = 6,
    PB_MAPPING_HAS_FUNCTIONS = 7, PB_MAPPING_HAS_FILENAMES = 8,
    PB_MAPPING_HAS_LINE_NUMBERS = 9, PB_MAPPING_HAS_INLINE_FRAMES = 10,
    PB_LOCATION_ID = 1, PB_LOCATION_MAPPING_ID = 2, PB_LOCATION_LINE = 4,
    PB_LINE_FUNCTION_ID = 1, PB_LINE_LINE = 2,
    PB_FUNCTION_ID = 1, PB_FUNCTION_NAME = 2, PB_FUNCTION_SYSTEM_NAME = 3,
    PB_FUNCTION_FILENAME = 4,
};
enum { PB_VARINT = 0, PB_LEN = 2 };

#define PB_NVALUES 4

/* ---- Protobuf encoding into a growing buffer ----------------------------- */

typedef struct pb_buf_s {
    uint8_t *p;
    size_t len, cap;
    int oom;
} pb_buf_t;

static void pb_put(pb_buf_t *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void pb_varint(pb_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_put(b, tmp, n);
}

static void pb_key(pb_buf_t *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

/* A varint field; proto3 leaves out zeros (the default). int64 fields
 * holding non-negative values encode the same way. */
static void pb_uint(pb_buf_t *b, unsigned field, uint64_t v)
{
    if (!v)
        return;
    pb_key(b, field, PB_VARINT);
    pb_varint(b, v);
}

/* A length-delimited field: a string, a packed array or a message. */
static void pb_bytes(pb_buf_t *b, unsigned field, const void *data, size_t n)
{
    pb_key(b, field, PB_LEN);
    pb_varint(b, n);
    pb_put(b, data, n);
}

/* A packed repeated varint field (written even when all are zero, since
 * the position of each value matters). */
static void pb_packed(pb_buf_t *b, pb_buf_t *scratch, unsigned field,
                      const uint64_t *v, size_t n)
{
    scratch->len = 0;
    for (size_t i = 0; i < n; i++)
        pb_varint(scratch, v[i]);
    if (scratch->oom)
        b->oom = 1;
    pb_bytes(b, field, scratch->p, scratch->len);
}

/* ---- gzip output ------------------------------------------------------------ */

typedef struct pb_gzip_s {
    z_stream z;
    FILE *out;
    int rc;                 /* first error: MT_ENOMEM or MT_EIO */
    unsigned char buf[1 << 16];
} pb_gzip_t;

static int pb_gzip_init(pb_gzip_t *g, FILE *out)
{
    memset(&g->z, 0, sizeof g->z);
    g->out = out;
    g->rc = 0;
    /* 15 + 16: a gzip header and trailer around the deflate stream. */
    int zrc = deflateInit2(&g->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16,
                           8, Z_DEFAULT_STRATEGY);
    return zrc == Z_OK ? 0 : MT_ENOMEM;
}

static void pb_gzip_run(pb_gzip_t *g, const void *data, size_t n, int flush)
{
    if (g->rc)
        return;
    g->z.next_in = (Bytef *)(uintptr_t)data;
    g->z.avail_in = (uInt)n;
    int zrc;
    do {
        g->z.next_out = g->buf;
        g->z.avail_out = sizeof g->buf;
        zrc = deflate(&g->z, flush);
        if (zrc == Z_STREAM_ERROR) {
            g->rc = MT_ENOMEM;
            return;
        }
        size_t have = sizeof g->buf - g->z.avail_out;
        if (have && fwrite(g->buf, 1, have, g->out) != have) {
            g->rc = MT_EIO;
            return;
        }
    } while (g->z.avail_out == 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
}

/* Compresses b's bytes out and empties b (uInt-sized pieces). */
static void pb_gzip_buf(pb_gzip_t *g, pb_buf_t *b)
{
    if (b->oom && !g->rc)
        g->rc = MT_ENOMEM;
    for (size_t off = 0; off < b->len;) {
        size_t n = b->len - off > (1u << 30) ? (1u << 30) : b->len - off;
        pb_gzip_run(g, b->p + off, n, Z_NO_FLUSH);
        off += n;
    }
    b->len = 0;
}

static int pb_gzip_finish(pb_gzip_t *g)
{
    pb_gzip_run(g, NULL, 0, Z_FINISH);
    deflateEnd(&g->z);
    return g->rc;
}

/* ---- The profile -------------------------------------------------------------- */

typedef struct pp_export_s {
    mt_capture_t *cap;
    mt_sites_t *sites;
    mt_view_t view;
    mt_intern_t strings;   /* the string table; id 0 is "" */
    mt_intern_t functions; /* keys: 3 x uint32 (name, system name, file) */
    mt_intern_t locations; /* keys: mapping id, then (function id, line)
                              pairs, all uint32 */
    mt_intern_t mappings;  /* keys: module paths; id + 1 is the mapping */
    mt_frame_t *stack;     /* MT_EXPORT_MAX_STACK frames */
    uint64_t ids[MT_EXPORT_MAX_STACK]; /* one sample's location ids */
    pb_buf_t msg, sub, scratch, text;
    int rc;                /* MT_ENOMEM once interning failed */
} pp_export_t;

/* The string table index of s, made valid UTF-8 first. */
static uint32_t pp_string(pp_export_t *x, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t len = strlen((const char *)p);
    x->text.len = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = mt__utf8_decode(p + i, len - i, &cp);
        if (n) {
            pb_put(&x->text, p + i, n);
            i += n;
        } else {
            pb_put(&x->text, "\xef\xbf\xbd", 3); /* U+FFFD per bad byte */
            i++;
        }
    }
    int64_t id = x->text.oom ? MT_ENOMEM
                             : mt__intern(&x->strings, x->text.p, x->text.len);
    if (id < 0) {
        x->rc = MT_ENOMEM;
        return 0;
    }
    return (uint32_t)id;
}

/* A Function id (from 1) for frame f. */
static uint32_t pp_function(pp_export_t *x, const mt_frame_t *f)
{
    uint32_t name = pp_string(x, f->function);
    uint32_t key[3] = {name, name, pp_string(x, f->file)};
    int64_t id = mt__intern(&x->functions, key, sizeof key);
    if (id < 0) {
        x->rc = MT_ENOMEM;
        return 0;
    }
    return (uint32_t)id + 1;
}

/* A Mapping id (from 1) for the shared object at path, 0 for none. */
static uint32_t pp_mapping(pp_export_t *x, const char *path)
{
    if (!path || !path[0])
        return 0;
    int64_t id = mt__intern(&x->mappings, path, strlen(path));
    if (id < 0) {
        x->rc = MT_ENOMEM;
        return 0;
    }
    return (uint32_t)id + 1;
}

/* A Location id (from 1) for the frames of one address: frames[0, n), the
 * first n - 1 inlined into the next. */
static uint64_t pp_location(pp_export_t *x, const mt_frame_t *frames, size_t n)
{
    uint32_t key[1 + 2 * 64];
    size_t k = 0;
    key[k++] = pp_mapping(x, frames[0].module);
    for (size_t i = 0; i < n && k + 2 <= sizeof key / sizeof key[0]; i++) {
        key[k++] = pp_function(x, &frames[i]);
        key[k++] = frames[i].line;
    }
    int64_t id = mt__intern(&x->locations, key, k * sizeof key[0]);
    if (id < 0) {
        x->rc = MT_ENOMEM;
        return 0;
    }
    return (uint64_t)id + 1;
}

static void pp_value_type(pp_export_t *x, unsigned field, const char *type,
                          const char *unit)
{
    x->sub.len = 0;
    pb_uint(&x->sub, PB_VALUE_TYPE_TYPE, pp_string(x, type));
    pb_uint(&x->sub, PB_VALUE_TYPE_UNIT, pp_string(x, unit));
    if (x->sub.oom)
        x->msg.oom = 1;
    pb_bytes(&x->msg, field, x->sub.p, x->sub.len);
}

/* The Sample of node into x->msg, or nothing when it has no amount. */
static void pp_sample(pp_export_t *x, uint32_t node)
{
    if (!mt_sites_node_kept(x->sites, node))
        return; /* left out by --include/--exclude */
    const mt_node_stats_t *st = &mt_capture_node_stats(x->cap)[node];
    mt_amount_t total = mt_view_amount(st, MT_VIEW_TOTAL);
    mt_amount_t live = mt_view_amount(st, x->view);
    uint64_t values[PB_NVALUES] = {total.count, total.bytes, live.count,
                                   live.bytes};
    if (!values[0] && !values[1] && !values[2] && !values[3])
        return;
    uint64_t *ids = x->ids;
    size_t depth = mt__export_stack(x->sites, node, x->stack), nids = 0;
    for (size_t i = 0; i < depth;) {
        size_t k = i;
        while (k + 1 < depth && x->stack[k].inlined && k - i < 63)
            k++;
        ids[nids++] = pp_location(x, &x->stack[i], k - i + 1);
        i = k + 1;
    }
    x->sub.len = 0;
    pb_packed(&x->sub, &x->scratch, PB_SAMPLE_LOCATION_ID, ids, nids);
    pb_packed(&x->sub, &x->scratch, PB_SAMPLE_VALUE, values, PB_NVALUES);
    if (x->sub.oom)
        x->msg.oom = 1;
    pb_bytes(&x->msg, PB_PROFILE_SAMPLE, x->sub.p, x->sub.len);
}

static void pp_locations(pp_export_t *x, pb_gzip_t *g)
{
    for (uint32_t id = 0; id < x->locations.count; id++) {
        size_t len;
        const char *raw = mt__intern_key(&x->locations, id, &len);
        uint32_t mapping;
        memcpy(&mapping, raw, sizeof mapping);
        x->sub.len = 0;
        pb_uint(&x->sub, PB_LOCATION_ID, (uint64_t)id + 1);
        pb_uint(&x->sub, PB_LOCATION_MAPPING_ID, mapping);
        for (size_t off = sizeof mapping; off + 8 <= len; off += 8) {
            uint32_t pair[2];
            memcpy(pair, raw + off, sizeof pair);
            x->scratch.len = 0;
            pb_uint(&x->scratch, PB_LINE_FUNCTION_ID, pair[0]);
            pb_uint(&x->scratch, PB_LINE_LINE, pair[1]);
            if (x->scratch.oom)
                x->sub.oom = 1;
            pb_bytes(&x->sub, PB_LOCATION_LINE, x->scratch.p, x->scratch.len);
        }
        if (x->sub.oom)
            x->msg.oom = 1;
        pb_bytes(&x->msg, PB_PROFILE_LOCATION, x->sub.p, x->sub.len);
        pb_gzip_buf(g, &x->msg);
    }
}

/* The Mappings, after the samples (which make them), before the string
 * table (they add the build ids to it). */
static void pp_mappings(pp_export_t *x, pb_gzip_t *g)
{
    const mt_module_t *mods = mt_capture_modules(x->cap);
    size_t nmods = mt_capture_module_count(x->cap);
    for (uint32_t id = 0; id < x->mappings.count; id++) {
        const char *path = mt__intern_key(&x->mappings, id, NULL);
        const mt_module_t *m = NULL;
        for (size_t i = 0; i < nmods && !m; i++)
            if (mods[i].path && strcmp(mods[i].path, path) == 0)
                m = &mods[i];
        char hex[2 * 64 + 1] = "";
        for (size_t i = 0; m && i < m->build_id_len && i < 64; i++)
            snprintf(hex + 2 * i, 3, "%02x", m->build_id[i]);
        x->sub.len = 0;
        pb_uint(&x->sub, PB_MAPPING_ID, (uint64_t)id + 1);
        pb_uint(&x->sub, PB_MAPPING_MEMORY_START, m ? m->lo : 0);
        pb_uint(&x->sub, PB_MAPPING_MEMORY_LIMIT, m ? m->hi : 0);
        pb_uint(&x->sub, PB_MAPPING_FILENAME, pp_string(x, path));
        pb_uint(&x->sub, PB_MAPPING_BUILD_ID, pp_string(x, hex));
        pb_uint(&x->sub, PB_MAPPING_HAS_FUNCTIONS, 1);
        pb_uint(&x->sub, PB_MAPPING_HAS_FILENAMES, 1);
        pb_uint(&x->sub, PB_MAPPING_HAS_LINE_NUMBERS, 1);
        pb_uint(&x->sub, PB_MAPPING_HAS_INLINE_FRAMES, 1);
        if (x->sub.oom)
            x->msg.oom = 1;
        pb_bytes(&x->msg, PB_PROFILE_MAPPING, x->sub.p, x->sub.len);
        pb_gzip_buf(g, &x->msg);
    }
}

static void pp_functions(pp_export_t *x, pb_gzip_t *g)
{
    for (uint32_t id = 0; id < x->functions.count; id++) {
        uint32_t key[3];
        memcpy(key, mt__intern_key(&x->functions, id, NULL), sizeof key);
        x->sub.len = 0;
        pb_uint(&x->sub, PB_FUNCTION_ID, (uint64_t)id + 1);
        pb_uint(&x->sub, PB_FUNCTION_NAME, key[0]);
        pb_uint(&x->sub, PB_FUNCTION_SYSTEM_NAME, key[1]);
        pb_uint(&x->sub, PB_FUNCTION_FILENAME, key[2]);
        if (x->sub.oom)
            x->msg.oom = 1;
        pb_bytes(&x->msg, PB_PROFILE_FUNCTION, x->sub.p, x->sub.len);
        pb_gzip_buf(g, &x->msg);
    }
}

/* The header fields: sample types, period, times and comments. Interns
 * every string they use, so the string table is written last. */
static void pp_header(pp_export_t *x)
{
    const mt_header_t *hdr = mt_capture_header(x->cap);
    const mt_totals_t *tot = mt_capture_totals(x->cap);
    pp_string(x, ""); /* index 0, as the format requires */
    pp_mapping(x, hdr->exe); /* mapping 1: pprof's main binary */
    pp_value_type(x, PB_PROFILE_SAMPLE_TYPE, "alloc_objects", "count");
    pp_value_type(x, PB_PROFILE_SAMPLE_TYPE, "alloc_space", "bytes");
    pp_value_type(x, PB_PROFILE_SAMPLE_TYPE, "inuse_objects", "count");
    pp_value_type(x, PB_PROFILE_SAMPLE_TYPE, "inuse_space", "bytes");
    pb_uint(&x->msg, PB_PROFILE_DEFAULT_SAMPLE_TYPE,
            pp_string(x, "inuse_space"));
    pp_value_type(x, PB_PROFILE_PERIOD_TYPE, "space", "bytes");
    pb_uint(&x->msg, PB_PROFILE_PERIOD, 1);
    pb_uint(&x->msg, PB_PROFILE_TIME_NANOS, hdr->start_realtime_ns);
    pb_uint(&x->msg, PB_PROFILE_DURATION_NANOS, tot->duration_ns);

    char cmd[512], line[640];
    uint64_t comments[4];
    snprintf(line, sizeof line, "memtrace %s export of %s", MT_VERSION_STRING,
             mt_capture_path(x->cap));
    comments[0] = pp_string(x, line);
    snprintf(line, sizeof line, "command: %s",
             mt__command_line(hdr, cmd, sizeof cmd));
    comments[1] = pp_string(x, line);
    comments[2] = pp_string(x, x->view == MT_VIEW_LEAKS
                                   ? "inuse_*: live when tracing ended"
                                   : "inuse_*: live at the high-water mark");
    comments[3] = pp_string(x, "alloc_*: allocated over the whole run; "
                               "every allocation counted, no sampling");
    pb_packed(&x->msg, &x->scratch, PB_PROFILE_COMMENT, comments, 4);
}

static void pp_free(pp_export_t *x)
{
    mt_sites_free(x->sites);
    mt__intern_free(&x->strings);
    mt__intern_free(&x->functions);
    mt__intern_free(&x->locations);
    mt__intern_free(&x->mappings);
    free(x->stack);
    free(x->msg.p);
    free(x->sub.p);
    free(x->scratch.p);
    free(x->text.p);
}

int mt_report_pprof(FILE *out, mt_capture_t *cap, mt_view_t view,
                    const mt_filter_t *filter)
{
    pp_export_t x;
    memset(&x, 0, sizeof x);
    x.cap = cap;
    x.view = view;
    mt__intern_init(&x.strings);
    mt__intern_init(&x.functions);
    mt__intern_init(&x.locations);
    mt__intern_init(&x.mappings);
    pb_gzip_t *g = malloc(sizeof *g);
    x.stack = malloc(MT_EXPORT_MAX_STACK * sizeof *x.stack);
    mt_sites_opts_t so = {MT_VIEW_TOTAL, filter, NULL, NULL};
    int rc = g && x.stack ? mt_sites_build_opts(cap, &so, &x.sites) : MT_ENOMEM;
    if (rc == 0 && pb_gzip_init(g, out) != 0)
        rc = MT_ENOMEM;
    if (rc) {
        pp_free(&x);
        free(g);
        return rc;
    }
    pp_header(&x);
    pb_gzip_buf(g, &x.msg);
    size_t nodes = mt_capture_node_count(cap);
    for (uint32_t node = 0; node < nodes && !x.rc && !g->rc; node++) {
        pp_sample(&x, node);
        if (x.msg.len >= (1u << 16))
            pb_gzip_buf(g, &x.msg);
    }
    pb_gzip_buf(g, &x.msg);
    pp_locations(&x, g);
    pp_functions(&x, g);
    pp_mappings(&x, g);
    for (uint32_t id = 0; id < x.strings.count; id++) {
        size_t len;
        const char *s = mt__intern_key(&x.strings, id, &len);
        pb_bytes(&x.msg, PB_PROFILE_STRING_TABLE, s, len);
        if (x.msg.len >= (1u << 16))
            pb_gzip_buf(g, &x.msg);
    }
    pb_gzip_buf(g, &x.msg);
    rc = pb_gzip_finish(g);
    if (!rc)
        rc = x.rc;
    free(g);
    pp_free(&x);
    return mt__report_done(out, rc);
}
