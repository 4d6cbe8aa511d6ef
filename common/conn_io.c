/* conn_io: see conn_io.h. */
#include "conn_io.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "callback.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"
#include "trace.h"

#define BUSY_SEND_TIMEOUT_MS 100  /* the acceptor never waits long on a 503 */
#define DRAIN_TIMEOUT_MS 1000     /* a worker can afford this, not more */
#define DEFAULT_WRITE_TIMEOUT_MS 10000 /* no conn_io_set_write_timeout */

/* ---- Deadlines on CLOCK_MONOTONIC ---- */

struct conn_io_limits conn_io_limits_of(const struct config *cfg)
{
    return (struct conn_io_limits){
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
    };
}

/* Milliseconds until deadline (timer_now_ms's clock), 0 once it passed:
 * poll's timeout. */
static int ms_left(uint64_t deadline)
{
    uint64_t now = timer_now_ms();
    if (now >= deadline)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

static uint64_t deadline_in(int ms)
{
    return timer_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
}

enum wait_result { WAIT_READY, WAIT_TIMEOUT, WAIT_STOP, WAIT_ERROR };

/* Waits until fd has what `events` asks (or an error or hang-up: the next
 * call tells), the deadline passes, or, with watch_stop, a stop is asked.
 * The deadline is absolute, so EINTR and early wake-ups cost nothing. */
static enum wait_result wait_fd(int fd, short events, uint64_t deadline,
                                bool watch_stop)
{
    struct pollfd fds[2] = {{.fd = fd, .events = events},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    for (;;) {
        int n = poll(fds, watch_stop ? 2 : 1, ms_left(deadline));
        if (n > 0 && fds[0].revents)
            return WAIT_READY;
        if (n > 0)
            return WAIT_STOP;
        if (n == 0 && timer_now_ms() >= deadline)
            return WAIT_TIMEOUT;
        if (n < 0 && errno != EINTR) {
            log_warn("poll: %s", strerror(errno));
            return WAIT_ERROR;
        }
    }
}

/* Sends all len bytes before deadline, however slowly the client reads:
 * non-blocking sends, poll for room in between. 0, or -1 with errno
 * (ETIMEDOUT when the deadline passed). */
static int write_all_by(int fd, const char *buf, size_t len,
                        uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        enum wait_result w = wait_fd(fd, POLLOUT, deadline, false);
        if (w == WAIT_TIMEOUT)
            errno = ETIMEDOUT;
        if (w != WAIT_READY)
            return -1;
    }
    return 0;
}

/* Reads and drops what the client sends until it closes, one request's
 * worth has gone, or deadline passes. */
static void drop_input_until(int fd, uint64_t deadline)
{
    char buf[4096];
    for (size_t total = 0; total < HTTP_PARSER_MAX_BUFFER;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, deadline, false) != WAIT_READY)
                return;
            continue;
        }
        if (n <= 0)
            return;
        total += (size_t)n;
    }
}

/* ---- The acceptor ---- */

int conn_io_accept(int listen_fd)
{
    int fd = net_accept(listen_fd, false);
    if (fd >= 0)
        return fd;
    if (errno == EMFILE || errno == ENFILE) {
        log_warn("accept: %s; not accepting for %d ms", strerror(errno),
                 NET_ACCEPT_PAUSE_MS);
        timer_nanosleep_ms(NET_ACCEPT_PAUSE_MS);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log_warn("accept: %s", strerror(errno));
    }
    return -1;
}

/* The answer is written under a short deadline and the drop does not
 * wait at all, unlike conn_io_drain_before_close: the acceptor cannot
 * afford to wait for anyone. */
void conn_io_refuse_busy(int fd, const char *why)
{
    struct endpoint_reply reply;
    endpoint_busy(why, &reply);
    conn_io_set_write_timeout(fd, BUSY_SEND_TIMEOUT_MS);
    conn_io_send_reply(fd, &reply, false);
    endpoint_reply_free(&reply);
    shutdown(fd, SHUT_WR);
    drop_input_until(fd, 0);
    close(fd);
}

/* ---- One connection ---- */

/* True once a stop was asked. A poll of the shutdown pipe rather than
 * shutdown_requested(): that flag belongs to whoever runs the handler. In
 * a forked child (02) it is a copy the parent's handler never sets, and
 * reading it from another thread (03) would be a data race. The pipe is
 * shared by every process and thread and stays readable (shutdown.h). */
