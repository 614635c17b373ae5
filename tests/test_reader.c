/* test_reader.c: unit tests of reader/: synthetic captures written with
 * tests/capture_builder are loaded back and every number is checked
 * exactly: totals, per-node peak/leaked/temporary amounts, samples,
 * modules, the seq merge across threads and blocks, mmap bookkeeping, and
 * the error or warning for each kind of damaged file. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "common/capture_write.h"
#include "memtrace/reader.h"
#include "omap.h"
#include "tests.h"

/* Each test runs in its own forked process: the pid makes paths unique. */
static const char *tpath(const char *tag)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 128, "/tmp/mt_test_reader_%d_%s.bin", (int)getpid(), tag);
    return p;
}

static mt_capture_t *load_ok(const char *path, uint64_t threshold)
{
    mt_load_opts_t o = {.temporary_threshold = threshold};
    mt_capture_t *cap = NULL;
    char err[512];
    int rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "load failed: %d %s", rc, err);
    ck_assert_ptr_nonnull(cap);
    return cap;
}

/* Loads a capture that must fail with rc; returns the message. */
static const char *load_fail(const char *path, int want)
{
    static char err[512];
    mt_capture_t *cap = (mt_capture_t *)1;
    int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == want, "rc %d (%s), wanted %d: %s", rc, mt_err_name(rc),
                  want, err);
    ck_assert_ptr_null(cap);
    ck_assert_msg(!strncmp(err, path, strlen(path)) &&
                      !strncmp(err + strlen(path), ": ", 2),
                  "message does not start with the path: %s", err);
    return err;
}

#define AMT_EQ(a, b, c)                                                        \
    do {                                                                       \
        ck_assert_uint_eq((a).bytes, (b));                                     \
        ck_assert_uint_eq((a).count, (c));                                     \
    } while (0)

static size_t default_header_len(void)
{
    uint8_t buf[4096];
    return mt_cb_header_bytes(NULL, buf, sizeof buf);
}

/* ---- Round trips ------------------------------------------------------------ */

START_TEST(single_thread_chains)
{
    const char *path = tpath("chains");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x1000);
    uint32_t n2 = mt_cb_node(b, n1, 0x2000);
    uint32_t n3 = mt_cb_node(b, 0, 0x3000);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x100, 100, n1);                          /* 1 */
    mt_cb_event(b, 0, MT_EV_CALLOC, MT_CB_NEXT, 0x200, 50, n2, 0, 0);        /* 2 */
    mt_cb_realloc(b, 0, MT_CB_NEXT, 0x100, 0x300, 200, n3);                  /* 3 */
    mt_cb_free(b, 0, MT_CB_NEXT, 0x200);                                     /* 4 */
    mt_cb_realloc(b, 0, MT_CB_NEXT, 0, 0x400, 10, n1);                       /* 5 */
    mt_cb_free(b, 0, MT_CB_NEXT, 0x999);                                     /* 6 */
    mt_cb_realloc(b, 0, MT_CB_NEXT, 0x300, 0x300, 300, n3);                  /* 7 */
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 5000, 8192, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_ptr_null(mt_capture_warning(cap));
    ck_assert_str_eq(mt_capture_path(cap), path);
    const mt_header_t *h = mt_capture_header(cap);
    ck_assert_uint_eq(h->format_version, 1);
    ck_assert_int_eq(h->pid, 1234);
    ck_assert_int_eq(h->ppid, 1);
    ck_assert_int_eq(h->argc, 2);
    ck_assert_str_eq(h->argv[0], "prog");
    ck_assert_str_eq(h->argv[1], "arg1");
    ck_assert_ptr_null(h->argv[2]);
    ck_assert_str_eq(h->exe, "/bin/prog");
    ck_assert_str_eq(h->tracer_version, "test");
    ck_assert_ptr_null(h->python_version);
    ck_assert_uint_eq(h->pointer_size, 8);
    ck_assert_uint_eq(h->page_size, 4096);

    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->total_allocations, 5);
    ck_assert_uint_eq(t->total_frees, 3);
    ck_assert_uint_eq(t->unmatched_frees, 1);
    ck_assert_uint_eq(t->total_bytes_allocated, 660);
    ck_assert_uint_eq(t->current_bytes, 310);
    ck_assert_uint_eq(t->current_count, 2);
    ck_assert_uint_eq(t->peak_bytes, 310);
    ck_assert_uint_eq(t->peak_seq, 7);
    ck_assert_uint_eq(t->peak_time_ns, 0);
    ck_assert_uint_eq(t->events, 7);
    ck_assert_uint_eq(t->threads, 1);
    ck_assert_int_eq(t->complete, 1);
    ck_assert_int_eq(t->events_lost, 0);
    ck_assert_uint_eq(t->duration_ns, 5000);
    ck_assert_uint_eq(t->peak_rss_bytes, 8192);
    AMT_EQ(t->by_allocator[MT_EV_MALLOC], 100, 1);
    AMT_EQ(t->by_allocator[MT_EV_CALLOC], 50, 1);
    AMT_EQ(t->by_allocator[MT_EV_REALLOC], 510, 3);
    AMT_EQ(t->by_allocator[MT_EV_FREE], 0, 0);
    ck_assert_uint_eq(t->size_histogram[7], 1); /* 100 */
    ck_assert_uint_eq(t->size_histogram[6], 1); /* 50 */
    ck_assert_uint_eq(t->size_histogram[8], 1); /* 200 */
    ck_assert_uint_eq(t->size_histogram[4], 1); /* 10 */
    ck_assert_uint_eq(t->size_histogram[9], 1); /* 300 */
    ck_assert_uint_eq(t->size_histogram[0], 0);

    ck_assert_uint_eq(mt_capture_node_count(cap), 4);
    const mt_node_t *nodes = mt_capture_nodes(cap);
    ck_assert_uint_eq(nodes[n2].parent, n1);
    ck_assert_uint_eq(nodes[n2].ip, 0x2000);
    ck_assert_uint_eq(nodes[n3].ip, 0x3000);
    ck_assert_uint_eq(nodes[n3].module, UINT32_MAX);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].total, 110, 2);
    AMT_EQ(s[n2].total, 50, 1);
    AMT_EQ(s[n3].total, 500, 2);
    AMT_EQ(s[n1].leaked, 10, 1);
    AMT_EQ(s[n2].leaked, 0, 0);
    AMT_EQ(s[n3].leaked, 300, 1);
    AMT_EQ(s[n1].peak, 10, 1);
    AMT_EQ(s[n2].peak, 0, 0);
    AMT_EQ(s[n3].peak, 300, 1);
    for (uint32_t n = 0; n < 4; n++)
        AMT_EQ(s[n].temporary, 0, 0);
    AMT_EQ(s[0].total, 0, 0);
    mt_capture_free(cap);
    mt_capture_free(NULL);
    unlink(path);
}
END_TEST

/* The peak is reached once, freed, then the heap climbs back to exactly the
 * same value with different nodes: the snapshot stays the first moment. */
START_TEST(peak_snapshot_first_moment)
{
    const char *path = tpath("peak");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x10), n2 = mt_cb_node(b, 0, 0x20);
    mt_cb_malloc(b, 0, 1, 0xa0, 1000, n1);
    mt_cb_malloc(b, 0, 2, 0xb0, 500, n2);  /* 1500: the peak */
    mt_cb_free(b, 0, 3, 0xa0);             /* 500 */
    mt_cb_malloc(b, 0, 4, 0xc0, 800, n1);  /* 1300 */
    mt_cb_malloc(b, 0, 5, 0xd0, 100, n2);  /* 1400 */
    mt_cb_free(b, 0, 6, 0xd0);             /* 1300 */
    mt_cb_malloc(b, 0, 7, 0xe0, 200, n2);  /* 1500 again: not a new peak */
    mt_cb_free(b, 0, 8, 0xe0);             /* 1300 plateau */
    mt_cb_sync(b, 9);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 1500);
    ck_assert_uint_eq(t->peak_seq, 2);
    ck_assert_uint_eq(t->current_bytes, 1300);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].peak, 1000, 1);
    AMT_EQ(s[n2].peak, 500, 1);
    AMT_EQ(s[n1].leaked, 800, 1);
    AMT_EQ(s[n2].leaked, 500, 1);
    /* threshold 1: 0xd0 and 0xe0 were freed with no allocation after */
    AMT_EQ(s[n2].temporary, 300, 2);
    AMT_EQ(s[n1].temporary, 0, 0);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Successive peaks: a node freed between two peaks must read 0 at the
 * later one; ticks give the peak its time and the samples their heap. */
