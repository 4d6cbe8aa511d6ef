/* pool: 03-threads' --pool N, a fixed pool of threads fed through a
 * bounded queue (UNP's pre-threaded server, chapter 30; Python's
 * ThreadPoolExecutor). server.c starts the N threads the way it starts
 * any thread and counts them as connection threads; the queue and what a
 * pool thread does are here. What it is, what it costs, what to notice:
 * pool.c's header. */
#ifndef THREADS_POOL_H
#define THREADS_POOL_H

/* The queue of accepted connections between the accepting thread and the
 * pool threads. */
struct pool;

/* An empty queue with room for queue_len connections (>= 1). NULL (logged)
 * if it cannot be made. */
struct pool *pool_new(int queue_len);

/* A pool thread's life: the oldest queued connection, served with
 * serve(fd, peer) to its end (serve closes fd), then the next, until
 * pool_close and the queue is empty. Then it returns. */
void pool_serve(struct pool *p, void (*serve)(int fd, const char *peer));

/* The accepting thread's side: queues fd for the pool threads, or, when
 * the queue is full, answers 503 itself and closes fd. */
void pool_offer(struct pool *p, int fd);

/* The stop: the pool threads serve what is queued, then leave. */
void pool_close(struct pool *p);

/* Frees the queue; the pool threads must be gone. */
void pool_free(struct pool *p);

#endif
