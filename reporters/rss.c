/* rss.c: `memtrace rss`, the RSS reconciliation: why the operating system
 * charged the process more (or less) than the traced heap. It shows the
 * peak RSS, RSS and traced heap over time, and splits the gap between them
 * at the RSS peak with the tracer's memory samples (SMAPS records:
 * /proc/self/smaps_rollup and glibc's mallinfo2):
 *
 *   gap = RSS - traced heap
 *       = file-backed      Rss - Anonymous: shared libraries, mapped files
 *       + malloc overhead  what malloc holds (arena + mmap'd chunks) beyond
 *                          the live traced blocks: freed memory it keeps,
 *                          chunk headers, untraced mallocs (memtrace's own)
 *       + not traced       anonymous memory that neither malloc nor a
 *                          traced mmap holds: raw system calls, thread
 *                          stacks, libraries' written data, other
 *                          allocators, memory from before tracing started
 *       + rest             what these could not place
 *
 * The anonymous part is split by subtraction, so the rest is what the
 * subtraction could not place: it is negative when traced or malloc-held
 * memory is not resident (allocated but never touched, or swapped out),
 * and it is everything anonymous when malloc could not be asked (another
 * allocator, or no mallinfo2). With --trace-python-allocators pymalloc's
 * arenas are not traced (only the objects in them are), so the memory they
 * hold beyond live objects lands in "not traced"; without it the arenas
 * are traced as mmaps and are part of the heap.
 *
 * JSON shape: see mt_report_rss's help text (cli/main.c) and
 * docs/rss.md. */
#include <inttypes.h>
#include <string.h>

#include "common/format.h"
#include "report_util.h"

#define MIB (1024.0 * 1024.0)
#define TEXT_ROWS 12

/* The reconciliation at one memory sample. Signed: parts may be negative. */
typedef struct rss_gap_s {
    const mt_memsample_t *at;   /* the sample, or NULL (none in capture) */
    int smaps;                  /* 1: smaps_rollup; 0: statm fallback */
    int have_malloc;            /* mallinfo2 was recorded */
    int pyalloc;                /* Python allocators were traced */
    int python;                 /* a Python program */
    int64_t rss, heap, mapped, gap;
    int64_t anon, file, swap, malloc_held;
    int64_t malloc_over, not_traced, rest;
    int have_own;               /* memtrace's own memory was recorded */
    int64_t own;                /* its part */
    int have_pyarena;           /* pymalloc's arenas were counted */
    int64_t pyarena, pymalloc;  /* their bytes; beyond live objects */
} rss_gap_t;

static int has(const mt_memsample_t *m, unsigned tag)
{
    return (m->present >> tag) & 1;
}

static uint64_t sample_rss(const mt_memsample_t *m)
{
    return has(m, MT_SMAPS_RSS) ? m->fields[MT_SMAPS_RSS]
                                : m->fields[MT_SMAPS_STATM_RSS];
}

/* The sample to reconcile at: the one that saw the most RSS. */
static const mt_memsample_t *peak_sample(mt_capture_t *cap)
{
    const mt_memsample_t *m = mt_capture_memsamples(cap), *best = NULL;
    size_t n = mt_capture_memsample_count(cap);
    for (size_t i = 0; i < n; i++) {
        if (m[i].kind == MT_SMAPS_EXIT ||
            !(has(&m[i], MT_SMAPS_RSS) || has(&m[i], MT_SMAPS_STATM_RSS)))
            continue;
        if (!best || sample_rss(&m[i]) > sample_rss(best))
            best = &m[i];
    }
    return best;
}

/* v, but within [0, room] (room < 0: 0): a part cannot be negative, nor
 * larger than what is left to explain. */
static int64_t clamp(int64_t v, int64_t room)
{
    if (v > room)
        v = room;
    return v < 0 ? 0 : v;
}

