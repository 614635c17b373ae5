/* capture_builder.c: see capture_builder.h. Blocks are built in memory and
 * compressed with the same code the tracer uses (common/capture_write.c). */
#include "capture_builder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/capture_write.h"

/* A growable byte buffer. */
typedef struct cb_buf_s {
    uint8_t *p;
    size_t len, cap;
} cb_buf_t;

enum { CB_NONE = 0 };

struct mt_cb_s {
    FILE *f;
    cb_buf_t block;     /* closed sections of the current block */
    cb_buf_t sec;       /* payload of the open section */
    unsigned sec_type;  /* CB_NONE, MT_SEC_DEFS or MT_SEC_EVENTS */
    uint64_t sec_thread;
    mt_event_state_t st;
    uint32_t next_node;
    uint64_t prev_ip;
    uint64_t max_seq, nevents;
    cb_buf_t out;       /* compressed block */
};

static void cb_die(const char *what)
{
    fprintf(stderr, "capture_builder: %s\n", what);
    abort();
}

static uint8_t *cb_reserve(cb_buf_t *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            cb_die("out of memory");
        b->cap = cap;
    }
    return b->p + b->len;
}

static void cb_append(cb_buf_t *b, const void *data, size_t n)
{
    uint8_t *p = cb_reserve(b, n);
    if (n)
        memcpy(p, data, n);
    b->len += n;
}

static void cb_varint(cb_buf_t *b, uint64_t v)
{
    uint8_t *p = cb_reserve(b, MT_VARINT_MAX);
    b->len += (size_t)(mt__put_varint(p, v) - p);
}

static void cb_str(cb_buf_t *b, const void *s, size_t len)
{
    cb_varint(b, len);
    cb_append(b, s, len);
}

/* Moves the open section (if any) into the block. */
void mt_cb_end_section(mt_cb_t *b)
{
    if (b->sec_type == CB_NONE)
        return;
    uint8_t *p = cb_reserve(&b->block, 1 + MT_VARINT_MAX);
    b->block.len += (size_t)(mt__put_section_header(p, b->sec_type,
                                                    b->sec.len) - p);
    cb_append(&b->block, b->sec.p, b->sec.len);
    b->sec.len = 0;
    b->sec_type = CB_NONE;
}

size_t mt_cb_header_bytes(const mt_cb_header_t *hdr, uint8_t *out, size_t cap)
{
    static const char *const dargv[] = {"prog", "arg1", NULL};
    mt_cb_header_t d = {.pid = 1234, .ppid = 1, .argv = dargv,
                        .exe = "/bin/prog", .tracer_version = "test"};
    if (!hdr)
        hdr = &d;
    cb_buf_t pl = {0};
    uint8_t tmp[2 * MT_VARINT_MAX + 16], *e;
#define CB_HDR_VARINT(tag, v)                                                  \
    do {                                                                       \
        e = mt__hdr_put_varint(tmp, tag, v);                                   \
        cb_append(&pl, tmp, (size_t)(e - tmp));                                \
    } while (0)
    if (hdr->pid)
        CB_HDR_VARINT(MT_HDR_PID, (uint64_t)hdr->pid);
    if (hdr->ppid)
        CB_HDR_VARINT(MT_HDR_PPID, (uint64_t)hdr->ppid);
    if (hdr->parent_pid)
        CB_HDR_VARINT(MT_HDR_PARENT_PID, (uint64_t)hdr->parent_pid);
    if (hdr->root_pid) {
        CB_HDR_VARINT(MT_HDR_ROOT_PID, (uint64_t)hdr->root_pid);
        CB_HDR_VARINT(MT_HDR_ORIGIN, (uint64_t)hdr->origin);
    }
    if (hdr->start_realtime_ns)
        CB_HDR_VARINT(MT_HDR_START_REALTIME, hdr->start_realtime_ns);
    CB_HDR_VARINT(MT_HDR_POINTER_SIZE, hdr->pointer_size ? hdr->pointer_size : 8);
    CB_HDR_VARINT(MT_HDR_PAGE_SIZE, hdr->page_size ? hdr->page_size : 4096);
    if (hdr->rss_interval_ms)
        CB_HDR_VARINT(MT_HDR_RSS_INTERVAL, hdr->rss_interval_ms);
#undef CB_HDR_VARINT
    const char *strs[3] = {hdr->exe, hdr->tracer_version, hdr->python_version};
    const unsigned tags[3] = {MT_HDR_EXE, MT_HDR_TRACER_VERSION,
                              MT_HDR_PYTHON_VERSION};
    for (int i = 0; i < 3; i++) {
        if (!strs[i])
            continue;
        cb_varint(&pl, tags[i]);
        cb_str(&pl, strs[i], strlen(strs[i]));
    }
    if (hdr->argv) {
        cb_buf_t a = {0};
        for (size_t i = 0; hdr->argv[i]; i++)
            cb_append(&a, hdr->argv[i], strlen(hdr->argv[i]) + 1);
        cb_varint(&pl, MT_HDR_ARGV);
        cb_str(&pl, a.p, a.len);
        free(a.p);
    }
    if (cap < MT_FILE_HEADER_SIZE + pl.len)
        cb_die("header buffer too small");
    mt__file_header(out, hdr->flags, (uint32_t)pl.len);
    if (hdr->version)
        mt__put_u16le(out + 8, (uint16_t)hdr->version);
    if (pl.len)
        memcpy(out + MT_FILE_HEADER_SIZE, pl.p, pl.len);
    size_t n = MT_FILE_HEADER_SIZE + pl.len;
    free(pl.p);
    return n;
}

