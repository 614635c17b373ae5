/* commands.h: the subcommands of the `memtrace` program, private to cli/.
 * main.c dispatches on argv[1]; each command gets its own argc/argv with
 * argv[0] = the command's name, so it can run getopt_long as a program
 * would. A command returns the process's exit status. */
#ifndef MT_CLI_COMMANDS_H
#define MT_CLI_COMMANDS_H

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

/* Prints the help of command name (usage, options, JSON fields) to out;
 * run prints its own (run.c, on stdout, for `memtrace run --help`).
 * Returns 0, or -1 when there is no such command. (main.c) */
int mt__command_help(FILE *out, const char *name);

/* Prints "memtrace CMD: MESSAGE" and "Try 'memtrace help CMD'." on stderr
 * and returns MT_EXIT_USAGE, for option errors. (main.c) */
int mt__usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
