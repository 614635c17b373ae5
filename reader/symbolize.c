/* symbolize.c: offline symbolization of native frames. The traced process is
 * gone, so every module is opened from disk with libdw's Dwfl offline API,
 * placed at the load bias the tracer recorded, and asked for the function,
 * the source line and the chain of inlined calls at each return address.
 *
 * Everything is lazy and cached: a module is opened the first time a node
 * needs it (once, however many nodes use it); an address is resolved once
 * (nodes that share a return address share its frames); a node remembers its
 * frames. All strings handed out are interned in an arena owned by the
 * symbolizer, so they stay valid until mt_capture_free. */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/format.h"
#include "reader/capture_internal.h"

/* The C++ runtime's demangler (libstdc++ is linked into mt_reader for it).
 * Declared here so this file stays C. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len,
                            int *status);

/* Deepest inline chain kept for one address; deeper chains keep their
 * innermost frames and the real function. */
#define SYM_MAX_DEPTH 64

/* Where libdw looks for separate debug info: NULL means its default,
 * ":.debug:/usr/lib/debug", which covers the file's own directory,
 * .debug/ beside it, and Debian's /usr/lib/debug/.build-id/xx/yyyy.debug.
 * Read-only; no lock needed. */
static char *sym_debuginfo_path = NULL;

/* Offline callbacks: the main file is always given by path, so find_elf is
 * only a formality; dwfl_standard_find_debuginfo follows the build-id and
 * .gnu_debuglink (and debuginfod when the user set DEBUGINFOD_URLS, as gdb
 * does). Constant; no lock needed. */
static const Dwfl_Callbacks sym_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &sym_debuginfo_path,
};

enum { SYM_MOD_UNTRIED = 0, SYM_MOD_OK, SYM_MOD_UNUSABLE };

/* One function symbol of a module's symbol table, for binary search:
 * dwfl_module_addrinfo scans the whole table on every call, which costs
 * tens of microseconds per address in a library like libpython. */
typedef struct sym_fn_s {
    uint64_t addr, size;  /* dwfl addresses */
    const char *name;     /* borrowed from libelf, valid while dwfl lives */
    int rank;             /* 0 global, 1 weak, 2 local */
} sym_fn_t;

/* The code ranges of one function DIE at the top of a CU. */
typedef struct sym_fnrange_s {
    Dwarf_Addr lo, hi;   /* DWARF addresses, [lo, hi) */
    Dwarf_Die die;       /* the DW_TAG_subprogram */
} sym_fnrange_t;

/* The functions of one CU sorted by address, built the first time an
 * address falls in that CU. dwarf_getscopes walks the CU from its root for
 * every address (twice with inlining); with this index one lookup walks
 * only the one function's subtree. */
typedef struct sym_cu_s {
    Dwarf_Off off;       /* the CU DIE's offset; the hash key */
    int used;
    sym_fnrange_t *fns;
    size_t n;
} sym_cu_t;

/* One capture module as the symbolizer sees it. The libdw session and the
 * indexes live in the module's owner: itself, or an identical earlier
 * module (same file at the same bias) that shares them. */
typedef struct sym_module_s {
    int state;           /* SYM_MOD_* */
    uint32_t owner;      /* index of the module holding the session */
    Dwfl *dwfl;          /* one session per opened file (owner only) */
    Dwfl_Module *mod;
    uint64_t shift;      /* dwfl address = runtime address + shift */
    const char *path;    /* interned */
    const char *base;    /* interned basename, for "base+0xOFFSET" */
    sym_fn_t *fns;       /* function symbols sorted by addr */
    size_t nfns;
    int fns_state;       /* 0 not read yet, 1 read, -1 unreadable */
    sym_cu_t *cus;       /* open addressing, power-of-two capacity */
    size_t cu_cap, cu_used;
} sym_module_t;

/* A run of frames in the frame table; count 0 means "not resolved yet". */
typedef struct sym_range_s {
    uint32_t first, count;
} sym_range_t;

/* One resolved (module, return address); count 0 marks an empty slot. */
typedef struct sym_ipslot_s {
    uint64_t ip;
    uint32_t module;
    sym_range_t range;
} sym_ipslot_t;

/* Arena chunk for interned strings. */
typedef struct sym_chunk_s {
    struct sym_chunk_s *next;
    size_t used, size;
    char data[];
} sym_chunk_t;

