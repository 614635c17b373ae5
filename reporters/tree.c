/* tree.c: `memtrace tree`, the biggest stacks as a call tree in the
 * terminal: the root holds every allocation of the view (live at the peak,
 * or at the end with --leaks), each level below is a callee, and only the
 * top N leaf stacks and their callers are drawn, with the rest summed up in
 * one line. Lines fit the terminal: long names are shortened in the middle.
 *
 * The tree is built from the capture's trace tree: every trace-tree node
 * expands into its frames (inlined ones first-class), equal frames under
 * the same parent merge, and the allocator's own frames at the leaf end are
 * dropped, as in `memtrace report`'s stacks.
 *
 * JSON shape:
 *   {"capture": str, "view": "peak"|"leaks"|"all"|"temporary",
 *    "complete": bool, "warning": str|null,
 *    "filtered_bytes": int, "filtered_allocations": int, (left out by the
 *                                                        filter)
 *    "bytes": int, "count": int,       (everything in the view)
 *    "stacks": int, "shown_stacks": int,
 *    "other_stacks": int, "other_bytes": int, "other_count": int,
 *    "root": node}
 *   node = {"function": str, "file": str, "line": int, "module": str,
 *           "inlined": bool, "bytes": int, "count": int,
 *           "self_bytes": int, "self_count": int, "children": [node...]}
 * "bytes"/"count" of a node cover its whole subtree (shown or not);
 * "self_*" what was allocated with exactly that stack. The root's function
 * is "<root>"; children are sorted by bytes, largest first. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "report_util.h"
#include "stacks.h"

#define NONE UINT32_MAX
#define FRAMES_PER_NODE MT__STACK_FRAMES
#define MIN_WIDTH 40
#define DEFAULT_WIDTH 100
#define MIN_LABEL 16     /* columns a label keeps before guides are cut */
#define MIN_LOCATION 8   /* a location shortened to less is left out */
#define SIZE_COLS 10     /* "1023.9 KiB" */
#define SHARE_COLS 6     /* "100.0%" */
#define PREFIX_COLS (SIZE_COLS + 1 + SHARE_COLS + 2)
#define JSON_MAX_INDENT 40

/* One node of the displayed tree: a frame under its caller. */
typedef struct tnode_s {
    mt_frame_t frame;       /* strings owned by the capture */
    uint64_t hash;          /* of the parent and the frame */
    uint32_t parent;        /* NONE for the root */
    uint32_t first_child;   /* shown children, sorted; NONE when none */
    uint32_t next_sibling;
    uint32_t depth;
    mt_amount_t self;       /* allocated with exactly this stack */
    mt_amount_t total;      /* self plus every descendant's */
    int shown;
} tnode_t;

typedef struct tree_s {
    mt_capture_t *cap;
    tnode_t *nodes;         /* [0] is the root; parents before children */
    size_t count, capacity;
    uint32_t *table;        /* open addressing over (parent, frame) */
    size_t table_size;
    uint32_t *disp;         /* [capture nodes] display node, or NONE */
    size_t ncap;
    uint32_t *chain;
    size_t chain_cap;
    size_t stacks;          /* display nodes with a self amount */
    size_t shown_stacks;
    mt_amount_t other;      /* self amounts of the stacks not shown */
    mt__stacks_t sv;        /* frames as shown (memtrace's own left out) */
    mt_sites_t *sites;      /* with a filter: what it keeps; else NULL */
    mt_frame_t frames[FRAMES_PER_NODE];
} tree_t;

/* ---- Building the tree ------------------------------------------------- */

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static uint64_t frame_hash(uint32_t parent, const mt_frame_t *f)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ull);
    h = hash_str(h, f->function);
    h = hash_str(h, f->file);
    h ^= (uint64_t)f->line * 0xc2b2ae3d27d4eb4full;
    return h ^ (h >> 31);
}

