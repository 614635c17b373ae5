/* test_flamegraph.c: the data of `memtrace flamegraph` pages, on a
 * synthetic Python capture with known names: trace nodes merged by frame
 * path, inclusive amounts, the breadth-first order, import-time flags,
 * "other" nodes below the threshold, the page budget raising the
 * threshold, HTML-safe strings, and the page's pieces being in place. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"
#include "tests.h"

#define HOSTILE "</script><img src=x onerror=alert(1)>"

/* A definition payload: varints and strings appended to a small buffer. */
typedef struct payload_s {
    uint8_t data[512];
    size_t len;
} payload_t;

static void put_varint(payload_t *p, uint64_t v)
{
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        p->data[p->len++] = (uint8_t)(byte | (v ? 0x80 : 0));
    } while (v);
}

static void put_str(payload_t *p, const char *s)
{
    size_t n = strlen(s);
    put_varint(p, n);
    memcpy(p->data + p->len, s, n);
    p->len += n;
}

static void pycode(mt_cb_t *b, uint64_t id, const char *name, const char *file)
{
    payload_t p = {.len = 0};
    put_varint(&p, id);
    put_str(&p, name);
    put_str(&p, file);
    put_varint(&p, 1);
    mt_cb_raw_def(b, MT_DEF_PYCODE, p.data, p.len);
}

static uint64_t pyframe(uint64_t code, uint32_t line)
{
    return MT_NODE_PYTHON | (code << 32) | line;
}

/* The capture (all live at the end, so peak = leaks):
 *   1 <module> main.py:10 <- root
 *   2 work main.py:20     <- 1    500000
 *   3 work main.py:20     <- 1    300000 (another code object, same frame)
 *   4 <module> main.py:1  <- root
 *   5 _find_and_load      <- 4    (importlib)
 *   6 <module> mod.py:3   <- 5    100000
 *   7 HOSTILE x.py:7      <- 1     99000
 *   8 work main.py:30     <- 1       500 (under 0.1% of 999500) */
static char *write_capture(void)
{
    char *path;
    const char *dir = getenv("TMPDIR");
    ck_assert_int_gt(asprintf(&path, "%s/mt-flamegraph-%d.bin",
                              dir && dir[0] ? dir : "/tmp", (int)getpid()),
                     0);
    mt_cb_header_t h = {.flags = MT_FLAG_PYTHON, .pid = 7,
                        .python_version = "3.11.7"};
    mt_cb_t *b = mt_cb_begin(path, &h);
    payload_t py = {.len = 0};
    put_str(&py, "3.11.7");
    put_varint(&py, 0);
    mt_cb_raw_def(b, MT_DEF_PYTHON, py.data, py.len);
    pycode(b, 1, "<module>", "/app/main.py");
    pycode(b, 2, "work", "/app/main.py");
    pycode(b, 3, "_find_and_load", "<frozen importlib._bootstrap>");
    pycode(b, 4, "<module>", "/lib/mod.py");
    pycode(b, 5, HOSTILE, "/app/x.py");
    pycode(b, 6, "work", "/app/main.py");
    ck_assert_uint_eq(mt_cb_node(b, 0, pyframe(1, 10)), 1);
    ck_assert_uint_eq(mt_cb_node(b, 1, pyframe(2, 20)), 2);
    ck_assert_uint_eq(mt_cb_node(b, 1, pyframe(6, 20)), 3);
    ck_assert_uint_eq(mt_cb_node(b, 0, pyframe(1, 1)), 4);
    ck_assert_uint_eq(mt_cb_node(b, 4, pyframe(3, 100)), 5);
    ck_assert_uint_eq(mt_cb_node(b, 5, pyframe(4, 3)), 6);
    ck_assert_uint_eq(mt_cb_node(b, 1, pyframe(5, 7)), 7);
    ck_assert_uint_eq(mt_cb_node(b, 1, pyframe(2, 30)), 8);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 500000, 2);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x20000, 300000, 3);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x30000, 100000, 6);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x40000, 99000, 7);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x50000, 500, 8);
    mt_cb_tick(b, 6, 5000000, 4096000);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 6000000, 1 << 22, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    return path;
}

