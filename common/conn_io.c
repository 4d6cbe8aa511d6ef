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
#include "deadlines.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "shutdown.h"
#include "timer.h"
#include "trace.h"

#define BUSY_SEND_TIMEOUT_MS 100  /* the acceptor never waits long on a 503 */
#define DEFAULT_WRITE_TIMEOUT_MS 10000 /* no conn_io_set_write_timeout */

/* ---- Waiting ---- */

struct conn_io_limits conn_io_limits_of(const struct config *cfg)
{
    return (struct conn_io_limits){
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .recv = conn_io_recv_poll,
        .send = conn_io_send_poll,
    };
}

/* poll() on fd for events, on the now pipe and, when idle, on the stop
 * pipe, never past the drain deadline (shutdown.h): 0 when fd is ready,
 * -ETIMEDOUT, -ECANCELED (a stop: idle, or the drain is over), -EINTR. */
static int poll_fd(int fd, short events, int timeout_ms, bool idle)
{
    struct pollfd fds[3] = {{.fd = fd, .events = events},
                            {.fd = shutdown_now_fd(), .events = POLLIN},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    /* Busy or idle, a wait ends with the stop's drain (shutdown.h). */
    int n = poll(fds, idle ? 3 : 2, shutdown_cut_timeout(timeout_ms));
    if (n < 0)
        return -errno; /* -EINTR: the caller tries again */
    if (fds[1].revents || shutdown_drain_over())
        return -ECANCELED;
    if (n == 0)
        return -ETIMEDOUT;
    return fds[0].revents ? 0 : -ECANCELED; /* else the stop: idle */
}

ssize_t conn_io_recv_poll(int fd, void *buf, size_t len, int timeout_ms,
                          bool idle)
{
    /* Between requests, wait first: a kept-alive client sends only after
     * our answer, so a read first would mostly find nothing. */
    for (bool wait = idle || len == 0;;) {
        if (wait) {
            int rc = poll_fd(fd, POLLIN, timeout_ms, idle);
            if (rc < 0)
                return rc;
            if (len == 0)
                return 1;
        }
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        wait = errno != EINTR;
    }
}

ssize_t conn_io_send_poll(int fd, const void *buf, size_t len,
                          int timeout_ms)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = poll_fd(fd, POLLOUT, timeout_ms, false);
        if (rc < 0)
            return rc;
    }
}

/* One receive with lim's function, waiting until deadline at most
 * (-ETIMEDOUT only then: an early return or a signal just waits again
 * for what is left); when idle, a stop ends it. Its result otherwise. */
static ssize_t recv_by(const struct conn_io_limits *lim, int fd, void *buf,
                       size_t len, uint64_t deadline, bool idle)
{
    conn_io_recv_fn *recv_fn = lim && lim->recv ? lim->recv
                                                : conn_io_recv_poll;
    for (;;) {
        ssize_t rc = recv_fn(fd, buf, len,
                             timer_ms_left(deadline, timer_now_ms()), idle);
        if ((rc != -ETIMEDOUT && rc != -EINTR) || timer_now_ms() >= deadline)
            return rc;
    }
}

/* Sends all len bytes before deadline, however slowly the client reads,
 * with lim's function. 0, or -1 with errno (ETIMEDOUT when the deadline
 * passed). */
