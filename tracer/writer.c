/* writer.c: the writer thread and the capture file. Every tick (the RSS
 * interval) it samples RSS; every round (at most MT_ROUND_MS apart, sooner
 * when buffers queue up) it collects every thread's events, the queued full
 * buffers and the new definitions, compresses them into one or more blocks
 * and writes them. So a SIGKILL loses at most one round of events. With
 * --aggregate (aggregate.c) the events are replayed into totals instead,
 * and a checkpoint of them is written every checkpoint interval. */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "memtrace/memtrace.h"
#include "tracer.h"

#define MT_ROUND_MS 100
#define MT_BLOCK_TARGET (4u << 20) /* raw bytes per block before compressing */
#define MT_CHECKPOINT_MS 5000 /* --aggregate: default checkpoint interval */

/* ---- Definition buffer (defs_lock) -------------------------------------- */

static int defs_reserve_unlocked(size_t more)
{
    if (mt__g.defs_failed)
        return -1;
    if (mt__g.defs_len + more <= mt__g.defs_cap)
        return 0;
    size_t cap = mt__g.defs_cap ? mt__g.defs_cap * 2 : 64 << 10;
    while (cap < mt__g.defs_len + more)
        cap *= 2;
    uint8_t *d = mt__real.realloc(mt__g.defs, cap);
    if (!d) {
        mt__g.defs_failed = 1;
        atomic_store(&mt__g.active, 0);
        return -1;
    }
    mt__g.defs = d;
    mt__g.defs_cap = cap;
    return 0;
}

void mt__def_put_unlocked(unsigned type, const uint8_t *payload, size_t len)
{
    if (defs_reserve_unlocked(1 + MT_VARINT_MAX + len) != 0)
        return;
    uint8_t *p = mt__put_def_header(mt__g.defs + mt__g.defs_len, type, len);
    memcpy(p, payload, len);
    mt__g.defs_len = (size_t)(p + len - mt__g.defs);
}

/* ---- File output (round_lock) ------------------------------------------- */

static void write_failed(int err)
{
    if (mt__g.write_error)
        return;
    mt__g.write_error = err;
    atomic_store(&mt__g.active, 0);
    mt__say("memtrace: capture incomplete: writing %s failed: %s; tracing "
            "stopped, the program goes on\n",
            mt__g.path, strerror(err));
}

