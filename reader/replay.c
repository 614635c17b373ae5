/* replay.c: puts the events of a capture back into global seq order and
 * replays them onto a model of the heap, keeping the totals, the per-node
 * statistics, the high-water mark and the RSS/heap timeline.
 *
 * Ordering. Every EVENTS section is a "run": its events have strictly
 * increasing seqs. Runs wait, still encoded, in a min-heap keyed by the seq
 * of their next event; a SYNC W lets us process everything below W, which
 * is a k-way merge of the runs. The run on top is drained in a tight loop
 * for as long as its events stay below the next run's, the next tick's and
 * W, so a single thread (or threads whose sections do not overlap in seq)
 * costs no heap operations per event. When a block is done, the runs still
 * pointing into it get a copy of their remaining bytes (a few bytes per
 * pending event, nothing per processed one). Each run decodes a few events
 * ahead so the hash slots they need are prefetched by the time they apply.
 * Ticks wait in a min-heap of their own: a tick with seq S is processed
 * after every event below S and before any event at or above S; a tick that
 * arrives after the SYNC covering S was processed lands before the next
 * pending event. Without SYNCs (a broken writer), the pending runs are
 * flushed in seq order once there are too many of them, with a warning.
 *
 * Counting rules (they keep total_allocations - total_frees == current_count
 * at every moment):
 * - An allocation event (malloc-family, mmap, mremap) at a nonzero address
 *   is one allocation. malloc-family events at address 0 (a failed or
 *   size-0 realloc) allocate nothing; mmap/mremap of length 0 neither.
 * - free/realloc of a live address is one free. free(0) is ignored; a free
 *   or realloc of a nonzero address that is not live is an unmatched free.
 * - An allocation at an address that is already live first frees the old
 *   one (a lost free): one free, then one allocation.
 * - mmap allocations: an mmap (or the new side of an mremap) is one
 *   allocation of `length` bytes. munmap may remove any part of it; its
 *   live bytes drop by exactly the bytes unmapped, and it counts as freed
 *   (one free, its node's live count drops by one) when its last mapped
 *   byte goes away. A munmap (or the old side of an mremap) that touches no
 *   traced byte is one unmatched free. An mmap over traced mapped bytes
 *   unmaps them first, as MAP_FIXED does. Lengths are used as recorded (not
 *   rounded up to pages).
 * - Temporary: an allocation freed (for mmap: whose last byte is unmapped)
 *   before `threshold` other allocations were made after it; it adds its
 *   original size and 1 to its node's `temporary`.
 * - The peak is checked after each whole event (a realloc frees before it
 *   allocates), and only a strictly higher heap is a new peak, so peak_seq
 *   is the first moment the maximum was reached. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loader.h"

#define MT_HASH_MUL 0x9e3779b97f4a7c15ull
#define MT_LIVE_MIN_BITS 12
#define MT_PREFETCH_MIN_SLOTS (1u << 14) /* 512 KiB of table */

static mt_live_t *live_alloc(size_t n);
static void live_release(mt_live_t *t, size_t n);

/* ---- Small id maps ------------------------------------------------------ */

static size_t idmap_home(uint64_t key, size_t mask)
{
    uint64_t h = key * MT_HASH_MUL;
    return (size_t)(h ^ (h >> 32)) & mask;
}

int mt__idmap_get(const mt_idmap_t *m, uint64_t key, uint32_t *val)
{
    if (!m->slots)
        return -1;
    for (size_t i = idmap_home(key, m->mask);; i = (i + 1) & m->mask) {
        if (!m->slots[i].used)
            return -1;
        if (m->slots[i].key == key) {
            *val = m->slots[i].val;
            return 0;
        }
    }
}

