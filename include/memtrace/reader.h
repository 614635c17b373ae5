/* reader.h: the offline reader. Streams a capture once, reconstructs the heap
 * over time and keeps what the reports need: totals, the high-water mark, the
 * live set at the end (leaks), temporary allocations, per-allocator totals,
 * a size histogram, heap and RSS over time, and the trace tree of stacks with
 * its modules so native frames can be symbolized offline.
 *
 * Memory grows with the number of live allocations and of distinct stacks,
 * never with the number of events. Nothing here is thread-safe: one capture
 * object is used by one thread at a time. */
#ifndef MEMTRACE_READER_H
#define MEMTRACE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/memtrace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mt_capture_s mt_capture_t;

/* What to compute. Zero-initialise and set what you need. */
typedef struct mt_load_opts_s {
    /* An allocation freed before more than this many other allocations were
     * made is "temporary". 0 means the default, 1. An aggregate capture
     * keeps the counts of the threshold it was recorded with, whatever this
     * says (mt_totals_t.temporary_threshold tells which). */
    uint64_t temporary_threshold;
    /* Print a progress line on stderr for reads longer than a second. */
    int progress;
    /* A window of the run (window = 1): from_ns to to_ns, in ns since the
     * start; to_ns = UINT64_MAX: to the end. Events carry no time, so the
     * edges are placed at RSS ticks (one every rss_interval_ms, default
     * 10 ms): the window starts at the first tick at or after from_ns
     * (from_ns = 0: at the very start) and ends at the first tick at or
     * after to_ns (none: at the end of the capture). With a window:
     *  - the peak view is the high-water mark inside the window (the heap
     *    at its start counts), and totals.peak_* describe it;
     *  - the leaks view holds the allocations made inside the window and
     *    still live at its end;
     *  - the total and temporary views, and the counters of totals
     *    (allocations, frees, bytes allocated, by allocator, histogram),
     *    count the window's events only; current_* is the whole heap at
     *    the window's end; peak_rss_bytes is the highest RSS sample in it;
     *  - samples are those of the window.
     * A from_ns after the capture's last tick is an error (MT_ERANGE);
     * a to_ns after it reads to the end (mt_window_t.clamped). */
    int window;
    uint64_t from_ns, to_ns;
    /* Instead of from_ns / to_ns when nonzero: exact edges in the event
     * order, the window holding the events with from_seq <= seq < to_seq
     * (for records that carry seqs, such as stages, and for combining
     * processes: a sample's seq ends a window right at that sample). */
    uint64_t from_seq, to_seq;
    /* Read the file header only (no blocks): for finding a job's captures
     * cheaply. The capture then has no nodes, stats or samples. */
    int header_only;
    /* Read the stage records only, not the events: a quick first pass
     * that finds where stages began and ended (mt_stage_t.first_seq,
     * end_seq), to read a stage's window with from_seq/to_seq. The
     * stages' heap and allocation numbers, the views, the totals' counters
     * and the samples' heap are then zero; the window is ignored. */
    int stages_only;
} mt_load_opts_t;

/* The file header. Strings are owned by the capture. */
typedef struct mt_header_s {
    unsigned format_version;
    unsigned flags;               /* MT_FLAG_* from common/format.h */
    int64_t pid, ppid, parent_pid; /* parent_pid: traced parent, or 0 */
    int64_t root_pid;             /* --follow-fork: the run's root, or 0 */
    int origin;                   /* MT_ORIGIN_* (common/format.h) */
    uint64_t start_realtime_ns;
    unsigned pointer_size;
    unsigned page_size;
    unsigned rss_interval_ms;
    const char *const *argv;      /* NULL-terminated */
    int argc;
    const char *exe;              /* "" when absent */
    const char *tracer_version;   /* "" when absent */
    const char *python_version;   /* NULL when not a Python capture */
} mt_header_t;

/* Allocator kinds, indexed by the event type of common/format.h. */
#define MT_ALLOCATOR_COUNT 18

/* Bytes and allocation count of one stack (or site) in one view. */
typedef struct mt_amount_s {
    uint64_t bytes;
    uint64_t count;
} mt_amount_t;

/* Per trace-tree node, for allocations whose stack ends at that node. */
typedef struct mt_node_stats_s {
    mt_amount_t total;     /* everything allocated there over the run */
    mt_amount_t peak;      /* live at the high-water mark */
    mt_amount_t leaked;    /* live when tracing ended */
    mt_amount_t temporary; /* freed within temporary_threshold allocations */
} mt_node_stats_t;

