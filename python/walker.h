/* walker.h: the frame walker this extension attaches to the tracer (see
 * include/memtrace/tracer.h, mt_python_ops_t): walker.c implements the
 * callbacks on top of frames.h; _memtrace.c, the module's binding, only
 * hands them to the tracer. */
#ifndef MT_PY_WALKER_H
#define MT_PY_WALKER_H

#include "memtrace/tracer.h"

/* Fills ops with the walker's callbacks, this interpreter's version and
 * the eval loop's address range. Call once, with the GIL held; ops must
 * stay valid as long as the tracer may use it (static storage). */
void mt__py_ops_init(mt_python_ops_t *ops);

/* Walks stop at the first frame running code object root, leaving it and
 * every outer frame out (memtrace's launcher hides its own frames this
 * way). NULL: walk every frame. The caller keeps root alive. */
void mt__py_set_root(const void *root);

#endif
