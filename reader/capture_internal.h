/* capture_internal.h: the layout of a loaded capture, private to reader/.
 * reader.c fills it while streaming the file; symbolize.c adds the symbol
 * cache. Reporters use reader.h only. */
#ifndef MT_READER_CAPTURE_INTERNAL_H
#define MT_READER_CAPTURE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/reader.h"

typedef struct mt_symbolizer_s mt_symbolizer_t; /* symbolize.c */

struct mt_capture_s {
    char *path;
    char *warning;             /* owned; NULL when the read was clean */
    mt_header_t header;
    char *header_strings;      /* owned storage behind header's strings */
    const char **argv_storage; /* owned; header.argv points here */
    mt_totals_t totals;

    mt_node_t *nodes;          /* [node_count]; nodes[0] is the root */
    mt_node_stats_t *node_stats; /* [node_count] */
    size_t node_count, node_cap;

    mt_module_t *modules;      /* [module_count], in load order; unloaded
                                  modules stay. Each path and build_id is
                                  malloc'd and freed by mt_capture_free. */
    size_t module_count, module_cap;

    mt_sample_t *samples;      /* [sample_count] one per tick */
    size_t sample_count, sample_cap;

    mt_memsample_t *memsamples; /* [memsample_count] SMAPS records */
    size_t memsample_count, memsample_cap;

    /* Python code objects by PYCODE id (index 0 unused): the frame of a
     * NODE whose ip has MT_NODE_PYTHON set. Strings malloc'd, owned. */
    struct mt_pycode_s {
        char *name, *file;
        uint32_t firstline;
    } *pycodes;
    size_t pycode_count, pycode_cap; /* ids 1..pycode_count are defined */
    char *python_version;            /* owned; header.python_version */

    /* Stages (stages.c): rows, each name malloc'd, owned. */
    mt_stage_t *stages;
    size_t stage_count, stage_cap;
    mt_stage_totals_t stage_totals;
    int64_t *children;         /* CHILD pids, in order; owned */
    size_t child_count, child_cap;

    mt_symbolizer_t *symbolizer; /* created on first mt_capture_frames() */

    mt_window_t window;
    /* One per process (combine.c fills several); strings in `owned`. */
    mt_process_t *processes;
    size_t process_count;
    /* Storage the capture owns for a combined capture: the header strings
     * and process strings of the captures it was made from. */
    void **owned;
    size_t owned_count, owned_cap;
};

/* reader.c: makes cap own p (freed by mt_capture_free). 0 or MT_ENOMEM
 * (then p is freed). */
int mt__capture_own(mt_capture_t *cap, void *p);

/* symbolize.c: frees the symbolizer (NULL is fine). */
void mt__symbolizer_free(mt_symbolizer_t *s);

#endif
