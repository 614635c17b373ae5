/* own_malloc.c: a program that replaces malloc with its own (a bump
 * allocator over a static arena), as some programs and static allocators
 * do. memtrace cannot see those calls and must say so, not crash. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Alignas(16) char arena[64 << 20];
static size_t used;

void *malloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (used + n > sizeof arena)
        return NULL;
    void *p = arena + used;
    used += n;
    return p;
}

void free(void *p) { (void)p; }

void *calloc(size_t n, size_t m)
{
    void *p = malloc(n * m);
    if (p)
        memset(p, 0, n * m);
    return p;
}

void *realloc(void *old, size_t n)
{
    void *p = malloc(n);
    if (p && old)
        memcpy(p, old, n); /* the arena is contiguous: over-reading is safe */
    return p;
}

int main(void)
{
    for (int i = 0; i < 1000; i++)
        free(malloc(100));
    printf("own allocator used %zu bytes\n", used > 100000 ? (size_t)100000 : used);
    return 0;
}
