/* 03-threads: a thread per connection.
 *
 * The model: the main thread only accepts. For every connection it starts
 * a detached thread that serves it with the same blocking calls as 01 and
 * 02 (read, nanosleep, write, curl), keep-alive included, and ends when the
 * connection does. The kernel schedules the threads as it scheduled 02's
 * processes, so twenty clients that each wait 2 s are answered after 2 s.
 * Unlike processes, threads share the address space: the async route can
 * wait its bills together in a few threads and pick up the subtotals
 * straight from memory. That is the C form of asyncio.gather:
 * pthread_create is create_task, pthread_join is await.
 *
 * What it costs: a thread per connection, and per async job 1 + at most
 * BILL_THREADS_PER_JOB (4). A thread is cheaper than a process (no page
 * tables to copy, no pid of its own) but each has a stack and a scheduler
 * slot, and a thousand sleeping clients are a thousand threads. So every
 * count is capped before it grows: --max-threads (default 1024) caps the
 * connection threads (past it the main thread answers 503 itself), and
 * the async budget (--max-jobs, --max-bills, jobcap.h) caps the jobs,
 * checked before the ok (past it, 503 with Retry-After). At most
 * max-threads + 5 * max-jobs threads, whatever clients send. (A thread per
 * bill, as this stage once had, made 400 pipelined jobs of 100 bills start
 * 32,440 threads.) Sharing memory is also the new danger: anything two
 * threads touch needs a lock or an atomic. Here that is the live counters
 * (one mutex, one condition variable) and the budget (atomics); everything
 * else a thread uses is its own (its socket, its parser, its copy of the
 * job, its random seed, its subtotals) or read-only after main starts them
 * (the configuration). ThreadSanitizer checks that claim (make
 * SAN=thread).
 *
 * Stack size: THREAD_STACK_BYTES, 256 KiB, set explicitly for every thread.
 * The parser's buffer is on the heap; what sits on a thread's stack is a
 * job (~2.5 KB for 100 bills), its subtotals (800 B), one log line (1 KB),
 * and, in a job thread, libcurl's transfer (tens of KB at most). 256 KiB
 * leaves room for all that several times over, sanitizer builds included.
 * The default, RLIMIT_STACK (usually 8 MiB), would reserve 8 MiB of address
 * space per thread: 8 GiB for a thousand connections that use a few KB
 * each.
 *
 * Stopping (SIGINT/SIGTERM): the main thread stops accepting, closes the
 * listening socket and waits, at most --drain-ms, until the live counters
 * fall to zero: every connection thread and every async job has finished.
 * A connection thread between requests polls the shutdown pipe beside its
 * socket (conn_io_read_request; shutdown.h: the pipe stays readable once
 * a stop is asked), so an idle keep-alive connection is closed at once
 * instead of holding the stop for its whole idle timeout. That is simpler
 * than tracking every socket to shut them down from outside, and it is
 * the same wait as 02's.
 * A thread inside a request finishes it and answers "Connection: close".
 * When the drain is over (a second signal, or --drain-ms passed), every
 * wait of every thread gives up (they all watch the now pipe: a bill's
 * sleep, a callback's try and backoff, a client's socket), the main
 * thread gives them SHUTDOWN_UNWIND_MS to unwind, names each job whose
 * callback was not delivered (jobcap_report) and exits. The condition
 * variable cannot wait on a pipe, so the main thread waits on it in
 * slices of STOP_POLL_MS and looks at the now pipe between them.
 * Only the main thread takes SIGINT/SIGTERM (thread_start blocks them in
 * every other thread), so the handler never interrupts a worker.
 *
 * What to notice in the log: each line carries "tid N". A connection's
 * lines share a tid; an async job's bills come from up to four tids, all
 * within a few milliseconds of each other, one delay after the job
 * started: the bills were waited together. All a job's calls start at
 * once, so a thread with several bills sleeps until each one's due time
 * (clock_nanosleep with TIMER_ABSTIME) rather than one delay after the
 * other.
 *
 * Simplifications, on purpose:
 * - A slow client holds its thread until its request's deadlines pass
 *   (--idle-timeout-ms, --header-timeout-ms, --body-timeout-ms; they never
 *   move, however the bytes trickle in). That costs one thread.
 * - Bill threads and job threads are not counted against --max-threads
 *   (which caps connections, as its help says); the async budget bounds
 *   them. A bill thread that cannot be created has its share waited in the
 *   job thread itself, after the others started: the due times are
 *   absolute, so it costs no extra time.
 * - Past --max-threads the main thread writes the 503 without reading the
 *   request: it cannot afford to wait for a slow client
 *   (conn_io_refuse_busy).
 *
 * --pool N [--queue N] is ThreadPoolExecutor's shape (UNP's pre-threaded
 * server, chapter 30): N threads started once, fed through a bounded
 * queue, 503 past it. The queue and a pool thread's loop are in pool.c;
 * this file starts and counts the threads like any other (start_pool).
 *
 * Reading and answering a connection's requests is the same in 01 and 02,
 * so it lives in common/conn_io (conn_io_serve); this file is the model. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "conn_io.h"
#include "endpoint.h"
#include "http.h"
#include "jobcap.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "pool.h"
#include "shutdown.h"
#include "stage.h"
#include "timer.h"
#include "trace.h"

#define STAGE "03-threads"
#define THREAD_STACK_BYTES (256 * 1024) /* why: see the header */
#define BILL_THREADS_PER_JOB 4 /* a job's bills wait in at most this many */