static void reconcile(mt_capture_t *cap, rss_gap_t *g)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    memset(g, 0, sizeof *g);
    g->python = mt_capture_header(cap)->python_version != NULL;
    g->pyalloc = t->by_allocator[MT_EV_PY_MALLOC].count ||
                 t->by_allocator[MT_EV_PY_CALLOC].count ||
                 t->by_allocator[MT_EV_PY_REALLOC].count;
    const mt_memsample_t *m = g->at = peak_sample(cap);
    if (!m)
        return;
    g->smaps = has(m, MT_SMAPS_RSS);
    g->rss = (int64_t)sample_rss(m);
    g->heap = (int64_t)m->heap_bytes;
    g->mapped = (int64_t)m->mapped_bytes;
    g->gap = g->rss - g->heap;
    if (g->smaps) {
        g->anon = (int64_t)m->fields[MT_SMAPS_ANONYMOUS];
        g->swap = (int64_t)m->fields[MT_SMAPS_SWAP];
    } else {
        g->anon = g->rss - (int64_t)m->fields[MT_SMAPS_STATM_SHARED];
    }
    if (g->anon > g->rss)
        g->anon = g->rss;
    g->file = g->rss - g->anon;
    g->have_malloc = has(m, MT_SMAPS_MALLOC_FREE);
    g->have_pyarena = g->pyalloc && has(m, MT_SMAPS_PYARENA);
    int64_t left = g->anon - g->heap; /* what the anonymous part must explain */
    if (g->have_malloc) {
        /* Free chunks malloc keeps in its arenas: resident, since glibc
         * gives memory back only at the top of an arena. (Its mmap'd
         * chunks are freed whole, so they keep nothing.) */
        g->malloc_held = (int64_t)(m->fields[MT_SMAPS_MALLOC_ARENA] +
                                   m->fields[MT_SMAPS_MALLOC_MMAP]);
        g->malloc_over = clamp((int64_t)m->fields[MT_SMAPS_MALLOC_FREE], left);
        left -= g->malloc_over;
    }
    if (g->have_pyarena) {
        /* The arenas hold the live small objects (traced) and free space
         * (not traced): the latter is pymalloc's part. */
        g->pyarena = (int64_t)m->fields[MT_SMAPS_PYARENA];
        g->pymalloc = clamp(g->pyarena - (int64_t)m->pysmall_bytes, left);
        left -= g->pymalloc;
    }
    if ((g->have_own = has(m, MT_SMAPS_TRACER))) {
        g->own = clamp((int64_t)m->fields[MT_SMAPS_TRACER], left);
        left -= g->own;
    }
    if (g->have_malloc) {
        g->not_traced = clamp(left, left); /* negative: not resident */
        left -= g->not_traced;
    }
    g->rest = left;
}

static const char *kind_name(unsigned kind)
{
    switch (kind) {
    case MT_SMAPS_START: return "start";
    case MT_SMAPS_PEAK: return "peak";
    case MT_SMAPS_END: return "end";
    case MT_SMAPS_EXIT: return "exit";
    default: return "unknown";
    }
}

static const char *source_name(unsigned s)
{
    switch (s) {
    case MT_PEAK_RSS_EXIT: return "exit";
    case MT_PEAK_RSS_TRAILER: return "trailer";
    case MT_PEAK_RSS_TICKS: return "samples";
    default: return NULL;
    }
}

/* Signed sizes: "-1.5 MiB". */
static char *ssize_str(int64_t v, char *buf, size_t len)
{
    if (len < 2)
        return buf;
    buf[0] = '-';
    mt_format_size(v < 0 ? (uint64_t)-v : (uint64_t)v, buf + (v < 0),
                   len - (v < 0));
    return buf;
}

