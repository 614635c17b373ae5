/* commands.h: the subcommands of the `memtrace` program, private to cli/.
 * main.c dispatches on argv[1]; each command gets its own argc/argv with
 * argv[0] = the command's name, so it can run getopt_long as a program
 * would. A command returns the process's exit status. */
#ifndef MT_CLI_COMMANDS_H
#define MT_CLI_COMMANDS_H

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
/* Parses a size like 512MB, 1.5GiB or 1000 (bytes) into *out. 0 or -1. */
int mt__parse_size(const char *arg, uint64_t *out);
/* Parses --temporary-allocation-threshold's N (1 to 2^32). 0 or -1. */
int mt__parse_threshold(const char *arg, uint64_t *out);

/* The default page for KIND ("flamegraph", "table") of a capture:
 * memtrace-KIND-NAME.html beside it (cli/cmd_read.c). malloc'd, or NULL. */
char *mt__default_html(const char *capture, const char *kind);

/* --include GLOB / --exclude GLOB, which every reading command takes:
 * put MT_FILTER_OPTIONS in its getopt_long table and hand MT_OPT_INCLUDE
 * and MT_OPT_EXCLUDE to mt__filter_option, which returns 0, or prints the
 * usage error and returns MT_EXIT_USAGE. mt__filter() is what they built
 * (NULL when none was given; it lives until the process ends). One
 * command runs per process. (cli/cmd_read.c) */
enum { MT_OPT_INCLUDE = 900, MT_OPT_EXCLUDE };
#define MT_FILTER_OPTIONS                                                      \
    {"include", required_argument, NULL, MT_OPT_INCLUDE},                      \
    {"exclude", required_argument, NULL, MT_OPT_EXCLUDE}
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
