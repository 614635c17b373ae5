/* stages.c: the reader's side of named stages (STAGE records,
 * docs/FORMAT.md). replay.c hands each record over at its place in the
 * event order; here each thread's open stages are kept as a stack, and a
 * stage's numbers, taken between its enter and its leave, are added to the
 * row of its full dotted name ("outer.inner").
 *
 * The highest heap inside a stage is found without work per event beyond
 * one comparison: replay.c keeps stage_hwm, the highest heap since the
 * last STAGE record; at every record it is folded into every open stage
 * and restarts from the current heap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/* Stages nested deeper than this (a staged function recursing) are not
 * given rows of their own: their dotted names would grow without end. */
#define MT_STAGE_MAX_DEPTH 64
#define MT_NO_ROW UINT32_MAX
/* untraced_growth: RSS grew by at least this much... */
#define MT_UNTRACED_MIN (1u << 20)
/* Hostile-input caps: a leaf name is cut after MT_STAGE_NAME_CAP bytes
 * (writers write at most 255), and rows stop being made once their dotted
 * names take MT_STAGE_ROW_BYTES in all (stages past it have no row). */
#define MT_STAGE_NAME_CAP 1024
#define MT_STAGE_ROW_BYTES (64u << 20)

static int oom(mt_loader_t *ld)
{
    return mt__load_error(ld, MT_ENOMEM, "out of memory");
}

int mt__tstate_slot(mt_loader_t *ld, uint32_t thread, uint32_t *slot)
{
    if (mt__idmap_get(&ld->tslots, thread, slot) == 0)
        return 0;
    if (ld->ntstates == ld->tstates_cap) {
        size_t nc = ld->tstates_cap ? ld->tstates_cap * 2 : 16;
        mt_tstate_t *t = realloc(ld->tstates, nc * sizeof(*t));
        if (!t)
            return oom(ld);
        ld->tstates = t;
        ld->tstates_cap = nc;
    }
    *slot = (uint32_t)ld->ntstates;
    if (mt__idmap_put(&ld->tslots, thread, *slot))
        return oom(ld);
    memset(&ld->tstates[ld->ntstates++], 0, sizeof(mt_tstate_t));
    return 0;
}

int mt__stage_define(mt_loader_t *ld, uint32_t id, const uint8_t *name,
                     size_t len)
{
    if (len > MT_STAGE_NAME_CAP)
        len = MT_STAGE_NAME_CAP;
    char *s = malloc(len + 1);
    if (!s)
        return oom(ld);
    memcpy(s, name, len);
    s[len] = 0;
    uint32_t i;
    if (mt__idmap_get(&ld->stage_names, id, &i) == 0) {
        free(ld->stage_name_strs[i]);
        ld->stage_name_strs[i] = s;
        return 0;
    }
    if (ld->nstage_names == ld->stage_names_cap) {
        size_t nc = ld->stage_names_cap ? ld->stage_names_cap * 2 : 16;
        char **t = realloc(ld->stage_name_strs, nc * sizeof(*t));
        if (!t) {
            free(s);
            return oom(ld);
        }
        ld->stage_name_strs = t;
        ld->stage_names_cap = nc;
    }
    if (mt__idmap_put(&ld->stage_names, id, (uint32_t)ld->nstage_names)) {
        free(s);
        return oom(ld);
    }
    ld->stage_name_strs[ld->nstage_names++] = s;
    return 0;
}

/* The row of the stage named id inside row parent (MT_NO_ROW: outermost),
 * created on its first call. */
static int stage_row(mt_loader_t *ld, uint32_t parent, uint32_t id,
                     uint64_t seq, uint32_t *row)
{
    uint64_t key = ((uint64_t)(parent == MT_NO_ROW ? 0 : parent + 1) << 32) | id;
    if (mt__idmap_get(&ld->stage_rows, key, row) == 0)
        return 0;
    mt_capture_t *cap = ld->cap;
    char unknown[16];
    const char *leaf = unknown;
    uint32_t ni;
    if (mt__idmap_get(&ld->stage_names, id, &ni) == 0)
        leaf = ld->stage_name_strs[ni];
    else
        snprintf(unknown, sizeof unknown, "#%u", id);
    const char *prefix = parent == MT_NO_ROW ? NULL : cap->stages[parent].name;
    size_t pl = prefix ? strlen(prefix) + 1 : 0, ll = strlen(leaf);
    if (ld->stage_row_bytes + pl + ll + 1 > MT_STAGE_ROW_BYTES) {
        if (!ld->stage_rows_capped++)
            mt__load_warn(ld, "more stage names than %u MiB of them: later "
                          "ones are left out", MT_STAGE_ROW_BYTES >> 20);
        *row = MT_NO_ROW;
        return 0;
    }
    ld->stage_row_bytes += pl + ll + 1;
    char *name = malloc(pl + ll + 1);
    if (!name)
        return oom(ld);
    if (prefix) {
        memcpy(name, prefix, pl - 1);
        name[pl - 1] = '.';
    }
    memcpy(name + pl, leaf, ll + 1);
    if (cap->stage_count == cap->stage_cap) {
        size_t nc = cap->stage_cap ? cap->stage_cap * 2 : 16;
        mt_stage_t *t = realloc(cap->stages, nc * sizeof(*t));
        if (!t) {
            free(name);
            return oom(ld);
        }
        cap->stages = t;
        cap->stage_cap = nc;
    }
    *row = (uint32_t)cap->stage_count;
    if (mt__idmap_put(&ld->stage_rows, key, *row)) {
        free(name);
        return oom(ld);
    }
    cap->stages[cap->stage_count++] = (mt_stage_t){
        .name = name,
        .depth = parent == MT_NO_ROW ? 0 : cap->stages[parent].depth + 1,
        .first_seq = seq, /* records come in seq order: its first enter */
    };
    return 0;
}

