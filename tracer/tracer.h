/* tracer.h: private to the preload library. The tracer's global state lives
 * in one struct (mt__g, defined in preload.c); this header says which lock
 * protects each field and declares the pieces the other tracer files share.
 *
 * Everything here runs inside someone else's process, on their hot path.
 * Rules: no allocation through a hooked path (only mt__real.* or mmap), one
 * thread-local reentrancy guard checked first in every hook, and a failure
 * turns tracing off rather than changing what the program sees. */
#ifndef MT_TRACER_H
#define MT_TRACER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/format.h"

#define MT_LIKELY(x) __builtin_expect(!!(x), 1)
#define MT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MT_HIDDEN __attribute__((visibility("hidden")))
/* The API of include/memtrace/tracer.h: exported like the hooks. */
#define MT_API __attribute__((visibility("default")))

/* The allocator functions the hooks forward to, resolved with
 * dlsym(RTLD_NEXT) (bootstrap.c). Written once during start-up. */
struct mt_real_fns {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void *(*mremap)(void *, size_t, size_t, int, ...);
    void *(*dlopen)(const char *, int);
    int (*dlclose)(void *);
    void (*exit_)(int) __attribute__((noreturn));
    void (*Exit_)(int) __attribute__((noreturn));
    /* spawn.c: starting children (--follow-fork). */
    pid_t (*fork)(void);
    int (*clone)(int (*)(void *), void *, int, void *, ...);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    int (*posix_spawn)(pid_t *, const char *, const void *, const void *,
                       char *const[], char *const[]);
    int (*posix_spawnp)(pid_t *, const char *, const void *, const void *,
                        char *const[], char *const[]);
    int (*system)(const char *);
    struct _IO_FILE *(*popen)(const char *, const char *);
    /* preload.c: the fatal-signal handlers stay out of the program's sight. */
    int (*sigaction)(int, const struct sigaction *, struct sigaction *);
    void (*(*signal)(int, void (*)(int)))(int);
};
extern struct mt_real_fns mt__real;

/* Resolves mt__real. Safe to call from any hook, any number of times; while
 * it runs, calloc/malloc are served from a static pool (dlsym allocates). */
void mt__bootstrap(void);
/* 1 if p was handed out by the bootstrap pool (and must not reach free). */
int mt__bootstrap_owns(const void *p);
/* The size of a bootstrap pool allocation. */
size_t mt__bootstrap_size(const void *p);
void *mt__bootstrap_alloc(size_t size);

/* ---- Per-thread state (buffers.c) --------------------------------------- */

#define MT_MAX_DEPTH 128
#define MT_BUFFER_SIZE (64u << 10)

/* A filled or detached event buffer on its way to the writer. The events
 * follow this header in the same allocation. */
typedef struct mt_buffer_s {
    struct mt_buffer_s *next;
    uint32_t thread; /* thread index of the events */
    uint32_t len;    /* bytes of events after the header */
} mt_buffer_t;
#define MT_BUFFER_DATA(b) ((uint8_t *)((b) + 1))
#define MT_BUFFER_ROOM (MT_BUFFER_SIZE - sizeof(mt_buffer_t))

typedef struct mt_thread_s {
    /* Held by the owning thread while it encodes one event, and by the
     * writer while it detaches the buffer. Never held across a call out. */
    atomic_int lock;
    uint32_t index;            /* stable for the thread's life */
    pid_t tid;
    int exited;                /* set by the pthread key destructor (lock) */
    mt_buffer_t *buf;          /* current buffer (lock) */
    uint8_t *pos, *end;        /* write position in buf (lock) */
    mt_event_state_t st;       /* delta state of the current section (lock) */
    mt_buffer_t *full;         /* a full buffer to queue after unlock (lock) */
    struct mt_thread_s *next;  /* registry list (mt__g.registry_lock) */

    /* Owner-only: the previous stack, outermost first, and its trie nodes,
     * so a repeated call path costs a memcmp, not a table walk. */
    uint32_t prev_depth;
    uintptr_t prev_ips[MT_MAX_DEPTH];
    uint32_t prev_nodes[MT_MAX_DEPTH];
} mt_thread_t;

