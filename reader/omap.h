/* omap.h: a small ordered map from unique 64-bit keys to two 64-bit values
 * (a treap with random priorities: O(log n) expected per operation whatever
 * order the keys come in). The reader keeps mmap'd regions (key = start)
 * and loaded modules (key = lo) in it, so a hostile capture with millions
 * of them cannot make a load quadratic. */
#ifndef MT_READER_OMAP_H
#define MT_READER_OMAP_H

#include <stddef.h>
#include <stdint.h>

#define MT_OMAP_NIL UINT32_MAX

typedef struct mt_omap_node_s {
    uint64_t key;
    uint64_t a, b;     /* values; the caller may change them (and the key,
                          as long as the order of keys does not change) */
    uint32_t l, r;     /* children; l links free nodes */
    uint32_t prio;
} mt_omap_node_t;

typedef struct mt_omap_s {
    mt_omap_node_t *n; /* node pool; a node's index is stable */
    uint32_t cap, used, root, free;
    size_t count;
    uint64_t rng;
} mt_omap_t;

/* An empty map; seed varies the tree shape only, never the results. */
void mt__omap_init(mt_omap_t *m, uint64_t seed);
void mt__omap_free(mt_omap_t *m);
/* Inserts key (which must not be present). Returns the node, or
 * MT_OMAP_NIL when out of memory. Node pointers move; indexes don't. */
uint32_t mt__omap_insert(mt_omap_t *m, uint64_t key, uint64_t a, uint64_t b);
/* Removes key if present; returns whether it was. */
int mt__omap_erase(mt_omap_t *m, uint64_t key);
/* The node with the largest key <= key, or MT_OMAP_NIL. */
uint32_t mt__omap_floor(const mt_omap_t *m, uint64_t key);
/* The node with the smallest key > key, or MT_OMAP_NIL. */
uint32_t mt__omap_after(const mt_omap_t *m, uint64_t key);

#endif