static void write_all(const uint8_t *data, size_t len)
{
    /* Past a file-size limit, write(2) raises SIGXFSZ in the writing thread
     * (default: kill the program). Blocked here, it fails with EFBIG. The
     * writer thread blocks it for good; the final flush runs on a program
     * thread, hence per call. */
    sigset_t xfsz, old;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &old);
    while (len && !mt__g.write_error && mt__g.fd >= 0) {
        ssize_t n = write(mt__g.fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            write_failed(n < 0 ? errno : ENOSPC);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGXFSZ)) {
        /* Consume ours before unblocking, or it would kill the program. */
        struct timespec zero = {0, 0};
        sigtimedwait(&xfsz, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int raw_reserve(size_t len)
{
    if (len <= mt__g.raw_cap)
        return 0;
    size_t cap = mt__g.raw_cap ? mt__g.raw_cap : MT_BLOCK_TARGET + (256u << 10);
    while (cap < len)
        cap *= 2;
    uint8_t *r = mt__real.realloc(mt__g.raw, cap);
    if (!r)
        return -1;
    mt__g.raw = r;
    mt__g.raw_cap = cap;
    return 0;
}

static size_t raw_len; /* round_lock: bytes in mt__g.raw */

static void flush_block(void)
{
    if (!raw_len)
        return;
    size_t bound = mt__block_bound(raw_len);
    if (bound > mt__g.out_cap) {
        uint8_t *o = mt__real.realloc(mt__g.out, bound);
        if (!o) {
            write_failed(ENOMEM);
            raw_len = 0;
            return;
        }
        mt__g.out = o;
        mt__g.out_cap = bound;
    }
    long n = mt__block_compress(mt__g.raw, raw_len, mt__g.out, mt__g.out_cap,
                                mt__g.cctx);
    if (n < 0)
        write_failed(EIO);
    else
        write_all(mt__g.out, (size_t)n);
    raw_len = 0;
}

/* Appends one section; starts a new block when this one is big enough. */
static void add_section(unsigned type, uint64_t thread, const uint8_t *data,
                        size_t len)
{
    uint8_t idx[MT_VARINT_MAX];
    size_t idx_len = type == MT_SEC_EVENTS
                         ? (size_t)(mt__put_varint(idx, thread) - idx) : 0;
    size_t need = 1 + MT_VARINT_MAX + idx_len + len;
    if (raw_len && raw_len + need > MT_BLOCK_TARGET)
        flush_block();
    if (raw_reserve(raw_len + need) != 0) {
        write_failed(ENOMEM);
        return;
    }
    uint8_t *p = mt__put_section_header(mt__g.raw + raw_len, type, idx_len + len);
    memcpy(p, idx, idx_len);
    memcpy(p + idx_len, data, len);
    raw_len = (size_t)(p + idx_len + len - mt__g.raw);
}

/* ---- Rounds -------------------------------------------------------------- */

static inline int spin_trylock_for(atomic_int *l, int patient)
{
    for (int spins = 0;; spins++) {
        if (!atomic_exchange_explicit(l, 1, memory_order_acquire))
            return 1;
        if (!patient && spins > 20000)
            return 0; /* at exit: a thread stuck mid-event is skipped */
        sched_yield();
    }
}

/* --aggregate: definition records from aggregate.c, as a DEFS section. */
static void emit_defs(const uint8_t *defs, size_t len)
{
    if (len)
        add_section(MT_SEC_DEFS, 0, defs, len);
}

/* With --aggregate the trailer comes after the final checkpoint, as the
 * last record of the file: mt__writer_finish leaves it here (round_lock). */
static uint8_t agg_trailer[1 + 5 * MT_VARINT_MAX];
static size_t agg_trailer_len;

/* --aggregate: the round's events go into the totals instead of the file;
 * the ticks' heap sizes, and a checkpoint when one is due, go to the file. */
static void aggregate_round(mt_buffer_t *const *lists, uint64_t w,
                            uint32_t nodes, int final)
{
    if (!mt__agg_active_unlocked() ||
        mt__agg_replay_unlocked(lists, 2, w, nodes, final) != 0)
        return;
    mt__agg_samples_unlocked(emit_defs);
    /* The next round comes at most MT_ROUND_MS after this one (unless a
     * replay runs long): checkpointing that much early keeps checkpoints
     * at most one interval apart. */
    if (final || mt__agg_checkpoint_due_unlocked(MT_ROUND_MS * 1000000ull))
        mt__agg_checkpoint_unlocked(emit_defs);
}

/* One round (caller holds round_lock). final: the program is ending. */
static void do_round(int final)
{
    /* W first: every event numbered below W is complete by the time we
     * hold its thread's lock (it was encoded under that lock). */
    uint64_t w = atomic_load_explicit(&mt__g.seq, memory_order_seq_cst) + 1;
    /* 1. Each thread's events so far, copied out under its lock. The
     *    definitions are taken after them (step 3) but written first. */
    mt_buffer_t *events = NULL, **tail = &events;

    pthread_mutex_lock(&mt__g.registry_lock);
    for (mt_thread_t **pp = &mt__g.threads; *pp;) {
        mt_thread_t *t = *pp;
        if (!spin_trylock_for(&t->lock, !final)) {
            pp = &t->next;
            continue;
        }
        size_t len = t->buf ? (size_t)(t->pos - MT_BUFFER_DATA(t->buf)) : 0;
        if (len) {
            mt_buffer_t *b = mt__buffer_new();
            if (b) {
                memcpy(MT_BUFFER_DATA(b), MT_BUFFER_DATA(t->buf), len);
                b->len = (uint32_t)len;
                b->thread = t->index;
                *tail = b;
                tail = &b->next;
            } else {
                write_failed(ENOMEM); /* those events are lost */
            }
            t->pos = MT_BUFFER_DATA(t->buf);
            memset(&t->st, 0, sizeof t->st);
        }
        int gone = t->exited;
        atomic_store_explicit(&t->lock, 0, memory_order_release);
        if (gone) {
            *pp = t->next;
            if (t->buf)
                mt__buffer_release(t->buf);
            mt__real.free(t);
        } else {
            pp = &t->next;
        }
    }
    pthread_mutex_unlock(&mt__g.registry_lock);

    /* 2. Full buffers queued by threads since the last round. */
    pthread_mutex_lock(&mt__g.queue_lock);
    mt_buffer_t *queued = mt__g.queue_head;
    mt__g.queue_head = mt__g.queue_tail = NULL;
    mt__g.queue_bytes = 0;
    pthread_mutex_unlock(&mt__g.queue_lock);

    /* 3. Definitions, after the events that may use them were taken (so
     *    their stacks are among the first `nodes` trie nodes). */
    pthread_mutex_lock(&mt__g.defs_lock);
    uint8_t *defs = mt__g.defs;
    size_t defs_len = mt__g.defs_len;
    uint32_t nodes = mt__stack_count_unlocked();
    mt__g.defs = NULL;
    mt__g.defs_len = mt__g.defs_cap = 0;
    pthread_mutex_unlock(&mt__g.defs_lock);

    if (defs_len)
        add_section(MT_SEC_DEFS, 0, defs, defs_len);
    if (defs)
        mt__real.free(defs);
    mt_buffer_t *lists[2] = {queued, events};
    if (mt__g.aggregate)
        aggregate_round(lists, w, nodes, final);
    for (mt_buffer_t **l = lists; l < lists + 2; l++) {
        for (mt_buffer_t *b = *l, *next; b; b = next) {
            next = b->next;
            if (!mt__g.aggregate)
                add_section(MT_SEC_EVENTS, b->thread, MT_BUFFER_DATA(b), b->len);
            mt__buffer_release(b);
        }
    }
    if (!mt__g.aggregate) {
        uint8_t sync[MT_VARINT_MAX];
        add_section(MT_SEC_SYNC, 0, sync,
                    (size_t)(mt__put_varint(sync, w) - sync));
    } else if (final && agg_trailer_len) {
        add_section(MT_SEC_DEFS, 0, agg_trailer, agg_trailer_len);
        agg_trailer_len = 0;
    }
    flush_block();
}

uint64_t mt__rss_bytes(void)
{
    /* statm_fd is opened before tracing starts and closed only when a new
     * session or a forked child opens its own, so any thread may pread it
     * (pread moves no shared file offset). */
    char buf[128];
    uint64_t rss = 0;
    int fd = mt__g.statm_fd;
    if (fd >= 0) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            const char *p = strchr(buf, ' ');
            if (p)
                rss = strtoull(p + 1, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
        }
    }
    return rss;
}

/* An RSS sample: a TICK record, or with --aggregate a tick of the replay
 * (round_lock held then), which records it with the heap of its moment. */
/* Returns the RSS it saw (0 when unknown). */
static uint64_t sample_rss(void)
{
    uint64_t rss = mt__rss_bytes();
    uint64_t seq = atomic_load_explicit(&mt__g.seq, memory_order_seq_cst) + 1;
    uint64_t ns = mt__now_ns() - mt__g.start_ns;
    if (mt__g.aggregate) {
        mt__agg_tick_unlocked(seq, ns, rss);
        return rss;
    }
    uint8_t rec[3 * MT_VARINT_MAX], *p = rec;
    p = mt__put_varint(p, seq);
    p = mt__put_varint(p, ns);
    p = mt__put_varint(p, rss);
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__def_put_unlocked(MT_DEF_TICK, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
    return rss;
}

/* Resident bytes of [p, p + len): its whole pages that are in memory. */
static uint64_t resident_bytes(const void *p, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t hi = ((uintptr_t)p + len) & ~((uintptr_t)page - 1);
    uint64_t n = 0;
    unsigned char vec[512];
    while (p && lo < hi) {
        size_t pages = (hi - lo) / (uintptr_t)page;
        if (pages > sizeof vec)
            pages = sizeof vec;
        if (mincore((void *)lo, pages * (size_t)page, vec) != 0)
            return n;
        for (size_t i = 0; i < pages; i++)
            n += vec[i] & 1;
        lo += pages * (uintptr_t)page;
    }
    return n * (uint64_t)page;
}

uint64_t mt__writer_own_bytes(void)
{
    /* The block buffers are large and touched only as far as the biggest
     * block went: their resident pages. The rest is counted whole. */
    uint64_t n = resident_bytes(mt__g.raw, mt__g.raw_cap) +
                 resident_bytes(mt__g.out, mt__g.out_cap);
    pthread_mutex_lock(&mt__g.queue_lock);
    size_t buffers = mt__g.free_count;
    for (mt_buffer_t *b = mt__g.queue_head; b; b = b->next)
        buffers++;
    pthread_mutex_unlock(&mt__g.queue_lock);
    /* One buffer per registered thread: t->buf belongs to the thread's
     * spinlock, which this estimate does not take (each thread gets its
     * buffer when it registers). */
    pthread_mutex_lock(&mt__g.registry_lock);
    for (mt_thread_t *t = mt__g.threads; t; t = t->next)
        buffers++;
    pthread_mutex_unlock(&mt__g.registry_lock);
    pthread_mutex_lock(&mt__g.defs_lock);
    size_t defs = mt__g.defs_cap;
    pthread_mutex_unlock(&mt__g.defs_lock);
    return n + buffers * (uint64_t)MT_BUFFER_SIZE + defs + mt__stack_bytes();
}

static void *writer_main(void *arg)
{
    (void)arg;
    mt__busy = 1; /* nothing this thread does is traced */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* EFBIG instead of SIGXFSZ too */

    uint64_t last_round = mt__now_ns();
    unsigned tick_ms = mt__g.rss_interval_ms ? mt__g.rss_interval_ms : 10;
    for (;;) {
        pthread_mutex_lock(&mt__g.wake_lock);
        if (!mt__g.wake_pending && !mt__g.stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)tick_ms * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&mt__g.wake, &mt__g.wake_lock, &until);
        }
        int stopping = mt__g.stopping, kicked = mt__g.wake_pending;
        mt__g.wake_pending = 0;
        pthread_mutex_unlock(&mt__g.wake_lock);
        if (stopping)
            break;

        uint64_t rss;
        if (mt__g.aggregate) {
            pthread_mutex_lock(&mt__g.round_lock);
            rss = mt__g.finished ? 0 : sample_rss();
            pthread_mutex_unlock(&mt__g.round_lock);
        } else {
            rss = sample_rss();
        }
        if (rss)
            mt__memsample_tick(rss);
        uint64_t now = mt__now_ns();
        if (kicked || now - last_round >= MT_ROUND_MS * 1000000ull) {
            pthread_mutex_lock(&mt__g.round_lock);
            if (!mt__g.finished)
                do_round(0);
            pthread_mutex_unlock(&mt__g.round_lock);
            last_round = now;
        }
    }
    return NULL;
}

