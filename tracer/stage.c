/* stage.c: named stages of the traced program (mt_tracer_stage_enter and
 * mt_tracer_stage_leave of include/memtrace/tracer.h). Each call writes one
 * STAGE definition record (docs/FORMAT.md) carrying the global event
 * sequence number, so the reader places it exactly among the calling
 * thread's events, with the time, the CPU used, the RSS and the stage's
 * name, interned: the name is written once per file, then referred to by id.
 *
 * Stages are rare next to allocations (a program marks its phases, not its
 * lines), so a call may take defs_lock and make a few system calls; the
 * allocation hooks are untouched. Nesting is not tracked here: the reader
 * rebuilds it from each thread's enter/leave order. */
#include <string.h>
#include <time.h>

#include "common/capture_write.h"
#include "memtrace/tracer.h"
#include "tracer.h"

/* One interned name. file_ns is mt__g.start_ns of the capture the name was
 * last written to: every capture (a Tracker started again, a follow-fork
 * child) has its own start, and must define the name anew. */
struct mt_stage_name_s {
    uint64_t hash;
    uint64_t file_ns;
    uint32_t id;       /* 0: empty slot */
    uint32_t len;
    char *name;        /* mt__real.malloc'd, len bytes (no NUL needed) */
};

/* Ids stay far below this; past it new names are not recorded (nothing
 * breaks: their stages are simply absent). */
#define MT_STAGE_NAMES_MAX (1u << 20)

static uint64_t name_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int names_grow_unlocked(void)
{
    size_t old_n = mt__g.stage_names ? mt__g.stage_names_mask + 1 : 0;
    size_t n = old_n ? old_n * 2 : 64;
    struct mt_stage_name_s *t = mt__real.calloc(n, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < old_n; i++) {
        struct mt_stage_name_s *e = &mt__g.stage_names[i];
        if (!e->id)
            continue;
        size_t j = (size_t)e->hash & (n - 1);
        while (t[j].id)
            j = (j + 1) & (n - 1);
        t[j] = *e;
    }
    if (mt__g.stage_names)
        mt__real.free(mt__g.stage_names);
    mt__g.stage_names = t;
    mt__g.stage_names_mask = n - 1;
    return 0;
}

/* The id of name, interning it if new; *define is set when the name must
 * be written into the record (first use in this capture). 0 when out of
 * memory or ids. Caller holds defs_lock. */
static uint32_t name_id_unlocked(const char *name, size_t len, int *define)
{
    uint64_t h = name_hash(name, len);
    *define = 0;
    if ((mt__g.stage_names_count + 1) * 4 >
            (mt__g.stage_names ? mt__g.stage_names_mask + 1 : 0) * 3 &&
        names_grow_unlocked() != 0)
        return 0;
    size_t mask = mt__g.stage_names_mask, i = (size_t)h & mask;
    struct mt_stage_name_s *e;
    for (;; i = (i + 1) & mask) {
        e = &mt__g.stage_names[i];
        if (!e->id)
            break;
        if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0) {
            if (e->file_ns != mt__g.start_ns) {
                e->file_ns = mt__g.start_ns;
                *define = 1;
            }
            return e->id;
        }
    }
    if (mt__g.stage_names_count >= MT_STAGE_NAMES_MAX)
        return 0;
    char *copy = mt__real.malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, name, len);
    *e = (struct mt_stage_name_s){h, mt__g.start_ns, ++mt__g.stage_names_count,
                                  (uint32_t)len, copy};
    *define = 1;
    return e->id;
}

static uint64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    if (clock_gettime(clk, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Writes one STAGE record. Returns 1 when written, 0 when nothing is
 * traced now (or the record could not be had: tracing goes on). */
static int stage_record(unsigned kind, const char *name)
{
    /* Inside a hook or the tracer's own work (a signal handler that marks
     * a stage while this thread allocates, say): defs_lock may be held by
     * this very thread, so the call records nothing. */
    if (mt__busy)
        return 0;
    mt__busy = 1;
    int written = 0;
    mt_thread_t *t = mt__thread_get();
    if (!t)
        goto out;
    /* seq as TICK does: events this thread recorded before have smaller
     * seqs, its next one takes seq or later (docs/FORMAT.md, STAGE). */
    uint64_t seq = atomic_load_explicit(&mt__g.seq, memory_order_seq_cst) + 1;
    uint64_t ns = mt__now_ns() - mt__g.start_ns;
    uint64_t cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t tcpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t rss = mt__rss_bytes();
    size_t len = name ? strnlen(name, MT_STAGE_NAME_MAX) : 0;

    uint8_t rec[9 * MT_VARINT_MAX + MT_STAGE_NAME_MAX], *p = rec;
    p = mt__put_varint(p, kind);
    p = mt__put_varint(p, seq);
    p = mt__put_varint(p, t->index);
    p = mt__put_varint(p, ns);
    p = mt__put_varint(p, cpu);
    p = mt__put_varint(p, tcpu);
    p = mt__put_varint(p, rss);
    pthread_mutex_lock(&mt__g.defs_lock);
    int define = 0;
    uint32_t id = name ? name_id_unlocked(name, len, &define) : 0;
    if (id || kind == MT_STAGE_LEAVE) {
        p = mt__put_varint(p, id);
        p = mt__put_str(p, define ? name : "", define ? len : 0);
        mt__def_put_unlocked(MT_DEF_STAGE, rec, (size_t)(p - rec));
        written = 1;
    }
    pthread_mutex_unlock(&mt__g.defs_lock);
out:
    mt__busy = 0;
    return written;
}

MT_API int mt_tracer_stage_enter(const char *name)
{
    if (!name)
        return MT_EINVAL;
    if (!atomic_load_explicit(&mt__g.active, memory_order_relaxed))
        return 0;
    return stage_record(MT_STAGE_ENTER, name);
}

MT_API int mt_tracer_stage_leave(const char *name)
{
    if (!atomic_load_explicit(&mt__g.active, memory_order_relaxed))
        return 0;
    return stage_record(MT_STAGE_LEAVE, name);
}
