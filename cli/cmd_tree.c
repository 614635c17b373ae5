/* cmd_tree.c: `memtrace tree` (the biggest stacks as a call tree in the
 * terminal) and `memtrace table` (an HTML table of allocation sites). This
 * file parses their options, finds the terminal's width and character set
 * for the tree, picks and creates the table's output file, and hands the
 * capture to reporters/tree.c and reporters/table.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"

#define MT_DEFAULT_COLUMNS 100
#define MT_MAX_COLUMNS 10000

/* The first capture FILE (more may follow, combined), after checking the
 * window. Returns it, or NULL after a usage error (*status set). */
static const char *first_file(const char *cmd, int argc, char **argv,
                              const mt_inputs_t *in, int *status)
{
    if (optind >= argc) {
        *status = mt__usage_error(cmd, "missing the capture FILE");
        return NULL;
    }
    int rc = mt__inputs_check(cmd, in);
    if (rc >= 0) {
        *status = rc;
        return NULL;
    }
    return argv[optind];
}

/* ---- memtrace tree ------------------------------------------------------ */

/* The width to fit: the terminal's when stdout is one, else $COLUMNS,
 * else 100. */
static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *env = getenv("COLUMNS");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(env, &end, 10);
        if (!errno && !*end && v > 0)
            return v > MT_MAX_COLUMNS ? MT_MAX_COLUMNS : (unsigned)v;
    }
    return MT_DEFAULT_COLUMNS;
}

/* 1 when name ("en_US.UTF-8", "C.utf8") says UTF-8. */
static int names_utf8(const char *name)
{
    return name && (strcasestr(name, "UTF-8") || strcasestr(name, "utf8"));
}

/* 1 when the user's locale (LC_ALL, LC_CTYPE, LANG) uses UTF-8, so that
 * box-drawing characters show. A locale the system does not have (a
 * common sight in containers) is judged by its name. The locale is put
 * back afterwards: the reports format numbers themselves and must not
 * depend on it. */
static int locale_is_utf8(void)
{
    const char *old = setlocale(LC_CTYPE, NULL);
    char *saved = old ? strdup(old) : NULL;
    int utf8 = 0;
    if (setlocale(LC_CTYPE, "")) {
        utf8 = names_utf8(nl_langinfo(CODESET));
    } else {
        const char *vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
        for (size_t i = 0; i < 3; i++) {
            const char *v = getenv(vars[i]);
            if (v && *v) {
                utf8 = names_utf8(v);
                break;
            }
        }
    }
    setlocale(LC_CTYPE, saved ? saved : "C");
    free(saved);
    return utf8;
}

enum { OPT_JSON = 1000, OPT_TOP, OPT_LEAKS, OPT_FORCE };

int mt__cmd_tree(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"top", required_argument, NULL, OPT_TOP},
        {"leaks", no_argument, NULL, OPT_LEAKS},
        {"help", no_argument, NULL, 'h'},
        MT_INPUT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    mt_tree_opts_t opts;
    memset(&opts, 0, sizeof opts);
    mt_inputs_t in;
    memset(&in, 0, sizeof in);
    opterr = 0;
    optind = 1;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if ((rc = mt__inputs_option("tree", c, optarg, &in)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_JSON:
            opts.json = 1;
            break;
        case OPT_TOP:
            if (mt__parse_top(optarg, &opts.top) < 0)
                return mt__usage_error("tree",
                                       "--top needs a whole number from 1 "
                                       "to %d, not '%s'",
                                       MT_MAX_TOP, optarg);
            break;
        case OPT_LEAKS:
            opts.view = MT_VIEW_LEAKS;
            break;
        case 'h':
            mt__command_help(stdout, "tree");
            return 0;
        default:
            return mt__bad_option("tree", c, argv);
        }
    }
    int status = 0;
    const char *path = first_file("tree", argc, argv, &in, &status);
    if (!path)
        return status;
    opts.filter = mt__filter();
    opts.width = terminal_width();
    opts.ascii = !locale_is_utf8();
    mt_capture_t *cap = mt__inputs_load(argv + optind,
                                        (size_t)(argc - optind), &in);
    if (!cap)
        return MT_EXIT_USAGE;
    rc = mt_report_tree(stdout, cap, &opts);
    mt_capture_free(cap);
    if (rc < 0) {
        fprintf(stderr, "memtrace tree: cannot write the report: %s\n",
                mt_strerror(rc));
        return MT_EXIT_USAGE;
    }
    return 0;
}