static int str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static int table_grow(tree_t *t)
{
    size_t size = t->table_size ? t->table_size * 2 : 1024;
    uint32_t *table = calloc(size, sizeof *table);
    if (!table)
        return MT_ENOMEM;
    for (size_t i = 1; i < t->count; i++) {
        size_t j = t->nodes[i].hash & (size - 1);
        while (table[j])
            j = (j + 1) & (size - 1);
        table[j] = (uint32_t)i;
    }
    free(t->table);
    t->table = table;
    t->table_size = size;
    return 0;
}

/* Appends a node (no lookup). Returns its index or NONE on out of memory. */
static uint32_t node_append(tree_t *t, uint32_t parent, const mt_frame_t *f,
                            uint64_t hash)
{
    if (t->count >= NONE - 1)
        return NONE;
    if (t->count == t->capacity) {
        size_t cap = t->capacity ? t->capacity * 2 : 256;
        tnode_t *nodes = realloc(t->nodes, cap * sizeof *nodes);
        if (!nodes)
            return NONE;
        t->nodes = nodes;
        t->capacity = cap;
    }
    tnode_t *n = &t->nodes[t->count];
    memset(n, 0, sizeof *n);
    n->frame = *f;
    n->hash = hash;
    n->parent = parent;
    n->first_child = n->next_sibling = NONE;
    n->depth = parent == NONE ? 0 : t->nodes[parent].depth + 1;
    return (uint32_t)t->count++;
}

/* The child of parent for frame f, added when new; NONE on out of memory. */
static uint32_t child_of(tree_t *t, uint32_t parent, const mt_frame_t *f)
{
    if ((t->count + 1) * 2 > t->table_size && table_grow(t))
        return NONE;
    uint64_t h = frame_hash(parent, f);
    size_t mask = t->table_size - 1;
    size_t j = h & mask;
    while (t->table[j]) {
        const tnode_t *n = &t->nodes[t->table[j]];
        if (n->hash == h && n->parent == parent && n->frame.line == f->line &&
            str_eq(n->frame.function, f->function) &&
            str_eq(n->frame.file, f->file))
            return t->table[j];
        j = (j + 1) & mask;
    }
    uint32_t id = node_append(t, parent, f, h);
    if (id != NONE)
        t->table[j] = id;
    return id;
}

static uint32_t cap_parent(const tree_t *t, uint32_t n)
{
    uint32_t p = mt_capture_nodes(t->cap)[n].parent;
    return p < n ? p : 0; /* the reader promises parent < id */
}

/* The display node of capture node n's innermost frame, creating the path
 * from the nearest resolved ancestor down; NONE on out of memory. */
static uint32_t resolve(tree_t *t, uint32_t n)
{
    size_t depth = 0;
    while (t->disp[n] == NONE) {
        if (depth == t->chain_cap) {
            size_t cap = t->chain_cap ? t->chain_cap * 2 : 256;
            uint32_t *chain = realloc(t->chain, cap * sizeof *chain);
            if (!chain)
                return NONE;
            t->chain = chain;
            t->chain_cap = cap;
        }
        t->chain[depth++] = n;
        n = cap_parent(t, n);
    }
    uint32_t d = t->disp[n];
    while (depth > 0) {
        uint32_t m = t->chain[--depth];
        int cut = 0;
        size_t k = mt__stacks_frames(&t->sv, m, t->frames,
                                     FRAMES_PER_NODE, &cut);
        if (t->sv.oom)
            return NONE;
        if (cut) /* the program's stack starts here */
            d = 0;
        /* frames[0] is the innermost (inlined) frame: callers go first. */
        for (size_t i = k; i-- > 0;) {
            d = child_of(t, d, &t->frames[i]);
            if (d == NONE)
                return NONE;
        }
        t->disp[m] = d;
    }
    return d;
}

/* Where an allocation made with capture node n's stack is counted: its
 * innermost frame outside the allocator (or, for a stack made only of
 * allocator frames, its innermost frame). NONE on out of memory. */
