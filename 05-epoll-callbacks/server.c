/* 05-epoll-callbacks: the loop of 04 becomes a library, the steps become
 * callbacks.
 *
 * The model. Still one thread and non-blocking sockets, but nobody builds
 * fd_sets any more. loop.h is a small event loop over epoll: you tell it
 * once "when this fd is readable, call this function with this pointer",
 * or "in 2000 ms, call that one", and it calls you back. The server is a
 * chain of such callbacks, one per thing a connection can wait for:
 *
 *   on_accept      the listener is readable: accept, watch the new socket
 *   on_readable    request bytes arrived: parse; maybe route
 *   on_bill_done   a bill's timer fired: next bill, or the answer
 *   on_writable    the socket has room: send; then read again or close
 *   on_draining    closing politely: drop what the client still sends
 *   on_timeout     idle, too slow, or not reading its answer: close
 *
 * Each callback ends by saying who is called next, by registering it:
 * conn_want_read, conn_want_write, conn_want_bill, conn_want_drain, or
 * conn_close. Put this file beside 04-select/server.c: the steps are the
 * same functions, "return WANT_WRITE;" became "conn_want_write(c);", and the
 * select() loop that applied the answer is gone into loop.c. epoll remembers
 * the interest list between calls and reports only ready descriptors, so a
 * turn costs O(ready), not O(watched), and there is no FD_SETSIZE: waiting
 * on 10000 mostly idle connections costs about what waiting on 10 does.
 *
 * The async route is callbacks all the way down: the bills are loop timers;
 * the PUT goes through libcurl's multi *socket* API, where curl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION), and we tell curl what happened
 * (curl_multi_socket_action); a retry is one more loop timer.
 *
 * What it costs: callback hell, in C. Read the async route from
 * on_job_bill_done to job_after_attempt and count the functions a single
 * "PUT, retry on failure" is spread over, and who calls whom: the loop calls
 * curl's socket callback, curl calls ours, ours calls the loop. And for
 * every connection:
 * - State is passed by hand. Everything a callback needs must sit in struct
 *   conn and come back through void *arg; what 01 kept in local variables
 *   and the program counter (which bill is next, what to do after this
 *   write) is now fields that every callback must keep up to date.
 * - Each callback handles its own errors, and must end in exactly one
 *   "what next" call. Forget one and the connection stalls until some
 *   timer happens to end it; call two and it is freed twice. After conn_close, c is gone: any line that
 *   touches it is a use-after-free. The compiler checks none of this.
 * - Every timer a connection owns must be cancelled when it closes, or it
 *   fires on freed memory.
 * - One callback that blocks still stalls everyone, as in 04.
 * Stage 06 keeps this loop and gives the straight-line code back.
 *
 * Also in here, as in 04: idle and too-slow clients are closed after
 * --idle-timeout-ms, counted from a request's first byte (slowloris);
 * EMFILE from accept pauses the listener for 100 ms (a loop timer);
 * SIGINT/SIGTERM arrive as the shutdown pipe turning readable (on_shutdown):
 * stop accepting, close idle keep-alive connections, finish the rest within
 * SHUTDOWN_GRACE_MS, exit 0.
 *
 * What to notice in the log: the same pid on every line and no thread id;
 * 2000 sync requests answered together one delay after they arrived; "GET
 * /" served while a callback PUT waits on a silent main service; at exit,
 * how many stale epoll events were dropped (see loop.h) when a closed
 * socket's number was reused within one batch.
 *
 * Simplifications, on purpose (as in 04):
 * - While its bills wait, a connection's socket is paused (not watched): a
 *   client that hangs up meanwhile is noticed when the answer is written.
 * - A response is written when epoll next says writable, not tried at
 *   once: one more turn per response, for a chain that reads the same
 *   everywhere.
 * - endpoint_route fills one shared scratch job (one thread). */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "endpoint.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"

#define STAGE "05-epoll-callbacks"

#define ACCEPT_PAUSE_MS 100   /* after EMFILE: let closes free descriptors */
#define LINGER_MS 1000        /* a closing connection drains input this long */
#define LINGER_MAX_BYTES (256 * 1024)

static struct config cfg;
static unsigned jitter_seed = 1;
static struct loop *loop;

/* ------------------------------------------------------------------ */
/* The server's state: globals, because one thread owns all of it.     */

