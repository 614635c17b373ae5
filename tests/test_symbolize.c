/* test_symbolize.c: offline symbolization of native frames. The "capture"
 * here is built by hand around real return addresses taken in this test
 * binary (and in libc and libstdc++), described the way the tracer records
 * modules: path, load bias and build-id read with dl_iterate_phdr. */
#include <check.h>
#include <dlfcn.h>
#include <elf.h>
#include <inttypes.h>
#include <link.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture_internal.h"
#include "tests.h"

/* Keeps a function out of line and out of GCC's interprocedural analysis,
 * so calls to it stay real calls at their own line in -O0 and -O2 builds. */
#if defined(__clang__)
#define T_NOIPA __attribute__((noinline, optnone))
#else
#define T_NOIPA __attribute__((noipa))
#endif

/* Keeps ip alive after the call, so the call is no tail call. */
#define T_USE(ip) __asm__ volatile("" : : "r"(ip) : "memory")

#define T_MAX_MODULES 16
#define T_MAX_NODES 4096

/* A hand-built capture: the reader core is not needed to fill it. */
typedef struct fake_s {
    mt_capture_t cap;
    mt_module_t modules[T_MAX_MODULES];
    char paths[T_MAX_MODULES][512];
    uint8_t build_ids[T_MAX_MODULES][64];
    mt_node_t nodes[T_MAX_NODES];
} fake_t;

static fake_t *fake_new(void)
{
    fake_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->cap.modules = f->modules;
    f->cap.nodes = f->nodes;
    f->cap.node_count = 1; /* node 0: the root */
    f->nodes[0].module = UINT32_MAX;
    return f;
}

static void fake_free(fake_t *f)
{
    mt__symbolizer_free(f->cap.symbolizer);
    free(f);
}

/* Adds a module; returns its index. */
static uint32_t fake_module(fake_t *f, const char *path, uint64_t bias,
                            const uint8_t *build_id, size_t build_id_len)
{
    uint32_t m = (uint32_t)f->cap.module_count++;
    ck_assert_uint_lt(m, T_MAX_MODULES);
    ck_assert_uint_le(build_id_len, sizeof f->build_ids[m]);
    snprintf(f->paths[m], sizeof f->paths[m], "%s", path);
    if (build_id_len)
        memcpy(f->build_ids[m], build_id, build_id_len);
    f->modules[m] = (mt_module_t){f->paths[m], f->build_ids[m], build_id_len,
                                  bias, bias, bias + 0x1000000};
    return m;
}

/* Adds a node (a child of the root); returns its id. */
static uint32_t fake_node(fake_t *f, uint32_t module, uint64_t ip)
{
    uint32_t n = (uint32_t)f->cap.node_count++;
    ck_assert_uint_lt(n, T_MAX_NODES);
    f->nodes[n] = (mt_node_t){0, module, ip};
    return n;
}

/* What dl_iterate_phdr tells about the object holding an address. */
typedef struct found_s {
    uintptr_t addr;
    int found;
    char path[512];
    uint64_t bias, lo, hi;
    uint8_t build_id[64];
    size_t build_id_len;
} found_t;

static void read_build_id(struct dl_phdr_info *info, found_t *out)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof *nh;
            const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4
                && memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= 64) {
                memcpy(out->build_id, desc, nh->n_descsz);
                out->build_id_len = nh->n_descsz;
                return;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    found_t *out = arg;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t a = info->dlpi_addr + ph->p_vaddr;
        lo = a < lo ? a : lo;
        hi = a + ph->p_memsz > hi ? a + ph->p_memsz : hi;
    }
    if (out->addr < lo || out->addr >= hi)
        return 0;
    out->found = 1;
    out->bias = info->dlpi_addr;
    out->lo = lo;
    out->hi = hi;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0') {
        ssize_t n = readlink("/proc/self/exe", out->path, sizeof out->path - 1);
        out->path[n > 0 ? n : 0] = '\0';
    } else {
        snprintf(out->path, sizeof out->path, "%s", info->dlpi_name);
    }
    read_build_id(info, out);
    return 1;
}

/* Describes the loaded object holding addr (fails the test if none). */
static found_t find_object(uintptr_t addr)
{
    found_t f;
    memset(&f, 0, sizeof f);
    f.addr = addr;
    dl_iterate_phdr(find_cb, &f);
    ck_assert_msg(f.found, "no object holds %#" PRIxPTR, addr);
    return f;
}

