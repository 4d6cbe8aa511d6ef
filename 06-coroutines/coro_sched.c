/* coro_sched: the scheduler's own birth and end (coro.h, "the scheduler"):
 * co_sched_init turns the options into the one struct co_sched, and
 * co_sched_free takes everything down in the order that keeps it safe.
 * Part of the core; the loop that runs in between is coro.c's.
 *
 * Teardown order: first the parts that started on demand and registered a
 * cleanup (co_at_free), since one may still point into a coroutine's stack
 * (a worker thread running a job, a transfer in flight); then every
 * coroutine left, stack and control block; then the stack cache (or the
 * shared stack) and the loop. */
#include "coro_impl.h"

#include <errno.h>
#include <stdlib.h>

int co_sched_init(const struct co_options *opts)
{
    if (sched)
        return -EBUSY;
    struct co_sched *s = calloc(1, sizeof *s);
    if (!s || !(s->loop = loop_open(opts && opts->backend ? opts->backend
                                                          : "epoll"))) {
        int err = errno; /* ENOMEM, EINVAL, or what epoll_create1 said */
        free(s);
        return -err;
    }
    int rc = co_stacks_init(s, opts ? opts->stack_size : 0,
                            opts && opts->stack_kind == CO_STACK_SHARED);
    if (rc < 0) {
        loop_free(s->loop);
        free(s);
        return rc;
    }
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
    for (struct list *it; (it = list_pop_front(&s->cleanups));) {
        struct co_cleanup *cl = LIST_ITEM(it, struct co_cleanup, link);
        cl->end(cl);
    }
    while (!list_empty(&s->all)) {
        struct co *c = LIST_ITEM(s->all.next, struct co, all_link);
        c->detached = true; /* so co_retire frees the block too */
        co_retire(c);
    }
    co_stacks_free();
    loop_free(s->loop);
    san_signals_release(&s->san);
    free(s->fds);
    free(s);
    sched = NULL;
}
