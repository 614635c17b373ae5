/* test_stages.c: named stages. The tracer's side (the STAGE records that
 * mt_tracer_stage_enter/leave write, names written once per capture, the
 * reentrancy guard), the reader's (placing records among the events by
 * seq, rows per dotted name with exact numbers, unbalanced and corrupt
 * records), and a round trip from the tracer's records through the reader. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "common/format.h"
#include "memtrace/reader.h"
#include "memtrace/tracer.h"
#include "tests.h"
#include "tracer.h"

static const char *tpath(const char *tag)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 128, "/tmp/mt_test_stages_%d_%s.bin", (int)getpid(), tag);
    return p;
}

static mt_capture_t *load_ok(const char *path)
{
    mt_capture_t *cap = NULL;
    char err[512];
    int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "load failed: %d %s", rc, err);
    return cap;
}

static const mt_stage_t *row(mt_capture_t *cap, const char *name)
{
    const mt_stage_t *s = mt_capture_stages(cap);
    for (size_t i = 0; i < mt_capture_stage_count(cap); i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    ck_abort_msg("no stage row %s", name);
    return NULL;
}

static void enter(mt_cb_t *b, uint64_t thread, uint64_t seq, uint64_t ns,
                  uint64_t id, const char *name)
{
    mt_cb_stage_t st = {MT_STAGE_ENTER, seq, thread, ns, ns / 2, ns / 4,
                        1000000 + ns, id, name};
    mt_cb_stage(b, &st);
}

static void leave(mt_cb_t *b, uint64_t thread, uint64_t seq, uint64_t ns,
                  uint64_t id)
{
    mt_cb_stage_t st = {MT_STAGE_LEAVE, seq, thread, ns, ns / 2, ns / 4,
                        1000000 + ns, id, NULL};
    mt_cb_stage(b, &st);
}

/* outer { 100 kept; inner { 50 freed } } three times; the second and third
 * calls refer to the names by id only. */
START_TEST(nested_rows_exact)
{
    const char *path = tpath("nested");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = mt_cb_node(b, 0, 0x10);
    uint64_t seq = 1, ns = 1000;
    for (int call = 0; call < 3; call++) {
        enter(b, 0, seq, ns, 1, call ? NULL : "outer");
        mt_cb_malloc(b, 0, seq++, 0x1000 + 0x100 * (uint64_t)call, 100, n);
        enter(b, 0, seq, ns + 10, 2, call ? NULL : "inner");
        mt_cb_malloc(b, 0, seq++, 0x9000, 50, n);
        mt_cb_free(b, 0, seq++, 0x9000);
        leave(b, 0, seq, ns + 30, 2);
        leave(b, 0, seq, ns + 100 * (uint64_t)(call + 1), 1);
        ns += 1000;
    }
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 10000, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path);
    ck_assert_ptr_null(mt_capture_warning(cap));
    ck_assert_uint_eq(mt_capture_stage_count(cap), 2);
    const mt_stage_t *o = &mt_capture_stages(cap)[0];
    ck_assert_str_eq(o->name, "outer");
    ck_assert_uint_eq(o->depth, 0);
    ck_assert_uint_eq(o->calls, 3);
    ck_assert_uint_eq(o->wall_ns, 100 + 200 + 300);
    ck_assert_uint_eq(o->wall_max_ns, 300);
    ck_assert_uint_eq(o->cpu_ns, 50 + 100 + 150);
    ck_assert_uint_eq(o->thread_cpu_ns, 25 + 50 + 75);
    ck_assert_uint_eq(o->bytes_allocated, 3 * 150);
    ck_assert_uint_eq(o->allocations, 6);
    ck_assert_int_eq(o->heap_delta, 300);
    ck_assert_uint_eq(o->heap_peak, 350); /* 300 kept + 50 in the last call */
    ck_assert_uint_eq(o->heap_peak_rise, 150);
    ck_assert_int_eq(o->rss_delta, 600);
    ck_assert_int_eq(o->untraced_growth, 0);
    const mt_stage_t *i = &mt_capture_stages(cap)[1];
    ck_assert_str_eq(i->name, "outer.inner");
    ck_assert_uint_eq(i->depth, 1);
    ck_assert_uint_eq(i->calls, 3);
    ck_assert_uint_eq(i->wall_ns, 60);
    ck_assert_uint_eq(i->bytes_allocated, 150);
    ck_assert_uint_eq(i->allocations, 3);
    ck_assert_int_eq(i->heap_delta, 0);
    ck_assert_uint_eq(i->heap_peak_rise, 50);
    ck_assert_uint_eq(mt_capture_stage_totals(cap)->records, 12);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* Records arrive as the writer sends them: a stage's records in the DEFS
 * of a later block than events around them, threads' records out of seq
 * order in the stream. Each lands at its seq; "allocated" is per thread,
 * the heap is the process's. */
