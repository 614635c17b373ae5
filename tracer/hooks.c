/* hooks.c: the interposed functions. Each one checks the reentrancy guard
 * first: when it is set (we are inside a hook already, or in the tracer's
 * own machinery), or tracing is off, the call goes straight to the real
 * function. Otherwise the real function runs first and its result, never
 * changed, is recorded with the caller's stack. A free is recorded before
 * the real free, so its sequence number comes before that of any allocation
 * that reuses the address. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtrace/memtrace.h"
#include "memtrace/tracer.h"
#include "tracer.h"

#define MT_EXPORT __attribute__((visibility("default")))

static inline int should_trace(void)
{
    return !mt__busy && atomic_load_explicit(&mt__g.active, memory_order_relaxed);
}

/* Records an allocation that already happened. Guard held by the caller. */
static inline void note_alloc(unsigned type, void *p, uint64_t size,
                              void *old, uint64_t old_size)
{
    int saved = errno;
    mt_thread_t *t = mt__thread_get();
    if (t) {
        uint32_t stack = mt__stack_capture(t);
        mt__record(t, type, (uintptr_t)p, size, stack, (uintptr_t)old, old_size);
    }
    errno = saved;
}

static inline void note_free(unsigned type, void *p, uint64_t size)
{
    int saved = errno;
    mt_thread_t *t = mt__thread_get();
    if (t)
        mt__record(t, type, (uintptr_t)p, size, 0, 0, 0);
    errno = saved;
}

/* Before resolution: the bootstrap pool (dlsym allocates), else resolve. */
#define MT_ENSURE(fn, early)                                                   \
    do {                                                                       \
        if (MT_UNLIKELY(!mt__real.fn)) {                                       \
            if (mt__busy)                                                      \
                return early;                                                  \
            mt__bootstrap();                                                   \
            if (!mt__real.fn)                                                  \
                return early;                                                  \
        }                                                                      \
    } while (0)

MT_EXPORT void *malloc(size_t size)
{
    MT_ENSURE(malloc, mt__bootstrap_alloc(size));
    if (!should_trace())
        return mt__real.malloc(size);
    mt__busy = 1;
    void *p = mt__real.malloc(size);
    if (MT_LIKELY(p != NULL))
        note_alloc(MT_EV_MALLOC, p, size, NULL, 0);
    mt__busy = 0;
    return p;
}

MT_EXPORT void free(void *p)
{
    if (!p || MT_UNLIKELY(mt__bootstrap_owns(p)))
        return;
    MT_ENSURE(free, );
    if (!should_trace()) {
        mt__real.free(p);
        return;
    }
    mt__busy = 1;
    note_free(MT_EV_FREE, p, 0);
    mt__real.free(p);
    mt__busy = 0;
}

MT_EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        total = SIZE_MAX;
    MT_ENSURE(calloc, mt__bootstrap_alloc(total)); /* the pool is zeroed */
    if (!should_trace())
        return mt__real.calloc(n, size);
    mt__busy = 1;
    void *p = mt__real.calloc(n, size);
    if (MT_LIKELY(p != NULL))
        note_alloc(MT_EV_CALLOC, p, total, NULL, 0);
    mt__busy = 0;
    return p;
}

/* realloc of a pool block: move it to the real heap (untraced origin). */
static void *realloc_from_pool(void *old, size_t size)
{
    void *p = malloc(size);
    if (p) {
        size_t n = mt__bootstrap_size(old);
        memcpy(p, old, n < size ? n : size);
    }
    return p;
}

/* realloc and reallocarray release the old block inside the call, so the
 * event is numbered before the call (another thread may get the old
 * address back the moment it returns) and written after it, with the
 * thread's spinlock held across the call. */
static inline void *realloc_common(unsigned type, void *old, size_t size,
                                   void *(*real)(void *, size_t, size_t),
                                   size_t n, size_t m)
{
    mt__busy = 1;
    int saved = errno;
    mt_thread_t *t = mt__thread_get();
    uint32_t stack = t ? mt__stack_capture(t) : 0;
    uint64_t seq = t ? mt__record_lock(t) : 0;
    errno = saved;
    void *p = real(old, n, m);
    if (seq) {
        saved = errno;
        if (p)
            mt__record_unlock(t, seq, type, (uintptr_t)p, size, stack,
                              (uintptr_t)old, 0);
        else if (size == 0 && old) /* realloc(p, 0) freed p */
            mt__record_unlock(t, seq, MT_EV_FREE, (uintptr_t)old, 0, 0, 0, 0);
        else
            mt__record_unlock(t, seq, 0, 0, 0, 0, 0, 0);
        errno = saved;
    }
    mt__busy = 0;
    return p;
}

static void *real_realloc2(void *old, size_t n, size_t m)
{
    (void)m;
    return mt__real.realloc(old, n);
}

static void *real_reallocarray(void *old, size_t n, size_t m)
{
    return mt__real.reallocarray(old, n, m);
}

