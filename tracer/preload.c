/* preload.c: the tracer's life cycle inside the profiled process: the global
 * state, start-up (configuration from the environment set by
 * `memtrace run`), fork handling and the flush at exit. */
#include <dlfcn.h>
#include <link.h>
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

/* The environment `memtrace run` set (tracer.h, MT_ENV_*). The program
 * must see its environment as it would without memtrace, so these are
 * removed from it at start-up, and LD_PRELOAD is put back as it was
 * (MEMTRACE_LD_PRELOAD, unset when the user had none). With --follow-fork,
 * spawn.c keeps a copy and gives them to each program this one executes.
 *
 * The Python variables (MT_ENV_PY_*, and PYTHONPATH, which brings
 * memtrace's launcher or start-up hook) are read by the interpreter after
 * this constructor: they stay for memtrace's Python code to take back,
 * unless this process will not run that code. */
static void scrub_environment(int python_cleans)
{
    const char *orig = getenv(MT_ENV_PRELOAD);
    if (orig && orig[0])
        setenv("LD_PRELOAD", orig, 1);
    else
        unsetenv("LD_PRELOAD");
    const char *vars[] = {MT_ENV_OUTPUT, MT_ENV_FOLLOW, MT_ENV_RSS, MT_ENV_QUIET,
                          MT_ENV_FORCE, MT_ENV_ROOT, MT_ENV_PRELOAD, MT_ENV_ARGV,
                          MT_ENV_PY_HOOK, MT_ENV_PARENT, MT_ENV_EXEC_PID,
                          MT_ENV_AGGREGATE, MT_ENV_CHECKPOINT};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    if (python_cleans || !getenv(MT_ENV_PY_FLAGS))
        return;
    const char *path = getenv(MT_ENV_PY_PATH);
    if (path)
        setenv("PYTHONPATH", path, 1);
    else
        unsetenv("PYTHONPATH");
    unsetenv(MT_ENV_PY_PATH);
    unsetenv(MT_ENV_PY_FLAGS);
}

/* 1 if this process is a CPython interpreter that will read PYTHONPATH and
 * import site (so memtrace's launcher or start-up hook runs): not with -E,
 * -I or -S on its command line. */
static int python_will_clean(void)
{
    if (!dlsym(RTLD_DEFAULT, "Py_BytesMain") && !dlsym(RTLD_DEFAULT, "Py_Main"))
        return 0;
    static char args[16 << 10];
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t n = read(fd, args, sizeof args - 1);
    close(fd);
    if (n <= 0)
        return 1;
    args[n] = 0;
    /* Options come before the script, -c or -m; -W and -X take a value,
     * attached or as the next argument. */
    const char *a = args + strlen(args) + 1, *end = args + n;
    while (a < end && a[0] == '-' && a[1] && strcmp(a, "--") != 0) {
        int skip_next = strcmp(a, "--check-hash-based-pycs") == 0;
        for (const char *c = a + 1; a[1] != '-' && *c; c++) {
            if (*c == 'E' || *c == 'I' || *c == 'S')
                return 0;
            if (*c == 'c' || *c == 'm')
                return 1;
            if (*c == 'W' || *c == 'X') {
                skip_next = c[1] == 0;
                break;
            }
        }
        a += strlen(a) + 1;
        if (skip_next && a < end)
            a += strlen(a) + 1;
    }
    return 1;
}

/* Fatal signals: write what can be written, then die as the signal says.
 * Installed only where the program has not set a handler by then (one it
 * sets later replaces ours). SA_RESETHAND restores the default action, and
 * the signal raised again takes effect when the handler returns.
 * SIGTERM is among them: it is how processes are told to stop (kill,
 * timeout, docker stop, and multiprocessing's Pool.terminate(), which
 * `with Pool() as p:` calls on its workers), and a short-lived worker would
 * otherwise lose everything since the last writer round, often its whole
 * life. So is SIGPIPE, how the writer of a pipeline ends when its reader
 * has had enough (`memtrace run -- prog | head`). SIGINT is not: CPython
 * installs its KeyboardInterrupt handler only where SIGINT still has the
 * default action. */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE,
                                    SIGILL,  SIGTERM, SIGPIPE};