void mt__writer_kick(void)
{
    pthread_mutex_lock(&mt__g.wake_lock);
    mt__g.wake_pending = 1;
    pthread_cond_signal(&mt__g.wake);
    pthread_mutex_unlock(&mt__g.wake_lock);
}

/* ---- Start and finish ---------------------------------------------------- */

size_t mt__read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t len = 0;
    ssize_t n;
    while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)n;
    close(fd);
    return len;
}

static size_t build_header(uint8_t *p0)
{
    static char args[32 << 10];
    char exe[4096];
    uint8_t *p = p0;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    p = mt__hdr_put_varint(p, MT_HDR_PID, (uint64_t)getpid());
    p = mt__hdr_put_varint(p, MT_HDR_PPID, (uint64_t)getppid());
    p = mt__hdr_put_varint(p, MT_HDR_START_REALTIME,
                           (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec);
    p = mt__hdr_put_varint(p, MT_HDR_POINTER_SIZE, sizeof(void *));
    /* The command as the user typed it (memtrace run passes it for the
     * root process, where the interpreter may run memtrace's launcher),
     * else this process's own. */
    /* A forked child runs the program its parent ran: its command is the
     * parent's (still in args, static), not its /proc/self/cmdline, which
     * for a Python program names memtrace's launcher. */
    static size_t alen;
    const char *typed = getenv("MEMTRACE_ARGV");
    if (mt__g.origin == MT_ORIGIN_FORK && alen) {
        /* as the parent wrote it */
    } else if (typed && mt__g.pid == mt__g.root_pid) {
        alen = strlen(typed);
        if (alen >= sizeof args)
            alen = sizeof args - 1;
        for (size_t i = 0; i < alen; i++) /* \x1f separates: NUL in the file */
            args[i] = typed[i] == '\x1f' ? 0 : typed[i];
        args[alen++] = 0;
    } else {
        alen = mt__read_file("/proc/self/cmdline", args, sizeof args);
    }
    p = mt__hdr_put_bytes(p, MT_HDR_ARGV, args, alen);
    ssize_t elen = readlink("/proc/self/exe", exe, sizeof exe);
    p = mt__hdr_put_bytes(p, MT_HDR_EXE, exe, elen > 0 ? (size_t)elen : 0);
    p = mt__hdr_put_varint(p, MT_HDR_PAGE_SIZE, (uint64_t)sysconf(_SC_PAGESIZE));
    p = mt__hdr_put_bytes(p, MT_HDR_TRACER_VERSION, MT_VERSION_STRING,
                          strlen(MT_VERSION_STRING));
    p = mt__hdr_put_varint(p, MT_HDR_RSS_INTERVAL, mt__g.rss_interval_ms);
    if (mt__g.aggregate)
        p = mt__hdr_put_varint(p, MT_HDR_CHECKPOINT_INTERVAL, mt__g.checkpoint_ms);
    if (mt__g.pid != mt__g.root_pid)
        p = mt__hdr_put_varint(p, MT_HDR_PARENT_PID,
                               (uint64_t)(mt__g.parent_pid > 0 ? mt__g.parent_pid
                                                              : getppid()));
    /* A --follow-fork run's captures: which run, and how each began. */
    if (mt__g.follow_fork) {
        p = mt__hdr_put_varint(p, MT_HDR_ROOT_PID, (uint64_t)mt__g.root_pid);
        p = mt__hdr_put_varint(p, MT_HDR_ORIGIN, mt__g.origin);
    }
    return (size_t)(p - p0);
}

int mt__writer_start(const char *path, int create_excl)
{
    int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW;
    flags |= create_excl ? (O_CREAT | O_EXCL) : (O_CREAT | O_TRUNC);
    int fd = open(path, flags, 0600);
    if (fd < 0)
        return -errno;
    mt__g.fd = fd;
    if (mt__g.statm_fd >= 0) /* a fork child's or a second session's */
        close(mt__g.statm_fd);
    mt__g.statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    mt__memsample_init();
    LZ4F_cctx *cctx = NULL;
    if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)))
        cctx = NULL;
    mt__g.cctx = cctx;
    /* The block buffers exist from the start, so a crash handler can use
     * them before the first round (it may not allocate). Untouched pages
     * cost no memory. */
    if (raw_reserve(MT_BLOCK_TARGET + (256u << 10)) == 0 && !mt__g.out) {
        size_t bound = mt__block_bound(mt__g.raw_cap);
        if ((mt__g.out = mt__real.malloc(bound)) != NULL)
            mt__g.out_cap = bound;
    }
    mt__g.write_error = 0;
    mt__g.finished = 0;
    raw_len = 0;

    static uint8_t hdr[MT_FILE_HEADER_SIZE + (40 << 10)];
    if (mt__g.aggregate) {
        if (!mt__g.checkpoint_ms)
            mt__g.checkpoint_ms = MT_CHECKPOINT_MS;
        pthread_mutex_lock(&mt__g.round_lock);
        int rc = mt__agg_start_unlocked();
        pthread_mutex_unlock(&mt__g.round_lock);
        if (rc) {
            close(fd);
            mt__g.fd = -1;
            return rc;
        }
    }
    size_t plen = build_header(hdr + MT_FILE_HEADER_SIZE);
    mt__file_header(hdr, MT_FLAG_NATIVE_STACKS |
                             (mt__g.follow_fork ? MT_FLAG_FOLLOW_FORK : 0) |
                             (mt__g.aggregate ? MT_FLAG_AGGREGATE : 0),
                    (uint32_t)plen);
    write_all(hdr, MT_FILE_HEADER_SIZE + plen);
    if (mt__g.write_error) {
        close(fd);
        mt__g.fd = -1;
        return -mt__g.write_error;
    }
    mt__g.stopping = 0;
    mt__g.wake_pending = 0;
    /* The first memory sample, before any event of this session and
     * before the writer thread (which owns the sampler state) exists. */
    mt__memsample_take(MT_SMAPS_START);
    if (pthread_create(&mt__g.writer, NULL, writer_main, NULL) != 0) {
        close(fd);
        mt__g.fd = -1;
        return -EAGAIN;
    }
    mt__g.writer_running = 1;
    return 0;
}

