/* 05-epoll-callbacks: the loop of 04 becomes a library, and the loop's
 * dispatch becomes callbacks.
 *
 * The model. Still one thread and non-blocking sockets, but nobody builds
 * fd_sets any more. loop.h is a small event loop over epoll: you tell it
 * once "read this socket into this buffer, then call this function with
 * this pointer", or "in 2000 ms, call that one", and it calls you back.
 * The server is a chain of callbacks, one per thing a connection can wait
 * for:
 *
 *   on_accept      a client was accepted: a connection for it
 *   on_received    request bytes arrived (or, closing politely, bytes the
 *                  client still sends, dropped): parse; maybe route. An
 *                  idle connection waits with no buffer: then it only
 *                  hears that bytes are there, and asks for them
 *   on_bill_done   a bill's timer fired: next bill, or the answer
 *   on_sent        (part of) the answer went: the rest, or read again,
 *                  or close
 *   on_timeout     a deadline passed: a 408 for a late head or body, or close
 *
 * What a connection does in each of them is not in this file: the steps
 * are common/evconn.c, the ones 04-select runs, minus the system call.
 * Each callback finds its connection again (arg), runs one step, and
 * hands the step's answer (EVCONN_READ, _BILL, _WRITE, _LINGER, _CLOSE)
 * to conn_apply, which registers what that answer calls for: loop_recv
 * with on_received, loop_send with on_sent, a timer for on_bill_done or
 * on_timeout, or conn_close. Put this file beside 04-select/server.c: the
 * steps and their answers are the same, and what changed is the loop.
 * 04's serve_one_turn, which rebuilt the sets and matched select()'s
 * report against each connection's want, is gone into loop.c; 04's
 * conn_apply noted a set, this one registers a callback. The rest
 * (accepting, starting jobs, stopping, main) is 04's text, line for line:
 * diff the two files and every line that differs talks to the loop. epoll
 * remembers the interest list between calls and reports only ready
 * descriptors, so a turn costs O(ready), not O(watched), and there is no
 * FD_SETSIZE: waiting on 10000 mostly idle connections costs about what
 * waiting on 10 does.
 *
 * "Read this into that buffer and call me back" is a completion, where
 * 04's select() reports readiness ("you may read"): on epoll the loop
 * waits for readable and makes the recv just before calling back, so the
 * system calls are 04's; with --backend uring the kernel itself receives
 * and sends for the whole turn in one io_uring_enter (common/loop.h,
 * "Readiness and completion"). This file is the same for both.
 *
 * The async route is callbacks all the way down: the bills are loop timers;
 * the PUT goes through libcurl's multi *socket* API, where curl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION), and we tell curl what happened
 * (curl_multi_socket_action); a retry is one more loop timer.
 *
 * What it costs: callback hell, in C. Read the async route from
 * on_job_bill_done to curl_collect_done and count the functions a single
 * "PUT, retry on failure" is spread over, and who calls whom: the loop calls
 * curl's socket callback, curl calls ours, ours calls the loop. And for
 * every connection:
 * - State is passed by hand. Everything a callback needs must sit in struct
 *   conn and come back through void *arg; what 01 kept in local variables
 *   and the program counter (which bill is next, what to do after this
 *   write) is now fields (struct evconn) that every step must keep up to
 *   date.
 * - Every callback must end in exactly one "what next". Forget it and the
 *   connection stalls until some timer happens to end it; do it twice and
 *   it is freed twice. After conn_close, c is gone: any line that touches
 *   it is a use-after-free. The compiler checks none of this. That is why
 *   the steps return a want instead of registering the next callback
 *   themselves: written that way, every error path of every step would end
 *   in its own registration or close, and each one is a chance to get it
 *   wrong. Here one function, conn_apply, is the only place that registers.
 * - Every timer and registration a connection owns must be cancelled when
 *   it closes, or it fires on freed memory (conn_close).
 * - One callback that blocks still stalls everyone, as in 04.
 * Stage 06 keeps this loop and gives the straight-line code back.
 *
 * Also in here, as in 04: deadlines that new bytes never move (idle,
 * head, body: evconn_deadline says when, a loop timer says it's time; a
 * late head or body gets 408); the async budget checked before an ok
 * (--max-jobs, --max-bills; past it 503); clients accepted
 * NET_ACCEPT_BATCH per turn, and EMFILE from accept pausing the listener
 * for NET_ACCEPT_PAUSE_MS (100 ms, a loop timer); SIGINT/SIGTERM arriving
 * as the shutdown pipe turning readable (begin_stop): stop accepting,
 * close idle keep-alive connections, finish the rest within --drain-ms
 * (a loop timer; a second signal, the now pipe turning readable, ends it
 * at once), name each job whose callback was not delivered, exit 0. With
 * --outbox-sync an ok waits for a disk flush that a thread does for us:
 * the thread's pipe is one more watched descriptor (on_outbox_flushed).
 *
 * What to notice in the log: the same pid on every line and no thread id;
 * 2000 sync requests answered together one delay after they arrived; "GET
 * /" served while a callback PUT waits on a silent main service; at exit,
 * how many stale events were dropped (see loop.h) when a closed
 * socket's number was reused within one batch.
 *
 * Simplifications, on purpose (as in 04):
 * - While its bills wait, a connection asks for no bytes: a client that
 *   hangs up meanwhile is noticed when the answer is written. (What a
 *   client sends meanwhile waits for the next receive: on epoll in the
 *   socket, on io_uring in a few of the loop's buffers.)
 *
 * An answer is sent at once: loop_send on epoll tries the send right away
 * and watches for writable only when the socket's buffer is full, and a
 * kept-alive socket stays registered for readable from one request to the
 * next, so loop_recv makes no system call either. A request costs a read
 * and a write (and a share of one epoll_wait), where watching writable
 * first cost two epoll_ctl more (strace -c -f: 4.0 system calls per
 * keep-alive GET / before, 2.0 after). On io_uring the reads and writes
 * of a whole turn share one io_uring_enter (bench/uring.sh counts them). */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "curl_loop.h"
