/* test_tracer.c: the tracer's pieces that can run outside a host process:
 * the stack trie (interning, prefix sharing, the NODE records it writes),
 * Python frame keys, and the bootstrap pool. The hooks themselves are
 * tested end to end (tests/e2e/test_native.py) and the buffer hand-off
 * under TSan (tests/tracer_handoff.c). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/format.h"
#include "tests.h"
#include "tracer.h"

/* Decodes the NODE records in the defs buffer: parents[i], keys[i] for
 * node i+1. Returns how many. */
static int read_nodes(uint32_t *parents, uint64_t *keys, int max)
{
    const uint8_t *p = mt__g.defs, *end = mt__g.defs + mt__g.defs_len;
    uint64_t prev = 0;
    int n = 0;
    while (p < end) {
        unsigned type = *p++;
        uint64_t len, v;
        ck_assert_int_eq(mt__get_varint(&p, end, &len), 0);
        const uint8_t *rec = p, *rend = p + len;
        p += len;
        if (type != MT_DEF_NODE || n == max)
            continue;
        ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0);
        parents[n] = (uint32_t)v;
        ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0);
        prev += (uint64_t)mt__unzigzag(v);
        keys[n++] = prev;
    }
    return n;
}

static void reset_defs(void)
{
    mt__bootstrap();
    mt__g.defs_len = 0;
}

START_TEST(trie_shares_prefixes)
{
    reset_defs();
    static mt_thread_t t; /* big: prev stacks */
    memset(&t, 0, sizeof t);
    /* Python keys need no module, so the trie records them as they are. */
    uintptr_t a[3] = {MT_PYTHON_KEY(1, 10), MT_PYTHON_KEY(2, 20), MT_PYTHON_KEY(3, 30)};
    uintptr_t b[3] = {MT_PYTHON_KEY(1, 10), MT_PYTHON_KEY(2, 20), MT_PYTHON_KEY(4, 40)};
    uint32_t na = mt__stack_intern(&t, a, 3);
    uint32_t na2 = mt__stack_intern(&t, a, 3); /* the previous-stack path */
    uint32_t nb = mt__stack_intern(&t, b, 3);
    mt__stack_reset_thread(&t);
    uint32_t na3 = mt__stack_intern(&t, a, 3); /* the table path */
    uint32_t nprefix = mt__stack_intern(&t, a, 2);
    ck_assert_uint_eq(na, na2);
    ck_assert_uint_eq(na, na3);
    ck_assert_uint_ne(na, nb);
    ck_assert_uint_eq(mt__stack_intern(&t, a, 0), 0);

    uint32_t parents[16];
    uint64_t keys[16];
    int n = read_nodes(parents, keys, 16);
    /* a: 3 new nodes; b: 1 new (shares two); nothing else. */
    ck_assert_int_eq(n, 4);
    ck_assert_uint_eq(nb, na + 1);
    ck_assert_uint_eq(nprefix, na - 1);
    ck_assert_uint_eq(parents[nb - 1], na - 1); /* b hangs off a's middle */
    ck_assert_uint_eq(keys[nb - 1], MT_PYTHON_KEY(4, 40));
    ck_assert_uint_eq(keys[na - 1], MT_PYTHON_KEY(3, 30));
    ck_assert_uint_eq(parents[na - 3], 0); /* the outermost frame's parent is the root */
}
END_TEST

START_TEST(python_key_layout)
{
    uint64_t k = MT_PYTHON_KEY(0x1234567u, 987654u);
    ck_assert(MT_KEY_IS_PYTHON(k));
    ck_assert_uint_eq((k >> 32) & 0x7fffffffu, 0x1234567u);
    ck_assert_uint_eq((uint32_t)k, 987654u);
    ck_assert_uint_eq(MT_KEY_PYTHON, MT_NODE_PYTHON); /* the format's bit */
    ck_assert(!MT_KEY_IS_PYTHON((uint64_t)0x7fff12345678ull));
}
END_TEST

START_TEST(bootstrap_pool)
{
    void *a = mt__bootstrap_alloc(10), *b = mt__bootstrap_alloc(100);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert(mt__bootstrap_owns(a) && mt__bootstrap_owns(b));
    ck_assert_uint_eq(mt__bootstrap_size(a), 10);
    ck_assert_uint_eq(mt__bootstrap_size(b), 100);
    ck_assert_uint_eq((uintptr_t)a % 16, 0);
    ck_assert_uint_eq((uintptr_t)b % 16, 0);
    ck_assert((char *)b >= (char *)a + 16); /* no overlap */
    int on_stack;
    ck_assert(!mt__bootstrap_owns(&on_stack));
    ck_assert_ptr_null(mt__bootstrap_alloc((size_t)1 << 40));
}
END_TEST

#define MS (1000000ull)
#define MIB_ (1ull << 20)

/* The rate limit of the "peak" memory samples: a climb is sampled at its
 * top, not at every tick; a long climb once a second; a wobble under the
 * margin never; an expensive read makes the next one wait 50 times as
 * long. */