int mt__idmap_put(mt_idmap_t *m, uint64_t key, uint32_t val)
{
    if (!m->slots || (m->count + 1) * 2 > m->mask + 1) {
        size_t n = m->slots ? (m->mask + 1) * 2 : 64;
        struct mt_idmap_slot_s *s = calloc(n, sizeof(*s));
        if (!s)
            return MT_ENOMEM;
        for (size_t i = 0; m->slots && i <= m->mask; i++) {
            if (!m->slots[i].used)
                continue;
            size_t j = idmap_home(m->slots[i].key, n - 1);
            while (s[j].used)
                j = (j + 1) & (n - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->mask = n - 1;
    }
    size_t i = idmap_home(key, m->mask);
    while (m->slots[i].used && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (!m->slots[i].used)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->slots[i].used = 1;
    return 0;
}

void mt__idmap_free(mt_idmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = m->count = 0;
}

/* ---- Setup -------------------------------------------------------------- */

int mt__replay_init(mt_loader_t *ld)
{
    ld->live = live_alloc((size_t)1 << MT_LIVE_MIN_BITS);
    if (!ld->live)
        return MT_ENOMEM;
    ld->live_mask = ((size_t)1 << MT_LIVE_MIN_BITS) - 1;
    ld->live_shift = 64 - MT_LIVE_MIN_BITS;
    ld->maprec_free = UINT64_MAX;
    ld->gen = 1;
    mt__omap_init(&ld->regions, (uint64_t)(uintptr_t)ld * MT_HASH_MUL);
    return 0;
}

void mt__replay_free(mt_loader_t *ld)
{
    for (size_t i = 0; i < ld->nheap; i++) {
        free(ld->heap[i]->own);
        free(ld->heap[i]);
    }
    free(ld->heap);
    if (ld->live)
        live_release(ld->live, ld->live_mask + 1);
    mt__omap_free(&ld->regions);
    free(ld->maprecs);
    free(ld->dirty_stamp);
    free(ld->dirty);
    free(ld->ticks);
    mt__idmap_free(&ld->threads);
    mt__stages_free(ld);
}

int mt__replay_reserve_nodes(mt_loader_t *ld, size_t n)
{
    mt_capture_t *cap = ld->cap;
    if (n <= cap->node_cap)
        return 0;
    size_t nc = cap->node_cap ? cap->node_cap : 256;
    while (nc < n)
        nc *= 2;
    mt_node_t *nodes = realloc(cap->nodes, nc * sizeof(*nodes));
    if (!nodes)
        return MT_ENOMEM;
    cap->nodes = nodes;
    mt_node_stats_t *st = realloc(cap->node_stats, nc * sizeof(*st));
    if (!st)
        return MT_ENOMEM;
    cap->node_stats = st;
    memset(st + cap->node_cap, 0, (nc - cap->node_cap) * sizeof(*st));
    uint32_t *ds = realloc(ld->dirty_stamp, nc * sizeof(*ds));
    if (!ds)
        return MT_ENOMEM;
    ld->dirty_stamp = ds;
    memset(ds + cap->node_cap, 0, (nc - cap->node_cap) * sizeof(*ds));
    uint32_t *d = realloc(ld->dirty, nc * sizeof(*d));
    if (!d)
        return MT_ENOMEM;
    ld->dirty = d;
    cap->node_cap = nc;
    return 0;
}

/* ---- Statistics ----------------------------------------------------------- */

static inline void mark_dirty(mt_loader_t *ld, uint32_t node)
{
    if (ld->dirty_stamp[node] != ld->gen) {
        ld->dirty_stamp[node] = ld->gen;
        ld->dirty[ld->ndirty++] = node;
    }
}

/* A new high-water mark: copy the live amounts of the nodes that changed
 * since the last one (the others still hold their value from then). */
static void new_peak(mt_loader_t *ld, uint64_t seq)
{
    mt_totals_t *t = &ld->cap->totals;
    mt_node_stats_t *ns = ld->cap->node_stats;
    t->peak_bytes = t->current_bytes;
    t->peak_seq = seq;
    t->peak_time_ns = ld->have_tick ? ld->last_tick_ns : 0;
    for (size_t i = 0; i < ld->ndirty; i++)
        ns[ld->dirty[i]].peak = ns[ld->dirty[i]].leaked;
    ld->ndirty = 0;
    if (++ld->gen == 0) { /* stamps wrapped: none may look current */
        memset(ld->dirty_stamp, 0, ld->cap->node_cap * sizeof(uint32_t));
        ld->gen = 1;
    }
}

static int too_big(mt_loader_t *ld)
{
    return mt__load_error(ld, MT_ETOOBIG,
                          "corrupt record: allocated bytes overflow 64 bits "
                          "in block at offset %llu",
                          (unsigned long long)ld->block_off);
}

/* Counts one allocation of size bytes at node stack; *ordinal gets its
 * allocation number. */
static inline int count_alloc(mt_loader_t *ld, unsigned type, uint64_t size,
                              uint32_t stack, uint64_t *ordinal)
{
    mt_totals_t *t = &ld->cap->totals;
    uint64_t cur, tot;
    if (__builtin_add_overflow(t->current_bytes, size, &cur) ||
        __builtin_add_overflow(t->total_bytes_allocated, size, &tot))
        return too_big(ld);
    t->current_bytes = cur;
    t->total_bytes_allocated = tot;
    t->current_count++;
    *ordinal = t->total_allocations++;
    t->by_allocator[type].bytes += size;
    t->by_allocator[type].count++;
    t->size_histogram[size ? 64 - __builtin_clzll(size) : 0]++;
    mt_node_stats_t *ns = &ld->cap->node_stats[stack];
    ns->total.bytes += size;
    ns->total.count++;
    ns->leaked.bytes += size;
    ns->leaked.count++;
    mark_dirty(ld, stack);
    return 0;
}

/* Counts the end of one allocation (its bytes are already uncounted). */
static inline void count_free(mt_loader_t *ld, uint64_t size, uint32_t stack,
                              uint64_t ordinal)
{
    mt_totals_t *t = &ld->cap->totals;
    mt_node_stats_t *ns = &ld->cap->node_stats[stack];
    t->current_count--;
    t->total_frees++;
    ns->leaked.count--;
    /* ordinal below the window's start: made before it, not its churn */
    if (t->total_allocations - ordinal - 1 < ld->threshold &&
        ordinal >= ld->win_start_ordinal) {
        ns->temporary.bytes += size;
        ns->temporary.count++;
    }
}

static inline void uncount_bytes(mt_loader_t *ld, uint64_t bytes,
                                 uint32_t stack)
{
    ld->cap->totals.current_bytes -= bytes;
    ld->cap->node_stats[stack].leaked.bytes -= bytes;
    mark_dirty(ld, stack);
}

/* ---- Live malloc-family allocations --------------------------------------- */

/* The live table is the one big randomly accessed structure: tables of
 * 2 MiB and more are mmap'd and asked for huge pages, which saves a TLB
 * miss on most lookups. Returns zeroed memory or NULL. */
static mt_live_t *live_alloc(size_t n)
{
    size_t bytes = n * sizeof(mt_live_t);
    if (bytes < (2u << 20))
        return calloc(n, sizeof(mt_live_t));
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void live_release(mt_live_t *t, size_t n)
{
    if (!t)
        return;
    if (n * sizeof(mt_live_t) < (2u << 20))
        free(t);
    else
        munmap(t, n * sizeof(mt_live_t));
}

static inline size_t live_home(const mt_loader_t *ld, uint64_t addr)
{
    return (size_t)((addr * MT_HASH_MUL) >> ld->live_shift);
}

static int live_grow(mt_loader_t *ld)
{
    size_t n = (ld->live_mask + 1) * 2;
    mt_live_t *t = live_alloc(n);
    if (!t)
        return MT_ENOMEM;
    mt_live_t *old = ld->live;
    size_t old_n = ld->live_mask + 1;
    ld->live = t;
    ld->live_mask = n - 1;
    ld->live_shift--;
    for (size_t i = 0; i < old_n; i++) {
        if (!old[i].addr)
            continue;
        size_t j = live_home(ld, old[i].addr);
        while (t[j].addr)
            j = (j + 1) & ld->live_mask;
        t[j] = old[i];
    }
    live_release(old, old_n);
    return 0;
}

static inline mt_live_t *live_find(const mt_loader_t *ld, uint64_t addr)
{
    size_t i = live_home(ld, addr);
    for (;;) {
        mt_live_t *e = &ld->live[i];
        if (e->addr == addr)
            return e;
        if (!e->addr)
            return NULL;
        i = (i + 1) & ld->live_mask;
    }
}

/* Removes e by shifting later entries of its cluster back, so lookups never
 * need tombstones. */
static inline void live_delete(mt_loader_t *ld, mt_live_t *e)
{
    size_t mask = ld->live_mask;
    size_t i = (size_t)(e - ld->live), j = i;
    for (;;) {
        j = (j + 1) & mask;
        mt_live_t *f = &ld->live[j];
        if (!f->addr)
            break;
        size_t k = live_home(ld, f->addr);
        /* f may move to i only if its home is not in (i, j] cyclically. */
        if (((j - k) & mask) < ((j - i) & mask))
            continue;
        ld->live[i] = *f;
        i = j;
    }
    ld->live[i].addr = 0;
    ld->live_count--;
}

/* Frees addr if live. Returns 1 when it was. */
static inline int heap_free(mt_loader_t *ld, uint64_t addr)
{
    mt_live_t *e = live_find(ld, addr);
    if (!e)
        return 0;
    uncount_bytes(ld, e->size, e->stack);
    count_free(ld, e->size, e->stack, e->ordinal);
    if (e->pysmall)
        ld->pysmall_bytes -= e->size;
    live_delete(ld, e);
    return 1;
}

static inline int heap_alloc(mt_loader_t *ld, const mt_event_t *ev)
{
    if ((ld->live_count + 1) * 10 > (ld->live_mask + 1) * 7) {
        int rc = live_grow(ld);
        if (rc)
            return ld->failed ? rc : mt__load_error(ld, rc, "out of memory");
    }
    size_t i = live_home(ld, ev->addr);
    mt_live_t *e;
    for (;;) {
        e = &ld->live[i];
        if (!e->addr || e->addr == ev->addr)
            break;
        i = (i + 1) & ld->live_mask;
    }
    if (e->addr) { /* a lost free: the old block went away unseen */
        uncount_bytes(ld, e->size, e->stack);
        count_free(ld, e->size, e->stack, e->ordinal);
        if (e->pysmall)
            ld->pysmall_bytes -= e->size;
    } else {
        ld->live_count++;
    }
    uint64_t ord = 0;
    int rc = count_alloc(ld, ev->type, ev->size, ev->stack, &ord);
    if (rc)
        return rc;
    e->addr = ev->addr;
    e->size = ev->size;
    e->stack = ev->stack;
    e->ordinal = ord;
    e->pysmall = ev->type >= MT_EV_PY_MALLOC && ev->size <= MT_PYMALLOC_SMALL;
    if (e->pysmall)
        ld->pysmall_bytes += ev->size;
    return 0;
}

/* ---- mmap'd regions --------------------------------------------------------- */

/* The last piece of an mmap allocation went away. */
static void maprec_release(mt_loader_t *ld, uint64_t rec)
{
    mt_maprec_t *m = &ld->maprecs[rec];
    count_free(ld, m->size, m->stack, m->ordinal);
    m->pieces = 0;
    m->ordinal = ld->maprec_free;
    ld->maprec_free = rec;
}

/* Unmaps [a, b). Returns 1 when traced bytes were mapped there, else 0, or
 * a negative error. */
static int map_remove(mt_loader_t *ld, uint64_t a, uint64_t b)
{
    mt_omap_t *t = &ld->regions;
    int hit = 0;
    uint32_t x = mt__omap_floor(t, a);
    if (x == MT_OMAP_NIL || t->n[x].a <= a)
        x = mt__omap_after(t, a);
    while (x != MT_OMAP_NIL && t->n[x].key < b) {
        mt_omap_node_t *g = &t->n[x];
        uint64_t start = g->key, end = g->a, rec = g->b;
        uint64_t s = start > a ? start : a, e = end < b ? end : b;
        hit = 1;
        uncount_bytes(ld, e - s, ld->maprecs[rec].stack);
        ld->mapped_bytes -= e - s;
        if (s == start && e == end) {
            mt__omap_erase(t, start);
            if (--ld->maprecs[rec].pieces == 0)
                maprec_release(ld, rec);
        } else if (s == start) {
            g->key = e; /* still between its neighbours */
        } else if (e == end) {
            g->a = s;
        } else { /* a hole in the middle: two pieces of one allocation */
            g->a = s;
            if (mt__omap_insert(t, e, end, rec) == MT_OMAP_NIL)
                return mt__load_error(ld, MT_ENOMEM, "out of memory");
            ld->maprecs[rec].pieces++;
        }
        x = mt__omap_after(t, start);
    }
    return hit;
}

static int range_end(mt_loader_t *ld, uint64_t addr, uint64_t len,
                     uint64_t *end)
{
    if (!__builtin_add_overflow(addr, len, end))
        return 0;
    return mt__load_error(ld, MT_ECORRUPT,
                          "corrupt record: mapping 0x%llx + %llu wraps around "
                          "in block at offset %llu",
                          (unsigned long long)addr, (unsigned long long)len,
                          (unsigned long long)ld->block_off);
}

/* Maps [addr, addr + len) as a new allocation. */
static int map_add(mt_loader_t *ld, const mt_event_t *ev, uint64_t addr,
                   uint64_t len)
{
    uint64_t end;
    int rc;
    if (len == 0)
        return 0;
    if ((rc = range_end(ld, addr, len, &end)))
        return rc;
    if ((rc = map_remove(ld, addr, end)) < 0)
        return rc;
    uint64_t rec = ld->maprec_free;
    if (rec != UINT64_MAX) {
        ld->maprec_free = ld->maprecs[rec].ordinal;
    } else {
        if (ld->nmaprecs == ld->maprecs_cap) {
            size_t nc = ld->maprecs_cap ? ld->maprecs_cap * 2 : 64;
            mt_maprec_t *m = realloc(ld->maprecs, nc * sizeof(*m));
            if (!m)
                return mt__load_error(ld, MT_ENOMEM, "out of memory");
            ld->maprecs = m;
            ld->maprecs_cap = nc;
        }
        rec = ld->nmaprecs++;
    }
    mt_maprec_t *m = &ld->maprecs[rec];
    m->size = len;
    m->stack = ev->stack;
    m->pieces = 1;
    if ((rc = count_alloc(ld, ev->type, len, ev->stack, &m->ordinal)))
        return rc;
    ld->mapped_bytes += len;
    if (mt__omap_insert(&ld->regions, addr, end, rec) == MT_OMAP_NIL)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    return 0;
}

/* munmap, and the old side of mremap. */
static int map_unmap(mt_loader_t *ld, uint64_t addr, uint64_t len)
{
    uint64_t end;
    int rc;
    if (len == 0)
        return 0;
    if ((rc = range_end(ld, addr, len, &end)))
        return rc;
    if ((rc = map_remove(ld, addr, end)) < 0)
        return rc;
    if (!rc)
        ld->cap->totals.unmatched_frees++;
    return 0;
}

/* ---- One event -------------------------------------------------------------- */

static int bad_stack(mt_loader_t *ld, const mt_run_t *r, const mt_event_t *ev)
{
    return mt__load_error(ld, MT_ECORRUPT,
                          "corrupt record: event seq %llu refers to stack "
                          "node %u, but only %zu nodes are defined (events "
                          "of the block at offset %llu)",
                          (unsigned long long)ev->seq, ev->stack,
                          ld->cap->node_count,
                          (unsigned long long)r->block_off);
}

static int window_edge(mt_loader_t *ld, uint64_t seq, const uint64_t *ns);

static inline int apply_event(mt_loader_t *ld, const mt_run_t *r,
                              const mt_event_t *ev)
{
    mt_totals_t *t = &ld->cap->totals;
    int rc;
    if (__builtin_expect(ev->seq >= ld->win_edge, 0) &&
        window_edge(ld, ev->seq, NULL))
        return 0; /* after the window: nothing more counts */
    t->events++;
    if (ev->stack >= ld->cap->node_count)
        return bad_stack(ld, r, ev);
    uint64_t bytes0 = t->total_bytes_allocated, count0 = t->total_allocations;
    switch (ev->type) {
    case MT_EV_FREE:
    case MT_EV_PY_FREE:
        if (ev->addr && !heap_free(ld, ev->addr))
            t->unmatched_frees++;
        return 0;
    case MT_EV_MUNMAP:
        return map_unmap(ld, ev->addr, ev->size);
    case MT_EV_MMAP:
        rc = map_add(ld, ev, ev->addr, ev->size);
        break;
    case MT_EV_MREMAP:
        if (ev->old_size && (rc = map_unmap(ld, ev->old, ev->old_size)))
            return rc;
        rc = map_add(ld, ev, ev->addr, ev->size);
        break;
    case MT_EV_REALLOC:
    case MT_EV_REALLOCARRAY:
    case MT_EV_PY_REALLOC:
        if (ev->old && !heap_free(ld, ev->old))
            t->unmatched_frees++;
        /* fall through */
    default:
        if (!ev->addr)
            return 0;
        rc = heap_alloc(ld, ev);
        break;
    }
    if (rc)
        return rc;
    /* For stages (once a STAGE record was read; only differences between
     * a stage's enter and leave matter): what each thread allocated, the
     * heap's high point. */
    if (__builtin_expect(ld->stages_on, 0)) {
        mt_tstate_t *ts = &ld->tstates[r->tslot];
        ts->bytes += t->total_bytes_allocated - bytes0;
        ts->count += t->total_allocations - count0;
        if (t->current_bytes > ld->stage_hwm)
            ld->stage_hwm = t->current_bytes;
    }
    if (t->current_bytes > t->peak_bytes)
        new_peak(ld, ev->seq);
    return 0;
}

/* ---- Runs and their merge ----------------------------------------------------- */

static int run_error(mt_loader_t *ld, const mt_run_t *r, const uint8_t *at,
                     int rc)
{
    unsigned long long off = r->base_off + (unsigned long long)(at - r->base);
    unsigned long long boff = r->block_off;
    unsigned type = *at & MT_EV_TYPE_MASK; /* at < end: decode saw a byte */
    if (rc == MT_ETRUNCATED)
        return mt__load_error(ld, MT_ECORRUPT,
                              "corrupt record: event cut short by the end of "
                              "its section at byte %llu of the block at "
                              "offset %llu", off, boff);
    if (type == 0 || type >= MT_EV_TYPE_COUNT)
        return mt__load_error(ld, MT_ECORRUPT,
                              "corrupt record: event type %u at byte %llu of "
                              "the block at offset %llu", type, off, boff);
    return mt__load_error(ld, MT_ECORRUPT,
                          "corrupt record: bad %s event (overlong varint or "
                          "stack id over 2^32) at byte %llu of the block at "
                          "offset %llu", mt__event_name(type), off, boff);
}

/* Starts fetching the cache lines ev will touch. always_inline: GCC 12
 * otherwise finds the function free of side effects and drops the call,
 * prefetches and all. */
static inline __attribute__((always_inline)) void
prefetch_event(const mt_loader_t *ld, const mt_event_t *ev)
{
    if (mt__event_is_mmap(ev->type) || ld->live_mask < MT_PREFETCH_MIN_SLOTS)
        return; /* not in the hash table, or the table stays in cache */
    /* The slot's line and the next one: probes and the backward shift of
     * a delete often go one line further. (A prefetch never faults, so
     * one past the end of the table is harmless.) */
    uintptr_t p = (uintptr_t)&ld->live[live_home(ld, ev->addr)];
    __builtin_prefetch((const void *)p, 1);
    __builtin_prefetch((const void *)(p + 64), 1);
    if (mt__event_addr_only(ev->type))
        return;
    if (ev->stack < ld->cap->node_count)
        __builtin_prefetch(&ld->cap->node_stats[ev->stack], 1);
    if (ev->old) {
        p = (uintptr_t)&ld->live[live_home(ld, ev->old)];
        __builtin_prefetch((const void *)p, 1);
        __builtin_prefetch((const void *)(p + 64), 1);
    }
}

/* Decodes one more event of r onto the tail of its queue. */
static inline int run_decode(mt_loader_t *ld, mt_run_t *r)
{
    const uint8_t *at = r->p;
    uint64_t prev = r->st.seq;
    mt_event_t *ev = &r->q[(r->qh + r->qn) & (MT_RUN_AHEAD - 1)];
    int rc = mt__decode_event(&r->p, r->end, &r->st, ev);
    if (rc)
        return run_error(ld, r, at, rc);
    if (ev->seq <= prev && r->started)
        return mt__load_error(ld, MT_ECORRUPT,
                              "corrupt record: event seq wraps around at byte "
                              "%llu of the block at offset %llu",
                              (unsigned long long)(r->base_off + (uint64_t)(at - r->base)),
                              (unsigned long long)r->block_off);
    r->started = 1;
    ev->thread = r->thread;
    prefetch_event(ld, ev);
    if (!r->qn++)
        r->key = ev->seq;
    return 0;
}

/* Drops the head event of r and decodes one more. Returns 1 when r still
 * has an event, 0 when it is exhausted, or a negative error. */
static inline int run_next(mt_loader_t *ld, mt_run_t *r)
{
    r->qh = (r->qh + 1) & (MT_RUN_AHEAD - 1);
    r->qn--;
    if (r->p < r->end) {
        int rc = run_decode(ld, r);
        if (rc)
            return rc;
    }
    if (!r->qn)
        return 0;
    r->key = r->q[r->qh].seq;
    return 1;
}

static void run_free(mt_loader_t *ld, mt_run_t *r)
{
    ld->pending_bytes -= r->own_len;
    free(r->own);
    free(r);
}

static inline void heap_sift_down(mt_run_t **h, size_t n, size_t i)
{
    mt_run_t *x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1]->key < h[c]->key)
            c++;
        if (h[c]->key >= x->key)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int heap_push(mt_loader_t *ld, mt_run_t *r)
{
    if (ld->nheap == ld->heap_cap) {
        size_t nc = ld->heap_cap ? ld->heap_cap * 2 : 16;
        mt_run_t **h = realloc(ld->heap, nc * sizeof(*h));
        if (!h)
            return MT_ENOMEM;
        ld->heap = h;
        ld->heap_cap = nc;
    }
    size_t i = ld->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (ld->heap[p]->key <= r->key)
            break;
        ld->heap[i] = ld->heap[p];
        i = p;
    }
    ld->heap[i] = r;
    return 0;
}

static void heap_pop(mt_loader_t *ld)
{
    run_free(ld, ld->heap[0]);
    ld->heap[0] = ld->heap[--ld->nheap];
    if (ld->nheap)
        heap_sift_down(ld->heap, ld->nheap, 0);
}

int mt__replay_add_run(mt_loader_t *ld, uint32_t thread, const uint8_t *p,
                       const uint8_t *end, uint64_t off)
{
    int rc;
    if (p >= end || ld->win_ended)
        return 0; /* after the window's end, events are not even decoded */
    if (ld->nheap >= MT_MAX_PENDING_RUNS) {
        if (!ld->forced++)
            mt__load_warn(ld, "more than %u event sections arrived without "
                          "a sync point; some events may be out of order",
                          MT_MAX_PENDING_RUNS);
        if ((rc = mt__replay_until(ld, 0, 1)))
            return rc;
    }
    mt_run_t *r = calloc(1, sizeof(*r));
    if (!r)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    r->p = r->base = p;
    r->end = end;
    r->base_off = off;
    r->block_off = ld->block_off;
    r->thread = thread;
    if ((rc = mt__tstate_slot(ld, thread, &r->tslot))) {
        free(r);
        return rc;
    }
    while (r->qn < MT_RUN_AHEAD && r->p < r->end) {
        if ((rc = run_decode(ld, r))) {
            free(r);
            return rc;
        }
    }
    uint32_t one;
    if (mt__idmap_get(&ld->threads, thread, &one) &&
        mt__idmap_put(&ld->threads, thread, 1)) {
        free(r);
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    }
    ld->cap->totals.threads = ld->threads.count;
    if (heap_push(ld, r)) {
        free(r);
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    }
    return 0;
}

int mt__replay_end_block(mt_loader_t *ld)
{
    for (size_t i = 0; i < ld->nheap; i++) {
        mt_run_t *r = ld->heap[i];
        if (r->own)
            continue;
        size_t n = (size_t)(r->end - r->p);
        r->own = malloc(n ? n : 1);
        if (!r->own)
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        if (n)
            memcpy(r->own, r->p, n);
        r->own_len = n;
        r->base_off += (uint64_t)(r->p - r->base);
        r->base = r->p = r->own;
        r->end = r->own + n;
        ld->pending_bytes += n;
    }
    if (ld->pending_bytes > MT_MAX_PENDING_BYTES) {
        if (!ld->forced++)
            mt__load_warn(ld, "more than %u MiB of events arrived without a "
                          "sync point; some events may be out of order",
                          MT_MAX_PENDING_BYTES >> 20);
        return mt__replay_until(ld, 0, 1);
    }
    return 0;
}

/* ---- Ticks ------------------------------------------------------------------ */

static inline int tick_less(const mt_tick_t *a, const mt_tick_t *b)
{
    return a->seq < b->seq || (a->seq == b->seq && a->order < b->order);
}

static int marker_push(mt_loader_t *ld, mt_tick_t tk)
{
    if (ld->nticks == ld->ticks_cap) {
        size_t nc = ld->ticks_cap ? ld->ticks_cap * 2 : 64;
        mt_tick_t *t = realloc(ld->ticks, nc * sizeof(*t));
        if (!t)
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        ld->ticks = t;
        ld->ticks_cap = nc;
    }
    tk.order = ld->tick_order++;
    mt_tick_t *h = ld->ticks;
    size_t i = ld->nticks++;
    while (i > 0 && tick_less(&tk, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = tk;
    return 0;
}

int mt__replay_add_tick(mt_loader_t *ld, uint64_t seq, uint64_t ns,
                        uint64_t rss, uint64_t memsample)
{
    return marker_push(ld, (mt_tick_t){.seq = seq, .ns = ns, .rss = rss,
                                       .memsample = memsample});
}

/* STAGE records wait with the ticks: the same rule places them. */
int mt__replay_add_stage(mt_loader_t *ld, const mt_tick_t *tk)
{
    return marker_push(ld, *tk);
}

static void tick_pop(mt_loader_t *ld)
{
    mt_tick_t *h = ld->ticks, x = h[--ld->nticks];
    size_t n = ld->nticks, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && tick_less(&h[c + 1], &h[c]))
            c++;
        if (!tick_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = x;
}

/* ---- The window ----------------------------------------------------------- *
 * Events carry a seq, not a time; ticks map one to the other. The window
 * starts when the first tick at or after from_ns is processed (all events
 * before it are applied, so the heap is right) and ends at the first tick
 * at or after to_ns: from then on events are dropped, runs not decoded.
 * At the start the counters are remembered (the window's are differences)
 * and the per-node total and temporary amounts zeroed; the peak snapshot
 * is retaken, so the window's high-water mark starts at the heap it
 * begins with. At the end, the leaks view is recomputed from the live
 * allocations made since the start (their ordinals tell).
 *
 * Edges given as seqs (from_seq, to_seq) are exact: the window starts
 * right before the first event or stage record at or after from_seq and
 * ends right before the first event, stage record or tick at or after
 * to_seq, whichever comes first.
 * apply_event checks one number, win_edge: the next seq edge, UINT64_MAX
 * when there is none, 0 once the window ended (every event is dropped). */

void mt__replay_window_init(mt_loader_t *ld, const mt_load_opts_t *opts)
{
    ld->win_edge = UINT64_MAX;
    if (!opts || !opts->window)
        return;
    ld->win = 1;
    ld->win_from_ns = opts->from_ns;
    ld->win_to_ns = opts->to_ns;
    ld->win_from_seq = opts->from_seq;
    ld->win_to_seq = opts->to_seq;
    ld->cap->window.active = 1;
    ld->cap->window.to_ns = UINT64_MAX;
    ld->cap->window.exact = opts->from_seq || opts->to_seq;
    if (ld->win_from_seq)
        ld->win_from_ns = UINT64_MAX; /* no tick starts it */
    else if (ld->win_from_ns == 0)
        ld->win_started = 1; /* from the very start: nothing to reset */
    ld->win_edge = !ld->win_started && ld->win_from_seq ? ld->win_from_seq
                   : ld->win_to_seq                      ? ld->win_to_seq
                                                         : UINT64_MAX;
}

static void window_start(mt_loader_t *ld, uint64_t seq, uint64_t ns)
{
    mt_capture_t *cap = ld->cap;
    ld->win_started = 1;
    ld->win_base = cap->totals;
    ld->win_start_ordinal = cap->totals.total_allocations;
    for (size_t i = 0; i < cap->node_count; i++) {
        memset(&cap->node_stats[i].total, 0, sizeof(mt_amount_t));
        memset(&cap->node_stats[i].temporary, 0, sizeof(mt_amount_t));
    }
    new_peak(ld, seq); /* the heap we start with is the first peak */
    cap->totals.peak_time_ns = ns;
    cap->sample_count = 0;
    cap->window.from_ns = ns;
    cap->window.start_bytes = cap->totals.current_bytes;
}

/* The leaks view of the window: live allocations made inside it. */
static void window_leaks(mt_loader_t *ld)
{
    mt_capture_t *cap = ld->cap;
    mt_node_stats_t *ns = cap->node_stats;
    uint64_t from = ld->win_start_ordinal;
    for (size_t i = 0; i < cap->node_count; i++)
        memset(&ns[i].leaked, 0, sizeof(mt_amount_t));
    for (size_t i = 0; i <= ld->live_mask; i++) {
        const mt_live_t *e = &ld->live[i];
        if (e->addr && e->ordinal >= from) {
            ns[e->stack].leaked.bytes += e->size;
            ns[e->stack].leaked.count++;
        }
    }
    for (size_t i = 0; i < ld->nmaprecs; i++)
        if (ld->maprecs[i].pieces && ld->maprecs[i].ordinal >= from)
            ns[ld->maprecs[i].stack].leaked.count++;
    uint32_t first = mt__omap_floor(&ld->regions, 0);
    for (uint32_t x = first != MT_OMAP_NIL ? first
                                           : mt__omap_after(&ld->regions, 0);
         x != MT_OMAP_NIL;
         x = mt__omap_after(&ld->regions, ld->regions.n[x].key)) {
        const mt_omap_node_t *g = &ld->regions.n[x];
        const mt_maprec_t *m = &ld->maprecs[g->b];
        if (m->ordinal >= from)
            ns[m->stack].leaked.bytes += g->a - g->key;
    }
}

/* Ends the window at time ns (UINT64_MAX: the end of the capture, which
 * finish_totals fills in). */
static void window_end(mt_loader_t *ld, uint64_t ns)
{
    mt_capture_t *cap = ld->cap;
    mt_totals_t *t = &cap->totals;
    const mt_totals_t *b = &ld->win_base;
    ld->win_ended = 1;
    ld->win_edge = 0;
    cap->window.to_ns = ns;
    if (ld->win_start_ordinal)
        window_leaks(ld);
    t->total_allocations -= b->total_allocations;
    t->total_frees -= b->total_frees;
    t->unmatched_frees -= b->unmatched_frees;
    t->total_bytes_allocated -= b->total_bytes_allocated;
    t->events -= b->events;
    for (size_t i = 0; i < MT_ALLOCATOR_COUNT; i++) {
        t->by_allocator[i].bytes -= b->by_allocator[i].bytes;
        t->by_allocator[i].count -= b->by_allocator[i].count;
    }
    for (size_t i = 0; i < 65; i++)
        t->size_histogram[i] -= b->size_histogram[i];
}

/* An event or stage record at or after win_edge: starts or ends a window
 * given by seqs, at the record's time ns when it has one (NULL: an event,
 * placed at the last tick). Returns 1 when the event is after the window
 * (dropped). */
static int window_edge(mt_loader_t *ld, uint64_t seq, const uint64_t *ns)
{
    uint64_t t = ns ? *ns : ld->have_tick ? ld->last_tick_ns : 0;
    if (ld->win_ended)
        return 1;
    if (!ld->win_started && ld->win_from_seq && seq >= ld->win_from_seq)
        window_start(ld, seq, t);
    if (ld->win_to_seq && seq >= ld->win_to_seq) {
        if (!ld->win_started)
            return 1; /* an empty window; _finish says so */
        window_end(ld, t);
        return 1;
    }
    ld->win_edge = ld->win_to_seq ? ld->win_to_seq : UINT64_MAX;
    return 0;
}

int mt__replay_window_finish(mt_loader_t *ld)
{
    if (!ld->win)
        return 0;
    if (!ld->win_started && ld->win_from_seq)
        return mt__load_error(ld, MT_ERANGE,
                              "the window starts at event %llu, after the "
                              "capture's last event",
                              (unsigned long long)ld->win_from_seq);
    if (!ld->win_started)
        return mt__load_error(ld, MT_ERANGE,
                              "the window starts at %.3f s, after the "
                              "capture's last RSS sample (at %.3f s; the "
                              "run lasted %.3f s)",
                              (double)ld->win_from_ns / 1e9,
                              (double)ld->max_tick_ns / 1e9,
                              (double)ld->cap->totals.duration_ns / 1e9);
    if (!ld->win_ended) {
        window_end(ld, UINT64_MAX);
        /* A seq edge after every event cut nothing off: not clamped. */
        ld->cap->window.clamped = !ld->win_to_seq &&
                                  ld->win_to_ns != UINT64_MAX;
    }
    ld->cap->totals.peak_rss_bytes = ld->win_max_rss;
    return 0;
}

static int do_tick(mt_loader_t *ld, const mt_tick_t *tk)
{
    mt_capture_t *cap = ld->cap;
    if (tk->kind) {
        /* A stage record sits exactly at its seq among the events: a
         * window edge given by that seq (the stage's own) is placed here
         * even when no event follows it. */
        if (ld->win_edge && tk->seq >= ld->win_edge)
            window_edge(ld, tk->seq, &tk->ns);
        else if (ld->win_ended && tk->seq == ld->win_to_seq &&
                 tk->ns > cap->window.to_ns)
            cap->window.to_ns = tk->ns; /* left at the same place, later */
        return mt__stage_apply(ld, tk);
    }
    if (tk->memsample) { /* a memory sample: the heap at its moment */
        mt_memsample_t *m = &cap->memsamples[tk->memsample - 1];
        m->heap_bytes = cap->totals.current_bytes;
        m->mapped_bytes = ld->mapped_bytes;
        m->pysmall_bytes = ld->pysmall_bytes;
        return 0;
    }
    ld->last_ns = tk->ns > ld->last_ns ? tk->ns : ld->last_ns;
    ld->last_rss = tk->rss;
    if (ld->win) {
        if (ld->win_ended)
            return 0;
        if (!ld->win_started) {
            if (tk->ns > ld->max_tick_ns)
                ld->max_tick_ns = tk->ns;
            ld->have_tick = 1; /* the time, for a start by seq */
            ld->last_tick_ns = tk->ns;
            if (tk->ns < ld->win_from_ns)
                return 0;
            window_start(ld, tk->seq, tk->ns);
        }
        if (tk->rss > ld->win_max_rss)
            ld->win_max_rss = tk->rss;
    }
    if (cap->sample_count == cap->sample_cap) {
        size_t nc = cap->sample_cap ? cap->sample_cap * 2 : 256;
        mt_sample_t *s = realloc(cap->samples, nc * sizeof(*s));
        if (!s)
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        cap->samples = s;
        cap->sample_cap = nc;
    }
    cap->samples[cap->sample_count++] =
        (mt_sample_t){tk->ns, cap->totals.current_bytes, tk->rss, tk->seq};
    ld->have_tick = 1;
    ld->last_tick_ns = tk->ns;
    if (tk->ns > ld->max_tick_ns)
        ld->max_tick_ns = tk->ns;
    if (tk->rss > ld->max_tick_rss)
        ld->max_tick_rss = tk->rss;
    if (ld->win && (ld->win_to_seq ? tk->seq >= ld->win_to_seq
                                   : tk->ns >= ld->win_to_ns))
        window_end(ld, tk->ns);
    return 0;
}

/* ---- The merge ------------------------------------------------------------------ */

int mt__replay_until(mt_loader_t *ld, uint64_t w, int final)
{
    int rc;
    for (;;) {
        const mt_tick_t *tk = NULL;
        if (ld->nticks && (final || ld->ticks[0].seq <= w))
            tk = &ld->ticks[0];
        if (!ld->nheap || (!final && ld->heap[0]->key >= w) ||
            (tk && tk->seq <= ld->heap[0]->key)) {
            if (!tk)
                return 0;
            if ((rc = do_tick(ld, tk)))
                return rc;
            tick_pop(ld);
            continue;
        }
        /* Drain the top run while its events come first: below W, below
         * the next tick and not above any other run's next event. */
        mt_run_t *r = ld->heap[0];
        uint64_t lim = final ? UINT64_MAX : w - 1;
        if (tk && tk->seq - 1 < lim)
            lim = tk->seq - 1;
        if (ld->nheap > 1 && ld->heap[1]->key < lim)
            lim = ld->heap[1]->key;
        if (ld->nheap > 2 && ld->heap[2]->key < lim)
            lim = ld->heap[2]->key;
        do {
            if ((rc = apply_event(ld, r, &r->q[r->qh])))
                return rc;
            if ((rc = run_next(ld, r)) <= 0) {
                if (rc < 0)
                    return rc;
                heap_pop(ld);
                goto next;
            }
        } while (r->key <= lim);
        heap_sift_down(ld->heap, ld->nheap, 0);
    next:;
    }
}
