/* 06-coroutines: one coroutine per connection, all on one thread.
 *
 * The model: put serve_connection below next to 01-blocking's. It is the
 * same straight-line code (read a request, handle it, write the answer,
 * loop for keep-alive), and the bills are again waited one after another
 * in a plain for loop. What changed is only how the code waits. A request
 * is even read, and a refused one closed, by the very code 01-03 run
 * (common/conn_io.h), handed another way to move bytes: park_recv and
 * park_send instead of poll() and recv. They, co_send and co_sleep
 * (coro.h) do not block the thread; they park this coroutine and let the
 * scheduler run another one until the loop has received or sent for it,
 * or the deadline is due. With --backend uring the kernel does those
 * receives and sends itself, the whole turn's in one system call
 * (common/loop.h, "Readiness and completion"); this file does not
 * change. So one thread serves thousands of clients the way 04 and 05
 * do, without a state machine or a callback in sight: the "state" of each
 * connection is simply where its coroutine stands in its own code, kept
 * on its own stack.
 *
 * The async route is asyncio's create_task + gather + await: the handler
 * answers {"status":"ok"} and spawns a background coroutine, which spawns
 * one coroutine per bill, gathers them (they wait side by side and finish
 * together) and then awaits the callback PUT through libcurl, driven by
 * the same epoll (co_curl_perform), retrying after a co_sleep.
 *
 * What it costs: a stack per coroutine (64 KiB reserved by default,
 * --stack-kb; only the pages touched are real memory: one 4 KiB page for a
 * connection, because the deep calls run on the loop's stack, see
 * server_deep.h) and two context switches per wait (--switch: setjmp,
 * about 20 ns each, or swapcontext, about 250 ns and a system call). With
 * --stack shared, one stack for all: a waiting connection keeps a copy of
 * the few hundred bytes of frames it used instead of a page, and a resume
 * copies them back (coro.h, "Stacks"; nothing here may point into a parked
 * coroutine's stack, so what others reach is in the heap). And one core: every
 * coroutine shares this thread, so a coroutine that computes or calls a
 * blocking function stops all the others. That is the lesson of the flags:
 *   --blocking-bug   a bill waits with nanosleep instead of co_sleep, the C
 *                    twin of time.sleep() inside `async def`. Everything
 *                    still works, one request at a time: 10 concurrent
 *                    requests take ten delays instead of one.
 *   --cpu-ms N       every bill also computes for N ms of CPU (counting
 *                    primes). Coroutines do not help with CPU-bound work:
 *                    while one computes, even GET / waits.
 *   --offload        ...unless that work goes to a worker thread with
 *                    co_run_blocking (run_in_executor): the loop keeps
 *                    serving while up to 4 bills compute in parallel.
 *
 * What to notice in the log: every line says which coroutine wrote it
 * ("co 12"). Start several sync requests at once: their bill lines come
 * out together, after one delay. An async request with three bills logs
 * its three bills within a millisecond of each other, from three
 * coroutines, then one "callback ... delivered". With --blocking-bug the
 * same requests finish one delay apart.
 *
 * Limits, kept by conn_io as in 01-03: a request's head must arrive within
 * --header-timeout-ms of its first byte, its body within --body-timeout-ms
 * of the head's end, and an idle connection goes after --idle-timeout-ms;
 * no byte moves these deadlines (common/deadlines.h). Past the first two:
 * 408 and a lingering close (common/net.h), as after every refusal. An
 * async job's ok is sent only once its budget (--max-jobs, --max-bills)
 * and coroutine exist.
 *
 * Stopping (SIGINT/SIGTERM): watch_for_stop cancels the acceptor and the
 * connections idle between requests, lets the rest finish for at most
 * --drain-ms (a second signal ends that at once), cancels whoever is
 * left, and the log names each job whose callback was not delivered.
 *
 * Simplifications, on purpose:
 * - The stop sequence polls the lists of connections and jobs every 25 ms
 *   instead of being woken by the last one to finish: simpler to read.
 * - Nothing limits how many connections we accept except the descriptor
 *   limit (raised to the hard limit at start; EMFILE makes the acceptor
 *   back off for NET_ACCEPT_PAUSE_MS, as in 04 and 05). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "conn_io.h"
#include "coro.h"
#include "endpoint.h"
#include "http.h"
#include "jobcap.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "primes.h"
#include "server_deep.h"
#include "shutdown.h"
#include "stage.h"
#include "tasklist.h"
#include "tasks.h"
#include "timer.h"
#include "trace.h"
#include "workers.h"

#define STAGE "06-coroutines"
#define STOP_POLL_MS 25

static struct config cfg;
static unsigned jitter_seed = 1; /* one thread: one seed is enough */
static int listen_fd = -1;
static bool stopping;            /* SIGINT/SIGTERM seen: finish, then exit */
static struct jobcap jobcap;     /* async jobs and bills promised, not done */

