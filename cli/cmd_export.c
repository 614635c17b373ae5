/* cmd_export.c: `memtrace export FILE --format FORMAT [-o OUT] [--leaks]`:
 * the capture in another tool's format, on stdout or into OUT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

const char mt__export_help[] =
    "usage: memtrace export FILE --format folded|csv [-o OUT] [-f] [--leaks]\n"
    "                       [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "The capture in another tool's format, on stdout unless -o is given.\n"
    "\n"
    "formats:\n"
    "  folded     collapsed stacks, \"outer;...;inner BYTES\" per stack, for\n"
    "             flamegraph.pl, speedscope and inferno: the heap at its\n"
    "             high-water mark, or with --leaks when tracing ended.\n"
    "             Frames are \"function (file:line)\"; ';' in names becomes ':'.\n"
    "  csv        one row per allocation site and snapshot, for pandas:\n"
    "             snapshot (peak or leaks), bytes, count, function, file,\n"
    "             line, module (RFC 4180 quoting; a leading = + - @ gets a ').\n"
    "  speedscope, pprof  not available in this version yet.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT  write to OUT instead of stdout\n"
    "  -f, --force       overwrite OUT if it exists\n"
    "  --leaks           folded: memory live at the end instead of the peak\n"
    MT_FILTER_HELP;

enum { OPT_FORMAT = 1000, OPT_LEAKS };

static const struct option export_options[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"output", required_argument, NULL, 'o'},
    {"force", no_argument, NULL, 'f'},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"help", no_argument, NULL, 'h'},
    MT_FILTER_OPTIONS,
    {NULL, 0, NULL, 0},
};

int mt__cmd_export(int argc, char **argv)
{
    const char *cmd = "export", *format = NULL, *output = NULL;
    int force = 0, leaks = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:fh", export_options, NULL)) != -1) {
        switch (c) {
        case OPT_FORMAT: format = optarg; break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case OPT_LEAKS: leaks = 1; break;
        case MT_OPT_INCLUDE:
        case MT_OPT_EXCLUDE:
            if (mt__filter_option(cmd, c, optarg))
                return MT_EXIT_USAGE;
            break;
        case 'h': mt__command_help(stdout, cmd); return 0;
        default: return mt__bad_option(cmd, c, argv);
        }
    }
    if (!format)
        return mt__usage_error(cmd, "--format is required (folded or csv)");
    int folded = strcmp(format, "folded") == 0, csv = strcmp(format, "csv") == 0;
    if (!folded && !csv) {
        if (strcmp(format, "speedscope") == 0 || strcmp(format, "pprof") == 0)
            fprintf(stderr, "memtrace export: the %s format is not available in "
                            "this version yet\n", format);
        else
            fprintf(stderr, "memtrace export: unknown format '%s' (folded, csv)\n",
                    format);
        return MT_EXIT_USAGE;
    }
    if (optind >= argc)
        return mt__usage_error(cmd, "missing the capture FILE");
    if (argc - optind > 1)
        return mt__usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    FILE *out = stdout;
    if (output) {
        /* Like the capture: never through a planted symlink, and never over
         * an existing file without -f. */
        int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
                    (force ? O_TRUNC : O_EXCL);
        int fd = open(output, flags, 0644);
        if (fd < 0) {
            fprintf(stderr, "memtrace export: cannot write %s: %s%s\n", output,
                    strerror(errno), errno == EEXIST ? " (use -f to overwrite)" : "");
            return MT_EXIT_USAGE;
        }
        out = fdopen(fd, "w");
        if (!out) {
            close(fd);
            return MT_EXIT_USAGE;
        }
    }
    mt_capture_t *cap = mt__load_capture(path, 0);
    int rc = cap ? (folded ? mt_report_folded(out, cap, leaks ? MT_VIEW_LEAKS
                                                              : MT_VIEW_PEAK,
                                              mt__filter())
                           : mt_report_csv(out, cap, mt__filter()))
                 : MT_EINVAL;
    mt_capture_free(cap);
    if (out != stdout && fclose(out) != 0 && rc == 0)
        rc = MT_EIO;
    if (!cap)
        return MT_EXIT_USAGE;
    if (rc < 0) {
        fprintf(stderr, "memtrace export: cannot write the export: %s\n",
                mt_strerror(rc));
        return MT_EXIT_USAGE;
    }
    return 0;
}