START_TEST(placed_by_seq_across_threads)
{
    const char *path = tpath("threads");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = mt_cb_node(b, 0, 0x10);
    mt_cb_malloc(b, 0, 1, 0x1000, 1000, n); /* before A enters (seq 2) */
    mt_cb_malloc(b, 0, 2, 0x2000, 10, n);   /* inside A */
    mt_cb_malloc(b, 1, 3, 0x3000, 7, n);    /* thread 1, inside B */
    mt_cb_malloc(b, 0, 4, 0x4000, 20, n);   /* inside A */
    mt_cb_sync(b, 2);
    mt_cb_flush(b);
    /* Thread 1's enter (seq 3) is streamed before thread 0's (seq 2). */
    enter(b, 1, 3, 30, 2, "B");
    enter(b, 0, 2, 20, 1, "A");
    mt_cb_malloc(b, 1, 5, 0x5000, 5, n);    /* after B left (seq 5) */
    leave(b, 1, 5, 50, 2);
    leave(b, 0, 6, 60, 1);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 100, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path);
    ck_assert_ptr_null(mt_capture_warning(cap));
    ck_assert_uint_eq(mt_capture_stage_count(cap), 2);
    ck_assert_str_eq(mt_capture_stages(cap)[0].name, "A"); /* entered first */
    const mt_stage_t *a = row(cap, "A"), *bb = row(cap, "B");
    ck_assert_uint_eq(a->bytes_allocated, 30);
    ck_assert_uint_eq(a->allocations, 2);
    ck_assert_int_eq(a->heap_delta, 10 + 7 + 20 + 5);
    ck_assert_uint_eq(a->heap_peak, 1042);
    ck_assert_uint_eq(a->wall_ns, 40);
    ck_assert_uint_eq(bb->depth, 0); /* nesting is per thread */
    ck_assert_uint_eq(bb->bytes_allocated, 7);
    ck_assert_int_eq(bb->heap_delta, 7 + 20);
    ck_assert_uint_eq(bb->heap_peak, 1037);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* A leave with nothing open, a leave naming an outer stage, stages open at
 * the end: read, repaired and said. */
