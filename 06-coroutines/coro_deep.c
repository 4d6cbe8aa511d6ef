/* coro_deep: co_call_on_loop_stack (coro.h), deep calls made on the
 * scheduler's own stack. An optimisation of memory, not part of the idea.
 *
 * A coroutine's stack pages, once touched, stay memory until it ends; a
 * cJSON parse or a snprintf of a double touches a few KiB, and 10,000
 * waiting connections would each keep them. So the coroutine leaves the
 * call in sched->deep and switches to the scheduler without parking: it
 * stays CO_RUNNING and queues nowhere. co_resume, back on the loop's stack,
 * runs the core's one hook, sched->call_on_loop, which is deep_serve: it
 * makes the call there and switches straight back, two switches a call. */
#include "coro_impl.h"

/* The scheduler's side, run by co_resume's hook: makes each call c asks
 * for on this stack and goes back to c, until c parks, yields or returns.
 * While a call runs no coroutine is running (co_running is NULL), so a wait
 * in it fails with -EPERM instead of parking the loop's own stack. */
static void deep_serve(struct co *c)
{
    while (sched->deep.fn) {
        co_fn fn = sched->deep.fn;
        sched->deep.fn = NULL;
        sched->deep.running = true;
        sched->deep.result = fn(sched->deep.arg);
        sched->deep.running = false;
        co_ctx_enter(c);
    }
    sched->call_on_loop = NULL;
}

/* The coroutine's side. */
void *co_call_on_loop_stack(co_fn fn, void *arg)
{
    struct co *c = co_running();
    if (!c)
        return fn(arg); /* main, a worker, or already on the loop's stack */
    sched->deep.fn = fn;
    sched->deep.arg = arg;
    sched->call_on_loop = deep_serve;
    co_ctx_leave(c);
    return sched->deep.result;
}
