/* report.c: `memtrace report`, the CI report: the heap's current and peak
 * size and the top N sites (at the high-water mark, or with --leaks live
 * when tracing ended), each with the heaviest stack that allocated there.
 * The text reads like tracemalloc's statistics and tracebacks.
 *
 * JSON shape:
 *   {"capture": str, "view": "peak"|"leaks",
 *    "current_bytes": int, "current_allocations": int, "peak_bytes": int,
 *    "total_allocations": int, "total_bytes_allocated": int,
 *    "complete": bool, "warning": str|null,
 *    "view_bytes": int, "view_allocations": int,   (all sites together)
 *    "sites": int,                                 (number of sites)
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "filtered_bytes": int, "filtered_allocations": int, (left out by it)
 *    "top": [{"bytes": int, "count": int,
 *             "site": {"function","file","line","module"},
 *             "stack": [{"function","file","line","module"}, ...],
 *             "stack_truncated": bool}, ...],
 *    "window": ..., "processes": [...]}   (as in summary.c)
 * "stack" is innermost first, without the allocator's own frames, at most
 * MT_REPORT_MAX_STACK frames. */
#include <inttypes.h>

#include "report_util.h"

/* The view's name in JSON, and how the text report says it. */
static const char *view_words(mt_view_t view)
{
    switch (view) {
    case MT_VIEW_LEAKS: return "live when tracing ended (leaks)";
    case MT_VIEW_TOTAL: return "by everything allocated over the run";
    case MT_VIEW_TEMPORARY: return "by temporary allocations";
    default: return "at the peak";
    }
}

static void report_json(FILE *out, mt_capture_t *cap, mt_sites_t *sites,
                        mt_view_t view, size_t top, mt_amount_t all)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "view");
    mt__json_string(&j, mt__view_name(view));
    mt__json_key(&j, "current_bytes");
    mt__json_uint(&j, t->current_bytes);
    mt__json_key(&j, "current_allocations");
    mt__json_uint(&j, t->current_count);
    mt__json_key(&j, "peak_bytes");
    mt__json_uint(&j, t->peak_bytes);
    mt__json_key(&j, "total_allocations");
    mt__json_uint(&j, t->total_allocations);
    mt__json_key(&j, "total_bytes_allocated");
    mt__json_uint(&j, t->total_bytes_allocated);
    mt__json_key(&j, "complete");
    mt__json_bool(&j, t->complete);
    mt__json_key(&j, "warning");
    mt__json_string(&j, mt_capture_warning(cap));
    mt__json_key(&j, "view_bytes");
    mt__json_uint(&j, all.bytes);
    mt__json_key(&j, "view_allocations");
    mt__json_uint(&j, all.count);
    mt__json_key(&j, "sites");
    mt__json_uint(&j, mt_sites_count(sites));
    mt__json_filter_fields(&j, sites);
    mt__json_key(&j, "top");
    mt__json_site_list(&j, sites, top);
    mt__json_job(&j, cap);
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

static void report_text(FILE *out, mt_capture_t *cap, mt_sites_t *sites,
                        mt_view_t view, size_t top, mt_amount_t all)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    char a[32];
    fputs("Capture: ", out);
    mt_fputs_escaped(mt_capture_path(cap), out);
    fputc('\n', out);
    fprintf(out, "Current memory: %s in %" PRIu64 " %s\n",
            mt_format_size(t->current_bytes, a, sizeof a), t->current_count,
            mt__plural(t->current_count, "allocation", "allocations"));
    fprintf(out, "Peak memory: %s\n",
            mt_format_size(t->peak_bytes, a, sizeof a));
    fprintf(out, "Total allocated: %s in %" PRIu64 " %s\n",
            mt_format_size(t->total_bytes_allocated, a, sizeof a),
            t->total_allocations,
            mt__plural(t->total_allocations, "allocation", "allocations"));
    mt__text_job(out, cap);
    mt__text_filter(out, sites);
    fputc('\n', out);

    const char *when = view_words(view);
    size_t count = mt_sites_count(sites);
    if (count == 0) {
        if (view == MT_VIEW_LEAKS || view == MT_VIEW_PEAK)
            fprintf(out, "No memory was live %s.\n",
                    view == MT_VIEW_PEAK ? "at the peak"
                    : mt_capture_window(cap)->active
                        ? "at the window's end (made inside it)"
                        : "when tracing ended");
        else
            fprintf(out, "No allocation sites %s.\n", when);
        return;
    }
    size_t n = top < count ? top : count;
    fprintf(out, "Top %zu %s %s:\n", n, mt__plural(n, "site", "sites"), when);
    mt_amount_t shown = {0, 0};
    for (size_t i = 0; i < n; i++) {
        const mt_site_t *site = mt_sites_get(sites, i);
        mt__text_site_entry(out, sites, site, i + 1, 1);
        shown.bytes += site->amount.bytes;
        shown.count += site->amount.count;
    }
    if (count > n)
        fprintf(out, "%zu other %s: %s in %" PRIu64 " %s\n", count - n,
                mt__plural(count - n, "site", "sites"),
                mt_format_size(all.bytes - shown.bytes, a, sizeof a),
                all.count - shown.count,
                mt__plural(all.count - shown.count, "allocation",
                           "allocations"));
    fprintf(out, "Total %s: %s in %" PRIu64 " %s\n", when,
            mt_format_size(all.bytes, a, sizeof a), all.count,
            mt__plural(all.count, "allocation", "allocations"));
}

int mt_report_top(FILE *out, mt_capture_t *cap, const mt_report_opts_t *opts)
{
    mt_view_t view = opts && opts->view <= MT_VIEW_TEMPORARY ? opts->view
                                                             : MT_VIEW_PEAK;
    size_t top = opts && opts->top ? opts->top : MT_REPORT_DEFAULT_TOP;
    mt_sites_t *sites;
    mt_sites_opts_t o = {view, opts ? opts->filter : NULL, NULL, NULL};
    int rc = mt_sites_build_opts(cap, &o, &sites);
    if (rc)
        return rc;
    mt_amount_t all = {0, 0};
    for (size_t i = 0; i < mt_sites_count(sites); i++) {
        all.bytes += mt_sites_get(sites, i)->amount.bytes;
        all.count += mt_sites_get(sites, i)->amount.count;
    }
    if (opts && opts->json)
        report_json(out, cap, sites, view, top, all);
    else
        report_text(out, cap, sites, view, top, all);
    mt_sites_free(sites);
    return mt__report_done(out, 0);
}
