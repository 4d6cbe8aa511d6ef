/* 04-select: one thread serves everyone, with select() and a state machine
 * per connection.
 *
 * The model. Every socket is non-blocking, so no call can put the thread to
 * sleep except one: select(). Each turn of the loop, the server writes down
 * what every connection is waiting for (the read set, the write set), asks
 * select() to sleep until one of those sockets is ready or the earliest
 * deadline passes, and then takes one small step for each connection that
 * can move. A step reads what has arrived, or writes what fits, or notes
 * that a bill is done, and returns what the connection wants next:
 *
 *   WANT_READ   reading a request        the socket goes in the read set
 *   WANT_TIMER  waiting for a bill       no socket; a deadline wakes it
 *   WANT_WRITE  writing the response     the socket goes in the write set
 *   WANT_DRAIN  answered, closing        reads and drops what the client
 *                                        still sends, then closes
 *   WANT_CLOSE  done                     the loop closes and frees it
 *
 * That word is the connection's whole state; the loop applies it
 * (conn_apply). This is the lecture's "we take over the switching between
 * tasks ourselves": no thread is parked in read() or nanosleep(), so one
 * thread can hold thousands of clients that are mostly waiting.
 *
 * Waiting without sleeping. The simulated external call is not a nanosleep
 * any more but a deadline in a heap (common/timer). select()'s timeout is
 * the time left to the earliest deadline, so the loop wakes exactly when the
 * next bill is due; there is no polling interval and no busy loop. 500
 * clients waiting 2 s each cost 500 heap entries, not 500 threads. The sync
 * route waits its bills one after another (one deadline at a time, state
 * WAITING_BILLS); the async route arms one deadline per bill, so they wait
 * side by side, then PUTs the result with a curl *multi* handle whose
 * sockets join the same select (curl_multi_fdset, curl_multi_timeout,
 * curl_multi_perform). A retry after a failed PUT is one more deadline.
 *
 * What it costs.
 * - The programmer does the scheduling. The straight-line handler of 01
 *   is cut into steps, and what used to live in local variables (how much
 *   was read, which bill is next, what to do after writing) lives in
 *   struct conn. Stage 05 keeps this shape; stage 06 gives the straight
 *   line back.
 * - One step that blocks or computes for long stalls every client. Nothing
 *   here may call a blocking function: not accept, not read, not sleep,
 *   not curl_easy_perform.
 * - select() itself is O(highest fd): the sets are rebuilt and scanned on
 *   every turn, and the kernel scans them again. Fine for hundreds of
 *   connections, wasteful for tens of thousands (05 moves to epoll).
 * - FD_SETSIZE. An fd_set is a fixed bitmap of FD_SETSIZE (1024) bits.
 *   FD_SET(1024, &set) writes past its end: memory corruption, or an abort
 *   under glibc's fortify checks. So select() can never watch descriptor
 *   1024 or above, however high the process's file limit is. A connection
 *   whose descriptor is that high gets an immediate 503 (a best-effort
 *   non-blocking send) and is closed, never passed to FD_SET. curl has the
 *   same problem with its own sockets: curl_multi_fdset silently leaves out
 *   any socket >= FD_SETSIZE, and reports max fd -1 when it has nothing
 *   left to report. When that happens while a transfer runs, the loop
 *   wakes every 100 ms to let curl look for itself, as curl's
 *   documentation suggests. To keep that rare, a curl socket that would be
 *   too high is refused when curl opens it (curl_refuse_high_socket): that
 *   try fails and is retried, and no transfer is left half-watched.
 *
 * Also in here: idle and too-slow clients are closed after
 * --idle-timeout-ms, counted from a request's first byte, so trickling a
 * request byte by byte does not help (slowloris). accept() failing with
 * EMFILE pauses accepting for 100 ms: a deadline, not a sleep, and no
 * spinning on a listener that stays readable. SIGINT/SIGTERM arrive as
 * the shutdown pipe turning readable: stop accepting, close idle
 * keep-alive connections, finish the rest (answers and callbacks) within
 * SHUTDOWN_GRACE_MS, exit 0.
 *
 * What to notice in the log. Every line has the same pid and no thread id:
 * one thread did everything. Start two sync requests at once: both
 * "bill ..." lines appear together, one delay after both "POST" lines.
 * During an async job, "GET /" lines keep being served while its bills wait
 * and its callback is retried. Past about 1020 open connections the log
 * says "refused ... FD_SETSIZE".
 *
 * Simplifications, on purpose:
 * - While a connection waits for its bills, its socket is in no set: a
 *   client that hangs up meanwhile is noticed when the answer is written.
 *   (Watching it would make select() return at once, again and again, for
 *   a pipelined request that is not to be read yet.)
 * - A response is written on the next turn, when select() says the socket
 *   is writable, not tried at once: one more select() per response, for a
 *   loop that reads the same everywhere.
 * - endpoint_route fills one shared scratch job: one thread, one request
 *   at a time, and the route that needs the job copies it out. */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "endpoint.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"

