/* test_common.c: the format helpers shared by writer and reader: varints,
 * zigzag, event encoding, block compression, the error table. */
#include <check.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>

#include "common/capture_write.h"
#include "common/format.h"
#include "memtrace/memtrace.h"
#include "tests.h"

START_TEST(varint_round_trip)
{
    const uint64_t values[] = {0, 1, 127, 128, 300, 16383, 16384,
                               UINT32_MAX, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint8_t buf[MT_VARINT_MAX];
        uint8_t *end = mt__put_varint(buf, values[i]);
        const uint8_t *p = buf;
        uint64_t v = 0;
        ck_assert_int_eq(mt__get_varint(&p, end, &v), 0);
        ck_assert_ptr_eq(p, end);
        ck_assert_uint_eq(v, values[i]);
    }
    uint8_t buf[MT_VARINT_MAX];
    ck_assert_int_eq(mt__put_varint(buf, 127) - buf, 1);
    ck_assert_int_eq(mt__put_varint(buf, 128) - buf, 2);
    ck_assert_int_eq(mt__put_varint(buf, UINT64_MAX) - buf, 10);
}
END_TEST

START_TEST(varint_rejects_bad_input)
{
    /* Cut short: the continuation bit promises more. */
    const uint8_t cut[] = {0x80, 0x80};
    const uint8_t *p = cut;
    uint64_t v;
    ck_assert_int_eq(mt__get_varint(&p, cut + 2, &v), MT_ETRUNCATED);
    /* Never ends: eleven continuation bytes. */
    uint8_t endless[16];
    memset(endless, 0xff, sizeof endless);
    p = endless;
    ck_assert_int_eq(mt__get_varint(&p, endless + 16, &v), MT_ECORRUPT);
    /* Ten bytes whose last carries more than the 64th bit. */
    uint8_t over[10];
    memset(over, 0xff, 9);
    over[9] = 0x02;
    p = over;
    ck_assert_int_eq(mt__get_varint(&p, over + 10, &v), MT_ECORRUPT);
}
END_TEST