START_TEST(memsample_rate_limit)
{
    mt_memsample_state_t s;
    memset(&s, 0, sizeof s);
    s.sampled_high = s.prev_rss = s.high = 10 * MIB_;
    s.cost_ns = MS / 10; /* the start sample took 0.1 ms, at time 0 */
    uint64_t t = 0;
    /* Climbing by 1 MiB per 10 ms tick: not sampled while it climbs. */
    for (uint64_t r = 11; r <= 40; r++) {
        t += 10 * MS;
        ck_assert_int_eq(mt__memsample_due(&s, r * MIB_, t), 0);
    }
    /* The climb stops: the top is sampled. */
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, 40 * MIB_, t), 1);
    s.sampled_high = 40 * MIB_;
    s.last_ns = t;
    /* A wobble above it, under the margin (40 MiB / 32 = 1.25 MiB). */
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, 41 * MIB_, t), 0);
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, 40 * MIB_, t), 0);
    /* Past the margin and no longer climbing: sampled. */
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, 42 * MIB_, t), 0); /* climbing */
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, 42 * MIB_, t), 1);
    s.sampled_high = 42 * MIB_;
    s.last_ns = t;
    /* A long climb is sampled after a second even while it climbs. */
    uint64_t start = t;
    int got = 0;
    for (uint64_t r = 43; r < 200 && !got; r++) {
        t += 10 * MS;
        got = mt__memsample_due(&s, r * MIB_, t);
    }
    ck_assert_int_eq(got, 1);
    ck_assert_uint_ge(t - start, 1000 * MS);
    ck_assert_uint_lt(t - start, 1020 * MS);
    /* A read that took 100 ms: the next waits 5 s. */
    s.sampled_high = s.high;
    s.last_ns = t;
    s.cost_ns = 100 * MS;
    uint64_t big = s.high + 100 * MIB_;
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, big, t), 0);
    t += 10 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, big, t), 0); /* top, too soon */
    t = s.last_ns + 5000 * MS;
    ck_assert_int_eq(mt__memsample_due(&s, big, t), 1);
}
END_TEST

/* Decodes the last SMAPS record of the defs buffer: kind and fields. */
static int read_smaps(unsigned *kind, uint64_t *fields, uint64_t *present)
{
    const uint8_t *p = mt__g.defs, *end = mt__g.defs + mt__g.defs_len;
    int found = 0;
    while (p < end) {
        unsigned type = *p++;
        uint64_t len, v, tag;
        ck_assert_int_eq(mt__get_varint(&p, end, &len), 0);
        const uint8_t *rec = p, *rend = p + len;
        p += len;
        if (type != MT_DEF_SMAPS)
            continue;
        found = 1;
        *present = 0;
        ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0); /* seq */
        ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0); /* ns */
        ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0);
        *kind = (unsigned)v;
        while (rec < rend) {
            ck_assert_int_eq(mt__get_varint(&rec, rend, &tag), 0);
            ck_assert_int_eq(mt__get_varint(&rec, rend, &v), 0);
            ck_assert_uint_lt(tag, 64);
            fields[tag] = v;
            *present |= 1ull << tag;
        }
    }
    return found;
}

/* A sample of this very process: smaps_rollup's lines in bytes, malloc's
 * numbers; and without smaps_rollup, statm's. */
START_TEST(memsample_record)
{
    reset_defs();
    mt__memsample_init();
    unsigned kind = 0;
    uint64_t f[64] = {0}, present = 0;
    volatile char *touched = (volatile char *)malloc(8 << 20);
    ck_assert(touched != NULL);
    for (size_t i = 0; i < (8u << 20); i += 4096)
        touched[i] = 1; /* resident, and not a dead store to drop */
    uint64_t rss = mt__memsample_take(MT_SMAPS_END);
    ck_assert_int_eq(read_smaps(&kind, f, &present), 1);
    ck_assert_uint_eq(kind, MT_SMAPS_END);
    ck_assert(present & (1ull << MT_SMAPS_RSS));
    ck_assert(present & (1ull << MT_SMAPS_ANONYMOUS));
    ck_assert(present & (1ull << MT_SMAPS_MAXRSS));
    ck_assert_uint_eq(f[MT_SMAPS_RSS], rss);
    ck_assert_uint_eq(f[MT_SMAPS_RSS] % 1024, 0); /* kB converted */
    ck_assert_uint_ge(f[MT_SMAPS_ANONYMOUS], 8 << 20);
    ck_assert_uint_le(f[MT_SMAPS_ANONYMOUS], f[MT_SMAPS_RSS]);
    ck_assert(!(present & (1ull << MT_SMAPS_STATM_RSS)));
    /* Under a sanitizer malloc is not glibc's: no mallinfo2 then. */
    if (present & (1ull << MT_SMAPS_MALLOC_MMAP))
        ck_assert_uint_ge(f[MT_SMAPS_MALLOC_MMAP], 8 << 20);

    reset_defs();
    mt__g.ms.no_rollup = 1;
    memset(f, 0, sizeof f);
    rss = mt__memsample_take(MT_SMAPS_START);
    ck_assert_int_eq(read_smaps(&kind, f, &present), 1);
    ck_assert_uint_eq(kind, MT_SMAPS_START);
    ck_assert(!(present & (1ull << MT_SMAPS_RSS)));
    ck_assert(present & (1ull << MT_SMAPS_STATM_RSS));
    ck_assert(present & (1ull << MT_SMAPS_STATM_SHARED));
    ck_assert_uint_eq(f[MT_SMAPS_STATM_RSS], rss);
    ck_assert_uint_ge(rss, 8 << 20);
    ck_assert_uint_lt(f[MT_SMAPS_STATM_SHARED], rss);
    free((void *)touched);
    mt__g.ms.no_rollup = 0;
    reset_defs();
}
END_TEST

Suite *mt_test_tracer_suite(void)
{
    Suite *s = suite_create("tracer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, trie_shares_prefixes);
    tcase_add_test(tc, python_key_layout);
    tcase_add_test(tc, bootstrap_pool);
    tcase_add_test(tc, memsample_rate_limit);
    tcase_add_test(tc, memsample_record);
    suite_add_tcase(s, tc);
    return s;
}