#define STAGE "04-select"

#define ACCEPT_PAUSE_MS 100   /* after EMFILE: let closes free descriptors */
#define CURL_BLIND_POLL_MS 100 /* curl is busy but gave us no socket */
#define LINGER_MS 1000        /* a closing connection drains input this long */
#define LINGER_MAX_BYTES (256 * 1024)

static struct config cfg;
static unsigned jitter_seed = 1;

/* ------------------------------------------------------------------ */
/* Deadlines: everything this server waits for that is not a socket.   */

/* One heap holds the deadlines of connections, bills, retries and the
 * accept pause. The kind says whose a deadline is, so the loop knows which
 * step is due when it passes. */
enum deadline_kind {
    DEADLINE_CONN,      /* struct conn: a timeout, or its current bill */
    DEADLINE_JOB_BILL,  /* struct bill_wait: one bill of an async job */
    DEADLINE_JOB_RETRY, /* struct job: time to try the callback again */
    DEADLINE_ACCEPT,    /* the accept pause after EMFILE is over */
    DEADLINE_GRACE,     /* shutting down took too long */
};

struct deadline {
    struct timer_node node;
    enum deadline_kind kind;
};

static struct timer_heap deadlines;

static void deadline_init(struct deadline *d, enum deadline_kind kind)
{
    timer_node_init(&d->node);
    d->kind = kind;
}

/* Arms (or moves) d to at_ms. False only if the heap could not grow. */
static bool deadline_at(struct deadline *d, uint64_t at_ms)
{
    if (timer_heap_push(&deadlines, &d->node, at_ms) == 0)
        return true;
    log_warn("no memory for one more deadline");
    return false;
}

static void deadline_cancel(struct deadline *d)
{
    timer_heap_remove(&deadlines, &d->node);
}

/* ------------------------------------------------------------------ */
/* The server's state: globals, because one thread owns all of it.     */

/* What a connection waits for next: its whole state (see the top). */
enum want { WANT_READ, WANT_TIMER, WANT_WRITE, WANT_DRAIN, WANT_CLOSE };

/* The sync route's job: bills waited one after another. */
struct sync_job {
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t next;              /* the bill being waited for */
    bool keep_alive;          /* the request asked for it */
};

struct conn {
    int fd;                   /* always < FD_SETSIZE (see accept_all) */
    char peer[64];
    enum want want;
    struct deadline deadline; /* when the current wait ends */
    uint64_t wait_since_ms;   /* when the current read or drain began */
    struct http_parser parser;
    char *out;                /* the response (or 100 Continue) */
    size_t out_len, out_sent;
    bool out_interim;         /* out is "100 Continue": the request goes on */
    bool close_after_write;
    size_t drained;           /* bytes dropped while closing */
    struct sync_job *sync;    /* allocated on the first sync request */
    struct conn *prev, *next;
};