MT_EXPORT void *realloc(void *old, size_t size)
{
    if (MT_UNLIKELY(old && mt__bootstrap_owns(old)))
        return realloc_from_pool(old, size);
    MT_ENSURE(realloc, mt__bootstrap_alloc(size));
    if (!should_trace())
        return mt__real.realloc(old, size);
    return realloc_common(MT_EV_REALLOC, old, size, real_realloc2, size, 0);
}

MT_EXPORT void *reallocarray(void *old, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        total = SIZE_MAX;
    if (MT_UNLIKELY(old && mt__bootstrap_owns(old)))
        return realloc_from_pool(old, total);
    MT_ENSURE(reallocarray, NULL);
    if (!should_trace())
        return mt__real.reallocarray(old, n, size);
    return realloc_common(MT_EV_REALLOCARRAY, old, total, real_reallocarray, n, size);
}

MT_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    MT_ENSURE(posix_memalign, ENOMEM);
    if (!should_trace())
        return mt__real.posix_memalign(out, align, size);
    mt__busy = 1;
    int rc = mt__real.posix_memalign(out, align, size);
    if (rc == 0)
        note_alloc(MT_EV_POSIX_MEMALIGN, *out, size, NULL, 0);
    mt__busy = 0;
    return rc;
}

#define MT_ALIGNED_HOOK(name, type, params, args, size_expr)                   \
    MT_EXPORT void *name params                                                \
    {                                                                          \
        MT_ENSURE(name, NULL);                                                 \
        if (!should_trace())                                                   \
            return mt__real.name args;                                         \
        mt__busy = 1;                                                          \
        void *p = mt__real.name args;                                          \
        if (p)                                                                 \
            note_alloc(type, p, size_expr, NULL, 0);                           \
        mt__busy = 0;                                                          \
        return p;                                                              \
    }

MT_ALIGNED_HOOK(aligned_alloc, MT_EV_ALIGNED_ALLOC, (size_t align, size_t size),
                (align, size), size)
MT_ALIGNED_HOOK(memalign, MT_EV_MEMALIGN, (size_t align, size_t size),
                (align, size), size)
MT_ALIGNED_HOOK(valloc, MT_EV_VALLOC, (size_t size), (size), size)
MT_ALIGNED_HOOK(pvalloc, MT_EV_PVALLOC, (size_t size), (size), size)

/* Only anonymous mappings are allocations; a file mapping is not heap (and
 * a munmap of one finds no traced region, which the reader ignores). */
static inline void *mmap_common(void *(*real)(void *, size_t, int, int, int, off_t),
                                void *addr, size_t len, int prot, int flags,
                                int fd, off_t off)
{
    if (!should_trace() || !(flags & MAP_ANONYMOUS))
        return real(addr, len, prot, flags, fd, off);
    mt__busy = 1;
    void *p = real(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        note_alloc(MT_EV_MMAP, p, len, NULL, 0);
    mt__busy = 0;
    return p;
}

MT_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    MT_ENSURE(mmap, MAP_FAILED);
    return mmap_common(mt__real.mmap, addr, len, prot, flags, fd, off);
}

MT_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    MT_ENSURE(mmap64, MAP_FAILED);
    return mmap_common(mt__real.mmap64, addr, len, prot, flags, fd, off);
}

MT_EXPORT int munmap(void *addr, size_t len)
{
    MT_ENSURE(munmap, -1);
    if (!should_trace())
        return mt__real.munmap(addr, len);
    mt__busy = 1;
    note_free(MT_EV_MUNMAP, addr, len);
    int rc = mt__real.munmap(addr, len);
    mt__busy = 0;
    return rc;
}

MT_EXPORT void *mremap(void *old, size_t old_len, size_t len, int flags, ...)
{
    void *want = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want = va_arg(ap, void *);
        va_end(ap);
    }
    MT_ENSURE(mremap, MAP_FAILED);
    if (!should_trace())
        return mt__real.mremap(old, old_len, len, flags, want);
    mt__busy = 1;
    int saved = errno;
    mt_thread_t *t = mt__thread_get();
    uint32_t stack = t ? mt__stack_capture(t) : 0;
    uint64_t seq = t ? mt__record_lock(t) : 0; /* see realloc_common */
    errno = saved;
    void *p = mt__real.mremap(old, old_len, len, flags, want);
    if (seq) {
        saved = errno;
        if (p != MAP_FAILED)
            mt__record_unlock(t, seq, MT_EV_MREMAP, (uintptr_t)p, len, stack,
                              (uintptr_t)old, old_len);
        else
            mt__record_unlock(t, seq, 0, 0, 0, 0, 0, 0);
        errno = saved;
    }
    mt__busy = 0;
    return p;
}

/* dlopen/dlclose change the module map: record it right away, so frames
 * in a library that is later closed still symbolize. */
MT_EXPORT void *dlopen(const char *file, int mode)
{
    MT_ENSURE(dlopen, NULL);
    void *h = mt__real.dlopen(file, mode);
    if (h && should_trace()) {
        mt__busy = 1;
        mt__runtime_patch();
        mt__modules_scan();
        mt__busy = 0;
    }
    return h;
}

