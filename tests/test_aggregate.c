/* test_aggregate.c: unit tests of the --aggregate mode, tracer and reader
 * together. The same random events (several threads, buffers taken in
 * rounds the way the writer takes them, so events wait across rounds) go
 * once into a full capture and once through the tracer's aggregation
 * (tracer/aggregate.c) into an aggregate capture; both are loaded and every
 * total, per-node amount and sample must be equal. Then the reader's side
 * of checkpoints: a torn last checkpoint is ignored, bad ones are corrupt,
 * checkpoint records outside an aggregate capture are skipped. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "common/capture_write.h"
#include "memtrace/reader.h"
#include "tests.h"
#include "tracer.h"

static const char *tpath(const char *tag)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 128, "/tmp/mt_test_aggregate_%d_%s.bin", (int)getpid(), tag);
    return p;
}

static mt_capture_t *load(const char *path, int want_rc, char *err,
                          size_t errlen)
{
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, NULL, &cap, err, errlen);
    ck_assert_msg(rc == want_rc, "load: rc %d, wanted %d: %s", rc, want_rc, err);
    return cap;
}

/* The aggregate capture being written: where emit puts the tracer's
 * definition records. */
static mt_cb_t *agg_cb;

static void emit(const uint8_t *defs, size_t len)
{
    mt_cb_raw_section(agg_cb, MT_SEC_DEFS, defs, len);
}

#define NEV 6000
#define NTHREADS 3
#define NNODES 5

typedef struct {
    unsigned type;
    uint64_t addr, size, old, old_size;
    uint32_t stack, thread;
} ev_t;

static ev_t evs[NEV + 1]; /* by seq, from 1 */

/* A random program: malloc-family calls, frees and reallocs of live blocks
 * (from any thread), mmaps and partial munmaps. */
static void make_events(unsigned seed)
{
    static uint64_t live[NEV];
    size_t nlive = 0;
    uint64_t next = 0x10000;
    srand(seed);
    for (int s = 1; s <= NEV; s++) {
        ev_t *e = &evs[s];
        memset(e, 0, sizeof *e);
        e->thread = (uint32_t)(rand() % NTHREADS);
        e->stack = (uint32_t)(rand() % (NNODES + 1));
        int r = rand() % 10;
        if (nlive && r < 4) {
            size_t i = (size_t)rand() % nlive;
            e->type = MT_EV_FREE;
            e->addr = live[i];
            live[i] = live[--nlive];
        } else if (nlive && r == 4) {
            size_t i = (size_t)rand() % nlive;
            e->type = MT_EV_REALLOC;
            e->old = live[i];
            e->addr = rand() % 2 ? live[i] : (next += 0x1000);
            e->size = 1 + (uint64_t)(rand() % 5000);
            live[i] = e->addr;
        } else if (r == 8 && rand() % 8 == 0) { /* never allocated */
            e->type = MT_EV_FREE;
            e->addr = 0xdead00000 + (uint64_t)s;
        } else if (r == 5) {
            e->type = MT_EV_MMAP;
            e->addr = (next += 0x10000);
            e->size = 0x8000;
        } else if (r == 6 && s > 1 && evs[s - 1].type == MT_EV_MMAP) {
            e->type = MT_EV_MUNMAP;
            e->addr = evs[s - 1].addr + 0x4000;
            e->size = 0x4000;
        } else {
            e->type = r == 7 ? MT_EV_CALLOC : MT_EV_MALLOC;
            e->addr = (next += 0x1000);
            e->size = (uint64_t)(rand() % 3000);
            live[nlive++] = e->addr;
        }
    }
}

static mt_buffer_t *new_buffer(uint32_t thread)
{
    mt_buffer_t *b = calloc(1, MT_BUFFER_SIZE);
    ck_assert_ptr_nonnull(b);
    b->thread = thread;
    return b;
}