/* ---- memtrace table ----------------------------------------------------- */

/* "memtrace table: cannot write OUT: WHY" on stderr. */
static void output_error(const char *out, int err)
{
    fputs("memtrace table: cannot write ", stderr);
    mt_fputs_escaped(out, stderr);
    if (err == EEXIST)
        fputs(": the file exists (use -f to overwrite it)\n", stderr);
    else
        fprintf(stderr, ": %s\n", strerror(err));
}

/* Opens out for writing: "-" is stdout; an existing file is replaced only
 * with force. Returns the stream or NULL after printing why. */
static FILE *open_output(const char *out, int force)
{
    if (strcmp(out, "-") == 0)
        return stdout;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
    int fd = open(out, flags, 0666);
    if (fd < 0) {
        output_error(out, errno);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        fprintf(stderr, "memtrace table: %s\n", strerror(errno));
        close(fd);
    }
    return f;
}

/* Writes the table of cap to out. Returns the exit status. */
static int write_table(mt_capture_t *cap, const char *out, int force,
                       const mt_table_opts_t *opts)
{
    FILE *f = open_output(out, force);
    if (!f)
        return MT_EXIT_USAGE;
    int rc = mt_report_table(f, cap, opts);
    if (f != stdout && fclose(f) != 0 && rc == 0)
        rc = MT_EIO;
    if (rc < 0) {
        fputs("memtrace table: cannot write ", stderr);
        mt_fputs_escaped(out, stderr);
        fprintf(stderr, ": %s\n", mt_strerror(rc));
        if (f != stdout)
            unlink(out);
        return MT_EXIT_USAGE;
    }
    if (f != stdout) {
        fputs("Wrote ", stdout);
        mt_fputs_escaped(out, stdout);
        fputc('\n', stdout);
    }
    return 0;
}

int mt__cmd_table(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"leaks", no_argument, NULL, OPT_LEAKS},
        {"help", no_argument, NULL, 'h'},
        MT_INPUT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    mt_table_opts_t opts;
    memset(&opts, 0, sizeof opts);
    mt_inputs_t in;
    memset(&in, 0, sizeof in);
    const char *output = NULL;
    int force = 0;
    opterr = 0;
    optind = 1;
    int c, rc;
    while ((c = getopt_long(argc, argv, ":ho:f", longopts, NULL)) != -1) {
        if ((rc = mt__inputs_option("table", c, optarg, &in)) != -2) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case 'o':
            if (!optarg[0])
                return mt__usage_error("table", "-o needs a file name");
            output = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case OPT_LEAKS:
            opts.view = MT_VIEW_LEAKS;
            break;
        case 'h':
            mt__command_help(stdout, "table");
            return 0;
        default:
            return mt__bad_option("table", c, argv);
        }
    }
    opts.filter = mt__filter();
    int status = 0;
    const char *path = first_file("table", argc, argv, &in, &status);
    if (!path)
        return status;
    char *dflt = NULL;
    if (!output) {
        dflt = mt__default_html(path, "table");
        if (!dflt) {
            fputs("memtrace table: out of memory\n", stderr);
            return MT_EXIT_USAGE;
        }
        output = dflt;
    }
    /* Refuse before reading a capture that may take a while; O_EXCL still
     * guards the race. */
    if (!force && strcmp(output, "-") != 0 && access(output, F_OK) == 0) {
        output_error(output, EEXIST);
        free(dflt);
        return MT_EXIT_USAGE;
    }
    mt_capture_t *cap = mt__inputs_load(argv + optind,
                                        (size_t)(argc - optind), &in);
    status = cap ? write_table(cap, output, force, &opts) : MT_EXIT_USAGE;
    mt_capture_free(cap);
    free(dflt);
    return status;
}
