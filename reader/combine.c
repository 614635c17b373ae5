/* combine.c: mt_capture_load_job(), the captures of a multi-process job
 * (a parent and the children it forked or spawned under --follow-fork)
 * read as one capture, so that every report works on it unchanged.
 *
 * Finding the job: the captures named, then, in the directory of each,
 * FILE.<digits> files (children write ROOT.<pid>) whose header names a
 * process of the job as its parent (MT_HDR_PARENT_PID, repeated until no
 * more join), or whose pid a CHILD record of the job names. Only headers
 * are read for that.
 *
 * Combining: modules, Python code objects and trace-tree nodes of every
 * capture are appended to one table, identical ones shared (a node is its
 * parent, its frame key and its module), so the same stack in two
 * processes is one stack; total, temporary and leaks are summed per node.
 * The peak view is the high-water mark of the sum of the heaps over
 * wall-clock time: every process's timeline is placed at its
 * start_realtime, and the sum is taken at every tick of every process
 * (each process counts with its latest tick; a process that ended counts
 * no more) and at each process's own peak (it at its peak, the others at
 * their latest tick). At the best moment each process's live set is read
 * again, as a window ending at that tick (mt_load_opts_t.to_seq), and
 * summed into the nodes' peak amounts. Precision: one RSS tick.
 *
 * Memory: the loaded captures (distinct stacks and ticks each) and the
 * combined tables; the live allocations of one capture at a time. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture_internal.h"
#include "common/format.h"

#define MT_HASH_MUL 0x9e3779b97f4a7c15ull
#define JOB_MAX_FILES 65536 /* processes in one job: a guard, not a goal */

typedef struct job_proc_s {
    char *path;
    int given;             /* named by the user (errors are fatal) */
    dev_t dev;
    ino_t ino;
    int64_t pid, parent_pid;
    uint64_t start_abs;    /* start_realtime_ns */
    uint64_t end_abs;      /* start + the end of its (window's) data */
    mt_capture_t *cap;     /* its full load; NULL when left out */
    uint32_t *map;         /* its node ids -> combined node ids */
    uint64_t at_peak;
    int loaded;            /* 1: cap set; -1: left out */
} job_proc_t;

typedef struct job_s {
    job_proc_t *p;
    size_t n, cap;
    const mt_load_opts_t *opts;
    char *errbuf;
    size_t errlen;
    mt_capture_t *out;     /* the combined capture */
    /* node table: (parent, module, ip) -> combined id + 1 */
    uint32_t *nodes_ht;
    size_t nodes_ht_size;
    uint32_t *code_ht;     /* pycode (name, file, line) -> id */
    size_t code_ht_size;
} job_t;