/* The page for the capture with opts; returns it (free it). */
static char *page_of(const mt_flamegraph_opts_t *opts)
{
    char *path = write_capture();
    char err[512] = "";
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
    ck_assert_msg(rc == 0, "load: %d %s", rc, err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(mt_report_flamegraph(f, cap, opts), 0);
    fclose(f);
    mt_capture_free(cap);
    unlink(path);
    free(path);
    return text;
}

#define ASSERT_HAS(text, part)                                                 \
    ck_assert_msg(strstr(text, part) != NULL, "missing: %s", part)

START_TEST(frame_paths_and_amounts)
{
    char *html = page_of(NULL);
    /* strings: "" <root> <module> main.py work HOSTILE x.py _find_and_load
     * <frozen importlib._bootstrap> mod.py, then "other". */
    ASSERT_HAS(html, "\"strings\":[\"\",\"\\u003croot\\u003e\","
                     "\"\\u003cmodule\\u003e\",\"/app/main.py\",\"work\","
                     "\"\\u003c/script\\u003e\\u003cimg src=x "
                     "onerror=alert(1)\\u003e\",\"/app/x.py\","
                     "\"_find_and_load\","
                     "\"\\u003cfrozen importlib._bootstrap\\u003e\","
                     "\"/lib/mod.py\",\"other\"]");
    ASSERT_HAS(html, "\"nodes\":["
                     "[-1,1,0,0,999500,5,0],"
                     "[0,2,3,10,899500,4,1],"
                     "[0,2,3,1,100000,1,1],"
                     "[1,4,3,20,800000,2,1],"
                     "[1,5,6,7,99000,1,1],"
                     "[1,10,0,1,500,1,8],"
                     "[2,7,8,100,100000,1,5],"
                     "[6,2,9,3,100000,1,5]]");
    ASSERT_HAS(html, "\"threshold\":0.001,\"merged\":1,");
    ASSERT_HAS(html, "\"samples\":[[5000000,999500,4096000]]");
    ASSERT_HAS(html, "\"view\":\"peak\"");
    ASSERT_HAS(html, "\"python\":true,\"native\":false,"
                     "\"hide_imports\":false,\"hide_native\":false");
    /* The hostile name never appears raw; our two script elements do. */
    ck_assert_ptr_null(strstr(html, "<img"));
    int scripts = 0;
    for (const char *p = html; (p = strstr(p, "</script")) != NULL; p++)
        scripts++;
    ck_assert_int_eq(scripts, 2);
    /* The template's markers were all replaced. */
    ck_assert_ptr_null(strstr(html, "/*@"));
    ck_assert_ptr_nonnull(strstr(html, "<style>/* flamegraph.css"));
    ck_assert_ptr_nonnull(strstr(html, "<script>/* flamegraph.js"));
    ck_assert_ptr_null(strstr(html, "http://"));
    ck_assert_ptr_null(strstr(html, "https://"));
    free(html);
}
END_TEST

START_TEST(budget_raises_the_threshold)
{
    mt_flamegraph_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.max_bytes = 1; /* never fits: 0.1% x 4 x 4 x 4 x 4 = 25.6% */
    opts.view = MT_VIEW_LEAKS;
    opts.hide_imports = 1;
    char *html = page_of(&opts);
    ASSERT_HAS(html, "\"strings\":[\"\",\"\\u003croot\\u003e\","
                     "\"\\u003cmodule\\u003e\",\"/app/main.py\",\"work\","
                     "\"other\"]");
    ASSERT_HAS(html, "\"nodes\":["
                     "[-1,1,0,0,999500,5,0],"
                     "[0,2,3,10,899500,4,1],"
                     "[0,5,0,1,100000,1,8],"
                     "[1,4,3,20,800000,2,1],"
                     "[1,5,0,2,99500,2,8]]");
    ASSERT_HAS(html, "\"threshold\":0.256,\"merged\":3,");
    ASSERT_HAS(html, "\"view\":\"leaks\"");
    ASSERT_HAS(html, "\"hide_imports\":true");
    free(html);
}
END_TEST

Suite *mt_test_flamegraph_suite(void)
{
    Suite *s = suite_create("flamegraph");
    TCase *tc = tcase_create("data");
    tcase_add_test(tc, frame_paths_and_amounts);
    tcase_add_test(tc, budget_raises_the_threshold);
    suite_add_tcase(s, tc);
    return s;
}