static void free_list(mt_buffer_t *b)
{
    while (b) {
        mt_buffer_t *n = b->next;
        free(b);
        b = n;
    }
}

/* Writes the events both ways; checkpoints after round `mid` and at the
 * end. Each round takes a random number of each thread's next events;
 * W is the first seq no thread has handed over yet. */
static void write_both(const char *full, const char *agg, int mid)
{
    mt_cb_header_t ha = {.flags = MT_FLAG_NATIVE_STACKS | MT_FLAG_AGGREGATE};
    mt_cb_header_t hf = {.flags = MT_FLAG_NATIVE_STACKS};
    mt_cb_t *f = mt_cb_begin(full, &hf);
    agg_cb = mt_cb_begin(agg, &ha);
    for (uint32_t n = 1; n <= NNODES; n++) {
        mt_cb_node(f, n - 1, 0x400000 + n);
        mt_cb_node(agg_cb, n - 1, 0x400000 + n);
    }
    mt_cb_flush(agg_cb);
    mt__g.start_ns = mt__now_ns();
    mt__g.checkpoint_ms = 3600000;
    ck_assert_int_eq(mt__agg_start_unlocked(), 0);

    int next[NTHREADS]; /* each thread's next seq to hand over */
    for (int t = 0; t < NTHREADS; t++)
        next[t] = 1;
    for (int round = 0;; round++) {
        int final = 1;
        for (int t = 0; t < NTHREADS; t++)
            final &= next[t] > NEV;
        mt_buffer_t *lists[NTHREADS] = {0};
        /* a tick between rounds, at the smallest seq not yet handed over */
        uint64_t w = NEV + 1;
        for (int t = 0; t < NTHREADS; t++) {
            int take = final ? 0 : rand() % 400;
            mt_event_state_t st = {0};
            mt_buffer_t *b = NULL;
            int s = next[t];
            for (; s <= NEV && take > 0; s++) {
                if (evs[s].thread != (uint32_t)t)
                    continue;
                take--;
                const ev_t *e = &evs[s];
                if (!b)
                    b = lists[t] = new_buffer((uint32_t)t);
                uint8_t *p = MT_BUFFER_DATA(b) + b->len;
                p = mt__encode_event(p, &st, e->type, (uint64_t)s, e->addr,
                                     e->size, e->stack, e->old, e->old_size);
                b->len = (uint32_t)(p - MT_BUFFER_DATA(b));
                mt_cb_event(f, (uint64_t)t, e->type, (uint64_t)s, e->addr,
                            e->size, e->stack, e->old, e->old_size);
            }
            mt_cb_end_section(f);
            while (s <= NEV && evs[s].thread != (uint32_t)t)
                s++;
            next[t] = s;
            if (s < (int)w)
                w = (uint64_t)s;
        }
        uint64_t ns = 1000 * (uint64_t)(round + 1), rss = 4096 * (uint64_t)round;
        mt_cb_tick(f, w, ns, rss);
        mt_cb_sync(f, w);
        mt_cb_flush(f);
        mt__agg_tick_unlocked(w, ns, rss);
        ck_assert_int_eq(mt__agg_replay_unlocked(lists, NTHREADS, w, NNODES,
                                                 final), 0);
        for (int t = 0; t < NTHREADS; t++)
            free_list(lists[t]);
        mt__agg_samples_unlocked(emit);
        if (round == mid || final)
            mt__agg_checkpoint_unlocked(emit);
        mt_cb_flush(agg_cb);
        if (final)
            break;
    }
    mt__agg_stop_unlocked();
    mt_cb_trailer(f, 99999, 1 << 20, MT_CB_NEXT, 0);
    mt_cb_trailer(agg_cb, 99999, 1 << 20, NEV, 0);
    mt_cb_finish(f);
    mt_cb_finish(agg_cb);
}