/* An async job: its bills wait concurrently, then its callback is PUT. */
struct job;
struct bill_wait {
    struct deadline deadline;
    struct job *job;
    size_t index;
};

struct job {
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t bills_left;
    struct callback *cb;      /* once every bill is in */
    bool in_transfer;         /* cb->easy is in the multi handle */
    struct deadline retry;
    struct job *prev, *next;
    struct bill_wait bills[]; /* req.num_bills of them */
};

static struct conn *conns;
static size_t num_conns;
static struct job *jobs;
static size_t num_jobs;
static struct exchange_request scratch_job; /* endpoint_route's output */

static int listen_fd = -1;
static bool accept_paused;
static struct deadline accept_resume;

static CURLM *multi;          /* every callback PUT in flight */
static int transfers;         /* easy handles in it */

static bool stopping;         /* SIGINT/SIGTERM seen */
static bool grace_over;
static struct deadline grace;

/* ------------------------------------------------------------------ */
/* Connections: opening, closing, and the loop's half of the machine.   */

static void conn_close(struct conn *c)
{
    deadline_cancel(&c->deadline);
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
}

/* Applies what a step returned: remembers which set the socket goes in
 * next turn, and arms the deadline that ends the wait. A deadline is reset
 * when a read or write wait begins, not on every byte of a request: a
 * client that trickles a request (slowloris) gets the idle timeout counted
 * from its first byte, however patiently it sends. */
static void conn_apply(struct conn *c, enum want want)
{
    uint64_t now = timer_now_ms();
    bool armed = true;
    switch (want) {
    case WANT_READ:
        armed = deadline_at(&c->deadline,
                            c->wait_since_ms + (uint64_t)cfg.idle_timeout_ms);
        break;
    case WANT_WRITE: /* re-armed after every write that made progress */
        armed = deadline_at(&c->deadline, now + (uint64_t)cfg.idle_timeout_ms);
        break;
    case WANT_DRAIN:
        armed = deadline_at(&c->deadline, c->wait_since_ms + LINGER_MS);
        break;
    case WANT_TIMER:
        break; /* the step armed the bill's deadline itself */
    case WANT_CLOSE:
        conn_close(c);
        return;
    }
    if (!armed) {
        conn_close(c);
        return;
    }
    c->want = want;
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
    deadline_init(&c->deadline, DEADLINE_CONN);
    c->wait_since_ms = timer_now_ms();
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    num_conns++;
    log_info("connection from %s (%zu open)", c->peer, num_conns);
    conn_apply(c, WANT_READ);
}

/* ------------------------------------------------------------------ */
/* The steps. Each one does what can be done now, without waiting, and */
/* returns what the connection wants next.                              */

static bool job_start(const struct exchange_request *req);

/* Queues a whole response; the loop writes it when the socket is
 * writable. Takes over reply. */
static enum want conn_respond(struct conn *c, struct endpoint_reply *reply,
                              bool keep_alive)
{
    size_t len;
    char *text = endpoint_reply_render(reply, keep_alive, &len);
    endpoint_reply_free(reply);
    if (text == NULL) {
        log_warn("out of memory for the answer to %s", c->peer);
        return WANT_CLOSE;
    }
    c->out = text;
    c->out_len = len;
    c->out_sent = 0;
    c->out_interim = false;
    c->close_after_write = !keep_alive;
    return WANT_WRITE;
}

/* The client sent "Expect: 100-continue" and waits for our go-ahead before
 * it sends the body. */
static enum want conn_send_continue(struct conn *c)
{
    c->out = strdup(HTTP_CONTINUE_RESPONSE);
    if (c->out == NULL)
        return WANT_CLOSE;
    c->out_len = strlen(c->out);
    c->out_sent = 0;
    c->out_interim = true;
    return WANT_WRITE;
}

/* The sync route's wait for bill number sync->next: a deadline, not a
 * sleep. The thread goes straight back to select(). */