START_TEST(zigzag_round_trip)
{
    const int64_t values[] = {0, 1, -1, 63, -64, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        ck_assert_int_eq(mt__unzigzag(mt__zigzag(values[i])), values[i]);
    ck_assert_uint_eq(mt__zigzag(-1), 1);
    ck_assert_uint_eq(mt__zigzag(1), 2);
}
END_TEST

START_TEST(events_round_trip)
{
    /* One event of every type, with seq gaps both small and escaped. */
    mt_event_t in[MT_EV_TYPE_COUNT - 1];
    uint64_t seq = 5;
    for (unsigned t = 1; t < MT_EV_TYPE_COUNT; t++) {
        mt_event_t *e = &in[t - 1];
        memset(e, 0, sizeof *e);
        seq += (t % 2) ? 1 : 1000 + t;
        e->seq = seq;
        e->type = (uint8_t)t;
        e->addr = 0x7f0000001000ull + t * 4096 - (t % 3) * 100000;
        if (!mt__event_is_free(t) || t == MT_EV_MUNMAP)
            e->size = t * 33;
        if (!mt__event_is_free(t))
            e->stack = 10 + (t * 7) % 5;
        if (mt__event_has_old(t))
            e->old = t == MT_EV_REALLOC ? 0 : e->addr - 64;
        if (t == MT_EV_MREMAP)
            e->old_size = 8192;
    }
    uint8_t buf[MT_EV_TYPE_COUNT * MT_MAX_EVENT_SIZE], *p = buf;
    mt_event_state_t st = {0};
    for (unsigned i = 0; i < MT_EV_TYPE_COUNT - 1; i++)
        p = mt__encode_event(p, &st, in[i].type, in[i].seq, in[i].addr,
                             in[i].size, in[i].stack, in[i].old, in[i].old_size);
    const uint8_t *q = buf;
    mt_event_state_t rs = {0};
    for (unsigned i = 0; i < MT_EV_TYPE_COUNT - 1; i++) {
        mt_event_t out;
        ck_assert_int_eq(mt__decode_event(&q, p, &rs, &out), 0);
        ck_assert_uint_eq(out.type, in[i].type);
        ck_assert_uint_eq(out.seq, in[i].seq);
        ck_assert_uint_eq(out.addr, in[i].addr);
        ck_assert_uint_eq(out.size, in[i].size);
        ck_assert_uint_eq(out.stack, in[i].stack);
        ck_assert_uint_eq(out.old, in[i].old);
        ck_assert_uint_eq(out.old_size, in[i].old_size);
    }
    ck_assert_ptr_eq(q, p);
}
END_TEST

START_TEST(repeated_pair_is_small)
{
    /* A malloc/free pair at the same address and stack: the stream the
     * compactness goal rests on. Before compression it is 6 bytes a pair. */
    uint8_t buf[64], *p = buf;
    mt_event_state_t st = {0};
    p = mt__encode_event(p, &st, MT_EV_MALLOC, 1, 0x5000, 32, 3, 0, 0);
    p = mt__encode_event(p, &st, MT_EV_FREE, 2, 0x5000, 0, 0, 0, 0);
    uint8_t *second = p;
    p = mt__encode_event(p, &st, MT_EV_MALLOC, 3, 0x5000, 32, 3, 0, 0);
    p = mt__encode_event(p, &st, MT_EV_FREE, 4, 0x5000, 0, 0, 0, 0);
    ck_assert_int_eq(p - second, 6);
}
END_TEST

START_TEST(decode_rejects_unknown_type)
{
    const uint8_t bad[] = {0x1f, 0x00};
    const uint8_t *p = bad;
    mt_event_state_t st = {0};
    mt_event_t ev;
    ck_assert_int_eq(mt__decode_event(&p, bad + 2, &st, &ev), MT_ECORRUPT);
    const uint8_t zero[] = {0x00, 0x00};
    p = zero;
    ck_assert_int_eq(mt__decode_event(&p, zero + 2, &st, &ev), MT_ECORRUPT);
}
END_TEST

START_TEST(block_compress_round_trip)
{
    size_t raw_len = 100000;
    uint8_t *raw = malloc(raw_len);
    for (size_t i = 0; i < raw_len; i++)
        raw[i] = (uint8_t)(i % 251);
    size_t cap = mt__block_bound(raw_len);
    uint8_t *blk = malloc(cap);
    LZ4F_cctx *cctx;
    ck_assert(!LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)));
    for (int reuse = 0; reuse < 2; reuse++) {
        long n = mt__block_compress(raw, raw_len, blk, cap, reuse ? cctx : NULL);
        ck_assert_int_gt(n, MT_BLOCK_HEADER_SIZE);
        ck_assert_uint_eq(mt__get_u32le(blk), MT_BLOCK_MAGIC);
        ck_assert_uint_eq(mt__get_u32le(blk + 4), (uint32_t)n - MT_BLOCK_HEADER_SIZE);
        ck_assert_uint_eq(mt__get_u32le(blk + 8), raw_len);
        LZ4F_dctx *dctx;
        ck_assert(!LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)));
        uint8_t *back = malloc(raw_len);
        size_t dst = raw_len, src = (size_t)n - MT_BLOCK_HEADER_SIZE;
        size_t r = LZ4F_decompress(dctx, back, &dst, blk + MT_BLOCK_HEADER_SIZE, &src, NULL);
        ck_assert_uint_eq(r, 0); /* frame complete */
        ck_assert_uint_eq(dst, raw_len);
        ck_assert_int_eq(memcmp(back, raw, raw_len), 0);
        LZ4F_freeDecompressionContext(dctx);
        free(back);
    }
    LZ4F_freeCompressionContext(cctx);
    free(blk);
    free(raw);
}
END_TEST

START_TEST(error_table)
{
    ck_assert_str_eq(mt_err_name(MT_ETRUNCATED), "MT_ETRUNCATED");
    ck_assert_str_eq(mt_strerror(MT_ETRUNCATED), "capture is truncated");
    ck_assert_int_eq(MT_ENOMEM, -ENOMEM);
    ck_assert_str_eq(mt_strerror(-EACCES), strerror(EACCES));
    ck_assert_str_eq(mt_err_name(-99999), "MT_EUNKNOWN");
}
END_TEST

Suite *mt_test_common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, varint_round_trip);
    tcase_add_test(tc, varint_rejects_bad_input);
    tcase_add_test(tc, zigzag_round_trip);
    tcase_add_test(tc, events_round_trip);
    tcase_add_test(tc, repeated_pair_is_small);
    tcase_add_test(tc, decode_rejects_unknown_type);
    tcase_add_test(tc, block_compress_round_trip);
    tcase_add_test(tc, error_table);
    suite_add_tcase(s, tc);
    return s;
}
