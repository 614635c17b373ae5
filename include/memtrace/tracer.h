/* tracer.h: what the preload library (libmemtrace_preload.so) offers to code
 * running in the traced process: the CPython extension attaches its frame
 * walker here, and a program (or the extension's Tracker) can start and
 * stop tracing at run time in a process that was not started by
 * `memtrace run`; and any program can mark named stages (at the end).
 * These are the only symbols the library exports besides the allocation
 * functions it interposes.
 *
 * Look the functions up with dlsym(RTLD_DEFAULT, ...) when the library was
 * preloaded, or dlopen() it first; the stage functions alone are also
 * reached through weak references by mt_stage_enter/mt_stage_leave. All
 * functions are thread-safe. */
#ifndef MEMTRACE_TRACER_H
#define MEMTRACE_TRACER_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/memtrace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Python frames -------------------------------------------------------
 * The tracer knows nothing of CPython's structures, which change with every
 * version; the extension, compiled against each version's headers, walks
 * the frames for it. The tracer calls these from inside allocation hooks,
 * on the allocating thread, with or without the GIL held: they must not
 * allocate, take locks, or call into the interpreter (no Python API that
 * may allocate, raise or need the GIL). */

#define MT_PYTHON_OPS_ABI 1

/* One frame of the calling thread's Python stack. */
typedef struct mt_pyframe_s {
    const void *code;  /* the frame's code object (borrowed) */
    int32_t offset;    /* instruction offset in bytes into the bytecode */
    int32_t is_entry;  /* 1: the outermost Python frame run by one C-level
                          call of the eval loop (for merging with native
                          frames: one eval-loop C frame per entry frame) */
} mt_pyframe_t;

typedef struct mt_python_ops_s {
    unsigned abi;                /* MT_PYTHON_OPS_ABI */
    const char *python_version;  /* e.g. "3.11.7" (static storage) */

    /* Fills up to max frames of the calling thread, innermost first.
     * Returns how many (0: the thread runs no Python code). */
    int (*walk)(mt_pyframe_t *frames, int max);

    /* The function's qualified name and file of a code object, as UTF-8,
     * NUL-terminated and truncated to fit, and its first line. Returns 0,
     * or -1 when it cannot be done safely now (the caller retries later).
     * *pin is set to 1 when the extension took a reference that keeps the
     * code object alive (so its address is never reused for another); 0
     * when it could not (no GIL): the description is right now, but the
     * address may name another code object later. */
    int (*describe)(const void *code, char *name, size_t name_cap, char *file,
                    size_t file_cap, int *firstlineno, int *pin);

    /* The line executing at a byte offset into code's bytecode. */
    int (*line)(const void *code, int32_t offset);

    /* The C function that runs Python frames (the eval loop), for --native:
     * its address range replaces native frames with Python ones. */
    const void *eval_lo, *eval_hi;
} mt_python_ops_t;

/* Python stacks on top of native ones (the --native mode); without it,
 * allocations carry the Python stack only. */
#define MT_PYTHON_NATIVE 0x1u /* = MT_PYTHON_FLAG_NATIVE of the format */

/* Attaches the frame walker: from now on allocations made by a thread that
 * runs Python code carry its Python stack. ops must stay valid until
 * mt_tracer_stop() or the end of the process. Returns 0, MT_EINVAL (wrong
 * ABI) or MT_EEXIST (already attached). */
MT_EXTERN int mt_tracer_python_attach(const mt_python_ops_t *ops, unsigned flags);

/* 1 while this process records allocations. */
MT_EXTERN int mt_tracer_active(void);

/* ---- PyMem domains (--trace-python-allocators) ---------------------------
 * Same layout as CPython's PyMemAllocatorEx (stable from 3.5 to 3.13). The
 * extension reads each domain's allocator with PyMem_GetAllocator, asks for
 * a wrapper here and installs it with PyMem_SetAllocator. The wrapper
 * records each call as a Python-allocator event and forwards to orig; what
 * orig does underneath (pymalloc arenas, malloc) is not recorded again, so
 * no byte is counted twice. */
typedef struct mt_pymem_allocator_s {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr);
} mt_pymem_allocator_t;

enum { MT_PYMEM_RAW = 0, MT_PYMEM_MEM = 1, MT_PYMEM_OBJ = 2 };

/* Fills *wrapped with the wrapper of domain's allocator orig (copied: orig
 * need not outlive the call). Returns 0 or MT_EINVAL. */
MT_EXTERN int mt_tracer_pymem_wrap(int domain, const mt_pymem_allocator_t *orig,
                                   mt_pymem_allocator_t *wrapped);

