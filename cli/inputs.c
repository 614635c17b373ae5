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
#include <unistd.h>

#include "cli/commands.h"
#include "common/format.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

/* Parses a --from/--to value: seconds from the start ("1.5", "2s",
 * "250ms"), or anything else as a name (a stage, once stages exist). A
 * negative or non-finite number is an error (-1). */
static int parse_time(const char *arg, mt_time_arg_t *out)
{
    char *end;
    errno = 0;
    memset(out, 0, sizeof *out);
    out->set = 1;
    double v = strtod(arg, &end);
    if (end == arg) { /* not a number: a name */
        out->name = arg;
        return 0;
    }
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
                                        "not '%s'", opt, arg);
        if (t->name)
            return mt__usage_error(cmd, "%s '%s': windows by stage name are not "
                                        "available yet; give seconds from the "
                                        "start (1.5, 250ms)", opt, arg);
        return -1;
    }
    case MT_OPT_NO_CHILDREN:
        in->no_children = 1;
        return -1;
    default:
        return -2;
    }
}

int mt__inputs_check(const char *cmd, const mt_inputs_t *in)
{
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
    if (in->from.set || in->to.set) {
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
