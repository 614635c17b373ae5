/* sites.c: groups the amounts of the trace tree by site, the frame a user
 * would point at as "where this memory was allocated". Every report that
 * lists locations (report, summary, stats, and later table, flamegraph
 * tooltips and diff) goes through here, so they all agree on what a site is.
 *
 * A node's site depends only on the node and its ancestors, so it is
 * memoized per node: a leaf whose innermost frames are all inside the
 * allocator takes its parent's site, and most leaves share their parents.
 * Nodes are only symbolized when some allocation needs them. */
#include <stdlib.h>
#include <string.h>

#include "common/format.h"
#include "memtrace/reporters.h"
#include "stacks.h"

#define SITE_UNSET UINT32_MAX        /* memo: not computed yet */
#define SITE_NONE (UINT32_MAX - 1)   /* memo: no Python frame up to root */
#define FRAMES_PER_NODE MT__STACK_FRAMES /* inlining depth per node */

struct mt_sites_s {
    mt_capture_t *cap;
    mt__stacks_t stacks;  /* frames as shown (memtrace's own left out) */
    const mt_filter_t *filter; /* NULL or a filter with globs */
    mt_amount_t filtered; /* what the filter left out */
    mt_view_t view;
    int python;           /* the capture has Python frames: prefer them */
    uint8_t *excluded;    /* [capacity] per site: 0 unknown, 1 kept, 2 out */

    mt_site_t *sites;     /* insertion order; site keys of every memo */
    size_t count, capacity;
    size_t *order;        /* [norder] indices into sites, in sort order */
    size_t norder;
    size_t *rank;         /* [count] position in order, or SIZE_MAX */

    uint32_t *native_memo; /* [nodes] innermost non-allocator frame's site */
    uint32_t *python_memo; /* [nodes] innermost Python frame's site; or NULL */
    size_t nnodes;
    uint32_t unknown;     /* the "<unknown>" site */

    uint32_t *site_table; /* open addressing: site index + 1, 0 = empty */
    size_t site_table_size;
    char **strings;       /* interned strings (open addressing), owned */
    size_t strings_size, strings_count;

    uint32_t *chain;      /* scratch: nodes waiting for their memo */
    size_t chain_cap;
    mt_frame_t frames[FRAMES_PER_NODE];
};

mt_amount_t mt_view_amount(const mt_node_stats_t *st, mt_view_t view)
{
    switch (view) {
    case MT_VIEW_PEAK:
        return st->peak;
    case MT_VIEW_LEAKS:
        return st->leaked;
    case MT_VIEW_TOTAL:
        return st->total;
    case MT_VIEW_TEMPORARY:
        return st->temporary;
    }
    mt_amount_t zero = {0, 0};
    return zero;
}

/* ---- Classifying frames ------------------------------------------------ */

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *basename_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Functions that belong to the allocator itself. The libc helpers that only
 * allocate and copy (strdup, asprintf, getline...) are here too, on
 * purpose: a site of "strdup in libc.so.6" tells a user nothing, while the
 * line that called strdup is what they would change. Python's allocator
 * entry points are here for native-only stacks of the interpreter, for the
 * same reason. */
static const char *const allocator_functions[] = {
    "malloc", "calloc", "realloc", "free", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "cfree",
    "mmap", "mmap64", "munmap", "mremap", "__mmap", "__mmap64", "__munmap",
    "__mremap",
    "strdup", "strndup", "__strdup", "__strndup", "wcsdup", "asprintf",
    "vasprintf", "__asprintf", "__vasprintf", "__vasprintf_internal",
    "__asprintf_chk", "__vasprintf_chk", "getline", "getdelim", "__getdelim",
    "_Znwm", "_Znam", "_Znwj", "_Znaj",
    "PyMem_RawMalloc", "PyMem_RawCalloc", "PyMem_RawRealloc", "PyMem_Malloc",
    "PyMem_Calloc", "PyMem_Realloc", "PyObject_Malloc", "PyObject_Calloc",
    "PyObject_Realloc",
};

