/* loader.h: the state of one mt_capture_load() while it streams a capture,
 * private to reader/. reader.c reads the file, its blocks and definition
 * records; replay.c orders the events by seq and reconstructs the heap. */
#ifndef MT_READER_LOADER_H
#define MT_READER_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "capture_internal.h"
#include "common/format.h"
#include "omap.h"

/* Hostile-input caps. A real capture stays far below all of them. */
#define MT_MAX_NODES (1u << 31)          /* trace-tree nodes */
#define MT_MAX_PENDING_RUNS (1u << 16)   /* sections waiting for a SYNC */
#define MT_MAX_PENDING_BYTES (256u << 20) /* their encoded bytes */
#define MT_RUN_AHEAD 8 /* events decoded ahead per run (a power of two) */

/* A live malloc-family allocation, keyed by address (0 = empty slot; an
 * allocation at address 0 is never recorded). 32 bytes: two per line. */
typedef struct mt_live_s {
    uint64_t addr;
    uint64_t size;
    uint64_t ordinal; /* totals.total_allocations before it was counted */
    uint32_t stack;
    uint32_t pysmall; /* 1: a PyMem/PyObject block small enough for pymalloc */
} mt_live_t;

/* pymalloc serves requests up to this many bytes from its arenas
 * (SMALL_REQUEST_THRESHOLD, CPython 3.8 and later); larger ones go to
 * malloc. */
#define MT_PYMALLOC_SMALL 512

/* One mmap/mremap allocation: it stays counted as one live allocation while
 * at least one of its pieces is mapped (see replay.c). A free record keeps
 * the index of the next free record in `ordinal`. */
typedef struct mt_maprec_s {
    uint64_t size;    /* length when it was mapped */
    uint64_t ordinal;
    uint64_t pieces;  /* live pieces; 0 = record unused */
    uint32_t stack;
} mt_maprec_t;

/* An EVENTS section whose events are not all processed yet: its remaining
 * encoded bytes, its delta state and its next decoded event. The bytes
 * point into the current decompressed block, or into `own` once the run
 * outlives its block. */
typedef struct mt_run_s {
    const uint8_t *p, *end;
    const uint8_t *base;   /* p - base + base_off = offset in its block */
    uint64_t base_off;
    uint64_t block_off;    /* file offset of its block, for messages */
    uint8_t *own;          /* owned copy of the bytes, or NULL */
    size_t own_len;
    int started;           /* an event was decoded already */
    uint32_t thread;
    uint32_t tslot;        /* its thread's mt_tstate_t */
    mt_event_state_t st;
    uint64_t key;          /* seq of q[qh], the next event to process */
    unsigned qh, qn;       /* lookahead queue: head, length */
    /* Events decoded ahead, so their hash slots are prefetched a few events
     * before they are needed (the live table rarely fits in cache). */
    mt_event_t q[MT_RUN_AHEAD];
} mt_run_t;

/* A TICK, STAGE or SMAPS record waiting for its place in the seq order;
 * order (the definition stream's) breaks ties. kind 0 is a tick (with
 * memsample: 0, or a SMAPS sample's index + 1, whose heap fields are filled
 * when its seq comes), else MT_STAGE_ENTER or MT_STAGE_LEAVE with the
 * stage's fields. */
typedef struct mt_tick_s {
    uint64_t seq, order, ns, rss;
    uint64_t cpu, tcpu;
    uint64_t memsample;
    uint32_t kind, thread, name;
} mt_tick_t;

/* A stage open on a thread: where it started (stages.c). */
typedef struct mt_stage_open_s {
    uint32_t row, name;
    uint64_t ns, cpu, tcpu, rss, heap, peak, bytes, count;
} mt_stage_open_t;

/* Per thread index (slot via mt_loader_t.tslots): what it allocated so far
 * and its open stages, innermost last. */
typedef struct mt_tstate_s {
    uint64_t bytes, count;     /* allocated by the thread so far */
    uint64_t tcpu;             /* its CPU ns at its last stage record */
    mt_stage_open_t *open;
    size_t nopen, open_cap;
    size_t active_pos;         /* its index in stage_active while nopen */
} mt_tstate_t;

