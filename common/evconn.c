/* evconn: see evconn.h. A connection's steps in 04-select and
 * 05-epoll-callbacks, in the order a request meets them. Internal steps
 * return what the connection wants next and may chain into each other; the
 * public ones (evconn_on_*) record the final answer in c->want for the
 * loop. */
#include "evconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint.h"
#include "evjob.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "shutdown.h"
#include "tasklist.h"
#include "timer.h"
#include "trace.h"

/* The sync route's job: bills waited one after another. It is sized to
 * the request's bills, not to EXCHANGE_MAX_BILLS: a struct exchange_request
 * is 2.5 KiB, and with 10,000 clients waiting that alone would be 25 MiB
 * for one bill each (issue 14). sync_request() rebuilds the whole struct
 * on the stack when a function wants it. */
struct evconn_sync_bill {
    struct exchange_bill bill;
    double subtotal;
};

struct evconn_sync {
    size_t next;              /* the bill being waited for */
    uint64_t since_ms;        /* since when (the task list) */
    uint64_t due_ms;          /* when it is done */
    bool keep_alive;          /* the request asked for it */
    size_t cap;               /* bills this allocation holds */
    size_t num_bills;
    double exchange_rate;
    char request_id[EXCHANGE_MAX_ID_LEN + 1];
    struct evconn_sync_bill bills[];
};

/* The whole request again, for endpoint's functions (a few KiB of stack,
 * as the routed job was); subtotals too, if asked. */
static void sync_request(const struct evconn_sync *s,
                         struct exchange_request *req, double *subtotals)
{
    memcpy(req->request_id, s->request_id, sizeof req->request_id);
    req->exchange_rate = s->exchange_rate;
    req->num_bills = s->num_bills;
    for (size_t i = 0; i < s->num_bills; i++) {
        req->bills[i] = s->bills[i].bill;
        if (subtotals)
            subtotals[i] = s->bills[i].subtotal;
    }
}

void evconn_server_init(struct evconn_server *srv, const struct config *cfg,
                        const char *stage, const struct evconn_ops *ops,
                        long max_jobs, long max_bills)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->stage = stage;
    srv->ops = ops;
    srv->jitter_seed = 1;
    list_init(&srv->conns);
    list_init(&srv->jobs);
    list_init(&srv->durable);
    if (jobcap_init(&srv->budget, max_jobs, max_bills) < 0) {
        perror("jobcap"); /* at start, before anything else: give up */
        exit(1);
    }
}

void *evconn_alloc(size_t size, int fd)
{
    void *c = calloc(1, size);
    if (c == NULL) {
        log_warn("out of memory for a new connection; closing it");
        close(fd);
    }
    return c;
}

void evconn_server_stop(struct evconn_server *srv)
{
    srv->stopping = true;
    log_info("stop requested: not accepting; finishing %zu connections and "
             "%zu jobs (at most %d ms)", srv->num_conns, srv->num_jobs,
             srv->cfg->drain_ms);
    LIST_FOR_EACH_SAFE(it, next, &srv->conns) { /* close_conn unlinks */
        struct evconn *e = LIST_ITEM(it, struct evconn, link);
        if (evconn_idle(e))
            srv->ops->close_conn(e);
    }
}

bool evconn_server_done(const struct evconn_server *srv)
{
    return srv->stopping && srv->num_conns == 0 && srv->num_jobs == 0;
}

void evconn_server_drop(struct evconn_server *srv)
{
    while (!list_empty(&srv->conns))
        srv->ops->close_conn(LIST_ITEM(srv->conns.next, struct evconn, link));
    while (!list_empty(&srv->jobs))
        srv->ops->free_job(LIST_ITEM(srv->jobs.next, struct evjob, link));
}

void evconn_server_free(struct evconn_server *srv)
{
    jobcap_free(&srv->budget);
    while (srv->num_spare > 0)
        free(srv->spare[--srv->num_spare]);
}