int mt_frame_is_allocator(const mt_frame_t *frame)
{
    if (frame->module && frame->module[0] &&
        has_prefix(basename_of(frame->module), "libmemtrace_preload"))
        return 1;
    const char *f = frame->function;
    if (!f || !f[0])
        return 0;
    for (size_t i = 0; i < sizeof allocator_functions /
                               sizeof allocator_functions[0]; i++)
        if (strcmp(f, allocator_functions[i]) == 0)
            return 1;
    /* glibc's internal aliases: __libc_malloc, __GI___libc_malloc... */
    if (has_prefix(f, "__GI_"))
        f += 5;
    if (has_prefix(f, "__libc_")) {
        const char *rest = f + 7;
        for (size_t i = 0; i < 10; i++) /* the malloc family, first 10 */
            if (strcmp(rest, allocator_functions[i]) == 0)
                return 1;
    }
    /* C++: "operator new(unsigned long)", "operator new[](unsigned long,
     * std::align_val_t)", mangled _ZnwmSt11align_val_t, _ZnamRKSt9nothrow_t. */
    if (has_prefix(f, "operator new") || has_prefix(f, "_Znwm") ||
        has_prefix(f, "_Znam") || has_prefix(f, "_Znwj") ||
        has_prefix(f, "_Znaj"))
        return 1;
    /* CPython's allocator internals (debug hooks, pymalloc). */
    if (has_prefix(f, "_PyMem_") || has_prefix(f, "_PyObject_Malloc") ||
        has_prefix(f, "_PyObject_Calloc") ||
        has_prefix(f, "_PyObject_Realloc") || has_prefix(f, "pymalloc_"))
        return 1;
    return 0;
}

int mt_frame_is_python(const mt_frame_t *frame)
{
    if (frame->python)
        return 1;
    if (frame->module && frame->module[0])
        return 0;
    const char *file = frame->file;
    if (!file || !file[0])
        return 0;
    if (has_suffix(file, ".py") || has_suffix(file, ".pyw"))
        return 1;
    return file[0] == '<' && has_suffix(file, ">"); /* "<string>"... */
}

/* ---- Interning and the site table -------------------------------------- */

static uint64_t hash_bytes(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strings_grow(mt_sites_t *s)
{
    size_t size = s->strings_size ? s->strings_size * 2 : 256;
    char **table = calloc(size, sizeof *table);
    if (!table)
        return MT_ENOMEM;
    for (size_t i = 0; i < s->strings_size; i++) {
        char *str = s->strings[i];
        if (!str)
            continue;
        size_t j = hash_bytes(str) & (size - 1);
        while (table[j])
            j = (j + 1) & (size - 1);
        table[j] = str;
    }
    free(s->strings);
    s->strings = table;
    s->strings_size = size;
    return 0;
}

/* Returns the interned copy of str (NULL on out of memory). */
static const char *intern(mt_sites_t *s, const char *str)
{
    if (!str)
        str = "";
    if ((s->strings_count + 1) * 2 > s->strings_size && strings_grow(s))
        return NULL;
    size_t mask = s->strings_size - 1;
    size_t j = hash_bytes(str) & mask;
    while (s->strings[j]) {
        if (strcmp(s->strings[j], str) == 0)
            return s->strings[j];
        j = (j + 1) & mask;
    }
    char *copy = strdup(str);
    if (!copy)
        return NULL;
    s->strings[j] = copy;
    s->strings_count++;
    return copy;
}

static uint64_t site_hash(const char *function, const char *file,
                          unsigned line)
{
    uint64_t h = (uint64_t)(uintptr_t)function * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)(uintptr_t)file * 0xc2b2ae3d27d4eb4full;
    h ^= (uint64_t)line * 0x165667b19e3779f9ull;
    return h ^ (h >> 29);
}

static int site_table_grow(mt_sites_t *s)
{
    size_t size = s->site_table_size ? s->site_table_size * 2 : 256;
    uint32_t *table = calloc(size, sizeof *table);
    if (!table)
        return MT_ENOMEM;
    for (size_t i = 0; i < s->count; i++) {
        const mt_frame_t *f = &s->sites[i].frame;
        size_t j = site_hash(f->function, f->file, f->line) & (size - 1);
        while (table[j])
            j = (j + 1) & (size - 1);
        table[j] = (uint32_t)i + 1;
    }
    free(s->site_table);
    s->site_table = table;
    s->site_table_size = size;
    return 0;
}

/* Returns the index of the site of frame f, adding it when new, or
 * SITE_UNSET on out of memory. */
