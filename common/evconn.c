/* evconn: see evconn.h. The steps of 04-select and 05-epoll-callbacks, in
 * the order a request meets them. Internal steps return what the
 * connection wants next and may chain into each other; the public ones
 * (evconn_on_*) record the final answer in c->want for the loop. */
#include "evconn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint.h"
#include "log.h"
#include "net.h"
#include "timer.h"

/* The sync route's job: bills waited one after another. */
struct evconn_sync {
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t next;              /* the bill being waited for */
    uint64_t due_ms;          /* when it is done */
    bool keep_alive;          /* the request asked for it */
};

/* endpoint_route's output: one thread, one request routed at a time, and
 * the route that needs the job copies it out before the next. */
static struct exchange_request scratch_job;

uint64_t evconn_bill_deadline(struct evconn_server *srv)
{
    int ms = config_bill_delay_ms(srv->cfg, &srv->jitter_seed);
    return timer_now_ms() + (uint64_t)ms;
}

void evconn_init(struct evconn *c, struct evconn_server *srv, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->srv = srv;
    c->want = EVCONN_READ;
    net_peer_name(fd, c->peer, sizeof c->peer);
    http_parser_init(&c->parser);
    c->wait_since_ms = timer_now_ms();
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->num_conns++;
    log_info("connection from %s (%zu open)", c->peer, srv->num_conns);
}

void evconn_release(struct evconn *c)
{
    struct evconn_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->num_conns--;
    close(c->fd);
    log_info("closed %s", c->peer);
    http_parser_free(&c->parser);
    free(c->out);
    free(c->sync);
    c->out = NULL;
    c->sync = NULL;
}

/* A deadline is reset when a read or write wait begins (or a write makes
 * progress), not on every byte of a request: a client that trickles a
 * request (slowloris) gets the idle timeout counted from its first byte,
 * however patiently it sends. */
