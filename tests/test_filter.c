/* test_filter.c: what the reports show of a stack (reporters/filter.c):
 * the --include/--exclude globs, which frames are memtrace's own, and the
 * exact sites and stacks of a synthetic `memtrace run --native` capture
 * with and without filters. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_builder.h"
#include "memtrace/reader.h"
#include "memtrace/reporters.h"
#include "tests.h"

/* ---- globs ------------------------------------------------------------- */

START_TEST(globs_match_paths_and_their_tails)
{
    /* Whole paths, '*' crossing '/'. */
    ck_assert(mt_path_matches("/app/*", "/app/myproj/db.py"));
    ck_assert(mt_path_matches("*/site-packages/*",
                              "/usr/lib/python3/site-packages/yaml/x.py"));
    ck_assert(mt_path_matches("*.so*", "/usr/lib/libfoo.so.1"));
    /* Relative globs: any tail that starts a path component. */
    ck_assert(mt_path_matches("myproj/*", "/home/me/myproj/app/db.py"));
    ck_assert(mt_path_matches("db.py", "/home/me/myproj/app/db.py"));
    ck_assert(mt_path_matches("app/db.py", "/home/me/myproj/app/db.py"));
    ck_assert(mt_path_matches("site-packages/*",
                              "/usr/lib/python3/site-packages/yaml/x.py"));
    ck_assert(mt_path_matches("lib*.so.?", "/usr/lib/libz.so.1"));
    /* A directory on the path stands for everything under it. */
    ck_assert(mt_path_matches("myproj", "/home/me/myproj/app/db.py"));
    ck_assert(mt_path_matches("site-packages",
                              "/usr/lib/python3/site-packages/yaml/x.py"));
    ck_assert(mt_path_matches("myproj/app", "/home/me/myproj/app/db.py"));
    ck_assert(mt_path_matches("/home/me", "/home/me/myproj/db.py"));
    ck_assert(mt_path_matches("myproj", "myproj/db.py")); /* relative path */
    ck_assert(!mt_path_matches("/me", "/home/me/myproj/db.py"));
    ck_assert(!mt_path_matches("myproj", "/home/me/myproject/db.py"));
    ck_assert(!mt_path_matches("myproj", "/home/me/notmyproj/db.py"));
    /* Paths longer than the matcher's stack buffer. */
    char long_path[3000];
    memset(long_path, 'a', sizeof long_path);
    memcpy(long_path, "/x/", 3);
    memcpy(long_path + 2990, "/myproj/z", 10);
    ck_assert(mt_path_matches("myproj", long_path));
    ck_assert(!mt_path_matches("zz", long_path));
    /* ...but not inside a component, nor an absolute glob elsewhere. */
    ck_assert(!mt_path_matches("proj/*", "/home/me/myproj/db.py"));
    ck_assert(!mt_path_matches("b.py", "/home/me/db.py"));
    ck_assert(!mt_path_matches("/myproj/*", "/home/me/myproj/db.py"));
    ck_assert(!mt_path_matches("myproj/*", "/home/me/myproj"));
    ck_assert(!mt_path_matches("db.py", ""));
    ck_assert(!mt_path_matches("db.py", NULL));
    /* Pseudo-files are paths like any other. */
    ck_assert(mt_path_matches("<string>", "<string>"));

    /* A frame matches by its file or its shared object. */
    mt_frame_t f = {"inflate", "inflate.c", 10, "/usr/lib/libz.so.1", 0, 0};
    ck_assert(mt_frame_matches("libz.so*", &f));
    ck_assert(mt_frame_matches("inflate.c", &f));
    ck_assert(!mt_frame_matches("inflate", &f)); /* not by function */
}
END_TEST