static void assert_same(const mt_capture_t *a, const mt_capture_t *f)
{
    const mt_totals_t *ta = mt_capture_totals(a), *tf = mt_capture_totals(f);
#define SAME(x) ck_assert_uint_eq(ta->x, tf->x)
    SAME(peak_bytes);
    SAME(peak_seq);
    SAME(peak_time_ns);
    SAME(current_bytes);
    SAME(current_count);
    SAME(total_allocations);
    SAME(total_frees);
    SAME(unmatched_frees);
    SAME(total_bytes_allocated);
    SAME(events);
    SAME(threads);
    SAME(duration_ns);
    SAME(peak_rss_bytes);
    SAME(temporary_threshold);
#undef SAME
    ck_assert_int_eq(ta->complete, 1);
    ck_assert(!memcmp(ta->by_allocator, tf->by_allocator, sizeof ta->by_allocator));
    ck_assert(!memcmp(ta->size_histogram, tf->size_histogram,
                      sizeof ta->size_histogram));
    ck_assert_uint_eq(mt_capture_node_count(a), mt_capture_node_count(f));
    const mt_node_stats_t *na = mt_capture_node_stats(a);
    const mt_node_stats_t *nf = mt_capture_node_stats(f);
    for (size_t i = 0; i < mt_capture_node_count(f); i++)
        ck_assert_msg(!memcmp(&na[i], &nf[i], sizeof na[i]), "node %zu", i);
    ck_assert_uint_eq(mt_capture_sample_count(a), mt_capture_sample_count(f));
    const mt_sample_t *sa = mt_capture_samples(a), *sf = mt_capture_samples(f);
    for (size_t i = 0; i < mt_capture_sample_count(f); i++) {
        ck_assert_uint_eq(sa[i].time_ns, sf[i].time_ns);
        ck_assert_uint_eq(sa[i].heap_bytes, sf[i].heap_bytes);
        ck_assert_uint_eq(sa[i].rss_bytes, sf[i].rss_bytes);
    }
}

START_TEST(aggregate_equals_full)
{
    mt__bootstrap();
    const char *full = tpath("full"), *agg = tpath("agg");
    make_events(1234 + (unsigned)_i);
    write_both(full, agg, 3);
    char err[512];
    mt_capture_t *f = load(full, 0, err, sizeof err);
    mt_capture_t *a = load(agg, 0, err, sizeof err);
    ck_assert_ptr_null(mt_capture_warning(a));
    ck_assert_uint_eq(mt_capture_totals(a)->checkpoints, 2);
    ck_assert_uint_gt(mt_capture_totals(f)->total_frees, 1000);
    ck_assert_uint_gt(mt_capture_totals(f)->unmatched_frees, 0);
    assert_same(a, f);
    mt_capture_free(a);

    /* Cut anywhere: the last complete checkpoint is shown, with a warning;
     * never an error, never a mix of two checkpoints. */
    size_t len;
    uint8_t *bytes = mt_cb_read_file(agg, &len);
    uint64_t first = 0, last = mt_capture_totals(f)->total_allocations;
    size_t header = MT_FILE_HEADER_SIZE + mt__get_u32le(bytes + 12);
    for (size_t cut = len - 1; cut >= header; cut -= 7) {
        mt_cb_write_file(agg, bytes, cut);
        a = load(agg, 0, err, sizeof err);
        const mt_totals_t *t = mt_capture_totals(a);
        ck_assert_ptr_nonnull(mt_capture_warning(a));
        ck_assert_uint_le(t->checkpoints, 2);
        if (t->checkpoints == 2)
            ck_assert_uint_eq(t->total_allocations, last);
        if (t->checkpoints == 1 && !first)
            first = t->total_allocations;
        if (t->checkpoints == 1)
            ck_assert_uint_eq(t->total_allocations, first);
        if (!t->checkpoints)
            ck_assert_uint_eq(t->total_allocations, 0);
        mt_capture_free(a);
    }
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_lt(first, last);
    free(bytes);
    mt_capture_free(f);
    unlink(full);
    unlink(agg);
}
END_TEST

