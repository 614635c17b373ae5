/* inputs.c: what every reading command shares about its input: the
 * captures it reads (one, several, or a --follow-fork parent that finds its
 * children, all combined into one capture by the reader) and the window of
 * the run it looks at (--from/--to). Commands put MT_INPUT_LONGOPTS in
 * their option table, hand each option to mt__inputs_option, and load with
 * mt__inputs_load. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/format.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

/* Parses a --from/--to value: seconds from the start ("1.5", "2s",
 * "250ms") when it begins like a number (a digit, '.', '+' or '-'), else
 * a stage name (so that stages named "info" or "nano" are names, not
 * strtod's inf and nan). A bad number is an error (-1). */
static int parse_time(const char *arg, mt_time_arg_t *out)
{
    char *end;
    errno = 0;
    memset(out, 0, sizeof *out);
    out->set = 1;
    if (!arg[0])
        return -1;
    if (!strchr("0123456789.+-", arg[0])) {
        out->name = arg;
        return 0;
    }
    double v = strtod(arg, &end);
    if (end == arg)
        return -1;
    if (*end && strcasecmp(end, "s") && strcasecmp(end, "ms"))
        return -1; /* a number with an unknown unit */
    if (errno || !isfinite(v) || v < 0 || arg[0] == '+')
        return -1;
    if (strcasecmp(end, "ms") == 0)
        v /= 1000;
    if (v * 1e9 >= 18446744073709551615.0)
        return -1;
    out->seconds = v;
    return 0;
}

int mt__inputs_option(const char *cmd, int c, const char *arg,
                      mt_inputs_t *in)
{
    switch (c) {
    case MT_OPT_FROM:
    case MT_OPT_TO: {
        const char *opt = c == MT_OPT_FROM ? "--from" : "--to";
        mt_time_arg_t *t = c == MT_OPT_FROM ? &in->from : &in->to;
        if (parse_time(arg, t) < 0)
            return mt__usage_error(cmd, "%s needs a time in seconds from the "
                                        "start, 0 or more (1.5, 2s, 250ms), "
                                        "or a stage name, not '%s'", opt, arg);
        return -1;
    }
    case MT_OPT_NO_CHILDREN:
        in->no_children = 1;
        return -1;
    case MT_OPT_INCLUDE:
    case MT_OPT_EXCLUDE:
        return mt__filter_option(cmd, c, arg) ? MT_EXIT_USAGE : -1;
    case MT_OPT_THRESHOLD:
        if (mt__parse_threshold(arg, &in->temporary_threshold) < 0)
            return mt__usage_error(cmd, "--temporary-allocation-threshold "
                                        "needs a whole number from 1 to "
                                        "2^32, not '%s'", arg);
        return -1;
    default:
        return -2;
    }
}

int mt__inputs_check(const char *cmd, const mt_inputs_t *in)
{
    /* A stage edge is an event number, a time edge an RSS sample: which
     * comes first is not known before reading, so they are not mixed. */
    if (in->from.set && in->to.set && !in->from.name != !in->to.name)
        return mt__usage_error(cmd, "--from and --to must both be times or "
                                    "both stage names ('%s' is a stage name)",
                               in->from.name ? in->from.name : in->to.name);
    if (in->from.name || in->to.name)
        return -1; /* checked against the capture's stages when read */
    if (in->to.set && in->to.seconds == 0)
        return mt__usage_error(cmd, "--to 0 leaves no window: give a time "
                                    "after the start");
    if (in->from.set && in->to.set && in->from.seconds >= in->to.seconds)
        return mt__usage_error(cmd, "--from (%g s) must be before --to (%g s)",
                               in->from.seconds, in->to.seconds);
    return -1;
}

/* Prints a load's error, or its warning, as one escaped line each. */
static void print_load(const char *path, int rc, const char *err,
                       const mt_capture_t *cap)
{
    if (rc < 0 || !cap) {
        fputs("memtrace: ", stderr);
        if (err[0]) {
            mt_fputs_escaped(err, stderr);
        } else { /* the reader always writes one; a fallback */
            mt_fputs_escaped(path, stderr);
            fprintf(stderr, ": %s", mt_strerror(rc < 0 ? rc : MT_EINVAL));
        }
        fputc('\n', stderr);
        return;
    }
    const char *warning = mt_capture_warning(cap);
    if (warning) {
        fputs("memtrace: warning: ", stderr);
        /* Name the file, as errors do, unless the reader already did. */
        if (!strstr(warning, path)) {
            mt_fputs_escaped(path, stderr);
            fputs(": ", stderr);
        }
        mt_fputs_escaped(warning, stderr);
        fputc('\n', stderr);
    }
}

