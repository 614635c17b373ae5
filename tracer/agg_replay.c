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