static enum want conn_wait_bill(struct conn *c)
{
    int ms = config_bill_delay_ms(&cfg, &jitter_seed);
    if (!deadline_at(&c->deadline, timer_now_ms() + (uint64_t)ms))
        return WANT_CLOSE;
    return WANT_TIMER;
}

static enum want conn_start_bills(struct conn *c, bool keep_alive)
{
    if (c->sync == NULL && (c->sync = malloc(sizeof *c->sync)) == NULL) {
        struct endpoint_reply reply;
        endpoint_busy("out of memory", &reply);
        return conn_respond(c, &reply, false);
    }
    c->sync->req = scratch_job;
    c->sync->next = 0;
    c->sync->keep_alive = keep_alive;
    return conn_wait_bill(c);
}

/* A bill's deadline passed: compute it, then wait for the next one or
 * answer. */
static enum want conn_bill_done(struct conn *c)
{
    struct sync_job *s = c->sync;
    size_t i = s->next;
    s->subtotals[i] = exchange_subtotal(&s->req.bills[i], s->req.exchange_rate);
    endpoint_log_bill(&s->req, i, s->subtotals[i]);
    if (++s->next < s->req.num_bills)
        return conn_wait_bill(c);
    struct endpoint_reply reply;
    endpoint_sync_done(&s->req, s->subtotals, &reply);
    return conn_respond(c, &reply, s->keep_alive && !stopping);
}

/* A whole request has been parsed: route it. */
static enum want conn_handle_request(struct conn *c)
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
        return conn_start_bills(c, keep_alive);
    case ENDPOINT_ASYNC:
        if (!job_start(&scratch_job)) {
            endpoint_reply_free(&reply);
            endpoint_busy("cannot start the job: out of memory", &reply);
        }
        break;
    }
    return conn_respond(c, &reply, keep_alive);
}

/* Parses what is buffered. Called after every read, and after every
 * response: pipelined requests are answered from the buffer, in order,
 * before anything more is read. */
static enum want conn_next_request(struct conn *c)
{
    struct endpoint_reply reply;
    switch (http_parser_parse(&c->parser)) {
    case HTTP_NEED_MORE:
        if (http_parser_take_continue(&c->parser))
            return conn_send_continue(c);
        return WANT_READ;
    case HTTP_ERROR:
        log_info("bad request from %s: %d %s", c->peer,
                 c->parser.error_status, c->parser.error_detail);
        endpoint_parse_error(c->parser.error_status, c->parser.error_detail,
                             &reply);
        return conn_respond(c, &reply, false);
    case HTTP_DONE:
        break;
    }
    return conn_handle_request(c);
}

/* select() says the socket is readable: one read, straight into the
 * parser's buffer, then parse. */
static enum want conn_on_readable(struct conn *c)
{
    size_t avail;
    char *space = http_parser_space(&c->parser, &avail);
    if (space == NULL || avail == 0) {
        /* A full buffer always holds a whole request or an error, and it
         * was parsed before we came back to reading: only ENOMEM is left. */
        log_warn("no room to read from %s; closing", c->peer);
        return WANT_CLOSE;
    }
    bool first_bytes = http_parser_empty(&c->parser);
    ssize_t n = net_read_some(c->fd, space, avail);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return WANT_READ; /* nothing after all: wait again */
    if (n < 0) {
        log_info("%s: read: %s", c->peer, strerror(errno));
        return WANT_CLOSE;
    }
    if (n == 0) {
        if (!first_bytes)
            log_info("%s hung up in the middle of a request", c->peer);
        return WANT_CLOSE;
    }
    http_parser_commit(&c->parser, (size_t)n);
    if (first_bytes) /* the request's own clock starts now */
        c->wait_since_ms = timer_now_ms();
    return conn_next_request(c);
}

/* Closing politely: close() on a socket with unread input sends a reset,
 * and a reset can destroy the answer we just sent before the client reads
 * it. So: no more writing (FIN), then read and drop whatever the client
 * still sends until it closes too, for at most LINGER_MS. */
