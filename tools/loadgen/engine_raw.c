/* engine_raw: --engine raw, rawhttp.c's lean HTTP/1.1 client on the
 * worker's loop, slots and records (see main.c for why it exists). */
#include "loadgen.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* --engine raw: a connection per slot, opened by its first request (from
 * source address source, 0 for the kernel's choice). */
bool setup_raw(struct worker *w, struct slot *sl, uint32_t source)
{
    sl->raw = malloc(sizeof *sl->raw);
    if (!sl->raw)
        return false;
    raw_conn_init(sl->raw);
    sl->raw->source = source;
    if (w->sh->opt->print) {
        sl->body = malloc(PRINT_BODY_MAX);
        if (!sl->body)
            return false;
        sl->raw->capture = sl->body;
        sl->raw->capture_max = PRINT_BODY_MAX;
    }
    return true;
}

/* --engine raw: what a request came to, as loadgen counts it. */
void raw_settle(struct worker *w, struct slot *sl, double now,
                enum raw_result rr)
{
    static const enum outcome as_outcome[] = {
        [RAW_REFUSED] = OUT_REFUSED, [RAW_RESET] = OUT_RESET,
        [RAW_CLOSED] = OUT_CLOSED, [RAW_ERROR] = OUT_OTHER};
    if (rr == RAW_PENDING)
        return;
    sl->body_len = sl->raw->capture_len;
    if (rr == RAW_DONE) {
        int st = sl->raw->status;
        finish(w, sl, now, st >= 200 && st < 300 ? OUT_OK : OUT_HTTP, st,
               NULL);
    } else {
        finish(w, sl, now, as_outcome[rr], 0, sl->raw->error);
    }
}

/* --engine raw: requests past --timeout-ms end here, their connections
 * closed (curl does this itself for its engine). */
void raw_timeouts(struct worker *w, double now)
{
    if (now < w->timer_at)
        return;
    double limit = (double)w->sh->opt->timeout_ms / 1000;
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *sl = &w->slots[i];
        if (sl->busy && now - w->recs[sl->rec].start >= limit) {
            raw_close(sl->raw);
            finish(w, sl, now, OUT_TIMEOUT, 0, NULL);
        }
    }
    w->timer_at = now + RAW_TIMEOUT_SCAN_MS / 1000.0;
}

/* Does a connection to a succeed within a second? */
static bool answers(const struct addrinfo *a)
{
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        return false;
    bool ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!ok && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        ok = poll(&p, 1, 1000) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && !err;
    }
    close(fd);
    return ok;
}

/* --engine raw: the request bytes and the address, once for the run.
 * "localhost" may name ::1 and 127.0.0.1; like curl, use the one that
 * answers (a server here often listens on one only). Returns an exit
 * status: 0, 2 for a URL this engine cannot use, 3 for other failures. */
int raw_setup(struct loadgen *lg, CURLU *url)
{
    const struct options *o = &lg->opt;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL,
         *query = NULL, *host_port = NULL, *path_query = NULL;
    struct addrinfo *ai = NULL;
    int rc = 3;
    curl_url_get(url, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || strcmp(scheme, "http") != 0) {
        fprintf(stderr, "loadgen: --engine raw speaks plain http://, not "
                        "%s://; use --engine curl\n", scheme ? scheme : "?");
        rc = 2;
        goto out;
    }
    if (curl_url_get(url, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    curl_url_get(url, CURLUPART_PORT, &port, 0);   /* may be absent */
    curl_url_get(url, CURLUPART_QUERY, &query, 0); /* may be absent */
    if (asprintf(&host_port, "%s%s%s", host, port ? ":" : "",
                 port ? port : "") < 0 ||
        asprintf(&path_query, "%s%s%s", path, query ? "?" : "",
                 query ? query : "") < 0) {
        host_port = path_query = NULL;
        goto out;
    }
    ai = resolve_url(url);
    if (!ai)
        goto out;
    const struct addrinfo *pick = ai; /* the only one, or none answers */
    if (ai->ai_next)
        for (const struct addrinfo *a = ai; a; a = a->ai_next)
            if (answers(a)) {
                pick = a;
                break;
            }
    struct raw_request *rq = &lg->sh.raw_rq;
    memcpy(&rq->addr, pick->ai_addr, pick->ai_addrlen);
    rq->addrlen = pick->ai_addrlen;
    if (raw_request_build(rq, method_name(o), host_port, path_query, o->body,
                          o->keepalive))
        rc = 0;
out:
    if (ai)
        freeaddrinfo(ai);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    free(host_port);
    free(path_query);
    return rc;
}

void raw_dispatch(struct worker *w, const struct epoll_event *ev)
{
    struct slot *sl = &w->slots[(uint32_t)ev->data.u64]; /* its index */
    if (!sl->busy) { /* the server ended an idle keep-alive connection */
        if (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            raw_close(sl->raw);
        return;
    }
    raw_settle(w, sl, now_s(),
               raw_event(sl->raw, &w->sh->raw_rq, w->ep, ev->data.u64,
                         ev->events));
}
