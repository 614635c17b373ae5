/* reporters.h: reports built from a loaded capture (summary, report, stats)
 * and the pieces every report shares: the views of the heap (at the peak,
 * at the end, over the whole run), grouping allocations by site, stacks,
 * and human-readable sizes. Reporters read a capture through reader.h only.
 *
 * Nothing here is thread-safe: a capture and everything built from it are
 * used by one thread at a time. */
#ifndef MEMTRACE_REPORTERS_H
#define MEMTRACE_REPORTERS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memtrace/memtrace.h"
#include "memtrace/reader.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which amounts of mt_node_stats_t a report looks at. */
typedef enum mt_view_e {
    MT_VIEW_PEAK = 0,  /* live at the high-water mark (the default) */
    MT_VIEW_LEAKS,     /* live when tracing ended (--leaks) */
    MT_VIEW_TOTAL,     /* everything allocated over the run */
    MT_VIEW_TEMPORARY, /* allocations freed soon after they were made */
} mt_view_t;

/* ---- Filters (reporters/filter.c) ----------------------------------------
 * Which allocations a report looks at, by the paths of their frames: a
 * frame's source file, and for native frames its shared object too.
 *
 * A glob is an fnmatch(3) pattern in which '*' also matches '/'. It matches
 * a path when it matches the whole path or, as in .gitignore, a directory
 * on it (which stands for everything under it); unless it starts with
 * '/', it may match any run of whole components, not only from the start.
 * (Below, ANY stands for '*', which a C comment cannot hold after a '/'.)
 * "myproj" and "myproj/ANY" match "/home/me/myproj/app/db.py", "db.py"
 * matches ".../app/db.py", "site-packages" any file of an installed
 * package, "/home/me" everything under /home/me, "libz.so*" the library.
 *
 * include: an allocation is kept when some frame of its stack matches one
 * of the include globs (no include glob: every allocation). "The memory my
 * code caused", including what libraries allocated for it.
 * exclude: an allocation is dropped when its site (the frame the reports
 * list it under, see mt_site_t) matches one of the exclude globs: "not the
 * memory allocated inside these files". Callers further up the stack (a
 * test runner, a framework, a console script in site-packages) do not
 * count, so excluding site-packages keeps your code's own allocations even
 * when pytest or a web framework called it.
 * Both together: kept when included and not excluded.
 *
 * memtrace's own frames are left out of every report with or without a
 * filter (see mt_frame_is_memtrace). */
typedef struct mt_filter_s mt_filter_t;

/* A filter that keeps everything. Returns 0 and *out (owned; release with
 * mt_filter_free) or MT_ENOMEM. */
MT_EXTERN int mt_filter_new(mt_filter_t **out);
/* Frees it; NULL is fine. */
MT_EXTERN void mt_filter_free(mt_filter_t *filter);
/* Adds an include or exclude glob (copied). Returns 0, MT_EINVAL for an
 * empty glob, or MT_ENOMEM. */
MT_EXTERN int mt_filter_include(mt_filter_t *filter, const char *glob);
MT_EXTERN int mt_filter_exclude(mt_filter_t *filter, const char *glob);
/* 1 when filter is not NULL and has a glob. */
MT_EXTERN int mt_filter_active(const mt_filter_t *filter);
/* The globs, in the order given (borrowed); *count set. */
MT_EXTERN const char *const *mt_filter_globs(const mt_filter_t *filter,
                                             int exclude, size_t *count);

/* 1 when glob matches path as described above. */
MT_EXTERN int mt_path_matches(const char *glob, const char *path);

/* 1 when frame's file, or its shared object, matches glob. */
MT_EXTERN int mt_frame_matches(const char *glob, const mt_frame_t *frame);

/* 1 when frame is memtrace's own: a file of its Python package (the
 * launcher of `memtrace run`, memtrace.Tracker), its CPython extension, or
 * its preload library (the hooks). Reports leave such frames out; for
 * `memtrace run`, they also leave out what the launcher runs the program
 * under: every frame outside the launcher, and the runpy and interpreter
 * frames between the launcher and the program's first frame. */
MT_EXTERN int mt_frame_is_memtrace(const mt_frame_t *frame);

/* Options of the reports. Zero-initialise and set what you need. */
typedef struct mt_report_opts_s {
    int json;        /* 1: JSON instead of text */
    size_t top;      /* number of sites; 0 means the report's default */
    mt_view_t view;  /* report only: any MT_VIEW_* (default peak) */
    const mt_filter_t *filter; /* NULL: every allocation (borrowed) */
} mt_report_opts_t;

/* Default number of sites of `memtrace report` and of summary/stats. */
#define MT_REPORT_DEFAULT_TOP 10
#define MT_SUMMARY_TOP 5

