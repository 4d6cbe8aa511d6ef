/* record: a request's bookkeeping, shared by the worker's loop and both
 * engines: a record taken when the request starts (record_push), written
 * when it ends, with --trace's events and --print's line, and its slot
 * freed for the next (finish). */
#include "loadgen.h"
#include "trace.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

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

/* The request's own port (its connection's), which the server's trace
 * names too: -1 if unknown (a raw connection already closed). */
static long local_port(const struct worker *w, const struct slot *sl)
{
    long port = -1;
    if (w->sh->opt->engine == ENGINE_CURL)
        return curl_easy_getinfo(sl->easy, CURLINFO_LOCAL_PORT, &port) ==
                       CURLE_OK && port > 0 ? port : -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (sl->raw->fd >= 0 &&
        getsockname(sl->raw->fd, (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(ss.ss_family == AF_INET6
                         ? ((struct sockaddr_in6 *)&ss)->sin6_port
                         : ((struct sockaddr_in *)&ss)->sin_port);
    return port > 0 ? port : -1;
}

/* --trace: the request's start, first byte (curl knows it) and end, on
 * the servers' clock, written when it ends; the start names its port. */
static void trace_request(const struct worker *w, const struct slot *sl,
                          const struct record *r)
{
    uint64_t start = (uint64_t)(r->start * 1e6), id = (uintptr_t)r;
    curl_off_t first = 0;
    long port = local_port(w, sl);
    trace_event_at(TRACE_CLIENT_BEGIN, id, port > 0 ? "port" : NULL, port,
                   start);
    if (w->sh->opt->engine == ENGINE_CURL &&
        curl_easy_getinfo(sl->easy, CURLINFO_STARTTRANSFER_TIME_T, &first) ==
            CURLE_OK && first > 0)
        trace_event_at(TRACE_CLIENT_FIRST, id, NULL, -1,
                       start + (uint64_t)first);
    trace_event_at(TRACE_CLIENT_END, id, NULL, -1, (uint64_t)(r->end * 1e6));
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
