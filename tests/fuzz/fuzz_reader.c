/* fuzz_reader.c: the libFuzzer target for the capture reader. Each input
 * becomes a capture file in a memfd that mt_capture_load() reads through
 * /proc/self/fd/N; on success every result the reports would use is walked,
 * so ASan/UBSan see reads of whatever the reader built.
 *
 * Two kinds of input, so the fuzzer gets past LZ4's content checksum:
 *  - a whole file: an input that starts with the capture magic is written
 *    as it is (exercises the header, block framing, LZ4 and truncation);
 *  - raw blocks: any other input is byte 0 = header flags (bits 0-3),
 *    "cut" (bit 4: drop the last byte1 bytes of the file) and aggregate
 *    (bit 5: MT_FLAG_AGGREGATE), then records of
 *    u16 LE length + that many bytes of decompressed block content. The
 *    target writes a valid file header and compresses each record into a
 *    block with mt__block_compress(), so mutations reach the section,
 *    definition record and event parsers.
 *
 * mt_capture_frames() is called for Python frames only: for a native frame
 * it would open the module files the input names.
 *
 * Seeds, tests/fuzz/corpus/NAME.seed (not .bin, which .gitignore drops): whole
 * files (tiny.seed is the worked example of docs/FORMAT.md; two-threads,
 * python; truncated, header-only, version 2, unknown flag) and raw-*.seed,
 * the same contents in raw-blocks form (raw-aggregate.seed: two checkpoints,
 * the second torn). scripts/fuzz runs this target. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "common/format.h"
#include "memtrace/memtrace.h"
#include "memtrace/reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The memfd, reused by every run (one process runs one input at a time).
 * Each open of /proc/self/fd/N is a new file description at offset 0. */
static int mt_fuzz_fd = -1;

/* Fails loudly: a broken invariant is a reader bug even without a sanitizer
 * report, and abort() makes libFuzzer save the input. */
#define MT_FUZZ_CHECK(cond)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_reader: invariant broken: %s (%s:%d)\n",    \
                    #cond, __FILE__, __LINE__);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int mt_fuzz_write_all(const uint8_t *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(mt_fuzz_fd, p, n, off);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* The synthesized file, kept across runs and grown as needed. */
static uint8_t *mt_fuzz_buf;
static size_t mt_fuzz_cap;

/* Builds a file from "raw blocks" input (see the top of this file) into
 * mt_fuzz_buf; returns its size, or 0 when it could not be built. */
static size_t mt_fuzz_synthesize(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = (data[0] & 0x0f) | (data[0] & 0x20 ? MT_FLAG_AGGREGATE : 0);
    int cut = (data[0] & 0x10) != 0;
    size_t cut_len = cut && size > 1 ? data[1] : 0;
    const uint8_t *p = data + 1 + (cut ? 1 : 0), *end = data + size;
    if (p > end)
        p = end;

    /* An LZ4 frame of n bytes (one frame per record, content size and
     * checksum) takes at most n + n/255 + 64 bytes; records are at least two
     * bytes long, so size/2 + 1 of them at most. */
    size_t need = 256 + size + size / 128 + (size / 2 + 1) * 96;
    if (need > mt_fuzz_cap) {
        uint8_t *nb = realloc(mt_fuzz_buf, need);
        if (!nb)
            return 0;
        mt_fuzz_buf = nb;
        mt_fuzz_cap = need;
    }
    uint8_t *buf = mt_fuzz_buf;
    uint8_t *q = buf + MT_FILE_HEADER_SIZE, *payload = q;
    q = mt__hdr_put_varint(q, MT_HDR_PID, 1234);
    q = mt__hdr_put_varint(q, MT_HDR_POINTER_SIZE, 8);
    q = mt__hdr_put_bytes(q, MT_HDR_ARGV, "fuzz", 5);
    mt__file_header(buf, flags, (uint32_t)(q - payload));
    while (p < end) {
        size_t len = 0;
        if (end - p >= 2) {
            len = mt__get_u16le(p);
            p += 2;
        } else {
            p = end;
        }
        if (len > (size_t)(end - p))
            len = (size_t)(end - p);
        long n = mt__block_compress(p, len, q, mt_fuzz_cap - (size_t)(q - buf),
                                    NULL);
        MT_FUZZ_CHECK(n > 0); /* the bound above is wrong otherwise */
        q += n;
        p += len;
    }
    size_t total = (size_t)(q - buf);
    return cut_len < total ? total - cut_len : total;
}

