/* _memtrace.c: the CPython module memtrace._memtrace, a thin binding
 * between Python and the tracer (libmemtrace_preload.so). It attaches the
 * frame walker (walker.c) to a tracer that `memtrace run` preloaded, or
 * loads the tracer and starts it for memtrace.Tracker, and wraps the PyMem
 * allocators for --trace-python-allocators. The tracer's functions are
 * looked up at run time (include/memtrace/tracer.h): nothing of memtrace
 * is linked in. All functions here run with the GIL held, which also
 * protects this file's state. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walker.h"

/* The tracer's API, resolved once (GIL). */
static struct {
    int (*attach)(const mt_python_ops_t *ops, unsigned flags);
    int (*active)(void);
    int (*pymem_wrap)(int domain, const mt_pymem_allocator_t *orig,
                      mt_pymem_allocator_t *wrapped);
    int (*pyarena_wrap)(const mt_pyarena_allocator_t *orig, uint64_t existing,
                        mt_pyarena_allocator_t *wrapped);
    int (*start)(const char *path, const mt_tracer_opts_t *opts);
    int (*stop)(void);
    /* Stages: looked up at import when the tracer is preloaded, else when a
     * Tracker loads it; NULL (stages do nothing) until then. */
    int (*stage_enter)(const char *name);
    int (*stage_leave)(const char *name);
} tracer;

/* The walker's callbacks; filled at import, then read by the tracer from
 * any thread (never written again). */
static mt_python_ops_t ops;

/* Tracker sessions: start() and stop() release the GIL while the tracer
 * starts or stops, so a session is BUSY meanwhile. GIL. */
enum { SESSION_IDLE, SESSION_BUSY, SESSION_TRACING };
static int session;

/* The PyMem allocators replaced by the tracer's wrappers (and the
 * wrappers), to put back when a Tracker stops. GIL. */