/* Every open stage has seen the heap's high point since the last record. */
static void fold_peaks(mt_loader_t *ld)
{
    uint64_t hwm = ld->stage_hwm;
    for (size_t a = 0; a < ld->nactive; a++) {
        mt_tstate_t *ts = &ld->tstates[ld->stage_active[a]];
        for (size_t i = 0; i < ts->nopen; i++)
            if (hwm > ts->open[i].peak)
                ts->open[i].peak = hwm;
    }
    ld->stage_hwm = ld->cap->totals.current_bytes;
}

static uint64_t since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

/* Adds the call that started at f and ends now, at event seq (UINT64_MAX:
 * at the end of the capture), to its row. */
static void close_call(mt_loader_t *ld, const mt_tstate_t *ts,
                       const mt_stage_open_t *f, uint64_t seq, uint64_t ns,
                       uint64_t cpu, uint64_t tcpu, uint64_t rss, int unclosed)
{
    if (f->row == MT_NO_ROW)
        return;
    mt_stage_t *s = &ld->cap->stages[f->row];
    uint64_t heap = ld->cap->totals.current_bytes, wall = since(ns, f->ns);
    s->calls++;
    if (seq > s->end_seq)
        s->end_seq = seq;
    s->wall_ns += wall;
    if (wall > s->wall_max_ns)
        s->wall_max_ns = wall;
    s->cpu_ns += since(cpu, f->cpu);
    s->thread_cpu_ns += since(tcpu, f->tcpu);
    s->bytes_allocated += ts->bytes - f->bytes;
    s->allocations += ts->count - f->count;
    s->heap_delta += (int64_t)(heap - f->heap);
    if (f->peak > s->heap_peak)
        s->heap_peak = f->peak;
    if (f->peak - f->heap > s->heap_peak_rise)
        s->heap_peak_rise = f->peak - f->heap;
    if (rss && f->rss)
        s->rss_delta += (int64_t)(rss - f->rss);
    if (unclosed) {
        s->unclosed++;
        ld->cap->stage_totals.unclosed++;
    }
}

static void pop_open(mt_loader_t *ld, mt_tstate_t *ts)
{
    if (--ts->nopen)
        return;
    /* The thread has no open stage left: out of the active list. */
    size_t pos = ts->active_pos, last = ld->stage_active[--ld->nactive];
    ld->stage_active[pos] = last;
    ld->tstates[last].active_pos = pos;
}

static int push_open(mt_loader_t *ld, uint32_t slot, const mt_tick_t *tk)
{
    mt_tstate_t *ts = &ld->tstates[slot];
    uint32_t row = MT_NO_ROW;
    uint32_t parent = ts->nopen ? ts->open[ts->nopen - 1].row : MT_NO_ROW;
    /* Inside a stage without a row (too deep, or past the cap), none. */
    if (ts->nopen < MT_STAGE_MAX_DEPTH && (!ts->nopen || parent != MT_NO_ROW)) {
        int rc = stage_row(ld, parent, tk->name, tk->seq, &row);
        if (rc)
            return rc;
    }
    if (ts->nopen == ts->open_cap) {
        size_t nc = ts->open_cap ? ts->open_cap * 2 : 8;
        mt_stage_open_t *o = realloc(ts->open, nc * sizeof(*o));
        if (!o)
            return oom(ld);
        ts->open = o;
        ts->open_cap = nc;
    }
    if (!ts->nopen) {
        if (ld->nactive == ld->active_cap) {
            size_t nc = ld->active_cap ? ld->active_cap * 2 : 16;
            uint32_t *a = realloc(ld->stage_active, nc * sizeof(*a));
            if (!a)
                return oom(ld);
            ld->stage_active = a;
            ld->active_cap = nc;
        }
        ts->active_pos = ld->nactive;
        ld->stage_active[ld->nactive++] = slot;
    }
    uint64_t heap = ld->cap->totals.current_bytes;
    ts->open[ts->nopen++] = (mt_stage_open_t){
        .row = row, .name = tk->name, .ns = tk->ns, .cpu = tk->cpu,
        .tcpu = tk->tcpu, .rss = tk->rss, .heap = heap, .peak = heap,
        .bytes = ts->bytes, .count = ts->count};
    return 0;
}