/* ---- The reader's side --------------------------------------------------- */

/* AGG_BEGIN: allocations made, live of them. */
static size_t begin_rec(uint8_t *p0, uint64_t id, uint64_t allocations,
                        uint64_t live)
{
    uint8_t *p = p0;
    const uint64_t fields[] = {id, 10, 500, 1, 300, 3, 0, 100, live,
                               allocations, allocations - 1, 0, 400, 4, 1};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        p = mt__put_varint(p, fields[i]);
    p = mt__put_varint(p, 0); /* no allocator entries */
    p = mt__put_varint(p, 0); /* no histogram */
    return (size_t)(p - p0);
}

/* One AGG_NODES entry: total (bytes, 20), peak (bytes, 2), leaked
 * (bytes / 2, 3), temporary (1, 16). */
static size_t nodes_rec(uint8_t *p0, uint64_t first, uint64_t bytes)
{
    uint8_t *p = p0;
    const uint64_t a[8] = {bytes, 20, bytes, 2, bytes / 2, 3, 1, 16};
    p = mt__put_varint(p, first);
    for (int i = 0; i < 8; i++)
        p = mt__put_varint(p, a[i]);
    return (size_t)(p - p0);
}

static void end_rec(mt_cb_t *b, uint64_t id, uint64_t entries)
{
    uint8_t rec[20], *p = rec;
    p = mt__put_varint(p, id);
    p = mt__put_varint(p, entries);
    mt_cb_raw_def(b, MT_DEF_AGG_END, rec, (size_t)(p - rec));
}

/* One checkpoint: id, allocations, one node entry for node 2. */
static void checkpoint(mt_cb_t *b, uint64_t id, uint64_t allocs, int end)
{
    uint8_t rec[200];
    mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, id, allocs, 1));
    mt_cb_raw_def(b, MT_DEF_AGG_NODES, rec, nodes_rec(rec, 2, allocs));
    if (end)
        end_rec(b, id, 1);
}

static mt_cb_t *agg_capture(const char *path, unsigned flags)
{
    mt_cb_header_t h = {.flags = flags};
    mt_cb_t *b = mt_cb_begin(path, &h);
    mt_cb_node(b, 0, 0x1000);
    mt_cb_node(b, 1, 0x2000);
    return b;
}