static enum want conn_start_drain(struct conn *c)
{
    if (shutdown(c->fd, SHUT_WR) < 0)
        return WANT_CLOSE;
    c->wait_since_ms = timer_now_ms();
    c->drained = 0;
    return WANT_DRAIN;
}

static enum want conn_drain(struct conn *c)
{
    char sink[4096];
    ssize_t n = net_read_some(c->fd, sink, sizeof sink);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return WANT_DRAIN;
    if (n <= 0)
        return WANT_CLOSE; /* the client closed too (or failed) */
    c->drained += (size_t)n;
    return c->drained > LINGER_MAX_BYTES ? WANT_CLOSE : WANT_DRAIN;
}

/* select() says the socket is writable: send what fits. */
static enum want conn_on_writable(struct conn *c)
{
    ssize_t n = net_write_some(c->fd, c->out + c->out_sent,
                               c->out_len - c->out_sent);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return WANT_WRITE;
    if (n < 0) {
        log_info("%s left before its answer was written: %s", c->peer,
                 strerror(errno));
        return WANT_CLOSE;
    }
    c->out_sent += (size_t)n;
    if (c->out_sent < c->out_len)
        return WANT_WRITE; /* a partial write: the rest on a later turn */
    free(c->out);
    c->out = NULL;
    if (c->out_interim)
        return conn_next_request(c); /* "100 Continue" sent: now the body */
    if (c->close_after_write)
        return conn_start_drain(c);
    if (stopping && http_parser_empty(&c->parser))
        return WANT_CLOSE; /* promised keep-alive before the stop: idle now */
    c->wait_since_ms = timer_now_ms(); /* keep-alive: a new wait begins */
    return conn_next_request(c);
}

/* The connection's deadline passed: what that means depends on what it
 * was waiting for. */
static enum want conn_on_deadline(struct conn *c)
{
    switch (c->want) {
    case WANT_TIMER:
        return conn_bill_done(c);
    case WANT_READ:
        if (http_parser_empty(&c->parser))
            log_info("%s idle for %d ms; closing", c->peer,
                     cfg.idle_timeout_ms);
        else
            log_info("%s sent no whole request in %d ms; closing", c->peer,
                     cfg.idle_timeout_ms);
        return WANT_CLOSE;
    case WANT_WRITE:
        log_info("%s stopped reading its answer for %d ms; closing", c->peer,
                 cfg.idle_timeout_ms);
        return WANT_CLOSE;
    case WANT_DRAIN:
    case WANT_CLOSE:
        break;
    }
    return WANT_CLOSE;
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

/* A descriptor select() cannot watch (see FD_SETSIZE at the top): answer
 * 503 with one non-blocking send, best effort, and close. */
static void refuse_beyond_fd_setsize(int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_warn("refused %s: descriptor %d does not fit in select()'s "
             "FD_SETSIZE (%d)", peer, fd, FD_SETSIZE);
    struct endpoint_reply reply;
    endpoint_busy("too many connections for select() (FD_SETSIZE)", &reply);
    size_t len;
    char *text = endpoint_reply_render(&reply, false, &len);
    endpoint_reply_free(&reply);
    if (text && net_write_some(fd, text, len) < 0)
        log_info("%s: could not even send the 503: %s", peer,
                 strerror(errno));
    free(text);
    /* Drop what the request already sent, so close() sends FIN, not a
     * reset that could destroy the 503 on its way. */
    char sink[4096];
    (void)net_read_some(fd, sink, sizeof sink);
    close(fd);
}

static void accept_pause(int err)
{
    log_warn("accept: %s; not accepting for %d ms", strerror(err),
             ACCEPT_PAUSE_MS);
    accept_paused = deadline_at(&accept_resume,
                                timer_now_ms() + ACCEPT_PAUSE_MS);
}

/* The listener is readable: accept until the queue is empty (EAGAIN). */
static void accept_all(void)
{
    for (;;) {
        int fd = net_accept(listen_fd, true);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* drained */
            /* EMFILE/ENFILE (out of descriptors), ENOBUFS/ENOMEM, or
             * anything else: the listener stays readable, so retrying now
             * would spin. Stop watching it for a moment instead. */
            accept_pause(errno);
            return;
        }
        if (fd >= FD_SETSIZE)
            refuse_beyond_fd_setsize(fd);
        else
            conn_open(fd);
    }
}