static void finish_unmasked(void);

void mt__writer_finish(void)
{
    /* A request to stop (SIGTERM from Pool.terminate(), kill, a terminal)
     * arriving while this thread writes the end waits until it is written:
     * handled here, the process would die with the capture cut short. On
     * other threads, the handler waits for finishing to clear. */
    sigset_t stops, old_mask;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGHUP);
    sigaddset(&stops, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &stops, &old_mask);
    mt__g.finisher = pthread_self();
    atomic_store(&mt__g.finishing, 1);
    finish_unmasked();
    atomic_store(&mt__g.finishing, 0);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

static void finish_unmasked(void)
{
    /* Stop recording first so the final round is the last word. */
    atomic_store(&mt__g.active, 0);
    pthread_mutex_lock(&mt__g.wake_lock);
    mt__g.stopping = 1;
    pthread_cond_signal(&mt__g.wake);
    pthread_mutex_unlock(&mt__g.wake_lock);

    pthread_mutex_lock(&mt__g.round_lock);
    int running = mt__g.writer_running;
    mt__g.writer_running = 0;
    pthread_mutex_unlock(&mt__g.round_lock);
    if (running && !pthread_equal(pthread_self(), mt__g.writer))
        pthread_join(mt__g.writer, NULL);

    pthread_mutex_lock(&mt__g.round_lock);
    if (mt__g.finished || mt__g.fd < 0) {
        pthread_mutex_unlock(&mt__g.round_lock);
        return;
    }
    mt__g.finished = 1;
    sample_rss();
    mt__memsample_take(MT_SMAPS_END);
    struct rusage ru;
    uint64_t peak_rss = getrusage(RUSAGE_SELF, &ru) == 0
                            ? (uint64_t)ru.ru_maxrss * 1024 : 0;
    uint8_t rec[4 * MT_VARINT_MAX], *p = rec;
    p = mt__put_varint(p, mt__now_ns() - mt__g.start_ns);
    p = mt__put_varint(p, peak_rss);
    p = mt__put_varint(p, atomic_load(&mt__g.seq));
    /* With --aggregate, a replay that failed stopped the totals early. */
    int lost = mt__g.write_error ||
               (mt__g.aggregate && !mt__agg_active_unlocked());
    p = mt__put_varint(p, lost ? MT_TRAILER_EVENTS_LOST : 0);
    if (mt__g.aggregate) {
        uint8_t *e = mt__put_def_header(agg_trailer, MT_DEF_TRAILER,
                                        (size_t)(p - rec));
        memcpy(e, rec, (size_t)(p - rec));
        agg_trailer_len = (size_t)(e + (p - rec) - agg_trailer);
    } else {
        pthread_mutex_lock(&mt__g.defs_lock);
        mt__def_put_unlocked(MT_DEF_TRAILER, rec, (size_t)(p - rec));
        pthread_mutex_unlock(&mt__g.defs_lock);
    }
    do_round(1);
    close(mt__g.fd);
    mt__g.fd = -1;
    mt__agg_stop_unlocked();
    /* A process may record many sessions (memtrace.Tracker, once per test
     * under the pytest plugin): each one's descriptor and compression
     * context go with it, or they pile up until open(2) fails. */
    mt__writer_release_unlocked();
    pthread_mutex_unlock(&mt__g.round_lock);
}

