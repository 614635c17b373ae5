/* checkpoint.c: the records of aggregate captures (`memtrace run
 * --aggregate`, MT_FLAG_AGGREGATE). Such a capture holds no events: the
 * tracer replayed them itself and wrote checkpoints of the totals and of
 * every stack's statistics, plus the heap and RSS at every tick. A
 * checkpoint (AGG_BEGIN, AGG_NODES..., AGG_END) is staged here and replaces
 * the capture's numbers only when its END arrives, so the last complete one
 * wins and one cut short by a crash is ignored. */
#include <stdlib.h>
#include <string.h>

#include "loader.h"

typedef struct {
    const uint8_t *p, *end;
    int bad;
} cur_t;

static uint64_t get(cur_t *c)
{
    uint64_t v = 0;
    if (!c->bad && mt__get_varint(&c->p, c->end, &v))
        c->bad = 1;
    return c->bad ? 0 : v;
}

static int corrupt(mt_loader_t *ld, const char *what, uint64_t off)
{
    return mt__load_error(ld, MT_ECORRUPT,
                          "corrupt record: %s at byte %llu of the block at "
                          "offset %llu", what, (unsigned long long)off,
                          (unsigned long long)ld->block_off);
}

static mt_amount_t get_amount(cur_t *c)
{
    mt_amount_t a;
    a.bytes = get(c);
    a.count = get(c);
    return a;
}

static int agg_begin(mt_loader_t *ld, cur_t *c, uint64_t off)
{
    mt_totals_t *t = &ld->agg_totals;
    memset(t, 0, sizeof *t);
    ld->agg_id = get(c);
    (void)get(c); /* W: the events it counts; informative */
    ld->agg_ns = get(c);
    t->temporary_threshold = get(c);
    t->peak_bytes = get(c);
    t->peak_seq = get(c);
    t->peak_time_ns = get(c);
    t->current_bytes = get(c);
    t->current_count = get(c);
    t->total_allocations = get(c);
    t->total_frees = get(c);
    t->unmatched_frees = get(c);
    t->total_bytes_allocated = get(c);
    t->events = get(c);
    t->threads = get(c);
    /* Arrays longer than this reader's are read and their tail ignored
     * (a later version may know more allocators). */
    uint64_t n = get(c);
    for (uint64_t i = 0; i < n && !c->bad; i++) {
        mt_amount_t a = get_amount(c);
        if (i < MT_ALLOCATOR_COUNT)
            t->by_allocator[i] = a;
    }
    n = get(c);
    size_t nhist = sizeof t->size_histogram / sizeof t->size_histogram[0];
    for (uint64_t i = 0; i < n && !c->bad; i++) {
        uint64_t v = get(c);
        if (i < nhist)
            t->size_histogram[i] = v;
    }
    if (c->bad)
        return corrupt(ld, "checkpoint record cut short", off);
    /* What the replay keeps true, and reports may rely on. */
    if (t->current_bytes > t->peak_bytes ||
        t->total_frees > t->total_allocations ||
        t->total_allocations - t->total_frees != t->current_count)
        return corrupt(ld, "checkpoint totals contradict each other", off);
    ld->agg_open = 1; /* an earlier one left open was cut short: dropped */
    ld->agg_n = 0;
    return 0;
}

static int within(const mt_amount_t *part, const mt_amount_t *whole)
{
    return part->bytes <= whole->bytes && part->count <= whole->count;
}

