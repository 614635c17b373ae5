/* test_reporters.c: the reporters: the JSON writer (escaping anything a
 * profiled program may name things, nesting), sizes and terminal escaping,
 * which frames count as the allocator, grouping by site on a synthetic
 * capture, and the exact numbers of summary, report and stats. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "json.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"
#include "tests.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct membuf_s {
    char *data;
    size_t len;
    FILE *f;
} membuf_t;

static void mb_open(membuf_t *m)
{
    m->data = NULL;
    m->len = 0;
    m->f = open_memstream(&m->data, &m->len);
    ck_assert_ptr_nonnull(m->f);
}

/* Closes the stream; the text stays in m->data (free it). */
static char *mb_close(membuf_t *m)
{
    fclose(m->f);
    return m->data;
}

/* The JSON a single string value becomes. */
static char *json_of_string(const char *s, size_t len, int html_safe)
{
    membuf_t m;
    mb_open(&m);
    mt_json_t j;
    mt__json_init(&j, m.f, 0);
    j.html_safe = html_safe;
    mt__json_string_n(&j, s, len);
    ck_assert_int_eq(mt__json_finish(&j), 0);
    return mb_close(&m);
}

#define ASSERT_JSON_STRING(in, expected)                                       \
    do {                                                                       \
        char *got_ = json_of_string(in, sizeof(in) - 1, 0);                    \
        ck_assert_str_eq(got_, expected "\n");                                 \
        free(got_);                                                            \
    } while (0)

/* A strict checker of one JSON string literal (RFC 8259): quotes, only the
 * allowed escapes, no raw control characters, valid UTF-8 throughout.
 * Returns the length consumed, or 0 when invalid. */
static size_t check_json_string(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    if (s[i++] != '"')
        return 0;
    for (;;) {
        unsigned c = s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0; /* raw control character, or the end of the text */
        if (c == '\\') {
            c = s[i + 1];
            if (strchr("\"\\/bfnrt", (int)c) && c) {
                i += 2;
            } else if (c == 'u') {
                for (int k = 2; k < 6; k++)
                    if (!s[i + k] || !strchr("0123456789abcdefABCDEF",
                                             s[i + k]))
                        return 0;
                i += 6;
            } else {
                return 0;
            }
            continue;
        }
        uint32_t cp;
        size_t n = mt__utf8_decode(s + i, strlen((const char *)s + i), &cp);
        if (n == 0)
            return 0;
        i += n;
    }
}

/* ---- JSON writer ------------------------------------------------------- */