/* The calling thread's state, registering it first if needed. NULL when
 * tracing is off or no memory could be had. Call with the guard held. */
mt_thread_t *mt__thread_get(void);
/* pthread key destructor: marks the thread exited for the writer. */
void mt__thread_exit(void *arg);
/* Records one event. seq is taken here, under the thread's lock. */
void mt__record(mt_thread_t *t, unsigned type, uintptr_t addr, uint64_t size,
                uint32_t stack, uintptr_t old, uint64_t old_size);
/* The two halves of mt__record, for calls whose event must be numbered
 * before the real call and written after it (realloc, mremap: the old
 * block is released inside the call). lock returns the event's seq, or 0
 * when the event cannot be recorded (then do not call unlock). Between the
 * two, the thread holds its spinlock: call nothing that could wait on the
 * writer. type 0 in unlock writes nothing (the call failed). */
uint64_t mt__record_lock(mt_thread_t *t);
void mt__record_unlock(mt_thread_t *t, uint64_t seq, unsigned type,
                       uintptr_t addr, uint64_t size, uint32_t stack,
                       uintptr_t old, uint64_t old_size);
/* A fresh buffer from the pool (mt__real.malloc), or NULL. */
mt_buffer_t *mt__buffer_new(void);
void mt__buffer_release(mt_buffer_t *b);

/* ---- Stacks (stacks.c) -------------------------------------------------- */

/* A trie key is a native return address, or, with the top bit set, a
 * Python frame: code id in bits 32-62, line in bits 0-31 (docs/FORMAT.md,
 * NODE). */
#define MT_KEY_PYTHON (1ull << 63)
#define MT_KEY_IS_PYTHON(k) (((uint64_t)(k) & MT_KEY_PYTHON) != 0)
#define MT_PYTHON_KEY(code_id, line)                                           \
    (MT_KEY_PYTHON | ((uint64_t)(code_id) << 32) | (uint32_t)(line))

/* The calling thread's stack as the trie node of its innermost frame (0
 * when there is none): Python frames when a walker is attached (merged
 * with native ones in --native mode), else native frames. */
uint32_t mt__stack_capture(mt_thread_t *t);
/* Unwinds natively into ips (outermost first, memtrace's own frames
 * dropped); returns the depth, at most MT_MAX_DEPTH. */
int mt__native_unwind(uintptr_t *ips);
/* Finds or adds the path keys[0..depth) (outermost first) in the trie and
 * returns its innermost node. Uses and updates t's previous stack. */
uint32_t mt__stack_intern(mt_thread_t *t, const uintptr_t *keys, uint32_t depth);
/* python.c: the Python (or merged) stack of the calling thread. */
uint32_t mt__python_stack(mt_thread_t *t);
/* python.c: writes the Python definitions again (follow-fork children,
 * before the nodes). Caller holds defs_lock. */
void mt__python_reemit_unlocked(void);
/* Writes a NODE record for every node known (follow-fork children, which
 * start a new file). Caller holds defs_lock. */
void mt__stack_reemit_unlocked(void);
/* Bytes of the stack trie's index (takes defs_lock). */
size_t mt__stack_bytes(void);
/* Forgets every thread's cached previous stack (after fork). */
void mt__stack_reset_thread(mt_thread_t *t);

/* ---- Modules (modules.c) ------------------------------------------------ */

/* Re-reads the loaded modules and emits load/unload records for changes.
 * Must be called WITHOUT defs_lock (it takes the loader's lock first). */
void mt__modules_scan(void);
/* 1 if ip lies in a module already recorded. Caller holds defs_lock. */
int mt__modules_contains_unlocked(uintptr_t ip);
/* Re-emits every known module (follow-fork children). Holds defs_lock. */
void mt__modules_reemit_unlocked(void);
/* The address range of the preload library itself. */
void mt__self_range(uintptr_t *lo, uintptr_t *hi);