/* The stage called name (its full dotted name), or NULL. */
static const mt_stage_t *find_stage(const mt_capture_t *cap, const char *name)
{
    const mt_stage_t *s = mt_capture_stages(cap);
    for (size_t i = 0; i < mt_capture_stage_count(cap); i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

/* The one-line error for a name that is no stage of cap: the first few
 * names it has, so that a typo or a missing "outer." shows. */
static void no_such_stage(const char *path, const char *opt, const char *name,
                          const mt_capture_t *cap)
{
    enum { SHOWN = 8 };
    size_t n = mt_capture_stage_count(cap);
    const mt_stage_t *s = mt_capture_stages(cap);
    fputs("memtrace: ", stderr);
    mt_fputs_escaped(path, stderr);
    fprintf(stderr, ": %s '", opt);
    mt_fputs_escaped(name, stderr);
    if (!n) {
        fputs("' is not a time (1.5, 2s, 250ms) and this capture has no "
              "stages (memtrace.stage(), mt_stage_enter())\n", stderr);
        return;
    }
    fputs("' is not a stage of this capture; its stages: ", stderr);
    for (size_t i = 0; i < n && i < SHOWN; i++) {
        fputs(i ? ", " : "", stderr);
        mt_fputs_escaped(s[i].name, stderr);
    }
    if (n > SHOWN)
        fprintf(stderr, " (and %zu more: memtrace stages lists them)",
                n - SHOWN);
    fputc('\n', stderr);
}

/* Places the window of in's stage names on the capture at path: a first,
 * quick pass reads its stage records only (no events), and the window's
 * edges are the stages' exact places in the event order. --from NAME:
 * where NAME was first entered, and, without --to, up to where it was last
 * left (the stage's own window); --to NAME: where NAME was last left.
 * Returns 0, or -1 after printing why not. */
static int stage_window(const char *path, const mt_inputs_t *in,
                        mt_load_opts_t *opts)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fputs("memtrace: ", stderr);
        mt_fputs_escaped(path, stderr);
        fputs(": a window by stage name reads the capture twice (its stages "
              "first), so it must be a file, not a pipe\n", stderr);
        return -1;
    }
    char err[1024] = "";
    mt_load_opts_t o = {.stages_only = 1};
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    if (rc < 0) {
        print_load(path, rc, err, NULL);
        return -1;
    }
    opts->window = 1;
    opts->from_ns = 0;
    opts->to_ns = UINT64_MAX;
    if (mt_capture_header(cap)->flags & MT_FLAG_AGGREGATE) {
        mt_capture_free(cap); /* no window at all: the load says why */
        return 0;
    }
    const char *fname = in->from.name, *tname = in->to.name;
    const mt_stage_t *from = fname ? find_stage(cap, fname) : NULL;
    const mt_stage_t *to = tname ? find_stage(cap, tname) : from;
    if ((fname && !from) || (tname && !to)) {
        int bad_from = fname && !from;
        no_such_stage(path, bad_from ? "--from" : "--to",
                      bad_from ? fname : tname, cap);
        mt_capture_free(cap);
        return -1;
    }
    /* Seq 0 is "no edge": a stage entered before the first event starts
     * the window at the start anyway. A stage still open at the end of
     * the capture (end_seq UINT64_MAX) ends it there. */
    opts->from_seq = from ? from->first_seq : 0;
    opts->to_seq = to->end_seq == UINT64_MAX ? 0 : to->end_seq;
    if (opts->to_seq && opts->to_seq < opts->from_seq) {
        fputs("memtrace: ", stderr);
        mt_fputs_escaped(path, stderr);
        fputs(": --to '", stderr);
        mt_fputs_escaped(to->name, stderr);
        fprintf(stderr, "' was last left (event %llu) before --from '",
                (unsigned long long)to->end_seq);
        mt_fputs_escaped(from->name, stderr);
        fprintf(stderr, "' was first entered (event %llu): no window\n",
                (unsigned long long)from->first_seq);
        mt_capture_free(cap);
        return -1;
    }
    mt_capture_free(cap);
    return 0;
}

mt_capture_t *mt__load_capture(const char *path, uint64_t temporary_threshold)
{
    mt_inputs_t in;
    memset(&in, 0, sizeof in);
    in.no_children = 1;
    in.temporary_threshold = temporary_threshold;
    char *paths[] = {(char *)path};
    return mt__inputs_load(paths, 1, &in);
}

mt_capture_t *mt__inputs_load(char *const *paths, size_t n,
                              const mt_inputs_t *in)
{
    char err[1024] = "";
    mt_load_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.progress = isatty(STDERR_FILENO);
    opts.temporary_threshold = in->temporary_threshold;
    if (in->from.name || in->to.name) {
        if (stage_window(paths[0], in, &opts) < 0)
            return NULL;
    } else if (in->from.set || in->to.set) {
        opts.window = 1;
        opts.from_ns = in->from.set ? (uint64_t)(in->from.seconds * 1e9 + 0.5)
                                    : 0;
        opts.to_ns = in->to.set ? (uint64_t)(in->to.seconds * 1e9 + 0.5)
                                : UINT64_MAX;
    }
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load_job((const char *const *)paths, n,
                                 !in->no_children, &opts, &cap, err,
                                 sizeof err);
    print_load(paths[0], rc, err, cap);
    if (rc < 0) {
        mt_capture_free(cap);
        return NULL;
    }
    /* An aggregate capture has no events to count temporary allocations
     * again: only the threshold the tracer counted with can be shown. */
    const mt_totals_t *t = mt_capture_totals(cap);
    if ((mt_capture_header(cap)->flags & MT_FLAG_AGGREGATE) &&
        in->temporary_threshold &&
        in->temporary_threshold != t->temporary_threshold) {
        fputs("memtrace: ", stderr);
        mt_fputs_escaped(mt_capture_path(cap), stderr);
        fprintf(stderr, ": --temporary-allocation-threshold %llu needs the "
                "events, and this aggregate capture (memtrace run --aggregate) "
                "has none: its temporary allocations were counted with a "
                "threshold of %llu\n",
                (unsigned long long)in->temporary_threshold,
                (unsigned long long)t->temporary_threshold);
        mt_capture_free(cap);
        return NULL;
    }
    return cap;
}
