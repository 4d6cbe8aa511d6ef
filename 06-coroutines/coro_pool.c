/* coro_pool: co_run_blocking, asyncio's run_in_executor (coro.h).
 *
 * co_run_blocking queues a job and parks. The job lives in the heap, not
 * on the waiting coroutine's stack, though that coroutine cannot leave
 * until the job is back: a worker thread reads and writes it, and other
 * jobs link to it, while the coroutine is parked, when with a shared stack
 * its frames are elsewhere (coro.h, "Stacks"). A
 * worker runs it, moves it to the done list and writes an eventfd, which
 * sits in the loop like any socket; its loop callback wakes the waiters of
 * every finished job. The mutex is the only synchronisation between the
 * loop and the workers; it also orders the worker's write of job->result
 * before the coroutine reads it. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "coro_impl.h"

/* A call waiting for a worker thread; in the heap (see above). */
struct co_job {
    co_fn fn;
    void *arg;
    void *result;
    struct co *co;
    struct list link;          /* in the pool's todo list, then its done list */
};

struct co_pool {
    pthread_mutex_t lock;      /* guards the two lists and stop */
    pthread_cond_t work;       /* a job was queued, or stop was set */
    struct list todo, done;
    bool stop;
    int efd;                   /* eventfd: "done list not empty" */
    pthread_t *threads;
    int nthreads;
    struct co_cleanup cleanup; /* ends it at co_sched_free */
};

/* The scheduler's workers: started by the first co_run_blocking, ended
 * with the scheduler (one scheduler at a time, so one pool). */
static struct co_pool *sched_pool;

static void pool_notify(struct co_pool *p)
{
    uint64_t one = 1;
    /* EAGAIN would mean the counter is full: it is readable anyway. */
    while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void *pool_worker(void *arg)
{
    struct co_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (list_empty(&p->todo) && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        struct list *it = list_pop_front(&p->todo);
        if (!it)
            break; /* stopping, and nothing is left to run */
        struct co_job *job = LIST_ITEM(it, struct co_job, link);
        pthread_mutex_unlock(&p->lock);

        job->result = job->fn(job->arg);

        pthread_mutex_lock(&p->lock);
        list_push_back(&p->done, &job->link);
        pool_notify(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Loop callback: the eventfd fired, so wake the coroutines whose jobs are
 * done. */
static void pool_on_done(struct loop *loop, int fd, unsigned events,
                         void *arg)
{
    (void)loop;
    (void)events;
    struct co_pool *p = arg;
    uint64_t count;
    /* Reset first: a job finishing after the list is taken writes again. */
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    struct list done; /* moved out, to wake them without the lock */
    list_init(&done);
    pthread_mutex_lock(&p->lock);
    for (struct list *it; (it = list_pop_front(&p->done));)
        list_push_back(&done, it);
    pthread_mutex_unlock(&p->lock);
    for (struct list *it; (it = list_pop_front(&done));)
        co_wait_end(LIST_ITEM(it, struct co_job, link)->co, 0);
}

/* Waits for the running and queued jobs, then ends the workers. The jobs
 * done by then belong to coroutines that will never run again (the
 * scheduler is going): they are freed here. */
static void pool_free(struct co_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (struct list *it; (it = list_pop_front(&p->done));)
        free(LIST_ITEM(it, struct co_job, link));
    if (p->efd >= 0) {
        loop_unwatch(sched->loop, p->efd);
        close(p->efd);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p->threads);
    free(p);
}

/* co_sched_free: before the stacks go, since a job lives on one. */
static void pool_end(struct co_cleanup *self)
{
    pool_free(container_of(self, struct co_pool, cleanup));
    sched_pool = NULL;
}

/* Starts the workers on first use. Signals stay with the loop thread: the
 * workers block them all, so a SIGTERM interrupts epoll_wait, not a job. */
static int pool_start(void)
{
    if (sched_pool)
        return 0;
    struct co_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    list_init(&p->todo);
    list_init(&p->done);
    p->threads = calloc((size_t)sched->workers, sizeof *p->threads);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!p->threads || p->efd < 0 ||
        loop_watch(sched->loop, p->efd, LOOP_READABLE, pool_on_done, p) < 0) {
        pool_free(p);
        return -EAGAIN;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < sched->workers; i++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, pool_worker, p) != 0)
            break;
        p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->nthreads == 0) {
        pool_free(p);
        return -EAGAIN;
    }
    p->cleanup.end = pool_end;
    co_at_free(&p->cleanup);
    sched_pool = p;
    return 0;
}

int co_run_blocking(co_fn fn, void *arg, void **result)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    if (co_take_cancel(c))
        return -ECANCELED;
    if (pool_start() < 0)
        return -EAGAIN;
    struct co_pool *p = sched_pool;
    struct co_job *job = malloc(sizeof *job);
    if (!job)
        return -ENOMEM;
    *job = (struct co_job){.fn = fn, .arg = arg, .co = c};
    pthread_mutex_lock(&p->lock);
    list_push_back(&p->todo, &job->link);
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    /* No timeout, no undo, and it must finish: only pool_on_done ends this
     * wait, so `job` outlives the worker's use of it. */
    static const struct co_wait w = {.must_finish = true, .why = "pool",
                                     .detail = -1};
    int rc = co_park(c, &w, -1);
    if (result)
        *result = job->result;
    free(job);
    return rc;
}
