/* export.h: what the speedscope and pprof exports share, private to
 * reporters/: an interning table that gives byte strings dense ids (for
 * speedscope's frame list and pprof's string, function and location
 * tables), and the stack of a trace-tree node as the exports write it. */
#ifndef MT_REPORTERS_EXPORT_H
#define MT_REPORTERS_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/reporters.h"

/* ---- Interning ----------------------------------------------------------
 * Keys are byte strings of any content (NUL bytes included), copied into
 * the table; ids are 0, 1, 2... in the order keys were first seen, so a
 * table doubles as the list the formats want. */
typedef struct mt_intern_s {
    char *bytes;        /* every key back to back, each followed by a NUL */
    size_t bytes_len, bytes_cap;
    size_t *offset;     /* offset[id]: where key id starts in bytes */
    size_t *length;     /* length[id]: its length without the NUL */
    uint64_t *hash;     /* hash[id], kept for growing the slot table */
    uint32_t count, cap;
    uint32_t *slots;    /* open addressing: id + 1, 0 for an empty slot */
    size_t nslots;      /* a power of two, at least twice count */
} mt_intern_t;

/* An empty table (no allocation until the first key). */
void mt__intern_init(mt_intern_t *t);

/* The id of key[0, len), added when new. Returns the id (>= 0) or
 * MT_ENOMEM; a table never holds more than UINT32_MAX - 1 keys. */
int64_t mt__intern(mt_intern_t *t, const void *key, size_t len);

/* Key id (id < count) and its length in *len (may be NULL); the bytes are
 * followed by a NUL, so string keys are C strings. Borrowed: valid until
 * the next mt__intern or mt__intern_free. */
const char *mt__intern_key(const mt_intern_t *t, uint32_t id, size_t *len);

/* Frees what the table holds; the table is empty again afterwards. */
void mt__intern_free(mt_intern_t *t);

/* ---- Stacks -------------------------------------------------------------- */

/* The exports keep stacks to this many frames (the reports cut at
 * MT_REPORT_MAX_STACK; a file meant for another tool can afford more). */
#define MT_EXPORT_MAX_STACK 1024

/* The stack of node as the exports write it, innermost first, into
 * frames[0, MT_EXPORT_MAX_STACK): mt_sites_stack's frames; a node with no
 * frame at all gets one "<unknown>" frame (file "<unknown>", as the site
 * the reports give it), and a stack cut short gets a
 * "[stack truncated]" frame as its outermost, so that every byte of the
 * view is in some stack and a cut is visible. Returns the count (>= 1). */
size_t mt__export_stack(mt_sites_t *sites, uint32_t node, mt_frame_t *frames);

#endif