void evconn_server_replay(struct evconn_server *srv, int share, int shares)
{
    struct exchange_request job;
    for (size_t i = (size_t)share; i < outbox_replay_count();
         i += (size_t)(shares > 0 ? shares : 1))
        if (endpoint_admit_replay(&srv->budget, i, &job) &&
            !srv->ops->start_job(&job)) {
            log_warn("job %s: cannot start it; it stays in the outbox for "
                     "the next start", job.request_id);
            jobcap_job_done(&srv->budget, &job);
        }
    outbox_replay_done();
}

struct evconn *evconn_next_durable(struct evconn_server *srv)
{
    if (list_empty(&srv->durable))
        return NULL;
    struct evconn *c = LIST_ITEM(srv->durable.next, struct evconn,
                                 durable_link);
    /* Tickets grow in the list's order: if the oldest is not covered yet,
     * none is. */
    if (outbox_syncer_level(c->durable_ticket) == OUTBOX_MEMORY)
        return NULL;
    list_remove(&c->durable_link);
    return c;
}

uint64_t evconn_bill_deadline(struct evconn_server *srv)
{
    int ms = config_bill_delay_ms(srv->cfg, &srv->jitter_seed);
    return timer_now_ms() + (uint64_t)ms;
}

/* A connection that will not read for a while gives its empty read
 * buffer back: to the server's spares while there is room, else to
 * malloc. */
static void conn_give_back_buffer(struct evconn *c)
{
    struct evconn_server *srv = c->srv;
    char *buf = http_parser_take_buffer(&c->parser);
    if (buf != NULL && srv->num_spare < EVCONN_SPARE_BUFFERS)
        srv->spare[srv->num_spare++] = buf;
    else
        free(buf);
}

/* A connection about to read, with no buffer, takes a spare if any. */
static void conn_take_spare_buffer(struct evconn *c)
{
    struct evconn_server *srv = c->srv;
    if (srv->num_spare > 0 &&
        http_parser_give_buffer(&c->parser, srv->spare[srv->num_spare - 1]))
        srv->num_spare--;
}

void evconn_init(struct evconn *c, struct evconn_server *srv, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->srv = srv;
    c->want = EVCONN_READ;
    net_peer_name(fd, c->peer, sizeof c->peer);
    http_parser_init(&c->parser);
    deadlines_start(&c->read, srv->cfg->idle_timeout_ms);
    list_init(&c->durable_link);
    list_push_front(&srv->conns, &c->link);
    srv->num_conns++;
    TRACE(TRACE_COUNT_CONNS, NULL, srv->num_conns);
    log_info("connection from %s (%zu open)", c->peer, srv->num_conns);
}

void evconn_release(struct evconn *c)
{
    list_remove(&c->durable_link); /* harmless if it waits for no flush */
    list_remove(&c->link);
    c->srv->num_conns--;
    TRACE(TRACE_COUNT_CONNS, NULL, c->srv->num_conns);
    close(c->fd);
    log_info("closed %s", c->peer);
    conn_give_back_buffer(c);
    http_parser_free(&c->parser);
    free(c->out);
    free(c->sync);
    c->out = NULL;
    c->sync = NULL;
}

uint64_t evconn_deadline(const struct evconn *c)
{
    switch (c->want) {
    case EVCONN_READ: /* fixed as each phase began (conn_next_request) */
        return deadlines_due(&c->read);
    case EVCONN_BILL:
        return c->sync->due_ms;
    case EVCONN_WRITE:
        return c->write_since_ms + (uint64_t)c->srv->cfg->idle_timeout_ms;
    case EVCONN_LINGER:
        return c->linger_since_ms + NET_LINGER_MS;
    case EVCONN_DURABLE:
        return c->durable_since_ms + (uint64_t)c->srv->cfg->idle_timeout_ms;
    case EVCONN_CLOSE:
        break;
    }
    return timer_now_ms();
}

bool evconn_idle(const struct evconn *c)
{
    return c->want == EVCONN_READ && http_parser_empty(&c->parser);
}

/* ------------------------------------------------------------------ */
/* Answering                                                           */

/* Queues a whole response; the public step that led here writes it at
 * once (conn_flush). Takes over reply. */
