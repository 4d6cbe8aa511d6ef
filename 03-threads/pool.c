/* 03-threads --pool N: a fixed pool fed through a bounded queue.
 *
 * What it is: ThreadPoolExecutor's shape, UNP's pre-threaded server with
 * the main thread accepting (chapter 30). N threads are started once
 * (server.c), and a queue of accepted connections lies between the
 * accepting thread and them: a ring of --queue descriptors under one
 * mutex. A pool thread takes the oldest, serves that connection to its
 * end, and takes the next. Past --queue waiting connections the accepting
 * thread answers 503 itself: a queue without a bound would hide the
 * overload as ever longer waits.
 *
 * What it costs: it bounds the threads without a pthread_create per
 * connection, but a pool thread is held for a whole connection, slow
 * requests and idle keep-alive time included. N slow clients hold all N
 * threads, and a GET / that needs a microsecond waits in the queue behind
 * them: the clogged pool. A thread per connection (03's model) never makes
 * anyone wait for someone else's request; the pool trades that for a
 * fixed number of threads. Async jobs still run on their own threads
 * (bounded by the budget): only connections go through the pool.
 *
 * What to notice: with --pool 4 --delay-ms 1000, ten slow requests and
 * then a GET /, the GET / is answered after about two rounds of slow
 * requests (LECTURE.md, "Pools and cores", measures it). The queue's lock
 * is the only state the pool threads share; ThreadSanitizer checks it
 * (make test SAN=thread). */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "conn_io.h"
#include "log.h"
#include "net.h"

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    int *fds;          /* ring of size accepted sockets */
    size_t size, head, count;
    bool closing;      /* the stop: take what is queued, then leave */
};

struct pool *pool_new(int queue_len)
{
    struct pool *p = calloc(1, sizeof *p);
    int *fds = calloc((size_t)queue_len, sizeof *fds);
    int err = p && fds ? pthread_mutex_init(&p->lock, NULL) : ENOMEM;
    if (!err) {
        err = pthread_cond_init(&p->nonempty, NULL);
        if (err)
            pthread_mutex_destroy(&p->lock);
    }
    if (err) {
        log_warn("pool: cannot make a queue of %d: %s", queue_len,
                 strerror(err));
        free(fds);
        free(p);
        return NULL;
    }
    p->fds = fds;
    p->size = (size_t)queue_len;
    return p;
}

/* Queues an accepted socket; false when the queue is full. */
static bool pool_push(struct pool *p, int fd)
{
    pthread_mutex_lock(&p->lock);
    bool room = p->count < p->size;
    if (room) {
        p->fds[(p->head + p->count++) % p->size] = fd;
        pthread_cond_signal(&p->nonempty);
    }
    pthread_mutex_unlock(&p->lock);
    return room;
}

/* The next queued socket, waiting for one; -1 once the pool is closing
 * and its queue is empty. */
static int pool_take(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->count == 0 && !p->closing)
        pthread_cond_wait(&p->nonempty, &p->lock);
    int fd = -1;
    if (p->count > 0) {
        fd = p->fds[p->head];
        p->head = (p->head + 1) % p->size;
        p->count--;
    }
    pthread_mutex_unlock(&p->lock);
    return fd;
}

void pool_serve(struct pool *p, void (*serve)(int fd, const char *peer))
{
    for (int fd; (fd = pool_take(p)) >= 0;) {
        char peer[64];
        net_peer_name(fd, peer, sizeof peer);
        serve(fd, peer);
    }
}

void pool_offer(struct pool *p, int fd)
{
    if (pool_push(p, fd))
        return;
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_warn("pool queue full (%zu waiting): refusing %s with 503", p->size,
             peer);
    conn_io_refuse_busy(fd, "the pool's queue is full");
}

void pool_close(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    pthread_cond_broadcast(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
}

void pool_free(struct pool *p)
{
    pthread_cond_destroy(&p->nonempty);
    pthread_mutex_destroy(&p->lock);
    free(p->fds);
    free(p);
}
