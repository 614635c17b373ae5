/* format.h: the capture format's constants and its small encoders, shared by
 * the tracer (which writes) and the reader (which reads). docs/FORMAT.md is the
 * spec; this header and that document change together, in the same commit. */
#ifndef MT_COMMON_FORMAT_H
#define MT_COMMON_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- File header (uncompressed, little-endian) ------------------------- */
#define MT_MAGIC "\x89MTRC\r\n\x1a"
#define MT_MAGIC_SIZE 8
#define MT_FORMAT_VERSION 1
#define MT_FILE_HEADER_SIZE 16 /* magic 8, version u16, flags u16, length u32 */
#define MT_MAX_HEADER_PAYLOAD (1u << 20)

/* File header flags (u16). Reserved bits must be zero. */
#define MT_FLAG_NATIVE_STACKS 0x0001u
#define MT_FLAG_PYTHON 0x0002u
#define MT_FLAG_FOLLOW_FORK 0x0004u
#define MT_FLAG_PYTHON_ALLOCATORS 0x0008u
#define MT_FLAG_AGGREGATE 0x0010u /* checkpoints of per-stack totals, no events */
#define MT_FLAGS_KNOWN 0x001fu

/* Header fields: varint tag, varint length, bytes. Unknown tags are skipped. */
enum mt_header_tag {
    MT_HDR_PID = 1,            /* varint */
    MT_HDR_PPID = 2,           /* varint */
    MT_HDR_START_REALTIME = 3, /* varint, ns since the Unix epoch */
    MT_HDR_POINTER_SIZE = 4,   /* varint, bytes */
    MT_HDR_ARGV = 5,           /* bytes: the arguments, each NUL-terminated */
    MT_HDR_EXE = 6,            /* bytes: /proc/self/exe */
    MT_HDR_PAGE_SIZE = 7,      /* varint */
    MT_HDR_TRACER_VERSION = 8, /* bytes: software version string */
    MT_HDR_RSS_INTERVAL = 9,   /* varint, ms */
    MT_HDR_PYTHON_VERSION = 10,/* bytes, e.g. "3.11.7" */
    MT_HDR_PARENT_PID = 11,    /* varint: the traced parent, for FILE.<pid> */
    MT_HDR_CHECKPOINT_INTERVAL = 14, /* varint, ms: aggregate captures */
};

/* ---- Blocks ------------------------------------------------------------- */
/* Block header: magic u32, frame size u32, raw size u32, then one LZ4 frame. */
#define MT_BLOCK_MAGIC 0x4b42544du /* "MTBK" read as little-endian u32 */
#define MT_BLOCK_HEADER_SIZE 12
#define MT_MAX_BLOCK_RAW (64u << 20)
#define MT_MAX_BLOCK_FRAME (MT_MAX_BLOCK_RAW + (1u << 20)) /* lz4 bound, rounded up */

/* Sections inside a decompressed block: u8 type, varint length, payload. */
enum mt_section_type {
    MT_SEC_DEFS = 1,   /* definition records, in tracer order */
    MT_SEC_EVENTS = 2, /* varint thread index, then events */
    MT_SEC_SYNC = 3,   /* varint W: every event with seq < W has been written */
};

/* Definition records (inside MT_SEC_DEFS): u8 type, varint length, payload. */
enum mt_def_type {
    MT_DEF_NODE = 1,          /* varint parent, zigzag (ip - previous node ip) */
    MT_DEF_MODULE_LOAD = 2,   /* varint id, varint bias, str path, str build-id,
                                 varint nseg, nseg x (varint vaddr, varint memsz) */
    MT_DEF_MODULE_UNLOAD = 3, /* varint id */
    MT_DEF_THREAD = 4,        /* varint index, varint tid, str name */
    MT_DEF_TICK = 5,          /* varint seq, varint ns since start, varint rss */
    MT_DEF_TRAILER = 6,       /* varint ns, varint peak rss, varint events,
                                 varint flags */
    MT_DEF_NOTE = 7,          /* str message from the tracer */
    MT_DEF_CHILD = 8,         /* varint pid of a forked child that is traced */
    MT_DEF_PYTHON = 9,        /* str version, varint flags (MT_PYTHON_*):
                                 Python frames follow */
    MT_DEF_PYCODE = 10,       /* varint id, str qualified name, str file,
                                 varint first line */
    /* Aggregate captures (MT_FLAG_AGGREGATE): a checkpoint is one AGG_BEGIN,
     * AGG_NODES records, one AGG_END; docs/FORMAT.md has the fields. */
    MT_DEF_AGG_BEGIN = 13,    /* varint id, then the whole-run totals */
    MT_DEF_AGG_NODES = 14,    /* (varint id delta, 8 varints) until the end */
    MT_DEF_AGG_END = 15,      /* varint id, varint node entries */
    MT_DEF_AGG_SAMPLE = 16,   /* varint ns, varint heap, varint rss */
};

