/* coro_switch: how the scheduler changes stacks, two ways (coro.h,
 * "Switching"). Private to 06-coroutines; coro.c decides when to switch,
 * this file only how.
 *
 * Both ways build a coroutine the same portable way: getcontext and
 * makecontext give it a context that starts co_trampoline on its own stack.
 * They differ in how they move between stacks afterwards:
 *  - swapcontext: glibc saves and restores the signal mask too, one
 *    rt_sigprocmask system call per switch.
 *  - setjmp: the first entry is a setcontext (two system calls per
 *    coroutine, ever: it sets the signal mask, which we read first so that
 *    it stays the thread's); from then on every switch is _setjmp to save where
 *    we are and _longjmp to go where the other side saved itself: a few
 *    registers, no system call. GNU Pth calls this "mcsc" (makecontext +
 *    switch via setjmp); libtask and many green-thread libraries do the same.
 *
 * The sanitizer hooks (coro_san.h) go right around each switch. Their order
 * matters for ThreadSanitizer under setjmp: it records each _setjmp on the
 * fiber that was current and looks the buffer up there at _longjmp, so a
 * side saves itself before it tells TSan to switch fibers, and jumps after.
 *
 * The context itself lives at the top of the coroutine's stack mapping, not
 * in its control block: that page is touched anyway by the first frame, so
 * the ~1 KiB of ucontext_t costs no memory of its own (10,000 connections:
 * 10 MB less heap). */
#include "coro_impl.h"

#include <errno.h>
#include <signal.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>

/* Carves the context off the stack's top and leaves the rest as the stack
 * makecontext sees. Its own function: getcontext "returns twice" in the
 * compiler's eyes, and no other local variable should live across it. */
int co_ctx_make(struct co *c, void (*entry)(void))
{
    size_t room = (sizeof(ucontext_t) + alignof(max_align_t) - 1) /
                  alignof(max_align_t) * alignof(max_align_t);
    c->ctx = (ucontext_t *)(c->stack + c->stack_size - room);
    c->started = false;
    if (getcontext(c->ctx) < 0)
        return -errno;
    c->ctx->uc_stack.ss_sp = c->stack;
    c->ctx->uc_stack.ss_size = c->stack_size - room;
    c->ctx->uc_link = NULL; /* never returns through it: see co_trampoline */
    makecontext(c->ctx, entry, 0);
    return 0;
}

static void enter_swapcontext(struct co *c)
{
    san_to_coroutine(&sched->san, &c->san, c->stack, c->stack_size);
    if (swapcontext(&sched->ctx, c->ctx) < 0)
        abort(); /* only fails on a bad pointer: a bug here, not an error */
}

static void enter_setjmp(struct co *c)
{
    if (_setjmp(sched->jb) != 0)
        return; /* c jumped back: co_ctx_leave */
    san_to_coroutine(&sched->san, &c->san, c->stack, c->stack_size);
    if (!c->started) {
        /* setcontext also sets the mask saved at getcontext; make it the
         * thread's mask of now, so starting a coroutine changes nothing. */
        c->started = true;
        if (pthread_sigmask(SIG_BLOCK, NULL, &c->ctx->uc_sigmask) != 0)
            abort(); /* fails only on a bad argument */
        setcontext(c->ctx); /* returns only on a bad pointer */
        abort();
    }
    _longjmp(c->jb, 1);
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
    } else if (_setjmp(c->jb) == 0) {
        san_to_loop(&sched->san, &c->san, false);
        _longjmp(sched->jb, 1);
    }
    san_back_in_coroutine(&c->san);
}