START_TEST(peak_moves_and_ticks)
{
    const char *path = tpath("peak2");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x10), n2 = mt_cb_node(b, 0, 0x20);
    uint32_t n3 = mt_cb_node(b, 0, 0x30);
    mt_cb_tick(b, 3, 777, 11000);
    mt_cb_tick(b, 10, 999, 12000);
    mt_cb_malloc(b, 0, 1, 0xa0, 100, n1);
    mt_cb_malloc(b, 0, 2, 0xb0, 100, n2);
    mt_cb_free(b, 0, 3, 0xa0);
    mt_cb_malloc(b, 0, 4, 0xc0, 300, n3);
    mt_cb_sync(b, 5);
    mt_cb_finish(b); /* no trailer */

    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_ptr_nonnull(mt_capture_warning(cap));
    ck_assert_msg(strstr(mt_capture_warning(cap), "capture has no trailer"),
                  "%s", mt_capture_warning(cap));
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 400);
    ck_assert_uint_eq(t->peak_seq, 4);
    ck_assert_uint_eq(t->peak_time_ns, 777);
    ck_assert_int_eq(t->complete, 0);
    ck_assert_uint_eq(t->duration_ns, 999);
    ck_assert_uint_eq(t->peak_rss_bytes, 12000);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].peak, 0, 0);
    AMT_EQ(s[n2].peak, 100, 1);
    AMT_EQ(s[n3].peak, 300, 1);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 2);
    const mt_sample_t *sm = mt_capture_samples(cap);
    ck_assert_uint_eq(sm[0].time_ns, 777);
    ck_assert_uint_eq(sm[0].heap_bytes, 200);
    ck_assert_uint_eq(sm[0].rss_bytes, 11000);
    ck_assert_uint_eq(sm[1].time_ns, 999);
    ck_assert_uint_eq(sm[1].heap_bytes, 400);
    ck_assert_uint_eq(sm[1].rss_bytes, 12000);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

static void write_temporary(const char *path, uint32_t *n1, uint32_t *n2)
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    *n1 = mt_cb_node(b, 0, 0x10);
    *n2 = mt_cb_node(b, 0, 0x20);
    mt_cb_malloc(b, 0, 1, 0xa0, 10, *n1);
    mt_cb_free(b, 0, 2, 0xa0);             /* 0 allocations after it */
    mt_cb_malloc(b, 0, 3, 0xb0, 20, *n1);
    mt_cb_malloc(b, 0, 4, 0xc0, 30, *n2);
    mt_cb_free(b, 0, 5, 0xb0);             /* 1 allocation after it */
    mt_cb_free(b, 0, 6, 0xc0);             /* 0 */
    mt_cb_malloc(b, 0, 7, 0xd0, 40, *n2);
    mt_cb_malloc(b, 0, 8, 0xe0, 1, 0);
    mt_cb_malloc(b, 0, 9, 0xf0, 1, 0);
    mt_cb_free(b, 0, 10, 0xd0);            /* 2 after it */
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);                       /* no SYNC: all at the end */
}

START_TEST(temporary_thresholds)
{
    const char *path = tpath("temp");
    uint32_t n1, n2;
    write_temporary(path, &n1, &n2);
    mt_capture_t *cap = load_ok(path, 0); /* default 1 */
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].temporary, 10, 1);
    AMT_EQ(s[n2].temporary, 30, 1);
    AMT_EQ(s[0].leaked, 2, 2);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_frees, 4);
    mt_capture_free(cap);
    cap = load_ok(path, 2);
    s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].temporary, 30, 2);
    AMT_EQ(s[n2].temporary, 30, 1);
    mt_capture_free(cap);
    cap = load_ok(path, 3);
    s = mt_capture_node_stats(cap);
    AMT_EQ(s[n2].temporary, 70, 2);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(leaks_and_lost_free)
{
    const char *path = tpath("leaks");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x10), n2 = mt_cb_node(b, n1, 0x20);
    for (uint64_t i = 0; i < 100; i++)
        mt_cb_malloc(b, 0, MT_CB_NEXT, 0x1000 + 16 * i, i, i % 2 ? n1 : n2);
    for (uint64_t i = 0; i < 100; i += 4)
        mt_cb_free(b, 0, MT_CB_NEXT, 0x1000 + 16 * i);
    /* 0x1004 is live (n1, 1 byte): a malloc there means its free was lost */
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x1010, 1000, n2);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0, 5, n2); /* address 0: nothing */
    mt_cb_free(b, 0, MT_CB_NEXT, 0);          /* free(NULL): nothing */
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_flush(b);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, MT_TRAILER_EVENTS_LOST);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    /* sizes 0..99; freed: multiples of 4 (sum 1200, 25 of them, all n2) */
    ck_assert_uint_eq(t->total_allocations, 101);
    ck_assert_uint_eq(t->total_frees, 26);
    ck_assert_uint_eq(t->current_count, 75);
    ck_assert_uint_eq(t->current_bytes, 4950 - 1200 - 1 + 1000);
    ck_assert_uint_eq(t->total_allocations - t->total_frees, t->current_count);
    ck_assert_uint_eq(t->unmatched_frees, 0);
    ck_assert_uint_eq(t->peak_bytes, 4950);
    ck_assert_uint_eq(t->peak_seq, 100);
    ck_assert_uint_eq(t->size_histogram[0], 1);
    ck_assert_uint_eq(t->size_histogram[1], 1);
    ck_assert_uint_eq(t->size_histogram[2], 2);
    ck_assert_uint_eq(t->size_histogram[7], 36); /* 64..99 */
    ck_assert_uint_eq(t->size_histogram[10], 1); /* 1000 */
    ck_assert_int_eq(t->events_lost, 1);
    ck_assert_msg(strstr(mt_capture_warning(cap), "stopped early"), "%s",
                  mt_capture_warning(cap));
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].total, 2500, 50);           /* odd sizes */
    AMT_EQ(s[n1].leaked, 2499, 49);
    AMT_EQ(s[n2].total, 2450 + 1000, 51);
    AMT_EQ(s[n2].leaked, 2450 - 1200 + 1000, 26);
    AMT_EQ(s[n1].peak, 2500, 50);
    AMT_EQ(s[n2].peak, 2450, 50);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Thread 1's sections are written before thread 0's although their events
 * come later: in block 1, free(A) (seq 5) precedes malloc(A) (seq 1); in
 * block 2, free(D) (seq 7) precedes malloc(D) (seq 3). The free of A must
 * wait in the carried-over run until SYNC 8. */
START_TEST(two_threads_interleaved)
{
    const char *path = tpath("threads");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t nA = mt_cb_node(b, 0, 0x10), nC = mt_cb_node(b, 0, 0x20);
    uint32_t nD = mt_cb_node(b, 0, 0x30), nB = mt_cb_node(b, 0, 0x40);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_thread(b, 1, 101, "worker");
    mt_cb_tick(b, 6, 600, 6000);
    mt_cb_free(b, 1, 5, 0xa0);
    mt_cb_malloc(b, 1, 6, 0xb0, 70, nB);
    mt_cb_malloc(b, 0, 1, 0xa0, 50, nA);
    mt_cb_malloc(b, 0, 2, 0xc0, 20, nC);
    mt_cb_sync(b, 3);
    mt_cb_flush(b);
    mt_cb_free(b, 1, 7, 0xd0);
    mt_cb_malloc(b, 0, 3, 0xd0, 10, nD);
    mt_cb_free(b, 0, 4, 0xc0);
    mt_cb_sync(b, 8);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->unmatched_frees, 0);
    ck_assert_uint_eq(t->total_allocations, 4);
    ck_assert_uint_eq(t->total_frees, 3);
    ck_assert_uint_eq(t->current_bytes, 70);
    ck_assert_uint_eq(t->current_count, 1);
    ck_assert_uint_eq(t->threads, 2);
    ck_assert_uint_eq(t->events, 7);
    ck_assert_uint_eq(t->peak_bytes, 80);
    ck_assert_uint_eq(t->peak_seq, 3);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[nA].peak, 50, 1);
    AMT_EQ(s[nC].peak, 20, 1);
    AMT_EQ(s[nD].peak, 10, 1);
    AMT_EQ(s[nB].peak, 0, 0);
    AMT_EQ(s[nB].leaked, 70, 1);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 1);
    ck_assert_uint_eq(mt_capture_samples(cap)[0].heap_bytes, 10);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Many threads, sections overlapping in seq, synced every block: the
 * result must match the single-thread order. */