/* pymalloc's arena allocator, the layout of CPython's
 * PyObjectArenaAllocator (stable since 3.4). With --trace-python-allocators
 * the arenas are not traced (only the objects in them), so the extension
 * wraps this allocator too: the wrapper counts the bytes of live arenas,
 * which the tracer's memory samples record, so that `memtrace rss` can tell
 * pymalloc's free space from memory not traced. */
typedef struct mt_pyarena_allocator_s {
    void *ctx;
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
} mt_pyarena_allocator_t;

/* Fills *wrapped with the counting wrapper of orig (copied). existing: the
 * bytes of the arenas that exist already, less the blocks allocated in
 * them (objects from before tracing, which the traced heap lacks). Returns 0 or MT_EINVAL. Call
 * with the GIL held (CPython calls the arena allocator with it). */
MT_EXTERN int mt_tracer_pyarena_wrap(const mt_pyarena_allocator_t *orig,
                                     uint64_t existing,
                                     mt_pyarena_allocator_t *wrapped);

/* ---- Tracing at run time ---------------------------------------------------
 * For a process not started by `memtrace run` (memtrace.Tracker): dlopen
 * this library, then mt_tracer_start() redirects the allocation functions
 * of every loaded object (and of objects loaded later) to the hooks by
 * patching their relocation entries, and starts writing path.
 * mt_tracer_stop() puts the entries back, writes the rest and the trailer,
 * and closes the capture; the Python walker is detached. Tracing can then
 * start again with another path. */
typedef struct mt_tracer_opts_s {
    unsigned rss_interval_ms; /* 0: 10 */
    int follow_fork;          /* children write path.<pid> */
    int force;                /* overwrite an existing path */
    int quiet;                /* no messages on stderr */
    int aggregate;            /* per-stack totals and periodic checkpoints
                                 instead of every event (--aggregate) */
    unsigned checkpoint_ms;   /* with aggregate: checkpoint interval; 0: 5000 */
} mt_tracer_opts_t;

/* Returns 0, MT_EEXIST (already tracing, or path exists without force), or
 * a negative errno from creating path. */
MT_EXTERN int mt_tracer_start(const char *path, const mt_tracer_opts_t *opts);
/* Returns 0, or MT_EINVAL when not tracing. */
MT_EXTERN int mt_tracer_stop(void);

/* ---- Stages ----------------------------------------------------------------
 * Named phases of the program, for `memtrace stages`: what each one cost in
 * time, CPU, allocations, heap and RSS, summed over all its calls.
 *
 *     mt_stage_enter("extract");
 *     ...                         // the stage's work
 *     mt_stage_leave();
 *
 * Stages nest per thread: a stage entered inside another is reported as
 * "outer.inner". Call them from any thread; each thread has its own
 * nesting. A program that uses them need not link anything of memtrace:
 * the two inline functions below call the library's functions through weak
 * references, which are NULL (and the calls do nothing, at the cost of one
 * test of a pointer) when the library is not in the process, and bound to
 * it when `memtrace run` preloads it. A program that loads the library
 * itself with dlopen() to call mt_tracer_start() finds its weak references
 * already bound to nothing: it looks up mt_tracer_stage_enter and
 * mt_tracer_stage_leave with dlsym() on the same handle.
 *
 * The library's functions, for dlsym() and bindings: enter returns 1 when
 * a record was written, 0 when nothing is traced right now (no capture is
 * being written, or the call came from inside the tracer's own work: a
 * signal handler interrupting an allocation), MT_EINVAL when name is NULL.
 * name is copied (at most 255 bytes are kept). leave ends the innermost
 * stage open on the calling thread; name (or NULL) says which stage that
 * should be, so a reader can repair a missed leave; same returns. Neither
 * allocates through the traced allocator nor waits for the writer. */
#if defined(__GNUC__) && !defined(MT_BUILDING)
#define MT__WEAK __attribute__((weak))
#else
#define MT__WEAK
#endif
MT_EXTERN int mt_tracer_stage_enter(const char *name) MT__WEAK;
MT_EXTERN int mt_tracer_stage_leave(const char *name) MT__WEAK;

/* Enters the stage name (see above); does nothing without the library. */
static inline void mt_stage_enter(const char *name)
{
#if defined(__GNUC__) && !defined(MT_BUILDING)
    if (mt_tracer_stage_enter)
#endif
        (void)mt_tracer_stage_enter(name);
}

/* Leaves the innermost open stage of the calling thread. */
static inline void mt_stage_leave(void)
{
#if defined(__GNUC__) && !defined(MT_BUILDING)
    if (mt_tracer_stage_leave)
#endif
        (void)mt_tracer_stage_leave(NULL);
}

#ifdef __cplusplus
}
#endif
#endif
