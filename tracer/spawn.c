/* spawn.c: following child processes (--follow-fork). The parent records
 * each child it starts (a CHILD record, at fork, vfork, clone or
 * posix_spawn time), and every program it executes gets memtrace's settings
 * back in its environment, so that it is traced into FILE.<pid> too.
 *
 * The program itself never sees those settings: the constructor removes
 * them from its environment (preload.c), this file keeps a copy, and the
 * exec and spawn functions put them into the environment they hand to the
 * new program, whichever environment the program passes (its own, or one it
 * built). Python programs also get memtrace's start-up hook (a
 * sitecustomize on PYTHONPATH, python/memtrace/_startup), which attaches the
 * frame walker and then takes PYTHONPATH back.
 *
 * The exec functions may run in a vfork child, which shares the parent's
 * memory and stack, and in a fork child of a threaded program: they take no
 * lock and allocate nothing (the new environment is built on the stack, or
 * in an mmap for a large one outside vfork children). */
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/capture_write.h"
#include "tracer.h"

#define MT_EXPORT __attribute__((visibility("default")))

extern char **environ;

/* The settings children inherit, as "NAME=value" strings, and the paths
 * put in front of LD_PRELOAD and PYTHONPATH. Written once by
 * mt__spawn_init in the constructor, before the program runs; read-only
 * afterwards, so the exec functions read them without a lock. */
static struct {
    int on;                 /* following: children get the settings */
    char fixed[8][4200];    /* MEMTRACE_OUTPUT=..., MEMTRACE_FOLLOW_FORK=1... */
    int nfixed;
    char preload[4096];     /* this library's path */
    char hook[4096];        /* the start-up hook's directory, or "" */
} cfg;

/* Set while this thread is inside vfork (the child shares it: it runs on
 * this thread's stack and TLS until it execs). */
static __thread int in_vfork __attribute__((tls_model("initial-exec")));

/* ---- Settings ---------------------------------------------------------- */

static void add_fixed(const char *name, const char *value)
{
    if (!value || cfg.nfixed >= (int)(sizeof cfg.fixed / sizeof cfg.fixed[0]))
        return;
    snprintf(cfg.fixed[cfg.nfixed++], sizeof cfg.fixed[0], "%s=%s", name, value);
}

void mt__spawn_init(void)
{
    Dl_info self;
    if (!dladdr((void *)mt__spawn_init, &self) || !self.dli_fname ||
        self.dli_fname[0] != '/' || strlen(self.dli_fname) >= sizeof cfg.preload)
        return; /* without our own path, children cannot be traced */
    snprintf(cfg.preload, sizeof cfg.preload, "%s", self.dli_fname);
    const char *hook = getenv(MT_ENV_PY_HOOK);
    if (hook && hook[0] == '/' && strlen(hook) < sizeof cfg.hook)
        snprintf(cfg.hook, sizeof cfg.hook, "%s", hook);
    const char *names[] = {MT_ENV_OUTPUT, MT_ENV_RSS, MT_ENV_QUIET, MT_ENV_FORCE,
                           MT_ENV_ROOT, MT_ENV_PY_FLAGS, MT_ENV_AGGREGATE,
                           MT_ENV_CHECKPOINT};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        add_fixed(names[i], getenv(names[i]));
    add_fixed(MT_ENV_FOLLOW, "1");
    if (cfg.hook[0])
        add_fixed(MT_ENV_PY_HOOK, cfg.hook);
    cfg.on = 1;
}

/* ---- The child's environment -------------------------------------------- */

