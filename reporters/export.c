/* export.c: captures in other tools' formats. folded: Brendan Gregg's
 * collapsed stacks ("outer;...;inner BYTES" per line), which flamegraph.pl,
 * speedscope and inferno read. csv: one row per allocation site per
 * snapshot (the high-water mark and the end), for pandas and spreadsheets.
 * speedscope and pprof have files of their own (export_speedscope.c,
 * export_pprof.c); the stacks they share are made here. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "export.h"
#include "memtrace/reporters.h"
#include "report_util.h"

size_t mt__export_stack(mt_sites_t *sites, uint32_t node, mt_frame_t *frames)
{
    int truncated = 0;
    size_t n = mt_sites_stack(sites, node, frames, MT_EXPORT_MAX_STACK - 1,
                              &truncated);
    if (n == 0 || truncated) {
        /* A stack without frames is "<unknown>", as the reports' site. */
        static const mt_frame_t unknown = {.function = "<unknown>",
                                           .file = "<unknown>", .module = ""};
        static const mt_frame_t cut = {.function = "[stack truncated]",
                                       .file = "", .module = ""};
        frames[n] = n ? cut : unknown;
        n++;
    }
    return n;
}

/* A frame in folded form: "function (file:line)". ';' separates frames and
 * a newline ends the record, so both (and other control characters) are
 * replaced; the rest is written as it is (UTF-8 passes through). */
static void folded_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        fputc(c == ';' ? ':' : c < 0x20 || c == 0x7f ? '?' : c, out);
    }
}

static void folded_frame(FILE *out, const mt_frame_t *f)
{
    folded_text(out, f->function);
    if (f->line && f->file[0]) {
        fputs(" (", out);
        folded_text(out, f->file);
        fprintf(out, ":%u)", f->line);
    }
}

int mt_report_folded(FILE *out, mt_capture_t *cap, mt_view_t view,
                     const mt_filter_t *filter)
{
    mt_sites_t *sites;
    mt_sites_opts_t o = {view, filter, NULL, NULL};
    int rc = mt_sites_build_opts(cap, &o, &sites);
    if (rc)
        return rc;
    const mt_node_stats_t *st = mt_capture_node_stats(cap);
    size_t n = mt_capture_node_count(cap);
    mt_frame_t frames[MT_REPORT_MAX_STACK];
    for (uint32_t node = 1; node < n; node++) {
        mt_amount_t a = mt_view_amount(&st[node], view);
        if (!a.bytes || !mt_sites_node_kept(sites, node))
            continue;
        size_t depth = mt_sites_stack(sites, node, frames, MT_REPORT_MAX_STACK, NULL);
        if (!depth)
            continue;
        for (size_t i = depth; i-- > 0;) { /* outermost first */
            folded_frame(out, &frames[i]);
            fputc(i ? ';' : ' ', out);
        }
        fprintf(out, "%" PRIu64 "\n", a.bytes);
    }
    mt_sites_free(sites);
    return mt__report_done(out, 0);
}

/* RFC 4180: quoted when it holds a comma, a quote or a line break; quotes
 * doubled. A leading = + - @ is prefixed with ' so that a spreadsheet does
 * not run a name from the profiled program as a formula. */
static void csv_field(FILE *out, const char *s)
{
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        fputc('"', out);
    if (strchr("=+-@", s[0]) && s[0])
        fputc('\'', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    if (quote)
        fputc('"', out);
}

int mt_report_csv(FILE *out, mt_capture_t *cap, const mt_filter_t *filter)
{
    static const mt_view_t views[] = {MT_VIEW_PEAK, MT_VIEW_LEAKS};
    fputs("snapshot,bytes,count,function,file,line,module\n", out);
    for (size_t v = 0; v < 2; v++) {
        mt_sites_t *sites;
        mt_sites_opts_t o = {views[v], filter, NULL, NULL};
        int rc = mt_sites_build_opts(cap, &o, &sites);
        if (rc)
            return rc;
        for (size_t i = 0; i < mt_sites_count(sites); i++) {
            const mt_site_t *s = mt_sites_get(sites, i);
            fprintf(out, "%s,%" PRIu64 ",%" PRIu64 ",", mt__view_name(views[v]),
                    s->amount.bytes, s->amount.count);
            csv_field(out, s->frame.function);
            fputc(',', out);
            csv_field(out, s->frame.file);
            fprintf(out, ",%u,", s->frame.line);
            csv_field(out, s->frame.module ? s->frame.module : "");
            fputc('\n', out);
        }
        mt_sites_free(sites);
    }
    return mt__report_done(out, 0);
}
