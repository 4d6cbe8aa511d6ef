/* conn_io: connection I/O for the blocking stages 01-03.
 *
 * In 01, 02 and 03 one worker (the only loop, a child process, a thread)
 * owns one blocking client socket and waits in plain calls: poll, read,
 * write, nanosleep, curl. How a request is read, answered and the
 * connection ended is the same in all three; only who does the waiting
 * changes. That part lives here, so each stage file shows its model: 01's
 * accept-serve-close loop, 02's fork and reaping, 03's threads.
 *
 * Every wait on the client is bounded by the idle timeout, and between
 * requests it also watches the shutdown pipe (shutdown.h): a stop closes an
 * idle connection at once, while a request already under way is finished.
 * None of these calls can raise SIGPIPE (net.h). */
#ifndef COMMON_CONN_IO_H
#define COMMON_CONN_IO_H

#include <stdbool.h>

#include "config.h"
#include "endpoint.h"
#include "exchange.h"
#include "http.h"

/* ---- The acceptor ---- */

/* Listens on cfg->host:cfg->port, logs the settings (config_log) and prints
 * the one stdout line (net_announce). The listening socket is non-blocking
 * only so that a client who gives up between poll and accept cannot block
 * the acceptor in accept(); client sockets stay blocking. -1 if it cannot
 * listen (why is printed). */
int conn_io_listen(const struct config *cfg);

/* Accepts one client as a blocking socket. -1 if there was none after all;
 * out of descriptors (EMFILE/ENFILE) it logs and pauses 100 ms first, so
 * the acceptor backs off instead of spinning. */
int conn_io_accept(int listen_fd);

/* The acceptor's 503 when it is at its limit (02, 03), then close(fd). It
 * does not read the request (a slow client must not hold the acceptor):
 * short send timeout, our side shut, what already arrived dropped, so the
 * answer is not lost to a reset. */
void conn_io_refuse_busy(int fd, const char *why);

/* ---- One connection, in its own worker ---- */

/* Reads until one whole request is parsed, answering "Expect:
 * 100-continue". Waits at most idle_timeout_ms for each chunk of bytes, so
 * the timeout is per wait, not per request. HTTP_DONE, HTTP_ERROR
 * (p->error_status says which), or HTTP_NEED_MORE when the connection is
 * over: the client left or went quiet, or a stop was asked while no request
 * was under way. */
enum http_parse_status conn_io_read_request(int fd, struct http_parser *p,
                                            int idle_timeout_ms);

/* Renders reply with the Connection header keep_alive asks for and writes
 * it whole. False (logged) if the client left before it was written. */
bool conn_io_send_reply(int fd, const struct endpoint_reply *reply,
                        bool keep_alive);

/* Answers a request the parser rejected (HTTP_ERROR) with its status and
 * "Connection: close": the stream cannot be trusted any more. Logs it.
 * True if the answer was written. */
bool conn_io_reject(int fd, const struct http_parser *p);

/* Before closing after an error answer: shuts our side, then drops what
 * the client still sends for up to a second (at most one request's worth),
 * because closing with unread bytes would reset the connection and could
 * destroy the answer. The caller closes fd. */
void conn_io_drain_before_close(int fd);

/* A handler for conn_io_serve: answers one parsed request (conn_io_answer)
 * and returns whether the connection goes on. */
typedef bool conn_io_handler(int fd, const struct http_request *req,
                             void *arg);

/* Serves a keep-alive connection (02, 03) until it is over: sets fd's send
 * and receive timeouts, then reads each request, logs it, and hands it to
 * handle(fd, req, arg) while handle returns true. A malformed request is
 * rejected and the connection drained. The caller closes fd. */
void conn_io_serve(int fd, int idle_timeout_ms, conn_io_handler *handle,
                   void *arg);

/* Sends a handler's reply and frees it. The connection stays open only if
 * the client asked (req->keep_alive), this is not its last answer (last),
 * and no stop was asked: checked now, after the handler's waits, so a stop
 * during a long request makes its answer the connection's last. True if
 * the connection goes on. */
bool conn_io_answer(int fd, const struct http_request *req,
                    struct endpoint_reply *reply, bool last);

/* ---- The callback ---- */

/* PUTs a finished job's result to cfg->main_service (callback.h), blocking
 * the caller through every try and backoff. Out of memory is logged. True
 * if delivered. */
bool conn_io_send_callback(const struct config *cfg,
                           const struct exchange_request *job,
                           const double *subtotals);

#endif
