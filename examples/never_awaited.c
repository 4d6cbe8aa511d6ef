/* never_awaited: a task nobody awaits, asyncio.run versus co_sched_run.
 *
 * Section 8 ("A task that is never awaited"). asyncio original (the
 * fourth seed lecture's "what does this print?"):
 *
 *   async def say():
 *       await asyncio.sleep(0.1); print("hello from the task")
 *   async def main():
 *       asyncio.create_task(say())     # never awaited
 *   asyncio.run(main())                # prints nothing
 *
 * asyncio.run cancels whatever main left pending when main returns, so
 * the task dies in its sleep. co_sched_run differs: it runs until every
 * coroutine has returned, so the same program in C prints the line. To
 * get asyncio.run's behaviour, main cancels its leftovers itself (the
 * second round below); to get the line in Python, main awaits the task.
 * What to notice: round 1 prints the task's line after main returned;
 * round 2 prints only the cancellation. */
#include "../06-coroutines/coro.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

static void *say(void *arg)
{
    (void)arg;
    int rc = co_sleep(100);
    if (rc == -ECANCELED) {
        printf("round 2: the task was cancelled in its sleep, printed nothing\n");
        return NULL;
    }
    printf("round 1: hello from the task, after main returned\n");
    return NULL;
}

/* async def main(): asyncio.create_task(say()) */
static void *main_like_python(void *arg)
{
    (void)arg;
    struct co *t = co_spawn(say, NULL);
    if (t)
        co_detach(t); /* never awaited */
    printf("round 1: main returns\n");
    return NULL;
}

/* What asyncio.run adds after main: cancel what is still pending. */
static void *main_like_asyncio_run(void *arg)
{
    (void)arg;
    struct co *t = co_spawn(say, NULL);
    printf("round 2: main returns, cancelling its pending task\n");
    if (t && co_cancel(t) == 0)
        co_join(t, -1, NULL);
    return NULL;
}

static int round_of(co_fn main_fn)
{
    int rc = -1;
    if (co_sched_init(NULL) == 0) {
        struct co *m = co_spawn(main_fn, NULL);
        if (m && co_detach(m) == 0)
            rc = co_sched_run();
    }
    co_sched_free();
    return rc;
}

int main(void)
{
    return round_of(main_like_python) == 0 && round_of(main_like_asyncio_run) == 0 ? 0 : 1;
}
