/* cmd_read.c: the commands that read one capture and print a report:
 * `memtrace summary`, `memtrace report` and `memtrace stats`. Each parses
 * its options, loads the capture (a file that cannot be read is one line on
 * stderr naming the file and the problem, and exit status 2), and hands the
 * capture to its reporter. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/format.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

/* Largest --top: more sites than any terminal or CI log wants. */

typedef int (*mt_reporter_fn)(FILE *out, mt_capture_t *cap,
                              const mt_report_opts_t *opts);

/* memtrace-KIND-NAME.EXT in the capture's directory, NAME being the
 * capture's file name without a "memtrace-" start and a ".bin" end (as
 * memray names its pages). Returns a malloc'd path, or NULL. */
char *mt__default_output(const char *capture, const char *kind,
                         const char *ext)
{
    const char *slash = strrchr(capture, '/');
    size_t dirlen = slash ? (size_t)(slash - capture) + 1 : 0;
    const char *name = capture + dirlen;
    size_t len = strlen(name);
    if (strncmp(name, "memtrace-", 9) == 0 && len > 9) {
        name += 9;
        len -= 9;
    }
    if (len > 4 && strcmp(name + len - 4, ".bin") == 0)
        len -= 4;
    size_t size = dirlen + len + strlen(kind) + strlen(ext) +
                  sizeof "memtrace--.";
    char *out = malloc(size);
    if (out)
        snprintf(out, size, "%.*smemtrace-%s-%.*s.%s", (int)dirlen, capture,
                 kind, (int)len, name, ext);
    return out;
}

char *mt__default_html(const char *capture, const char *kind)
{
    return mt__default_output(capture, kind, "html");
}

/* --include and --exclude of the command being run: NULL until one is
 * given. One command runs per process; the filter lives until exit. */
static mt_filter_t *filter;

int mt__filter_option(const char *cmd, int c, const char *arg)
{
    if (!arg[0])
        return mt__usage_error(cmd, "--%s needs a glob, not an empty string",
                               c == MT_OPT_INCLUDE ? "include" : "exclude");
    if (!filter && mt_filter_new(&filter) < 0) {
        fprintf(stderr, "memtrace %s: out of memory\n", cmd);
        return MT_EXIT_USAGE;
    }
    int rc = c == MT_OPT_INCLUDE ? mt_filter_include(filter, arg)
                                 : mt_filter_exclude(filter, arg);
    if (rc < 0) {
        fprintf(stderr, "memtrace %s: %s\n", cmd, mt_strerror(rc));
        return MT_EXIT_USAGE;
    }
    return 0;
}

const mt_filter_t *mt__filter(void)
{
    return filter;
}

/* --fail-over, the window and the like of the command being run. Set by
 * parse_read_args; one command per process. */
static uint64_t fail_over;
static mt_inputs_t inputs;

/* Parses a size for --fail-over: a number with an optional unit, B, K/KB,
 * M/MB, G/GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), any case.
 * Returns 0 with *out set, or -1. */
int mt__parse_size(const char *arg, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!arg[0] || arg[0] == '-' || arg[0] == '+')
        return -1;
    double v = strtod(arg, &end);
    if (errno || end == arg || v < 0)
        return -1;
    static const struct { const char *unit; double factor; } units[] = {
        {"", 1}, {"b", 1}, {"k", 1e3}, {"kb", 1e3}, {"m", 1e6}, {"mb", 1e6},
        {"g", 1e9}, {"gb", 1e9}, {"kib", 1024.0}, {"mib", 1048576.0},
        {"gib", 1073741824.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) == 0) {
            double bytes = v * units[i].factor;
            if (bytes >= 18446744073709551615.0)
                return -1;
            *out = (uint64_t)bytes;
            return 0;
        }
    }
    return -1;
}

/* Loads the capture, runs the reporter on stdout, and maps failures to
 * the exit status; with --fail-over, exit 1 when the peak is over it. */
/* How a reading command reads (read_command's flags). */
enum {
    READ_REPORT_OPTIONS = 1, /* report's options (--top, --leaks, ...) */
    /* Per-process records placed among the events (stages, memory
     * samples): one capture, never a combination, and not an aggregate
     * capture (it keeps totals, not events). */
    READ_ONE_PROCESS = 2,
};

static int run_report(const char *cmd, char *const *paths, size_t npaths,
                      mt_reporter_fn fn, const mt_report_opts_t *opts,
                      int flags)
{
    int one_process = (flags & READ_ONE_PROCESS) != 0;
    if (one_process && npaths > 1)
        return mt__usage_error(cmd, "reads one capture (one process), not %zu; "
                                    "run it on each FILE.<pid>", npaths);
    if (one_process)
        inputs.no_children = 1;
    mt_capture_t *cap = mt__inputs_load(paths, npaths, &inputs);
    if (!cap)
        return MT_EXIT_USAGE;
    if (one_process && (mt_capture_header(cap)->flags & MT_FLAG_AGGREGATE)) {
        fprintf(stderr, "memtrace %s: ", cmd);
        mt_fputs_escaped(mt_capture_path(cap), stderr);
        fprintf(stderr, ": recorded with --aggregate, which keeps totals, not "
                        "events: `memtrace %s` needs the heap at each moment "
                        "(record without --aggregate)\n", cmd);
        mt_capture_free(cap);
        return MT_EXIT_USAGE;
    }
    int rc = fn(stdout, cap, opts);
    uint64_t peak = mt_capture_totals(cap)->peak_bytes;
    mt_capture_free(cap);
    if (rc < 0) {
        fprintf(stderr, "memtrace %s: cannot write the report: %s\n", cmd,
                mt_strerror(rc));
        return MT_EXIT_USAGE;
    }
    if (fail_over && peak > fail_over) {
        char a[32], b[32];
        fflush(stdout);
        fprintf(stderr, "memtrace %s: peak memory %s (%" PRIu64 " bytes) is over "
                        "the limit of --fail-over, %s (%" PRIu64 " bytes)\n",
                cmd, mt_format_size(peak, a, sizeof a), peak,
                mt_format_size(fail_over, b, sizeof b), fail_over);
        return 1;
    }
    return 0;
}

