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
    uint32_t unused;
} mt_live_t;

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
    mt_event_state_t st;
    uint64_t key;          /* seq of q[qh], the next event to process */
    unsigned qh, qn;       /* lookahead queue: head, length */
    /* Events decoded ahead, so their hash slots are prefetched a few events
     * before they are needed (the live table rarely fits in cache). */
    mt_event_t q[MT_RUN_AHEAD];
} mt_run_t;

/* A TICK waiting for its place in the seq order; order breaks ties. */
typedef struct mt_tick_s {
    uint64_t seq, order, ns, rss;
} mt_tick_t;

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
    mt_idmap_t threads;

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
/* Queues a tick. */
int mt__replay_add_tick(mt_loader_t *ld, uint64_t seq, uint64_t ns,
                        uint64_t rss);
/* Processes, in seq order, pending events with seq < w and ticks with
 * seq <= w; everything when final. */
int mt__replay_until(mt_loader_t *ld, uint64_t w, int final);
/* Called when the current block is done: moves the bytes of runs that
 * still point into it to their own storage. */
int mt__replay_end_block(mt_loader_t *ld);

/* checkpoint.c: one AGG_* definition record [p, end) at byte off of the
 * current block, in an aggregate capture. */
int mt__checkpoint_record(mt_loader_t *ld, unsigned type, const uint8_t *p,
                          const uint8_t *end, uint64_t off);
void mt__checkpoint_free(mt_loader_t *ld);

/* Map helpers (replay.c). mt__idmap_get returns 0 and *val, or -1. */
int mt__idmap_put(mt_idmap_t *m, uint64_t key, uint32_t val);
int mt__idmap_get(const mt_idmap_t *m, uint64_t key, uint32_t *val);
void mt__idmap_free(mt_idmap_t *m);

#endif
