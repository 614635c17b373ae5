/* summary.c: `memtrace summary`, the first look at a capture: how big the
 * heap got and when, what was left at the end, how much was allocated in
 * all, and the five sites that held the most memory at the peak.
 *
 * JSON shape (the contract's fields first, then ours):
 *   {"capture": str, "pid": int, "command": str,
 *    "peak_bytes": int, "peak_time_s": float, "current_bytes": int,
 *    "current_allocations": int, "total_allocations": int,
 *    "total_frees": int, "unmatched_frees": int,
 *    "total_bytes_allocated": int, "duration_s": float,
 *    "peak_rss_bytes": int, "threads": int, "native": bool,
 *    "python_version": str|null, "complete": bool, "events_lost": bool,
 *    "warning": str|null, "aggregate": bool, "checkpoint_s": float|null,
 *    "parent_pid": int|null, "root_pid": int|null, "origin": str|null,
 *    "children": [int...],
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "filtered_bytes": int, "filtered_allocations": int,
 *    "top": [site entry as in `memtrace report`, at most 5],
 *    "window": {"from_s": float, "to_s": float, "start_bytes": int,
 *               "clamped": bool, "exact": bool} | null,
 *    "processes": [{"pid": int, "parent_pid": int, "command": str,
 *                   "capture": str, "start_s": float, "duration_s": float,
 *                   "peak_bytes": int, "peak_time_s": float,
 *                   "at_peak_bytes": int, "leaked_bytes": int,
 *                   "leaked_allocations": int, "total_allocations": int,
 *                   "total_bytes_allocated": int, "complete": bool}, ...]}
 * The process fields describe a --follow-fork run (null otherwise):
 * parent_pid names the traced parent of a child's capture FILE.<pid>,
 * root_pid the process `memtrace run` started, origin is "root", "fork" or
 * "exec", and children lists the child processes this one started (each
 * writes FILE.<pid> beside the root's FILE).
 * With a window (--from/--to) the numbers are the window's (reader.h);
 * combined captures have one "processes" entry per process, the parent
 * first, "at_peak_bytes" being its heap at the combined peak.
 * "native" is true when the stacks are native (header flag
 * MT_FLAG_NATIVE_STACKS); "complete" when the capture ends with its
 * trailer (the program finished cleanly). "aggregate" when the capture was
 * recorded with --aggregate; then "checkpoint_s" is the time of the
 * checkpoint its numbers come from (null when it has none). */
#include <inttypes.h>
#include <string.h>

#include "common/format.h"
#include "report_util.h"

static const char *origin_name(int origin)
{
    switch (origin) {
    case MT_ORIGIN_ROOT: return "root";
    case MT_ORIGIN_FORK: return "fork";
    case MT_ORIGIN_EXEC: return "exec";
    default: return "unknown";
    }
}

static void json_pid_or_null(mt_json_t *j, const char *key, int64_t pid)
{
    mt__json_key(j, key);
    if (pid > 0)
        mt__json_int(j, pid);
    else
        mt__json_string(j, NULL);
}

/* The process tree fields (--follow-fork). */
static void process_json(mt_json_t *j, const mt_header_t *h, const mt_capture_t *cap)
{
    int follow = (h->flags & MT_FLAG_FOLLOW_FORK) != 0;
    json_pid_or_null(j, "parent_pid", h->parent_pid);
    json_pid_or_null(j, "root_pid", h->root_pid);
    mt__json_key(j, "origin");
    mt__json_string(j, follow && h->root_pid > 0 ? origin_name(h->origin) : NULL);
    size_t n;
    const int64_t *kids = mt_capture_children(cap, &n);
    mt__json_key(j, "children");
    mt__json_begin_array_compact(j);
    for (size_t i = 0; i < n; i++)
        mt__json_int(j, kids[i]);
    mt__json_end_array(j);
}

static void summary_json(FILE *out, mt_capture_t *cap, mt_sites_t *sites)
{
    const mt_header_t *h = mt_capture_header(cap);
    const mt_totals_t *t = mt_capture_totals(cap);
    char command[4096];
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "pid");
    mt__json_int(&j, h->pid);
    mt__json_key(&j, "command");
    mt__json_string(&j, mt__command_line(h, command, sizeof command));
    mt__json_key(&j, "peak_bytes");
    mt__json_uint(&j, t->peak_bytes);
    mt__json_key(&j, "peak_time_s");
    mt__json_double(&j, (double)t->peak_time_ns / 1e9);
    mt__json_key(&j, "current_bytes");
    mt__json_uint(&j, t->current_bytes);
    mt__json_key(&j, "current_allocations");
    mt__json_uint(&j, t->current_count);
    mt__json_key(&j, "total_allocations");
    mt__json_uint(&j, t->total_allocations);
    mt__json_key(&j, "total_frees");
    mt__json_uint(&j, t->total_frees);
    mt__json_key(&j, "unmatched_frees");
    mt__json_uint(&j, t->unmatched_frees);
    mt__json_key(&j, "total_bytes_allocated");
    mt__json_uint(&j, t->total_bytes_allocated);
    mt__json_key(&j, "duration_s");
    mt__json_double(&j, (double)t->duration_ns / 1e9);
    mt__json_key(&j, "peak_rss_bytes");
    mt__json_uint(&j, t->peak_rss_bytes);
    mt__json_key(&j, "threads");
    mt__json_uint(&j, t->threads);
    mt__json_key(&j, "native");
    mt__json_bool(&j, (h->flags & MT_FLAG_NATIVE_STACKS) != 0);
    mt__json_key(&j, "python_version");
    mt__json_string(&j, h->python_version); /* NULL -> null */
    mt__json_key(&j, "complete");
    mt__json_bool(&j, t->complete);
    mt__json_key(&j, "events_lost");
    mt__json_bool(&j, t->events_lost);
    mt__json_key(&j, "warning");
    mt__json_string(&j, mt_capture_warning(cap));
    int aggregate = (h->flags & MT_FLAG_AGGREGATE) != 0;
    mt__json_key(&j, "aggregate");
    mt__json_bool(&j, aggregate);
    mt__json_key(&j, "checkpoint_s");
    if (aggregate && t->checkpoints)
        mt__json_double(&j, (double)t->checkpoint_ns / 1e9);
    else
        mt__json_string(&j, NULL);
    process_json(&j, h, cap);
    mt__json_filter_fields(&j, sites);
    mt__json_key(&j, "top");
    mt__json_site_list(&j, sites, MT_SUMMARY_TOP);
    mt__json_job(&j, cap);
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

