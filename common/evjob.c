/* evjob: see evjob.h. An async job's steps, in the order a job meets
 * them: bills, the PUT, its end. */
#include "evjob.h"

#include <string.h>

#include "endpoint.h"
#include "log.h"
#include "outbox.h"
#include "timer.h"
#include "trace.h"

void evjob_init(struct evjob *job, struct evconn_server *srv,
                const struct exchange_request *req)
{
    memset(job, 0, sizeof *job);
    job->srv = srv;
    job->req = *req;
    job->bills_left = req->num_bills;
    job->started_ms = timer_now_ms();
    list_push_front(&srv->jobs, &job->link);
    srv->num_jobs++;
    for (size_t i = 0; i < req->num_bills; i++) TRACE(TRACE_BILL_BEGIN, &job->req, i);
    log_info("job %s: %zu bills waiting side by side", req->request_id,
             req->num_bills);
}

/* The job is over (delivered, given up, or its result dropped: all
 * logged): its end goes to the outbox, so it is not replayed. */
static enum evjob_want evjob_over(struct evjob *job)
{
    job->over = true;
    outbox_add_end(job->req.request_id);
    return EVJOB_DONE;
}

enum evjob_want evjob_on_bill_due(struct evjob *job, size_t i)
{
    job->subtotals[i] = exchange_subtotal(&job->req.bills[i],
                                          job->req.exchange_rate);
    endpoint_log_bill(&job->req, i, job->subtotals[i]);
    TRACE(TRACE_BILL_END, &job->req, i);
    jobcap_bills_done(&job->srv->budget, &job->req, 1);
    if (--job->bills_left > 0)
        return EVJOB_BILLS;
    const struct config *cfg = job->srv->cfg;
    char *body = exchange_callback_body(cfg->token, &job->req, job->subtotals);
    job->cb = callback_new(cfg->main_service, body, job->req.request_id,
                           cfg->callback_deadline_ms);
    if (job->cb == NULL) {
        log_warn("callback %s: out of memory; result dropped",
                 job->req.request_id);
        return evjob_over(job);
    }
    job->cb->owner = job;
    return EVJOB_PUT;
}

bool evjob_put(struct evjob *job, CURLM *multi)
{
    log_info("callback %s: PUT, try %d", job->req.request_id,
             job->cb->tries + 1);
    TRACE(TRACE_CB_BEGIN, job->cb, 0);
    CURLMcode rc = curl_multi_add_handle(multi, job->cb->easy);
    if (rc != CURLM_OK) {
        log_warn("callback %s: %s; result dropped", job->req.request_id,
                 curl_multi_strerror(rc));
        evjob_over(job);
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
    case CALLBACK_FAILED: /* callback_after_attempt logged which */
        return evjob_over(job);
    case CALLBACK_RETRY:
        job->retry_at_ms = timer_now_ms() + (uint64_t)wait_ms;
        return EVJOB_RETRY;
    }
    return EVJOB_DONE;
}

void evjob_release(struct evjob *job, CURLM *multi)
{
    /* In a stop, jobcap_report named it already. */
    if (!job->over && !job->srv->stopping)
        log_warn("job %s dropped before its callback was delivered "
                 "(%zu bills still waiting)", job->req.request_id,
                 job->bills_left);
    jobcap_job_done(&job->srv->budget, &job->req); /* and its bills left */
    if (job->in_transfer)
        curl_multi_remove_handle(multi, job->cb->easy);
    job->in_transfer = false;
    callback_free(job->cb);
    job->cb = NULL;
    list_remove(&job->link);
    job->srv->num_jobs--;
}
