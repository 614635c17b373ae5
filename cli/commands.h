/* commands.h: the subcommands of the `memtrace` program, private to cli/.
 * main.c dispatches on argv[1]; each command gets its own argc/argv with
 * argv[0] = the command's name, so it can run getopt_long as a program
 * would. A command returns the process's exit status. */
#ifndef MT_CLI_COMMANDS_H
#define MT_CLI_COMMANDS_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit status for usage errors and unreadable captures (the contract). */
#define MT_EXIT_USAGE 2

/* `memtrace run ...` (cli/run.c): records a capture. Returns the program's
 * exit status (128+N when it died of signal N), or MT_EXIT_USAGE. */
int mt__cmd_run(int argc, char **argv);

/* `memtrace summary|report|stats FILE ...` (cli/cmd_read.c). */
int mt__cmd_summary(int argc, char **argv);
int mt__cmd_report(int argc, char **argv);
int mt__cmd_stats(int argc, char **argv);
/* `memtrace stages FILE [--json]` (cli/cmd_read.c). */
int mt__cmd_stages(int argc, char **argv);
/* `memtrace rss FILE [--json]` (cli/cmd_read.c). */
int mt__cmd_rss(int argc, char **argv);

/* `memtrace tree FILE ...` and `memtrace table FILE ...` (cli/cmd_tree.c). */
int mt__cmd_tree(int argc, char **argv);
/* `memtrace diff` (cli/cmd_diff.c) and its help text. */
int mt__cmd_diff(int argc, char **argv);
extern const char mt__diff_help[];
/* `memtrace export` (cli/cmd_export.c) and its help text. */
int mt__cmd_export(int argc, char **argv);
extern const char mt__export_help[];
int mt__cmd_table(int argc, char **argv);

/* `memtrace flamegraph FILE ...` (cli/cmd_flamegraph.c), and its help
 * text for `memtrace help flamegraph`. */
int mt__cmd_flamegraph(int argc, char **argv);
extern const char mt__flamegraph_help[];

/* Loads a capture for a reading command (cli/cmd_read.c): prints its error,
 * or its warning, as one escaped line on stderr. temporary_threshold: see
 * mt_load_opts_t (0: default). Returns the capture (free with
 * mt_capture_free), or NULL after printing the error. */
struct mt_capture_s;
struct mt_capture_s *mt__load_capture(const char *path,
                                      uint64_t temporary_threshold);
/* ---- Input of the reading commands (cli/inputs.c) ---------------------- */

/* A --from/--to value: seconds from the start, or a stage's full dotted
 * name (a value not beginning like a number), placed on the capture when
 * it is read (its stage records give exact event seqs, which become
 * mt_load_opts_t.from_seq/to_seq). */
typedef struct mt_time_arg_s {
    int set;
    double seconds;
    const char *name;
} mt_time_arg_t;

/* What a reading command reads: its window and whether a parent's
 * children are found and combined. */
typedef struct mt_inputs_s {
    mt_time_arg_t from, to;
    int no_children;
    uint64_t temporary_threshold; /* 0: the default */
} mt_inputs_t;

/* The options every reading command takes, for its getopt_long table
 * (values below 1000, so they never clash with a command's own): the
 * window, --no-children, and the filter (--include/--exclude, below). */
enum { MT_OPT_FROM = 900, MT_OPT_TO, MT_OPT_NO_CHILDREN, MT_OPT_INCLUDE,
       MT_OPT_EXCLUDE, MT_OPT_THRESHOLD };
#define MT_INPUT_LONGOPTS                                                      \
    {"from", required_argument, NULL, MT_OPT_FROM},                            \
    {"to", required_argument, NULL, MT_OPT_TO},                                \
    {"no-children", no_argument, NULL, MT_OPT_NO_CHILDREN},                    \
    {"include", required_argument, NULL, MT_OPT_INCLUDE},                      \
    {"exclude", required_argument, NULL, MT_OPT_EXCLUDE}
/* Only in the tables of the commands with a temporary-allocations view;
 * mt__inputs_option fills mt_inputs_t.temporary_threshold from it. */
#define MT_THRESHOLD_LONGOPT                                                   \
    {"temporary-allocation-threshold", required_argument, NULL,               \
     MT_OPT_THRESHOLD}

/* The help lines of those options, for every reading command's help. */
#define MT_INPUT_HELP                                                          \
    "  --from T, --to T  only a window of the run, T in seconds from the\n"   \
    "             start (1.5, 2s, 250ms; from the first process's start when\n"\
    "             processes are combined). Events carry no time: the edges\n"  \
    "             are placed at RSS samples, the first at or after T, so they\n"\
    "             are exact to one --rss-interval (default 10 ms). Peak: the\n"\
    "             high-water mark inside the window; leaks: allocations made\n"\
    "             inside it and still live at its end; totals count only the\n"\
    "             window. A --to after the end reads to the end; a --from\n"  \
    "             after the last sample is an error.\n"                       \
    "  --from STAGE, --to STAGE  a window by a stage's full name, as\n"     \
    "             `memtrace stages` prints it (work.step): --from STAGE\n"    \
    "             starts where it was first entered and, without --to, ends\n"\
    "             where it was last left (the stage's own window, the calls\n"\
    "             and what ran between them); --to STAGE ends where it was\n"  \
    "             last left. Exact, to the event. Both edges are times or\n"  \
    "             both stages; one process only (--no-children with a\n"    \
    "             --follow-fork parent).\n"                                    \
    "  --no-children  read only the captures named: do not add the children\n"\
    "             a --follow-fork parent finds beside it\n"

