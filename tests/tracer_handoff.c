/* tracer_handoff.c: the tracer's buffer hand-off between recording threads
 * and the writer thread, outside any host process, so ThreadSanitizer can
 * watch it (`make test` runs it in a TSan build too). Links the tracer's
 * sources without hooks.c: nothing is interposed here; the test calls
 * mt__record itself from several threads while the writer runs its rounds,
 * then reads the capture back and checks that every event arrived. Twice:
 * writing the events, then with --aggregate (the writer replays them and
 * writes a checkpoint every few ms). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memtrace/reader.h"
#include "tracer.h"

#define THREADS 4
#define PAIRS 200000 /* 2 x 200000 events x 4 threads: many full buffers */

static void *recorder(void *arg)
{
    uintptr_t base = (uintptr_t)arg << 32;
    mt__busy = 1; /* as inside a hook */
    mt_thread_t *t = mt__thread_get();
    if (!t)
        return (void *)1;
    for (uintptr_t i = 0; i < PAIRS; i++) {
        uintptr_t addr = base + (i % 1000) * 64;
        mt__record(t, MT_EV_MALLOC, addr, 48, 0, 0, 0);
        mt__record(t, MT_EV_FREE, addr, 0, 0, 0, 0);
    }
    /* One leak per thread, of a size unique to the thread. */
    mt__record(t, MT_EV_MALLOC, base + 0x100000, 1000 + (uintptr_t)arg, 0, 0, 0);
    return NULL;
}

static int run(int aggregate)
{
    char path[] = "/tmp/mt-handoff-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 2;
    close(fd);
    unlink(path);

    snprintf(mt__g.path, sizeof mt__g.path, "%s", path);
    mt__g.aggregate = aggregate;
    mt__g.checkpoint_ms = 5;
    mt__g.rss_interval_ms = 1; /* many rounds while the threads run */
    mt__g.pid = mt__g.root_pid = getpid();
    mt__g.start_ns = mt__now_ns();
    if (mt__writer_start(path, 1) != 0) {
        fprintf(stderr, "cannot start the writer on %s\n", path);
        return 2;
    }
    atomic_store(&mt__g.active, 1);

    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, recorder, (void *)(i + 1));
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        failed |= r != NULL;
    }
    mt__writer_finish();

    char err[512];
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(path, NULL, &cap, err, sizeof err);
    unlink(path);
    if (rc != 0) {
        fprintf(stderr, "load failed: %s\n", err);
        return 1;
    }
    const mt_totals_t *tot = mt_capture_totals(cap);
    uint64_t want_allocs = THREADS * (uint64_t)(PAIRS + 1);
    uint64_t want_live = 0;
    for (int i = 1; i <= THREADS; i++)
        want_live += 1000 + (uint64_t)i;
    printf("%s: allocations %llu (want %llu), frees %llu, live bytes %llu "
           "(want %llu), threads %llu, complete %d, checkpoints %llu\n",
           aggregate ? "aggregate" : "events",
           (unsigned long long)tot->total_allocations,
           (unsigned long long)want_allocs,
           (unsigned long long)tot->total_frees,
           (unsigned long long)tot->current_bytes,
           (unsigned long long)want_live, (unsigned long long)tot->threads,
           tot->complete, (unsigned long long)tot->checkpoints);
    failed |= tot->total_allocations != want_allocs;
    failed |= tot->total_frees != THREADS * (uint64_t)PAIRS;
    failed |= tot->current_bytes != want_live;
    failed |= tot->threads != THREADS;
    failed |= !tot->complete;
    failed |= tot->unmatched_frees != 0;
    failed |= aggregate && tot->checkpoints < 1;
    mt_capture_free(cap);
    return failed;
}

int main(void)
{
    mt__bootstrap();
    pthread_key_create(&mt__g.thread_key, mt__thread_exit);
    int failed = run(0);
    failed |= run(1);
    printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
    return failed;
}