/* What a connection is doing. In 04 this was the state that drove
 * everything; here the loop only knows which callback to call, and this
 * field is bookkeeping kept by hand, for the timeout's log line and for
 * shutdown (which must find the idle connections). */
enum phase { READING, WAITING_BILLS, WRITING, DRAINING };

/* The sync route's job: bills waited one after another. */
struct sync_job {
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t next;              /* the bill being waited for */
    bool keep_alive;          /* the request asked for it */
};

struct conn {
    int fd;
    char peer[64];
    enum phase phase;
    struct loop_timer timeout;    /* idle, slow request, stalled reader */
    struct loop_timer bill_timer; /* the sync route's current bill */
    uint64_t wait_since_ms;       /* when the current read or drain began */
    struct http_parser parser;
    char *out;                    /* the response (or 100 Continue) */
    size_t out_len, out_sent;
    bool out_interim;             /* "100 Continue": the request goes on */
    bool close_after_write;
    size_t drained;               /* bytes dropped while closing */
    struct sync_job *sync;        /* allocated on the first sync request */
    struct conn *prev, *next;
};

/* An async job: its bills wait concurrently, then its callback is PUT. */
struct job;
struct bill_wait {
    struct loop_timer timer;
    struct job *job;
    size_t index;
};

struct job {
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t bills_left;
    struct callback *cb;      /* once every bill is in */
    bool in_transfer;         /* cb->easy is in the multi handle */
    struct loop_timer retry;
    struct job *prev, *next;
    struct bill_wait bills[]; /* req.num_bills of them */
};

static struct conn *conns;
static size_t num_conns;
static struct job *jobs;
static size_t num_jobs;
static struct exchange_request scratch_job; /* endpoint_route's output */

static int listen_fd = -1;
static struct loop_timer accept_resume;

static CURLM *multi;          /* every callback PUT in flight */
static struct loop_timer curl_timer; /* when curl asked to be woken */

static bool stopping;         /* SIGINT/SIGTERM seen */
static struct loop_timer grace;

/* The callbacks, in the order a request meets them. */
static void on_accept(struct loop *l, int fd, unsigned events, void *arg);
static void on_readable(struct loop *l, int fd, unsigned events, void *arg);
static void on_bill_done(struct loop *l, void *arg);
static void on_writable(struct loop *l, int fd, unsigned events, void *arg);
static void on_draining(struct loop *l, int fd, unsigned events, void *arg);
static void on_timeout(struct loop *l, void *arg);

/* ------------------------------------------------------------------ */
/* Stopping is decided wherever the last piece of work ends.            */

static void stop_if_done(void)
{
    if (stopping && num_conns == 0 && num_jobs == 0)
        loop_stop(loop);
}

/* ------------------------------------------------------------------ */
/* Connections: opening, closing, and "what next".                      */

static void conn_close(struct conn *c)
{
    /* Everything the loop holds for c must go before c does: a forgotten
     * timer or registration would call back into freed memory. */
    loop_unwatch(loop, c->fd);
    loop_timer_cancel(loop, &c->timeout);
    loop_timer_cancel(loop, &c->bill_timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    num_conns--;
    close(c->fd);
    log_info("closed %s", c->peer);
    http_parser_free(&c->parser);
    free(c->out);
    free(c->sync);
    free(c);
    stop_if_done();
}

/* The "what next" calls. Each is the last thing a callback does: on
 * failure it closes the connection, so the caller must not touch c after
 * it. A deadline is reset when a read or write wait begins, not on every
 * byte of a request: a client that trickles a request (slowloris) gets
 * the idle timeout counted from its first byte. */
static void conn_want_read(struct conn *c)
{
    c->phase = READING;
    if (loop_watch(loop, c->fd, LOOP_READABLE, on_readable, c) < 0 ||
        loop_timer_arm_at(loop, &c->timeout,
                          c->wait_since_ms + (uint64_t)cfg.idle_timeout_ms) < 0) {
        log_warn("%s: cannot wait for a request: %s", c->peer, strerror(errno));
        conn_close(c);
    }
}

static void conn_want_write(struct conn *c)
{
    c->phase = WRITING;
    if (loop_watch(loop, c->fd, LOOP_WRITABLE, on_writable, c) < 0 ||
        loop_timer_arm(loop, &c->timeout, (uint64_t)cfg.idle_timeout_ms) < 0) {
        log_warn("%s: cannot wait to write: %s", c->peer, strerror(errno));
        conn_close(c);
    }
}

/* The sync route's wait for bill number sync->next: the socket is paused
 * (level triggering would report a pipelined request over and over), the
 * idle timeout is off (the wait is ours, not the client's), and a timer
 * will call on_bill_done. */
static void conn_want_bill(struct conn *c)
{
    c->phase = WAITING_BILLS;
    loop_timer_cancel(loop, &c->timeout);
    int ms = config_bill_delay_ms(&cfg, &jitter_seed);
    if (loop_watch(loop, c->fd, 0, on_readable, c) < 0 ||
        loop_timer_arm(loop, &c->bill_timer, (uint64_t)ms) < 0) {
        log_warn("%s: cannot wait for a bill: %s", c->peer, strerror(errno));
        conn_close(c);
    }
}

static void conn_want_drain(struct conn *c)
{
    c->phase = DRAINING;
    if (loop_watch(loop, c->fd, LOOP_READABLE, on_draining, c) < 0 ||
        loop_timer_arm_at(loop, &c->timeout, c->wait_since_ms + LINGER_MS) < 0)
        conn_close(c);
}

static void conn_open(int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        log_warn("out of memory for a new connection; closing it");
        close(fd);
        return;
    }
    c->fd = fd;
    net_peer_name(fd, c->peer, sizeof c->peer);
    http_parser_init(&c->parser);
    loop_timer_init(&c->timeout, on_timeout, c);
    loop_timer_init(&c->bill_timer, on_bill_done, c);
    c->wait_since_ms = timer_now_ms();
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    num_conns++;
    log_info("connection from %s (%zu open)", c->peer, num_conns);
    conn_want_read(c);
}