static int write_all_by(const struct conn_io_limits *lim, int fd,
                        const char *buf, size_t len, uint64_t deadline)
{
    conn_io_send_fn *send_fn = lim && lim->send ? lim->send
                                                : conn_io_send_poll;
    while (len > 0) {
        ssize_t n = send_fn(fd, buf, len,
                            timer_ms_left(deadline, timer_now_ms()));
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if ((n != -ETIMEDOUT && n != -EINTR) ||
                   timer_now_ms() >= deadline) {
            errno = n < 0 ? (int)-n : EIO;
            return -1;
        }
    }
    return 0;
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

/* The lingering close (net.h) without its wait: the answer is written
 * under a short deadline and what already arrived is dropped, but nothing
 * more is waited for. The acceptor cannot afford to wait for anyone. */
void conn_io_refuse_busy(int fd, const char *why)
{
    struct endpoint_reply reply;
    endpoint_busy(why, &reply);
    conn_io_set_write_timeout(fd, BUSY_SEND_TIMEOUT_MS);
    conn_io_send_reply(fd, &reply, false);
    endpoint_reply_free(&reply);
    size_t dropped = 0;
    if (net_linger_begin(fd))
        net_linger_drop(fd, &dropped);
    close(fd);
}

/* ---- One connection ---- */

/* A wait for the client ended in rc < 0 (idle: between requests): logs
 * why the connection ends. */
static void wait_over(int rc, bool idle, const struct conn_io_limits *lim)
{
    if (rc == -ETIMEDOUT && idle)
        log_info("client idle past %d ms; closing", lim->idle_timeout_ms);
    else if (rc == -ECANCELED)
        log_info("server stopping: closing %s connection",
                 idle ? "an idle" : "a busy");
    else if (rc != -ETIMEDOUT)
        log_warn("waiting for the client: %s", strerror(-rc));
}

bool conn_io_wait_request(int fd, const struct conn_io_limits *lim)
{
    ssize_t rc = recv_by(lim, fd, NULL, 0,
                         timer_deadline_in(lim->idle_timeout_ms), true);
    if (rc < 0)
        wait_over((int)rc, true, lim);
    return rc > 0;
}

/* One read into space, waiting for bytes (until deadline) when there are
 * none; idle says the connection is between requests. > 0 bytes read; 0
 * when the client closed or the read failed (a reset); or the wait's
 * negative errno. */
static ssize_t read_some(const struct conn_io_limits *lim, int fd,
                         char *space, size_t avail, uint64_t deadline,
                         bool idle)
{
    ssize_t n = recv_by(lim, fd, space, avail, deadline, idle);
    if (n < 0 && n != -ETIMEDOUT && n != -ECANCELED)
        return 0; /* a reset: the connection is over, as at its close */
    return n;
}

/* The wait for a request's bytes ended in rc < 0. A request under way that
 * missed its deadline is answered 408 by the caller (the detail names the
 * option to raise); otherwise the connection just ends. */
static enum http_parse_status read_over(int rc, struct http_parser *p,
                                        const struct conn_io_limits *lim)
{
    if (rc == -ETIMEDOUT && p->len > 0) {
        p->error_status = 408;
        p->error_detail = p->head_done
            ? "request body not complete within --body-timeout-ms"
            : "request head not complete within --header-timeout-ms";
        return HTTP_ERROR;
    }
    wait_over(rc, http_parser_empty(p), lim);
    return HTTP_NEED_MORE;
}

enum http_parse_status conn_io_read_request(int fd, struct http_parser *p,
                                            const struct conn_io_limits *lim)
{
    struct deadlines d;
    deadlines_start(&d, lim->idle_timeout_ms);
    for (;;) {
        enum http_parse_status st = http_parser_parse(p);
        if (st != HTTP_NEED_MORE)
            return st;
        uint64_t deadline = deadlines_update(&d, p, lim->header_timeout_ms,
                                             lim->body_timeout_ms);
        if (http_parser_take_continue(p) &&
            write_all_by(lim, fd, HTTP_CONTINUE_RESPONSE,
                         strlen(HTTP_CONTINUE_RESPONSE),
                         timer_deadline_in(lim->idle_timeout_ms)) < 0)
            return HTTP_NEED_MORE;
        size_t avail;
        char *space = http_parser_space(p, &avail);
        if (!space)
            return HTTP_NEED_MORE; /* out of memory: nothing to answer with */
        /* Between requests a stop ends the wait; inside one only the
         * client or the deadline does: that request is in flight. */
        ssize_t n = read_some(lim, fd, space, avail, deadline,
                              http_parser_empty(p));
        if (n < 0)
            return read_over((int)n, p, lim);
        if (n == 0)
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
    bool ok = text &&
              write_all_by(NULL, fd, text, len,
                           timer_deadline_in(write_timeout_of(fd))) == 0;
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

void conn_io_linger(int fd, const struct conn_io_limits *lim)
{
    if (!net_linger_begin(fd))
        return;
    uint64_t deadline = timer_deadline_in(NET_LINGER_MS);
    char sink[4096];
    size_t dropped = 0;
    ssize_t n;
    while (dropped < NET_LINGER_MAX_BYTES &&
           (n = recv_by(lim, fd, sink, sizeof sink, deadline, false)) > 0)
        dropped += (size_t)n;
}

void conn_io_linger_if_unread(int fd, const struct conn_io_limits *lim)
{
    conn_io_recv_fn *recv_fn = lim && lim->recv ? lim->recv
                                                : conn_io_recv_poll;
    if (recv_fn(fd, NULL, 0, 0, false) > 0) /* just a look */
        conn_io_linger(fd, lim);
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
            conn_io_linger(fd, lim);
        if (st != HTTP_DONE)
            break;
        log_info("%s %s", parser.req.method, parser.req.path);
        TRACE(TRACE_REQ_BEGIN, NULL, fd);
        more = handle(fd, &parser.req, arg);
        http_parser_consume(&parser);
        if (!more)
            conn_io_linger_if_unread(fd, lim);
    }
    http_parser_free(&parser);
}

bool conn_io_answer(int fd, const struct http_request *req,
                    struct endpoint_reply *reply, bool last)
{
    bool keep_alive = !last && req->keep_alive && !shutdown_requested();
    bool sent = conn_io_send_reply(fd, reply, keep_alive);
    endpoint_reply_free(reply);
    return sent && keep_alive;
}

/* ---- The bills and the callback ---- */

bool conn_io_wait_bills(const struct config *cfg,
                        const struct exchange_request *job,
                        double *subtotals, unsigned *seed,
                        struct jobcap *budget)
{
    for (size_t i = 0; i < job->num_bills; i++) {
        TRACE(TRACE_BILL_BEGIN, job, i);
        /* Blocks here until the delay has passed: the whole process in
         * 01, only this child in 02, only this thread in 03; unless the
         * stop's drain ends first. */
        if (!shutdown_sleep_ms(config_bill_delay_ms(cfg, seed)))
            return false;
        subtotals[i] = exchange_subtotal(&job->bills[i], job->exchange_rate);
        endpoint_log_bill(job, i, subtotals[i]);
        TRACE(TRACE_BILL_END, job, i);
        if (budget)
            jobcap_bills_done(budget, job, 1);
    }
    return true;
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
        if (conn_io_wait_bills(cfg, job, subtotals, seed, NULL))
            endpoint_sync_done(job, subtotals, reply);
        else /* the stop's drain is over: this answer will not come */
            endpoint_busy("server stopping", reply);
        return false;
    }
    case ENDPOINT_ASYNC:
        if (!endpoint_admit_job(cap, job, reply))
            return false;
        /* The record before the ok: the answer waits for the write (and
         * with --outbox-sync for the disk), and says how durable it is. */
        endpoint_async_ok(reply, outbox_add_job(job));
        return true;
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

bool conn_io_finish_job(const struct config *cfg, struct jobcap *cap,
                        struct exchange_request *job, const double *subtotals)
{
    char *body = exchange_callback_body(cfg->token, job, subtotals);
    struct callback *cb = body ? callback_new(cfg->main_service, body,
                                              job->request_id,
                                              cfg->callback_deadline_ms)
                             : NULL;
    /* Blocks here through every try and backoff (callback.h). */
    if (cb)
        callback_send_blocking(cb);
    else
        log_warn("callback %s: out of memory; result dropped",
                 job->request_id);
    bool over = !(cb && cb->abandoned);
    callback_free(cb);
    if (over) { /* delivered, given up or dropped: logged, and done with */
        outbox_add_end(job->request_id);
        jobcap_job_done(cap, job);
    }
    return over;
}

bool conn_io_run_job(const struct config *cfg, struct jobcap *cap,
                     struct exchange_request *job, unsigned *seed)
{
    double subtotals[EXCHANGE_MAX_BILLS];
    return conn_io_wait_bills(cfg, job, subtotals, seed, cap) &&
           conn_io_finish_job(cfg, cap, job, subtotals);
}
