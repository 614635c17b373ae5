/* cmd_flamegraph.c: `memtrace flamegraph FILE`, which writes the capture's
 * flame graph as one self-contained HTML page (reporters/flamegraph.c) and
 * prints the path it wrote. Like memray, it does not overwrite an existing
 * page without --force, and names the page after the capture by default:
 * memtrace-flamegraph-NAME.html next to it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

const char mt__flamegraph_help[] =
    "usage: memtrace flamegraph FILE... [-o OUT.html] [-f]\n"
    "                           [--leaks | --temporary-allocations]\n"
    "                           [--hide-imports] [--native | --no-native]\n"
    "                           [--from T] [--to T] [--no-children]\n"
    "                           [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "Writes an HTML flame graph of the capture: one self-contained page (no\n"
    "network access) with the traced heap and RSS over time, the\n"
    "high-water mark marked, and below it the stacks as an icicle graph,\n"
    "callers above callees, box width proportional to bytes. Hover a box\n"
    "for its function, file:line, bytes, allocations and share; click to\n"
    "zoom in (the path above the graph, Reset zoom or Escape zoom out);\n"
    "search highlights matching frames and shows their share. Frames under\n"
    "0.1% of the total are merged into one \"other\" box per caller.\n"
    "Without --leaks: the memory live at the high-water mark.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT.html  where to write; default\n"
    "             memtrace-flamegraph-NAME.html next to the capture, NAME\n"
    "             being the capture's file name without memtrace- and .bin\n"
    "  -f, --force  overwrite OUT.html when it exists\n"
    "  --leaks    memory live when tracing ended instead of at the peak\n"
    "  --temporary-allocation-threshold N  with --temporary-allocations:\n"
    "             freed before N other allocations were made (default 1)\n"
    "  --temporary-allocations  allocations freed before any other\n"
    "             allocation was made\n"
    "  --hide-imports  start with import-time frames (the import system\n"
    "             and module bodies run by imports) folded; the page has a\n"
    "             checkbox for it\n"
    "  --native, --no-native  start with native frames shown (the default)\n"
    "             or hidden, for captures with Python and native frames;\n"
    "             the page has a checkbox for it\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "The page is named after the first FILE.\n";


/* Writes the page to a temporary file beside out and renames it, so that
 * a failed run never leaves half a page under the final name. */
static int fg_write(const char *out, mt_capture_t *cap,
                    const mt_flamegraph_opts_t *opts)
{
    size_t size = strlen(out) + 32;
    char *tmp = malloc(size);
    if (!tmp)
        return MT_ENOMEM;
    snprintf(tmp, size, "%s.tmp.%ld", out, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int err = -errno;
        /* The user's path: the temporary name is ours, not theirs. */
        fputs("memtrace flamegraph: cannot write ", stderr);
        mt_fputs_escaped(out, stderr);
        fprintf(stderr, ": %s\n", mt_strerror(err));
        free(tmp);
        return err;
    }
    int rc = mt_report_flamegraph(f, cap, opts);
    if (fclose(f) != 0 && rc == 0)
        rc = MT_EIO;
    if (rc == 0 && rename(tmp, out) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        fputs("memtrace flamegraph: cannot write ", stderr);
        mt_fputs_escaped(out, stderr);
        fprintf(stderr, ": %s\n", mt_strerror(rc));
    }
    free(tmp);
    return rc;
}

enum { OPT_LEAKS = 1000, OPT_TEMPORARY, OPT_HIDE_IMPORTS, OPT_NATIVE,
       OPT_NO_NATIVE };

static const struct option fg_options[] = {
    {"output", required_argument, NULL, 'o'},
    {"force", no_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"temporary-allocations", no_argument, NULL, OPT_TEMPORARY},
    MT_THRESHOLD_LONGOPT,
    {"hide-imports", no_argument, NULL, OPT_HIDE_IMPORTS},
    {"native", no_argument, NULL, OPT_NATIVE},
    {"no-native", no_argument, NULL, OPT_NO_NATIVE},
    MT_INPUT_LONGOPTS,
    {NULL, 0, NULL, 0},
};

int mt__cmd_flamegraph(int argc, char **argv)
{
    const char *cmd = "flamegraph", *output = NULL;
    mt_flamegraph_opts_t opts;
    memset(&opts, 0, sizeof opts);
    int force = 0, leaks = 0, temporary = 0, c, rc;
    mt_inputs_t in;
    memset(&in, 0, sizeof in);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:fh", fg_options, NULL)) != -1) {
        if ((rc = mt__inputs_option(cmd, c, optarg, &in)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case OPT_LEAKS:
            leaks = 1;
            break;
        case OPT_TEMPORARY:
            temporary = 1;
            break;
        case OPT_HIDE_IMPORTS:
            opts.hide_imports = 1;
            break;
        case OPT_NATIVE:
            opts.hide_native = 0;
            break;
        case OPT_NO_NATIVE:
            opts.hide_native = 1;
            break;
        case 'h':
            mt__command_help(stdout, cmd);
            return 0;
        default: /* ':' (a value missing) or an unknown option */
            return mt__bad_option(cmd, c, argv);
        }
    }
    if (leaks && temporary)
        return mt__usage_error(cmd, "give --leaks or --temporary-allocations, "
                                    "not both");
    opts.filter = mt__filter();
    opts.view = leaks ? MT_VIEW_LEAKS
                      : temporary ? MT_VIEW_TEMPORARY : MT_VIEW_PEAK;
    if (optind >= argc)
        return mt__usage_error(cmd, "missing the capture FILE");
    if ((rc = mt__inputs_check(cmd, &in)) >= 0)
        return rc;
    const char *path = argv[optind];
    if (output && !output[0])
        return mt__usage_error(cmd, "-o needs a file name");

    char *def = output ? NULL : mt__default_html(path, "flamegraph");
    if (!output && !def) {
        fputs("memtrace flamegraph: out of memory\n", stderr);
        return MT_EXIT_USAGE;
    }
    const char *out = output ? output : def;
    struct stat st;
    if (!force && stat(out, &st) == 0) {
        fputs("memtrace flamegraph: ", stderr);
        mt_fputs_escaped(out, stderr);
        fputs(" exists; use -f to overwrite it or -o to write elsewhere\n",
              stderr);
        free(def);
        return MT_EXIT_USAGE;
    }
    mt_capture_t *cap = mt__inputs_load(argv + optind,
                                        (size_t)(argc - optind), &in);
    if (!cap) {
        free(def);
        return MT_EXIT_USAGE;
    }
    rc = fg_write(out, cap, &opts);
    mt_capture_free(cap);
    if (rc == 0) {
        fputs("Wrote ", stdout);
        mt_fputs_escaped(out, stdout);
        fputc('\n', stdout);
    }
    free(def);
    return rc == 0 ? 0 : MT_EXIT_USAGE;
}