/* The verdict: one line in plain words. */
static void verdict(const rss_gap_t *g, const mt_totals_t *t, char *buf,
                    size_t len)
{
    char a[32], b[32];
    if (!g->at) {
        snprintf(buf, len, "This capture has no memory samples (it was "
                 "written by an older memtrace), so the gap cannot be split: "
                 "only the peak RSS (%s) and RSS over time are known.",
                 mt_format_size(t->peak_rss_bytes, a, sizeof a));
        return;
    }
    int64_t small = g->rss / 20 > (1 << 20) ? g->rss / 20 : (1 << 20);
    if (g->gap <= small && g->gap >= -small) {
        snprintf(buf, len, "RSS is the traced heap: the gap at the peak is "
                 "only %s.", ssize_str(g->gap, a, sizeof a));
        return;
    }
    if (g->gap < 0) {
        snprintf(buf, len, "The traced heap is %s larger than RSS: memory "
                 "was allocated but never touched, or was swapped out.",
                 ssize_str(-g->gap, a, sizeof a));
        return;
    }
    struct { int64_t v; const char *what; } parts[] = {
        {g->file, "file-backed: shared libraries and mapped files, which "
                  "the kernel can drop and read back; the heap is not the "
                  "cause"},
        {g->malloc_over, "memory malloc keeps beyond the live blocks: freed "
                         "memory not returned to the system (fragmentation) "
                         "and allocator overhead"},
        {g->pymalloc, "free space in pymalloc's arenas: memory Python keeps "
                      "for small objects after they were freed"},
        {g->own, "memtrace's own buffers, which the program does not use "
                 "without memtrace"},
        {g->not_traced, "anonymous memory allocated outside memtrace's "
                        "hooks: raw system calls, thread stacks, another "
                        "allocator, or memory from before tracing started"},
        {g->rest, g->have_malloc ? "not explained by what memtrace measures"
                                 : "anonymous memory malloc could not be "
                                   "asked about (another allocator, or an "
                                   "old C library): allocator overhead or "
                                   "untraced memory"},
    };
    size_t best = 0;
    for (size_t i = 1; i < sizeof parts / sizeof parts[0]; i++)
        if (parts[i].v > parts[best].v)
            best = i;
    snprintf(buf, len, "RSS exceeds the traced heap by %s at its peak; most "
             "of that (%s) is %s.", ssize_str(g->gap, a, sizeof a),
             ssize_str(parts[best].v, b, sizeof b), parts[best].what);
}