mt_cb_t *mt_cb_begin_raw(const char *path)
{
    mt_cb_t *b = calloc(1, sizeof(*b));
    if (!b)
        cb_die("out of memory");
    b->f = fopen(path, "wb");
    if (!b->f)
        cb_die("cannot create the capture file");
    b->next_node = 1;
    return b;
}

mt_cb_t *mt_cb_begin(const char *path, const mt_cb_header_t *hdr)
{
    mt_cb_t *b = mt_cb_begin_raw(path);
    uint8_t buf[8192];
    mt_cb_raw(b, buf, mt_cb_header_bytes(hdr, buf, sizeof(buf)));
    return b;
}

/* Opens (or continues) a section of type/thread. */
static void cb_section(mt_cb_t *b, unsigned type, uint64_t thread)
{
    if (b->sec_type == type && (type != MT_SEC_EVENTS || b->sec_thread == thread))
        return;
    mt_cb_end_section(b);
    b->sec_type = type;
    b->sec_thread = thread;
    memset(&b->st, 0, sizeof(b->st));
    if (type == MT_SEC_EVENTS)
        cb_varint(&b->sec, thread);
}

void mt_cb_raw_def(mt_cb_t *b, unsigned type, const void *payload, size_t len)
{
    cb_section(b, MT_SEC_DEFS, 0);
    uint8_t *p = cb_reserve(&b->sec, 1 + MT_VARINT_MAX);
    b->sec.len += (size_t)(mt__put_def_header(p, type, len) - p);
    cb_append(&b->sec, payload, len);
}

void mt_cb_raw_section(mt_cb_t *b, unsigned type, const void *payload,
                       size_t len)
{
    mt_cb_end_section(b);
    uint8_t *p = cb_reserve(&b->block, 1 + MT_VARINT_MAX);
    b->block.len += (size_t)(mt__put_section_header(p, type, len) - p);
    cb_append(&b->block, payload, len);
}

/* Builds a record payload in a scratch buffer, then frames it. */
#define CB_DEF(b, type, body)                                                  \
    do {                                                                       \
        cb_buf_t r_ = {0};                                                     \
        cb_buf_t *r = &r_;                                                     \
        body;                                                                  \
        mt_cb_raw_def(b, type, r_.p, r_.len);                                  \
        free(r_.p);                                                            \
    } while (0)

uint32_t mt_cb_node(mt_cb_t *b, uint32_t parent, uint64_t ip)
{
    CB_DEF(b, MT_DEF_NODE, {
        cb_varint(r, parent);
        cb_varint(r, mt__zigzag((int64_t)(ip - b->prev_ip)));
    });
    b->prev_ip = ip;
    return b->next_node++;
}

void mt_cb_module(mt_cb_t *b, uint64_t id, uint64_t bias, const char *path,
                  const void *build_id, size_t build_id_len, size_t nseg,
                  const uint64_t *segs)
{
    CB_DEF(b, MT_DEF_MODULE_LOAD, {
        cb_varint(r, id);
        cb_varint(r, bias);
        cb_str(r, path, strlen(path));
        cb_str(r, build_id, build_id_len);
        cb_varint(r, nseg);
        for (size_t i = 0; i < 2 * nseg; i++)
            cb_varint(r, segs[i]);
    });
}

void mt_cb_module_unload(mt_cb_t *b, uint64_t id)
{
    CB_DEF(b, MT_DEF_MODULE_UNLOAD, cb_varint(r, id));
}

void mt_cb_thread(mt_cb_t *b, uint64_t index, uint64_t tid, const char *name)
{
    CB_DEF(b, MT_DEF_THREAD, {
        cb_varint(r, index);
        cb_varint(r, tid);
        cb_str(r, name, strlen(name));
    });
}

void mt_cb_tick(mt_cb_t *b, uint64_t seq, uint64_t ns, uint64_t rss)
{
    CB_DEF(b, MT_DEF_TICK, {
        cb_varint(r, seq);
        cb_varint(r, ns);
        cb_varint(r, rss);
    });
}

