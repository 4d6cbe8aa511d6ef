/* coro: see coro.h for what each function does. This file is how: the
 * core, in six parts: 1. stacks, 2. switching, 3. waiting and waking, 4. the
 * loop, 5. tasks, 6. the scheduler's life. Beside it: coro_stack.c (the
 * stacks themselves), coro_fd.c (waiting on
 * descriptors), coro_pool.c (co_run_blocking), coro_curl.c
 * (co_curl_perform), coro_switch.c (how a switch changes stacks),
 * coro_san.h (what the sanitizers must hear about each switch) and
 * coro_impl.h (the structs they share).
 *
 * 06 stands on 05's loop (common/loop). A coroutine that waits for an fd or
 * a deadline registers a loop callback (loop_watch, loop_timer_arm) whose
 * only job is to resume it, exactly as asyncio's Task is a callback on its
 * event loop (Task.__step). The loop keeps the fd table and guards against
 * stale events; this file only says who waits.
 *
 * Only the scheduler switches to coroutines and coroutines only switch back
 * to the scheduler (never coroutine to coroutine). That costs a second
 * switch per hand-over but keeps every decision in one place: the loop.
 * Loop callbacks therefore never switch: they queue the coroutine, and the
 * scheduler runs the queue between turns of the loop. */
#include "coro_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define CO_MIN_STACK (16 * 1024)

struct co_sched *sched;

/* ---- 1. stacks: coro_stack.c ------------------------------------------- */

/* ---- 2. switching ----------------------------------------------------------
 * co_resume runs in the scheduler and switches to a coroutine;
 * co_switch_out runs in a coroutine and switches back. How the stack
 * changes (swapcontext, or _setjmp/_longjmp) is coro_switch.c's business. */

static void co_retire(struct co *c);

static void co_resume(struct co *c)
{
    sched->current = c;
    c->state = CO_RUNNING;
    co_ctx_enter(c);
    while (sched->call_fn) { /* co_call_on_loop_stack: run it, go back */
        co_fn fn = sched->call_fn;
        sched->call_fn = NULL;
        sched->on_loop_stack = true;
        sched->call_result = fn(sched->call_arg);
        sched->on_loop_stack = false;
        co_ctx_enter(c);
    }
    sched->current = NULL;
    if (c->state == CO_DONE)
        co_retire(c); /* off its stack now, so the stack can go */
}

static void co_switch_out(struct co *c) { co_ctx_leave(c); }

/* The coroutine stays CO_RUNNING: it only lends its turn to the loop's
 * stack, which co_resume runs fn on before switching straight back. */
void *co_call_on_loop_stack(co_fn fn, void *arg)
{
    struct co *c = co_running();
    if (!c)
        return fn(arg); /* main, a worker, or already on the loop's stack */
    sched->call_fn = fn;
    sched->call_arg = arg;
    co_switch_out(c);
    return sched->call_result;
}

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
    co_switch_out(c);
    abort(); /* a finished coroutine is never resumed */
}

static void co_block_free(struct co *c)
{
    list_remove(&c->all_link);
    free(c);
}

/* A coroutine just returned: its stack goes at once; its control block
 * stays for co_join, unless nobody will ever join it. */
static void co_retire(struct co *c)
{
    co_stack_free(c);
    san_fiber_destroy(&c->san);
    if (c->detached)
        co_block_free(c);
}

/* ---- 3. waiting and waking ------------------------------------------------
 * A wait is: register interest somewhere (a loop callback for an fd, a
 * target's join_waiter, the worker queue, the curl multi), then co_park,
 * which arms the optional timer and switches to the scheduler. Whoever ends
 * the wait calls co_wait_end(c, result): it undoes the registration and the
 * timer and queues c. So a timeout, an event and a cancel can never both
 * fire: the first one removes the others. */

static void ready_push(struct co *c)
{
    c->state = CO_READY;
    list_push_back(&sched->ready, &c->ready_link);
    sched->ready_len++;
}

/* Takes c out of whatever it registered with for this wait: the wait's
 * own undo, so the core never needs to know who waits. */
