/* diff.c: `memtrace diff BEFORE AFTER`: allocation sites matched by their
 * symbolized location (function, file, line), never by address, so two runs
 * of the same program compare. Lines in the shape of tracemalloc's
 * Snapshot.compare_to: "file:line: size=13.8 MiB (+13.8 MiB), count=249627
 * (+249627), average=58 B". JSON:
 *   {"before": str, "after": str, "view": "peak"|"leaks",
 *    "before_bytes": int, "after_bytes": int, "bytes_diff": int,
 *    "sites": int, "new_sites": int, "vanished_sites": int,
 *    "top": [{"site": {function, file, line, module}, "bytes": int,
 *             "bytes_diff": int, "count": int, "count_diff": int,
 *             "average": int, "status": "new"|"vanished"|"changed"|"same"}]}
 * top is sorted by the size of the change, largest first. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "memtrace/reporters.h"
#include "report_util.h"

typedef struct {
    const mt_frame_t *frame; /* borrowed from one side's sites */
    mt_amount_t before, after;
    int in_before, in_after;
} diff_row_t;

static int cmp_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int cmp_location(const mt_frame_t *a, const mt_frame_t *b)
{
    int c = cmp_str(a->file, b->file);
    if (!c)
        c = a->line < b->line ? -1 : a->line > b->line;
    if (!c)
        c = cmp_str(a->function, b->function);
    return c;
}

static int cmp_row_location(const void *x, const void *y)
{
    return cmp_location(((const diff_row_t *)x)->frame,
                        ((const diff_row_t *)y)->frame);
}

static int64_t bytes_diff(const diff_row_t *r)
{
    return (int64_t)r->after.bytes - (int64_t)r->before.bytes;
}

static int cmp_row_change(const void *x, const void *y)
{
    const diff_row_t *a = x, *b = y;
    int64_t da = llabs(bytes_diff(a)), db = llabs(bytes_diff(b));
    if (da != db)
        return da > db ? -1 : 1;
    if (a->after.bytes != b->after.bytes)
        return a->after.bytes > b->after.bytes ? -1 : 1;
    return cmp_row_location(x, y);
}

/* One row per location of either side: both sides' sites sorted by
 * location, then merged. Returns the rows (malloc'd) or NULL. */
static diff_row_t *merge_sites(mt_sites_t *before, mt_sites_t *after, size_t *n)
{
    size_t nb = mt_sites_count(before), na = mt_sites_count(after);
    diff_row_t *rows = calloc(nb + na + 1, sizeof *rows);
    if (!rows)
        return NULL;
    for (size_t i = 0; i < nb; i++) {
        const mt_site_t *s = mt_sites_get(before, i);
        rows[i] = (diff_row_t){&s->frame, s->amount, {0, 0}, 1, 0};
    }
    for (size_t i = 0; i < na; i++) {
        const mt_site_t *s = mt_sites_get(after, i);
        rows[nb + i] = (diff_row_t){&s->frame, {0, 0}, s->amount, 0, 1};
    }
    qsort(rows, nb + na, sizeof *rows, cmp_row_location);
    size_t w = 0;
    for (size_t i = 0; i < nb + na; i++) {
        if (w && cmp_location(rows[w - 1].frame, rows[i].frame) == 0) {
            diff_row_t *d = &rows[w - 1];
            d->before.bytes += rows[i].before.bytes;
            d->before.count += rows[i].before.count;
            d->after.bytes += rows[i].after.bytes;
            d->after.count += rows[i].after.count;
            d->in_before |= rows[i].in_before;
            d->in_after |= rows[i].in_after;
        } else {
            rows[w++] = rows[i];
        }
    }
    qsort(rows, w, sizeof *rows, cmp_row_change);
    *n = w;
    return rows;
}

static const char *status(const diff_row_t *r)
{
    if (!r->in_before)
        return "new";
    if (!r->in_after)
        return "vanished";
    return bytes_diff(r) || r->after.count != r->before.count ? "changed" : "same";
}

static void signed_size(FILE *out, int64_t d)
{
    char buf[32];
    fputc(d < 0 ? '-' : '+', out);
    fputs(mt_format_size(d < 0 ? (uint64_t)-d : (uint64_t)d, buf, sizeof buf), out);
}