static uint32_t site_key(mt_sites_t *s, const mt_frame_t *f)
{
    const char *function = intern(s, f->function);
    const char *file = intern(s, f->file);
    if (!function || !file)
        return SITE_UNSET;
    if ((s->count + 1) * 2 > s->site_table_size && site_table_grow(s))
        return SITE_UNSET;
    size_t mask = s->site_table_size - 1;
    size_t j = site_hash(function, file, f->line) & mask;
    while (s->site_table[j]) {
        const mt_frame_t *g = &s->sites[s->site_table[j] - 1].frame;
        if (g->function == function && g->file == file && g->line == f->line)
            return s->site_table[j] - 1;
        j = (j + 1) & mask;
    }
    if (s->count >= SITE_NONE - 1)
        return SITE_UNSET;
    if (s->count == s->capacity) {
        size_t cap = s->capacity ? s->capacity * 2 : 64;
        mt_site_t *sites = realloc(s->sites, cap * sizeof *sites);
        if (!sites)
            return SITE_UNSET;
        s->sites = sites;
        uint8_t *excluded = realloc(s->excluded, cap);
        if (!excluded)
            return SITE_UNSET;
        s->excluded = excluded;
        s->capacity = cap;
    }
    const char *module = intern(s, f->module);
    if (!module)
        return SITE_UNSET;
    mt_site_t *site = &s->sites[s->count];
    memset(site, 0, sizeof *site);
    site->frame.function = function;
    site->frame.file = file;
    site->frame.line = f->line;
    site->frame.module = module;
    s->excluded[s->count] = 0;
    s->site_table[j] = (uint32_t)s->count + 1;
    return (uint32_t)s->count++;
}

/* ---- Resolving a node's site ------------------------------------------ */

/* The shown frames of node into s->frames; *cut: its callers are not
 * part of the stack (see mt__stacks_frames). */
static size_t node_frames(mt_sites_t *s, uint32_t node, int *cut)
{
    return mt__stacks_frames(&s->stacks, node, s->frames, FRAMES_PER_NODE,
                             cut);
}

static uint32_t node_parent(const mt_sites_t *s, uint32_t node)
{
    uint32_t parent = mt_capture_nodes(s->cap)[node].parent;
    return parent < node ? parent : 0; /* the reader promises parent < id */
}

/* Computes memo[node] for python = 0 (the innermost frame outside the
 * allocator) or 1 (the innermost Python frame, SITE_NONE when none): walks
 * up until a node answers or has a memo, then fills in the nodes passed. */
static uint32_t resolve(mt_sites_t *s, uint32_t node, int python)
{
    uint32_t *memo = python ? s->python_memo : s->native_memo;
    size_t depth = 0;
    uint32_t result = SITE_UNSET, fallback = SITE_UNSET;
    uint32_t n = node;
    int top = 0; /* the walk reached the top of the stack */
    for (;;) {
        if (memo[n] != SITE_UNSET) {
            result = memo[n];
            top = n == 0;
            break;
        }
        int cut = 0;
        size_t k = node_frames(s, n, &cut);
        for (size_t i = 0; i < k; i++) {
            int match = python ? mt_frame_is_python(&s->frames[i])
                               : !mt_frame_is_allocator(&s->frames[i]);
            if (match) {
                result = site_key(s, &s->frames[i]);
                if (result == SITE_UNSET)
                    return SITE_UNSET;
                break;
            }
        }
        if (result != SITE_UNSET) {
            memo[n] = result;
            break;
        }
        /* A stack made only of allocator frames (say, a call from inside
         * the tracer) falls back to its innermost frame. */
        if (!python && fallback == SITE_UNSET && k > 0) {
            fallback = site_key(s, &s->frames[0]);
            if (fallback == SITE_UNSET)
                return SITE_UNSET;
        }
        if (depth == s->chain_cap) {
            size_t cap = s->chain_cap ? s->chain_cap * 2 : 256;
            uint32_t *chain = realloc(s->chain, cap * sizeof *chain);
            if (!chain)
                return SITE_UNSET;
            s->chain = chain;
            s->chain_cap = cap;
        }
        s->chain[depth++] = n;
        if (cut) { /* the stack starts at n: as if its parent were root */
            result = python ? SITE_NONE : s->unknown;
            top = 1;
            break;
        }
        n = node_parent(s, n);
    }
    if (!python && result == s->unknown && top && fallback != SITE_UNSET)
        result = fallback;
    for (size_t i = 0; i < depth; i++)
        memo[s->chain[i]] = result;
    return result;
}

/* The site of node, or SITE_UNSET on out of memory. */
static uint32_t node_site(mt_sites_t *s, uint32_t node)
{
    if (s->python) {
        uint32_t py = s->python_memo[node];
        if (py == SITE_UNSET)
            py = resolve(s, node, 1);
        if (py == SITE_UNSET)
            return SITE_UNSET;
        if (py != SITE_NONE)
            return py;
    }
    uint32_t native = s->native_memo[node];
    return native != SITE_UNSET ? native : resolve(s, node, 0);
}