START_TEST(unbalanced_is_closed_and_said)
{
    const char *path = tpath("unbalanced");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = mt_cb_node(b, 0, 0x10);
    leave(b, 0, 1, 5, 0);               /* nothing open: ignored */
    enter(b, 0, 1, 10, 1, "a");
    enter(b, 0, 1, 11, 2, "b");
    leave(b, 0, 1, 12, 1);              /* ends b and a */
    enter(b, 0, 1, 20, 3, "open");
    enter(b, 0, 1, 21, 2, NULL);        /* "b" by id only */
    mt_cb_malloc(b, 0, 1, 0x1000, 64, n);
    mt_cb_tick(b, 2, 40, 2000000);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 50, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);

    mt_capture_t *cap = load_ok(path);
    const char *w = mt_capture_warning(cap);
    ck_assert_ptr_nonnull(w);
    ck_assert_msg(strstr(w, "2 stage call(s) were still open"), "%s", w);
    ck_assert_msg(strstr(w, "1 stage leave(s) had no open stage"), "%s", w);
    ck_assert_msg(strstr(w, "did not end the innermost"), "%s", w);
    const mt_stage_totals_t *t = mt_capture_stage_totals(cap);
    ck_assert_uint_eq(t->unclosed, 2);
    ck_assert_uint_eq(t->unmatched_leaves, 1);
    ck_assert_uint_eq(t->mismatched_leaves, 1);
    ck_assert_uint_eq(row(cap, "a")->calls, 1);
    ck_assert_uint_eq(row(cap, "a.b")->calls, 1);
    ck_assert_uint_eq(row(cap, "a.b")->unclosed, 0);
    const mt_stage_t *o = row(cap, "open"), *ob = row(cap, "open.b");
    ck_assert_uint_eq(o->unclosed, 1);
    ck_assert_uint_eq(ob->unclosed, 1);
    ck_assert_uint_eq(ob->wall_ns, 50 - 21); /* closed at the trailer */
    ck_assert_uint_eq(ob->bytes_allocated, 64);
    ck_assert_int_eq(ob->rss_delta, 2000000 - (1000000 + 21));
    ck_assert_int_eq(ob->untraced_growth, 0); /* < 1 MiB */
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* 100 kept; A { 1000 freed; 10 kept; B { } }; 5000 kept; C { } open at
 * the end, with no event after its enter. B's and A's leaves share seq 5.
 */
static void write_windows(const char *path, uint32_t *node)
{
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t n = *node = mt_cb_node(b, 0, 0x10);
    mt_cb_malloc(b, 0, 1, 0x1000, 100, n);
    enter(b, 0, 2, 20, 1, "A");
    mt_cb_malloc(b, 0, 2, 0x2000, 1000, n);
    mt_cb_free(b, 0, 3, 0x2000);
    mt_cb_malloc(b, 0, 4, 0x3000, 10, n);
    enter(b, 0, 5, 50, 2, "B");
    leave(b, 0, 5, 55, 2);
    leave(b, 0, 5, 60, 1);
    mt_cb_malloc(b, 0, 5, 0x4000, 5000, n);
    enter(b, 0, 6, 70, 3, "C");
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 100, 0, MT_CB_NEXT, 0);
    mt_cb_finish(b);
}

/* The quick pass (stages_only) finds each stage's place in the event
 * order; a window given by those seqs is exact, even at a stage with no
 * event after it, and one process's seqs are not placed in another's. */
