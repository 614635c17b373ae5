/* lifecycle.c: the nasty cases a tracer inside a process must survive, one
 * mode per argument. Each mode prints what it did, so a test can compare a
 * traced run's output with an untraced one.
 *   loop            allocate forever (killed by the test)
 *   fork            fork while another thread allocates; child allocates
 *   fork-exec       fork and exec /bin/sh -c 'exit 3'
 *   exit-threads    exit() while 4 threads are allocating
 *   signals         SIGALRM handler that allocates, every 1 ms, for 0.5 s
 *   churn           200 short threads, created and joined one by one
 *   abort | segv    allocate, wait for a flush, then crash
 *   abort-now | segv-now  allocate, then crash at once (before any round)
 *   term-now        allocate, then receive SIGTERM at once (as a worker
 *                   stopped by kill or Pool.terminate)
 *   term-own-now    the same with a SIGTERM handler of the program's own
 *                   that restores the default action and raises it again
 *                   (as GNU sort does)
 *   pipe-now        allocate, then write to a pipe nobody reads (SIGPIPE)
 *   _exit           allocate then _exit(7) at once
 *   dlopen          dlopen/dlclose a library 200 times
 *   threads16       16 threads allocating for 3 s, replaced as they finish
 *   oom             allocate 1 MiB blocks until malloc fails (under a
 *                   RLIMIT_AS set by the test), then free them all
 *   sleep           sleep 1 s (the test removes the capture's directory)
 *   hold            keep 30 x 40000 bytes, make an 8 MiB peak, print
 *                   "ready" and wait to be killed (SIGKILL, as the OOM
 *                   killer does)
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *volatile sink;
static atomic_int stop;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

NOINLINE static void *spinner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        void *p = malloc(48);
        sink = p;
        free(p);
    }
    return NULL;
}

NOINLINE static void loop_forever(void)
{
    void *ring[64] = {0};
    for (unsigned long i = 0;; i++) {
        free(ring[i % 64]);
        ring[i % 64] = malloc(64 + i % 64);
        if (i == 1000) {
            puts("ready");
            fflush(stdout);
        }
        if (i % 1000 == 0)
            sleep_ms(1);
    }
}

NOINLINE static void parent_work(void)
{
    for (int i = 0; i < 10; i++)
        sink = malloc(1000);
}

NOINLINE static void child_work(void)
{
    for (int i = 0; i < 10; i++)
        sink = malloc(2000);
}

static int do_fork(int exec_child)
{
    pthread_t t;
    pthread_create(&t, NULL, spinner, NULL);
    sleep_ms(20);
    parent_work();
    pid_t pid = fork();
    if (pid == 0) {
        if (exec_child) {
            execl("/bin/sh", "sh", "-c", "exit 3", (char *)NULL);
            _exit(99);
        }
        child_work();
        exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

static int exit_with_threads(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, spinner, NULL);
    sleep_ms(100);
    puts("exiting");
    fflush(stdout);
    exit(0);
}

static atomic_long handled;

static void on_alarm(int sig)
{
    (void)sig;
    void *p = malloc(24); /* not async-signal-safe, and programs do it */
    free(p);
    atomic_fetch_add(&handled, 1);
}

static int signals(void)
{
    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long n = 0;
    do {
        void *p = malloc(100);
        free(p);
        n++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 +
                 (now.tv_nsec - start.tv_nsec) / 1000000 < 500);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signals handled: %s\n", atomic_load(&handled) > 0 ? "yes" : "no");
    return 0;
}

NOINLINE static void *short_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        free(malloc(100));
    return malloc(100); /* handed back to the joiner, which frees it */
}

static int churn(void)
{
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        void *r;
        pthread_create(&t, NULL, short_thread, NULL);
        pthread_join(t, &r);
        free(r);
    }
    puts("churned 200 threads");
    return 0;
}

static void own_term_handler(int sig)
{
    signal(sig, SIG_DFL);
    raise(sig);
}

NOINLINE static void before_crash(void)
{
    for (int i = 0; i < 5; i++)
        sink = malloc(1000);
}

static int dlopen_loop(void)
{
    int ok = 0;
    for (int i = 0; i < 200; i++) {
        void *h = dlopen("libutil.so.1", RTLD_NOW | RTLD_LOCAL);
        if (h) {
            ok++;
            dlclose(h);
        }
        free(malloc(10));
    }
    printf("dlopen %d\n", ok);
    return 0;
}