/* ------------------------------------------------------------------ */
/* The steps: the same as 04's, ending in a registration instead of a   */
/* return value.                                                        */

static bool job_start(const struct exchange_request *req);

/* Queues a whole response and asks to be called when the socket is
 * writable. Takes over reply. */
static void conn_respond(struct conn *c, struct endpoint_reply *reply,
                         bool keep_alive)
{
    size_t len;
    char *text = endpoint_reply_render(reply, keep_alive, &len);
    endpoint_reply_free(reply);
    if (text == NULL) {
        log_warn("out of memory for the answer to %s", c->peer);
        conn_close(c);
        return;
    }
    c->out = text;
    c->out_len = len;
    c->out_sent = 0;
    c->out_interim = false;
    c->close_after_write = !keep_alive;
    conn_want_write(c);
}

/* The client sent "Expect: 100-continue" and waits for our go-ahead before
 * it sends the body. */
static void conn_send_continue(struct conn *c)
{
    c->out = strdup(HTTP_CONTINUE_RESPONSE);
    if (c->out == NULL) {
        conn_close(c);
        return;
    }
    c->out_len = strlen(c->out);
    c->out_sent = 0;
    c->out_interim = true;
    conn_want_write(c);
}

static void conn_start_bills(struct conn *c, bool keep_alive)
{
    if (c->sync == NULL && (c->sync = malloc(sizeof *c->sync)) == NULL) {
        struct endpoint_reply reply;
        endpoint_busy("out of memory", &reply);
        conn_respond(c, &reply, false);
        return;
    }
    c->sync->req = scratch_job;
    c->sync->next = 0;
    c->sync->keep_alive = keep_alive;
    conn_want_bill(c);
}

/* Timer callback: a bill's wait is over. arg is the connection, handed
 * back by the loop: the only way the callback can find its state. */
static void on_bill_done(struct loop *l, void *arg)
{
    (void)l;
    struct conn *c = arg;
    struct sync_job *s = c->sync;
    size_t i = s->next;
    s->subtotals[i] = exchange_subtotal(&s->req.bills[i], s->req.exchange_rate);
    endpoint_log_bill(&s->req, i, s->subtotals[i]);
    if (++s->next < s->req.num_bills) {
        conn_want_bill(c);
        return;
    }
    struct endpoint_reply reply;
    endpoint_sync_done(&s->req, s->subtotals, &reply);
    conn_respond(c, &reply, s->keep_alive && !stopping);
}