START_TEST(last_complete_checkpoint_wins)
{
    const char *path = tpath("torn");
    char err[512];
    mt_cb_t *b = agg_capture(path, MT_FLAG_AGGREGATE);
    checkpoint(b, 1, 7, 1);
    mt_cb_flush(b);
    checkpoint(b, 2, 9, 1);
    mt_cb_flush(b);
    checkpoint(b, 3, 11, 0); /* killed while writing it */
    mt_cb_finish(b);
    mt_capture_t *cap = load(path, 0, err, sizeof err);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->checkpoints, 2);
    ck_assert_uint_eq(t->total_allocations, 9);
    ck_assert_uint_eq(t->checkpoint_ns, 500);
    ck_assert_uint_eq(t->temporary_threshold, 1);
    ck_assert_uint_eq(mt_capture_node_stats(cap)[2].total.bytes, 9);
    ck_assert_uint_eq(mt_capture_node_stats(cap)[2].temporary.count, 16);
    ck_assert_uint_eq(mt_capture_node_stats(cap)[1].total.bytes, 0);
    ck_assert_ptr_nonnull(strstr(mt_capture_warning(cap), "last checkpoint"));
    mt_capture_free(cap);

    /* Outside an aggregate capture the records are skipped. */
    b = agg_capture(path, 0);
    checkpoint(b, 1, 7, 1);
    mt_cb_malloc(b, 0, 1, 0x10, 5, 1);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_finish(b);
    cap = load(path, 0, err, sizeof err);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 1);
    ck_assert_uint_eq(mt_capture_totals(cap)->checkpoints, 0);
    mt_capture_free(cap);

    /* In one, events are ignored. */
    b = agg_capture(path, MT_FLAG_AGGREGATE);
    mt_cb_malloc(b, 0, 1, 0x10, 5, 1);
    mt_cb_sync(b, MT_CB_NEXT);
    checkpoint(b, 1, 7, 1);
    mt_cb_finish(b);
    cap = load(path, 0, err, sizeof err);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 7);
    ck_assert_uint_eq(mt_capture_node_stats(cap)[1].total.count, 0);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(bad_checkpoints)
{
    const char *path = tpath("bad");
    char err[512];
    uint8_t rec[200];
    struct {
        const char *want;
        int kind;
    } cases[] = {
        {"checkpoint end does not match its start", 0},
        {"checkpoint end does not match its start", 1},
        {"checkpoint names a node that is not defined", 2},
        {"checkpoint nodes without a checkpoint start", 3},
        {"checkpoint record cut short", 4},
        {"checkpoint names a node that is not defined", 5},
        {"checkpoint totals contradict each other", 6},
        {"parts larger than its total", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mt_cb_t *b = agg_capture(path, MT_FLAG_AGGREGATE);
        switch (cases[i].kind) {
        case 0: /* wrong id */
            checkpoint(b, 1, 7, 0);
            end_rec(b, 2, 1);
            break;
        case 1: /* wrong entry count */
            checkpoint(b, 1, 7, 0);
            end_rec(b, 1, 2);
            break;
        case 2: /* node 3 of 3 (ids 0..2) */
            mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, 1, 7, 1));
            mt_cb_raw_def(b, MT_DEF_AGG_NODES, rec, nodes_rec(rec, 3, 1));
            break;
        case 3:
            mt_cb_raw_def(b, MT_DEF_AGG_NODES, rec, nodes_rec(rec, 1, 1));
            break;
        case 4:
            mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, 1, 7, 1) - 2);
            break;
        case 6: /* 7 allocations - 6 frees is not 2 live */
            mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, 1, 7, 2));
            break;
        case 7: { /* leaked over total */
            mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, 1, 7, 1));
            uint8_t *p = rec;
            p = mt__put_varint(p, 1);
            const uint64_t a[8] = {10, 1, 10, 1, 11, 1, 0, 0};
            for (int k = 0; k < 8; k++)
                p = mt__put_varint(p, a[k]);
            mt_cb_raw_def(b, MT_DEF_AGG_NODES, rec, (size_t)(p - rec));
            break;
        }
        case 5: { /* two entries for node 1: ids must increase */
            mt_cb_raw_def(b, MT_DEF_AGG_BEGIN, rec, begin_rec(rec, 1, 7, 1));
            size_t n = nodes_rec(rec, 1, 1);
            n += nodes_rec(rec + n, 0, 1);
            mt_cb_raw_def(b, MT_DEF_AGG_NODES, rec, n);
            break;
        }
        }
        mt_cb_finish(b);
        ck_assert_ptr_null(load(path, MT_ECORRUPT, err, sizeof err));
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: %s", i, err);
    }

    /* No checkpoint at all: empty, with a warning. */
    mt_cb_t *b = agg_capture(path, MT_FLAG_AGGREGATE);
    mt_cb_finish(b);
    mt_capture_t *cap = load(path, 0, err, sizeof err);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 0);
    ck_assert_ptr_nonnull(strstr(mt_capture_warning(cap),
                                 "without a complete checkpoint"));
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

Suite *mt_test_aggregate_suite(void)
{
    Suite *s = suite_create("aggregate");
    TCase *tc = tcase_create("aggregate");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, aggregate_equals_full, 0, 3);
    tcase_add_test(tc, last_complete_checkpoint_wins);
    tcase_add_test(tc, bad_checkpoints);
    suite_add_tcase(s, tc);
    return s;
}