void mt__writer_release_unlocked(void)
{
    if (mt__g.statm_fd >= 0)
        close(mt__g.statm_fd);
    mt__g.statm_fd = -1;
    if (mt__g.cctx)
        LZ4F_freeCompressionContext(mt__g.cctx);
    mt__g.cctx = NULL;
}

/* ---- The last word of a crashing process ---------------------------------- */

/* Appends one section at raw + at; returns the new end. The caller checked
 * the room (1 + 2 varints + len). */
static size_t put_section_at(size_t at, unsigned type, uint64_t thread,
                             const uint8_t *data, size_t len)
{
    uint8_t idx[MT_VARINT_MAX];
    size_t idx_len = type == MT_SEC_EVENTS
                         ? (size_t)(mt__put_varint(idx, thread) - idx) : 0;
    uint8_t *p = mt__put_section_header(mt__g.raw + at, type, idx_len + len);
    memcpy(p, idx, idx_len);
    memcpy(p + idx_len, data, len);
    return (size_t)(p + idx_len + len - mt__g.raw);
}

/* --aggregate, in a fatal-signal handler: the replay allocates, so the
 * events since the last round stay out, but the totals as of that round
 * (at most one round old, fresher than the last checkpoint) are written
 * as one more checkpoint, if it fits in the block buffers as they are. */
