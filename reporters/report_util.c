/* report_util.c: how frames, sites and stacks look in every report, as
 * JSON objects and as tracemalloc-style text lines. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "report_util.h"

void mt__json_frame(mt_json_t *j, const mt_frame_t *f)
{
    mt__json_begin_object_compact(j);
    mt__json_key(j, "function");
    mt__json_string(j, f->function ? f->function : "");
    mt__json_key(j, "file");
    mt__json_string(j, f->file ? f->file : "");
    mt__json_key(j, "line");
    mt__json_uint(j, f->line);
    mt__json_key(j, "module");
    mt__json_string(j, f->module ? f->module : "");
    mt__json_end_object(j);
}

void mt__json_site_entry(mt_json_t *j, mt_sites_t *sites,
                         const mt_site_t *site)
{
    mt_frame_t stack[MT_REPORT_MAX_STACK];
    int truncated = 0;
    size_t n = mt_sites_stack(sites, site->heaviest_node, stack,
                              MT_REPORT_MAX_STACK, &truncated);
    mt__json_begin_object(j);
    mt__json_key(j, "bytes");
    mt__json_uint(j, site->amount.bytes);
    mt__json_key(j, "count");
    mt__json_uint(j, site->amount.count);
    mt__json_key(j, "site");
    mt__json_frame(j, &site->frame);
    mt__json_key(j, "stack");
    mt__json_begin_array(j);
    for (size_t i = 0; i < n; i++)
        mt__json_frame(j, &stack[i]);
    mt__json_end_array(j);
    mt__json_key(j, "stack_truncated");
    mt__json_bool(j, truncated);
    mt__json_end_object(j);
}

void mt__json_site_list(mt_json_t *j, mt_sites_t *sites, size_t n)
{
    size_t count = mt_sites_count(sites);
    if (n > count)
        n = count;
    mt__json_begin_array(j);
    for (size_t i = 0; i < n; i++)
        mt__json_site_entry(j, sites, mt_sites_get(sites, i));
    mt__json_end_array(j);
}

void mt__text_location(FILE *out, const mt_frame_t *f)
{
    const char *file = f->file ? f->file : "";
    const char *function = f->function ? f->function : "";
    if (f->line && file[0]) {
        mt_fputs_escaped(file, out);
        fprintf(out, ":%u", f->line);
        return;
    }
    /* No line: the function ("ls+0x180b0", "0x401000", or a symbol without
     * debug info) says more than the shared object's path. */
    mt_fputs_escaped(function[0] ? function : file[0] ? file : "<unknown>",
                     out);
}

void mt__text_frame(FILE *out, const mt_frame_t *f)
{
    const char *file = f->file ? f->file : "";
    const char *function = f->function ? f->function : "";
    if (f->line && file[0]) {
        mt__text_location(out, f);
        fputs(" in ", out);
        mt_fputs_escaped(function, out);
    } else if (file[0] && function[0]) {
        mt_fputs_escaped(function, out);
        fputs(" (", out);
        mt_fputs_escaped(file, out);
        fputc(')', out);
    } else {
        mt__text_location(out, f);
    }
}

const char *mt__plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

void mt__text_site_entry(FILE *out, mt_sites_t *sites, const mt_site_t *site,
                         size_t rank, int traceback)
{
    char size[32];
    fprintf(out, "#%zu: ", rank);
    mt__text_location(out, &site->frame);
    fprintf(out, ": %s in %" PRIu64 " %s\n",
            mt_format_size(site->amount.bytes, size, sizeof size),
            site->amount.count,
            mt__plural(site->amount.count, "allocation", "allocations"));
    if (!traceback)
        return;
    mt_frame_t stack[MT_REPORT_MAX_STACK];
    int truncated = 0;
    size_t n = mt_sites_stack(sites, site->heaviest_node, stack,
                              MT_REPORT_MAX_STACK, &truncated);
    for (size_t i = 0; i < n; i++) {
        fputs("    ", out);
        mt__text_frame(out, &stack[i]);
        fputs(stack[i].inlined ? " (inlined)\n" : "\n", out);
    }
    if (truncated)
        fprintf(out, "    ... (stack cut after %d frames)\n",
                MT_REPORT_MAX_STACK);
}

char *mt__command_line(const mt_header_t *hdr, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; hdr->argv && hdr->argv[i] && used + 1 < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? " " : "",
                         hdr->argv[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used >= len)
        buf[len - 1] = '\0';
    return buf;
}

int mt__report_done(FILE *out, int rc)
{
    if (fflush(out) != 0 || ferror(out))
        return rc ? rc : MT_EIO;
    return rc;
}

const char *mt__view_name(mt_view_t view)
{
    switch (view) {
    case MT_VIEW_LEAKS: return "leaks";
    case MT_VIEW_TOTAL: return "all";
    case MT_VIEW_TEMPORARY: return "temporary";
    default: return "peak";
    }
}

void mt__json_filter(mt_json_t *j, const mt_filter_t *filter)
{
    if (!mt_filter_active(filter)) {
        mt__json_null(j);
        return;
    }
    mt__json_begin_object_compact(j);
    for (int k = 0; k < 2; k++) {
        size_t n;
        const char *const *globs = mt_filter_globs(filter, k, &n);
        mt__json_key(j, k ? "exclude" : "include");
        mt__json_begin_array(j);
        for (size_t i = 0; i < n; i++)
            mt__json_string(j, globs[i]);
        mt__json_end_array(j);
    }
    mt__json_end_object(j);
}

void mt__json_filter_fields(mt_json_t *j, const mt_sites_t *sites)
{
    mt__json_key(j, "filter");
    mt__json_filter(j, mt_sites_filter(sites));
    mt__json_key(j, "filtered_bytes");
    mt__json_uint(j, mt_sites_filtered_out(sites).bytes);
    mt__json_key(j, "filtered_allocations");
    mt__json_uint(j, mt_sites_filtered_out(sites).count);
}

