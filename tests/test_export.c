/* test_export.c: the pieces of the speedscope and pprof exports that the
 * end-to-end tests (tests/e2e/test_export.py, which read the files back
 * with protoc and speedscope's own code) do not reach: the interning
 * table's ids, a stack with no frame at all, and write errors. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "capture_builder.h"
#include "export.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"
#include "tests.h"

START_TEST(intern_gives_dense_ids)
{
    mt_intern_t t;
    mt__intern_init(&t);
    ck_assert_int_eq(mt__intern(&t, "", 0), 0);
    ck_assert_int_eq(mt__intern(&t, "a", 1), 1);
    ck_assert_int_eq(mt__intern(&t, "b", 1), 2);
    ck_assert_int_eq(mt__intern(&t, "a", 1), 1);
    /* Keys are bytes, not C strings: a NUL inside counts. */
    ck_assert_int_eq(mt__intern(&t, "x\0y", 3), 3);
    ck_assert_int_eq(mt__intern(&t, "x\0z", 3), 4);
    ck_assert_int_eq(mt__intern(&t, "x", 1), 5);
    ck_assert_int_eq(mt__intern(&t, "x\0y", 3), 3);
    size_t len;
    const char *k = mt__intern_key(&t, 3, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(k, "x\0y", 4), 0); /* NUL-terminated too */
    ck_assert_str_eq(mt__intern_key(&t, 0, NULL), "");
    /* Many keys: the slot table and the key buffer grow; every id stays. */
    char buf[32];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(buf, sizeof buf, "key-%d", i);
        ck_assert_int_eq(mt__intern(&t, buf, (size_t)n), 6 + i);
    }
    ck_assert_uint_eq(t.count, 20006);
    for (int i = 0; i < 20000; i += 7) {
        int n = snprintf(buf, sizeof buf, "key-%d", i);
        ck_assert_int_eq(mt__intern(&t, buf, (size_t)n), 6 + i);
        ck_assert_str_eq(mt__intern_key(&t, (uint32_t)(6 + i), NULL), buf);
    }
    mt__intern_free(&t);
    ck_assert_uint_eq(t.count, 0);
    ck_assert_int_eq(mt__intern(&t, "again", 5), 0);
    mt__intern_free(&t);
}
END_TEST

/* A capture with one stack (node 1, an address outside any module) that
 * allocates 100 bytes, and 7 bytes allocated with no stack at all. */
static mt_capture_t *small_capture(char **path_out)
{
    char *path;
    const char *dir = getenv("TMPDIR");
    ck_assert_int_gt(asprintf(&path, "%s/mt-export-%d.bin",
                              dir && dir[0] ? dir : "/tmp", (int)getpid()), 0);
    mt_cb_t *b = mt_cb_begin(path, NULL);
    ck_assert_uint_eq(mt_cb_node(b, 0, 0x401000), 1);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 100, 1);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x20000, 7, 0);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1000000, 1 << 20, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    char err[512] = "";
    mt_capture_t *cap = NULL;
    ck_assert_msg(mt_capture_load(path, NULL, &cap, err, sizeof err) == 0,
                  "%s", err);
    *path_out = path;
    return cap;
}

static char *export_text(mt_capture_t *cap, int pprof, size_t *len)
{
    char *data = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&data, &size);
    ck_assert_ptr_nonnull(f);
    int rc = pprof ? mt_report_pprof(f, cap, MT_VIEW_PEAK, NULL)
                   : mt_report_speedscope(f, cap, MT_VIEW_PEAK, NULL);
    ck_assert_int_eq(rc, 0);
    fclose(f);
    *len = size;
    return data;
}

START_TEST(stack_without_frames_is_unknown)
{
    char *path;
    mt_capture_t *cap = small_capture(&path);
    size_t len;
    char *json = export_text(cap, 0, &len);
    /* Node 0 (no stack) first, then node 1: every byte is in a stack. */
    ck_assert_ptr_nonnull(strstr(json, "\"weights\": [7, 100]"));
    ck_assert_ptr_nonnull(strstr(json, "\"endValue\": 107"));
    ck_assert_ptr_nonnull(strstr(json, "{\"name\": \"<unknown>\", \"file\": \"<unknown>\"}"));
    free(json);

    char *gz = export_text(cap, 1, &len);
    ck_assert_uint_gt(len, 18);
    ck_assert_uint_eq((unsigned char)gz[0], 0x1f); /* gzip's magic */
    ck_assert_uint_eq((unsigned char)gz[1], 0x8b);
    unsigned char out[8192];
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = sizeof out;
    ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = sizeof out - z.avail_out;
    inflateEnd(&z);
    ck_assert_ptr_nonnull(memmem(out, n, "<unknown>", 9));
    ck_assert_ptr_nonnull(memmem(out, n, "inuse_space", 11));
    free(gz);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

/* A stack deeper than the exports keep: its outermost frames give way to
 * one "[stack truncated]" frame at the root. */
START_TEST(deep_stack_is_cut_visibly)
{
    char *path;
    const char *dir = getenv("TMPDIR");
    ck_assert_int_gt(asprintf(&path, "%s/mt-export-deep-%d.bin",
                              dir && dir[0] ? dir : "/tmp", (int)getpid()), 0);
    mt_cb_t *b = mt_cb_begin(path, NULL);
    uint32_t node = 0;
    for (int i = 0; i < MT_EXPORT_MAX_STACK + 100; i++)
        node = mt_cb_node(b, node, 0x401000 + 16 * (uint64_t)i);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 100, node);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1000000, 1 << 20, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    char err[512] = "";
    mt_capture_t *cap = NULL;
    ck_assert_msg(mt_capture_load(path, NULL, &cap, err, sizeof err) == 0,
                  "%s", err);
    size_t len;
    char *json = export_text(cap, 0, &len);
    /* The root-first sample starts with the marker, whose id is 0 (the
     * first frame seen), and holds MT_EXPORT_MAX_STACK frames. */
    ck_assert_ptr_nonnull(strstr(json, "{\"name\": \"[stack truncated]\"}"));
    const char *sample = strstr(json, "\"samples\": [\n");
    ck_assert_ptr_nonnull(sample);
    sample = strchr(sample + 12, '[');
    ck_assert_int_eq(strncmp(sample, "[0, ", 4), 0);
    size_t commas = 0;
    for (const char *c = sample; *c != ']'; c++)
        commas += *c == ',';
    ck_assert_uint_eq(commas + 1, MT_EXPORT_MAX_STACK);
    ck_assert_ptr_nonnull(strstr(json, "\"weights\": [100]"));
    free(json);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(write_errors_are_reported)
{
    char *path;
    mt_capture_t *cap = small_capture(&path);
    for (int pprof = 0; pprof < 2; pprof++) {
        FILE *f = fopen("/dev/full", "w");
        if (!f)
            break; /* no /dev/full here: nothing to test */
        int rc = pprof ? mt_report_pprof(f, cap, MT_VIEW_LEAKS, NULL)
                       : mt_report_speedscope(f, cap, MT_VIEW_LEAKS, NULL);
        ck_assert_int_eq(rc, MT_EIO);
        fclose(f);
    }
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

Suite *mt_test_export_suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_test(tc, intern_gives_dense_ids);
    tcase_add_test(tc, stack_without_frames_is_unknown);
    tcase_add_test(tc, deep_stack_is_cut_visibly);
    tcase_add_test(tc, write_errors_are_reported);
    suite_add_tcase(s, tc);
    return s;
}
