/* coro_stack: the coroutines' stacks (coro.h, "Ownership"). Private to
 * 06-coroutines.
 *
 * Each stack is its own mapping: [guard page][stack_size bytes]. Stacks
 * grow down, so running off the end touches the guard page and the kernel
 * sends SIGSEGV, instead of silently overwriting whatever lies below. One
 * page guards only against frames smaller than a page: a larger frame
 * moves the stack pointer past the guard and may write only below it (into
 * the next stack down). The compiler closes that hole when asked:
 * -fstack-clash-protection (the Makefile asks for it) probes each page of a
 * large frame in turn, so the first probe past the end hits the guard.
 * MAP_NORESERVE: pages are only committed when touched, so 10,000 waiting
 * coroutines cost the pages they touched (one, for a connection of
 * 06-coroutines/server.c), not 64 KiB each.
 *
 * A new mapping costs three system calls (mmap, mprotect for the guard,
 * munmap at the end) and a new kernel memory area each. So the stack of a
 * finished coroutine goes to a small cache instead, with its touched pages
 * given back to the kernel (madvise MADV_DONTNEED: one system call; the
 * next user finds zeroed pages, faulted in as it touches them), and the
 * next co_spawn takes it from there. A server that accepts a connection a
 * coroutine saves two system calls per connection. */
#include "coro_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The smallest stack co_options.stack_size gets (coro.h). */
#define CO_MIN_STACK (16 * 1024)

/* Stacks kept for reuse: enough for a burst of connections to reuse each
 * other's; each costs only its kernel memory area while cached. */
#define CO_STACK_CACHE 256

void co_stack_sizes(struct co_sched *s, size_t requested)
{
    long page = sysconf(_SC_PAGESIZE);
    s->page_size = page > 0 ? (size_t)page : 4096;
    size_t size = requested ? requested : CO_DEFAULT_STACK_SIZE;
    if (size < CO_MIN_STACK)
        size = CO_MIN_STACK;
    s->stack_size = (size + s->page_size - 1) / s->page_size * s->page_size;
}

static size_t co_map_len(void)
{
    return sched->page_size + sched->stack_size;
}

int co_stack_alloc(struct co *c)
{
    if (sched->stack_cached > 0) {
        c->map = sched->stack_cache[--sched->stack_cached];
        c->stack = c->map + sched->page_size;
        return 0;
    }
    char *map = mmap(NULL, co_map_len(), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    if (mprotect(map, sched->page_size, PROT_NONE) < 0) {
        int err = errno;
        munmap(map, co_map_len());
        return -err;
    }
    c->map = map;
    c->stack = map + sched->page_size;
    return 0;
}

/* The cache array itself is made on first use. */
static bool co_stack_cache_room(void)
{
    if (!sched->stack_cache)
        sched->stack_cache = calloc(CO_STACK_CACHE, sizeof(char *));
    return sched->stack_cache && sched->stack_cached < CO_STACK_CACHE;
}

void co_stack_free(struct co *c)
{
    if (!c->map)
        return;
    san_stack_unmapped(c->stack, sched->stack_size);
    if (co_stack_cache_room() &&
        madvise(c->stack, sched->stack_size, MADV_DONTNEED) == 0)
        sched->stack_cache[sched->stack_cached++] = c->map;
    else
        munmap(c->map, co_map_len());
    c->map = NULL;
    c->stack = NULL;
}

void co_stack_cache_free(void)
{
    while (sched->stack_cached > 0)
        munmap(sched->stack_cache[--sched->stack_cached], co_map_len());
    free(sched->stack_cache);
    sched->stack_cache = NULL;
}