static const char *pymalloc_note(const rss_gap_t *g)
{
    if (!g->python)
        return "not a Python program";
    if (g->have_pyarena)
        return "measured: pymalloc's arenas minus the live PyMem/PyObject "
               "blocks of up to 512 bytes";
    if (g->pyalloc)
        return "not measured: the capture does not count pymalloc's arenas "
               "(pymalloc off, or an older memtrace); their free space is "
               "counted as not traced";
    return "in the traced heap: without --trace-python-allocators pymalloc's "
           "arenas are traced as mmaps";
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_opt(mt_json_t *j, const char *key, int have, int64_t v)
{
    mt__json_key(j, key);
    if (have)
        mt__json_int(j, v);
    else
        mt__json_null(j);
}

static const struct { unsigned tag; const char *name; } field_names[] = {
    {MT_SMAPS_RSS, "rss"}, {MT_SMAPS_PSS, "pss"},
    {MT_SMAPS_PSS_DIRTY, "pss_dirty"}, {MT_SMAPS_PSS_ANON, "pss_anon"},
    {MT_SMAPS_PSS_FILE, "pss_file"}, {MT_SMAPS_PSS_SHMEM, "pss_shmem"},
    {MT_SMAPS_SHARED_CLEAN, "shared_clean"},
    {MT_SMAPS_SHARED_DIRTY, "shared_dirty"},
    {MT_SMAPS_PRIVATE_CLEAN, "private_clean"},
    {MT_SMAPS_PRIVATE_DIRTY, "private_dirty"},
    {MT_SMAPS_REFERENCED, "referenced"}, {MT_SMAPS_ANONYMOUS, "anonymous"},
    {MT_SMAPS_LAZYFREE, "lazyfree"}, {MT_SMAPS_ANON_HUGE, "anon_huge_pages"},
    {MT_SMAPS_SWAP, "swap"}, {MT_SMAPS_SWAP_PSS, "swap_pss"},
    {MT_SMAPS_LOCKED, "locked"}, {MT_SMAPS_STATM_RSS, "statm_rss"},
    {MT_SMAPS_STATM_SHARED, "statm_shared"},
    {MT_SMAPS_MALLOC_ARENA, "malloc_arena"},
    {MT_SMAPS_MALLOC_MMAP, "malloc_mmap"},
    {MT_SMAPS_MALLOC_INUSE, "malloc_in_use"},
    {MT_SMAPS_MALLOC_FREE, "malloc_free"}, {MT_SMAPS_PYARENA, "pymalloc_arena"},
    {MT_SMAPS_TRACER, "memtrace"}, {MT_SMAPS_MAXRSS, "max_rss"},
};

static void json_samples(mt_json_t *j, mt_capture_t *cap)
{
    const mt_memsample_t *m = mt_capture_memsamples(cap);
    size_t n = mt_capture_memsample_count(cap);
    mt__json_begin_array(j);
    for (size_t i = 0; i < n; i++) {
        mt__json_begin_object_compact(j);
        mt__json_key(j, "kind");
        mt__json_string(j, kind_name(m[i].kind));
        mt__json_key(j, "time_s");
        mt__json_double(j, (double)m[i].time_ns / 1e9);
        mt__json_key(j, "heap_bytes");
        mt__json_uint(j, m[i].heap_bytes);
        mt__json_key(j, "traced_mmap_bytes");
        mt__json_uint(j, m[i].mapped_bytes);
        for (size_t k = 0; k < sizeof field_names / sizeof field_names[0]; k++) {
            if (!has(&m[i], field_names[k].tag))
                continue;
            char key[48];
            snprintf(key, sizeof key, "%s_bytes", field_names[k].name);
            mt__json_key(j, key);
            mt__json_uint(j, m[i].fields[field_names[k].tag]);
        }
        mt__json_end_object(j);
    }
    mt__json_end_array(j);
}

static void rss_json(FILE *out, mt_capture_t *cap, const rss_gap_t *g)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    const mt_header_t *h = mt_capture_header(cap);
    char command[4096], v[512];
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "command");
    mt__json_string(&j, mt__command_line(h, command, sizeof command));
    mt__json_key(&j, "peak_rss_bytes");
    mt__json_uint(&j, t->peak_rss_bytes);
    mt__json_key(&j, "peak_rss_source");
    mt__json_string(&j, source_name(t->peak_rss_source));
    mt__json_key(&j, "peak_heap_bytes");
    mt__json_uint(&j, t->peak_bytes);
    mt__json_key(&j, "peak_heap_time_s");
    mt__json_double(&j, (double)t->peak_time_ns / 1e9);

    const mt_sample_t *s = mt_capture_samples(cap);
    size_t n = mt_capture_sample_count(cap);
    mt__json_key(&j, "timeline");
    mt__json_begin_object(&j);
    mt__json_key(&j, "time_s");
    mt__json_begin_array_compact(&j);
    for (size_t i = 0; i < n; i++)
        mt__json_double(&j, (double)s[i].time_ns / 1e9);
    mt__json_end_array(&j);
    mt__json_key(&j, "rss_bytes");
    mt__json_begin_array_compact(&j);
    for (size_t i = 0; i < n; i++)
        mt__json_uint(&j, s[i].rss_bytes);
    mt__json_end_array(&j);
    mt__json_key(&j, "heap_bytes");
    mt__json_begin_array_compact(&j);
    for (size_t i = 0; i < n; i++)
        mt__json_uint(&j, s[i].heap_bytes);
    mt__json_end_array(&j);
    mt__json_end_object(&j);

    mt__json_key(&j, "memory_samples");
    json_samples(&j, cap);

    mt__json_key(&j, "at_peak");
    if (!g->at) {
        mt__json_null(&j);
    } else {
        mt__json_begin_object(&j);
        mt__json_key(&j, "kind");
        mt__json_string(&j, kind_name(g->at->kind));
        mt__json_key(&j, "time_s");
        mt__json_double(&j, (double)g->at->time_ns / 1e9);
        mt__json_key(&j, "source");
        mt__json_string(&j, g->smaps ? "smaps_rollup" : "statm");
        mt__json_key(&j, "rss_bytes");
        mt__json_int(&j, g->rss);
        mt__json_key(&j, "heap_bytes");
        mt__json_int(&j, g->heap);
        mt__json_key(&j, "traced_mmap_bytes");
        mt__json_int(&j, g->mapped);
        mt__json_key(&j, "anonymous_bytes");
        mt__json_int(&j, g->anon);
        json_opt(&j, "swap_bytes", g->smaps, g->swap);
        json_opt(&j, "malloc_held_bytes", g->have_malloc, g->malloc_held);
        json_opt(&j, "pymalloc_arena_bytes", g->have_pyarena, g->pyarena);
        mt__json_key(&j, "pymalloc_live_bytes");
        mt__json_uint(&j, g->at->pysmall_bytes);
        mt__json_end_object(&j);
    }
    mt__json_key(&j, "gap");
    if (!g->at) {
        mt__json_null(&j);
    } else {
        mt__json_begin_object(&j);
        mt__json_key(&j, "total_bytes");
        mt__json_int(&j, g->gap);
        mt__json_key(&j, "file_backed_bytes");
        mt__json_int(&j, g->file);
        json_opt(&j, "pymalloc_beyond_live_bytes", g->have_pyarena, g->pymalloc);
        mt__json_key(&j, "pymalloc_note");
        mt__json_string(&j, pymalloc_note(g));
        json_opt(&j, "malloc_overhead_bytes", g->have_malloc, g->malloc_over);
        json_opt(&j, "memtrace_bytes", g->have_own, g->own);
        json_opt(&j, "not_traced_bytes", g->have_malloc, g->not_traced);
        mt__json_key(&j, "unexplained_bytes");
        mt__json_int(&j, g->rest);
        mt__json_end_object(&j);
    }
    verdict(g, t, v, sizeof v);
    mt__json_key(&j, "verdict");
    mt__json_string(&j, v);
    mt__json_key(&j, "complete");
    mt__json_bool(&j, t->complete);
    mt__json_key(&j, "warning");
    mt__json_string(&j, mt_capture_warning(cap));
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