/* Reads everything the reports read. */
static void mt_fuzz_walk(mt_capture_t *cap, int windowed)
{
    const mt_header_t *h = mt_capture_header(cap);
    MT_FUZZ_CHECK(h != NULL);
    MT_FUZZ_CHECK(h->format_version == MT_FORMAT_VERSION);
    MT_FUZZ_CHECK((h->flags & ~MT_FLAGS_KNOWN) == 0);
    size_t sum = 0;
    for (int i = 0; i < h->argc; i++)
        sum += strlen(h->argv[i]);
    MT_FUZZ_CHECK(h->argv[h->argc] == NULL);
    sum += strlen(h->exe) + strlen(h->tracer_version);
    if (h->python_version)
        sum += strlen(h->python_version);
    sum += strlen(mt_capture_path(cap));
    const char *warning = mt_capture_warning(cap);
    if (warning)
        sum += strlen(warning);

    const mt_totals_t *t = mt_capture_totals(cap);
    MT_FUZZ_CHECK(t->current_bytes <= t->peak_bytes);
    /* In a window, the heap and the frees include what came before it. */
    MT_FUZZ_CHECK(windowed || t->current_count <= t->total_allocations);
    MT_FUZZ_CHECK(windowed || t->total_frees <= t->total_allocations);
    const mt_window_t *w = mt_capture_window(cap);
    MT_FUZZ_CHECK(w->active == windowed);
    MT_FUZZ_CHECK(!windowed || w->start_bytes <= t->peak_bytes);
    uint64_t hist = 0;
    for (int i = 0; i < 65; i++)
        hist += t->size_histogram[i];
    for (int i = 0; i < MT_ALLOCATOR_COUNT; i++)
        sum += (size_t)t->by_allocator[i].count;

    size_t nodes = mt_capture_node_count(cap);
    MT_FUZZ_CHECK(nodes >= 1);
    const mt_node_t *node = mt_capture_nodes(cap);
    const mt_node_stats_t *stats = mt_capture_node_stats(cap);
    size_t modules = mt_capture_module_count(cap);
    for (size_t i = 1; i < nodes; i++) {
        MT_FUZZ_CHECK(node[i].parent < i);
        MT_FUZZ_CHECK(node[i].module == UINT32_MAX || node[i].module < modules);
        sum += (size_t)(stats[i].total.bytes + stats[i].peak.count +
                        stats[i].leaked.bytes + stats[i].temporary.count);
        if (node[i].ip & MT_NODE_PYTHON) {
            mt_frame_t fr[4];
            size_t n = mt_capture_frames(cap, (uint32_t)i, fr, 4);
            MT_FUZZ_CHECK(n >= 1 && n <= 4);
            for (size_t k = 0; k < n; k++)
                sum += strlen(fr[k].function) + strlen(fr[k].file) +
                       strlen(fr[k].module) + fr[k].line;
        }
    }
    sum += (size_t)stats[0].total.count;
    const mt_module_t *mod = mt_capture_modules(cap);
    for (size_t i = 0; i < modules; i++) {
        sum += strlen(mod[i].path);
        for (size_t b = 0; b < mod[i].build_id_len; b++)
            sum += mod[i].build_id[b];
    }
    size_t samples = mt_capture_sample_count(cap);
    const mt_sample_t *s = mt_capture_samples(cap);
    for (size_t i = 0; i < samples; i++)
        sum += (size_t)(s[i].time_ns + s[i].heap_bytes + s[i].rss_bytes);
    /* Keep the reads: the optimizer must not drop them. */
    __asm__ volatile("" : : "r"(sum), "r"(hist) : "memory");
}

/* The quick pass of a stage window (stages_only) finds the stages the
 * full read found, at the same places; the window of one of them (picked
 * by pick) always reads: its edges are stage records of the file. */