static int has_name(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

/* The value of name in envp (the first, as getenv answers), or NULL. */
static const char *env_value(char *const *envp, const char *name)
{
    for (size_t i = 0; envp && envp[i]; i++)
        if (has_name(envp[i], name))
            return envp[i] + strlen(name) + 1;
    return NULL;
}

/* value without a leading "ours" or "ours:" (a program that read its
 * environment from /proc may pass ours back): NULL when nothing is left. */
static const char *without_ours(const char *value, const char *ours)
{
    size_t n = strlen(ours);
    if (!value || !ours[0] || strncmp(value, ours, n) != 0)
        return value && value[0] ? value : NULL;
    if (value[n] == 0)
        return NULL;
    if (value[n] == ':')
        return value[n + 1] ? value + n + 1 : NULL;
    return value;
}

/* What the child gets besides the program's own variables. */
typedef struct {
    const char *preload;  /* the program's LD_PRELOAD, or NULL */
    const char *pypath;   /* its PYTHONPATH, or NULL */
    pid_t parent, exec_pid;
    size_t nptr, nbuf;    /* pointers (with the NULL) and bytes needed */
} env_plan_t;

/* Leaves out what we set ourselves (an older copy of it). */
static int ours_to_replace(const char *entry)
{
    return strncmp(entry, "MEMTRACE_", 9) == 0 || has_name(entry, "LD_PRELOAD") ||
           (cfg.hook[0] && has_name(entry, "PYTHONPATH"));
}

static void env_plan(char *const *envp, pid_t parent, pid_t exec_pid, env_plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->preload = without_ours(env_value(envp, "LD_PRELOAD"), cfg.preload);
    p->pypath = cfg.hook[0] ? without_ours(env_value(envp, "PYTHONPATH"), cfg.hook)
                            : NULL;
    p->parent = parent;
    p->exec_pid = exec_pid;
    size_t n = 0;
    for (size_t i = 0; envp && envp[i]; i++)
        n++;
    p->nptr = n + (size_t)cfg.nfixed + 8;
    p->nbuf = strlen(cfg.preload) + 2 * strlen(cfg.hook) + 256;
    if (p->preload)
        p->nbuf += 2 * strlen(p->preload);
    if (p->pypath)
        p->nbuf += 2 * strlen(p->pypath);
}

static char *put(char *b, const char *s)
{
    size_t n = strlen(s);
    memcpy(b, s, n);
    return b + n;
}

/* Writes "name=a[:b]" at *b; returns it and moves *b past its NUL. */
static char *put_var(char **b, const char *name, const char *a, const char *sep,
                     const char *c)
{
    char *start = *b, *q = start;
    q = put(q, name);
    *q++ = '=';
    q = put(q, a);
    if (c) {
        q = put(q, sep);
        q = put(q, c);
    }
    *q++ = 0;
    *b = q;
    return start;
}

static char *put_pid(char **b, const char *name, pid_t pid)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)pid;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    char *start = *b, *q = put(start, name);
    *q++ = '=';
    while (n)
        *q++ = digits[--n];
    *q++ = 0;
    *b = q;
    return start;
}

/* Fills out (p->nptr pointers) and buf (p->nbuf bytes): memtrace's
 * variables first, then the program's. Returns how many are memtrace's. */
static size_t env_build(char *const *envp, const env_plan_t *p, char **out, char *buf)
{
    size_t k = 0;
    char *b = buf;
    out[k++] = put_var(&b, "LD_PRELOAD", cfg.preload, ":", p->preload);
    if (p->preload)
        out[k++] = put_var(&b, MT_ENV_PRELOAD, p->preload, "", NULL);
    if (cfg.hook[0]) {
        out[k++] = put_var(&b, "PYTHONPATH", cfg.hook, ":", p->pypath);
        if (p->pypath)
            out[k++] = put_var(&b, MT_ENV_PY_PATH, p->pypath, "", NULL);
    }
    if (p->parent > 0)
        out[k++] = put_pid(&b, MT_ENV_PARENT, p->parent);
    if (p->exec_pid > 0)
        out[k++] = put_pid(&b, MT_ENV_EXEC_PID, p->exec_pid);
    for (int i = 0; i < cfg.nfixed; i++)
        out[k++] = cfg.fixed[i];
    size_t ours = k;
    for (size_t i = 0; envp && envp[i]; i++)
        if (!ours_to_replace(envp[i]))
            out[k++] = envp[i];
    out[k] = NULL;
    return ours;
}

/* Environments up to this size are built on the stack. */
#define MT_ENV_STACK (64u << 10)

typedef int (*env_call_t)(void *ctx, char *const *envp);

