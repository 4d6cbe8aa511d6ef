/* server_deep: see server_deep.h. Each call packs its arguments into a
 * struct, because co_call_on_loop_stack passes one pointer. */
#include "server_deep.h"

#include <stdlib.h>
#include <string.h>

#include "coro.h"

struct route_call {
    const struct http_request *req;
    const char *stage;
    struct exchange_request *job;
    struct endpoint_reply *reply;
    enum endpoint_route route;
};

static void *route_on_loop(void *arg)
{
    struct route_call *r = arg;
    r->route = endpoint_route(r->req, r->stage, r->job, r->reply);
    return NULL;
}

enum endpoint_route deep_endpoint_route(const struct http_request *req,
                                        const char *stage,
                                        struct exchange_request *job,
                                        struct endpoint_reply *reply)
{
    struct route_call r = {req, stage, job, reply, ENDPOINT_REPLY};
    co_call_on_loop_stack(route_on_loop, &r);
    return r.route;
}

struct sync_request *sync_request_new(const struct exchange_request *job)
{
    size_t n = job->num_bills;
    struct sync_request *s = malloc(sizeof *s + n * sizeof s->bills[0]);
    if (s) {
        memcpy(s->request_id, job->request_id, sizeof s->request_id);
        s->exchange_rate = job->exchange_rate;
        s->num_bills = n;
        memcpy(s->bills, job->bills, n * sizeof s->bills[0]);
    }
    return s;
}

/* The whole request again, on the loop's stack. */
static void sync_request_unpack(const struct sync_request *s,
                                struct exchange_request *job)
{
    memcpy(job->request_id, s->request_id, sizeof job->request_id);
    job->exchange_rate = s->exchange_rate;
    job->num_bills = s->num_bills;
    memcpy(job->bills, s->bills, s->num_bills * sizeof job->bills[0]);
}

struct answer_call {
    const struct sync_request *sync;
    struct endpoint_reply *reply;
};

static void *answer_on_loop(void *arg)
{
    struct answer_call *a = arg;
    struct exchange_request job;
    sync_request_unpack(a->sync, &job);
    double subtotals[EXCHANGE_MAX_BILLS];
    for (size_t i = 0; i < job.num_bills; i++)
        subtotals[i] = exchange_subtotal(&job.bills[i], job.exchange_rate);
    endpoint_sync_done(&job, subtotals, a->reply);
    return NULL;
}

void deep_sync_answer(const struct sync_request *job,
                      struct endpoint_reply *reply)
{
    struct answer_call a = {job, reply};
    co_call_on_loop_stack(answer_on_loop, &a);
}

struct render_call {
    const struct endpoint_reply *reply;
    bool keep_alive;
    size_t len;
};

static void *render_on_loop(void *arg)
{
    struct render_call *r = arg;
    return endpoint_reply_render(r->reply, r->keep_alive, &r->len);
}

char *deep_endpoint_reply_render(const struct endpoint_reply *reply,
                                 bool keep_alive, size_t *out_len)
{
    struct render_call r = {reply, keep_alive, 0};
    char *text = co_call_on_loop_stack(render_on_loop, &r);
    *out_len = r.len;
    return text;
}

struct bill_call {
    const struct exchange_request *job;
    size_t i;
    double subtotal;
};

static void *bill_on_loop(void *arg)
{
    struct bill_call *b = arg;
    b->subtotal = exchange_subtotal(&b->job->bills[b->i],
                                    b->job->exchange_rate);
    endpoint_log_bill(b->job, b->i, b->subtotal);
    return NULL;
}

double deep_bill_subtotal(const struct exchange_request *job, size_t i)
{
    struct bill_call b = {job, i, 0};
    co_call_on_loop_stack(bill_on_loop, &b);
    return b.subtotal;
}

struct sync_bill_call {
    const struct sync_request *sync;
    size_t i;
    double subtotal;
};

static void *sync_bill_on_loop(void *arg)
{
    struct sync_bill_call *b = arg;
    struct exchange_request job;
    sync_request_unpack(b->sync, &job);
    struct bill_call call = {&job, b->i, 0};
    bill_on_loop(&call);
    b->subtotal = call.subtotal;
    return NULL;
}

double deep_sync_bill_subtotal(const struct sync_request *job, size_t i)
{
    struct sync_bill_call b = {job, i, 0};
    co_call_on_loop_stack(sync_bill_on_loop, &b);
    return b.subtotal;
}