static uint32_t leaf_of(tree_t *t, uint32_t n)
{
    if (n == 0) {
        mt_frame_t unknown = {"<unknown>", "", 0, "", 0, 0};
        return child_of(t, 0, &unknown);
    }
    uint32_t d = resolve(t, n);
    if (d == NONE)
        return NONE;
    uint32_t leaf = d;
    while (leaf != 0 && mt_frame_is_allocator(&t->nodes[leaf].frame))
        leaf = t->nodes[leaf].parent;
    return leaf == 0 ? d : leaf;
}

static int tree_build(tree_t *t, mt_capture_t *cap, mt_view_t view,
                      const mt_filter_t *filter)
{
    t->cap = cap;
    t->ncap = mt_capture_node_count(cap);
    int rc = mt__stacks_init(&t->sv, cap, NULL, NULL, NULL);
    if (rc == 0 && mt_filter_active(filter)) {
        mt_sites_opts_t so = {view, filter, NULL, NULL};
        rc = mt_sites_build_opts(cap, &so, &t->sites);
    }
    if (rc)
        return rc;
    t->disp = malloc((t->ncap ? t->ncap : 1) * sizeof *t->disp);
    if (!t->disp)
        return MT_ENOMEM;
    memset(t->disp, 0xff, (t->ncap ? t->ncap : 1) * sizeof *t->disp);
    mt_frame_t root = {"<root>", "", 0, "", 0, 0};
    if (node_append(t, NONE, &root, 0) == NONE)
        return MT_ENOMEM;
    t->disp[0] = 0;
    const mt_node_stats_t *stats = mt_capture_node_stats(cap);
    for (size_t i = 0; i < t->ncap; i++) {
        mt_amount_t a = mt_view_amount(&stats[i], view);
        if (!a.bytes && !a.count)
            continue;
        if (t->sites && !mt_sites_node_kept(t->sites, (uint32_t)i))
            continue;
        uint32_t leaf = leaf_of(t, (uint32_t)i);
        if (leaf == NONE)
            return MT_ENOMEM;
        t->nodes[leaf].self.bytes += a.bytes;
        t->nodes[leaf].self.count += a.count;
    }
    /* Parents come before their children: one backward pass sums up. */
    for (size_t i = t->count; i-- > 0;) {
        tnode_t *n = &t->nodes[i];
        n->total.bytes += n->self.bytes;
        n->total.count += n->self.count;
        if (n->parent != NONE) {
            t->nodes[n->parent].total.bytes += n->total.bytes;
            t->nodes[n->parent].total.count += n->total.count;
        }
    }
    return 0;
}

/* ---- Choosing what is shown -------------------------------------------- */

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
    return a > b ? -1 : a < b ? 1 : 0;
}

static int stack_cmp(const void *pa, const void *pb, void *arg)
{
    const tree_t *t = arg;
    uint32_t ia = *(const uint32_t *)pa, ib = *(const uint32_t *)pb;
    const tnode_t *a = &t->nodes[ia], *b = &t->nodes[ib];
    int c = cmp_u64_desc(a->self.bytes, b->self.bytes);
    if (!c)
        c = cmp_u64_desc(a->self.count, b->self.count);
    return c ? c : (ia > ib) - (ia < ib);
}

/* Siblings together (by parent), then largest first; ties by name so the
 * output is the same on every run. */
static int sibling_cmp(const void *pa, const void *pb, void *arg)
{
    const tree_t *t = arg;
    uint32_t ia = *(const uint32_t *)pa, ib = *(const uint32_t *)pb;
    const tnode_t *a = &t->nodes[ia], *b = &t->nodes[ib];
    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    int c = cmp_u64_desc(a->total.bytes, b->total.bytes);
    if (!c)
        c = cmp_u64_desc(a->total.count, b->total.count);
    if (!c)
        c = strcmp(a->frame.function ? a->frame.function : "",
                   b->frame.function ? b->frame.function : "");
    if (!c)
        c = strcmp(a->frame.file ? a->frame.file : "",
                   b->frame.file ? b->frame.file : "");
    if (!c)
        c = (a->frame.line > b->frame.line) - (a->frame.line < b->frame.line);
    return c ? c : (ia > ib) - (ia < ib);
}