static int emergency_overflow; /* round_lock */

static void emit_emergency(const uint8_t *defs, size_t len)
{
    if (!len || emergency_overflow)
        return;
    if (raw_len + 1 + MT_VARINT_MAX + len > mt__g.raw_cap) {
        emergency_overflow = 1;
        return;
    }
    uint8_t *p = mt__put_section_header(mt__g.raw + raw_len, MT_SEC_DEFS, len);
    memcpy(p, defs, len);
    raw_len = (size_t)(p + len - mt__g.raw);
}

static void emergency_checkpoint(void)
{
    if (!mt__agg_active_unlocked() || !mt__g.raw || !mt__g.out)
        return;
    raw_len = 0; /* no round is under way: round_lock was free */
    emergency_overflow = 0;
    mt__agg_checkpoint_unlocked(emit_emergency);
    if (!emergency_overflow && raw_len &&
        mt__block_bound(raw_len) <= mt__g.out_cap) {
        long n = mt__block_compress(mt__g.raw, raw_len, mt__g.out,
                                    mt__g.out_cap, mt__g.cctx);
        if (n > 0)
            write_all(mt__g.out, (size_t)n);
    }
    raw_len = 0;
}

/* Takes lock, waiting up to ms for it: the writer thread may be in the
 * middle of a round (a few ms, longer on a busy machine), which would
 * otherwise leave a worker stopped by SIGTERM shortly after its start
 * with nothing written. The writer never runs the signal handlers (it
 * blocks every signal); if the interrupted thread holds the lock itself,
 * the wait ends and nothing is written, as before. */