START_TEST(stage_windows_by_seq)
{
    const char *path = tpath("windows");
    uint32_t n;
    write_windows(path, &n);
    mt_load_opts_t o = {.stages_only = 1};
    mt_capture_t *cap = NULL;
    char err[512];
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    ck_assert_uint_eq(mt_capture_stage_count(cap), 3);
    const mt_stage_t *a = row(cap, "A"), *ab = row(cap, "A.B"),
                     *c = row(cap, "C");
    ck_assert_uint_eq(a->first_seq, 2);
    ck_assert_uint_eq(a->end_seq, 5);
    ck_assert_uint_eq(a->calls, 1);
    ck_assert_uint_eq(ab->first_seq, 5);
    ck_assert_uint_eq(ab->end_seq, 5);
    ck_assert_uint_eq(c->first_seq, 6);
    ck_assert_uint_eq(c->end_seq, UINT64_MAX); /* open at the end */
    ck_assert_uint_eq(mt_capture_totals(cap)->total_allocations, 0);
    mt_capture_free(cap);

    /* A's window: 100 there before, 1000 freed inside, 10 left. */
    o = (mt_load_opts_t){.window = 1, .from_seq = 2, .to_seq = 5};
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    const mt_totals_t *t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 1100);
    ck_assert_uint_eq(t->current_bytes, 110);
    ck_assert_uint_eq(t->total_allocations, 2);
    ck_assert_uint_eq(mt_capture_node_stats(cap)[n].leaked.bytes, 10);
    const mt_window_t *w = mt_capture_window(cap);
    ck_assert_uint_eq(w->start_bytes, 100);
    ck_assert_uint_eq(w->from_ns, 20); /* at A's enter */
    ck_assert_uint_eq(w->to_ns, 60);   /* at A's leave, the last at seq 5 */
    ck_assert_int_eq(w->exact, 1);
    ck_assert_int_eq(w->clamped, 0);
    mt_capture_free(cap);

    /* C's window starts at its enter, after the last event. */
    o = (mt_load_opts_t){.window = 1, .from_seq = 6, .to_ns = UINT64_MAX};
    ck_assert_int_eq(mt_capture_load(path, &o, &cap, err, sizeof err), 0);
    t = mt_capture_totals(cap);
    ck_assert_uint_eq(t->peak_bytes, 5110);
    ck_assert_uint_eq(t->total_allocations, 0);
    ck_assert_uint_eq(mt_capture_window(cap)->from_ns, 70);
    ck_assert_int_eq(mt_capture_window(cap)->clamped, 0);
    mt_capture_free(cap);

    const char *two[] = {path, path};
    o = (mt_load_opts_t){.window = 1, .from_seq = 2, .to_seq = 5};
    cap = (mt_capture_t *)1;
    ck_assert_int_eq(mt_capture_load_job(two, 2, 0, &o, &cap, err, sizeof err),
                     MT_EINVAL);
    ck_assert_ptr_null(cap);
    ck_assert_msg(strstr(err, "reads one process"), "%s", err);
    unlink(path);
}
END_TEST