START_TEST(json_escapes_quotes_backslashes_controls)
{
    ASSERT_JSON_STRING("plain", "\"plain\"");
    ASSERT_JSON_STRING("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
    ASSERT_JSON_STRING("\n\t\r\b\f", "\"\\n\\t\\r\\u0008\\u000c\"");
    ASSERT_JSON_STRING("\x01\x1b[2J\x1f\x7f", "\"\\u0001\\u001b[2J\\u001f\\u007f\"");
    /* An embedded NUL is data too when a length is given. */
    ASSERT_JSON_STRING("a\0b", "\"a\\u0000b\"");
    /* Names chosen to break out of a string or a page. */
    ASSERT_JSON_STRING("\"};alert(1);//", "\"\\\"};alert(1);//\"");
    ASSERT_JSON_STRING("<img src=x onerror=alert(1)>",
                       "\"<img src=x onerror=alert(1)>\"");
    char *html = json_of_string("</script><img src=x onerror=alert(1)>&",
                                38, 1);
    ck_assert_str_eq(html, "\"\\u003c/script\\u003e\\u003cimg src=x "
                           "onerror=alert(1)\\u003e\\u0026\"\n");
    free(html);
    /* U+2028 is fine JSON, but not inside a <script> in older engines. */
    html = json_of_string("a\xe2\x80\xa8z", 5, 1);
    ck_assert_str_eq(html, "\"a\\u2028z\"\n");
    free(html);
    ASSERT_JSON_STRING("a\xe2\x80\xa8z", "\"a\xe2\x80\xa8z\"");
}
END_TEST

START_TEST(json_replaces_invalid_utf8)
{
    /* Valid multi-byte text is kept as is. */
    ASSERT_JSON_STRING("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                       "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* One U+FFFD per byte that does not start a valid sequence. */
    ASSERT_JSON_STRING("\xff", "\"\\ufffd\"");
    ASSERT_JSON_STRING("a\x80z", "\"a\\ufffdz\"");
    ASSERT_JSON_STRING("\xc3(", "\"\\ufffd(\"");              /* cut short */
    ASSERT_JSON_STRING("\xc0\xaf", "\"\\ufffd\\ufffd\"");     /* overlong / */
    ASSERT_JSON_STRING("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");
    ASSERT_JSON_STRING("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* D800 */
    ASSERT_JSON_STRING("\xf4\x90\x80\x80",
                       "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");   /* > 10FFFF */
    ASSERT_JSON_STRING("\xe2\x82", "\"\\ufffd\\ufffd\"");     /* at the end */
    /* C1 controls are valid UTF-8 but escaped. */
    ASSERT_JSON_STRING("\xc2\x85\xc2\x9b", "\"\\u0085\\u009b\"");
}
END_TEST

START_TEST(json_random_bytes_stay_valid)
{
    /* Whatever the bytes, the output is exactly one valid JSON string. */
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        unsigned char buf[64];
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t i = 0; i < len; i++) {
            int r = rand_r(&seed);
            /* Mostly interesting bytes: controls, quotes, UTF-8 leads. */
            static const unsigned char pick[] = {
                0x00, 0x01, 0x1f, '"', '\\', '<', 'a', 0x7f, 0x80, 0xbf,
                0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
            buf[i] = (r & 1) ? pick[(r >> 1) % sizeof pick]
                             : (unsigned char)(r >> 8);
        }
        for (int html = 0; html < 2; html++) {
            char *out = json_of_string((const char *)buf, len, html);
            size_t n = check_json_string(out);
            ck_assert_msg(n > 0, "invalid JSON string in round %d: %s",
                          round, out);
            ck_assert_str_eq(out + n, "\n");
            free(out);
        }
    }
}
END_TEST

START_TEST(json_structure_and_numbers)
{
    membuf_t m;
    mb_open(&m);
    mt_json_t j;
    mt__json_init(&j, m.f, 1);
    mt__json_begin_object(&j);
    mt__json_key(&j, "a");
    mt__json_uint(&j, UINT64_MAX);
    mt__json_key(&j, "b");
    mt__json_int(&j, INT64_MIN);
    mt__json_key(&j, "list");
    mt__json_begin_array(&j);
    mt__json_double(&j, 2.0);
    mt__json_double(&j, 0.25);
    mt__json_double(&j, NAN);
    mt__json_double(&j, 1e300);
    mt__json_bool(&j, 1);
    mt__json_null(&j);
    mt__json_end_array(&j);
    mt__json_key(&j, "frame");
    mt__json_begin_object_compact(&j);
    mt__json_key(&j, "x");
    mt__json_begin_array(&j); /* inside a compact one: compact too */
    mt__json_uint(&j, 1);
    mt__json_uint(&j, 2);
    mt__json_end_array(&j);
    mt__json_key(&j, "s");
    mt__json_string(&j, NULL);
    mt__json_end_object(&j);
    mt__json_key(&j, "empty");
    mt__json_begin_array(&j);
    mt__json_end_array(&j);
    mt__json_end_object(&j);
    ck_assert_int_eq(mt__json_finish(&j), 0);
    char *out = mb_close(&m);
    ck_assert_str_eq(out, "{\n"
                          "  \"a\": 18446744073709551615,\n"
                          "  \"b\": -9223372036854775808,\n"
                          "  \"list\": [\n"
                          "    2.0,\n"
                          "    0.25,\n"
                          "    null,\n"
                          "    1e+300,\n"
                          "    true,\n"
                          "    null\n"
                          "  ],\n"
                          "  \"frame\": {\"x\": [1, 2], \"s\": null},\n"
                          "  \"empty\": []\n"
                          "}\n");
    free(out);
}
END_TEST

START_TEST(json_misuse_is_reported)
{
    FILE *f = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(f);
    mt_json_t j;
    /* A value without a key inside an object. */
    mt__json_init(&j, f, 0);
    mt__json_begin_object(&j);
    mt__json_uint(&j, 1);
    mt__json_end_object(&j);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    /* A key inside an array. */
    mt__json_init(&j, f, 0);
    mt__json_begin_array(&j);
    mt__json_key(&j, "k");
    mt__json_end_array(&j);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    /* Mismatched close, unclosed container, two top-level values. */
    mt__json_init(&j, f, 0);
    mt__json_begin_array(&j);
    mt__json_end_object(&j);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    mt__json_init(&j, f, 0);
    mt__json_begin_object(&j);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    mt__json_init(&j, f, 0);
    mt__json_uint(&j, 1);
    mt__json_uint(&j, 2);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    /* Too deep. */
    mt__json_init(&j, f, 0);
    for (int i = 0; i < MT_JSON_MAX_DEPTH + 5; i++)
        mt__json_begin_array(&j);
    ck_assert_int_eq(mt__json_finish(&j), -1);
    /* And a correct one passes. */
    mt__json_init(&j, f, 0);
    mt__json_begin_object(&j);
    mt__json_key(&j, "k");
    mt__json_begin_array(&j);
    mt__json_end_array(&j);
    mt__json_end_object(&j);
    ck_assert_int_eq(mt__json_finish(&j), 0);
    fclose(f);
}
END_TEST

/* ---- text helpers ------------------------------------------------------ */

START_TEST(sizes_are_human_readable)
{
    char buf[32];
    ck_assert_str_eq(mt_format_size(0, buf, sizeof buf), "0 B");
    ck_assert_str_eq(mt_format_size(1023, buf, sizeof buf), "1023 B");
    ck_assert_str_eq(mt_format_size(1024, buf, sizeof buf), "1.0 KiB");
    ck_assert_str_eq(mt_format_size(1536, buf, sizeof buf), "1.5 KiB");
    ck_assert_str_eq(mt_format_size(1048575, buf, sizeof buf), "1.0 MiB");
    ck_assert_str_eq(mt_format_size(12897485, buf, sizeof buf), "12.3 MiB");
    ck_assert_str_eq(mt_format_size(3ull << 30, buf, sizeof buf), "3.0 GiB");
    ck_assert_str_eq(mt_format_size(UINT64_MAX, buf, sizeof buf), "16.0 EiB");
    char small[8];
    ck_assert_str_eq(mt_format_size(1536, small, sizeof small), "1.5 KiB");
}
END_TEST

static char *escaped(const char *s)
{
    membuf_t m;
    mb_open(&m);
    ck_assert_int_eq(mt_fputs_escaped(s, m.f), 0);
    return mb_close(&m);
}

START_TEST(terminal_output_is_escaped)
{
    char *s = escaped("ok\x1b]0;pwned\x07\x1b[2J\n\x7f");
    ck_assert_str_eq(s, "ok\\x1b]0;pwned\\x07\\x1b[2J\\x0a\\x7f");
    free(s);
    s = escaped("caf\xc3\xa9 \xff \xc2\x9b[31m");
    ck_assert_str_eq(s, "caf\xc3\xa9 \\xff \\xc2\\x9b[31m");
    free(s);
    s = escaped(NULL);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

/* ---- frames ------------------------------------------------------------ */

static mt_frame_t frame(const char *function, const char *file,
                        unsigned line, const char *module)
{
    mt_frame_t f = {function, file, line, module, 0, 0};
    return f;
}

START_TEST(allocator_frames)
{
    static const char *const yes[] = {
        "malloc", "calloc", "realloc", "free", "posix_memalign",
        "aligned_alloc", "mmap", "mmap64", "mremap", "__libc_malloc",
        "__libc_calloc", "__GI___libc_malloc", "__libc_memalign", "strdup",
        "__strdup", "asprintf", "operator new(unsigned long)",
        "operator new[](unsigned long)",
        "operator new(unsigned long, std::align_val_t)", "_Znwm",
        "_ZnamRKSt9nothrow_t", "PyMem_RawMalloc", "PyObject_Malloc",
        "_PyMem_DebugRawAlloc", "_PyObject_Malloc", "pymalloc_alloc"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        mt_frame_t f = frame(yes[i], "/lib/libc.so.6", 0, "/lib/libc.so.6");
        ck_assert_msg(mt_frame_is_allocator(&f), "%s", yes[i]);
    }
    static const char *const no[] = {
        "main", "malloc_wrapper", "my_malloc", "xmalloc", "__libc_start_main",
        "operator delete(void*)", "PyObject_GetAttr", "0x401000",
        "libc.so.6+0x1234", ""};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        mt_frame_t f = frame(no[i], "a.c", 3, "/usr/bin/prog");
        ck_assert_msg(!mt_frame_is_allocator(&f), "%s", no[i]);
    }
    /* Anything in the preload library, whatever its name. */
    mt_frame_t f = frame("mt__hook_malloc", "preload.c", 10,
                         "/build/libmemtrace_preload.so");
    ck_assert(mt_frame_is_allocator(&f));
    f = frame("libmemtrace_preload.so+0x42", "/x/libmemtrace_preload.so", 0,
              "/x/libmemtrace_preload.so");
    ck_assert(mt_frame_is_allocator(&f));
}
END_TEST

START_TEST(python_frames)
{
    mt_frame_t f = frame("load", "/app/job.py", 12, "");
    ck_assert(mt_frame_is_python(&f));
    f = frame("<module>", "<string>", 1, "");
    ck_assert(mt_frame_is_python(&f));
    f = frame("main", "main.c", 12, "/usr/bin/prog");
    ck_assert(!mt_frame_is_python(&f));
    f = frame("x", "weird.py", 1, "/usr/lib/libpython3.11.so");
    ck_assert(!mt_frame_is_python(&f));
    f = frame("0x401000", "", 0, "");
    ck_assert(!mt_frame_is_python(&f));
}
END_TEST

/* ---- synthetic captures ------------------------------------------------ */

static char *temp_path(const char *tag)
{
    char *path;
    const char *dir = getenv("TMPDIR");
    ck_assert_int_gt(asprintf(&path, "%s/mt-reporters-%s-%d.bin",
                              dir && dir[0] ? dir : "/tmp", tag,
                              (int)getpid()),
                     0);
    return path;
}

static mt_capture_t *load(const char *path)
{
    char err[512] = "";
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "load %s: %d %s", path, rc, err);
    ck_assert_ptr_nonnull(cap);
    return cap;
}

/* The grouping capture: stacks of preload -> allocator -> user frames.
 *   node 1 main (main.c:50)           <- root
 *   node 2 make_buffer (main.c:12)    <- 1
 *   node 3 malloc (libc)              <- 2
 *   node 4 preload hook               <- 3
 *   node 5 strdup (libc)              <- 1
 *   node 6 preload hook               <- 5
 *   node 7 operator new + make_buffer:12 (two frames, inlined) <- 1
 *   node 8 preload hook               <- 7
 *   node 9 malloc (libc)              <- root  (only allocator frames)
 * Live at the end (= at the peak; nothing is freed):
 *   node 4: 100 + 200, node 8: 1000, node 6: 50 + 50, node 9: 30,
 *   no stack: 7. */
static const mt_frame_t fake_frames[][2] = {
    [1] = {{"main", "main.c", 50, "/usr/bin/prog", 0}},
    [2] = {{"make_buffer", "main.c", 12, "/usr/bin/prog", 0}},
    [3] = {{"malloc", "/lib/libc.so.6", 0, "/lib/libc.so.6", 0}},
    [4] = {{"mt__hook", "preload.c", 9, "/b/libmemtrace_preload.so", 0}},
    [5] = {{"strdup", "/lib/libc.so.6", 0, "/lib/libc.so.6", 0}},
    [6] = {{"mt__hook", "preload.c", 9, "/b/libmemtrace_preload.so", 0}},
    [7] = {{"operator new(unsigned long)", "new_op.cc", 50,
            "/lib/libstdc++.so.6", 1},
           {"make_buffer", "main.c", 12, "/usr/bin/prog", 0}},
    [8] = {{"mt__hook", "preload.c", 9, "/b/libmemtrace_preload.so", 0}},
    [9] = {{"malloc", "/lib/libc.so.6", 0, "/lib/libc.so.6", 0}},
};

static size_t fake_symbolize(void *ctx, uint32_t node, mt_frame_t *frames,
                             size_t max)
{
    int *calls = ctx;
    (*calls)++;
    if (node == 0 || node > 9 || max == 0)
        return 0;
    size_t n = node == 7 ? 2 : 1;
    if (n > max)
        n = max;
    memcpy(frames, fake_frames[node], n * sizeof *frames);
    return n;
}

static char *write_grouping_capture(void)
{
    char *path = temp_path("grouping");
    mt_cb_t *b = mt_cb_begin(path, NULL);
    ck_assert_uint_eq(mt_cb_node(b, 0, 0x1000), 1);
    ck_assert_uint_eq(mt_cb_node(b, 1, 0x2000), 2);
    ck_assert_uint_eq(mt_cb_node(b, 2, 0x3000), 3);
    ck_assert_uint_eq(mt_cb_node(b, 3, 0x4000), 4);
    ck_assert_uint_eq(mt_cb_node(b, 1, 0x5000), 5);
    ck_assert_uint_eq(mt_cb_node(b, 5, 0x6000), 6);
    ck_assert_uint_eq(mt_cb_node(b, 1, 0x7000), 7);
    ck_assert_uint_eq(mt_cb_node(b, 7, 0x8000), 8);
    ck_assert_uint_eq(mt_cb_node(b, 0, 0x9000), 9);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 100, 4);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x20000, 200, 4);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x30000, 1000, 8);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x40000, 50, 6);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x50000, 50, 6);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x60000, 30, 9);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x70000, 7, 0);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1000000, 1 << 20, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    return path;
}