/* Every connection and background job, so that a stop can find them; and
 * the connections waiting for a request, which a stop closes at once. */
static struct task_list connections = TASK_LIST_INIT(connections);
static struct task_list jobs = TASK_LIST_INIT(jobs);
static struct task_list idle_waits = TASK_LIST_INIT(idle_waits);

/* How a connection is read and a refused one closed: conn_io's limits,
 * with park_recv and park_send moving the bytes (set in main). */
static struct conn_io_limits limits;

struct conn {
    struct task task;            /* in `connections` */
    int fd;
    bool keep_alive;             /* for the answer in hand; a stop clears it */
    char peer[64];
    struct http_parser *parser;  /* NULL between requests that waited:
                                    see new_parser_at_first_byte */
};

/* One bill of an async job, as its own coroutine sees it. */
struct bill_task {
    const struct exchange_request *job;
    size_t index;
    double subtotal;
};

struct async_job {
    struct task task;            /* in `jobs` */
    struct exchange_request req;
    struct bill_task bills[EXCHANGE_MAX_BILLS]; /* here, not on the stack
                                    of the coroutine that gathers them:
                                    each bill's coroutine writes its
                                    subtotal while that one is parked
                                    (coro.h, "Stacks") */
};

/* ---- the bills -------------------------------------------------------- */

/* --cpu-ms: the CPU-bound half of a bill. Inline it holds the whole loop;
 * offloaded it holds one worker thread and only this coroutine waits. */
static int bill_cpu_work(void)
{
    /* In the heap: a worker thread fills it in while this coroutine is
     * parked, and with --stack shared a parked coroutine's locals are not
     * at their addresses (coro.h, "Stacks"). */
    struct cpu_work *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    *w = (struct cpu_work){.ms = cfg.cpu_ms};
    int rc = 0;
    if (cfg.offload)
        rc = co_run_blocking(count_primes, w, NULL);
    else
        count_primes(w); /* no wait in here: nobody else runs meanwhile */
    if (rc == 0)
        log_info("cpu work: %d ms %s, %ld primes (largest %ld)", w->ms,
                 cfg.offload ? "on a worker thread" : "on the loop thread",
                 w->primes, w->largest);
    free(w);
    return rc;
}

/* The simulated external call for one bill. This is the line 01 spends in
 * nanosleep; here the coroutine parks and the thread serves others.
 * 0, or -ECANCELED when the server gave up on the request. */
static int bill_wait(void)
{
    int ms = config_bill_delay_ms(&cfg, &jitter_seed);
    int rc = 0;
    if (cfg.blocking_bug)
        timer_nanosleep_ms(ms); /* the bug, on purpose: the thread sleeps,
                                   and with it every coroutine */
    else
        rc = co_sleep(ms);
    if (rc == 0 && cfg.cpu_ms > 0)
        rc = bill_cpu_work();
    return rc;
}

/* The sync route: one bill after another, exactly as 01 does it. Each
 * bill's subtotal is logged as it is done; deep_sync_answer computes them
 * again for the answer, on the loop's stack, so that no array of them
 * sits on this stack while the bills wait. */
static int compute_bills(const struct sync_request *job)
{
    for (size_t i = 0; i < job->num_bills; i++) {
        TRACE(TRACE_BILL_BEGIN, job, i);
        int rc = bill_wait();
        if (rc < 0)
            return rc;
        deep_sync_bill_subtotal(job, i); /* logs it */
        TRACE(TRACE_BILL_END, job, i);
    }
    return 0;
}

/* One bill of an async job, as its own coroutine. */
static void *bill_task(void *arg)
{
    struct bill_task *b = arg;
    TRACE(TRACE_BILL_BEGIN, b->job, b->index);
    int rc = bill_wait();
    if (rc == 0) {
        b->subtotal = deep_bill_subtotal(b->job, b->index);
        TRACE(TRACE_BILL_END, b->job, b->index);
    }
    return (void *)(intptr_t)rc;
}