static void co_wait_undo(struct co *c)
{
    if (c->wait->undo)
        c->wait->undo(c, c->wait->arg);
    c->wait = NULL;
}

void co_wait_end(struct co *c, int result)
{
    co_wait_undo(c);
    loop_timer_cancel(sched->loop, &c->timer);
    if (c->wakeable)
        sched->wakeable--;
    c->wakeable = false;
    c->wake_result = result;
    ready_push(c);
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
    c->wait = w;
    if (timeout_ms >= 0 &&
        loop_timer_arm(sched->loop, &c->timer, (uint64_t)timeout_ms) < 0) {
        co_wait_undo(c);
        return -ENOMEM;
    }
    c->wakeable = timeout_ms >= 0 || !w->only_a_coroutine;
    if (c->wakeable)
        sched->wakeable++;
    c->state = CO_WAITING;
    co_switch_out(c);
    return co_resumed(c);
}

int co_cancel(struct co *c)
{
    if (!sched || !c)
        return -EINVAL;
    if (c->state == CO_DONE)
        return -ESRCH;
    c->cancel_pending = true;
    /* Some waits must run to their end: a worker thread is writing into
     * c's stack (co_run_blocking), or co_join must not return while the
     * coroutine it cancelled still runs (its unwind). */
    if (c->state == CO_WAITING && !c->wait->must_finish)
        co_wait_end(c, -ECANCELED);
    return 0;
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
    co_switch_out(c);
    return co_resumed(c);
}

int co_sleep(int ms)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    static const struct co_wait sleeping = {.timer_result = 0};
    return co_park(c, &sleeping, ms < 0 ? 0 : ms);
}

/* ---- 4. the loop -----------------------------------------------------------
 * asyncio's run_forever: run what is ready, then one turn of the loop, whose
 * callbacks (fd, timer, worker eventfd, curl) only queue what they resume. */

/* Runs the coroutines that are ready now. Those that become ready during
 * this pass (by co_yield, a spawn, a wake-up) wait for the next pass, so a
 * coroutine that yields in a loop cannot keep epoll from being polled. */
static void run_ready(void)
{
    for (size_t n = sched->ready_len; n > 0; n--) {
        struct list *it = list_pop_front(&sched->ready);
        sched->ready_len--;
        co_resume(LIST_ITEM(it, struct co, ready_link));
    }
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

/* ---- 5. tasks --------------------------------------------------------- */
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
    list_push_back(&sched->all, &c->all_link);
    sched->live++;
    ready_push(c);
    return c;
}

int co_detach(struct co *c)
{
    if (!sched || !c || c->claimed || c->detached)
        return -EINVAL;
    c->detached = true;
    if (c->state == CO_DONE)
        co_block_free(c);
    return 0;
}

/* A join's undo: t no longer has self waiting for it. */
static void co_join_undo(struct co *self, void *t)
{
    struct co *target = t;
    if (target->join_waiter == self)
        target->join_waiter = NULL;
}

/* Parks self until t has returned (or the timeout or a cancel). An unwind
 * (waiting for a cancelled t to finish its cleanup) must finish. */
static int co_wait_for(struct co *self, struct co *t, bool unwind,
                       int timeout_ms)
{
    struct co_wait w = {.undo = co_join_undo, .arg = t,
                        .timer_result = -ETIMEDOUT, .must_finish = unwind,
                        .only_a_coroutine = true};
    t->join_waiter = self;
    return co_park(self, &w, timeout_ms);
}

/* The checks that leave a handle untouched when they fail. */
static int co_join_check(const struct co *self, const struct co *t)
{
    if (!t)
        return -EINVAL;
    if (t == self)
        return -EDEADLK;
    if (t->claimed || t->detached)
        return -EINVAL;
    if (!self && t->state != CO_DONE)
        return -EPERM;
    return 0;
}