int mt__stage_apply(mt_loader_t *ld, const mt_tick_t *tk)
{
    uint32_t slot;
    int rc = mt__tstate_slot(ld, tk->thread, &slot);
    if (rc)
        return rc;
    if (tk->ns > ld->last_ns)
        ld->last_ns = tk->ns;
    if (tk->cpu > ld->last_cpu)
        ld->last_cpu = tk->cpu;
    if (tk->rss)
        ld->last_rss = tk->rss;
    ld->tstates[slot].tcpu = tk->tcpu;
    fold_peaks(ld);
    if (tk->kind == MT_STAGE_ENTER)
        return push_open(ld, slot, tk);

    mt_tstate_t *ts = &ld->tstates[slot];
    if (!ts->nopen) {
        ld->cap->stage_totals.unmatched_leaves++;
        return 0;
    }
    size_t target = ts->nopen - 1;
    if (tk->name && ts->open[target].name != tk->name) {
        /* The leave names an outer stage: the inner ones missed their
         * leave (a C caller that returned early) and end here too. */
        while (target > 0 && ts->open[target].name != tk->name)
            target--;
        ld->cap->stage_totals.mismatched_leaves++;
        if (ts->open[target].name != tk->name)
            return 0; /* names no open stage: nothing to end */
    }
    while (ts->nopen > target) {
        close_call(ld, ts, &ts->open[ts->nopen - 1], tk->seq, tk->ns, tk->cpu,
                   tk->tcpu, tk->rss, 0);
        pop_open(ld, ts);
    }
    return 0;
}

int mt__stages_finish(mt_loader_t *ld)
{
    mt_capture_t *cap = ld->cap;
    fold_peaks(ld);
    uint64_t end = ld->have_trailer && ld->trailer_ns > ld->last_ns
                       ? ld->trailer_ns : ld->last_ns;
    while (ld->nactive) {
        mt_tstate_t *ts = &ld->tstates[ld->stage_active[0]];
        close_call(ld, ts, &ts->open[ts->nopen - 1], UINT64_MAX, end,
                   ld->last_cpu, ts->tcpu, ld->last_rss, 1);
        pop_open(ld, ts);
    }
    for (size_t i = 0; i < cap->stage_count; i++) {
        mt_stage_t *s = &cap->stages[i];
        int64_t heap = s->heap_delta > 0 ? s->heap_delta : 0;
        s->untraced_growth = s->rss_delta >= (int64_t)MT_UNTRACED_MIN &&
                             s->rss_delta > 2 * heap;
    }
    const mt_stage_totals_t *st = &cap->stage_totals;
    if (st->unclosed)
        mt__load_warn(ld, "%llu stage call(s) were still open when the "
                      "capture ended (the program exited inside them): "
                      "closed at the end and marked unclosed",
                      (unsigned long long)st->unclosed);
    if (st->unmatched_leaves)
        mt__load_warn(ld, "%llu stage leave(s) had no open stage on their "
                      "thread (tracing started inside a stage?): ignored",
                      (unsigned long long)st->unmatched_leaves);
    if (st->mismatched_leaves)
        mt__load_warn(ld, "%llu stage leave(s) did not end the innermost "
                      "open stage: the stages inside were ended with it",
                      (unsigned long long)st->mismatched_leaves);
    return 0;
}

void mt__stages_free(mt_loader_t *ld)
{
    for (size_t i = 0; i < ld->ntstates; i++)
        free(ld->tstates[i].open);
    free(ld->tstates);
    free(ld->stage_active);
    for (size_t i = 0; i < ld->nstage_names; i++)
        free(ld->stage_name_strs[i]);
    free(ld->stage_name_strs);
    mt__idmap_free(&ld->tslots);
    mt__idmap_free(&ld->stage_names);
    mt__idmap_free(&ld->stage_rows);
}

size_t mt_capture_stage_count(const mt_capture_t *cap)
{
    return cap->stage_count;
}

const mt_stage_t *mt_capture_stages(const mt_capture_t *cap)
{
    return cap->stages;
}

const mt_stage_totals_t *mt_capture_stage_totals(const mt_capture_t *cap)
{
    return &cap->stage_totals;
}