/* Adds the object holding ip as a module, as the tracer would record it. */
static uint32_t fake_module_of(fake_t *f, uintptr_t ip, found_t *obj)
{
    *obj = find_object(ip);
    uint32_t m = fake_module(f, obj->path, obj->bias, obj->build_id,
                             obj->build_id_len);
    f->modules[m].lo = obj->lo;
    f->modules[m].hi = obj->hi;
    return m;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- real return addresses ---------------------------------------------- */

static T_NOIPA uintptr_t capture_here(void)
{
    return (uintptr_t)__builtin_return_address(0);
}

static T_NOIPA uintptr_t plain_caller(unsigned *line)
{
    uintptr_t ip = capture_here(); *line = __LINE__;
    T_USE(ip);
    return ip;
}

static inline __attribute__((always_inline)) uintptr_t
inlined_helper(unsigned *line)
{
    uintptr_t ip = capture_here(); *line = __LINE__;
    T_USE(ip);
    return ip;
}

static T_NOIPA uintptr_t inline_caller(unsigned *inner, unsigned *outer)
{
    uintptr_t ip = inlined_helper(inner); *outer = __LINE__;
    T_USE(ip);
    return ip;
}

/* Set by the comparator lfind calls: an address inside libc. */
static uintptr_t lfind_return;

static int record_compare(const void *a, const void *b)
{
    lfind_return = (uintptr_t)__builtin_return_address(0);
    return memcmp(a, b, sizeof(int));
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(caller_of_a_plain_call)
{
    fake_t *f = fake_new();
    unsigned line = 0;
    uintptr_t ip = plain_caller(&line);
    found_t obj;
    uint32_t m = fake_module_of(f, ip, &obj);
    ck_assert_uint_gt(obj.build_id_len, 0);
    uint32_t n = fake_node(f, m, ip);

    mt_frame_t fr[8];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, fr, 8), 1);
    ck_assert_str_eq(fr[0].function, "plain_caller");
    ck_assert_msg(ends_with(fr[0].file, "tests/test_symbolize.c"), "file %s",
                  fr[0].file);
    ck_assert_uint_eq(fr[0].line, line);
    ck_assert_str_eq(fr[0].module, obj.path);
    ck_assert_int_eq(fr[0].inlined, 0);
    fake_free(f);
}
END_TEST

START_TEST(inlined_frames_are_expanded)
{
    fake_t *f = fake_new();
    unsigned inner = 0, outer = 0;
    uintptr_t ip = inline_caller(&inner, &outer);
    found_t obj;
    uint32_t n = fake_node(f, fake_module_of(f, ip, &obj), ip);

    mt_frame_t fr[8];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, fr, 8), 2);
    ck_assert_str_eq(fr[0].function, "inlined_helper");
    ck_assert_uint_eq(fr[0].line, inner);
    ck_assert_int_eq(fr[0].inlined, 1);
    ck_assert(ends_with(fr[0].file, "/test_symbolize.c"));
    ck_assert_str_eq(fr[1].function, "inline_caller");
    ck_assert_uint_eq(fr[1].line, outer);
    ck_assert_int_eq(fr[1].inlined, 0);
    ck_assert(ends_with(fr[1].file, "/test_symbolize.c"));
    ck_assert_str_eq(fr[1].module, obj.path);
    /* A short buffer gets the innermost frames. */
    mt_frame_t one;
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, &one, 1), 1);
    ck_assert_str_eq(one.function, "inlined_helper");
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, &one, 0), 0);
    fake_free(f);
}
END_TEST

START_TEST(libc_frame)
{
    fake_t *f = fake_new();
    int items[4] = {5, 6, 7, 8}, key = 7;
    size_t count = 4;
    ck_assert_ptr_eq(lfind(&key, items, &count, sizeof key, record_compare),
                     &items[2]);
    found_t obj;
    uint32_t m = fake_module_of(f, lfind_return, &obj);
    ck_assert_msg(strstr(obj.path, "libc.so") != NULL, "lfind in %s", obj.path);
    uint32_t n = fake_node(f, m, lfind_return);

    mt_frame_t fr[8];
    size_t k = mt_capture_frames(&f->cap, n, fr, 8);
    ck_assert_uint_ge(k, 1);
    /* lfind is exported, so its name is known with or without libc6-dbg;
     * with the debug file the line is in misc/lsearch.c. */
    ck_assert_str_eq(fr[k - 1].function, "lfind");
    ck_assert_int_eq(fr[k - 1].inlined, 0);
    ck_assert_str_eq(fr[k - 1].module, obj.path);
    if (fr[0].line != 0)
        ck_assert_msg(ends_with(fr[0].file, "lsearch.c"), "file %s", fr[0].file);
    else
        ck_assert_str_eq(fr[0].file, obj.path);
    fake_free(f);
}
END_TEST