/* A whole request has been parsed: route it. */
static void conn_handle_request(struct conn *c)
{
    const struct http_request *req = &c->parser.req;
    log_info("%s %s from %s", req->method, req->path, c->peer);
    bool keep_alive = req->keep_alive && !stopping;
    struct endpoint_reply reply;
    enum endpoint_route route = endpoint_route(req, STAGE, &scratch_job,
                                               &reply);
    /* req is gone after this; bytes of a pipelined next request stay in
     * the parser until this answer is written. */
    http_parser_consume(&c->parser);
    switch (route) {
    case ENDPOINT_REPLY:
        break;
    case ENDPOINT_SYNC:
        conn_start_bills(c, keep_alive);
        return;
    case ENDPOINT_ASYNC:
        if (!job_start(&scratch_job)) {
            endpoint_reply_free(&reply);
            endpoint_busy("cannot start the job: out of memory", &reply);
        }
        break;
    }
    conn_respond(c, &reply, keep_alive);
}

/* Parses what is buffered. Called after every read, and after every
 * response: pipelined requests are answered from the buffer, in order,
 * before anything more is read. */
static void conn_next_request(struct conn *c)
{
    struct endpoint_reply reply;
    switch (http_parser_parse(&c->parser)) {
    case HTTP_NEED_MORE:
        if (http_parser_take_continue(&c->parser))
            conn_send_continue(c);
        else
            conn_want_read(c);
        return;
    case HTTP_ERROR:
        log_info("bad request from %s: %d %s", c->peer,
                 c->parser.error_status, c->parser.error_detail);
        endpoint_parse_error(c->parser.error_status, c->parser.error_detail,
                             &reply);
        conn_respond(c, &reply, false);
        return;
    case HTTP_DONE:
        break;
    }
    conn_handle_request(c);
}

/* I/O callback: the socket is readable. One read, straight into the
 * parser's buffer, then parse. */
static void on_readable(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct conn *c = arg;
    size_t avail;
    char *space = http_parser_space(&c->parser, &avail);
    if (space == NULL || avail == 0) {
        /* A full buffer always holds a whole request or an error, and it
         * was parsed before we came back to reading: only ENOMEM is left. */
        log_warn("no room to read from %s; closing", c->peer);
        conn_close(c);
        return;
    }
    bool first_bytes = http_parser_empty(&c->parser);
    ssize_t n = net_read_some(c->fd, space, avail);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return; /* nothing after all; still watched, so we will be back */
    if (n < 0) {
        log_info("%s: read: %s", c->peer, strerror(errno));
        conn_close(c);
        return;
    }
    if (n == 0) {
        if (!first_bytes)
            log_info("%s hung up in the middle of a request", c->peer);
        conn_close(c);
        return;
    }
    http_parser_commit(&c->parser, (size_t)n);
    if (first_bytes) /* the request's own clock starts now */
        c->wait_since_ms = timer_now_ms();
    conn_next_request(c);
}

/* Closing politely: close() on a socket with unread input sends a reset,
 * and a reset can destroy the answer we just sent before the client reads
 * it. So: no more writing (FIN), then read and drop whatever the client
 * still sends until it closes too, for at most LINGER_MS. */
static void conn_start_drain(struct conn *c)
{
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    c->wait_since_ms = timer_now_ms();
    c->drained = 0;
    conn_want_drain(c);
}

static void on_draining(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct conn *c = arg;
    char sink[4096];
    ssize_t n = net_read_some(c->fd, sink, sizeof sink);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0 || (c->drained += (size_t)n) > LINGER_MAX_BYTES)
        conn_close(c); /* the client closed too (or failed, or floods) */
}

/* I/O callback: the socket has room. Send what fits. Where to go after the
 * last byte depends on what was written, so whoever queued it left the
 * answer in c (out_interim, close_after_write): a continuation passed by
 * hand. */
static void on_writable(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    struct conn *c = arg;
    ssize_t n = net_write_some(c->fd, c->out + c->out_sent,
                               c->out_len - c->out_sent);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n < 0) {
        log_info("%s left before its answer was written: %s", c->peer,
                 strerror(errno));
        conn_close(c);
        return;
    }
    c->out_sent += (size_t)n;
    if (c->out_sent < c->out_len) {
        conn_want_write(c); /* partial: the rest later; progress resets the
                               timeout */
        return;
    }
    free(c->out);
    c->out = NULL;
    if (c->out_interim) {
        conn_next_request(c); /* "100 Continue" sent: now the body */
    } else if (c->close_after_write) {
        conn_start_drain(c);
    } else if (stopping && http_parser_empty(&c->parser)) {
        conn_close(c); /* promised keep-alive before the stop: idle now */
    } else {
        c->wait_since_ms = timer_now_ms(); /* keep-alive: a new wait */
        conn_next_request(c);
    }
}

