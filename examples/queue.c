/* queue: asyncio.Queue(maxsize=2) between a producer and a consumer.
 *
 * Section 8 ("asyncio.Queue in C"). asyncio original:
 *
 *   q = asyncio.Queue(maxsize=2)
 *   async def producer():
 *       for i in range(6): await q.put(i); print("put", i)
 *       await q.put(None)
 *   async def consumer():
 *       while (i := await q.get()) is not None:
 *           await asyncio.sleep(0.05); print("got", i)
 *   await asyncio.gather(producer(), consumer())
 *
 * coro.h has no queue, so one is built from its primitives: a ring of
 * slots plus two pipes used as counting semaphores (one byte per token).
 * "free" starts with maxsize bytes; put takes a byte from it (co_read
 * parks the producer while the queue is full) and adds one to "items";
 * get does the reverse. co_read on a non-blocking pipe is the park and
 * the wake-up. (coro.h lets one coroutine wait on each direction of an fd,
 * so this queue serves one producer and one consumer; more would need a
 * list of waiters, which is what asyncio.Queue keeps.)
 * What to notice: the producer gets ahead until the queue is full (two
 * waiting, one in the consumer's hands), then every "put" waits for a
 * "got": put 0 1 2, got 0, put 3, got 1... (backpressure). */
#include "../06-coroutines/coro.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define MAXSIZE 2
#define ITEMS 6

struct queue {
    intptr_t ring[MAXSIZE];
    int head, tail;
    int free_fd[2], items_fd[2]; /* [0] read end, [1] write end */
};

static int sem_down(int fd[2])
{
    char b;
    ssize_t n = co_read(fd[0], &b, 1, -1);
    return n == 1 ? 0 : n < 0 ? (int)n : -EPIPE;
}

static int sem_up(int fd[2])
{
    ssize_t n = co_write(fd[1], "x", 1, -1);
    return n == 1 ? 0 : (int)n;
}

static int queue_put(struct queue *q, intptr_t v)
{
    int rc = sem_down(q->free_fd); /* waits while the queue is full */
    if (rc != 0)
        return rc;
    q->ring[q->tail] = v;
    q->tail = (q->tail + 1) % MAXSIZE;
    return sem_up(q->items_fd);
}

static int queue_get(struct queue *q, intptr_t *v)
{
    int rc = sem_down(q->items_fd); /* waits while the queue is empty */
    if (rc != 0)
        return rc;
    *v = q->ring[q->head];
    q->head = (q->head + 1) % MAXSIZE;
    return sem_up(q->free_fd);
}

static void *producer(void *arg)
{
    struct queue *q = arg;
    for (intptr_t i = 0; i < ITEMS; i++) {
        if (queue_put(q, i) != 0)
            return (void *)1;
        printf("put %ld\n", (long)i);
    }
    return (void *)(intptr_t)(queue_put(q, -1) != 0); /* -1 is the None */
}

static void *consumer(void *arg)
{
    struct queue *q = arg;
    intptr_t v;
    for (;;) {
        if (queue_get(q, &v) != 0 || co_sleep(50) != 0)
            return (void *)1;
        if (v < 0)
            return NULL;
        printf("got %ld\n", (long)v);
    }
}

static int make_pipe(int fd[2])
{
    if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("pipe2");
        return -1;
    }
    return 0;
}

static void *main_co(void *arg)
{
    struct queue *q = arg;
    struct co *both[2] = {co_spawn(producer, q), co_spawn(consumer, q)};
    void *r[2] = {0, 0};
    if (!both[0] || !both[1] || co_gather(both, 2, 5000, r) != 0)
        return (void *)1;
    return (void *)((intptr_t)r[0] | (intptr_t)r[1]);
}

int main(void)
{
    struct queue q = {.head = 0, .tail = 0};
    if (make_pipe(q.free_fd) != 0 || make_pipe(q.items_fd) != 0)
        return 1;
    for (int i = 0; i < MAXSIZE; i++)
        if (write(q.free_fd[1], "x", 1) != 1)
            return 1;
    void *r = (void *)1;
    struct co *m = NULL;
    if (co_sched_init(NULL) == 0 && (m = co_spawn(main_co, &q)) && co_sched_run() == 0)
        co_join(m, -1, &r);
    for (int i = 0; i < 2; i++) {
        co_close(q.free_fd[i]);
        co_close(q.items_fd[i]);
    }
    co_sched_free();
    return r == NULL ? 0 : 1;
}
