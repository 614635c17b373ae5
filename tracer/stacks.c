/* stacks.c: native call stacks, deduplicated in process as a trace tree.
 * A stack is a path in a trie whose nodes are (parent node, return address);
 * an event carries only the id of its innermost node. Each new node is
 * written once to the definition stream. A thread first compares its stack
 * with the one it saw last (outermost first), so a loop that allocates from
 * the same place costs one unwind and one memcmp, and no lock. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <string.h>

#include "common/capture_write.h"
#include "tracer.h"

/* The trie's index: open addressing over (parent, ip) -> id. Grows by
 * doubling at half load; lives in mt__real.malloc memory. defs_lock. */
typedef struct {
    uint64_t ip;
    uint32_t parent;
    uint32_t id; /* 0: empty slot */
} trie_slot_t;

static trie_slot_t *trie;        /* defs_lock */
static size_t trie_cap;          /* defs_lock: power of two, or 0 */
static uint32_t trie_count;      /* defs_lock: nodes so far */
static uintptr_t self_lo, self_hi; /* our own code: written once at init */

static inline size_t trie_hash(uint32_t parent, uint64_t ip)
{
    uint64_t h = (ip ^ ((uint64_t)parent << 40) ^ parent) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17);
}

static int trie_grow_unlocked(void)
{
    size_t cap = trie_cap ? trie_cap * 2 : 4096;
    trie_slot_t *t = mt__real.calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < trie_cap; i++) {
        if (!trie[i].id)
            continue;
        size_t j = trie_hash(trie[i].parent, trie[i].ip) & (cap - 1);
        while (t[j].id)
            j = (j + 1) & (cap - 1);
        t[j] = trie[i];
    }
    if (trie)
        mt__real.free(trie);
    trie = t;
    trie_cap = cap;
    return 0;
}

static void emit_node_unlocked(uint32_t parent, uint64_t ip)
{
    uint8_t rec[2 * MT_VARINT_MAX], *p = rec;
    p = mt__put_varint(p, parent);
    p = mt__put_varint(p, mt__zigzag((int64_t)(ip - mt__g.last_node_ip)));
    mt__g.last_node_ip = ip;
    mt__def_put_unlocked(MT_DEF_NODE, rec, (size_t)(p - rec));
}

/* Finds or adds the node (parent, ip). Returns its id, or 0 when memory
 * ran out (the stack is then cut short at its parent). */
static uint32_t trie_get_unlocked(uint32_t parent, uint64_t ip)
{
    if ((trie_count + 1) * 2 > trie_cap && trie_grow_unlocked() != 0)
        return 0;
    size_t j = trie_hash(parent, ip) & (trie_cap - 1);
    while (trie[j].id) {
        if (trie[j].ip == ip && trie[j].parent == parent)
            return trie[j].id;
        j = (j + 1) & (trie_cap - 1);
    }
    trie[j].ip = ip;
    trie[j].parent = parent;
    trie[j].id = ++trie_count;
    emit_node_unlocked(parent, ip);
    return trie[j].id;
}

uint32_t mt__stack_count_unlocked(void)
{
    return trie_count;
}

void mt__stack_reemit_unlocked(void)
{
    /* Node ids are implicit in the file (the n-th NODE record is node n),
     * so write them back in id order. */
    if (!trie_count)
        return;
    trie_slot_t **by_id = mt__real.calloc(trie_count + 1, sizeof *by_id);
    if (!by_id) {
        mt__g.defs_failed = 1;
        return;
    }
    for (size_t i = 0; i < trie_cap; i++)
        if (trie[i].id)
            by_id[trie[i].id] = &trie[i];
    mt__g.last_node_ip = 0;
    for (uint32_t id = 1; id <= trie_count; id++)
        emit_node_unlocked(by_id[id]->parent, by_id[id]->ip);
    mt__real.free(by_id);
}

void mt__stack_reset_thread(mt_thread_t *t)
{
    t->prev_depth = 0;
}

int mt__native_unwind(uintptr_t *ips)
{
    void *raw[MT_MAX_DEPTH + 8];
    int n = unw_backtrace(raw, MT_MAX_DEPTH + 8);
    if (MT_UNLIKELY(self_hi == 0))
        mt__self_range(&self_lo, &self_hi);

    /* Drop our own frames (the hook and what it called), then reverse into
     * outermost-first order, keeping the innermost frames if too deep. */
    int inner = 0;
    while (inner < n && (uintptr_t)raw[inner] >= self_lo &&
           (uintptr_t)raw[inner] < self_hi)
        inner++;
    int depth = n - inner;
    if (depth > MT_MAX_DEPTH)
        depth = MT_MAX_DEPTH;
    for (int i = 0; i < depth; i++)
        ips[i] = (uintptr_t)raw[inner + depth - 1 - i];
    return depth;
}

uint32_t mt__stack_intern(mt_thread_t *t, const uintptr_t *keys, uint32_t depth)
{
    /* Common prefix with the previous stack of this thread. */
    uint32_t same = 0, lim = depth < t->prev_depth ? depth : t->prev_depth;
    while (same < lim && keys[same] == t->prev_ips[same])
        same++;
    if (same == depth && depth == t->prev_depth)
        return depth ? t->prev_nodes[depth - 1] : 0;

    uint32_t parent = same ? t->prev_nodes[same - 1] : 0;
    int rescanned = 0;
    pthread_mutex_lock(&mt__g.defs_lock);
    for (uint32_t i = same; i < depth; i++) {
        if (MT_UNLIKELY(!rescanned && !MT_KEY_IS_PYTHON(keys[i]) &&
                        !mt__modules_contains_unlocked(keys[i]))) {
            /* A frame in a module we have not recorded (loaded by a path we
             * do not hook): record the modules before the node. The scan
             * takes the loader's lock, so never under defs_lock. */
            pthread_mutex_unlock(&mt__g.defs_lock);
            mt__modules_scan();
            pthread_mutex_lock(&mt__g.defs_lock);
            rescanned = 1;
        }
        uint32_t id = trie_get_unlocked(parent, keys[i]);
        if (!id) {
            depth = i;
            break;
        }
        t->prev_ips[i] = keys[i];
        t->prev_nodes[i] = id;
        parent = id;
    }
    pthread_mutex_unlock(&mt__g.defs_lock);
    t->prev_depth = depth;
    return depth ? t->prev_nodes[depth - 1] : 0;
}

uint32_t mt__stack_capture(mt_thread_t *t)
{
    if (atomic_load_explicit(&mt__g.python, memory_order_acquire))
        return mt__python_stack(t);
    uintptr_t ips[MT_MAX_DEPTH];
    return mt__stack_intern(t, ips, (uint32_t)mt__native_unwind(ips));
}