/* Calls call(ctx, env) with env = envp plus memtrace's settings when
 * following, else with envp unchanged; returns what call returns, with its
 * errno. parent: the child's traced parent; exec_pid: set when the caller
 * replaces itself (exec) while writing FILE.<pid>. */
static int with_child_env(char *const *envp, pid_t parent, pid_t exec_pid,
                          env_call_t call, void *ctx)
{
    if (!cfg.on)
        return call(ctx, envp);
    env_plan_t plan;
    env_plan(envp, parent, exec_pid, &plan);
    size_t words = plan.nptr + (plan.nbuf + sizeof(char *) - 1) / sizeof(char *);
    if (words * sizeof(char *) <= MT_ENV_STACK) {
        char *mem[words];
        env_build(envp, &plan, mem, (char *)(mem + plan.nptr));
        return call(ctx, mem);
    }
    /* A vfork child shares the parent's mappings: an mmap would stay in the
     * parent once the child execs. */
    void *mem = in_vfork ? MAP_FAILED
                         : mmap(NULL, words * sizeof(char *), PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        mt__say("memtrace: the environment is too large to add memtrace's "
                "settings: a child runs untraced\n");
        return call(ctx, envp);
    }
    env_build(envp, &plan, mem, (char *)((char **)mem + plan.nptr));
    int rc = call(ctx, mem);
    int saved = errno;
    munmap(mem, words * sizeof(char *));
    errno = saved;
    return rc;
}

/* The traced parent of a program this process executes: itself when it
 * is the vfork child of a traced process (it shares the parent's state),
 * else its own traced parent (the program replaces this process). */
static void exec_ids(pid_t *parent, pid_t *exec_pid)
{
    pid_t self = getpid();
    if (self != mt__g.pid) {
        *parent = mt__g.pid;
        *exec_pid = 0;
    } else {
        *parent = mt__g.parent_pid;
        *exec_pid = mt__g.has_capture && self != mt__g.root_pid ? self : 0;
    }
}

/* ---- Recording children ------------------------------------------------- */

void mt__note_child(pid_t pid)
{
    /* mt__busy: a signal handler that forks interrupted the tracer on this
     * thread, maybe holding defs_lock; the record is given up. */
    if (!mt__g.follow_fork || pid <= 0 || !atomic_load(&mt__g.active) || mt__busy)
        return;
    int saved = errno, was_busy = mt__busy;
    mt__busy = 1;
    uint8_t rec[MT_VARINT_MAX];
    uint8_t *p = mt__put_varint(rec, (uint64_t)pid);
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__def_put_unlocked(MT_DEF_CHILD, rec, (size_t)(p - rec));
    pthread_mutex_unlock(&mt__g.defs_lock);
    mt__busy = was_busy;
    errno = saved;
}

/* Called by vfork (vfork.S) around the system call: before it, in the
 * parent after it, or after it failed (returns -1 with errno set). */
MT_HIDDEN void mt__vfork_enter(void);
MT_HIDDEN void mt__vfork_parent(pid_t pid);
MT_HIDDEN long mt__vfork_failed(long neg_errno);

MT_HIDDEN void mt__vfork_enter(void)
{
    in_vfork = 1;
}

MT_HIDDEN void mt__vfork_parent(pid_t pid)
{
    in_vfork = 0;
    mt__note_child(pid);
}

MT_HIDDEN long mt__vfork_failed(long neg_errno)
{
    in_vfork = 0;
    errno = (int)-neg_errno;
    return -1;
}

#define ENSURE_REAL(fn)                                                        \
    do {                                                                       \
        if (MT_UNLIKELY(!mt__real.fn))                                         \
            mt__bootstrap();                                                   \
    } while (0)

MT_EXPORT pid_t fork(void)
{
    ENSURE_REAL(fork);
    pid_t pid = mt__real.fork();
    if (pid > 0)
        mt__note_child(pid);
    return pid;
}

/* glibc's clone: a new process unless CLONE_THREAD. The extra arguments
 * are passed on as glibc reads them (whether the flags use them or not). */