/* Timer callback: the connection's timeout. What it means depends on what
 * it was doing, which the loop cannot tell us: hence c->phase. */
static void on_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct conn *c = arg;
    if (c->phase == READING && http_parser_empty(&c->parser))
        log_info("%s idle for %d ms; closing", c->peer, cfg.idle_timeout_ms);
    else if (c->phase == READING)
        log_info("%s sent no whole request in %d ms; closing", c->peer,
                 cfg.idle_timeout_ms);
    else if (c->phase == WRITING)
        log_info("%s stopped reading its answer for %d ms; closing", c->peer,
                 cfg.idle_timeout_ms);
    conn_close(c);
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

static void accept_pause(int err)
{
    log_warn("accept: %s; not accepting for %d ms", strerror(err),
             ACCEPT_PAUSE_MS);
    if (loop_watch(loop, listen_fd, 0, on_accept, NULL) < 0 ||
        loop_timer_arm(loop, &accept_resume, ACCEPT_PAUSE_MS) < 0)
        log_warn("cannot pause accepting: %s", strerror(errno));
}

static void on_accept_resume(struct loop *l, void *arg)
{
    (void)l;
    (void)arg;
    if (listen_fd < 0)
        return;
    if (loop_watch(loop, listen_fd, LOOP_READABLE, on_accept, NULL) < 0)
        log_warn("cannot watch the listener again: %s", strerror(errno));
    else
        log_info("accepting again");
}

/* I/O callback: the listener is readable. Accept until the queue is
 * empty (EAGAIN). No FD_SETSIZE here: epoll takes any descriptor. */
static void on_accept(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)events;
    (void)arg;
    for (;;) {
        int cfd = net_accept(fd, true);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* drained */
            /* EMFILE/ENFILE (out of descriptors), ENOBUFS/ENOMEM, or
             * anything else: the listener stays readable, so retrying now
             * would spin. Stop watching it for a moment instead. */
            accept_pause(errno);
            return;
        }
        conn_open(cfd);
    }
}

/* ------------------------------------------------------------------ */
/* Async jobs: bills on timers, then the PUT through curl's socket API. */
/* Follow one PUT: on_job_bill_done -> job_attempt -> (curl calls)      */
/* on_curl_timer_change -> (the loop calls) on_curl_timeout -> (curl    */
/* calls) on_curl_socket_change -> (the loop calls) on_curl_ready ->    */
/* curl_collect_done -> job_after_attempt -> (a loop timer)             */
/* on_job_retry -> job_attempt again. Stage 06 writes it as a loop.     */

static void job_free(struct job *job)
{
    for (size_t i = 0; i < job->req.num_bills; i++)
        loop_timer_cancel(loop, &job->bills[i].timer);
    loop_timer_cancel(loop, &job->retry);
    if (job->in_transfer)
        curl_multi_remove_handle(multi, job->cb->easy);
    callback_free(job->cb);
    if (job->prev)
        job->prev->next = job->next;
    else
        jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    num_jobs--;
    free(job);
    stop_if_done();
}

/* Hands the PUT to the multi handle. Nothing is sent here: curl answers
 * by calling on_curl_timer_change, and everything else follows from that. */
static void job_attempt(struct job *job)
{
    log_info("callback %s: PUT, try %d of %d", job->req.request_id,
             job->cb->tries + 1, CALLBACK_MAX_TRIES);
    CURLMcode rc = curl_multi_add_handle(multi, job->cb->easy);
    if (rc != CURLM_OK) {
        log_warn("callback %s: %s; result dropped", job->req.request_id,
                 curl_multi_strerror(rc));
        job_free(job);
        return;
    }
    job->in_transfer = true;
}

/* Timer callback: the backoff after a failed try is over. */
static void on_job_retry(struct loop *l, void *arg)
{
    (void)l;
    job_attempt(arg);
}

/* Timer callback: one bill of an async job is done. Its arg is the
 * bill_wait, which knows its job and its index: more state by hand. */
