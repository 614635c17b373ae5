/* stress.c: THREADS threads x PAIRS malloc/free pairs, for the no-event-
 * lost test and the overhead benchmark. Usage: stress THREADS PAIRS [SIZE]
 * Prints the number of pairs done, which a traced run must match. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long pairs;
static size_t size = 32;

__attribute__((noinline)) static void *stress_worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < pairs; i++) {
        void *volatile p = malloc(size);
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stress THREADS PAIRS [SIZE]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    pairs = atol(argv[2]);
    if (argc > 3)
        size = (size_t)atol(argv[3]);
    if (n <= 1) {
        stress_worker(NULL);
    } else {
        pthread_t *t = calloc((size_t)n, sizeof *t);
        for (int i = 0; i < n; i++)
            pthread_create(&t[i], NULL, stress_worker, NULL);
        for (int i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        free(t);
    }
    printf("%ld pairs\n", pairs * (n < 1 ? 1 : n));
    return 0;
}
