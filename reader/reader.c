/* reader.c: mt_capture_load() and the capture accessors. Reads the file
 * header, then streams the blocks once: each LZ4 frame is decompressed into
 * one reusable buffer, definition records are applied at once, and events
 * are handed to replay.c, which orders them by seq and rebuilds the heap.
 *
 * Damage policy: anything wrong with the file header, or a block that
 * decompressed cleanly but holds a bad record, is an error. A file that
 * ends inside a block, or a block whose frame fails to decompress (e.g. a
 * checksum mismatch), ends the read: what came before is kept and the load
 * succeeds with a warning, since that is what a killed program leaves. A
 * zero-filled block header counts as a cut (a crash can leave a zero tail).
 * An event whose stack node was never defined is corrupt (MT_ECORRUPT), not
 * charged to the root: writers define nodes before the events using them. */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"

/* ---- Messages ------------------------------------------------------------ */

int mt__load_error(mt_loader_t *ld, int rc, const char *fmt, ...)
{
    if (ld->failed)
        return rc;
    ld->failed = 1;
    if (ld->errbuf && ld->errlen) {
        int n = snprintf(ld->errbuf, ld->errlen, "%s: ", ld->name);
        if (n >= 0 && (size_t)n < ld->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ld->errbuf + n, ld->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

int mt__load_warn(mt_loader_t *ld, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *old = ld->cap->warning;
    size_t ol = old ? strlen(old) : 0, ml = strlen(msg);
    char *w = malloc(ol + 2 + ml + 1);
    if (!w)
        return MT_ENOMEM; /* the warning is lost; the data is not */
    if (old) {
        memcpy(w, old, ol);
        memcpy(w + ol, "; ", 2);
        ol += 2;
    }
    memcpy(w + ol, msg, ml + 1);
    free(old);
    ld->cap->warning = w;
    return 0;
}

/* ---- Input: a file descriptor or a memory buffer ---------------------- */

typedef struct mt_src_s {
    int fd;              /* -1: read from mem */
    const uint8_t *mem;
    uint64_t size;       /* total size; UINT64_MAX when unknown (a pipe) */
    uint64_t pos;        /* bytes consumed */
    uint8_t *buf;        /* fd reads land here */
    size_t cap;
} mt_src_t;

/* Reads up to len bytes; *out points at them (valid until the next read)
 * and *got says how many there were (fewer only at end of file). */
static int src_read(mt_src_t *s, size_t len, const uint8_t **out, size_t *got)
{
    if (s->fd < 0) {
        uint64_t avail = s->size - s->pos;
        size_t n = len < avail ? len : (size_t)avail;
        *out = n ? s->mem + s->pos : NULL;
        *got = n;
        s->pos += n;
        return 0;
    }
    if (len > s->cap) {
        uint8_t *b = realloc(s->buf, len);
        if (!b)
            return MT_ENOMEM;
        s->buf = b;
        s->cap = len;
    }
    size_t n = 0;
    while (n < len) {
        ssize_t r = read(s->fd, s->buf + n, len - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = s->buf;
    *got = n;
    s->pos += n;
    return 0;
}

/* ---- Progress ----------------------------------------------------------- */

typedef struct mt_progress_s {
    int on;            /* asked for, stderr is a terminal, size known */
    int shown;
    double start, last;
    double after;      /* seconds of reading before the first line */
} mt_progress_t;

/* 1 s, or MEMTRACE_PROGRESS_AFTER seconds (for tests, which cannot wait on
 * a machine's speed to see the progress line). */
static double progress_after(void)
{
    const char *s = getenv("MEMTRACE_PROGRESS_AFTER");
    char *end;
    double v = s && *s ? strtod(s, &end) : 1.0;
    return s && *s && *end == 0 && v >= 0 && v < 3600 ? v : 1.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress_tick(mt_progress_t *pg, const mt_loader_t *ld,
                          const mt_src_t *src)
{
    if (!pg->on)
        return;
    double t = now_s();
    if (t - pg->start < pg->after || (pg->shown && t - pg->last < 0.5))
        return;
    pg->last = t;
    pg->shown = 1;
    unsigned pct = src->size ? (unsigned)(src->pos * 100 / src->size) : 100;
    fprintf(stderr, "\rmemtrace: reading %s: %u%%", ld->name, pct);
    fflush(stderr);
}

static void progress_end(mt_progress_t *pg)
{
    if (pg->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

/* ---- Record fields -------------------------------------------------------- */

/* A cursor over one record; any read past its end sets bad. */
typedef struct mt_cur_s {
    const uint8_t *p, *end;
    int bad;
} mt_cur_t;

static uint64_t cur_varint(mt_cur_t *c)
{
    uint64_t v = 0;
    if (!c->bad && mt__get_varint(&c->p, c->end, &v))
        c->bad = 1;
    return c->bad ? 0 : v;
}

/* A string field: varint length, bytes. */
static const uint8_t *cur_str(mt_cur_t *c, size_t *len)
{
    uint64_t n = cur_varint(c);
    if (c->bad || n > (uint64_t)(c->end - c->p)) {
        c->bad = 1;
        *len = 0;
        return NULL;
    }
    const uint8_t *s = c->p;
    c->p += n;
    *len = (size_t)n;
    return s;
}

/* ---- The file header ---------------------------------------------------- */

/* Appends a string of n bytes (stopping at a NUL) to the header storage. */
static const char *hdr_str(char **store, const uint8_t *s, size_t n)
{
    char *out = *store;
    size_t k = 0;
    while (k < n && s[k])
        k++;
    memcpy(out, s, k);
    out[k] = 0;
    *store = out + k + 1;
    return out;
}

static int hdr_argv(mt_loader_t *ld, char **store, const uint8_t *s, size_t n)
{
    mt_header_t *h = &ld->cap->header;
    size_t argc = 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || i + 1 == n)
            argc++;
    const char **av = calloc(argc + 1, sizeof(*av));
    if (!av)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    size_t a = 0, i = 0;
    while (i < n) {
        size_t k = i;
        while (k < n && s[k])
            k++;
        av[a++] = hdr_str(store, s + i, k - i);
        i = k + 1;
    }
    free(ld->cap->argv_storage);
    ld->cap->argv_storage = av;
    h->argv = av;
    h->argc = (int)a;
    return 0;
}

/* A varint header field; values over 32 bits are corrupt for unsigned ones. */
static int hdr_field(mt_loader_t *ld, char **store, uint64_t tag,
                     const uint8_t *v, size_t n, uint64_t off)
{
    mt_header_t *h = &ld->cap->header;
    mt_cur_t c = {v, v + n, 0};
    uint64_t x = 0;
    int is_varint = tag == MT_HDR_PID || tag == MT_HDR_PPID ||
                    tag == MT_HDR_START_REALTIME || tag == MT_HDR_POINTER_SIZE ||
                    tag == MT_HDR_PAGE_SIZE || tag == MT_HDR_RSS_INTERVAL ||
                    tag == MT_HDR_PARENT_PID || tag == MT_HDR_ROOT_PID ||
                    tag == MT_HDR_ORIGIN;
    if (is_varint) {
        x = cur_varint(&c);
        int narrow = tag == MT_HDR_POINTER_SIZE || tag == MT_HDR_PAGE_SIZE ||
                     tag == MT_HDR_RSS_INTERVAL || tag == MT_HDR_ORIGIN;
        if (c.bad || (narrow && x > UINT32_MAX))
            return mt__load_error(ld, MT_ECORRUPT,
                                  "corrupt header: bad value of field %llu at "
                                  "offset %llu", (unsigned long long)tag,
                                  (unsigned long long)off);
    }
    switch (tag) {
    case MT_HDR_PID: h->pid = (int64_t)x; break;
    case MT_HDR_PPID: h->ppid = (int64_t)x; break;
    case MT_HDR_PARENT_PID: h->parent_pid = (int64_t)x; break;
    case MT_HDR_ROOT_PID: h->root_pid = (int64_t)x; break;
    case MT_HDR_ORIGIN: h->origin = (int)x; break;
    case MT_HDR_START_REALTIME: h->start_realtime_ns = x; break;
    case MT_HDR_POINTER_SIZE: h->pointer_size = (unsigned)x; break;
    case MT_HDR_PAGE_SIZE: h->page_size = (unsigned)x; break;
    case MT_HDR_RSS_INTERVAL: h->rss_interval_ms = (unsigned)x; break;
    case MT_HDR_ARGV: return hdr_argv(ld, store, v, n);
    case MT_HDR_EXE: h->exe = hdr_str(store, v, n); break;
    case MT_HDR_TRACER_VERSION: h->tracer_version = hdr_str(store, v, n); break;
    case MT_HDR_PYTHON_VERSION: h->python_version = hdr_str(store, v, n); break;
    default: break; /* unknown tags are skipped */
    }
    return 0;
}

static int parse_header(mt_loader_t *ld, mt_src_t *src)
{
    mt_header_t *h = &ld->cap->header;
    const uint8_t *b;
    size_t got;
    int rc = src_read(src, MT_FILE_HEADER_SIZE, &b, &got);
    if (rc)
        return mt__load_error(ld, rc, "cannot read: %s", mt_strerror(rc));
    if (got == 0)
        return mt__load_error(ld, MT_EBADMAGIC,
                              "not a memtrace capture (file is empty)");
    if (memcmp(b, MT_MAGIC, got < MT_MAGIC_SIZE ? got : MT_MAGIC_SIZE))
        return mt__load_error(ld, MT_EBADMAGIC,
                              "not a memtrace capture (unknown magic)");
    if (got < MT_FILE_HEADER_SIZE)
        return mt__load_error(ld, MT_ETRUNCATED,
                              "capture is truncated: the file ends inside "
                              "its %d-byte header at offset %zu",
                              MT_FILE_HEADER_SIZE, got);
    unsigned version = mt__get_u16le(b + 8), flags = mt__get_u16le(b + 10);
    uint32_t plen = mt__get_u32le(b + 12);
    if (version != MT_FORMAT_VERSION)
        return mt__load_error(ld, MT_EVERSION,
                              "unsupported capture format version %u (this "
                              "reader reads %d)", version, MT_FORMAT_VERSION);
    if (flags & ~MT_FLAGS_KNOWN)
        return mt__load_error(ld, MT_ERESERVED,
                              "reserved header flag bits set: 0x%04x at "
                              "offset 10", flags & ~MT_FLAGS_KNOWN);
    if (plen > MT_MAX_HEADER_PAYLOAD)
        return mt__load_error(ld, MT_ETOOBIG,
                              "header payload of %u bytes is over the limit "
                              "of %u at offset 12", plen, MT_MAX_HEADER_PAYLOAD);
    h->format_version = version;
    h->flags = flags;
    h->exe = h->tracer_version = "";
    h->argv = ld->cap->argv_storage = calloc(1, sizeof(char *));
    /* Every field costs at least 2 bytes of tag and length, more than the
     * NUL each string gains, so plen + 2 bytes hold all the strings. */
    char *store = ld->cap->header_strings = malloc((size_t)plen + 2);
    if (!store || !ld->cap->argv_storage)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    if (plen == 0)
        return 0;
    if ((rc = src_read(src, plen, &b, &got)))
        return mt__load_error(ld, rc, "cannot read: %s", mt_strerror(rc));
    if (got < plen)
        return mt__load_error(ld, MT_ETRUNCATED,
                              "capture is truncated: the file ends inside its "
                              "header (%u bytes of payload, %zu present) at "
                              "offset %zu", plen, got,
                              (size_t)MT_FILE_HEADER_SIZE + got);
    mt_cur_t c = {b, b + plen, 0};
    while (c.p < c.end) {
        uint64_t off = MT_FILE_HEADER_SIZE + (uint64_t)(c.p - b);
        uint64_t tag = cur_varint(&c);
        size_t n;
        const uint8_t *v = cur_str(&c, &n);
        if (c.bad)
            return mt__load_error(ld, MT_ECORRUPT,
                                  "corrupt header: field cut short at offset "
                                  "%llu", (unsigned long long)off);
        if ((rc = hdr_field(ld, &store, tag, v, n, off)))
            return rc;
    }
    return 0;
}

/* ---- Definition records ---------------------------------------------------- */

/* The loaded module whose range holds x, or UINT32_MAX. */
static uint32_t module_at(const mt_loader_t *ld, uint64_t x)
{
    uint32_t t = mt__omap_floor(&ld->loaded, x);
    if (t == MT_OMAP_NIL || x >= ld->loaded.n[t].a)
        return UINT32_MAX;
    return (uint32_t)ld->loaded.n[t].b;
}

static void module_unload(mt_loader_t *ld, uint64_t id)
{
    uint32_t m;
    if (mt__idmap_get(&ld->module_ids, id, &m) || m == UINT32_MAX)
        return; /* never loaded, or gone already: nothing to do */
    uint64_t lo = ld->cap->modules[m].lo;
    uint32_t t = mt__omap_floor(&ld->loaded, lo);
    /* It may have been displaced by a later module at the same address. */
    if (t != MT_OMAP_NIL && ld->loaded.n[t].key == lo &&
        ld->loaded.n[t].b == m)
        mt__omap_erase(&ld->loaded, lo);
    mt__idmap_put(&ld->module_ids, id, UINT32_MAX); /* the key exists */
}

static int def_corrupt(mt_loader_t *ld, const char *what, uint64_t off)
{
    return mt__load_error(ld, MT_ECORRUPT,
                          "corrupt record: %s at byte %llu of the block at "
                          "offset %llu", what, (unsigned long long)off,
                          (unsigned long long)ld->block_off);
}

static int def_node(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    mt_capture_t *cap = ld->cap;
    uint64_t parent = cur_varint(c), dz = cur_varint(c);
    if (c->bad)
        return def_corrupt(ld, "node record cut short", off);
    size_t id = cap->node_count;
    if (parent >= id)
        return def_corrupt(ld, "node's parent is not an earlier node", off);
    if (id >= MT_MAX_NODES)
        return mt__load_error(ld, MT_ETOOBIG, "more than %u trace-tree "
                              "nodes in block at offset %llu", MT_MAX_NODES,
                              (unsigned long long)ld->block_off);
    if (mt__replay_reserve_nodes(ld, id + 1))
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    uint64_t ip = ld->prev_ip + (uint64_t)mt__unzigzag(dz);
    ld->prev_ip = ip;
    /* A Python frame (top bit) lives in no module. */
    uint32_t module = ip && !(ip & MT_NODE_PYTHON) ? module_at(ld, ip - 1)
                                                    : UINT32_MAX;
    cap->nodes[id] = (mt_node_t){(uint32_t)parent, module, ip};
    cap->node_count = id + 1;
    return 0;
}

static int module_add(mt_loader_t *ld, uint64_t id, mt_module_t *m)
{
    mt_capture_t *cap = ld->cap;
    if (cap->module_count == cap->module_cap) {
        size_t nc = cap->module_cap ? cap->module_cap * 2 : 16;
        mt_module_t *mods = realloc(cap->modules, nc * sizeof(*mods));
        if (!mods)
            return MT_ENOMEM;
        cap->modules = mods;
        cap->module_cap = nc;
    }
    uint32_t idx = (uint32_t)cap->module_count;
    if (mt__idmap_put(&ld->module_ids, id, idx))
        return MT_ENOMEM;
    cap->modules[cap->module_count++] = *m;
    if (m->hi > m->lo) {
        mt__omap_erase(&ld->loaded, m->lo); /* a stale module there goes */
        if (mt__omap_insert(&ld->loaded, m->lo, m->hi, idx) == MT_OMAP_NIL) {
            cap->module_count--; /* the caller frees path and build id */
            mt__idmap_put(&ld->module_ids, id, UINT32_MAX);
            return MT_ENOMEM;
        }
    }
    return 0;
}

static int def_module(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    uint64_t id = cur_varint(c), bias = cur_varint(c);
    size_t plen, blen;
    const uint8_t *path = cur_str(c, &plen), *bid = cur_str(c, &blen);
    uint64_t nseg = cur_varint(c);
    if (!c->bad && nseg > (uint64_t)(c->end - c->p) / 2)
        c->bad = 1;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t i = 0; i < nseg && !c->bad; i++) {
        uint64_t s = bias + cur_varint(c), len = cur_varint(c), e;
        if (__builtin_add_overflow(s, len, &e))
            return def_corrupt(ld, "module segment wraps around", off);
        if (s < lo)
            lo = s;
        if (e > hi)
            hi = e;
    }
    if (c->bad)
        return def_corrupt(ld, "module record cut short", off);
    if (lo > hi)
        lo = hi = 0;
    module_unload(ld, id); /* a reused id replaces the old module */
    if (ld->cap->module_count >= UINT32_MAX - 1)
        return mt__load_error(ld, MT_ETOOBIG, "too many modules in block at "
                              "offset %llu", (unsigned long long)ld->block_off);
    mt_module_t m = {.bias = bias, .lo = lo, .hi = hi, .build_id_len = blen};
    char *p = malloc(plen + 1);
    uint8_t *b = blen ? malloc(blen) : NULL;
    if (!p || (blen && !b)) {
        free(p);
        free(b);
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    }
    char *store = p;
    m.path = hdr_str(&store, path, plen);
    if (blen)
        memcpy(b, bid, blen);
    m.build_id = b;
    if (module_add(ld, id, &m)) {
        free((char *)m.path);
        free(b);
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    }
    return 0;
}

static int def_trailer(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    uint64_t ns = cur_varint(c), rss = cur_varint(c);
    (void)cur_varint(c); /* events written: informative */
    uint64_t flags = cur_varint(c);
    if (c->bad)
        return def_corrupt(ld, "trailer record cut short", off);
    ld->have_trailer = 1;
    ld->trailer_ns = ns;
    ld->trailer_rss = rss;
    if (flags & MT_TRAILER_EVENTS_LOST)
        ld->cap->totals.events_lost = 1;
    return 0;
}

static char *dup_str(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* CHILD: a child process started by the traced one. */
static int add_child(mt_capture_t *cap, uint64_t pid)
{
    if (pid > INT64_MAX)
        return 0;
    for (size_t i = 0; i < cap->child_count; i++)
        if (cap->children[i] == (int64_t)pid)
            return 0; /* once per pid (a pid reused, or a record repeated) */
    if (cap->child_count == cap->child_cap) {
        size_t nc = cap->child_cap ? cap->child_cap * 2 : 16;
        int64_t *c = realloc(cap->children, nc * sizeof(*c));
        if (!c)
            return MT_ENOMEM;
        cap->children = c;
        cap->child_cap = nc;
    }
    cap->children[cap->child_count++] = (int64_t)pid;
    return 0;
}

/* PYTHON: a frame walker was attached; the stacks that follow are Python
 * (merged with native ones when its flags say native). */
static int def_python(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    size_t n;
    const uint8_t *v = cur_str(c, &n);
    uint64_t flags = cur_varint(c);
    if (c->bad)
        return def_corrupt(ld, "python record cut short", off);
    char *version = dup_str(v, n);
    if (!version)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    mt_capture_t *cap = ld->cap;
    free(cap->python_version);
    cap->python_version = version;
    cap->header.python_version = version;
    cap->header.flags |= MT_FLAG_PYTHON;
    if (flags & MT_PYTHON_FLAG_NATIVE)
        cap->header.flags |= MT_FLAG_NATIVE_STACKS;
    else
        cap->header.flags &= ~MT_FLAG_NATIVE_STACKS;
    return 0;
}

/* PYCODE: ids are dense from 1; a second tracing session in the same
 * process writes them again (same id, same code), which replaces. */
static int def_pycode(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    size_t nl, fl;
    uint64_t id = cur_varint(c);
    const uint8_t *name = cur_str(c, &nl), *file = cur_str(c, &fl);
    uint64_t first = cur_varint(c);
    mt_capture_t *cap = ld->cap;
    if (c->bad)
        return def_corrupt(ld, "python code record cut short", off);
    if (id == 0 || id > cap->pycode_count + 1 || first > UINT32_MAX)
        return def_corrupt(ld, "python code record out of sequence", off);
    if (id > cap->pycode_count) {
        if (cap->pycode_count + 1 >= cap->pycode_cap) {
            size_t nc = cap->pycode_cap ? cap->pycode_cap * 2 : 256;
            struct mt_pycode_s *t = realloc(cap->pycodes, nc * sizeof *t);
            if (!t)
                return mt__load_error(ld, MT_ENOMEM, "out of memory");
            cap->pycodes = t;
            cap->pycode_cap = nc;
        }
        cap->pycodes[id] = (struct mt_pycode_s){NULL, NULL, 0};
        cap->pycode_count = id;
    }
    struct mt_pycode_s *pc = &cap->pycodes[id];
    free(pc->name);
    free(pc->file);
    pc->name = dup_str(name, nl);
    pc->file = dup_str(file, fl);
    pc->firstline = (uint32_t)first;
    if (!pc->name || !pc->file)
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    return 0;
}

/* STAGE: a name it defines takes effect now (stream order); the rest waits
 * for its place in the seq order, like a tick. */
static int def_stage(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    mt_tick_t tk = {0};
    size_t n;
    uint64_t kind = cur_varint(c), thread, id;
    tk.seq = cur_varint(c);
    thread = cur_varint(c);
    tk.ns = cur_varint(c);
    tk.cpu = cur_varint(c);
    tk.tcpu = cur_varint(c);
    tk.rss = cur_varint(c);
    id = cur_varint(c);
    const uint8_t *name = cur_str(c, &n);
    if (c->bad)
        return def_corrupt(ld, "stage record cut short", off);
    if (kind != MT_STAGE_ENTER && kind != MT_STAGE_LEAVE)
        return 0; /* a kind of a later version: skipped */
    if (thread > UINT32_MAX || id > UINT32_MAX ||
        (kind == MT_STAGE_ENTER && id == 0))
        return def_corrupt(ld, "bad stage record (thread index or name id)",
                           off);
    int rc;
    if (n && (rc = mt__stage_define(ld, (uint32_t)id, name, n)))
        return rc;
    tk.kind = (uint32_t)kind;
    tk.thread = (uint32_t)thread;
    tk.name = (uint32_t)id;
    ld->cap->stage_totals.records++;
    ld->stages_on = 1;
    return mt__replay_add_stage(ld, &tk);
}

/* SMAPS: a memory sample. Its fields are (tag, value) pairs; tags this
 * reader does not know are skipped. It is placed in the event order like a
 * tick, which gives the traced heap at that moment (the EXIT sample comes
 * after everything: it gets the heap at the end, in finish_totals). */
static int def_smaps(mt_loader_t *ld, mt_cur_t *c, uint64_t off)
{
    uint64_t seq = cur_varint(c), ns = cur_varint(c), kind = cur_varint(c);
    mt_memsample_t m = {.time_ns = ns, .seq = seq, .kind = (unsigned)kind};
    while (!c->bad && c->p < c->end) {
        uint64_t tag = cur_varint(c), v = cur_varint(c);
        if (tag < MT_MEMSAMPLE_FIELDS) {
            m.fields[tag] = v;
            m.present |= 1ull << tag;
        }
    }
    if (c->bad || kind > UINT32_MAX)
        return def_corrupt(ld, "memory sample record cut short", off);
    mt_capture_t *cap = ld->cap;
    if (cap->memsample_count == cap->memsample_cap) {
        size_t nc = cap->memsample_cap ? cap->memsample_cap * 2 : 16;
        mt_memsample_t *t = realloc(cap->memsamples, nc * sizeof *t);
        if (!t)
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        cap->memsamples = t;
        cap->memsample_cap = nc;
    }
    cap->memsamples[cap->memsample_count++] = m;
    if (kind == MT_SMAPS_EXIT) {
        if (m.present & (1ull << MT_SMAPS_MAXRSS)) {
            ld->have_exit_rss = 1;
            ld->exit_rss = m.fields[MT_SMAPS_MAXRSS];
        }
        return 0;
    }
    uint64_t rss = m.fields[MT_SMAPS_RSS] ? m.fields[MT_SMAPS_RSS]
                                          : m.fields[MT_SMAPS_STATM_RSS];
    if (rss > ld->max_tick_rss)
        ld->max_tick_rss = rss; /* a peak between ticks counts too */
    return mt__replay_add_tick(ld, seq, ns, 0, cap->memsample_count);
}

/* One definition record of type at byte off of the block. */
static int def_record(mt_loader_t *ld, unsigned type, mt_cur_t *c,
                      uint64_t off)
{
    size_t n;
    switch (type) {
    case MT_DEF_NODE:
        return def_node(ld, c, off);
    case MT_DEF_MODULE_LOAD:
        return def_module(ld, c, off);
    case MT_DEF_MODULE_UNLOAD: {
        uint64_t id = cur_varint(c);
        if (c->bad)
            return def_corrupt(ld, "module unload record cut short", off);
        module_unload(ld, id);
        return 0;
    }
    case MT_DEF_THREAD: {
        uint64_t index = cur_varint(c);
        (void)cur_varint(c);
        (void)cur_str(c, &n);
        if (c->bad || index > UINT32_MAX)
            return def_corrupt(ld, "bad thread record", off);
        return 0;
    }
    case MT_DEF_TICK: {
        uint64_t seq = cur_varint(c), ns = cur_varint(c), rss = cur_varint(c);
        if (c->bad)
            return def_corrupt(ld, "tick record cut short", off);
        return mt__replay_add_tick(ld, seq, ns, rss, 0);
    }
    case MT_DEF_SMAPS:
        return def_smaps(ld, c, off);
    case MT_DEF_TRAILER:
        return def_trailer(ld, c, off);
    case MT_DEF_NOTE: {
        /* The tracer's own word (it could not trace something): shown. */
        const uint8_t *msg = cur_str(c, &n);
        if (c->bad)
            return def_corrupt(ld, "note record cut short", off);
        mt__load_warn(ld, "the tracer said: %.*s", (int)(n > 300 ? 300 : n),
                      (const char *)msg);
        return 0;
    }
    case MT_DEF_CHILD: {
        uint64_t pid = cur_varint(c);
        if (c->bad)
            return def_corrupt(ld, "child record cut short", off);
        return add_child(ld->cap, pid);
    }
    case MT_DEF_PYTHON:
        return def_python(ld, c, off);
    case MT_DEF_PYCODE:
        return def_pycode(ld, c, off);
    case MT_DEF_STAGE:
        return def_stage(ld, c, off);
    case MT_DEF_AGG_BEGIN:
    case MT_DEF_AGG_NODES:
    case MT_DEF_AGG_END:
    case MT_DEF_AGG_SAMPLE:
        /* Only aggregate captures have them; elsewhere they are skipped. */
        if (!(ld->cap->header.flags & MT_FLAG_AGGREGATE))
            return 0;
        return mt__checkpoint_record(ld, type, c->p, c->end, off);
    default:
        return 0; /* a newer record type: skipped by its length */
    }
}

static int parse_defs(mt_loader_t *ld, const uint8_t *p, const uint8_t *end)
{
    int rc;
    while (p < end) {
        uint64_t off = (uint64_t)(p - ld->block), len;
        unsigned type = *p++;
        if (mt__get_varint(&p, end, &len) || len > (uint64_t)(end - p))
            return def_corrupt(ld, "definition record overruns its section",
                               off);
        mt_cur_t c = {p, p + len, 0};
        p += len;
        if ((rc = def_record(ld, type, &c, off)))
            return rc;
    }
    return 0;
}

/* ---- Blocks -------------------------------------------------------------------- */

static int parse_block(mt_loader_t *ld, const uint8_t *raw, size_t len)
{
    const uint8_t *p = raw, *end = raw + len;
    int rc = 0, aggregate = (ld->cap->header.flags & MT_FLAG_AGGREGATE) != 0;
    ld->block = raw;
    while (p < end) {
        uint64_t off = (uint64_t)(p - raw), slen, v;
        unsigned type = *p++;
        if (mt__get_varint(&p, end, &slen) || slen > (uint64_t)(end - p))
            return def_corrupt(ld, "section overruns its block", off);
        const uint8_t *s = p, *se = p + slen;
        p = se;
        switch (type) {
        case MT_SEC_DEFS:
            rc = parse_defs(ld, s, se);
            break;
        case MT_SEC_EVENTS:
            if (aggregate || ld->stages_only)
                break; /* its numbers are in the checkpoints / not wanted */
            if (mt__get_varint(&s, se, &v) || v > UINT32_MAX)
                return def_corrupt(ld, "bad thread index in events section",
                                   off);
            rc = mt__replay_add_run(ld, (uint32_t)v, s, se,
                                    (uint64_t)(s - raw));
            break;
        case MT_SEC_SYNC:
            if (aggregate)
                break;
            if (mt__get_varint(&s, se, &v))
                return def_corrupt(ld, "bad sync section", off);
            rc = v ? mt__replay_until(ld, v, 0) : 0;
            break;
        default:
            break; /* a newer section type: skipped by its length */
        }
        if (rc)
            return rc;
    }
    return mt__replay_end_block(ld);
}

/* Why reading stopped before the end of the file. */
enum { MT_STOP_EOF, MT_STOP_CUT, MT_STOP_DAMAGED };

typedef struct mt_blocks_s {
    LZ4F_dctx *dctx;
    uint8_t *raw;
    size_t raw_cap;
    char damage[128];
} mt_blocks_t;

/* Decompresses one frame into exactly raw_len bytes. Returns 0, or 1 with
 * bl->damage set when the frame is damaged. */
static int block_inflate(mt_blocks_t *bl, const uint8_t *src, size_t n,
                         size_t raw_len)
{
    LZ4F_decompressOptions_t o = {.stableDst = 1};
    size_t si = 0, di = 0;
    LZ4F_resetDecompressionContext(bl->dctx);
    for (;;) {
        size_t sn = n - si, dn = raw_len - di;
        size_t r = LZ4F_decompress(bl->dctx, bl->raw + di, &dn, src + si, &sn,
                                   &o);
        if (LZ4F_isError(r)) {
            snprintf(bl->damage, sizeof(bl->damage), "%s",
                     LZ4F_getErrorName(r));
            return 1;
        }
        si += sn;
        di += dn;
        if (r == 0)
            break;
        if (sn == 0 && dn == 0) {
            snprintf(bl->damage, sizeof(bl->damage), "%s",
                     si < n ? "it holds more than its stated raw size"
                            : "its frame is incomplete");
            return 1;
        }
    }
    if (si != n || di != raw_len) {
        snprintf(bl->damage, sizeof(bl->damage),
                 "its frame is %zu of %zu bytes and holds %zu of %zu", si, n,
                 di, raw_len);
        return 1;
    }
    return 0;
}

/* Reads one block at the current position. Returns 0 (*stop set when
 * reading ends here) or an error. */
static int read_block(mt_loader_t *ld, mt_src_t *src, mt_blocks_t *bl,
                      int *stop)
{
    const uint8_t *b;
    size_t got;
    uint64_t off = src->pos;
    int rc = src_read(src, MT_BLOCK_HEADER_SIZE, &b, &got);
    if (rc)
        return mt__load_error(ld, rc, "cannot read: %s at offset %llu",
                              mt_strerror(rc), (unsigned long long)off);
    ld->block_off = off;
    static const uint8_t zeros[MT_BLOCK_HEADER_SIZE];
    if (got == 0) {
        *stop = MT_STOP_EOF;
        return 0;
    }
    if (got < MT_BLOCK_HEADER_SIZE || !memcmp(b, zeros, MT_BLOCK_HEADER_SIZE)) {
        *stop = MT_STOP_CUT; /* zeros: a crash can leave a zero-filled tail */
        return 0;
    }
    uint32_t magic = mt__get_u32le(b), flen = mt__get_u32le(b + 4);
    uint32_t rlen = mt__get_u32le(b + 8);
    if (magic != MT_BLOCK_MAGIC)
        return mt__load_error(ld, MT_ECORRUPT, "corrupt block header (magic "
                              "0x%08x) at offset %llu", magic,
                              (unsigned long long)off);
    /* LZ4 expands at most ~255 times, so a larger raw size is a lie; this
     * also stops a tiny file from making us allocate 64 MiB. */
    if (rlen > MT_MAX_BLOCK_RAW || flen > MT_MAX_BLOCK_FRAME ||
        (uint64_t)rlen > (uint64_t)flen * 256 + 4096)
        return mt__load_error(ld, MT_ETOOBIG, "block sizes out of range "
                              "(frame %u bytes, raw %u bytes) at offset %llu",
                              flen, rlen, (unsigned long long)off);
    if (src->size != UINT64_MAX && flen > src->size - src->pos) {
        *stop = MT_STOP_CUT;
        return 0;
    }
    if ((rc = src_read(src, flen, &b, &got)))
        return mt__load_error(ld, rc, "cannot read: %s at offset %llu",
                              mt_strerror(rc), (unsigned long long)off);
    if (got < flen) {
        *stop = MT_STOP_CUT;
        return 0;
    }
    if (rlen + (size_t)1 > bl->raw_cap) {
        free(bl->raw);
        bl->raw_cap = 0;
        if (!(bl->raw = malloc(rlen + (size_t)1)))
            return mt__load_error(ld, MT_ENOMEM, "out of memory");
        bl->raw_cap = rlen + (size_t)1;
    }
    if (block_inflate(bl, b, flen, rlen)) {
        *stop = MT_STOP_DAMAGED;
        return 0;
    }
    return parse_block(ld, bl->raw, rlen);
}

/* ---- The load ------------------------------------------------------------------- */

static int read_blocks(mt_loader_t *ld, mt_src_t *src, mt_progress_t *pg)
{
    mt_blocks_t bl = {0};
    int rc, stop = MT_STOP_EOF;
    uint64_t off = src->pos;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&bl.dctx, LZ4F_VERSION)))
        return mt__load_error(ld, MT_ENOMEM, "out of memory");
    for (;;) {
        progress_tick(pg, ld, src);
        off = src->pos;
        stop = MT_STOP_EOF;
        if ((rc = read_block(ld, src, &bl, &stop)) || stop != MT_STOP_EOF ||
            src->pos == off)
            break;
    }
    LZ4F_freeDecompressionContext(bl.dctx);
    free(bl.raw);
    if (rc)
        return rc;
    char size[32] = "?";
    if (src->size != UINT64_MAX)
        snprintf(size, sizeof(size), "%llu", (unsigned long long)src->size);
    if (stop == MT_STOP_CUT)
        mt__load_warn(ld, "capture is incomplete: read up to offset %llu of "
                      "%s (the program may have been killed); the last block "
                      "was cut short", (unsigned long long)off, size);
    else if (stop == MT_STOP_DAMAGED)
        mt__load_warn(ld, "capture is incomplete: read up to offset %llu of "
                      "%s; the block at offset %llu is damaged (%s)",
                      (unsigned long long)off, size, (unsigned long long)off,
                      bl.damage);
    else if (!ld->have_trailer)
        mt__load_warn(ld, "capture has no trailer: the program ended without "
                      "memtrace's exit handler (killed, crashed or _exit); "
                      "data up to the last flush is shown");
    if (ld->cap->header.flags & MT_FLAG_AGGREGATE) {
        const mt_totals_t *t = &ld->cap->totals;
        if (!t->checkpoints)
            mt__load_warn(ld, "aggregate capture without a complete "
                          "checkpoint: the program ended before memtrace "
                          "wrote its first one; no allocations are shown");
        else if (!ld->have_trailer)
            mt__load_warn(ld, "aggregate capture: the numbers are those of "
                          "its last checkpoint, at %.3f s",
                          (double)t->checkpoint_ns / 1e9);
    }
    return mt__replay_until(ld, 0, 1);
}

static int finish_totals(mt_loader_t *ld)
{
    mt_totals_t *t = &ld->cap->totals;
    t->complete = ld->have_trailer;
    if (!(ld->cap->header.flags & MT_FLAG_AGGREGATE))
        t->temporary_threshold = ld->threshold;
    t->duration_ns = ld->have_trailer ? ld->trailer_ns : ld->max_tick_ns;
    if (ld->have_exit_rss) {
        t->peak_rss_bytes = ld->exit_rss;
        t->peak_rss_source = MT_PEAK_RSS_EXIT;
    } else if (ld->have_trailer) {
        t->peak_rss_bytes = ld->trailer_rss;
        t->peak_rss_source = MT_PEAK_RSS_TRAILER;
    } else {
        t->peak_rss_bytes = ld->max_tick_rss;
        t->peak_rss_source = ld->max_tick_rss ? MT_PEAK_RSS_TICKS
                                              : MT_PEAK_RSS_NONE;
    }
    for (size_t i = 0; i < ld->cap->memsample_count; i++) {
        mt_memsample_t *m = &ld->cap->memsamples[i];
        if (m->kind == MT_SMAPS_EXIT) {
            m->heap_bytes = t->current_bytes;
            m->mapped_bytes = ld->mapped_bytes;
            m->pysmall_bytes = ld->pysmall_bytes;
        }
    }
    if (t->events_lost)
        mt__load_warn(ld, "the tracer stopped early: events after that point "
                      "are missing");
    int rc = mt__replay_window_finish(ld);
    if (ld->cap->window.active && ld->cap->window.to_ns == UINT64_MAX)
        ld->cap->window.to_ns = t->duration_ns;
    return rc;
}

/* Joins argv with spaces into a malloc'd string ("" when empty). */
static char *join_argv(const mt_header_t *h)
{
    size_t len = 1;
    for (int i = 0; i < h->argc; i++)
        len += strlen(h->argv[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < h->argc; i++) {
        size_t n = strlen(h->argv[i]);
        if (i)
            *p++ = ' ';
        memcpy(p, h->argv[i], n);
        p += n;
    }
    *p = 0;
    return s;
}

int mt__capture_own(mt_capture_t *cap, void *p)
{
    if (cap->owned_count == cap->owned_cap) {
        size_t nc = cap->owned_cap ? cap->owned_cap * 2 : 8;
        void **o = realloc(cap->owned, nc * sizeof *o);
        if (!o) {
            free(p);
            return MT_ENOMEM;
        }
        cap->owned = o;
        cap->owned_cap = nc;
    }
    cap->owned[cap->owned_count++] = p;
    return 0;
}

/* The one process of a plain capture. */
static int describe_process(mt_capture_t *cap)
{
    const mt_totals_t *t = &cap->totals;
    char *command = join_argv(&cap->header);
    mt_process_t *p = calloc(1, sizeof *p);
    if (!command || !p || mt__capture_own(cap, command)) {
        free(p);
        return MT_ENOMEM;
    }
    uint64_t leaked = 0, count = 0;
    for (size_t i = 0; i < cap->node_count; i++) {
        leaked += cap->node_stats[i].leaked.bytes;
        count += cap->node_stats[i].leaked.count;
    }
    *p = (mt_process_t){
        .path = cap->path, .command = command, .pid = cap->header.pid,
        .parent_pid = cap->header.parent_pid,
        .duration_ns = t->duration_ns, .peak_bytes = t->peak_bytes,
        .peak_time_ns = t->peak_time_ns, .at_peak_bytes = t->peak_bytes,
        .leaked_bytes = leaked, .leaked_count = count,
        .total_allocations = t->total_allocations,
        .total_bytes_allocated = t->total_bytes_allocated,
        .complete = t->complete,
    };
    cap->processes = p;
    cap->process_count = 1;
    return 0;
}

static int load(mt_loader_t *ld, mt_src_t *src, const mt_load_opts_t *opts)
{
    mt_capture_t *cap = ld->cap;
    int rc;
    ld->threshold = opts && opts->temporary_threshold
                        ? opts->temporary_threshold : 1;
    mt_progress_t pg = {0};
    pg.on = opts && opts->progress && src->size != UINT64_MAX &&
            isatty(STDERR_FILENO);
    pg.start = pg.last = pg.on ? now_s() : 0;
    pg.after = pg.on ? progress_after() : 1.0;
    mt__omap_init(&ld->loaded, (uint64_t)(uintptr_t)cap);
    if ((rc = mt__replay_init(ld)) || (rc = mt__replay_reserve_nodes(ld, 1)))
        return mt__load_error(ld, rc, "out of memory");
    cap->nodes[0] = (mt_node_t){0, UINT32_MAX, 0};
    cap->node_count = 1;
    ld->stages_only = opts && opts->stages_only;
    if (!ld->stages_only)
        mt__replay_window_init(ld, opts);
    rc = parse_header(ld, src);
    /* An aggregate capture keeps totals, not events: there is nothing to
     * place a window's edges between (and combining processes needs each
     * one's heap at one moment, read through such a window). */
    if (!rc && ld->win && (cap->header.flags & MT_FLAG_AGGREGATE))
        rc = mt__load_error(ld, MT_EINVAL, "recorded with --aggregate, which "
                            "keeps totals, not events: a window (--from/--to) "
                            "or a combined report of several processes cannot "
                            "be read from it (read each capture alone, "
                            "--no-children)");
    if (!rc && opts && opts->header_only)
        return describe_process(cap) ? mt__load_error(ld, MT_ENOMEM,
                                                      "out of memory") : 0;
    if (!rc)
        rc = read_blocks(ld, src, &pg);
    progress_end(&pg);
    if (!rc)
        rc = mt__stages_finish(ld);
    if (!rc)
        rc = finish_totals(ld);
    if (!rc && describe_process(cap))
        rc = mt__load_error(ld, MT_ENOMEM, "out of memory");
    return rc;
}

/* Runs a load over src; frees everything on failure. */
static int load_source(const char *name, mt_src_t *src,
                       const mt_load_opts_t *opts, mt_capture_t **out,
                       char *errbuf, size_t errlen)
{
    mt_loader_t ld = {.name = name, .errbuf = errbuf, .errlen = errlen};
    *out = NULL;
    if (errbuf && errlen)
        errbuf[0] = 0;
    ld.cap = calloc(1, sizeof(mt_capture_t));
    if (!ld.cap || !(ld.cap->path = strdup(name))) {
        free(ld.cap);
        return mt__load_error(&ld, MT_ENOMEM, "out of memory");
    }
    int rc = load(&ld, src, opts);
    mt__replay_free(&ld);
    mt__checkpoint_free(&ld);
    mt__idmap_free(&ld.module_ids);
    mt__omap_free(&ld.loaded);
    if (rc) {
        if (!ld.failed)
            mt__load_error(&ld, rc, "%s", mt_strerror(rc));
        mt_capture_free(ld.cap);
        return rc;
    }
    *out = ld.cap;
    return 0;
}

int mt_capture_load(const char *path, const mt_load_opts_t *opts,
                    mt_capture_t **out, char *errbuf, size_t errlen)
{
    mt_src_t src = {.fd = -1, .size = UINT64_MAX};
    src.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src.fd < 0) {
        int rc = -errno;
        mt_loader_t ld = {.name = path, .errbuf = errbuf, .errlen = errlen};
        *out = NULL;
        return mt__load_error(&ld, rc, "cannot open: %s", mt_strerror(rc));
    }
    struct stat st;
    if (fstat(src.fd, &st) == 0 && S_ISREG(st.st_mode))
        src.size = (uint64_t)st.st_size;
    int rc = load_source(path, &src, opts, out, errbuf, errlen);
    close(src.fd);
    free(src.buf);
    return rc;
}

int mt_capture_load_memory(const void *data, size_t len, const char *name,
                           const mt_load_opts_t *opts, mt_capture_t **out,
                           char *errbuf, size_t errlen)
{
    mt_src_t src = {.fd = -1, .mem = data, .size = len};
    return load_source(name ? name : "<memory>", &src, opts, out, errbuf,
                       errlen);
}

/* ---- Accessors ---------------------------------------------------------------- */

void mt_capture_free(mt_capture_t *cap)
{
    if (!cap)
        return;
    mt__symbolizer_free(cap->symbolizer);
    for (size_t i = 0; i < cap->module_count; i++) {
        free((char *)cap->modules[i].path);
        free((uint8_t *)cap->modules[i].build_id);
    }
    free(cap->modules);
    free(cap->nodes);
    free(cap->node_stats);
    free(cap->samples);
    free(cap->memsamples);
    free(cap->header_strings);
    free(cap->argv_storage);
    for (size_t i = 1; i <= cap->pycode_count; i++) {
        free(cap->pycodes[i].name);
        free(cap->pycodes[i].file);
    }
    free(cap->pycodes);
    for (size_t i = 0; i < cap->stage_count; i++)
        free((char *)cap->stages[i].name);
    free(cap->stages);
    free(cap->children);
    free(cap->python_version);
    free(cap->warning);
    free(cap->path);
    free(cap->processes);
    for (size_t i = 0; i < cap->owned_count; i++)
        free(cap->owned[i]);
    free(cap->owned);
    free(cap);
}

const mt_header_t *mt_capture_header(const mt_capture_t *cap)
{
    return &cap->header;
}

const mt_totals_t *mt_capture_totals(const mt_capture_t *cap)
{
    return &cap->totals;
}

const char *mt_capture_path(const mt_capture_t *cap)
{
    return cap->path;
}

const int64_t *mt_capture_children(const mt_capture_t *cap, size_t *count)
{
    *count = cap->child_count;
    return cap->children;
}

const char *mt_capture_warning(const mt_capture_t *cap)
{
    return cap->warning;
}

const mt_window_t *mt_capture_window(const mt_capture_t *cap)
{
    return &cap->window;
}

size_t mt_capture_process_count(const mt_capture_t *cap)
{
    return cap->process_count;
}

const mt_process_t *mt_capture_processes(const mt_capture_t *cap)
{
    return cap->processes;
}

size_t mt_capture_node_count(const mt_capture_t *cap)
{
    return cap->node_count;
}

const mt_node_t *mt_capture_nodes(const mt_capture_t *cap)
{
    return cap->nodes;
}

const mt_node_stats_t *mt_capture_node_stats(const mt_capture_t *cap)
{
    return cap->node_stats;
}

size_t mt_capture_module_count(const mt_capture_t *cap)
{
    return cap->module_count;
}

const mt_module_t *mt_capture_modules(const mt_capture_t *cap)
{
    return cap->modules;
}

size_t mt_capture_sample_count(const mt_capture_t *cap)
{
    return cap->sample_count;
}

const mt_sample_t *mt_capture_samples(const mt_capture_t *cap)
{
    return cap->samples;
}

size_t mt_capture_memsample_count(const mt_capture_t *cap)
{
    return cap->memsample_count;
}

const mt_memsample_t *mt_capture_memsamples(const mt_capture_t *cap)
{
    return cap->memsamples;
}