#include "evconn.h"
#include "evjob.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "outbox.h"
#include "shutdown.h"
#include "stage.h"
#include "tasklist.h"
#include "timer.h"
#include "workers.h"

#define STAGE "05-epoll-callbacks"

static struct config cfg;
static struct loop *loop;

/* ------------------------------------------------------------------ */
/* The server's state: globals, because one thread owns all of it.     */

/* What every connection and job shares (common/evconn, common/evjob),
 * set up in main with this loop's part (ops, after begin_stop). */
static struct evconn_server srv;

/* A connection: the shared state machine, plus what the loop holds for it.
 * Its fd's registration lives in the loop, keyed by ev.fd. */
struct conn {
    struct evconn ev;
    struct loop_timer timeout;    /* idle, slow request, stalled reader */
    struct loop_timer bill_timer; /* the sync route's current bill */
};

/* An async job: its bills wait concurrently, then its callback is PUT.
 * A bill's timer hands its callback one pointer, so it comes with what
 * the callback needs to know: which job, which bill. */
struct job;
struct bill_wait {
    struct job *job;
    size_t index;
    struct loop_timer timer; /* calls back with this bill_wait */
};

struct job {
    struct evjob core;        /* the steps' state (common/evjob) */
    struct loop_timer retry;
    struct bill_wait bills[]; /* core.req.num_bills of them */
};

static struct curl_loop *curl; /* curl's sockets and timer on our loop */
static CURLM *multi;           /* its multi handle: every PUT in flight */

/* SIGINT/SIGTERM set srv.stopping; this timer bounds the stop. */
static struct loop_timer drain;