/* The async route: asyncio.gather over one coroutine per bill, so all the
 * bills wait at the same time and the job takes one delay, not n. */
static int gather_bills(struct async_job *aj, double *subtotals)
{
    const struct exchange_request *job = &aj->req;
    struct bill_task *bills = aj->bills;
    struct co *tasks[EXCHANGE_MAX_BILLS];
    void *results[EXCHANGE_MAX_BILLS];
    size_t n = job->num_bills;
    for (size_t i = 0; i < n; i++) {
        bills[i] = (struct bill_task){.job = job, .index = i};
        tasks[i] = co_spawn(bill_task, &bills[i]);
    }
    int rc = co_gather(tasks, n, -1, results);
    /* A bill that got no coroutine (out of memory) is waited for here,
     * after the others: slower, but a promised job still finishes. */
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = (int)(intptr_t)(tasks[i] ? results[i] : bill_task(&bills[i]));
    for (size_t i = 0; i < n; i++)
        subtotals[i] = bills[i].subtotal;
    return rc;
}

/* `await client.put(...)`: the PUT runs on the loop's curl multi handle
 * while this coroutine is parked; retries wait with co_sleep. True if the
 * job is over (delivered, given up, or dropped: logged); false if the
 * stop cancelled it. */
static bool send_callback(const struct exchange_request *job,
                          const double *subtotals)
{
    char *body = exchange_callback_body(cfg.token, job, subtotals);
    struct callback *cb = body ? callback_new(cfg.main_service, body,
                                              job->request_id,
                                              cfg.callback_deadline_ms)
                             : NULL;
    if (!cb) {
        log_warn("callback %s: out of memory; giving up", job->request_id);
        return true;
    }
    bool over = true;
    for (;;) {
        TRACE(TRACE_CB_BEGIN, cb, 0);
        int rc = co_curl_perform(cb->easy); /* parks until curl is done */
        long retry_in_ms = 0;
        if (rc >= 0 && callback_after_attempt(cb, (CURLcode)rc,
                                              &retry_in_ms) != CALLBACK_RETRY)
            break; /* delivered, or given up (callback_after_attempt logs) */
        if (rc >= 0)
            rc = co_sleep((int)retry_in_ms);
        if (rc < 0) { /* cancelled: the stop's drain is over */
            over = false;
            break;
        }
    }
    callback_free(cb);
    return over;
}

/* The async route's second half, a background coroutine of its own: the
 * client already has its answer, and the loop goes on serving others. It
 * gives its place in the budget back as it goes: bills, then the job,
 * whose end goes to the outbox. One the stop cancels keeps its place, so
 * the stop's report names it. */
static void *finish_async_job(void *arg)
{
    struct async_job *aj = arg;
    struct exchange_request *job = &aj->req;
    log_info("job %s: %zu bill(s), gathered in the background",
             job->request_id, job->num_bills);
    double subtotals[EXCHANGE_MAX_BILLS];
    int rc = gather_bills(aj, subtotals);
    if (rc == 0)
        jobcap_bills_done(&jobcap, job, job->num_bills);
    if (rc == 0 && send_callback(job, subtotals)) {
        outbox_add_end(job->request_id);
        jobcap_job_done(&jobcap, job);
    }
    task_remove(&jobs, &aj->task);
    free(aj);
    return NULL;
}

/* After endpoint_admit_job: the job's coroutine exists before the ok goes
 * out, so an ok is never followed by "cannot start it". False (logged):
 * the caller ends the job. */
static bool start_async_job(const struct exchange_request *job)
{
    struct async_job *aj = malloc(sizeof *aj);
    if (aj) {
        aj->req = *job;
        aj->task.co = co_spawn(finish_async_job, aj); /* create_task */
    }
    if (!aj || !aj->task.co) {
        log_warn("job %s: cannot start it: %s", job->request_id,
                 aj ? strerror(errno) : "out of memory");
        free(aj);
        return false;
    }
    co_detach(aj->task.co); /* fire and forget; the jobs list tracks it */
    task_add(&jobs, &aj->task);
    return true;
}

/* --outbox-sync, on a worker thread (co_run_blocking): the flush. */
static void *outbox_flush(void *ticket)
{
    return (void *)(intptr_t)outbox_sync((uint64_t)(uintptr_t)ticket);
}

