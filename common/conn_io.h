/* conn_io: a connection served by code that waits in a straight line:
 * read a request, answer it, read the next, end the connection. The
 * blocking stages 01-03 and the main service run it on a thread (01's only
 * one, a child's in 02, a thread per connection in 03); 06 runs it in a
 * coroutine per connection.
 *
 * How a request is read under its deadlines, and how a connection that
 * ends after an error is closed, is the same everywhere: only the waiting
 * changes. Every byte moved to or from the client in here goes through
 * two functions, lim->recv and lim->send (struct conn_io_limits), which
 * wait as the model waits: in 01-03 conn_io_recv_poll and
 * conn_io_send_poll, poll() on the time left, which blocks the calling
 * thread, then the system call; in 06 functions that park the coroutine
 * while the loop receives or sends for it, and let the thread serve
 * others meanwhile (06-coroutines/server.c, park_recv and park_send, on
 * co_recv and co_send). A pair of "do it, waiting at most this long"
 * functions, rather than a "wait until ready" one, is what lets the same
 * code run on a completion loop (io_uring), where waiting and moving the
 * bytes are one operation. So each stage file shows only its model: 01's
 * accept-serve-close loop, 02's fork and reaping, 03's threads, 06's
 * coroutines.
 *
 * Every wait on the client has a deadline that never moves (deadlines.h):
 * the wait gets the time left on CLOCK_MONOTONIC, so a client trickling
 * one byte at a time cannot stretch it. Between requests a wait is idle: a
 * stop ends it (poll also watches the shutdown pipe, shutdown.h; 06
 * cancels its idle coroutines) and closes the connection at once, while a
 * request already under way is finished. None of these calls can raise
 * SIGPIPE (net.h).
 *
 * The rest is the blocking stages' own and waits in the calling thread:
 * the acceptor, the answer (conn_io_send_reply: poll, under the socket's
 * write timeout), the bills (a sleep) and the callback. Every one of
 * those waits also ends when the stop's drain does (shutdown.h). 06 renders its
 * answers on the loop's stack and sends them with co_send, waits its
 * bills with co_sleep and awaits its callback with curl (server.c). */
#ifndef COMMON_CONN_IO_H
#define COMMON_CONN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "endpoint.h"
#include "exchange.h"
#include "http.h"
#include "jobcap.h"

/* How a connection receives: waits until bytes (or the end) are there,
 * at most timeout_ms (timer_ms_left: 0 means "only if there now", -1 no
 * limit), then moves up to len of them into buf. idle is true between
 * requests, where a stop ends the wait. Returns the count (> 0); 0 when
 * the client closed; len 0 only waits, and returns 1 when something (bytes
 * or the end) is there; or a negative errno: -ETIMEDOUT; -ECANCELED when
 * the server stops (an idle wait at once; any wait once the stop's drain
 * is over, shutdown.h); -EINTR, a signal (the caller tries again with the time
 * left); another if the receive or the wait failed (a reset). */
typedef ssize_t conn_io_recv_fn(int fd, void *buf, size_t len, int timeout_ms,
                                bool idle);

/* How a connection sends: waits until fd takes some of buf (at most
 * timeout_ms), then sends what fits. The count (> 0), or a negative errno
 * (-ETIMEDOUT, -EINTR as above, -EPIPE...); never SIGPIPE. */
typedef ssize_t conn_io_send_fn(int fd, const void *buf, size_t len,
                                int timeout_ms);

/* The blocking stages' receive and send (01-03, the main service): poll()
 * on fd, the now pipe and, when idle, the stop pipe, never past the drain
 * deadline (shutdown.h), then recv or send. Only the calling thread waits: the whole server in 01, one child in 02, one
 * thread in 03. */
ssize_t conn_io_recv_poll(int fd, void *buf, size_t len, int timeout_ms,
                          bool idle);
ssize_t conn_io_send_poll(int fd, const void *buf, size_t len,
                          int timeout_ms);

/* A connection's limits and the I/O they are kept with, in milliseconds.
 * The three deadlines of reading a request are deadlines.h's. */
