/* endpoint: the routes of docs/DESIGN.md, once for every stage. See
 * endpoint.h.
 *
 * Every reply body is malloc'd, so endpoint_reply_free has one rule. When
 * even that allocation fails the body stays NULL and the status 500:
 * endpoint_reply_render then sends a fixed text that needs no memory of its
 * own, and endpoint_reply_free has nothing to free. */
#include "endpoint.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INTERNAL_ERROR_BODY "{\"detail\":\"Internal Server Error\"}"

/* Takes over body; a NULL body (ENOMEM) turns the reply into a 500. */
static void reply_set(struct endpoint_reply *reply, int status, char *body)
{
    reply->status = body ? status : 500;
    reply->body = body;
    reply->retry_after_s = 0;
}

static void reply_detail(struct endpoint_reply *reply, int status,
                         const char *detail)
{
    reply_set(reply, status, exchange_error_body(detail));
}

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

/* POST /api/exchange_sync and /api/exchange_async: a validated job, or the
 * 400 that names the bad field. */
static bool parse_job(const struct http_request *req,
                      struct exchange_request *job,
                      struct endpoint_reply *reply)
{
    char err[160];
    if (exchange_parse_request(req->body, req->body_len, job, err,
                               sizeof err) == 0)
        return true;
    reply_detail(reply, 400, err);
    return false;
}

enum endpoint_route endpoint_route(const struct http_request *req,
                                   const char *stage,
                                   struct exchange_request *job,
                                   struct endpoint_reply *reply)
{
    reply->status = 0;
    reply->body = NULL;
    reply->retry_after_s = 0;
    const char *path = req->path ? req->path : "";
    bool is_sync = strcmp(path, "/api/exchange_sync") == 0;
    bool is_async = strcmp(path, "/api/exchange_async") == 0;

    if (strcmp(path, "/") == 0) {
        if (str_eq(req->method, "GET"))
            reply_set(reply, 200, exchange_json_object(
                          "message", "Exchange service is running",
                          "stage", stage ? stage : "", (char *)NULL));
        else
            reply_detail(reply, 405, "Method Not Allowed");
        return ENDPOINT_REPLY;
    }
    if (!is_sync && !is_async) {
        reply_detail(reply, 404, "Not Found");
        return ENDPOINT_REPLY;
    }
    if (!str_eq(req->method, "POST")) {
        reply_detail(reply, 405, "Method Not Allowed");
        return ENDPOINT_REPLY;
    }
    if (!parse_job(req, job, reply))
        return ENDPOINT_REPLY;
    if (is_sync)
        return ENDPOINT_SYNC;
    /* Acknowledge before any waiting, as the lecture's BackgroundTasks do.
     * If even the acknowledgement cannot be built, no job is started: the
     * client gets a 500 and knows nothing will be PUT. */
    reply_set(reply, 200, exchange_json_object("status", "ok", (char *)NULL));
    return reply->body ? ENDPOINT_ASYNC : ENDPOINT_REPLY;
}

void endpoint_parse_error(int status, const char *detail,
                          struct endpoint_reply *reply)
{
    reply_detail(reply, status, detail ? detail : "Bad Request");
}

void endpoint_sync_done(const struct exchange_request *job,
                        const double *subtotals,
                        struct endpoint_reply *reply)
{
    reply_set(reply, 200, exchange_sync_response(job, subtotals));
}

void endpoint_busy(const char *why, struct endpoint_reply *reply)
{
    char detail[256];
    snprintf(detail, sizeof detail, "server busy: %s", why ? why : "");
    reply_detail(reply, 503, detail);
    reply->retry_after_s = 1;
}

bool endpoint_admit_job(struct jobcap *cap, struct exchange_request *job,
                        struct endpoint_reply *reply)
{
    const char *why = NULL;
    if (jobcap_take(cap, job, &why))
        return true;
    log_warn("request %s refused: %s (jobs %ld, bills %ld in flight)",
             job->request_id, why, jobcap_jobs(cap), jobcap_bills(cap));
    endpoint_reply_free(reply);
    endpoint_busy(why, reply);
    return false;
}

bool endpoint_admit_replay(struct jobcap *cap, size_t i,
                           struct exchange_request *job)
{
    const char *why = "it cannot be read back";
    if (outbox_replay_job(i, job) && jobcap_take(cap, job, &why)) {
        log_info("job %s: replayed from the outbox", job->request_id);
        return true;
    }
    log_warn("outbox: job %zu not replayed: %s; it stays in the outbox for "
             "the next start", i + 1, why);
    return false;
}

void endpoint_async_ok(struct endpoint_reply *reply, enum outbox_level level)
{
    const char *durable = outbox_level_name(level);
    endpoint_reply_free(reply);
    reply_set(reply, 200, durable
        ? exchange_json_object("status", "ok", "durable", durable, (char *)NULL)
        : exchange_json_object("status", "ok", (char *)NULL));
}

char *endpoint_reply_render(const struct endpoint_reply *reply,
                            bool keep_alive, size_t *out_len)
{
    const char *body = reply->body ? reply->body : INTERNAL_ERROR_BODY;
    int status = reply->body ? reply->status : 500;
    char extra[48] = "";
    if (reply->body && reply->retry_after_s > 0)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n",
                 reply->retry_after_s);
    return http_response_build_with(status, extra, body, strlen(body),
                                    keep_alive, out_len);
}

void endpoint_reply_free(struct endpoint_reply *reply)
{
    if (reply == NULL)
        return;
    free(reply->body);
    reply->body = NULL;
}

void endpoint_log_bill(const struct exchange_request *job, size_t i,
                       double subtotal)
{
    if (i >= job->num_bills)
        return;
    log_info("bill %lld: %.2f RUB (request %s)",
             job->bills[i].denomination_id, subtotal, job->request_id);
}