#define MT_INPUT_HELP_FILES                                                    \
    "Several captures (FILE FILE.*), or a --follow-fork parent alone (its\n" \
    "children's FILE.<pid> captures are found beside it), are combined into\n"\
    "one report: amounts summed per site, the peak being the high-water\n"  \
    "mark of the processes' summed heaps over time (what a container's\n"   \
    "memory limit sees), with a table of the processes.\n"

/* The JSON fields summary and report add for windows and processes. */
#define MT_JOB_JSON_HELP                                                       \
    "window ({from_s, to_s, start_bytes, clamped, exact}: where the window\n"\
    "started and ended, at RSS samples or, exact, at stage marks, and the\n"\
    "heap at its start; null without --from/--to), and processes (one per\n"\
    "process combined, the first the parent: {pid, parent_pid, command,\n"  \
    "capture, start_s, duration_s, peak_bytes, peak_time_s, at_peak_bytes,\n"\
    "leaked_bytes, leaked_allocations, total_allocations,\n"                \
    "total_bytes_allocated, complete}; at_peak_bytes is its heap at the\n"  \
    "combined peak, times are since the first process started).\n"

/* Handles c when it is one of MT_INPUT_LONGOPTS: returns -1 (handled),
 * -2 (not one of them), or an exit status after a usage error. */
int mt__inputs_option(const char *cmd, int c, const char *arg,
                      mt_inputs_t *in);
/* After the options: -1, or an exit status (--from not before --to). */
int mt__inputs_check(const char *cmd, const mt_inputs_t *in);
/* Loads paths[0..n) as one job (mt_capture_load_job); prints the error
 * or warning as one escaped line. Returns the capture or NULL. */
struct mt_capture_s *mt__inputs_load(char *const *paths, size_t n,
                                     const mt_inputs_t *in);

/* Parses a size like 512MB, 1.5GiB or 1000 (bytes) into *out. 0 or -1. */
int mt__parse_size(const char *arg, uint64_t *out);
/* Parses --temporary-allocation-threshold's N (1 to 2^32). 0 or -1. */
int mt__parse_threshold(const char *arg, uint64_t *out);

/* The default page for KIND ("flamegraph", "table") of a capture:
 * memtrace-KIND-NAME.html beside it (cli/cmd_read.c). malloc'd, or NULL. */
char *mt__default_html(const char *capture, const char *kind);
/* The same with another extension: memtrace-KIND-NAME.EXT (export). */
char *mt__default_output(const char *capture, const char *kind,
                         const char *ext);

/* --include GLOB / --exclude GLOB (in MT_INPUT_LONGOPTS; mt__inputs_option
 * hands them to mt__filter_option, which returns 0, or prints the usage
 * error and returns MT_EXIT_USAGE). mt__filter() is what they built (NULL
 * when none was given; it lives until the process ends). One command runs
 * per process. (cli/cmd_read.c) */
struct mt_filter_s;
int mt__filter_option(const char *cmd, int c, const char *arg);
const struct mt_filter_s *mt__filter(void);
/* The help text of the two options, for every reading command's help. */
#define MT_FILTER_HELP                                                         \
    "  --include GLOB  only allocations whose stack has a frame in a file or\n" \
    "             shared object matching GLOB: the memory your code caused,\n" \
    "             libraries' allocations for it included (repeatable: any)\n" \
    "  --exclude GLOB  leave out allocations whose site (the location the\n"  \
    "             report lists) matches GLOB, whoever called it: --exclude\n" \
    "             'site-packages/*' drops what installed packages allocated\n" \
    "             but keeps your code's allocations when a framework or test\n" \
    "             runner called it (repeatable: any)\n"                       \
    "             GLOB is an fnmatch pattern whose '*' also matches '/'; it\n" \
    "             matches a path, or a directory on it (everything under\n"   \
    "             it), and unless it starts with '/' any run of whole path\n"  \
    "             components: 'myproj', 'myproj/*.py', 'db.py', 'libz.so*',\n" \
    "             '/home/me/src'. memtrace's own frames (its launcher,\n"     \
    "             package and preload library) are never shown.\n"

/* Parses a --top count (1 to MT_MAX_TOP) into *out. Returns 0 or -1. */
#define MT_MAX_TOP 1000000
int mt__parse_top(const char *arg, size_t *out);

/* The usage error for an option getopt_long rejected (c: its return value,
 * ':' for a missing value). Returns MT_EXIT_USAGE. (cli/cmd_read.c) */
int mt__bad_option(const char *cmd, int c, char **argv);

/* Prints the help of command name (usage, options, JSON fields) to out;
 * run prints its own (run.c, on stdout, for `memtrace run --help`).
 * Returns 0, or -1 when there is no such command. (main.c) */
int mt__command_help(FILE *out, const char *name);

/* Prints "memtrace CMD: MESSAGE" and "Try 'memtrace help CMD'." on stderr
 * and returns MT_EXIT_USAGE, for option errors. (main.c) */
int mt__usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