static void on_job_bill_done(struct loop *l, void *arg)
{
    (void)l;
    struct bill_wait *b = arg;
    struct job *job = b->job;
    size_t i = b->index;
    job->subtotals[i] = exchange_subtotal(&job->req.bills[i],
                                          job->req.exchange_rate);
    endpoint_log_bill(&job->req, i, job->subtotals[i]);
    if (--job->bills_left > 0)
        return;
    char *body = exchange_callback_body(cfg.token, &job->req, job->subtotals);
    job->cb = callback_new(cfg.main_service, body, job->req.request_id);
    if (job->cb == NULL) {
        log_warn("callback %s: out of memory; result dropped",
                 job->req.request_id);
        job_free(job);
        return;
    }
    job->cb->owner = job;
    job_attempt(job);
}

/* One timer per bill, all armed now: they run out side by side. */
static bool job_start(const struct exchange_request *req)
{
    struct job *job = calloc(1, sizeof *job +
                                    req->num_bills * sizeof job->bills[0]);
    if (job == NULL)
        return false;
    job->req = *req;
    job->bills_left = req->num_bills;
    loop_timer_init(&job->retry, on_job_retry, job);
    for (size_t i = 0; i < req->num_bills; i++) {
        struct bill_wait *b = &job->bills[i];
        b->job = job;
        b->index = i;
        loop_timer_init(&b->timer, on_job_bill_done, b);
    }
    job->next = jobs;
    if (jobs)
        jobs->prev = job;
    jobs = job;
    num_jobs++;
    for (size_t i = 0; i < req->num_bills; i++) {
        int ms = config_bill_delay_ms(&cfg, &jitter_seed);
        if (loop_timer_arm(loop, &job->bills[i].timer, (uint64_t)ms) < 0) {
            job_free(job);
            return false;
        }
    }
    log_info("job %s: %zu bills waiting side by side", job->req.request_id,
             job->req.num_bills);
    return true;
}

/* One try finished: common/callback judges it (and logs it). */
static void job_after_attempt(struct job *job, CURLcode result)
{
    long wait_ms = 0;
    switch (callback_after_attempt(job->cb, result, &wait_ms)) {
    case CALLBACK_DELIVERED:
    case CALLBACK_FAILED:
        job_free(job);
        return;
    case CALLBACK_RETRY: /* the backoff is a loop timer like any other */
        if (loop_timer_arm(loop, &job->retry, (uint64_t)wait_ms) < 0)
            job_free(job);
        return;
    }
}

/* After curl has run: collect the transfers that finished. */
static void curl_collect_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg dies with curl_multi_remove_handle: read it first. */
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct callback *cb = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&cb);
        curl_multi_remove_handle(multi, easy);
        if (cb == NULL)
            continue; /* not one of ours: cannot happen */
        struct job *job = cb->owner;
        job->in_transfer = false;
        job_after_attempt(job, result);
    }
}

/* I/O callback: one of curl's sockets is ready. Tell curl which. */
static void on_curl_ready(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    (void)arg;
    int flags = ((events & LOOP_READABLE) ? CURL_CSELECT_IN : 0) |
                ((events & LOOP_WRITABLE) ? CURL_CSELECT_OUT : 0) |
                ((events & LOOP_ERROR) ? CURL_CSELECT_ERR : 0);
    int running;
    CURLMcode rc = curl_multi_socket_action(multi, fd, flags, &running);
    if (rc != CURLM_OK)
        log_warn("curl_multi_socket_action: %s", curl_multi_strerror(rc));
    curl_collect_done();
}

/* Timer callback: the moment curl asked to be woken has come. */
static void on_curl_timeout(struct loop *l, void *arg)
{
    (void)l;
    (void)arg;
    int running;
    CURLMcode rc = curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0,
                                            &running);
    if (rc != CURLM_OK)
        log_warn("curl_multi_socket_action: %s", curl_multi_strerror(rc));
    curl_collect_done();
}

/* curl's CURLMOPT_SOCKETFUNCTION: curl tells us what to watch on one of
 * its sockets. Called from inside curl, so it only talks to the loop. */
static int on_curl_socket_change(CURL *easy, curl_socket_t s, int what,
                                 void *userp, void *socketp)
{
    (void)easy;
    (void)userp;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        loop_unwatch(loop, s); /* curl closes it next */
        return 0;
    }
    unsigned events = ((what & CURL_POLL_IN) ? LOOP_READABLE : 0) |
                      ((what & CURL_POLL_OUT) ? LOOP_WRITABLE : 0);
    if (loop_watch(loop, s, events, on_curl_ready, NULL) < 0) {
        log_warn("cannot watch curl's socket %d: %s", (int)s,
                 strerror(errno));
        return -1; /* curl fails that transfer; the retry policy decides */
    }
    return 0;
}