MT_EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    pid_t *ptid = va_arg(ap, pid_t *);
    void *tls = va_arg(ap, void *);
    pid_t *ctid = va_arg(ap, pid_t *);
    va_end(ap);
    ENSURE_REAL(clone);
    int pid = mt__real.clone(fn, stack, flags, arg, ptid, tls, ctid);
    if (pid > 0 && !(flags & CLONE_THREAD))
        mt__note_child(pid);
    return pid;
}

/* ---- posix_spawn --------------------------------------------------------- */

typedef struct {
    int path_search;
    pid_t *pid;
    const char *path;
    const posix_spawn_file_actions_t *actions;
    const posix_spawnattr_t *attr;
    char *const *argv;
} spawn_args_t;

static int call_spawn(void *ctx, char *const *envp)
{
    spawn_args_t *a = ctx;
    return (a->path_search ? mt__real.posix_spawnp : mt__real.posix_spawn)(
        a->pid, a->path, a->actions, a->attr, a->argv, envp);
}

static int spawn(spawn_args_t *a, char *const *envp)
{
    pid_t local;
    if (!a->pid)
        a->pid = &local;
    /* glibc runs the child on a stack of its own and execs it with the
     * environment given here: the caller is the traced parent. */
    int rc = with_child_env(envp, cfg.on ? getpid() : 0, 0,
                            call_spawn, a);
    if (rc == 0)
        mt__note_child(*a->pid);
    return rc;
}

MT_EXPORT int posix_spawn(pid_t *pid, const char *path,
                          const posix_spawn_file_actions_t *actions,
                          const posix_spawnattr_t *attr, char *const argv[],
                          char *const envp[])
{
    ENSURE_REAL(posix_spawn);
    spawn_args_t a = {0, pid, path, actions, attr, argv};
    return spawn(&a, envp);
}

MT_EXPORT int posix_spawnp(pid_t *pid, const char *file,
                           const posix_spawn_file_actions_t *actions,
                           const posix_spawnattr_t *attr, char *const argv[],
                           char *const envp[])
{
    ENSURE_REAL(posix_spawnp);
    spawn_args_t a = {1, pid, file, actions, attr, argv};
    return spawn(&a, envp);
}

/* ---- system and popen ------------------------------------------------------
 * The C library starts their shell itself, with the environment of the
 * moment, out of reach of the hooks above. So the command is handed to a
 * shell that first execs a traced shell with memtrace's settings, and that
 * one runs the command (as "sh -c -- COMMAND", like the C library does):
 *     NAME='value'... exec /bin/sh -c -- 'COMMAND' sh
 * The exit status, signals and the shell's process are the same; the
 * traced shell's capture names this process as its parent, but the pid is
 * not known here, so this capture has no CHILD record for it. */

/* Appends s in single quotes (' as '\''); returns the new end. */
static char *put_quoted(char *q, const char *s)
{
    *q++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(q, "'\\''", 4);
            q += 4;
        } else {
            *q++ = *s;
        }
    }
    *q++ = '\'';
    return q;
}

/* The wrapped command, in mt__real.malloc memory, or NULL (then the
 * command runs as given, untraced). */
static char *shell_wrap(const char *command)
{
    env_plan_t plan;
    env_plan(environ, getpid(), 0, &plan);
    size_t words = plan.nptr + (plan.nbuf + sizeof(char *) - 1) / sizeof(char *);
    char **vars = mt__real.malloc(words * sizeof(char *));
    if (!vars)
        return NULL;
    size_t ours = env_build(environ, &plan, vars, (char *)(vars + plan.nptr));
    size_t need = 4 * strlen(command) + 64;
    for (size_t i = 0; i < ours; i++)
        need += 4 * strlen(vars[i]) + 4;
    char *out = mt__real.malloc(need), *q = out;
    if (out) {
        for (size_t i = 0; i < ours; i++) {
            const char *eq = strchr(vars[i], '=');
            memcpy(q, vars[i], (size_t)(eq - vars[i]) + 1);
            q = put_quoted(q + (eq - vars[i]) + 1, eq + 1);
            *q++ = ' ';
        }
        q = put(q, "exec /bin/sh -c -- ");
        q = put_quoted(q, command);
        q = put(q, " sh");
        *q = 0;
    }
    mt__real.free(vars);
    return out;
}