/* Filled by main before the first thread starts, read-only afterwards. */
static struct config cfg;

/* ---- What is shared: the live counts, under one lock ---- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t live_changed; /* on CLOCK_MONOTONIC, set up in main */
static int live_connections;        /* connection threads running */
static int live_jobs;               /* async jobs running, bills included */

/* The async budget (jobcap.h): atomic counters, no lock needed. */
static struct jobcap jobcap;

/* Counts one more in *count unless it is at limit. Returns the new count,
 * or -1 when full. */
static int live_enter(int *count, int limit)
{
    pthread_mutex_lock(&live_lock);
    int n = *count < limit ? ++*count : -1;
    pthread_mutex_unlock(&live_lock);
    return n;
}

static void live_leave(int *count)
{
    pthread_mutex_lock(&live_lock);
    --*count;
    pthread_cond_broadcast(&live_changed); /* main may be waiting to exit */
    pthread_mutex_unlock(&live_lock);
}

/* pthread_create with our small stack. SIGINT/SIGTERM are blocked while
 * the thread is created, so it starts (and stays) with them blocked and
 * only the main thread runs the handler. 0, or an errno value. */
static int thread_start(pthread_t *t, bool detached, void *(*fn)(void *),
                        void *arg)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err)
        return err;
    err = pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    if (!err && detached)
        err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (!err) {
        sigset_t old;
        shutdown_mask_signals(SIG_BLOCK, &old);
        err = pthread_create(t, &attr, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_attr_destroy(&attr);
    return err;
}

/* ---- An async job: its bills waited together, then the callback ---- */

/* Sleeps until deadline_ms on timer_now_ms's clock (CLOCK_MONOTONIC),
 * resuming after signals; returns at once if it has passed. False if the
 * stop's drain ended first (shutdown_sleep_ms). */
static bool sleep_until_ms(uint64_t deadline_ms)
{
    return shutdown_sleep_ms(timer_ms_left(deadline_ms, timer_now_ms()));
}

/* A job's bills, split between at most BILL_THREADS_PER_JOB threads. All
 * the calls start together (started_ms), so each bill's answer is due at
 * its own absolute time: a thread with several bills sleeps until each
 * due time in turn, and the job still takes one delay, not several. */
struct bill_share {
    const struct exchange_request *job;
    const int *delay_ms;   /* each bill's delay, drawn by the job */
    uint64_t started_ms;
    size_t first, step;    /* this thread's bills: first, first + step, .. */
    double *subtotals;     /* the job's array: each thread writes its own */
    pthread_t thread;
    bool started;
    bool cut;              /* the stop ended its wait: the job is abandoned */
};

/* One thread's share of the bills' simulated external calls. */
static void *bill_thread(void *arg)
{
    struct bill_share *b = arg;
    const struct exchange_request *job = b->job;
    for (size_t i = b->first; i < job->num_bills; i += b->step) {
        TRACE(TRACE_BILL_BEGIN, job, i);
        if (!sleep_until_ms(b->started_ms + (uint64_t)b->delay_ms[i])) {
            b->cut = true;
            break;
        }
        b->subtotals[i] = exchange_subtotal(&job->bills[i],
                                            job->exchange_rate);
        endpoint_log_bill(job, i, b->subtotals[i]);
        TRACE(TRACE_BILL_END, job, i);
        jobcap_bills_done(&jobcap, job, 1);
    }
    return NULL;
}

/* asyncio.gather in C: the bills' waits split between a few threads, then
 * join them all. Each thread writes only its own subtotals[i], and
 * pthread_join makes those writes visible here, so no lock is needed. A
 * thread that cannot start has its share waited here instead: the due
 * times are absolute, so that costs no extra time. False if the stop's
 * drain cut a wait. */
static bool gather_bills(const struct exchange_request *job, double *subtotals)
{
    int delay_ms[EXCHANGE_MAX_BILLS];
    unsigned seed = (unsigned)timer_now_ms() ^ (unsigned)(uintptr_t)job;
    for (size_t i = 0; i < job->num_bills; i++)
        delay_ms[i] = config_bill_delay_ms(&cfg, &seed);
    size_t n = job->num_bills < BILL_THREADS_PER_JOB ? job->num_bills
                                                     : BILL_THREADS_PER_JOB;
    struct bill_share shares[BILL_THREADS_PER_JOB];
    uint64_t started = timer_now_ms();
    for (size_t t = 0; t < n; t++) {
        shares[t] = (struct bill_share){
            .job = job, .delay_ms = delay_ms, .started_ms = started,
            .first = t, .step = n, .subtotals = subtotals};
        int err = thread_start(&shares[t].thread, false, bill_thread,
                               &shares[t]);
        shares[t].started = err == 0;
        if (err)
            log_warn("bill thread: %s; waiting its bills here",
                     strerror(err));
    }
    for (size_t t = 0; t < n; t++)
        if (!shares[t].started)
            bill_thread(&shares[t]);
    bool all_in = true;
    for (size_t t = 0; t < n; t++) {
        if (shares[t].started)
            pthread_join(shares[t].thread, NULL);
        all_in = all_in && !shares[t].cut;
    }
    return all_in;
}

/* The background thread of one async job; it owns the job (malloc'd) and
 * its place in the budget, given back when the callback is delivered or
 * given up (conn_io_finish_job), and kept if the stop abandons it, for
 * the stop's report. */
static void *job_thread(void *arg)
{
    struct exchange_request *job = arg;
    double started = log_elapsed();
    log_info("job %s: waiting %zu bills at once in %zu threads",
             job->request_id, job->num_bills,
             job->num_bills < BILL_THREADS_PER_JOB ? job->num_bills
                                                   : BILL_THREADS_PER_JOB);
    double subtotals[EXCHANGE_MAX_BILLS];
    if (gather_bills(job, subtotals)) {
        log_info("job %s: all %zu bills in after %.3f s; sending the "
                 "callback", job->request_id, job->num_bills,
                 log_elapsed() - started);
        conn_io_finish_job(&cfg, &jobcap, job, subtotals);
    }
    free(job);
    live_leave(&live_jobs);
    return NULL;
}

/* Hands a copy of an admitted job (its budget already taken) to a
 * background thread, so the connection thread can go on with its client.
 * False (logged) if that thread cannot start: the caller then ends the
 * job. */
static bool start_async_job(const struct exchange_request *job)
{
    struct exchange_request *copy = malloc(sizeof *copy);
    int err = copy ? 0 : ENOMEM;
    if (copy) {
        *copy = *job;
        live_enter(&live_jobs, INT_MAX);
        pthread_t t;
        err = thread_start(&t, true, job_thread, copy);
        if (err) {
            live_leave(&live_jobs);
            free(copy);
        }
    }
    if (err)
        log_warn("job %s: no thread for it: %s", job->request_id,
                 strerror(err));
    return err == 0;
}

/* At start, a job thread per job of the outbox that never ended
 * (outbox.h), each admitted into the budget like a new one. */
static void replay_outbox(void)
{
    struct exchange_request job;
    for (size_t i = 0; i < outbox_replay_count(); i++)
        if (endpoint_admit_replay(&jobcap, i, &job) && !start_async_job(&job))
            jobcap_job_done(&jobcap, &job); /* stays for the next start */
    outbox_replay_done();
}

/* ---- A connection thread: one client, blocking calls ---- */

/* Answers one parsed request (a conn_io_handler). True if the connection
 * goes on. arg is this thread's random seed: a sync request's bills are
 * waited in this thread, and only this thread sleeps. */
static bool handle_request(int fd, const struct http_request *req, void *arg)
{
    struct exchange_request job; /* ~2.5 KB: the stack is sized for it */
    struct endpoint_reply reply;
    /* An async job gets the ok only if the budget has room (else a 503),
     * and only once the job's thread runs; if it cannot, the job is over
     * before it began. The job runs beside this connection, which stays
     * open. */
    if (conn_io_route(&cfg, req, STAGE, &jobcap, arg, &job, &reply) &&
        !start_async_job(&job)) {
        outbox_add_end(job.request_id);
        jobcap_job_done(&jobcap, &job);
        endpoint_reply_free(&reply);
        endpoint_busy("cannot start the job", &reply);
    }
    return conn_io_answer(fd, req, &reply, false);
}

struct connection {
    int fd;
    char peer[64];
};

/* One connection, start to end, in the calling thread: every request of
 * it, keep-alive included, blocking in each read, sleep and write (only
 * this thread waits). Then closes it. */
static void serve_connection(int fd, const char *peer)
{
    log_info("thread serving %s", peer);
    unsigned seed = (unsigned)timer_now_ms() ^ (unsigned)fd; /* its own */
    struct conn_io_limits limits = conn_io_limits_of(&cfg);
    conn_io_serve(fd, &limits, handle_request, &seed);
    close(fd);
    log_info("closed %s", peer);
}

static void *connection_thread(void *arg)
{
    struct connection *c = arg;
    serve_connection(c->fd, c->peer);
    free(c);
    live_leave(&live_connections);
    return NULL;
}

/* ---- --pool N: threads started once, fed through a queue (pool.c) ---- */

static struct pool *pool; /* made by start_pool; NULL without --pool */

/* A pool thread: connections from the queue, one after another, until the
 * stop. It counts as a live connection thread for its whole life, so the
 * stop waits for it as for any connection thread (wait_for_threads). */
static void *pool_thread(void *arg)
{
    pool_serve(arg, serve_connection);
    live_leave(&live_connections);
    return NULL;
}

/* Makes the queue and starts the cfg.pool threads. 0, or -1 (logged) if
 * none could start. */
static int start_pool(void)
{
    pool = pool_new(cfg.queue);
    if (pool == NULL)
        return -1;
    int started = 0;
    for (int i = 0; i < cfg.pool; i++) {
        live_enter(&live_connections, INT_MAX);
        pthread_t t;
        int err = thread_start(&t, true, pool_thread, pool);
        if (err) {
            live_leave(&live_connections);
            log_warn("pool thread: %s", strerror(err));
            break;
        }
        started++;
    }
    log_info("pool: %d threads, a queue of %d connections (503 past it)",
             started, cfg.queue);
    return started > 0 ? 0 : -1;
}

/* ---- The main thread: accept, start, refuse ---- */

static void start_connection(int fd)
{
    struct connection *c = malloc(sizeof *c);
    if (!c) {
        conn_io_refuse_busy(fd, "out of memory");
        return;
    }
    c->fd = fd;
    net_peer_name(fd, c->peer, sizeof c->peer);
    int n = live_enter(&live_connections, cfg.max_threads);
    if (n < 0) {
        log_warn("%d connection threads already: refusing %s with 503",
                 cfg.max_threads, c->peer);
        conn_io_refuse_busy(fd, "too many connection threads");
        free(c);
        return;
    }
    log_info("connection from %s: starting its thread (%d live)", c->peer,
             n);
    /* From pthread_create on, c belongs to the new thread, which may
     * already have freed it by the time pthread_create returns here. */
    pthread_t t;
    int err = thread_start(&t, true, connection_thread, c);
    if (err) {
        log_warn("pthread_create: %s; refusing with 503", strerror(err));
        live_leave(&live_connections);
        conn_io_refuse_busy(fd, "cannot start a thread");
        free(c);
    }
}

#define STOP_POLL_MS 25 /* the stop's wait looks at the now pipe this often */

/* Waits until every connection thread and job is done, or deadline
 * passes, or (watch_now) the drain is over: the condition variable in
 * slices of STOP_POLL_MS, the now pipe between them. True if all are
 * done. */
static bool wait_live_zero(uint64_t deadline, bool watch_now)
{
    pthread_mutex_lock(&live_lock);
    while ((live_connections > 0 || live_jobs > 0) &&
           timer_now_ms() < deadline &&
           !(watch_now && shutdown_now_requested())) {
        int slice = timer_ms_left(deadline, timer_now_ms());
        if (slice > STOP_POLL_MS)
            slice = STOP_POLL_MS;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += slice * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&live_changed, &live_lock, &ts);
    }
    bool done = live_connections == 0 && live_jobs == 0;
    pthread_mutex_unlock(&live_lock);
    return done;
}

