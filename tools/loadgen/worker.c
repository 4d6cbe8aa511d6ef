/* worker: one event loop on one thread, with its share of the
 * connections (slots), its records and its epoll set; the engines
 * (engine_curl.c, engine_raw.c) plug into it. */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool worker_init(struct worker *w, struct shared *sh, size_t nslots,
                 CURLU *url)
{
    const struct options *o = sh->opt;
    w->sh = sh;
    w->nslots = nslots;
    w->timer_at = -1;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return false;
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = tag(TAG_STOP, 0)};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, sh->stop_fd, &ev) < 0)
        return false;
    if (o->engine == ENGINE_CURL && !worker_init_curl(w, url))
        return false;

    w->slots = calloc(nslots, sizeof *w->slots);
    w->free_slots = calloc(nslots, sizeof *w->free_slots);
    w->cap = o->total ? (size_t)o->total / (size_t)o->threads + nslots : 1024;
    w->recs = malloc(w->cap * sizeof *w->recs);
    if (!w->slots || !w->free_slots || !w->recs)
        return false;
    for (size_t i = 0; i < nslots; i++) {
        w->free_slots[w->nfree++] = nslots - 1 - i; /* slot 0 on top */
        if (!(o->engine == ENGINE_RAW
                  ? setup_raw(w, &w->slots[i])
                  : setup_easy(w, &w->slots[i], w->errbufs[i])))
            return false;
    }
    return true;
}

void worker_free(struct worker *w)
{
    for (size_t i = 0; w->slots && i < w->nslots; i++) {
        struct slot *sl = &w->slots[i];
        if (sl->easy) {
            if (sl->busy)
                curl_multi_remove_handle(w->multi, sl->easy);
            curl_easy_cleanup(sl->easy);
        }
        if (sl->raw)
            raw_close(sl->raw);
        free(sl->raw);
        free(sl->body);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_url_cleanup(w->url);
    if (w->ep >= 0)
        close(w->ep);
    free(w->fd_reg);
    free(w->fd_want);
    free(w->slots);
    free(w->free_slots);
    free(w->errbufs);
    free(w->recs);
}

/* ---- a worker's loop -------------------------------------------------- */

/* May one more request start? -n counts across all workers. */
static bool want_more(struct worker *w, double now)
{
    const struct options *o = w->sh->opt;
    if (atomic_load_explicit(&w->sh->stop, memory_order_relaxed))
        return false;
    if (o->total)
        return atomic_fetch_add_explicit(&w->sh->issued, 1,
                                         memory_order_relaxed) < o->total;
    return now < w->sh->t_stop;
}

/* Starts a request on the free slot on top of the stack. With the raw
 * engine it may end at once (refused, say): finish() then puts the slot
 * back, so it is taken before the request starts. */
static bool start_request(struct worker *w, struct slot *sl, double now)
{
    bool raw = w->sh->opt->engine == ENGINE_RAW;
    if (!raw) {
        CURLMcode mc = curl_multi_add_handle(w->multi, sl->easy);
        if (mc != CURLM_OK) {
            fprintf(stderr, "loadgen: curl_multi_add_handle: %s\n",
                    curl_multi_strerror(mc));
            return false;
        }
    }
    sl->busy = true;
    w->nfree--;
    atomic_fetch_add_explicit(&w->active, 1, memory_order_relaxed);
    if (raw)
        raw_settle(w, sl, now,
                   raw_start(sl->raw, &w->sh->raw_rq, w->ep,
                             tag(TAG_RAW, (uint32_t)(sl - w->slots))));
    return true;
}

/* Starts transfers on free slots while the run wants more. */
static void issue_requests(struct worker *w, double now)
{
    while (w->issuing && w->nfree) {
        if (!want_more(w, now)) {
            w->issuing = false;
            return;
        }
        struct slot *sl = &w->slots[w->free_slots[w->nfree - 1]];
        size_t idx;
        if (!record_push(w, &idx)) {
            fprintf(stderr, "loadgen: out of memory; stopping\n");
            w->issuing = false;
            return;
        }
        w->recs[idx] = (struct record){.start = now};
        sl->rec = idx;
        sl->body_len = 0;
        if (!start_request(w, sl, now)) {
            w->nrecs--;
            w->issuing = false;
            return;
        }
    }
}

/* Everything that follows a socket event: finished transfers free their
 * slots, free slots start the next requests at once (so the server never
 * waits for the rest of the batch), and curl gets its due timeout. */
static void step(struct worker *w)
{
    if (w->sh->opt->engine == ENGINE_RAW) {
        double now = now_s();
        raw_timeouts(w, now);
        issue_requests(w, now);
        return;
    }
    for (;;) {
        double now = now_s();
        collect_done(w, now);
        issue_requests(w, now);
        if (w->timer_at < 0 || now < w->timer_at)
            return;
        /* The timeout may finish transfers (a fast server's answer is read
         * in the same call): collect them before waiting again. */
        int running;
        w->timer_at = -1;
        curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

static int epoll_timeout_ms(const struct worker *w, double now)
{
    double until = 1.0;
    if (w->timer_at >= 0 && w->timer_at - now < until)
        until = w->timer_at - now;
    if (w->issuing && w->sh->opt->duration_s > 0 && w->sh->t_stop - now < until)
        until = w->sh->t_stop - now;
    if (until <= 0)
        return 0;
    return (int)ceil(until * 1000);
}

/* Hands an event to the engine that owns its descriptor. */
static void dispatch(struct worker *w, const struct epoll_event *ev)
{
    uint64_t kind = ev->data.u64 >> 32;
    if (kind == TAG_STOP)
        return; /* the loop sees sh->stop */
    if (kind == TAG_RAW)
        raw_dispatch(w, ev);
    else
        curl_dispatch(w, ev);
}

/* After Ctrl-C: stops what is in flight; those requests are not counted. */
static void abandon_in_flight(struct worker *w)
{
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *sl = &w->slots[i];
        if (!sl->busy)
            continue;
        if (sl->raw)
            raw_close(sl->raw);
        else
            curl_multi_remove_handle(w->multi, sl->easy);
        sl->busy = false;
        atomic_fetch_sub_explicit(&w->active, 1, memory_order_relaxed);
        w->recs[sl->rec].outcome = OUT_KINDS; /* marker: not finished */
    }
}

void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[EPOLL_BATCH];
    w->issuing = true;
    while (!atomic_load_explicit(&w->sh->stop, memory_order_relaxed)) {
        step(w);
        if (!w->issuing && atomic_load_explicit(&w->active,
                                                memory_order_relaxed) == 0)
            break;
        int n = epoll_wait(w->ep, evs, EPOLL_BATCH,
                           epoll_timeout_ms(w, now_s()));
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            dispatch(w, &evs[i]);
            step(w);
        }
    }
    if (atomic_load(&w->sh->stop))
        abandon_in_flight(w);
    atomic_store(&w->done, true);
    return NULL;
}
