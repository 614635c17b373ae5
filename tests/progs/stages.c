/* stages.c: named stages from C through <memtrace/tracer.h>, linked with
 * nothing of memtrace (the header's weak references find the preloaded
 * library, or nothing). Usage: stages MODE, MODE one of:
 *   basic      load: 100000 kept; 3 x work { step { 50000 freed }, 20000
 *              kept }; untraced: 8 MiB mapped behind the hooks' back and
 *              touched (RSS grows, the traced heap does not)
 *   threads    4 threads, thread i: worker { 10000 * (i + 1) kept }, while
 *              main is inside "main"
 *   exit       outer { inner { 4096 kept; exit(3) } }
 *   unbalanced a leave with nothing open, then lone { 777 kept }
 *   stress     8 threads x 2000 x stress { 100 freed }, all at once
 *   signals    loop { 100000 x 64 freed } while a 50 us interval timer's
 *              handler enters and leaves "sig" (recorded unless it
 *              interrupted the tracer itself)
 *   fork       shared { 1000 kept }; parent { fork: the child runs
 *              shared { 5000 kept } and exits; 3000 kept } (with
 *              --follow-fork the child's capture defines "shared" again)
 *   window     1000 kept; extract { 30000 kept; 50000 freed }; transform {
 *              2 x step { 7000 freed; 2000 kept }; 4000 kept }; load {
 *              free extract's 30000; 200000 kept }; then, in no stage,
 *              500000 freed (the whole run's peak, outside every stage)
 * Prints nothing inside stages (stdio allocates). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memtrace/tracer.h"

static void *volatile sink[64];

static void basic(void)
{
    mt_stage_enter("load");
    sink[0] = malloc(100000);
    mt_stage_leave();
    for (int i = 0; i < 3; i++) {
        mt_stage_enter("work");
        mt_stage_enter("step");
        void *p = malloc(50000);
        memset(p, 1, 50000);
        free(p);
        mt_stage_leave();
        sink[1 + i] = malloc(20000);
        mt_stage_leave();
    }
    /* The raw system call is not an interposed mmap: untraced memory. */
    mt_stage_enter("untraced");
    size_t len = 8u << 20;
    char *m = (char *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != (char *)-1)
        memset(m, 1, len);
    mt_stage_leave();
    sink[10] = m;
}

static void *worker(void *arg)
{
    size_t i = (size_t)arg;
    mt_stage_enter("worker");
    sink[20 + i] = malloc(10000 * (i + 1));
    mt_stage_leave();
    return NULL;
}

static void threads(void)
{
    pthread_t t[4];
    mt_stage_enter("main");
    for (size_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (size_t i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    mt_stage_leave();
}

static void forks(void)
{
    mt_stage_enter("shared");
    sink[40] = malloc(1000);
    mt_stage_leave();
    mt_stage_enter("parent");
    pid_t pid = fork();
    if (pid == 0) {
        mt_stage_enter("shared");
        sink[41] = malloc(5000);
        mt_stage_leave();
        exit(0);
    }
    sink[42] = malloc(3000);
    waitpid(pid, NULL, 0);
    mt_stage_leave();
}

static void *touched(size_t n)
{
    void *p = malloc(n);
    memset(p, 1, n);
    return p;
}

static void windows(void)
{
    sink[50] = malloc(1000);
    mt_stage_enter("extract");
    sink[51] = malloc(30000);
    free(touched(50000));
    mt_stage_leave();
    mt_stage_enter("transform");
    for (int i = 0; i < 2; i++) {
        mt_stage_enter("step");
        free(touched(7000));
        sink[52 + i] = malloc(2000);
        mt_stage_leave();
    }
    sink[54] = malloc(4000);
    mt_stage_leave();
    mt_stage_enter("load");
    free(sink[51]);
    sink[55] = malloc(200000);
    mt_stage_leave();
    free(touched(500000));
}

static void *stress_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        mt_stage_enter("stress");
        void *volatile p = malloc(100);
        free(p);
        mt_stage_leave();
    }
    return NULL;
}

static void stress(void)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, stress_thread, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
}

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    mt_stage_enter("sig");
    mt_stage_leave();
    ticks++;
}

static void signals(void)
{
    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    mt_stage_enter("loop");
    for (int i = 0; i < 100000; i++) {
        void *volatile p = malloc(64);
        free(p);
    }
    mt_stage_leave();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0) {
        basic();
    } else if (strcmp(mode, "threads") == 0) {
        threads();
    } else if (strcmp(mode, "exit") == 0) {
        mt_stage_enter("outer");
        mt_stage_enter("inner");
        sink[30] = malloc(4096);
        exit(3);
    } else if (strcmp(mode, "stress") == 0) {
        stress();
    } else if (strcmp(mode, "signals") == 0) {
        signals();
        printf("ticks %s\n", ticks ? "some" : "none");
    } else if (strcmp(mode, "fork") == 0) {
        forks();
    } else if (strcmp(mode, "window") == 0) {
        windows();
    } else if (strcmp(mode, "unbalanced") == 0) {
        mt_stage_leave();
        mt_stage_enter("lone");
        sink[31] = malloc(777);
        mt_stage_leave();
    } else {
        fprintf(stderr, "stages: unknown mode %s\n", mode);
        return 2;
    }
    printf("stages %s done\n", mode);
    return 0;
}