/* Stacks in JSON and text are cut after this many frames. */
#define MT_REPORT_MAX_STACK 128

/* Returns the amount of view in st (for MT_VIEW_* out of range: zero). */
MT_EXTERN mt_amount_t mt_view_amount(const mt_node_stats_t *st,
                                     mt_view_t view);

/* ---- Sites ------------------------------------------------------------- */

/* Symbolizes one trace-tree node into up to max frames, innermost first,
 * and returns how many (0 for the root). mt_capture_frames() has this shape;
 * tests pass their own. Strings must stay valid while the sites live. */
typedef size_t (*mt_frames_fn)(void *ctx, uint32_t node, mt_frame_t *frames,
                               size_t max);

/* One site: where allocations were made, with the amounts of one view.
 * The site is the innermost Python frame of a stack, or, when it has none,
 * its innermost frame outside the allocator (mt_frame_is_allocator);
 * memtrace's own frames are never sites (mt_frame_is_memtrace). A stack
 * with no frame at all (node 0) belongs to the site "<unknown>". */
typedef struct mt_site_s {
    mt_frame_t frame;          /* strings owned by the mt_sites_t */
    mt_amount_t amount;        /* sum over every node whose site this is */
    uint32_t heaviest_node;    /* the node with the most bytes here */
    mt_amount_t heaviest;      /* that node's amount */
} mt_site_t;

typedef struct mt_sites_s mt_sites_t;

/* Groups the amounts of view by site, symbolizing with mt_capture_frames().
 * Sites with a zero amount are left out. Returns 0 and *out (owned by the
 * caller, release with mt_sites_free; it borrows cap, which must outlive it),
 * or MT_ENOMEM. Sites come sorted by bytes, largest first. */
MT_EXTERN int mt_sites_build(mt_capture_t *cap, mt_view_t view,
                             mt_sites_t **out);

/* The same with another symbolizer: fn(ctx, node, ...). */
MT_EXTERN int mt_sites_build_with(mt_capture_t *cap, mt_view_t view,
                                  mt_frames_fn fn, void *ctx,
                                  mt_sites_t **out);

/* The same with every option: filter (NULL: keep everything; borrowed,
 * it must outlive the sites) leaves allocations out, fn NULL means
 * mt_capture_frames. */
typedef struct mt_sites_opts_s {
    mt_view_t view;
    const mt_filter_t *filter;
    mt_frames_fn fn;
    void *ctx;
} mt_sites_opts_t;
MT_EXTERN int mt_sites_build_opts(mt_capture_t *cap,
                                  const mt_sites_opts_t *opts,
                                  mt_sites_t **out);

/* 1 when the filter keeps the allocations made with node's stack (node
 * < the capture's node count). */
MT_EXTERN int mt_sites_node_kept(mt_sites_t *sites, uint32_t node);

/* What the filter left out of the view (zero without a filter). */
MT_EXTERN mt_amount_t mt_sites_filtered_out(const mt_sites_t *sites);

/* The filter the sites were built with (borrowed), NULL when none (or one
 * without globs). */
MT_EXTERN const mt_filter_t *mt_sites_filter(const mt_sites_t *sites);

/* Frees the sites; NULL is fine. */
MT_EXTERN void mt_sites_free(mt_sites_t *sites);

/* Number of sites, and site i (borrowed; i < count). */
MT_EXTERN size_t mt_sites_count(const mt_sites_t *sites);
MT_EXTERN const mt_site_t *mt_sites_get(const mt_sites_t *sites, size_t i);

/* Re-sorts: by_count = 0 by bytes, 1 by allocation count; ties by the other
 * amount, then by function, file and line, so the order is deterministic. */
MT_EXTERN void mt_sites_sort(mt_sites_t *sites, int by_count);

/* Index of the site that node's allocations belong to (at its current
 * sort position), or SIZE_MAX when node had no amount in this view. */
MT_EXTERN size_t mt_sites_of_node(const mt_sites_t *sites, uint32_t node);

/* The stack of node, innermost first, into frames[0, max): the frames of
 * node, then of its parent, up to the root, with the innermost frames that
 * are inside the allocator left out, and memtrace's own frames too (see
 * mt_frame_is_memtrace). Returns the number written; sets
 * *truncated (when not NULL) to 1 when the stack had more than max frames.
 * Frame strings are owned by the capture (or the test's symbolizer). */
MT_EXTERN size_t mt_sites_stack(mt_sites_t *sites, uint32_t node,
                                mt_frame_t *frames, size_t max,
                                int *truncated);