struct mt_symbolizer_s {
    sym_module_t *mods;
    size_t nmods;
    sym_range_t *nodes;      /* per node cache */
    size_t nnodes;
    sym_ipslot_t *ips;       /* open addressing, power-of-two capacity */
    size_t ip_cap, ip_used;
    mt_frame_t *frames;      /* every resolved frame, in ranges */
    size_t nframes, frames_cap;
    const char **strs;       /* intern table, open addressing */
    size_t str_cap, str_used;
    sym_chunk_t *chunks;
};

/* Returned (not cached) when memory runs out: static strings, never freed. */
static const mt_frame_t sym_oom_frame = {"??", "", 0, "", 0, 0};

/* ---- strings ----------------------------------------------------------- */

static uint64_t sym_hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static char *sym_arena_alloc(mt_symbolizer_t *s, size_t n)
{
    sym_chunk_t *c = s->chunks;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > 65536 - sizeof *c ? n : 65536 - sizeof *c;
        c = malloc(sizeof *c + size);
        if (c == NULL)
            return NULL;
        c->size = size;
        c->used = 0;
        if (s->chunks != NULL && n > s->chunks->size / 2) {
            /* A big string gets its own chunk behind the current one, so
             * the current chunk's free space is not wasted. */
            c->next = s->chunks->next;
            s->chunks->next = c;
        } else {
            c->next = s->chunks;
            s->chunks = c;
        }
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

static int sym_strs_grow(mt_symbolizer_t *s)
{
    size_t cap = s->str_cap ? s->str_cap * 2 : 1024;
    const char **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return MT_ENOMEM;
    for (size_t i = 0; i < s->str_cap; i++) {
        const char *str = s->strs[i];
        if (str == NULL)
            continue;
        size_t j = sym_hash_bytes(str, strlen(str)) & (cap - 1);
        while (t[j] != NULL)
            j = (j + 1) & (cap - 1);
        t[j] = str;
    }
    free(s->strs);
    s->strs = t;
    s->str_cap = cap;
    return 0;
}

/* Returns the interned copy of p[0..n) (owned by s), or NULL when out of
 * memory. Frames repeat the same file and function names many times. */
static const char *sym_intern_n(mt_symbolizer_t *s, const char *p, size_t n)
{
    if ((s->str_used + 1) * 2 > s->str_cap && sym_strs_grow(s) != 0)
        return NULL;
    size_t j = sym_hash_bytes(p, n) & (s->str_cap - 1);
    for (; s->strs[j] != NULL; j = (j + 1) & (s->str_cap - 1)) {
        const char *t = s->strs[j];
        if (strncmp(t, p, n) == 0 && t[n] == '\0')
            return t;
    }
    char *copy = sym_arena_alloc(s, n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, p, n);
    copy[n] = '\0';
    s->strs[j] = copy;
    s->str_used++;
    return copy;
}

static const char *sym_intern(mt_symbolizer_t *s, const char *str)
{
    return sym_intern_n(s, str, strlen(str));
}

static const char *sym_internf(mt_symbolizer_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* printf into the intern table. */
static const char *sym_internf(mt_symbolizer_t *s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    if ((size_t)n < sizeof buf)
        return sym_intern_n(s, buf, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    const char *r = sym_intern_n(s, big, (size_t)n);
    free(big);
    return r;
}

/* Interns name, demangled when it is an Itanium C++ (or legacy Rust)
 * mangled name; C names are kept as they are. */
static const char *sym_intern_function(mt_symbolizer_t *s, const char *name)
{
    if (name[0] == '_' && name[1] == 'Z') {
        int status = -1;
        char *d = __cxa_demangle(name, NULL, NULL, &status);
        if (d != NULL && status == 0) {
            const char *r = sym_intern(s, d);
            free(d);
            return r;
        }
        free(d);
    }
    return sym_intern(s, name);
}

/* Interns a source path; a path relative to the compilation directory is
 * made absolute with the CU's DW_AT_comp_dir when there is one. */
static const char *sym_intern_source(mt_symbolizer_t *s, Dwarf_Die *cu,
                                     const char *file)
{
    if (file[0] != '/' && cu != NULL) {
        Dwarf_Attribute attr;
        const char *dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr));
        if (dir != NULL && dir[0] != '\0')
            return sym_internf(s, "%s/%s", dir, file);
    }
    return sym_intern(s, file);
}

/* ---- modules ----------------------------------------------------------- */

/* Is the file's build-id the one the tracer recorded? A module without a
 * recorded build-id is trusted as it is. */
static int sym_build_id_matches(Dwfl_Module *mod, const mt_module_t *cm)
{
    if (cm->build_id_len == 0)
        return 1;
    const unsigned char *bits = NULL;
    GElf_Addr vaddr;
    int n = dwfl_module_build_id(mod, &bits, &vaddr);
    return n > 0 && (size_t)n == cm->build_id_len
           && memcmp(bits, cm->build_id, cm->build_id_len) == 0;
}

/* Orders symbols by address; at one address the global name first, then
 * weak, then local (the exported name is the one users know), then the
 * larger one. */
static int sym_fn_cmp(const void *a, const void *b)
{
    const sym_fn_t *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int sym_binding_rank(const GElf_Sym *sym)
{
    switch (GELF_ST_BIND(sym->st_info)) {
    case STB_GLOBAL: return 0;
    case STB_WEAK: return 1;
    default: return 2;
    }
}

/* Reads the module's function symbols (its .symtab, from the separate
 * debug file when there is one, else .dynsym) into a sorted array, once.
 * Failure leaves the module without symbols, which is not an error. */
static void sym_module_symbols(sym_module_t *sm)
{
    if (sm->fns_state != 0)
        return;
    sm->fns_state = -1;
    int n = dwfl_module_getsymtab(sm->mod);
    if (n <= 1)
        return;
    sym_fn_t *fns = malloc((size_t)n * sizeof *fns);
    if (fns == NULL)
        return;
    size_t count = 0;
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        GElf_Word shndx;
        const char *name = dwfl_module_getsym_info(sm->mod, i, &sym, &addr,
                                                   &shndx, NULL, NULL);
        int type = GELF_ST_TYPE(sym.st_info);
        if (name == NULL || name[0] == '\0' || sym.st_shndx == SHN_UNDEF
            || (type != STT_FUNC && type != STT_GNU_IFUNC))
            continue;
        fns[count++] = (sym_fn_t){addr, sym.st_size, name, sym_binding_rank(&sym)};
    }
    qsort(fns, count, sizeof *fns, sym_fn_cmp);
    size_t out = 0; /* one symbol per address: the first in that order */
    for (size_t i = 0; i < count; i++)
        if (out == 0 || fns[out - 1].addr != fns[i].addr)
            fns[out++] = fns[i];
    sm->fns = fns;
    sm->nfns = out;
    sm->fns_state = 1;
}

/* The name of the function symbol holding dwfl address addr, or NULL. A
 * symbol of size 0 (hand-written assembly) holds everything up to the
 * next symbol. */
static const char *sym_module_symbol_at(sym_module_t *sm, uint64_t addr)
{
    sym_module_symbols(sm);
    size_t lo = 0, hi = sm->nfns;
    while (lo < hi) { /* first symbol above addr */
        size_t mid = lo + (hi - lo) / 2;
        if (sm->fns[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const sym_fn_t *f = &sm->fns[lo - 1];
    if (f->size == 0 || addr - f->addr < f->size)
        return f->name;
    /* A symbol that ends before addr may sit inside a bigger one. */
    for (size_t i = lo - 1, steps = 0; i-- > 0 && steps < 8; steps++)
        if (addr - sm->fns[i].addr < sm->fns[i].size)
            return sm->fns[i].name;
    return NULL;
}

/* Opens capture module m with its own Dwfl session, placed at the recorded
 * bias. A module whose file is missing, is not a regular file, is not ELF,
 * or has another build-id is marked unusable: its frames become
 * "module+0xOFFSET". Never fails otherwise (errors mean "unusable"). */
static void sym_module_open(mt_symbolizer_t *s, const mt_capture_t *cap,
                            uint32_t m)
{
    sym_module_t *sm = &s->mods[m];
    const mt_module_t *cm = &cap->modules[m];
    sm->state = SYM_MOD_UNUSABLE;

    /* An identical earlier module (same file at the same bias, e.g. a
     * library dlopen'ed again at the same address) shares its session. */
    for (uint32_t j = 0; j < m; j++) {
        const mt_module_t *o = &cap->modules[j];
        if (s->mods[j].state == SYM_MOD_OK && o->bias == cm->bias && cm->path
            && o->build_id_len == cm->build_id_len
            && strcmp(o->path, cm->path) == 0
            && (cm->build_id_len == 0
                || memcmp(o->build_id, cm->build_id, cm->build_id_len) == 0)) {
            sm->owner = s->mods[j].owner;
            sm->state = SYM_MOD_OK;
            return;
        }
    }

    /* Only regular files: open() on a FIFO would block, and a directory or
     * a device is no ELF file anyway. */
    struct stat st;
    if (cm->path == NULL || cm->path[0] == '\0' || stat(cm->path, &st) != 0
        || !S_ISREG(st.st_mode) || st.st_size == 0)
        return;
    Dwfl *dwfl = dwfl_begin(&sym_callbacks);
    if (dwfl == NULL)
        return;
    dwfl_report_begin(dwfl);
    /* add_p_vaddr: base is the load bias (runtime = p_vaddr + base), which
     * also places prelinked libraries right. ET_EXEC ignores the base. */
    Dwfl_Module *mod = dwfl_report_elf(dwfl, cm->path, cm->path, -1, cm->bias, true);
    if (dwfl_report_end(dwfl, NULL, NULL) != 0 || mod == NULL) {
        dwfl_end(dwfl);
        return;
    }
    GElf_Addr bias = 0;
    if (dwfl_module_getelf(mod, &bias) == NULL || !sym_build_id_matches(mod, cm)) {
        dwfl_end(dwfl);
        return;
    }
    sm->dwfl = dwfl;
    sm->mod = mod;
    /* Normally 0; differs for an ET_EXEC file reported with a recorded bias
     * it does not have. */
    sm->shift = bias - cm->bias;
    sm->owner = m;
    sm->state = SYM_MOD_OK;
}

/* ---- frames ------------------------------------------------------------ */

static int sym_push_frame(mt_symbolizer_t *s, const char *function,
                          const char *file, unsigned line, const char *module,
                          int inlined)
{
    if (function == NULL || file == NULL)
        return MT_ENOMEM;
    if (s->nframes == s->frames_cap) {
        size_t cap = s->frames_cap ? s->frames_cap * 2 : 256;
        if (cap > UINT32_MAX)
            return MT_ETOOBIG;
        mt_frame_t *f = realloc(s->frames, cap * sizeof *f);
        if (f == NULL)
            return MT_ENOMEM;
        s->frames = f;
        s->frames_cap = cap;
    }
    s->frames[s->nframes++] = (mt_frame_t){function, file, line, module, inlined, 0};
    return 0;
}

/* The name of a subprogram or inlined subroutine DIE, followed through
 * abstract_origin/specification: the linkage name when it is a mangled C++
 * name (demangled later, it carries the scope and parameters), else
 * DW_AT_name. A C linkage name is only an asm label (glibc's "__GI_lfind"
 * for lfind), so C keeps its source name. */
static const char *sym_die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *name =
        dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
    if (name == NULL)
        name = dwarf_formstring(
            dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
    if (name != NULL && name[0] == '_' && name[1] == 'Z')
        return name;
    name = dwarf_diename(die);
    return name;
}

/* The call site an inlined subroutine DIE records: file and line of the
 * call in the function that contains it. *file is NULL when unknown. */
static void sym_call_site(Dwarf_Die *die, const char **file, unsigned *line,
                          Dwarf_Die *cu)
{
    Dwarf_Attribute attr;
    Dwarf_Word idx = 0, ln = 0;
    Dwarf_Files *files;
    size_t nfiles;
    *file = NULL;
    *line = 0;
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &ln) == 0)
        *line = ln > UINT32_MAX ? 0 : (unsigned)ln;
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &idx) != 0
        || dwarf_diecu(die, cu, NULL, NULL) == NULL
        || dwarf_getsrcfiles(cu, &files, &nfiles) != 0 || idx >= nfiles)
        return;
    *file = dwarf_filesrc(files, idx, NULL, NULL);
}

