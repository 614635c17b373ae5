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


START_TEST(exact_edges_by_seq)
{
    const char *path = tpath("seqedges");
    phases_t n;
    write_phases(path, &n);
    /* Events 5 (free A) and 6 (C 4000); 7 (mmap D) is after the window. */
    mt_load_opts_t o = {.window = 1, .from_seq = 5, .to_seq = 7};
    mt_capture_t *cap = NULL;
    char err[512];
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 6000);
    ck_assert_uint_eq(t->peak_seq, 6);
    ck_assert_uint_eq(t->current_bytes, 6000);
    ck_assert_uint_eq(t->total_allocations, 1);
    ck_assert_uint_eq(t->total_frees, 1);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.b].peak, 2000, 1);
    AMT_EQ(s[n.c].peak, 4000, 1);
    AMT_EQ(s[n.d].peak, 0, 0);
    AMT_EQ(s[n.c].leaked, 4000, 1);
    AMT_EQ(s[n.b].leaked, 0, 0);
    ck_assert_uint_eq(mt_capture_window(cap)->start_bytes, 3000);
    ck_assert_uint_eq(mt_capture_window(cap)->from_ns, 200 * MS);
    mt_capture_free(cap);

    /* Only event 3 (T 50, made then freed by event 4, after the end). */
    o = (mt_load_opts_t){.window = 1, .from_seq = 3, .to_seq = 4};
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 3050);
    s = mt_capture_node_stats(cap);
    AMT_EQ(s[n.t].leaked, 50, 1);
    AMT_EQ(s[n.t].temporary, 0, 0);
    AMT_EQ(s[n.t].total, 50, 1);
    mt_capture_free(cap);

    o = (mt_load_opts_t){.window = 1, .from_seq = 99};
    cap = (mt_capture_t *)1;
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err),
                     MT_ERANGE);
    ck_assert_msg(strstr(err, "starts at event 99"), "%s", err);
    unlink(path);
}
END_TEST

/* ---- Combining a job ------------------------------------------------------ */

/* A parent (pid 100, from 0 ms) holding 1000 bytes at node X, and two
 * children one after the other: 101 (from 100 ms to 250 ms) with 5000 at
 * node Y and 300 at X (left), and 102 (from 300 ms to 450 ms) with 6000 at
 * Y. Each child's peak is at its first tick. The sum of the peaks is
 * 12300; the peak of the sum is 7000 (parent 1000 + child 102's 6000). */
#define JOB_T0 1000000000000ull

