/* coro_stack: the coroutines' stacks (coro.h, "Stacks"), two ways. Private
 * to 06-coroutines. The idea first, then the optimisation.
 *
 * 1. A stack per coroutine (the default). Each stack is its own mapping:
 * [guard page][stack_size bytes]. Stacks grow down, so running off the end
 * touches the guard page and the kernel sends SIGSEGV, instead of silently
 * overwriting whatever lies below. One page guards only against frames
 * smaller than a page: a larger frame moves the stack pointer past the
 * guard and may write only below it (into the next stack down). The
 * compiler closes that hole when asked: -fstack-clash-protection (the
 * Makefile asks for it) probes each page of a large frame in turn, so the
 * first probe past the end hits the guard. MAP_NORESERVE: pages are only
 * committed when touched, so 10,000 waiting coroutines cost the pages they
 * touched (one, for a connection of 06-coroutines/server.c), not 64 KiB
 * each.
 *
 * A new mapping costs three system calls (mmap, mprotect for the guard,
 * munmap at the end) and a new kernel memory area each. So the stack of a
 * finished coroutine goes to a small cache instead, with its touched pages
 * given back to the kernel (madvise MADV_DONTNEED: one system call; the
 * next user finds zeroed pages, faulted in as it touches them), and the
 * next co_spawn takes it from there. A server that accepts a connection a
 * coroutine saves two system calls per connection.
 *
 * 2. One shared stack (CO_STACK_SHARED, the copy-stack design of Tencent's
 * libco and of libaco). A page is the smallest unit of memory the kernel
 * hands out, and a waiting connection's frames use a few hundred bytes of
 * it. So every coroutine runs on the same stack, the scheduler's one
 * mapping laid out as above (stack_size is the most any coroutine may use,
 * and the guard page stops the one that goes deeper); a parked coroutine's
 * frames, only the part it used, live in a buffer of their size in the
 * heap while another one runs. The copy is lazy, as libaco's: the stack
 * keeps its owner's frames until another coroutine needs it, so the
 * coroutine that parks and is resumed next with nobody in between (a deep
 * call, co_call_on_loop_stack, is always such a trip) copies nothing. The
 * price is a memcpy out and one in at each change of owner (examples/
 * stack_cost.c measures it against the size), and a rule for the code: a
 * parked coroutine's locals are not at their addresses, so nothing else (a
 * loop callback, another coroutine, a thread) may use a pointer into its
 * stack while it is parked (coro.h, "Stacks"). */
#include "coro_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The smallest stack co_options.stack_size gets (coro.h). */
#define CO_MIN_STACK (16 * 1024)

/* Stacks kept for reuse: enough for a burst of connections to reuse each
 * other's; each costs only its kernel memory area while cached. */
#define CO_STACK_CACHE 256

/* A save buffer is made a multiple of this, so that a coroutine whose
 * frames change by a few bytes between parks keeps its buffer. */
#define CO_SAVE_ROUND 64

static size_t co_map_len(const struct co_sched *s)
{
    return s->page_size + s->stack_size;
}

/* [guard page][stack_size bytes]: the mapping, or NULL with errno. */
static char *co_map_stack(const struct co_sched *s)
{
    char *map = mmap(NULL, co_map_len(s), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, s->page_size, PROT_NONE) < 0) {
        int err = errno;
        munmap(map, co_map_len(s));
        errno = err;
        return NULL;
    }
    return map;
}

int co_stacks_init(struct co_sched *s, size_t requested, bool shared)
{
    long page = sysconf(_SC_PAGESIZE);
    s->page_size = page > 0 ? (size_t)page : 4096;
    size_t size = requested ? requested : CO_DEFAULT_STACK_SIZE;
    if (size < CO_MIN_STACK)
        size = CO_MIN_STACK;
    s->stack_size = (size + s->page_size - 1) / s->page_size * s->page_size;
    s->shared = shared;
    if (!shared)
        return 0;
    if (!(s->run_map = co_map_stack(s)))
        return -errno;
    s->run_stack = s->run_map + s->page_size;
    return 0;
}

/* ---- 1. a stack per coroutine ------------------------------------------- */

