/* known_allocs.c: allocations whose every byte is known, from functions
 * with known names, for the end-to-end tests (tests/e2e/test_native.py
 * holds the same numbers). Nothing here uses stdio before the end, so the
 * C library allocates nothing behind our back while the program runs. */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *volatile sink[256];

/* 100 x malloc(100); 60 freed, 40 leaked = 4000 bytes leaked. */
NOINLINE void make_small(void)
{
    void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = malloc(100);
    for (int i = 0; i < 60; i++)
        free(p[i]);
    for (int i = 60; i < 100; i++)
        sink[i - 60] = p[i];
}

/* 10 x calloc(10, 50) = 500 bytes each, all freed. */
NOINLINE void make_calloc(void)
{
    for (int i = 0; i < 10; i++) {
        char *p = calloc(10, 50);
        p[0] = 1;
        free(p);
    }
}

/* A realloc chain: 10 -> 1000 -> 100000 bytes, then freed. */
NOINLINE void realloc_chain(void)
{
    char *p = realloc(NULL, 10);
    p = realloc(p, 1000);
    p = realloc(p, 100000);
    memset(p, 1, 100000);
    free(p);
}

/* Aligned allocations: 256 + 1024 + 512 + 4096 bytes; aligned_alloc's
 * 1024 bytes are leaked, the rest freed. */
NOINLINE void aligned(void)
{
    void *a = NULL;
    if (posix_memalign(&a, 64, 256) != 0)
        abort();
    void *b = aligned_alloc(128, 1024);
    void *c = memalign(32, 512);
    void *d = valloc(4096);
    free(a);
    free(c);
    free(d);
    sink[100] = b;
}

/* The peak: 10 MiB, touched, then freed. */
NOINLINE void big_peak(void)
{
    char *p = malloc(10 << 20);
    memset(p, 1, 10 << 20);
    sink[102] = p; /* keeps the memset: the test checks peak RSS too */
    free(p);
}

/* 1 MiB anonymous mapping; the second half unmapped, the first half
 * leaked (512 KiB). */
NOINLINE void anon_mmap(void)
{
    char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        abort();
    p[0] = 1;
    munmap(p + (512 << 10), 512 << 10);
    sink[101] = p;
}

/* 8 threads x 100 x malloc(1000); each thread keeps one (8000 leaked). */
NOINLINE void *thread_work(void *arg)
{
    void *keep = NULL;
    for (int i = 0; i < 100; i++) {
        void *p = malloc(1000);
        if (i == 0)
            keep = p;
        else
            free(p);
    }
    sink[110 + (long)arg] = keep;
    return NULL;
}

NOINLINE void threads(void)
{
    pthread_t t[8];
    for (long i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, thread_work, (void *)i);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
}

int main(void)
{
    make_small();
    make_calloc();
    realloc_chain();
    aligned();
    big_peak();
    anon_mmap();
    threads();
    static const char done[] = "known_allocs: done\n";
    if (write(STDOUT_FILENO, done, sizeof done - 1) < 0)
        return 1;
    return 0;
}