/* ---- Definition records (writer.c) -------------------------------------- */

/* Reserves len bytes for one definition record of type in the defs buffer
 * and returns where to write its payload, or NULL when out of memory.
 * Caller holds defs_lock. */
uint8_t *mt__def_begin_unlocked(unsigned type, size_t len);
/* Encodes a definition whose payload is already built in tmp. */
void mt__def_put_unlocked(unsigned type, const uint8_t *payload, size_t len);

/* ---- Writer (writer.c) -------------------------------------------------- */

/* The process's resident set size in bytes now (0 when unknown), from
 * /proc/self/statm with pread(2): no allocation, safe from any thread. */
uint64_t mt__rss_bytes(void);
/* Up to cap bytes of the file at path (a /proc file), read without
 * allocating; returns how many (0 when it cannot be opened). */
size_t mt__read_file(const char *path, char *buf, size_t cap);

/* Opens the capture, writes the header, starts the writer thread.
 * Returns 0 or a negative errno. */
int mt__writer_start(const char *path, int create_excl);
/* Final round, trailer, close. Idempotent; safe at exit and in _exit. */
void mt__writer_finish(void);
/* Closes the session's /proc/self/statm and frees its compression context
 * (round_lock held, or no writer running: a fork child). */
void mt__writer_release_unlocked(void);
/* From a fatal-signal handler: one last block of what can be taken
 * without waiting or allocating (maybe nothing). */
void mt__writer_emergency(void);
/* Wakes the writer early (a thread queued a full buffer). */
void mt__writer_kick(void);
/* Queues a full buffer for the writer (takes queue_lock). */
void mt__queue_push(mt_buffer_t *b);

/* ---- Aggregate mode (aggregate.c) ---------------------------------------
 * With --aggregate the writer replays the events instead of writing them.
 * All of these need round_lock. */

/* Receives len bytes of whole definition records, for one DEFS section. */
typedef void (*mt_agg_emit_fn)(const uint8_t *defs, size_t len);
/* Fresh, empty totals (a previous session's or a fork parent's are freed).
 * Returns 0 or -ENOMEM. */
int mt__agg_start_unlocked(void);
void mt__agg_stop_unlocked(void);
/* 1 while aggregating (0 after a failure stopped it). */
int mt__agg_active_unlocked(void);
/* An RSS sample at seq: it gets the traced heap of its moment. */
void mt__agg_tick_unlocked(uint64_t seq, uint64_t ns, uint64_t rss);
/* Replays the events of the buffers of nlists lists (each buffer one run)
 * with seq below w (all of them when final); the others stay pending.
 * nodes: the trie's node count when the buffers were taken. Returns 0, or
 * -1 when aggregation failed and stopped (tracing stops too). */
int mt__agg_replay_unlocked(mt_buffer_t *const *lists, size_t nlists,
                            uint64_t w, uint32_t nodes, int final);
/* Emits an AGG_SAMPLE record for every tick replayed since the last call. */
void mt__agg_samples_unlocked(mt_agg_emit_fn emit);
/* Emits one whole checkpoint. */
void mt__agg_checkpoint_unlocked(mt_agg_emit_fn emit);
/* 1 when the checkpoint interval will have passed since the last
 * checkpoint within slack_ns (the time to the next chance to write one). */
int mt__agg_checkpoint_due_unlocked(uint64_t slack_ns);
/* stacks.c: the number of trie nodes so far (ids 1..n). defs_lock. */
uint32_t mt__stack_count_unlocked(void);
/* ---- Memory samples (memsample.c) --------------------------------------- */

/* The SMAPS sampler's state. Used by the writer thread only, and by
 * mt__writer_start before it creates that thread and mt__writer_finish
 * after it has stopped: no lock. */
