/* endpoint: the routes of docs/DESIGN.md, decided once for every stage.
 * Given a parsed request it says which route it is and prepares everything
 * that does not wait: GET /, 404, 405 and 400 are answered here; the two
 * exchange routes come back as a validated job for the stage to wait on
 * its own way.
 *
 * A stage's handler is therefore:
 *     switch (endpoint_route(&req, stage, &job, &reply)) {
 *     case ENDPOINT_REPLY: send reply;                         break;
 *     case ENDPOINT_SYNC:  wait each bill; send sync response; break;
 *     case ENDPOINT_ASYNC: send reply ({"status":"ok"}); wait bills; PUT;
 *     } */
#ifndef COMMON_ENDPOINT_H
#define COMMON_ENDPOINT_H

#include <stdbool.h>

#include "exchange.h"
#include "http.h"
#include "jobcap.h"
#include "outbox.h"

enum endpoint_route { ENDPOINT_REPLY, ENDPOINT_SYNC, ENDPOINT_ASYNC };

struct endpoint_reply {
    int status;
    char *body;      /* malloc'd JSON; endpoint_reply_free releases it */
    int retry_after_s; /* > 0: a "Retry-After" header (503s say when to
                          come back) */
};

/* Routes req. REPLY: *reply is the whole answer. SYNC: *job is filled.
 * ASYNC: *job is filled and *reply is the immediate 200 {"status":"ok"}.
 * On ENOMEM the reply is a 500. */
enum endpoint_route endpoint_route(const struct http_request *req,
                                   const char *stage,
                                   struct exchange_request *job,
                                   struct endpoint_reply *reply);

/* The reply for a request the parser rejected (p->error_status/detail). */
void endpoint_parse_error(int status, const char *detail,
                          struct endpoint_reply *reply);

/* The sync route's 200 once every subtotal is known. */
void endpoint_sync_done(const struct exchange_request *job,
                        const double *subtotals,
                        struct endpoint_reply *reply);

/* A 503 {"detail":"server busy: ..."} with "Retry-After: 1", for a server
 * at its limit. */
void endpoint_busy(const char *why, struct endpoint_reply *reply);

/* For ENDPOINT_ASYNC, before the ok is sent: reserves job's place in cap
 * (jobcap_take, which sets job->slot). True if the job may start;
 * otherwise *reply (the ok) is replaced by the 503 that names the cap, and
 * the stage must not start the job. The stage returns the reservation with
 * jobcap_bills_done and jobcap_job_done as the job progresses. */
bool endpoint_admit_job(struct jobcap *cap, struct exchange_request *job,
                        struct endpoint_reply *reply);

/* At start, the i-th job of the outbox's replay list (outbox.h), admitted
 * as a new job would be (jobcap_take): true with *job filled, logged as
 * replayed. False, logged, if it cannot be read back or cap has no room
 * for it: it stays in the outbox for the next start. Its ok was given by
 * the server's previous life; the stage now runs it like any job. */
bool endpoint_admit_replay(struct jobcap *cap, size_t i,
                           struct exchange_request *job);

/* The async route's ok, replacing *reply, saying how durable the job is
 * (outbox.h): {"status":"ok"} when it lives in memory only (the answer
 * every client of this endpoint knows), {"status":"ok","durable":
 * "written"} once its record is written to the outbox, {"status":"ok",
 * "durable":"synced"} once it is also on disk. */
void endpoint_async_ok(struct endpoint_reply *reply, enum outbox_level level);

/* Formats reply as a full HTTP response (http_response_build). */
char *endpoint_reply_render(const struct endpoint_reply *reply,
                            bool keep_alive, size_t *out_len);

void endpoint_reply_free(struct endpoint_reply *reply);

/* Logs one computed bill the way the lecture prints it:
 * "bill 1: 3775.00 RUB (request sync_test)". */
void endpoint_log_bill(const struct exchange_request *job, size_t i,
                       double subtotal);

#endif