/* Whole-run numbers. */
typedef struct mt_totals_s {
    uint64_t peak_bytes;          /* traced heap at its high-water mark */
    uint64_t peak_seq;            /* event sequence number of the peak */
    uint64_t peak_time_ns;        /* since start, to the RSS sampling tick */
    uint64_t current_bytes;       /* traced heap when tracing ended */
    uint64_t current_count;       /* live allocations when tracing ended */
    uint64_t total_allocations;
    uint64_t total_frees;         /* frees of traced allocations */
    uint64_t unmatched_frees;     /* frees of addresses never seen allocated */
    uint64_t total_bytes_allocated;
    uint64_t duration_ns;
    uint64_t peak_rss_bytes;      /* the process's ru_maxrss at exit when
                                     `memtrace run` recorded it (the value
                                     /usr/bin/time -v shows), else the
                                     trailer's (getrusage at the end), else
                                     the highest sample */
    unsigned peak_rss_source;     /* MT_PEAK_RSS_* */
    uint64_t events;              /* events read */
    uint64_t threads;             /* distinct threads that made events */
    int complete;                 /* 1 when the trailer was read */
    int events_lost;              /* the tracer stopped early */
    mt_amount_t by_allocator[MT_ALLOCATOR_COUNT]; /* allocations per kind */
    uint64_t size_histogram[65];  /* [k]: sizes with bit length k (0 -> [0]) */
    uint64_t temporary_threshold; /* what `temporary` was counted with */
    /* Aggregate captures (MT_FLAG_AGGREGATE in the header's flags, `memtrace
     * run --aggregate`) hold no events: every number above and the node
     * statistics come from the last complete checkpoint. */
    uint64_t checkpoints;         /* complete checkpoints read (0: none) */
    uint64_t checkpoint_ns;       /* time of the one used, since start */
} mt_totals_t;

/* Where totals.peak_rss_bytes comes from. */
#define MT_PEAK_RSS_NONE 0    /* no RSS was recorded */
#define MT_PEAK_RSS_EXIT 1    /* wait4() by `memtrace run`, at exit */
#define MT_PEAK_RSS_TRAILER 2 /* getrusage when tracing ended */
#define MT_PEAK_RSS_TICKS 3   /* the highest periodic sample */

/* One point of the heap/RSS timeline (one per RSS sampling tick). */
typedef struct mt_sample_s {
    uint64_t time_ns;
    uint64_t heap_bytes;
    uint64_t rss_bytes;
    uint64_t seq;      /* the tick's event seq (0 in combined captures) */
} mt_sample_t;

/* A memory sample (the tracer's SMAPS records): how the kernel charged the
 * process's memory at one moment, with the traced heap at that moment.
 * kind is MT_SMAPS_START, _PEAK, _END or _EXIT and fields are indexed by
 * the MT_SMAPS_* tags (common/format.h); a field is valid only when its bit
 * is set in present. The EXIT sample (written by `memtrace run` after the
 * process ended) carries only MT_SMAPS_MAXRSS, and the heap at the end. */
#define MT_MEMSAMPLE_FIELDS 64
typedef struct mt_memsample_s {
    uint64_t time_ns;      /* since start */
    uint64_t seq;          /* events with seq below it happened before */
    unsigned kind;
    uint64_t heap_bytes;   /* traced heap at that moment */
    uint64_t mapped_bytes; /* of which live traced mmap regions */
    uint64_t pysmall_bytes; /* of which live PyMem/PyObject blocks of at
                               most 512 bytes (pymalloc's; traced with
                               --trace-python-allocators) */
    uint64_t present;      /* bit t: fields[t] was recorded */
    uint64_t fields[MT_MEMSAMPLE_FIELDS];
} mt_memsample_t;
/* The window a capture was read with (mt_load_opts_t.window). */
typedef struct mt_window_s {
    int active;            /* 0: the whole run was read */
    uint64_t from_ns;      /* the tick it started at (0: the start) */
    uint64_t to_ns;        /* the tick it ended at, or the end of the run */
    uint64_t start_bytes;  /* the traced heap when it started */
    int clamped;           /* to_ns asked for was after the last tick */
    int exact;             /* edges given as seqs (from_seq, to_seq: a
                              stage's), exact rather than at ticks */
} mt_window_t;

/* One process of a capture: a plain capture has one, a combined one
 * (mt_capture_load_job) one per capture combined, the first being the
 * one the others descend from. Strings are owned by the capture. */
typedef struct mt_process_s {
    const char *path;      /* its capture file */
    const char *command;   /* its argv joined by spaces */
    int64_t pid, parent_pid;
    uint64_t start_ns;     /* when it started, ns after the first one did */
    uint64_t duration_ns;
    uint64_t peak_bytes;   /* its own high-water mark (in the window) */
    uint64_t peak_time_ns; /* when, ns since the first process started */
    uint64_t at_peak_bytes;/* its heap at the combined high-water mark */
    uint64_t leaked_bytes; /* its leaks view: live at its (window's) end */
    uint64_t leaked_count;
    uint64_t total_allocations;
    uint64_t total_bytes_allocated;
    int complete;          /* its trailer was read */
} mt_process_t;