typedef struct mt_memsample_state_s {
    uint64_t prev_rss;     /* RSS at the previous tick */
    uint64_t high;         /* highest RSS seen at a tick */
    uint64_t sampled_high; /* highest RSS a sample saw (or skipped past) */
    uint64_t last_ns;      /* when the last sample was taken */
    uint64_t cost_ns;      /* how long it took */
    void *mallinfo2;       /* glibc's mallinfo2, or NULL */
    int resolved;          /* mallinfo2 was looked up */
    int no_rollup;         /* MEMTRACE_NO_SMAPS_ROLLUP=1 (tests) */
} mt_memsample_state_t;

/* Resets the state and resolves mallinfo2 (writer start). */
void mt__memsample_init(void);
/* Takes one sample of kind MT_SMAPS_* and queues its record (takes
 * defs_lock). Returns the RSS it saw, or 0. */
uint64_t mt__memsample_take(unsigned kind);
/* memtrace's own resident memory, roughly: the block buffers' resident
 * pages, the event buffers, the definition buffer and the stack trie.
 * Writer thread, or with round_lock held. */
uint64_t mt__writer_own_bytes(void);
/* The rate limit: 1 when a tick that saw rss at time now (ns) should take
 * a MT_SMAPS_PEAK sample. Updates the climb state in s. */
int mt__memsample_due(mt_memsample_state_t *s, uint64_t rss, uint64_t now);
/* At every RSS tick: takes a MT_SMAPS_PEAK sample when the rate limit
 * allows (memsample.c explains it). */
void mt__memsample_tick(uint64_t rss);

/* ---- Global state ------------------------------------------------------- */

struct mt_tracer {
    /* 1 while hooks record. Read without a lock on every hook (relaxed);
     * set by start-up, cleared by finish, fork-without-follow, write errors. */
    atomic_int active;
    /* The global event order: every event takes the next value. */
    _Atomic uint64_t seq;
    /* 1 while mt__writer_finish writes the end of the capture, on thread
     * finisher: a fatal signal handled on another thread waits for it. */
    atomic_int finishing;
    pthread_t finisher;

    /* The attached CPython frame walker (python.c), or NULL. Set once. */
    _Atomic(const struct mt_python_ops_s *) python;
    unsigned python_flags;       /* MT_PYTHON_*, written before python */

    /* Configuration, written once in the constructor (or a fork child). */
    char path[4096];
    int follow_fork;
    int quiet;
    int force;
    unsigned rss_interval_ms;
    int aggregate;               /* --aggregate: checkpoints, no events */
    unsigned checkpoint_ms;      /* --aggregate: checkpoint interval */
    pid_t pid;
    pid_t root_pid;
    pid_t parent_pid;            /* the traced parent, 0 for the root */
    unsigned origin;             /* MT_ORIGIN_*: how this process began */
    int has_capture;             /* this process's own capture was opened */
    uint64_t start_ns;           /* CLOCK_MONOTONIC at start */

    /* Thread registry: list of mt_thread_t, next index. */
    pthread_mutex_t registry_lock;
    mt_thread_t *threads;        /* registry_lock */
    uint32_t next_thread_index;  /* registry_lock */
    pthread_key_t thread_key;    /* written once */

    /* Definition stream: the defs buffer, the stack trie, the modules. */
    pthread_mutex_t defs_lock;
    uint8_t *defs;               /* defs_lock: growable, mt__real.malloc */
    size_t defs_len, defs_cap;   /* defs_lock */
    uint64_t last_node_ip;       /* defs_lock: NODE delta base */
    int defs_failed;             /* defs_lock: out of memory, stop */

    /* Interned stage names (stage.c): open addressing by hash; the table
     * and the names come from mt__real.malloc. */
    struct mt_stage_name_s *stage_names; /* defs_lock */
    size_t stage_names_mask;     /* defs_lock: slots - 1 (0: no table yet) */
    uint32_t stage_names_count;  /* defs_lock: ids 1..count are given */

    /* Full buffers waiting for the writer, and free buffers. */
    pthread_mutex_t queue_lock;
    mt_buffer_t *queue_head, *queue_tail; /* queue_lock */
    size_t queue_bytes;          /* queue_lock */
    mt_buffer_t *free_buffers;   /* queue_lock */
    size_t free_count;           /* queue_lock */

