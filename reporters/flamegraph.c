/* flamegraph.c: `memtrace flamegraph`, one self-contained HTML page with the
 * heap and RSS over time and a flame graph of the trace tree in one view
 * (the high-water mark, the leaks or the temporary allocations).
 *
 * The trace tree has one node per return address; the flame graph has one
 * node per frame path: every trace node is symbolized (inlined frames
 * expanded into frames of their own), and nodes whose paths from the root
 * read the same (function, file, line) frames are merged. The allocator's
 * own frames at the leaf end of a stack are dropped, so memory lands on the
 * code that asked for it; memtrace's own frames are never shown (frames
 * come through reporters/stacks.h), and a filter (mt_filter_t) keeps the
 * allocations it selects. Import-time frames are flagged here; the page
 * hides them, and native frames, on request.
 *
 * Data embedded in the page (JSON, inside <script type="application/json">,
 * written in the JSON writer's HTML-safe mode so no name can close the
 * script element; the page builds its DOM with textContent only):
 *   {"version": 1, "capture": str, "command": str, "view": str,
 *    "pid": int, "peak_bytes": int, "peak_time_ns": int,
 *    "current_bytes": int, "duration_ns": int, "peak_rss_bytes": int,
 *    "total_allocations": int, "python": bool, "native": bool,
 *    "hide_imports": bool, "hide_native": bool, "warning": str|null,
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "threshold": float, "merged": int,
 *    "processes": int, (captures combined; 1 for one)
 *    "window": [from_ns, to_ns, start_bytes, exact] | null, (--from/--to)
 *    "samples": [[time_ns, heap_bytes, rss_bytes], ...],
 *    "strings": [str, ...],
 *    "nodes": [[parent, function, file, line, bytes, count, flags], ...]}
 * nodes[0] is the root; parents come before their children, children in
 * decreasing bytes; function and file index strings (strings[0] is "");
 * bytes and count are inclusive (the node and everything it called);
 * flags are FG_* below.
 * Children holding less than `threshold` of the total are summed into one
 * "other" node per parent (flag FG_OTHER; its line is the number of frames
 * it sums, and "merged" counts them all). The root's parent is -1. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/format.h"
#include "flamegraph_assets.h"
#include "json.h"
#include "report_util.h"
#include "stacks.h"

/* Node flags, as the page reads them. */
#define FG_PYTHON 1u  /* a Python frame */
#define FG_INLINED 2u /* inlined into its caller */
#define FG_IMPORT 4u  /* import machinery, or a module body run by import */
#define FG_OTHER 8u   /* the sum of small children */

#define FG_FRAMES 64          /* inline depth looked at per trace node */
#define FG_MAX_SAMPLES 2000   /* points of the timeline */
#define FG_DEFAULT_THRESHOLD 0.001
#define FG_DEFAULT_MAX_BYTES (10u * 1000u * 1000u)
#define FG_NONE UINT32_MAX

typedef struct fg_node_s {
    uint32_t parent;
    uint32_t function, file; /* string ids */
    uint32_t line;
    uint32_t flags;
    uint32_t in_module;      /* a Python "<module>" frame is on the path */
    uint32_t first_child, next_sibling;
    mt_amount_t amount;      /* inclusive */
} fg_node_t;

typedef struct fg_s {
    mt_capture_t *cap;
    fg_node_t *nodes;
    size_t count, capacity;
    uint32_t *table;         /* (parent, frame) -> node index + 1 */
    size_t table_size;
    const char **strings;    /* borrowed from the capture */
    uint64_t *string_hashes;
    size_t nstrings, strings_cap;
    uint32_t *string_table;  /* content -> string id + 1 */
    size_t string_table_size;
    uint32_t *scratch;       /* children being sorted */
    size_t scratch_cap;
    mt_frame_t frames[FG_FRAMES];
} fg_t;

/* ---- Strings ----------------------------------------------------------- */