/* 1 when frame is inside the allocator itself: malloc and its family,
 * mmap and friends, C++ operator new, Python's PyMem_ / PyObject_ allocator
 * entry points, libc's allocating string helpers (strdup, asprintf...), and
 * anything in memtrace's own preload library. */
MT_EXTERN int mt_frame_is_allocator(const mt_frame_t *frame);

/* 1 when frame is a Python frame: no shared object, and a file that ends in
 * ".py"/".pyw" or is a pseudo-file such as "<string>". */
MT_EXTERN int mt_frame_is_python(const mt_frame_t *frame);

/* ---- Text helpers ------------------------------------------------------ */

/* Writes bytes as a human-readable size into buf ("512 B", "1.5 KiB",
 * "12.3 MiB", "2.0 GiB", up to "EiB"; one decimal from KiB on). Returns buf.
 * len of 16 is always enough. */
MT_EXTERN char *mt_format_size(uint64_t bytes, char *buf, size_t len);

/* Writes s to out so that a terminal shows it and never interprets it:
 * control characters (C0, DEL, C1) and bytes that are not valid UTF-8
 * come out as \xNN. NULL prints as "". Returns 0 or -1 on a write error. */
MT_EXTERN int mt_fputs_escaped(const char *s, FILE *out);

/* ---- Reports ----------------------------------------------------------- */
/* Each writes one report of cap to out, as text or JSON (opts->json), and
 * returns 0, MT_ENOMEM, or MT_EIO when writing failed. The JSON shapes are
 * documented at the top of the reporter's file and in `memtrace help`. */

/* `memtrace summary`: peak, current, totals and the top 5 sites at the peak. */
MT_EXTERN int mt_report_summary(FILE *out, mt_capture_t *cap,
                                const mt_report_opts_t *opts);

/* `memtrace report`: current and peak, then the top N sites (at the peak,
 * or live at the end with MT_VIEW_LEAKS) with their heaviest stack. */
MT_EXTERN int mt_report_top(FILE *out, mt_capture_t *cap,
                            const mt_report_opts_t *opts);

/* `memtrace stats`: counts, allocators, size histogram, and the top 5 sites
 * by bytes allocated and by number of allocations over the whole run. */
MT_EXTERN int mt_report_stats(FILE *out, mt_capture_t *cap,
                              const mt_report_opts_t *opts);

/* `memtrace stages`: one row per stage name (mt_capture_stages) with its
 * calls, wall and CPU time, bytes allocated, net heap change, the heap's
 * highest point inside it and its RSS change; stages whose RSS grew much
 * more than the traced heap are flagged. opts: json only. */
MT_EXTERN int mt_report_stages(FILE *out, mt_capture_t *cap,
                               const mt_report_opts_t *opts);
/* `memtrace rss`: the RSS reconciliation: peak RSS, RSS and traced heap
 * over time, and the gap between them at the RSS peak split into
 * file-backed memory, malloc's overhead, memory not traced and the rest,
 * with a one-line verdict (reporters/rss.c explains the split). */
MT_EXTERN int mt_report_rss(FILE *out, mt_capture_t *cap,
                            const mt_report_opts_t *opts);

/* ---- HTML flame graph -------------------------------------------------- */

/* Options of mt_report_flamegraph. Zero-initialise and set what you need. */
typedef struct mt_flamegraph_opts_s {
    mt_view_t view;    /* MT_VIEW_PEAK (default), _LEAKS, _TEMPORARY, _TOTAL */
    int hide_imports;  /* the page starts with import-time frames folded */
    int hide_native;   /* the page starts with native frames hidden (for
                          captures with Python and native frames) */
    double threshold;  /* children under this share of the total are
                          merged into "other"; 0 means 0.001 (0.1%) */
    size_t max_bytes;  /* page budget; 0 means 10 MB. Over it, the
                          threshold is raised until the page fits. */
    const mt_filter_t *filter; /* NULL: every allocation (borrowed) */
} mt_flamegraph_opts_t;

/* `memtrace flamegraph`: writes one self-contained HTML page to out (no
 * network access; the CSS, the JavaScript and the data are inline): the
 * heap and RSS over time with the high-water mark, and a flame graph of
 * the trace tree in opts->view (opts may be NULL: the defaults), with
 * zoom, search and the import/native toggles. The data format is
 * documented at the top of reporters/flamegraph.c. Returns 0, MT_ENOMEM,
 * or MT_EIO when writing failed. */
MT_EXTERN int mt_report_flamegraph(FILE *out, mt_capture_t *cap,
                                   const mt_flamegraph_opts_t *opts);

/* ---- Tree and table (`memtrace tree`, `memtrace table`) ---------------- */

/* Default number of leaf stacks `memtrace tree` shows. */
#define MT_TREE_DEFAULT_TOP 10