static void on_fatal_signal(int sig)
{
    int saved = errno;
    /* The end of the capture being written on another thread (the program
     * is exiting): let it finish, up to 2 s, rather than cut it short. */
    for (int i = 0; i < 2000 && atomic_load(&mt__g.finishing) &&
                    !pthread_equal(pthread_self(), mt__g.finisher);
         i++) {
        struct timespec d = {0, 1000000L};
        nanosleep(&d, NULL);
    }
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

static int is_fatal_signal(int sig)
{
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
        if (fatal_signals[i] == sig)
            return 1;
    return 0;
}

/* Initialized at compile time (an empty sa_mask is all zeros in glibc),
 * so threads may install it at any moment without a race. */
static const struct sigaction our_sa = {
    .sa_handler = on_fatal_signal,
    .sa_flags = SA_RESETHAND | SA_ONSTACK,
};

static const struct sigaction *our_action(void)
{
    return &our_sa;
}

static void install_fatal_handlers(void)
{
    if (!mt__real.sigaction)
        mt__bootstrap();
    if (!mt__real.sigaction)
        return;
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction old;
        if (mt__real.sigaction(fatal_signals[i], NULL, &old) != 0 ||
            old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
            continue;
        mt__real.sigaction(fatal_signals[i], our_action(), NULL);
    }
}

/* The program asking for a signal's handler gets the default action where
 * ours is installed: it is what it would see without memtrace (CPython
 * reads every handler at start-up, and signal.getsignal(SIGTERM) must say
 * SIG_DFL, not None), and a handler it chains to is then SIG_DFL. */
static void hide_ours(struct sigaction *old)
{
    if (old && !(old->sa_flags & SA_SIGINFO) && old->sa_handler == on_fatal_signal) {
        memset(old, 0, sizeof *old);
        old->sa_handler = SIG_DFL;
        sigemptyset(&old->sa_mask);
    }
}

/* A program that restores the default action of a fatal signal gets ours
 * instead (it acts as the default, after writing a last block): programs
 * with handlers of their own (GNU sort, for its temporary files) end by
 * restoring the default and raising the signal again. */
static int wants_default(int sig, void (*handler)(int), int flags)
{
    return handler == SIG_DFL && !(flags & SA_SIGINFO) && is_fatal_signal(sig) &&
           mt__g.pid == getpid() && atomic_load(&mt__g.active);
}

__attribute__((visibility("default"))) int sigaction(int sig, const struct sigaction *act,
                                                     struct sigaction *old)
{
    if (MT_UNLIKELY(!mt__real.sigaction))
        mt__bootstrap();
    if (act && wants_default(sig, act->sa_handler, act->sa_flags))
        act = our_action();
    int rc = mt__real.sigaction(sig, act, old);
    if (rc == 0)
        hide_ours(old);
    return rc;
}

__attribute__((visibility("default"))) void (*signal(int sig, void (*handler)(int)))(int)
{
    if (MT_UNLIKELY(!mt__real.signal))
        mt__bootstrap();
    if (wants_default(sig, handler, 0) && mt__real.sigaction) {
        struct sigaction old;
        if (mt__real.sigaction(sig, our_action(), &old) != 0)
            return SIG_ERR;
        hide_ours(&old);
        return old.sa_handler;
    }
    void (*prev)(int) = mt__real.signal(sig, handler);
    return prev == on_fatal_signal ? SIG_DFL : prev;
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
    mt__g.has_capture = 1;
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
    mt__g.has_capture = 0;
    mt__g.threads = NULL;
    mt__g.queue_head = mt__g.queue_tail = NULL;
    mt__g.queue_bytes = 0;
    mt__g.writer_running = 0;
    if (mt__g.fd >= 0)
        close(mt__g.fd);
    mt__g.fd = -1;
    /* The parent's /proc/self/statm (opened in the parent, it names the
     * parent) and compression context (round_lock was held: not in use). */
    mt__writer_release_unlocked();
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
    /* The traced parent is the process that forked: getppid() would name
     * a subreaper if it has exited already. */
    mt__g.parent_pid = mt__g.pid;
    mt__g.origin = MT_ORIGIN_FORK;
    mt__g.pid = getpid();
    mt__g.start_ns = mt__now_ns();
    int rc = mt__writer_start(mt__g.path, !mt__g.force);
    if (rc == 0) {
        mt__g.has_capture = 1;
        atomic_store(&mt__g.active, 1);
    } else {
        mt__say("memtrace: cannot write capture %s: %s; child %d runs "
                "untraced\n", mt__g.path, strerror(-rc), (int)getpid());
    }
    mt__busy = was_busy;
}

void mt__install_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && atoi(v);
}

__attribute__((constructor)) static void mt_tracer_init(void)
{
    mt__busy = 1;
    mt__bootstrap();
    const char *out = getenv(MT_ENV_OUTPUT);
    if (!out || !out[0]) {
        mt__busy = 0;
        return; /* loaded without `memtrace run`: stay out of the way */
    }
    mt__g.follow_fork = env_flag(MT_ENV_FOLLOW);
    mt__g.quiet = env_flag(MT_ENV_QUIET);
    mt__g.force = env_flag(MT_ENV_FORCE);
    const char *rss = getenv(MT_ENV_RSS);
    mt__g.rss_interval_ms = rss ? (unsigned)atoi(rss) : 10;
    if (mt__g.rss_interval_ms == 0)
        mt__g.rss_interval_ms = 10;
    mt__g.aggregate = getenv(MT_ENV_AGGREGATE) && atoi(getenv(MT_ENV_AGGREGATE));
    const char *ckpt = getenv(MT_ENV_CHECKPOINT);
    mt__g.checkpoint_ms = ckpt ? (unsigned)atoi(ckpt) : 0; /* 0: default */
    const char *root = getenv(MT_ENV_ROOT);
    mt__g.root_pid = root ? (pid_t)atoi(root) : getpid();

    /* The root process writes FILE (created empty by `memtrace run`); an
     * exec'd descendant (only with --follow-fork) writes FILE.<pid>, or
     * replaces it when this process wrote it before it exec'd. */
    int create_excl = 0;
    if (getpid() == mt__g.root_pid) {
        snprintf(mt__g.path, sizeof mt__g.path, "%s", out);
        mt__g.origin = MT_ORIGIN_ROOT;
    } else {
        snprintf(mt__g.path, sizeof mt__g.path, "%s.%d", out, (int)getpid());
        create_excl = !mt__g.force;
        const char *parent = getenv(MT_ENV_PARENT), *replaces = getenv(MT_ENV_EXEC_PID);
        mt__g.parent_pid = parent ? (pid_t)atoi(parent) : getppid();
        mt__g.origin = MT_ORIGIN_EXEC;
        if (replaces && atoi(replaces) == (int)getpid() && create_excl)
            unlink(mt__g.path); /* ours: a new file rather than a truncated one */
    }
    pthread_key_create(&mt__g.thread_key, mt__thread_exit);
    mt__install_fork_handlers();
    if (mt__g.follow_fork)
        mt__spawn_init();
    start_tracing(create_excl); /* reads MEMTRACE_ARGV for the header */
    scrub_environment(python_will_clean());
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