/* PYTHON record flags. */
#define MT_PYTHON_FLAG_NATIVE 0x1u /* stacks merge native and Python frames */

/* A NODE's ip with the top bit set is a Python frame: code id (a PYCODE
 * record's id) in bits 32-62, line in bits 0-31. */
#define MT_NODE_PYTHON (1ull << 63)

/* Trailer flags. */
#define MT_TRAILER_EVENTS_LOST 0x1u /* tracing stopped early (write error...) */

/* ---- Events (inside MT_SEC_EVENTS) -------------------------------------- */
/* Header byte: bits 0-4 event type, bits 5-7 seq code.
 * d = seq - previous seq - 1; code = d when d < 7, else 7 and varint(d - 7)
 * follows. Per-section state (previous seq, address, stack) starts at 0. */
enum mt_event_type {
    MT_EV_FREE = 1,           /* zz addr */
    MT_EV_MALLOC = 2,         /* alloc fields: zz addr, varint size, zz stack */
    MT_EV_CALLOC = 3,         /* alloc fields */
    MT_EV_REALLOC = 4,        /* alloc fields, zz (old - addr) */
    MT_EV_REALLOCARRAY = 5,   /* alloc fields, zz (old - addr) */
    MT_EV_POSIX_MEMALIGN = 6, /* alloc fields */
    MT_EV_ALIGNED_ALLOC = 7,  /* alloc fields */
    MT_EV_MEMALIGN = 8,       /* alloc fields */
    MT_EV_VALLOC = 9,         /* alloc fields */
    MT_EV_PVALLOC = 10,       /* alloc fields */
    MT_EV_MMAP = 11,          /* alloc fields (size = length) */
    MT_EV_MUNMAP = 12,        /* zz addr, varint length */
    MT_EV_MREMAP = 13,        /* alloc fields, zz (old - addr), varint old length */
    MT_EV_PY_MALLOC = 14,     /* alloc fields: PyMem/PyObject_Malloc */
    MT_EV_PY_CALLOC = 15,     /* alloc fields: PyMem/PyObject_Calloc */
    MT_EV_PY_REALLOC = 16,    /* alloc fields, zz (old - addr) */
    MT_EV_PY_FREE = 17,       /* zz addr: PyMem/PyObject_Free */
    MT_EV_TYPE_COUNT = 18,
};
#define MT_EV_SEQ_SHIFT 5
#define MT_EV_TYPE_MASK 0x1fu
#define MT_EV_SEQ_ESCAPE 7u

/* The largest encoded event: header 1 + seq 10 + 2 addresses 20 + 2 sizes 20
 * + stack 10. Writers keep at least this much room before encoding one. */
#define MT_MAX_EVENT_SIZE 64

static inline int mt__event_is_free(unsigned type)
{
    return type == MT_EV_FREE || type == MT_EV_MUNMAP || type == MT_EV_PY_FREE;
}
static inline int mt__event_has_old(unsigned type)
{
    return type == MT_EV_REALLOC || type == MT_EV_REALLOCARRAY ||
           type == MT_EV_MREMAP || type == MT_EV_PY_REALLOC;
}
/* Frees carry only an address (munmap also a length). */
static inline int mt__event_addr_only(unsigned type)
{
    return type == MT_EV_FREE || type == MT_EV_PY_FREE;
}
static inline int mt__event_is_mmap(unsigned type)
{
    return type == MT_EV_MMAP || type == MT_EV_MUNMAP || type == MT_EV_MREMAP;
}

/* Name of an allocator/event type as users see it ("malloc", "mmap"...). */
const char *mt__event_name(unsigned type);

/* ---- Varints (LEB128, at most 10 bytes for 64 bits) and zigzag ---------- */
#define MT_VARINT_MAX 10

static inline uint8_t *mt__put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint64_t mt__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t mt__unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Decodes a varint from [*pp, end). Returns 0 and advances *pp, or
 * MT_ETRUNCATED when the input ends first, or MT_ECORRUPT when the varint is
 * longer than 10 bytes or overflows 64 bits. */
