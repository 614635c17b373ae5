/* test_tracer.c: the tracer's pieces that can run outside a host process:
 * the stack trie (interning, prefix sharing, the NODE records it writes),
 * Python frame keys, and the bootstrap pool. The hooks themselves are
 * tested end to end (tests/e2e/test_native.py) and the buffer hand-off
 * under TSan (tests/tracer_handoff.c). */
#include <check.h>
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

Suite *mt_test_tracer_suite(void)
{
    Suite *s = suite_create("tracer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, trie_shares_prefixes);
    tcase_add_test(tc, python_key_layout);
    tcase_add_test(tc, bootstrap_pool);
    suite_add_tcase(s, tc);
    return s;
}
