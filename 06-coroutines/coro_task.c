/* coro_task: what a handle from co_spawn can do (coro.h, "tasks"): join it,
 * gather several, cancel, detach, and who am I. asyncio's Task methods.
 *
 * Built on the core's one way of waiting (coro.c): a join registers itself
 * as its target's join_waiter and parks; the target, returning, ends that
 * wait (co_trampoline). The join's undo takes the registration back when a
 * timeout or a cancel ends the wait first. */
#include "coro_impl.h"

#include <errno.h>

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
    struct co_wait w = {.undo = co_join_undo, .arg = t, .why = "join co",
                        .detail = t->id,
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
    uint64_t deadline = timer_deadline_in(timeout_ms);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (cs[i]) {
            int left = timer_ms_left(deadline, timer_now_ms());
            int jr = co_join(cs[i], rc < 0 ? -1 : left, &r);
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