/* An admitted async job: written down (outbox.h) before it starts, so its
 * end can never come before its record; then started (if it cannot be,
 * it is over before it began: 503); then, with --outbox-sync, this
 * coroutine awaits the flush on the worker pool, like
 * `await loop.run_in_executor(None, os.fsync, fd)`, while the loop serves
 * others. *reply becomes the ok that says how durable the job is. */
static void start_job_and_ok(struct exchange_request *job,
                             struct endpoint_reply *reply)
{
    uint64_t ticket = outbox_append_job(job);
    if (!start_async_job(job)) {
        outbox_add_end(job->request_id);
        jobcap_job_done(&jobcap, job);
        endpoint_reply_free(reply);
        endpoint_busy("cannot start a coroutine", reply);
        return;
    }
    enum outbox_level level = ticket ? OUTBOX_WRITTEN : OUTBOX_MEMORY;
    void *synced = NULL;
    if (ticket && outbox_syncs() &&
        co_run_blocking(outbox_flush, (void *)(uintptr_t)ticket,
                        &synced) == 0 && synced)
        level = OUTBOX_SYNCED;
    endpoint_async_ok(reply, level);
}

/* At start, a coroutine per job of the outbox that never ended
 * (outbox.h), this worker's share (workers.h), each admitted into the
 * budget like a new one. */
static void replay_outbox(void)
{
    struct exchange_request job;
    for (size_t i = (size_t)workers_index(); i < outbox_replay_count();
         i += (size_t)cfg.workers)
        if (endpoint_admit_replay(&jobcap, i, &job) && !start_async_job(&job))
            jobcap_job_done(&jobcap, &job); /* stays for the next start */
    outbox_replay_done();
}

/* ---- how a connection waits ------------------------------------------ */

/* conn_io's receive, the one place where 06 differs from 01-03
 * (conn_io.h): instead of blocking the thread in poll() and then calling
 * recv, the coroutine hands the receive to the loop and parks until it is
 * done (co_recv), and the thread serves others meanwhile. An idle wait
 * (between requests) is where a stop must find a connection, as the
 * shutdown pipe in 01-03's poll() finds theirs: it stays in idle_waits
 * while it waits, and a stop cancels everyone there. Each wait puts itself
 * in and takes itself out: nobody else keeps track. */
static ssize_t park_recv(int fd, void *buf, size_t len, int timeout_ms,
                         bool idle)
{
    if (!idle)
        return co_recv(fd, buf, len, timeout_ms);
    if (stopping)
        return -ECANCELED; /* 01-03 find the pipe readable: the same */
    /* In the heap, not on this stack: the other connections' waits link to
     * it, and a stop reads it, while this coroutine is parked (with --stack
     * shared its locals are not at their addresses then: coro.h). */
    struct task *me = malloc(sizeof *me);
    if (!me)
        return -ENOMEM;
    me->co = co_self();
    task_add(&idle_waits, me);
    ssize_t rc = co_recv(fd, buf, len, timeout_ms);
    task_remove(&idle_waits, me);
    free(me);
    return rc;
}

/* conn_io's send: the loop sends, the coroutine parks meanwhile. */
static ssize_t park_send(int fd, const void *buf, size_t len, int timeout_ms)
{
    return co_send(fd, buf, len, timeout_ms);
}

/* ---- one connection --------------------------------------------------- */

/* Answers with c->keep_alive, decided now, after any wait: an answer that
 * goes out during a stop says "Connection: close". */
static bool send_reply(struct conn *c, const struct endpoint_reply *reply)
{
    c->keep_alive = c->keep_alive && !stopping;
    size_t len;
    char *text = deep_endpoint_reply_render(reply, c->keep_alive, &len);
    ssize_t rc = text ? co_send(c->fd, text, len, cfg.idle_timeout_ms)
                      : -ENOMEM;
    if (rc < 0)
        log_info("could not answer %s: %s", c->peer, strerror((int)-rc));
    TRACE(TRACE_REQ_END, NULL, c->fd);
    free(text);
    return rc >= 0;
}

/* A request that will wait (its bills) needs nothing more from its
 * parser: parser and buffer go now (unless the next request already sits
 * in them) and come back with the next request's first byte. 10,000
 * waiting connections would otherwise pin 5 KiB each. */
static void release_parser(struct conn *c)
{
    http_parser_consume(c->parser);
    if (http_parser_empty(c->parser)) {
        http_parser_free(c->parser);
        free(c->parser);
        c->parser = NULL;
    }
}