static inline int mt__get_varint(const uint8_t **pp, const uint8_t *end,
                                 uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) { /* the common one-byte case */
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p >= end)
            return -4003; /* MT_ETRUNCATED */
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return -4004; /* MT_ECORRUPT: more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return -4004; /* MT_ECORRUPT: never-ending varint */
}

static inline void mt__put_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void mt__put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t mt__get_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t mt__get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* ---- Event encoder state, one per EVENTS section ----------------------- */
typedef struct mt_event_state_s {
    uint64_t seq;
    uint64_t addr;
    uint64_t stack;
} mt_event_state_t;

/* Encodes one event at p (which must have MT_MAX_EVENT_SIZE bytes of room)
 * and returns the end. For frees, size/stack/old/old_size are ignored. */
static inline uint8_t *mt__encode_event(uint8_t *p, mt_event_state_t *st,
                                        unsigned type, uint64_t seq,
                                        uint64_t addr, uint64_t size,
                                        uint64_t stack, uint64_t old,
                                        uint64_t old_size)
{
    uint64_t d = seq - st->seq - 1;
    st->seq = seq;
    if (d < MT_EV_SEQ_ESCAPE) {
        *p++ = (uint8_t)(type | (d << MT_EV_SEQ_SHIFT));
    } else {
        *p++ = (uint8_t)(type | (MT_EV_SEQ_ESCAPE << MT_EV_SEQ_SHIFT));
        p = mt__put_varint(p, d - MT_EV_SEQ_ESCAPE);
    }
    p = mt__put_varint(p, mt__zigzag((int64_t)(addr - st->addr)));
    st->addr = addr;
    if (mt__event_addr_only(type))
        return p;
    p = mt__put_varint(p, size);
    if (type == MT_EV_MUNMAP)
        return p;
    p = mt__put_varint(p, mt__zigzag((int64_t)(stack - st->stack)));
    st->stack = stack;
    if (mt__event_has_old(type))
        p = mt__put_varint(p, mt__zigzag((int64_t)(old - addr)));
    if (type == MT_EV_MREMAP)
        p = mt__put_varint(p, old_size);
    return p;
}

/* One decoded event. */
typedef struct mt_event_s {
    uint64_t seq;
    uint64_t addr;
    uint64_t size;
    uint64_t old;      /* realloc/mremap: the previous address */
    uint64_t old_size; /* mremap: the previous length */
    uint32_t stack;    /* trace-tree node id; 0 = no stack */
    uint32_t thread;   /* thread index of the section */
    uint8_t type;      /* enum mt_event_type */
} mt_event_t;

/* Decodes one event from [*pp, end) with section state st. Returns 0,
 * MT_ETRUNCATED, or MT_ECORRUPT (unknown type, stack id over 2^32). */
static inline int mt__decode_event(const uint8_t **pp, const uint8_t *end,
                                   mt_event_state_t *st, mt_event_t *ev)
{
    const uint8_t *p = *pp;
    uint64_t v;
    int rc;
    if (p >= end)
        return -4003;
    unsigned h = *p++;
    unsigned type = h & MT_EV_TYPE_MASK;
    uint64_t d = h >> MT_EV_SEQ_SHIFT;
    if (type == 0 || type >= MT_EV_TYPE_COUNT)
        return -4004;
    if (d == MT_EV_SEQ_ESCAPE) {
        if ((rc = mt__get_varint(&p, end, &v)))
            return rc;
        d = v + MT_EV_SEQ_ESCAPE;
    }
    st->seq += d + 1;
    ev->seq = st->seq;
    ev->type = (uint8_t)type;
    if ((rc = mt__get_varint(&p, end, &v)))
        return rc;
    st->addr += (uint64_t)mt__unzigzag(v);
    ev->addr = st->addr;
    ev->size = 0;
    ev->old = 0;
    ev->old_size = 0;
    ev->stack = 0;
    if (!mt__event_addr_only(type)) {
        if ((rc = mt__get_varint(&p, end, &ev->size)))
            return rc;
        if (type != MT_EV_MUNMAP) {
            if ((rc = mt__get_varint(&p, end, &v)))
                return rc;
            st->stack += (uint64_t)mt__unzigzag(v);
            if (st->stack > UINT32_MAX)
                return -4004;
            ev->stack = (uint32_t)st->stack;
            if (mt__event_has_old(type)) {
                if ((rc = mt__get_varint(&p, end, &v)))
                    return rc;
                ev->old = ev->addr + (uint64_t)mt__unzigzag(v);
            }
            if (type == MT_EV_MREMAP &&
                (rc = mt__get_varint(&p, end, &ev->old_size)))
                return rc;
        }
    }
    *pp = p;
    return 0;
}

#endif
