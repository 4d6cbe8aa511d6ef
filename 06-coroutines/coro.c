/* coro: the scheduler's core. coro.h says what each function does; this
 * file says how, in the order a reader needs it: 1. the run loop, 2. park
 * and wake, 3. the switch, 4. spawn. The rest of the core: coro_sched.c
 * (the scheduler's own birth and end), coro_switch.c (how a switch changes
 * stacks), coro_stack.c (the stacks), coro_impl.h (what they share). Every
 * other coro_*.c builds on co_park and co_wait_end, and this file names
 * none of them: each wait brings its own undo (struct co_wait).
 *
 * 06 stands on 05's loop (common/loop). A coroutine that waits for an fd or
 * a deadline registers a loop callback (loop_watch, loop_timer_arm) whose
 * only job is to resume it, exactly as asyncio's Task is a callback on its
 * event loop (Task.__step). The loop keeps the fd table and guards against
 * stale events; the core only says who waits.
 *
 * Only the scheduler switches to coroutines and coroutines only switch back
 * to the scheduler (never coroutine to coroutine). That costs a second
 * switch per hand-over but keeps every decision in one place: the loop.
 * Loop callbacks therefore never switch: they queue the coroutine, and the
 * scheduler runs the queue between turns of the loop.
 *
 * The core's rules are asserts, as in libdill (on in every build here:
 * nothing defines NDEBUG): only the scheduler resumes, and only a ready
 * coroutine; a coroutine waits for one thing at a time; only a parked
 * coroutine's wait ends, and once; a finished coroutine never runs again. */
#include "coro_impl.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "trace.h"

struct co_sched *sched;

static void co_resume(struct co *c);

/* ---- 1. the run loop -------------------------------------------------------
 * asyncio's run_forever: run what is ready, then one turn of the loop, whose
 * callbacks only queue the coroutines they wake. */

/* Runs the coroutines that are ready now. Those that become ready during
 * this pass (by co_yield, a spawn, a wake-up) wait for the next pass, so a
 * coroutine that yields in a loop cannot keep epoll from being polled. */
static void run_ready(void)
{
    TRACE(TRACE_COUNT_READY, NULL, sched->ready_len);
    for (size_t n = sched->ready_len; n > 0; n--) {
        struct list *it = list_pop_front(&sched->ready);
        sched->ready_len--;
        co_resume(LIST_ITEM(it, struct co, ready_link));
    }
    TRACE(TRACE_COUNT_READY, NULL, sched->ready_len); /* what is left */
}

int co_sched_run(void)
{
    if (!sched)
        return -EINVAL;
    if (sched->running)
        return -EBUSY;
    sched->running = true;
    san_loop_enter(&sched->san);
    int rc = 0;
    while (sched->live > 0) {
        run_ready();
        if (sched->live == 0)
            break;
        bool idle = list_empty(&sched->ready);
        if (idle && sched->wakeable == 0) {
            rc = -EDEADLK; /* only coroutines could wake the rest */
            break;
        }
        /* Sleep until the next event or deadline; not at all if someone is
         * ready. Fds are called back before timers, so data that arrived
         * just at a deadline is not a timeout. */
        if (loop_run_once(sched->loop, idle ? -1 : 0) < 0) {
            rc = -errno;
            break;
        }
    }
    sched->running = false;
    return rc;
}

/* ---- 2. park and wake ------------------------------------------------------
 * A wait is: register interest somewhere (a loop callback for an fd, a
 * target's join_waiter, a queue of work) and say how to undo that in a
 * struct co_wait, then co_park, which arms the optional timer and switches
 * to the scheduler. Whoever ends the wait calls co_wait_end(c, result): it
 * runs the wait's undo, cancels the timer and queues c. So a timeout, an
 * event and a cancel can never both fire: the first removes the others. */

static void ready_push(struct co *c)
{
    assert(!list_linked(&c->ready_link)); /* queued at most once */
    c->state = CO_READY;
    list_push_back(&sched->ready, &c->ready_link);
    sched->ready_len++;
}

/* Takes c out of whatever it registered with for this wait. */
static void co_wait_undo(struct co *c)
{
    if (c->wait->undo)
        c->wait->undo(c, c->wait->arg);
    c->wait = NULL;
}

void co_wait_end(struct co *c, int result)
{
    assert(c->state == CO_WAITING && c->wait); /* parked, and not yet woken */
    co_wait_undo(c);
    loop_timer_cancel(sched->loop, &c->timer);
    if (c->wakeable)
        sched->wakeable--;
    c->wakeable = false;
    c->wake_result = result;
    ready_push(c);
    TRACE(TRACE_CO_WAKE, NULL, c->id); /* by the loop, or a coroutine */
}