/* ------------------------------------------------------------------ */
/* Async jobs: concurrent bills, then a callback PUT through curl multi. */

static void job_free(struct job *job)
{
    for (size_t i = 0; i < job->req.num_bills; i++)
        deadline_cancel(&job->bills[i].deadline);
    deadline_cancel(&job->retry);
    if (job->in_transfer) {
        curl_multi_remove_handle(multi, job->cb->easy);
        transfers--;
    }
    callback_free(job->cb);
    if (job->prev)
        job->prev->next = job->next;
    else
        jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    num_jobs--;
    free(job);
}

/* One bill deadline per bill, all armed now: they run out side by side. */
static bool job_start(const struct exchange_request *req)
{
    struct job *job = calloc(1, sizeof *job +
                                    req->num_bills * sizeof job->bills[0]);
    if (job == NULL)
        return false;
    job->req = *req;
    job->bills_left = req->num_bills;
    deadline_init(&job->retry, DEADLINE_JOB_RETRY);
    job->next = jobs;
    if (jobs)
        jobs->prev = job;
    jobs = job;
    num_jobs++;
    uint64_t now = timer_now_ms();
    for (size_t i = 0; i < req->num_bills; i++) {
        struct bill_wait *b = &job->bills[i];
        deadline_init(&b->deadline, DEADLINE_JOB_BILL);
        b->job = job;
        b->index = i;
        int ms = config_bill_delay_ms(&cfg, &jitter_seed);
        if (!deadline_at(&b->deadline, now + (uint64_t)ms)) {
            job_free(job);
            return false;
        }
    }
    log_info("job %s: %zu bills waiting side by side", job->req.request_id,
             job->req.num_bills);
    return true;
}

/* curl's CURLOPT_SOCKOPTFUNCTION, called for every socket curl opens.
 * curl_multi_fdset silently leaves out sockets >= FD_SETSIZE: with one
 * transfer that is the "max fd -1" case (the loop polls every 100 ms), but
 * with several, a high one would be left out while the others are
 * reported, and it would move only when something else woke the loop. So
 * such a socket is refused as it is born: that try fails (logged) and the
 * retry policy takes over, a moment later, when descriptors may be free. */
static int curl_refuse_high_socket(void *clientp, curl_socket_t fd,
                                   curlsocktype purpose)
{
    (void)clientp;
    (void)purpose;
    if (fd < FD_SETSIZE)
        return CURL_SOCKOPT_OK;
    log_warn("curl's socket %d does not fit in select()'s FD_SETSIZE (%d)",
             (int)fd, FD_SETSIZE);
    return CURL_SOCKOPT_ERROR;
}

/* Hands the PUT to the multi handle. It does not run here: curl's sockets
 * join the next select(), and curl_multi_perform moves it along. */
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
    transfers++;
}

static void job_bill_done(struct bill_wait *b)
{
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
    curl_easy_setopt(job->cb->easy, CURLOPT_SOCKOPTFUNCTION,
                     curl_refuse_high_socket);
    job_attempt(job);
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
    case CALLBACK_RETRY: /* the backoff is a deadline like any other */
        if (!deadline_at(&job->retry, timer_now_ms() + (uint64_t)wait_ms))
            job_free(job);
        return;
    }
}

/* Lets curl do whatever its sockets and timers allow, without blocking,
 * then collects the transfers that finished. */
