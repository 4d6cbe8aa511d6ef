/* worker: one event loop on one thread, with its share of the
 * connections (slots), its records and its epoll set; the engines
 * (engine_curl.c, engine_raw.c) plug into it. It also keeps the schedule:
 * a closed loop (a free connection sends its next request at once) or,
 * with --rate, an open loop (requests are due at fixed times, whatever
 * the server does). */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool worker_init(struct worker *w, struct shared *sh, size_t index,
                 size_t nslots, size_t quota, CURLU *url)
{
    const struct options *o = sh->opt;
    w->sh = sh;
    w->ctr = &sh->live->loops[index];
    w->index = index;
    w->nslots = nslots;
    w->quota = quota;
    w->timer_at = -1;
    w->next_source = index;
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
    w->cap = o->total ? quota : 1024;
    w->recs = malloc(w->cap * sizeof *w->recs);
    if (!w->slots || !w->free_slots || !w->recs)
        return false;
    for (size_t i = 0; i < nslots; i++) {
        w->free_slots[w->nfree++] = nslots - 1 - i; /* slot 0 on top */
        if (!(o->engine == ENGINE_RAW
                  ? setup_raw(w, &w->slots[i],
                              source_addr(o, i * sh->live->nloops + index))
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

/* May one more request start, meant for time at? -n is split between the
 * loops as -c is, so with -n equal to -c each connection sends exactly one
 * request: all of them are new clients. */
static bool want_more(struct worker *w, double at)
{
    if (atomic_load_explicit(&w->sh->live->stop, memory_order_relaxed))
        return false;
    if (w->sh->opt->total)
        return w->issued < w->quota;
    return at < w->t_stop;
}

/* Starts a request on the free slot on top of the stack. With the raw
 * engine it may end at once (no descriptor, say): finish() then puts the
 * slot back, so it is taken before the request starts. */
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
    atomic_fetch_add_explicit(&w->ctr->active, 1, memory_order_relaxed);
    if (raw)
        raw_settle(w, sl, now,
                   raw_start(sl->raw, &w->sh->raw_rq, w->ep,
                             tag(TAG_RAW, (uint32_t)(sl - w->slots))));
    return true;
}

/* Starts requests on free slots while the run wants more, each as soon as
 * a connection is free: the raw engine sends it before it opens the next
 * connection, so a burst of new clients starts sending at once.
 *
 * Closed loop (no --rate): every free slot starts its next request now.
 * Open loop (--rate): only the requests that are due, each recorded as
 * starting when it was due. If the server stalls, every connection is
 * busy and the due requests wait for one; that wait counts in their
 * latency, as it would for clients arriving at that rate (wrk2 measures
 * so). A closed loop instead sends nothing while it waits, so the requests
 * such clients would have sent during the stall are never sent, and never
 * counted as slow: "coordinated omission".
 *
 * A request can end here at once, before it left (no descriptor or local
 * port for its connection; curl's engine finds out in on_curl_open).
 * Then nothing more starts for RETRY_PAUSE_MS: retrying at once would
 * fail at once again, and a run whose every connect fails would spin, a
 * record per failure. */
static void issue_requests(struct worker *w)
{
    double now = now_s();
    if (now < w->pause_until)
        return;
    while (w->issuing && w->nfree) {
        double at = w->rate > 0 ? w->next_at : now;
        if (at > now)
            return; /* not due yet: wait_s wakes the loop then */
        if (!want_more(w, at)) {
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
        w->recs[idx] = (struct record){.start = at, .sent = now};
        w->issued++;
        sl->rec = idx;
        sl->body_len = 0;
        if (!start_request(w, sl, now)) {
            w->nrecs--;
            w->issuing = false;
            return;
        }
        if (w->rate > 0)
            w->next_at += 1 / w->rate; /* this loop's share of the rate */
        if (!sl->busy) { /* it failed before it left */
            w->pause_until = now + RETRY_PAUSE_MS / 1000.0;
            return;
        }
        now = now_s(); /* the next one's start is its own */
    }
}

/* Everything that follows a socket event: finished transfers free their
 * slots, free slots start the next requests at once (so the server never
 * waits for the rest of the batch), and curl gets its due timeout. */
static void step(struct worker *w)
{
    if (w->sh->opt->engine == ENGINE_RAW) {
        raw_timeouts(w, now_s());
        issue_requests(w);
        return;
    }
    for (;;) {
        collect_done(w, now_s());
        issue_requests(w);
        if (w->timer_at < 0 || now_s() < w->timer_at)
            return;
        /* The timeout may finish transfers (a fast server's answer is read
         * in the same call): collect them before waiting again. */
        int running;
        w->timer_at = -1;
        curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* How long the loop may wait for events: until curl's timer or the raw
 * engine's timeout scan, the end of -d, the next due request (--rate) or
 * the end of a pause, at most a second. In seconds. */
static double wait_s(const struct worker *w, double now)
{
    double until = now + 1.0;
    if (w->timer_at >= 0 && w->timer_at < until)
        until = w->timer_at;
    if (w->issuing && w->sh->opt->duration_s > 0 && w->t_stop < until)
        until = w->t_stop;
    if (w->issuing && w->nfree) {
        double next = w->rate > 0 ? w->next_at : now;
        if (w->pause_until > next)
            next = w->pause_until;
        if (next < until)
            until = next;
    }
    return until > now ? until - now : 0;
}

/* epoll_wait with a timeout to the microsecond (epoll_pwait2, Linux 5.11):
 * at --rate 20000 requests are 50 us apart, and waking up to a millisecond
 * late would be counted in their latency. Where the kernel lacks it,
 * epoll_wait, rounded up to the millisecond. */
static int wait_events(struct worker *w, struct epoll_event *evs, int max,
                       double seconds)
{
    static atomic_bool no_pwait2;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = (time_t)seconds};
        ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
        int n = epoll_pwait2(w->ep, evs, max, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store(&no_pwait2, true);
    }
    return epoll_wait(w->ep, evs, max, (int)ceil(seconds * 1000));
}

/* Hands an event to the engine that owns its descriptor. */
static void dispatch(struct worker *w, const struct epoll_event *ev)
{
    uint64_t kind = ev->data.u64 >> 32;
    if (kind == TAG_STOP)
        return; /* the loop sees sh->live->stop */
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
        atomic_fetch_sub_explicit(&w->ctr->active, 1, memory_order_relaxed);
        w->recs[sl->rec].outcome = OUT_KINDS; /* marker: not finished */
    }
}

void *worker_run(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->sh->opt;
    struct epoll_event evs[EPOLL_BATCH];
    /* The schedule starts now: -d's end, and --rate's first request, this
     * loop's share of the rate offset by its number so the loops take
     * turns. */
    double t0 = now_s();
    w->t_stop = t0 + o->duration_s;
    if (o->rate > 0) {
        w->rate = o->rate / (double)w->sh->live->nloops;
        w->next_at = t0 + (double)w->index / o->rate;
    }
    w->issuing = true;
    while (!atomic_load_explicit(&w->sh->live->stop, memory_order_relaxed)) {
        step(w);
        if (!w->issuing && atomic_load_explicit(&w->ctr->active,
                                                memory_order_relaxed) == 0)
            break;
        int n = wait_events(w, evs, EPOLL_BATCH, wait_s(w, now_s()));
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            dispatch(w, &evs[i]);
            step(w);
        }
    }
    if (atomic_load(&w->sh->live->stop))
        abandon_in_flight(w);
    atomic_store(&w->ctr->done, true);
    return NULL;
}
