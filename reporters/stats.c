/* stats.c: `memtrace stats`, the numbers of the whole run: how many
 * allocations and frees, through which allocator, how big (a power-of-two
 * histogram), and the sites that allocated the most bytes and the most
 * often (over the run, freed or not).
 *
 * JSON shape:
 *   {"capture": str, "total_allocations": int, "total_frees": int,
 *    "unmatched_frees": int, "total_bytes_allocated": int,
 *    "peak_bytes": int, "current_bytes": int, "current_allocations": int,
 *    "duration_s": float,
 *    "by_allocator": {"malloc": {"count": int, "bytes": int}, "calloc": ...,
 *                     every allocator kind, zeros included},
 *    "size_histogram": [{"min": int, "max": int, "count": int}, ...],
 *                      (non-empty power-of-two buckets, min..max inclusive)
 *    "filter": {"include": [str], "exclude": [str]}|null,
 *    "filtered_bytes": int, "filtered_allocations": int, (sites only)
 *    "top_by_bytes": [site entry as in `memtrace report`, at most 5],
 *    "top_by_count": [the same, sorted by number of allocations]} */
#include <inttypes.h>
#include <string.h>

#include "common/format.h"
#include "report_util.h"

#define STATS_TOP 5
#define HIST_BAR 40

static int is_allocator_kind(unsigned type)
{
    return type > 0 && type < MT_ALLOCATOR_COUNT && !mt__event_is_free(type);
}

/* Bucket k holds the sizes of bit length k: [2^(k-1), 2^k - 1]; bucket 0
 * holds size 0. */
static void bucket_range(unsigned k, uint64_t *lo, uint64_t *hi)
{
    if (k == 0) {
        *lo = *hi = 0;
        return;
    }
    *lo = (uint64_t)1 << (k - 1);
    *hi = k == 64 ? UINT64_MAX : ((uint64_t)1 << k) - 1;
}

static void stats_json(FILE *out, mt_capture_t *cap, mt_sites_t *sites)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "total_allocations");
    mt__json_uint(&j, t->total_allocations);
    mt__json_key(&j, "total_frees");
    mt__json_uint(&j, t->total_frees);
    mt__json_key(&j, "unmatched_frees");
    mt__json_uint(&j, t->unmatched_frees);
    mt__json_key(&j, "total_bytes_allocated");
    mt__json_uint(&j, t->total_bytes_allocated);
    mt__json_key(&j, "peak_bytes");
    mt__json_uint(&j, t->peak_bytes);
    mt__json_key(&j, "current_bytes");
    mt__json_uint(&j, t->current_bytes);
    mt__json_key(&j, "current_allocations");
    mt__json_uint(&j, t->current_count);
    mt__json_key(&j, "duration_s");
    mt__json_double(&j, (double)t->duration_ns / 1e9);

    mt__json_key(&j, "by_allocator");
    mt__json_begin_object(&j);
    for (unsigned k = 0; k < MT_ALLOCATOR_COUNT; k++) {
        if (!is_allocator_kind(k))
            continue;
        mt__json_key(&j, mt__event_name(k));
        mt__json_begin_object_compact(&j);
        mt__json_key(&j, "count");
        mt__json_uint(&j, t->by_allocator[k].count);
        mt__json_key(&j, "bytes");
        mt__json_uint(&j, t->by_allocator[k].bytes);
        mt__json_end_object(&j);
    }
    mt__json_end_object(&j);

    mt__json_key(&j, "size_histogram");
    mt__json_begin_array(&j);
    for (unsigned k = 0; k < 65; k++) {
        if (!t->size_histogram[k])
            continue;
        uint64_t lo, hi;
        bucket_range(k, &lo, &hi);
        mt__json_begin_object_compact(&j);
        mt__json_key(&j, "min");
        mt__json_uint(&j, lo);
        mt__json_key(&j, "max");
        mt__json_uint(&j, hi);
        mt__json_key(&j, "count");
        mt__json_uint(&j, t->size_histogram[k]);
        mt__json_end_object(&j);
    }
    mt__json_end_array(&j);

    mt__json_filter_fields(&j, sites);
    mt__json_key(&j, "top_by_bytes");
    mt__json_site_list(&j, sites, STATS_TOP);
    mt_sites_sort(sites, 1);
    mt__json_key(&j, "top_by_count");
    mt__json_site_list(&j, sites, STATS_TOP);
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

