/* conn_io: see conn_io.h. */
#include "conn_io.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "callback.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"

#define ACCEPT_BACKOFF_MS 100     /* out of descriptors: wait, do not spin */
#define BUSY_SEND_TIMEOUT_MS 100  /* the acceptor never waits long on a 503 */
#define DRAIN_TIMEOUT_MS 1000     /* a worker can afford this, not more */

/* Reads and drops what the client sends, at most one request's worth,
 * until the end of the stream, an error, or (flags) nothing more to take. */
static void drop_input(int fd, int flags)
{
    char buf[4096];
    for (size_t total = 0; total < HTTP_PARSER_MAX_BUFFER;) {
        ssize_t n = recv(fd, buf, sizeof buf, flags);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

/* ---- The acceptor ---- */

int conn_io_listen(const struct config *cfg)
{
    int port;
    int fd = net_listen(cfg->host, cfg->port, &port);
    if (fd < 0)
        return -1;
    if (net_set_nonblocking(fd) < 0) {
        perror("listening socket: O_NONBLOCK");
        close(fd);
        return -1;
    }
    config_log(cfg);
    net_announce(cfg->host, port);
    return fd;
}

int conn_io_accept(int listen_fd)
{
    int fd = net_accept(listen_fd, false);
    if (fd >= 0)
        return fd;
    if (errno == EMFILE || errno == ENFILE) {
        log_warn("accept: %s; pausing %d ms", strerror(errno),
                 ACCEPT_BACKOFF_MS);
        timer_nanosleep_ms(ACCEPT_BACKOFF_MS);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log_warn("accept: %s", strerror(errno));
    }
    return -1;
}

/* The socket is fresh, so the short send timeout only guards against the
 * impossible; the drop is non-blocking, unlike conn_io_drain_before_close,
 * because the acceptor cannot afford to wait for anyone. */
void conn_io_refuse_busy(int fd, const char *why)
{
    struct endpoint_reply reply;
    endpoint_busy(why, &reply);
    net_set_timeouts(fd, BUSY_SEND_TIMEOUT_MS);
    conn_io_send_reply(fd, &reply, false);
    endpoint_reply_free(&reply);
    shutdown(fd, SHUT_WR);
    drop_input(fd, MSG_DONTWAIT);
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

/* Waits for the client's next bytes, at most idle_timeout_ms. Between
 * requests (nothing buffered) a stop also ends the wait: an idle connection
 * is closed at once instead of holding the stop for the whole timeout.
 * Inside a request only the client or the timeout ends it: that request is
 * in flight. */
static bool wait_for_bytes(int fd, const struct http_parser *p,
                           int idle_timeout_ms)
{
    bool idle = http_parser_empty(p);
    struct pollfd fds[2] = {{.fd = fd, .events = POLLIN},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    for (;;) {
        int n = poll(fds, idle ? 2 : 1, idle_timeout_ms);
        if (n > 0 && fds[0].revents)
            return true; /* data, end of stream or error: read() tells */
        if (n > 0) {
            log_info("server stopping: closing an idle connection");
            return false;
        }
        if (n == 0) {
            log_info("client %s past %d ms; closing",
                     idle ? "idle" : "stalled", idle_timeout_ms);
            return false;
        }
        if (errno != EINTR) {
            log_warn("poll: %s", strerror(errno));
            return false;
        }
    }
}

enum http_parse_status conn_io_read_request(int fd, struct http_parser *p,
                                            int idle_timeout_ms)
{
    for (;;) {
        enum http_parse_status st = http_parser_parse(p);
        if (st != HTTP_NEED_MORE)
            return st;
        if (http_parser_take_continue(p) &&
            net_write_all(fd, HTTP_CONTINUE_RESPONSE,
                          strlen(HTTP_CONTINUE_RESPONSE)) < 0)
            return HTTP_NEED_MORE;
        size_t avail;
        char *space = http_parser_space(p, &avail);
        if (!space || !wait_for_bytes(fd, p, idle_timeout_ms))
            return HTTP_NEED_MORE;
        ssize_t n = net_read_some(fd, space, avail);
        if (n <= 0)
            return HTTP_NEED_MORE; /* closed, reset, or timed out */
        http_parser_commit(p, (size_t)n);
    }
}

bool conn_io_send_reply(int fd, const struct endpoint_reply *reply,
                        bool keep_alive)
{
    size_t len;
    char *text = endpoint_reply_render(reply, keep_alive, &len);
    bool ok = text && net_write_all(fd, text, len) == 0;
    if (text && !ok)
        log_info("client left before the answer was written: %s",
                 strerror(errno));
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
    if (shutdown(fd, SHUT_WR) < 0 ||
        net_set_timeouts(fd, DRAIN_TIMEOUT_MS) < 0)
        return;
    drop_input(fd, 0); /* each wait ends after DRAIN_TIMEOUT_MS */
}

void conn_io_serve(int fd, int idle_timeout_ms, conn_io_handler *handle,
                   void *arg)
{
    /* Bounds every blocking write too: a client that stops reading cannot
     * hold its worker forever. */
    if (net_set_timeouts(fd, idle_timeout_ms) < 0)
        log_warn("setting timeouts: %s", strerror(errno));
    struct http_parser parser;
    http_parser_init(&parser);
    for (bool more = true; more;) {
        enum http_parse_status st =
            conn_io_read_request(fd, &parser, idle_timeout_ms);
        if (st == HTTP_ERROR && conn_io_reject(fd, &parser))
            conn_io_drain_before_close(fd);
        if (st != HTTP_DONE)
            break;
        log_info("%s %s", parser.req.method, parser.req.path);
        more = handle(fd, &parser.req, arg);
        http_parser_consume(&parser);
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

bool conn_io_send_callback(const struct config *cfg,
                           const struct exchange_request *job,
                           const double *subtotals)
{
    char *body = exchange_callback_body(cfg->token, job, subtotals);
    struct callback *cb = body ? callback_new(cfg->main_service, body,
                                              job->request_id) : NULL;
    bool delivered = false;
    if (cb)
        delivered = callback_send_blocking(cb);
    else
        log_warn("callback %s: out of memory", job->request_id);
    callback_free(cb);
    return delivered;
}