/* Options of mt_report_tree. Zero-initialise and set what you need. */
typedef struct mt_tree_opts_s {
    int json;        /* 1: the tree as nested JSON objects */
    size_t top;      /* leaf stacks shown; 0 means MT_TREE_DEFAULT_TOP */
    mt_view_t view;  /* any MT_VIEW_* (default peak) */
    unsigned width;  /* text: terminal columns; 0 means 100, less than 40
                        is taken as 40 */
    int ascii;       /* text: ASCII guides and "..." instead of box-drawing
                        characters and an ellipsis (non-UTF-8 terminals) */
    const mt_filter_t *filter; /* NULL: every allocation (borrowed) */
} mt_tree_opts_t;

/* `memtrace tree`: the stacks of the view as a call tree, root first,
 * children sorted by bytes; only the top N leaf stacks (by the bytes
 * allocated exactly there) and their callers are shown, the rest summed up
 * in one line. Inlined frames are nodes of their own; the allocator's own
 * frames at the leaf end are left out. Text lines never exceed opts->width
 * columns (long names are shortened in the middle). Returns 0, MT_ENOMEM,
 * or MT_EIO when writing failed. The JSON shape is at the top of
 * reporters/tree.c and in `memtrace help tree`. */
MT_EXTERN int mt_report_tree(FILE *out, mt_capture_t *cap,
                             const mt_tree_opts_t *opts);

/* Options of mt_report_table. Zero-initialise and set what you need. */
typedef struct mt_table_opts_s {
    mt_view_t view;  /* any MT_VIEW_* (default peak) */
    const mt_filter_t *filter; /* NULL: every allocation (borrowed) */
} mt_table_opts_t;

/* `memtrace table`: a self-contained HTML page (no network access) with a
 * sortable, filterable table of the view's allocation sites, one row per
 * site with its heaviest stack. The data are embedded as HTML-safe JSON and
 * the page's script builds the table with textContent only, so names from
 * the profiled program are never interpreted as HTML. Returns 0, MT_ENOMEM,
 * or MT_EIO when writing failed. */
MT_EXTERN int mt_report_table(FILE *out, mt_capture_t *cap,
                              const mt_table_opts_t *opts);

/* ---- Exports (reporters/export.c) ----------------------------------------
 * folded: "outer;...;inner BYTES" per stack of view, frames written as
 * "function (file:line)" with ';' and control characters replaced.
 * csv: "snapshot,bytes,count,function,file,line,module" rows, one per site
 * at the high-water mark ("peak") and at the end ("leaks"), RFC 4180
 * quoting, a leading = + - @ prefixed with '. Both return 0 or MT_E*. */
MT_EXTERN int mt_report_folded(FILE *out, mt_capture_t *cap, mt_view_t view,
                               const mt_filter_t *filter);
MT_EXTERN int mt_report_csv(FILE *out, mt_capture_t *cap,
                            const mt_filter_t *filter);

/* speedscope (reporters/export_speedscope.c): speedscope's JSON file format,
 * four sampled profiles over one frame list: live bytes and allocations in
 * view (MT_VIEW_PEAK or MT_VIEW_LEAKS; the profile shown first), and bytes
 * and allocations over the whole run; filter (NULL: none) leaves
 * allocations out as in the reports. Returns 0 or MT_E*. */
MT_EXTERN int mt_report_speedscope(FILE *out, mt_capture_t *cap,
                                   mt_view_t view, const mt_filter_t *filter);

/* pprof (reporters/export_pprof.c): a gzipped profile.proto with Go's heap
 * sample types: alloc_objects, alloc_space (the whole run), inuse_objects,
 * inuse_space (live in view, the default type). Binary: out should be a
 * file. filter as for speedscope. Returns 0 or MT_E*. */
MT_EXTERN int mt_report_pprof(FILE *out, mt_capture_t *cap, mt_view_t view,
                              const mt_filter_t *filter);

/* ---- Diff (reporters/diff.c) ------------------------------------------------
 * Sites of two captures matched by location (function, file, line): size,
 * size change, count, count change, average, new and vanished sites, the
 * largest changes first (opts->top, default 10; opts->json). view: peak or
 * leaks. Returns 0 or MT_E*. */
typedef struct mt_diff_input_s {
    mt_capture_t *before, *after;
    const char *before_path, *after_path;
    mt_view_t view;
    const mt_filter_t *filter; /* NULL: every allocation (borrowed) */
} mt_diff_input_t;
MT_EXTERN int mt_report_diff(FILE *out, const mt_diff_input_t *in,
                             const mt_report_opts_t *opts);

#ifdef __cplusplus
}
#endif
#endif
