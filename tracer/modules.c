/* modules.c: the loaded modules (executable and shared objects) as the
 * dynamic loader reports them: path, load bias, PT_LOAD segments, build-id.
 * Recorded at start and whenever a frame points outside every known module
 * or the program calls dlopen/dlclose, so the reader can symbolize offline. */
#include <elf.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "tracer.h"

#define MT_MAX_MODULE_SEGS 16

typedef struct {
    uint64_t bias;
    uint64_t lo, hi;     /* runtime range of the PT_LOAD segments */
    uint32_t id;
    int seen;            /* scan mark */
    char path[512];
    uint8_t build_id[64];
    size_t build_id_len;
    unsigned nseg;
    uint64_t seg_vaddr[MT_MAX_MODULE_SEGS], seg_memsz[MT_MAX_MODULE_SEGS];
} module_t;

/* Known modules: defs_lock. A scan snapshot is built without the lock. */
static module_t *known;
static size_t known_count, known_cap;
static uint32_t next_module_id;

typedef struct {
    module_t *mods;
    size_t count, cap;
} scan_t;

static void read_build_id(const struct dl_phdr_info *info, module_t *m)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            size_t name_sz = (nh->n_namesz + 3) & ~3u;
            size_t desc_sz = (nh->n_descsz + 3) & ~3u;
            const uint8_t *name = p + sizeof *nh, *desc = name + name_sz;
            if (desc + desc_sz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 &&
                nh->n_descsz <= sizeof m->build_id) {
                memcpy(m->build_id, desc, nh->n_descsz);
                m->build_id_len = nh->n_descsz;
                return;
            }
            p = desc + desc_sz;
        }
    }
}

static int scan_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    scan_t *s = arg;
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        module_t *m = mt__real.realloc(s->mods, cap * sizeof *m);
        if (!m)
            return 1;
        s->mods = m;
        s->cap = cap;
    }
    module_t *m = &s->mods[s->count];
    memset(m, 0, sizeof *m);
    m->bias = info->dlpi_addr;
    m->lo = UINT64_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (lo < m->lo)
            m->lo = lo;
        if (hi > m->hi)
            m->hi = hi;
        if (m->nseg < MT_MAX_MODULE_SEGS) {
            m->seg_vaddr[m->nseg] = ph->p_vaddr;
            m->seg_memsz[m->nseg] = ph->p_memsz;
            m->nseg++;
        }
    }
    if (m->nseg == 0)
        return 0;
    const char *name = info->dlpi_name;
    if (!name || !name[0]) {
        /* The main executable reports no name. */
        ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path - 1);
        m->path[n > 0 ? n : 0] = 0;
    } else {
        strncpy(m->path, name, sizeof m->path - 1);
    }
    read_build_id(info, m);
    s->count++;
    return 0;
}

static void emit_load_unlocked(const module_t *m)
{
    uint8_t rec[sizeof(module_t) + 64 + MT_MAX_MODULE_SEGS * 2 * MT_VARINT_MAX];
    uint8_t *p = rec;
    p = mt__put_varint(p, m->id);
    p = mt__put_varint(p, m->bias);
    p = mt__put_str(p, m->path, strlen(m->path));
    p = mt__put_str(p, (const char *)m->build_id, m->build_id_len);
    p = mt__put_varint(p, m->nseg);
    for (unsigned i = 0; i < m->nseg; i++) {
        p = mt__put_varint(p, m->seg_vaddr[i]);
        p = mt__put_varint(p, m->seg_memsz[i]);
    }
    mt__def_put_unlocked(MT_DEF_MODULE_LOAD, rec, (size_t)(p - rec));
}

static void emit_unload_unlocked(const module_t *m)
{
    uint8_t rec[MT_VARINT_MAX];
    uint8_t *p = mt__put_varint(rec, m->id);
    mt__def_put_unlocked(MT_DEF_MODULE_UNLOAD, rec, (size_t)(p - rec));
}

static int same_module(const module_t *a, const module_t *b)
{
    return a->bias == b->bias && a->lo == b->lo && strcmp(a->path, b->path) == 0;
}

void mt__modules_scan(void)
{
    scan_t s = {0};
    dl_iterate_phdr(scan_cb, &s);

    pthread_mutex_lock(&mt__g.defs_lock);
    for (size_t k = 0; k < known_count; k++)
        known[k].seen = 0;
    for (size_t i = 0; i < s.count; i++) {
        size_t k = 0;
        while (k < known_count && !same_module(&known[k], &s.mods[i]))
            k++;
        if (k < known_count) {
            known[k].seen = 1;
            continue;
        }
        if (known_count == known_cap) {
            size_t cap = known_cap ? known_cap * 2 : 64;
            module_t *m = mt__real.realloc(known, cap * sizeof *m);
            if (!m)
                break;
            known = m;
            known_cap = cap;
        }
        module_t *m = &known[known_count++];
        *m = s.mods[i];
        m->id = next_module_id++;
        m->seen = 1;
        emit_load_unlocked(m);
    }
    /* Modules that went away (dlclose) are written as unloaded and
     * forgotten, so a new module at the same address is a new module. */
    size_t w = 0;
    for (size_t k = 0; k < known_count; k++) {
        if (known[k].seen)
            known[w++] = known[k];
        else
            emit_unload_unlocked(&known[k]);
    }
    known_count = w;
    pthread_mutex_unlock(&mt__g.defs_lock);
    mt__real.free(s.mods);
}

int mt__modules_contains_unlocked(uintptr_t ip)
{
    for (size_t k = 0; k < known_count; k++)
        if (ip > known[k].lo && ip <= known[k].hi) /* ip is a return address */
            return 1;
    return 0;
}

void mt__modules_reemit_unlocked(void)
{
    for (size_t k = 0; k < known_count; k++)
        emit_load_unlocked(&known[k]);
}

void mt__self_range(uintptr_t *lo, uintptr_t *hi)
{
    /* The module that contains this very function. */
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1((void *)mt__self_range, &info, (void **)&lm,
                 RTLD_DL_LINKMAP) || !lm) {
        *lo = *hi = 1; /* nonzero: do not ask again */
        return;
    }
    uintptr_t self = (uintptr_t)mt__self_range;
    pthread_mutex_lock(&mt__g.defs_lock);
    for (size_t k = 0; k < known_count; k++) {
        if (self >= known[k].lo && self < known[k].hi) {
            *lo = known[k].lo;
            *hi = known[k].hi;
            pthread_mutex_unlock(&mt__g.defs_lock);
            return;
        }
    }
    pthread_mutex_unlock(&mt__g.defs_lock);
    *lo = *hi = 1;
}
