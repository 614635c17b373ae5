/* main.c: the `memtrace` program: the version, the help, and dispatching
 * argv[1] to a subcommand. Every command of the contract is listed here,
 * with its help text, even those that later versions will implement. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/format.h"
#include "memtrace/memtrace.h"
#include "memtrace/reporters.h"

typedef struct mt_command_s {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;             /* one line for `memtrace help` */
    const char *help;                 /* `memtrace help NAME`; NULL: the
                                         command prints it on --help */
} mt_command_t;

static const char summary_help[] =
    "usage: memtrace summary FILE... [--json] [--from T] [--to T]\n"
    "                        [--no-children]\n"
    "                        [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "Peak and current heap, totals, and the top 5 locations at the peak.\n"
    "\n"
    "options:\n"
    "  --json     machine-readable output\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "\n"
    "JSON fields: capture, pid, command, peak_bytes, peak_time_s,\n"
    "current_bytes, current_allocations, total_allocations, total_frees,\n"
    "unmatched_frees, total_bytes_allocated, duration_s, peak_rss_bytes,\n"
    "threads, native, python_version (or null), complete, events_lost,\n"
    "warning (or null), aggregate (recorded with --aggregate), checkpoint_s\n"
    "(the time of the checkpoint an aggregate capture's numbers come from, or\n"
    "null), parent_pid, root_pid, origin (\"root\", \"fork\" or\n"
    "\"exec\"; null unless recorded with --follow-fork), children (the pids\n"
    "of the child processes it started, each traced into FILE.<pid> beside\n"
    "the root's FILE), filter ({include, exclude} or null), filtered_bytes,\n"
    "filtered_allocations (left out by the filter), top (site entries as in\n"
    "`memtrace report`),\n"
    MT_JOB_JSON_HELP;

static const char report_help[] =
    "usage: memtrace report FILE... [--top N] [--leaks | --all-allocations |\n"
    "                             --temporary-allocations] [--json]\n"
    "                             [--from T] [--to T] [--no-children]\n"
    "                             [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "The heap's current and peak size, then the top N allocation sites\n"
    "with the heaviest traceback of each. Without --leaks: the memory live\n"
    "at the high-water mark; with --leaks: the memory live when tracing\n"
    "ended. A site is the innermost Python frame of a stack, or the\n"
    "innermost native frame outside the allocator.\n"
    "\n"
    "options:\n"
    "  --top N    number of sites (default 10)\n"
    "  --leaks    memory live at the end instead of at the peak\n"
    "  --all-allocations  everything allocated over the run, freed or not\n"
    "  --temporary-allocations  allocations freed before any other\n"
    "             allocation was made (churn worth pooling)\n"
    "  --temporary-allocation-threshold N  temporary: freed before N other\n"
    "             allocations were made (default 1)\n"
    "  --fail-over SIZE  after the report, exit 1 when the peak is over SIZE\n"
    "             (512MB, 1.5GiB, 1000000: K/M/G are powers of 1000, KiB/MiB/\n"
    "             GiB of 1024), for CI jobs with a memory budget\n"
    "  --json     machine-readable output\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "--fail-over then checks the combined peak.\n"
    "\n"
    "JSON fields: capture, view (\"peak\", \"leaks\", \"all\" or\n"
    "\"temporary\"), current_bytes,\n"
    "current_allocations, peak_bytes, total_allocations,\n"
    "total_bytes_allocated, complete, warning, view_bytes,\n"
    "view_allocations, sites (how many), filter ({include, exclude} or\n"
    "null), filtered_bytes, filtered_allocations, and top: a list of\n"
    "{bytes, count, site, stack, stack_truncated} where site and each stack\n"
    "entry are {function, file, line, module} and stack is innermost first;\n"
    MT_JOB_JSON_HELP;

static const char stats_help[] =
    "usage: memtrace stats FILE... [--json] [--from T] [--to T]\n"
    "                      [--no-children]\n"
    "                      [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "Counts of allocations and frees, allocations per allocator, the size\n"
    "histogram (power-of-two buckets), and the top 5 sites by bytes\n"
    "allocated and by number of allocations over the whole run. The\n"
    "filters apply to the sites; the counts are the whole run's.\n"
    "\n"
    "options:\n"
    "  --json     machine-readable output\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "\n"
    "JSON fields: capture, total_allocations, total_frees, unmatched_frees,\n"
    "total_bytes_allocated, peak_bytes, current_bytes, current_allocations,\n"
    "duration_s, by_allocator ({NAME: {count, bytes}} for every allocator),\n"
    "size_histogram ([{min, max, count}], non-empty buckets, bounds\n"
    "inclusive), filter, filtered_bytes, filtered_allocations,\n"
    "top_by_bytes and top_by_count (site entries as in\n"
    "`memtrace report`).\n";

