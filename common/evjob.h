/* evjob: the steps of an async job (POST /api/exchange_async) in the
 * event-driven stages, 04-select and 05-epoll-callbacks.
 *
 * A connection's steps are in evconn; a job's are here, because a job
 * outlives the connection that asked for it (the client has its
 * {"status":"ok"} long before the callback is sent). Like a connection, a
 * job is a state machine whose steps never wait: each returns what the job
 * wants next, and the stage's job_apply does it with its own loop:
 *
 *   want          the stage must                 then
 *   EVJOB_BILLS   nothing: the other bills'      evjob_on_bill_due for
 *                 deadlines are armed already    each as it passes
 *   EVJOB_PUT     evjob_put: hand the PUT to     evjob_next_finished, then
 *                 its curl multi handle          evjob_on_put_done
 *   EVJOB_RETRY   wait until job->retry_at_ms    EVJOB_PUT again
 *   EVJOB_DONE    evjob_release, free the job    -
 *
 * A job waits for its bills side by side (one deadline per bill, each from
 * evconn_bill_deadline), then PUTs the result through a curl multi handle,
 * retrying after a backoff that common/callback decides. The steps here
 * compute, decide and log; the stage arms the timers and drives curl its
 * own way (curl_multi_fdset in 04, the multi socket API in 05), because
 * that is the lesson of each.
 *
 * A job's {"status":"ok"} was a promise, kept in two ways. Before it, the
 * job and its bills were reserved in srv->budget (evconn, jobcap.h); a job
 * gives its bills back as they are done and itself back when it is over.
 * And every job ends in exactly one log line that says how: delivered,
 * given up by the retry policy (common/callback), dropped (out of
 * memory), or, still pending when a stop's drain ran out, named by the
 * stop's report (jobcap_report) before the loop frees it. A job that is
 * over appends its end to the outbox (outbox.h); one the stop abandons
 * does not, so the next start replays it.
 *
 * One thread drives every job: nothing here is thread-safe. */
#ifndef COMMON_EVJOB_H
#define COMMON_EVJOB_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "callback.h"
#include "evconn.h"
#include "exchange.h"
#include "list.h"

/* What a job waits for next (see the table); the stage's job_apply does
 * it. */
enum evjob_want {
    EVJOB_BILLS, /* more bills to come: their deadlines are armed already */
    EVJOB_PUT,   /* add job->cb->easy to the multi handle now (evjob_put) */
    EVJOB_RETRY, /* wait until job->retry_at_ms, then EVJOB_PUT again */
    EVJOB_DONE,  /* delivered, given up, or out of memory: free the job */
};

struct evjob {
    struct evconn_server *srv;
    struct exchange_request req;
    double subtotals[EXCHANGE_MAX_BILLS];
    size_t bills_left;
    struct callback *cb;      /* once every bill is in; cb->owner = the job */
    bool in_transfer;         /* cb->easy is in the multi handle */
    uint64_t retry_at_ms;     /* after EVJOB_RETRY */
    bool over;                /* its end is logged (and written to the
                                 outbox): delivered, given up, dropped */
    uint64_t started_ms;      /* for the task list (evconn_server_list) */
    struct list link;         /* in srv->jobs */
};

/* Sets job up for req (copied), adds it to srv->jobs, takes over the
 * reservation evconn made for req in srv->budget, and logs it. Cannot
 * fail: the stage arms one deadline per bill first, each at
 * evconn_bill_deadline(srv), so they run out side by side. */
void evjob_init(struct evjob *job, struct evconn_server *srv,
                const struct exchange_request *req);

/* Bill i's deadline passed: compute and log it. EVJOB_BILLS while others
 * wait; after the last, the callback is built: EVJOB_PUT (or EVJOB_DONE if
 * out of memory, logged). */
enum evjob_want evjob_on_bill_due(struct evjob *job, size_t i);

/* Logs the try and adds job->cb->easy to multi; nothing is sent yet, the
 * loop drives curl. False if curl refused (logged: the result is dropped). */
bool evjob_put(struct evjob *job, CURLM *multi);

/* The next finished transfer of multi, removed from it, with its curl
 * result in *result; NULL when none is left. Call after driving curl. */
struct evjob *evjob_next_finished(CURLM *multi, CURLcode *result);

/* One try ended with result: common/callback judges and logs it.
 * EVJOB_RETRY (job->retry_at_ms is set) or EVJOB_DONE. */
enum evjob_want evjob_on_put_done(struct evjob *job, CURLcode result);

/* Takes job's transfer out of multi if it is in, job out of srv->jobs,
 * gives its reservation back to srv->budget, logs "dropped" if its end
 * was not logged yet (outside a stop, whose report names it), and frees
 * its callback (not job itself). The stage cancels its timers. */
void evjob_release(struct evjob *job, CURLM *multi);

#endif