static void assert_frame(const mt_frame_t *f, const char *function,
                         const char *file, unsigned line)
{
    ck_assert_str_eq(f->function, function);
    ck_assert_str_eq(f->file, file);
    ck_assert_uint_eq(f->line, line);
}

START_TEST(sites_group_outside_the_allocator)
{
    char *path = write_grouping_capture();
    mt_capture_t *cap = load(path);
    int calls = 0;
    mt_sites_t *sites;
    ck_assert_int_eq(mt_sites_build_with(cap, MT_VIEW_PEAK, fake_symbolize,
                                         &calls, &sites), 0);
    ck_assert_uint_eq(mt_sites_count(sites), 4);
    const mt_site_t *s0 = mt_sites_get(sites, 0);
    assert_frame(&s0->frame, "make_buffer", "main.c", 12);
    ck_assert_uint_eq(s0->amount.bytes, 1300);
    ck_assert_uint_eq(s0->amount.count, 3);
    ck_assert_uint_eq(s0->heaviest_node, 8);
    ck_assert_uint_eq(s0->heaviest.bytes, 1000);
    const mt_site_t *s1 = mt_sites_get(sites, 1);
    assert_frame(&s1->frame, "main", "main.c", 50); /* strdup's caller */
    ck_assert_uint_eq(s1->amount.bytes, 100);
    ck_assert_uint_eq(s1->amount.count, 2);
    const mt_site_t *s2 = mt_sites_get(sites, 2);
    /* Only allocator frames: the innermost one stands in. */
    assert_frame(&s2->frame, "malloc", "/lib/libc.so.6", 0);
    ck_assert_uint_eq(s2->amount.bytes, 30);
    const mt_site_t *s3 = mt_sites_get(sites, 3);
    assert_frame(&s3->frame, "<unknown>", "<unknown>", 0);
    ck_assert_uint_eq(s3->amount.bytes, 7);
    ck_assert_uint_eq(s3->amount.count, 1);
    ck_assert_ptr_null(mt_sites_get(sites, 4));

    ck_assert_uint_eq(mt_sites_of_node(sites, 4), 0);
    ck_assert_uint_eq(mt_sites_of_node(sites, 8), 0);
    ck_assert_uint_eq(mt_sites_of_node(sites, 6), 1);
    ck_assert_uint_eq(mt_sites_of_node(sites, 9), 2);
    ck_assert_uint_eq(mt_sites_of_node(sites, 0), 3);
    ck_assert_uint_eq(mt_sites_of_node(sites, 2), SIZE_MAX); /* no amount */

    /* The heaviest stack skips the hook and operator new. */
    mt_frame_t stack[8];
    int truncated = -1;
    size_t n = mt_sites_stack(sites, 8, stack, 8, &truncated);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(truncated, 0);
    assert_frame(&stack[0], "make_buffer", "main.c", 12);
    assert_frame(&stack[1], "main", "main.c", 50);
    n = mt_sites_stack(sites, 8, stack, 1, &truncated);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(truncated, 1);
    /* All-allocator stacks are shown whole rather than empty. */
    n = mt_sites_stack(sites, 9, stack, 8, &truncated);
    ck_assert_uint_eq(n, 1);
    assert_frame(&stack[0], "malloc", "/lib/libc.so.6", 0);
    ck_assert_uint_eq(mt_sites_stack(sites, 0, stack, 8, NULL), 0);

    /* By count: make_buffer 3, main 2, then the two with 1 by bytes. */
    mt_sites_sort(sites, 1);
    ck_assert_str_eq(mt_sites_get(sites, 0)->frame.function, "make_buffer");
    ck_assert_str_eq(mt_sites_get(sites, 1)->frame.function, "main");
    ck_assert_str_eq(mt_sites_get(sites, 2)->frame.function, "malloc");
    ck_assert_uint_eq(mt_sites_of_node(sites, 0), 3);
    mt_sites_free(sites);

    /* Nothing is freed: the leaks view has the same sites. */
    ck_assert_int_eq(mt_sites_build_with(cap, MT_VIEW_LEAKS, fake_symbolize,
                                         &calls, &sites), 0);
    ck_assert_uint_eq(mt_sites_count(sites), 4);
    ck_assert_uint_eq(mt_sites_get(sites, 0)->amount.bytes, 1300);
    mt_sites_free(sites);
    /* ...and nothing is temporary. */
    ck_assert_int_eq(mt_sites_build_with(cap, MT_VIEW_TEMPORARY,
                                         fake_symbolize, &calls, &sites), 0);
    ck_assert_uint_eq(mt_sites_count(sites), 0);
    mt_sites_free(sites);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

/* The numbers capture (frames "0x..." from the real symbolizer: the nodes'
 * addresses are in no module):
 *   node 1 = 0x1000 <- root, node 2 = 0x2000 <- 1, node 3 = 0x3000 <- 1
 *   seq 1 malloc 1000 @2, seq 2 malloc 500 @3, seq 3 malloc 250 @2
 *   (peak: 1750), seq 4 free the 1000, seq 5 malloc 100 @3, seq 6 free of
 *   an unknown address, seq 7 malloc 10 @3. Trailer: 2.5 s, peak RSS 8 MiB.
 * So: 5 allocations, 1860 bytes, 1 free, 1 unmatched; current 860 in 4;
 * at the peak 0x2000 1250/2 and 0x3000 500/1; at the end 0x3000 610/3 and
 * 0x2000 250/1; over the run 0x2000 1250/2 and 0x3000 610/3. */
static char *write_numbers_capture(unsigned flags)
{
    char *path = temp_path("numbers");
    static const char *const argv[] = {"./prog", "--size", "10", NULL};
    mt_cb_header_t h;
    memset(&h, 0, sizeof h);
    h.flags = flags;
    h.pid = 4242;
    h.ppid = 1;
    h.argv = argv;
    h.exe = "/usr/bin/prog";
    h.tracer_version = "test";
    mt_cb_t *b = mt_cb_begin(path, &h);
    mt_cb_node(b, 0, 0x1000);
    mt_cb_node(b, 1, 0x2000);
    mt_cb_node(b, 1, 0x3000);
    mt_cb_thread(b, 0, 4242, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 1000, 2);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x20000, 500, 3);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x30000, 250, 2);
    mt_cb_free(b, 0, MT_CB_NEXT, 0x10000);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x40000, 100, 3);
    mt_cb_free(b, 0, MT_CB_NEXT, 0x99999);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x50000, 10, 3);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 2500000000ull, 8u << 20, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    return path;
}

