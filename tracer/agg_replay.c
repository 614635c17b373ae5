/* agg_replay.c: the reader's heap replay, compiled into the tracer for
 * --aggregate. The writer thread feeds it the event buffers it would
 * otherwise compress into the file, so an aggregate capture's totals come
 * from the very code that replays a full capture, and the two agree to the
 * byte.
 *
 * The replay allocates (its live table, its pending runs); here every such
 * call goes straight to the real allocator (mt__real), never through the
 * hooks, and its symbols carry the names of agg_names.h. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tracer.h"

static void *agg_malloc(size_t n)
{
    return mt__real.malloc(n);
}

static void *agg_calloc(size_t n, size_t size)
{
    return mt__real.calloc(n, size);
}

static void *agg_realloc(void *p, size_t n)
{
    return mt__real.realloc(p, n);
}

static void agg_free(void *p)
{
    if (p)
        mt__real.free(p);
}

static void *agg_mmap(void *addr, size_t len, int prot, int flags, int fd,
                      off_t off)
{
    return mt__real.mmap(addr, len, prot, flags, fd, off);
}

static int agg_munmap(void *addr, size_t len)
{
    return mt__real.munmap(addr, len);
}

/* From here on, the reader's sources see the functions above under the C
 * library's names (their headers were included above, so no declaration
 * is renamed). */
#include "agg_names.h"
#define malloc agg_malloc
#define calloc agg_calloc
#define realloc agg_realloc
#define free agg_free
#define mmap agg_mmap
#define munmap agg_munmap

#include "../reader/omap.c"
#include "../reader/replay.c"

/* Stages (reader/stages.c) are not part of the tracer's replay: the writer
 * never feeds it STAGE records, so ld->stages_on stays 0 and these are the
 * only entry points replay.c needs. Every thread shares slot 0, unused. */
int mt__tstate_slot(mt_loader_t *ld, uint32_t thread, uint32_t *slot)
{
    (void)ld;
    (void)thread;
    *slot = 0;
    return 0;
}

int mt__stage_apply(mt_loader_t *ld, const mt_tick_t *tk)
{
    (void)ld;
    (void)tk;
    return 0;
}

void mt__stages_free(mt_loader_t *ld)
{
    (void)ld;
}
