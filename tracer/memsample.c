/* memsample.c: the SMAPS records, samples of how the kernel charges the
 * process's memory, for `memtrace rss`: /proc/self/smaps_rollup (resident
 * memory split into anonymous and file-backed, clean and dirty, swap) and
 * glibc's mallinfo2() (what malloc holds), taken when tracing starts, when
 * RSS reaches a new high (rate-limited, below) and when tracing ends.
 *
 * Runs on the writer thread, and with the guard set on the thread that
 * starts tracing (before the writer thread exists) or ends it (after it
 * stopped). It allocates nothing: the file is read
 * with open/read/close into a stack buffer and parsed in place. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "memtrace/memtrace.h"
#include "memtrace/tracer.h"
#include "tracer.h"

/* Rate limit for the "peak" samples. Reading smaps_rollup walks every
 * page-table entry of the process under its mmap lock (read side): it
 * costs tens of milliseconds per GiB resident (27 ms measured at 1 GiB)
 * and holds off the program's mmap/munmap meanwhile; mallinfo2 walks malloc's free lists. Sampling at
 * every RSS tick of a growing process would make that cost grow with the
 * square of its size. So a new high is sampled only when
 *  - it is above the last sampled high by MT_SMAPS_MARGIN_MIN and by
 *    1/MT_SMAPS_MARGIN_DIV of it (a process hovering at its peak is
 *    sampled once, not at every wobble),
 *  - RSS stopped climbing at this tick (the top of the climb is the
 *    moment the reconciliation wants), or the climb has gone on for
 *    MT_SMAPS_CLIMB_NS since the last sample,
 *  - and at least MT_SMAPS_COST_FACTOR times the last read's duration has
 *    passed: reading stays under ~2% of the time, whatever the size. */
#define MT_SMAPS_MARGIN_MIN (1ull << 20)
#define MT_SMAPS_MARGIN_DIV 32
#define MT_SMAPS_CLIMB_NS 1000000000ull
#define MT_SMAPS_COST_FACTOR 50

/* smaps_rollup lines we keep, by name (without the colon). */
static const struct {
    const char *name;
    unsigned char len, tag;
} rollup_names[] = {
#define F(n, t) {n, sizeof n - 1, t}
    F("Rss", MT_SMAPS_RSS),
    F("Pss", MT_SMAPS_PSS),
    F("Pss_Dirty", MT_SMAPS_PSS_DIRTY),
    F("Pss_Anon", MT_SMAPS_PSS_ANON),
    F("Pss_File", MT_SMAPS_PSS_FILE),
    F("Pss_Shmem", MT_SMAPS_PSS_SHMEM),
    F("Shared_Clean", MT_SMAPS_SHARED_CLEAN),
    F("Shared_Dirty", MT_SMAPS_SHARED_DIRTY),
    F("Private_Clean", MT_SMAPS_PRIVATE_CLEAN),
    F("Private_Dirty", MT_SMAPS_PRIVATE_DIRTY),
    F("Referenced", MT_SMAPS_REFERENCED),
    F("Anonymous", MT_SMAPS_ANONYMOUS),
    F("LazyFree", MT_SMAPS_LAZYFREE),
    F("AnonHugePages", MT_SMAPS_ANON_HUGE),
    F("Swap", MT_SMAPS_SWAP),
    F("SwapPss", MT_SMAPS_SWAP_PSS),
    F("Locked", MT_SMAPS_LOCKED),
#undef F
};

typedef struct mallinfo2 (*mallinfo2_fn)(void);