static enum evconn_want conn_respond(struct evconn *c,
                                     struct endpoint_reply *reply,
                                     bool keep_alive)
{
    size_t len;
    char *text = endpoint_reply_render(reply, keep_alive, &len);
    endpoint_reply_free(reply);
    if (text == NULL) {
        log_warn("out of memory for the answer to %s", c->peer);
        return EVCONN_CLOSE;
    }
    c->out = text;
    c->out_len = len;
    c->out_sent = 0;
    c->out_interim = false;
    c->out_fresh = true;
    c->close_after_write = !keep_alive;
    c->write_since_ms = timer_now_ms();
    return EVCONN_WRITE;
}

/* The client sent "Expect: 100-continue" and waits for our go-ahead before
 * it sends the body. */
static enum evconn_want conn_send_continue(struct evconn *c)
{
    c->out = strdup(HTTP_CONTINUE_RESPONSE);
    if (c->out == NULL)
        return EVCONN_CLOSE;
    c->out_len = strlen(c->out);
    c->out_sent = 0;
    c->out_interim = true;
    c->out_fresh = true;
    c->write_since_ms = timer_now_ms();
    return EVCONN_WRITE;
}

/* ------------------------------------------------------------------ */
/* The sync route: one bill after another                              */

/* The wait for bill number sync->next: a deadline, not a sleep. The
 * thread goes straight back to the loop. */
static enum evconn_want conn_wait_bill(struct evconn *c)
{
    c->sync->since_ms = timer_now_ms();
    c->sync->due_ms = evconn_bill_deadline(c->srv);
    TRACE(TRACE_BILL_BEGIN, c->sync, c->sync->next);
    return EVCONN_BILL;
}

static enum evconn_want conn_start_bills(struct evconn *c,
                                         const struct exchange_request *job,
                                         bool keep_alive)
{
    size_t n = job->num_bills;
    if (c->sync == NULL || c->sync->cap < n) {
        /* A keep-alive connection reuses it; a bigger request replaces it. */
        free(c->sync);
        c->sync = malloc(sizeof *c->sync + n * sizeof c->sync->bills[0]);
        if (c->sync == NULL) {
            struct endpoint_reply reply;
            endpoint_busy("out of memory", &reply);
            return conn_respond(c, &reply, false);
        }
        c->sync->cap = n;
    }
    struct evconn_sync *s = c->sync;
    memcpy(s->request_id, job->request_id, sizeof s->request_id);
    s->exchange_rate = job->exchange_rate;
    s->num_bills = n;
    for (size_t i = 0; i < n; i++)
        s->bills[i].bill = job->bills[i];
    s->next = 0;
    s->keep_alive = keep_alive;
    /* Nothing is read while the bills wait, so the read buffer goes back
     * unless a pipelined request is in it (10,000 waiting clients would
     * otherwise pin 40 MiB of empty buffers). */
    conn_give_back_buffer(c);
    return conn_wait_bill(c);
}

static enum evconn_want conn_flush(struct evconn *c, enum evconn_want want);

enum evconn_want evconn_on_bill_due(struct evconn *c)
{
    struct evconn_sync *s = c->sync;
    size_t i = s->next;
    s->bills[i].subtotal = exchange_subtotal(&s->bills[i].bill,
                                             s->exchange_rate);
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    sync_request(s, &req, subtotals);
    endpoint_log_bill(&req, i, s->bills[i].subtotal);
    TRACE(TRACE_BILL_END, s, i);
    if (++s->next < s->num_bills)
        return c->want = conn_wait_bill(c);
    struct endpoint_reply reply;
    endpoint_sync_done(&req, subtotals, &reply);
    return c->want = conn_flush(c, conn_respond(c, &reply,
                                  s->keep_alive && !c->srv->stopping));
}

/* ------------------------------------------------------------------ */
/* Reading and routing requests                                        */

/* An admitted async job: written down (outbox.h) before it starts, so
 * its end can never come before its record; then started; then its ok,
 * at once, or (--outbox-sync) once the flush thread has put the record
 * on disk: EVCONN_DURABLE. A job that cannot start is over before it
 * began: its end is written, its place given back, the client gets 503. */