int co_stack_alloc(struct co *c)
{
    if (sched->shared) {
        c->stack = sched->run_stack;
        c->sp = sched->run_stack + sched->stack_size; /* nothing used yet */
        return 0;
    }
    if (sched->stack_cached > 0) {
        c->map = sched->stack_cache[--sched->stack_cached];
        c->stack = c->map + sched->page_size;
        return 0;
    }
    char *map = co_map_stack(sched);
    if (!map)
        return -errno;
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

static void co_save_buffer_free(struct co *c);

void co_stack_free(struct co *c)
{
    if (sched->shared) {
        co_save_buffer_free(c);
        if (sched->owner == c)
            sched->owner = NULL; /* its frames are garbage now */
        c->stack = NULL;
        return;
    }
    if (!c->map)
        return;
    san_stack_forget(c->stack, sched->stack_size);
    if (co_stack_cache_room() &&
        madvise(c->stack, sched->stack_size, MADV_DONTNEED) == 0)
        sched->stack_cache[sched->stack_cached++] = c->map;
    else
        munmap(c->map, co_map_len(sched));
    c->map = NULL;
    c->stack = NULL;
}

void co_stacks_free(void)
{
    while (sched->stack_cached > 0)
        munmap(sched->stack_cache[--sched->stack_cached], co_map_len(sched));
    free(sched->stack_cache);
    sched->stack_cache = NULL;
    if (sched->run_map) {
        san_stack_forget(sched->run_stack, sched->stack_size);
        munmap(sched->run_map, co_map_len(sched));
        sched->run_map = sched->run_stack = NULL;
    }
}

/* ---- 2. one shared stack ------------------------------------------------- */

/* A broken rule of the shared stack: nothing can be saved or restored
 * safely, and going on would run a coroutine on someone else's frames. */
__attribute__((noreturn, format(printf, 1, 2)))
static void co_stack_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("06-coroutines: shared stack: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Not inlined, so that its frame lies below every frame of its caller:
 * called last before a switch saves the registers, it marks the lowest
 * byte the parked coroutine still needs. */
__attribute__((noinline)) void co_stack_mark(struct co *c)
{
    c->sp = __builtin_frame_address(0);
}

static void co_save_buffer_free(struct co *c)
{
    sched->stats.held -= c->saved_cap;
    sched->stats.holders -= c->saved_cap > 0;
    free(c->saved);
    c->saved = NULL;
    c->saved_len = c->saved_cap = 0;
}

/* A buffer for len bytes of c's frames: kept while it fits and is not more
 * than twice too big, so it follows what c uses without a malloc per park.
 * Out of memory there is no safe way on: c's frames would be lost. */
static void co_save_buffer_fit(struct co *c, size_t len)
{
    size_t cap = (len + CO_SAVE_ROUND - 1) / CO_SAVE_ROUND * CO_SAVE_ROUND;
    if (c->saved_cap >= cap && c->saved_cap <= 2 * cap)
        return;
    co_save_buffer_free(c);
    if (!(c->saved = malloc(cap)))
        co_stack_die("out of memory for coroutine %ld's %zu bytes of stack",
                     c->id, len);
    c->saved_cap = cap;
    struct co_stack_stats *st = &sched->stats;
    st->held += cap;
    st->holders++;
    if (st->held > st->held_peak) {
        st->held_peak = st->held;
        st->holders_at_peak = st->holders;
    }
}

/* Copies the frames of the parked c (from its mark to the top) out of the
 * shared stack. The copy limit is the stack itself: a coroutine that grew
 * past stack_size faulted on the guard page, so a mark outside the stack
 * means c switched stacks behind the scheduler's back (say, it waited from
 * a signal handler on an alternate stack): copying from there would save
 * the wrong memory and restore it over someone else's. */
static void co_stack_save(struct co *c)
{
    char *top = sched->run_stack + sched->stack_size;
    if (c->sp < sched->run_stack || c->sp > top)
        co_stack_die("coroutine %ld parked at %p, outside the shared stack "
                     "[%p, %p) of --stack-kb %zu: it waited from another "
                     "stack, whose frames cannot be copied", c->id,
                     (void *)c->sp, (void *)sched->run_stack, (void *)top,
                     sched->stack_size / 1024);
    size_t len = (size_t)(top - c->sp);
    co_save_buffer_fit(c, len);
    memcpy(c->saved, c->sp, len);
    c->saved_len = len;
    struct co_stack_stats *st = &sched->stats;
    st->saves++;
    st->saved_bytes += len;
    if (len > st->largest)
        st->largest = len;
}

void co_stack_take(struct co *c)
{
    if (!sched->shared || sched->owner == c)
        return; /* its frames are where it left them */
    san_stack_forget(sched->run_stack, sched->stack_size); /* coro_san.h */
    if (sched->owner)
        co_stack_save(sched->owner);
    char *top = sched->run_stack + sched->stack_size;
    if (c->saved_len > 0) /* 0 before its first park */
        memcpy(top - c->saved_len, c->saved, c->saved_len);
    sched->owner = c;
}

int co_stack_stats(struct co_stack_stats *out)
{
    if (!sched)
        return -EINVAL;
    *out = sched->stats;
    out->block_size = sizeof(struct co);
    return 0;
}
