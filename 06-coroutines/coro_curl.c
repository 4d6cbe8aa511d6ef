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

/* One co_curl_perform in progress. In the heap, not on the caller's
 * stack: curl_ran and the other transfers' links reach it while the caller
 * is parked, when with a shared stack its frames are elsewhere (coro.h,
 * "Stacks"). */
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
    struct co_cleanup cleanup; /* ends it at co_sched_free */
};

/* The scheduler's transfers: made by the first co_curl_perform, ended with
 * the scheduler (one scheduler at a time, so one of these). */
static struct co_curl *sched_curl;

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

/* The wait's undo (a completion, a cancel): takes the transfer out of the
 * multi handle, which aborts it if it still runs. */
static void transfer_undo(struct co *c, void *arg)
{
    (void)c;
    struct co_transfer *t = arg;
    list_remove(&t->link);
    curl_multi_remove_handle(sched_curl->multi, t->easy);
}

/* co_sched_free: the transfers left belong to coroutines that will never
 * run again. */
static void curl_end(struct co_cleanup *self)
{
    struct co_curl *cc = container_of(self, struct co_curl, cleanup);
    for (struct list *it; (it = list_pop_front(&cc->transfers));) {
        struct co_transfer *t = LIST_ITEM(it, struct co_transfer, link);
        curl_multi_remove_handle(cc->multi, t->easy);
        free(t);
    }
    curl_loop_free(cc->cl); /* may still unwatch curl's sockets */
    free(cc);
    sched_curl = NULL;
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
    cc->cleanup.end = curl_end;
    co_at_free(&cc->cleanup);
    sched_curl = cc;
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
    if (!sched_curl) {
        int rc = curl_setup();
        if (rc < 0)
            return rc;
    }
    struct co_transfer *t = malloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    *t = (struct co_transfer){.easy = easy, .co = c, .result = CURLE_OK};
    CURLMcode mc = curl_multi_add_handle(sched_curl->multi, easy);
    if (mc != CURLM_OK) {
        free(t);
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    }
    list_push_back(&sched_curl->transfers, &t->link);
    /* No timeout of its own: the easy handle has one (coro.h). */
    struct co_wait w = {.undo = transfer_undo, .arg = t, .why = "curl",
                        .detail = -1};
    int rc = co_park(c, &w, -1);
    if (rc == 0)
        rc = (int)t->result;
    free(t);
    return rc;
}