static const char tree_help[] =
    "usage: memtrace tree FILE... [--leaks] [--top N] [--json]\n"
    "                     [--from T] [--to T] [--no-children]\n"
    "                     [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "The biggest stacks as a call tree: the root holds all memory live at\n"
    "the high-water mark (with --leaks: live when tracing ended), each\n"
    "level below is a callee, children sorted by bytes. Every line shows\n"
    "the bytes and share of the whole subtree, then \"function at\n"
    "file:line\". Only the N largest leaf stacks and their callers are\n"
    "shown; the rest are summed up in an \"N other stacks\" line. Inlined\n"
    "functions are nodes of their own; the allocator's own frames (malloc,\n"
    "operator new...) are left out at the leaf end.\n"
    "\n"
    "Lines fit the terminal (its width, else $COLUMNS, else 100 columns):\n"
    "long names are shortened in the middle, and a line deeper than the\n"
    "width allows starts with +N, its N outermost levels not drawn. The\n"
    "guides are box-drawing characters in a UTF-8 locale, ASCII otherwise.\n"
    "\n"
    "options:\n"
    "  --top N    number of leaf stacks shown (default 10)\n"
    "  --leaks    memory live at the end instead of at the peak\n"
    "  --json     the same tree as nested JSON objects\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "\n"
    "JSON fields: capture, view (\"peak\" or \"leaks\"), complete, warning\n"
    "(or null), bytes, count, stacks, shown_stacks, other_stacks,\n"
    "other_bytes, other_count, and root: a node {function, file, line,\n"
    "module, inlined, bytes, count, self_bytes, self_count, children:\n"
    "[node...]}. A node's bytes and count cover its whole subtree, self_*\n"
    "the allocations made with exactly its stack; the root's function is\n"
    "\"<root>\".\n";

static const char table_help[] =
    "usage: memtrace table FILE... [-o OUT.html] [-f] [--leaks]\n"
    "                      [--from T] [--to T] [--no-children]\n"
    "                      [--include GLOB] [--exclude GLOB]\n"
    "\n"
    "Writes an HTML page with one row per allocation site: bytes, share,\n"
    "number of allocations, average size, function, file:line and module,\n"
    "and the site's heaviest stack (click to unfold). Click a column header\n"
    "to sort by it (again to reverse); the filter box keeps the rows whose\n"
    "function, location or module contain the text. Without --leaks: the\n"
    "memory live at the high-water mark; with --leaks: live when tracing\n"
    "ended. The page is self-contained: it loads nothing from the network.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT.html  where to write it (\"-\": stdout); default\n"
    "             memtrace-table-NAME.html next to the capture, NAME being\n"
    "             the capture's file name without \".bin\"\n"
    "  -f, --force  overwrite OUT.html if it exists\n"
    "  --leaks    memory live at the end instead of at the peak\n"
    MT_FILTER_HELP
    MT_INPUT_HELP
    "\n"
    MT_INPUT_HELP_FILES
    "The page is named after the first FILE.\n"
    "\n"
    "Prints \"Wrote OUT.html\". The page holds the 5000 largest sites; the\n"
    "rest are summed up. It embeds its data as JSON in\n"
    "<script type=\"application/json\" id=\"memtrace-data\">: capture,\n"
    "command, view, view_words, bytes, count, peak_bytes, current_bytes,\n"
    "total_allocations, total_bytes_allocated, complete, warning, filter,\n"
    "filtered_bytes, filtered_allocations,\n"
    "sites_total, omitted_sites, omitted_bytes, omitted_count, and\n"
    "sites: [{bytes, count, function, file, line, module, stack:\n"
    "[{function, file, line, module, inlined}...], stack_truncated}]\n"
    "(largest first; stack innermost first).\n";