/* "Label:" padded to one column. */
static void label(FILE *out, const char *name)
{
    fprintf(out, "%-20s ", name);
}

static void summary_text(FILE *out, mt_capture_t *cap, mt_sites_t *sites)
{
    const mt_header_t *h = mt_capture_header(cap);
    const mt_totals_t *t = mt_capture_totals(cap);
    char a[32], b[32], command[4096];

    label(out, "Capture:");
    mt_fputs_escaped(mt_capture_path(cap), out);
    fputc('\n', out);
    label(out, "Command:");
    mt_fputs_escaped(mt__command_line(h, command, sizeof command), out);
    fprintf(out, " (pid %" PRId64 ")\n", h->pid);
    label(out, "Stacks:");
    fputs(h->flags & MT_FLAG_NATIVE_STACKS ? "native" : "", out);
    if (h->python_version) {
        fputs(h->flags & MT_FLAG_NATIVE_STACKS ? " + Python " : "Python ", out);
        mt_fputs_escaped(h->python_version, out);
    } else if (!(h->flags & MT_FLAG_NATIVE_STACKS)) {
        fputs("none", out);
    }
    fputc('\n', out);
    label(out, "Duration:");
    fprintf(out, "%.3f s%s\n", (double)t->duration_ns / 1e9,
            t->complete ? "" : " (incomplete capture)");
    if (h->flags & MT_FLAG_AGGREGATE) {
        label(out, "Recorded:");
        if (t->checkpoints)
            fprintf(out, "aggregated (--aggregate): totals as of %.3f s\n",
                    (double)t->checkpoint_ns / 1e9);
        else
            fputs("aggregated (--aggregate): no checkpoint was written\n", out);
    }
    label(out, "Peak memory:");
    fprintf(out, "%s at %.3f s\n", mt_format_size(t->peak_bytes, a, sizeof a),
            (double)t->peak_time_ns / 1e9);
    label(out, "Current memory:");
    fprintf(out, "%s in %" PRIu64 " %s (%s)\n",
            mt_format_size(t->current_bytes, a, sizeof a), t->current_count,
            mt__plural(t->current_count, "allocation", "allocations"),
            mt_capture_window(cap)->active ? "at the window's end"
                                           : "when tracing ended");
    label(out, "Total allocated:");
    fprintf(out, "%s in %" PRIu64 " %s\n",
            mt_format_size(t->total_bytes_allocated, a, sizeof a),
            t->total_allocations,
            mt__plural(t->total_allocations, "allocation", "allocations"));
    label(out, "Frees:");
    fprintf(out, "%" PRIu64 " (+ %" PRIu64 " unmatched)\n", t->total_frees,
            t->unmatched_frees);
    label(out, "Peak RSS:");
    fprintf(out, "%s\n", mt_format_size(t->peak_rss_bytes, b, sizeof b));
    label(out, "Threads:");
    fprintf(out, "%" PRIu64 "\n", t->threads);
    if (h->parent_pid > 0) {
        label(out, "Parent:");
        fprintf(out, "pid %" PRId64 " (this is a child's capture)\n", h->parent_pid);
    }
    size_t nkids;
    const int64_t *kids = mt_capture_children(cap, &nkids);
    if (nkids) {
        label(out, "Children:");
        fprintf(out, "%zu (captures %s.<pid>):", nkids,
                h->parent_pid > 0 ? "<root capture>" : "this capture's name");
        for (size_t i = 0; i < nkids && i < 20; i++)
            fprintf(out, " %" PRId64, kids[i]);
        fputs(nkids > 20 ? " ...\n" : "\n", out);
    }
    if (t->events_lost)
        fputs("Note: the tracer stopped early; some events are missing.\n",
              out);
    mt__text_job(out, cap);
    mt__text_filter(out, sites);

    size_t n = mt_sites_count(sites);
    if (n == 0) {
        fputs("\nNo memory was live at the peak.\n", out);
        return;
    }
    if (n > MT_SUMMARY_TOP)
        n = MT_SUMMARY_TOP;
    fprintf(out, "\nTop %zu %s at the peak:\n", n,
            mt__plural(n, "location", "locations"));
    for (size_t i = 0; i < n; i++) {
        const mt_site_t *site = mt_sites_get(sites, i);
        fprintf(out, "  %zu. %10s in %" PRIu64 " %s: ", i + 1,
                mt_format_size(site->amount.bytes, a, sizeof a),
                site->amount.count,
                mt__plural(site->amount.count, "allocation", "allocations"));
        mt__text_frame(out, &site->frame);
        fputc('\n', out);
    }
}

int mt_report_summary(FILE *out, mt_capture_t *cap,
                      const mt_report_opts_t *opts)
{
    return mt__report_with_sites(out, cap, MT_VIEW_PEAK, opts, summary_json,
                                 summary_text);
}