/* Waits, as an idle connection, for a request's first byte
 * (conn_io_wait_request), then makes the parser. NULL to close (the client
 * left or stayed idle, the server stops, or no memory). The parser lives
 * in the heap, not on the coroutine's stack: with the request's
 * exchange_request (handle_request) both would take a second stack
 * page. */
static struct http_parser *new_parser_at_first_byte(struct conn *c)
{
    struct http_parser *p = conn_io_wait_request(c->fd, &limits)
                                ? malloc(sizeof *p) : NULL;
    if (p)
        http_parser_init(p);
    return p;
}

/* A request the parser rejected, or that missed its deadline: its status
 * with "Connection: close" (the stream cannot be resynchronised), then
 * conn_io's lingering close. Never inlined, as handle_request below. */
__attribute__((noinline)) static void refuse(struct conn *c)
{
    const struct http_parser *p = c->parser;
    log_info("bad request from %s: %d %s", c->peer, p->error_status,
             p->error_detail);
    struct endpoint_reply reply = {0};
    endpoint_parse_error(p->error_status, p->error_detail, &reply);
    c->keep_alive = false;
    if (send_reply(c, &reply))
        conn_io_linger(c->fd, &limits);
    endpoint_reply_free(&reply);
}

/* Routes a request (on the loop's stack: server_deep.h) and starts what
 * it can: an async job is admitted, written down and started, its ok (or
 * a 503) left in *reply; a sync request comes back as *sync. The parsed
 * request, 2.5 KiB, lives only in this frame, which ends before the bills
 * wait: a function of its own, never inlined, so that with --stack shared
 * a request waiting for its bills does not keep it (server_deep.h says
 * why). Only --outbox-sync parks in here, for the flush. */
__attribute__((noinline)) static enum endpoint_route
route_request(const struct http_request *req, struct sync_request **sync,
              struct endpoint_reply *reply)
{
    struct exchange_request job;
    enum endpoint_route route = deep_endpoint_route(req, STAGE, &job, reply);
    if (route == ENDPOINT_ASYNC && endpoint_admit_job(&jobcap, &job, reply))
        start_job_and_ok(&job, reply); /* a promise: budget, record, task */
    if (route == ENDPOINT_SYNC && !(*sync = sync_request_new(&job))) {
        endpoint_busy("out of memory", reply);
        route = ENDPOINT_REPLY;
    }
    return route;
}

/* Routes the request parsed in c->parser and answers it; the request is
 * consumed on return. Returns false if the connection cannot go on (the
 * client left, or the server gave up on the request). Never inlined: its
 * locals (the reply) would stay in serve_connection's frame while the
 * connection waits for its next request, and with --stack shared those
 * bytes are copied at every switch. */
__attribute__((noinline)) static bool handle_request(struct conn *c)
{
    const struct http_request *req = &c->parser->req;
    struct endpoint_reply reply = {0};
    struct sync_request *job = NULL;
    bool ok = true;
    log_info("%s %s", req->method, req->path);
    switch (route_request(req, &job, &reply)) {
    case ENDPOINT_REPLY:
    case ENDPOINT_ASYNC: /* {"status":"ok"} at once, or a 503 */
        ok = send_reply(c, &reply);
        break;
    case ENDPOINT_SYNC:
        release_parser(c); /* req is gone from here on */
        ok = compute_bills(job) == 0;
        if (ok) {
            deep_sync_answer(job, &reply);
            ok = send_reply(c, &reply);
        }
        free(job);
        break;
    }
    endpoint_reply_free(&reply);
    if (c->parser)
        http_parser_consume(c->parser);
    return ok;
}

/* A connection's coroutine: the whole life of one client, top to bottom.
 * Reading is conn_io's, as in 01-03 (conn_io_serve): a request, or the end
 * of the connection (the client left or stayed idle; a stop finds it
 * idle), or a refusal. */