static const PyMemAllocatorDomain pymem_domains[3] = {
    PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
static const int pymem_mt_domains[3] = {MT_PYMEM_RAW, MT_PYMEM_MEM, MT_PYMEM_OBJ};
static PyMemAllocatorEx pymem_saved[3], pymem_ours[3];
static int pymem_wrapped;
/* The same for pymalloc's arena allocator (counted, for memtrace rss). */
static PyObjectArenaAllocator arena_saved, arena_ours;
static int arena_wrapped;

/* Finds the tracer's functions: in the process already (preloaded by
 * `memtrace run`), else by loading preload (when not NULL). Returns 0, or
 * -1 with an exception set. */
static int resolve_tracer(const char *preload)
{
    if (tracer.attach)
        return 0;
    void *h = RTLD_DEFAULT;
    if (!dlsym(h, "mt_tracer_python_attach")) {
        if (!preload) {
            PyErr_SetString(PyExc_RuntimeError,
                            "memtrace's tracer is not loaded in this process "
                            "(run the program with `memtrace run`, or use "
                            "memtrace.Tracker)");
            return -1;
        }
        /* RTLD_LOCAL: the library's malloc must not take over symbol
         * resolution; mt_tracer_start() redirects the calls itself. Never
         * closed: the hooks may run until the process ends. */
        h = dlopen(preload, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *err = dlerror();
            PyErr_Format(PyExc_RuntimeError, "cannot load memtrace's tracer: %s",
                         err ? err : preload);
            return -1;
        }
    }
    tracer.active = (int (*)(void))dlsym(h, "mt_tracer_active");
    tracer.pymem_wrap = (int (*)(int, const mt_pymem_allocator_t *,
                                 mt_pymem_allocator_t *))dlsym(h, "mt_tracer_pymem_wrap");
    tracer.pyarena_wrap = (int (*)(const mt_pyarena_allocator_t *, uint64_t,
                                   mt_pyarena_allocator_t *))dlsym(h, "mt_tracer_pyarena_wrap");
    tracer.start = (int (*)(const char *, const mt_tracer_opts_t *))dlsym(h, "mt_tracer_start");
    tracer.stop = (int (*)(void))dlsym(h, "mt_tracer_stop");
    tracer.attach = (int (*)(const mt_python_ops_t *, unsigned))dlsym(
        h, "mt_tracer_python_attach");
    tracer.stage_enter = (int (*)(const char *))dlsym(h, "mt_tracer_stage_enter");
    tracer.stage_leave = (int (*)(const char *))dlsym(h, "mt_tracer_stage_leave");
    if (!tracer.attach || !tracer.active) {
        tracer.attach = NULL;
        PyErr_SetString(PyExc_RuntimeError,
                        "the loaded memtrace tracer lacks mt_tracer_python_attach");
        return -1;
    }
    return 0;
}

static int same_allocator(const PyMemAllocatorEx *a, const PyMemAllocatorEx *b)
{
    return a->ctx == b->ctx && a->malloc == b->malloc && a->calloc == b->calloc &&
           a->realloc == b->realloc && a->free == b->free;
}

/* A number printed by CPython's statistics after '=', with commas. */
static uint64_t stats_number(const char *eq)
{
    uint64_t v = 0;
    for (const char *p = eq + 1; *p && *p != '\n'; p++)
        if (*p >= '0' && *p <= '9')
            v = v * 10 + (uint64_t)(*p - '0');
    return v;
}

/* The part of pymalloc's arenas that holds no object now, from the
 * statistics CPython prints ("N arenas * S bytes/arena" minus "# bytes in
 * allocated blocks"): the objects in them were allocated before tracing
 * started and are not in the traced heap, so their blocks must not count
 * as free space. 0 when the private function is gone; -1 when pymalloc is
 * off (PYTHONMALLOC=malloc): then there are no arenas to count. */
static int64_t existing_arena_bytes(void)
{
    int (*stats)(FILE *) = (int (*)(FILE *))dlsym(RTLD_DEFAULT,
                                                  "_PyObject_DebugMallocStats");
    char *text = NULL;
    size_t len = 0;
    FILE *f = stats ? open_memstream(&text, &len) : NULL;
    if (!f)
        return 0;
    int pymalloc = stats(f);
    fclose(f);
    if (!pymalloc) {
        free(text);
        return -1;
    }
    uint64_t arenas = 0, used = 0;
    for (char *line = text; line && *line;) {
        unsigned long long n, size;
        char *eq = strchr(line, '=');
        if (sscanf(line, "%llu arenas * %llu bytes/arena", &n, &size) == 2)
            arenas = n * size;
        else if (eq && strncmp(line, "# bytes in allocated blocks", 27) == 0)
            used = stats_number(eq);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    free(text);
    return arenas > used ? (int64_t)(arenas - used) : 0;
}

/* Counts pymalloc's arenas (for `memtrace rss`: with the PyMem domains
 * traced, the arenas themselves are not). Best effort: a tracer without
 * the function, or a failure, only leaves them uncounted. */
static void arena_wrap(void)
{
    if (arena_wrapped || !tracer.pyarena_wrap)
        return;
    int64_t existing = existing_arena_bytes();
    if (existing < 0)
        return;
    PyObject_GetArenaAllocator(&arena_saved);
    mt_pyarena_allocator_t orig = {arena_saved.ctx, arena_saved.alloc,
                                   arena_saved.free}, wrapped;
    if (tracer.pyarena_wrap(&orig, (uint64_t)existing, &wrapped) != 0)
        return;
    arena_ours.ctx = wrapped.ctx;
    arena_ours.alloc = wrapped.alloc;
    arena_ours.free = wrapped.free;
    PyObject_SetArenaAllocator(&arena_ours);
    arena_wrapped = 1;
}

static void arena_unwrap(void)
{
    if (!arena_wrapped)
        return;
    PyObjectArenaAllocator now;
    PyObject_GetArenaAllocator(&now);
    if (now.ctx == arena_ours.ctx && now.alloc == arena_ours.alloc &&
        now.free == arena_ours.free)
        PyObject_SetArenaAllocator(&arena_saved);
    arena_wrapped = 0;
}

/* Puts the tracer's wrapper around each PyMem domain's allocator.
 *
 * The MEM and OBJ domains are only called with the GIL held, so switching
 * them here is safe. The RAW domain is called without the GIL: a thread
 * may read the allocator while it is being replaced and pair the new
 * function with the old context (CPython's tracemalloc switches it the
 * same way); the tracer's wrappers must cope (see the report to the
 * tracer's owner). Under `memtrace run` this happens before the program
 * starts any thread. Returns 0, or -1 with an exception set. */
static int pymem_wrap(void)
{
    if (pymem_wrapped)
        return 0;
    if (!tracer.pymem_wrap) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the loaded memtrace tracer lacks mt_tracer_pymem_wrap");
        return -1;
    }
    mt_pymem_allocator_t orig[3], wrapped[3];
    for (int i = 0; i < 3; i++) {
        PyMem_GetAllocator(pymem_domains[i], &pymem_saved[i]);
        orig[i].ctx = pymem_saved[i].ctx;
        orig[i].malloc = pymem_saved[i].malloc;
        orig[i].calloc = pymem_saved[i].calloc;
        orig[i].realloc = pymem_saved[i].realloc;
        orig[i].free = pymem_saved[i].free;
        int rc = tracer.pymem_wrap(pymem_mt_domains[i], &orig[i], &wrapped[i]);
        if (rc != 0) {
            PyErr_Format(PyExc_RuntimeError,
                         "the tracer cannot wrap PyMem domain %d (error %d)", i, rc);
            return -1;
        }
        pymem_ours[i].ctx = wrapped[i].ctx;
        pymem_ours[i].malloc = wrapped[i].malloc;
        pymem_ours[i].calloc = wrapped[i].calloc;
        pymem_ours[i].realloc = wrapped[i].realloc;
        pymem_ours[i].free = wrapped[i].free;
    }
    /* First the arenas: CPython's statistics say whether pymalloc is on by
     * looking at the OBJ domain's allocator, which is ours afterwards. */
    arena_wrap();
    for (int i = 0; i < 3; i++)
        PyMem_SetAllocator(pymem_domains[i], &pymem_ours[i]);
    pymem_wrapped = 1;
    return 0;
}

/* Puts the saved allocators back, in each domain where the wrapper is
 * still installed. Where someone wrapped it in turn (tracemalloc started
 * later), it stays: the wrapper then only forwards, and putting the
 * original back would silently drop their wrapper. */
static void pymem_unwrap(void)
{
    if (!pymem_wrapped)
        return;
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx now;
        PyMem_GetAllocator(pymem_domains[i], &now);
        if (same_allocator(&now, &pymem_ours[i]))
            PyMem_SetAllocator(pymem_domains[i], &pymem_saved[i]);
    }
    pymem_wrapped = 0;
    arena_unwrap();
}

