/* format.c: the out-of-line parts of the format helpers (names of event
 * types as users see them). */
#include "format.h"

const char *mt__event_name(unsigned type)
{
    static const char *const names[MT_EV_TYPE_COUNT] = {
        [MT_EV_FREE] = "free",
        [MT_EV_MALLOC] = "malloc",
        [MT_EV_CALLOC] = "calloc",
        [MT_EV_REALLOC] = "realloc",
        [MT_EV_REALLOCARRAY] = "reallocarray",
        [MT_EV_POSIX_MEMALIGN] = "posix_memalign",
        [MT_EV_ALIGNED_ALLOC] = "aligned_alloc",
        [MT_EV_MEMALIGN] = "memalign",
        [MT_EV_VALLOC] = "valloc",
        [MT_EV_PVALLOC] = "pvalloc",
        [MT_EV_MMAP] = "mmap",
        [MT_EV_MUNMAP] = "munmap",
        [MT_EV_MREMAP] = "mremap",
        [MT_EV_PY_MALLOC] = "PyMem_Malloc",
        [MT_EV_PY_CALLOC] = "PyMem_Calloc",
        [MT_EV_PY_REALLOC] = "PyMem_Realloc",
        [MT_EV_PY_FREE] = "PyMem_Free",
    };
    return type < MT_EV_TYPE_COUNT && names[type] ? names[type] : "unknown";
}