static void *serve_connection(void *arg)
{
    struct conn *c = arg;
    log_info("connection from %s", c->peer);
    for (;;) {
        if (!c->parser && !(c->parser = new_parser_at_first_byte(c)))
            break;
        enum http_parse_status st =
            conn_io_read_request(c->fd, c->parser, &limits);
        if (st == HTTP_ERROR)
            refuse(c);
        if (st != HTTP_DONE)
            break;
        c->keep_alive = c->parser->req.keep_alive;
        TRACE(TRACE_REQ_BEGIN, NULL, c->fd);
        if (!handle_request(c))
            break;
        if (!c->keep_alive) { /* its last answer: linger as 01-03 do */
            conn_io_linger_if_unread(c->fd, &limits);
            break;
        }
    }
    if (c->parser) {
        http_parser_free(c->parser);
        free(c->parser);
    }
    co_close(c->fd);
    log_info("closed %s", c->peer);
    task_remove(&connections, &c->task);
    TRACE(TRACE_COUNT_CONNS, NULL, connections.count);
    free(c);
    return NULL;
}

static void start_connection(int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c) {
        c->fd = fd;
        net_peer_name(fd, c->peer, sizeof c->peer);
        c->task.co = co_spawn(serve_connection, c);
    }
    if (!c || !c->task.co) {
        log_warn("cannot start a coroutine for a connection: %s",
                 strerror(errno));
        close(fd);
        free(c);
        return;
    }
    co_detach(c->task.co);
    task_add(&connections, &c->task);
    TRACE(TRACE_COUNT_CONNS, NULL, connections.count);
}

/* ---- accepting and stopping ----------------------------------------- */

/* The acceptor is a coroutine like the others: it parks while the loop
 * accepts (co_accept), which hands each client to start_connection, and
 * pauses with co_sleep when accept() fails (out of descriptors): 04 and
 * 05's policy, with 06's way of waiting. A stop cancels it. */
static void *accept_loop(void *arg)
{
    (void)arg;
    int rc;
    while ((rc = co_accept(listen_fd, start_connection, -1)) != -ECANCELED &&
           rc != -EBADF) {
        log_warn("accept: %s; not accepting for %d ms", strerror(-rc),
                 NET_ACCEPT_PAUSE_MS);
        if ((rc = co_sleep(NET_ACCEPT_PAUSE_MS)) < 0)
            break;
        log_info("accepting again");
    }
    if (rc != -ECANCELED)
        log_warn("accept loop: %s; no more connections", strerror(-rc));
    return NULL;
}

/* SIGQUIT: the task list (common/tasklist.h). The handler writes to a
 * pipe; this coroutine waits for it like for any socket and prints what
 * every coroutine is doing (on the loop's stack: a deep call), itself
 * among them, running. A stop cancels it. */
static struct co *lister;

static void *print_tasks(void *arg)
{
    (void)arg;
    tasklist_line("tasks: %s pid %ld, %zu connections, %zu jobs", STAGE,
                  (long)getpid(), connections.count, jobs.count);
    co_print_tasks();
    tasklist_line("tasks: end");
    return NULL;
}

static void *list_tasks(void *arg)
{
    (void)arg;
    while (co_wait_readable(tasklist_fd(), -1) == 0) {
        tasklist_drain();
        co_call_on_loop_stack(print_tasks, NULL);
    }
    return NULL;
}

/* SIGINT/SIGTERM: the handler writes to a pipe; this coroutine waits for
 * it like for any socket, then winds the server down: connections and
 * jobs get --drain-ms, a second signal (the now pipe) ends that at once,
 * and then whoever is left is cancelled. The jobs cancelled keep their
 * place in the budget: serve's report names them. */
static void *watch_for_stop(void *arg)
{
    struct co *acceptor = arg;
    int rc = co_wait_readable(shutdown_fd(), -1);
    if (rc < 0) {
        log_warn("cannot watch for SIGTERM: %s", strerror(-rc));
        return NULL;
    }
    stopping = true;
    log_info("stop requested: no new connections; %zu connections and %zu "
             "background jobs to finish (at most %d ms)", connections.count,
             jobs.count, cfg.drain_ms);
    co_cancel(acceptor);
    co_join(acceptor, -1, NULL);
    if (lister) {
        co_cancel(lister);
        co_join(lister, -1, NULL);
    }
    co_close(listen_fd);
    task_cancel_all(&idle_waits); /* connections between requests */

    uint64_t deadline = timer_deadline_in(cfg.drain_ms);
    while ((connections.count > 0 || jobs.count > 0) &&
           timer_now_ms() < deadline && !shutdown_now_requested())
        co_sleep(STOP_POLL_MS);
    if (connections.count > 0 || jobs.count > 0) {
        shutdown_now(); /* every process is told: --workers */
        log_warn("drain over: cancelling %zu connections and %zu jobs",
                 connections.count, jobs.count);
        task_cancel_all(&connections);
        task_cancel_all(&jobs);
    }
    return NULL; /* co_sched_run returns once the cancelled ones unwind */
}