START_TEST(many_threads_merge)
{
    const char *path = tpath("many");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = mt_cb_node(b, 0, 0x10);
    uint64_t seq = 1;
    /* Thread k allocates seqs seq+k, seq+k+8, ... of each 32; sections are
     * written highest k first, so they overlap in seq. */
    for (int blk = 0; blk < 20; blk++) {
        for (uint64_t k = 8; k-- > 0;)
            for (uint64_t i = 0; i < 4; i++) {
                uint64_t sq = seq + k + 8 * i;
                mt_cb_malloc(b, k, sq, 0x1000 + 16 * (sq - 1), 8, n);
            }
        seq += 32;
        mt_cb_sync(b, seq);
        mt_cb_flush(b);
    }
    /* The address allocated at seq s by thread k is freed at 640 + s by
     * thread k + 1. */
    for (uint64_t t = 8; t-- > 0;)
        for (uint64_t s = 1; s <= 640; s++)
            if (((s - 1) % 8 + 1) % 8 == t)
                mt_cb_free(b, t, 640 + s, 0x1000 + 16 * (s - 1));
    mt_cb_sync(b, 1281);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->total_allocations, 640);
    ck_assert_uint_eq(t->total_frees, 640);
    ck_assert_uint_eq(t->unmatched_frees, 0);
    ck_assert_uint_eq(t->current_count, 0);
    ck_assert_uint_eq(t->peak_bytes, 640 * 8);
    ck_assert_uint_eq(t->peak_seq, 640);
    ck_assert_uint_eq(t->threads, 8);
    ck_assert_uint_eq(t->events, 1280);
    /* only the last allocation has no allocation after it when freed */
    AMT_EQ(mt_capture_node_stats(cap)[n].temporary, 8, 1);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* munmap of a hole, of a start, and across two regions. */
static void write_mmap(const char *path, int nev, uint32_t *n1, uint32_t *n2)
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    *n1 = mt_cb_node(b, 0, 0x10);
    *n2 = mt_cb_node(b, 0, 0x20);
    struct { unsigned type; uint64_t addr, len; uint32_t stack; } ev[] = {
        {MT_EV_MMAP, 0x10000, 0x4000, *n1},
        {MT_EV_MUNMAP, 0x11000, 0x1000, 0},  /* hole: 2 pieces */
        {MT_EV_MUNMAP, 0x10000, 0x1000, 0},  /* first piece gone */
        {MT_EV_MMAP, 0x20000, 0x2000, *n2},
        {MT_EV_MUNMAP, 0x12000, 0xf000, 0},  /* rest of 1, start of 2 */
        {MT_EV_MUNMAP, 0x50000, 0x1000, 0},  /* nothing there */
        {MT_EV_MUNMAP, 0x21000, 0x1000, 0},  /* rest of 2 */
    };
    for (int i = 0; i < nev; i++)
        mt_cb_event(b, 0, ev[i].type, MT_CB_NEXT, ev[i].addr, ev[i].len,
                    ev[i].stack, 0, 0);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);
}

START_TEST(partial_munmap)
{
    const char *path = tpath("mmap");
    uint32_t n1, n2;
    write_mmap(path, 3, &n1, &n2);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->current_bytes, 0x2000);
    ck_assert_uint_eq(t->current_count, 1);
    ck_assert_uint_eq(t->total_frees, 0);
    AMT_EQ(mt_capture_node_stats(cap)[n1].leaked, 0x2000, 1);
    mt_capture_free(cap);

    write_mmap(path, 4, &n1, &n2);
    cap = load_ok(path, 0);
    t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->current_bytes, 0x4000);
    ck_assert_uint_eq(t->current_count, 2);
    ck_assert_uint_eq(t->peak_bytes, 0x4000);
    ck_assert_uint_eq(t->peak_seq, 1); /* equal again at seq 4: not new */
    mt_capture_free(cap);

    write_mmap(path, 5, &n1, &n2);
    cap = load_ok(path, 0);
    t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->current_bytes, 0x1000);
    ck_assert_uint_eq(t->current_count, 1);
    ck_assert_uint_eq(t->total_frees, 1);
    AMT_EQ(mt_capture_node_stats(cap)[n1].leaked, 0, 0);
    AMT_EQ(mt_capture_node_stats(cap)[n2].leaked, 0x1000, 1);
    mt_capture_free(cap);

    write_mmap(path, 7, &n1, &n2);
    cap = load_ok(path, 0);
    t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->current_bytes, 0);
    ck_assert_uint_eq(t->current_count, 0);
    ck_assert_uint_eq(t->total_allocations, 2);
    ck_assert_uint_eq(t->total_frees, 2);
    ck_assert_uint_eq(t->unmatched_frees, 1);
    AMT_EQ(t->by_allocator[MT_EV_MMAP], 0x6000, 2);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].temporary, 0, 0);
    AMT_EQ(s[n2].temporary, 0x2000, 1);
    AMT_EQ(s[n1].peak, 0x4000, 1);
    AMT_EQ(s[n2].peak, 0, 0);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Random mmap/munmap against a byte-for-byte model (units of 16 bytes). */
START_TEST(mmap_random_model)
{
    enum { UNITS = 512, OPS = 3000 };
    static uint32_t owner[UNITS];
    static uint64_t units_of[OPS + 1];
    const char *path = tpath("mmaprand");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t node = mt_cb_node(b, 0, 0x10);
    uint64_t rng = 12345, allocs = 0, frees = 0, unmatched = 0, live = 0,
             bytes = 0, peak = 0;
    memset(owner, 0, sizeof owner);
    for (uint32_t op = 1; op <= OPS; op++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t a = (uint32_t)(rng % UNITS);
        uint32_t l = 1 + (uint32_t)((rng >> 20) % 40);
        if (a + l > UNITS)
            l = UNITS - a;
        int is_map = (rng >> 40) % 2;
        int touched = 0;
        for (uint32_t u = a; u < a + l; u++) {
            if (!owner[u])
                continue;
            touched = 1;
            bytes -= 16;
            if (--units_of[owner[u]] == 0) {
                frees++;
                live--;
            }
            owner[u] = 0;
        }
        if (is_map) {
            for (uint32_t u = a; u < a + l; u++)
                owner[u] = op;
            units_of[op] = l;
            allocs++;
            live++;
            bytes += 16 * l;
            if (bytes > peak)
                peak = bytes;
        } else if (!touched) {
            unmatched++;
        }
        mt_cb_event(b, op % 3, is_map ? MT_EV_MMAP : MT_EV_MUNMAP, op,
                    0x100000 + 16 * (uint64_t)a, 16 * (uint64_t)l, node, 0, 0);
        if (op % 500 == 0) {
            mt_cb_sync(b, op + 1);
            mt_cb_flush(b);
        }
    }
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->total_allocations, allocs);
    ck_assert_uint_eq(t->total_frees, frees);
    ck_assert_uint_eq(t->unmatched_frees, unmatched);
    ck_assert_uint_eq(t->current_count, live);
    ck_assert_uint_eq(t->current_bytes, bytes);
    ck_assert_uint_eq(t->peak_bytes, peak);
    AMT_EQ(mt_capture_node_stats(cap)[node].leaked, bytes, live);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* The ordered map against a brute-force sorted set. */