/* One trace-tree node: a frame and its caller. Node 0 is the root. */
typedef struct mt_node_s {
    uint32_t parent;
    uint32_t module;   /* index into the module table, or UINT32_MAX */
    uint64_t ip;       /* return address (native frames) */
} mt_node_t;

/* A loaded module as the tracer saw it. */
typedef struct mt_module_s {
    const char *path;
    const uint8_t *build_id;
    size_t build_id_len;
    uint64_t bias;     /* load bias: runtime address = file vaddr + bias */
    uint64_t lo, hi;   /* runtime address range of its PT_LOAD segments */
} mt_module_t;

/* A symbolized frame. Strings are owned by the capture. */
typedef struct mt_frame_s {
    const char *function; /* demangled; "module+0xOFFSET" when unknown */
    const char *file;     /* source file, or the module path when unknown */
    unsigned line;        /* 0 when unknown */
    const char *module;   /* shared object path, or "" */
    int inlined;          /* 1: inlined into the next (outer) frame */
    int python;           /* 1: a Python frame (module is "") */
} mt_frame_t;

/* Reads the whole capture at path. On success returns 0 and *out (owned by
 * the caller; release with mt_capture_free). On failure returns a negative
 * MT_E* code and writes a one-line message naming the file, the offset and
 * what was wrong into errbuf. A truncated capture is read up to its last
 * complete block: that is success, with a warning (mt_capture_warning). */
MT_EXTERN int mt_capture_load(const char *path, const mt_load_opts_t *opts,
                              mt_capture_t **out, char *errbuf, size_t errlen);

/* The same, from len bytes at data (not copied; only read during the call).
 * name (NULL: "<memory>") stands for the path in messages and
 * mt_capture_path. For tests, fuzzing and captures already in memory. */
MT_EXTERN int mt_capture_load_memory(const void *data, size_t len,
                                     const char *name,
                                     const mt_load_opts_t *opts,
                                     mt_capture_t **out, char *errbuf,
                                     size_t errlen);

/* Frees everything; NULL is fine. */
MT_EXTERN void mt_capture_free(mt_capture_t *cap);

/* Reads the captures of one multi-process job and combines them into one
 * capture (*out, owned by the caller) that every report reads as usual:
 * paths[0..n) (duplicates, by file, are read once), plus, with
 * find_children, the captures of their traced descendants: FILE.<pid> for
 * every CHILD record, and every FILE.<digits> next to a given FILE whose
 * header names a process of the job as its parent (MT_HDR_PARENT_PID).
 * With one capture and no children found, this is mt_capture_load.
 * Combined:
 *  - nodes whose stacks read the same (same frames in the same modules)
 *    are shared, so every view is summed per stack and per site;
 *  - the peak view is the high-water mark of the *sum* of the processes'
 *    heaps over wall-clock time (start_realtime + tick times), to one RSS
 *    tick: the sum is taken at every tick of every process (each process
 *    at its latest tick) and at each process's own peak; the peak view is
 *    what each process had live at that moment (a second read of each
 *    capture, up to that tick);
 *  - leaks, total and temporary are the sums; totals are summed (peak_*
 *    as above, peak_time_ns since the first process started); samples are
 *    the summed timeline;
 *  - opts' window is in ns since the first process started; a window by
 *    seqs (from_seq, to_seq: one process's own event numbers) is refused
 *    (MT_EINVAL) when the job has more than one process.
 * A process wholly outside the window is left out. Returns 0 or MT_E*
 * with a one-line message naming the file in errbuf. */
MT_EXTERN int mt_capture_load_job(const char *const *paths, size_t n,
                                  int find_children,
                                  const mt_load_opts_t *opts,
                                  mt_capture_t **out, char *errbuf,
                                  size_t errlen);

/* Borrowed pointers, valid until mt_capture_free. */
MT_EXTERN const mt_header_t *mt_capture_header(const mt_capture_t *cap);
MT_EXTERN const mt_totals_t *mt_capture_totals(const mt_capture_t *cap);
MT_EXTERN const char *mt_capture_path(const mt_capture_t *cap);
/* The child processes the traced process started while following
 * (--follow-fork), in the order it started them; each writes the capture
 * FILE.<pid> beside this one (when it could be traced). Sets *count; the
 * array is borrowed (NULL when there are none). */
MT_EXTERN const int64_t *mt_capture_children(const mt_capture_t *cap, size_t *count);
/* NULL when the read was clean; else a one-line warning (partial read). */
MT_EXTERN const char *mt_capture_warning(const mt_capture_t *cap);

