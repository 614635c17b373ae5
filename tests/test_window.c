/* test_window.c: unit tests of the reader's windows (mt_load_opts_t.window)
 * and of combining the captures of a multi-process job
 * (mt_capture_load_job), on synthetic captures with known numbers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "memtrace/reader.h"
#include "tests.h"

#define MS 1000000ull

static const char *tpath(const char *tag)
{
    static char buf[8][128];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 128, "/tmp/mt_test_window_%d_%s.bin", (int)getpid(), tag);
    return p;
}

#define AMT_EQ(a, b, c)                                                        \
    do {                                                                       \
        ck_assert_uint_eq((a).bytes, (b));                                     \
        ck_assert_uint_eq((a).count, (c));                                     \
    } while (0)

/* Four phases, a tick between each (ns: 100, 200, 300, 400 ms):
 *   seq 1 A 1000            | tick 100 ms (seq 2)  heap 1000
 *   seq 2 B 2000, 3 T 50, 4 free T | tick 200 ms (seq 5)  heap 3000
 *   seq 5 free A, 6 C 4000, 7 mmap D 8192 | tick 300 ms (seq 8) 14192
 *   seq 8 munmap half of D, 9 free B | tick 400 ms (seq 10) 8096
 * trailer at 450 ms. */
typedef struct phases_s {
    uint32_t a, b, t, c, d;
} phases_t;

static void write_phases(const char *path, phases_t *n)
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    n->a = mt_cb_node(b, 0, 0x1000);
    n->b = mt_cb_node(b, 0, 0x2000);
    n->t = mt_cb_node(b, 0, 0x3000);
    n->c = mt_cb_node(b, 0, 0x4000);
    n->d = mt_cb_node(b, 0, 0x5000);
    mt_cb_malloc(b, 0, 1, 0x100, 1000, n->a);
    mt_cb_tick(b, 2, 100 * MS, 10000);
    mt_cb_malloc(b, 0, 2, 0x200, 2000, n->b);
    mt_cb_malloc(b, 0, 3, 0x300, 50, n->t);
    mt_cb_free(b, 0, 4, 0x300);
    mt_cb_sync(b, 5);
    mt_cb_flush(b);
    mt_cb_tick(b, 5, 200 * MS, 20000);
    mt_cb_free(b, 0, 5, 0x100);
    mt_cb_malloc(b, 0, 6, 0x400, 4000, n->c);
    mt_cb_event(b, 0, MT_EV_MMAP, 7, 0x10000, 8192, n->d, 0, 0);
    mt_cb_tick(b, 8, 300 * MS, 40000);
    mt_cb_event(b, 0, MT_EV_MUNMAP, 8, 0x10000, 4096, 0, 0, 0);
    mt_cb_free(b, 0, 9, 0x200);
    mt_cb_tick(b, 10, 400 * MS, 30000);
    mt_cb_sync(b, 10);
    mt_cb_trailer(b, 450 * MS, 50000, MT_CB_NEXT, 0);
    mt_cb_finish(b);
}

static mt_capture_t *load_window(const char *path, uint64_t from_ns,
                                 uint64_t to_ns)
{
    mt_load_opts_t o = {.window = 1, .from_ns = from_ns, .to_ns = to_ns};
    mt_capture_t *cap = NULL;
    char err[512];
    int rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "load failed: %d %s", rc, err);
    return cap;
}

