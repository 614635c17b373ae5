/* phases.c: allocations in known phases, 400 ms apart, for the tests of
 * report windows (--from/--to) and of combined multi-process reports.
 *
 *   phases            0 s: phase_a 1 MB | 0.4 s: phase_b 2 MB, free A |
 *                     0.8 s: phase_c 4 MB | exit at 1.2 s (B and C left)
 *   phases fork       parent_keep 1 MB, then two children one after the
 *                     other, each child_hold 3 MB held for 400 ms and left
 *                     at exit; the parent waits for each, frees nothing.
 *                     Peak of the sum: 4 MB; sum of the peaks: 7 MB.
 * Nothing is printed before the end, so stdio allocates nothing earlier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define MB 1000000

static void *volatile sink[4];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Each phase allocates itself (so that it is the site) and touches the
 * memory, so that it is real and RSS shows it. */
#define GRAB(n)                                                                \
    do {                                                                       \
        char *p = malloc(n);                                                   \
        if (p)                                                                 \
            memset(p, 1, n);                                                   \
        return p;                                                              \
    } while (0)

static NOINLINE void *phase_a(void) { GRAB(1 * MB); }
static NOINLINE void *phase_b(void) { GRAB(2 * MB); }
static NOINLINE void *phase_c(void) { GRAB(4 * MB); }
static NOINLINE void *parent_keep(void) { GRAB(1 * MB); }
static NOINLINE void *child_hold(void) { GRAB(3 * MB); }

static int phases(void)
{
    sink[0] = phase_a();
    sleep_ms(400);
    sink[1] = phase_b();
    free(sink[0]);
    sleep_ms(400);
    sink[2] = phase_c();
    sleep_ms(400);
    puts("phases done");
    return 0;
}

static int forks(void)
{
    sink[0] = parent_keep();
    sleep_ms(200);
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            sink[1] = child_hold();
            sleep_ms(400);
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        sleep_ms(200);
    }
    puts("forks done");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "fork") == 0)
        return forks();
    return phases();
}
