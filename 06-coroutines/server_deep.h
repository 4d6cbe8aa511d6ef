/* server_deep: the server's deep calls, run on the scheduler's own stack.
 *
 * Parsing JSON (cJSON) and formatting doubles (snprintf, for cents and for
 * the answer) touch several KiB of stack, and a coroutine's stack pages
 * stay memory once touched, until the coroutine ends. 10,000 connections
 * waiting for their bills would each keep those pages: 12 KiB a
 * connection instead of 4. So these calls go through
 * co_call_on_loop_stack (coro.h), and a connection's own stack only ever
 * holds its shallow frames. Each is the endpoint.h function of the same
 * name without the prefix; none of them waits. */
#ifndef SERVER_DEEP_H
#define SERVER_DEEP_H

#include <stdbool.h>
#include <stddef.h>

#include "endpoint.h"
#include "exchange.h"
#include "http.h"

enum endpoint_route deep_endpoint_route(const struct http_request *req,
                                        const char *stage,
                                        struct exchange_request *job,
                                        struct endpoint_reply *reply);

/* A sync request while its bills wait. A struct exchange_request has
 * room for EXCHANGE_MAX_BILLS bills, 2.5 KiB, and a one-bill request fills
 * its first 200 bytes: on a stack of its own the rest is never touched and
 * costs nothing, but with --stack shared a parked coroutine's frames are
 * copied out whole, touched or not (coro.h, "Stacks"). So a sync request
 * waits as this, in the heap and sized to its bills, and the calls below
 * unpack it on the loop's stack. */
struct sync_request {
    char request_id[EXCHANGE_MAX_ID_LEN + 1];
    double exchange_rate;
    size_t num_bills;
    struct exchange_bill bills[]; /* num_bills of them */
};

/* job's copy as a sync_request (malloc'd: free it), or NULL. */
struct sync_request *sync_request_new(const struct exchange_request *job);

/* The sync answer (endpoint_sync_done), every subtotal computed here. */
void deep_sync_answer(const struct sync_request *job,
                      struct endpoint_reply *reply);

/* deep_bill_subtotal for a sync request. */
double deep_sync_bill_subtotal(const struct sync_request *job, size_t i);

char *deep_endpoint_reply_render(const struct endpoint_reply *reply,
                                 bool keep_alive, size_t *out_len);

/* Bill i's subtotal (exchange_subtotal), logged (endpoint_log_bill). */
double deep_bill_subtotal(const struct exchange_request *job, size_t i);

#endif
