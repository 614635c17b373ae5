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
 *    "warning": str|null,
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "filtered_bytes": int, "filtered_allocations": int,
 *    "top": [site entry as in `memtrace report`, at most 5]}
 * "native" is true when the stacks are native (header flag
 * MT_FLAG_NATIVE_STACKS); "complete" when the capture ends with its
 * trailer (the program finished cleanly). */
#include <inttypes.h>
#include <string.h>

#include "common/format.h"
#include "report_util.h"

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
    mt__json_filter_fields(&j, sites);
    mt__json_key(&j, "top");
    mt__json_site_list(&j, sites, MT_SUMMARY_TOP);
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
    label(out, "Peak memory:");
    fprintf(out, "%s at %.3f s\n", mt_format_size(t->peak_bytes, a, sizeof a),
            (double)t->peak_time_ns / 1e9);
    label(out, "Current memory:");
    fprintf(out, "%s in %" PRIu64 " %s (when tracing ended)\n",
            mt_format_size(t->current_bytes, a, sizeof a), t->current_count,
            mt__plural(t->current_count, "allocation", "allocations"));
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
    if (t->events_lost)
        fputs("Note: the tracer stopped early; some events are missing.\n",
              out);
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