static uint64_t fg_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int fg_strings_grow(fg_t *g)
{
    size_t size = g->string_table_size ? g->string_table_size * 2 : 1024;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t)
        return MT_ENOMEM;
    for (size_t i = 0; i < g->nstrings; i++) {
        size_t j = g->string_hashes[i] & (size - 1);
        while (t[j])
            j = (j + 1) & (size - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(g->string_table);
    g->string_table = t;
    g->string_table_size = size;
    return 0;
}

/* The id of string s (borrowed: it must outlive g), or FG_NONE on out of
 * memory. Equal contents get one id, whoever owns the bytes. */
static uint32_t fg_string(fg_t *g, const char *s)
{
    if (!s)
        s = "";
    if ((g->nstrings + 1) * 2 > g->string_table_size && fg_strings_grow(g))
        return FG_NONE;
    uint64_t h = fg_hash_str(s);
    size_t mask = g->string_table_size - 1, j = h & mask;
    while (g->string_table[j]) {
        uint32_t id = g->string_table[j] - 1;
        if (g->string_hashes[id] == h && strcmp(g->strings[id], s) == 0)
            return id;
        j = (j + 1) & mask;
    }
    if (g->nstrings == g->strings_cap) {
        size_t cap = g->strings_cap ? g->strings_cap * 2 : 256;
        const char **strs = realloc(g->strings, cap * sizeof *strs);
        if (!strs)
            return FG_NONE;
        g->strings = strs;
        uint64_t *hs = realloc(g->string_hashes, cap * sizeof *hs);
        if (!hs)
            return FG_NONE;
        g->string_hashes = hs;
        g->strings_cap = cap;
    }
    g->strings[g->nstrings] = s;
    g->string_hashes[g->nstrings] = h;
    g->string_table[j] = (uint32_t)g->nstrings + 1;
    return (uint32_t)g->nstrings++;
}

/* ---- The frame-path tree ----------------------------------------------- */

static uint64_t fg_key_hash(uint32_t parent, uint32_t function, uint32_t file,
                            uint32_t line, uint32_t flags)
{
    uint64_t h = parent * 0x9e3779b97f4a7c15ull;
    h ^= (function + ((uint64_t)file << 32)) * 0xc2b2ae3d27d4eb4full;
    h ^= (line + ((uint64_t)flags << 32)) * 0x165667b19e3779f9ull;
    return h ^ (h >> 31);
}

static int fg_table_grow(fg_t *g)
{
    size_t size = g->table_size ? g->table_size * 2 : 4096;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t)
        return MT_ENOMEM;
    for (size_t i = 1; i < g->count; i++) {
        const fg_node_t *n = &g->nodes[i];
        size_t j = fg_key_hash(n->parent, n->function, n->file, n->line,
                               n->flags & FG_PYTHON) & (size - 1);
        while (t[j])
            j = (j + 1) & (size - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(g->table);
    g->table = t;
    g->table_size = size;
    return 0;
}

static int fg_has(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

static int fg_has_suffix(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The child of parent for frame f, created when new; FG_NONE on out of
 * memory. */
static uint32_t fg_child(fg_t *g, uint32_t parent, const mt_frame_t *f)
{
    uint32_t function = fg_string(g, f->function);
    uint32_t file = fg_string(g, f->file);
    if (function == FG_NONE || file == FG_NONE)
        return FG_NONE;
    uint32_t python = mt_frame_is_python(f) ? FG_PYTHON : 0;
    if ((g->count + 1) * 2 > g->table_size && fg_table_grow(g))
        return FG_NONE;
    size_t mask = g->table_size - 1;
    size_t j = fg_key_hash(parent, function, file, f->line, python) & mask;
    while (g->table[j]) {
        const fg_node_t *n = &g->nodes[g->table[j] - 1];
        if (n->parent == parent && n->function == function &&
            n->file == file && n->line == f->line &&
            (n->flags & FG_PYTHON) == python)
            return g->table[j] - 1;
        j = (j + 1) & mask;
    }
    if (g->count >= FG_NONE - 1)
        return FG_NONE;
    if (g->count == g->capacity) {
        size_t cap = g->capacity * 2;
        fg_node_t *nodes = realloc(g->nodes, cap * sizeof *nodes);
        if (!nodes)
            return FG_NONE;
        g->nodes = nodes;
        g->capacity = cap;
    }
    fg_node_t *n = &g->nodes[g->count];
    memset(n, 0, sizeof *n);
    n->parent = parent;
    n->function = function;
    n->file = file;
    n->line = f->line;
    n->flags = python | (f->inlined ? FG_INLINED : 0);
    /* Import time, as memray's "hide import system frames" sees it: the
     * import machinery itself, and the body of any module run below the
     * first module body (the script's own; memtrace's launcher, which
     * native stacks show above the script, does not count). */
    int module_body = python && f->function &&
                      !strcmp(f->function, "<module>") &&
                      !fg_has_suffix(f->file, "/memtrace/_launch.py");
    if (python && (fg_has(f->file, "importlib._bootstrap") ||
                   fg_has(f->file, "importlib/_bootstrap")))
        n->flags |= FG_IMPORT;
    if (module_body && g->nodes[parent].in_module)
        n->flags |= FG_IMPORT;
    n->in_module = g->nodes[parent].in_module || module_body;
    g->table[j] = (uint32_t)g->count + 1;
    return (uint32_t)g->count++;
}

/* Maps every trace node that holds an amount of view, and its ancestors,
 * to frame-path nodes, and adds the amounts (self, for now) of the
 * allocations sites keeps (sites NULL: all). Frames come through stacks
 * (memtrace's own left out). */
static int fg_build(fg_t *g, mt_view_t view, mt__stacks_t *stacks,
                    mt_sites_t *sites)
{
    mt_capture_t *cap = g->cap;
    size_t n = mt_capture_node_count(cap);
    const mt_node_t *tnodes = mt_capture_nodes(cap);
    const mt_node_stats_t *stats = mt_capture_node_stats(cap);
    if (n == 0)
        return 0;
    /* path[t]: the frame node of trace node t's full path; attr[t]: where
     * allocations made at t land (its innermost frame outside the
     * allocator, else its parent's); FG_NONE: not needed. */
    uint32_t *path = malloc(n * sizeof *path);
    uint32_t *attr = malloc(n * sizeof *attr);
    if (!path || !attr) {
        free(path);
        free(attr);
        return MT_ENOMEM;
    }
    memset(path, 0xff, n * sizeof *path);
    for (size_t t = n; t-- > 1;) {
        mt_amount_t a = mt_view_amount(&stats[t], view);
        if (path[t] == FG_NONE && !a.bytes && !a.count)
            continue;
        path[t] = 0;
        uint32_t p = tnodes[t].parent < t ? tnodes[t].parent : 0;
        path[p] = 0; /* needed; computed below */
    }
    path[0] = attr[0] = 0;
    int rc = 0;
    for (size_t t = 1; t < n && rc == 0; t++) {
        if (path[t] == FG_NONE)
            continue;
        uint32_t p = tnodes[t].parent < t ? tnodes[t].parent : 0;
        int cut = 0;
        size_t k = mt__stacks_frames(stacks, (uint32_t)t, g->frames,
                                     FG_FRAMES, &cut);
        if (stacks->oom) {
            rc = MT_ENOMEM;
            break;
        }
        /* cut: the program's stack starts here (memtrace's launcher
         * above), so the path starts again from the root. */
        uint32_t f = cut ? 0 : path[p], at = FG_NONE;
        for (size_t i = k; i-- > 0;) {
            f = fg_child(g, f, &g->frames[i]);
            if (f == FG_NONE) {
                rc = MT_ENOMEM;
                break;
            }
            if (!mt_frame_is_allocator(&g->frames[i]))
                at = f; /* ends as the innermost such frame */
        }
        if (rc)
            break;
        path[t] = f;
        attr[t] = at != FG_NONE ? at : cut ? 0 : attr[p];
        if (sites && !mt_sites_node_kept(sites, (uint32_t)t))
            continue;
        mt_amount_t a = mt_view_amount(&stats[t], view);
        g->nodes[attr[t]].amount.bytes += a.bytes;
        g->nodes[attr[t]].amount.count += a.count;
    }
    /* Node 0's own amount (allocations with an empty stack) is the root's. */
    mt_amount_t a0 = mt_view_amount(&stats[0], view);
    if (!sites || mt_sites_node_kept(sites, 0)) {
        g->nodes[0].amount.bytes += a0.bytes;
        g->nodes[0].amount.count += a0.count;
    }
    free(path);
    free(attr);
    return rc;
}

/* Makes the amounts inclusive and links children to their parents (a
 * child's index is always larger than its parent's). */
static void fg_finish_tree(fg_t *g)
{
    for (size_t i = 0; i < g->count; i++)
        g->nodes[i].first_child = g->nodes[i].next_sibling = FG_NONE;
    for (size_t i = g->count; i-- > 1;) {
        fg_node_t *n = &g->nodes[i], *p = &g->nodes[n->parent];
        p->amount.bytes += n->amount.bytes;
        p->amount.count += n->amount.count;
        n->next_sibling = p->first_child;
        p->first_child = (uint32_t)i;
    }
}

/* ---- Choosing what the page gets --------------------------------------- */

/* One node of the output: a frame node, or (src == FG_NONE) the "other"
 * node summing the small children of parent. */
typedef struct fg_out_s {
    uint32_t parent; /* index in the output */
    uint32_t src;
    uint32_t merged; /* "other": how many frames it sums */
    mt_amount_t amount;
} fg_out_t;

typedef struct fg_plan_s {
    fg_out_t *out;
    size_t count;
    uint64_t merged;  /* frames summed into "other" nodes */
} fg_plan_t;

static int fg_cmp_children(const void *pa, const void *pb, void *arg)
{
    const fg_t *g = arg;
    const fg_node_t *a = &g->nodes[*(const uint32_t *)pa];
    const fg_node_t *b = &g->nodes[*(const uint32_t *)pb];
    if (a->amount.bytes != b->amount.bytes)
        return a->amount.bytes > b->amount.bytes ? -1 : 1;
    if (a->amount.count != b->amount.count)
        return a->amount.count > b->amount.count ? -1 : 1;
    int c = strcmp(g->strings[a->function], g->strings[b->function]);
    if (!c)
        c = strcmp(g->strings[a->file], g->strings[b->file]);
    if (!c)
        c = a->line < b->line ? -1 : a->line > b->line ? 1 : 0;
    return c ? c : (int)(a->flags & FG_PYTHON) - (int)(b->flags & FG_PYTHON);
}

static int fg_plan_push(fg_plan_t *p, size_t *cap, fg_out_t o)
{
    if (p->count == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        fg_out_t *out = realloc(p->out, c * sizeof *out);
        if (!out)
            return MT_ENOMEM;
        p->out = out;
        *cap = c;
    }
    p->out[p->count++] = o;
    return 0;
}

/* Sorts the children of node into g->scratch; returns how many. */
static int fg_sorted_children(fg_t *g, uint32_t node, size_t *n)
{
    *n = 0;
    for (uint32_t c = g->nodes[node].first_child; c != FG_NONE;
         c = g->nodes[c].next_sibling) {
        if (!g->nodes[c].amount.bytes && !g->nodes[c].amount.count)
            continue;
        if (*n == g->scratch_cap) {
            size_t cap = g->scratch_cap ? g->scratch_cap * 2 : 256;
            uint32_t *s = realloc(g->scratch, cap * sizeof *s);
            if (!s)
                return MT_ENOMEM;
            g->scratch = s;
            g->scratch_cap = cap;
        }
        g->scratch[(*n)++] = c;
    }
    if (*n > 1)
        qsort_r(g->scratch, *n, sizeof *g->scratch, fg_cmp_children, g);
    return 0;
}

/* Breadth first from the root, so parents precede children and siblings
 * sit together, largest first, then their "other". Children below
 * min_bytes are summed into "other" and their subtrees left out. */
static int fg_plan(fg_t *g, uint64_t min_bytes, fg_plan_t *p)
{
    size_t cap = 0;
    memset(p, 0, sizeof *p);
    fg_out_t root = {FG_NONE, 0, 0, g->nodes[0].amount};
    int rc = fg_plan_push(p, &cap, root);
    for (size_t i = 0; rc == 0 && i < p->count; i++) {
        if (p->out[i].src == FG_NONE)
            continue;
        size_t n;
        if ((rc = fg_sorted_children(g, p->out[i].src, &n)) != 0)
            break;
        fg_out_t other = {(uint32_t)i, FG_NONE, 0, {0, 0}};
        for (size_t k = 0; rc == 0 && k < n; k++) {
            const fg_node_t *c = &g->nodes[g->scratch[k]];
            if (c->amount.bytes < min_bytes) {
                other.merged++;
                other.amount.bytes += c->amount.bytes;
                other.amount.count += c->amount.count;
                continue;
            }
            fg_out_t o = {(uint32_t)i, g->scratch[k], 0, c->amount};
            rc = fg_plan_push(p, &cap, o);
        }
        if (rc == 0 && other.merged) {
            p->merged += other.merged;
            rc = fg_plan_push(p, &cap, other);
        }
    }
    if (rc) {
        free(p->out);
        p->out = NULL;
    }
    return rc;
}

/* ---- Writing ----------------------------------------------------------- */

/* The timeline, at most FG_MAX_SAMPLES points: each point stands for a run
 * of samples and keeps the largest heap and RSS among them, so that no
 * spike disappears. */
static void fg_write_samples(mt_json_t *j, mt_capture_t *cap)
{
    size_t n = mt_capture_sample_count(cap);
    const mt_sample_t *s = mt_capture_samples(cap);
    size_t points = n < FG_MAX_SAMPLES ? n : FG_MAX_SAMPLES;
    mt__json_begin_array(j);
    for (size_t b = 0; b < points; b++) {
        size_t lo = b * n / points, hi = (b + 1) * n / points;
        size_t best = lo;
        uint64_t rss = 0;
        for (size_t i = lo; i < hi; i++) {
            if (s[i].heap_bytes > s[best].heap_bytes)
                best = i;
            if (s[i].rss_bytes > rss)
                rss = s[i].rss_bytes;
        }
        mt__json_begin_array(j);
        mt__json_uint(j, s[best].time_ns);
        mt__json_uint(j, s[best].heap_bytes);
        mt__json_uint(j, rss);
        mt__json_end_array(j);
    }
    mt__json_end_array(j);
}

/* The strings the planned nodes use, "" first and then in order of first
 * use; fills map (string id -> output id). Returns the number of output
 * strings. */
static uint32_t fg_map_strings(const fg_t *g, const fg_plan_t *p,
                               uint32_t *map, uint32_t *order)
{
    uint32_t n = 0;
    for (size_t i = 0; i < g->nstrings; i++)
        map[i] = FG_NONE;
    /* Output string 0 is "" (the root's file), the file of "other". */
    map[g->nodes[0].file] = n;
    order[n++] = g->nodes[0].file;
    for (size_t i = 0; i < p->count; i++) {
        if (p->out[i].src == FG_NONE)
            continue;
        const fg_node_t *f = &g->nodes[p->out[i].src];
        uint32_t ids[2] = {f->function, f->file};
        for (int k = 0; k < 2; k++)
            if (map[ids[k]] == FG_NONE) {
                map[ids[k]] = n;
                order[n++] = ids[k];
            }
    }
    return n;
}

static void fg_write_nodes(mt_json_t *j, const fg_t *g, const fg_plan_t *p,
                           const uint32_t *map, uint32_t other_id)
{
    mt__json_begin_array(j);
    for (size_t i = 0; i < p->count; i++) {
        const fg_out_t *o = &p->out[i];
        const fg_node_t *f = o->src != FG_NONE ? &g->nodes[o->src] : NULL;
        mt__json_begin_array(j);
        mt__json_int(j, o->parent == FG_NONE ? -1 : (int64_t)o->parent);
        mt__json_uint(j, f ? map[f->function] : other_id);
        mt__json_uint(j, f ? map[f->file] : 0);
        mt__json_uint(j, f ? f->line : o->merged);
        mt__json_uint(j, o->amount.bytes);
        mt__json_uint(j, o->amount.count);
        mt__json_uint(j, f ? f->flags & (FG_PYTHON | FG_INLINED | FG_IMPORT)
                           : FG_OTHER);
        mt__json_end_array(j);
    }
    mt__json_end_array(j);
}

static void fg_write_header_fields(mt_json_t *j, mt_capture_t *cap,
                                   const mt_flamegraph_opts_t *opts)
{
    const mt_header_t *h = mt_capture_header(cap);
    const mt_totals_t *t = mt_capture_totals(cap);
    char command[4096];
    mt__json_key(j, "version");
    mt__json_uint(j, 1);
    mt__json_key(j, "capture");
    mt__json_string(j, mt_capture_path(cap));
    mt__json_key(j, "command");
    mt__json_string(j, mt__command_line(h, command, sizeof command));
    mt__json_key(j, "pid");
    mt__json_int(j, h->pid);
    mt__json_key(j, "view");
    mt__json_string(j, mt__view_name(opts->view));
    mt__json_key(j, "peak_bytes");
    mt__json_uint(j, t->peak_bytes);
    mt__json_key(j, "peak_time_ns");
    mt__json_uint(j, t->peak_time_ns);
    mt__json_key(j, "current_bytes");
    mt__json_uint(j, t->current_bytes);
    mt__json_key(j, "duration_ns");
    mt__json_uint(j, t->duration_ns);
    mt__json_key(j, "peak_rss_bytes");
    mt__json_uint(j, t->peak_rss_bytes);
    mt__json_key(j, "total_allocations");
    mt__json_uint(j, t->total_allocations);
    mt__json_key(j, "python");
    mt__json_bool(j, (h->flags & MT_FLAG_PYTHON) != 0);
    mt__json_key(j, "native");
    mt__json_bool(j, (h->flags & MT_FLAG_NATIVE_STACKS) != 0);
    mt__json_key(j, "hide_imports");
    mt__json_bool(j, opts->hide_imports);
    mt__json_key(j, "hide_native");
    mt__json_bool(j, opts->hide_native);
    mt__json_key(j, "warning");
    mt__json_string(j, mt_capture_warning(cap));
    mt__json_key(j, "processes");
    mt__json_uint(j, mt_capture_process_count(cap));
    const mt_window_t *w = mt_capture_window(cap);
    mt__json_key(j, "window");
    if (w->active) {
        mt__json_begin_array_compact(j);
        mt__json_uint(j, w->from_ns);
        mt__json_uint(j, w->to_ns);
        mt__json_uint(j, w->start_bytes);
        mt__json_uint(j, (uint64_t)w->exact);
        mt__json_end_array(j);
    } else {
        mt__json_null(j);
    }
    mt__json_key(j, "filter");
    mt__json_filter(j, opts->filter);
}

/* The data object of the page (see the top of this file). */
static int fg_write_data(FILE *out, fg_t *g, const fg_plan_t *p,
                         mt_capture_t *cap, const mt_flamegraph_opts_t *opts,
                         double threshold)
{
    size_t ns = g->nstrings + 1;
    uint32_t *map = malloc(ns * sizeof *map);
    uint32_t *order = malloc(ns * sizeof *order);
    if (!map || !order) {
        free(map);
        free(order);
        return MT_ENOMEM;
    }
    uint32_t nout = fg_map_strings(g, p, map, order);
    mt_json_t j;
    mt__json_init(&j, out, 0);
    j.html_safe = 1; /* no "</script>" or "<!--" can come out of a name */
    mt__json_begin_object(&j);
    fg_write_header_fields(&j, cap, opts);
    mt__json_key(&j, "threshold");
    mt__json_double(&j, threshold);
    mt__json_key(&j, "merged");
    mt__json_uint(&j, p->merged);
    mt__json_key(&j, "samples");
    fg_write_samples(&j, cap);
    mt__json_key(&j, "strings");
    mt__json_begin_array(&j);
    for (uint32_t i = 0; i < nout; i++)
        mt__json_string(&j, g->strings[order[i]]);
    mt__json_string(&j, "other");
    mt__json_end_array(&j);
    mt__json_key(&j, "nodes");
    fg_write_nodes(&j, g, p, map, nout);
    mt__json_end_object(&j);
    int rc = mt__json_finish(&j) < 0 ? MT_EIO : 0;
    free(map);
    free(order);
    return rc;
}

/* Writes the page template with its three markers (in this order) replaced
 * by the CSS, the data and the JavaScript. */
static int fg_write_page(FILE *out, const char *data, size_t data_len)
{
    static const struct {
        const char *marker;
        const char *text;
    } parts[] = {
        {"/*@CSS@*/", mt__asset_flamegraph_css},
        {"/*@DATA@*/", NULL},
        {"/*@JS@*/", mt__asset_flamegraph_js},
    };
    const char *t = mt__asset_flamegraph_html;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const char *m = strstr(t, parts[i].marker);
        if (!m)
            return MT_EINVAL; /* a template without its markers */
        fwrite(t, 1, (size_t)(m - t), out);
        if (parts[i].text)
            fputs(parts[i].text, out);
        else
            fwrite(data, 1, data_len, out);
        t = m + strlen(parts[i].marker);
    }
    fputs(t, out);
    return ferror(out) ? MT_EIO : 0;
}

int mt_report_flamegraph(FILE *out, mt_capture_t *cap,
                         const mt_flamegraph_opts_t *opts)
{
    mt_flamegraph_opts_t o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (o.threshold <= 0 || o.threshold > 1)
        o.threshold = FG_DEFAULT_THRESHOLD;
    if (!o.max_bytes)
        o.max_bytes = FG_DEFAULT_MAX_BYTES;

    fg_t g;
    memset(&g, 0, sizeof g);
    g.cap = cap;
    g.capacity = 1024;
    g.nodes = calloc(g.capacity, sizeof *g.nodes);
    int rc = g.nodes ? 0 : MT_ENOMEM;
    if (rc == 0) {
        g.count = 1;
        g.nodes[0].function = fg_string(&g, "<root>");
        g.nodes[0].file = fg_string(&g, "");
        if (g.nodes[0].function == FG_NONE || g.nodes[0].file == FG_NONE)
            rc = MT_ENOMEM;
    }
    mt__stacks_t stacks;
    memset(&stacks, 0, sizeof stacks);
    mt_sites_t *sites = NULL;
    if (rc == 0)
        rc = mt__stacks_init(&stacks, cap, NULL, NULL, NULL);
    if (rc == 0 && mt_filter_active(o.filter)) {
        mt_sites_opts_t so = {o.view, o.filter, NULL, NULL};
        rc = mt_sites_build_opts(cap, &so, &sites);
    }
    if (rc == 0)
        rc = fg_build(&g, o.view, &stacks, sites);
    mt__stacks_release(&stacks);
    mt_sites_free(sites);
    if (rc == 0)
        fg_finish_tree(&g);

    /* Plan and write the data; while it does not fit the page's budget,
     * merge more (4x the threshold each round). */
    size_t page = strlen(mt__asset_flamegraph_html) +
                  strlen(mt__asset_flamegraph_css) +
                  strlen(mt__asset_flamegraph_js);
    char *data = NULL;
    size_t data_len = 0;
    double threshold = o.threshold;
    while (rc == 0) {
        uint64_t total = g.nodes[0].amount.bytes;
        uint64_t min_bytes = (uint64_t)((double)total * threshold);
        if ((double)min_bytes < (double)total * threshold)
            min_bytes++;
        fg_plan_t plan;
        rc = fg_plan(&g, min_bytes, &plan);
        if (rc)
            break;
        free(data);
        data = NULL;
        FILE *mem = open_memstream(&data, &data_len);
        if (!mem) {
            free(plan.out);
            rc = MT_ENOMEM;
            break;
        }
        rc = fg_write_data(mem, &g, &plan, cap, &o, threshold);
        if (fclose(mem) != 0 && rc == 0)
            rc = MT_ENOMEM;
        free(plan.out);
        if (rc || page + data_len <= o.max_bytes || threshold >= 0.25)
            break;
        threshold *= 4;
    }
    if (rc == 0)
        rc = fg_write_page(out, data, data_len);
    free(data);
    free(g.nodes);
    free(g.table);
    free(g.strings);
    free(g.string_hashes);
    free(g.string_table);
    free(g.scratch);
    return mt__report_done(out, rc);
}
