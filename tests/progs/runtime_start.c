/* runtime_start.c: tracing started and stopped inside a running program
 * that was not started by `memtrace run` (what memtrace.Tracker does):
 * dlopen the preload library, mt_tracer_start, allocate, mt_tracer_stop,
 * twice. Usage: runtime_start PRELOAD.so CAPTURE
 * Session 1 (CAPTURE) sees traced_one's 3 x 7000 bytes, one freed;
 * session 2 (CAPTURE.2) sees traced_two's 5 x 3000 bytes. Nothing made
 * between the sessions is traced, and after the end malloc is libc's again. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtrace/tracer.h"

#define NOINLINE __attribute__((noinline))

static void *volatile sink[16];

NOINLINE static void traced_one(void)
{
    for (int i = 0; i < 3; i++)
        sink[i] = malloc(7000);
    free(sink[0]);
}

NOINLINE static void untraced_between(void)
{
    for (int i = 0; i < 4; i++)
        sink[4 + i] = malloc(11111);
}

NOINLINE static void traced_two(void)
{
    for (int i = 0; i < 5; i++)
        sink[8 + i] = malloc(3000);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: runtime_start PRELOAD.so CAPTURE\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*start)(const char *, const mt_tracer_opts_t *) =
        (int (*)(const char *, const mt_tracer_opts_t *))dlsym(lib, "mt_tracer_start");
    int (*stop)(void) = (int (*)(void))dlsym(lib, "mt_tracer_stop");
    if (!start || !stop)
        return 1;
    mt_tracer_opts_t opts = {.rss_interval_ms = 5};
    if (start(argv[2], &opts) != 0) {
        fprintf(stderr, "first start failed\n");
        return 1;
    }
    int again = start(argv[2], &opts); /* already tracing: refused */
    traced_one();
    if (stop() != 0)
        return 1;
    untraced_between();
    char second[4096];
    snprintf(second, sizeof second, "%s.2", argv[2]);
    if (start(second, &opts) != 0) {
        fprintf(stderr, "second start failed\n");
        return 1;
    }
    traced_two();
    stop();
    int stopped_twice = stop(); /* not tracing: refused */
    void *p = malloc(100); /* libc's again, nothing to record */
    free(p);
    printf("restart refused: %s, stop refused: %s\n",
           again == MT_EEXIST ? "yes" : "no",
           stopped_twice == MT_EINVAL ? "yes" : "no");
    return 0;
}
