/* cmd_export.c: `memtrace export FILE --format FORMAT [-o OUT] [--leaks]`:
 * the capture in another tool's format. Text formats meant for pipes
 * (folded, csv) go to stdout by default; the files other programs open
 * (speedscope, pprof) go to memtrace-FORMAT-NAME.EXT beside the capture,
 * as the flame graph does. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

const char mt__export_help[] =
    "usage: memtrace export FILE... --format folded|csv|speedscope|pprof\n"
    "                       [-o OUT] [-f] [--leaks] [--from T] [--to T]\n"
    "                       [--no-children] [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "The capture in another tool's format. folded and csv go to stdout\n"
    "unless -o is given; speedscope and pprof go to a file beside the\n"
    "capture (memtrace-speedscope-NAME.json, memtrace-pprof-NAME.pb.gz,\n"
    "NAME being the capture's name without memtrace- and .bin) unless -o\n"
    "is given. -o - is stdout for every format.\n"
    "\n"
    "formats:\n"
    "  folded     collapsed stacks, \"outer;...;inner BYTES\" per stack, for\n"
    "             flamegraph.pl, speedscope and inferno: the heap at its\n"
    "             high-water mark, or with --leaks when tracing ended.\n"
    "             Frames are \"function (file:line)\"; ';' in names becomes ':'.\n"
    "  csv        one row per allocation site and snapshot, for pandas:\n"
    "             snapshot (peak or leaks), bytes, count, function, file,\n"
    "             line, module (RFC 4180 quoting; a leading = + - @ gets a ').\n"
    "  speedscope speedscope's JSON file format (open it at speedscope.app or\n"
    "             with `speedscope FILE`): four profiles over one frame list,\n"
    "             live bytes (shown first) and live allocations at the\n"
    "             high-water mark (with --leaks: when tracing ended), and\n"
    "             bytes and allocations over the whole run. A frame is one\n"
    "             function, file and line; stacks are root first.\n"
    "  pprof      gzipped profile.proto for `go tool pprof`, Pyroscope and\n"
    "             speedscope, with Go's heap sample types: alloc_objects and\n"
    "             alloc_space (the whole run), inuse_objects and inuse_space\n"
    "             (live at the high-water mark, or with --leaks when tracing\n"
    "             ended; inuse_space is the default). Nothing is sampled:\n"
    "             every allocation counts. Functions carry file and line;\n"
    "             inlined frames share a location. Binary: not written to a\n"
    "             terminal.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT  write to OUT (- for stdout)\n"
    "  -f, --force       overwrite OUT if it exists\n"
    "  --leaks           folded, speedscope, pprof: memory live when tracing\n"
    "                    ended instead of at the high-water mark (csv has\n"
    "                    both snapshots)\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES;

typedef struct export_format_s {
    const char *name;
    const char *ext; /* extension of the default file; NULL: stdout */
    int binary;      /* never written to a terminal */
} export_format_t;

static const export_format_t export_formats[] = {
    {"folded", NULL, 0},
    {"csv", NULL, 0},
    {"speedscope", "json", 0},
    {"pprof", "pb.gz", 1},
};

enum { OPT_FORMAT = 1000, OPT_LEAKS };

static const struct option export_options[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"output", required_argument, NULL, 'o'},
    {"force", no_argument, NULL, 'f'},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"help", no_argument, NULL, 'h'},
    MT_INPUT_LONGOPTS,
    {NULL, 0, NULL, 0},
};

static int export_write(FILE *out, mt_capture_t *cap, const char *format,
                        mt_view_t view)
{
    if (strcmp(format, "folded") == 0)
        return mt_report_folded(out, cap, view, mt__filter());
    if (strcmp(format, "csv") == 0)
        return mt_report_csv(out, cap, mt__filter());
    if (strcmp(format, "speedscope") == 0)
        return mt_report_speedscope(out, cap, view, mt__filter());
    return mt_report_pprof(out, cap, view, mt__filter());
}

/* Prints "memtrace export: cannot write OUT: why" (escaped). */
static void export_cannot_write(const char *out, const char *why,
                                const char *hint)
{
    fputs("memtrace export: cannot write ", stderr);
    mt_fputs_escaped(out, stderr);
    fprintf(stderr, ": %s%s\n", why, hint);
}