struct conn_io_limits {
    int idle_timeout_ms;   /* no byte of a request yet (a new or kept-alive
                              connection): then a quiet close. Also bounds
                              writing one whole answer */
    int header_timeout_ms; /* from a request's first byte (CR/LF count) to
                              the end of its head: past it, 408 */
    int body_timeout_ms;   /* from the end of the head to the end of the
                              body: past it, 408 */
    conn_io_recv_fn *recv; /* every byte from the client; NULL:
                              conn_io_recv_poll */
    conn_io_send_fn *send; /* every byte to it; NULL: conn_io_send_poll */
};

/* The three limits as cfg's options set them, waited with
 * conn_io_recv_poll and conn_io_send_poll. */
struct conn_io_limits conn_io_limits_of(const struct config *cfg);

/* ---- The acceptor ---- */

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

/* Waits, as an idle connection, until the first byte of the client's next
 * request is there (or the client left), within lim->idle_timeout_ms.
 * True then, or after an early wake-up (the read that follows waits
 * again); false when the connection is over: the client stayed idle, a
 * stop was asked, or the wait failed (logged). conn_io_read_request starts
 * this way on an empty parser; 06 calls it alone, to make a parser only
 * for a request that has begun. */
bool conn_io_wait_request(int fd, const struct conn_io_limits *lim);

/* Reads until one whole request is parsed, answering "Expect:
 * 100-continue", under lim's deadlines: idle until the first byte, then
 * header, then body. HTTP_DONE; HTTP_ERROR with p->error_status saying
 * which (408 when the head or body missed its deadline); or HTTP_NEED_MORE
 * when the connection is over: the client left, stayed idle past
 * idle_timeout_ms, or a stop was asked while no request was under way.
 * Bytes of a request already in p are read on from; on an empty parser it
 * waits first (a kept-alive client sends only after our answer, so a read
 * first would mostly find nothing). */
enum http_parse_status conn_io_read_request(int fd, struct http_parser *p,
                                            const struct conn_io_limits *lim);

/* Sets the time one whole answer may take to be written on fd (kept as
 * the socket's SO_SNDTIMEO, the value conn_io_send_reply reads back): a
 * client that does not read its answer is dropped after it, however it
 * trickles. Without it, DEFAULT_WRITE_TIMEOUT_MS of conn_io.c applies.
 * 0, or -1 with errno. */
int conn_io_set_write_timeout(int fd, int ms);

/* Renders reply with the Connection header keep_alive asks for and writes
 * it whole, within one write timeout (conn_io_set_write_timeout), waiting
 * in poll(). False (logged) if the client left or did not take it in
 * time. */
bool conn_io_send_reply(int fd, const struct endpoint_reply *reply,
                        bool keep_alive);

/* Answers a request the parser rejected (HTTP_ERROR) with its status and
 * "Connection: close": the stream cannot be trusted any more. Logs it.
 * True if the answer was written. */
bool conn_io_reject(int fd, const struct http_parser *p);

/* The lingering close (net.h), received with lim->recv: half-closes fd,
 * then drops what the client still sends until it closes too,
 * NET_LINGER_MAX_BYTES have gone, or NET_LINGER_MS pass. After an error
 * answer, always. The caller closes fd. */
void conn_io_linger(int fd, const struct conn_io_limits *lim);

/* The same lingering close after the connection's last answer, but only
 * if something the client sent was never read (a pipelined request, or
 * its close: then the linger ends at once); otherwise nothing: a client
 * done with the connection is not kept waiting. */
void conn_io_linger_if_unread(int fd, const struct conn_io_limits *lim);

/* A handler for conn_io_serve: answers one parsed request (conn_io_answer)
 * and returns whether the connection goes on. */
typedef bool conn_io_handler(int fd, const struct http_request *req,
                             void *arg);

/* Serves a connection until it is over: reads each request under lim's
 * deadlines, logs it, and hands it to handle(fd, req, arg) while handle
 * returns true (01's handler always says false: one request). A malformed
 * or late request is rejected (400..505, 408) with a lingering close;
 * after the last answer, unread input gets one too. The caller closes
 * fd. */