START_TEST(omap_against_model)
{
    enum { KEYS = 300 };
    static int present[KEYS];
    mt_omap_t m;
    mt__omap_init(&m, 42);
    uint64_t rng = 99;
    for (int op = 0; op < 20000; op++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint64_t k = rng % KEYS;
        if ((rng >> 32) % 2) {
            if (!present[k]) {
                ck_assert_uint_ne(mt__omap_insert(&m, k * 10, k, k + 1),
                                  MT_OMAP_NIL);
                present[k] = 1;
            }
        } else {
            ck_assert_int_eq(mt__omap_erase(&m, k * 10), present[k]);
            present[k] = 0;
        }
        uint64_t q = (rng >> 16) % (KEYS * 10 + 10);
        int64_t fl = -1, af = -1;
        for (int64_t i = 0; i < KEYS; i++) {
            if (present[i] && (uint64_t)i * 10 <= q)
                fl = i;
            if (present[i] && (uint64_t)i * 10 > q && af < 0)
                af = i;
        }
        uint32_t f = mt__omap_floor(&m, q), a = mt__omap_after(&m, q);
        ck_assert_int_eq(f == MT_OMAP_NIL ? -1 : (int64_t)m.n[f].a, fl);
        ck_assert_int_eq(a == MT_OMAP_NIL ? -1 : (int64_t)m.n[a].a, af);
    }
    size_t count = 0;
    for (int i = 0; i < KEYS; i++)
        count += (size_t)present[i];
    ck_assert_uint_eq(m.count, count);
    mt__omap_free(&m);
}
END_TEST

/* Inputs that would be quadratic with sorted arrays: many mmaps at falling
 * addresses, ticks in reverse order, module churn. Must stay fast. */
START_TEST(many_regions_ticks_modules)
{
    enum { N = 100000 };
    const char *path = tpath("many_regions");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    for (uint64_t i = 0; i < 5000; i++) {
        const uint64_t seg[2] = {0, 0x1000};
        mt_cb_module(b, i, 0x10000000 + 0x2000 * i, "m.so", NULL, 0, 1, seg);
    }
    for (uint64_t i = 0; i < N; i++) {
        const uint64_t seg[2] = {0, 0x1000};
        mt_cb_module_unload(b, i % 5000);
        mt_cb_module(b, i % 5000, 0x10000000 + 0x2000 * (i % 5000), "m.so",
                     NULL, 0, 1, seg);
    }
    uint32_t n = mt_cb_node(b, 0, 0x10000000 + 0x2000 * 77 + 5);
    for (uint64_t i = 0; i < N; i++)
        mt_cb_tick(b, 2 * N - i, i, i);
    for (uint64_t i = 0; i < N; i++)
        mt_cb_event(b, 0, MT_EV_MMAP, i + 1, 0x7f0000000000 - 0x2000 * i,
                    0x2000, n, 0, 0);
    for (uint64_t i = 0; i < N; i++) /* a hole in each */
        mt_cb_event(b, 0, MT_EV_MUNMAP, N + i + 1,
                    0x7f0000000000 - 0x2000 * i + 0x800, 0x800, 0, 0, 0);
    mt_cb_sync(b, 2 * N + 1);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->current_count, N);
    ck_assert_uint_eq(t->current_bytes, (uint64_t)N * 0x1800);
    ck_assert_uint_eq(t->peak_bytes, (uint64_t)N * 0x2000);
    ck_assert_uint_eq(mt_capture_sample_count(cap), N);
    ck_assert_uint_eq(mt_capture_samples(cap)[0].time_ns, N - 1);
    ck_assert_uint_eq(mt_capture_samples(cap)[N - 1].time_ns, 0);
    ck_assert_uint_eq(mt_capture_samples(cap)[0].heap_bytes,
                      (uint64_t)N * 0x2000); /* seq N + 1: all mapped */
    ck_assert_uint_eq(mt_capture_samples(cap)[N - 1].heap_bytes,
                      (uint64_t)N * 0x1800 + 0x800); /* before the last */
    ck_assert_uint_eq(mt_capture_module_count(cap), 5000 + N);
    ck_assert_uint_eq(mt_capture_nodes(cap)[n].module, 5000 + N - 5000 + 77);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(mremap_moves)
{
    const char *path = tpath("mremap");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x10), n2 = mt_cb_node(b, 0, 0x20);
    uint32_t n3 = mt_cb_node(b, 0, 0x30);
    mt_cb_event(b, 0, MT_EV_MMAP, 1, 0x10000, 0x2000, n1, 0, 0);
    mt_cb_event(b, 0, MT_EV_MREMAP, 2, 0x30000, 0x5000, n2, 0x10000, 0x2000);
    mt_cb_event(b, 0, MT_EV_MREMAP, 3, 0x30000, 0x1000, n2, 0x30000, 0x5000);
    mt_cb_event(b, 0, MT_EV_MREMAP, 4, 0x91000, 0x1000, n3, 0x90000, 0x1000);
    /* an mmap over part of a traced mapping replaces those bytes */
    mt_cb_event(b, 0, MT_EV_MMAP, 5, 0x91800, 0x1000, n1, 0, 0);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1, 1, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->total_allocations, 5);
    ck_assert_uint_eq(t->total_frees, 2);
    ck_assert_uint_eq(t->unmatched_frees, 1);
    ck_assert_uint_eq(t->current_count, 3);
    ck_assert_uint_eq(t->current_bytes, 0x1000 + 0x800 + 0x1000);
    ck_assert_uint_eq(t->peak_bytes, 0x5000);
    ck_assert_uint_eq(t->peak_seq, 2);
    AMT_EQ(t->by_allocator[MT_EV_MREMAP], 0x7000, 3);
    AMT_EQ(t->by_allocator[MT_EV_MMAP], 0x3000, 2);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n1].temporary, 0x2000, 1);
    AMT_EQ(s[n2].temporary, 0x5000, 1);
    AMT_EQ(s[n2].peak, 0x5000, 1);
    AMT_EQ(s[n3].leaked, 0x800, 1);
    AMT_EQ(s[n1].leaked, 0x1000, 1);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Ticks: out of order in the record stream, and one arriving after its SYNC
 * window (it is placed before the next pending event). */