static bool server_stopping(void)
{
    struct pollfd p = {.fd = shutdown_fd(), .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Where a request stands, and the deadline of that stage. Each deadline is
 * set once, when its stage begins, and never moved. */
struct request_clock {
    uint64_t idle_until;   /* before the first byte */
    uint64_t head_until;   /* 0 until the first byte arrives */
    uint64_t body_until;   /* 0 until the head is complete */
};

static uint64_t request_deadline(struct request_clock *c,
                                 const struct http_parser *p,
                                 const struct conn_io_limits *lim)
{
    /* Any byte starts the head, CR and LF included: "empty lines between
     * requests" must not be a way to stay idle forever. */
    if (p->len > 0 && c->head_until == 0)
        c->head_until = deadline_in(lim->header_timeout_ms);
    if (p->head_done && c->body_until == 0)
        c->body_until = deadline_in(lim->body_timeout_ms);
    if (p->head_done)
        return c->body_until;
    return p->len > 0 ? c->head_until : c->idle_until;
}

/* A deadline passed: an idle connection just ends; a request under way is
 * answered 408 by the caller (the detail names the option to raise). */
static enum http_parse_status request_late(struct http_parser *p,
                                           const struct conn_io_limits *lim)
{
    if (p->len == 0) {
        log_info("client idle past %d ms; closing", lim->idle_timeout_ms);
        return HTTP_NEED_MORE;
    }
    p->error_status = 408;
    p->error_detail = p->head_done
        ? "request body not complete within --body-timeout-ms"
        : "request head not complete within --header-timeout-ms";
    return HTTP_ERROR;
}

enum http_parse_status conn_io_read_request(int fd, struct http_parser *p,
                                            const struct conn_io_limits *lim)
{
    struct request_clock clock = {
        .idle_until = deadline_in(lim->idle_timeout_ms)};
    for (;;) {
        enum http_parse_status st = http_parser_parse(p);
        if (st != HTTP_NEED_MORE)
            return st;
        if (http_parser_take_continue(p) &&
            write_all_by(fd, HTTP_CONTINUE_RESPONSE,
                         strlen(HTTP_CONTINUE_RESPONSE),
                         deadline_in(lim->idle_timeout_ms)) < 0)
            return HTTP_NEED_MORE;
        size_t avail;
        char *space = http_parser_space(p, &avail);
        if (!space)
            return HTTP_NEED_MORE; /* out of memory: nothing to answer with */
        /* Between requests a stop ends the wait; inside one only the
         * client or the deadline does: that request is in flight. */
        switch (wait_fd(fd, POLLIN, request_deadline(&clock, p, lim),
                        p->len == 0)) {
        case WAIT_READY:
            break;
        case WAIT_TIMEOUT:
            return request_late(p, lim);
        case WAIT_STOP:
            log_info("server stopping: closing an idle connection");
            return HTTP_NEED_MORE;
        case WAIT_ERROR:
            return HTTP_NEED_MORE;
        }
        ssize_t n = recv(fd, space, avail, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN ||
                      errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return HTTP_NEED_MORE; /* closed or reset */
        http_parser_commit(p, (size_t)n);
    }
}

int conn_io_set_write_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* The write timeout stored by conn_io_set_write_timeout, in ms. */
static int write_timeout_of(int fd)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) < 0 ||
        (tv.tv_sec == 0 && tv.tv_usec == 0))
        return DEFAULT_WRITE_TIMEOUT_MS;
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

bool conn_io_send_reply(int fd, const struct endpoint_reply *reply,
                        bool keep_alive)
{
    size_t len;
    char *text = endpoint_reply_render(reply, keep_alive, &len);
    bool ok = text && write_all_by(fd, text, len,
                                   deadline_in(write_timeout_of(fd))) == 0;
    if (text && !ok)
        log_info("client did not take the answer: %s", strerror(errno));
    TRACE(TRACE_REQ_END, NULL, fd);
    free(text);
    return ok;
}

bool conn_io_reject(int fd, const struct http_parser *p)
{
    log_info("bad request: %d %s", p->error_status, p->error_detail);
    struct endpoint_reply reply;
    endpoint_parse_error(p->error_status, p->error_detail, &reply);
    bool sent = conn_io_send_reply(fd, &reply, false);
    endpoint_reply_free(&reply);
    return sent;
}

void conn_io_drain_before_close(int fd)
{
    if (shutdown(fd, SHUT_WR) < 0)
        return;
    drop_input_until(fd, deadline_in(DRAIN_TIMEOUT_MS));
}

void conn_io_linger_if_unread(int fd)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        conn_io_drain_before_close(fd);
}