static void curl_drive(void)
{
    int running;
    CURLMcode rc = curl_multi_perform(multi, &running);
    if (rc != CURLM_OK)
        log_warn("curl_multi_perform: %s", curl_multi_strerror(rc));
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
        transfers--;
        if (cb == NULL)
            continue; /* not one of ours: cannot happen */
        struct job *job = cb->owner;
        job->in_transfer = false;
        job_after_attempt(job, result);
    }
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

/* SIGINT/SIGTERM, seen as the shutdown pipe turning readable. Stop
 * accepting, close connections that sit idle between requests, and let
 * everything in flight finish within SHUTDOWN_GRACE_MS. Answers written
 * from now on say "Connection: close". */
static void begin_stop(void)
{
    stopping = true;
    close(listen_fd);
    listen_fd = -1;
    deadline_cancel(&accept_resume);
    for (struct conn *c = conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->want == WANT_READ && http_parser_empty(&c->parser))
            conn_close(c);
    }
    log_info("stop requested: not accepting; finishing %zu connections and "
             "%zu jobs (at most %d ms)", num_conns, num_jobs,
             SHUTDOWN_GRACE_MS);
    if (!deadline_at(&grace, timer_now_ms() + SHUTDOWN_GRACE_MS))
        grace_over = true;
}