/* An open-addressing map from a 64-bit key to a 32-bit value (module ids,
 * thread indexes). */
typedef struct mt_idmap_s {
    struct mt_idmap_slot_s {
        uint64_t key;
        uint32_t val;
        uint32_t used;
    } *slots;
    size_t mask, count;
} mt_idmap_t;

typedef struct mt_loader_s {
    mt_capture_t *cap;
    const char *name;      /* file name for messages */
    char *errbuf;
    size_t errlen;
    int failed;            /* an error message was written */
    uint64_t threshold;    /* temporary-allocation threshold */

    /* heap */
    mt_live_t *live;       /* open addressing, linear probing */
    size_t live_mask, live_count;
    unsigned live_shift;   /* 64 - log2(slots) */
    /* Live pieces of mmap'd regions: key = start, a = end, b = index of
     * the mapping (mt_maprec_t) they came from. Pieces never overlap. */
    mt_omap_t regions;
    mt_maprec_t *maprecs;
    size_t nmaprecs, maprecs_cap;
    uint64_t maprec_free;  /* head of the free list, UINT64_MAX = none */

    /* peak snapshot: nodes whose live amount changed since the last one */
    uint32_t *dirty_stamp; /* [node_cap] */
    uint32_t *dirty;       /* [node_cap] */
    size_t ndirty;
    uint32_t gen;

    /* ordering */
    mt_run_t **heap;       /* min-heap of pending runs by ev.seq */
    size_t nheap, heap_cap;
    size_t pending_bytes;  /* bytes owned by carried-over runs */
    int forced;            /* pending events were flushed without a SYNC */
    mt_tick_t *ticks;      /* pending ticks: a min-heap by (seq, order) */
    size_t nticks, ticks_cap;
    uint64_t tick_order;
    int have_tick;
    uint64_t last_tick_ns, max_tick_ns, max_tick_rss;
    uint64_t mapped_bytes; /* live bytes of traced mmap regions */
    uint64_t pysmall_bytes; /* live PY_* blocks of pymalloc's sizes */
    int have_exit_rss;     /* an EXIT memory sample gave the peak */
    uint64_t exit_rss;
    mt_idmap_t threads;

    /* stages (stages.c) */
    int stages_on;         /* a STAGE record was read: account per thread */
    int stages_only;       /* mt_load_opts_t.stages_only: no events */
    mt_idmap_t tslots;     /* thread index -> index into tstates */
    mt_tstate_t *tstates;
    size_t ntstates, tstates_cap;
    uint32_t *stage_active; /* tstates with open stages */
    size_t nactive, active_cap;
    uint64_t stage_hwm;    /* highest traced heap since the last STAGE */
    mt_idmap_t stage_names; /* name id -> index into stage_name_strs */
    char **stage_name_strs;
    size_t nstage_names, stage_names_cap;
    mt_idmap_t stage_rows; /* (parent row + 1) << 32 | name id -> row */
    size_t stage_row_bytes; /* bytes of the rows' names */
    int stage_rows_capped; /* rows stopped at MT_STAGE_ROW_BYTES */
    uint64_t last_cpu;     /* process CPU ns at the latest STAGE record */
    uint64_t last_ns, last_rss; /* latest time and RSS of any record */

    /* definitions */
    uint64_t prev_ip;
    mt_idmap_t module_ids; /* tracer id -> module index (UINT32_MAX: gone) */
    mt_omap_t loaded;      /* key = lo, a = hi, b = module index */
    int have_trailer;
    uint64_t trailer_ns, trailer_rss;

    /* aggregate captures: the checkpoint being read, committed at its END */
    int agg_open;          /* an AGG_BEGIN was read, its AGG_END not yet */
    uint64_t agg_id;       /* its id */
    mt_totals_t agg_totals; /* its totals */
    uint64_t agg_ns;       /* its time */
    struct mt_agg_entry_s {
        uint32_t node;
        mt_node_stats_t st;
    } *agg_entries;        /* its node entries */
    size_t agg_n, agg_cap;
    /* the window (mt_load_opts_t.window); see replay.c */
    int win;               /* a window was asked for */
    int win_started, win_ended;
    uint64_t win_from_ns, win_to_ns, win_from_seq, win_to_seq;
    uint64_t win_edge;     /* events at or after it go to window_edge */
    uint64_t win_start_ordinal; /* allocations before the window */
    uint64_t win_max_rss;
    mt_totals_t win_base;  /* the totals when the window started */

    /* where we are */
    uint64_t block_off;    /* file offset of the current block */
    const uint8_t *block;  /* the current decompressed block */
} mt_loader_t;