void conn_io_serve(int fd, const struct conn_io_limits *lim,
                   conn_io_handler *handle, void *arg)
{
    if (conn_io_set_write_timeout(fd, lim->idle_timeout_ms) < 0)
        log_warn("setting the write timeout: %s", strerror(errno));
    struct http_parser parser;
    http_parser_init(&parser);
    for (bool more = true; more;) {
        enum http_parse_status st = conn_io_read_request(fd, &parser, lim);
        if (st == HTTP_ERROR && conn_io_reject(fd, &parser))
            conn_io_drain_before_close(fd);
        if (st != HTTP_DONE)
            break;
        log_info("%s %s", parser.req.method, parser.req.path);
        TRACE(TRACE_REQ_BEGIN, NULL, fd);
        more = handle(fd, &parser.req, arg);
        http_parser_consume(&parser);
        if (!more)
            conn_io_linger_if_unread(fd);
    }
    http_parser_free(&parser);
}

bool conn_io_answer(int fd, const struct http_request *req,
                    struct endpoint_reply *reply, bool last)
{
    bool keep_alive = !last && req->keep_alive && !server_stopping();
    bool sent = conn_io_send_reply(fd, reply, keep_alive);
    endpoint_reply_free(reply);
    return sent && keep_alive;
}

/* ---- The callback ---- */

void conn_io_wait_bills(const struct config *cfg,
                        const struct exchange_request *job,
                        double *subtotals, unsigned *seed,
                        struct jobcap *budget)
{
    for (size_t i = 0; i < job->num_bills; i++) {
        TRACE(TRACE_BILL_BEGIN, job, i);
        /* Blocks here until the delay has passed: the whole process in
         * 01, only this child in 02, only this thread in 03. */
        timer_nanosleep_ms(config_bill_delay_ms(cfg, seed));
        subtotals[i] = exchange_subtotal(&job->bills[i], job->exchange_rate);
        endpoint_log_bill(job, i, subtotals[i]);
        TRACE(TRACE_BILL_END, job, i);
        if (budget)
            jobcap_bills_done(budget, 1);
    }
}

bool conn_io_route(const struct config *cfg, const struct http_request *req,
                   const char *stage, struct jobcap *cap, unsigned *seed,
                   struct exchange_request *job,
                   struct endpoint_reply *reply)
{
    switch (endpoint_route(req, stage, job, reply)) {
    case ENDPOINT_REPLY:
        return false;
    case ENDPOINT_SYNC: {
        double subtotals[EXCHANGE_MAX_BILLS];
        conn_io_wait_bills(cfg, job, subtotals, seed, NULL);
        endpoint_sync_done(job, subtotals, reply);
        return false;
    }
    case ENDPOINT_ASYNC:
        return endpoint_admit_job(cap, job, reply);
    }
    return false;
}

/* conn_io_serve_blocking's handler and what it leaves behind. */
struct blocking_conn {
    const struct conn_io_stage *st;
    struct exchange_request *job;
    bool async_job;
};

static bool handle_blocking(int fd, const struct http_request *req, void *arg)
{
    struct blocking_conn *bc = arg;
    const struct conn_io_stage *st = bc->st;
    struct endpoint_reply reply;
    bc->async_job = conn_io_route(st->cfg, req, st->stage, st->cap, st->seed,
                                  bc->job, &reply);
    return conn_io_answer(fd, req, &reply, st->one_request || bc->async_job);
}

bool conn_io_serve_blocking(const struct conn_io_stage *st, int fd,
                            const char *peer, struct exchange_request *job)
{
    struct blocking_conn bc = {.st = st, .job = job, .async_job = false};
    struct conn_io_limits limits = conn_io_limits_of(st->cfg);
    conn_io_serve(fd, &limits, handle_blocking, &bc);
    /* Closed before the async work, so the client is not kept waiting. */
    close(fd);
    log_info("closed %s", peer);
    return bc.async_job;
}

bool conn_io_send_callback(const struct config *cfg,
                           const struct exchange_request *job,
                           const double *subtotals)
{
    char *body = exchange_callback_body(cfg->token, job, subtotals);
    struct callback *cb = body ? callback_new(cfg->main_service, body,
                                              job->request_id,
                                              cfg->callback_deadline_ms)
                             : NULL;
    bool delivered = false;
    if (cb)
        delivered = callback_send_blocking(cb);
    else
        log_warn("callback %s: out of memory", job->request_id);
    callback_free(cb);
    return delivered;
}