static enum evconn_want conn_start_job(struct evconn *c,
                                       struct exchange_request *job,
                                       struct endpoint_reply *reply,
                                       bool keep_alive)
{
    struct evconn_server *srv = c->srv;
    uint64_t ticket = outbox_append_job(job);
    if (!srv->ops->start_job(job)) {
        outbox_add_end(job->request_id);
        jobcap_job_done(&srv->budget, job);
        endpoint_reply_free(reply);
        endpoint_busy("cannot start the job: out of memory", reply);
        return conn_respond(c, reply, keep_alive);
    }
    if (ticket == 0 || !outbox_syncs()) {
        endpoint_async_ok(reply, ticket ? OUTBOX_WRITTEN : OUTBOX_MEMORY);
        return conn_respond(c, reply, keep_alive);
    }
    endpoint_reply_free(reply);
    c->durable_ticket = ticket;
    c->durable_since_ms = timer_now_ms();
    c->durable_keep_alive = keep_alive;
    list_push_back(&srv->durable, &c->durable_link);
    outbox_syncer_ask();
    return EVCONN_DURABLE;
}

enum evconn_want evconn_on_durable(struct evconn *c)
{
    struct endpoint_reply reply = {0};
    endpoint_async_ok(&reply, outbox_syncer_level(c->durable_ticket));
    return c->want = conn_flush(c, conn_respond(c, &reply,
                                                c->durable_keep_alive &&
                                                !c->srv->stopping));
}

/* A whole request has been parsed: route it. The routed job lives on this
 * stack (a few KiB) only until the connection or a new async job copies
 * it: no request state outside the connection. */
static enum evconn_want conn_handle_request(struct evconn *c)
{
    const struct http_request *req = &c->parser.req;
    log_info("%s %s from %s", req->method, req->path, c->peer);
    TRACE(TRACE_REQ_BEGIN, NULL, c->fd);
    bool keep_alive = req->keep_alive && !c->srv->stopping;
    struct exchange_request job;
    struct endpoint_reply reply;
    enum endpoint_route route = endpoint_route(req, c->srv->stage, &job,
                                               &reply);
    /* req is gone after this; bytes of a pipelined next request stay in
     * the parser until this answer is written. */
    http_parser_consume(&c->parser);
    switch (route) {
    case ENDPOINT_REPLY:
        break;
    case ENDPOINT_SYNC:
        return conn_start_bills(c, &job, keep_alive);
    case ENDPOINT_ASYNC: /* an ok is a promise: reserve before answering */
        if (!endpoint_admit_job(&c->srv->budget, &job, &reply))
            break; /* reply is now the 503 that names the cap */
        return conn_start_job(c, &job, &reply, keep_alive);
    }
    return conn_respond(c, &reply, keep_alive);
}

/* Parses what is buffered. Called after every read, and after every
 * response: pipelined requests are answered from the buffer, in order,
 * before anything more is read. */