/* RSS up 4 MiB with the traced heap flat: flagged. */
START_TEST(untraced_growth_flag)
{
    const char *path = tpath("flag");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_node(b, 0, 0x10);
    mt_cb_stage_t st = {MT_STAGE_ENTER, 1, 0, 10, 0, 0, 1 << 20, 7, "native"};
    mt_cb_stage(b, &st);
    st = (mt_cb_stage_t){MT_STAGE_LEAVE, 1, 0, 20, 0, 0, 5 << 20, 7, NULL};
    mt_cb_stage(b, &st);
    mt_cb_trailer(b, 30, 0, 0, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path);
    ck_assert_int_eq(row(cap, "native")->untraced_growth, 1);
    ck_assert_int_eq(row(cap, "native")->rss_delta, 4 << 20);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* A kind of a later version is skipped; a bad thread index or an enter
 * without a name id is corrupt; an undefined id reads as "#ID". */
START_TEST(kinds_and_corrupt_records)
{
    const char *path = tpath("kinds");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_stage_t st = {9, 1, 0, 10, 0, 0, 0, 1, "future"};
    mt_cb_stage(b, &st);
    enter(b, 0, 1, 10, 42, NULL);
    leave(b, 0, 1, 20, 0);
    mt_cb_trailer(b, 30, 0, 0, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path);
    ck_assert_uint_eq(mt_capture_stage_count(cap), 1);
    ck_assert_str_eq(mt_capture_stages(cap)[0].name, "#42");
    mt_capture_free(cap);

    char err[512];
    for (int bad = 0; bad < 3; bad++) {
        b = mt_cb_begin(path, NULL);
        if (bad == 0) {
            enter(b, 1ull << 32, 1, 10, 1, "x");
        } else if (bad == 1) {
            enter(b, 0, 1, 10, 0, "x");
        } else { /* cut short: only kind and seq */
            uint8_t rec[2] = {MT_STAGE_ENTER, 1};
            mt_cb_raw_def(b, MT_DEF_STAGE, rec, sizeof rec);
        }
        mt_cb_finish(b);
        cap = (mt_capture_t *)1;
        int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
        ck_assert_msg(rc == MT_ECORRUPT, "case %d: %d %s", bad, rc, err);
        ck_assert_ptr_null(cap);
        ck_assert_msg(strstr(err, "stage record"), "%s", err);
    }
    unlink(path);
}
END_TEST

/* A staged function recursing 70 deep: rows for the first 64 levels only;
 * a name longer than any writer writes is cut at 1024 bytes. */
START_TEST(deep_recursion_capped)
{
    const char *path = tpath("deep");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    static char longname[3000];
    memset(longname, 'x', sizeof longname - 1);
    enter(b, 0, 1, 1, 2, longname);
    leave(b, 0, 1, 2, 0);
    for (int i = 0; i < 70; i++)
        enter(b, 0, 1, 10, 1, i ? NULL : "r");
    for (int i = 0; i < 70; i++)
        leave(b, 0, 1, 20, 1);
    mt_cb_trailer(b, 30, 0, 0, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path);
    ck_assert_ptr_null(mt_capture_warning(cap));
    ck_assert_uint_eq(mt_capture_stage_count(cap), 1 + 64);
    const mt_stage_t *s = mt_capture_stages(cap);
    ck_assert_uint_eq(strlen(s[0].name), 1024);
    ck_assert_str_eq(s[1].name, "r");
    ck_assert_str_eq(s[2].name, "r.r");
    ck_assert_uint_eq(s[64].depth, 63);
    ck_assert_uint_eq(strlen(s[64].name), 64 * 2 - 1);
    for (int i = 1; i <= 64; i++)
        ck_assert_uint_eq(s[i].calls, 1);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

/* ---- The tracer's records ------------------------------------------------ */

/* Type and payload of each definition record in the defs buffer. */
static int next_def(const uint8_t **p, const uint8_t *end, unsigned *type,
                    const uint8_t **rec, const uint8_t **rend)
{
    if (*p >= end)
        return 0;
    *type = *(*p)++;
    uint64_t len;
    ck_assert_int_eq(mt__get_varint(p, end, &len), 0);
    *rec = *p;
    *rend = *p + len;
    *p += len;
    return 1;
}

/* The tracer's state as the preload library's constructor leaves it, as
 * far as stages need it: the thread key (the registering thread stores its
 * state under it; key 0 would be someone else's). */
static void tracer_setup(void)
{
    mt__bootstrap();
    ck_assert_int_eq(pthread_key_create(&mt__g.thread_key, NULL), 0);
}

START_TEST(tracer_writes_stage_records)
{
    tracer_setup();
    mt__g.defs_len = 0;
    mt__g.start_ns = mt__now_ns() - 1000;
    atomic_store(&mt__g.active, 0);
    ck_assert_int_eq(mt_tracer_stage_enter("off"), 0); /* not tracing */
    ck_assert_int_eq(mt_tracer_stage_enter(NULL), MT_EINVAL);
    atomic_store(&mt__g.active, 1);
    atomic_store(&mt__g.seq, 41);
    ck_assert_int_eq(mt_tracer_stage_enter("extract"), 1);
    ck_assert_int_eq(mt_tracer_stage_enter("parse"), 1);
    ck_assert_int_eq(mt_tracer_stage_leave("parse"), 1);
    ck_assert_int_eq(mt_tracer_stage_enter("parse"), 1);
    mt__busy = 1; /* inside a hook: records nothing */
    ck_assert_int_eq(mt_tracer_stage_leave(NULL), 0);
    mt__busy = 0;
    ck_assert_int_eq(mt_tracer_stage_leave(NULL), 1);
    mt_stage_leave(); /* the header's wrapper reaches the library */
    /* A new capture (a new start): names are defined again. */
    mt__g.start_ns += 1;
    ck_assert_int_eq(mt_tracer_stage_enter("parse"), 1);
    atomic_store(&mt__g.active, 0);

    struct { unsigned kind; uint64_t seq, id; char name[16]; } want[] = {
        {MT_STAGE_ENTER, 42, 1, "extract"}, {MT_STAGE_ENTER, 42, 2, "parse"},
        {MT_STAGE_LEAVE, 42, 2, ""},        {MT_STAGE_ENTER, 42, 2, ""},
        {MT_STAGE_LEAVE, 42, 0, ""},        {MT_STAGE_LEAVE, 42, 0, ""},
        {MT_STAGE_ENTER, 42, 2, "parse"},
    };
    const uint8_t *p = mt__g.defs, *end = p + mt__g.defs_len, *r, *rend;
    unsigned type;
    size_t k = 0;
    while (next_def(&p, end, &type, &r, &rend)) {
        if (type != MT_DEF_STAGE)
            continue; /* the THREAD record of this thread */
        ck_assert_uint_lt(k, sizeof want / sizeof want[0]);
        uint64_t v[8];
        for (int f = 0; f < 8; f++)
            ck_assert_int_eq(mt__get_varint(&r, rend, &v[f]), 0);
        uint64_t len;
        ck_assert_int_eq(mt__get_varint(&r, rend, &len), 0);
        ck_assert_uint_eq(len, (uint64_t)(rend - r));
        ck_assert_uint_eq(v[0], want[k].kind);
        ck_assert_uint_eq(v[1], want[k].seq);
        ck_assert_uint_ge(v[3], 900); /* ns since start */
        ck_assert_uint_gt(v[4], 0);    /* process CPU */
        ck_assert_uint_gt(v[5], 0);    /* thread CPU */
        ck_assert_uint_eq(v[7], want[k].id);
        ck_assert_uint_eq(len, strlen(want[k].name));
        ck_assert(memcmp(r, want[k].name, len) == 0);
        k++;
    }
    ck_assert_uint_eq(k, sizeof want / sizeof want[0]);
}
END_TEST

/* What the tracer writes, read back: the round trip. */
START_TEST(tracer_records_read_back)
{
    tracer_setup();
    mt__g.defs_len = 0;
    mt__g.start_ns = mt__now_ns();
    atomic_store(&mt__g.active, 1);
    atomic_store(&mt__g.seq, 0);
    for (int i = 0; i < 3; i++) {
        mt_stage_enter("load");
        mt_stage_enter("decode");
        mt_stage_leave();
        mt_stage_leave();
    }
    mt_stage_enter("left-open");
    atomic_store(&mt__g.active, 0);

    const char *path = tpath("roundtrip");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    mt_cb_raw_section(b, MT_SEC_DEFS, mt__g.defs, mt__g.defs_len);
    mt_cb_trailer(b, mt__now_ns() - mt__g.start_ns, 0, 0, 0);
    mt_cb_finish(b);
    mt_capture_t *cap = load_ok(path);
    ck_assert_uint_eq(mt_capture_stage_count(cap), 3);
    const mt_stage_t *s = mt_capture_stages(cap);
    ck_assert_str_eq(s[0].name, "load");
    ck_assert_uint_eq(s[0].calls, 3);
    ck_assert_str_eq(s[1].name, "load.decode");
    ck_assert_uint_eq(s[1].calls, 3);
    ck_assert_uint_le(s[1].wall_ns, s[0].wall_ns);
    ck_assert_str_eq(s[2].name, "left-open");
    ck_assert_uint_eq(s[2].unclosed, 1);
    ck_assert_uint_eq(mt_capture_stage_totals(cap)->records, 13);
    mt_capture_free(cap);
    unlink(path);
}
END_TEST

Suite *mt_test_stages_suite(void)
{
    Suite *s = suite_create("stages");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, nested_rows_exact);
    tcase_add_test(tc, placed_by_seq_across_threads);
    tcase_add_test(tc, unbalanced_is_closed_and_said);
    tcase_add_test(tc, untraced_growth_flag);
    tcase_add_test(tc, stage_windows_by_seq);
    tcase_add_test(tc, kinds_and_corrupt_records);
    tcase_add_test(tc, deep_recursion_capped);
    tcase_add_test(tc, tracer_writes_stage_records);
    tcase_add_test(tc, tracer_records_read_back);
    suite_add_tcase(s, tc);
    return s;
}
