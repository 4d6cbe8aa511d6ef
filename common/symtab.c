/* symtab: see symtab.h. The executable is mapped read-only and its
 * .symtab (or, stripped, its .dynsym) is copied into an array of
 * functions sorted by address; a lookup is a binary search. Addresses in
 * the file are the link-time ones: a position-independent executable is
 * loaded somewhere else, and dl_iterate_phdr says where (its first entry
 * is the program itself). */
#include "symtab.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct sym {
    uintptr_t start, end; /* at run time */
    const char *name;     /* in the mapped file */
};

static struct sym *syms;
static size_t nsyms;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int first_object(struct dl_phdr_info *info, size_t size, void *bias)
{
    (void)size;
    *(uintptr_t *)bias = (uintptr_t)info->dlpi_addr;
    return 1; /* the program itself comes first: stop there */
}

static int by_start(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* The section of this type, or NULL. */
static const ElfW(Shdr) *section(const char *file, size_t size, unsigned type)
{
    const ElfW(Ehdr) *eh = (const void *)file;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > size)
        return NULL;
    const ElfW(Shdr) *sh = (const void *)(file + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++)
        if (sh[i].sh_type == type && sh[i].sh_link < eh->e_shnum &&
            sh[i].sh_offset + sh[i].sh_size <= size)
            return &sh[i];
    return NULL;
}

/* The functions of one symbol table section into syms. */
static void take_symbols(char *file, size_t size, const ElfW(Shdr) *st,
                         uintptr_t bias)
{
    const ElfW(Shdr) *all = (const void *)(file +
                                           ((const ElfW(Ehdr) *)file)->e_shoff);
    const ElfW(Shdr) *strs = &all[st->sh_link];
    if (strs->sh_offset + strs->sh_size > size)
        return;
    const ElfW(Sym) *s = (const void *)(file + st->sh_offset);
    size_t n = st->sh_size / sizeof *s;
    syms = calloc(n ? n : 1, sizeof *syms);
    if (!syms)
        return;
    for (size_t i = 0; i < n; i++) {
        if ((s[i].st_info & 0xf) != STT_FUNC /* ELF_ST_TYPE */ || s[i].st_value == 0 ||
            s[i].st_size == 0 || s[i].st_name >= strs->sh_size)
            continue;
        char *name = file + strs->sh_offset + s[i].st_name;
        char *dot = strchr(name, '.'); /* a clone: "f.isra.0" is f */
        if (dot)
            *dot = '\0';
        syms[nsyms++] = (struct sym){.start = bias + s[i].st_value,
                                     .end = bias + s[i].st_value + s[i].st_size,
                                     .name = name};
    }
    qsort(syms, nsyms, sizeof *syms, by_start);
}

static void symtab_load(void)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return;
    /* Private and writable: a clone's name is cut at its dot in place,
     * which copies only the pages touched. */
    char *file = fstat(fd, &st) == 0 && (size_t)st.st_size > sizeof(ElfW(Ehdr))
                     ? mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE, fd, 0)
                     : MAP_FAILED;
    close(fd);
    if (file == MAP_FAILED)
        return;
    size_t size = (size_t)st.st_size;
    const ElfW(Ehdr) *eh = (const void *)file;
    const ElfW(Shdr) *tab = NULL;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
        eh->e_ident[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64
                                                      : ELFCLASS32)) {
        tab = section(file, size, SHT_SYMTAB);
        if (!tab)
            tab = section(file, size, SHT_DYNSYM);
    }
    uintptr_t bias = 0;
    dl_iterate_phdr(first_object, &bias);
    if (tab)
        take_symbols(file, size, tab, bias);
    if (nsyms == 0) { /* nothing to name: the mapping is no use */
        free(syms);
        syms = NULL;
        munmap(file, size);
    }
    /* Otherwise the names point into it: it stays mapped for good. */
}

const char *symtab_name(uintptr_t addr)
{
    pthread_once(&once, symtab_load);
    size_t lo = 0, hi = nsyms;
    while (lo < hi) { /* the first symbol that starts after addr */
        size_t mid = lo + (hi - lo) / 2;
        if (syms[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || addr >= syms[lo - 1].end)
        return NULL;
    return syms[lo - 1].name;
}