static void write_job(const char *root)
{
    char path[256];
    const char *argv_p[] = {"parent", NULL}, *argv_c[] = {"child", NULL};
    mt_cb_header_t h = {.pid = 100, .ppid = 1, .start_realtime_ns = JOB_T0,
                        .argv = argv_p, .rss_interval_ms = 100};
    mt_cb_t *b = mt_cb_begin(root, &h);
    uint32_t x = mt_cb_node(b, 0, 0x1000);
    mt_cb_tick(b, 1, 0, 100);
    mt_cb_malloc(b, 0, 1, 0x100, 1000, x);
    mt_cb_child(b, 101);
    for (uint64_t ms = 100; ms <= 500; ms += 100)
        mt_cb_tick(b, 2, ms * MS, 100);
    mt_cb_sync(b, 2);
    mt_cb_trailer(b, 500 * MS, 100, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    snprintf(path, sizeof path, "%s.101", root);
    h = (mt_cb_header_t){.pid = 101, .ppid = 100, .parent_pid = 100,
                         .start_realtime_ns = JOB_T0 + 100 * MS,
                         .argv = argv_c, .rss_interval_ms = 100};
    b = mt_cb_begin(path, &h);
    x = mt_cb_node(b, 0, 0x1000);
    uint32_t y = mt_cb_node(b, 0, 0x2000);
    mt_cb_tick(b, 1, 0, 200);
    mt_cb_malloc(b, 0, 1, 0x500, 5000, y);
    mt_cb_malloc(b, 0, 2, 0x600, 300, x);
    mt_cb_tick(b, 3, 100 * MS, 300);
    mt_cb_free(b, 0, 3, 0x500);
    mt_cb_tick(b, 4, 150 * MS, 200);
    mt_cb_sync(b, 4);
    mt_cb_trailer(b, 150 * MS, 300, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    snprintf(path, sizeof path, "%s.102", root);
    h.pid = 102;
    h.start_realtime_ns = JOB_T0 + 300 * MS;
    b = mt_cb_begin(path, &h);
    y = mt_cb_node(b, 0, 0x2000);
    mt_cb_tick(b, 1, 0, 200);
    mt_cb_malloc(b, 0, 1, 0x500, 6000, y);
    mt_cb_tick(b, 2, 100 * MS, 400);
    mt_cb_free(b, 0, 2, 0x500);
    mt_cb_tick(b, 3, 150 * MS, 200);
    mt_cb_sync(b, 3);
    mt_cb_trailer(b, 150 * MS, 400, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    /* Not of this job: another parent, and a name that is no pid. */
    snprintf(path, sizeof path, "%s.999", root);
    h.pid = 999;
    h.parent_pid = 55;
    b = mt_cb_begin(path, &h);
    y = mt_cb_node(b, 0, 0x7000);
    mt_cb_malloc(b, 0, 1, 0x500, 77777, y);
    mt_cb_sync(b, 2);
    mt_cb_finish(b);
    snprintf(path, sizeof path, "%s.1x", root);
    mt_cb_write_file(path, "junk", 4);
}

static void unlink_job(const char *root)
{
    const char *sfx[] = {"", ".101", ".102", ".999", ".1x"};
    char path[256];
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s%s", root, sfx[i]);
        unlink(path);
    }
}

/* The node whose frame key is ip, or 0. */
static uint32_t node_of(const mt_capture_t *cap, uint64_t ip)
{
    for (size_t i = 1; i < mt_capture_node_count(cap); i++)
        if (mt_capture_nodes(cap)[i].ip == ip)
            return (uint32_t)i;
    return 0;
}

static void check_job(mt_capture_t *cap)
{
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 7000);
    ck_assert_uint_eq(t->peak_time_ns, 300 * MS);
    ck_assert_uint_eq(t->total_allocations, 4);
    ck_assert_uint_eq(t->total_bytes_allocated, 12300);
    ck_assert_uint_eq(t->current_bytes, 1300);
    ck_assert_uint_eq(t->duration_ns, 500 * MS);
    ck_assert_int_eq(t->complete, 1);
    ck_assert_uint_eq(mt_capture_node_count(cap), 3); /* shared stacks */
    uint32_t x = node_of(cap, 0x1000), y = node_of(cap, 0x2000);
    const mt_node_stats_t *s = mt_capture_node_stats(cap);
    AMT_EQ(s[x].peak, 1000, 1);
    AMT_EQ(s[y].peak, 6000, 1);
    AMT_EQ(s[x].leaked, 1300, 2);
    AMT_EQ(s[y].leaked, 0, 0);
    AMT_EQ(s[x].total, 1300, 2);
    AMT_EQ(s[y].total, 11000, 2);
    ck_assert_uint_eq(mt_capture_process_count(cap), 3);
    const mt_process_t *p = mt_capture_processes(cap);
    ck_assert_int_eq(p[0].pid, 100);
    ck_assert_str_eq(p[0].command, "parent");
    ck_assert_uint_eq(p[0].peak_bytes, 1000);
    ck_assert_uint_eq(p[0].at_peak_bytes, 1000);
    ck_assert_uint_eq(p[0].leaked_bytes, 1000);
    ck_assert_int_eq(p[1].pid, 101);
    ck_assert_int_eq(p[1].parent_pid, 100);
    ck_assert_uint_eq(p[1].start_ns, 100 * MS);
    ck_assert_uint_eq(p[1].peak_bytes, 5300);
    ck_assert_uint_eq(p[1].at_peak_bytes, 0);
    ck_assert_uint_eq(p[1].leaked_bytes, 300);
    ck_assert_int_eq(p[2].pid, 102);
    ck_assert_uint_eq(p[2].peak_bytes, 6000);
    ck_assert_uint_eq(p[2].peak_time_ns, 300 * MS);
    ck_assert_uint_eq(p[2].at_peak_bytes, 6000);
    /* The summed timeline: 7000 at 400 ms (parent 1000 + 102's 6000). */
    const mt_sample_t *sm = mt_capture_samples(cap);
    uint64_t at400 = UINT64_MAX, at200 = UINT64_MAX;
    for (size_t i = 0; i < mt_capture_sample_count(cap); i++) {
        if (sm[i].time_ns == 400 * MS)
            at400 = sm[i].heap_bytes;
        if (sm[i].time_ns == 200 * MS)
            at200 = sm[i].heap_bytes;
    }
    ck_assert_uint_eq(at400, 7000);
    ck_assert_uint_eq(at200, 6300);
}

START_TEST(job_found_from_the_parent)
{
    const char *root = tpath("job");
    write_job(root);
    mt_capture_t *cap = NULL;
    char err[512];
    int rc = mt_capture_load_job(&root, 1, 1, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    check_job(cap);
    mt_capture_free(cap);

    /* Named one by one (and the parent twice): the same. */
    char c1[256], c2[256];
    snprintf(c1, sizeof c1, "%s.101", root);
    snprintf(c2, sizeof c2, "%s.102", root);
    const char *paths[] = {c2, root, c1, root};
    rc = mt_capture_load_job(paths, 4, 0, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    check_job(cap);
    ck_assert_str_eq(mt_capture_path(cap), root);
    mt_capture_free(cap);

    /* Without children: the parent alone, as mt_capture_load reads it. */
    rc = mt_capture_load_job(&root, 1, 0, NULL, &cap, err, sizeof err);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(mt_capture_process_count(cap), 1);
    ck_assert_uint_eq(mt_capture_totals(cap)->peak_bytes, 1000);
    mt_capture_free(cap);
    unlink_job(root);
}
END_TEST

START_TEST(job_in_a_window)
{
    const char *root = tpath("jobw");
    write_job(root);
    mt_capture_t *cap = NULL;
    char err[512];
    /* From 300 ms: child 101 ended before; 102 starts right at it. */
    mt_load_opts_t o = {.window = 1, .from_ns = 300 * MS, .to_ns = UINT64_MAX};
    int rc = mt_capture_load_job(&root, 1, 1, &o, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    ck_assert_uint_eq(mt_capture_process_count(cap), 2);
    ck_assert_int_eq(mt_capture_processes(cap)[1].pid, 102);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 7000);
    ck_assert_uint_eq(t->total_allocations, 1); /* 102's; the parent's was before */
    uint32_t x = node_of(cap, 0x1000);
    AMT_EQ(mt_capture_node_stats(cap)[x].leaked, 0, 0);
    mt_capture_free(cap);

    /* To 250 ms: 102 had not started; 101's peak with the parent's 1000. */
    o = (mt_load_opts_t){.window = 1, .from_ns = 0, .to_ns = 250 * MS};
    rc = mt_capture_load_job(&root, 1, 1, &o, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    ck_assert_uint_eq(mt_capture_process_count(cap), 2);
    ck_assert_uint_eq(mt_capture_totals(cap)->peak_bytes, 6300);
    mt_capture_free(cap);

    /* After everything: one line naming the file. */
    o = (mt_load_opts_t){.window = 1, .from_ns = 600 * MS, .to_ns = UINT64_MAX};
    rc = mt_capture_load_job(&root, 1, 1, &o, &cap, err, sizeof err);
    ck_assert_int_eq(rc, MT_ERANGE);
    ck_assert_msg(strstr(err, "after the capture's last RSS sample"), "%s", err);
    unlink_job(root);
}
END_TEST

START_TEST(job_child_by_record_and_a_broken_one)
{
    const char *root = tpath("jobc");
    char path[256], err[512];
    const char *argv_p[] = {"parent", NULL};
    mt_cb_header_t h = {.pid = 200, .start_realtime_ns = JOB_T0,
                        .argv = argv_p};
    mt_cb_t *b = mt_cb_begin(root, &h);
    uint32_t x = mt_cb_node(b, 0, 0x1000);
    mt_cb_malloc(b, 0, 1, 0x100, 10, x);
    mt_cb_child(b, 201);
    mt_cb_sync(b, 2);
    mt_cb_trailer(b, 100 * MS, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    /* 201: no MT_HDR_PARENT_PID, but the parent's CHILD record names it. */
    snprintf(path, sizeof path, "%s.201", root);
    h = (mt_cb_header_t){.pid = 201, .start_realtime_ns = JOB_T0 + MS};
    b = mt_cb_begin(path, &h);
    x = mt_cb_node(b, 0, 0x1000);
    mt_cb_malloc(b, 0, 1, 0x100, 20, x);
    mt_cb_sync(b, 2);
    mt_cb_trailer(b, 10 * MS, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    /* 202: a child by its header, whose events name an undefined node. */
    snprintf(path, sizeof path, "%s.202", root);
    h = (mt_cb_header_t){.pid = 202, .parent_pid = 200,
                         .start_realtime_ns = JOB_T0 + MS};
    b = mt_cb_begin(path, &h);
    mt_cb_malloc(b, 0, 1, 0x100, 30, 7);
    mt_cb_sync(b, 2);
    mt_cb_finish(b);

    mt_capture_t *cap = NULL;
    int rc = mt_capture_load_job(&root, 1, 1, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    ck_assert_uint_eq(mt_capture_process_count(cap), 2);
    ck_assert_int_eq(mt_capture_processes(cap)[1].pid, 201);
    ck_assert_uint_eq(mt_capture_totals(cap)->total_bytes_allocated, 30);
    const char *w = mt_capture_warning(cap);
    ck_assert_msg(w && strstr(w, "a child's capture is left out") &&
                      strstr(w, ".202: corrupt record"), "%s", w ? w : "");
    mt_capture_free(cap);
    /* Named on the command line, the broken one is an error. */
    const char *paths[] = {root, path};
    rc = mt_capture_load_job(paths, 2, 0, NULL, &cap, err, sizeof err);
    ck_assert_int_eq(rc, MT_ECORRUPT);
    ck_assert_ptr_null(cap);
    ck_assert_msg(strstr(err, ".202: corrupt record"), "%s", err);
    unlink(root);
    unlink(path);
    snprintf(path, sizeof path, "%s.201", root);
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
    tcase_add_test(tc, exact_edges_by_seq);
    suite_add_tcase(s, tc);
    TCase *job = tcase_create("job");
    tcase_add_test(job, job_found_from_the_parent);
    tcase_add_test(job, job_in_a_window);
    tcase_add_test(job, job_child_by_record_and_a_broken_one);
    suite_add_tcase(s, job);
    return s;
}