/* The chain of function DIEs at pc, innermost first: every
 * DW_TAG_inlined_subroutine and then the DW_TAG_subprogram that holds them.
 * Returns how many were stored in out (at most max), 0 when the DWARF has
 * no function there. The general way, for what the CU index misses. */
static int sym_scopes_chain(Dwarf_Die *cudie, Dwarf_Addr pc, Dwarf_Die *out,
                            int max)
{
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cudie, pc, &scopes);
    if (n <= 0)
        return 0;
    /* dwarf_getscopes stops at the innermost inlined instance and continues
     * in its abstract definition; the concrete chain of callers comes from
     * the scopes around that innermost DIE. */
    for (int i = 0; i < n; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag == DW_TAG_subprogram)
            break;
        if (tag == DW_TAG_inlined_subroutine) {
            Dwarf_Die *chain = NULL;
            int m = dwarf_getscopes_die(&scopes[0], &chain);
            free(scopes);
            scopes = chain;
            n = m;
            break;
        }
    }
    int count = 0;
    for (int i = 0; i < n; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram)
            continue;
        if (count == max - 1 && tag != DW_TAG_subprogram)
            continue; /* too deep: keep room for the real function */
        out[count++] = scopes[i];
        if (tag == DW_TAG_subprogram)
            break;
    }
    free(scopes);
    return count;
}