NOINLINE static void *worker16(void *arg)
{
    void *slots[32] = {0};
    for (long i = 0; i < 20000 + (long)arg * 1000; i++) {
        int k = (int)(i % 32);
        free(slots[k]);
        slots[k] = malloc(16 + (size_t)(i * 7 % 4000));
    }
    for (int k = 0; k < 32; k++)
        free(slots[k]);
    return NULL;
}

static int threads16(void)
{
    pthread_t t[16];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long started = 0;
    for (int i = 0; i < 16; i++, started++)
        pthread_create(&t[i], NULL, worker16, (void *)(long)i);
    do {
        /* Join the oldest and start a new one in its place. */
        int i = (int)(started % 16);
        pthread_join(t[i], NULL);
        pthread_create(&t[i], NULL, worker16, (void *)(long)i);
        started++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 3);
    for (int i = 0; i < 16; i++)
        pthread_join(t[i], NULL);
    puts("16 threads done");
    return 0;
}

NOINLINE static int oom(void)
{
    void **blocks = calloc(1 << 16, sizeof *blocks);
    long n = 0;
    while (n < (1 << 16) && (blocks[n] = malloc(1 << 20)) != NULL) {
        memset(blocks[n], 1, 4096);
        n++;
    }
    for (long i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    puts(n > 0 && n < (1 << 16) ? "malloc failed, recovered" : "no limit hit");
    return 0;
}

static void *volatile held[30];

/* 30 x malloc(40000) = 1,200,000 bytes, all kept. */
NOINLINE static void hold_work(void)
{
    for (int i = 0; i < 30; i++) {
        held[i] = malloc(40000);
        memset(held[i], 1, 40000);
    }
}

/* 8 MiB, touched and freed: the peak is hold_work's blocks plus this. */
NOINLINE static void hold_peak(void)
{
    char *p = malloc(8 << 20);
    memset(p, 1, 8 << 20);
    sink = p;
    free(p);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "loop"))
        loop_forever();
    if (!strcmp(mode, "fork"))
        return do_fork(0);
    if (!strcmp(mode, "fork-exec"))
        return do_fork(1);
    if (!strcmp(mode, "exit-threads"))
        return exit_with_threads();
    if (!strcmp(mode, "signals"))
        return signals();
    if (!strcmp(mode, "churn"))
        return churn();
    if (!strcmp(mode, "dlopen"))
        return dlopen_loop();
    if (!strcmp(mode, "threads16"))
        return threads16();
    if (!strcmp(mode, "oom"))
        return oom();
    if (!strcmp(mode, "hold")) {
        hold_work();
        hold_peak();
        puts("ready");
        fflush(stdout);
        for (;;)
            pause();
    }
    if (!strcmp(mode, "sleep")) {
        before_crash();
        sleep_ms(1000);
        before_crash();
        puts("slept");
        return 0;
    }
    if (!strcmp(mode, "abort") || !strcmp(mode, "segv") || !strcmp(mode, "_exit") ||
        !strcmp(mode, "abort-now") || !strcmp(mode, "segv-now") ||
        !strcmp(mode, "term-now") || !strcmp(mode, "term-own-now") ||
        !strcmp(mode, "pipe-now")) {
        if (!strcmp(mode, "term-own-now")) {
            signal(SIGTERM, own_term_handler);
            sleep_ms(250); /* past the writer's first rounds */
        }
        before_crash();
        if (mode[0] == '_')
            _exit(7);
        if (!strstr(mode, "-now"))
            sleep_ms(400); /* at least one writer round */
        if (mode[0] == 'a')
            abort();
        if (mode[0] == 't') {
            kill(getpid(), SIGTERM); /* from outside, as kill(1) sends it */
            return 0;
        }
        if (mode[0] == 'p') {
            int fds[2];
            if (pipe(fds) != 0)
                return 1;
            close(fds[0]);
            return write(fds[1], "x", 1) < 0 ? 0 : 1;
        }
        volatile int *bad = NULL;
        return *bad;
    }
    fprintf(stderr, "lifecycle: unknown mode '%s'\n", mode);
    return 2;
}