static void mt_fuzz_stage_window(const char *path, const mt_capture_t *full,
                                 int aggregate, unsigned pick)
{
    char err[512];
    mt_load_opts_t o = {.stages_only = 1};
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    MT_FUZZ_CHECK(rc == 0);
    size_t n = mt_capture_stage_count(cap);
    MT_FUZZ_CHECK(n == mt_capture_stage_count(full));
    const mt_stage_t *s = mt_capture_stages(cap), *f = mt_capture_stages(full);
    for (size_t i = 0; i < n; i++) {
        MT_FUZZ_CHECK(strcmp(s[i].name, f[i].name) == 0);
        MT_FUZZ_CHECK(s[i].first_seq == f[i].first_seq);
        MT_FUZZ_CHECK(s[i].end_seq == f[i].end_seq);
        MT_FUZZ_CHECK(s[i].calls == f[i].calls);
    }
    uint64_t from = n ? s[pick % n].first_seq : 0;
    uint64_t end = n ? s[pick % n].end_seq : 0;
    mt_capture_free(cap);
    if (!n)
        return;
    o = (mt_load_opts_t){.window = 1, .to_ns = UINT64_MAX, .from_seq = from,
                         .to_seq = end == UINT64_MAX ? 0 : end};
    cap = NULL;
    rc = mt_capture_load(path, &o, &cap, err, sizeof err);
    MT_FUZZ_CHECK(rc == 0 || (aggregate && rc == MT_EINVAL));
    if (rc == 0) {
        mt_fuzz_walk(cap, 1);
        mt_capture_free(cap);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mt_fuzz_fd < 0) {
        mt_fuzz_fd = memfd_create("mt-fuzz-capture", MFD_CLOEXEC);
        if (mt_fuzz_fd < 0) {
            perror("fuzz_reader: memfd_create");
            abort();
        }
    }
    const uint8_t *file = data;
    size_t file_len = size;
    if (size < MT_MAGIC_SIZE || memcmp(data, MT_MAGIC, MT_MAGIC_SIZE) != 0) {
        file_len = mt_fuzz_synthesize(data, size);
        if (!file_len)
            return 0;
        file = mt_fuzz_buf;
    }
    if (ftruncate(mt_fuzz_fd, 0) != 0 ||
        mt_fuzz_write_all(file, file_len, 0) != 0) {
        perror("fuzz_reader: writing the memfd");
        abort();
    }

    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", mt_fuzz_fd);
    memset(err, 0x5a, sizeof err); /* an unterminated errbuf shows below */
    mt_load_opts_t opts = {0};
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, &opts, &cap, err, sizeof err);
    if (rc == 0) {
        MT_FUZZ_CHECK(cap != NULL);
        mt_fuzz_walk(cap, 0);
        /* An aggregate capture has no events to take a window of: the
         * reader refuses the window (MT_EINVAL, with a message). */
        int aggregate = (mt_capture_header(cap)->flags & MT_FLAG_AGGREGATE) != 0;
        mt_fuzz_stage_window(path, cap, aggregate, data[size / 2]);
        mt_capture_free(cap);
        /* Again through a window whose edges come from the input. */
        uint64_t a = data[size / 2], b = data[size - 1];
        opts.window = 1;
        opts.from_ns = (a & 0x7f) * (a & 0x80 ? 1000000 : 1);
        opts.to_ns = b == 0xff ? UINT64_MAX : opts.from_ns + b * 1000001;
        if (b & 1) { /* edges by event seq instead */
            opts.from_seq = a;
            opts.to_seq = b == 0xff ? 0 : a + (b >> 1);
        }
        cap = NULL;
        rc = mt_capture_load(path, &opts, &cap, err, sizeof err);
        MT_FUZZ_CHECK(rc == 0 || rc == MT_ERANGE ||
                      (aggregate && rc == MT_EINVAL));
        if (rc == 0) {
            mt_fuzz_walk(cap, 1);
            mt_capture_free(cap);
        }
    } else {
        /* reader.h sets *out on success only; a failed load owns nothing. */
        MT_FUZZ_CHECK(rc < 0);
        MT_FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        MT_FUZZ_CHECK(err[0] != '\0');
    }
    return 0;
}