static void diff_text(FILE *out, const mt_diff_input_t *in, diff_row_t *rows,
                      size_t n, size_t top)
{
    fputs("Before: ", out);
    mt_fputs_escaped(in->before_path, out);
    fputs("\nAfter:  ", out);
    mt_fputs_escaped(in->after_path, out);
    fprintf(out, "\nView: %s\n", in->view == MT_VIEW_LEAKS
                                     ? "live when tracing ended (leaks)"
                                     : "live at the high-water mark");
    size_t n_in, n_ex;
    const char *const *inc = mt_filter_globs(in->filter, 0, &n_in);
    const char *const *exc = mt_filter_globs(in->filter, 1, &n_ex);
    if (n_in + n_ex) {
        fputs("Filter:", out);
        for (size_t i = 0; i < n_in + n_ex; i++) {
            fputs(i < n_in ? " --include '" : " --exclude '", out);
            mt_fputs_escaped(i < n_in ? inc[i] : exc[i - n_in], out);
            fputc('\'', out);
        }
        fputc('\n', out);
    }
    fputc('\n', out);
    if (!n) {
        fputs("No allocation sites on either side.\n", out);
        return;
    }
    fprintf(out, "Top %zu differences:\n", top < n ? top : n);
    for (size_t i = 0; i < n && i < top; i++) {
        const diff_row_t *r = &rows[i];
        char size[32], avg[32];
        mt_fputs_escaped(r->frame->file, out);
        fprintf(out, ":%u: size=%s (", r->frame->line,
                mt_format_size(r->after.bytes, size, sizeof size));
        signed_size(out, bytes_diff(r));
        fprintf(out, "), count=%" PRIu64 " (%+" PRId64 "), average=%s", r->after.count,
                (int64_t)r->after.count - (int64_t)r->before.count,
                mt_format_size(r->after.count ? r->after.bytes / r->after.count : 0,
                               avg, sizeof avg));
        fputs("  in ", out);
        mt_fputs_escaped(r->frame->function, out);
        if (!r->in_before || !r->in_after)
            fprintf(out, " [%s]", status(r));
        fputc('\n', out);
    }
}

static void diff_json(FILE *out, const mt_diff_input_t *in, diff_row_t *rows,
                      size_t n, size_t top)
{
    uint64_t before = 0, after = 0;
    size_t fresh = 0, gone = 0;
    for (size_t i = 0; i < n; i++) {
        before += rows[i].before.bytes;
        after += rows[i].after.bytes;
        fresh += !rows[i].in_before;
        gone += !rows[i].in_after;
    }
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "before");
    mt__json_string(&j, in->before_path);
    mt__json_key(&j, "after");
    mt__json_string(&j, in->after_path);
    mt__json_key(&j, "view");
    mt__json_string(&j, mt__view_name(in->view));
    mt__json_key(&j, "filter");
    mt__json_filter(&j, in->filter);
    mt__json_key(&j, "before_bytes");
    mt__json_uint(&j, before);
    mt__json_key(&j, "after_bytes");
    mt__json_uint(&j, after);
    mt__json_key(&j, "bytes_diff");
    mt__json_int(&j, (int64_t)after - (int64_t)before);
    mt__json_key(&j, "sites");
    mt__json_uint(&j, n);
    mt__json_key(&j, "new_sites");
    mt__json_uint(&j, fresh);
    mt__json_key(&j, "vanished_sites");
    mt__json_uint(&j, gone);
    mt__json_key(&j, "top");
    mt__json_begin_array(&j);
    for (size_t i = 0; i < n && i < top; i++) {
        const diff_row_t *r = &rows[i];
        mt__json_begin_object(&j);
        mt__json_key(&j, "site");
        mt__json_frame(&j, r->frame);
        mt__json_key(&j, "bytes");
        mt__json_uint(&j, r->after.bytes);
        mt__json_key(&j, "bytes_diff");
        mt__json_int(&j, bytes_diff(r));
        mt__json_key(&j, "count");
        mt__json_uint(&j, r->after.count);
        mt__json_key(&j, "count_diff");
        mt__json_int(&j, (int64_t)r->after.count - (int64_t)r->before.count);
        mt__json_key(&j, "average");
        mt__json_uint(&j, r->after.count ? r->after.bytes / r->after.count : 0);
        mt__json_key(&j, "status");
        mt__json_string(&j, status(r));
        mt__json_end_object(&j);
    }
    mt__json_end_array(&j);
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

int mt_report_diff(FILE *out, const mt_diff_input_t *in, const mt_report_opts_t *opts)
{
    mt_view_t view = in->view == MT_VIEW_LEAKS ? MT_VIEW_LEAKS : MT_VIEW_PEAK;
    mt_sites_t *before = NULL, *after = NULL;
    mt_sites_opts_t o = {view, in->filter, NULL, NULL};
    int rc = mt_sites_build_opts(in->before, &o, &before);
    if (!rc)
        rc = mt_sites_build_opts(in->after, &o, &after);
    size_t n = 0;
    diff_row_t *rows = rc ? NULL : merge_sites(before, after, &n);
    if (!rc && !rows)
        rc = MT_ENOMEM;
    if (!rc) {
        size_t top = opts && opts->top ? opts->top : MT_REPORT_DEFAULT_TOP;
        if (opts && opts->json)
            diff_json(out, in, rows, n, top);
        else
            diff_text(out, in, rows, n, top);
    }
    free(rows);
    mt_sites_free(before);
    mt_sites_free(after);
    return rc ? rc : mt__report_done(out, 0);
}