/* Marks the top leaf stacks and their callers as shown, sums up the rest,
 * and links the shown children of every node in display order. */
static int tree_select(tree_t *t, size_t top)
{
    uint32_t *ids = malloc((t->count ? t->count : 1) * sizeof *ids);
    if (!ids)
        return MT_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < t->count; i++)
        if (t->nodes[i].self.bytes || t->nodes[i].self.count)
            ids[n++] = (uint32_t)i;
    t->stacks = n;
    qsort_r(ids, n, sizeof *ids, stack_cmp, t);
    t->shown_stacks = n < top ? n : top;
    t->nodes[0].shown = 1;
    for (size_t i = 0; i < n; i++) {
        tnode_t *s = &t->nodes[ids[i]];
        if (i >= top) {
            t->other.bytes += s->self.bytes;
            t->other.count += s->self.count;
            continue;
        }
        for (uint32_t d = ids[i]; d != NONE && !t->nodes[d].shown;
             d = t->nodes[d].parent)
            t->nodes[d].shown = 1;
    }
    n = 0;
    for (size_t i = 1; i < t->count; i++)
        if (t->nodes[i].shown)
            ids[n++] = (uint32_t)i;
    qsort_r(ids, n, sizeof *ids, sibling_cmp, t);
    /* Link backwards so that each list ends up in sorted order. */
    for (size_t i = n; i-- > 0;) {
        tnode_t *c = &t->nodes[ids[i]];
        c->next_sibling = t->nodes[c->parent].first_child;
        t->nodes[c->parent].first_child = ids[i];
    }
    free(ids);
    return 0;
}

static void tree_free(tree_t *t)
{
    mt__stacks_release(&t->sv);
    mt_sites_free(t->sites);
    free(t->nodes);
    free(t->table);
    free(t->disp);
    free(t->chain);
}

/* The next node of a depth-first walk over the shown tree, given that the
 * children of cur are to be visited (descend) or not; NONE at the end.
 * *closed counts the nodes whose subtree was finished on the way. */
static uint32_t walk_next(const tree_t *t, uint32_t cur, int descend,
                          size_t *closed)
{
    *closed = 0;
    if (descend && t->nodes[cur].first_child != NONE)
        return t->nodes[cur].first_child;
    for (;;) {
        (*closed)++;
        if (cur == 0)
            return NONE;
        if (t->nodes[cur].next_sibling != NONE)
            return t->nodes[cur].next_sibling;
        cur = t->nodes[cur].parent;
    }
}

/* ---- Text -------------------------------------------------------------- */

typedef struct render_s {
    FILE *out;
    unsigned width;
    int ascii;
    const char *ellipsis;
    unsigned ellipsis_cols;
    uint64_t all_bytes;
    unsigned char *last;    /* [depth]: the path's node there is a last child */
    size_t last_cap;
} render_t;

/* s escaped as mt_fputs_escaped shows it (malloc'd; NULL on out of
 * memory): only printable characters are left, in valid UTF-8. */