START_TEST(cxx_names_are_demangled)
{
    fake_t *f = fake_new();
    void *fn = dlsym(RTLD_DEFAULT, "_ZNSt9exceptionD1Ev");
    ck_assert_ptr_nonnull(fn);
    found_t obj;
    uint32_t m = fake_module_of(f, (uintptr_t)fn, &obj);
    /* A return address one past the entry: ip - 1 is the function's entry. */
    uint32_t n = fake_node(f, m, (uintptr_t)fn + 1);
    mt_frame_t fr[8];
    size_t k = mt_capture_frames(&f->cap, n, fr, 8);
    ck_assert_uint_ge(k, 1);
    ck_assert_str_eq(fr[k - 1].function, "std::exception::~exception()");
    fake_free(f);
}
END_TEST

START_TEST(missing_file_gives_module_offset)
{
    fake_t *f = fake_new();
    const char *path = "/nonexistent/memtrace-test/libgone.so.3";
    uint32_t m = fake_module(f, path, 0x7f1200000000ull, (const uint8_t *)"\1\2", 2);
    uint32_t n = fake_node(f, m, 0x7f1200001235ull);
    mt_frame_t fr[4];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "libgone.so.3+0x1234");
    ck_assert_str_eq(fr[0].file, path);
    ck_assert_uint_eq(fr[0].line, 0);
    ck_assert_str_eq(fr[0].module, path);
    ck_assert_int_eq(fr[0].inlined, 0);
    fake_free(f);
}
END_TEST

START_TEST(other_build_id_is_not_trusted)
{
    fake_t *f = fake_new();
    unsigned line = 0;
    uintptr_t ip = plain_caller(&line);
    found_t obj = find_object(ip);
    ck_assert_uint_gt(obj.build_id_len, 0);
    uint8_t other[64];
    memcpy(other, obj.build_id, obj.build_id_len);
    other[0] ^= 0xff;
    uint32_t m1 = fake_module(f, obj.path, obj.bias, other, obj.build_id_len);
    uint32_t m2 = fake_module(f, obj.path, obj.bias, obj.build_id, 4); /* prefix */
    uint32_t m3 = fake_module(f, obj.path, obj.bias, obj.build_id, obj.build_id_len);
    uint32_t n1 = fake_node(f, m1, ip), n2 = fake_node(f, m2, ip);
    uint32_t n3 = fake_node(f, m3, ip);

    char want[600];
    snprintf(want, sizeof want, "%s+0x%" PRIx64, base_name(obj.path),
             (uint64_t)(ip - 1 - obj.bias));
    mt_frame_t fr[4];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n1, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, want);
    ck_assert_str_eq(fr[0].file, obj.path);
    ck_assert_uint_eq(fr[0].line, 0);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n2, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, want);
    /* The right build-id: symbols are trusted again. */
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n3, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "plain_caller");
    ck_assert_uint_eq(fr[0].line, line);
    fake_free(f);
}
END_TEST

START_TEST(unknown_module_and_root)
{
    fake_t *f = fake_new();
    uint32_t n = fake_node(f, UINT32_MAX, 0xdeadbeef);
    uint32_t bad = fake_node(f, 7, 0x1234); /* module index out of range */
    mt_frame_t fr[4];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, n, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "0xdeadbeef");
    ck_assert_str_eq(fr[0].file, "");
    ck_assert_str_eq(fr[0].module, "");
    ck_assert_uint_eq(fr[0].line, 0);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, bad, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "0x1234");
    ck_assert_uint_eq(mt_capture_frames(&f->cap, 0, fr, 4), 0);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, 99, fr, 4), 0);
    fake_free(f);
}
END_TEST

