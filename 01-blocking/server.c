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
 * Stopping (SIGINT/SIGTERM): the accept loop ends; whatever the one
 * thread is doing (a request, a job's bills, its callback's retries) goes
 * on for at most --drain-ms, because every one of those waits also
 * watches the stop (shutdown.h). Then, or at a second signal, it is cut,
 * and the log names each job whose callback was not delivered.
 *
 * Reading, routing and answering a request, waiting its bills, and the
 * callback PUT are the same in 02 and 03, so they live in common/conn_io;
 * what is left here is the model, and a comment marks each call that
 * blocks. */
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
#include "outbox.h"
#include "shutdown.h"
#include "stage.h"

#define STAGE "01-blocking"

static struct config cfg;
static unsigned jitter_seed = 1;
/* The async budget (jobcap.h). 01 runs one job at a time, after its
 * client is gone, so --max-jobs never binds here; --max-bills does (a job
 * larger than the budget is refused), and the check before the ok is the
 * same in every stage. */
static struct jobcap jobcap;

/* The async route's second half, after the client already has its answer
 * and its connection is closed. Nothing else runs until it returns. */
static void finish_async_job(struct exchange_request *job)
{
    double started = log_elapsed();
    log_info("server stalled: computing job %s (%zu bills) and sending its "
             "callback; no new connection is accepted until this is done",
             job->request_id, job->num_bills);
    /* Blocks here through every bill, one after another: the whole
     * process sleeps, which is what "blocking" means. Each bill goes back
     * to the budget as soon as it is done. Then blocks until the main
     * service answers (retries included, up to --callback-deadline-ms). */
    if (conn_io_run_job(&cfg, &jobcap, job, &jitter_seed))
        log_info("stall over after %.3f s; accepting again",
                 log_elapsed() - started);
}

/* How every request is answered (conn_io_serve_blocking): routed, a sync
 * request's bills waited right there (the whole process sleeps), an async
 * request's ok given only if the budget has room (checked before the ok,
 * which is a promise; else a 503). Every answer is the last one:
 * "Connection: close", see the header. */
static const struct conn_io_stage serving = {
    .cfg = &cfg, .stage = STAGE, .cap = &jobcap, .seed = &jitter_seed,
    .one_request = true};

static void serve_connection(int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_info("connection from %s", peer);

    /* Blocks here until the whole request has arrived (or missed one of its
     * deadlines, or the client left), then while it is handled and its
     * answer written, then closes. A bad or late request gets its 4xx and
     * a lingering close, so the client reads the answer instead of a
     * reset. What is left is the async job, if the answer promised one. */
    struct exchange_request job;
    if (conn_io_serve_blocking(&serving, fd, peer, &job))
        finish_async_job(&job);
}

/* At start, the jobs of the outbox that never ended (outbox.h), one
 * after another like any job here, before the first accept: clients wait
 * in the backlog meanwhile. A stop ends the replay; the jobs not replayed
 * stay in the outbox. */
static void replay_outbox(void)
{
    struct exchange_request job;
    size_t i = 0, n = outbox_replay_count();
    for (; i < n && !shutdown_requested(); i++)
        if (endpoint_admit_replay(&jobcap, i, &job))
            finish_async_job(&job);
    if (i < n)
        log_warn("stop: %zu job%s of the outbox not replayed; %s", n - i,
                 n - i == 1 ? "" : "s", outbox_fate());
    outbox_replay_done();
}

int main(int argc, char **argv)
{
    if (stage_begin(&cfg, argc, argv, STAGE, 8001, 0,
                    "Stage 01: a blocking server that serves one connection "
                    "at a time.") < 0)
        return 1;
    if (jobcap_init(&jobcap, cfg.max_jobs, cfg.max_bills) < 0) {
        perror("jobcap");
        return 1;
    }
    int lfd = net_listen_announce(&cfg); /* then "listening on ..." on stdout */
    if (lfd < 0)
        return 1;
    log_info("clients: one at a time; the others wait in the kernel's "
             "listen queue, unserved");
    replay_outbox();

    /* The whole model: take one client, serve it to the end, close it, and
     * only then take the next. shutdown_wait_accept blocks here until a
     * client connects or a stop is asked. */
    while (shutdown_wait_accept(lfd)) {
        int fd = conn_io_accept(lfd);
        if (fd >= 0)
            serve_connection(fd);
    }
    /* Whatever was in flight finished inside serve_connection, or was cut
     * when the drain ended: the report names what was not delivered. */
    log_info("stop requested; exiting");
    close(lfd);
    jobcap_report(&jobcap, outbox_fate());
    jobcap_free(&jobcap);
    callback_global_cleanup();
    return 0;
}
