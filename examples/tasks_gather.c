/* tasks_gather: await, create_task and gather on 06's scheduler.
 *
 * Section 8 ("await, tasks and gather in C"). asyncio original:
 *
 *   async def fetch(ms):
 *       await asyncio.sleep(ms / 1000); return ms
 *   async def main():
 *       for ms in (100, 200, 300): await fetch(ms)        # one after another
 *       tasks = [asyncio.create_task(fetch(ms)) for ms in (100, 200, 300)]
 *       print(await asyncio.gather(*tasks))               # together
 *   asyncio.run(main())
 *
 * C: co_spawn is create_task, co_join is `await task`, co_gather is
 * gather, co_sleep is asyncio.sleep, co_sched_init + co_sched_run is
 * asyncio.run. What to notice: awaited one after another the three waits
 * add up (about 600 ms); spawned first and gathered they overlap (about
 * 300 ms, the longest), on one thread. */
#include "../06-coroutines/coro.h"

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static const int waits_ms[3] = {100, 200, 300};

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* async def fetch(ms): await asyncio.sleep(ms / 1000); return ms */
static void *fetch(void *arg)
{
    int ms = (int)(intptr_t)arg;
    if (co_sleep(ms) != 0)
        return (void *)(intptr_t)-1;
    return arg;
}

static void *main_co(void *arg)
{
    int *failed = arg;
    struct timespec t0;

    /* await fetch(ms), three times: a spawn and a join each. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long sum = 0;
    for (int i = 0; i < 3; i++) {
        struct co *c = co_spawn(fetch, (void *)(intptr_t)waits_ms[i]);
        void *r;
        if (!c || co_join(c, -1, &r) != 0) {
            *failed = 1;
            return NULL;
        }
        sum += (intptr_t)r;
    }
    printf("awaited one by one: %ld ms of waits took %ld ms\n", sum, ms_since(&t0));

    /* create_task x3, then gather. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct co *tasks[3];
    for (int i = 0; i < 3; i++)
        tasks[i] = co_spawn(fetch, (void *)(intptr_t)waits_ms[i]);
    void *results[3];
    if (co_gather(tasks, 3, -1, results) != 0 || !tasks[0] || !tasks[1] || !tasks[2]) {
        *failed = 1;
        return NULL;
    }
    printf("gathered: results %ld %ld %ld in %ld ms\n", (long)(intptr_t)results[0],
           (long)(intptr_t)results[1], (long)(intptr_t)results[2], ms_since(&t0));
    return NULL;
}

int main(void)
{
    int failed = 0;
    if (co_sched_init(NULL) != 0 || !co_spawn(main_co, &failed) || co_sched_run() != 0)
        failed = 1;
    co_sched_free();
    return failed;
}