int co_join(struct co *t, int timeout_ms, void **result)
{
    if (!sched)
        return -EINVAL;
    struct co *self = co_running();
    int rc = co_join_check(self, t);
    if (rc < 0)
        return rc;
    if (t->state != CO_DONE) {
        t->claimed = true;
        rc = co_take_cancel(self) ? -ECANCELED
                                  : co_wait_for(self, t, false, timeout_ms);
        if (rc < 0 && t->state != CO_DONE) {
            /* wait_for's rule: what we stop waiting for, we stop. Then we
             * wait for its cleanup, so no coroutine outlives its handle. */
            co_cancel(t);
            while (t->state != CO_DONE)
                if (co_wait_for(self, t, true, -1) == -ECANCELED)
                    rc = -ECANCELED;
        }
    }
    if (result)
        *result = t->result;
    co_block_free(t);
    return rc;
}

int co_gather(struct co **cs, size_t n, int timeout_ms, void **results)
{
    if (!sched || (!cs && n > 0))
        return -EINVAL;
    struct co *self = co_running();
    for (size_t i = 0; i < n; i++) {
        int rc = cs[i] ? co_join_check(self, cs[i]) : 0;
        if (rc < 0)
            return rc;
    }
    uint64_t deadline = co_deadline(timeout_ms);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (cs[i]) {
            int jr = co_join(cs[i], rc < 0 ? -1 : co_time_left(deadline), &r);
            if (jr < 0 && rc == 0) {
                rc = jr; /* the first failure cancels the rest... */
                for (size_t j = i + 1; j < n; j++)
                    if (cs[j])
                        co_cancel(cs[j]);
            } else if (jr == -ECANCELED) {
                rc = -ECANCELED; /* ...and being cancelled outranks a timeout */
            }
        }
        if (results)
            results[i] = r;
    }
    return rc;
}

struct co *co_self(void) { return co_running(); }

long co_id(const struct co *c) { return c ? c->id : -1; }

long co_current_id(void)
{
    /* Worker threads log too; they must not read sched->current, which
     * the loop thread writes. sched itself is stable while they run. */
    struct co_sched *s = sched;
    if (!s || !pthread_equal(pthread_self(), s->loop_thread) || !s->current)
        return -1;
    return s->current->id;
}

/* ---- 6. the scheduler's life ------------------------------------------- */
int co_sched_init(const struct co_options *opts)
{
    if (sched)
        return -EBUSY;
    struct co_sched *s = calloc(1, sizeof *s);
    if (!s || !(s->loop = loop_new())) {
        int err = errno; /* ENOMEM, or what epoll_create1 said */
        free(s);
        return -err;
    }
    long page = sysconf(_SC_PAGESIZE);
    s->page_size = page > 0 ? (size_t)page : 4096;
    size_t size = opts && opts->stack_size ? opts->stack_size
                                           : CO_DEFAULT_STACK_SIZE;
    if (size < CO_MIN_STACK)
        size = CO_MIN_STACK;
    s->stack_size = (size + s->page_size - 1) / s->page_size * s->page_size;
    s->workers = opts && opts->workers > 0 ? opts->workers
                                           : CO_DEFAULT_WORKERS;
    s->use_setjmp = !opts || opts->switch_kind != CO_SWITCH_SWAPCONTEXT;
    list_init(&s->ready);
    list_init(&s->all);
    list_init(&s->cleanups);
    s->next_id = 1;
    s->loop_thread = pthread_self();
    san_signals_hold(&s->san, s->loop);
    sched = s;
    return 0;
}

void co_at_free(struct co_cleanup *cl)
{
    list_push_back(&sched->cleanups, &cl->link);
}

void co_sched_free(void)
{
    struct co_sched *s = sched;
    if (!s || s->running)
        return;
    /* The parts started on demand first: a worker may still write into a
     * stack, a transfer in flight lives on one. */
    for (struct list *it; (it = list_pop_front(&s->cleanups));) {
        struct co_cleanup *cl = LIST_ITEM(it, struct co_cleanup, link);
        cl->end(cl);
    }
    while (!list_empty(&s->all)) {
        struct co *c = LIST_ITEM(s->all.next, struct co, all_link);
        c->detached = true; /* so co_retire frees the block too */
        co_retire(c);
    }
    co_stack_cache_free();
    loop_free(s->loop);
    san_signals_release(&s->san);
    free(s->fds);
    free(s);
    sched = NULL;
}
