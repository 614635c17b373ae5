/* frames.h: everything memtrace relies on that differs between CPython
 * versions, in one place: where a thread's frames are, how they link, which
 * of them to show, and where each one is in its bytecode. One section per
 * version range, each saying what changed. Included by walker.c only, and
 * compiled once per interpreter against that interpreter's own headers.
 *
 * Everything here is called from inside allocation hooks, on any thread,
 * with or without the GIL: it only reads memory, never allocates, never
 * locks, never raises. */
#ifndef MT_PY_FRAMES_H
#define MT_PY_FRAMES_H

#include <patchlevel.h> /* PY_VERSION_HEX, before choosing how to include Python.h */

#if PY_VERSION_HEX < 0x03080000 || PY_VERSION_HEX >= 0x030E0000
#error "memtrace's frame walker supports CPython 3.8 to 3.13"
#endif

#if PY_VERSION_HEX >= 0x030B0000
/* 3.11+: the frame structure (_PyInterpreterFrame) lives in the internal
 * headers, which refuse to compile without Py_BUILD_CORE. Only this
 * translation unit sees them; the module's binding uses the public API. */
#define Py_BUILD_CORE 1
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#else
#include <frameobject.h> /* 3.8-3.10: PyFrameObject's fields, not in Python.h */
#endif

#include <stdint.h>

/* ---- Thread state -----------------------------------------------------------
 * All versions: the calling thread's own state comes from the GILState
 * thread-local key (PyGILState_GetThisThreadState: a pthread_getspecific,
 * no allocation, no lock). It is right whether or not the thread holds the
 * GIL, which _PyThreadState_UncheckedGet() is not: on 3.8-3.11 that returns
 * the state of whichever thread holds the GIL, and on 3.12+ it returns NULL
 * while the calling thread has released it (e.g. in a file read). The
 * frames of the calling thread cannot change under us: only the thread
 * itself pushes and pops them, and it is busy in the allocator.
 * (Threads running a subinterpreter show their main-interpreter frames.) */
static inline PyThreadState *mt_py_thread_state(void)
{
    return PyGILState_GetThisThreadState();
}

/* 1 when the calling thread, whose state is mine, holds the GIL.
 * 3.8-3.11: the "current" thread state is the GIL holder's.
 * 3.12: it is a thread-local, set while the thread holds the GIL.
 * 3.13: it is the thread's attached state (PyThreadState_GetUnchecked;
 *       the old name is kept as a macro).
 * So the test is the same everywhere. PyGILState_Check() is not used: it
 * answers 1 without looking when its check is disabled (after a
 * subinterpreter was created) or before the key exists. */
static inline int mt_py_holds_gil(PyThreadState *mine)
{
#if PY_VERSION_HEX >= 0x030D0000
    return mine != NULL && mine == PyThreadState_GetUnchecked();
#else
    return mine != NULL && mine == _PyThreadState_UncheckedGet();
#endif
}

/* ---- Frames -------------------------------------------------------------- */

#if PY_VERSION_HEX < 0x030B0000
/* 3.8-3.10: every Python frame is a PyFrameObject linked by f_back, the
 * innermost in tstate->frame, and each runs in its own C call of the eval
 * loop (so every frame is an entry frame). */
typedef PyFrameObject mt_py_frame_t;

static inline mt_py_frame_t *mt_py_frames_top(PyThreadState *ts)
{
    return ts->frame;
}

static inline mt_py_frame_t *mt_py_frames_back(mt_py_frame_t *f)
{
    return f->f_back;
}

/* The frame's code object, or NULL when the frame is not shown. */
static inline PyCodeObject *mt_py_frame_code(mt_py_frame_t *f)
{
    return f->f_code;
}

/* Byte offset of the executing instruction. f_lasti is -1 before the first
 * instruction (then 0). 3.8/3.9: f_lasti is already a byte offset.
 * 3.10: it counts code units (PyFrame_GetLineNumber multiplies by 2). */
static inline int32_t mt_py_frame_offset(mt_py_frame_t *f, PyCodeObject *co)
{
    (void)co;
    if (f->f_lasti < 0)
        return 0;
#if PY_VERSION_HEX >= 0x030A0000
    return (int32_t)f->f_lasti * (int32_t)sizeof(_Py_CODEUNIT);
#else
    return (int32_t)f->f_lasti;
#endif
}

static inline int mt_py_frame_is_entry(mt_py_frame_t *f)
{
    (void)f;
    return 1;
}

