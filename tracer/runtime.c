/* runtime.c: tracing that starts and stops inside a running process that
 * was not started by `memtrace run` (memtrace.Tracker). Nothing was
 * preloaded, so the allocation calls of every loaded object are redirected
 * to the hooks by rewriting their relocation slots (the GOT entries the
 * dynamic loader filled with malloc, free, ...), and put back at the end.
 * Objects loaded while tracing are patched by the dlopen hook. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtrace/memtrace.h"
#include "memtrace/tracer.h"
#include "tracer.h"

/* One rewritten slot: where, what it held, and the object it belongs to
 * (so slots of an object that was unloaded are never written again). */
typedef struct {
    void **slot;
    void *orig;
    uintptr_t obj_base;
} patch_t;

static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;
static patch_t *patches;           /* patch_lock */
static size_t patch_count, patch_cap; /* patch_lock */
static int runtime_mode;           /* patch_lock: tracing started at run time */

/* The functions we redirect, by symbol name, and their hooks here. The
 * last two are not exported (a preloaded dlsym would break RTLD_NEXT for
 * everyone): they exist only as patched slots, so that a program asking
 * dlsym for malloc while tracing (ctypes does) gets the hook. */
static const char *const hooked_names[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "mmap", "mmap64",
    "munmap", "mremap", "dlopen", "dlclose", "_exit", "_Exit",
    "dlsym", "dlvsym",
};
#define NHOOKED (sizeof hooked_names / sizeof hooked_names[0])
#define NEXPORTED (NHOOKED - 2)
static void *hook_addr[NHOOKED];   /* written once in resolve_hooks */
static void *real_addr[NHOOKED];   /* what dlsym answers without us: same */

static void *dlsym_hook(void *handle, const char *name);
static void *dlvsym_hook(void *handle, const char *name, const char *version);

static void resolve_hooks(void)
{
    /* Our own definitions, looked up in this very object. */
    Dl_info info;
    if (!dladdr((void *)resolve_hooks, &info))
        return;
    void *self = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    for (size_t i = 0; i < NEXPORTED && self; i++) {
        hook_addr[i] = dlsym(self, hooked_names[i]);
        real_addr[i] = dlsym(RTLD_DEFAULT, hooked_names[i]);
    }
    hook_addr[NEXPORTED] = (void *)dlsym_hook;
    hook_addr[NEXPORTED + 1] = (void *)dlvsym_hook;
    if (self)
        dlclose(self);
}

/* dlsym's answer for an allocator name becomes our hook while tracing at
 * run time (only when it is the allocator the hook forwards to). */
static void *swap_answer(const char *name, void *answer)
{
    if (!answer || !runtime_mode)
        return answer;
    for (size_t i = 0; i < NEXPORTED; i++)
        if (answer == real_addr[i] && strcmp(name, hooked_names[i]) == 0)
            return hook_addr[i];
    return answer;
}

/* RTLD_NEXT is relative to the caller; called from here it would be
 * relative to us. So it is done the loader's way: the objects after the
 * caller's, in load order. */
static void *next_after(const void *caller, const char *name, const char *version)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        return NULL;
    for (lm = lm->l_next; lm; lm = lm->l_next) {
        if (!lm->l_name || !lm->l_name[0])
            continue;
        void *h = dlopen(lm->l_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!h)
            continue;
        void *sym = version ? dlvsym(h, name, version) : dlsym(h, name);
        dlclose(h);
        if (sym)
            return sym;
    }
    return NULL;
}

static void *dlsym_hook(void *handle, const char *name)
{
    void *answer = handle == RTLD_NEXT
                       ? next_after(__builtin_return_address(0), name, NULL)
                       : dlsym(handle, name);
    return swap_answer(name, answer);
}

static void *dlvsym_hook(void *handle, const char *name, const char *version)
{
    void *answer = handle == RTLD_NEXT
                       ? next_after(__builtin_return_address(0), name, version)
                       : dlvsym(handle, name, version);
    return swap_answer(name, answer);
}

static int hook_index(const char *name)
{
    for (size_t i = 0; i < NHOOKED; i++)
        if (strcmp(name, hooked_names[i]) == 0)
            return (int)i;
    return -1;
}

static int set_slot(void **slot, void *value)
{
    /* RELRO makes the GOT read-only after start-up: open it for the write. */
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)slot & ~((uintptr_t)page - 1);
    uintptr_t end = ((uintptr_t)(slot + 1) + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    if (mprotect((void *)start, end - start, PROT_READ | PROT_WRITE) != 0)
        return -1;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    return 0; /* left writable: RELRO is a hardening, not a correctness need */
}

static void remember(void **slot, void *orig, uintptr_t base)
{
    if (patch_count == patch_cap) {
        size_t cap = patch_cap ? patch_cap * 2 : 256;
        patch_t *p = mt__real.realloc(patches, cap * sizeof *p);
        if (!p)
            return;
        patches = p;
        patch_cap = cap;
    }
    patches[patch_count++] = (patch_t){slot, orig, base};
}