static int job_error(job_t *j, int rc, const char *path, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

static int job_error(job_t *j, int rc, const char *path, const char *fmt, ...)
{
    if (j->errbuf && j->errlen) {
        int n = snprintf(j->errbuf, j->errlen, "%s: ", path);
        if (n >= 0 && (size_t)n < j->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(j->errbuf + n, j->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

/* Appends "; " and msg to the combined capture's warning. */
static int add_warning(mt_capture_t *cap, const char *path, const char *msg)
{
    size_t ol = cap->warning ? strlen(cap->warning) : 0;
    size_t len = ol + 2 + strlen(path) + 2 + strlen(msg) + 1;
    char *w = malloc(len);
    if (!w)
        return MT_ENOMEM;
    snprintf(w, len, "%s%s%s: %s", ol ? cap->warning : "", ol ? "; " : "",
             path, msg);
    free(cap->warning);
    cap->warning = w;
    return 0;
}

/* ns from base to t; 0 for a t before it (a hostile or odd clock). */
static uint64_t since(uint64_t t, uint64_t base)
{
    return t > base ? t - base : 0;
}

/* ---- Finding the job's captures ------------------------------------------ */

/* Adds path unless the same file is in already. Returns the index, or -1
 * for a duplicate, or MT_ENOMEM / -errno (stat failed). */
static long job_add(job_t *j, const char *path, int given)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    for (size_t i = 0; i < j->n; i++)
        if (j->p[i].dev == st.st_dev && j->p[i].ino == st.st_ino)
            return -1;
    if (j->n >= JOB_MAX_FILES)
        return MT_ETOOBIG;
    if (j->n == j->cap) {
        size_t nc = j->cap ? j->cap * 2 : 8;
        job_proc_t *p = realloc(j->p, nc * sizeof *p);
        if (!p)
            return MT_ENOMEM;
        j->p = p;
        j->cap = nc;
    }
    job_proc_t *p = &j->p[j->n];
    memset(p, 0, sizeof *p);
    if (!(p->path = strdup(path)))
        return MT_ENOMEM;
    p->given = given;
    p->dev = st.st_dev;
    p->ino = st.st_ino;
    return (long)j->n++;
}

/* Reads the header of p: pid, parent, start. */
static int job_probe(job_t *j, job_proc_t *p, char *err, size_t errlen)
{
    mt_load_opts_t o = {.header_only = 1};
    mt_capture_t *cap = NULL;
    int rc = mt_capture_load(p->path, &o, &cap, err, errlen);
    (void)j;
    if (rc)
        return rc;
    p->pid = cap->header.pid;
    p->parent_pid = cap->header.parent_pid;
    p->start_abs = cap->header.start_realtime_ns;
    mt_capture_free(cap);
    return 0;
}

/* The root path of a capture: FILE for FILE.<pid> when the capture's
 * header says it is a child with that pid. malloc'd. */
static char *root_path(const job_proc_t *p)
{
    char *r = strdup(p->path);
    if (!r || !p->parent_pid)
        return r;
    char suffix[32];
    snprintf(suffix, sizeof suffix, ".%lld", (long long)p->pid);
    size_t n = strlen(r), m = strlen(suffix);
    if (n > m && strcmp(r + n - m, suffix) == 0)
        r[n - m] = 0;
    return r;
}

/* FILE.<digits> next to the root of every given capture: probed, and kept
 * (given = 0) when a process of the job is their parent. */
static int find_children(job_t *j)
{
    size_t ngiven = j->n;
    char err[256];
    for (size_t g = 0; g < ngiven; g++) {
        char *root = root_path(&j->p[g]);
        if (!root)
            return MT_ENOMEM;
        char *slash = strrchr(root, '/');
        const char *base = slash ? slash + 1 : root;
        char *dir = slash ? strndup(root, (size_t)(slash - root) + 1)
                          : strdup("./");
        DIR *d = dir ? opendir(dir) : NULL;
        size_t blen = strlen(base);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            const char *name = e->d_name;
            if (strncmp(name, base, blen) || name[blen] != '.' ||
                !name[blen + 1] ||
                strspn(name + blen + 1, "0123456789") != strlen(name + blen + 1))
                continue;
            size_t len = strlen(dir) + strlen(name) + 1;
            char *path = malloc(len);
            if (!path)
                break;
            snprintf(path, len, "%s%s", slash ? dir : "", name);
            long k = job_add(j, path, 0);
            free(path);
            if (k >= 0 && job_probe(j, &j->p[k], err, sizeof err)) {
                free(j->p[k].path); /* not a capture we can read: not ours */
                j->n--;
            }
        }
        if (d)
            closedir(d);
        free(dir);
        free(root);
    }
    /* Candidates join while a process of the job is their parent. */
    for (size_t i = ngiven; i < j->n; i++)
        j->p[i].loaded = -1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = ngiven; i < j->n; i++) {
            job_proc_t *p = &j->p[i];
            if (p->loaded >= 0 || !p->parent_pid)
                continue;
            for (size_t k = 0; k < j->n; k++) {
                const job_proc_t *q = &j->p[k];
                if (q->loaded >= 0 && q->pid == p->parent_pid &&
                    p->start_abs >= q->start_abs) {
                    p->loaded = 0;
                    changed = 1;
                    break;
                }
            }
        }
    }
    return 0;
}

/* ---- Loading ---------------------------------------------------------------- */

/* Loads p with the job's window moved to its own clock (base: the first
 * start). Returns 0, 1 when p lies outside the window, or an error. */
static int job_load(job_t *j, job_proc_t *p, uint64_t base, char *err,
                    size_t errlen)
{
    mt_load_opts_t o = j->opts ? *j->opts : (mt_load_opts_t){0};
    o.header_only = 0;
    uint64_t off = since(p->start_abs, base);
    if (o.window) {
        if (o.to_ns != UINT64_MAX && o.to_ns <= off)
            return 1; /* it started after the window */
        o.from_ns = o.from_ns > off ? o.from_ns - off : 0;
        if (o.to_ns != UINT64_MAX)
            o.to_ns -= off;
    }
    int rc = mt_capture_load(p->path, &o, &p->cap, err, errlen);
    if (rc == MT_ERANGE && o.window)
        return 1; /* it ended before the window (err says so) */
    if (rc)
        return rc;
    const mt_header_t *h = &p->cap->header;
    p->pid = h->pid;
    p->parent_pid = h->parent_pid;
    p->start_abs = h->start_realtime_ns;
    uint64_t end = p->cap->window.active ? p->cap->window.to_ns
                                         : p->cap->totals.duration_ns;
    p->end_abs = p->start_abs + end;
    return 0;
}

/* ---- Merging the tables ----------------------------------------------------- */

static uint64_t str_hash(const char *s, uint64_t h)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t node_hash(uint32_t parent, uint32_t module, uint64_t ip)
{
    uint64_t h = (ip ^ ((uint64_t)parent << 32 | module)) * MT_HASH_MUL;
    return h ^ (h >> 29) ^ parent;
}

static int ht_grow(uint32_t **ht, size_t *size, size_t count,
                   uint64_t (*hash)(const job_t *, uint32_t), const job_t *j)
{
    if ((count + 1) * 2 <= *size)
        return 0;
    size_t n = *size ? *size * 2 : 1024;
    uint32_t *t = calloc(n, sizeof *t);
    if (!t)
        return MT_ENOMEM;
    for (size_t i = 0; i < *size; i++) {
        if (!(*ht)[i])
            continue;
        size_t k = hash(j, (*ht)[i] - 1) & (n - 1);
        while (t[k])
            k = (k + 1) & (n - 1);
        t[k] = (*ht)[i];
    }
    free(*ht);
    *ht = t;
    *size = n;
    return 0;
}

static uint64_t node_hash_of(const job_t *j, uint32_t id)
{
    const mt_node_t *n = &j->out->nodes[id];
    return node_hash(n->parent, n->module, n->ip);
}

static uint64_t code_hash_of(const job_t *j, uint32_t id)
{
    const struct mt_pycode_s *c = &j->out->pycodes[id + 1];
    return str_hash(c->file, str_hash(c->name, 1469598103934665603ull)) ^
           c->firstline;
}

/* The combined module for src's module m (appended, its strings taken
 * from src, when new). */
static int merge_module(mt_capture_t *out, mt_module_t *m, uint32_t *idx)
{
    for (size_t i = 0; i < out->module_count; i++) {
        const mt_module_t *o = &out->modules[i];
        if (o->bias == m->bias && o->lo == m->lo && o->hi == m->hi &&
            o->build_id_len == m->build_id_len &&
            strcmp(o->path ? o->path : "", m->path ? m->path : "") == 0 &&
            (!m->build_id_len ||
             !memcmp(o->build_id, m->build_id, m->build_id_len))) {
            *idx = (uint32_t)i;
            return 0;
        }
    }
    if (out->module_count == out->module_cap) {
        size_t nc = out->module_cap ? out->module_cap * 2 : 16;
        mt_module_t *mods = realloc(out->modules, nc * sizeof *mods);
        if (!mods)
            return MT_ENOMEM;
        out->modules = mods;
        out->module_cap = nc;
    }
    *idx = (uint32_t)out->module_count;
    out->modules[out->module_count++] = *m;
    m->path = NULL; /* now the combined capture's */
    m->build_id = NULL;
    return 0;
}

/* The combined code id for src's code id (0: unknown stays unknown).
 * done[id] remembers it for the next node of the same code: a code object
 * merged as new gives its strings to the combined table. */
static int merge_code(job_t *j, mt_capture_t *src, uint32_t id, uint32_t *done,
                      uint32_t *out_id)
{
    mt_capture_t *out = j->out;
    *out_id = 0;
    if (!id || id > src->pycode_count)
        return 0;
    if (done[id]) {
        *out_id = done[id];
        return 0;
    }
    struct mt_pycode_s *c = &src->pycodes[id];
    uint64_t h = str_hash(c->file, str_hash(c->name, 1469598103934665603ull)) ^
                 c->firstline;
    if (j->code_ht_size) {
        for (size_t k = h & (j->code_ht_size - 1); j->code_ht[k];
             k = (k + 1) & (j->code_ht_size - 1)) {
            /* The table holds ids (from 1), which index pycodes as is. */
            const struct mt_pycode_s *o = &out->pycodes[j->code_ht[k]];
            if (o->firstline == c->firstline &&
                !strcmp(o->name ? o->name : "", c->name ? c->name : "") &&
                !strcmp(o->file ? o->file : "", c->file ? c->file : "")) {
                *out_id = done[id] = j->code_ht[k];
                return 0;
            }
        }
    }
    if (out->pycode_count >= 0x7ffffffe)
        return MT_ETOOBIG;
    if (out->pycode_count + 1 >= out->pycode_cap) {
        size_t nc = out->pycode_cap ? out->pycode_cap * 2 : 256;
        struct mt_pycode_s *t = realloc(out->pycodes, nc * sizeof *t);
        if (!t)
            return MT_ENOMEM;
        out->pycodes = t;
        out->pycode_cap = nc;
    }
    uint32_t nid = (uint32_t)++out->pycode_count;
    out->pycodes[nid] = *c;
    c->name = c->file = NULL; /* now the combined capture's */
    /* Both tables hold value + 1 (0: empty); the hashes take the value,
     * here id - 1. */
    if (ht_grow(&j->code_ht, &j->code_ht_size, out->pycode_count, code_hash_of,
                j))
        return MT_ENOMEM;
    size_t k = code_hash_of(j, nid - 1) & (j->code_ht_size - 1);
    while (j->code_ht[k])
        k = (k + 1) & (j->code_ht_size - 1);
    j->code_ht[k] = nid;
    *out_id = done[id] = nid;
    return 0;
}

static int reserve_nodes(mt_capture_t *out, size_t n)
{
    if (n <= out->node_cap)
        return 0;
    size_t nc = out->node_cap ? out->node_cap * 2 : 256;
    while (nc < n)
        nc *= 2;
    mt_node_t *nodes = realloc(out->nodes, nc * sizeof *nodes);
    if (!nodes)
        return MT_ENOMEM;
    out->nodes = nodes;
    mt_node_stats_t *st = realloc(out->node_stats, nc * sizeof *st);
    if (!st)
        return MT_ENOMEM;
    memset(st + out->node_cap, 0, (nc - out->node_cap) * sizeof *st);
    out->node_stats = st;
    out->node_cap = nc;
    return 0;
}

static void amount_add(mt_amount_t *a, mt_amount_t b)
{
    a->bytes += b.bytes;
    a->count += b.count;
}

/* Appends p's modules, code objects and nodes to the combined tables and
 * adds its total, temporary and leaks amounts; fills p->map. */
static int merge_tables(job_t *j, job_proc_t *p)
{
    mt_capture_t *out = j->out, *src = p->cap;
    int rc;
    uint32_t *modmap = malloc((src->module_count + 1) * sizeof *modmap);
    uint32_t *codemap = calloc(src->pycode_count + 1, sizeof *codemap);
    p->map = malloc(src->node_count * sizeof *p->map);
    if (!modmap || !codemap || !p->map) {
        free(modmap);
        free(codemap);
        return MT_ENOMEM;
    }
    for (size_t m = 0; m < src->module_count; m++)
        if ((rc = merge_module(out, &src->modules[m], &modmap[m]))) {
            free(modmap);
            free(codemap);
            return rc;
        }
    p->map[0] = 0;
    amount_add(&out->node_stats[0].total, src->node_stats[0].total);
    amount_add(&out->node_stats[0].temporary, src->node_stats[0].temporary);
    amount_add(&out->node_stats[0].leaked, src->node_stats[0].leaked);
    for (size_t i = 1; i < src->node_count; i++) {
        const mt_node_t *sn = &src->nodes[i];
        mt_node_t n = {p->map[sn->parent], UINT32_MAX, sn->ip};
        if (sn->module < src->module_count)
            n.module = modmap[sn->module];
        if (sn->ip & MT_NODE_PYTHON) {
            uint32_t id;
            if ((rc = merge_code(j, src, (uint32_t)(sn->ip >> 32) & 0x7fffffffu,
                                 codemap, &id))) {
                free(modmap);
                free(codemap);
                return rc;
            }
            n.ip = MT_NODE_PYTHON | (uint64_t)id << 32 | (sn->ip & 0xffffffffu);
        }
        uint64_t h = node_hash(n.parent, n.module, n.ip);
        uint32_t id = UINT32_MAX;
        size_t k = j->nodes_ht_size ? h & (j->nodes_ht_size - 1) : 0;
        for (; j->nodes_ht_size && j->nodes_ht[k];
             k = (k + 1) & (j->nodes_ht_size - 1)) {
            const mt_node_t *o = &out->nodes[j->nodes_ht[k] - 1];
            if (o->parent == n.parent && o->module == n.module && o->ip == n.ip) {
                id = j->nodes_ht[k] - 1;
                break;
            }
        }
        if (id == UINT32_MAX) {
            if (out->node_count >= (1u << 31) ||
                reserve_nodes(out, out->node_count + 1) ||
                ht_grow(&j->nodes_ht, &j->nodes_ht_size, out->node_count,
                        node_hash_of, j)) {
                free(modmap);
                free(codemap);
                return MT_ENOMEM;
            }
            id = (uint32_t)out->node_count++;
            out->nodes[id] = n;
            k = h & (j->nodes_ht_size - 1);
            while (j->nodes_ht[k])
                k = (k + 1) & (j->nodes_ht_size - 1);
            j->nodes_ht[k] = id + 1;
        }
        p->map[i] = id;
        const mt_node_stats_t *ss = &src->node_stats[i];
        amount_add(&out->node_stats[id].total, ss->total);
        amount_add(&out->node_stats[id].temporary, ss->temporary);
        amount_add(&out->node_stats[id].leaked, ss->leaked);
    }
    free(modmap);
    free(codemap);
    return 0;
}

/* ---- The timeline and the peak of the sum --------------------------------- */

enum { EV_TICK = 0, EV_PEAK = 1, EV_END = 2 }; /* order at one instant */

typedef struct tl_ev_s {
    uint64_t t;      /* absolute ns */
    uint32_t proc;
    uint32_t kind;
    uint64_t k;      /* sample index (ticks) */
} tl_ev_t;

static int ev_cmp(const void *a, const void *b)
{
    const tl_ev_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->proc != y->proc)
        return x->proc < y->proc ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

typedef struct peak_s {
    uint64_t bytes, t;
    long owner;       /* the process at its own peak, or -1 */
    uint64_t peak_rss;
} peak_t;

/* Sweeps every tick, own peak and end in time order, keeping each
 * process's latest heap and RSS: writes the summed samples into out and
 * finds the best moment. */
static int sweep(job_t *j, size_t *live, size_t nlive, uint64_t base,
                 peak_t *best)
{
    mt_capture_t *out = j->out;
    size_t nev = 0;
    for (size_t i = 0; i < nlive; i++)
        nev += j->p[live[i]].cap->sample_count + 2;
    tl_ev_t *ev = malloc((nev ? nev : 1) * sizeof *ev);
    uint64_t *h = calloc(nlive ? nlive : 1, sizeof *h);
    uint64_t *r = calloc(nlive ? nlive : 1, sizeof *r);
    out->samples = malloc((nev ? nev : 1) * sizeof *out->samples);
    if (!ev || !h || !r || !out->samples) {
        free(ev);
        free(h);
        free(r);
        return MT_ENOMEM;
    }
    out->sample_cap = nev ? nev : 1;
    nev = 0;
    for (size_t i = 0; i < nlive; i++) {
        const job_proc_t *p = &j->p[live[i]];
        const mt_capture_t *c = p->cap;
        for (size_t k = 0; k < c->sample_count; k++)
            ev[nev++] = (tl_ev_t){p->start_abs + c->samples[k].time_ns,
                                  (uint32_t)i, EV_TICK, k};
        ev[nev++] = (tl_ev_t){p->start_abs + c->totals.peak_time_ns,
                              (uint32_t)i, EV_PEAK, 0};
        ev[nev++] = (tl_ev_t){p->end_abs, (uint32_t)i, EV_END, 0};
    }
    qsort(ev, nev, sizeof *ev, ev_cmp);
    uint64_t sum = 0, rsum = 0;
    *best = (peak_t){0, nev ? ev[0].t : base, -1, 0};
    for (size_t a = 0; a < nev;) {
        size_t b = a;
        uint64_t t = ev[a].t;
        for (; b < nev && ev[b].t == t && ev[b].kind == EV_TICK; b++) {
            const mt_sample_t *s = &j->p[live[ev[b].proc]].cap->samples[ev[b].k];
            sum += s->heap_bytes - h[ev[b].proc];
            rsum += s->rss_bytes - r[ev[b].proc];
            h[ev[b].proc] = s->heap_bytes;
            r[ev[b].proc] = s->rss_bytes;
        }
        if (b > a) {
            out->samples[out->sample_count++] =
                (mt_sample_t){since(t, base), sum, rsum, 0};
            if (sum > best->bytes)
                *best = (peak_t){sum, t, -1, best->peak_rss};
            if (rsum > best->peak_rss)
                best->peak_rss = rsum;
        }
        for (; b < nev && ev[b].t == t && ev[b].kind == EV_PEAK; b++) {
            uint32_t i = ev[b].proc;
            uint64_t own = j->p[live[i]].cap->totals.peak_bytes;
            uint64_t v = sum - h[i] + own;
            if (v > best->bytes)
                *best = (peak_t){v, t, (long)i, best->peak_rss};
        }
        for (; b < nev && ev[b].t == t; b++) { /* EV_END */
            sum -= h[ev[b].proc];
            rsum -= r[ev[b].proc];
            h[ev[b].proc] = r[ev[b].proc] = 0;
        }
        a = b;
    }
    free(ev);
    free(h);
    free(r);
    return 0;
}

/* p's latest sample at or before t while it runs, or NULL. */
static const mt_sample_t *sample_at(const job_proc_t *p, uint64_t t)
{
    const mt_capture_t *c = p->cap;
    if (t > p->end_abs || !c->sample_count ||
        p->start_abs + c->samples[0].time_ns > t)
        return NULL;
    size_t lo = 0, hi = c->sample_count; /* last index with time <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->start_abs + c->samples[mid].time_ns <= t)
            lo = mid;
        else
            hi = mid;
    }
    return &c->samples[lo];
}

/* Fills the nodes' peak amounts with what each process had live at the
 * best moment (the owner: its own peak snapshot). */
static int fill_peak(job_t *j, size_t *live, size_t nlive, const peak_t *best)
{
    mt_capture_t *out = j->out;
    uint64_t total = 0;
    for (size_t i = 0; i < nlive; i++) {
        job_proc_t *p = &j->p[live[i]];
        mt_capture_t *src = p->cap;
        p->at_peak = 0;
        if ((long)i == best->owner) {
            for (size_t n = 0; n < src->node_count; n++) {
                amount_add(&out->node_stats[p->map[n]].peak,
                           src->node_stats[n].peak);
                p->at_peak += src->node_stats[n].peak.bytes;
            }
            total += p->at_peak;
            continue;
        }
        const mt_sample_t *s = sample_at(p, best->t);
        if (!s || !s->heap_bytes)
            continue;
        mt_load_opts_t o = {.window = 1, .to_ns = s->time_ns,
                            .to_seq = s->seq};
        if (j->opts)
            o.temporary_threshold = j->opts->temporary_threshold;
        mt_capture_t *at = NULL;
        int rc = mt_capture_load(p->path, &o, &at, j->errbuf, j->errlen);
        if (rc)
            return rc;
        size_t nn = at->node_count < src->node_count ? at->node_count
                                                     : src->node_count;
        for (size_t n = 0; n < nn; n++) {
            amount_add(&out->node_stats[p->map[n]].peak, at->node_stats[n].leaked);
            p->at_peak += at->node_stats[n].leaked.bytes;
        }
        mt_capture_free(at);
        total += p->at_peak;
    }
    out->totals.peak_bytes = total;
    return 0;
}

/* ---- Totals, header, processes ------------------------------------------ */

static void add_totals(mt_totals_t *t, const mt_totals_t *s, int first)
{
    t->current_bytes += s->current_bytes;
    t->current_count += s->current_count;
    t->total_allocations += s->total_allocations;
    t->total_frees += s->total_frees;
    t->unmatched_frees += s->unmatched_frees;
    t->total_bytes_allocated += s->total_bytes_allocated;
    t->events += s->events;
    t->threads += s->threads;
    t->complete = first ? s->complete : t->complete && s->complete;
    t->events_lost |= s->events_lost;
    if (s->peak_rss_bytes > t->peak_rss_bytes)
        t->peak_rss_bytes = s->peak_rss_bytes;
    for (size_t i = 0; i < MT_ALLOCATOR_COUNT; i++) {
        t->by_allocator[i].bytes += s->by_allocator[i].bytes;
        t->by_allocator[i].count += s->by_allocator[i].count;
    }
    for (size_t i = 0; i < 65; i++)
        t->size_histogram[i] += s->size_histogram[i];
}

/* The combined header is the first process's: its strings move over. */
static int take_header(mt_capture_t *out, mt_capture_t *src)
{
    out->header = src->header;
    out->header_strings = src->header_strings;
    out->argv_storage = src->argv_storage;
    out->python_version = src->python_version;
    src->header_strings = NULL;
    src->argv_storage = NULL;
    src->python_version = NULL;
    /* ...and so do the children it started (mt_capture_children). */
    out->children = src->children;
    out->child_count = src->child_count;
    out->child_cap = src->child_cap;
    src->children = NULL;
    src->child_count = src->child_cap = 0;
    return 0;
}

static int describe(job_t *j, job_proc_t *p, mt_process_t *d, uint64_t base)
{
    const mt_capture_t *c = p->cap;
    const mt_process_t *own = &c->processes[0];
    char *path = strdup(p->path), *command = strdup(own->command);
    if (!path || !command) {
        free(path);
        free(command);
        return MT_ENOMEM;
    }
    if (mt__capture_own(j->out, path) || mt__capture_own(j->out, command))
        return MT_ENOMEM;
    uint64_t off = since(p->start_abs, base);
    *d = *own;
    d->path = path;
    d->command = command;
    d->start_ns = off;
    d->peak_time_ns = off + own->peak_time_ns;
    d->at_peak_bytes = p->at_peak;
    return 0;
}

static int by_start(const void *a, const void *b)
{
    const job_proc_t *x = a, *y = b;
    if (x->start_abs != y->start_abs)
        return x->start_abs < y->start_abs ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* Builds the combined capture of the loaded processes live[0..nlive). */
static int combine(job_t *j, size_t *live, size_t nlive, uint64_t base)
{
    mt_capture_t *out = j->out;
    job_proc_t *first = &j->p[live[0]];
    int rc;
    if (!(out->path = strdup(first->path)) || reserve_nodes(out, 1))
        return MT_ENOMEM;
    out->nodes[0] = (mt_node_t){0, UINT32_MAX, 0};
    out->node_count = 1;
    take_header(out, first->cap);
    mt_window_t *w = &out->window;
    for (size_t i = 0; i < nlive; i++) {
        job_proc_t *p = &j->p[live[i]];
        mt_capture_t *c = p->cap;
        out->header.flags |= c->header.flags;
        if (!out->header.python_version && c->python_version) {
            char *v = strdup(c->python_version);
            if (!v || mt__capture_own(out, v))
                return MT_ENOMEM;
            out->header.python_version = v;
        }
        if ((rc = merge_tables(j, p)))
            return rc;
        add_totals(&out->totals, &c->totals, i == 0);
        if (c->warning && (rc = add_warning(out, p->path, c->warning)))
            return rc;
        uint64_t off = since(p->start_abs, base);
        if (c->window.active) {
            uint64_t from = off + c->window.from_ns, to = off + c->window.to_ns;
            if (!w->active || from < w->from_ns)
                w->from_ns = from;
            if (to > w->to_ns)
                w->to_ns = to;
            w->start_bytes += c->window.start_bytes;
            w->clamped = !w->active ? c->window.clamped
                                    : w->clamped && c->window.clamped;
            w->active = 1;
        }
        if (since(p->end_abs, base) > out->totals.duration_ns)
            out->totals.duration_ns = since(p->end_abs, base);
    }
    peak_t best;
    if ((rc = sweep(j, live, nlive, base, &best)) ||
        (rc = fill_peak(j, live, nlive, &best)))
        return rc;
    out->totals.peak_seq = 0;
    out->totals.peak_time_ns = since(best.t, base);
    if (best.peak_rss > out->totals.peak_rss_bytes)
        out->totals.peak_rss_bytes = best.peak_rss;
    if (!(out->processes = calloc(nlive, sizeof *out->processes)))
        return MT_ENOMEM;
    out->process_count = nlive;
    for (size_t i = 0; i < nlive; i++)
        if ((rc = describe(j, &j->p[live[i]], &out->processes[i], base)))
            return rc;
    return 0;
}

/* ---- The entry point ------------------------------------------------------ */

static void job_free(job_t *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->p[i].path);
        free(j->p[i].map);
        mt_capture_free(j->p[i].cap);
    }
    free(j->p);
    free(j->nodes_ht);
    free(j->code_ht);
}

static int seq_window(const mt_load_opts_t *o)
{
    return o && o->window && (o->from_seq || o->to_seq);
}

/* Loads the job's processes (those joining by a CHILD record only when a
 * process loaded before names them), in start order, into live[]. A
 * process outside the window is left out (the first such message goes to
 * outside); a child that cannot be read too (*notes says why); a given
 * capture that cannot be read is an error (in j->errbuf). */
static int load_all(job_t *j, uint64_t base, size_t *live, size_t *nlive,
                    char *outside, size_t outlen, char **notes)
{
    char err[1024];
    for (size_t i = 0; i < j->n; i++) {
        job_proc_t *p = &j->p[i];
        if (p->loaded < 0) {
            size_t nk;
            int named = 0;
            for (size_t k = 0; k < *nlive && !named; k++) {
                const int64_t *kids =
                    mt_capture_children(j->p[live[k]].cap, &nk);
                for (size_t m = 0; m < nk; m++)
                    named |= kids[m] == p->pid;
            }
            if (!named)
                continue;
        }
        /* Event numbers are one process's own: a window given by them (a
         * stage's) cannot be placed in the others. */
        if (*nlive && seq_window(j->opts))
            return job_error(j, MT_EINVAL, j->p[live[0]].path,
                             "a window by stage name (--from/--to NAME) "
                             "reads one process, and %s is another of this "
                             "job: read this capture alone (--no-children), "
                             "or give the window in seconds", p->path);
        err[0] = 0;
        int r = job_load(j, p, base, err, sizeof err);
        if (r == 1) {
            if (!outside[0])
                snprintf(outside, outlen, "%s", err);
        } else if (r && p->given) {
            if (j->errbuf && j->errlen)
                snprintf(j->errbuf, j->errlen, "%s", err);
            return r;
        } else if (r) {
            size_t ol = *notes ? strlen(*notes) : 0, len = ol + strlen(err) + 64;
            char *nn = realloc(*notes, len);
            if (nn) {
                snprintf(nn + ol, len - ol, "%sa child's capture is left out: %s",
                         ol ? "; " : "", err);
                *notes = nn;
            }
        } else {
            live[(*nlive)++] = i;
        }
    }
    return 0;
}

int mt_capture_load_job(const char *const *paths, size_t n, int find_kids,
                        const mt_load_opts_t *opts, mt_capture_t **out,
                        char *errbuf, size_t errlen)
{
    job_t j = {.opts = opts, .errbuf = errbuf, .errlen = errlen};
    int rc = 0;
    *out = NULL;
    if (errbuf && errlen)
        errbuf[0] = 0;
    if (n == 0)
        return job_error(&j, MT_EINVAL, "memtrace", "no capture given");
    /* A pipe can be read once only: no header probe, no children. */
    struct stat st;
    if (n == 1 && (!find_kids || (stat(paths[0], &st) == 0 &&
                                   !S_ISREG(st.st_mode))))
        return mt_capture_load(paths[0], opts, out, errbuf, errlen);
    if (n > 1 && seq_window(opts))
        return job_error(&j, MT_EINVAL, paths[0], "a window by stage name "
                         "(--from/--to NAME) reads one process: name one "
                         "capture, or give the window in seconds");
    for (size_t i = 0; i < n; i++)
        if (stat(paths[i], &st) == 0 && !S_ISREG(st.st_mode))
            return job_error(&j, MT_EINVAL, paths[i], "not a regular file: "
                             "captures combined with others must be files");
    for (size_t i = 0; i < n && !rc; i++) {
        long k = job_add(&j, paths[i], 1);
        if (k < -1)
            rc = job_error(&j, (int)k, paths[i], "cannot open: %s",
                           mt_strerror((int)k));
        else if (k >= 0)
            rc = job_probe(&j, &j.p[k], errbuf, errlen);
    }
    if (!rc && find_kids)
        rc = find_children(&j);
    /* The first to start comes first; its start is the job's time 0. */
    if (!rc)
        qsort(j.p, j.n, sizeof *j.p, by_start);
    size_t *live = rc ? NULL : calloc(j.n ? j.n : 1, sizeof *live), nlive = 0;
    if (!rc && !live)
        rc = job_error(&j, MT_ENOMEM, paths[0], "out of memory");
    uint64_t base = UINT64_MAX;
    for (size_t i = 0; !rc && i < j.n; i++)
        if (j.p[i].loaded >= 0 && j.p[i].start_abs < base)
            base = j.p[i].start_abs;
    char outside[1024] = "";
    char *notes = NULL; /* children that could not be read */
    if (!rc)
        rc = load_all(&j, base, live, &nlive, outside, sizeof outside, &notes);
    if (!rc && nlive == 0) {
        rc = MT_ERANGE;
        if (outside[0])
            snprintf(errbuf, errlen, "%s", outside);
        else
            job_error(&j, rc, paths[0], "no process of the job ran inside "
                                        "the window");
    }
    /* One process and no other in the job: it is the capture as it is. */
    if (!rc && nlive == 1 && j.p[live[0]].start_abs == base) {
        *out = j.p[live[0]].cap;
        j.p[live[0]].cap = NULL;
    } else if (!rc) {
        if (!(j.out = calloc(1, sizeof *j.out)))
            rc = MT_ENOMEM;
        else
            rc = combine(&j, live, nlive, base);
        if (rc) {
            if (!errbuf || !errbuf[0])
                job_error(&j, rc, paths[0], "%s", mt_strerror(rc));
            mt_capture_free(j.out);
        } else {
            *out = j.out;
        }
    }
    if (!rc && notes) {
        mt_capture_t *c = *out;
        size_t ol = c->warning ? strlen(c->warning) : 0;
        char *w = malloc(ol + 2 + strlen(notes) + 1);
        if (w) {
            sprintf(w, "%s%s%s", ol ? c->warning : "", ol ? "; " : "", notes);
            free(c->warning);
            c->warning = w;
        }
    }
    free(notes);
    free(live);
    job_free(&j);
    return rc;
}
