/* buffers.c: per-thread event buffers. Each thread encodes its events into
 * its own buffer under its own (uncontended) spinlock; the writer thread
 * takes the lock only to detach a buffer every round. Every event takes the
 * next number of the global sequence under that lock, which is what lets the
 * reader put all threads' events back in one order (docs/FORMAT.md, SYNC). */
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "tracer.h"

__thread mt_thread_t *mt__self __attribute__((tls_model("initial-exec")));

/* Buffers beyond this many bytes queued make a thread wait for the writer
 * instead of growing memory without bound (a disk slower than the program). */
#define MT_QUEUE_LIMIT (256u << 20)

static inline void spin_lock(atomic_int *l)
{
    while (atomic_exchange_explicit(l, 1, memory_order_acquire)) {
        while (atomic_load_explicit(l, memory_order_relaxed))
            sched_yield();
    }
}

static inline void spin_unlock(atomic_int *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

mt_buffer_t *mt__buffer_new(void)
{
    mt_buffer_t *b = NULL;
    pthread_mutex_lock(&mt__g.queue_lock);
    if (mt__g.free_buffers) {
        b = mt__g.free_buffers;
        mt__g.free_buffers = b->next;
        mt__g.free_count--;
    }
    pthread_mutex_unlock(&mt__g.queue_lock);
    if (!b)
        b = mt__real.malloc(MT_BUFFER_SIZE);
    if (b) {
        b->next = NULL;
        b->len = 0;
    }
    return b;
}

void mt__buffer_release(mt_buffer_t *b)
{
    /* Keep a few for reuse; give the rest back. */
    pthread_mutex_lock(&mt__g.queue_lock);
    if (mt__g.free_count < 64) {
        b->next = mt__g.free_buffers;
        mt__g.free_buffers = b;
        mt__g.free_count++;
        b = NULL;
    }
    pthread_mutex_unlock(&mt__g.queue_lock);
    if (b)
        mt__real.free(b);
}

static void thread_attach_buffer(mt_thread_t *t, mt_buffer_t *b)
{
    b->thread = t->index;
    t->buf = b;
    t->pos = MT_BUFFER_DATA(b);
    t->end = MT_BUFFER_DATA(b) + MT_BUFFER_ROOM;
    memset(&t->st, 0, sizeof t->st);
}

static void emit_thread_def(mt_thread_t *t)
{
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    uint8_t rec[2 * MT_VARINT_MAX + sizeof name + MT_VARINT_MAX], *p = rec;
    p = mt__put_varint(p, t->index);
    p = mt__put_varint(p, (uint64_t)t->tid);
    p = mt__put_str(p, name, strlen(name));
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__def_put_unlocked(MT_DEF_THREAD, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
}

/* Keeps the thread's index across a re-registration after its key
 * destructor ran (threads still allocate while they are torn down). */
static __thread uint32_t tls_index_plus1 __attribute__((tls_model("initial-exec")));

mt_thread_t *mt__thread_get(void)
{
    mt_thread_t *t = mt__self;
    if (MT_LIKELY(t != NULL))
        return t;
    t = mt__real.calloc(1, sizeof *t);
    mt_buffer_t *b = mt__buffer_new();
    if (!t || !b) {
        if (t)
            mt__real.free(t);
        if (b)
            mt__buffer_release(b);
        return NULL;
    }
    t->tid = (pid_t)syscall(SYS_gettid);
    int is_new = tls_index_plus1 == 0;
    pthread_mutex_lock(&mt__g.registry_lock);
    if (is_new)
        tls_index_plus1 = ++mt__g.next_thread_index;
    t->index = tls_index_plus1 - 1;
    thread_attach_buffer(t, b);
    t->next = mt__g.threads;
    mt__g.threads = t;
    pthread_mutex_unlock(&mt__g.registry_lock);
    if (is_new)
        emit_thread_def(t);
    mt__self = t;
    /* The key's destructor tells the writer when the thread is gone. */
    pthread_setspecific(mt__g.thread_key, t);
    return t;
}

void mt__thread_exit(void *arg)
{
    mt_thread_t *t = arg;
    int was_busy = mt__busy;
    mt__busy = 1;
    mt__self = NULL;
    spin_lock(&t->lock);
    t->exited = 1;
    spin_unlock(&t->lock);
    mt__busy = was_busy;
}

void mt__queue_push(mt_buffer_t *b)
{
    b->next = NULL;
    pthread_mutex_lock(&mt__g.queue_lock);
    if (mt__g.queue_tail)
        mt__g.queue_tail->next = b;
    else
        mt__g.queue_head = b;
    mt__g.queue_tail = b;
    mt__g.queue_bytes += b->len;
    size_t queued = mt__g.queue_bytes;
    pthread_mutex_unlock(&mt__g.queue_lock);
    mt__writer_kick();
    /* Back-pressure: let the writer catch up rather than grow unbounded. */
    while (queued > MT_QUEUE_LIMIT && atomic_load(&mt__g.active)) {
        usleep(1000);
        pthread_mutex_lock(&mt__g.queue_lock);
        queued = mt__g.queue_bytes;
        pthread_mutex_unlock(&mt__g.queue_lock);
    }
}

uint64_t mt__record_lock(mt_thread_t *t)
{
    spin_lock(&t->lock);
    if (MT_UNLIKELY(t->end - t->pos < MT_MAX_EVENT_SIZE)) {
        /* Swap in a fresh buffer; the full one goes to the writer after
         * the lock is dropped. Without a fresh one the event is lost and
         * tracing stops: we never block or fail the program's call. */
        mt_buffer_t *fresh = mt__buffer_new();
        if (!fresh) {
            spin_unlock(&t->lock);
            atomic_store(&mt__g.active, 0);
            return 0;
        }
        t->buf->len = (uint32_t)(t->pos - MT_BUFFER_DATA(t->buf));
        t->full = t->buf;
        thread_attach_buffer(t, fresh);
    }
    return atomic_fetch_add_explicit(&mt__g.seq, 1, memory_order_seq_cst) + 1;
}

void mt__record_unlock(mt_thread_t *t, uint64_t seq, unsigned type,
                       uintptr_t addr, uint64_t size, uint32_t stack,
                       uintptr_t old, uint64_t old_size)
{
    if (type)
        t->pos = mt__encode_event(t->pos, &t->st, type, seq, addr, size,
                                  stack, old, old_size);
    mt_buffer_t *full = t->full;
    t->full = NULL;
    spin_unlock(&t->lock);
    if (MT_UNLIKELY(full != NULL))
        mt__queue_push(full);
}

void mt__record(mt_thread_t *t, unsigned type, uintptr_t addr, uint64_t size,
                uint32_t stack, uintptr_t old, uint64_t old_size)
{
    uint64_t seq = mt__record_lock(t);
    if (seq)
        mt__record_unlock(t, seq, type, addr, size, stack, old, old_size);
}
