/* run.c: `memtrace run`: runs a program (or a Python module, code string or
 * script) with the preload library injected, and exits with its status.
 * The program sees its own argv, environment, working directory and
 * standard streams; only the capture appears beside it. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "common/capture_write.h"
#include "memtrace/memtrace.h"

typedef struct {
    const char *output;
    int force, native, python_allocators, follow_fork, quiet;
    const char *python;
    unsigned rss_interval;
    int aggregate;
    unsigned checkpoint_ms; /* 0: the tracer's default */
    int report_top;   /* 0: no report */
    const char *module, *code; /* -m / -c */
    char **rest;      /* program (or script) and its arguments */
    int nrest;
    int python_mode;  /* -m, -c or SCRIPT.py */
} run_opts_t;

static const char run_usage[] =
    "usage: memtrace run [OPTIONS] -m MODULE [ARGS...]\n"
    "       memtrace run [OPTIONS] -c CODE [ARGS...]\n"
    "       memtrace run [OPTIONS] SCRIPT.py [ARGS...]\n"
    "       memtrace run [OPTIONS] -- PROGRAM [ARGS...]\n"
    "\n"
    "Runs the program with every allocation recorded into a capture file.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE          capture path (default memtrace-<name>.<pid>.bin)\n"
    "  -f, --force                overwrite an existing capture\n"
    "      --native               record native frames too (always on for\n"
    "                             native programs)\n"
    "      --trace-python-allocators  also record PyMem/PyObject allocations\n"
    "      --follow-fork          trace child processes too (fork, multiprocessing,\n"
    "                             subprocess, exec, posix_spawn), each into\n"
    "                             FILE.<pid>; waits for the last of them\n"
    "      --python PATH          interpreter for -m, -c and scripts\n"
    "                             (default: python3 on PATH)\n"
    "      --rss-interval MS      RSS sampling interval (default 10)\n"
    "      --aggregate            keep per-stack totals in the process instead\n"
    "                             of recording every event: a small capture,\n"
    "                             checkpointed so that a killed program still\n"
    "                             leaves one; reports that need the events\n"
    "                             (--temporary-allocation-threshold other\n"
    "                             than 1) refuse it\n"
    "      --checkpoint-interval MS  with --aggregate: how often totals are\n"
    "                             written (default 5000)\n"
    "      --report[=N]           print the top-N report (default 10) to stderr\n"
    "                             when the program ends\n"
    "  -q, --quiet                no messages of memtrace's own\n"
    "  -h, --help                 this help\n"
    "\n"
    "memtrace run exits with the program's exit status (128+N when it dies of\n"
    "signal N).\n";

static int parse_run(int argc, char **argv, run_opts_t *o)
{
    enum { O_NATIVE = 256, O_PYALLOC, O_FOLLOW, O_PYTHON, O_RSS, O_REPORT,
           O_AGGREGATE, O_CHECKPOINT };
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},
        {"native", no_argument, 0, O_NATIVE},
        {"trace-python-allocators", no_argument, 0, O_PYALLOC},
        {"follow-fork", no_argument, 0, O_FOLLOW},
        {"python", required_argument, 0, O_PYTHON},
        {"rss-interval", required_argument, 0, O_RSS},
        {"report", optional_argument, 0, O_REPORT},
        {"aggregate", no_argument, 0, O_AGGREGATE},
        {"checkpoint-interval", required_argument, 0, O_CHECKPOINT},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->rss_interval = 10;
    optind = 1;
    opterr = 0;
    int c;
    /* '+': stop at the first non-option (the program or script). */
    while ((c = getopt_long(argc, argv, "+o:fqhm:c:", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'o': o->output = optarg; break;
        case 'f': o->force = 1; break;
        case 'q': o->quiet = 1; break;
        case O_NATIVE: o->native = 1; break;
        case O_PYALLOC: o->python_allocators = 1; break;
        case O_FOLLOW: o->follow_fork = 1; break;
        case O_PYTHON: o->python = optarg; break;
        case O_RSS: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 60000) {
                fprintf(stderr, "memtrace run: --rss-interval takes milliseconds "
                                "from 1 to 60000, not '%s'\n", optarg);
                return -1;
            }
            o->rss_interval = (unsigned)v;
            break;
        }
        case O_AGGREGATE: o->aggregate = 1; break;
        case O_CHECKPOINT: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 3600000) {
                fprintf(stderr, "memtrace run: --checkpoint-interval takes "
                                "milliseconds from 1 to 3600000, not '%s'\n",
                        optarg);
                return -1;
            }
            o->checkpoint_ms = (unsigned)v;
            break;
        }
        case O_REPORT: {
            long v = optarg ? strtol(optarg, &end, 10) : 10;
            if ((optarg && *end) || v < 1 || v > 100000) {
                fprintf(stderr, "memtrace run: --report takes a count, not '%s'\n",
                        optarg);
                return -1;
            }
            o->report_top = (int)v;
            break;
        }
        case 'm': o->module = optarg; goto program;
        case 'c': o->code = optarg; goto program;
        case 'h': fputs(run_usage, stdout); return 1;
        default:
            fprintf(stderr, "memtrace run: unknown or incomplete option '%s'\n%s",
                    argv[optind - 1], run_usage);
            return -1;
        }
    }