static const char stages_help[] =
    "usage: memtrace stages FILE [--json]\n"
    "\n"
    "What each named stage of the program cost, one row per stage name with\n"
    "all its calls summed. Mark stages in Python with\n"
    "    with memtrace.stage(\"extract\"):      (or @memtrace.stage(\"extract\"))\n"
    "and in C with mt_stage_enter(\"extract\") ... mt_stage_leave() from\n"
    "<memtrace/tracer.h> (no linking needed). Stages nest per thread: a stage\n"
    "entered inside another is the row \"outer.inner\", and a stage's numbers\n"
    "include those of the stages inside it.\n"
    "\n"
    "Columns: calls; wall seconds, total and the longest call; process CPU\n"
    "seconds (all threads; wall much above CPU means waiting); bytes\n"
    "allocated by the stage's own thread; net change of the traced heap; the\n"
    "traced heap's highest point during any call; net change of RSS. A stage\n"
    "whose RSS grew (by 1 MiB or more) more than twice as much as its traced\n"
    "heap is flagged with '!': memory the hooks do not see (native\n"
    "allocations outside them, allocator fragmentation, pages touched).\n"
    "RSS includes memtrace's own buffers, which can add about 9 MiB to the\n"
    "first busy stage (more while a program allocates faster than the\n"
    "capture is written). Stages still open when\n"
    "the capture ended (the program exited inside them) are closed at the\n"
    "end and marked (unclosed).\n"
    "\n"
    "options:\n"
    "  --json     machine-readable output\n"
    "\n"
    "JSON fields: capture, duration_s, complete, warning (or null),\n"
    "stage_records, unclosed, unmatched_leaves, mismatched_leaves, stages:\n"
    "[{stage, depth, calls, wall_s, wall_max_s, cpu_s, thread_cpu_s,\n"
    "bytes_allocated, allocations, heap_delta_bytes, heap_peak_bytes,\n"
    "heap_peak_rise_bytes (the most the heap rose above its size at a call's\n"
    "start), rss_delta_bytes, unclosed, untraced_growth}] in the order the\n"
    "stages were first entered.\n";

static const char rss_help[] =
    "usage: memtrace rss FILE [--json]\n"
    "\n"
    "Reconciles the traced heap with the memory the kernel charged the\n"
    "process (RSS): the peak RSS (with `memtrace run`, the kernel's count\n"
    "when the program exited, the number /usr/bin/time -v shows), RSS and\n"
    "traced heap over time, and the gap between them at the RSS peak split\n"
    "into:\n"
    "  file-backed      shared libraries and mapped files (smaps_rollup:\n"
    "                   Rss - Anonymous)\n"
    "  pymalloc         free space in pymalloc's arenas: with\n"
    "                   --trace-python-allocators, the arenas minus the live\n"
    "                   small objects; without it the arenas are traced as\n"
    "                   mmaps and are part of the heap\n"
    "  malloc overhead  free memory glibc's malloc keeps in its arenas\n"
    "                   (mallinfo2): fragmentation\n"
    "  memtrace         memtrace's own buffers\n"
    "  not traced       the rest of the anonymous memory: raw system calls,\n"
    "                   thread stacks, libraries' written data, other\n"
    "                   allocators, memory from before tracing started\n"
    "  unexplained      the rest; negative when traced memory is not\n"
    "                   resident (never touched, or swapped out)\n"
    "and ends with a one-line verdict. The tracer samples\n"
    "/proc/self/smaps_rollup when tracing starts, when RSS reaches a new\n"
    "high (rate-limited) and when it ends; the split is made at the sample\n"
    "that saw the most RSS. On kernels without smaps_rollup the split comes\n"
    "from /proc/self/statm. See docs/rss.md.\n"
    "\n"
    "options:\n"
    "  --json     machine-readable output\n"
    "\n"
    "JSON fields: capture, command, peak_rss_bytes, peak_rss_source (\"exit\",\n"
    "\"trailer\", \"samples\" or null), peak_heap_bytes, peak_heap_time_s,\n"
    "timeline {time_s, rss_bytes, heap_bytes: arrays, one entry per RSS\n"
    "sample}, memory_samples [{kind, time_s, heap_bytes, traced_mmap_bytes,\n"
    "and the recorded fields as NAME_bytes: rss, pss, anonymous, swap,\n"
    "shared_clean, private_dirty..., malloc_arena, malloc_mmap,\n"
    "malloc_in_use, malloc_free, pymalloc_arena, memtrace, max_rss}],\n"
    "at_peak (null without samples) {kind, time_s, source (\"smaps_rollup\"\n"
    "or \"statm\"), rss_bytes, heap_bytes, traced_mmap_bytes,\n"
    "anonymous_bytes, swap_bytes, malloc_held_bytes, pymalloc_arena_bytes,\n"
    "pymalloc_live_bytes}, gap (null without samples) {total_bytes,\n"
    "file_backed_bytes, pymalloc_beyond_live_bytes, pymalloc_note,\n"
    "malloc_overhead_bytes, memtrace_bytes, not_traced_bytes,\n"
    "unexplained_bytes}, verdict,\n"
    "complete, warning. A part that was not measured is null.\n";

