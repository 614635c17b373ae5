/* stages.c: `memtrace stages`, what each named stage of the program cost:
 * one row per full dotted stage name, all its calls summed (the rows come
 * from the reader, mt_capture_stages).
 *
 * JSON shape:
 *   {"capture": str, "duration_s": float, "complete": bool,
 *    "warning": str|null, "stage_records": int, "unclosed": int,
 *    "unmatched_leaves": int, "mismatched_leaves": int,
 *    "stages": [{"stage": str, "depth": int, "calls": int,
 *                "wall_s": float, "wall_max_s": float, "cpu_s": float,
 *                "thread_cpu_s": float, "bytes_allocated": int,
 *                "allocations": int, "heap_delta_bytes": int,
 *                "heap_peak_bytes": int, "heap_peak_rise_bytes": int,
 *                "rss_delta_bytes": int, "unclosed": int,
 *                "untraced_growth": bool}]}
 * Rows come in the order their first call began. */
#include <inttypes.h>
#include <string.h>

#include "report_util.h"

static void stages_json(FILE *out, mt_capture_t *cap)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    const mt_stage_totals_t *st = mt_capture_stage_totals(cap);
    const mt_stage_t *s = mt_capture_stages(cap);
    size_t n = mt_capture_stage_count(cap);
    mt_json_t j;
    mt__json_init(&j, out, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "capture");
    mt__json_string(&j, mt_capture_path(cap));
    mt__json_key(&j, "duration_s");
    mt__json_double(&j, (double)t->duration_ns / 1e9);
    mt__json_key(&j, "complete");
    mt__json_bool(&j, t->complete);
    mt__json_key(&j, "warning");
    mt__json_string(&j, mt_capture_warning(cap));
    mt__json_key(&j, "stage_records");
    mt__json_uint(&j, st->records);
    mt__json_key(&j, "unclosed");
    mt__json_uint(&j, st->unclosed);
    mt__json_key(&j, "unmatched_leaves");
    mt__json_uint(&j, st->unmatched_leaves);
    mt__json_key(&j, "mismatched_leaves");
    mt__json_uint(&j, st->mismatched_leaves);
    mt__json_key(&j, "stages");
    mt__json_begin_array(&j);
    for (size_t i = 0; i < n; i++, s++) {
        mt__json_begin_object_compact(&j);
        mt__json_key(&j, "stage");
        mt__json_string(&j, s->name);
        mt__json_key(&j, "depth");
        mt__json_uint(&j, s->depth);
        mt__json_key(&j, "calls");
        mt__json_uint(&j, s->calls);
        mt__json_key(&j, "wall_s");
        mt__json_double(&j, (double)s->wall_ns / 1e9);
        mt__json_key(&j, "wall_max_s");
        mt__json_double(&j, (double)s->wall_max_ns / 1e9);
        mt__json_key(&j, "cpu_s");
        mt__json_double(&j, (double)s->cpu_ns / 1e9);
        mt__json_key(&j, "thread_cpu_s");
        mt__json_double(&j, (double)s->thread_cpu_ns / 1e9);
        mt__json_key(&j, "bytes_allocated");
        mt__json_uint(&j, s->bytes_allocated);
        mt__json_key(&j, "allocations");
        mt__json_uint(&j, s->allocations);
        mt__json_key(&j, "heap_delta_bytes");
        mt__json_int(&j, s->heap_delta);
        mt__json_key(&j, "heap_peak_bytes");
        mt__json_uint(&j, s->heap_peak);
        mt__json_key(&j, "heap_peak_rise_bytes");
        mt__json_uint(&j, s->heap_peak_rise);
        mt__json_key(&j, "rss_delta_bytes");
        mt__json_int(&j, s->rss_delta);
        mt__json_key(&j, "unclosed");
        mt__json_uint(&j, s->unclosed);
        mt__json_key(&j, "untraced_growth");
        mt__json_bool(&j, s->untraced_growth);
        mt__json_end_object(&j);
    }
    mt__json_end_array(&j);
    mt__json_end_object(&j);
    mt__json_finish(&j);
}

/* "+1.5 MiB", "-512 B", "0 B" into buf. */
static const char *signed_size(int64_t v, char *buf, size_t len)
{
    char a[32];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    snprintf(buf, len, "%s%s", v > 0 ? "+" : v < 0 ? "-" : "",
             mt_format_size(mag, a, sizeof a));
    return buf;
}

static void stages_text(FILE *out, mt_capture_t *cap)
{
    const mt_stage_totals_t *st = mt_capture_stage_totals(cap);
    const mt_stage_t *s = mt_capture_stages(cap);
    size_t n = mt_capture_stage_count(cap);
    char a[32], b[32], c[32], d[32];

    fputs("Stages of ", out);
    mt_fputs_escaped(mt_capture_path(cap), out);
    fputc('\n', out);
    if (!n) {
        fputs("\nNo stages were recorded. Mark them with "
              "`with memtrace.stage(\"name\"):` (Python) or\n"
              "mt_stage_enter(\"name\") / mt_stage_leave() "
              "(C, <memtrace/tracer.h>).\n", out);
        return;
    }
    /* The name column fits the longest indented name (up to a limit). */
    int w = 5;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(s[i].name) + 2 * s[i].depth;
        if ((int)l > w)
            w = l > 48 ? 48 : (int)l;
    }
    int flagged = 0, unclosed = 0;
    fprintf(out, "\n%-*s %7s %9s %9s %9s %11s %11s %11s %11s\n", w, "stage",
            "calls", "wall s", "max s", "cpu s", "allocated", "net heap",
            "heap peak", "RSS change");
    for (size_t i = 0; i < n; i++, s++) {
        fprintf(out, "%*s", 2 * (int)s->depth, "");
        mt_fputs_escaped(s->name, out);
        int pad = w - 2 * (int)s->depth - (int)strlen(s->name);
        fprintf(out, "%*s %7" PRIu64 " %9.3f %9.3f %9.3f %11s %11s %11s %11s",
                pad > 0 ? pad : 0, "", s->calls, (double)s->wall_ns / 1e9,
                (double)s->wall_max_ns / 1e9, (double)s->cpu_ns / 1e9,
                mt_format_size(s->bytes_allocated, a, sizeof a),
                signed_size(s->heap_delta, b, sizeof b),
                mt_format_size(s->heap_peak, c, sizeof c),
                signed_size(s->rss_delta, d, sizeof d));
        if (s->untraced_growth) {
            fputs("  !", out);
            flagged = 1;
        }
        if (s->unclosed) {
            fputs(" (unclosed)", out);
            unclosed = 1;
        }
        fputc('\n', out);
    }
    fputs("\nTimes are wall and process CPU seconds summed over the calls; "
          "\"allocated\" counts\nthe stage's own thread; heap and RSS are the "
          "process's, from each call's start\nto its end; a stage includes "
          "the stages nested in it.\n", out);
    if (flagged)
        fputs("! RSS grew much more than the traced heap: native memory the "
              "hooks do not see\n  (allocations outside them, allocator "
              "fragmentation, pages touched, caches).\n", out);
    if (unclosed)
        fprintf(out, "(unclosed): %" PRIu64 " call(s) were still open when "
                "the capture ended; closed there.\n", st->unclosed);
}

int mt_report_stages(FILE *out, mt_capture_t *cap, const mt_report_opts_t *opts)
{
    if (opts && opts->json)
        stages_json(out, cap);
    else
        stages_text(out, cap);
    return mt__report_done(out, 0);
}