/* Opens out as the capture is opened: never through a planted symlink,
 * and never over an existing file without -f. *regular: out is a regular
 * file (one that may be removed when writing fails; a device or a FIFO
 * given with -f is not). NULL after the error. */
static FILE *export_open(const char *out, int force, int *regular)
{
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
                (force ? O_TRUNC : O_EXCL);
    int fd = open(out, flags, 0644);
    if (fd < 0) {
        int err = errno;
        export_cannot_write(out, strerror(err),
                            err == EEXIST ? " (use -f to overwrite)" : "");
        return NULL;
    }
    struct stat st;
    *regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        export_cannot_write(out, strerror(errno), "");
        close(fd);
    }
    return f;
}

int mt__cmd_export(int argc, char **argv)
{
    const char *cmd = "export", *format = NULL, *output = NULL;
    int force = 0, leaks = 0, c, rc;
    mt_inputs_t in;
    memset(&in, 0, sizeof in);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:fh", export_options, NULL)) != -1) {
        if ((rc = mt__inputs_option(cmd, c, optarg, &in)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_FORMAT: format = optarg; break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case OPT_LEAKS: leaks = 1; break;
        case 'h': mt__command_help(stdout, cmd); return 0;
        default: return mt__bad_option(cmd, c, argv);
        }
    }
    if (!format)
        return mt__usage_error(cmd, "--format is required (folded, csv, "
                                    "speedscope or pprof)");
    const export_format_t *fmt = NULL;
    for (size_t i = 0; i < sizeof export_formats / sizeof export_formats[0]; i++)
        if (strcmp(format, export_formats[i].name) == 0)
            fmt = &export_formats[i];
    if (!fmt)
        return mt__usage_error(cmd, "unknown format '%s' (folded, csv, "
                                    "speedscope, pprof)", format);
    if (optind >= argc)
        return mt__usage_error(cmd, "missing the capture FILE");
    if ((rc = mt__inputs_check(cmd, &in)) >= 0)
        return rc;
    if (output && !output[0])
        return mt__usage_error(cmd, "-o needs a file name (or - for stdout)");
    /* The default output is named after the first capture. */
    const char *path = argv[optind];

    char *def = NULL;
    if (!output && fmt->ext) {
        def = mt__default_output(path, fmt->name, fmt->ext);
        if (!def) {
            fputs("memtrace export: out of memory\n", stderr);
            return MT_EXIT_USAGE;
        }
    }
    const char *dest = def ? def : output && strcmp(output, "-") ? output : NULL;
    if (!dest && fmt->binary && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "memtrace export: the %s format is binary; give -o "
                        "FILE or redirect stdout\n", fmt->name);
        free(def);
        return MT_EXIT_USAGE;
    }
    /* Refuse an existing file before the (possibly long) read. */
    struct stat st;
    if (dest && !force && lstat(dest, &st) == 0) {
        export_cannot_write(dest, "it exists", " (use -f to overwrite)");
        free(def);
        return MT_EXIT_USAGE;
    }
    mt_capture_t *cap = mt__inputs_load(argv + optind,
                                        (size_t)(argc - optind), &in);
    if (!cap) {
        free(def);
        return MT_EXIT_USAGE;
    }
    int regular = 0;
    FILE *out = dest ? export_open(dest, force, &regular) : stdout;
    rc = out ? export_write(out, cap, fmt->name,
                                leaks ? MT_VIEW_LEAKS : MT_VIEW_PEAK)
                 : MT_EIO;
    mt_capture_free(cap);
    if (out && out != stdout && fclose(out) != 0 && rc == 0)
        rc = MT_EIO;
    if (out && rc < 0) {
        if (dest && regular)
            unlink(dest); /* no half-written export under its final name */
        export_cannot_write(dest ? dest : "stdout", mt_strerror(rc), "");
    }
    if (out && rc == 0 && dest) {
        fputs("Wrote ", stdout);
        mt_fputs_escaped(dest, stdout);
        fputc('\n', stdout);
    }
    free(def);
    return rc < 0 ? MT_EXIT_USAGE : 0;
}