uint64_t evconn_deadline(const struct evconn *c)
{
    uint64_t idle = (uint64_t)c->srv->cfg->idle_timeout_ms;
    switch (c->want) {
    case EVCONN_READ:
        return c->wait_since_ms + idle;
    case EVCONN_BILL:
        return c->sync->due_ms;
    case EVCONN_WRITE:
        return c->write_since_ms + idle;
    case EVCONN_DRAIN:
        return c->wait_since_ms + EVCONN_LINGER_MS;
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

/* Queues a whole response; the loop writes it when the socket is
 * writable. Takes over reply. */
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
    c->write_since_ms = timer_now_ms();
    return EVCONN_WRITE;
}

/* ------------------------------------------------------------------ */
/* The sync route: one bill after another                              */

/* The wait for bill number sync->next: a deadline, not a sleep. The
 * thread goes straight back to the loop. */
static enum evconn_want conn_wait_bill(struct evconn *c)
{
    c->sync->due_ms = evconn_bill_deadline(c->srv);
    return EVCONN_BILL;
}

static enum evconn_want conn_start_bills(struct evconn *c, bool keep_alive)
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

enum evconn_want evconn_on_bill_due(struct evconn *c)
{
    struct evconn_sync *s = c->sync;
    size_t i = s->next;
    s->subtotals[i] = exchange_subtotal(&s->req.bills[i],
                                        s->req.exchange_rate);
    endpoint_log_bill(&s->req, i, s->subtotals[i]);
    if (++s->next < s->req.num_bills)
        return c->want = conn_wait_bill(c);
    struct endpoint_reply reply;
    endpoint_sync_done(&s->req, s->subtotals, &reply);
    return c->want = conn_respond(c, &reply,
                                  s->keep_alive && !c->srv->stopping);
}

/* ------------------------------------------------------------------ */
/* Reading and routing requests                                        */

/* A whole request has been parsed: route it. */
static enum evconn_want conn_handle_request(struct evconn *c)
{
    const struct http_request *req = &c->parser.req;
    log_info("%s %s from %s", req->method, req->path, c->peer);
    bool keep_alive = req->keep_alive && !c->srv->stopping;
    struct endpoint_reply reply;
    enum endpoint_route route = endpoint_route(req, c->srv->stage,
                                               &scratch_job, &reply);
    /* req is gone after this; bytes of a pipelined next request stay in
     * the parser until this answer is written. */
    http_parser_consume(&c->parser);
    switch (route) {
    case ENDPOINT_REPLY:
        break;
    case ENDPOINT_SYNC:
        return conn_start_bills(c, keep_alive);
    case ENDPOINT_ASYNC:
        if (!c->srv->start_job(&scratch_job)) {
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
static enum evconn_want conn_next_request(struct evconn *c)
{
    struct endpoint_reply reply;
    switch (http_parser_parse(&c->parser)) {
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

/* One read, straight into the parser's buffer, then parse. */
static enum evconn_want conn_read(struct evconn *c)
{
    size_t avail;
    char *space = http_parser_space(&c->parser, &avail);
    if (space == NULL || avail == 0) {
        /* A full buffer always holds a whole request or an error, and it
         * was parsed before we came back to reading: only ENOMEM is left. */
        log_warn("no room to read from %s; closing", c->peer);
        return EVCONN_CLOSE;
    }
    bool first_bytes = http_parser_empty(&c->parser);
    ssize_t n = net_read_some(c->fd, space, avail);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return EVCONN_READ; /* nothing after all: wait again */
    if (n < 0) {
        log_info("%s: read: %s", c->peer, strerror(errno));
        return EVCONN_CLOSE;
    }
    if (n == 0) {
        if (!first_bytes)
            log_info("%s hung up in the middle of a request", c->peer);
        return EVCONN_CLOSE;
    }
    http_parser_commit(&c->parser, (size_t)n);
    if (first_bytes) /* the request's own clock starts now */
        c->wait_since_ms = timer_now_ms();
    return conn_next_request(c);
}

enum evconn_want evconn_on_readable(struct evconn *c)
{
    return c->want = conn_read(c);
}

/* ------------------------------------------------------------------ */
/* Writing, and closing politely                                       */

/* Closing politely: close() on a socket with unread input sends a reset,
 * and a reset can destroy the answer we just sent before the client reads
 * it. So: no more writing (FIN), then read and drop whatever the client
 * still sends until it closes too, for at most EVCONN_LINGER_MS. */
static enum evconn_want conn_start_drain(struct evconn *c)
{
    if (shutdown(c->fd, SHUT_WR) < 0)
        return EVCONN_CLOSE;
    c->wait_since_ms = timer_now_ms();
    c->drained = 0;
    return EVCONN_DRAIN;
}

enum evconn_want evconn_on_draining(struct evconn *c)
{
    char sink[4096];
    ssize_t n = net_read_some(c->fd, sink, sizeof sink);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return c->want = EVCONN_DRAIN;
    if (n <= 0)
        return c->want = EVCONN_CLOSE; /* the client closed too (or failed) */
    c->drained += (size_t)n;
    return c->want = c->drained > EVCONN_LINGER_MAX_BYTES ? EVCONN_CLOSE
                                                          : EVCONN_DRAIN;
}

/* Send what fits. Where to go after the last byte depends on what was
 * written, so whoever queued it left the answer in c (out_interim,
 * close_after_write). */
static enum evconn_want conn_write(struct evconn *c)
{
    ssize_t n = net_write_some(c->fd, c->out + c->out_sent,
                               c->out_len - c->out_sent);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return EVCONN_WRITE;
    if (n < 0) {
        log_info("%s left before its answer was written: %s", c->peer,
                 strerror(errno));
        return EVCONN_CLOSE;
    }
    c->out_sent += (size_t)n;
    c->write_since_ms = timer_now_ms(); /* progress: the timeout restarts */
    if (c->out_sent < c->out_len)
        return EVCONN_WRITE; /* a partial write: the rest later */
    free(c->out);
    c->out = NULL;
    if (c->out_interim)
        return conn_next_request(c); /* "100 Continue" sent: now the body */
    if (c->close_after_write)
        return conn_start_drain(c);
    if (c->srv->stopping && http_parser_empty(&c->parser))
        return EVCONN_CLOSE; /* promised keep-alive before the stop: idle */
    c->wait_since_ms = timer_now_ms(); /* keep-alive: a new wait begins */
    return conn_next_request(c);
}

enum evconn_want evconn_on_writable(struct evconn *c)
{
    return c->want = conn_write(c);
}

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */

enum evconn_want evconn_on_timeout(struct evconn *c)
{
    int ms = c->srv->cfg->idle_timeout_ms;
    switch (c->want) {
    case EVCONN_READ:
        if (http_parser_empty(&c->parser))
            log_info("%s idle for %d ms; closing", c->peer, ms);
        else
            log_info("%s sent no whole request in %d ms; closing", c->peer,
                     ms);
        break;
    case EVCONN_WRITE:
        log_info("%s stopped reading its answer for %d ms; closing", c->peer,
                 ms);
        break;
    case EVCONN_BILL:
    case EVCONN_DRAIN:
    case EVCONN_CLOSE:
        break;
    }
    return c->want = EVCONN_CLOSE;
}

/* ------------------------------------------------------------------ */
/* Async jobs                                                          */

void evjob_init(struct evjob *job, struct evconn_server *srv,
                const struct exchange_request *req)
{
    memset(job, 0, sizeof *job);
    job->srv = srv;
    job->req = *req;
    job->bills_left = req->num_bills;
    job->next = srv->jobs;
    if (srv->jobs)
        srv->jobs->prev = job;
    srv->jobs = job;
    srv->num_jobs++;
}

enum evjob_want evjob_on_bill_due(struct evjob *job, size_t i)
{
    job->subtotals[i] = exchange_subtotal(&job->req.bills[i],
                                          job->req.exchange_rate);
    endpoint_log_bill(&job->req, i, job->subtotals[i]);
    if (--job->bills_left > 0)
        return EVJOB_BILLS;
    const struct config *cfg = job->srv->cfg;
    char *body = exchange_callback_body(cfg->token, &job->req, job->subtotals);
    job->cb = callback_new(cfg->main_service, body, job->req.request_id,
                           cfg->callback_deadline_ms);
    if (job->cb == NULL) {
        log_warn("callback %s: out of memory; result dropped",
                 job->req.request_id);
        return EVJOB_DONE;
    }
    job->cb->owner = job;
    return EVJOB_PUT;
}

bool evjob_put(struct evjob *job, CURLM *multi)
{
    log_info("callback %s: PUT, try %d", job->req.request_id,
             job->cb->tries + 1);
    CURLMcode rc = curl_multi_add_handle(multi, job->cb->easy);
    if (rc != CURLM_OK) {
        log_warn("callback %s: %s; result dropped", job->req.request_id,
                 curl_multi_strerror(rc));
        return false;
    }
    job->in_transfer = true;
    return true;
}

struct evjob *evjob_next_finished(CURLM *multi, CURLcode *result)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg dies with curl_multi_remove_handle: read it first. */
        CURL *easy = msg->easy_handle;
        *result = msg->data.result;
        struct callback *cb = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&cb);
        curl_multi_remove_handle(multi, easy);
        if (cb == NULL)
            continue; /* not one of ours: cannot happen */
        struct evjob *job = cb->owner;
        job->in_transfer = false;
        return job;
    }
    return NULL;
}

enum evjob_want evjob_on_put_done(struct evjob *job, CURLcode result)
{
    long wait_ms = 0;
    switch (callback_after_attempt(job->cb, result, &wait_ms)) {
    case CALLBACK_DELIVERED:
    case CALLBACK_FAILED:
        return EVJOB_DONE;
    case CALLBACK_RETRY:
        job->retry_at_ms = timer_now_ms() + (uint64_t)wait_ms;
        return EVJOB_RETRY;
    }
    return EVJOB_DONE;
}

void evjob_release(struct evjob *job, CURLM *multi)
{
    if (job->in_transfer)
        curl_multi_remove_handle(multi, job->cb->easy);
    job->in_transfer = false;
    callback_free(job->cb);
    job->cb = NULL;
    struct evconn_server *srv = job->srv;
    if (job->prev)
        job->prev->next = job->next;
    else
        srv->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    srv->num_jobs--;
}
