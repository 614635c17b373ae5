/* intern.c: dense ids for byte strings (export.h), the tables of the
 * speedscope and pprof exports: open addressing over FNV-1a hashes, keys
 * copied into one growing buffer. */
#include <stdlib.h>
#include <string.h>

#include "export.h"

static uint64_t hash_key(const unsigned char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 32);
}

void mt__intern_init(mt_intern_t *t) { memset(t, 0, sizeof *t); }

void mt__intern_free(mt_intern_t *t)
{
    free(t->bytes);
    free(t->offset);
    free(t->length);
    free(t->hash);
    free(t->slots);
    mt__intern_init(t);
}

const char *mt__intern_key(const mt_intern_t *t, uint32_t id, size_t *len)
{
    if (len)
        *len = t->length[id];
    return t->bytes + t->offset[id];
}

static int slots_grow(mt_intern_t *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 64;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return MT_ENOMEM;
    for (uint32_t id = 0; id < t->count; id++) {
        size_t j = t->hash[id] & (n - 1);
        while (slots[j])
            j = (j + 1) & (n - 1);
        slots[j] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
    return 0;
}

/* Room for one more id and for len + 1 more bytes. */
static int reserve(mt_intern_t *t, size_t len)
{
    if (t->count == t->cap) {
        if (t->cap >= UINT32_MAX / 2)
            return MT_ENOMEM;
        uint32_t cap = t->cap ? t->cap * 2 : 64;
        size_t *offset = realloc(t->offset, cap * sizeof *offset);
        if (offset)
            t->offset = offset;
        size_t *length = realloc(t->length, cap * sizeof *length);
        if (length)
            t->length = length;
        uint64_t *hash = realloc(t->hash, cap * sizeof *hash);
        if (hash)
            t->hash = hash;
        if (!offset || !length || !hash)
            return MT_ENOMEM;
        t->cap = cap;
    }
    if (len + 1 > t->bytes_cap - t->bytes_len) {
        size_t cap = t->bytes_cap ? t->bytes_cap : 4096;
        while (len + 1 > cap - t->bytes_len) {
            if (cap > SIZE_MAX / 2)
                return MT_ENOMEM;
            cap *= 2;
        }
        char *bytes = realloc(t->bytes, cap);
        if (!bytes)
            return MT_ENOMEM;
        t->bytes = bytes;
        t->bytes_cap = cap;
    }
    return 0;
}

int64_t mt__intern(mt_intern_t *t, const void *key, size_t len)
{
    if (((size_t)t->count + 1) * 2 > t->nslots && slots_grow(t))
        return MT_ENOMEM;
    uint64_t h = hash_key(key, len);
    size_t mask = t->nslots - 1, j = h & mask;
    for (; t->slots[j]; j = (j + 1) & mask) {
        uint32_t id = t->slots[j] - 1;
        if (t->hash[id] == h && t->length[id] == len &&
            memcmp(t->bytes + t->offset[id], key, len) == 0)
            return id;
    }
    if (reserve(t, len))
        return MT_ENOMEM;
    uint32_t id = t->count++;
    t->offset[id] = t->bytes_len;
    t->length[id] = len;
    t->hash[id] = h;
    if (len)
        memcpy(t->bytes + t->bytes_len, key, len);
    t->bytes[t->bytes_len + len] = '\0';
    t->bytes_len += len + 1;
    t->slots[j] = id + 1;
    return id;
}
