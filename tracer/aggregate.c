/* aggregate.c: the --aggregate mode. The writer thread replays the event
 * buffers (agg_replay.c, the reader's own replay) instead of writing them,
 * and writes what the reports need: each round, the traced heap and RSS at
 * every tick since the last round (AGG_SAMPLE); every checkpoint interval
 * and at the end, a checkpoint of the whole-run totals and of every stack's
 * statistics (AGG_BEGIN, AGG_NODES..., AGG_END; docs/FORMAT.md). A process
 * killed at any moment leaves a capture whose last complete checkpoint is at
 * most one interval old. Memory: the live allocations and the stacks, as in
 * the reader; the file grows with the stacks and the time, not the events.
 *
 * Everything here runs under round_lock (the writer thread, or the final
 * round on the thread that ends tracing). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agg_names.h"
#include "common/capture_write.h"
#include "reader/loader.h"
#include "tracer.h"

/* The temporary-allocation threshold the tracer counts with: the readers'
 * default (freed before any other allocation was made). */
#define MT_AGG_THRESHOLD 1

typedef struct mt_agg_s {
    mt_loader_t ld;       /* the replay's state; ld.cap = &cap */
    mt_capture_t cap;     /* totals, node statistics, pending samples */
    uint64_t checkpoints; /* written so far: the next one's id - 1 */
    uint64_t last_ns;     /* when the last checkpoint was written */
    uint64_t w;           /* every event below w has been replayed */
    char error[160];      /* why the replay failed */
} mt_agg_t;

static mt_agg_t *agg; /* round_lock; NULL when not aggregating */

/* Chunks of definition records on their way to emit (round_lock). Static:
 * the final round may run on a small stack. */
#define MT_AGG_CHUNK (64u << 10)
static uint8_t chunk[MT_AGG_CHUNK];

/* The replay reports errors through these (reader.c has the reader's). An
 * error stops aggregation; warnings (pending events without a sync point)
 * cannot happen with the writer's W and are dropped. */
int mt__load_error(mt_loader_t *ld, int rc, const char *fmt, ...)
{
    if (ld->failed)
        return rc;
    ld->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(agg->error, sizeof agg->error, fmt, ap);
    va_end(ap);
    return rc;
}

int mt__load_warn(mt_loader_t *ld, const char *fmt, ...)
{
    (void)ld;
    (void)fmt;
    return 0;
}

static void agg_release(mt_agg_t *a)
{
    mt__replay_free(&a->ld);
    mt__real.free(a->cap.nodes);
    mt__real.free(a->cap.node_stats);
    mt__real.free(a->cap.samples);
    mt__real.free(a);
}

void mt__agg_stop_unlocked(void)
{
    if (agg)
        agg_release(agg);
    agg = NULL;
}

int mt__agg_start_unlocked(void)
{
    /* A fork child's or a second session's state starts empty: a capture
     * counts only what happened while it was written. */
    mt__agg_stop_unlocked();
    mt_agg_t *a = mt__real.calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->ld.cap = &a->cap;
    a->ld.name = "aggregate";
    a->ld.threshold = MT_AGG_THRESHOLD;
    agg = a;
    if (mt__replay_init(&a->ld) || mt__replay_reserve_nodes(&a->ld, 1)) {
        agg = NULL;
        agg_release(a);
        return -ENOMEM;
    }
    a->cap.node_count = 1;
    a->last_ns = mt__now_ns();
    return 0;
}

int mt__agg_active_unlocked(void)
{
    return agg != NULL;
}

static void agg_failed(int rc)
{
    mt__say("memtrace: aggregation stopped: %s; the capture keeps its last "
            "checkpoint\n", agg->error[0] ? agg->error : strerror(-rc));
    mt__agg_stop_unlocked();
    atomic_store(&mt__g.active, 0);
}

void mt__agg_tick_unlocked(uint64_t seq, uint64_t ns, uint64_t rss)
{
    int rc;
    if (agg && (rc = mt__replay_add_tick(&agg->ld, seq, ns, rss)))
        agg_failed(rc);
}

int mt__agg_replay_unlocked(mt_buffer_t *const *lists, size_t nlists,
                            uint64_t w, uint32_t nodes, int final)
{
    if (!agg)
        return -1;
    mt_loader_t *ld = &agg->ld;
    int rc = mt__replay_reserve_nodes(ld, (size_t)nodes + 1);
    if (rc)
        goto fail;
    /* Every stack the buffers name was interned before they were taken. */
    agg->cap.node_count = (size_t)nodes + 1;
    for (size_t l = 0; l < nlists; l++)
        for (mt_buffer_t *b = lists[l]; b; b = b->next) {
            const uint8_t *p = MT_BUFFER_DATA(b);
            if (b->len && (rc = mt__replay_add_run(ld, b->thread, p,
                                                   p + b->len, 0)))
                goto fail;
        }
    /* Events at or above w stay pending, copied out of the buffers. */
    if ((rc = mt__replay_until(ld, w, final)) ||
        (rc = mt__replay_end_block(ld)))
        goto fail;
    if (w > agg->w)
        agg->w = w;
    return 0;
fail:
    agg_failed(rc);
    return -1;
}

