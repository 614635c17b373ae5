/* cmd_diff.c: `memtrace diff BEFORE.bin AFTER.bin [--top N] [--leaks]
 * [--json]`: what grew and what shrank between two captures. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

const char mt__diff_help[] =
    "usage: memtrace diff BEFORE.bin AFTER.bin [--top N] [--leaks] [--json]\n"
    "                     [--from T] [--to T] [--no-children]\n"
    "                     [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "The allocation sites whose live memory changed most between two\n"
    "captures, matched by location (function, file and line, never by\n"
    "address, so two runs of one program compare): at the high-water mark of\n"
    "each, or with --leaks when tracing ended. Each line has the shape of\n"
    "tracemalloc's Snapshot.compare_to: file:line: size=AFTER (+CHANGE),\n"
    "count=AFTER (+CHANGE), average=SIZE, then the function, and [new] or\n"
    "[vanished] for sites on one side only.\n"
    "\n"
    "options:\n"
    "  --top N    number of sites (default 10)\n"
    "  --leaks    memory live at the end instead of at the peak\n"
    "  --json     machine-readable output\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    "The window applies to both runs, each from its own start. A\n"
    "--follow-fork parent on either side is combined with its children.\n"
    "\n"
    "JSON fields: before, after, view, filter ({include, exclude} or null),\n"
    "before_bytes, after_bytes, bytes_diff,\n"
    "sites, new_sites, vanished_sites, and top: a list of {site, bytes,\n"
    "bytes_diff, count, count_diff, average, status} with status \"new\",\n"
    "\"vanished\", \"changed\" or \"same\".\n";

enum { OPT_JSON = 1000, OPT_TOP, OPT_LEAKS };

static const struct option diff_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"top", required_argument, NULL, OPT_TOP},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"help", no_argument, NULL, 'h'},
    MT_INPUT_LONGOPTS,
    {NULL, 0, NULL, 0},
};

int mt__cmd_diff(int argc, char **argv)
{
    const char *cmd = "diff";
    mt_report_opts_t opts;
    memset(&opts, 0, sizeof opts);
    mt_view_t view = MT_VIEW_PEAK;
    mt_inputs_t inputs;
    memset(&inputs, 0, sizeof inputs);
    int c, rc;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", diff_options, NULL)) != -1) {
        if ((rc = mt__inputs_option(cmd, c, optarg, &inputs)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_JSON: opts.json = 1; break;
        case OPT_LEAKS: view = MT_VIEW_LEAKS; break;
        case OPT_TOP:
            if (mt__parse_top(optarg, &opts.top) < 0)
                return mt__usage_error(cmd, "--top needs a whole number from 1 "
                                            "to %d, not '%s'", MT_MAX_TOP, optarg);
            break;
        case 'h': mt__command_help(stdout, cmd); return 0;
        default: return mt__bad_option(cmd, c, argv);
        }
    }
    if (argc - optind != 2)
        return mt__usage_error(cmd, argc - optind < 2
                                        ? "needs two captures, BEFORE and AFTER"
                                        : "takes two captures, BEFORE and AFTER");
    if ((rc = mt__inputs_check(cmd, &inputs)) >= 0)
        return rc;
    /* Each side with its children, in the same window of its own run. */
    mt_diff_input_t in = {NULL, NULL, argv[optind], argv[optind + 1], view,
                          mt__filter()};
    in.before = mt__inputs_load(argv + optind, 1, &inputs);
    if (in.before)
        in.after = mt__inputs_load(argv + optind + 1, 1, &inputs);
    rc = in.before && in.after ? mt_report_diff(stdout, &in, &opts) : 1;
    mt_capture_free(in.before);
    mt_capture_free(in.after);
    if (rc < 0)
        fprintf(stderr, "memtrace diff: cannot write the report: %s\n",
                mt_strerror(rc));
    return rc ? MT_EXIT_USAGE : 0;
}