/* The window the capture was read with. */
MT_EXTERN const mt_window_t *mt_capture_window(const mt_capture_t *cap);
/* Its processes: 1 for a plain capture, more for a combined one. */
MT_EXTERN size_t mt_capture_process_count(const mt_capture_t *cap);
MT_EXTERN const mt_process_t *mt_capture_processes(const mt_capture_t *cap);

MT_EXTERN size_t mt_capture_node_count(const mt_capture_t *cap);
MT_EXTERN const mt_node_t *mt_capture_nodes(const mt_capture_t *cap);
MT_EXTERN const mt_node_stats_t *mt_capture_node_stats(const mt_capture_t *cap);
MT_EXTERN size_t mt_capture_module_count(const mt_capture_t *cap);
MT_EXTERN const mt_module_t *mt_capture_modules(const mt_capture_t *cap);
MT_EXTERN size_t mt_capture_sample_count(const mt_capture_t *cap);
MT_EXTERN const mt_sample_t *mt_capture_samples(const mt_capture_t *cap);
/* The memory samples (SMAPS records), in the order they were taken (the
 * EXIT one last). None in captures of memtrace before 0.2. */
MT_EXTERN size_t mt_capture_memsample_count(const mt_capture_t *cap);
MT_EXTERN const mt_memsample_t *mt_capture_memsamples(const mt_capture_t *cap);

/* ---- Stages ----------------------------------------------------------------
 * Named stages the program marked (mt_stage_enter, memtrace.stage), one row
 * per full dotted name ("outer.inner"): all calls of a name are summed.
 * Time, heap and RSS are the process's, measured from the stage's enter to
 * its leave; a stage's numbers include those of the stages nested in it.
 * Rows come in the order their first call began, so a parent comes before
 * its children. */
typedef struct mt_stage_s {
    const char *name;          /* full dotted name; owned by the capture */
    unsigned depth;            /* 0 for an outermost stage */
    uint64_t calls;            /* times the stage was entered */
    uint64_t wall_ns;          /* elapsed time, summed over calls */
    uint64_t wall_max_ns;      /* the longest call */
    uint64_t cpu_ns;           /* process CPU time (all threads), summed */
    uint64_t thread_cpu_ns;    /* CPU time of the stage's own thread */
    uint64_t bytes_allocated;  /* allocated by the stage's own thread */
    uint64_t allocations;      /* allocations by the stage's own thread */
    int64_t heap_delta;        /* net change of the traced heap, summed */
    uint64_t heap_peak;        /* highest traced heap during any call */
    uint64_t heap_peak_rise;   /* the most the heap rose above its size at
                                  the call's start, over all calls */
    int64_t rss_delta;         /* net change of RSS, summed; 0 when the
                                  capture has no RSS */
    uint64_t unclosed;         /* calls still open at the end of the
                                  capture, closed there */
    /* Where it is in the event order (for mt_load_opts_t.from_seq/to_seq:
     * the events of all threads with first_seq <= seq < end_seq happened
     * between its first enter and its last leave). first_seq: its first
     * enter; end_seq: its last leave, UINT64_MAX when a call was still
     * open at the end of the capture. */
    uint64_t first_seq, end_seq;
    /* 1: RSS grew (by at least 1 MiB) more than twice as much as the
     * traced heap did: memory the hooks do not see (native allocations
     * outside them, allocator fragmentation, caches, touched pages). */
    int untraced_growth;
} mt_stage_t;

/* Stage records over the whole capture. */
typedef struct mt_stage_totals_s {
    uint64_t records;          /* STAGE records read */
    uint64_t unclosed;         /* stages closed at the end of the capture */
    uint64_t unmatched_leaves; /* leaves with no open stage (ignored) */
    uint64_t mismatched_leaves;/* leaves naming another stage than the
                                  innermost open one (repaired) */
} mt_stage_totals_t;

MT_EXTERN size_t mt_capture_stage_count(const mt_capture_t *cap);
/* Borrowed, valid until mt_capture_free; NULL when there are none. */
MT_EXTERN const mt_stage_t *mt_capture_stages(const mt_capture_t *cap);
MT_EXTERN const mt_stage_totals_t *mt_capture_stage_totals(const mt_capture_t *cap);

/* Symbolizes node's frame (with libdw; each module is opened once and
 * cached). Fills up to max frames, innermost first: more than one when
 * functions were inlined at that address. Returns the number of frames
 * (at least 1 for any node but the root). */
MT_EXTERN size_t mt_capture_frames(mt_capture_t *cap, uint32_t node,
                                   mt_frame_t *frames, size_t max);

#ifdef __cplusplus
}
#endif
#endif