void mt__memsample_init(void)
{
    mt_memsample_state_t *s = &mt__g.ms;
    void *mi = s->mallinfo2;
    int resolved = s->resolved;
    memset(s, 0, sizeof *s);
    /* A test aid: behave as on a kernel without smaps_rollup. */
    const char *no = getenv("MEMTRACE_NO_SMAPS_ROLLUP");
    s->no_rollup = no && no[0] == '1';
    /* Resolved once, in the first start (not again in a fork child, where
     * the loader's lock may be held by a thread that no longer exists).
     * mallinfo2 (glibc 2.33) describes glibc's malloc only: used when the
     * malloc the hooks forward to is in the same object. */
    if (!resolved) {
        mi = dlsym(RTLD_DEFAULT, "mallinfo2");
        Dl_info a, b;
        if (!mi || !mt__real.malloc || !dladdr(mi, &a) ||
            !dladdr((void *)mt__real.malloc, &b) || a.dli_fbase != b.dli_fbase)
            mi = NULL;
        resolved = 1;
    }
    s->mallinfo2 = mi;
    s->resolved = resolved;
}

/* Parses "Name:   123 kB" lines of buf into (tag, bytes) fields at p. */
static uint8_t *parse_rollup(char *buf, uint8_t *p, int *have_rss,
                             uint64_t *rss)
{
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        char *colon = strchr(line, ':');
        if (colon) {
            size_t len = (size_t)(colon - line);
            for (size_t i = 0; i < sizeof rollup_names / sizeof rollup_names[0]; i++) {
                if (rollup_names[i].len != len || memcmp(rollup_names[i].name, line, len))
                    continue;
                char *end;
                unsigned long long kb = strtoull(colon + 1, &end, 10);
                if (end == colon + 1)
                    break;
                p = mt__put_varint(p, rollup_names[i].tag);
                p = mt__put_varint(p, (uint64_t)kb * 1024);
                if (rollup_names[i].tag == MT_SMAPS_RSS) {
                    *have_rss = 1;
                    *rss = (uint64_t)kb * 1024;
                }
                break;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return p;
}

/* mt__read_file, as a C string (cap - 1 bytes at most). */
static size_t read_proc(const char *path, char *buf, size_t cap)
{
    size_t len = mt__read_file(path, buf, cap - 1);
    buf[len] = 0;
    return len;
}

/* Takes one sample and queues its SMAPS record. Returns its RSS (0 when
 * nothing could be read). */
uint64_t mt__memsample_take(unsigned kind)
{
    mt_memsample_state_t *s = &mt__g.ms;
    uint64_t t0 = mt__now_ns();
    char buf[4096];
    /* seq, ns, kind, then at most 24 fields of two varints. */
    uint8_t rec[3 * MT_VARINT_MAX + 24 * 2 * MT_VARINT_MAX], *p = rec;
    uint64_t seq = atomic_load_explicit(&mt__g.seq, memory_order_seq_cst) + 1;
    p = mt__put_varint(p, seq);
    p = mt__put_varint(p, t0 - mt__g.start_ns);
    p = mt__put_varint(p, kind);
    uint8_t *fields = p;
    uint64_t rss = 0;
    int have_rss = 0;
    if (!s->no_rollup && read_proc("/proc/self/smaps_rollup", buf, sizeof buf))
        p = parse_rollup(buf, p, &have_rss, &rss);
    if (!have_rss) {
        /* No smaps_rollup (Linux < 4.14, or /proc hides it): statm says
         * how much is resident and how much of it is file-backed or
         * shared, which is enough to split the gap coarsely. */
        p = fields;
        if (read_proc("/proc/self/statm", buf, sizeof buf)) {
            char *q = buf, *end;
            unsigned long long v[3] = {0, 0, 0};
            for (int i = 0; i < 3; i++, q = end) {
                v[i] = strtoull(q, &end, 10);
                if (end == q)
                    break;
            }
            uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
            p = mt__put_varint(p, MT_SMAPS_STATM_RSS);
            p = mt__put_varint(p, v[1] * page);
            p = mt__put_varint(p, MT_SMAPS_STATM_SHARED);
            p = mt__put_varint(p, v[2] * page);
            rss = v[1] * page;
        }
    }
    if (s->mallinfo2) {
        struct mallinfo2 mi = ((mallinfo2_fn)s->mallinfo2)();
        p = mt__put_varint(p, MT_SMAPS_MALLOC_ARENA);
        p = mt__put_varint(p, mi.arena);
        p = mt__put_varint(p, MT_SMAPS_MALLOC_MMAP);
        p = mt__put_varint(p, mi.hblkhd);
        p = mt__put_varint(p, MT_SMAPS_MALLOC_INUSE);
        p = mt__put_varint(p, mi.uordblks);
        p = mt__put_varint(p, MT_SMAPS_MALLOC_FREE);
        p = mt__put_varint(p, mi.fordblks);
    }
    p = mt__put_varint(p, MT_SMAPS_TRACER);
    p = mt__put_varint(p, mt__writer_own_bytes());
    if (atomic_load_explicit(&mt__g.pyarena_on, memory_order_relaxed)) {
        int64_t a = atomic_load_explicit(&mt__g.pyarena_bytes, memory_order_relaxed);
        p = mt__put_varint(p, MT_SMAPS_PYARENA);
        p = mt__put_varint(p, a > 0 ? (uint64_t)a : 0);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        p = mt__put_varint(p, MT_SMAPS_MAXRSS);
        p = mt__put_varint(p, (uint64_t)ru.ru_maxrss * 1024);
    }
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__def_put_unlocked(MT_DEF_SMAPS, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);

    uint64_t t1 = mt__now_ns();
    s->last_ns = t1;
    s->cost_ns = t1 - t0;
    if (rss > s->sampled_high)
        s->sampled_high = rss;
    return rss;
}

int mt__memsample_due(mt_memsample_state_t *s, uint64_t rss, uint64_t now)
{
    int climbing = rss > s->prev_rss;
    s->prev_rss = rss;
    if (rss > s->high)
        s->high = rss;
    uint64_t margin = s->sampled_high / MT_SMAPS_MARGIN_DIV;
    if (margin < MT_SMAPS_MARGIN_MIN)
        margin = MT_SMAPS_MARGIN_MIN;
    if (s->high < s->sampled_high + margin)
        return 0;
    uint64_t since = now - s->last_ns;
    if (climbing && since < MT_SMAPS_CLIMB_NS)
        return 0;
    return since >= MT_SMAPS_COST_FACTOR * s->cost_ns;
}

void mt__memsample_tick(uint64_t rss)
{
    mt_memsample_state_t *s = &mt__g.ms;
    if (!mt__memsample_due(s, rss, mt__now_ns()))
        return;
    mt__memsample_take(MT_SMAPS_PEAK);
    /* Sampled past its top (RSS fell since), the high still counts as
     * seen: otherwise a peak gone by would be re-sampled at every tick. */
    if (s->high > s->sampled_high)
        s->sampled_high = s->high;
}

/* ---- pymalloc's arenas ------------------------------------------------------
 * The wrapper only counts: it calls the allocator it replaced (saved here,
 * written once when installed, under the GIL) and adds or takes the size.
 * An arena that existed before the wrapper was counted in `existing`. */
static mt_pyarena_allocator_t pyarena_orig;

static void *pyarena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    void *p = pyarena_orig.alloc(pyarena_orig.ctx, size);
    if (p)
        atomic_fetch_add_explicit(&mt__g.pyarena_bytes, (int64_t)size,
                                  memory_order_relaxed);
    return p;
}

static void pyarena_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    pyarena_orig.free(pyarena_orig.ctx, ptr, size);
    if (ptr)
        atomic_fetch_sub_explicit(&mt__g.pyarena_bytes, (int64_t)size,
                                  memory_order_relaxed);
}

MT_API int mt_tracer_pyarena_wrap(const mt_pyarena_allocator_t *orig,
                                  uint64_t existing,
                                  mt_pyarena_allocator_t *wrapped)
{
    if (!orig || !wrapped || !orig->alloc || !orig->free || existing > INT64_MAX)
        return MT_EINVAL;
    pyarena_orig = *orig;
    atomic_store(&mt__g.pyarena_bytes, (int64_t)existing);
    atomic_store(&mt__g.pyarena_on, 1);
    *wrapped = (mt_pyarena_allocator_t){NULL, pyarena_alloc, pyarena_free};
    return 0;
}
