/* stacks.h: the stacks as reports show them, private to reporters/: each
 * trace-tree node's frames without memtrace's own (see
 * mt_frame_is_memtrace), and whether a filter's include globs keep the
 * node's stack. sites.c, flamegraph.c and tree.c read frames through here,
 * so that every report hides the same frames. */
#ifndef MT_REPORTERS_STACKS_H
#define MT_REPORTERS_STACKS_H

#include <stdint.h>

#include "memtrace/reporters.h"

#define MT__STACK_FRAMES 64 /* inline depth looked at per node */

typedef struct mt__stacks_s {
    mt_capture_t *cap;
    mt_frames_fn fn;
    void *ctx;
    const mt_filter_t *filter;
    uint8_t *state;      /* [nnodes] see stacks.c; 0: not computed yet */
    size_t nnodes;
    uint32_t *chain;     /* scratch: nodes waiting for their state */
    size_t chain_cap;
    /* Include-glob results per (file, module) string pair, by address:
     * frames share their strings (the symbolizer interns them), and a
     * glob is tried against many parts of a path. */
    struct mt__match_s *matches;
    size_t matches_size, matches_count;
    int oom;             /* a computation ran out of memory */
    mt_frame_t raw[MT__STACK_FRAMES];
} mt__stacks_t;

/* Sets s up for cap (borrowed) with symbolizer fn(ctx, ...) (NULL:
 * mt_capture_frames) and filter (NULL: none; borrowed). Returns 0 or
 * MT_ENOMEM; release with mt__stacks_release either way. */
int mt__stacks_init(mt__stacks_t *s, mt_capture_t *cap, mt_frames_fn fn,
                    void *ctx, const mt_filter_t *filter);
void mt__stacks_release(mt__stacks_t *s);

/* The frames of node that reports show, innermost first, into
 * frames[0, max) (max >= MT__STACK_FRAMES shows them all); returns how many
 * (may be 0). *cut is set to 1 when the stack ends at this node: its
 * callers are memtrace's launcher and what runs it, so a walk towards the
 * root stops here and a walk from the root starts again here. On out of
 * memory returns 0 and sets s->oom. */
size_t mt__stacks_frames(mt__stacks_t *s, uint32_t node, mt_frame_t *frames,
                         size_t max, int *cut);

/* 1 when the filter's include globs keep node's stack: some frame of it
 * (as shown) matches one; always 1 without include globs. */
int mt__stacks_included(mt__stacks_t *s, uint32_t node);

/* 1 when frame matches one of filter's include (k = 0) or exclude (k = 1)
 * globs (filter may be NULL: 0). */
int mt__filter_any(const mt_filter_t *filter, int k, const mt_frame_t *frame);

#endif