START_TEST(filter_holds_its_globs)
{
    mt_filter_t *f;
    ck_assert_int_eq(mt_filter_new(&f), 0);
    ck_assert(!mt_filter_active(f));
    ck_assert(!mt_filter_active(NULL));
    ck_assert_int_eq(mt_filter_include(f, ""), MT_EINVAL);
    ck_assert_int_eq(mt_filter_include(f, "a/*"), 0);
    ck_assert_int_eq(mt_filter_exclude(f, "b"), 0);
    ck_assert_int_eq(mt_filter_exclude(f, "c"), 0);
    ck_assert(mt_filter_active(f));
    size_t n;
    const char *const *g = mt_filter_globs(f, 0, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(g[0], "a/*");
    g = mt_filter_globs(f, 1, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(g[1], "c");
    mt_filter_free(f);
    mt_filter_free(NULL);
}
END_TEST

/* ---- memtrace's own frames --------------------------------------------- */

static mt_frame_t py(const char *function, const char *file, unsigned line)
{
    mt_frame_t f = {function, file, line, "", 0, 1};
    return f;
}

static mt_frame_t native(const char *function, const char *file,
                         const char *module)
{
    mt_frame_t f = {function, file, 0, module, 0, 0};
    return f;
}

START_TEST(memtrace_frames)
{
    mt_frame_t yes[] = {
        py("main", "/opt/memtrace/python/memtrace/_launch.py", 209),
        py("start", "/usr/lib/memtrace/python/memtrace/__init__.py", 80),
        py("x", "memtrace/_paths.py", 1),
        native("mt__hook_malloc", "hooks.c", "/b/libmemtrace_preload.so"),
        native("dlopen", "hooks.c", "/usr/lib/memtrace/libmemtrace_preload.so"),
        native("walk", "walker.c",
               "/b/python/memtrace/_memtrace.cpython-311-x86_64-linux-gnu.so"),
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert_msg(mt_frame_is_memtrace(&yes[i]), "%s", yes[i].file);
    mt_frame_t no[] = {
        py("<module>", "/app/myproj/main.py", 3),
        py("helper", "/app/memtrace_utils.py", 3),    /* not the package */
        py("run", "/app/notmemtrace/_launch.py", 3),
        py("_run_code", "<frozen runpy>", 88),        /* runpy: by position */
        native("PyList_New", "listobject.c", "/usr/lib/libpython3.11.so"),
        native("f", "x.c", "/app/_memtrace.so"),      /* not in memtrace/ */
        native("malloc", "malloc.c", "/lib/libc.so.6"),
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!mt_frame_is_memtrace(&no[i]), "%s", no[i].file);
}
END_TEST

/* ---- a `memtrace run --native` capture --------------------------------- *
 * Nodes (one frame each; Python frames have python = 1):
 *   1 _start (python3)                                   <- root
 *   2 pymain_run_module (libpython)                      <- 1
 *   3 _run_module_as_main (<frozen runpy>)               <- 2
 *   4 <module> (memtrace/_launch.py)                     <- 3
 *   5 main (memtrace/_launch.py)                         <- 4
 *   6 _execute (memtrace/_launch.py)                     <- 5
 *   7 builtin_exec (libpython)                           <- 6
 *   8 <module> (/app/myproj/main.py:3)                   <- 7
 *   9 load (/app/myproj/db.py:10)                        <- 8
 *  10 PyList_New (libpython)                             <- 9
 *  11 mt__hook_malloc (libmemtrace_preload.so)           <- 10
 *  12 loads (/usr/lib/python3/site-packages/fastjson/api.py:5) <- 8
 *  13 _load_script (memtrace/_launch.py:120)             <- 5
 *  14 builtin_compile (libpython)                        <- 13
 *  15 dispatch (/usr/lib/python3/site-packages/web/app.py:7) <- 8
 *  16 handler (/app/myproj/views.py:20)                  <- 15
 * Allocations, all live at the end: 1000 @11 (db.py via PyList_New),
 * 300 @12 (site-packages, called from main.py), 50 @14 (the launcher
 * compiling the script), 20 @2 (interpreter start-up), 7 @16 (the user's
 * handler, called by a framework in site-packages). */
#define L "/opt/mt/python/memtrace/_launch.py"
#define LIBPY "/usr/lib/libpython3.11.so"
static mt_frame_t run_frames[17];

static void run_frames_init(void)
{
    run_frames[1] = native("_start", "/usr/bin/python3", "/usr/bin/python3");
    run_frames[2] = native("pymain_run_module", "main.c", LIBPY);
    run_frames[3] = py("_run_module_as_main", "<frozen runpy>", 198);
    run_frames[4] = py("<module>", L, 222);
    run_frames[5] = py("main", L, 209);
    run_frames[6] = py("_execute", L, 102);
    run_frames[7] = native("builtin_exec", "bltinmodule.c", LIBPY);
    run_frames[8] = py("<module>", "/app/myproj/main.py", 3);
    run_frames[9] = py("load", "/app/myproj/db.py", 10);
    run_frames[10] = native("PyList_New", "listobject.c", LIBPY);
    run_frames[11] = native("mt__hook_malloc", "hooks.c",
                            "/opt/mt/libmemtrace_preload.so");
    run_frames[12] = py("loads", "/usr/lib/python3/site-packages/fastjson/api.py", 5);
    run_frames[13] = py("_load_script", L, 120);
    run_frames[14] = native("builtin_compile", "bltinmodule.c", LIBPY);
    run_frames[15] = py("dispatch", "/usr/lib/python3/site-packages/web/app.py", 7);
    run_frames[16] = py("handler", "/app/myproj/views.py", 20);
}

static size_t run_symbolize(void *ctx, uint32_t node, mt_frame_t *frames,
                            size_t max)
{
    (void)ctx;
    if (node == 0 || node > 16 || max == 0)
        return 0;
    frames[0] = run_frames[node];
    return 1;
}

static char *write_run_capture(void)
{
    run_frames_init();
    char *path;
    const char *dir = getenv("TMPDIR");
    ck_assert_int_gt(asprintf(&path, "%s/mt-filter-%d.bin",
                              dir && dir[0] ? dir : "/tmp", (int)getpid()),
                     0);
    static const char *const argv[] = {"prog.py", NULL};
    mt_cb_header_t hdr = {0};
    hdr.flags = MT_FLAG_PYTHON | MT_FLAG_NATIVE_STACKS;
    hdr.pid = 42;
    hdr.argv = argv;
    hdr.python_version = "3.11.7";
    mt_cb_t *b = mt_cb_begin(path, &hdr);
    static const uint32_t parents[17] = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                                         9, 10, 8, 5, 13, 8, 15};
    for (uint32_t n = 1; n <= 16; n++)
        ck_assert_uint_eq(mt_cb_node(b, parents[n], 0x1000 * n), n);
    mt_cb_thread(b, 0, 100, "main");
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x10000, 1000, 11);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x20000, 300, 12);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x30000, 50, 14);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x40000, 20, 2);
    mt_cb_malloc(b, 0, MT_CB_NEXT, 0x50000, 7, 16);
    mt_cb_sync(b, MT_CB_NEXT);
    mt_cb_trailer(b, 1000000, 1 << 20, MT_CB_NEXT, 0);
    mt_cb_finish(b);
    return path;
}