/* ---- Text ----------------------------------------------------------------- */

static void text_timeline(FILE *out, mt_capture_t *cap)
{
    const mt_sample_t *s = mt_capture_samples(cap);
    size_t n = mt_capture_sample_count(cap);
    char a[32], b[32], c[32];
    if (n == 0) {
        fputs("\nNo RSS samples in this capture.\n", out);
        return;
    }
    /* Rows spread evenly over the samples, each showing the sample with
     * the most RSS in its stretch, so the peak is never skipped; the last
     * row is the last sample, so is the end. */
    size_t rows = n < TEXT_ROWS ? n : TEXT_ROWS;
    fprintf(out, "\nRSS and traced heap over time (%zu of %zu samples):\n",
            rows, n);
    fprintf(out, "  %9s  %10s  %10s  %10s\n", "time", "RSS", "heap", "gap");
    for (size_t r = 0; r < rows; r++) {
        size_t lo = r * (n - 1) / (rows > 1 ? rows - 1 : 1);
        size_t hi = (r + 1) * (n - 1) / (rows > 1 ? rows - 1 : 1), best = lo;
        if (r == rows - 1)
            lo = hi = best = n - 1;
        for (size_t i = lo; i < hi; i++)
            if (s[i].rss_bytes > s[best].rss_bytes)
                best = i;
        int64_t gap = (int64_t)s[best].rss_bytes - (int64_t)s[best].heap_bytes;
        fprintf(out, "  %7.3f s  %10s  %10s  %10s\n",
                (double)s[best].time_ns / 1e9,
                mt_format_size(s[best].rss_bytes, a, sizeof a),
                mt_format_size(s[best].heap_bytes, b, sizeof b),
                ssize_str(gap, c, sizeof c));
    }
}

static void text_part(FILE *out, const char *name, int have, int64_t v,
                      int64_t gap, const char *missing)
{
    char a[32];
    fprintf(out, "    %-44s ", name);
    if (!have) {
        fprintf(out, "%s\n", missing);
        return;
    }
    fprintf(out, "%10s", ssize_str(v, a, sizeof a));
    if (gap > 0)
        fprintf(out, "  %4.0f%%", 100.0 * (double)v / (double)gap);
    fputc('\n', out);
}

/* When the kernel's peak is well above every sample, says so under it:
 * the rows and the split below are at the highest sample, and without
 * this line a user reads a peak that no row shows. */
