/* coro_switch: how the scheduler changes stacks, two ways (coro.h,
 * "Switching"). Private to 06-coroutines; coro.c decides when to switch,
 * this file only how. The textbook way first, then the optimisation.
 *
 * 1. swapcontext, the textbook switch (libtask's contextswitch is this one
 *    call; GNU Pth calls the method "mcsc": makecontext + swapcontext).
 *    makecontext builds a context that starts co_trampoline on the
 *    coroutine's own stack; swapcontext saves where we are into one
 *    context and loads another. A context holds the signal mask too, so
 *    every glibc swapcontext makes one rt_sigprocmask system call.
 * 2. _setjmp/_longjmp, the default (the switch of GNU Pth's "sjlj"
 *    methods, which boot a new stack with a signal where this file uses
 *    makecontext). A context is built only for the first entry
 *    (getcontext + setcontext: two system calls per coroutine, ever, as
 *    the mask is read and set back); from then on every switch is _setjmp
 *    to save where we are and _longjmp to go where the other side saved
 *    itself: a few registers, no system call.
 *
 * Where the saved registers live: at the top of the coroutine's stack
 * mapping, not in its control block, because that page is touched anyway
 * by the first frame (10,000 connections: 2 MB of heap less for jmp_buf's
 * 200 bytes, 10 MB for x86-64's 968-byte ucontext_t, 46 MB on arm64).
 * With a shared stack (coro_stack.c) that top is everyone's, and the
 * registers travel with the frames below them: a parked coroutine's copy
 * holds both, and both come back before the loop jumps to it. So a
 * context is built at a coroutine's first entry, once the stack is its
 * own, and a coroutine marks where its frames end just before it saves
 * its registers (co_stack_mark), from the innermost frame that must
 * survive the switch.
 *
 * The sanitizers (coro_san.h) must hear of every switch; in a normal build
 * their calls compile to nothing. They sit in the last part of this file,
 * which picks one of the two ways, but for the one call of a setjmp switch
 * that must come between its _setjmp and its _longjmp: ThreadSanitizer
 * records each _setjmp on the fiber that was current and looks the buffer
 * up there at _longjmp, so a side saves itself, then tells TSan it switches
 * fibers, then jumps. */
#include "coro_impl.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>

/* Bytes for an object of size n at the top of a stack, keeping the stack
 * below it aligned. */
static size_t top_room(size_t n)
{
    return (n + alignof(max_align_t) - 1) / alignof(max_align_t) *
           alignof(max_align_t);
}

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

/* ---- 1. the textbook switch: swapcontext ---------------------------------
 * The coroutine's context lives for its whole life, at the top of its
 * stack; the loop's is sched->ctx. */

static void swap_make(struct co *c)
{
    c->ctx = (ucontext_t *)(c->stack + sched->stack_size -
                            top_room(sizeof(ucontext_t)));
}

static void swap_in(struct co *c) /* the loop -> c */
{
    if (!c->started) { /* makecontext: start at sched->entry */
        c->started = true;
        if (ctx_build(c->ctx, c->stack, (size_t)((char *)c->ctx - c->stack),
                      sched->entry) < 0)
            abort(); /* getcontext fails only on a bad pointer */
    }
    if (swapcontext(&sched->ctx, c->ctx) < 0)
        abort(); /* only fails on a bad pointer: a bug here, not an error */
}

static void swap_out(struct co *c) /* c -> the loop */
{
    if (sched->shared)
        co_stack_mark(c);
    if (swapcontext(c->ctx, &sched->ctx) < 0)
        abort();
}

/* Shared stack: c is back in the loop, its registers saved in c->ctx. The
 * stack pointer saved there is where its frames really end: a sanitizer's
 * swapcontext is a wrapper whose own frame, below swap_out's and so below
 * the mark, is where c resumes. Read where the layout is known; elsewhere
 * the mark stands, right for glibc's own swapcontext. */
static void swap_saved_sp(struct co *c)
{
#if defined(__x86_64__)
    c->sp = (char *)c->ctx->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    c->sp = (char *)c->ctx->uc_mcontext.sp;
#else
    (void)c;
#endif
}

/* ---- 2. the optimisation: _setjmp/_longjmp -------------------------------
 * The coroutine's jmp_buf lives at the top of its stack, the loop's is
 * sched->jb. Only the first entry needs a ucontext_t, so one scratch
 * context in the scheduler (sched->boot) serves every coroutine. */

static void jump_make(struct co *c)
{
    c->jb = (jmp_buf *)(c->stack + sched->stack_size -
                        top_room(sizeof(jmp_buf)));
}

/* The first entry: getcontext reads the thread's signal mask of now, so
 * starting a coroutine changes nothing; setcontext jumps to entry. */
static void jump_start(struct co *c)
{
    c->started = true;
    if (ctx_build(&sched->boot, c->stack,
                  sched->stack_size - top_room(sizeof(jmp_buf)),
                  sched->entry) < 0)
        abort(); /* getcontext fails only on a bad pointer */
    setcontext(&sched->boot); /* returns only on a bad pointer */
    abort();
}

static void jump_in(struct co *c) /* the loop -> c */
{
    if (_setjmp(sched->jb) != 0)
        return; /* c jumped back (jump_out) */
    san_to_coroutine(&sched->san, &c->san, c->stack, sched->stack_size);
    if (!c->started)
        jump_start(c);
    _longjmp(*c->jb, 1);
}

static void jump_out(struct co *c) /* c -> the loop */
{
    if (c->state == CO_DONE) { /* never runs again: need not save itself */
        san_to_loop(&sched->san, &c->san, true);
        _longjmp(sched->jb, 1);
    }
    if (sched->shared)
        co_stack_mark(c);
    if (_setjmp(*c->jb) == 0) {
        san_to_loop(&sched->san, &c->san, false);
        _longjmp(sched->jb, 1);
    }
}

/* ---- what coro.c calls: one of the two, and the sanitizers -------------- */

int co_ctx_make(struct co *c, void (*entry)(void))
{
    sched->entry = entry;
    c->started = false;
    if (sched->use_setjmp)
        jump_make(c);
    else
        swap_make(c);
    return 0;
}

void co_ctx_enter(struct co *c)
{
    co_stack_take(c); /* a shared stack: c's frames back in place */
    if (sched->use_setjmp) {
        jump_in(c);
    } else {
        san_to_coroutine(&sched->san, &c->san, c->stack, sched->stack_size);
        swap_in(c);
        if (sched->shared && c->state != CO_DONE)
            swap_saved_sp(c);
    }
    san_back_in_loop(&sched->san);
}

void co_ctx_leave(struct co *c)
{
    if (sched->use_setjmp) {
        jump_out(c);
    } else {
        san_to_loop(&sched->san, &c->san, c->state == CO_DONE);
        swap_out(c);
    }
    san_back_in_coroutine(&c->san);
}