typedef int (*report_fn)(FILE *, mt_capture_t *, const mt_report_opts_t *);

static char *render(report_fn fn, mt_capture_t *cap, int json, size_t top,
                    mt_view_t view)
{
    mt_report_opts_t opts = {json, top, view, NULL};
    membuf_t m;
    mb_open(&m);
    ck_assert_int_eq(fn(m.f, cap, &opts), 0);
    return mb_close(&m);
}

#define ASSERT_HAS(text, needle)                                               \
    ck_assert_msg(strstr(text, needle) != NULL, "missing <%s> in:\n%s",        \
                  needle, text)

/* Asserts that a appears before b in text. */
static void assert_order(const char *text, const char *a, const char *b)
{
    const char *pa = strstr(text, a), *pb = strstr(text, b);
    ck_assert_msg(pa && pb && pa < pb, "<%s> should come before <%s> in:\n%s",
                  a, b, text);
}

#define FRAME_JSON(addr)                                                       \
    "{\"function\": \"" addr "\", \"file\": \"\", \"line\": 0, "               \
    "\"module\": \"\"}"

START_TEST(summary_numbers)
{
    char *path = write_numbers_capture(MT_FLAG_NATIVE_STACKS);
    mt_capture_t *cap = load(path);
    char *js = render(mt_report_summary, cap, 1, 0, MT_VIEW_PEAK);
    ASSERT_HAS(js, "\n  \"pid\": 4242,\n");
    ASSERT_HAS(js, "\n  \"command\": \"./prog --size 10\",\n");
    ASSERT_HAS(js, "\n  \"peak_bytes\": 1750,\n");
    ASSERT_HAS(js, "\n  \"current_bytes\": 860,\n");
    ASSERT_HAS(js, "\n  \"current_allocations\": 4,\n");
    ASSERT_HAS(js, "\n  \"total_allocations\": 5,\n");
    ASSERT_HAS(js, "\n  \"total_frees\": 1,\n");
    ASSERT_HAS(js, "\n  \"unmatched_frees\": 1,\n");
    ASSERT_HAS(js, "\n  \"total_bytes_allocated\": 1860,\n");
    ASSERT_HAS(js, "\n  \"duration_s\": 2.5,\n");
    ASSERT_HAS(js, "\n  \"peak_rss_bytes\": 8388608,\n");
    ASSERT_HAS(js, "\n  \"threads\": 1,\n");
    ASSERT_HAS(js, "\n  \"native\": true,\n");
    ASSERT_HAS(js, "\n  \"python_version\": null,\n");
    ASSERT_HAS(js, "\n  \"complete\": true,\n");
    ASSERT_HAS(js, "\n  \"warning\": null,\n");
    ASSERT_HAS(js, "\"bytes\": 1250,\n      \"count\": 2,\n"
                   "      \"site\": " FRAME_JSON("0x2000"));
    ASSERT_HAS(js, "\"bytes\": 500,\n      \"count\": 1,\n"
                   "      \"site\": " FRAME_JSON("0x3000"));
    assert_order(js, "\"bytes\": 1250", "\"bytes\": 500");
    ck_assert_uint_eq(check_json_string("\"x\""), 3); /* the checker works */
    free(js);

    char *text = render(mt_report_summary, cap, 0, 0, MT_VIEW_PEAK);
    ASSERT_HAS(text, "Peak memory:         1.7 KiB at ");
    ASSERT_HAS(text, "Current memory:      860 B in 4 allocations");
    ASSERT_HAS(text, "Total allocated:     1.8 KiB in 5 allocations\n");
    ASSERT_HAS(text, "Frees:               1 (+ 1 unmatched)\n");
    ASSERT_HAS(text, "Peak RSS:            8.0 MiB\n");
    ASSERT_HAS(text, "Top 2 locations at the peak:\n"
                     "  1.    1.2 KiB in 2 allocations: 0x2000\n"
                     "  2.      500 B in 1 allocation: 0x3000\n");
    free(text);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(report_numbers)
{
    char *path = write_numbers_capture(0);
    mt_capture_t *cap = load(path);
    char *js = render(mt_report_top, cap, 1, 0, MT_VIEW_PEAK);
    ASSERT_HAS(js, "\n  \"view\": \"peak\",\n");
    ASSERT_HAS(js, "\n  \"current_bytes\": 860,\n");
    ASSERT_HAS(js, "\n  \"peak_bytes\": 1750,\n");
    ASSERT_HAS(js, "\n  \"total_allocations\": 5,\n");
    ASSERT_HAS(js, "\n  \"total_bytes_allocated\": 1860,\n");
    ASSERT_HAS(js, "\n  \"view_bytes\": 1750,\n");
    ASSERT_HAS(js, "\n  \"view_allocations\": 3,\n");
    ASSERT_HAS(js, "\n  \"sites\": 2,\n");
    /* Stack innermost first: the site's node, then its parent. */
    ASSERT_HAS(js, "      \"bytes\": 1250,\n      \"count\": 2,\n"
                   "      \"site\": " FRAME_JSON("0x2000") ",\n"
                   "      \"stack\": [\n"
                   "        " FRAME_JSON("0x2000") ",\n"
                   "        " FRAME_JSON("0x1000") "\n"
                   "      ],\n"
                   "      \"stack_truncated\": false\n");
    assert_order(js, "\"bytes\": 1250", "\"bytes\": 500");
    free(js);

    /* --top 1 keeps only the first site. */
    js = render(mt_report_top, cap, 1, 1, MT_VIEW_PEAK);
    ASSERT_HAS(js, "\"bytes\": 1250");
    ck_assert_ptr_null(strstr(js, "\"bytes\": 500"));
    free(js);

    /* --leaks: what was live at the end, in another order. */
    js = render(mt_report_top, cap, 1, 0, MT_VIEW_LEAKS);
    ASSERT_HAS(js, "\n  \"view\": \"leaks\",\n");
    ASSERT_HAS(js, "\n  \"view_bytes\": 860,\n");
    ASSERT_HAS(js, "\"bytes\": 610,\n      \"count\": 3,\n"
                   "      \"site\": " FRAME_JSON("0x3000"));
    ASSERT_HAS(js, "\"bytes\": 250,\n      \"count\": 1,\n"
                   "      \"site\": " FRAME_JSON("0x2000"));
    assert_order(js, "\"bytes\": 610", "\"bytes\": 250");
    free(js);

    char *text = render(mt_report_top, cap, 0, 1, MT_VIEW_PEAK);
    ASSERT_HAS(text, "Current memory: 860 B in 4 allocations\n"
                     "Peak memory: 1.7 KiB\n"
                     "Total allocated: 1.8 KiB in 5 allocations\n\n"
                     "Top 1 site at the peak:\n"
                     "#1: 0x2000: 1.2 KiB in 2 allocations\n"
                     "    0x2000\n"
                     "    0x1000\n"
                     "1 other site: 500 B in 1 allocation\n"
                     "Total at the peak: 1.7 KiB in 3 allocations\n");
    free(text);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(stats_numbers)
{
    char *path = write_numbers_capture(0);
    mt_capture_t *cap = load(path);
    char *js = render(mt_report_stats, cap, 1, 0, MT_VIEW_PEAK);
    ASSERT_HAS(js, "\n  \"total_allocations\": 5,\n");
    ASSERT_HAS(js, "\n  \"total_frees\": 1,\n");
    ASSERT_HAS(js, "\n  \"unmatched_frees\": 1,\n");
    ASSERT_HAS(js, "\n  \"total_bytes_allocated\": 1860,\n");
    ASSERT_HAS(js, "\n    \"malloc\": {\"count\": 5, \"bytes\": 1860},\n");
    ASSERT_HAS(js, "\n    \"calloc\": {\"count\": 0, \"bytes\": 0},\n");
    ASSERT_HAS(js, "\n    \"mremap\": {\"count\": 0, \"bytes\": 0},\n");
    ASSERT_HAS(js, "\n    \"PyMem_Realloc\": {\"count\": 0, \"bytes\": 0}\n");
    ck_assert_ptr_null(strstr(js, "\"PyMem_Free\""));
    ck_assert_ptr_null(strstr(js, "\"munmap\""));
    ck_assert_ptr_null(strstr(js, "\"free\""));
    ASSERT_HAS(js, "\"size_histogram\": [\n"
                   "    {\"min\": 8, \"max\": 15, \"count\": 1},\n"
                   "    {\"min\": 64, \"max\": 127, \"count\": 1},\n"
                   "    {\"min\": 128, \"max\": 255, \"count\": 1},\n"
                   "    {\"min\": 256, \"max\": 511, \"count\": 1},\n"
                   "    {\"min\": 512, \"max\": 1023, \"count\": 1}\n"
                   "  ],\n");
    /* By bytes 0x2000 (1250) leads; by count 0x3000 (3 allocations). */
    const char *by_count = strstr(js, "\"top_by_count\"");
    ck_assert_ptr_nonnull(by_count);
    assert_order(js, "\"top_by_bytes\": [\n    {\n      \"bytes\": 1250,",
                 "\"top_by_count\"");
    ASSERT_HAS(by_count, "\"top_by_count\": [\n    {\n      \"bytes\": 610,\n"
                         "      \"count\": 3,");
    free(js);

    char *text = render(mt_report_stats, cap, 0, 0, MT_VIEW_PEAK);
    ASSERT_HAS(text, "Total allocations:     5\n");
    ASSERT_HAS(text, "  malloc                      5       1.8 KiB\n");
    ASSERT_HAS(text, "  [8 B, 16 B)                         1  ####");
    ASSERT_HAS(text, "Top 2 sites by number of allocations:\n"
                     "#1: 0x3000: 610 B in 3 allocations\n");
    free(text);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

Suite *mt_test_reporters_suite(void)
{
    Suite *s = suite_create("reporters");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, json_escapes_quotes_backslashes_controls);
    tcase_add_test(tc, json_replaces_invalid_utf8);
    tcase_add_test(tc, json_random_bytes_stay_valid);
    tcase_add_test(tc, json_structure_and_numbers);
    tcase_add_test(tc, json_misuse_is_reported);
    suite_add_tcase(s, tc);
    tc = tcase_create("text");
    tcase_add_test(tc, sizes_are_human_readable);
    tcase_add_test(tc, terminal_output_is_escaped);
    suite_add_tcase(s, tc);
    tc = tcase_create("sites");
    tcase_add_test(tc, allocator_frames);
    tcase_add_test(tc, python_frames);
    tcase_add_test(tc, sites_group_outside_the_allocator);
    suite_add_tcase(s, tc);
    tc = tcase_create("reports");
    tcase_add_test(tc, summary_numbers);
    tcase_add_test(tc, report_numbers);
    tcase_add_test(tc, stats_numbers);
    suite_add_tcase(s, tc);
    return s;
}