static int lock_within(pthread_mutex_t *lock, int ms)
{
    for (int i = 0;; i++) {
        if (pthread_mutex_trylock(lock) == 0)
            return 0;
        if (i >= ms)
            return -1;
        struct timespec d = {0, 1000000L};
        nanosleep(&d, NULL);
    }
}

void mt__writer_emergency(void)
{
    /* Runs in a fatal-signal handler: it takes only locks that are free
     * now or soon (lock_within) and allocates nothing, so it may write
     * nothing (then the capture ends at the last round, as without it). Events go to the
     * upper half of the block buffer first, because they must be taken
     * before the definitions they use, which are written before them. */
    if (mt__g.fd < 0 || mt__g.finished || lock_within(&mt__g.round_lock, 500))
        return;
    if (mt__g.aggregate) {
        emergency_checkpoint();
        pthread_mutex_unlock(&mt__g.round_lock);
        return;
    }
    size_t cap = mt__g.raw_cap, half = cap / 2, ev = half;
    const size_t room = 1 + 2 * MT_VARINT_MAX;
    if (!mt__g.raw || !mt__g.out || cap < 4 * MT_BUFFER_SIZE ||
        lock_within(&mt__g.registry_lock, 100)) {
        pthread_mutex_unlock(&mt__g.round_lock);
        return;
    }
    for (mt_thread_t *t = mt__g.threads; t; t = t->next) {
        if (atomic_exchange_explicit(&t->lock, 1, memory_order_acquire))
            continue; /* in the middle of an event: left out */
        size_t len = t->buf ? (size_t)(t->pos - MT_BUFFER_DATA(t->buf)) : 0;
        if (len && ev + room + len <= cap) {
            ev = put_section_at(ev, MT_SEC_EVENTS, t->index,
                                MT_BUFFER_DATA(t->buf), len);
            t->pos = MT_BUFFER_DATA(t->buf);
            memset(&t->st, 0, sizeof t->st);
        }
        atomic_store_explicit(&t->lock, 0, memory_order_release);
    }
    pthread_mutex_unlock(&mt__g.registry_lock);
    if (lock_within(&mt__g.queue_lock, 100) == 0) {
        for (mt_buffer_t *b = mt__g.queue_head; b; b = b->next)
            if (ev + room + b->len <= cap)
                ev = put_section_at(ev, MT_SEC_EVENTS, b->thread,
                                    MT_BUFFER_DATA(b), b->len);
        mt__g.queue_head = mt__g.queue_tail = NULL;
        pthread_mutex_unlock(&mt__g.queue_lock);
    }
    /* Without every definition, the events could name unknown stacks:
     * then nothing is written at all. */
    size_t d = 0;
    int defs_ok = 0;
    if (lock_within(&mt__g.defs_lock, 100) == 0) {
        if (mt__g.defs_len + room <= half) {
            if (mt__g.defs_len)
                d = put_section_at(0, MT_SEC_DEFS, 0, mt__g.defs, mt__g.defs_len);
            mt__g.defs_len = 0;
            defs_ok = 1;
        }
        pthread_mutex_unlock(&mt__g.defs_lock);
    }
    size_t total = d + (ev - half);
    if (defs_ok && total && mt__block_bound(total) <= mt__g.out_cap) {
        memmove(mt__g.raw + d, mt__g.raw + half, ev - half);
        long n = mt__block_compress(mt__g.raw, total, mt__g.out, mt__g.out_cap,
                                    mt__g.cctx);
        if (n > 0)
            write_all(mt__g.out, (size_t)n);
    }
    pthread_mutex_unlock(&mt__g.round_lock);
}