static enum evconn_want conn_next_request(struct evconn *c)
{
    struct endpoint_reply reply;
    const struct config *cfg = c->srv->cfg;
    enum http_parse_status st = http_parser_parse(&c->parser);
    /* A head's deadline is fixed at its first byte, a body's at the head's
     * end: so a client that trickles (slowloris), even one CR at a time,
     * gains nothing by sending more. */
    deadlines_update(&c->read, &c->parser, cfg->header_timeout_ms,
                     cfg->body_timeout_ms);
    switch (st) {
    case HTTP_NEED_MORE:
        if (http_parser_take_continue(&c->parser))
            return conn_send_continue(c);
        return EVCONN_READ;
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

/* n bytes came into the parser's free space (0: the client closed; < 0:
 * -errno): keep them, then parse. */
static enum evconn_want conn_got(struct evconn *c, ssize_t n)
{
    if (n < 0) {
        log_info("%s: read: %s", c->peer, strerror((int)-n));
        return EVCONN_CLOSE;
    }
    if (n == 0) {
        if (!http_parser_empty(&c->parser))
            log_info("%s hung up in the middle of a request", c->peer);
        return EVCONN_CLOSE;
    }
    http_parser_commit(&c->parser, (size_t)n);
    enum evconn_want want = conn_next_request(c);
    /* All it read is answered: the buffer goes back now, not when the
     * answer has gone, so the next connection served in this turn reads
     * into the same one. */
    conn_give_back_buffer(c);
    return want;
}

/* A lingering close's bytes are only counted, never read: every
 * lingering connection may share one sink. */
static char sink[4096];

/* Where one read may put bytes now: the sink while lingering, else the
 * parser's free space, in a spare buffer if it had none (NULL, logged: no
 * room, close). */
static char *recv_space(struct evconn *c, size_t *len)
{
    if (c->want == EVCONN_LINGER) {
        *len = sizeof sink;
        return sink;
    }
    conn_take_spare_buffer(c);
    char *space = http_parser_space(&c->parser, len);
    if (space == NULL || *len == 0) {
        /* A full buffer always holds a whole request or an error, and it
         * was parsed before we came back to reading: only ENOMEM is left. */
        log_warn("no room to read from %s; closing", c->peer);
        return NULL;
    }
    return space;
}

char *evconn_recv_buffer(struct evconn *c, size_t *len)
{
    /* A kept-alive client may stay silent for minutes: with no byte of a
     * next request there it has no buffer (conn_got gave it back), and it
     * waits without one (len 0) until the loop says something is there
     * (evconn_on_received). 10,000 idle clients would otherwise pin 40
     * MiB of empty 4 KiB buffers. */
    if (c->want == EVCONN_READ && c->parser.buf == NULL) {
        *len = 0;
        return sink; /* never written: len is 0 */
    }
    return recv_space(c, len);
}

/* One read, straight into the parser's buffer, then parse. */
static enum evconn_want conn_read(struct evconn *c)
{
    size_t avail;
    char *space = recv_space(c, &avail);
    if (space == NULL)
        return EVCONN_CLOSE;
    ssize_t n = net_read_some(c->fd, space, avail);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return EVCONN_READ; /* nothing after all: wait again */
    return conn_got(c, n < 0 ? -errno : n);
}

enum evconn_want evconn_on_readable(struct evconn *c)
{
    return c->want = conn_flush(c, conn_read(c));
}

/* ------------------------------------------------------------------ */
/* Writing, and closing politely                                       */

/* Closing politely, net.h's lingering close: close() on a socket with
 * unread input sends a reset, and a reset can destroy the answer we just
 * sent before the client reads it. So: no more writing (FIN), then read
 * and drop whatever the client still sends until it closes too, for at
 * most NET_LINGER_MS and NET_LINGER_MAX_BYTES. */
static enum evconn_want conn_start_linger(struct evconn *c)
{
    if (!net_linger_begin(c->fd))
        return EVCONN_CLOSE;
    c->linger_since_ms = timer_now_ms();
    c->lingered = 0;
    return EVCONN_LINGER;
}

enum evconn_want evconn_on_lingering(struct evconn *c)
{
    return c->want = net_linger_drop(c->fd, &c->lingered) ? EVCONN_LINGER
                                                          : EVCONN_CLOSE;
}

/* n bytes of what the client still sends were dropped (0: it closed too;
 * < 0: it failed): net_linger_drop's verdict, for a loop that reads. */
static enum evconn_want conn_lingered(struct evconn *c, ssize_t n)
{
    if (n <= 0)
        return EVCONN_CLOSE;
    c->lingered += (size_t)n;
    return c->lingered < NET_LINGER_MAX_BYTES ? EVCONN_LINGER : EVCONN_CLOSE;
}

/* n bytes of the answer went (< 0: -errno). Where to go after the last
 * byte depends on what was written, so whoever queued it left the answer
 * in c (out_interim, close_after_write). */
static enum evconn_want conn_wrote(struct evconn *c, ssize_t n)
{
    c->out_fresh = false;
    if (n < 0) {
        log_info("%s left before its answer was written: %s", c->peer,
                 strerror((int)-n));
        return EVCONN_CLOSE;
    }
    c->out_sent += (size_t)n;
    c->write_since_ms = timer_now_ms(); /* progress: the timeout restarts */
    if (c->out_sent < c->out_len)
        return EVCONN_WRITE; /* a partial write: the rest later */
    free(c->out);
    c->out = NULL;
    TRACE(TRACE_REQ_END, NULL, c->fd);
    if (c->out_interim)
        return conn_next_request(c); /* "100 Continue" sent: now the body */
    if (c->close_after_write)
        return conn_start_linger(c);
    if (c->srv->stopping && http_parser_empty(&c->parser))
        return EVCONN_CLOSE; /* promised keep-alive before the stop: idle */
    /* Keep-alive: a new wait begins. A pipelined request already here gets
     * its head's clock from now, when the server turns to it: its bytes
     * waited for us, not we for them. */
    deadlines_start(&c->read, c->srv->cfg->idle_timeout_ms);
    return conn_next_request(c);
}

/* Send what fits. */
static enum evconn_want conn_write(struct evconn *c)
{
    ssize_t n = net_write_some(c->fd, c->out + c->out_sent,
                               c->out_len - c->out_sent);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->out_fresh = false;
        return EVCONN_WRITE;
    }
    return conn_wrote(c, n < 0 ? -errno : n);
}

/* An answer is written by the step that made it, not on the loop's next
 * turn: the socket's buffer almost always has room, so waiting to hear
 * "writable" would cost a turn and, in 05, two epoll_ctl per keep-alive
 * request (watch writable, then readable again). Only a write that does
 * not fit leaves EVCONN_WRITE for the loop to watch, as nginx and Redis
 * do. Pipelined answers chain here too, EVCONN_WRITE_BURST at most: the
 * rest wait a turn, so one client cannot keep the loop to itself. */
static enum evconn_want conn_flush(struct evconn *c, enum evconn_want want)
{
    if (c->srv->loop_does_io)
        return want; /* its loop_send writes at once (on epoll) instead */
    for (int i = 0; want == EVCONN_WRITE && c->out_fresh &&
                    i < EVCONN_WRITE_BURST; i++)
        want = conn_write(c);
    return want;
}

enum evconn_want evconn_on_writable(struct evconn *c)
{
    return c->want = conn_flush(c, conn_write(c));
}

/* ------------------------------------------------------------------ */
/* The steps of a loop that moves the bytes (05)                       */

enum evconn_want evconn_on_received(struct evconn *c, ssize_t n)
{
    if (c->want == EVCONN_LINGER)
        return c->want = conn_lingered(c, n);
    if (c->parser.buf == NULL && n > 0) {
        /* The wait without a buffer is over: bytes are there. Take room
         * for them, which the next evconn_recv_buffer gives (the loop reads
         * in this same turn). */
        size_t room;
        return c->want = recv_space(c, &room) ? EVCONN_READ : EVCONN_CLOSE;
    }
    return c->want = conn_got(c, n);
}

const char *evconn_send_data(const struct evconn *c, size_t *len)
{
    *len = c->out_len - c->out_sent;
    return c->out + c->out_sent;
}

enum evconn_want evconn_on_sent(struct evconn *c, ssize_t n)
{
    return c->want = conn_wrote(c, n);
}

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */

/* A head or a body did not arrive in time: log it and queue the 408. */
static enum evconn_want conn_too_slow(struct evconn *c, const char *what,
                                      const char *option, int ms)
{
    char detail[128];
    snprintf(detail, sizeof detail, "request %s not complete within %d ms",
             what, ms);
    log_info("%s: %s (%s); 408", c->peer, detail, option);
    struct endpoint_reply reply;
    endpoint_parse_error(408, detail, &reply);
    return conn_respond(c, &reply, false);
}

enum evconn_want evconn_on_timeout(struct evconn *c)
{
    const struct config *cfg = c->srv->cfg;
    switch (c->want) {
    case EVCONN_READ:
        if (c->parser.len == 0) {
            log_info("%s idle for %d ms; closing", c->peer,
                     cfg->idle_timeout_ms);
            break;
        }
        if (!c->parser.head_done)
            return c->want = conn_flush(
                       c, conn_too_slow(c, "head", "--header-timeout-ms",
                                        cfg->header_timeout_ms));
        return c->want = conn_flush(
                   c, conn_too_slow(c, "body", "--body-timeout-ms",
                                    cfg->body_timeout_ms));
    case EVCONN_WRITE:
        log_info("%s stopped reading its answer for %d ms; closing", c->peer,
                 cfg->idle_timeout_ms);
        break;
    case EVCONN_DURABLE:
        log_warn("%s: the outbox's flush did not come within %d ms; "
                 "closing (the job goes on)", c->peer, cfg->idle_timeout_ms);
        break;
    case EVCONN_BILL:
    case EVCONN_LINGER:
    case EVCONN_CLOSE:
        break;
    }
    return c->want = EVCONN_CLOSE;
}

/* ------------------------------------------------------------------ */
/* The task list (SIGQUIT, common/tasklist.h)                          */

/* What c waits for, since when, and what it says about it. */
static const char *conn_waits_for(const struct evconn *c, uint64_t now,
                                  uint64_t *since, char *what, size_t len)
{
    const struct config *cfg = c->srv->cfg;
    long left = (long)evconn_deadline(c) - (long)now;
    switch (c->want) {
    case EVCONN_READ:
        if (c->read.body) {
            *since = c->read.body - (uint64_t)cfg->body_timeout_ms;
            snprintf(what, len, "a body, 408 in %ld ms", left);
        } else if (c->read.head) {
            *since = c->read.head - (uint64_t)cfg->header_timeout_ms;
            snprintf(what, len, "a head, 408 in %ld ms", left);
        } else {
            *since = c->read.idle - (uint64_t)cfg->idle_timeout_ms;
            snprintf(what, len, "a request (idle), closed in %ld ms", left);
        }
        return "read";
    case EVCONN_BILL:
        *since = c->sync->since_ms;
        snprintf(what, len, "bill %zu of %zu, due in %ld ms",
                 c->sync->next + 1, c->sync->num_bills, left);
        return "bill";
    case EVCONN_WRITE:
        *since = c->write_since_ms;
        snprintf(what, len, "room to write its answer, closed in %ld ms",
                 left);
        return "write";
    case EVCONN_LINGER:
        *since = c->linger_since_ms;
        snprintf(what, len, "the client's close (lingering)");
        return "linger";
    case EVCONN_DURABLE:
        *since = c->durable_since_ms;
        snprintf(what, len, "the outbox's flush before its ok, closed in "
                 "%ld ms", left);
        return "durable";
    case EVCONN_CLOSE:
        break;
    }
    *since = now;
    snprintf(what, len, "nothing: closing");
    return "close";
}

static const char *job_waits_for(const struct evjob *job, uint64_t now,
                                 char *what, size_t len)
{
    char id[48]; /* the client's text: escaped, and cut */
    log_escape(id, sizeof id, job->req.request_id,
               strlen(job->req.request_id));
    if (job->bills_left > 0) {
        snprintf(what, len, "job %s: %zu of %zu bills", id, job->bills_left,
                 job->req.num_bills);
        return "bills";
    }
    if (job->in_transfer) {
        snprintf(what, len, "job %s: the callback PUT's answer", id);
        return "put";
    }
    snprintf(what, len, "job %s: retry in %ld ms", id,
             (long)job->retry_at_ms - (long)now);
    return "retry";
}

void evconn_server_list(const struct evconn_server *srv)
{
    uint64_t now = timer_now_ms();
    tasklist_line("tasks: %s pid %ld, %zu connections, %zu jobs", srv->stage,
                  (long)getpid(), srv->num_conns, srv->num_jobs);
    LIST_FOR_EACH(it, &srv->conns) {
        const struct evconn *c = LIST_ITEM(it, struct evconn, link);
        char what[128];
        uint64_t since;
        const char *state = conn_waits_for(c, now, &since, what, sizeof what);
        tasklist_line("  conn fd %-4d %-21s %-7s %6llu ms  %s", c->fd,
                      c->peer, state,
                      (unsigned long long)(now > since ? now - since : 0),
                      what);
    }
    LIST_FOR_EACH(it, &srv->jobs) {
        const struct evjob *job = LIST_ITEM(it, struct evjob, link);
        char what[160];
        const char *state = job_waits_for(job, now, what, sizeof what);
        tasklist_line("  job                               %-7s %6llu ms  %s",
                      state, (unsigned long long)(now - job->started_ms),
                      what);
    }
    tasklist_line("tasks: end");
}