program:
    if (o->checkpoint_ms && !o->aggregate) {
        fprintf(stderr, "memtrace run: --checkpoint-interval needs "
                        "--aggregate\n");
        return -1;
    }
    o->rest = argv + optind;
    o->nrest = argc - optind;
    if (o->module || o->code) {
        o->python_mode = 1;
        return 0;
    }
    if (o->nrest == 0) {
        fprintf(stderr, "memtrace run: nothing to run\n%s", run_usage);
        return -1;
    }
    /* `--` was consumed by getopt: PROGRAM follows. Without it, a first
     * argument ending in .py is a Python script. */
    int dashdash = optind > 1 && strcmp(argv[optind - 1], "--") == 0;
    size_t len = strlen(o->rest[0]);
    if (!dashdash && len > 3 && strcmp(o->rest[0] + len - 3, ".py") == 0)
        o->python_mode = 1;
    return 0;
}

/* Finds an executable on PATH (or returns name when it has a slash). */
static int find_on_path(const char *name, char *out, size_t cap)
{
    if (strchr(name, '/')) {
        struct stat st;
        snprintf(out, cap, "%s", name);
        if (stat(out, &st) != 0)
            return -1;
        if (!S_ISREG(st.st_mode)) {
            errno = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
            return -1;
        }
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(out, cap, "%.*s/%s", (int)n, n ? p : ".", name);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        p += n + (colon ? 1 : 0);
    }
    return -1;
}

/* 1 if the file is an ELF executable without an interpreter (statically
 * linked: nothing can be preloaded into it), 0 otherwise. */
static int is_static_elf(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    Elf64_Ehdr eh;
    int result = 0;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh &&
        memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
        result = 1;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) !=
                (ssize_t)sizeof ph)
                break;
            if (ph.p_type == PT_INTERP)
                result = 0;
        }
    }
    close(fd);
    return result;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Reads the first word of a pyenv version file into out. */
static int read_version_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int ok = fscanf(f, "%255s", out) == 1 && strlen(out) < cap;
    fclose(f);
    return ok ? 0 : -1;
}

/* pyenv's shims are shell scripts that pick a version and exec it; doing
 * that choice here saves running the shim (and an interpreter) once more:
 * PYENV_VERSION, else .python-version from the working directory up, else
 * $PYENV_ROOT/version. Returns 0 with the interpreter in out. */
static int resolve_pyenv_shim(const char *shim, char *out, size_t cap)
{
    const char *tail = strstr(shim, "/shims/");
    if (!tail)
        return -1;
    char root[PATH_MAX], version[256] = "", dir[PATH_MAX], probe[PATH_MAX + 32];
    snprintf(root, sizeof root, "%.*s", (int)(tail - shim), shim);
    const char *env = getenv("PYENV_VERSION");
    if (env && env[0]) {
        snprintf(version, sizeof version, "%.*s", (int)strcspn(env, ":"), env);
    } else if (getcwd(dir, sizeof dir)) {
        for (;;) {
            snprintf(probe, sizeof probe, "%s/.python-version", dir);
            if (read_version_file(probe, version, sizeof version) == 0)
                break;
            char *slash = strrchr(dir, '/');
            if (!slash || slash == dir)
                break;
            *slash = 0;
        }
        if (!version[0]) {
            snprintf(probe, sizeof probe, "%s/version", root);
            read_version_file(probe, version, sizeof version);
        }
    }
    if (!version[0] || strcmp(version, "system") == 0)
        return -1;
    if ((size_t)snprintf(out, cap, "%s/versions/%s/bin/%s", root, version,
                         base_name(shim)) >= cap)
        return -1;
    return access(out, X_OK) == 0 ? 0 : -1;
}