void mt_cb_stage(mt_cb_t *b, const mt_cb_stage_t *st)
{
    const char *name = st->name ? st->name : "";
    CB_DEF(b, MT_DEF_STAGE, {
        cb_varint(r, st->kind);
        cb_varint(r, st->seq);
        cb_varint(r, st->thread);
        cb_varint(r, st->ns);
        cb_varint(r, st->cpu);
        cb_varint(r, st->tcpu);
        cb_varint(r, st->rss);
        cb_varint(r, st->id);
        cb_str(r, name, strlen(name));
    });
}

void mt_cb_note(mt_cb_t *b, const char *msg)
{
    CB_DEF(b, MT_DEF_NOTE, cb_str(r, msg, strlen(msg)));
}

void mt_cb_child(mt_cb_t *b, uint64_t pid)
{
    CB_DEF(b, MT_DEF_CHILD, cb_varint(r, pid));
}

void mt_cb_trailer(mt_cb_t *b, uint64_t ns, uint64_t peak_rss,
                   uint64_t events, uint64_t flags)
{
    if (events == MT_CB_NEXT)
        events = b->nevents;
    CB_DEF(b, MT_DEF_TRAILER, {
        cb_varint(r, ns);
        cb_varint(r, peak_rss);
        cb_varint(r, events);
        cb_varint(r, flags);
    });
}

uint64_t mt_cb_event(mt_cb_t *b, uint64_t thread, unsigned type, uint64_t seq,
                     uint64_t addr, uint64_t size, uint32_t stack,
                     uint64_t old, uint64_t old_size)
{
    if (seq == MT_CB_NEXT)
        seq = b->max_seq + 1;
    if (seq > b->max_seq)
        b->max_seq = seq;
    b->nevents++;
    cb_section(b, MT_SEC_EVENTS, thread);
    uint8_t *p = cb_reserve(&b->sec, MT_MAX_EVENT_SIZE);
    b->sec.len += (size_t)(mt__encode_event(p, &b->st, type, seq, addr, size,
                                            stack, old, old_size) - p);
    return seq;
}

uint64_t mt_cb_malloc(mt_cb_t *b, uint64_t thread, uint64_t seq,
                      uint64_t addr, uint64_t size, uint32_t stack)
{
    return mt_cb_event(b, thread, MT_EV_MALLOC, seq, addr, size, stack, 0, 0);
}

uint64_t mt_cb_free(mt_cb_t *b, uint64_t thread, uint64_t seq, uint64_t addr)
{
    return mt_cb_event(b, thread, MT_EV_FREE, seq, addr, 0, 0, 0, 0);
}

uint64_t mt_cb_realloc(mt_cb_t *b, uint64_t thread, uint64_t seq,
                       uint64_t old, uint64_t addr, uint64_t size,
                       uint32_t stack)
{
    return mt_cb_event(b, thread, MT_EV_REALLOC, seq, addr, size, stack, old,
                       0);
}

void mt_cb_sync(mt_cb_t *b, uint64_t w)
{
    if (w == MT_CB_NEXT)
        w = b->max_seq + 1;
    uint8_t tmp[MT_VARINT_MAX];
    mt_cb_raw_section(b, MT_SEC_SYNC, tmp, (size_t)(mt__put_varint(tmp, w) - tmp));
}

size_t mt_cb_block_len(const mt_cb_t *b)
{
    size_t open = b->sec_type == CB_NONE ? 0 : b->sec.len + 1 + MT_VARINT_MAX;
    return b->block.len + open;
}

long mt_cb_offset(mt_cb_t *b)
{
    return ftell(b->f);
}

void mt_cb_flush(mt_cb_t *b)
{
    mt_cb_end_section(b);
    if (!b->block.len)
        return;
    size_t bound = mt__block_bound(b->block.len);
    uint8_t *out = cb_reserve(&b->out, bound);
    long n = mt__block_compress(b->block.p, b->block.len, out, bound, NULL);
    if (n < 0)
        cb_die("block compression failed");
    mt_cb_raw(b, out, (size_t)n);
    b->block.len = 0;
}

void mt_cb_raw(mt_cb_t *b, const void *data, size_t len)
{
    if (len && fwrite(data, 1, len, b->f) != len)
        cb_die("write failed");
}

long mt_cb_finish(mt_cb_t *b)
{
    mt_cb_flush(b);
    long size = ftell(b->f);
    if (fclose(b->f) != 0)
        cb_die("close failed");
    free(b->block.p);
    free(b->sec.p);
    free(b->out.p);
    free(b);
    return size;
}

uint8_t *mt_cb_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        cb_die("cannot open file to read");
    cb_buf_t buf = {0};
    size_t n;
    do {
        uint8_t *p = cb_reserve(&buf, 65536);
        n = fread(p, 1, 65536, f);
        buf.len += n;
    } while (n > 0);
    fclose(f);
    *len = buf.len;
    if (!buf.p)
        buf.p = malloc(1);
    return buf.p;
}

void mt_cb_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        cb_die("cannot write file");
}