/* By address, then in DIE order: the assembler describes aliases as
 * several subprograms over the same code, and the first is the name the
 * source gave (dwarf_getscopes finds that one too). */
static int sym_fnrange_cmp(const void *a, const void *b)
{
    const sym_fnrange_t *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    uintptr_t dx = (uintptr_t)x->die.addr, dy = (uintptr_t)y->die.addr;
    return dx < dy ? -1 : dx > dy;
}

/* Appends die's code ranges to cu->fns. Returns 0 or MT_ENOMEM. */
static int sym_add_ranges(sym_cu_t *cu, size_t *cap, Dwarf_Die *die)
{
    Dwarf_Addr base, lo, hi;
    ptrdiff_t off = 0;
    while ((off = dwarf_ranges(die, off, &base, &lo, &hi)) > 0) {
        if (lo >= hi)
            continue;
        if (cu->n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            sym_fnrange_t *f = realloc(cu->fns, ncap * sizeof *f);
            if (f == NULL)
                return MT_ENOMEM;
            cu->fns = f;
            *cap = ncap;
        }
        cu->fns[cu->n++] = (sym_fnrange_t){lo, hi, *die};
    }
    return 0;
}

/* Collects the functions among parent's children, looking inside the
 * namespaces and classes where C++ may put definitions. */