/* The callbacks, in the order a request meets them. */
static void on_accept(struct loop *l, int fd, ssize_t client, void *arg);
static void on_received(struct loop *l, int fd, ssize_t n, void *arg);
static void on_bill_done(struct loop *l, void *arg);
static void on_sent(struct loop *l, int fd, ssize_t n, void *arg);
static void on_timeout(struct loop *l, void *arg);
static void on_outbox_flushed(struct loop *l, int fd, unsigned events,
                              void *arg);

/* ------------------------------------------------------------------ */
/* Stopping is decided wherever the last piece of work ends.            */

static void stop_if_done(void)
{
    if (evconn_server_done(&srv))
        loop_stop(loop);
}

/* ------------------------------------------------------------------ */
/* Connections: opening, closing, and "what next".                      */

/* The connection around one of srv.conns. */
static struct conn *conn_of(struct evconn *ev)
{
    return container_of(ev, struct conn, ev);
}

/* srv's close_conn, for the connection around ev. */
static void conn_close(struct evconn *ev)
{
    struct conn *c = conn_of(ev);
    /* Everything the loop holds for c must go before c does: a forgotten
     * timer or registration would call back into freed memory. The close
     * (in evconn_release) takes the socket out of epoll by itself, so the
     * loop only forgets it: no epoll_ctl DEL (io_uring's requests for it
     * are cancelled with the next submission). */
    int fd = c->ev.fd;
    loop_timer_cancel(loop, &c->timeout);
    loop_timer_cancel(loop, &c->bill_timer);
    evconn_release(ev);
    loop_forget_closed(loop, fd);
    free(c);
    stop_if_done();
}

/* "What next": the table of evconn.h, for this loop. A want becomes the
 * I/O the loop does for the connection (a receive into the buffer the
 * step names, or a send of the answer), the callback it calls when that
 * is done, and the timer that calls back at evconn_deadline. It is the
 * last thing every connection callback does; on failure it closes the
 * connection, so the caller must not touch c after it. A receive still
 * asked for is withdrawn first (no system call), so the loop never
 * writes into a buffer the step has moved on from; a bill wait stops the
 * idle timeout too (the wait is ours, not the client's); a wait for the
 * outbox's flush asks for nothing either, its timeout kept as a bound. */
static void conn_apply(struct conn *c, enum evconn_want want)
{
    int fd = c->ev.fd;
    struct loop_timer *timer = &c->timeout;
    int rc = 0;
    size_t len;
    loop_recv_cancel(loop, fd);
    switch (want) {
    case EVCONN_READ:
    case EVCONN_LINGER: {
        char *buf = evconn_recv_buffer(&c->ev, &len);
        rc = buf ? loop_recv(loop, fd, buf, len, on_received, c) : -1;
        break;
    }
    case EVCONN_WRITE: {
        const char *data = evconn_send_data(&c->ev, &len);
        rc = loop_send(loop, fd, data, len, on_sent, c);
        break;
    }
    case EVCONN_BILL:
        loop_timer_cancel(loop, &c->timeout);
        timer = &c->bill_timer;
        break;
    case EVCONN_DURABLE: /* on_outbox_flushed wakes it, or the timeout */
        break;
    case EVCONN_CLOSE:
        conn_close(&c->ev);
        return;
    }
    if (rc < 0 || loop_timer_arm_at(loop, timer, evconn_deadline(&c->ev)) < 0) {
        log_warn("%s: cannot wait: %s", c->ev.peer, strerror(errno));
        conn_close(&c->ev);
    }
}

/* In each connection callback, arg is the connection, handed back by the
 * loop: the only way a callback can find its state. */

/* Done callback: the loop received n bytes into the step's buffer (0: the
 * client closed). */
static void on_received(struct loop *l, int fd, ssize_t n, void *arg)
{
    (void)l;
    (void)fd;
    struct conn *c = arg;
    conn_apply(c, evconn_on_received(&c->ev, n));
}

/* Timer callback: the wait for the sync route's current bill is over. */
static void on_bill_done(struct loop *l, void *arg)
{
    (void)l;
    struct conn *c = arg;
    conn_apply(c, evconn_on_bill_due(&c->ev));
}