/* 1 when the filter keeps the allocations of node, whose site is k. */
static int node_kept(mt_sites_t *s, uint32_t node, uint32_t k)
{
    if (!s->filter)
        return 1;
    if (!mt__stacks_included(&s->stacks, node))
        return 0;
    if (!s->excluded[k])
        s->excluded[k] = mt__filter_any(s->filter, 1, &s->sites[k].frame)
                             ? 2 : 1;
    return s->excluded[k] == 1;
}

/* ---- Building, sorting, reading --------------------------------------- */

int mt_sites_build(mt_capture_t *cap, mt_view_t view, mt_sites_t **out)
{
    mt_sites_opts_t o = {view, NULL, NULL, NULL};
    return mt_sites_build_opts(cap, &o, out);
}

int mt_sites_build_with(mt_capture_t *cap, mt_view_t view, mt_frames_fn fn,
                        void *ctx, mt_sites_t **out)
{
    mt_sites_opts_t o = {view, NULL, fn, ctx};
    return mt_sites_build_opts(cap, &o, out);
}

static int sites_setup(mt_sites_t *s)
{
    size_t n = s->nnodes ? s->nnodes : 1;
    s->native_memo = malloc(n * sizeof *s->native_memo);
    if (!s->native_memo)
        return MT_ENOMEM;
    memset(s->native_memo, 0xff, n * sizeof *s->native_memo);
    if (s->python) {
        s->python_memo = malloc(n * sizeof *s->python_memo);
        if (!s->python_memo)
            return MT_ENOMEM;
        memset(s->python_memo, 0xff, n * sizeof *s->python_memo);
        s->python_memo[0] = SITE_NONE;
    }
    mt_frame_t unknown = {"<unknown>", "<unknown>", 0, "", 0, 0};
    s->unknown = site_key(s, &unknown);
    if (s->unknown == SITE_UNSET)
        return MT_ENOMEM;
    s->native_memo[0] = s->unknown;
    return 0;
}

/* Adds the amount of every node of the view to its site. */
static int sites_fill(mt_sites_t *s)
{
    const mt_node_stats_t *stats = mt_capture_node_stats(s->cap);
    for (size_t i = 0; i < s->nnodes; i++) {
        mt_amount_t a = mt_view_amount(&stats[i], s->view);
        if (!a.bytes && !a.count)
            continue;
        uint32_t k = node_site(s, (uint32_t)i);
        if (k == SITE_UNSET || s->stacks.oom)
            return MT_ENOMEM;
        if (!node_kept(s, (uint32_t)i, k)) {
            s->filtered.bytes += a.bytes;
            s->filtered.count += a.count;
            continue;
        }
        mt_site_t *site = &s->sites[k];
        site->amount.bytes += a.bytes;
        site->amount.count += a.count;
        if (a.bytes > site->heaviest.bytes ||
            (a.bytes == site->heaviest.bytes &&
             a.count > site->heaviest.count)) {
            site->heaviest = a;
            site->heaviest_node = (uint32_t)i;
        }
    }
    return s->stacks.oom ? MT_ENOMEM : 0;
}

int mt_sites_build_opts(mt_capture_t *cap, const mt_sites_opts_t *opts,
                        mt_sites_t **out)
{
    *out = NULL;
    mt_sites_t *s = calloc(1, sizeof *s);
    if (!s)
        return MT_ENOMEM;
    s->cap = cap;
    s->view = opts->view;
    s->filter = mt_filter_active(opts->filter) ? opts->filter : NULL;
    s->nnodes = mt_capture_node_count(cap);
    const mt_header_t *hdr = mt_capture_header(cap);
    s->python = hdr && (hdr->flags & MT_FLAG_PYTHON);
    int rc = mt__stacks_init(&s->stacks, cap, opts->fn, opts->ctx, s->filter);
    if (rc == 0)
        rc = sites_setup(s);
    if (rc == 0)
        rc = sites_fill(s);
    if (rc == 0) {
        s->order = malloc((s->count ? s->count : 1) * sizeof *s->order);
        s->rank = malloc((s->count ? s->count : 1) * sizeof *s->rank);
        if (!s->order || !s->rank)
            rc = MT_ENOMEM;
    }
    if (rc) {
        mt_sites_free(s);
        return rc;
    }
    for (size_t i = 0; i < s->count; i++)
        if (s->sites[i].amount.bytes || s->sites[i].amount.count)
            s->order[s->norder++] = i;
    mt_sites_sort(s, 0);
    *out = s;
    return 0;
}

int mt_sites_node_kept(mt_sites_t *s, uint32_t node)
{
    if (node >= s->nnodes)
        return 0;
    if (!s->filter)
        return 1;
    uint32_t k = node_site(s, node);
    return k != SITE_UNSET && node_kept(s, node, k);
}

