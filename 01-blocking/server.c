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
 *   idle timeout (--idle-timeout-ms); one that trickles its request holds
 *   it until the header and body deadlines (--header-timeout-ms,
 *   --body-timeout-ms), which never move, and then gets 408. The model
 *   cannot do better than bound the stall. Only a stop request ends the
 *   idle wait early.
 *
 * Reading a request, writing an answer, listening and the callback PUT are
 * the same in 02 and 03, so they live in common/conn_io; what is left here
 * is the model, and a comment marks each call that blocks. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "conn_io.h"
#include "endpoint.h"
#include "http.h"
#include "jobcap.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"
#include "trace.h"

#define STAGE "01-blocking"

static struct config cfg;
static unsigned jitter_seed = 1;
/* The async budget (jobcap.h). 01 runs one job at a time, after its
 * client is gone, so --max-jobs never binds here; --max-bills does (a job
 * larger than the budget is refused), and the check before the ok is the
 * same in every stage. */
static struct jobcap jobcap;

/* The simulated external call, once per bill, one after another. The whole
 * process sleeps: this is what "blocking" means. With a budget (an async
 * job) each bill is given back to it as soon as it is done. */
static void compute_bills(const struct exchange_request *job, double *subtotals,
                          struct jobcap *budget)
{
    for (size_t i = 0; i < job->num_bills; i++) {
        /* Blocks here until the delay has passed. */
        TRACE(TRACE_BILL_BEGIN, job, i);
        timer_nanosleep_ms(config_bill_delay_ms(&cfg, &jitter_seed));
        subtotals[i] = exchange_subtotal(&job->bills[i], job->exchange_rate);
        endpoint_log_bill(job, i, subtotals[i]);
        TRACE(TRACE_BILL_END, job, i);
        if (budget)
            jobcap_bills_done(budget, 1);
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
    compute_bills(job, subtotals, &jobcap);
    /* Blocks here until the main service answers (retries included, up to
     * --callback-deadline-ms). */
    conn_io_send_callback(&cfg, job, subtotals);
    jobcap_job_done(&jobcap);
    log_info("stall over after %.3f s; accepting again",
             log_elapsed() - started);
}

/* What the connection leaves behind: the async job, if any, to do once
 * the client is gone. */
struct one_request {
    struct exchange_request job;
    bool async_job;
};

/* Answers the connection's one request (a conn_io_handler). Always the
 * last answer: "Connection: close", see the header. */
static bool handle_request(int fd, const struct http_request *req, void *arg)
{
    struct one_request *one = arg;
    struct endpoint_reply reply;
    switch (endpoint_route(req, STAGE, &one->job, &reply)) {
    case ENDPOINT_REPLY:
        break;
    case ENDPOINT_SYNC: {
        double subtotals[EXCHANGE_MAX_BILLS];
        compute_bills(&one->job, subtotals, NULL);
        endpoint_sync_done(&one->job, subtotals, &reply);
        break;
    }
    case ENDPOINT_ASYNC:
        /* {"status":"ok"} right away and the job later, if the budget has
         * room: checked before the ok, which is a promise. Else a 503. */
        one->async_job = endpoint_admit_job(&jobcap, &one->job, &reply);
        break;
    }
    /* Blocks here until the kernel has taken the whole answer. */
    return conn_io_answer(fd, req, &reply, true);
}

static void serve_connection(int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_info("connection from %s", peer);

    /* Blocks here until the whole request has arrived (or missed one of its
     * deadlines, or the client left), then while it is handled and its
     * answer written. A bad or late request gets its 4xx and a lingering
     * close, so the client reads the answer instead of a reset. */
    struct one_request one = {.async_job = false};
    struct conn_io_limits limits = conn_io_limits_of(&cfg);
    conn_io_serve(fd, &limits, handle_request, &one);
    /* Close before the async work, so the client is not kept waiting. */
    close(fd);
    log_info("closed %s", peer);
    if (one.async_job)
        finish_async_job(&one.job);
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
    jobcap_init(&jobcap, cfg.max_jobs, cfg.max_bills);
    int lfd = net_listen_announce(&cfg); /* then "listening on ..." on stdout */
    if (lfd < 0)
        return 1;

    /* The whole model: take one client, serve it to the end, close it, and
     * only then take the next. shutdown_wait_accept blocks here until a
     * client connects or a stop is asked. */
    while (shutdown_wait_accept(lfd)) {
        int fd = conn_io_accept(lfd);
        if (fd >= 0)
            serve_connection(fd);
    }
    /* Whatever was in flight finished inside serve_connection. */
    log_info("stop requested; exiting");
    close(lfd);
    callback_global_cleanup();
    return 0;
}