/* Attaches the walker (and the PyMem wrappers). Returns 0, or -1 with an
 * exception set. */
static int attach_walker(int native, int pyalloc, PyObject *root)
{
    mt__py_set_root(root && root != Py_None ? root : NULL);
    int rc = tracer.attach(&ops, native ? MT_PYTHON_NATIVE : 0);
    if (rc == MT_EEXIST) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a Python frame walker is already attached to memtrace's tracer");
        return -1;
    }
    if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "memtrace's tracer refused the frame walker (error %d; "
                     "walker ABI %d)", rc, MT_PYTHON_OPS_ABI);
        return -1;
    }
    return pyalloc ? pymem_wrap() : 0;
}

PyDoc_STRVAR(attach_doc,
"attach(native=False, pyalloc=False, root=None)\n--\n\n"
"Attach the Python frame walker to the tracer `memtrace run` preloaded.\n"
"native: merge Python frames into native stacks; pyalloc: record the PyMem\n"
"and PyObject allocators too; root: a code object at which stacks stop\n"
"(the frame running it and all outer frames are left out).");

static PyObject *py_attach(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"native", "pyalloc", "root", NULL};
    int native = 0, pyalloc = 0;
    PyObject *root = NULL;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ppO:attach", names, &native, &pyalloc,
                                     &root))
        return NULL;
    if (root && root != Py_None && !PyCode_Check(root))
        return PyErr_Format(PyExc_TypeError, "root must be a code object or None");
    if (resolve_tracer(NULL) != 0)
        return NULL;
    if (root && root != Py_None)
        Py_INCREF(root); /* the walker compares against it from now on */
    if (attach_walker(native, pyalloc, root) != 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(start_doc,
"start(preload, path, native=False, pyalloc=False, follow_fork=False,\n"
"      force=False, quiet=True, rss_interval_ms=0, aggregate=False,\n"
"      checkpoint_ms=0, root=None)\n--\n\n"
"Load the tracer (preload: its path) unless present, start writing the\n"
"capture path and attach the frame walker (aggregate: per-stack totals\n"
"checkpointed every checkpoint_ms, 0: 5000). root: a code object at which\n"
"stacks stop, as in attach() (the pytest plugin passes the code that calls\n"
"each test). Raises FileExistsError when path exists and force is false,\n"
"RuntimeError when already tracing.");

/* The root code object of the running Tracker session (a strong
 * reference, dropped by stop()), or NULL. GIL. */
static PyObject *session_root;

static PyObject *py_start(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"preload", "path", "native", "pyalloc", "follow_fork",
                            "force", "quiet", "rss_interval_ms", "aggregate",
                            "checkpoint_ms", "root", NULL};
    const char *preload, *path;
    int native = 0, pyalloc = 0, follow_fork = 0, force = 0, quiet = 1;
    int aggregate = 0;
    unsigned int rss = 0, checkpoint = 0;
    PyObject *root = NULL;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|pppppIpIO:start", names, &preload,
                                     &path, &native, &pyalloc, &follow_fork, &force,
                                     &quiet, &rss, &aggregate, &checkpoint, &root))
        return NULL;
    if (root == Py_None)
        root = NULL;
    if (root && !PyCode_Check(root))
        return PyErr_Format(PyExc_TypeError, "root must be a code object or None");
    if (session != SESSION_IDLE)
        return PyErr_Format(PyExc_RuntimeError, "memtrace is already tracing this process");
    if (resolve_tracer(preload) != 0)
        return NULL;
    if (!tracer.start || !tracer.stop)
        return PyErr_Format(PyExc_RuntimeError,
                            "the loaded memtrace tracer cannot start at run time");
    if (tracer.active())
        return PyErr_Format(PyExc_RuntimeError,
                            "memtrace is already tracing this process "
                            "(started by `memtrace run`?)");
    mt_tracer_opts_t opts = {.rss_interval_ms = rss, .follow_fork = follow_fork,
                             .force = force, .quiet = quiet,
                             .aggregate = aggregate, .checkpoint_ms = checkpoint};
    int rc;
    session = SESSION_BUSY;
    Py_BEGIN_ALLOW_THREADS
    rc = tracer.start(path, &opts);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        session = SESSION_IDLE;
        if (rc == MT_EEXIST && tracer.active())
            return PyErr_Format(PyExc_RuntimeError, "memtrace is already tracing this process");
        if (rc < -4000 || rc >= 0) /* memtrace's own codes (memtrace.h) */
            return PyErr_Format(PyExc_RuntimeError, "memtrace cannot start tracing "
                                                    "(error %d)", rc);
        errno = -rc; /* FileExistsError, PermissionError... */
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    if (attach_walker(native, pyalloc, root) != 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        pymem_unwrap();
        Py_BEGIN_ALLOW_THREADS
        tracer.stop();
        Py_END_ALLOW_THREADS
        mt__py_set_root(NULL);
        session = SESSION_IDLE;
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    Py_XINCREF(root); /* the walker compares against it until stop() */
    session_root = root;
    session = SESSION_TRACING;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\n"
"Stop the tracing start() began: put the PyMem allocators back, write the\n"
"rest of the capture and close it. RuntimeError when not tracing.");

