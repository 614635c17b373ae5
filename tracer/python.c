/* python.c: Python stacks. The CPython extension attaches a frame walker
 * (include/memtrace/tracer.h); at each allocation the tracer asks it for the
 * thread's frames, turns each into a trie key (code object id, line) and
 * interns the path like a native stack. The cost is paid per allocation,
 * never per Python call. Code objects are described once (PYCODE records)
 * and lines are cached per thread, keyed by (code, offset). */
#include <string.h>

#include "common/capture_write.h"
#include "memtrace/tracer.h"
#include "tracer.h"

/* Code object -> id: open addressing under defs_lock. Ids start at 1; 0
 * means "could not be described" (the frame shows as unknown). A code
 * object described with the GIL held is pinned by the walker, so its
 * address is never reused and its id is final. One described without the
 * GIL (an allocation made while a C extension released it) is not: its
 * slot keeps a hash of the description, and a later use of the address
 * describes it again and keeps the id only when the hash still matches. */
typedef struct {
    const void *code;
    uint32_t id;
    uint32_t pinned;
    uint64_t hash; /* of name, file and first line; for unpinned slots */
} code_slot_t;

static code_slot_t *codes;      /* defs_lock */
static size_t codes_cap;        /* defs_lock */
static size_t codes_used;       /* defs_lock: occupied slots */
static uint32_t codes_count;    /* defs_lock: ids given */

/* Every Python definition written so far (the PYTHON record, then the
 * PYCODE records), as encoded records, so that a --follow-fork child can
 * write them again into its own capture. defs_lock. */
static uint8_t *py_log;
static size_t py_log_len, py_log_cap;

static void put_logged_unlocked(unsigned type, const uint8_t *rec, size_t len)
{
    mt__def_put_unlocked(type, rec, len);
    size_t need = py_log_len + 1 + MT_VARINT_MAX + len;
    if (need > py_log_cap) {
        size_t cap = py_log_cap ? py_log_cap * 2 : 16 << 10;
        while (cap < need)
            cap *= 2;
        uint8_t *n = mt__real.realloc(py_log, cap);
        if (!n)
            return; /* the child's capture will lack names: no worse */
        py_log = n;
        py_log_cap = cap;
    }
    uint8_t *p = mt__put_def_header(py_log + py_log_len, type, len);
    memcpy(p, rec, len);
    py_log_len = (size_t)(p + len - py_log);
}

void mt__python_reemit_unlocked(void)
{
    const uint8_t *p = py_log, *end = py_log + py_log_len;
    while (p < end) {
        unsigned type = *p++;
        uint64_t len;
        if (mt__get_varint(&p, end, &len) != 0 || len > (size_t)(end - p))
            return;
        mt__def_put_unlocked(type, p, (size_t)len);
        p += len;
    }
}

/* Per-thread caches, owner-only (no lock): code -> id, (code, offset) ->
 * line. Direct-mapped: a collision just costs a slower lookup. */
#define CODE_CACHE 512
#define LINE_CACHE 2048
typedef struct {
    const void *code[CODE_CACHE];
    uint32_t id[CODE_CACHE];
    const void *lcode[LINE_CACHE];
    int32_t loff[LINE_CACHE];
    int32_t line[LINE_CACHE];
} py_cache_t;

static __thread py_cache_t *tls_cache __attribute__((tls_model("initial-exec")));

static inline size_t ptr_hash(const void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 20);
}

static int codes_grow_unlocked(void)
{
    size_t cap = codes_cap ? codes_cap * 2 : 1024;
    code_slot_t *n = mt__real.calloc(cap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < codes_cap; i++) {
        if (!codes[i].code)
            continue;
        size_t j = ptr_hash(codes[i].code) & (cap - 1);
        while (n[j].code)
            j = (j + 1) & (cap - 1);
        n[j] = codes[i];
    }
    if (codes)
        mt__real.free(codes);
    codes = n;
    codes_cap = cap;
    return 0;
}

