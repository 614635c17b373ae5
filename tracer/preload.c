/* preload.c: the tracer's life cycle inside the profiled process: the global
 * state, start-up (configuration from the environment set by
 * `memtrace run`), fork handling and the flush at exit. */
#include <dlfcn.h>
#include <link.h>
#include <lz4frame.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "tracer.h"

struct mt_tracer mt__g = {
    .registry_lock = PTHREAD_MUTEX_INITIALIZER,
    .defs_lock = PTHREAD_MUTEX_INITIALIZER,
    .queue_lock = PTHREAD_MUTEX_INITIALIZER,
    .round_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .fd = -1,
    .statm_fd = -1,
};

__thread int mt__busy __attribute__((tls_model("initial-exec")));

uint64_t mt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void mt__say(const char *fmt, ...)
{
    if (mt__g.quiet)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
}

/* Environment set by `memtrace run` (cli/run.c). The program must see its
 * environment as it would without memtrace, so these are removed from it
 * at start-up, and LD_PRELOAD is put back as it was (MEMTRACE_LD_PRELOAD,
 * unset when the user had none). With --follow-fork they stay, so that
 * exec'd children are traced too. */
#define ENV_OUTPUT "MEMTRACE_OUTPUT"
#define ENV_FOLLOW "MEMTRACE_FOLLOW_FORK"
#define ENV_RSS "MEMTRACE_RSS_INTERVAL"
#define ENV_QUIET "MEMTRACE_QUIET"
#define ENV_FORCE "MEMTRACE_FORCE"
#define ENV_ROOT "MEMTRACE_ROOT_PID"
#define ENV_PRELOAD "MEMTRACE_LD_PRELOAD"
#define ENV_ARGV "MEMTRACE_ARGV"
#define ENV_AGGREGATE "MEMTRACE_AGGREGATE"
#define ENV_CHECKPOINT "MEMTRACE_CHECKPOINT_MS"