/* The real interpreter behind a wrapper script (pyenv's python3 is a shell
 * script that execs the interpreter), so the interpreter is traced and not
 * the shim. pyenv's choice is made here when it can be; other wrappers are
 * asked for sys.executable. ELF interpreters pay nothing. */
static void resolve_python(const char *found, char *out, size_t cap)
{
    snprintf(out, cap, "%s", found);
    char magic[2] = {0};
    int fd = open(found, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, magic, 2);
    close(fd);
    if (n != 2 || magic[0] != '#' || magic[1] != '!')
        return;
    if (resolve_pyenv_shim(found, out, cap) == 0)
        return;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import sys; print(sys.executable)'", found);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    char line[PATH_MAX];
    if (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '/' && access(line, X_OK) == 0)
            snprintf(out, cap, "%s", line);
    }
    pclose(p);
}

/* The preload library: beside the memtrace binary (build tree), or in
 * ../lib/memtrace/ (installed). */
static int find_preload(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    if ((size_t)snprintf(out, cap, "%s/%s", self, MT_PRELOAD_NAME) < cap &&
        access(out, R_OK) == 0)
        return 0;
    if ((size_t)snprintf(out, cap, "%s/../lib/memtrace/%s", self,
                         MT_PRELOAD_NAME) >= cap)
        return -1;
    return access(out, R_OK) == 0 ? 0 : -1;
}

/* Creates the capture file empty with mode 0600, refusing to follow a
 * symlink or to overwrite without --force. */