static const mt_command_t commands[] = {
    {"run", mt__cmd_run, "record a program's allocations", NULL},
    {"summary", mt__cmd_summary, "peak, current, totals, top locations",
     summary_help},
    {"stats", mt__cmd_stats,
     "counts, size histogram, allocators, top by size and by count",
     stats_help},
    {"report", mt__cmd_report,
     "current, peak and the top N sites with full traceback", report_help},
    {"flamegraph", mt__cmd_flamegraph, "HTML flame graph with the memory "
     "timeline", mt__flamegraph_help},
    {"table", mt__cmd_table, "HTML table of allocation sites", table_help},
    {"tree", mt__cmd_tree, "call tree of the biggest stacks in the terminal",
     tree_help},
    {"diff", mt__cmd_diff, "what grew between two captures, site by site",
     mt__diff_help},
    {"rss", mt__cmd_rss, "RSS reconciliation: why RSS differs from the heap",
     rss_help},
    {"stages", mt__cmd_stages, "per-stage costs: time, CPU, allocations, "
     "heap, RSS", stages_help},
    {"export", mt__cmd_export, "folded stacks, CSV, speedscope or pprof",
     mt__export_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const mt_command_t *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void usage(FILE *out)
{
    fputs("usage: memtrace COMMAND [ARGS...]\n"
          "       memtrace --version\n"
          "       memtrace help [COMMAND]\n"
          "\ncommands:\n",
          out);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-11s %s%s\n", commands[i].name, commands[i].synopsis,
                commands[i].fn ? "" : " (not available yet)");
    fputs("\nRun 'memtrace help COMMAND' for a command's options.\n"
          "Reports exit with status 2 when a capture cannot be read.\n"
          "\nIn Python: memtrace.Tracker records from inside a program, and\n"
          "`pytest --memtrace` profiles each test, with the limit_memory and\n"
          "limit_leaks markers (the package's directory on PYTHONPATH; see\n"
          "docs/pytest.md).\n",
          out);
}

int mt__command_help(FILE *out, const char *name)
{
    const mt_command_t *c = find_command(name);
    if (!c)
        return -1;
    if (c->help) {
        fputs(c->help, out);
        return 0;
    }
    /* run keeps its help beside its options, in run.c (on stdout). */
    char *argv[] = {(char *)c->name, "--help", NULL};
    fflush(out);
    c->fn(2, argv);
    return 0;
}

int mt__usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    char msg[512];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "memtrace %s: ", cmd);
    mt_fputs_escaped(msg, stderr);
    fprintf(stderr, "\nTry 'memtrace help %s'.\n", cmd);
    return MT_EXIT_USAGE;
}

static int unknown_command(const char *name)
{
    fputs("memtrace: unknown command '", stderr);
    mt_fputs_escaped(name, stderr);
    fputs("'\n", stderr);
    usage(stderr);
    return MT_EXIT_USAGE;
}

static int is_help_flag(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return MT_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("memtrace %s (capture format %d)\n", MT_VERSION_STRING,
               MT_FORMAT_VERSION);
        return 0;
    }
    if (is_help_flag(name)) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return 0;
        }
        if (argc > 3)
            return mt__usage_error("help", "give one command name");
        if (mt__command_help(stdout, argv[2]) < 0)
            return unknown_command(argv[2]);
        return 0;
    }
    const mt_command_t *c = find_command(name);
    if (!c)
        return unknown_command(name);
    /* `memtrace CMD --help` (only right after CMD, so that
     * `memtrace run -- prog --help` reaches the program). */
    if (argc >= 3 && is_help_flag(argv[2])) {
        mt__command_help(stdout, c->name);
        return 0;
    }
    return c->fn(argc - 1, argv + 1);
}