static void scrub_environment(void)
{
    const char *orig = getenv(ENV_PRELOAD);
    if (orig && orig[0])
        setenv("LD_PRELOAD", orig, 1);
    else
        unsetenv("LD_PRELOAD");
    const char *vars[] = {ENV_OUTPUT, ENV_FOLLOW, ENV_RSS, ENV_QUIET,
                          ENV_FORCE, ENV_ROOT, ENV_PRELOAD, ENV_ARGV,
                          ENV_AGGREGATE, ENV_CHECKPOINT};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* Fatal signals: write what can be written, then die as the signal says.
 * Installed only where the program has not set a handler by then (one it
 * sets later replaces ours). SA_RESETHAND restores the default action, and
 * the signal raised again takes effect when the handler returns. */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

static void on_fatal_signal(int sig)
{
    int saved = errno;
    if (mt__g.pid == getpid()) {
        int was_busy = mt__busy;
        mt__busy = 1;
        atomic_store(&mt__g.active, 0);
        mt__writer_emergency();
        mt__busy = was_busy;
    }
    errno = saved;
    raise(sig);
}

static void install_fatal_handlers(void)
{
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction old, sa;
        if (sigaction(fatal_signals[i], NULL, &old) != 0 ||
            old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
        sigaction(fatal_signals[i], &sa, NULL);
    }
}

/* A program (or a library before us) that defines malloc itself is not
 * seen by our hooks: say so on stderr and in the capture. */
static void check_malloc_owner(void)
{
    void *first = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info mine, theirs;
    const ElfW(Sym) *sym = NULL;
    if (!first || !dladdr((void *)check_malloc_owner, &mine) ||
        !dladdr1(first, &theirs, (void **)&sym, RTLD_DL_SYMENT) ||
        theirs.dli_fbase == mine.dli_fbase)
        return;
    /* A position-dependent executable that takes malloc's address gets a
     * PLT stub as malloc's canonical address: an undefined symbol there,
     * not a definition, and the calls still reach us. */
    if (sym && sym->st_shndx == SHN_UNDEF)
        return;
    char msg[600];
    int n = snprintf(msg, sizeof msg,
                     "malloc is defined by %s, ahead of memtrace: "
                     "allocations made through it are not traced",
                     theirs.dli_fname && theirs.dli_fname[0] ? theirs.dli_fname
                                                             : "the program");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    mt__say("memtrace: warning: %s\n", msg);
    uint8_t rec[sizeof msg + MT_VARINT_MAX];
    uint8_t *p = mt__put_str(rec, msg, len);
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__def_put_unlocked(MT_DEF_NOTE, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
}

static void start_tracing(int create_excl)
{
    mt__g.pid = getpid();
    mt__g.start_ns = mt__now_ns();
    mt__modules_scan();
    int rc = mt__writer_start(mt__g.path, create_excl);
    if (rc != 0) {
        mt__say("memtrace: cannot write capture %s: %s; the program runs "
                "untraced\n", mt__g.path, strerror(-rc));
        return;
    }
    atomic_store(&mt__g.active, 1);
    check_malloc_owner();
    install_fatal_handlers();
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&mt__g.round_lock);
    pthread_mutex_lock(&mt__g.registry_lock);
    pthread_mutex_lock(&mt__g.defs_lock);
    pthread_mutex_lock(&mt__g.queue_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&mt__g.queue_lock);
    pthread_mutex_unlock(&mt__g.defs_lock);
    pthread_mutex_unlock(&mt__g.registry_lock);
    pthread_mutex_unlock(&mt__g.round_lock);
}

/* In the child only this thread exists. The parent's threads, buffers and
 * writer are not ours: drop them (their memory is left alone). Without
 * --follow-fork the child simply stops tracing; with it, the child starts
 * its own capture FILE.<pid> with the definitions written again. */
static void fork_child(void)
{
    int was_active = atomic_load(&mt__g.active);
    atomic_store(&mt__g.active, 0);
    mt__g.threads = NULL;
    mt__g.queue_head = mt__g.queue_tail = NULL;
    mt__g.queue_bytes = 0;
    mt__g.writer_running = 0;
    if (mt__g.fd >= 0)
        close(mt__g.fd);
    mt__g.fd = -1;
    /* The parent's /proc/self/statm (opened in the parent, it names the
     * parent) and compression context (round_lock was held: not in use). */
    if (mt__g.statm_fd >= 0)
        close(mt__g.statm_fd);
    mt__g.statm_fd = -1;
    if (mt__g.cctx)
        LZ4F_freeCompressionContext(mt__g.cctx);
    mt__g.cctx = NULL;
    mt__g.finished = 1;
    mt__self = NULL;
    mt__g.defs_len = 0;
    fork_parent(); /* unlock: this thread holds them all */
    /* The writer's wake-up lock and condition were not taken by prepare
     * (the writer may have held the lock at the fork): new ones. */
    pthread_mutex_init(&mt__g.wake_lock, NULL);
    pthread_cond_init(&mt__g.wake, NULL);
    if (!was_active || !mt__g.follow_fork)
        return;

    int was_busy = mt__busy;
    mt__busy = 1;
    char *dot = strrchr(mt__g.path, '.');
    size_t base = strlen(mt__g.path);
    /* FILE.<pid> next to the root capture: strip a previous ".<pid>". */
    if (mt__g.pid != mt__g.root_pid && dot)
        base = (size_t)(dot - mt__g.path);
    snprintf(mt__g.path + base, sizeof mt__g.path - base, ".%d", (int)getpid());
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__modules_reemit_unlocked();
    mt__python_reemit_unlocked();
    mt__stack_reemit_unlocked();
    pthread_mutex_unlock(&mt__g.defs_lock);
    mt__g.pid = getpid();
    mt__g.start_ns = mt__now_ns();
    int rc = mt__writer_start(mt__g.path, !mt__g.force);
    if (rc == 0)
        atomic_store(&mt__g.active, 1);
    else
        mt__say("memtrace: cannot write capture %s: %s; child %d runs "
                "untraced\n", mt__g.path, strerror(-rc), (int)getpid());
    mt__busy = was_busy;
}

void mt__install_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void mt_tracer_init(void)
{
    mt__busy = 1;
    mt__bootstrap();
    const char *out = getenv(ENV_OUTPUT);
    if (!out || !out[0]) {
        mt__busy = 0;
        return; /* loaded without `memtrace run`: stay out of the way */
    }
    mt__g.follow_fork = getenv(ENV_FOLLOW) && atoi(getenv(ENV_FOLLOW));
    mt__g.quiet = getenv(ENV_QUIET) && atoi(getenv(ENV_QUIET));
    mt__g.force = getenv(ENV_FORCE) && atoi(getenv(ENV_FORCE));
    const char *rss = getenv(ENV_RSS);
    mt__g.rss_interval_ms = rss ? (unsigned)atoi(rss) : 10;
    if (mt__g.rss_interval_ms == 0)
        mt__g.rss_interval_ms = 10;
    mt__g.aggregate = getenv(ENV_AGGREGATE) && atoi(getenv(ENV_AGGREGATE));
    const char *ckpt = getenv(ENV_CHECKPOINT);
    mt__g.checkpoint_ms = ckpt ? (unsigned)atoi(ckpt) : 0; /* 0: default */
    const char *root = getenv(ENV_ROOT);
    mt__g.root_pid = root ? (pid_t)atoi(root) : getpid();

    /* The root process writes FILE (created empty by `memtrace run`); an
     * exec'd descendant (only with --follow-fork) writes FILE.<pid>. */
    int create_excl = 0;
    if (getpid() == mt__g.root_pid) {
        snprintf(mt__g.path, sizeof mt__g.path, "%s", out);
    } else {
        snprintf(mt__g.path, sizeof mt__g.path, "%s.%d", out, (int)getpid());
        create_excl = !mt__g.force;
    }
    pthread_key_create(&mt__g.thread_key, mt__thread_exit);
    mt__install_fork_handlers();
    start_tracing(create_excl); /* reads MEMTRACE_ARGV for the header */
    if (!mt__g.follow_fork)
        scrub_environment();
    else
        unsetenv(ENV_ARGV); /* only the root process uses it */
    mt__busy = 0;
}

__attribute__((destructor)) static void mt_tracer_fini(void)
{
    if (mt__g.pid != getpid() || mt__g.fd < 0)
        return;
    mt__busy = 1;
    mt__writer_finish();
    /* Anything after this point (later destructors) is not traced. */
}