static PyObject *py_stop(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (session != SESSION_TRACING)
        return PyErr_Format(PyExc_RuntimeError, "memtrace is not tracing (no Tracker "
                                                "is running)");
    session = SESSION_BUSY;
    pymem_unwrap();
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = tracer.stop();
    Py_END_ALLOW_THREADS
    /* The walker only compares code pointers with the root, never reads
     * it, and tracing is off now: the reference can go. */
    mt__py_set_root(NULL);
    Py_CLEAR(session_root);
    session = SESSION_IDLE;
    if (rc != 0)
        return PyErr_Format(PyExc_RuntimeError, "memtrace's tracer failed to stop "
                                                "(error %d)", rc);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(finish_doc,
"finish()\n--\n\n"
"Ends the recording of a program run by `memtrace run` when the program\n"
"is done, before the interpreter's shutdown frees module globals (which\n"
"would hide every leak). Writes the rest of the capture and its trailer.\n"
"Does nothing when this process is not being traced.");

static PyObject *py_finish(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (!tracer.stop || session == SESSION_TRACING)
        Py_RETURN_NONE; /* not memtrace run's tracer, or a Tracker owns it */
    /* The PyMem wrappers stay: swapping allocators while other threads run
     * is unsafe, and with tracing off they only forward. */
    Py_BEGIN_ALLOW_THREADS
    tracer.stop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(active_doc, "active()\n--\n\n1 while this process is being traced.");

static PyObject *py_active(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (!tracer.active) {
        int (*fn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "mt_tracer_active");
        return PyBool_FromLong(fn ? fn() : 0);
    }
    return PyBool_FromLong(tracer.active());
}

PyDoc_STRVAR(stack_doc,
"_stack()\n--\n\n"
"The calling thread's stack as the tracer would see it, innermost first:\n"
"a list of (name, file, line, is_entry). For tests of the walker.");

static PyObject *py_stack(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    mt_pyframe_t frames[256];
    int n = ops.walk(frames, 256);
    PyObject *list = PyList_New(0);
    for (int i = 0; list && i < n; i++) {
        char name[256], file[1024];
        int first = 0, pin = 0;
        if (ops.describe(frames[i].code, name, sizeof name, file, sizeof file, &first,
                         &pin) != 0) {
            Py_DECREF(list);
            return PyErr_Format(PyExc_RuntimeError, "describe failed with the GIL held");
        }
        PyObject *t = Py_BuildValue("(ssii)", name, file,
                                    ops.line(frames[i].code, frames[i].offset),
                                    frames[i].is_entry);
        if (!t || PyList_Append(list, t) != 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    return list;
}

/* The stage's name as UTF-8 for the tracer, or NULL with an exception. */
static const char *stage_name(PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a stage name must be a str");
        return NULL;
    }
    return PyUnicode_AsUTF8(name); /* cached in the str object */
}

PyDoc_STRVAR(stage_enter_doc,
"stage_enter(name)\n--\n\n"
"Enters the stage name on the calling thread (memtrace.stage does it).\n"
"Returns True when the tracer recorded it, False when nothing is traced.");

static PyObject *py_stage_enter(PyObject *self, PyObject *name)
{
    (void)self;
    /* Without a tracer this is the whole cost of a stage: one test. */
    if (!tracer.stage_enter)
        Py_RETURN_FALSE;
    const char *s = stage_name(name);
    if (!s)
        return NULL;
    return PyBool_FromLong(tracer.stage_enter(s) > 0);
}

PyDoc_STRVAR(stage_leave_doc,
"stage_leave(name)\n--\n\n"
"Leaves the innermost stage of the calling thread, which should be name.\n"
"Returns True when the tracer recorded it, False when nothing is traced.");

static PyObject *py_stage_leave(PyObject *self, PyObject *name)
{
    (void)self;
    if (!tracer.stage_leave)
        Py_RETURN_FALSE;
    const char *s = stage_name(name);
    if (!s)
        return NULL;
    return PyBool_FromLong(tracer.stage_leave(s) > 0);
}

static PyMethodDef methods[] = {
    {"stage_enter", py_stage_enter, METH_O, stage_enter_doc},
    {"stage_leave", py_stage_leave, METH_O, stage_leave_doc},
    {"attach", (PyCFunction)(void (*)(void))py_attach, METH_VARARGS | METH_KEYWORDS,
     attach_doc},
    {"start", (PyCFunction)(void (*)(void))py_start, METH_VARARGS | METH_KEYWORDS,
     start_doc},
    {"stop", py_stop, METH_NOARGS, stop_doc},
    {"active", py_active, METH_NOARGS, active_doc},
    {"finish", py_finish, METH_NOARGS, finish_doc},
    {"_stack", py_stack, METH_NOARGS, stack_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrace._memtrace",
    "The binding between Python and memtrace's tracer.", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* The module's entry point, exported: the build hides every other symbol,
 * and 3.8's PyMODINIT_FUNC does not say "default visibility" itself. */
__attribute__((visibility("default"))) PyMODINIT_FUNC PyInit__memtrace(void);

PyMODINIT_FUNC PyInit__memtrace(void)
{
    mt__py_ops_init(&ops);
    /* Preloaded by `memtrace run`: stages work from the first one on. */
    tracer.stage_enter = (int (*)(const char *))dlsym(RTLD_DEFAULT, "mt_tracer_stage_enter");
    tracer.stage_leave = (int (*)(const char *))dlsym(RTLD_DEFAULT, "mt_tracer_stage_leave");
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    const void *lo = ops.eval_lo, *hi = ops.eval_hi;
    if (PyModule_AddStringConstant(m, "python_version", ops.python_version) != 0 ||
        PyModule_AddObject(m, "eval_range",
                           Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)lo,
                                         (unsigned long long)(uintptr_t)hi)) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