MT_EXPORT int system(const char *command)
{
    ENSURE_REAL(system);
    if (!cfg.on || !command || mt__busy)
        return mt__real.system(command);
    int was_busy = mt__busy;
    mt__busy = 1; /* our allocations are not the program's */
    char *wrapped = shell_wrap(command);
    mt__busy = was_busy;
    int rc = mt__real.system(wrapped ? wrapped : command);
    int saved = errno;
    mt__real.free(wrapped);
    errno = saved;
    return rc;
}

MT_EXPORT FILE *popen(const char *command, const char *type)
{
    ENSURE_REAL(popen);
    if (!cfg.on || !command || mt__busy)
        return mt__real.popen(command, type);
    int was_busy = mt__busy;
    mt__busy = 1;
    char *wrapped = shell_wrap(command);
    mt__busy = was_busy;
    FILE *f = mt__real.popen(wrapped ? wrapped : command, type);
    int saved = errno;
    mt__real.free(wrapped);
    errno = saved;
    return f;
}

/* ---- exec ----------------------------------------------------------------
 * glibc's exec functions call each other internally, out of our reach, so
 * each one the program may call is here, and each goes to execve, execvpe
 * or fexecve with the environment it would have used. */

typedef struct {
    int kind; /* 0 execve, 1 execvpe, 2 fexecve */
    const char *path;
    int fd;
    char *const *argv;
} exec_args_t;

static int call_exec(void *ctx, char *const *envp)
{
    exec_args_t *a = ctx;
    if (a->kind == 1)
        return mt__real.execvpe(a->path, a->argv, envp);
    if (a->kind == 2)
        return mt__real.fexecve(a->fd, a->argv, envp);
    return mt__real.execve(a->path, a->argv, envp);
}

static int do_exec(int kind, const char *path, int fd, char *const *argv,
                   char *const *envp)
{
    if (MT_UNLIKELY(!mt__real.execve || !mt__real.execvpe || !mt__real.fexecve)) {
        if (in_vfork) { /* cannot resolve here: dlsym allocates */
            errno = ENOSYS;
            return -1;
        }
        mt__bootstrap();
    }
    exec_args_t a = {kind, path, fd, argv};
    pid_t parent = 0, exec_pid = 0;
    if (cfg.on)
        exec_ids(&parent, &exec_pid);
    return with_child_env(envp, parent, exec_pid, call_exec, &a);
}

MT_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    return do_exec(0, path, -1, argv, envp);
}

MT_EXPORT int execv(const char *path, char *const argv[])
{
    return do_exec(0, path, -1, argv, environ);
}

MT_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    return do_exec(1, file, -1, argv, envp);
}

MT_EXPORT int execvp(const char *file, char *const argv[])
{
    return do_exec(1, file, -1, argv, environ);
}

MT_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    return do_exec(2, NULL, fd, argv, envp);
}

/* The execl family: the arguments up to the NULL become an argv on the
 * stack (execle's environment follows the NULL). */
#define COLLECT_ARGS(arg0, ap, argv, with_env, envp_out)                       \
    size_t argc_ = 1;                                                          \
    va_start(ap, arg0);                                                        \
    while (va_arg(ap, const char *) != NULL)                                   \
        argc_++;                                                               \
    va_end(ap);                                                                \
    const char *argv[argc_ + 1];                                               \
    argv[0] = arg0;                                                            \
    va_start(ap, arg0);                                                        \
    for (size_t i_ = 1; i_ <= argc_; i_++)                                     \
        argv[i_] = va_arg(ap, const char *);                                   \
    envp_out = with_env ? va_arg(ap, char *const *) : environ;                 \
    va_end(ap)

MT_EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv, 0, envp);
    return do_exec(0, path, -1, (char *const *)argv, envp);
}

MT_EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv, 0, envp);
    return do_exec(1, file, -1, (char *const *)argv, envp);
}

MT_EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv, 1, envp);
    return do_exec(0, path, -1, (char *const *)argv, envp);
}