static mt_capture_t *load_run(char **path)
{
    *path = write_run_capture();
    char err[512] = "";
    mt_capture_t *cap = NULL;
    ck_assert_msg(mt_capture_load(*path, NULL, &cap, err, sizeof err) == 0,
                  "%s", err);
    return cap;
}

static mt_sites_t *build(mt_capture_t *cap, const mt_filter_t *filter)
{
    mt_sites_opts_t o = {MT_VIEW_LEAKS, filter, run_symbolize, NULL};
    mt_sites_t *sites = NULL;
    ck_assert_int_eq(mt_sites_build_opts(cap, &o, &sites), 0);
    return sites;
}

static void assert_site(mt_sites_t *sites, size_t i, const char *function,
                        uint64_t bytes)
{
    const mt_site_t *s = mt_sites_get(sites, i);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->frame.function, function);
    ck_assert_uint_eq(s->amount.bytes, bytes);
}

/* The functions of node's stack as shown, innermost first, joined by ' '. */
static void assert_stack(mt_sites_t *sites, uint32_t node, const char *want)
{
    mt_frame_t frames[32];
    size_t n = mt_sites_stack(sites, node, frames, 32, NULL);
    char got[512] = "";
    for (size_t i = 0; i < n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, frames[i].function);
    }
    ck_assert_str_eq(got, want);
}

START_TEST(launcher_frames_never_show)
{
    char *path;
    mt_capture_t *cap = load_run(&path);
    mt_sites_t *sites = build(cap, NULL);
    ck_assert_uint_eq(mt_sites_count(sites), 5);
    assert_site(sites, 0, "load", 1000);
    assert_site(sites, 1, "loads", 300);
    /* The launcher's own work: no Python frame of the program, so the
     * innermost native frame, never the launcher's. */
    assert_site(sites, 2, "builtin_compile", 50);
    assert_site(sites, 3, "pymain_run_module", 20);
    assert_site(sites, 4, "handler", 7);
    /* Stacks start at the program's first frame: no runpy, no launcher, no
     * exec glue, no hook. */
    assert_stack(sites, 11, "PyList_New load <module>");
    assert_stack(sites, 12, "loads <module>");
    assert_stack(sites, 14, "builtin_compile");
    assert_stack(sites, 16, "handler dispatch <module>");
    /* Interpreter start-up is the interpreter's, shown whole. */
    assert_stack(sites, 2, "pymain_run_module _start");
    ck_assert_uint_eq(mt_sites_filtered_out(sites).bytes, 0);
    ck_assert_ptr_null(mt_sites_filter(sites));
    mt_sites_free(sites);
    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

/* Builds the sites with the given include and exclude globs (NULL ends
 * each list) and checks the bytes kept and left out. */
static mt_sites_t *filtered(mt_capture_t *cap, mt_filter_t **f,
                            const char *const *include,
                            const char *const *exclude)
{
    ck_assert_int_eq(mt_filter_new(f), 0);
    for (; include && *include; include++)
        ck_assert_int_eq(mt_filter_include(*f, *include), 0);
    for (; exclude && *exclude; exclude++)
        ck_assert_int_eq(mt_filter_exclude(*f, *exclude), 0);
    return build(cap, *f);
}

static uint64_t kept_bytes(mt_sites_t *sites)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < mt_sites_count(sites); i++)
        sum += mt_sites_get(sites, i)->amount.bytes;
    return sum;
}