/* --stack shared: what parked coroutines cost, said once at the end. */
static void log_stack_costs(void)
{
    struct co_stack_stats st;
    if (co_stack_stats(&st) < 0 || st.saves == 0)
        return;
    log_info("shared stack: %zu copies out, %zu bytes each on average, "
             "%zu at most; at the peak %zu coroutines held %zu bytes of "
             "saved frames (%zu each), beside a %zu-byte control block",
             st.saves, st.saved_bytes / st.saves, st.largest,
             st.holders_at_peak, st.held_peak,
             st.held_peak / (st.holders_at_peak ? st.holders_at_peak : 1),
             st.block_size);
}

/* The server on one listener, until the stop; with --workers each worker
 * process runs exactly this (common/workers.h says why processes). */
static int serve(int lfd)
{
    listen_fd = lfd;
    struct co_options opts = {
        .stack_size = (size_t)cfg.stack_kb * 1024,
        .switch_kind = strcmp(cfg.coro_switch, "swapcontext") == 0
                           ? CO_SWITCH_SWAPCONTEXT : CO_SWITCH_SETJMP,
        .stack_kind = strcmp(cfg.coro_stack, "shared") == 0
                          ? CO_STACK_SHARED : CO_STACK_SEPARATE,
        .backend = cfg.backend};
    int rc = co_sched_init(&opts);
    if (rc < 0) {
        fprintf(stderr, "co_sched_init: %s\n", strerror(-rc));
        return 1;
    }
    log_set_coroutine_id_fn(co_current_id);
    log_info("event loop on %s", co_sched_backend());
    if (tasklist_init() < 0 || !(lister = co_spawn(list_tasks, NULL)))
        log_warn("no task list on SIGQUIT: %s", strerror(errno));
    struct co *acceptor = co_spawn(accept_loop, NULL);
    struct co *watcher = acceptor ? co_spawn(watch_for_stop, acceptor) : NULL;
    if (!watcher) {
        fprintf(stderr, "co_spawn: %s\n", strerror(errno));
        return 1;
    }
    co_detach(watcher);
    replay_outbox();
    rc = co_sched_run(); /* the whole server lives inside this call */
    if (rc < 0)
        log_warn("scheduler: %s", strerror(-rc));
    log_stack_costs();
    log_info("every coroutine has finished; exiting");
    jobcap_report(&jobcap, outbox_fate());
    co_sched_free();
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (stage_begin(&cfg, argc, argv, STAGE, 8006,
                    CONFIG_CORO | CONFIG_WORKERS | CONFIG_BACKEND,
                    "Stage 06: one thread, a coroutine per connection "
                    "(ucontext scheduler over epoll).") < 0)
        return 1;
    trace_set_coro_source(co_current_id);
    limits = conn_io_limits_of(&cfg);
    limits.recv = park_recv; /* the one difference from 01-03 */
    limits.send = park_send;
    if (jobcap_init(&jobcap, workers_share(&cfg, cfg.max_jobs), /* each */
                    workers_share(&cfg, cfg.max_bills)) < 0) {  /* its own */
        perror("jobcap");
        return 1;
    }
    log_info("coroutine stacks %d KiB, switched by %s%s%s%s", cfg.stack_kb,
             cfg.coro_switch, strcmp(cfg.coro_stack, "shared") == 0
             ? "; one shared stack, a parked coroutine's frames copied out"
             : "", cfg.blocking_bug ? "; --blocking-bug: bills "
             "call nanosleep, so the whole loop stops during each" : "",
             !cfg.cpu_ms ? "" : cfg.offload ? "; cpu work offloaded to "
             "worker threads" : "; cpu work on the loop thread");
    /* A client is a descriptor (and a coroutine): the descriptor limit,
     * raised to the hard one, is the clients' limit. */
    net_log_loop_clients(workers_share(&cfg, cfg.max_jobs), cfg.workers);
    int rc = 1, lfd;
    if (cfg.workers > 1)
        rc = workers_run(&cfg, serve);
    else if ((lfd = net_listen_announce(&cfg)) >= 0)
        rc = serve(lfd);
    jobcap_free(&jobcap);
    callback_global_cleanup();
    return rc;
}