MT_EXPORT int dlclose(void *h)
{
    MT_ENSURE(dlclose, -1);
    int rc = mt__real.dlclose(h);
    if (rc == 0 && should_trace()) {
        mt__busy = 1;
        mt__modules_scan();
        mt__busy = 0;
    }
    return rc;
}

/* _exit skips atexit handlers and destructors: flush here first. */
MT_EXPORT void _exit(int status)
{
    if (mt__real.exit_ == NULL)
        mt__bootstrap();
    if (!mt__busy && mt__g.pid == getpid()) {
        mt__busy = 1;
        mt__writer_finish();
    }
    mt__real.exit_(status);
}

MT_EXPORT void _Exit(int status)
{
    _exit(status);
}

/* ---- PyMem domains (--trace-python-allocators) ----------------------------
 * The wrapper of each domain forwards to the allocator it replaced (saved
 * here, written once when installed) with the guard held, so what that
 * allocator does underneath (pymalloc's arenas, malloc) is not recorded a
 * second time. Each domain has its own functions, which ignore ctx: while
 * CPython swaps an allocator, another thread may pair the new functions
 * with the old ctx. */
static mt_pymem_allocator_t pymem_orig[3];

static void *py_realloc_real(void *old, size_t size, size_t domain)
{
    const mt_pymem_allocator_t *o = &pymem_orig[domain];
    return o->realloc(o->ctx, old, size);
}

#define MT_PYMEM_DOMAIN(D)                                                     \
    static void *py_malloc_##D(void *ctx, size_t size)                         \
    {                                                                          \
        (void)ctx;                                                             \
        const mt_pymem_allocator_t *o = &pymem_orig[D];                        \
        if (!should_trace())                                                   \
            return o->malloc(o->ctx, size);                                    \
        mt__busy = 1;                                                          \
        void *p = o->malloc(o->ctx, size);                                     \
        if (p)                                                                 \
            note_alloc(MT_EV_PY_MALLOC, p, size, NULL, 0);                     \
        mt__busy = 0;                                                          \
        return p;                                                              \
    }                                                                          \
    static void *py_calloc_##D(void *ctx, size_t n, size_t size)               \
    {                                                                          \
        (void)ctx;                                                             \
        const mt_pymem_allocator_t *o = &pymem_orig[D];                        \
        if (!should_trace())                                                   \
            return o->calloc(o->ctx, n, size);                                 \
        mt__busy = 1;                                                          \
        void *p = o->calloc(o->ctx, n, size);                                  \
        size_t total;                                                          \
        if (__builtin_mul_overflow(n, size, &total))                           \
            total = SIZE_MAX;                                                  \
        if (p)                                                                 \
            note_alloc(MT_EV_PY_CALLOC, p, total, NULL, 0);                    \
        mt__busy = 0;                                                          \
        return p;                                                              \
    }                                                                          \
    static void *py_realloc_##D(void *ctx, void *old, size_t size)             \
    {                                                                          \
        (void)ctx;                                                             \
        const mt_pymem_allocator_t *o = &pymem_orig[D];                        \
        if (!should_trace())                                                   \
            return o->realloc(o->ctx, old, size);                              \
        return realloc_common(MT_EV_PY_REALLOC, old, size, py_realloc_real,    \
                              size, D);                                        \
    }                                                                          \
    static void py_free_##D(void *ctx, void *p)                                \
    {                                                                          \
        (void)ctx;                                                             \
        const mt_pymem_allocator_t *o = &pymem_orig[D];                        \
        if (!p || !should_trace()) {                                           \
            o->free(o->ctx, p);                                                \
            return;                                                            \
        }                                                                      \
        mt__busy = 1;                                                          \
        note_free(MT_EV_PY_FREE, p, 0);                                        \
        o->free(o->ctx, p);                                                    \
        mt__busy = 0;                                                          \
    }

MT_PYMEM_DOMAIN(0)
MT_PYMEM_DOMAIN(1)
MT_PYMEM_DOMAIN(2)

static const mt_pymem_allocator_t pymem_wrappers[3] = {
    {NULL, py_malloc_0, py_calloc_0, py_realloc_0, py_free_0},
    {NULL, py_malloc_1, py_calloc_1, py_realloc_1, py_free_1},
    {NULL, py_malloc_2, py_calloc_2, py_realloc_2, py_free_2},
};

MT_API int mt_tracer_pymem_wrap(int domain, const mt_pymem_allocator_t *orig,
                                mt_pymem_allocator_t *wrapped)
{
    if (domain < MT_PYMEM_RAW || domain > MT_PYMEM_OBJ || !orig || !wrapped ||
        !orig->malloc || !orig->calloc || !orig->realloc || !orig->free)
        return MT_EINVAL;
    pymem_orig[domain] = *orig;
    *wrapped = pymem_wrappers[domain];
    return 0;
}