START_TEST(ticks_to_samples)
{
    const char *path = tpath("ticks");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_tick(b, 1, 100, 1000);
    mt_cb_tick(b, 3, 300, 3000);
    mt_cb_tick(b, 2, 200, 2000);
    mt_cb_malloc(b, 0, 1, 0xa0, 10, 0);
    mt_cb_malloc(b, 0, 2, 0xb0, 20, 0);
    mt_cb_malloc(b, 0, 3, 0xc0, 40, 0);
    mt_cb_free(b, 0, 4, 0xa0);
    mt_cb_sync(b, 5);
    mt_cb_flush(b);
    mt_cb_tick(b, 4, 400, 5000);
    mt_cb_malloc(b, 0, 5, 0xd0, 1, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 4);
    const mt_sample_t *s = mt_capture_samples(cap);
    const uint64_t want[4][3] = {{100, 0, 1000}, {200, 10, 2000},
                                 {300, 30, 3000}, {400, 60, 5000}};
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(s[i].time_ns, want[i][0]);
        ck_assert_uint_eq(s[i].heap_bytes, want[i][1]);
        ck_assert_uint_eq(s[i].rss_bytes, want[i][2]);
    }
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 70);
    ck_assert_uint_eq(t->peak_time_ns, 300);
    ck_assert_uint_eq(t->peak_rss_bytes, 5000);
    ck_assert_uint_eq(t->duration_ns, 400);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(modules_and_nodes)
{
    const char *path = tpath("modules");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    const uint8_t bid[] = {1, 2, 3};
    const uint64_t sa[] = {0x0, 0x1000, 0x2000, 0x500};
    const uint64_t sb[] = {0x1000, 0x1000};
    const uint64_t sc[] = {0x0, 0x100};
    mt_cb_module(b, 7, 0x400000, "/lib/a.so", bid, 3, 2, sa);
    mt_cb_module(b, 9, 0x700000, "/lib/b.so", NULL, 0, 1, sb);
    uint32_t k1 = mt_cb_node(b, 0, 0x400010);
    uint32_t k2 = mt_cb_node(b, k1, 0x701000);  /* ip-1 just below b */
    uint32_t k3 = mt_cb_node(b, k2, 0x701001);
    uint32_t k4 = mt_cb_node(b, 0, 0x402500);   /* ip-1: last byte of a */
    uint32_t k5 = mt_cb_node(b, 0, 0x402501);   /* ip-1 == hi */
    mt_cb_module_unload(b, 7);
    uint32_t k6 = mt_cb_node(b, 0, 0x400010);
    mt_cb_module(b, 7, 0x800000, "/lib/c.so", NULL, 0, 1, sc);
    uint32_t k7 = mt_cb_node(b, 0, 0x800001);
    mt_cb_note(b, "hello");
    mt_cb_child(b, 4321);
    mt_cb_child(b, 4322);
    mt_cb_trailer(b, 1, 1, 0, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_uint_eq(mt_capture_module_count(cap), 3);
    const mt_module_t *m = mt_capture_modules(cap);
    ck_assert_str_eq(m[0].path, "/lib/a.so");
    ck_assert_uint_eq(m[0].build_id_len, 3);
    ck_assert_int_eq(memcmp(m[0].build_id, bid, 3), 0);
    ck_assert_uint_eq(m[0].bias, 0x400000);
    ck_assert_uint_eq(m[0].lo, 0x400000);
    ck_assert_uint_eq(m[0].hi, 0x402500);
    ck_assert_str_eq(m[1].path, "/lib/b.so");
    ck_assert_uint_eq(m[1].build_id_len, 0);
    ck_assert_uint_eq(m[1].lo, 0x701000);
    ck_assert_uint_eq(m[1].hi, 0x702000);
    ck_assert_str_eq(m[2].path, "/lib/c.so");
    ck_assert_uint_eq(m[2].lo, 0x800000);
    ck_assert_uint_eq(mt_capture_node_count(cap), 8);
    const mt_node_t *n = mt_capture_nodes(cap);
    ck_assert_uint_eq(n[0].module, UINT32_MAX);
    ck_assert_uint_eq(n[k1].module, 0);
    ck_assert_uint_eq(n[k2].module, UINT32_MAX);
    ck_assert_uint_eq(n[k3].module, 1);
    ck_assert_uint_eq(n[k3].parent, k2);
    ck_assert_uint_eq(n[k4].module, 0);
    ck_assert_uint_eq(n[k5].module, UINT32_MAX);
    ck_assert_uint_eq(n[k6].module, UINT32_MAX);
    ck_assert_uint_eq(n[k6].ip, 0x400010);
    ck_assert_uint_eq(n[k7].module, 2);
    ck_assert_uint_eq(mt_capture_totals(cap)->events, 0);
    size_t nkids;
    const int64_t *kids = mt_capture_children(cap, &nkids);
    ck_assert_uint_eq(nkids, 2);
    ck_assert_int_eq(kids[0], 4321);
    ck_assert_int_eq(kids[1], 4322);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(load_from_memory)
{
    const char *path = tpath("mem");
    uint32_t n1, n2;
    write_temporary(path, &n1, &n2);
    size_t len;
    uint8_t *data = mt_cb_read_file(path, &len);
    mt_capture_t *cap = NULL;
    char err[256];
    ck_assert_int_eq(mt_capture_load_memory(data, len, "x.bin", NULL, &cap,
                                            err, sizeof err), 0);
    ck_assert_str_eq(mt_capture_path(cap), "x.bin");
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 6);
    AMT_EQ(mt_capture_node_stats(cap)[n1].temporary, 10, 1);
    mt_capture_free(cap);
    ck_assert_int_eq(mt_capture_load_memory(data, 5, NULL, NULL, &cap, err,
                                            sizeof err), MT_ETRUNCATED);
    ck_assert_str_eq(err, "<memory>: capture is truncated: the file ends "
                          "inside its 16-byte header at offset 5");
    free(data);
    unlink(path);
}
END_TEST

/* ---- Damaged files ----------------------------------------------------------- */

/* Three blocks; the last holds the trailer. Returns the block ends. */
static void write_three_blocks(const char *path, long ends[3])
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = mt_cb_node(b, 0, 0x10);
    for (uint64_t blk = 0; blk < 3; blk++) {
        for (uint64_t i = 0; i < 50; i++) /* threads alternate: 50 sections */
            mt_cb_malloc(b, i % 2, blk * 50 + i + 1,
                         0x1000 + 16 * (blk * 50 + i), 10, n);
        mt_cb_tick(b, blk * 50 + 51, blk, 0);
        mt_cb_sync(b, blk * 50 + 51);
        if (blk == 2)
            mt_cb_trailer(b, 99, 99, MT_CB_NEXT, 0);
        mt_cb_flush(b);
        ends[blk] = mt_cb_offset(b);
    }
    mt_cb_finish(b);
}

START_TEST(truncated_everywhere)
{
    const char *path = tpath("full"), *cut = tpath("cut");
    long ends[3];
    write_three_blocks(path, ends);
    size_t len;
    uint8_t *data = mt_cb_read_file(path, &len);
    ck_assert_uint_eq(len, (size_t)ends[2]);
    size_t hlen = default_header_len();
    for (size_t n = 0; n < len; n++) {
        mt_cb_write_file(cut, data, n);
        mt_capture_t *cap = NULL;
        char err[512];
        int rc = mt_capture_load(cut, NULL, &cap, err, sizeof err);
        if (n < hlen) {
            ck_assert_msg(rc == (n ? MT_ETRUNCATED : MT_EBADMAGIC),
                          "cut %zu: rc %d", n, rc);
            ck_assert_ptr_null(cap);
            ck_assert_msg(strstr(err, cut) == err, "%s", err);
            continue;
        }
        ck_assert_msg(rc == 0, "cut %zu: %s", n, err);
        const char *w = mt_capture_warning(cap);
        ck_assert_ptr_nonnull(w);
        uint64_t allocs = mt_capture_totals(cap)->total_allocations;
        if (n == hlen || n == (size_t)ends[0] || n == (size_t)ends[1]) {
            ck_assert_msg(strstr(w, "capture has no trailer"), "%s", w);
            ck_assert_uint_eq(allocs, n == hlen ? 0 : n == (size_t)ends[0] ? 50 : 100);
        } else {
            ck_assert_msg(strstr(w, "capture is incomplete: read up to offset"),
                          "%s", w);
            ck_assert_msg(strstr(w, "the last block was cut short"), "%s", w);
            ck_assert_uint_eq(allocs, n < (size_t)ends[0] ? 0
                                      : n < (size_t)ends[1] ? 50 : 100);
        }
        mt_capture_free(cap);
    }
    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_ptr_null(mt_capture_warning(cap));
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 150);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 3);
    mt_capture_free(cap);
    free(data);
    unlink(path);
    unlink(cut);
}
END_TEST

/* Every single-byte change must load or fail cleanly; one inside the
 * second frame's payload is a checksum mismatch: kept up to there. */
START_TEST(flipped_bytes)
{
    const char *path = tpath("full"), *bad = tpath("bad");
    long ends[3];
    write_three_blocks(path, ends);
    size_t len;
    uint8_t *data = mt_cb_read_file(path, &len);
    for (size_t i = 0; i < len; i++) {
        data[i] ^= 0x5a;
        mt_cb_write_file(bad, data, len);
        data[i] ^= 0x5a;
        mt_capture_t *cap = NULL;
        char err[512];
        int rc = mt_capture_load(bad, NULL, &cap, err, sizeof err);
        if (rc) {
            ck_assert_ptr_null(cap);
            ck_assert_msg(strstr(err, bad) == err, "%s", err);
        } else {
            mt_capture_free(cap);
        }
    }
    /* the last byte of block 2 is part of the frame's content checksum */
    data[ends[1] - 1] ^= 0xff;
    mt_cb_write_file(bad, data, len);
    mt_capture_t *cap = load_ok(bad, 0);
    const char *w = mt_capture_warning(cap);
    char want[128];
    snprintf(want, sizeof want, "the block at offset %ld is damaged", ends[0]);
    ck_assert_msg(strstr(w, want), "%s", w);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 50);
    mt_capture_free(cap);
    free(data);
    unlink(path);
    unlink(bad);
}
END_TEST