static bool finished(void)
{
    return stopping && ((num_conns == 0 && num_jobs == 0) || grace_over);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

/* Adds fd to a set. Descriptors >= FD_SETSIZE never get here (accept_all
 * refuses them); the check stays because FD_SET beyond the bitmap would
 * corrupt memory, and such a bound is a real check, not an assert. */
static void watch_fd(int fd, fd_set *set, int *max_fd)
{
    if (fd < 0 || fd >= FD_SETSIZE) {
        log_warn("descriptor %d cannot be watched by select()", fd);
        return;
    }
    FD_SET(fd, set);
    if (fd > *max_fd)
        *max_fd = fd;
}

/* The sooner of two timeouts in ms, where -1 means "no timeout". */
static int sooner(int a, long b)
{
    if (b < 0)
        return a;
    if (b > 86400000L)
        b = 86400000L;
    return (a < 0 || b < a) ? (int)b : a;
}

/* One turn: write down what everyone waits for, sleep in select() until
 * something is ready or the earliest deadline, then step whoever can move.
 * False if select() itself failed (a bug: nothing sensible is left). */
static bool serve_one_turn(void)
{
    fd_set rd, wr, ex;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_ZERO(&ex);
    int max_fd = -1;
    if (!stopping)
        watch_fd(shutdown_fd(), &rd, &max_fd);
    if (listen_fd >= 0 && !accept_paused)
        watch_fd(listen_fd, &rd, &max_fd);
    for (struct conn *c = conns; c != NULL; c = c->next) {
        if (c->want == WANT_READ || c->want == WANT_DRAIN)
            watch_fd(c->fd, &rd, &max_fd);
        else if (c->want == WANT_WRITE)
            watch_fd(c->fd, &wr, &max_fd);
    }
    int timeout = timer_heap_timeout_ms(&deadlines, timer_now_ms());
    if (transfers > 0) {
        int curl_max_fd = -1;
        long curl_ms = -1;
        curl_multi_fdset(multi, &rd, &wr, &ex, &curl_max_fd);
        curl_multi_timeout(multi, &curl_ms);
        if (curl_max_fd > max_fd)
            max_fd = curl_max_fd;
        timeout = sooner(timeout, curl_ms);
        if (curl_max_fd == -1) /* busy, but nothing select() can watch */
            timeout = sooner(timeout, CURL_BLIND_POLL_MS);
    }

    struct timeval tv = {.tv_sec = timeout / 1000,
                         .tv_usec = (timeout % 1000) * 1000};
    int n = select(max_fd + 1, &rd, &wr, &ex, timeout < 0 ? NULL : &tv);
    if (n < 0 && errno == EINTR)
        return true; /* a signal: the shutdown pipe says the rest */
    if (n < 0) {
        log_warn("select: %s", strerror(errno));
        return false;
    }

    if (!stopping && FD_ISSET(shutdown_fd(), &rd))
        begin_stop();
    /* Connections first, then new ones: a connection accepted this turn
     * was not in the sets, and must not be stepped on a bit that belonged
     * to an fd closed earlier in the turn. A step only ever closes its own
     * connection, so saving next is enough to walk the list safely. */
    for (struct conn *c = conns, *next; c != NULL; c = next) {
        next = c->next;
        if (FD_ISSET(c->fd, &rd) && c->want == WANT_READ)
            conn_apply(c, conn_on_readable(c));
        else if (FD_ISSET(c->fd, &rd) && c->want == WANT_DRAIN)
            conn_apply(c, conn_drain(c));
        else if (FD_ISSET(c->fd, &wr) && c->want == WANT_WRITE)
            conn_apply(c, conn_on_writable(c));
    }
    if (listen_fd >= 0 && !accept_paused && FD_ISSET(listen_fd, &rd))
        accept_all();
    if (transfers > 0)
        curl_drive();

    /* Every deadline that has passed, earliest first. */
    uint64_t now = timer_now_ms();
    struct timer_node *node;
    while ((node = timer_heap_pop_expired(&deadlines, now)) != NULL) {
        struct deadline *d = container_of(node, struct deadline, node);
        switch (d->kind) {
        case DEADLINE_CONN: {
            struct conn *c = container_of(d, struct conn, deadline);
            conn_apply(c, conn_on_deadline(c));
            break;
        }
        case DEADLINE_JOB_BILL:
            job_bill_done(container_of(d, struct bill_wait, deadline));
            break;
        case DEADLINE_JOB_RETRY:
            job_attempt(container_of(d, struct job, retry));
            break;
        case DEADLINE_ACCEPT:
            accept_paused = false;
            log_info("accepting again");
            break;
        case DEADLINE_GRACE:
            grace_over = true;
            break;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */

/* Connections are descriptors. A shell's soft limit (often 1024) would
 * stop accept() with EMFILE before select()'s own limit is ever met; the
 * hard limit is what the administrator allows, so take all of it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    }
}

/* After the grace period: whatever is left is dropped. */
static void drop_everything(void)
{
    if (num_conns > 0 || num_jobs > 0)
        log_warn("grace period over: dropping %zu connections and %zu jobs",
                 num_conns, num_jobs);
    while (conns)
        conn_close(conns);
    while (jobs)
        job_free(jobs);
}

int main(int argc, char **argv)
{
    config_parse(&cfg, argc, argv, STAGE, 8004, 0,
                 "Stage 04: one thread serves every connection with select() "
                 "and a state machine per connection.");
    log_init(STAGE, cfg.quiet);
    net_ignore_sigpipe();
    if (shutdown_init() < 0) {
        perror("shutdown_init");
        return 1;
    }
    raise_fd_limit();
    callback_global_init();
    multi = curl_multi_init();
    if (multi == NULL) {
        log_warn("curl_multi_init failed");
        return 1;
    }
    timer_heap_init(&deadlines);
    deadline_init(&accept_resume, DEADLINE_ACCEPT);
    deadline_init(&grace, DEADLINE_GRACE);
    int port;
    listen_fd = net_listen(cfg.host, cfg.port, &port);
    if (listen_fd < 0)
        return 1;
    if (net_set_nonblocking(listen_fd) < 0) {
        log_warn("listener: O_NONBLOCK: %s", strerror(errno));
        return 1;
    }
    config_log(&cfg);
    log_info("one thread; select() can watch descriptors below %d",
             FD_SETSIZE);
    net_announce(cfg.host, port);

    int rc = 0;
    while (!finished()) {
        if (!serve_one_turn()) {
            rc = 1;
            break;
        }
    }
    drop_everything();
    if (listen_fd >= 0)
        close(listen_fd);
    curl_multi_cleanup(multi);
    callback_global_cleanup();
    timer_heap_free(&deadlines);
    log_info("stopped");
    return rc;
}
