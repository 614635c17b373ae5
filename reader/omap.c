/* omap.c: the treap behind omap.h. Keys are ordered as in a binary search
 * tree, random priorities as in a max-heap; the expected depth is
 * O(log n), so the recursion in split stays shallow. */
#include "omap.h"

#include <stdlib.h>

void mt__omap_init(mt_omap_t *m, uint64_t seed)
{
    *m = (mt_omap_t){.root = MT_OMAP_NIL, .free = MT_OMAP_NIL,
                     .rng = seed | 1};
}

void mt__omap_free(mt_omap_t *m)
{
    free(m->n);
    m->n = NULL;
    m->cap = m->used = 0;
    m->root = m->free = MT_OMAP_NIL;
    m->count = 0;
}

static uint32_t omap_rand(mt_omap_t *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return (uint32_t)(m->rng >> 32);
}

/* Splits tree t into keys < key (*lo) and keys > key (*hi). */
static void omap_split(mt_omap_node_t *n, uint32_t t, uint64_t key,
                       uint32_t *lo, uint32_t *hi)
{
    while (t != MT_OMAP_NIL) {
        if (n[t].key < key) {
            *lo = t;
            lo = &n[t].r;
            t = n[t].r;
        } else {
            *hi = t;
            hi = &n[t].l;
            t = n[t].l;
        }
    }
    *lo = *hi = MT_OMAP_NIL;
}

/* Joins trees a and b, every key of a below every key of b. */
static uint32_t omap_merge(mt_omap_node_t *n, uint32_t a, uint32_t b)
{
    uint32_t root = MT_OMAP_NIL, *link = &root;
    while (a != MT_OMAP_NIL && b != MT_OMAP_NIL) {
        if (n[a].prio >= n[b].prio) {
            *link = a;
            link = &n[a].r;
            a = n[a].r;
        } else {
            *link = b;
            link = &n[b].l;
            b = n[b].l;
        }
    }
    *link = a != MT_OMAP_NIL ? a : b;
    return root;
}

uint32_t mt__omap_insert(mt_omap_t *m, uint64_t key, uint64_t a, uint64_t b)
{
    uint32_t x = m->free;
    if (x != MT_OMAP_NIL) {
        m->free = m->n[x].l;
    } else {
        if (m->used == m->cap) {
            if (m->cap >= MT_OMAP_NIL / 2)
                return MT_OMAP_NIL;
            uint32_t nc = m->cap ? m->cap * 2 : 64;
            mt_omap_node_t *nn = realloc(m->n, (size_t)nc * sizeof(*nn));
            if (!nn)
                return MT_OMAP_NIL;
            m->n = nn;
            m->cap = nc;
        }
        x = m->used++;
    }
    mt_omap_node_t *n = m->n;
    n[x] = (mt_omap_node_t){key, a, b, MT_OMAP_NIL, MT_OMAP_NIL,
                            omap_rand(m)};
    /* Walk down while the nodes outrank x, then split the rest under it. */
    uint32_t *link = &m->root;
    while (*link != MT_OMAP_NIL && n[*link].prio > n[x].prio)
        link = key < n[*link].key ? &n[*link].l : &n[*link].r;
    omap_split(n, *link, key, &n[x].l, &n[x].r);
    *link = x;
    m->count++;
    return x;
}

int mt__omap_erase(mt_omap_t *m, uint64_t key)
{
    mt_omap_node_t *n = m->n;
    uint32_t *link = &m->root;
    while (*link != MT_OMAP_NIL && n[*link].key != key)
        link = key < n[*link].key ? &n[*link].l : &n[*link].r;
    uint32_t x = *link;
    if (x == MT_OMAP_NIL)
        return 0;
    *link = omap_merge(n, n[x].l, n[x].r);
    n[x].l = m->free;
    m->free = x;
    m->count--;
    return 1;
}

uint32_t mt__omap_floor(const mt_omap_t *m, uint64_t key)
{
    uint32_t t = m->root, best = MT_OMAP_NIL;
    while (t != MT_OMAP_NIL) {
        if (m->n[t].key <= key) {
            best = t;
            t = m->n[t].r;
        } else {
            t = m->n[t].l;
        }
    }
    return best;
}

uint32_t mt__omap_after(const mt_omap_t *m, uint64_t key)
{
    uint32_t t = m->root, best = MT_OMAP_NIL;
    while (t != MT_OMAP_NIL) {
        if (m->n[t].key > key) {
            best = t;
            t = m->n[t].l;
        } else {
            t = m->n[t].r;
        }
    }
    return best;
}