/* Reports an option getopt_long rejected (c is what it returned: ':' for
 * a missing value); returns MT_EXIT_USAGE. */
int mt__bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        return mt__usage_error(cmd, "option '%s' needs a value",
                               argv[optind - 1]);
    if (optopt > ' ' && optopt < 0x7f) /* a short option */
        return mt__usage_error(cmd, "unknown option '-%c'", optopt);
    return mt__usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
}

/* Parses N of --temporary-allocation-threshold N: 1 to 2^32. */
int mt__parse_threshold(const char *arg, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!arg[0] || arg[0] == '-' || arg[0] == '+')
        return -1;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v == 0 || v > (1ull << 32))
        return -1;
    *out = v;
    return 0;
}

/* Parses N of --top N: a whole number from 1 to MT_MAX_TOP. */
int mt__parse_top(const char *arg, size_t *out)
{
    char *end;
    errno = 0;
    if (!arg[0] || arg[0] == '-' || arg[0] == '+')
        return -1;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v == 0 || v > MT_MAX_TOP)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* The options of the reading commands: summary and stats take the first
 * two, report all of them. */
enum { OPT_JSON = 1000, OPT_TOP, OPT_LEAKS, OPT_ALL, OPT_TEMPORARY,
       OPT_FAIL_OVER };

static const struct option report_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"top", required_argument, NULL, OPT_TOP},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"all-allocations", no_argument, NULL, OPT_ALL},
    {"temporary-allocations", no_argument, NULL, OPT_TEMPORARY},
    MT_THRESHOLD_LONGOPT,
    {"fail-over", required_argument, NULL, OPT_FAIL_OVER},
    MT_INPUT_LONGOPTS,
    {NULL, 0, NULL, 0},
};
static const struct option plain_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    MT_INPUT_LONGOPTS,
    {NULL, 0, NULL, 0},
};

/* Parses argv for cmd. with_report_options: --top and --leaks allowed.
 * Returns -1 to go on (opts, *paths and *npaths set: the captures), else
 * an exit status. */
static int parse_read_args(const char *cmd, int argc, char **argv,
                           int with_report_options, mt_report_opts_t *opts,
                           char ***paths, size_t *npaths)
{
    const struct option *longopts =
        with_report_options ? report_options : plain_options;
    memset(opts, 0, sizeof *opts);
    opterr = 0;
    optind = 1;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = mt__inputs_option(cmd, c, optarg, &inputs)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_JSON:
            opts->json = 1;
            break;
        case OPT_TOP:
            if (mt__parse_top(optarg, &opts->top) < 0)
                return mt__usage_error(cmd,
                                       "--top needs a whole number from 1 "
                                       "to %d, not '%s'",
                                       MT_MAX_TOP, optarg);
            break;
        case OPT_LEAKS:
            opts->view = MT_VIEW_LEAKS;
            break;
        case OPT_ALL:
            opts->view = MT_VIEW_TOTAL;
            break;
        case OPT_TEMPORARY:
            opts->view = MT_VIEW_TEMPORARY;
            break;
        case OPT_FAIL_OVER:
            if (mt__parse_size(optarg, &fail_over) < 0 || fail_over == 0)
                return mt__usage_error(cmd, "--fail-over needs a size such as "
                                            "512MB or 1.5GiB, not '%s'", optarg);
            break;
        case 'h':
            mt__command_help(stdout, cmd);
            return 0;
        default: /* ':' (a value missing) or an unknown option */
            return mt__bad_option(cmd, c, argv);
        }
    }
    opts->filter = filter;
    if (optind >= argc)
        return mt__usage_error(cmd, "missing the capture FILE");
    if ((rc = mt__inputs_check(cmd, &inputs)) >= 0)
        return rc;
    *paths = argv + optind;
    *npaths = (size_t)(argc - optind);
    return -1;
}

/* One reading command: its options (READ_REPORT_OPTIONS: report's too),
 * then its report over the captures named. */
static int read_command(const char *cmd, int argc, char **argv, int flags,
                        mt_reporter_fn fn)
{
    mt_report_opts_t opts;
    char **paths;
    size_t n;
    int rc = parse_read_args(cmd, argc, argv, flags & READ_REPORT_OPTIONS,
                             &opts, &paths, &n);
    return rc >= 0 ? rc : run_report(cmd, paths, n, fn, &opts, flags);
}

int mt__cmd_summary(int argc, char **argv)
{
    return read_command("summary", argc, argv, 0, mt_report_summary);
}

int mt__cmd_report(int argc, char **argv)
{
    return read_command("report", argc, argv, READ_REPORT_OPTIONS, mt_report_top);
}

int mt__cmd_stats(int argc, char **argv)
{
    return read_command("stats", argc, argv, 0, mt_report_stats);
}

int mt__cmd_stages(int argc, char **argv)
{
    return read_command("stages", argc, argv, READ_ONE_PROCESS, mt_report_stages);
}

int mt__cmd_rss(int argc, char **argv)
{
    return read_command("rss", argc, argv, READ_ONE_PROCESS, mt_report_rss);
}
