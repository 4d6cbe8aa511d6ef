/* coro_san: what the sanitizers must be told when the scheduler switches
 * stacks. Private to 06-coroutines. In a normal build every function here
 * is empty and compiles to nothing; coro_switch.c calls them around each
 * switch (and coro.c, coro_stack.c at a coroutine's start and end), so the
 * switch reads the same in every build.
 *
 * AddressSanitizer tracks which stack the thread is on; a swapcontext it
 * was not told about looks like a wild jump of the stack pointer and
 * produces false reports. ThreadSanitizer keeps a shadow call stack per
 * thread and needs a "fiber" per coroutine.
 *
 * One more TSan rule: it defers an asynchronous signal (SIGTERM, SIGINT)
 * that arrives while the thread runs ordinary code, queues it on the fiber
 * that was running, and calls the handler when that fiber next enters libc.
 * A coroutine that finishes before that takes the signal with it: its
 * fiber is destroyed, the handler never runs, and a stop request is lost
 * (seen as a server hanging after SIGTERM in make test SAN=thread). So in a
 * TSan build the loop thread keeps asynchronous signals blocked from
 * co_sched_init to co_sched_free, and the loop lets them in only while it
 * sleeps in epoll_pwait, on the scheduler's own fiber
 * (loop_set_wait_sigmask). */
#ifndef CORO_SAN_H
#define CORO_SAN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define CO_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#endif

#ifdef CO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CO_TSAN
#include <pthread.h>
#include <sanitizer/tsan_interface.h>
#endif

/* A coroutine's side of the switches. */
struct san_fiber {
    void *fake_stack; /* ASan: the frames it parks while switched away */
    void *tsan;       /* TSan: its fiber */
};

/* The loop's side. */
struct san_loop {
    struct san_fiber fiber;
    const void *stack_bottom; /* ASan: where to say we are going back to */
    size_t stack_size;
    sigset_t wait_mask;       /* TSan: the thread's mask before init */
};

static inline void san_fiber_create(struct san_fiber *f)
{
    (void)f;
#ifdef CO_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
}

static inline void san_fiber_destroy(struct san_fiber *f)
{
    (void)f;
#ifdef CO_TSAN
    if (f->tsan)
        __tsan_destroy_fiber(f->tsan);
    f->tsan = NULL;
#endif
}

/* co_sched_run starts: the loop's fiber is the thread's own. */
static inline void san_loop_enter(struct san_loop *l)
{
    (void)l;
#ifdef CO_TSAN
    l->fiber.tsan = __tsan_get_current_fiber();
#endif
}

/* The loop is about to switch to coroutine f, whose stack is given. */
static inline void san_to_coroutine(struct san_loop *l, struct san_fiber *f,
                                    void *stack, size_t size)
{
    (void)l, (void)f, (void)stack, (void)size;
#ifdef CO_ASAN
    __sanitizer_start_switch_fiber(&l->fiber.fake_stack, stack, size);
#endif
#ifdef CO_TSAN
    __tsan_switch_to_fiber(f->tsan, 0);
#endif
}

/* The loop is back from a coroutine. */
static inline void san_back_in_loop(struct san_loop *l)
{
    (void)l;
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(l->fiber.fake_stack, NULL, NULL);
#endif
}

/* Coroutine f is about to switch to the loop; done: it never runs again,
 * so its fake stack dies with it. */
static inline void san_to_loop(struct san_loop *l, struct san_fiber *f,
                               bool done)
{
    (void)l, (void)f, (void)done;
#ifdef CO_ASAN
    __sanitizer_start_switch_fiber(done ? NULL : &f->fake_stack,
                                   l->stack_bottom, l->stack_size);
#endif
#ifdef CO_TSAN
    __tsan_switch_to_fiber(l->fiber.tsan, 0);
#endif
}

/* Coroutine f runs again. */
static inline void san_back_in_coroutine(struct san_fiber *f)
{
    (void)f;
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, NULL, NULL);
#endif
}

/* First thing on a new coroutine's stack: learn the loop's stack, to name
 * it when switching back. */
static inline void san_coroutine_started(struct san_loop *l)
{
    (void)l;
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(NULL, &l->stack_bottom, &l->stack_size);
#endif
}

/* Stack memory changes hands: a stack is unmapped, or, on a shared stack
 * (coro_stack.c), a parked coroutine's frames are copied out and another's
 * copied in. Frames that have not returned (ours always end in a switch)
 * leave their redzones poisoned: a copy would trip on them, and so would
 * the frames of the next user, which lie elsewhere. So the region is
 * cleared; on a shared stack, frames that live across a park lose their
 * redzones (AddressSanitizer still checks every frame made after). */
static inline void san_stack_forget(void *stack, size_t size)
{
    (void)stack, (void)size;
#ifdef CO_ASAN
    __asan_unpoison_memory_region(stack, size);
#endif
}

/* TSan only: block asynchronous signals on this thread and have the loop
 * take them while it waits. The synchronous ones (a fault, abort) cannot
 * wait and stay unblocked. */
static inline void san_signals_hold(struct san_loop *l, struct loop *loop)
{
    (void)l, (void)loop;
#ifdef CO_TSAN
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                                       SIGTRAP, SIGSYS, SIGABRT};
    sigset_t async;
    sigfillset(&async);
    for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++)
        sigdelset(&async, sync_signals[i]);
    pthread_sigmask(SIG_BLOCK, &async, &l->wait_mask);
    loop_set_wait_sigmask(loop, &l->wait_mask);
#endif
}

/* Undoes san_signals_hold (co_sched_free). */
static inline void san_signals_release(struct san_loop *l)
{
    (void)l;
#ifdef CO_TSAN
    pthread_sigmask(SIG_SETMASK, &l->wait_mask, NULL);
#endif
}

#endif
