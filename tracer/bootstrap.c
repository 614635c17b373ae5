/* bootstrap.c: finding the real allocator. The hooks forward to the next
 * definition of each function (dlsym(RTLD_NEXT)), but dlsym itself may call
 * calloc/malloc, which land in our hooks before anything is resolved: those
 * few early allocations come from a static pool and are never freed. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "tracer.h"

struct mt_real_fns mt__real;

/* The early pool. Each allocation has a 16-byte header holding its size.
 * pool_used only grows (atomic, so two threads bootstrapping at once each
 * get their own bytes). 1 MiB covers dlsym and early constructors. */
#define MT_POOL_SIZE (1u << 20)
static _Alignas(16) uint8_t pool[MT_POOL_SIZE];
static atomic_size_t pool_used;

void *mt__bootstrap_alloc(size_t size)
{
    size_t need = 16 + ((size + 15) & ~(size_t)15);
    if (size > MT_POOL_SIZE)
        return NULL;
    size_t at = atomic_fetch_add(&pool_used, need);
    if (at + need > MT_POOL_SIZE)
        return NULL;
    memcpy(pool + at, &size, sizeof size);
    return pool + at + 16; /* static storage: already zero */
}

int mt__bootstrap_owns(const void *p)
{
    return (const uint8_t *)p >= pool && (const uint8_t *)p < pool + MT_POOL_SIZE;
}

size_t mt__bootstrap_size(const void *p)
{
    size_t size;
    memcpy(&size, (const uint8_t *)p - 16, sizeof size);
    return size;
}

/* The next definition after ours; when this library was dlopen'ed with
 * RTLD_LOCAL (memtrace.Tracker) there may be none "next", and the global
 * one is the real one, since ours is not global then. */
#define MT_RESOLVE(field, name)                                                \
    do {                                                                       \
        void *sym_ = dlsym(RTLD_NEXT, name);                                   \
        if (!sym_)                                                             \
            sym_ = dlsym(RTLD_DEFAULT, name);                                  \
        memcpy(&mt__real.field, &sym_, sizeof sym_);                           \
    } while (0)

void mt__bootstrap(void)
{
    /* Resolving twice is harmless (same answers), so no lock: the first
     * caller is almost always the dynamic loader's start-up, single-threaded.
     * mt__busy keeps dlsym's own allocations out of the trace. */
    static atomic_int done;
    if (atomic_load_explicit(&done, memory_order_acquire))
        return;
    int was_busy = mt__busy;
    mt__busy = 1;
    MT_RESOLVE(malloc, "malloc");
    MT_RESOLVE(free, "free");
    MT_RESOLVE(calloc, "calloc");
    MT_RESOLVE(realloc, "realloc");
    MT_RESOLVE(reallocarray, "reallocarray");
    MT_RESOLVE(posix_memalign, "posix_memalign");
    MT_RESOLVE(aligned_alloc, "aligned_alloc");
    MT_RESOLVE(memalign, "memalign");
    MT_RESOLVE(valloc, "valloc");
    MT_RESOLVE(pvalloc, "pvalloc");
    MT_RESOLVE(mmap, "mmap");
    MT_RESOLVE(mmap64, "mmap64");
    MT_RESOLVE(munmap, "munmap");
    MT_RESOLVE(mremap, "mremap");
    MT_RESOLVE(dlopen, "dlopen");
    MT_RESOLVE(dlclose, "dlclose");
    MT_RESOLVE(exit_, "_exit");
    MT_RESOLVE(Exit_, "_Exit");
    MT_RESOLVE(fork, "fork");
    MT_RESOLVE(clone, "clone");
    MT_RESOLVE(execve, "execve");
    MT_RESOLVE(execvpe, "execvpe");
    MT_RESOLVE(fexecve, "fexecve");
    MT_RESOLVE(posix_spawn, "posix_spawn");
    MT_RESOLVE(posix_spawnp, "posix_spawnp");
    MT_RESOLVE(system, "system");
    MT_RESOLVE(popen, "popen");
    MT_RESOLVE(sigaction, "sigaction");
    MT_RESOLVE(signal, "signal");
    mt__busy = was_busy;
    atomic_store_explicit(&done, 1, memory_order_release);
}
