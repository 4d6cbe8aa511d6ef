/* coro_switch: how the scheduler changes stacks, two ways (coro.h,
 * "Switching"). Private to 06-coroutines; coro.c decides when to switch,
 * this file only how.
 *
 * Both ways build a coroutine the same portable way: getcontext and
 * makecontext give it a context that starts co_trampoline on its own stack.
 * They differ in how they move between stacks afterwards:
 *  - swapcontext: glibc saves and restores the signal mask too, one
 *    rt_sigprocmask system call per switch.
 *  - setjmp: the first entry is a getcontext + makecontext + setcontext
 *    (two system calls per coroutine, ever: the mask is read and set
 *    back); from then on every switch is _setjmp to save where
 *    we are and _longjmp to go where the other side saved itself: a few
 *    registers, no system call. GNU Pth calls this "mcsc" (makecontext +
 *    switch via setjmp); libtask and many green-thread libraries do the same.
 *
 * The sanitizer hooks (coro_san.h) go right around each switch. Their order
 * matters for ThreadSanitizer under setjmp: it records each _setjmp on the
 * fiber that was current and looks the buffer up there at _longjmp, so a
 * side saves itself before it tells TSan to switch fibers, and jumps after.
 *
 * Where the saved registers live: at the top of the coroutine's stack
 * mapping, not in its control block, because that page is touched anyway
 * by the first frame (10,000 connections: 2 MB of heap less for the 200
 * bytes of a jmp_buf, 10 MB for a ucontext_t). With swapcontext that is
 * the whole ucontext_t (about 1 KiB). With setjmp it is the jmp_buf; a
 * ucontext_t is needed only for the first entry, so one scratch context in
 * the scheduler serves every coroutine. */
#include "coro_impl.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>

/* A context that starts entry on the given stack. Its own function:
 * getcontext "returns twice" in the compiler's eyes, and no other local
 * variable should live across it. */
static int ctx_build(ucontext_t *uc, char *stack, size_t size,
                     void (*entry)(void))
{
    if (getcontext(uc) < 0)
        return -errno;
    uc->uc_stack.ss_sp = stack;
    uc->uc_stack.ss_size = size;
    uc->uc_link = NULL; /* never returns through it: see co_trampoline */
    makecontext(uc, entry, 0);
    return 0;
}

/* swapcontext keeps the context for the coroutine's whole life, at the top
 * of its stack. setjmp needs it only for the first entry, and builds it
 * then in the scheduler's one scratch context (enter_setjmp). */
/* Bytes for an object of size n at the top of a stack, keeping the stack
 * below it aligned. */
static size_t top_room(size_t n)
{
    return (n + alignof(max_align_t) - 1) / alignof(max_align_t) *
           alignof(max_align_t);
}

int co_ctx_make(struct co *c, void (*entry)(void))
{
    size_t size = sched->stack_size;
    sched->entry = entry;
    c->started = false;
    if (sched->use_setjmp) {
        c->jb = (jmp_buf *)(c->stack + size - top_room(sizeof(jmp_buf)));
        return 0;
    }
    size_t room = top_room(sizeof(ucontext_t));
    c->ctx = (ucontext_t *)(c->stack + size - room);
    return ctx_build(c->ctx, c->stack, size - room, entry);
}

static void enter_swapcontext(struct co *c)
{
    san_to_coroutine(&sched->san, &c->san, c->stack, sched->stack_size);
    if (swapcontext(&sched->ctx, c->ctx) < 0)
        abort(); /* only fails on a bad pointer: a bug here, not an error */
}

static void enter_setjmp(struct co *c)
{
    if (_setjmp(sched->jb) != 0)
        return; /* c jumped back: co_ctx_leave */
    san_to_coroutine(&sched->san, &c->san, c->stack, sched->stack_size);
    if (!c->started) {
        /* getcontext reads the thread's signal mask of now, so starting a
         * coroutine changes nothing; setcontext jumps to co_trampoline. */
        c->started = true;
        if (ctx_build(&sched->boot, c->stack,
                      sched->stack_size - top_room(sizeof(jmp_buf)),
                      sched->entry) < 0)
            abort(); /* getcontext fails only on a bad pointer */
        setcontext(&sched->boot); /* returns only on a bad pointer */
        abort();
    }
    _longjmp(*c->jb, 1);
}

void co_ctx_enter(struct co *c)
{
    if (sched->use_setjmp)
        enter_setjmp(c);
    else
        enter_swapcontext(c);
    san_back_in_loop(&sched->san);
}

void co_ctx_leave(struct co *c)
{
    bool done = c->state == CO_DONE;
    if (!sched->use_setjmp) {
        san_to_loop(&sched->san, &c->san, done);
        if (swapcontext(c->ctx, &sched->ctx) < 0)
            abort();
    } else if (done) {
        /* A finished coroutine need not save itself: it never runs again. */
        san_to_loop(&sched->san, &c->san, true);
        _longjmp(sched->jb, 1);
    } else if (_setjmp(*c->jb) == 0) {
        san_to_loop(&sched->san, &c->san, false);
        _longjmp(sched->jb, 1);
    }
    san_back_in_coroutine(&c->san);
}