/* Walks one object's relocations and redirects the hooked names. */
static void patch_relocs(uintptr_t base, const ElfW(Rela) *rel, size_t count,
                         const ElfW(Sym) *symtab, const char *strtab)
{
    for (size_t i = 0; i < count; i++) {
        unsigned type = ELF64_R_TYPE(rel[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT &&
            type != R_X86_64_64)
            continue;
        const char *name = strtab + symtab[ELF64_R_SYM(rel[i].r_info)].st_name;
        int h = hook_index(name);
        if (h < 0 || !hook_addr[h])
            continue;
        void **slot = (void **)(base + rel[i].r_offset);
        void *cur = *slot;
        if (cur == hook_addr[h])
            continue; /* already ours */
        if (set_slot(slot, hook_addr[h]) == 0)
            remember(slot, cur, base);
    }
}

/* Dynamic-section pointers are usually relocated by the loader already;
 * the vdso's and some others are not. */
static uintptr_t dyn_ptr(uintptr_t base, ElfW(Addr) p)
{
    return p < base ? base + p : p;
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    uintptr_t self = (uintptr_t)arg, base = info->dlpi_addr;
    const ElfW(Dyn) *dyn = NULL;
    int ours = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(base + ph->p_vaddr);
        if (ph->p_type == PT_LOAD && self >= base + ph->p_vaddr &&
            self < base + ph->p_vaddr + ph->p_memsz)
            ours = 1;
    }
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    /* Not ourselves (our calls go to mt__real), not the vdso, not the
     * dynamic loader (it allocates through its own pointers). */
    if (!dyn || ours || strstr(name, "linux-vdso") || strstr(name, "ld-linux"))
        return 0;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprel_sz = 0, rela_sz = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_JMPREL: jmprel = (const ElfW(Rela) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_PLTRELSZ: jmprel_sz = dyn->d_un.d_val; break;
        case DT_RELA: rela = (const ElfW(Rela) *)dyn_ptr(base, dyn->d_un.d_ptr); break;
        case DT_RELASZ: rela_sz = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (!symtab || !strtab)
        return 0;
    if (jmprel)
        patch_relocs(base, jmprel, jmprel_sz / sizeof *jmprel, symtab, strtab);
    if (rela)
        patch_relocs(base, rela, rela_sz / sizeof *rela, symtab, strtab);
    return 0;
}

/* Patches every loaded object (again: already-patched slots are skipped).
 * Called at start and after each dlopen while tracing at run time. */
void mt__runtime_patch(void)
{
    pthread_mutex_lock(&patch_lock);
    if (runtime_mode)
        dl_iterate_phdr(patch_object, (void *)(uintptr_t)resolve_hooks);
    pthread_mutex_unlock(&patch_lock);
}

static int collect_bases(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t *set = arg; /* set[0] = count, then bases */
    if (set[0] < 4095)
        set[++set[0]] = info->dlpi_addr;
    return 0;
}

static void unpatch_all_unlocked(void)
{
    /* Only objects still loaded: an unloaded object's GOT is gone. */
    static uintptr_t bases[4096];
    bases[0] = 0;
    dl_iterate_phdr(collect_bases, bases);
    for (size_t i = patch_count; i-- > 0;) {
        patch_t *p = &patches[i];
        int loaded = 0;
        for (uintptr_t k = 1; k <= bases[0] && !loaded; k++)
            loaded = bases[k] == p->obj_base;
        if (loaded)
            set_slot(p->slot, p->orig);
    }
    patch_count = 0;
}

MT_API int mt_tracer_start(const char *path, const mt_tracer_opts_t *opts)
{
    if (!path)
        return MT_EINVAL;
    if (atomic_load(&mt__g.active) || mt__g.writer_running)
        return MT_EEXIST;
    int was_busy = mt__busy;
    mt__busy = 1;
    mt__bootstrap();
    if (!hook_addr[0])
        resolve_hooks();
    static int once;
    if (!once) {
        pthread_key_create(&mt__g.thread_key, mt__thread_exit);
        mt__install_fork_handlers();
        once = 1;
    }
    snprintf(mt__g.path, sizeof mt__g.path, "%s", path);
    mt__g.follow_fork = opts && opts->follow_fork;
    mt__g.force = opts && opts->force;
    mt__g.quiet = opts && opts->quiet;
    mt__g.rss_interval_ms = opts && opts->rss_interval_ms ? opts->rss_interval_ms : 10;
    mt__g.aggregate = opts && opts->aggregate;
    mt__g.checkpoint_ms = opts ? opts->checkpoint_ms : 0;
    mt__g.pid = mt__g.root_pid = getpid();
    mt__g.start_ns = mt__now_ns();
    mt__modules_scan();

    /* With force, a new file rather than the old one truncated: it gets
     * mode 0600 like any capture, whatever the old one had. */
    if (mt__g.force)
        unlink(mt__g.path);
    int rc = mt__writer_start(mt__g.path, 1);
    if (rc != 0) {
        mt__busy = was_busy;
        return rc == -EEXIST ? MT_EEXIST : rc;
    }
    /* A second session in the same process: its file needs every
     * definition again (ids are kept across sessions). */
    pthread_mutex_lock(&mt__g.defs_lock);
    mt__g.defs_len = 0;
    mt__modules_reemit_unlocked();
    mt__python_reemit_unlocked();
    mt__stack_reemit_unlocked();
    pthread_mutex_unlock(&mt__g.defs_lock);

    atomic_store(&mt__g.active, 1);
    pthread_mutex_lock(&patch_lock);
    runtime_mode = 1;
    dl_iterate_phdr(patch_object, (void *)(uintptr_t)resolve_hooks);
    pthread_mutex_unlock(&patch_lock);
    mt__busy = was_busy;
    return 0;
}

MT_API int mt_tracer_stop(void)
{
    pthread_mutex_lock(&patch_lock);
    int was_runtime = runtime_mode;
    runtime_mode = 0;
    if (was_runtime)
        unpatch_all_unlocked();
    pthread_mutex_unlock(&patch_lock);
    if (!was_runtime && !atomic_load(&mt__g.active))
        return MT_EINVAL;
    int was_busy = mt__busy;
    mt__busy = 1;
    mt__writer_finish();
    atomic_store(&mt__g.python, NULL);
    mt__busy = was_busy;
    return 0;
}
