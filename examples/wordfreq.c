/* wordfreq.c: the bundled native example for `make demo`. It builds a text
 * of a million words, counts them in a hash table and prints the most
 * frequent ones. Two things for a profiler to find: the whole text sits in
 * one big buffer for a moment (the peak), and the word strings are never
 * freed (the leak). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct word {
    char *text;
    long count;
    struct word *next;
} word_t;

static const char *const vocabulary[] = {
    "memory", "profile", "allocation", "heap", "stack", "frame", "python",
    "native", "leak", "peak", "arena", "page", "thread", "buffer", "trace"};
#define NVOCAB (sizeof vocabulary / sizeof vocabulary[0])

static unsigned long hash(const char *s)
{
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* The peak: every word of the text in one buffer. */
static char *make_text(long nwords)
{
    char *text = malloc((size_t)nwords * 12 + 1), *p = text;
    unsigned seed = 12345;
    for (long i = 0; i < nwords; i++) {
        seed = seed * 1103515245 + 12345;
        const char *w = vocabulary[(seed >> 16) % NVOCAB];
        size_t n = strlen(w);
        memcpy(p, w, n);
        p += n;
        /* a numbered variant now and then, so there are many words */
        if (i % 7 == 0)
            p += sprintf(p, "%ld", (long)(seed >> 20) % 5000);
        *p++ = ' ';
    }
    *p = 0;
    return text;
}

static word_t *count_word(word_t **table, size_t nbuckets, const char *w)
{
    word_t **slot = &table[hash(w) % nbuckets];
    for (word_t *e = *slot; e; e = e->next)
        if (strcmp(e->text, w) == 0) {
            e->count++;
            return e;
        }
    word_t *e = malloc(sizeof *e);
    e->text = strdup(w); /* the leak: never freed */
    e->count = 1;
    e->next = *slot;
    *slot = e;
    return e;
}

static int by_count(const void *a, const void *b)
{
    long d = (*(word_t *const *)b)->count - (*(word_t *const *)a)->count;
    return d > 0 ? 1 : d < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    long nwords = argc > 1 ? atol(argv[1]) : 1000000;
    char *text = make_text(nwords);
    size_t nbuckets = 4096;
    word_t **table = calloc(nbuckets, sizeof *table);
    size_t distinct = 0;
    for (char *w = strtok(text, " "); w; w = strtok(NULL, " "))
        if (count_word(table, nbuckets, w)->count == 1)
            distinct++;
    free(text);

    word_t **all = malloc(distinct * sizeof *all);
    size_t k = 0;
    for (size_t b = 0; b < nbuckets; b++)
        for (word_t *e = table[b]; e; e = e->next)
            all[k++] = e;
    qsort(all, k, sizeof *all, by_count);
    printf("%zu distinct words; most frequent:\n", distinct);
    for (size_t i = 0; i < 5 && i < k; i++)
        printf("  %-12s %ld\n", all[i]->text, all[i]->count);
    for (size_t i = 0; i < k; i++)
        free(all[i]); /* the nodes go, their strings stay */
    free(all);
    free(table);
    return 0;
}