/* Appends one record to the chunk, handing the chunk to emit first when the
 * record would not fit. len <= MT_AGG_CHUNK - 1 - MT_VARINT_MAX. */
static size_t put_record(size_t at, unsigned type, const uint8_t *payload,
                         size_t len, mt_agg_emit_fn emit)
{
    if (at + 1 + MT_VARINT_MAX + len > MT_AGG_CHUNK) {
        emit(chunk, at);
        at = 0;
    }
    uint8_t *p = mt__put_def_header(chunk + at, type, len);
    memcpy(p, payload, len);
    return (size_t)(p + len - chunk);
}

void mt__agg_samples_unlocked(mt_agg_emit_fn emit)
{
    if (!agg || !agg->cap.sample_count)
        return;
    size_t at = 0;
    for (size_t i = 0; i < agg->cap.sample_count; i++) {
        const mt_sample_t *s = &agg->cap.samples[i];
        uint8_t rec[3 * MT_VARINT_MAX], *p = rec;
        p = mt__put_varint(p, s->time_ns);
        p = mt__put_varint(p, s->heap_bytes);
        p = mt__put_varint(p, s->rss_bytes);
        at = put_record(at, MT_DEF_AGG_SAMPLE, rec, (size_t)(p - rec), emit);
    }
    if (at)
        emit(chunk, at);
    agg->cap.sample_count = 0; /* written: the memory is reused */
}

static uint8_t *put_amount(uint8_t *p, const mt_amount_t *a)
{
    p = mt__put_varint(p, a->bytes);
    return mt__put_varint(p, a->count);
}

/* AGG_BEGIN: the checkpoint's id and the whole-run totals. */
static size_t put_begin(size_t at, uint64_t id, mt_agg_emit_fn emit)
{
    const mt_totals_t *t = &agg->cap.totals;
    static uint8_t rec[(16 + 2 + 2 * MT_ALLOCATOR_COUNT + 65) * MT_VARINT_MAX];
    uint8_t *p = rec;
    const uint64_t fields[] = {
        id, agg->w, mt__now_ns() - mt__g.start_ns, agg->ld.threshold,
        t->peak_bytes, t->peak_seq, t->peak_time_ns, t->current_bytes,
        t->current_count, t->total_allocations, t->total_frees,
        t->unmatched_frees, t->total_bytes_allocated, t->events, t->threads,
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        p = mt__put_varint(p, fields[i]);
    p = mt__put_varint(p, MT_ALLOCATOR_COUNT);
    for (size_t i = 0; i < MT_ALLOCATOR_COUNT; i++)
        p = put_amount(p, &t->by_allocator[i]);
    size_t nhist = sizeof t->size_histogram / sizeof t->size_histogram[0];
    p = mt__put_varint(p, nhist);
    for (size_t i = 0; i < nhist; i++)
        p = mt__put_varint(p, t->size_histogram[i]);
    return put_record(at, MT_DEF_AGG_BEGIN, rec, (size_t)(p - rec), emit);
}

void mt__agg_checkpoint_unlocked(mt_agg_emit_fn emit)
{
    if (!agg)
        return;
    uint64_t id = ++agg->checkpoints, entries = 0;
    size_t at = put_begin(0, id, emit);
    /* Node entries: only stacks that allocated (the others are all zero),
     * by increasing id, in records of up to 32 KiB. */
    static uint8_t rec[32u << 10];
    size_t len = 0;
    uint32_t prev = 0;
    const mt_node_stats_t *ns = agg->cap.node_stats;
    for (size_t id_ = 0; id_ < agg->cap.node_count; id_++) {
        if (!ns[id_].total.count)
            continue;
        if (len + 9 * MT_VARINT_MAX > sizeof rec) {
            at = put_record(at, MT_DEF_AGG_NODES, rec, len, emit);
            len = 0;
        }
        uint8_t *p = rec + len;
        p = mt__put_varint(p, (uint32_t)id_ - prev);
        prev = (uint32_t)id_;
        p = put_amount(p, &ns[id_].total);
        p = put_amount(p, &ns[id_].peak);
        p = put_amount(p, &ns[id_].leaked);
        p = put_amount(p, &ns[id_].temporary);
        len = (size_t)(p - rec);
        entries++;
    }
    if (len)
        at = put_record(at, MT_DEF_AGG_NODES, rec, len, emit);
    uint8_t end[2 * MT_VARINT_MAX], *p = end;
    p = mt__put_varint(p, id);
    p = mt__put_varint(p, entries);
    at = put_record(at, MT_DEF_AGG_END, end, (size_t)(p - end), emit);
    emit(chunk, at);
    agg->last_ns = mt__now_ns();
}

int mt__agg_checkpoint_due_unlocked(uint64_t slack_ns)
{
    if (!agg)
        return 0;
    uint64_t every = (uint64_t)mt__g.checkpoint_ms * 1000000ull;
    return mt__now_ns() - agg->last_ns + slack_ns >= every;
}