static char *escape_dup(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    int rc = mt_fputs_escaped(s ? s : "", f);
    if (fclose(f) != 0 || rc < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Columns of code point cp on a terminal: 2 for the East Asian wide and
 * fullwidth blocks (and emoji), 1 otherwise. Combining marks count as 1,
 * which can only make a line shorter than it could be. */
static unsigned cp_cols(uint32_t cp)
{
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f}, {0x2e80, 0x303e}, {0x3041, 0x33ff},
        {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa4cf},
        {0xac00, 0xd7a3}, {0xf900, 0xfaff}, {0xfe30, 0xfe4f},
        {0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
    };
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    return 1;
}

/* Length in bytes of the character at s (1 for a stray byte) and its
 * columns in *cols. */
static size_t char_at(const char *s, unsigned *cols)
{
    uint32_t cp = 0;
    size_t n = mt__utf8_decode((const unsigned char *)s, strnlen(s, 4), &cp);
    *cols = n ? cp_cols(cp) : 1;
    return n ? n : 1;
}

static size_t cols_of(const char *s)
{
    size_t cols = 0;
    while (*s) {
        unsigned c;
        s += char_at(s, &c);
        cols += c;
    }
    return cols;
}

/* Byte offset after the longest prefix of s that fits in col columns
 * (head), or of the shortest prefix that covers col columns (tail = the
 * rest fits in what is left). */
static size_t offset_of_col(const char *s, size_t col, int cover)
{
    size_t i = 0, used = 0;
    while (s[i]) {
        unsigned c;
        size_t n = char_at(s + i, &c);
        if (cover ? used >= col : used + c > col)
            break;
        used += c;
        i += n;
    }
    return i;
}

/* Writes s (already escaped) in at most max columns: when longer, its
 * head and tail around an ellipsis, the head taking head_pct percent of
 * what is kept but leaving the tail at least min_tail columns. */
static void put_cols(render_t *r, const char *s, size_t max, int head_pct,
                     size_t min_tail)
{
    size_t w = cols_of(s);
    if (w <= max) {
        fputs(s, r->out);
        return;
    }
    if (max <= r->ellipsis_cols) {
        fwrite(s, 1, offset_of_col(s, max, 0), r->out);
        return;
    }
    size_t keep = max - r->ellipsis_cols;
    size_t head = keep * (size_t)head_pct / 100;
    if (keep - head < min_tail)
        head = keep > min_tail ? keep - min_tail : 0;
    size_t tail = keep - head;
    fwrite(s, 1, offset_of_col(s, head, 0), r->out);
    fputs(r->ellipsis, r->out);
    fputs(s + offset_of_col(s, w - tail, 1), r->out);
}

/* 1 when the function already names the file: "libfoo.so+0x1a2b" in
 * /usr/lib/libfoo.so, a frame without symbols or debug info. */
static int names_module(const mt_frame_t *f)
{
    if (f->line || !f->function || !f->file)
        return 0;
    const char *slash = strrchr(f->file, '/');
    const char *base = slash ? slash + 1 : f->file;
    size_t n = strlen(base);
    return n && strncmp(f->function, base, n) == 0 &&
           strncmp(f->function + n, "+0x", 3) == 0;
}

/* Writes "function at file:line" in at most avail columns. When it does
 * not fit, the path loses its middle first (its end, the file name and
 * line, says most), then the function too; with no room for a location,
 * the function alone. */
static void put_label(render_t *r, const mt_frame_t *f, size_t avail)
{
    char *fn = escape_dup(f->function && f->function[0] ? f->function
                                                         : "<unknown>");
    char *file = escape_dup(f->file ? f->file : "");
    char *loc = NULL;
    size_t tail = 0; /* columns of "name:line", the end of the path */
    if (file && file[0] && !names_module(f)) {
        size_t n = strlen(file) + 16;
        loc = malloc(n);
        if (loc && f->line)
            snprintf(loc, n, "%s:%u", file, f->line);
        else if (loc)
            snprintf(loc, n, "%s", file);
        if (loc) {
            const char *slash = strrchr(loc, '/');
            tail = cols_of(slash && slash[1] ? slash + 1 : loc);
        }
    }
    if (!fn) {
        free(file);
        free(loc);
        return;
    }
    size_t wf = cols_of(fn), wl = loc ? cols_of(loc) : 0;
    const char *sep = f->inlined ? " (inlined) at " : " at ";
    size_t ws = strlen(sep);
    if (!loc || wf + ws + wl <= avail) {
        put_cols(r, fn, avail, 50, 0);
        if (loc && wf + ws + wl <= avail) {
            fputs(sep, r->out);
            fputs(loc, r->out);
        }
    } else if (avail < ws + MIN_LABEL) {
        put_cols(r, fn, avail, 50, 0);
    } else {
        size_t rest = avail - ws;
        /* What the location needs: an ellipsis and the file name. */
        size_t want = tail + r->ellipsis_cols < wl ? tail + r->ellipsis_cols
                                                   : wl;
        /* The function first, but the location keeps a third (or what
         * it wants, when less). */
        size_t la = wf < rest && rest - wf > rest / 3 ? rest - wf : rest / 3;
        if (la > want)
            la = want;
        size_t fa = rest - la;
        if (fa > wf) {
            fa = wf;
            la = rest - wf;
        }
        if (la < MIN_LOCATION) {
            put_cols(r, fn, avail, 50, 0);
        } else {
            put_cols(r, fn, fa, 50, 0);
            fputs(sep, r->out);
            put_cols(r, loc, la, 25, tail);
        }
    }
    free(fn);
    free(file);
    free(loc);
}

/* The tree guides of a node at depth d, four columns a level. Deeper than
 * the width allows, the leftmost levels are hidden behind "+N" (N levels),
 * N growing in steps so that neighbouring lines stay aligned. Returns the
 * columns used. */
static size_t put_guides(render_t *r, uint32_t d)
{
    static const char *const box[] = {"\u2502   ", "    ", "\u251c\u2500\u2500 ",
                                       "\u2514\u2500\u2500 "};
    static const char *const ascii[] = {"|   ", "    ", "|-- ", "`-- "};
    const char *const *g = r->ascii ? ascii : box;
    if (d == 0)
        return 0;
    /* Labels keep at least half of what the numbers leave. */
    size_t label = (r->width - PREFIX_COLS) / 2;
    size_t room = r->width - PREFIX_COLS - (label > MIN_LABEL ? label : MIN_LABEL);
    uint32_t max_levels = room / 4 < 3 ? 3 : (uint32_t)(room / 4);
    uint32_t hidden = 0;
    size_t cols = 0;
    if (d > max_levels) {
        uint32_t step = max_levels - 1;
        hidden = ((d - max_levels) / step + 1) * step;
        char mark[16];
        snprintf(mark, sizeof mark, hidden < 1000 ? "+%-3u" : "+++ ", hidden);
        fputs(mark, r->out);
        cols = 4;
    }
    for (uint32_t l = hidden + 1; l < d; l++, cols += 4)
        fputs(g[r->last[l] ? 1 : 0], r->out);
    fputs(g[r->last[d] ? 3 : 2], r->out);
    return cols + 4;
}

static double share_of(uint64_t bytes, uint64_t all)
{
    return all ? 100.0 * (double)bytes / (double)all : 0.0;
}

static int put_node_line(render_t *r, const tree_t *t, uint32_t id)
{
    const tnode_t *n = &t->nodes[id];
    if (n->depth >= r->last_cap) {
        size_t cap = r->last_cap ? r->last_cap * 2 : 64;
        while (cap <= n->depth)
            cap *= 2;
        unsigned char *last = realloc(r->last, cap);
        if (!last)
            return MT_ENOMEM;
        r->last = last;
        r->last_cap = cap;
    }
    r->last[n->depth] = n->next_sibling == NONE;
    char size[32];
    fprintf(r->out, "%*s %5.1f%%  ", SIZE_COLS,
            mt_format_size(n->total.bytes, size, sizeof size),
            share_of(n->total.bytes, r->all_bytes));
    size_t used = PREFIX_COLS + put_guides(r, n->depth);
    put_label(r, &n->frame, used < r->width ? r->width - used : 0);
    fputc('\n', r->out);
    return 0;
}

/* A line of our own text, cut to the width. */
static void put_text_line(render_t *r, const char *text)
{
    char *s = escape_dup(text);
    if (s)
        put_cols(r, s, r->width, 70, 0);
    free(s);
    fputc('\n', r->out);
}

static const char *view_words(mt_view_t view)
{
    switch (view) {
    case MT_VIEW_LEAKS: return "live when tracing ended";
    case MT_VIEW_TOTAL: return "allocated over the run";
    case MT_VIEW_TEMPORARY: return "in temporary allocations";
    default: return "live at the peak";
    }
}

static int tree_text(FILE *out, mt_capture_t *cap, const tree_t *t,
                     mt_view_t view, const mt_tree_opts_t *opts)
{
    render_t r;
    memset(&r, 0, sizeof r);
    r.out = out;
    r.width = opts && opts->width ? opts->width : DEFAULT_WIDTH;
    if (r.width < MIN_WIDTH)
        r.width = MIN_WIDTH;
    r.ascii = opts && opts->ascii;
    r.ellipsis = r.ascii ? "..." : "\u2026";
    r.ellipsis_cols = r.ascii ? 3 : 1;
    const tnode_t *root = &t->nodes[0];
    r.all_bytes = root->total.bytes;
    char line[512], size[32];
    snprintf(line, sizeof line, "Memory %s: %s in %" PRIu64 " %s",
             view_words(view),
             mt_format_size(root->total.bytes, size, sizeof size),
             root->total.count,
             mt__plural(root->total.count, "allocation", "allocations"));
    put_text_line(&r, line);
    const mt_window_t *w = mt_capture_window(cap);
    if (w->active) {
        snprintf(line, sizeof line, "Window: %.3f s to %.3f s",
                 (double)w->from_ns / 1e9, (double)w->to_ns / 1e9);
        put_text_line(&r, line);
    }
    if (mt_capture_process_count(cap) > 1) {
        snprintf(line, sizeof line, "Combined: %zu processes (the peak of "
                 "their summed heaps)", mt_capture_process_count(cap));
        put_text_line(&r, line);
    }
    if (t->sites)
        mt__text_filter(out, t->sites);
    if (t->stacks == 0)
        return 0;
    if (t->stacks == 1)
        snprintf(line, sizeof line, "The one stack and its callers:");
    else if (t->shown_stacks == t->stacks)
        snprintf(line, sizeof line, "All %zu stacks and their callers:",
                 t->stacks);
    else
        snprintf(line, sizeof line,
                 "The %zu largest of %zu stacks and their callers:",
                 t->shown_stacks, t->stacks);
    put_text_line(&r, line);
    fputc('\n', out);
    size_t closed;
    int rc = 0;
    for (uint32_t id = 0; id != NONE && rc == 0;
         id = walk_next(t, id, 1, &closed))
        rc = put_node_line(&r, t, id);
    if (rc == 0 && t->stacks > t->shown_stacks) {
        size_t n = t->stacks - t->shown_stacks;
        snprintf(line, sizeof line, "%zu other %s: %s (%.1f%%) in %" PRIu64 " %s",
                 n, mt__plural(n, "stack", "stacks"),
                 mt_format_size(t->other.bytes, size, sizeof size),
                 share_of(t->other.bytes, r.all_bytes), t->other.count,
                 mt__plural(t->other.count, "allocation", "allocations"));
        put_text_line(&r, line);
    }
    free(r.last);
    return rc;
}

/* ---- JSON -------------------------------------------------------------- */

static void json_str(FILE *out, const char *key, const char *s)
{
    fprintf(out, "\"%s\": \"", key);
    mt__json_escape(out, s ? s : "", s ? strlen(s) : 0, 0);
    fputc('"', out);
}

static void json_indent(FILE *out, uint32_t depth)
{
    fputc('\n', out);
    for (uint32_t i = 0; i < depth + 1 && i < JSON_MAX_INDENT; i++)
        fputs("  ", out);
}

/* One node, up to its children's opening bracket; an empty list is
 * closed at once. The writer of json.h nests at most MT_JSON_MAX_DEPTH
 * containers, and call stacks are deeper: the tree is written here, one
 * node per line, its strings through the same escaper. */
static void json_node_open(FILE *out, const tnode_t *n)
{
    json_indent(out, n->depth);
    fputc('{', out);
    json_str(out, "function", n->frame.function);
    fputs(", ", out);
    json_str(out, "file", n->frame.file);
    fprintf(out, ", \"line\": %u, ", n->frame.line);
    json_str(out, "module", n->frame.module);
    fprintf(out,
            ", \"inlined\": %s, \"bytes\": %" PRIu64 ", \"count\": %" PRIu64
            ", \"self_bytes\": %" PRIu64 ", \"self_count\": %" PRIu64
            ", \"children\": [",
            n->frame.inlined ? "true" : "false", n->total.bytes,
            n->total.count, n->self.bytes, n->self.count);
    if (n->first_child == NONE)
        fputs("]}", out);
}

static void tree_json(FILE *out, const tree_t *t, mt_capture_t *cap,
                      mt_view_t view)
{
    static const char *const views[] = {"peak", "leaks", "all", "temporary"};
    const tnode_t *root = &t->nodes[0];
    fputs("{\n  ", out);
    json_str(out, "capture", mt_capture_path(cap));
    fputs(",\n  ", out);
    json_str(out, "view", views[view]);
    fprintf(out, ",\n  \"complete\": %s,\n  ",
            mt_capture_totals(cap)->complete ? "true" : "false");
    if (mt_capture_warning(cap))
        json_str(out, "warning", mt_capture_warning(cap));
    else
        fputs("\"warning\": null", out);
    mt_amount_t left = t->sites ? mt_sites_filtered_out(t->sites)
                                : (mt_amount_t){0, 0};
    fprintf(out, ",\n  \"filtered_bytes\": %" PRIu64
                 ",\n  \"filtered_allocations\": %" PRIu64,
            left.bytes, left.count);
    fprintf(out,
            ",\n  \"bytes\": %" PRIu64 ",\n  \"count\": %" PRIu64
            ",\n  \"stacks\": %zu,\n  \"shown_stacks\": %zu"
            ",\n  \"other_stacks\": %zu,\n  \"other_bytes\": %" PRIu64
            ",\n  \"other_count\": %" PRIu64 ",\n  \"root\":",
            root->total.bytes, root->total.count, t->stacks, t->shown_stacks,
            t->stacks - t->shown_stacks, t->other.bytes, t->other.count);
    size_t closed;
    uint32_t id = 0;
    while (id != NONE) {
        const tnode_t *n = &t->nodes[id];
        json_node_open(out, n);
        uint32_t next = walk_next(t, id, 1, &closed);
        /* closed - 1 ancestors (beyond a leaf itself) end here. */
        uint32_t up = id;
        for (size_t i = 1; i < closed; i++) {
            up = t->nodes[up].parent;
            json_indent(out, t->nodes[up].depth);
            fputs("]}", out);
        }
        if (next != NONE && closed > 0)
            fputc(',', out);
        id = next;
    }
    fputs("\n}\n", out);
}

/* ---- Entry point ------------------------------------------------------- */

int mt_report_tree(FILE *out, mt_capture_t *cap, const mt_tree_opts_t *opts)
{
    mt_view_t view = opts && opts->view <= MT_VIEW_TEMPORARY ? opts->view
                                                             : MT_VIEW_PEAK;
    size_t top = opts && opts->top ? opts->top : MT_TREE_DEFAULT_TOP;
    tree_t t;
    memset(&t, 0, sizeof t);
    int rc = tree_build(&t, cap, view, opts ? opts->filter : NULL);
    if (rc == 0)
        rc = tree_select(&t, top);
    if (rc == 0) {
        if (opts && opts->json)
            tree_json(out, &t, cap, view);
        else
            rc = tree_text(out, cap, &t, view, opts);
    }
    tree_free(&t);
    return mt__report_done(out, rc);
}
