/* export_speedscope.c: the capture in speedscope's JSON file format
 * (https://www.speedscope.app/file-format-schema.json), which speedscope
 * opens by drag and drop or `speedscope FILE`.
 *
 * One file holds four "sampled" profiles over one shared frame list, the
 * same four amounts as the pprof export's sample types:
 *   0  live bytes in the view (the high-water mark, or the end with
 *      --leaks), unit "bytes"; the profile speedscope opens with
 *   1  live allocations in the view, unit "none"
 *   2  bytes allocated over the whole run, unit "bytes"
 *   3  allocations made over the whole run, unit "none"
 * A "sample" is one distinct stack (trace-tree node) and its weight the
 * amount allocated exactly there; stacks are listed root first, as the
 * format wants. A frame is one (function, file, line), named
 * "function (file.c:LINE)": the line of a caller is the line of its call,
 * as in the folded export, so a function that allocates from two lines
 * shows as two boxes side by side. Stacks with no amount in a profile are
 * left out of it. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "json.h"
#include "memtrace/reporters.h"
#include "report_util.h"

#define SPEEDSCOPE_SCHEMA "https://www.speedscope.app/file-format-schema.json"

typedef struct ss_profile_s {
    int whole_run; /* 1: MT_VIEW_TOTAL instead of the chosen view */
    int count;     /* 1: allocations instead of bytes */
} ss_profile_t;

static const ss_profile_t ss_profiles[] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};

typedef struct ss_export_s {
    mt_capture_t *cap;
    mt_sites_t *sites;
    mt_view_t view;
    mt_intern_t frames;   /* keys: function NUL file NUL line (4 bytes) */
    mt_frame_t *stack;    /* MT_EXPORT_MAX_STACK frames */
    mt_json_t json;
    int error;            /* MT_ENOMEM once interning failed */
} ss_export_t;

static uint64_t ss_weight(const ss_export_t *x, const ss_profile_t *p,
                          uint32_t node)
{
    if (!mt_sites_node_kept(x->sites, node))
        return 0; /* left out by --include/--exclude */
    mt_amount_t a = mt_view_amount(&mt_capture_node_stats(x->cap)[node],
                                   p->whole_run ? MT_VIEW_TOTAL : x->view);
    return p->count ? a.count : a.bytes;
}

/* The index of frame f in the shared frame list. */
static uint32_t ss_frame_id(ss_export_t *x, const mt_frame_t *f)
{
    const char *fn = f->function ? f->function : "";
    const char *file = f->file ? f->file : "";
    size_t fn_len = strlen(fn), file_len = strlen(file);
    char small[512];
    size_t len = fn_len + file_len + 2 + sizeof(uint32_t);
    char *key = len <= sizeof small ? small : malloc(len);
    if (!key) {
        x->error = MT_ENOMEM;
        return 0;
    }
    uint32_t line = f->line;
    memcpy(key, fn, fn_len + 1);
    memcpy(key + fn_len + 1, file, file_len + 1);
    memcpy(key + fn_len + file_len + 2, &line, sizeof line);
    int64_t id = mt__intern(&x->frames, key, len);
    if (key != small)
        free(key);
    if (id < 0) {
        x->error = MT_ENOMEM;
        return 0;
    }
    return (uint32_t)id;
}

static void ss_write_profile(ss_export_t *x, const ss_profile_t *p)
{
    mt_json_t *j = &x->json;
    size_t nodes = mt_capture_node_count(x->cap);
    uint64_t total = 0;
    for (uint32_t node = 0; node < nodes; node++)
        total += ss_weight(x, p, node);

    const char *when = x->view == MT_VIEW_LEAKS
                           ? "live when tracing ended"
                           : "live at the high-water mark";
    char name[96];
    snprintf(name, sizeof name, "%s (%s)",
             p->whole_run ? "allocated over the run" : when,
             p->count ? "allocations" : "bytes");
    mt__json_begin_object(j);
    mt__json_key(j, "type");
    mt__json_string(j, "sampled");
    mt__json_key(j, "name");
    mt__json_string(j, name);
    mt__json_key(j, "unit");
    mt__json_string(j, p->count ? "none" : "bytes");
    mt__json_key(j, "startValue");
    mt__json_uint(j, 0);
    mt__json_key(j, "endValue");
    mt__json_uint(j, total);
    mt__json_key(j, "samples");
    mt__json_begin_array(j);
    for (uint32_t node = 0; node < nodes && !x->error; node++) {
        if (!ss_weight(x, p, node))
            continue;
        size_t depth = mt__export_stack(x->sites, node, x->stack);
        mt__json_begin_array_compact(j);
        for (size_t i = depth; i-- > 0;) /* root first */
            mt__json_uint(j, ss_frame_id(x, &x->stack[i]));
        mt__json_end_array(j);
    }
    mt__json_end_array(j);
    mt__json_key(j, "weights");
    mt__json_begin_array_compact(j);
    for (uint32_t node = 0; node < nodes; node++) {
        uint64_t w = ss_weight(x, p, node);
        if (w)
            mt__json_uint(j, w);
    }
    mt__json_end_array(j);
    mt__json_end_object(j);
}