/* The stop: every connection thread and job gets the drain (--drain-ms;
 * a second signal ends it), then the now pipe tells them to give up and
 * they get SHUTDOWN_UNWIND_MS to do so. Then the report. True if they all
 * finished. */
static bool wait_for_threads(void)
{
    pthread_mutex_lock(&live_lock);
    log_info("stop requested: not accepting; waiting for %d connections "
             "and %d jobs (at most %d ms)", live_connections, live_jobs,
             cfg.drain_ms);
    pthread_mutex_unlock(&live_lock);
    int drain = shutdown_drain_left_ms();
    bool done = wait_live_zero(timer_deadline_in(drain), true);
    if (!done) {
        shutdown_now(); /* every thread watches it in every wait */
        log_warn("drain over: threads still busy; they give up now");
        done = wait_live_zero(timer_deadline_in(SHUTDOWN_UNWIND_MS), false);
    }
    if (!done)
        log_warn("threads still busy after %d ms more; leaving them",
                 SHUTDOWN_UNWIND_MS);
    jobcap_report(&jobcap, outbox_fate());
    return done;
}

/* live_changed waits on CLOCK_MONOTONIC: a wall-clock jump must not
 * stretch or cut the drain. */
static int live_changed_init(void)
{
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
    if (err)
        return err; /* nothing to destroy */
    err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!err)
        err = pthread_cond_init(&live_changed, &attr);
    pthread_condattr_destroy(&attr);
    return err;
}