void conn_io_serve(int fd, const struct conn_io_limits *lim,
                   conn_io_handler *handle, void *arg);

/* Sends a handler's reply and frees it. The connection stays open only if
 * the client asked (req->keep_alive), this is not its last answer (last),
 * and no stop was asked: checked now, after the handler's waits, so a stop
 * during a long request makes its answer the connection's last. True if
 * the connection goes on. */
bool conn_io_answer(int fd, const struct http_request *req,
                    struct endpoint_reply *reply, bool last);

/* ---- The bills, waited in the caller ---- */

/* The simulated external call of each of job's bills, one after another:
 * a sleep of cfg's delay (seed is the caller's own, for the jitter), so
 * only the calling worker waits. Fills subtotals and logs each bill. With
 * a budget (an async job) each bill is given back to it as soon as it is
 * done (jobcap_bills_done); NULL for the sync route. False if the stop's
 * drain ended first (shutdown_sleep_ms): the rest were not waited. */
bool conn_io_wait_bills(const struct config *cfg,
                        const struct exchange_request *job,
                        double *subtotals, unsigned *seed,
                        struct jobcap *budget);

/* What a blocking stage's handler does before it answers, the same in 01,
 * 02 and 03: routes req (endpoint_route) into *reply; for the sync route
 * waits the bills right here (conn_io_wait_bills) and makes the 200 (a 503
 * if the stop's drain ended first); for the async route checks cap before
 * the ok (endpoint_admit_job), since the ok is a promise, and writes the
 * job to the outbox (outbox_add_job: the answer waits for it) so the ok
 * can say how durable it is (endpoint_async_ok). True only for an
 * admitted async job: *job is filled (job->slot holds its place), *reply
 * is the ok, and the stage does the job its own way (after the close in
 * 01 and 02, in a thread in 03). A stage that then cannot start it ends
 * it (outbox_add_end, jobcap_job_done) and answers 503 instead. */
bool conn_io_route(const struct config *cfg, const struct http_request *req,
                   const char *stage, struct jobcap *cap, unsigned *seed,
                   struct exchange_request *job,
                   struct endpoint_reply *reply);

/* What 01 and 02 answer requests with: the same for every connection of
 * the process (a static in the stage, set up before the first accept). */
struct conn_io_stage {
    const struct config *cfg;
    const char *stage;   /* the name GET / reports */
    struct jobcap *cap;  /* checked before an async ok */
    unsigned *seed;      /* the process's jitter seed */
    bool one_request;    /* every answer is the connection's last (01) */
};

/* 01 and 02's whole connection, in the calling process: every request
 * read, routed and answered (conn_io_serve, conn_io_route, conn_io_answer),
 * an admitted async job's ok being the last answer; then close(fd) and
 * "closed peer" in the log. True if that last answer promised a job: it is
 * in *job, for the caller to do now that the client is gone. */
bool conn_io_serve_blocking(const struct conn_io_stage *st, int fd,
                            const char *peer, struct exchange_request *job);

/* ---- The callback, and the end of a job ---- */

/* An async job's second half once its bills are in: PUTs its result to
 * cfg->main_service (callback_send_blocking), blocking the caller through
 * every try and backoff, up to cfg->callback_deadline_ms; a give-up is
 * logged, and so is running out of memory. Then the job is over: its end
 * goes to the outbox (outbox_add_end) and its place in cap is given back
 * (jobcap_job_done). True then; false if the stop's drain ended the
 * retries first: the job keeps its place in cap, so the stop names it
 * (jobcap_report). */
bool conn_io_finish_job(const struct config *cfg, struct jobcap *cap,
                        struct exchange_request *job,
                        const double *subtotals);

/* A whole async job in the calling thread, one bill after another, then
 * conn_io_finish_job: 01 and 02's way. False if the stop's drain ended it
 * first (it keeps its place in cap, as above). */
bool conn_io_run_job(const struct config *cfg, struct jobcap *cap,
                     struct exchange_request *job, unsigned *seed);

#endif