/* FNV-1a over the description, to recognize an unpinned code object. */
static uint64_t describe_hash(const char *name, size_t nl, const char *file,
                              size_t fl, int first)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[2] = {name, file};
    size_t lens[2] = {nl, fl};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lens[k]; i++)
            h = (h ^ (uint8_t)parts[k][i]) * 0x100000001b3ull;
        h = (h ^ 0xffu) * 0x100000001b3ull; /* separator */
    }
    return (h ^ (uint64_t)(uint32_t)first) * 0x100000001b3ull;
}

/* The id of code, describing it the first time (and, while it is not
 * pinned, each time: see code_slot_t). *final is set to 1 when the id can
 * be cached by address. */
static uint32_t code_id(const mt_python_ops_t *ops, const void *code, int *final)
{
    *final = 0;
    pthread_mutex_lock(&mt__g.defs_lock);
    if ((codes_used + 1) * 2 > codes_cap && codes_grow_unlocked() != 0) {
        pthread_mutex_unlock(&mt__g.defs_lock);
        return 0;
    }
    size_t j = ptr_hash(code) & (codes_cap - 1);
    while (codes[j].code && codes[j].code != code)
        j = (j + 1) & (codes_cap - 1);
    code_slot_t *slot = &codes[j];
    if (slot->code && slot->pinned) {
        *final = 1;
        pthread_mutex_unlock(&mt__g.defs_lock);
        return slot->id;
    }
    char name[256], file[1024];
    int first = 0, pin = 0;
    if (ops->describe(code, name, sizeof name, file, sizeof file, &first, &pin) != 0) {
        pthread_mutex_unlock(&mt__g.defs_lock);
        return 0;
    }
    size_t nl = strnlen(name, sizeof name - 1), fl = strnlen(file, sizeof file - 1);
    uint64_t hash = describe_hash(name, nl, file, fl, first);
    if (slot->code && slot->hash == hash) {
        /* The same code object as before (or one exactly like it). */
        slot->pinned = (uint32_t)pin;
        *final = pin;
        pthread_mutex_unlock(&mt__g.defs_lock);
        return slot->id;
    }
    if (!slot->code)
        codes_used++;
    uint32_t id = ++codes_count;
    *slot = (code_slot_t){code, id, (uint32_t)pin, hash};
    *final = pin;
    uint8_t rec[3 * MT_VARINT_MAX + 2 * MT_VARINT_MAX + sizeof name + sizeof file];
    uint8_t *p = rec;
    p = mt__put_varint(p, id);
    p = mt__put_str(p, name, nl);
    p = mt__put_str(p, file, fl);
    p = mt__put_varint(p, (uint64_t)(first > 0 ? first : 0));
    put_logged_unlocked(MT_DEF_PYCODE, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
    return id;
}

static py_cache_t *cache_get(void)
{
    if (MT_UNLIKELY(!tls_cache)) {
        /* Never freed: a thread's cache may be reused by a later thread
         * only through TLS reuse, and it is a few tens of KiB. */
        tls_cache = mt__real.calloc(1, sizeof *tls_cache);
    }
    return tls_cache;
}

static uintptr_t frame_key(const mt_python_ops_t *ops, py_cache_t *c,
                           const mt_pyframe_t *f)
{
    uint32_t id = 0;
    int32_t line;
    int final = 0;
    if (c) {
        size_t h = ptr_hash(f->code) & (CODE_CACHE - 1);
        if (c->code[h] == f->code) {
            id = c->id[h];
            final = 1;
        } else if ((id = code_id(ops, f->code, &final)) != 0 && final) {
            c->code[h] = f->code;
            c->id[h] = id;
        }
    } else {
        id = code_id(ops, f->code, &final);
    }
    /* Lines are cached by address only for pinned code objects: another
     * one may take an unpinned one's address. */
    size_t lh = (ptr_hash(f->code) ^ (size_t)f->offset * 0x9e37u) & (LINE_CACHE - 1);
    if (c && final && c->lcode[lh] == f->code && c->loff[lh] == f->offset) {
        line = c->line[lh];
    } else {
        line = ops->line(f->code, f->offset);
        if (c && final) {
            c->lcode[lh] = f->code;
            c->loff[lh] = f->offset;
            c->line[lh] = line;
        }
    }
    return (uintptr_t)MT_PYTHON_KEY(id, line > 0 ? line : 0);
}

/* --native: the native stack with each eval-loop C frame replaced by the
 * Python frames it was running (the entry frame and the ones it called
 * without a new C-level call). keys gets outermost first. */
static uint32_t merge_native(const mt_python_ops_t *ops, py_cache_t *c,
                             const mt_pyframe_t *py, int npy, uintptr_t *keys)
{
    uintptr_t ips[MT_MAX_DEPTH];
    int n = mt__native_unwind(ips);
    /* Python frames, innermost first, grouped by entry frame: the group of
     * the outermost eval C frame is the last group. */
    int groups[MT_MAX_DEPTH + 1], ngroups = 0;
    for (int i = 0; i < npy; i++)
        if (py[i].is_entry || i == npy - 1)
            groups[ngroups++] = i; /* index of the group's outermost frame */
    int evals = 0;
    for (int i = 0; i < n; i++)
        if (ips[i] > (uintptr_t)ops->eval_lo && ips[i] <= (uintptr_t)ops->eval_hi)
            evals++;
    uint32_t depth = 0;
    int g = ngroups - 1; /* outermost group first */
    for (int i = 0; i < n && depth < MT_MAX_DEPTH; i++) {
        int is_eval = ips[i] > (uintptr_t)ops->eval_lo &&
                      ips[i] <= (uintptr_t)ops->eval_hi;
        /* Only when the counts agree is the pairing certain; else keep the
         * native frames and put all Python frames at the innermost eval. */
        if (is_eval && evals == ngroups && g >= 0) {
            int hi = groups[g], lo = g > 0 ? groups[g - 1] + 1 : 0;
            for (int k = hi; k >= lo && depth < MT_MAX_DEPTH; k--)
                keys[depth++] = frame_key(ops, c, &py[k]);
            g--;
            continue;
        }
        keys[depth++] = ips[i];
        if (is_eval && evals != ngroups && --evals == 0)
            for (int k = npy - 1; k >= 0 && depth < MT_MAX_DEPTH; k--)
                keys[depth++] = frame_key(ops, c, &py[k]);
    }
    return depth;
}

uint32_t mt__python_stack(mt_thread_t *t)
{
    const mt_python_ops_t *ops = atomic_load_explicit(&mt__g.python, memory_order_acquire);
    mt_pyframe_t py[MT_MAX_DEPTH];
    uintptr_t keys[MT_MAX_DEPTH];
    int npy = ops->walk(py, MT_MAX_DEPTH);
    if (npy <= 0) {
        /* No Python code on this thread (a native thread, start-up): its
         * native frames say more than an empty stack. */
        return mt__stack_intern(t, keys, (uint32_t)mt__native_unwind(keys));
    }
    py_cache_t *c = cache_get();
    uint32_t depth;
    if (mt__g.python_flags & MT_PYTHON_NATIVE) {
        depth = merge_native(ops, c, py, npy, keys);
    } else {
        depth = (uint32_t)npy;
        for (int i = 0; i < npy; i++)
            keys[npy - 1 - i] = frame_key(ops, c, &py[i]);
    }
    return mt__stack_intern(t, keys, depth);
}

MT_API int mt_tracer_python_attach(const mt_python_ops_t *ops, unsigned flags)
{
    if (!ops || ops->abi != MT_PYTHON_OPS_ABI || !ops->walk || !ops->describe ||
        !ops->line)
        return MT_EINVAL;
    if (atomic_load(&mt__g.python))
        return MT_EEXIST;
    int was_busy = mt__busy;
    mt__busy = 1;
    mt__g.python_flags = flags;
    const char *v = ops->python_version ? ops->python_version : "";
    uint8_t rec[2 * MT_VARINT_MAX + 64], *p = rec;
    size_t vl = strnlen(v, 63);
    p = mt__put_str(p, v, vl);
    p = mt__put_varint(p, flags);
    pthread_mutex_lock(&mt__g.defs_lock);
    put_logged_unlocked(MT_DEF_PYTHON, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
    atomic_store_explicit(&mt__g.python, ops, memory_order_release);
    mt__busy = was_busy;
    return 0;
}

MT_API int mt_tracer_active(void)
{
    return atomic_load(&mt__g.active);
}