void mt__text_filter(FILE *out, const mt_sites_t *sites)
{
    const mt_filter_t *filter = mt_sites_filter(sites);
    if (!mt_filter_active(filter))
        return;
    fputs("Filter:", out);
    for (int k = 0; k < 2; k++) {
        size_t n;
        const char *const *globs = mt_filter_globs(filter, k, &n);
        for (size_t i = 0; i < n; i++) {
            fprintf(out, " --%s '", k ? "exclude" : "include");
            mt_fputs_escaped(globs[i], out);
            fputc('\'', out);
        }
    }
    mt_amount_t a = mt_sites_filtered_out(sites);
    char size[32];
    fprintf(out, ": left out %s in %" PRIu64 " %s\n",
            mt_format_size(a.bytes, size, sizeof size), a.count,
            mt__plural(a.count, "allocation", "allocations"));
}

int mt__report_with_sites(FILE *out, mt_capture_t *cap, mt_view_t view,
                          const mt_report_opts_t *opts,
                          mt_sites_writer_fn json, mt_sites_writer_fn text)
{
    mt_sites_t *sites;
    mt_sites_opts_t o = {view, opts ? opts->filter : NULL, NULL, NULL};
    int rc = mt_sites_build_opts(cap, &o, &sites);
    if (rc)
        return rc;
    (opts && opts->json ? json : text)(out, cap, sites);
    mt_sites_free(sites);
    return mt__report_done(out, 0);
}

/* ---- Windows and combined processes ------------------------------------- */

void mt__json_job(mt_json_t *j, mt_capture_t *cap)
{
    const mt_window_t *w = mt_capture_window(cap);
    mt__json_key(j, "window");
    if (w->active) {
        mt__json_begin_object(j);
        mt__json_key(j, "from_s");
        mt__json_double(j, (double)w->from_ns / 1e9);
        mt__json_key(j, "to_s");
        mt__json_double(j, (double)w->to_ns / 1e9);
        mt__json_key(j, "start_bytes");
        mt__json_uint(j, w->start_bytes);
        mt__json_key(j, "clamped");
        mt__json_bool(j, w->clamped);
        mt__json_key(j, "exact");
        mt__json_bool(j, w->exact);
        mt__json_end_object(j);
    } else {
        mt__json_null(j);
    }
    size_t n = mt_capture_process_count(cap);
    const mt_process_t *p = mt_capture_processes(cap);
    mt__json_key(j, "processes");
    mt__json_begin_array(j);
    for (size_t i = 0; i < n; i++) {
        mt__json_begin_object(j);
        mt__json_key(j, "pid");
        mt__json_int(j, p[i].pid);
        mt__json_key(j, "parent_pid");
        mt__json_int(j, p[i].parent_pid);
        mt__json_key(j, "command");
        mt__json_string(j, p[i].command);
        mt__json_key(j, "capture");
        mt__json_string(j, p[i].path);
        mt__json_key(j, "start_s");
        mt__json_double(j, (double)p[i].start_ns / 1e9);
        mt__json_key(j, "duration_s");
        mt__json_double(j, (double)p[i].duration_ns / 1e9);
        mt__json_key(j, "peak_bytes");
        mt__json_uint(j, p[i].peak_bytes);
        mt__json_key(j, "peak_time_s");
        mt__json_double(j, (double)p[i].peak_time_ns / 1e9);
        mt__json_key(j, "at_peak_bytes");
        mt__json_uint(j, p[i].at_peak_bytes);
        mt__json_key(j, "leaked_bytes");
        mt__json_uint(j, p[i].leaked_bytes);
        mt__json_key(j, "leaked_allocations");
        mt__json_uint(j, p[i].leaked_count);
        mt__json_key(j, "total_allocations");
        mt__json_uint(j, p[i].total_allocations);
        mt__json_key(j, "total_bytes_allocated");
        mt__json_uint(j, p[i].total_bytes_allocated);
        mt__json_key(j, "complete");
        mt__json_bool(j, p[i].complete);
        mt__json_end_object(j);
    }
    mt__json_end_array(j);
}

void mt__text_job(FILE *out, mt_capture_t *cap)
{
    const mt_window_t *w = mt_capture_window(cap);
    char a[32], b[32], c[32];
    if (w->active)
        fprintf(out, "Window: %.3f s to %.3f s%s (heap %s at its start; %s)\n",
                (double)w->from_ns / 1e9, (double)w->to_ns / 1e9,
                w->clamped ? " (the end of the run)" : "",
                mt_format_size(w->start_bytes, a, sizeof a),
                w->exact ? "exact edges, at stage marks"
                         : "edges at RSS samples");
    size_t n = mt_capture_process_count(cap);
    if (n < 2)
        return;
    const mt_process_t *p = mt_capture_processes(cap);
    fprintf(out, "Combined: %zu processes; the peak is the high-water mark "
                 "of their summed heaps\n", n);
    fprintf(out, "  %8s %8s %10s %10s %10s %8s  %s\n", "pid", "parent",
            "peak", "at peak", "leaked", "start", "command");
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "  %8" PRId64 " %8" PRId64 " %10s %10s %10s %7.3fs  ",
                p[i].pid, p[i].parent_pid,
                mt_format_size(p[i].peak_bytes, a, sizeof a),
                mt_format_size(p[i].at_peak_bytes, b, sizeof b),
                mt_format_size(p[i].leaked_bytes, c, sizeof c),
                (double)p[i].start_ns / 1e9);
        mt_fputs_escaped(p[i].command, out);
        fputc('\n', out);
    }
}
