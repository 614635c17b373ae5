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
} mt_load_opts_t;

/* The file header. Strings are owned by the capture. */
typedef struct mt_header_s {
    unsigned format_version;
    unsigned flags;               /* MT_FLAG_* from common/format.h */
    int64_t pid, ppid, parent_pid; /* parent_pid: traced parent, or 0 */
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
    uint64_t peak_rss_bytes;      /* trailer (getrusage), else highest sample */
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

/* One point of the heap/RSS timeline (one per RSS sampling tick). */
typedef struct mt_sample_s {
    uint64_t time_ns;
    uint64_t heap_bytes;
    uint64_t rss_bytes;
} mt_sample_t;

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

/* Borrowed pointers, valid until mt_capture_free. */
MT_EXTERN const mt_header_t *mt_capture_header(const mt_capture_t *cap);
MT_EXTERN const mt_totals_t *mt_capture_totals(const mt_capture_t *cap);
MT_EXTERN const char *mt_capture_path(const mt_capture_t *cap);
/* NULL when the read was clean; else a one-line warning (partial read). */
MT_EXTERN const char *mt_capture_warning(const mt_capture_t *cap);

MT_EXTERN size_t mt_capture_node_count(const mt_capture_t *cap);
MT_EXTERN const mt_node_t *mt_capture_nodes(const mt_capture_t *cap);
MT_EXTERN const mt_node_stats_t *mt_capture_node_stats(const mt_capture_t *cap);
MT_EXTERN size_t mt_capture_module_count(const mt_capture_t *cap);
MT_EXTERN const mt_module_t *mt_capture_modules(const mt_capture_t *cap);
MT_EXTERN size_t mt_capture_sample_count(const mt_capture_t *cap);
MT_EXTERN const mt_sample_t *mt_capture_samples(const mt_capture_t *cap);

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