static int create_capture(const char *path, int force)
{
    if (force) {
        struct stat st;
        if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
            unlink(path); /* a symlink is removed, never followed */
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            fprintf(stderr, "memtrace run: %s exists; use -f to overwrite it\n", path);
        else
            fprintf(stderr, "memtrace run: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* Appends one block holding an EXIT memory sample (docs/FORMAT.md, SMAPS)
 * with the program's peak RSS as the kernel reported it when the program
 * exited. The tracer's own getrusage at the end misses what the process
 * touched after it (the last block's buffers, later destructors, the exit
 * itself); this number is exactly /usr/bin/time -v's. Not done after a
 * SIGKILL: the file may end inside a block, and the reader stops there. */
static void append_exit_sample(const char *path, uint64_t maxrss)
{
    uint8_t rec[4 * MT_VARINT_MAX], *p = rec;
    p = mt__put_varint(p, 0); /* seq: after every event */
    p = mt__put_varint(p, 0); /* ns: unknown here */
    p = mt__put_varint(p, MT_SMAPS_EXIT);
    p = mt__put_varint(p, MT_SMAPS_MAXRSS);
    p = mt__put_varint(p, maxrss);
    size_t rlen = (size_t)(p - rec);
    uint8_t def[2 * MT_VARINT_MAX + sizeof rec], raw[3 * MT_VARINT_MAX + sizeof def];
    uint8_t *d = mt__put_def_header(def, MT_DEF_SMAPS, rlen);
    memcpy(d, rec, rlen);
    size_t dlen = (size_t)(d + rlen - def);
    uint8_t *r = mt__put_section_header(raw, MT_SEC_DEFS, dlen);
    memcpy(r, def, dlen);
    size_t raw_len = (size_t)(r + dlen - raw);
    size_t cap = mt__block_bound(raw_len);
    uint8_t *out = malloc(cap);
    long n = out ? mt__block_compress(raw, raw_len, out, cap, NULL) : -1;
    if (n <= 0) {
        free(out);
        return;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        free(out);
        return;
    }
    /* Past a file-size limit (the program's, inherited from us), write
     * fails with EFBIG instead of killing memtrace run with SIGXFSZ. */
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    off_t before = lseek(fd, 0, SEEK_END);
    ssize_t w = write(fd, out, (size_t)n);
    if (w != n && before >= 0) {
        /* A cut block would read as a truncated capture. */
        int rc = ftruncate(fd, before);
        (void)rc;
    }
    signal(SIGXFSZ, old);
    close(fd);
    free(out);
}

/* --report: the same text as `memtrace report FILE --top N`, on stderr.
 * Runs this very binary, so the output is exactly that command's. */
static void print_report(const char *capture, int top)
{
    char n[16];
    snprintf(n, sizeof n, "%d", top);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl("/proc/self/exe", "memtrace", "report", capture, "--top", n,
              (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static pid_t child_pid;

static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill(child_pid, sig);
}

static void set_child_env(const run_opts_t *o, const char *preload, const char *out)
{
    char buf[PATH_MAX * 2];
    const char *orig = getenv("LD_PRELOAD");
    if (orig && orig[0]) {
        setenv("MEMTRACE_LD_PRELOAD", orig, 1);
        snprintf(buf, sizeof buf, "%s:%s", preload, orig);
        setenv("LD_PRELOAD", buf, 1);
    } else {
        unsetenv("MEMTRACE_LD_PRELOAD");
        setenv("LD_PRELOAD", preload, 1);
    }
    setenv("MEMTRACE_OUTPUT", out, 1);
    snprintf(buf, sizeof buf, "%d", (int)getpid());
    setenv("MEMTRACE_ROOT_PID", buf, 1);
    snprintf(buf, sizeof buf, "%u", o->rss_interval);
    setenv("MEMTRACE_RSS_INTERVAL", buf, 1);
    setenv("MEMTRACE_FOLLOW_FORK", o->follow_fork ? "1" : "0", 1);
    setenv("MEMTRACE_QUIET", o->quiet ? "1" : "0", 1);
    setenv("MEMTRACE_FORCE", o->force ? "1" : "0", 1);
    setenv("MEMTRACE_AGGREGATE", o->aggregate ? "1" : "0", 1);
    if (o->checkpoint_ms) {
        snprintf(buf, sizeof buf, "%u", o->checkpoint_ms);
        setenv("MEMTRACE_CHECKPOINT_MS", buf, 1);
    } else {
        unsetenv("MEMTRACE_CHECKPOINT_MS");
    }
}

/* The command as typed, for the capture's header: the interpreter really
 * runs memtrace's launcher, which users should not see there. Arguments
 * are separated by \x1f (the environment cannot hold NULs). */
static void set_argv_env(const run_opts_t *o, const char *python)
{
    size_t len = 1;
    for (int i = 0; i < o->nrest; i++)
        len += strlen(o->rest[i]) + 1;
    len += (python ? strlen(python) : 0) + 4 +
           strlen(o->module ? o->module : o->code ? o->code : "") + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return;
    if (o->python_mode) {
        p += sprintf(p, "%s\x1f", python);
        if (o->module)
            p += sprintf(p, "-m\x1f%s\x1f", o->module);
        else if (o->code)
            p += sprintf(p, "-c\x1f%s\x1f", o->code);
    }
    for (int i = 0; i < o->nrest; i++)
        p += sprintf(p, "%s\x1f", o->rest[i]);
    if (p > s)
        p[-1] = 0;
    else
        *p = 0;
    setenv("MEMTRACE_ARGV", s, 1);
    free(s);
}

/* Builds the child's argv: the program as given, or for Python the
 * interpreter running memtrace's launcher, which attaches the frame walker
 * and then runs the module, code or script exactly as `python3 -m/-c/
 * SCRIPT` would (python/memtrace/_launch.py). */
static char **child_argv(const run_opts_t *o, const char *python)
{
    char **av = calloc((size_t)o->nrest + 6, sizeof *av);
    if (!av)
        return NULL;
    int k = 0;
    if (o->python_mode) {
        av[k++] = (char *)python;
        av[k++] = "-m";
        av[k++] = "memtrace._launch";
        if (o->module) {
            av[k++] = "--module";
            av[k++] = (char *)o->module;
        } else if (o->code) {
            av[k++] = "--code";
            av[k++] = (char *)o->code;
        } else {
            av[k++] = "--script";
        }
    }
    for (int i = 0; i < o->nrest; i++)
        av[k++] = o->rest[i];
    return av;
}

/* The Python package (memtrace/ with the extension for every interpreter
 * version it was built for): beside the binary in the build tree, or in
 * ../lib/memtrace/python when installed. */
static int find_python_package(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    const char *tails[] = {"/python", "/../lib/memtrace/python"};
    for (size_t i = 0; i < 2; i++) {
        char probe[PATH_MAX + 64];
        if ((size_t)snprintf(out, cap, "%s%s", self, tails[i]) >= cap)
            continue;
        snprintf(probe, sizeof probe, "%s/memtrace/_launch.py", out);
        if (access(probe, R_OK) == 0)
            return 0;
    }
    return -1;
}

/* The flags of memtrace's Python side (the launcher, the start-up hook). */
static void set_python_flags(const run_opts_t *o)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s%s%s", o->native ? "native," : "",
             o->python_allocators ? "pyalloc," : "", o->quiet ? "quiet," : "");
    setenv("MEMTRACE_PY_FLAGS", buf, 1);
}

/* --follow-fork: the Python programs the program starts get memtrace's
 * start-up hook (python/memtrace/_startup/sitecustomize.py) through the
 * tracer, which hands it to them on PYTHONPATH (tracer/spawn.c). The
 * tracer drops these variables from the program's own environment. */
static void set_follow_env(const run_opts_t *o, const char *pkg)
{
    char hook[PATH_MAX + 32];
    if (pkg[0] && (size_t)snprintf(hook, sizeof hook, "%s/memtrace/_startup", pkg) <
                      sizeof hook)
        setenv("MEMTRACE_PY_HOOK", hook, 1);
    if (!o->python_mode)
        set_python_flags(o); /* for the children; the root is not Python */
}

/* --follow-fork: after the program, its descendants still running (a
 * multiprocessing forkserver or resource tracker ends just after it) are
 * waited for, so that every capture is complete when memtrace run returns.
 * memtrace run is their subreaper: orphans become its children. */
static void wait_descendants(int quiet)
{
    int said = 0;
    for (int waited_ms = 0;;) {
        int status;
        pid_t pid = waitpid(-1, &status, said ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            return; /* ECHILD: none left */
        if (pid > 0)
            continue;
        if (waited_ms >= 2000 && !said) {
            if (!quiet)
                fprintf(stderr, "memtrace: waiting for the program's child "
                                "processes to exit (their captures are not "
                                "complete until then)\n");
            said = 1;
            continue;
        }
        usleep(10000);
        waited_ms += 10;
    }
}

/* Python mode: the package goes first on PYTHONPATH for the launcher,
 * which puts PYTHONPATH back as it was (MEMTRACE_PY_PATH_ORIG, unset when
 * there was none) and reads its flags from MEMTRACE_PY_FLAGS. */
static void set_python_env(const run_opts_t *o, const char *pkg)
{
    char buf[PATH_MAX * 2];
    const char *orig = getenv("PYTHONPATH");
    if (orig) {
        setenv("MEMTRACE_PY_PATH_ORIG", orig, 1);
        snprintf(buf, sizeof buf, "%s:%s", pkg, orig);
        setenv("PYTHONPATH", buf, 1);
    } else {
        unsetenv("MEMTRACE_PY_PATH_ORIG");
        setenv("PYTHONPATH", pkg, 1);
    }
    set_python_flags(o);
}

/* Waits for the program; *maxrss gets its peak RSS in bytes (ru_maxrss
 * of wait4, what /usr/bin/time -v reports), or 0. *killed: it died of
 * SIGKILL. */
static int wait_status(pid_t pid, uint64_t *maxrss, int *killed)
{
    int status;
    struct rusage ru;
    *maxrss = 0;
    *killed = 0;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR)
            return 1;
    }
    *maxrss = (uint64_t)ru.ru_maxrss * 1024;
    *killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

int mt__cmd_run(int argc, char **argv)
{
    run_opts_t o;
    int rc = parse_run(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;

    char preload[PATH_MAX];
    if (find_preload(preload, sizeof preload) != 0) {
        fprintf(stderr, "memtrace run: cannot find %s next to the memtrace "
                        "binary or in ../lib/memtrace\n", MT_PRELOAD_NAME);
        return 2;
    }

    /* What runs: the program, or the Python interpreter. */
    char prog[PATH_MAX], python[PATH_MAX] = "";
    if (o.python_mode) {
        const char *want = o.python ? o.python : "python3";
        if (find_on_path(want, prog, sizeof prog) != 0) {
            fprintf(stderr, "memtrace run: cannot find the Python interpreter "
                            "'%s' (use --python PATH)\n", want);
            return 2;
        }
        resolve_python(prog, python, sizeof python);
        snprintf(prog, sizeof prog, "%s", python);
    } else if (find_on_path(o.rest[0], prog, sizeof prog) != 0) {
        /* As a shell: 127 when there is no such program, 126 when there
         * is one that cannot be run; the reason in words. */
        int err = strchr(o.rest[0], '/') ? errno : ENOENT;
        fprintf(stderr, "memtrace run: cannot run '%s': %s\n", o.rest[0],
                !strchr(o.rest[0], '/') ? "command not found on PATH"
                : err == ENOENT || err == ENOTDIR ? "no such file"
                : err == EISDIR         ? "it is a directory"
                                        : "not an executable file");
        return err == ENOENT || err == ENOTDIR ? 127 : 126;
    }
    if (is_static_elf(prog)) {
        fprintf(stderr, "memtrace run: %s is statically linked; memtrace "
                        "traces dynamically linked programs only\n", prog);
        return 2;
    }

    char pkg[PATH_MAX] = "";
    if ((o.python_mode || o.follow_fork) && find_python_package(pkg, sizeof pkg) != 0) {
        if (o.python_mode) {
            fprintf(stderr, "memtrace run: cannot find memtrace's Python package "
                            "next to the memtrace binary\n");
            return 2;
        }
        pkg[0] = 0; /* Python children get native stacks only */
    }

    /* The capture path, absolute (the program may chdir). */
    char out[PATH_MAX], cwd[PATH_MAX];
    const char *name = o.module ? o.module : o.code ? "python" : base_name(o.rest[0]);
    if (o.output)
        snprintf(out, sizeof out, "%s", o.output);
    else
        snprintf(out, sizeof out, "memtrace-%s.%d.bin", name, (int)getpid());
    if (out[0] != '/' && getcwd(cwd, sizeof cwd)) {
        char tmp[PATH_MAX];
        if ((size_t)snprintf(tmp, sizeof tmp, "%s/%s", cwd, out) >= sizeof tmp) {
            fprintf(stderr, "memtrace run: capture path too long\n");
            return 2;
        }
        memcpy(out, tmp, sizeof out);
    }
    if (create_capture(out, o.force) != 0)
        return 2;

    char **av = child_argv(&o, python);
    int errpipe[2];
    if (!av || pipe2(errpipe, O_CLOEXEC) != 0) {
        perror("memtrace run");
        free(av);
        return 2;
    }
    if (o.follow_fork)
        prctl(PR_SET_CHILD_SUBREAPER, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("memtrace run: fork");
        free(av);
        return 2;
    }
    if (pid == 0) {
        close(errpipe[0]);
        set_child_env(&o, preload, out);
        set_argv_env(&o, python);
        if (o.python_mode)
            set_python_env(&o, pkg);
        if (o.follow_fork)
            set_follow_env(&o, pkg);
        execv(prog, av);
        int err = errno;
        ssize_t w = write(errpipe[1], &err, sizeof err);
        (void)w;
        _exit(127);
    }
    close(errpipe[1]);
    free(av);
    child_pid = pid;
    /* The terminal sends ^C to the whole process group: the program gets
     * it; memtrace waits for the program to finish with it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTERM, forward_signal);
    signal(SIGHUP, forward_signal);
    int exec_err = 0;
    ssize_t got = read(errpipe[0], &exec_err, sizeof exec_err);
    close(errpipe[0]);
    uint64_t maxrss;
    int killed;
    int status = wait_status(pid, &maxrss, &killed);
    if (o.follow_fork)
        wait_descendants(o.quiet);
    if (got == (ssize_t)sizeof exec_err) {
        fprintf(stderr, "memtrace run: cannot run %s: %s\n", prog, strerror(exec_err));
        unlink(out);
        return 127;
    }

    struct stat st;
    if (stat(out, &st) != 0) {
        fprintf(stderr, "memtrace run: the capture %s no longer exists (it "
                        "or its directory was removed while recording)\n", out);
        return status;
    }
    if (st.st_size == 0) {
        fprintf(stderr, "memtrace run: no capture was written to %s (the "
                        "program was not traced: setuid, or it cleared "
                        "LD_PRELOAD?)\n", out);
        unlink(out);
        return status;
    }
    if (maxrss && !killed)
        append_exit_sample(out, maxrss);
    if (!o.quiet)
        fprintf(stderr, "memtrace: wrote %s (%.1f KiB); see: memtrace summary %s\n",
                out, st.st_size / 1024.0, out);
    if (o.report_top)
        print_report(out, o.report_top);
    return status;
}
