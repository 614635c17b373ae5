/* capture_builder.h: writes small synthetic captures for the unit tests, in
 * the format of common/format.h, so reader and reporter tests can assert on
 * exact numbers without running a traced program.
 *
 * Calls append to the current block in call order: definition records go
 * into a DEFS section, events into an EVENTS section of their thread (a new
 * section starts whenever the kind or the thread changes, or after
 * mt_cb_end_section). mt_cb_flush compresses the block and writes it.
 * Nothing is sorted or checked: a test can write out-of-order, interleaved
 * or nonsensical captures on purpose.
 *
 * Any I/O or allocation failure aborts the process (it is a test helper).
 *
 * Typical use:
 *     mt_cb_t *b = mt_cb_begin("t.bin", NULL);          // default header
 *     uint32_t n = mt_cb_node(b, 0, 0x401000);          // node 1
 *     mt_cb_malloc(b, 0, MT_CB_NEXT, 0x1000, 100, n);   // seq 1
 *     mt_cb_free(b, 0, MT_CB_NEXT, 0x1000);             // seq 2
 *     mt_cb_sync(b, MT_CB_NEXT);                        // SYNC 3
 *     mt_cb_trailer(b, 1000, 4096, MT_CB_NEXT, 0);
 *     mt_cb_finish(b);                                  // flush + close
 */
#ifndef MT_TESTS_CAPTURE_BUILDER_H
#define MT_TESTS_CAPTURE_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "common/format.h"

typedef struct mt_cb_s mt_cb_t;

/* Pass as a seq (or SYNC W / trailer event count): "one past the largest
 * seq used so far" (1 for the first event), or the number of events. */
#define MT_CB_NEXT UINT64_MAX

/* Header fields. Zero / NULL fields are left out of the payload (except
 * pointer_size and page_size, which default to 8 and 4096). */
typedef struct mt_cb_header_s {
    unsigned flags;                /* MT_FLAG_* (written as is) */
    unsigned version;              /* 0: MT_FORMAT_VERSION */
    int64_t pid, ppid, parent_pid;
    int64_t root_pid;              /* with origin: --follow-fork fields */
    int origin;
    uint64_t start_realtime_ns;
    unsigned pointer_size, page_size, rss_interval_ms;
    const char *const *argv;       /* NULL-terminated list, or NULL */
    const char *exe;
    const char *tracer_version;
    const char *python_version;
} mt_cb_header_t;

/* Creates path (truncating it) and writes the file header: hdr, or when
 * hdr is NULL: pid 1234, ppid 1, argv {"prog", "arg1"}, exe "/bin/prog",
 * tracer version "test", no flags. */
mt_cb_t *mt_cb_begin(const char *path, const mt_cb_header_t *hdr);
/* Creates path with no header at all (write one with mt_cb_raw). */
mt_cb_t *mt_cb_begin_raw(const char *path);
/* Encodes a full file header (16 bytes + payload) into out (cap bytes);
 * returns its length. Lets tests damage header bytes before writing them. */
size_t mt_cb_header_bytes(const mt_cb_header_t *hdr, uint8_t *out, size_t cap);

/* Definition records (into the current block's DEFS section). */
/* A trace-tree node; returns its id (1, 2, 3... in call order). */
uint32_t mt_cb_node(mt_cb_t *b, uint32_t parent, uint64_t ip);
/* segs: nseg pairs {vaddr, memsz}. build_id may be NULL when len is 0. */
void mt_cb_module(mt_cb_t *b, uint64_t id, uint64_t bias, const char *path,
                  const void *build_id, size_t build_id_len, size_t nseg,
                  const uint64_t *segs);
void mt_cb_module_unload(mt_cb_t *b, uint64_t id);
void mt_cb_thread(mt_cb_t *b, uint64_t index, uint64_t tid, const char *name);
void mt_cb_tick(mt_cb_t *b, uint64_t seq, uint64_t ns, uint64_t rss);
void mt_cb_note(mt_cb_t *b, const char *msg);
/* A STAGE record (docs/FORMAT.md). name NULL or "": the id is not defined
 * here. */
typedef struct mt_cb_stage_s {
    unsigned kind;            /* MT_STAGE_ENTER / MT_STAGE_LEAVE */
    uint64_t seq, thread, ns, cpu, tcpu, rss, id;
    const char *name;
} mt_cb_stage_t;
void mt_cb_stage(mt_cb_t *b, const mt_cb_stage_t *st);
void mt_cb_child(mt_cb_t *b, uint64_t pid);
/* events: MT_CB_NEXT writes the number of events added so far. */
void mt_cb_trailer(mt_cb_t *b, uint64_t ns, uint64_t peak_rss,
                   uint64_t events, uint64_t flags);

/* Events (into an EVENTS section of thread). Returns the seq used.
 * For frees/munmap, size/stack/old/old_size are ignored as the encoder
 * does. */
uint64_t mt_cb_event(mt_cb_t *b, uint64_t thread, unsigned type, uint64_t seq,
                     uint64_t addr, uint64_t size, uint32_t stack,
                     uint64_t old, uint64_t old_size);
uint64_t mt_cb_malloc(mt_cb_t *b, uint64_t thread, uint64_t seq,
                      uint64_t addr, uint64_t size, uint32_t stack);
uint64_t mt_cb_free(mt_cb_t *b, uint64_t thread, uint64_t seq, uint64_t addr);
uint64_t mt_cb_realloc(mt_cb_t *b, uint64_t thread, uint64_t seq,
                       uint64_t old, uint64_t addr, uint64_t size,
                       uint32_t stack);
/* Closes the open section, so the next event starts a new one (with a
 * fresh delta state) even for the same thread. */
void mt_cb_end_section(mt_cb_t *b);

/* A SYNC section with W (MT_CB_NEXT: one past the largest seq so far). */
void mt_cb_sync(mt_cb_t *b, uint64_t w);
/* Compresses the current block (if it has anything) and writes it. */
void mt_cb_flush(mt_cb_t *b);
/* Bytes of sections in the current, unflushed block. */
size_t mt_cb_block_len(const mt_cb_t *b);
/* Bytes written to the file so far (flushed blocks and raw bytes). */
long mt_cb_offset(mt_cb_t *b);

/* Raw bytes: straight into the file (the current block is not flushed
 * first), or as a section / definition record with any type and payload
 * into the current block. */
void mt_cb_raw(mt_cb_t *b, const void *data, size_t len);
void mt_cb_raw_section(mt_cb_t *b, unsigned type, const void *payload,
                       size_t len);
void mt_cb_raw_def(mt_cb_t *b, unsigned type, const void *payload, size_t len);

/* Flushes, closes and frees b; returns the file's size. */
long mt_cb_finish(mt_cb_t *b);

/* Whole-file helpers: read path into a malloc'd buffer (*len set), and
 * (over)write path with len bytes. */
uint8_t *mt_cb_read_file(const char *path, size_t *len);
void mt_cb_write_file(const char *path, const void *data, size_t len);

#endif
