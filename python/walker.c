/* walker.c: the callbacks the tracer calls at each allocation to learn the
 * calling thread's Python stack (mt_python_ops_t). They run inside malloc,
 * on any thread, with or without the GIL, so they only read: no
 * allocation, no lock, no Python call that could allocate or raise. What
 * differs between CPython versions is in frames.h. */
#include "frames.h" /* first: it decides how Python.h is included */

#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>

#include "walker.h"

/* Walks stop at this code object (the launcher's frame that runs the
 * program), or never when NULL. Written with the GIL held, read by walks on
 * any thread: an atomic pointer, relaxed (a walk racing with the change
 * may use either value). */
static _Atomic(const void *) walk_root;

/* At most this many frames are looked at per walk, shown or skipped, so a
 * damaged chain cannot keep an allocation waiting forever. */
#define MT_PY_MAX_STEPS 4096

void mt__py_set_root(const void *root)
{
    atomic_store_explicit(&walk_root, root, memory_order_relaxed);
}

/* mt_python_ops_t.walk: the calling thread's frames, innermost first. */
static int walk(mt_pyframe_t *frames, int max)
{
    PyThreadState *ts = mt_py_thread_state();
    if (ts == NULL || max <= 0)
        return 0;
    const void *root = atomic_load_explicit(&walk_root, memory_order_relaxed);
    int n = 0, steps = 0;
    for (mt_py_frame_t *f = mt_py_frames_top(ts); f != NULL && n < max;
         f = mt_py_frames_back(f)) {
        if (++steps > MT_PY_MAX_STEPS)
            break;
        PyCodeObject *co = mt_py_frame_code(f);
        if (co == NULL)
            continue;
        if ((const void *)co == root)
            break;
        frames[n].code = co;
        frames[n].offset = mt_py_frame_offset(f, co);
        frames[n].is_entry = mt_py_frame_is_entry(f);
        n++;
    }
    return n;
}

/* Encodes one code point as UTF-8 into buf (4 bytes); returns the length.
 * Lone surrogates U+DC80..U+DCFF are the bytes a file name had that were
 * not UTF-8 (the surrogateescape error handler, used for file names):
 * they become those bytes again, as os.fsencode() would. Other lone
 * surrogates cannot be encoded and become '?'. */
static size_t utf8_put(Py_UCS4 c, char *buf)
{
    if (c < 0x80) {
        buf[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        buf[0] = (char)(0xC0 | (c >> 6));
        buf[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c >= 0xDC80 && c <= 0xDCFF) {
        buf[0] = (char)(c - 0xDC00);
        return 1;
    }
    if (c >= 0xD800 && c <= 0xDFFF) {
        buf[0] = '?';
        return 1;
    }
    if (c < 0x10000) {
        buf[0] = (char)(0xE0 | (c >> 12));
        buf[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | (c >> 18));
    buf[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Copies str s into out as UTF-8, NUL-terminated, truncated on a character
 * boundary to fit cap bytes. Reads the string's storage directly
 * (PyUnicode_AsUTF8 would allocate the cached UTF-8 copy). Something that
 * is not a ready str gives "?". */
static void str_to_utf8(PyObject *s, char *out, size_t cap)
{
    if (cap == 0)
        return;
    if (s == NULL || !PyUnicode_Check(s) || !mt_py_str_ready(s)) {
        out[0] = cap > 1 ? '?' : '\0';
        if (cap > 1)
            out[1] = '\0';
        return;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t n = 0;
    if (kind == PyUnicode_1BYTE_KIND && PyUnicode_IS_ASCII(s)) {
        /* ASCII: already UTF-8. */
        n = (size_t)len < cap - 1 ? (size_t)len : cap - 1;
        memcpy(out, data, n);
    } else {
        for (Py_ssize_t i = 0; i < len; i++) {
            char buf[4];
            size_t k = utf8_put(PyUnicode_READ(kind, data, i), buf);
            if (n + k > cap - 1)
                break;
            memcpy(out + n, buf, k);
            n += k;
        }
    }
    out[n] = '\0';
}

/* mt_python_ops_t.describe: names a code object, and pins it (one
 * reference, never released) so that its address never names another.
 * The code object comes from a frame of the calling thread, which cannot
 * be popped while the thread is in the allocator, and its name and file
 * are immutable strings it owns: reading them is safe without the GIL.
 * Taking the reference is not (the count is not atomic), so without the
 * GIL the code is described unpinned (*pin = 0), and the tracer checks a
 * later use of the same address against the description. That is the
 * common case for large buffers: numpy, zlib, hashlib and others release
 * the GIL around their biggest allocations. */
static int describe(const void *code, char *name, size_t name_cap, char *file,
                    size_t file_cap, int *firstlineno, int *pin)
{
    *pin = 0;
    PyObject *obj = (PyObject *)(uintptr_t)code;
    if (obj == NULL || !PyCode_Check(obj))
        return -1;
    PyCodeObject *co = (PyCodeObject *)obj;
    str_to_utf8(mt_py_code_name(co), name, name_cap);
    str_to_utf8(co->co_filename, file, file_cap);
    *firstlineno = co->co_firstlineno;
    if (mt_py_holds_gil(mt_py_thread_state())) {
        Py_INCREF(obj);
        *pin = 1;
    }
    return 0;
}

/* mt_python_ops_t.line: the line executing at a byte offset. The code
 * object is alive: it comes from a frame of the calling thread. */
static int line(const void *code, int32_t offset)
{
    return mt_py_code_line((PyCodeObject *)(uintptr_t)code, offset);
}

/* The address range of the eval loop's function, from its dynamic symbol
 * (the interpreter exports it in every version). [0, 0) when unknown:
 * the tracer then keeps native eval frames as they are. Note that GCC may
 * move the function's cold paths to a separate local symbol
 * (_PyEval_EvalFrameDefault.cold) outside this range. */
static void eval_range(const void **lo, const void **hi)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    *lo = *hi = NULL;
    if (dladdr1(MT_PY_EVAL_FUNCTION, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 ||
        sym == NULL || info.dli_saddr == NULL || sym->st_size == 0)
        return;
    *lo = info.dli_saddr;
    *hi = (const char *)info.dli_saddr + sym->st_size;
}

void mt__py_ops_init(mt_python_ops_t *ops)
{
    /* Py_GetVersion() is "3.11.7 (main, ...) [GCC ...]": keep the first word. */
    static char version[32];
    const char *v = Py_GetVersion();
    size_t n = strcspn(v, " ");
    if (n >= sizeof version)
        n = sizeof version - 1;
    memcpy(version, v, n);
    version[n] = '\0';

    memset(ops, 0, sizeof *ops);
    ops->abi = MT_PYTHON_OPS_ABI;
    ops->python_version = version;
    ops->walk = walk;
    ops->describe = describe;
    ops->line = line;
    eval_range(&ops->eval_lo, &ops->eval_hi);
}