/* reader.c: formats "<name>: <message>" into errbuf (first error only) and
 * returns rc. */
int mt__load_error(mt_loader_t *ld, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* reader.c: appends a warning to the capture ("; " between warnings). */
int mt__load_warn(mt_loader_t *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* replay.c */
int mt__replay_init(mt_loader_t *ld);
void mt__replay_free(mt_loader_t *ld);
/* Grows the per-node arrays of the loader to at least n nodes. */
int mt__replay_reserve_nodes(mt_loader_t *ld, size_t n);
/* Queues the EVENTS section payload [p, end) (thread index already read)
 * found at byte off of the current block. */
int mt__replay_add_run(mt_loader_t *ld, uint32_t thread, const uint8_t *p,
                       const uint8_t *end, uint64_t off);
/* Queues a tick; memsample: 0, or the index + 1 of a memory sample whose
 * heap fields are filled when its seq comes. */
int mt__replay_add_tick(mt_loader_t *ld, uint64_t seq, uint64_t ns,
                        uint64_t rss, uint64_t memsample);
/* Queues a STAGE record (tk.seq... filled but order). */
int mt__replay_add_stage(mt_loader_t *ld, const mt_tick_t *tk);
/* Processes, in seq order, pending events with seq < w and ticks with
 * seq <= w; everything when final. */
int mt__replay_until(mt_loader_t *ld, uint64_t w, int final);
/* Sets up the window of opts (before any block is read). */
void mt__replay_window_init(mt_loader_t *ld, const mt_load_opts_t *opts);
/* After the last event: closes a window still open. Returns 0, or
 * MT_ERANGE (with the message) when the window never started. */
int mt__replay_window_finish(mt_loader_t *ld);
/* Called when the current block is done: moves the bytes of runs that
 * still point into it to their own storage. */
int mt__replay_end_block(mt_loader_t *ld);

/* checkpoint.c: one AGG_* definition record [p, end) at byte off of the
 * current block, in an aggregate capture. */
int mt__checkpoint_record(mt_loader_t *ld, unsigned type, const uint8_t *p,
                          const uint8_t *end, uint64_t off);
void mt__checkpoint_free(mt_loader_t *ld);
/* stages.c */
/* The slot of thread's mt_tstate_t in *slot, creating it. 0 or error. */
int mt__tstate_slot(mt_loader_t *ld, uint32_t thread, uint32_t *slot);
/* A STAGE record's definition-stream part: a name it defines. */
int mt__stage_define(mt_loader_t *ld, uint32_t id, const uint8_t *name,
                     size_t len);
/* Applies a STAGE record at its place in the event order. */
int mt__stage_apply(mt_loader_t *ld, const mt_tick_t *tk);
/* Closes the stages still open at the end of the capture, computes the
 * flags and says what was unbalanced. */
int mt__stages_finish(mt_loader_t *ld);
void mt__stages_free(mt_loader_t *ld);

/* Map helpers (replay.c). mt__idmap_get returns 0 and *val, or -1. */
int mt__idmap_put(mt_idmap_t *m, uint64_t key, uint32_t val);
int mt__idmap_get(const mt_idmap_t *m, uint64_t key, uint32_t *val);
void mt__idmap_free(mt_idmap_t *m);

#endif
