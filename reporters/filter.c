/* filter.c: which frames and which allocations the reports show. Two
 * things, both decided here once for every report: memtrace's own frames
 * (its Python package, its launcher and what runs the launcher, its
 * extension and its preload library) are left out of every stack, and the
 * user's --include/--exclude globs (mt_filter_t) pick allocations by the
 * paths of their frames. The semantics are documented in reporters.h. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "stacks.h"

/* ---- Globs ------------------------------------------------------------- */

struct mt_filter_s {
    char **globs[2];   /* [0] include, [1] exclude; owned */
    size_t count[2];
};

/* fnmatch against path[start, end), which buf holds a copy of. */
static int match_part(const char *glob, char *buf, size_t start, size_t end)
{
    char saved = buf[end];
    buf[end] = '\0';
    int hit = fnmatch(glob, buf + start, 0) == 0;
    buf[end] = saved;
    return hit;
}

int mt_path_matches(const char *glob, const char *path)
{
    if (!glob || !path || !path[0])
        return 0;
    if (fnmatch(glob, path, 0) == 0)
        return 1;
    /* A relative glob matches any run of whole components, as a
     * .gitignore pattern does: a tail of the path ("db.py", "app/db.py"),
     * or a directory on it, which then stands for everything under it
     * ("myproj", "site-packages"). An absolute glob matches the path or a
     * directory at its start ("/app/myproj"). */
    size_t len = strlen(path);
    char stack_buf[1024];
    char *buf = len < sizeof stack_buf ? stack_buf : malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, path, len + 1);
    int hit = 0;
    for (size_t start = 0; !hit && start < len;) {
        for (size_t end = start + 1; !hit && end < len; end++)
            if (path[end] == '/')
                hit = match_part(glob, buf, start, end);
        if (!hit && start > 0)
            hit = match_part(glob, buf, start, len);
        if (glob[0] == '/')
            break;
        const char *slash = strchr(path + start, '/');
        if (!slash)
            break;
        start = (size_t)(slash - path) + 1;
    }
    if (buf != stack_buf)
        free(buf);
    return hit;
}

int mt_frame_matches(const char *glob, const mt_frame_t *frame)
{
    return mt_path_matches(glob, frame->file) ||
           (frame->module && frame->module[0] &&
            mt_path_matches(glob, frame->module));
}

int mt_filter_new(mt_filter_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : MT_ENOMEM;
}

void mt_filter_free(mt_filter_t *f)
{
    if (!f)
        return;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < f->count[k]; i++)
            free(f->globs[k][i]);
        free(f->globs[k]);
    }
    free(f);
}

static int filter_add(mt_filter_t *f, int k, const char *glob)
{
    if (!glob || !glob[0])
        return MT_EINVAL;
    char **globs = realloc(f->globs[k], (f->count[k] + 1) * sizeof *globs);
    if (!globs)
        return MT_ENOMEM;
    f->globs[k] = globs;
    globs[f->count[k]] = strdup(glob);
    if (!globs[f->count[k]])
        return MT_ENOMEM;
    f->count[k]++;
    return 0;
}

int mt_filter_include(mt_filter_t *f, const char *glob)
{
    return filter_add(f, 0, glob);
}

int mt_filter_exclude(mt_filter_t *f, const char *glob)
{
    return filter_add(f, 1, glob);
}

int mt_filter_active(const mt_filter_t *f)
{
    return f && (f->count[0] || f->count[1]);
}

const char *const *mt_filter_globs(const mt_filter_t *f, int exclude,
                                   size_t *count)
{
    int k = exclude ? 1 : 0;
    *count = f ? f->count[k] : 0;
    return f ? (const char *const *)f->globs[k] : NULL;
}

/* 1 when frame matches one of the filter's include (k = 0) or exclude
 * (k = 1) globs. */
int mt__filter_any(const mt_filter_t *f, int k, const mt_frame_t *frame)
{
    for (size_t i = 0; f && i < f->count[k]; i++)
        if (mt_frame_matches(f->globs[k][i], frame))
            return 1;
    return 0;
}

/* ---- memtrace's own frames --------------------------------------------- */

static const char *base_of(const char *path, size_t *dirlen)
{
    const char *slash = strrchr(path, '/');
    *dirlen = slash ? (size_t)(slash - path) : 0;
    return slash ? slash + 1 : path;
}