/* A frame's name: "function (file.c:12)" with the file's base name when
 * the line is known (as py-spy names its frames), so that the lines of one
 * function tell apart in speedscope's lists; else the function. */
static void ss_frame_name(mt_json_t *j, const char *fn, const char *file,
                          uint32_t line)
{
    if (!line || !file[0]) {
        mt__json_string(j, fn);
        return;
    }
    const char *base = strrchr(file, '/');
    base = base && base[1] ? base + 1 : file;
    size_t size = strlen(fn) + strlen(base) + 16;
    char small[256];
    char *name = size <= sizeof small ? small : malloc(size);
    if (!name) {
        mt__json_string(j, fn);
        return;
    }
    snprintf(name, size, "%s (%s:%" PRIu32 ")", fn, base, line);
    mt__json_string(j, name);
    if (name != small)
        free(name);
}

static void ss_write_frames(ss_export_t *x)
{
    mt_json_t *j = &x->json;
    mt__json_begin_array(j);
    for (uint32_t id = 0; id < x->frames.count; id++) {
        size_t len;
        const char *key = mt__intern_key(&x->frames, id, &len);
        const char *file = key + strlen(key) + 1;
        uint32_t line;
        memcpy(&line, key + len - sizeof line, sizeof line);
        mt__json_begin_object_compact(j);
        mt__json_key(j, "name");
        ss_frame_name(j, key, file, line);
        if (file[0]) {
            mt__json_key(j, "file");
            mt__json_string(j, file);
        }
        if (line) {
            mt__json_key(j, "line");
            mt__json_uint(j, line);
        }
        mt__json_end_object(j);
    }
    mt__json_end_array(j);
}

int mt_report_speedscope(FILE *out, mt_capture_t *cap, mt_view_t view,
                         const mt_filter_t *filter)
{
    ss_export_t x;
    memset(&x, 0, sizeof x);
    x.cap = cap;
    x.view = view;
    mt__intern_init(&x.frames);
    x.stack = malloc(MT_EXPORT_MAX_STACK * sizeof *x.stack);
    mt_sites_opts_t so = {MT_VIEW_TOTAL, filter, NULL, NULL};
    int rc = x.stack ? mt_sites_build_opts(cap, &so, &x.sites) : MT_ENOMEM;
    if (rc) {
        free(x.stack);
        return rc;
    }
    const mt_header_t *hdr = mt_capture_header(cap);
    char cmd[512];
    mt_json_t *j = &x.json;
    mt__json_init(j, out, 1);
    mt__json_begin_object(j);
    mt__json_key(j, "$schema");
    mt__json_string(j, SPEEDSCOPE_SCHEMA);
    mt__json_key(j, "exporter");
    mt__json_string(j, "memtrace " MT_VERSION_STRING);
    mt__json_key(j, "name");
    mt__json_string(j, mt__command_line(hdr, cmd, sizeof cmd));
    mt__json_key(j, "activeProfileIndex");
    mt__json_uint(j, 0);
    /* The profiles first: the frame list is complete only after them. */
    mt__json_key(j, "profiles");
    mt__json_begin_array(j);
    for (size_t i = 0; i < sizeof ss_profiles / sizeof ss_profiles[0]; i++)
        ss_write_profile(&x, &ss_profiles[i]);
    mt__json_end_array(j);
    mt__json_key(j, "shared");
    mt__json_begin_object(j);
    mt__json_key(j, "frames");
    ss_write_frames(&x);
    mt__json_end_object(j);
    mt__json_end_object(j);
    rc = x.error;
    if (mt__json_finish(j) != 0 && !rc)
        rc = MT_EIO;
    mt_sites_free(x.sites);
    mt__intern_free(&x.frames);
    free(x.stack);
    return mt__report_done(out, rc);
}
