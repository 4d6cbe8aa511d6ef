/* cancel_timeout: task.cancel() and asyncio.wait_for on 06's scheduler.
 *
 * Section 8 ("Cancellation and timeouts in C"). asyncio original:
 *
 *   async def worker():
 *       try: await asyncio.sleep(10)
 *       except asyncio.CancelledError: print("cleanup"); raise
 *   t = asyncio.create_task(worker()); await asyncio.sleep(0.1); t.cancel()
 *   try: await t
 *   except asyncio.CancelledError: print("cancelled")
 *   try: await asyncio.wait_for(worker(), timeout=0.2)
 *   except asyncio.TimeoutError: print("timed out")
 *
 * C: co_cancel makes the target's wait return -ECANCELED (its
 * CancelledError); the target runs its own cleanup and returns. co_join
 * with a timeout is wait_for: past it the target is cancelled, its cleanup
 * awaited, and co_join returns -ETIMEDOUT. What to notice: both times the
 * worker's cleanup line is printed before the caller goes on, and the
 * 10 s sleep ends after 100 and 200 ms. */
#include "../06-coroutines/coro.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Sleeps 10 s; on -ECANCELED cleans up and returns the error. */
static void *worker(void *arg)
{
    const char *name = arg;
    int rc = co_sleep(10000);
    if (rc == -ECANCELED)
        printf("%s: sleep returned -ECANCELED, cleanup runs\n", name);
    return (void *)(intptr_t)rc;
}

/* Returns NULL when both demonstrations went as described, else 1. */
static void *main_co(void *arg)
{
    (void)arg;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    struct co *t = co_spawn(worker, "cancelled worker");
    void *r = NULL;
    if (!t || co_sleep(100) != 0 || co_cancel(t) != 0 || co_join(t, -1, &r) != 0)
        return (void *)1;
    printf("cancel: worker returned %s after %ld ms\n",
           (intptr_t)r == -ECANCELED ? "-ECANCELED" : "something else", ms_since(&t0));

    clock_gettime(CLOCK_MONOTONIC, &t0);
    t = co_spawn(worker, "timed-out worker");
    int rc = t ? co_join(t, 200, &r) : -ENOMEM;
    printf("wait_for: co_join returned %s after %ld ms\n",
           rc == -ETIMEDOUT ? "-ETIMEDOUT" : strerror(-rc), ms_since(&t0));
    return rc == -ETIMEDOUT ? NULL : (void *)1;
}

int main(void)
{
    void *failed = (void *)1;
    struct co *m = NULL;
    if (co_sched_init(NULL) == 0 && (m = co_spawn(main_co, NULL)) && co_sched_run() == 0)
        co_join(m, -1, &failed); /* it has finished: main may join it */
    co_sched_free();
    return failed == NULL ? 0 : 1;
}