static int sym_collect_functions(sym_cu_t *cu, size_t *cap, Dwarf_Die *parent,
                                 int depth)
{
    Dwarf_Die die;
    if (depth > 16 || dwarf_child(parent, &die) != 0)
        return 0;
    do {
        int tag = dwarf_tag(&die), err = 0;
        if (tag == DW_TAG_subprogram)
            err = sym_add_ranges(cu, cap, &die);
        else if (tag == DW_TAG_namespace || tag == DW_TAG_class_type
                 || tag == DW_TAG_structure_type || tag == DW_TAG_union_type)
            err = sym_collect_functions(cu, cap, &die, depth + 1);
        if (err != 0)
            return err;
    } while (dwarf_siblingof(&die, &die) == 0);
    return 0;
}

/* The function index of cudie's CU, built on first use; NULL when out of
 * memory. */
static sym_cu_t *sym_cu_index(sym_module_t *sm, Dwarf_Die *cudie)
{
    if ((sm->cu_used + 1) * 2 > sm->cu_cap) {
        size_t cap = sm->cu_cap ? sm->cu_cap * 2 : 64;
        sym_cu_t *t = calloc(cap, sizeof *t);
        if (t == NULL)
            return NULL;
        for (size_t i = 0; i < sm->cu_cap; i++) {
            if (!sm->cus[i].used)
                continue;
            size_t j = (sm->cus[i].off * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
            while (t[j].used)
                j = (j + 1) & (cap - 1);
            t[j] = sm->cus[i];
        }
        free(sm->cus);
        sm->cus = t;
        sm->cu_cap = cap;
    }
    Dwarf_Off off = dwarf_dieoffset(cudie);
    size_t j = (off * 0x9e3779b97f4a7c15ull >> 20) & (sm->cu_cap - 1);
    for (; sm->cus[j].used; j = (j + 1) & (sm->cu_cap - 1))
        if (sm->cus[j].off == off)
            return &sm->cus[j];
    sym_cu_t cu = {off, 1, NULL, 0};
    size_t cap = 0;
    if (sym_collect_functions(&cu, &cap, cudie, 0) != 0) {
        free(cu.fns);
        return NULL;
    }
    qsort(cu.fns, cu.n, sizeof *cu.fns, sym_fnrange_cmp);
    sm->cus[j] = cu;
    sm->cu_used++;
    return &sm->cus[j];
}

/* The function whose code holds pc, or NULL. */
static Dwarf_Die *sym_cu_function(sym_cu_t *cu, Dwarf_Addr pc)
{
    size_t lo = 0, hi = cu->n;
    while (lo < hi) { /* first range starting above pc */
        size_t mid = lo + (hi - lo) / 2;
        if (cu->fns[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Ranges of distinct functions do not overlap, but look a few back in
     * case one range sits inside another. */
    for (size_t i = lo, steps = 0; i-- > 0 && steps < 4; steps++) {
        if (pc >= cu->fns[i].hi)
            continue;
        /* The first of aliases over the same code. */
        while (i > 0 && cu->fns[i - 1].lo == cu->fns[i].lo
               && pc < cu->fns[i - 1].hi)
            i--;
        return &cu->fns[i].die;
    }
    return NULL;
}

/* The inline chain at pc inside function fn, innermost first, fn last:
 * descends through the lexical blocks and inlined subroutines whose code
 * holds pc. Returns the number stored in out (at most SYM_MAX_DEPTH). */
static int sym_descend(Dwarf_Die *fn, Dwarf_Addr pc, Dwarf_Die *out)
{
    Dwarf_Die path[SYM_MAX_DEPTH]; /* outermost first */
    int n = 0;
    path[n++] = *fn;
    Dwarf_Die cur = *fn, child;
    for (int guard = 0; guard < 4096; guard++) {
        int found = 0;
        if (dwarf_child(&cur, &child) == 0) {
            do {
                int tag = dwarf_tag(&child);
                if ((tag == DW_TAG_lexical_block
                     || tag == DW_TAG_inlined_subroutine)
                    && dwarf_haspc(&child, pc) > 0) {
                    found = 1;
                    break;
                }
            } while (dwarf_siblingof(&child, &child) == 0);
        }
        if (!found)
            break;
        cur = child;
        if (dwarf_tag(&cur) != DW_TAG_inlined_subroutine)
            continue;
        if (n == SYM_MAX_DEPTH) {
            /* Too deep: drop the outermost inlined frame, keep fn. */
            memmove(&path[1], &path[2], (size_t)(n - 2) * sizeof path[0]);
            n--;
        }
        path[n++] = cur;
    }
    for (int i = 0; i < n; i++)
        out[i] = path[n - 1 - i];
    return n;
}

/* The chain of function DIEs at pc (see sym_scopes_chain) through the CU's
 * function index; falls back to dwarf_getscopes for what it misses. out
 * has room for SYM_MAX_DEPTH. */
static int sym_function_chain(sym_module_t *sm, Dwarf_Die *cudie,
                              Dwarf_Addr pc, Dwarf_Die *out)
{
    sym_cu_t *cu = sym_cu_index(sm, cudie);
    Dwarf_Die *fn = cu != NULL ? sym_cu_function(cu, pc) : NULL;
    if (fn != NULL)
        return sym_descend(fn, pc, out);
    return sym_scopes_chain(cudie, pc, out, SYM_MAX_DEPTH);
}

/* Frames from the module's symbols and DWARF at runtime address addr.
 * Returns 0 (frames pushed), 1 when the module knows nothing there, or a
 * negative MT_E* code. */
static int sym_resolve_known(mt_symbolizer_t *s, sym_module_t *sm,
                             Dwarf_Addr addr)
{
    Dwfl_Module *mod = sm->mod;
    addr += sm->shift;
    Dwarf_Addr start = 0, end = 0;
    if (dwfl_module_info(mod, NULL, &start, &end, NULL, NULL, NULL, NULL) == NULL
        || addr < start || addr >= end)
        return 1; /* outside the file's segments: not this file's code */

    /* The innermost location comes from the line table. */
    const char *src = NULL;
    unsigned src_line = 0;
    Dwarf_Die src_cu_mem, *src_cu = NULL;
    Dwfl_Line *dl = dwfl_module_getsrc(mod, addr);
    if (dl != NULL) {
        int lineno = 0;
        src = dwfl_lineinfo(dl, NULL, &lineno, NULL, NULL, NULL);
        src_line = lineno > 0 ? (unsigned)lineno : 0;
        src_cu = dwfl_linecu(dl);
        if (src_cu != NULL) {
            src_cu_mem = *src_cu;
            src_cu = &src_cu_mem;
        }
    }

    Dwarf_Die chain[SYM_MAX_DEPTH];
    int depth = 0;
    Dwarf_Addr dwbias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, addr, &dwbias);
    if (cudie != NULL)
        depth = sym_function_chain(sm, cudie, addr - dwbias, chain);

    /* The real function's name: DWARF's, else the symbol table's. */
    const char *outer = depth > 0 ? sym_die_name(&chain[depth - 1]) : NULL;
    if (outer == NULL)
        outer = sym_module_symbol_at(sm, addr);
    if (outer == NULL && depth <= 1)
        return 1;

    const char *file = src ? sym_intern_source(s, src_cu, src) : sm->path;
    unsigned line = src ? src_line : 0;
    if (depth <= 1)
        return sym_push_frame(s, sym_intern_function(s, outer), file, line,
                              sm->path, 0);
    for (int i = 0; i < depth; i++) {
        const char *name = i == depth - 1 ? outer : sym_die_name(&chain[i]);
        int err = sym_push_frame(s, sym_intern_function(s, name ? name : "??"),
                                 file, line, sm->path, i < depth - 1);
        if (err != 0 || i == depth - 1)
            return err;
        /* The next (outer) frame is at this inlined instance's call site. */
        Dwarf_Die cu;
        const char *call_file;
        sym_call_site(&chain[i], &call_file, &line, &cu);
        file = call_file ? sym_intern_source(s, &cu, call_file) : sm->path;
        if (call_file == NULL)
            line = 0;
    }
    return 0;
}

/* Resolves (module m, return address ip) into frames appended to the frame
 * table; *range tells where. Returns 0 or a negative MT_E* code. */
static int sym_resolve(mt_symbolizer_t *s, const mt_capture_t *cap, uint32_t m,
                       uint64_t ip, sym_range_t *range)
{
    size_t first = s->nframes;
    int err;
    if (m >= cap->module_count) {
        err = sym_push_frame(s, sym_internf(s, "0x%" PRIx64, ip), sym_intern(s, ""),
                             0, sym_intern(s, ""), 0);
        goto done;
    }
    sym_module_t *sm = &s->mods[m];
    if (sm->state == SYM_MOD_UNTRIED) {
        const char *path = cap->modules[m].path ? cap->modules[m].path : "";
        const char *slash = strrchr(path, '/');
        sm->path = sym_intern(s, path);
        sm->base = sym_intern(s, slash ? slash + 1 : path);
        if (sm->path == NULL || sm->base == NULL)
            return MT_ENOMEM;
        sym_module_open(s, cap, m);
    }
    /* A return address follows the call instruction: ip - 1 is inside the
     * call, so its line is the call's line (ip itself may already belong to
     * the next line, or even to the next function after a noreturn call). */
    uint64_t addr = ip - 1;
    err = 1;
    if (sm->state == SYM_MOD_OK && ip != 0)
        err = sym_resolve_known(s, &s->mods[sm->owner], addr);
    if (err > 0) {
        s->nframes = first;
        /* The offset is file-relative (runtime address minus load bias) and
         * of ip - 1, so `addr2line -e MODULE 0xOFFSET` names the call. */
        err = sym_push_frame(s,
                             sym_internf(s, "%s+0x%" PRIx64,
                                         sm->base[0] ? sm->base : "?",
                                         addr - cap->modules[m].bias),
                             sm->path, 0, sm->path, 0);
    }
done:
    if (err != 0) {
        s->nframes = first;
        return err;
    }
    range->first = (uint32_t)first;
    range->count = (uint32_t)(s->nframes - first);
    return 0;
}

/* ---- caches ------------------------------------------------------------ */

static size_t sym_ip_hash(uint32_t module, uint64_t ip)
{
    uint64_t h = (ip ^ ((uint64_t)module << 48)) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17);
}

static int sym_ips_grow(mt_symbolizer_t *s)
{
    size_t cap = s->ip_cap ? s->ip_cap * 2 : 1024;
    sym_ipslot_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return MT_ENOMEM;
    for (size_t i = 0; i < s->ip_cap; i++) {
        if (s->ips[i].range.count == 0)
            continue;
        size_t j = sym_ip_hash(s->ips[i].module, s->ips[i].ip) & (cap - 1);
        while (t[j].range.count != 0)
            j = (j + 1) & (cap - 1);
        t[j] = s->ips[i];
    }
    free(s->ips);
    s->ips = t;
    s->ip_cap = cap;
    return 0;
}

/* The frames of (module, ip), resolved on first use. */
static int sym_lookup_ip(mt_symbolizer_t *s, const mt_capture_t *cap,
                         uint32_t module, uint64_t ip, sym_range_t *out)
{
    if ((s->ip_used + 1) * 2 > s->ip_cap && sym_ips_grow(s) != 0)
        return MT_ENOMEM;
    size_t j = sym_ip_hash(module, ip) & (s->ip_cap - 1);
    for (; s->ips[j].range.count != 0; j = (j + 1) & (s->ip_cap - 1)) {
        if (s->ips[j].ip == ip && s->ips[j].module == module) {
            *out = s->ips[j].range;
            return 0;
        }
    }
    int err = sym_resolve(s, cap, module, ip, out);
    if (err != 0)
        return err;
    s->ips[j] = (sym_ipslot_t){ip, module, *out};
    s->ip_used++;
    return 0;
}

/* Grows the per-module and per-node tables to the capture's sizes. */
static int sym_fit(mt_symbolizer_t *s, const mt_capture_t *cap)
{
    if (cap->module_count > s->nmods) {
        sym_module_t *m = realloc(s->mods, cap->module_count * sizeof *m);
        if (m == NULL)
            return MT_ENOMEM;
        memset(m + s->nmods, 0, (cap->module_count - s->nmods) * sizeof *m);
        s->mods = m;
        s->nmods = cap->module_count;
    }
    if (cap->node_count > s->nnodes) {
        sym_range_t *n = realloc(s->nodes, cap->node_count * sizeof *n);
        if (n == NULL)
            return MT_ENOMEM;
        memset(n + s->nnodes, 0, (cap->node_count - s->nnodes) * sizeof *n);
        s->nodes = n;
        s->nnodes = cap->node_count;
    }
    return 0;
}

/* ---- public ------------------------------------------------------------ */

/* Symbolizes node's frame; see reader.h. Returns the number of frames
 * written to frames (at most max; the innermost ones when max is smaller
 * than the inline chain), 0 for the root, an unknown node or max == 0.
 * Out of memory yields one "??" frame that is not cached. */
size_t mt_capture_frames(mt_capture_t *cap, uint32_t node, mt_frame_t *frames,
                         size_t max)
{
    if (cap == NULL || node == 0 || node >= cap->node_count || max == 0)
        return 0;
    uint64_t ip = cap->nodes[node].ip;
    if (ip & MT_NODE_PYTHON) {
        /* A Python frame: code id and line are in the key itself. */
        uint32_t id = (uint32_t)((ip >> 32) & 0x7fffffffu);
        const struct mt_pycode_s *pc =
            id && id <= cap->pycode_count ? &cap->pycodes[id] : NULL;
        frames[0] = (mt_frame_t){
            .function = pc && pc->name ? pc->name : "<unknown>",
            .file = pc && pc->file ? pc->file : "<unknown>",
            .line = (uint32_t)ip,
            .module = "",
            .python = 1,
        };
        return 1;
    }
    mt_symbolizer_t *s = cap->symbolizer;
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            goto oom;
        cap->symbolizer = s;
    }
    if (sym_fit(s, cap) != 0)
        goto oom;
    sym_range_t *r = &s->nodes[node];
    if (r->count == 0) {
        const mt_node_t *n = &cap->nodes[node];
        if (sym_lookup_ip(s, cap, n->module, n->ip, r) != 0)
            goto oom;
    }
    size_t count = r->count < max ? r->count : max;
    memcpy(frames, s->frames + r->first, count * sizeof *frames);
    return count;
oom:
    frames[0] = sym_oom_frame;
    return 1;
}

/* Frees the symbolizer: libdw sessions, caches and every interned string.
 * NULL is fine. */
void mt__symbolizer_free(mt_symbolizer_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nmods; i++)
        if (s->mods[i].state == SYM_MOD_OK && s->mods[i].owner == i) {
            sym_module_t *sm = &s->mods[i];
            for (size_t j = 0; j < sm->cu_cap; j++)
                free(sm->cus[j].fns);
            free(sm->cus);
            free(sm->fns);
            dwfl_end(sm->dwfl);
        }
    free(s->mods);
    free(s->nodes);
    free(s->ips);
    free(s->frames);
    free(s->strs);
    for (sym_chunk_t *c = s->chunks, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(s);
}