static void histogram_text(FILE *out, const mt_totals_t *t)
{
    uint64_t most = 0;
    for (unsigned k = 0; k < 65; k++)
        if (t->size_histogram[k] > most)
            most = t->size_histogram[k];
    if (!most)
        return;
    fputs("\nAllocation sizes:\n", out);
    for (unsigned k = 0; k < 65; k++) {
        uint64_t n = t->size_histogram[k];
        if (!n)
            continue;
        uint64_t lo, hi;
        char a[32], b[32], range[80];
        bucket_range(k, &lo, &hi);
        /* Half-open: [1.0 KiB, 2.0 KiB) reads better than "- 2047 B". */
        if (lo == hi)
            snprintf(range, sizeof range, "%s",
                     mt_format_size(lo, a, sizeof a));
        else
            snprintf(range, sizeof range, "[%s, %s)",
                     mt_format_size(lo, a, sizeof a),
                     hi == UINT64_MAX ? "16.0 EiB"
                                      : mt_format_size(hi + 1, b, sizeof b));
        unsigned bar = (unsigned)((double)n * HIST_BAR / (double)most);
        if (bar == 0)
            bar = 1; /* at least one mark for any non-empty bucket */
        fprintf(out, "  %-24s %12" PRIu64 "  ", range, n);
        for (unsigned i = 0; i < bar; i++)
            fputc('#', out);
        fputc('\n', out);
    }
}

static void top_text(FILE *out, mt_sites_t *sites, const char *title)
{
    size_t n = mt_sites_count(sites);
    if (n > STATS_TOP)
        n = STATS_TOP;
    fprintf(out, "\nTop %zu %s %s:\n", n, mt__plural(n, "site", "sites"),
            title);
    for (size_t i = 0; i < n; i++) {
        const mt_site_t *site = mt_sites_get(sites, i);
        mt__text_site_entry(out, sites, site, i + 1, 0);
        if (site->frame.line && site->frame.file && site->frame.file[0]) {
            fputs("    in ", out);
            mt_fputs_escaped(site->frame.function, out);
            fputc('\n', out);
        }
    }
}

static void stats_text(FILE *out, mt_capture_t *cap, mt_sites_t *sites)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    char a[32];
    fputs("Capture: ", out);
    mt_fputs_escaped(mt_capture_path(cap), out);
    fputc('\n', out);
    mt__text_job(out, cap);
    fprintf(out, "Total allocations:     %" PRIu64 "\n", t->total_allocations);
    fprintf(out, "Total frees:           %" PRIu64 "\n", t->total_frees);
    fprintf(out, "Unmatched frees:       %" PRIu64 "\n", t->unmatched_frees);
    fprintf(out, "Total bytes allocated: %s (%" PRIu64 " B)\n",
            mt_format_size(t->total_bytes_allocated, a, sizeof a),
            t->total_bytes_allocated);
    fprintf(out, "Peak memory:           %s\n",
            mt_format_size(t->peak_bytes, a, sizeof a));
    fprintf(out, "Current memory:        %s in %" PRIu64 " %s\n",
            mt_format_size(t->current_bytes, a, sizeof a), t->current_count,
            mt__plural(t->current_count, "allocation", "allocations"));
    mt__text_filter(out, sites);

    int any = 0;
    for (unsigned k = 0; k < MT_ALLOCATOR_COUNT; k++) {
        if (!is_allocator_kind(k) || !t->by_allocator[k].count)
            continue;
        if (!any++)
            fprintf(out, "\nAllocator          %12s  %12s\n", "count",
                    "bytes");
        fprintf(out, "  %-16s %12" PRIu64 "  %12s\n", mt__event_name(k),
                t->by_allocator[k].count,
                mt_format_size(t->by_allocator[k].bytes, a, sizeof a));
    }
    histogram_text(out, t);
    if (mt_sites_count(sites) == 0)
        return;
    top_text(out, sites, "by bytes allocated");
    mt_sites_sort(sites, 1);
    top_text(out, sites, "by number of allocations");
}

int mt_report_stats(FILE *out, mt_capture_t *cap,
                    const mt_report_opts_t *opts)
{
    return mt__report_with_sites(out, cap, MT_VIEW_TOTAL, opts, stats_json,
                                 stats_text);
}