START_TEST(include_and_exclude)
{
    char *path;
    mt_capture_t *cap = load_run(&path);
    mt_filter_t *f;

    /* include: any shown frame of the stack. myproj is on the stacks of
     * db.py (1000), of the library it called (300) and of the handler the
     * framework called (7); not on the launcher's or start-up's. */
    static const char *const myproj[] = {"myproj/*", NULL};
    mt_sites_t *s = filtered(cap, &f, myproj, NULL);
    ck_assert_uint_eq(mt_sites_count(s), 3);
    assert_site(s, 0, "load", 1000);
    assert_site(s, 1, "loads", 300);
    assert_site(s, 2, "handler", 7);
    ck_assert_uint_eq(mt_sites_filtered_out(s).bytes, 70);
    ck_assert_uint_eq(mt_sites_filtered_out(s).count, 2);
    ck_assert(mt_sites_node_kept(s, 12));
    ck_assert(!mt_sites_node_kept(s, 14));
    ck_assert_uint_eq(mt_sites_of_node(s, 14), SIZE_MAX);
    ck_assert_ptr_eq(mt_sites_filter(s), f);
    mt_sites_free(s);
    mt_filter_free(f);

    /* exclude: the site only. site-packages drops the library's 300 but
     * keeps the handler a site-packages framework called. */
    static const char *const site_packages[] = {"site-packages/*", NULL};
    s = filtered(cap, &f, NULL, site_packages);
    ck_assert_uint_eq(mt_sites_count(s), 4);
    ck_assert_uint_eq(kept_bytes(s), 1077);
    ck_assert_uint_eq(mt_sites_filtered_out(s).bytes, 300);
    ck_assert(mt_sites_node_kept(s, 16));
    ck_assert(!mt_sites_node_kept(s, 12));
    mt_sites_free(s);
    mt_filter_free(f);

    /* Both: my project's memory, not allocated inside libraries. */
    s = filtered(cap, &f, myproj, site_packages);
    ck_assert_uint_eq(mt_sites_count(s), 2);
    assert_site(s, 0, "load", 1000);
    assert_site(s, 1, "handler", 7);
    ck_assert_uint_eq(mt_sites_filtered_out(s).bytes, 370);
    mt_sites_free(s);
    mt_filter_free(f);

    /* Excluding the caller's file leaves its callees' sites alone. */
    static const char *const main_py[] = {"/app/myproj/main.py", NULL};
    s = filtered(cap, &f, NULL, main_py);
    ck_assert_uint_eq(kept_bytes(s), 1377);
    mt_sites_free(s);
    mt_filter_free(f);

    /* Several includes: any of them. A shared object is a path too. */
    static const char *const two[] = {"db.py", "*/libpython3.11.so", NULL};
    s = filtered(cap, &f, two, NULL);
    /* db.py: 1000; libpython: start-up 20, the compile 50 (builtin_exec
     * sits above _execute: hidden, so 300 and 7 are not included). */
    ck_assert_uint_eq(kept_bytes(s), 1070);
    mt_sites_free(s);
    mt_filter_free(f);

    /* Hidden frames never match: memtrace's own files match nothing. */
    static const char *const own[] = {"memtrace/*", "runpy*", "<frozen runpy>",
                                      "libmemtrace_preload.so", NULL};
    s = filtered(cap, &f, own, NULL);
    ck_assert_uint_eq(mt_sites_count(s), 0);
    ck_assert_uint_eq(mt_sites_filtered_out(s).bytes, 1377);
    mt_sites_free(s);
    mt_filter_free(f);

    mt_capture_free(cap);
    unlink(path);
    free(path);
}
END_TEST

Suite *mt_test_filter_suite(void)
{
    Suite *s = suite_create("filter");
    TCase *tc = tcase_create("globs");
    tcase_add_test(tc, globs_match_paths_and_their_tails);
    tcase_add_test(tc, filter_holds_its_globs);
    suite_add_tcase(s, tc);
    tc = tcase_create("stacks");
    tcase_add_test(tc, memtrace_frames);
    tcase_add_test(tc, launcher_frames_never_show);
    tcase_add_test(tc, include_and_exclude);
    suite_add_tcase(s, tc);
    return s;
}