START_TEST(bad_headers)
{
    const char *path = tpath("hdr");
    const char *msg;
    mt_cb_write_file(path, "", 0);
    msg = load_fail(path, MT_EBADMAGIC);
    ck_assert_str_eq(msg + strlen(path) + 2,
                     "not a memtrace capture (file is empty)");
    mt_cb_write_file(path, "hello, world; not a capture", 27);
    msg = load_fail(path, MT_EBADMAGIC);
    ck_assert_str_eq(msg + strlen(path) + 2,
                     "not a memtrace capture (unknown magic)");
    mt_cb_write_file(path, "\x89MTRX", 5);
    load_fail(path, MT_EBADMAGIC);

    uint8_t buf[4096];
    mt_cb_header_t h = {.version = 7};
    size_t n = mt_cb_header_bytes(&h, buf, sizeof buf);
    mt_cb_write_file(path, buf, n);
    msg = load_fail(path, MT_EVERSION);
    ck_assert_str_eq(msg + strlen(path) + 2, "unsupported capture format "
                                             "version 7 (this reader reads 1)");
    h = (mt_cb_header_t){.flags = 0x0100 | MT_FLAG_PYTHON};
    n = mt_cb_header_bytes(&h, buf, sizeof buf);
    mt_cb_write_file(path, buf, n);
    msg = load_fail(path, MT_ERESERVED);
    ck_assert_msg(strstr(msg, "reserved header flag bits set: 0x0100"), "%s",
                  msg);
    /* payload length over the cap, and payload cut short */
    n = mt_cb_header_bytes(NULL, buf, sizeof buf);
    mt__put_u32le(buf + 12, MT_MAX_HEADER_PAYLOAD + 1);
    mt_cb_write_file(path, buf, n);
    load_fail(path, MT_ETOOBIG);
    n = mt_cb_header_bytes(NULL, buf, sizeof buf);
    mt_cb_write_file(path, buf, n - 1);
    load_fail(path, MT_ETRUNCATED);
    /* a header field whose length overruns the payload */
    uint8_t bad[MT_FILE_HEADER_SIZE + 3];
    mt__file_header(bad, 0, 3);
    bad[16] = MT_HDR_EXE;
    bad[17] = 9;
    bad[18] = 'x';
    mt_cb_write_file(path, bad, sizeof bad);
    load_fail(path, MT_ECORRUPT);
    /* unknown header tags are skipped; strings and argv are kept */
    static const char *const argv[] = {"python3", "-c", "", "x", NULL};
    h = (mt_cb_header_t){.flags = MT_FLAG_PYTHON, .pid = 5, .argv = argv,
                         .python_version = "3.11.7", .rss_interval_ms = 10,
                         .parent_pid = 77, .root_pid = 70,
                         .origin = MT_ORIGIN_EXEC, .start_realtime_ns = 1ull << 60};
    n = mt_cb_header_bytes(&h, buf, sizeof buf);
    buf[n++] = 99; /* tag 99 */
    buf[n++] = 2;
    buf[n++] = 0xff;
    buf[n++] = 0xff;
    mt__put_u32le(buf + 12, (uint32_t)(n - MT_FILE_HEADER_SIZE));
    mt_cb_write_file(path, buf, n);
    mt_capture_t *cap = load_ok(path, 0);
    const mt_header_t *hh = mt_capture_header(cap);
    ck_assert_uint_eq(hh->flags, MT_FLAG_PYTHON);
    ck_assert_int_eq(hh->argc, 4);
    ck_assert_str_eq(hh->argv[1], "-c");
    ck_assert_str_eq(hh->argv[2], "");
    ck_assert_str_eq(hh->argv[3], "x");
    ck_assert_ptr_null(hh->argv[4]);
    ck_assert_str_eq(hh->python_version, "3.11.7");
    ck_assert_str_eq(hh->exe, "");
    ck_assert_uint_eq(hh->rss_interval_ms, 10);
    ck_assert_int_eq(hh->parent_pid, 77);
    ck_assert_int_eq(hh->root_pid, 70);
    ck_assert_int_eq(hh->origin, MT_ORIGIN_EXEC);
    ck_assert_uint_eq(hh->start_realtime_ns, 1ull << 60);
    mt_capture_free(cap);
    /* an empty payload: every field absent */
    mt__file_header(buf, 0, 0);
    mt_cb_write_file(path, buf, MT_FILE_HEADER_SIZE);
    cap = load_ok(path, 0);
    hh = mt_capture_header(cap);
    ck_assert_int_eq(hh->argc, 0);
    ck_assert_ptr_null(hh->argv[0]);
    ck_assert_str_eq(hh->exe, "");
    ck_assert_str_eq(hh->tracer_version, "");
    ck_assert_ptr_null(hh->python_version);
    ck_assert_int_eq(hh->pid, 0);
    ck_assert_msg(strstr(mt_capture_warning(cap), "capture has no trailer"),
                  "%s", mt_capture_warning(cap));
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* A capture with one block holding sections [s0, s1) written raw. */
static const char *one_raw_section(const char *path, unsigned type,
                                   const void *payload, size_t len,
                                   size_t *block_off)
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_raw_section(b, type, payload, len);
    mt_cb_finish(b);
    *block_off = default_header_len();
    return path;
}

