/* coro_curl: co_curl_perform, the C form of `await client.put(...)`.
 *
 * The transfers run on one curl multi handle glued to the scheduler's loop
 * by common/curl_loop, the same glue 05 uses: curl's sockets and its timer
 * sit in the same epoll and timer heap as every coroutine's waits. A
 * coroutine adds its easy handle and parks; after curl has run,
 * curl_ran finds the finished transfers and wakes their coroutines. */
#include <errno.h>
#include <stdlib.h>

#include "coro_impl.h"
#include "curl_loop.h"

/* One co_curl_perform in progress; lives on the caller's stack. */
struct co_transfer {
    CURL *easy;
    struct co *co;
    CURLcode result;
    struct list link;           /* in co_curl.transfers */
};

struct co_curl {
    struct curl_loop *cl;
    CURLM *multi;
    struct list transfers;     /* in flight */
};

/* curl_loop's `ran`: wakes the coroutines whose transfers finished. A
 * linear search over the transfers in flight: they are few, and
 * CURLOPT_PRIVATE stays the caller's. */
static void curl_ran(struct curl_loop *cl, void *arg)
{
    (void)cl;
    struct co_curl *cc = arg;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(cc->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle; /* msg dies with remove_handle */
        CURLcode result = msg->data.result;
        LIST_FOR_EACH(it, &cc->transfers) {
            struct co_transfer *t = LIST_ITEM(it, struct co_transfer, link);
            if (t->easy == easy) {
                t->result = result;
                co_wait_end(t->co, 0); /* removes the handle too */
                break;
            }
        }
    }
}

void co_curl_abort(struct co *c)
{
    struct co_curl *cc = sched->curl;
    list_remove(&c->wait_transfer->link);
    /* Aborts the transfer if it is still running. */
    curl_multi_remove_handle(cc->multi, c->wait_transfer->easy);
}

void co_curl_free(void)
{
    struct co_curl *cc = sched->curl;
    if (!cc)
        return;
    for (struct list *it; (it = list_pop_front(&cc->transfers));)
        curl_multi_remove_handle(cc->multi,
                                 LIST_ITEM(it, struct co_transfer, link)->easy);
    curl_loop_free(cc->cl); /* may still unwatch curl's sockets */
    free(cc);
    sched->curl = NULL;
}

static int curl_setup(void)
{
    struct co_curl *cc = calloc(1, sizeof *cc);
    if (!cc)
        return -ENOMEM;
    cc->cl = curl_loop_new(sched->loop, curl_ran, cc);
    if (!cc->cl) {
        free(cc);
        return -ENOMEM;
    }
    cc->multi = curl_loop_multi(cc->cl);
    list_init(&cc->transfers);
    sched->curl = cc;
    return 0;
}

int co_curl_perform(CURL *easy)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (!easy)
        return -EINVAL;
    if (co_take_cancel(c))
        return -ECANCELED;
    if (!sched->curl) {
        int rc = curl_setup();
        if (rc < 0)
            return rc;
    }
    struct co_curl *cc = sched->curl;
    struct co_transfer t = {.easy = easy, .co = c, .result = CURLE_OK};
    CURLMcode mc = curl_multi_add_handle(cc->multi, easy);
    if (mc != CURLM_OK)
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    list_push_back(&cc->transfers, &t.link);
    c->wait_transfer = &t;
    int rc = co_park(c, WAIT_CURL, -1, 0);
    return rc < 0 ? rc : (int)t.result;
}