/* Done callback: n bytes of the answer went. */
static void on_sent(struct loop *l, int fd, ssize_t n, void *arg)
{
    (void)l;
    (void)fd;
    struct conn *c = arg;
    conn_apply(c, evconn_on_sent(&c->ev, n));
}

/* I/O callback: the outbox's flush thread has flushed (--outbox-sync):
 * every connection whose ok waited for it answers now. */
static void on_outbox_flushed(struct loop *l, int fd, unsigned events,
                              void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    (void)arg;
    outbox_syncer_woken();
    struct evconn *e;
    while ((e = evconn_next_durable(&srv)) != NULL)
        conn_apply(conn_of(e), evconn_on_durable(e));
}

/* Timer callback: the connection's timeout. What it means depends on what
 * it was doing, which the loop cannot tell us: the step reads c->ev.want. */
static void on_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct conn *c = arg;
    conn_apply(c, evconn_on_timeout(&c->ev));
}

static void conn_open(int fd)
{
    struct conn *c = evconn_alloc(sizeof *c, fd);
    if (c == NULL)
        return;
    loop_timer_init(&c->timeout, on_timeout, c);
    loop_timer_init(&c->bill_timer, on_bill_done, c);
    evconn_init(&c->ev, &srv, fd);
    conn_apply(c, EVCONN_READ); /* a new connection waits for a request */
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

static int listen_fd = -1;
static struct loop_timer accept_resume; /* the pause after EMFILE */

/* Done callback: the loop accepted a client (a batch of accept4 on epoll,
 * a multishot accept on io_uring), or accept() failed: then the loop has
 * stopped accepting, and we start again in NET_ACCEPT_PAUSE_MS. */
static void on_accept(struct loop *l, int fd, ssize_t client, void *arg)
{
    (void)fd;
    (void)arg;
    if (client >= 0) {
        conn_open((int)client);
        return;
    }
    log_warn("accept: %s; not accepting for %d ms", strerror((int)-client),
             NET_ACCEPT_PAUSE_MS);
    if (loop_timer_arm(l, &accept_resume, NET_ACCEPT_PAUSE_MS) < 0)
        log_warn("cannot pause accepting: %s", strerror(errno));
}

/* Timer callback: the pause is over. */
static void accept_resumed(struct loop *l, void *arg)
{
    (void)arg;
    if (loop_accept(l, listen_fd, on_accept, NULL) < 0)
        log_warn("cannot accept again: %s", strerror(errno));
    else
        log_info("accepting again");
}

/* ------------------------------------------------------------------ */
/* Async jobs: bills on timers, then the PUT through curl's socket API. */
/* Follow one PUT: on_job_bill_done -> job_apply -> evjob_put -> (curl  */
/* arms a loop timer, common/curl_loop) -> (the loop calls curl, curl   */
/* asks the loop to watch its socket, the loop calls curl again...) ->  */
/* curl_collect_done -> evjob_on_put_done -> job_apply -> (a loop       */
/* timer) on_job_retry -> job_apply again. Stage 06 writes it as a loop. */

/* The job around one of srv.jobs (or a finished transfer's). */
static struct job *job_of(struct evjob *core)
{
    return container_of(core, struct job, core);
}

/* srv's free_job, for the job around core. */
static void job_free(struct evjob *core)
{
    struct job *job = job_of(core);
    for (size_t i = 0; i < job->core.req.num_bills; i++)
        loop_timer_cancel(loop, &job->bills[i].timer);
    loop_timer_cancel(loop, &job->retry);
    evjob_release(&job->core, multi);
    free(job);
    stop_if_done();
}

/* Does what a job step asked for. A PUT is not sent here: curl answers
 * evjob_put by arming its timer on the loop (common/curl_loop), and
 * everything else follows from that. */
static void job_apply(struct job *job, enum evjob_want want)
{
    switch (want) {
    case EVJOB_BILLS: /* its other bills' timers are still armed */
        return;
    case EVJOB_PUT:
        if (!evjob_put(&job->core, multi))
            job_free(&job->core);
        return;
    case EVJOB_RETRY: /* the backoff is a loop timer like any other */
        if (loop_timer_arm_at(loop, &job->retry, job->core.retry_at_ms) < 0)
            job_free(&job->core);
        return;
    case EVJOB_DONE:
        job_free(&job->core);
        return;
    }
}

/* Timer callback: the backoff after a failed try is over. */
static void on_job_retry(struct loop *l, void *arg)
{
    (void)l;
    job_apply(arg, EVJOB_PUT);
}

/* Timer callback: one bill of an async job is done. Its arg is the
 * bill_wait, which knows its job and its index: more state by hand. */
static void on_job_bill_done(struct loop *l, void *arg)
{
    (void)l;
    struct bill_wait *b = arg;
    job_apply(b->job, evjob_on_bill_due(&b->job->core, b->index));
}

/* srv.start_job: one timer per bill, all armed now: they run out side by
 * side. What can fail comes first (evconn.h). */
static bool job_start(const struct exchange_request *req)
{
    struct job *job = calloc(1, sizeof *job +
                                    req->num_bills * sizeof job->bills[0]);
    if (job == NULL)
        return false;
    loop_timer_init(&job->retry, on_job_retry, job);
    for (size_t i = 0; i < req->num_bills; i++) {
        struct bill_wait *b = &job->bills[i];
        b->job = job;
        b->index = i;
        loop_timer_init(&b->timer, on_job_bill_done, b);
    }
    for (size_t i = 0; i < req->num_bills; i++) {
        if (loop_timer_arm_at(loop, &job->bills[i].timer,
                              evconn_bill_deadline(&srv)) < 0) {
            while (i-- > 0)
                loop_timer_cancel(loop, &job->bills[i].timer);
            free(job);
            return false;
        }
    }
    /* The point of no return: the job takes over its reservation. */
    evjob_init(&job->core, &srv, req);
    return true;
}

/* curl_loop's `ran`: after curl has run, collect the transfers that
 * finished. */
static void curl_collect_done(struct curl_loop *cl, void *arg)
{
    (void)cl;
    (void)arg;
    struct evjob *core;
    CURLcode result;
    while ((core = evjob_next_finished(multi, &result)) != NULL)
        job_apply(job_of(core), evjob_on_put_done(core, result));
}

static bool curl_setup(void)
{
    curl = curl_loop_new(loop, curl_collect_done, NULL);
    if (curl == NULL)
        return false;
    multi = curl_loop_multi(curl);
    return true;
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

/* Timer callback, or the now pipe readable: the drain is over (its
 * deadline, or a second signal). Every process is told (shutdown_now);
 * whatever is left is named and dropped after the loop. */
static void drain_over(struct loop *l, void *arg)
{
    (void)arg;
    shutdown_now();
    log_warn("drain over: dropping %zu connections and %zu jobs",
             srv.num_conns, srv.num_jobs);
    loop_stop(l);
}

/* I/O callback: the now pipe is readable. */
static void on_now(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)fd;
    (void)events;
    drain_over(l, arg);
}

/* SIGINT/SIGTERM: the shutdown pipe is readable. Stop accepting, close
 * connections idle between requests, and let everything in flight finish
 * within --drain-ms (a second signal ends that at once); the last
 * conn_close or job_free ends the loop (stop_if_done). Answers written
 * from now on say "Connection: close". */
static void begin_stop(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    (void)arg;
    loop_unwatch(l, fd); /* it stays readable for good: stop listening */
    loop_unwatch(l, listen_fd);
    close(listen_fd);
    listen_fd = -1;
    loop_timer_cancel(l, &accept_resume);
    if (loop_timer_arm(l, &drain, srv.cfg->drain_ms) < 0 ||
        loop_watch(l, shutdown_now_fd(), LOOP_READABLE, on_now, NULL) < 0)
        loop_stop(l);
    evconn_server_stop(&srv); /* stopping, logged, idle ones closed */
    stop_if_done();
}

/* SIGQUIT: the task list (common/tasklist.h), printed here, between two
 * callbacks, so every connection is where a step left it. */
static void on_list_tasks(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    (void)arg;
    tasklist_drain();
    evconn_server_list(&srv);
}

/* This loop's part of the shared server (evconn.h). */
static const struct evconn_ops ops = {
    .start_job = job_start, .close_conn = conn_close, .free_job = job_free};

/* ------------------------------------------------------------------ */
/* Running: one loop, or one per worker process (--workers N)          */

/* The server on one listener: its loop, curl glue and timers, run until
 * the stop. Each worker process runs exactly this (common/workers.h says
 * why processes), so nothing above knows there may be several. */
static int serve(int lfd)
{
    listen_fd = lfd;
    loop = loop_open(cfg.backend); /* epoll, unless --backend uring */
    if (loop == NULL || !curl_setup()) {
        log_warn("cannot set up the event loop or curl: %s", strerror(errno));
        return 1;
    }
    log_info("event loop on %s", loop_backend_name(loop));
    loop_timer_init(&accept_resume, accept_resumed, NULL);
    loop_timer_init(&drain, drain_over, NULL);
    if (loop_accept(loop, listen_fd, on_accept, NULL) < 0 ||
        loop_watch(loop, shutdown_fd(), LOOP_READABLE, begin_stop, NULL) < 0) {
        log_warn("cannot watch the listener: %s", strerror(errno));
        return 1;
    }
    if (outbox_syncs() &&
        (outbox_syncer_start() < 0 ||
         loop_watch(loop, outbox_syncer_fd(), LOOP_READABLE,
                    on_outbox_flushed, NULL) < 0))
        return 1;
    evconn_server_replay(&srv, workers_index(), cfg.workers);
    if (tasklist_init() < 0 ||
        loop_watch(loop, tasklist_fd(), LOOP_READABLE, on_list_tasks, NULL) < 0)
        log_warn("no task list on SIGQUIT: %s", strerror(errno));

    int rc = 0;
    if (loop_run(loop) < 0) {
        log_warn("waiting for events: %s", strerror(errno));
        rc = 1;
    }
    jobcap_report(&srv.budget, outbox_fate());
    evconn_server_drop(&srv);
    evconn_server_free(&srv);
    if (listen_fd >= 0)
        close(listen_fd);
    outbox_syncer_stop();
    curl_loop_free(curl); /* may still call back into the loop */
    log_info("stopped; %lu stale events were dropped",
             loop_stale_events(loop));
    loop_free(loop);
    return rc;
}

int main(int argc, char **argv)
{
    if (stage_begin(&cfg, argc, argv, STAGE, 8005,
                    CONFIG_WORKERS | CONFIG_BACKEND,
                    "Stage 05: one thread, an epoll event loop and a chain "
                    "of callbacks.") < 0)
        return 1;
    /* With --workers each worker process has its own copy: its share. */
    evconn_server_init(&srv, &cfg, STAGE, &ops,
                       workers_share(&cfg, cfg.max_jobs),
                       workers_share(&cfg, cfg.max_bills));
    srv.loop_does_io = true; /* loop_recv and loop_send, not the steps */
    log_info("one thread; an event loop calls back whoever is ready");
    /* A client is a descriptor, and there is no FD_SETSIZE here: the
     * descriptor limit (raised to the hard one) is the clients' limit. */
    net_log_loop_clients(workers_share(&cfg, cfg.max_jobs), cfg.workers);
    int rc = 1;
    if (cfg.workers > 1) {
        rc = workers_run(&cfg, serve);
    } else {
        int lfd = net_listen_announce(&cfg);
        if (lfd >= 0)
            rc = serve(lfd);
    }
    callback_global_cleanup();
    return rc;
}