static int agg_nodes(mt_loader_t *ld, cur_t *c, uint64_t off)
{
    if (!ld->agg_open)
        return corrupt(ld, "checkpoint nodes without a checkpoint start", off);
    uint64_t id = ld->agg_n ? ld->agg_entries[ld->agg_n - 1].node : 0;
    while (c->p < c->end) {
        uint64_t delta = get(c);
        mt_node_stats_t st;
        st.total = get_amount(c);
        st.peak = get_amount(c);
        st.leaked = get_amount(c);
        st.temporary = get_amount(c);
        if (c->bad)
            return corrupt(ld, "checkpoint node entry cut short", off);
        if (!within(&st.peak, &st.total) || !within(&st.leaked, &st.total) ||
            !within(&st.temporary, &st.total))
            return corrupt(ld, "checkpoint node entry has parts larger than "
                           "its total", off);
        if ((ld->agg_n && delta == 0) || delta >= ld->cap->node_count ||
            (id += delta) >= ld->cap->node_count)
            return corrupt(ld, "checkpoint names a node that is not defined "
                           "(or not in increasing order)", off);
        if (ld->agg_n == ld->agg_cap) {
            size_t nc = ld->agg_cap ? ld->agg_cap * 2 : 256;
            struct mt_agg_entry_s *e = realloc(ld->agg_entries, nc * sizeof *e);
            if (!e)
                return mt__load_error(ld, MT_ENOMEM, "out of memory");
            ld->agg_entries = e;
            ld->agg_cap = nc;
        }
        ld->agg_entries[ld->agg_n++] = (struct mt_agg_entry_s){(uint32_t)id, st};
    }
    return 0;
}

/* AGG_END: the staged checkpoint becomes the capture's numbers. */
static int agg_end(mt_loader_t *ld, cur_t *c, uint64_t off)
{
    uint64_t id = get(c), entries = get(c);
    if (c->bad)
        return corrupt(ld, "checkpoint end cut short", off);
    if (!ld->agg_open || id != ld->agg_id || entries != ld->agg_n)
        return corrupt(ld, "checkpoint end does not match its start", off);
    mt_capture_t *cap = ld->cap;
    memset(cap->node_stats, 0, cap->node_count * sizeof *cap->node_stats);
    for (size_t i = 0; i < ld->agg_n; i++)
        cap->node_stats[ld->agg_entries[i].node] = ld->agg_entries[i].st;
    int lost = cap->totals.events_lost;
    uint64_t n = cap->totals.checkpoints;
    cap->totals = ld->agg_totals;
    cap->totals.events_lost = lost;
    cap->totals.checkpoints = n + 1;
    cap->totals.checkpoint_ns = ld->agg_ns;
    if (ld->agg_ns > ld->max_tick_ns)
        ld->max_tick_ns = ld->agg_ns;
    ld->agg_open = 0;
    return 0;
}

static int agg_sample(mt_loader_t *ld, cur_t *c, uint64_t off)
{
    mt_sample_t s;
    s.time_ns = get(c);
    s.heap_bytes = get(c);
    s.rss_bytes = get(c);
    if (c->bad)
        return corrupt(ld, "sample record cut short", off);
    mt_capture_t *cap = ld->cap;
    if (cap->sample_count == cap->sample_cap) {
        size_t nc = cap->sample_cap ? cap->sample_cap * 2 : 256;
        mt_sample_t *t = realloc(cap->samples, nc * sizeof *t);
        if (!t)
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        cap->samples = t;
        cap->sample_cap = nc;
    }
    cap->samples[cap->sample_count++] = s;
    if (s.time_ns > ld->max_tick_ns)
        ld->max_tick_ns = s.time_ns;
    if (s.rss_bytes > ld->max_tick_rss)
        ld->max_tick_rss = s.rss_bytes;
    return 0;
}

int mt__checkpoint_record(mt_loader_t *ld, unsigned type, const uint8_t *p,
                          const uint8_t *end, uint64_t off)
{
    cur_t c = {p, end, 0};
    switch (type) {
    case MT_DEF_AGG_BEGIN: return agg_begin(ld, &c, off);
    case MT_DEF_AGG_NODES: return agg_nodes(ld, &c, off);
    case MT_DEF_AGG_END: return agg_end(ld, &c, off);
    case MT_DEF_AGG_SAMPLE: return agg_sample(ld, &c, off);
    default: return 0;
    }
}

void mt__checkpoint_free(mt_loader_t *ld)
{
    free(ld->agg_entries);
    ld->agg_entries = NULL;
    ld->agg_n = ld->agg_cap = 0;
}