/* curl's CURLMOPT_TIMERFUNCTION: curl tells us when to wake it. -1 means
 * never mind; 0 means as soon as possible, which must still go through
 * the loop (curl forbids calling it back from inside this function). */
static int on_curl_timer_change(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    (void)userp;
    if (timeout_ms < 0) {
        loop_timer_cancel(loop, &curl_timer);
        return 0;
    }
    return loop_timer_arm(loop, &curl_timer, (uint64_t)timeout_ms) < 0 ? -1 : 0;
}

static bool curl_setup(void)
{
    multi = curl_multi_init();
    if (multi == NULL)
        return false;
    loop_timer_init(&curl_timer, on_curl_timeout, NULL);
    return curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                             on_curl_socket_change) == CURLM_OK &&
           curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                             on_curl_timer_change) == CURLM_OK;
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

static void on_grace_over(struct loop *l, void *arg)
{
    (void)arg;
    log_warn("grace period over: dropping %zu connections and %zu jobs",
             num_conns, num_jobs);
    loop_stop(l);
}

/* I/O callback: the shutdown pipe is readable (SIGINT/SIGTERM). Stop
 * accepting, close connections idle between requests, and let everything
 * in flight finish within SHUTDOWN_GRACE_MS; the last conn_close or
 * job_free stops the loop (stop_if_done). Answers written from now on say
 * "Connection: close". */
static void on_shutdown(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    (void)arg;
    stopping = true;
    loop_unwatch(l, fd); /* it stays readable for good: stop listening */
    loop_unwatch(l, listen_fd);
    close(listen_fd);
    listen_fd = -1;
    loop_timer_cancel(l, &accept_resume);
    log_info("stop requested: not accepting; finishing %zu connections and "
             "%zu jobs (at most %d ms)", num_conns, num_jobs,
             SHUTDOWN_GRACE_MS);
    loop_timer_init(&grace, on_grace_over, NULL);
    if (loop_timer_arm(l, &grace, SHUTDOWN_GRACE_MS) < 0)
        loop_stop(l);
    for (struct conn *c = conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->phase == READING && http_parser_empty(&c->parser))
            conn_close(c);
    }
    stop_if_done();
}

/* ------------------------------------------------------------------ */

/* Connections are descriptors. A shell's soft limit (often 1024) would
 * stop accept() with EMFILE long before epoll minds; the hard limit is
 * what the administrator allows, so take all of it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    }
}

int main(int argc, char **argv)
{
    config_parse(&cfg, argc, argv, STAGE, 8005, 0,
                 "Stage 05: one thread, an epoll event loop and a chain of "
                 "callbacks.");
    log_init(STAGE, cfg.quiet);
    net_ignore_sigpipe();
    if (shutdown_init() < 0) {
        perror("shutdown_init");
        return 1;
    }
    raise_fd_limit();
    callback_global_init();
    loop = loop_new();
    if (loop == NULL || !curl_setup()) {
        log_warn("cannot set up the event loop or curl: %s", strerror(errno));
        return 1;
    }
    loop_timer_init(&accept_resume, on_accept_resume, NULL);
    int port;
    listen_fd = net_listen(cfg.host, cfg.port, &port);
    if (listen_fd < 0)
        return 1;
    if (net_set_nonblocking(listen_fd) < 0 ||
        loop_watch(loop, listen_fd, LOOP_READABLE, on_accept, NULL) < 0 ||
        loop_watch(loop, shutdown_fd(), LOOP_READABLE, on_shutdown, NULL) < 0) {
        log_warn("cannot watch the listener: %s", strerror(errno));
        return 1;
    }
    config_log(&cfg);
    log_info("one thread; an epoll loop calls back whoever is ready");
    net_announce(cfg.host, port);

    int rc = 0;
    if (loop_run(loop) < 0) {
        log_warn("epoll_wait: %s", strerror(errno));
        rc = 1;
    }
    while (conns)
        conn_close(conns);
    while (jobs)
        job_free(jobs);
    if (listen_fd >= 0)
        close(listen_fd);
    curl_multi_cleanup(multi); /* may still call back into the loop */
    callback_global_cleanup();
    log_info("stopped; %lu stale epoll events were dropped",
             loop_stale_events(loop));
    loop_free(loop);
    return rc;
}