    /* Writer thread. round_lock is held for a whole round (and by fork's
     * prepare handler, so a child never sees half a round). */
    pthread_mutex_t round_lock;
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    int wake_pending;            /* wake_lock */
    int stopping;                /* wake_lock */
    int writer_running;          /* round_lock */
    pthread_t writer;
    int fd;                      /* round_lock; -1 when closed */
    int statm_fd;                /* round_lock */
    mt_memsample_state_t ms;     /* writer thread (see its type) */
    /* Bytes of pymalloc's live arenas, counted by the arena allocator's
     * wrapper (memsample.c) once pyarena_on is set; atomic. */
    _Atomic int64_t pyarena_bytes;
    atomic_int pyarena_on;
    void *cctx;                  /* round_lock: LZ4F_cctx */
    uint8_t *raw, *out;          /* round_lock: block scratch buffers */
    size_t raw_cap, out_cap;     /* round_lock */
    uint64_t events_written;     /* round_lock (approximate count) */
    int write_error;             /* round_lock: errno of a failed write */
    int finished;                /* round_lock */
};
extern struct mt_tracer mt__g;

/* The reentrancy guard: set while a hook (or the tracer's own machinery)
 * runs on this thread, so nested allocations go straight through. */
extern __thread int mt__busy __attribute__((tls_model("initial-exec")));
/* The calling thread's state (or NULL). */
extern __thread mt_thread_t *mt__self __attribute__((tls_model("initial-exec")));

/* ---- Environment set by `memtrace run` (cli/run.c) --------------------- */

#define MT_ENV_OUTPUT "MEMTRACE_OUTPUT"        /* the root's capture path */
#define MT_ENV_FOLLOW "MEMTRACE_FOLLOW_FORK"   /* 1: --follow-fork */
#define MT_ENV_RSS "MEMTRACE_RSS_INTERVAL"
#define MT_ENV_QUIET "MEMTRACE_QUIET"
#define MT_ENV_FORCE "MEMTRACE_FORCE"
#define MT_ENV_ROOT "MEMTRACE_ROOT_PID"        /* the process run started */
#define MT_ENV_PRELOAD "MEMTRACE_LD_PRELOAD"   /* the program's own LD_PRELOAD */
#define MT_ENV_ARGV "MEMTRACE_ARGV"            /* the command as typed */
#define MT_ENV_AGGREGATE "MEMTRACE_AGGREGATE"  /* 1: --aggregate */
#define MT_ENV_CHECKPOINT "MEMTRACE_CHECKPOINT_MS"
/* Python: the launcher's (or start-up hook's) flags, the program's own
 * PYTHONPATH, and the start-up hook's directory (children only). */
#define MT_ENV_PY_FLAGS "MEMTRACE_PY_FLAGS"
#define MT_ENV_PY_PATH "MEMTRACE_PY_PATH_ORIG"
#define MT_ENV_PY_HOOK "MEMTRACE_PY_HOOK"
/* Set by spawn.c for a child: its traced parent, and the pid of a traced
 * process that replaced itself by exec (its FILE.<pid> is to be replaced). */
#define MT_ENV_PARENT "MEMTRACE_PARENT_PID"
#define MT_ENV_EXEC_PID "MEMTRACE_EXEC_PID"

/* ---- Children (spawn.c) -------------------------------------------------- */

/* Keeps the settings exec'd children need (--follow-fork), from the
 * environment, before the constructor removes them. */
void mt__spawn_init(void);
/* Writes a CHILD record for pid when following. Any context but a vfork
 * child. */
void mt__note_child(pid_t pid);

/* runtime.c: while tracing was started at run time, redirects the
 * allocation calls of newly loaded objects (called after dlopen). */
void mt__runtime_patch(void);
/* preload.c: pthread_atfork handlers, installed once. */
void mt__install_fork_handlers(void);

uint64_t mt__now_ns(void);
/* Writes a message to stderr with write(2) (no stdio, no allocation). */
void mt__say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
