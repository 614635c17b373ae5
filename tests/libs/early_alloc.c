/* early_alloc.c: a shared library whose constructor allocates, preloaded
 * after memtrace's library (LD_PRELOAD="memtrace:this"), so that it runs
 * before memtrace's own constructor: its calls reach memtrace's hooks
 * before anything is resolved (the dlsym bootstrap). It frees part of what
 * it got later, from its destructor, while tracing runs. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *early_block;

__attribute__((constructor)) static void early_init(void)
{
    early_block = malloc(4096);
    char *c = calloc(16, 64);
    char *r = realloc(NULL, 100);
    r = realloc(r, 10000);
    int ok = early_block && c && r && c[0] == 0 && c[1023] == 0;
    memset(early_block, 1, 4096);
    free(c);
    free(r);
    static const char yes[] = "early: allocated before memtrace started\n";
    static const char no[] = "early: allocation failed\n";
    ssize_t w = ok ? write(2, yes, sizeof yes - 1) : write(2, no, sizeof no - 1);
    (void)w;
}

__attribute__((destructor)) static void early_fini(void)
{
    free(early_block); /* allocated before tracing: an unmatched free */
}