static void spike_note(FILE *out, mt_capture_t *cap, const mt_totals_t *t)
{
    const mt_sample_t *s = mt_capture_samples(cap);
    size_t n = mt_capture_sample_count(cap), best = 0;
    if (n == 0 || (t->peak_rss_source != MT_PEAK_RSS_EXIT &&
                   t->peak_rss_source != MT_PEAK_RSS_TRAILER))
        return;
    for (size_t i = 1; i < n; i++)
        if (s[i].rss_bytes > s[best].rss_bytes)
            best = i;
    uint64_t top = s[best].rss_bytes, peak = t->peak_rss_bytes;
    if (peak < top + (1u << 20) || peak - top < peak / 16)
        return;
    char a[32];
    unsigned ms = mt_capture_header(cap)->rss_interval_ms;
    fprintf(out, "              every sample is below it (the highest: %s at %.3f s):\n"
                 "              memory that came and went between two samples "
                 "(--rss-interval %u ms)\n",
            mt_format_size(top, a, sizeof a), (double)s[best].time_ns / 1e9,
            ms ? ms : 10);
}

static void rss_text(FILE *out, mt_capture_t *cap, const rss_gap_t *g)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    const mt_header_t *h = mt_capture_header(cap);
    char a[32], b[32], c[32], command[4096], v[512];
    fputs("Capture:      ", out);
    mt_fputs_escaped(mt_capture_path(cap), out);
    fputs("\nCommand:      ", out);
    mt_fputs_escaped(mt__command_line(h, command, sizeof command), out);
    fprintf(out, "\nPeak RSS:     %s", mt_format_size(t->peak_rss_bytes, a, sizeof a));
    switch (t->peak_rss_source) {
    case MT_PEAK_RSS_EXIT:
        fputs(" (the kernel's count at exit, as /usr/bin/time -v shows it)\n", out);
        break;
    case MT_PEAK_RSS_TRAILER:
        fputs(" (getrusage when tracing ended)\n", out);
        break;
    default:
        fputs(" (highest sample: the capture has no trailer)\n", out);
        break;
    }
    spike_note(out, cap, t);
    fprintf(out, "Traced heap:  peak %s at %.3f s\n",
            mt_format_size(t->peak_bytes, a, sizeof a),
            (double)t->peak_time_ns / 1e9);
    text_timeline(out, cap);

    if (g->at) {
        fprintf(out, "\nThe gap at the RSS peak (%s sample at %.3f s%s):\n",
                kind_name(g->at->kind), (double)g->at->time_ns / 1e9,
                g->smaps ? "" : "; no smaps_rollup on this kernel, split "
                                "from /proc/self/statm");
        fprintf(out, "  RSS %s - traced heap %s = gap %s\n",
                mt_format_size((uint64_t)g->rss, a, sizeof a),
                mt_format_size((uint64_t)g->heap, b, sizeof b),
                ssize_str(g->gap, c, sizeof c));
        text_part(out, "file-backed mappings and shared libraries", 1,
                  g->file, g->gap, "");
        if (g->python)
            text_part(out, "pymalloc arenas beyond live objects",
                      g->have_pyarena, g->pymalloc, g->gap,
                      g->pyalloc ? "not measured (counted in not traced)"
                                 : "in the traced heap (arenas are traced)");
        text_part(out, "malloc's free memory and overhead", g->have_malloc,
                  g->malloc_over, g->gap, "not measured (not glibc malloc)");
        text_part(out, "memtrace's own buffers", g->have_own, g->own, g->gap,
                  "not measured");
        text_part(out, "not traced (anonymous, outside the hooks)",
                  g->have_malloc, g->not_traced, g->gap,
                  "not measured (in the rest)");
        text_part(out, "unexplained rest", 1, g->rest, g->gap, "");
        fprintf(out, "  (anonymous %s, of which traced mmaps %s",
                mt_format_size((uint64_t)g->anon, a, sizeof a),
                mt_format_size((uint64_t)g->mapped, b, sizeof b));
        if (g->have_malloc)
            fprintf(out, "; malloc holds %s",
                    mt_format_size((uint64_t)g->malloc_held, c, sizeof c));
        if (g->swap)
            fprintf(out, "; swapped out %s",
                    mt_format_size((uint64_t)g->swap, c, sizeof c));
        fputs(")\n", out);
    }
    verdict(g, t, v, sizeof v);
    fprintf(out, "\nVerdict: %s\n", v);
}

int mt_report_rss(FILE *out, mt_capture_t *cap, const mt_report_opts_t *opts)
{
    rss_gap_t g;
    reconcile(cap, &g);
    if (opts && opts->json)
        rss_json(out, cap, &g);
    else
        rss_text(out, cap, &g);
    return mt__report_done(out, 0);
}