START_TEST(bad_records)
{
    const char *path = tpath("rec");
    size_t off;
    char want[256];
    const char *msg;

    /* a varint that never ends, inside a malloc event */
    uint8_t endless[16] = {0, MT_EV_MALLOC};
    memset(endless + 2, 0xff, 14);
    one_raw_section(path, MT_SEC_EVENTS, endless, sizeof endless, &off);
    msg = load_fail(path, MT_ECORRUPT);
    snprintf(want, sizeof want, "corrupt record: bad malloc event (overlong "
             "varint or stack id over 2^32) at byte 3 of the block at offset "
             "%zu", off);
    ck_assert_msg(strstr(msg, want), "%s", msg);

    /* unknown event type 31 */
    const uint8_t t31[] = {0, 0x1f, 0};
    one_raw_section(path, MT_SEC_EVENTS, t31, sizeof t31, &off);
    msg = load_fail(path, MT_ECORRUPT);
    snprintf(want, sizeof want, "corrupt record: event type 31 at byte 3 of "
             "the block at offset %zu", off);
    ck_assert_msg(strstr(msg, want), "%s", msg);

    /* an event cut short by its section */
    const uint8_t cut[] = {0, MT_EV_MALLOC, 0x10};
    one_raw_section(path, MT_SEC_EVENTS, cut, sizeof cut, &off);
    msg = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(msg, "cut short by the end of its section"), "%s", msg);

    /* a stack node that was never defined: corrupt */
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_node(b, 0, 1);
    mt_cb_malloc(b, 0, 1, 0x10, 1, 5);
    mt_cb_finish(b);
    msg = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(msg, "refers to stack node 5, but only 2 nodes are "
                              "defined"), "%s", msg);

    /* a node whose parent is not older than itself */
    b = mt_cb_begin(path, NULL);
    mt_cb_node(b, 0, 1);
    mt_cb_node(b, 2, 1);
    mt_cb_finish(b);
    msg = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(msg, "node's parent is not an earlier node"), "%s",
                  msg);

    /* a definition record overrunning its section */
    const uint8_t over[] = {MT_DEF_NODE, 5, 0};
    one_raw_section(path, MT_SEC_DEFS, over, sizeof over, &off);
    load_fail(path, MT_ECORRUPT);

    /* module with more segments than bytes */
    const uint8_t mod[] = {1, 0, 0, 0, 200, 1, 1};
    b = mt_cb_begin(path, NULL);
    mt_cb_raw_def(b, MT_DEF_MODULE_LOAD, mod, sizeof mod);
    mt_cb_finish(b);
    load_fail(path, MT_ECORRUPT);

    /* a thread index over 2^32 */
    uint8_t big[16] = {0}, *e = mt__put_varint(big, 1ull << 32);
    one_raw_section(path, MT_SEC_EVENTS, big, (size_t)(e - big), &off);
    load_fail(path, MT_ECORRUPT);

    /* unknown sections and records are skipped */
    b = mt_cb_begin(path, NULL);
    mt_cb_raw_section(b, 77, "abc", 3);
    mt_cb_raw_def(b, 99, "xyz", 3);
    mt_cb_malloc(b, 0, 1, 0x10, 1, 0);
    mt_cb_trailer(b, 1, 1, 1, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 1);
    ck_assert_ptr_null(mt_capture_warning(cap));
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(bad_blocks)
{
    const char *path = tpath("blk");
    uint8_t buf[4096];
    size_t n = mt_cb_header_bytes(NULL, buf, sizeof buf);
    const char *msg;
    char want[256];

    /* absurd raw size */
    mt__put_u32le(buf + n, MT_BLOCK_MAGIC);
    mt__put_u32le(buf + n + 4, 10);
    mt__put_u32le(buf + n + 8, 0x7fffffffu);
    mt_cb_write_file(path, buf, n + 12);
    msg = load_fail(path, MT_ETOOBIG);
    snprintf(want, sizeof want, "block sizes out of range (frame 10 bytes, "
             "raw 2147483647 bytes) at offset %zu", n);
    ck_assert_msg(strstr(msg, want), "%s", msg);

    /* raw size larger than any LZ4 frame of that size can hold */
    mt__put_u32le(buf + n + 8, 1u << 20);
    mt_cb_write_file(path, buf, n + 12);
    load_fail(path, MT_ETOOBIG);

    /* bad block magic */
    mt__put_u32le(buf + n, 0x12345678);
    mt_cb_write_file(path, buf, n + 12);
    msg = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(msg, "corrupt block header (magic 0x12345678)"), "%s",
                  msg);

    /* a zero-filled tail (what a crash can leave): kept with a warning */
    memset(buf + n, 0, 64);
    mt_cb_write_file(path, buf, n + 64);
    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_msg(strstr(mt_capture_warning(cap), "capture is incomplete"),
                  "%s", mt_capture_warning(cap));
    mt_capture_free(cap);

    /* a frame that is valid LZ4 but holds fewer bytes than stated */
    uint8_t raw[8] = {MT_SEC_SYNC, 1, 1};
    long bl = mt__block_compress(raw, 3, buf + n, sizeof buf - n, NULL);
    ck_assert_int_gt(bl, 0);
    mt__put_u32le(buf + n + 8, 4);
    mt_cb_write_file(path, buf, n + (size_t)bl);
    cap = load_ok(path, 0);
    ck_assert_msg(strstr(mt_capture_warning(cap), "is damaged"), "%s",
                  mt_capture_warning(cap));
    mt_capture_free(cap);

    /* a section overrunning its block */
    raw[1] = 9;
    bl = mt__block_compress(raw, 3, buf + n, sizeof buf - n, NULL);
    mt_cb_write_file(path, buf, n + (size_t)bl);
    msg = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(msg, "section overruns its block at byte 0 of the "
                              "block at offset"), "%s", msg);

    /* a file that does not exist */
    msg = load_fail("/nonexistent/x.bin", MT_ENOENT);
    ck_assert_msg(strstr(msg, "cannot open"), "%s", msg);
    unlink(path);
}
END_TEST

/* ---- Golden fixture ---------------------------------------------------------- */

/* The capture behind tests/fixtures/golden-v1.bin (written once with this
 * function). Loading the checked-in file catches a reader that no longer
 * reads what format version 1 writers wrote. */
static void write_golden(const char *path)
{
    static const char *const argv[] = {"./app", "--size", "3", NULL};
    mt_cb_header_t h = {.flags = MT_FLAG_NATIVE_STACKS, .pid = 4242,
                        .ppid = 1, .argv = argv, .exe = "/usr/bin/app",
                        .tracer_version = "0.1.0", .rss_interval_ms = 10,
                        .start_realtime_ns = 1700000000000000000ull};
    mt_cb_t *b = mt_cb_begin(path, &h);
    const uint8_t bid[4] = {0xde, 0xad, 0xbe, 0xef};
    const uint64_t segs[] = {0, 0x3000, 0x4000, 0x1000};
    mt_cb_module(b, 1, 0x555500000000, "/usr/bin/app", bid, 4, 2, segs);
    mt_cb_thread(b, 0, 4242, "app");
    mt_cb_thread(b, 1, 4243, "worker");
    uint32_t main_ = mt_cb_node(b, 0, 0x555500001100);
    uint32_t f = mt_cb_node(b, main_, 0x555500001200);
    uint32_t g = mt_cb_node(b, main_, 0x555500001300);
    mt_cb_tick(b, 3, 10000000, 1 << 20);
    mt_cb_malloc(b, 1, 4, 0x7000, 4096, g);
    mt_cb_malloc(b, 0, 1, 0x1000, 100, f);
    mt_cb_event(b, 0, MT_EV_CALLOC, 2, 0x2000, 200, f, 0, 0);
    mt_cb_realloc(b, 0, 3, 0x1000, 0x3000, 300, g);
    mt_cb_sync(b, 4);
    mt_cb_flush(b);
    mt_cb_tick(b, 8, 20000000, 2 << 20);
    mt_cb_event(b, 1, MT_EV_MMAP, 5, 0x100000, 0x10000, g, 0, 0);
    mt_cb_event(b, 1, MT_EV_MUNMAP, 6, 0x104000, 0x4000, 0, 0, 0);
    mt_cb_free(b, 0, 7, 0x2000);
    mt_cb_sync(b, 8);
    mt_cb_trailer(b, 25000000, 3 << 20, 7, 0);
    mt_cb_finish(b);
}

static void check_golden(mt_capture_t *cap)
{
    ck_assert_ptr_null(mt_capture_warning(cap));
    const mt_header_t *h = mt_capture_header(cap);
    ck_assert_int_eq(h->pid, 4242);
    ck_assert_int_eq(h->argc, 3);
    ck_assert_str_eq(h->argv[1], "--size");
    ck_assert_str_eq(h->exe, "/usr/bin/app");
    ck_assert_uint_eq(h->flags, MT_FLAG_NATIVE_STACKS);
    ck_assert_uint_eq(h->start_realtime_ns, 1700000000000000000ull);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->total_allocations, 5);
    ck_assert_uint_eq(t->total_frees, 2);
    ck_assert_uint_eq(t->current_count, 3);
    ck_assert_uint_eq(t->current_bytes, 4096 + 300 + 0xc000);
    ck_assert_uint_eq(t->peak_bytes, 4096 + 300 + 200 + 0x10000);
    ck_assert_uint_eq(t->peak_seq, 5);
    ck_assert_uint_eq(t->peak_time_ns, 10000000);
    ck_assert_uint_eq(t->duration_ns, 25000000);
    ck_assert_uint_eq(t->peak_rss_bytes, 3 << 20);
    ck_assert_uint_eq(t->threads, 2);
    ck_assert_uint_eq(t->events, 7);
    ck_assert_int_eq(t->complete, 1);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 2);
    ck_assert_uint_eq(mt_capture_samples(cap)[0].heap_bytes, 100 + 200);
    ck_assert_uint_eq(mt_capture_samples(cap)[1].heap_bytes,
                      4096 + 300 + 0xc000);
    ck_assert_uint_eq(mt_capture_module_count(cap), 1);
    ck_assert_uint_eq(mt_capture_modules(cap)[0].hi, 0x555500005000);
    ck_assert_uint_eq(mt_capture_node_count(cap), 4);
    ck_assert_uint_eq(mt_capture_nodes(cap)[3].module, 0);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[2].total, 300, 2);
    AMT_EQ(s[2].leaked, 0, 0);
    AMT_EQ(s[2].peak, 200, 1);
    AMT_EQ(s[3].peak, 4096 + 300 + 0x10000, 3);
    AMT_EQ(s[3].leaked, 4096 + 300 + 0xc000, 3);
    AMT_EQ(s[2].temporary, 0, 0); /* freed 1 and 3 allocations later */
}