START_TEST(whole_run_is_unchanged)
{
    const char *path = tpath("whole");
    phases_t n;
    write_phases(path, &n);
    mt_capture_t *cap = load_window(path, 0, UINT64_MAX);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 14192);
    ck_assert_uint_eq(t->current_bytes, 8096);
    ck_assert_uint_eq(t->total_allocations, 5);
    ck_assert_uint_eq(t->total_frees, 3);
    ck_assert_uint_eq(t->peak_rss_bytes, 40000); /* samples, not trailer */
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.c].leaked, 4000, 1);
    AMT_EQ(s[n.d].leaked, 4096, 1);
    AMT_EQ(s[n.a].leaked, 0, 0);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 4);
    const mt_window_t *w = mt_capture_window(cap);
    ck_assert_int_eq(w->active, 1);
    ck_assert_uint_eq(w->from_ns, 0);
    ck_assert_uint_eq(w->to_ns, 450 * MS);
    ck_assert_int_eq(w->clamped, 0);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(second_phase)
{
    const char *path = tpath("second");
    phases_t n;
    write_phases(path, &n);
    /* 100 ms is a tick: the window is [tick 100, tick 200). */
    mt_capture_t *cap = load_window(path, 100 * MS, 200 * MS);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 3050);
    ck_assert_uint_eq(t->peak_seq, 3);
    ck_assert_uint_eq(t->peak_time_ns, 100 * MS);
    ck_assert_uint_eq(t->current_bytes, 3000);
    ck_assert_uint_eq(t->current_count, 2);
    ck_assert_uint_eq(t->total_allocations, 2);
    ck_assert_uint_eq(t->total_frees, 1);
    ck_assert_uint_eq(t->total_bytes_allocated, 2050);
    ck_assert_uint_eq(t->by_allocator[MT_EV_MALLOC].count, 2);
    ck_assert_uint_eq(t->peak_rss_bytes, 20000);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.a].peak, 1000, 1); /* live at the window's peak */
    AMT_EQ(s[n.b].peak, 2000, 1);
    AMT_EQ(s[n.t].peak, 50, 1);
    AMT_EQ(s[n.a].leaked, 0, 0); /* made before the window */
    AMT_EQ(s[n.b].leaked, 2000, 1);
    AMT_EQ(s[n.t].leaked, 0, 0);
    AMT_EQ(s[n.a].total, 0, 0);
    AMT_EQ(s[n.b].total, 2000, 1);
    AMT_EQ(s[n.t].temporary, 50, 1);
    ck_assert_uint_eq(mt_capture_sample_count(cap), 2);
    ck_assert_uint_eq(mt_capture_samples(cap)[0].time_ns, 100 * MS);
    ck_assert_uint_eq(mt_capture_samples(cap)[1].heap_bytes, 3000);
    const mt_window_t *w = mt_capture_window(cap);
    ck_assert_uint_eq(w->from_ns, 100 * MS);
    ck_assert_uint_eq(w->to_ns, 200 * MS);
    ck_assert_uint_eq(w->start_bytes, 1000);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(edges_round_up_to_ticks)
{
    const char *path = tpath("round");
    phases_t n;
    write_phases(path, &n);
    /* 150 ms starts at tick 200, 250 ms ends at tick 300. */
    mt_capture_t *cap = load_window(path, 150 * MS, 250 * MS);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 14192);
    ck_assert_uint_eq(t->peak_seq, 7);
    ck_assert_uint_eq(t->current_bytes, 14192);
    ck_assert_uint_eq(t->total_allocations, 2);
    ck_assert_uint_eq(t->total_frees, 1); /* A, made before, freed inside */
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.a].peak, 0, 0);
    AMT_EQ(s[n.b].peak, 2000, 1);
    AMT_EQ(s[n.c].peak, 4000, 1);
    AMT_EQ(s[n.d].peak, 8192, 1);
    AMT_EQ(s[n.b].leaked, 0, 0);
    AMT_EQ(s[n.c].leaked, 4000, 1);
    AMT_EQ(s[n.d].leaked, 8192, 1);
    const mt_window_t *w = mt_capture_window(cap);
    ck_assert_uint_eq(w->from_ns, 200 * MS);
    ck_assert_uint_eq(w->to_ns, 300 * MS);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(to_the_end_with_a_partial_munmap)
{
    const char *path = tpath("tail");
    phases_t n;
    write_phases(path, &n);
    mt_capture_t *cap = load_window(path, 150 * MS, UINT64_MAX);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.c].leaked, 4000, 1);
    AMT_EQ(s[n.d].leaked, 4096, 1); /* half of it is still mapped */
    AMT_EQ(s[n.b].leaked, 0, 0);
    ck_assert_uint_eq(mt_capture_totals(cap)->current_bytes, 8096);
    ck_assert_uint_eq(mt_capture_window(cap)->to_ns, 450 * MS);
    ck_assert_int_eq(mt_capture_window(cap)->clamped, 0);
    mt_capture_free(cap);

    /* The last phase: its start is its peak; nothing made there is left. */
    cap = load_window(path, 300 * MS, UINT64_MAX);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 14192);
    ck_assert_uint_eq(t->peak_seq, 8);
    ck_assert_uint_eq(t->total_allocations, 0);
    ck_assert_uint_eq(t->total_frees, 1);
    s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.c].leaked, 0, 0);
    AMT_EQ(s[n.d].leaked, 0, 0);
    AMT_EQ(s[n.d].peak, 8192, 1);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

START_TEST(beyond_the_end)
{
    const char *path = tpath("beyond");
    phases_t n;
    write_phases(path, &n);
    mt_capture_t *cap = load_window(path, 0, 10000 * MS);
    ck_assert_int_eq(mt_capture_window(cap)->clamped, 1);
    ck_assert_uint_eq(mt_capture_window(cap)->to_ns, 450 * MS);
    ck_assert_uint_eq(mt_capture_totals(cap)->peak_bytes, 14192);
    mt_capture_free(cap);

    mt_load_opts_t o = {.window = 1, .from_ns = 401 * MS, .to_ns = UINT64_MAX};
    char err[512];
    cap = (mt_capture_t *)1;
    int rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    ck_assert_int_eq(rc, MT_ERANGE);
    ck_assert_ptr_null(cap);
    ck_assert_msg(strstr(err, "after the capture's last RSS sample (at 0.400 s"),
                  "%s", err);
    ck_assert_ptr_null(strchr(err, '\n'));
    unlink(path);
}
END_TEST

START_TEST(end_by_seq)
{
    const char *path = tpath("seq");
    phases_t n;
    write_phases(path, &n);
    mt_load_opts_t o = {.window = 1, .to_seq = 8};
    mt_capture_t *cap = NULL;
    char err[512];
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    /* No start: the leaks view is the whole live set at tick 300. */
    AMT_EQ(s[n.b].leaked, 2000, 1);
    AMT_EQ(s[n.c].leaked, 4000, 1);
    AMT_EQ(s[n.d].leaked, 8192, 1);
    ck_assert_uint_eq(mt_capture_totals(cap)->current_bytes, 14192);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

Suite *mt_test_window_suite(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("window");
    tcase_add_test(tc, whole_run_is_unchanged);
    tcase_add_test(tc, second_phase);
    tcase_add_test(tc, edges_round_up_to_ticks);
    tcase_add_test(tc, to_the_end_with_a_partial_munmap);
    tcase_add_test(tc, beyond_the_end);
    tcase_add_test(tc, end_by_seq);
    suite_add_tcase(s, tc);
    return s;
}