/* Writes len bytes of data to a new temporary file; returns its path. */
static void write_temp(char *path, size_t size, const char *tag,
                       const void *data, size_t len)
{
    snprintf(path, size, "/tmp/mt-sym-%s-XXXXXX", tag);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

START_TEST(weird_modules_do_not_crash)
{
    fake_t *f = fake_new();
    unsigned line;
    uintptr_t ip = plain_caller(&line);
    found_t obj = find_object(ip);
    /* The first 200 bytes of a real ELF file: a valid header, nothing else. */
    uint8_t head[200];
    FILE *exe = fopen(obj.path, "rb");
    ck_assert_ptr_nonnull(exe);
    ck_assert_uint_eq(fread(head, 1, sizeof head, exe), sizeof head);
    fclose(exe);
    char truncated[64], text[64], empty[64], fifo[80];
    write_temp(truncated, sizeof truncated, "trunc", head, sizeof head);
    write_temp(text, sizeof text, "text", "not an ELF file\n", 16);
    write_temp(empty, sizeof empty, "empty", "", 0);
    snprintf(fifo, sizeof fifo, "%s.fifo", empty);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0); /* opening it would block */

    const char *paths[] = {truncated, text, empty, fifo, "/dev/zero", "/tmp",
                           "", "/proc/self/maps"};
    size_t npaths = sizeof paths / sizeof paths[0];
    for (size_t i = 0; i < npaths; i++) {
        uint32_t m = fake_module(f, paths[i], 0x400000, NULL, 0);
        fake_node(f, m, 0x400000 + 0x101 + i);
    }
    for (size_t i = 0; i < npaths; i++) {
        mt_frame_t fr[4];
        ck_assert_uint_eq(mt_capture_frames(&f->cap, (uint32_t)(i + 1), fr, 4), 1);
        char want[128];
        const char *b = base_name(paths[i]);
        snprintf(want, sizeof want, "%s+0x%zx", b[0] ? b : "?", 0x100 + i);
        ck_assert_str_eq(fr[0].function, want);
        ck_assert_str_eq(fr[0].file, paths[i]);
        ck_assert_uint_eq(fr[0].line, 0);
    }
    unlink(truncated);
    unlink(text);
    unlink(empty);
    unlink(fifo);
    fake_free(f);
}
END_TEST

START_TEST(results_are_cached_and_shared)
{
    fake_t *f = fake_new();
    unsigned line;
    uintptr_t ip = plain_caller(&line);
    found_t obj;
    uint32_t m = fake_module_of(f, ip, &obj);
    /* The same file at the same bias recorded twice (dlopen'ed again). */
    uint32_t m2 = fake_module(f, obj.path, obj.bias, obj.build_id, obj.build_id_len);
    uint32_t a = fake_node(f, m, ip), b = fake_node(f, m, ip);
    uint32_t c = fake_node(f, m2, ip);
    mt_frame_t fa[2], fa2[2], fb[2], fc[2];
    ck_assert_uint_eq(mt_capture_frames(&f->cap, a, fa, 2), 1);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, a, fa2, 2), 1);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, b, fb, 2), 1);
    ck_assert_uint_eq(mt_capture_frames(&f->cap, c, fc, 2), 1);
    /* Interned: the very same strings, not equal copies. */
    ck_assert_ptr_eq(fa[0].function, fa2[0].function);
    ck_assert_ptr_eq(fa[0].function, fb[0].function);
    ck_assert_ptr_eq(fa[0].file, fc[0].file);
    ck_assert_str_eq(fc[0].function, "plain_caller");
    ck_assert_uint_eq(fc[0].line, line);
    fake_free(f);
}
END_TEST

START_TEST(many_libc_addresses)
{
    /* Every 64th byte of libc's code as a return address: each gets a
     * frame named from libc, none "module+0x" (libc exports symbols and
     * libc6-dbg adds the static ones). */
    fake_t *f = fake_new();
    size_t count = 1;
    lfind(&count, &count, &count, sizeof count, record_compare);
    found_t obj;
    uint32_t m = fake_module_of(f, lfind_return, &obj);
    uint64_t start = lfind_return & ~(uint64_t)0xffff;
    size_t nodes = 2000;
    for (size_t i = 0; i < nodes; i++)
        fake_node(f, m, start + 64 * i + 1);
    size_t named = 0;
    for (uint32_t n = 1; n <= nodes; n++) {
        mt_frame_t fr[16];
        size_t k = mt_capture_frames(&f->cap, n, fr, 16);
        ck_assert_uint_ge(k, 1);
        ck_assert_str_eq(fr[k - 1].module, obj.path);
        ck_assert_int_eq(fr[k - 1].inlined, 0);
        ck_assert(fr[k - 1].function[0] != '\0');
        named += strstr(fr[k - 1].function, "+0x") == NULL;
    }
    ck_assert_uint_ge(named, nodes * 9 / 10);
    fake_free(f);
}
END_TEST

Suite *mt_test_symbolize_suite(void)
{
    Suite *s = suite_create("symbolize");
    TCase *tc = tcase_create("symbolize");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, caller_of_a_plain_call);
    tcase_add_test(tc, inlined_frames_are_expanded);
    tcase_add_test(tc, libc_frame);
    tcase_add_test(tc, cxx_names_are_demangled);
    tcase_add_test(tc, missing_file_gives_module_offset);
    tcase_add_test(tc, other_build_id_is_not_trusted);
    tcase_add_test(tc, unknown_module_and_root);
    tcase_add_test(tc, weird_modules_do_not_crash);
    tcase_add_test(tc, results_are_cached_and_shared);
    tcase_add_test(tc, many_libc_addresses);
    suite_add_tcase(s, tc);
    return s;
}