START_TEST(golden_fixture)
{
    const char *path = tpath("golden");
    write_golden(path);
    mt_capture_t *cap = load_ok(path, 0);
    check_golden(cap);
    mt_capture_free(cap);
    unlink(path);
    char fx[4096];
    const char *dir = getenv("MT_FIXTURES");
    if (dir) {
        snprintf(fx, sizeof fx, "%s/golden-v1.bin", dir);
    } else { /* __FILE__ is tests/test_reader.c, absolute under CMake */
        snprintf(fx, sizeof fx, "%s", __FILE__);
        char *slash = strrchr(fx, '/');
        snprintf(slash ? slash + 1 : fx, sizeof fx - (size_t)(slash ? slash + 1 - fx : 0),
                 "fixtures/golden-v1.bin");
    }
    if (getenv("MT_WRITE_GOLDEN"))
        write_golden(fx);
    cap = load_ok(fx, 0);
    check_golden(cap);
    mt_capture_free(cap);
}
END_TEST


/* Builds an SMAPS record payload: seq, ns, kind, then n (tag, value). */
static size_t smaps_payload(uint8_t *out, uint64_t seq, uint64_t ns,
                            unsigned kind, const uint64_t *tv, size_t n)
{
    uint8_t *p = out;
    p = mt__put_varint(p, seq);
    p = mt__put_varint(p, ns);
    p = mt__put_varint(p, kind);
    for (size_t i = 0; i < 2 * n; i++)
        p = mt__put_varint(p, tv[i]);
    return (size_t)(p - out);
}

/* Memory samples take their place in the event order like ticks (the heap
 * and traced mmaps at that moment), skip unknown tags, and the exit
 * sample appended after the trailer gives the peak RSS. */
START_TEST(memsamples_in_order)
{
    const char *path = tpath("smaps");
    uint8_t rec[256];
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n1 = mt_cb_node(b, 0, 0x10);
    const uint64_t f1[] = {MT_SMAPS_RSS, 1 << 20, MT_SMAPS_ANONYMOUS, 600 << 10,
                           99, 5 /* unknown: skipped */, MT_SMAPS_MALLOC_FREE, 123};
    mt_cb_raw_def(b, MT_DEF_SMAPS, rec, smaps_payload(rec, 3, 500, MT_SMAPS_PEAK, f1, 4));
    mt_cb_malloc(b, 0, 1, 0xa0, 100, n1);
    mt_cb_event(b, 0, MT_EV_MMAP, 2, 0x10000, 4096, n1, 0, 0);
    mt_cb_free(b, 0, 3, 0xa0);
    mt_cb_sync(b, 4);
    const uint64_t f2[] = {MT_SMAPS_STATM_RSS, 2 << 20, MT_SMAPS_STATM_SHARED, 1 << 20};
    mt_cb_raw_def(b, MT_DEF_SMAPS, rec, smaps_payload(rec, 4, 900, MT_SMAPS_END, f2, 2));
    mt_cb_trailer(b, 1000, 5000, MT_CB_NEXT, 0);
    mt_cb_flush(b);
    const uint64_t f3[] = {MT_SMAPS_MAXRSS, 7000};
    mt_cb_raw_def(b, MT_DEF_SMAPS, rec, smaps_payload(rec, 0, 0, MT_SMAPS_EXIT, f3, 1));
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path, 0);
    ck_assert_ptr_null(mt_capture_warning(cap));
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_rss_bytes, 7000);
    ck_assert_uint_eq(t->peak_rss_source, MT_PEAK_RSS_EXIT);
    ck_assert_uint_eq(mt_capture_memsample_count(cap), 3);
    const mt_memsample_t *m = mt_capture_memsamples(cap);
    ck_assert_uint_eq(m[0].kind, MT_SMAPS_PEAK);
    ck_assert_uint_eq(m[0].time_ns, 500);
    ck_assert_uint_eq(m[0].heap_bytes, 4196); /* before the free of seq 3 */
    ck_assert_uint_eq(m[0].mapped_bytes, 4096);
    ck_assert_uint_eq(m[0].fields[MT_SMAPS_RSS], 1 << 20);
    ck_assert_uint_eq(m[0].fields[MT_SMAPS_ANONYMOUS], 600 << 10);
    ck_assert_uint_eq(m[0].fields[MT_SMAPS_MALLOC_FREE], 123);
    ck_assert_uint_eq(m[0].present, (1ull << MT_SMAPS_RSS) |
                                        (1ull << MT_SMAPS_ANONYMOUS) |
                                        (1ull << MT_SMAPS_MALLOC_FREE));
    ck_assert_uint_eq(m[1].kind, MT_SMAPS_END);
    ck_assert_uint_eq(m[1].heap_bytes, 4096);
    ck_assert_uint_eq(m[1].fields[MT_SMAPS_STATM_SHARED], 1 << 20);
    ck_assert_uint_eq(m[2].kind, MT_SMAPS_EXIT);
    ck_assert_uint_eq(m[2].heap_bytes, 4096);
    ck_assert_uint_eq(m[2].fields[MT_SMAPS_MAXRSS], 7000);
    mt_capture_free(cap);

    /* Without the exit sample, the trailer's; a field cut in half is
     * corrupt. */
    b = mt_cb_begin(path, NULL);
    mt_cb_trailer(b, 1000, 5000, 0, 0);
    mt_cb_finish(b);
    cap = load_ok(path, 0);
    ck_assert_uint_eq(mt_capture_totals(cap)->peak_rss_bytes, 5000);
    ck_assert_uint_eq(mt_capture_totals(cap)->peak_rss_source, MT_PEAK_RSS_TRAILER);
    ck_assert_uint_eq(mt_capture_memsample_count(cap), 0);
    mt_capture_free(cap);
    b = mt_cb_begin(path, NULL);
    size_t len = smaps_payload(rec, 1, 1, MT_SMAPS_START, f1, 1);
    rec[len++] = MT_SMAPS_SWAP; /* a tag without its value */
    mt_cb_raw_def(b, MT_DEF_SMAPS, rec, len);
    mt_cb_finish(b);
    const char *err = load_fail(path, MT_ECORRUPT);
    ck_assert_msg(strstr(err, "memory sample record cut short"), "%s", err);
    unlink(path);
}
END_TEST

Suite *mt_test_reader_suite(void)
{
    Suite *s = suite_create("reader");
    TCase *tc = tcase_create("round_trip");
    tcase_add_test(tc, single_thread_chains);
    tcase_add_test(tc, peak_snapshot_first_moment);
    tcase_add_test(tc, peak_moves_and_ticks);
    tcase_add_test(tc, memsamples_in_order);
    tcase_add_test(tc, temporary_thresholds);
    tcase_add_test(tc, leaks_and_lost_free);
    tcase_add_test(tc, two_threads_interleaved);
    tcase_add_test(tc, many_threads_merge);
    tcase_add_test(tc, partial_munmap);
    tcase_add_test(tc, mremap_moves);
    tcase_add_test(tc, mmap_random_model);
    tcase_add_test(tc, omap_against_model);
    tcase_add_test(tc, many_regions_ticks_modules);
    tcase_add_test(tc, ticks_to_samples);
    tcase_add_test(tc, modules_and_nodes);
    tcase_add_test(tc, load_from_memory);
    tcase_add_test(tc, golden_fixture);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("damaged");
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, truncated_everywhere);
    tcase_add_test(bad, flipped_bytes);
    tcase_add_test(bad, bad_headers);
    tcase_add_test(bad, bad_records);
    tcase_add_test(bad, bad_blocks);
    suite_add_tcase(s, bad);
    return s;
}