/* Timer callback: a wait's deadline passed. */
static void co_on_timer(struct loop *loop, void *arg)
{
    (void)loop;
    struct co *c = arg;
    co_wait_end(c, c->wait->timer_result);
}

/* What a wait returns once the scheduler runs c again. A cancel that
 * arrived after the wait was already over (c was ready, not yet running)
 * still wins, as in asyncio: the coroutine learns about it here. */
static int co_resumed(struct co *c)
{
    return co_take_cancel(c) ? -ECANCELED : c->wake_result;
}

int co_park(struct co *c, const struct co_wait *w, int timeout_ms)
{
    assert(c == co_running()); /* a coroutine parks only itself */
    assert(!c->wait);          /* and waits for one thing at a time */
    c->wait_copy = *w;         /* others read it while c is parked */
    c->wait = &c->wait_copy;
    c->parked_ms = timer_now_ms();
    if (timeout_ms >= 0 &&
        loop_timer_arm_at(sched->loop, &c->timer,
                          c->parked_ms + (uint64_t)timeout_ms) < 0) {
        co_wait_undo(c);
        return -ENOMEM;
    }
    c->wakeable = timeout_ms >= 0 || !w->only_a_coroutine;
    if (c->wakeable)
        sched->wakeable++;
    c->state = CO_WAITING;
    co_ctx_leave(c);
    return co_resumed(c);
}

int co_yield(void)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    c->wake_result = 0;
    ready_push(c); /* to the back of the queue: everyone else goes first */
    co_ctx_leave(c);
    return co_resumed(c);
}

int co_sleep(int ms)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    static const struct co_wait sleeping = {.timer_result = 0,
                                            .why = "sleep", .detail = -1};
    return co_park(c, &sleeping, ms < 0 ? 0 : ms);
}

/* ---- 3. the switch ---------------------------------------------------------
 * co_resume runs in the scheduler and switches to a coroutine; the
 * coroutine comes back when it parks, yields or returns (co_ctx_leave). How
 * the stack changes, swapcontext or _setjmp/_longjmp, is coro_switch.c's
 * business. */

static void co_resume(struct co *c)
{
    assert(!sched->current);      /* only the scheduler resumes */
    assert(c->state == CO_READY); /* never a parked or finished one */
    sched->current = c;
    c->state = CO_RUNNING;
    TRACE(TRACE_CO_BEGIN, NULL, c->id);
    co_ctx_enter(c);
    /* The core's one hook: c came back not to wait but to have something
     * run on this stack (co_call_on_loop_stack, coro_deep.c). */
    if (sched->call_on_loop)
        sched->call_on_loop(c);
    TRACE_NOTE(TRACE_CO_END, c->id, /* c is out: why (common/trace.h) */
               c->state == CO_DONE ? "done" : c->wait ? c->wait->why : "yield",
               c->wait ? c->wait->detail : -1);
    sched->current = NULL;
    if (c->state == CO_DONE)
        co_retire(c); /* off its stack now, so the stack can go */
}

/* ---- 4. spawn -------------------------------------------------------------- */

/* Every coroutine starts here (makecontext passes no arguments that can
 * hold a pointer portably, so it finds itself as sched->current). */
static void co_trampoline(void)
{
    san_coroutine_started(&sched->san);
    struct co *c = sched->current;
    c->result = c->fn(c->arg);
    c->state = CO_DONE;
    sched->live--;
    if (c->join_waiter)
        co_wait_end(c->join_waiter, 0);
    co_ctx_leave(c);
    abort(); /* a finished coroutine is never resumed */
}

struct co *co_spawn(co_fn fn, void *arg)
{
    if (!sched || !fn) {
        errno = EINVAL;
        return NULL;
    }
    struct co *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = co_stack_alloc(c);
    if (rc == 0)
        rc = co_ctx_make(c, co_trampoline);
    if (rc < 0) {
        co_stack_free(c);
        free(c);
        errno = -rc;
        return NULL;
    }
    san_fiber_create(&c->san);
    c->id = sched->next_id++;
    c->fn = fn;
    c->arg = arg;
    loop_timer_init(&c->timer, co_on_timer, c);
    list_init(&c->ready_link);
    list_push_back(&sched->all, &c->all_link);
    sched->live++;
    ready_push(c);
    TRACE_FN(TRACE_CO_SPAWN, c->id, fn, -1);
    return c;
}

void co_block_free(struct co *c)
{
    assert(!c->stack); /* its stack went first (co_retire) */
    list_remove(&c->all_link);
    free(c);
}

/* A coroutine just returned: its stack goes at once; its control block
 * stays for co_join, unless nobody will ever join it. */
void co_retire(struct co *c)
{
    co_stack_free(c);
    san_fiber_destroy(&c->san);
    if (c->detached)
        co_block_free(c);
}