/* Says at start how many clients this server holds at once: the pool
 * and its queue, or a thread each up to --max-threads; the threads share
 * one process's descriptors, a client's socket and its callbacks' each. */
static void log_clients(void)
{
    long fds = net_fd_limit() - NET_FD_OWN - cfg.max_jobs;
    if (cfg.pool > 0)
        log_info("clients: %d served at once (--pool), %d more queued "
                 "(--queue); past it 503", cfg.pool, cfg.queue);
    else
        log_info("clients: up to %d at once, a thread each (--max-threads); "
                 "past it 503", cfg.max_threads);
    if (fds < (cfg.pool > 0 ? cfg.pool + cfg.queue : cfg.max_threads))
        log_warn("descriptors: only %ld for clients; past them accept "
                 "pauses (EMFILE)", fds > 0 ? fds : 0);
}

int main(int argc, char **argv)
{
    /* Before any thread starts (stage.h). */
    if (stage_begin(&cfg, argc, argv, STAGE, 8003,
                    CONFIG_MAX_THREADS | CONFIG_POOL,
                    "Stage 03: starts a thread for every connection.") < 0)
        return 1;
    log_show_threads(true);
    int err = live_changed_init();
    if (err) {
        fprintf(stderr, "pthread_cond_init: %s\n", strerror(err));
        return 1;
    }
    if (jobcap_init(&jobcap, cfg.max_jobs, cfg.max_bills) < 0) {
        perror("jobcap");
        return 1;
    }
    /* The pool's threads run before the server says it is listening. */
    if (cfg.pool > 0 && start_pool() < 0)
        return 1;
    int lfd = net_listen_announce(&cfg); /* then "listening on ..." on stdout */
    if (lfd < 0)
        return 1;
    log_clients();
    replay_outbox();

    while (shutdown_wait_accept(lfd)) {
        int fd = conn_io_accept(lfd);
        if (fd >= 0 && pool)
            pool_offer(pool, fd);
        else if (fd >= 0)
            start_connection(fd);
    }
    close(lfd); /* new clients are refused from now on */
    if (pool)
        pool_close(pool);
    if (!wait_for_threads()) {
        /* Threads still run: exit()'s cleanup (curl, stdio, atexit) would
         * pull the ground from under them. Leave at once instead. */
        _exit(0);
    }
    log_info("exiting");
    callback_global_cleanup();
    pthread_cond_destroy(&live_changed);
    jobcap_free(&jobcap);
    if (pool)
        pool_free(pool);
    return 0;
}