mt_amount_t mt_sites_filtered_out(const mt_sites_t *s)
{
    return s->filtered;
}

const mt_filter_t *mt_sites_filter(const mt_sites_t *s)
{
    return s->filter;
}

void mt_sites_free(mt_sites_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->strings_size; i++)
        free(s->strings[i]);
    free(s->strings);
    free(s->site_table);
    free(s->sites);
    free(s->order);
    free(s->rank);
    free(s->native_memo);
    free(s->python_memo);
    free(s->chain);
    free(s->excluded);
    mt__stacks_release(&s->stacks);
    free(s);
}

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
    return a > b ? -1 : a < b ? 1 : 0;
}

static int site_cmp(const void *pa, const void *pb, void *arg)
{
    const mt_sites_t *s = arg;
    const mt_site_t *a = &s->sites[*(const size_t *)pa];
    const mt_site_t *b = &s->sites[*(const size_t *)pb];
    int c = cmp_u64_desc(a->amount.bytes, b->amount.bytes);
    if (!c)
        c = cmp_u64_desc(a->amount.count, b->amount.count);
    if (!c)
        c = strcmp(a->frame.function, b->frame.function);
    if (!c)
        c = strcmp(a->frame.file, b->frame.file);
    if (!c)
        c = a->frame.line < b->frame.line ? -1 : a->frame.line > b->frame.line;
    return c;
}

static int site_cmp_count(const void *pa, const void *pb, void *arg)
{
    const mt_sites_t *s = arg;
    const mt_site_t *a = &s->sites[*(const size_t *)pa];
    const mt_site_t *b = &s->sites[*(const size_t *)pb];
    int c = cmp_u64_desc(a->amount.count, b->amount.count);
    return c ? c : site_cmp(pa, pb, arg);
}

void mt_sites_sort(mt_sites_t *s, int by_count)
{
    if (s->norder > 1)
        qsort_r(s->order, s->norder, sizeof *s->order,
                by_count ? site_cmp_count : site_cmp, s);
    for (size_t i = 0; i < s->count; i++)
        s->rank[i] = SIZE_MAX;
    for (size_t i = 0; i < s->norder; i++)
        s->rank[s->order[i]] = i;
}

size_t mt_sites_count(const mt_sites_t *s) { return s->norder; }

const mt_site_t *mt_sites_get(const mt_sites_t *s, size_t i)
{
    return i < s->norder ? &s->sites[s->order[i]] : NULL;
}

size_t mt_sites_of_node(const mt_sites_t *s, uint32_t node)
{
    if (node >= s->nnodes)
        return SIZE_MAX;
    mt_amount_t a = mt_view_amount(&mt_capture_node_stats(s->cap)[node],
                                   s->view);
    if (!a.bytes && !a.count)
        return SIZE_MAX;
    uint32_t k = s->native_memo[node];
    if (s->python && s->python_memo[node] != SITE_NONE)
        k = s->python_memo[node];
    /* Building computed what kept() reads for every node with an amount:
     * nothing is written here. */
    if (k >= s->count ||
        (s->filter && !mt_sites_node_kept((mt_sites_t *)s, node)))
        return SIZE_MAX;
    return s->rank[k];
}

/* Copies the stack of node into frames; skip_allocator leaves out the
 * innermost run of allocator frames. Returns the count, and *all_skipped
 * when every frame was an allocator frame. */
static size_t stack_walk(mt_sites_t *s, uint32_t node, mt_frame_t *frames,
                         size_t max, int skip_allocator, int *truncated,
                         int *all_skipped)
{
    size_t out = 0;
    int skipping = skip_allocator;
    *truncated = 0;
    int cut = 0;
    for (uint32_t n = node; n != 0 && n < s->nnodes && !cut;
         n = node_parent(s, n)) {
        size_t k = node_frames(s, n, &cut);
        for (size_t i = 0; i < k; i++) {
            if (skipping && mt_frame_is_allocator(&s->frames[i]))
                continue;
            skipping = 0;
            if (out == max) {
                *truncated = 1;
                return out;
            }
            frames[out++] = s->frames[i];
        }
    }
    *all_skipped = skipping;
    return out;
}

size_t mt_sites_stack(mt_sites_t *s, uint32_t node, mt_frame_t *frames,
                      size_t max, int *truncated)
{
    int trunc = 0, all_skipped = 0;
    size_t n = stack_walk(s, node, frames, max, 1, &trunc, &all_skipped);
    if (n == 0 && all_skipped)
        n = stack_walk(s, node, frames, max, 0, &trunc, &all_skipped);
    if (truncated)
        *truncated = trunc;
    return n;
}
