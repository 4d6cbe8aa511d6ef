/* record: a request's bookkeeping, shared by the worker's loop and both
 * engines: a record taken when the request starts (record_push), written
 * when it ends, with --trace's events and --print's line, and its slot
 * freed for the next (finish). */
#include "loadgen.h"
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>

bool record_push(struct worker *w, size_t *idx)
{
    if (w->nrecs == w->cap) {
        size_t cap = w->cap * 2;
        struct record *r = realloc(w->recs, cap * sizeof *r);
        if (!r)
            return false;
        w->recs = r;
        w->cap = cap;
    }
    *idx = w->nrecs++;
    return true;
}

static void print_response(const struct worker *w, const struct slot *sl)
{
    const struct record *r = &w->recs[sl->rec];
    /* one fprintf per line: stdio keeps lines from two threads apart */
    printf("HTTP %d in %.0f ms: %.*s\n", r->status, (r->end - r->start) * 1e3,
           (int)sl->body_len, sl->body);
    fflush(stdout);
}

/* --trace: the request's start, first byte (curl knows it) and end, on
 * the servers' clock, written when it ends. */
static void trace_request(const struct worker *w, const struct slot *sl,
                          const struct record *r)
{
    uint64_t start = (uint64_t)(r->start * 1e6);
    curl_off_t first = 0;
    trace_event_at(TRACE_CLIENT_BEGIN, r, 0, start);
    if (w->sh->opt->engine == ENGINE_CURL &&
        curl_easy_getinfo(sl->easy, CURLINFO_STARTTRANSFER_TIME_T, &first) ==
            CURLE_OK && first > 0)
        trace_event_at(TRACE_CLIENT_FIRST, r, 0, start + (uint64_t)first);
    trace_event_at(TRACE_CLIENT_END, r, 0, (uint64_t)(r->end * 1e6));
}

/* A request ended: record it and free its slot for the next. */
void finish(struct worker *w, struct slot *sl, double now,
            enum outcome out, int status, const char *error)
{
    struct record *r = &w->recs[sl->rec];
    r->end = now;
    if (trace_fd >= 0)
        trace_request(w, sl, r);
    r->status = status;
    r->outcome = (unsigned char)out;
    if (out == OUT_OTHER && !w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "%s", error);
    if (w->sh->opt->print)
        print_response(w, sl);
    sl->busy = false;
    w->free_slots[w->nfree++] = (size_t)(sl - w->slots);
    atomic_fetch_sub_explicit(&w->ctr->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->ctr->finished, 1, memory_order_relaxed);
}