/* 1 when path's directory is named "memtrace". */
static int in_memtrace_dir(const char *path, size_t dirlen)
{
    return dirlen >= 8 && strncmp(path + dirlen - 8, "memtrace", 8) == 0 &&
           (dirlen == 8 || path[dirlen - 9] == '/');
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A Python frame of the launcher of `memtrace run` (python/memtrace/
 * _launch.py). */
static int is_launcher(const mt_frame_t *f)
{
    return mt_frame_is_python(f) && f->file &&
           ends_with(f->file, "/memtrace/_launch.py");
}

/* runpy: what python -m, and the launcher, run modules with. */
static int is_runpy(const mt_frame_t *f)
{
    return mt_frame_is_python(f) && f->file &&
           (strcmp(f->file, "<frozen runpy>") == 0 ||
            ends_with(f->file, "/runpy.py"));
}

int mt_frame_is_memtrace(const mt_frame_t *f)
{
    size_t dirlen;
    if (f->module && f->module[0]) {
        /* The preload library, and the extension, memtrace/_memtrace.*.so. */
        const char *base = base_of(f->module, &dirlen);
        if (strncmp(base, "libmemtrace_preload", 19) == 0)
            return 1;
        return strncmp(base, "_memtrace.", 10) == 0 &&
               in_memtrace_dir(f->module, dirlen);
    }
    if (!mt_frame_is_python(f) || !f->file)
        return 0;
    /* The package's modules: memtrace/__init__.py, memtrace/_launch.py... */
    const char *base = base_of(f->file, &dirlen);
    return base[0] == '_' && ends_with(base, ".py") &&
           in_memtrace_dir(f->file, dirlen);
}

/* ---- The stacks as shown ----------------------------------------------- *
 * A node's shown frames depend on its callers, so each node keeps a state,
 * computed from its parent's (the reader numbers parents before children):
 * where the walk from the root stands when it leaves the node (MODE_*),
 * whether the node holds a launcher frame (CUT), and whether a shown frame
 * on the way matched an include glob (INCLUDED).
 *
 * From the root down: a launcher frame drops everything above it (the
 * interpreter running `python -m memtrace._launch`, runpy); below the
 * launcher's _execute(), which runs the program, the interpreter's frames
 * of that call are dropped up to the next Python frame; at the top of the
 * program's stack, runpy's frames (and the C frames between them) are
 * dropped, as `python -m` and the launcher add them to every stack. */

enum {
    MODE_TOP = 1,   /* nothing shown yet since the root or the launcher */
    MODE_GLUE,      /* below _execute(): dropping native frames */
    MODE_RUNPY,     /* dropping runpy and the native frames it calls */
    MODE_SHOW,      /* showing every frame but memtrace's own */
};
#define STATE_MODE 0x07u
#define STATE_CUT 0x08u
#define STATE_INCLUDED 0x10u

struct mt__match_s {
    const char *file, *module; /* NULL file: an empty slot */
    int hit;
};

static size_t match_slot(const struct mt__match_s *t, size_t size,
                         const char *file, const char *module)
{
    uint64_t h = (uint64_t)(uintptr_t)file * 0x9e3779b97f4a7c15ull ^
                 (uint64_t)(uintptr_t)module * 0xc2b2ae3d27d4eb4full;
    size_t j = (size_t)(h ^ (h >> 29)) & (size - 1);
    while (t[j].file && (t[j].file != file || t[j].module != module))
        j = (j + 1) & (size - 1);
    return j;
}

/* mt__filter_any(filter, 0, f), remembered per (file, module). */
static int include_matches(mt__stacks_t *s, const mt_frame_t *f)
{
    const char *file = f->file ? f->file : "", *module = f->module;
    if ((s->matches_count + 1) * 2 > s->matches_size) {
        size_t size = s->matches_size ? s->matches_size * 2 : 256;
        struct mt__match_s *t = calloc(size, sizeof *t);
        if (!t) /* no memo: still the right answer */
            return mt__filter_any(s->filter, 0, f);
        for (size_t i = 0; i < s->matches_size; i++)
            if (s->matches[i].file)
                t[match_slot(t, size, s->matches[i].file,
                             s->matches[i].module)] = s->matches[i];
        free(s->matches);
        s->matches = t;
        s->matches_size = size;
    }
    size_t j = match_slot(s->matches, s->matches_size, file, module);
    if (!s->matches[j].file) {
        s->matches[j].file = file;
        s->matches[j].module = module;
        s->matches[j].hit = mt__filter_any(s->filter, 0, f);
        s->matches_count++;
    }
    return s->matches[j].hit;
}

static size_t raw_frames(mt__stacks_t *s, uint32_t node)
{
    size_t k = s->fn ? s->fn(s->ctx, node, s->raw, MT__STACK_FRAMES)
                     : mt_capture_frames(s->cap, node, s->raw,
                                         MT__STACK_FRAMES);
    return k > MT__STACK_FRAMES ? MT__STACK_FRAMES : k;
}

static uint8_t root_state(const mt__stacks_t *s)
{
    size_t n;
    mt_filter_globs(s->filter, 0, &n);
    return MODE_TOP | (n ? 0 : STATE_INCLUDED);
}

/* Runs node's raw frames (s->raw[0, k), innermost first) through the walk
 * from parent state in; marks the shown ones in shown[] and returns the
 * node's state. */
static uint8_t walk_node(mt__stacks_t *s, size_t k, uint8_t in,
                         uint8_t *shown)
{
    unsigned mode = in & STATE_MODE;
    uint8_t flags = in & STATE_INCLUDED;
    for (size_t i = k; i-- > 0;) {
        const mt_frame_t *f = &s->raw[i];
        shown[i] = 0;
        if (is_launcher(f)) {
            for (size_t j = i + 1; j < k; j++)
                shown[j] = 0;
            flags = STATE_CUT | (root_state(s) & STATE_INCLUDED);
            mode = f->function && strcmp(f->function, "_execute") == 0
                       ? MODE_GLUE
                       : MODE_TOP;
            continue;
        }
        if (mt_frame_is_memtrace(f))
            continue;
        if (mode == MODE_GLUE) {
            if (!mt_frame_is_python(f))
                continue;
            mode = MODE_TOP;
        }
        if (mode == MODE_TOP && is_runpy(f)) {
            mode = MODE_RUNPY;
            continue;
        }
        if (mode == MODE_RUNPY &&
            (is_runpy(f) || !mt_frame_is_python(f)))
            continue;
        mode = MODE_SHOW;
        shown[i] = 1;
        if (!(flags & STATE_INCLUDED) && include_matches(s, f))
            flags |= STATE_INCLUDED;
    }
    return (uint8_t)(mode | flags);
}

/* Computes the state of node and of its ancestors that lack one. */
static int ensure_state(mt__stacks_t *s, uint32_t node)
{
    size_t depth = 0;
    uint32_t n = node;
    while (s->state[n] == 0) {
        if (depth == s->chain_cap) {
            size_t cap = s->chain_cap ? s->chain_cap * 2 : 256;
            uint32_t *chain = realloc(s->chain, cap * sizeof *chain);
            if (!chain) {
                s->oom = 1;
                return MT_ENOMEM;
            }
            s->chain = chain;
            s->chain_cap = cap;
        }
        s->chain[depth++] = n;
        uint32_t parent = mt_capture_nodes(s->cap)[n].parent;
        n = parent < n ? parent : 0; /* the reader promises parent < id */
    }
    uint8_t shown[MT__STACK_FRAMES];
    while (depth > 0) {
        uint32_t m = s->chain[--depth];
        uint8_t in = s->state[n];
        s->state[m] = walk_node(s, raw_frames(s, m), in, shown);
        n = m;
    }
    return 0;
}

int mt__stacks_init(mt__stacks_t *s, mt_capture_t *cap, mt_frames_fn fn,
                    void *ctx, const mt_filter_t *filter)
{
    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->fn = fn;
    s->ctx = ctx;
    s->filter = filter;
    s->nnodes = mt_capture_node_count(cap);
    s->state = calloc(s->nnodes ? s->nnodes : 1, 1);
    if (!s->state)
        return MT_ENOMEM;
    s->state[0] = root_state(s);
    return 0;
}

void mt__stacks_release(mt__stacks_t *s)
{
    free(s->state);
    free(s->chain);
    free(s->matches);
    s->state = NULL;
    s->chain = NULL;
    s->matches = NULL;
}

size_t mt__stacks_frames(mt__stacks_t *s, uint32_t node, mt_frame_t *frames,
                         size_t max, int *cut)
{
    *cut = 0;
    if (node == 0 || node >= s->nnodes)
        return 0;
    uint32_t parent = mt_capture_nodes(s->cap)[node].parent;
    parent = parent < node ? parent : 0;
    if (ensure_state(s, parent) != 0)
        return 0;
    uint8_t shown[MT__STACK_FRAMES];
    size_t k = raw_frames(s, node);
    uint8_t st = walk_node(s, k, s->state[parent], shown);
    s->state[node] = st;
    *cut = (st & STATE_CUT) != 0;
    size_t out = 0;
    for (size_t i = 0; i < k && out < max; i++)
        if (shown[i])
            frames[out++] = s->raw[i];
    return out;
}

int mt__stacks_included(mt__stacks_t *s, uint32_t node)
{
    if (node >= s->nnodes)
        return 0;
    if (ensure_state(s, node) != 0)
        return 0;
    return (s->state[node] & STATE_INCLUDED) != 0;
}