#else /* 3.11+ */
/* 3.11+: frames are _PyInterpreterFrame records on the thread's own data
 * stack (or inside generators), linked by ->previous. A Python-to-Python
 * call no longer makes a C call: one run of the eval loop executes many
 * frames, starting at an entry frame. */
typedef _PyInterpreterFrame mt_py_frame_t;

static inline mt_py_frame_t *mt_py_frames_top(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13: the _PyCFrame chain is gone; the thread state points at the
     * innermost frame directly. */
    return ts->current_frame;
#else
    /* 3.11/3.12: through the C frame of the innermost eval-loop call. */
    return ts->cframe ? ts->cframe->current_frame : NULL;
#endif
}

static inline mt_py_frame_t *mt_py_frames_back(mt_py_frame_t *f)
{
    return f->previous;
}

/* The frame's code object, or NULL when the frame is not shown:
 * 3.12+: the eval loop pushes a shim frame owned by the C stack
 *        (FRAME_OWNED_BY_CSTACK) below each entry frame; 3.12's shim runs
 *        a trampoline code object, 3.13's has f_executable = None.
 * All:   "incomplete" frames, still being set up (before RESUME), are
 *        skipped as CPython's own tracebacks and sys._getframe() do. */
static inline PyCodeObject *mt_py_frame_code(mt_py_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (f->owner == FRAME_OWNED_BY_CSTACK)
        return NULL;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* f_executable is a code object or None here; PyCode_Check is a type
     * comparison, safe on any live object. */
    if (f->f_executable == NULL || !PyCode_Check(f->f_executable))
        return NULL;
#endif
    if (_PyFrame_IsIncomplete(f))
        return NULL;
#if PY_VERSION_HEX >= 0x030D0000
    return (PyCodeObject *)f->f_executable;
#else
    return f->f_code;
#endif
}

/* Byte offset of the executing instruction.
 * 3.11/3.12: prev_instr points at the instruction being executed (or the
 *            code unit just before the next one).
 * 3.13:      instr_ptr points at the instruction being executed.
 * Either way it is what _PyInterpreterFrame_LASTI counts, in code units. */
static inline int32_t mt_py_frame_offset(mt_py_frame_t *f, PyCodeObject *co)
{
#if PY_VERSION_HEX >= 0x030D0000
    const _Py_CODEUNIT *at = f->instr_ptr;
#else
    const _Py_CODEUNIT *at = f->prev_instr;
#endif
    ptrdiff_t units = at - _PyCode_CODE(co);
    if (units < 0)
        return 0;
    return (int32_t)(units * (ptrdiff_t)sizeof(_Py_CODEUNIT));
}

/* 1 for the outermost frame run by one C call of the eval loop.
 * 3.11:  the frame says so itself (is_entry).
 * 3.12+: is_entry is gone; the frame sits right inside a C-stack shim. */
static inline int mt_py_frame_is_entry(mt_py_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return f->previous == NULL || f->previous->owner == FRAME_OWNED_BY_CSTACK;
#else
    return f->is_entry;
#endif
}
#endif /* 3.11+ */

/* ---- Code objects ---------------------------------------------------------- */

/* The function's name: 3.11+ has the qualified name (Class.method,
 * outer.<locals>.inner); 3.8-3.10 only the bare name. */
static inline PyObject *mt_py_code_name(PyCodeObject *co)
{
#if PY_VERSION_HEX >= 0x030B0000
    return co->co_qualname;
#else
    return co->co_name;
#endif
}

/* 1 when a str's characters can be read in place. 3.8-3.11 still have
 * "legacy" strings that are not ready until PyUnicode_READY() (which
 * allocates) runs; code objects' names are always ready, but check.
 * 3.12 removed legacy strings. */
static inline int mt_py_str_ready(PyObject *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    (void)s;
    return 1;
#else
    return PyUnicode_IS_READY(s);
#endif
}

/* The line executing at a byte offset. PyCode_Addr2Line only computes:
 * 3.8/3.9 walk co_lnotab, 3.10 co_linetable, 3.11+ the location table
 * (3.11 first consults _co_linearray when a tracer made one); none of them
 * allocates, locks or raises. A negative offset gives co_firstlineno. */
static inline int mt_py_code_line(PyCodeObject *co, int32_t offset)
{
    return PyCode_Addr2Line(co, (int)offset);
}

/* The eval loop's C function, whose return addresses mark where native
 * frames ran Python frames (the same symbol, with different arguments, in
 * every supported version). */
#define MT_PY_EVAL_FUNCTION ((const void *)&_PyEval_EvalFrameDefault)

#endif
