/* 01-blocking: one connection at a time.
 *
 * The model: accept a connection, read its request, handle it, write the
 * answer, close, and only then accept the next one. Every call blocks: read
 * waits for the client, nanosleep waits for the "external service", and the
 * callback PUT waits for the main service. While the server waits, nobody
 * else is served; new clients queue in the kernel's listen backlog.
 *
 * What it costs: nothing in memory (one connection, one stack), everything
 * in latency. Two clients that each need 4 s wait 4 s and 8 s.
 *
 * What to notice when running it: start two curl requests at once and watch
 * the log. The second "connection from" line appears only after the first
 * "closed" line. After an async request the log says the server is stalled:
 * it answered {"status":"ok"} at once, but computes the bills and PUTs the
 * result before it accepts anyone else.
 *
 * Simplifications, on purpose:
 * - Every response says "Connection: close". A kept-alive connection would
 *   hold the only worker while that client thinks, starving everyone else.
 * - A client that connects and sends nothing holds the server until the
 *   idle timeout (SO_RCVTIMEO): the model cannot do better. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "endpoint.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"

#define STAGE "01-blocking"

static struct config cfg;
static unsigned jitter_seed = 1;

/* Reads until one whole request is parsed. Returns HTTP_DONE, HTTP_ERROR
 * (p->error_status says which), or HTTP_NEED_MORE if the client went away
 * or stalled past the idle timeout. */
static enum http_parse_status read_request(int fd, struct http_parser *p)
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
        if (!space)
            return HTTP_NEED_MORE;
        ssize_t n = net_read_some(fd, space, avail); /* blocks right here */
        if (n == 0)
            return HTTP_NEED_MORE; /* the client closed */
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                log_info("client stalled past %d ms; dropping it",
                         cfg.idle_timeout_ms);
            return HTTP_NEED_MORE;
        }
        http_parser_commit(p, (size_t)n);
    }
}

static void send_reply(int fd, const struct endpoint_reply *reply)
{
    size_t len;
    char *text = endpoint_reply_render(reply, false, &len);
    if (text && net_write_all(fd, text, len) < 0)
        log_info("client left before the answer was written: %s",
                 strerror(errno));
    free(text);
}

/* The simulated external call, once per bill, one after another. The whole
 * process sleeps: this is what "blocking" means. */
static void compute_bills(const struct exchange_request *job, double *subtotals)
{
    for (size_t i = 0; i < job->num_bills; i++) {
        timer_nanosleep_ms(config_bill_delay_ms(&cfg, &jitter_seed));
        subtotals[i] = exchange_subtotal(&job->bills[i], job->exchange_rate);
        endpoint_log_bill(job, i, subtotals[i]);
    }
}

/* The async route's second half, after the client already has its answer
 * and its connection is closed. Nothing else runs until it returns. */
static void finish_async_job(const struct exchange_request *job)
{
    double started = log_elapsed();
    log_info("server stalled: computing job %s (%zu bills) and sending its "
             "callback; no new connection is accepted until this is done",
             job->request_id, job->num_bills);
    double subtotals[EXCHANGE_MAX_BILLS];
    compute_bills(job, subtotals);
    char *body = exchange_callback_body(cfg.token, job, subtotals);
    struct callback *cb = body ? callback_new(cfg.main_service, body,
                                              job->request_id) : NULL;
    if (cb)
        callback_send_blocking(cb);
    else
        log_warn("callback %s: out of memory", job->request_id);
    callback_free(cb);
    log_info("stall over after %.3f s; accepting again",
             log_elapsed() - started);
}

static void serve_connection(int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_info("connection from %s", peer);
    net_set_timeouts(fd, cfg.idle_timeout_ms);

    struct http_parser parser;
    http_parser_init(&parser);
    struct exchange_request *job = malloc(sizeof *job);
    struct endpoint_reply reply = {0};
    bool async_job = false;

    enum http_parse_status st = read_request(fd, &parser);
    if (st == HTTP_ERROR) {
        log_info("bad request from %s: %d %s", peer, parser.error_status,
                 parser.error_detail);
        endpoint_parse_error(parser.error_status, parser.error_detail, &reply);
        send_reply(fd, &reply);
    } else if (st == HTTP_DONE && !job) {
        endpoint_busy("out of memory", &reply);
        send_reply(fd, &reply);
    } else if (st == HTTP_DONE) {
        log_info("%s %s", parser.req.method, parser.req.path);
        switch (endpoint_route(&parser.req, STAGE, job, &reply)) {
        case ENDPOINT_REPLY:
            send_reply(fd, &reply);
            break;
        case ENDPOINT_SYNC: {
            double subtotals[EXCHANGE_MAX_BILLS];
            compute_bills(job, subtotals);
            endpoint_sync_done(job, subtotals, &reply);
            send_reply(fd, &reply);
            break;
        }
        case ENDPOINT_ASYNC:
            send_reply(fd, &reply); /* {"status":"ok"} right away */
            async_job = true;
            break;
        }
    }
    /* Close before the async work, so the client is not kept waiting. */
    close(fd);
    log_info("closed %s", peer);
    if (async_job)
        finish_async_job(job);
    endpoint_reply_free(&reply);
    http_parser_free(&parser);
    free(job);
}

int main(int argc, char **argv)
{
    config_parse(&cfg, argc, argv, STAGE, 8001, 0,
                 "Stage 01: a blocking server that serves one connection "
                 "at a time.");
    log_init(STAGE, cfg.quiet);
    net_ignore_sigpipe();
    if (shutdown_init() < 0) {
        perror("shutdown_init");
        return 1;
    }
    callback_global_init();
    int port;
    int lfd = net_listen(cfg.host, cfg.port, &port);
    if (lfd < 0)
        return 1;
    /* Non-blocking only so that a client who gives up between poll and
     * accept cannot block us in accept; every client socket blocks. */
    net_set_nonblocking(lfd);
    config_log(&cfg);
    net_announce(cfg.host, port);

    while (shutdown_wait_accept(lfd)) {
        int fd = net_accept(lfd, false);
        if (fd >= 0) {
            serve_connection(fd);
        } else if (errno == EMFILE || errno == ENFILE) {
            log_warn("accept: %s; pausing 100 ms", strerror(errno));
            timer_nanosleep_ms(100);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            log_warn("accept: %s", strerror(errno));
        }
    }
    /* Whatever was in flight finished inside serve_connection. */
    log_info("stop requested; exiting");
    close(lfd);
    callback_global_cleanup();
    return 0;
}
