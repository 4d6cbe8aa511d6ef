/* engine_curl: the default engine, libcurl's multi interface driven by
 * the worker's epoll loop through the socket API: curl says which sockets
 * to watch (on_curl_socket) and when to call it back (on_curl_timer). */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Registers fd with epoll for events, skipping the system call when it is
 * already registered that way. */
static int fd_watch(struct worker *w, int fd, uint32_t events)
{
    bool known = (size_t)fd < w->fd_cap;
    if (known && w->fd_reg[fd] == events)
        return 0;
    struct epoll_event ev = {.events = events,
                             .data.u64 = tag(TAG_CURL, (uint32_t)fd)};
    int op = known && w->fd_reg[fd] != FD_UNWATCHED ? EPOLL_CTL_MOD
                                                    : EPOLL_CTL_ADD;
    if (epoll_ctl(w->ep, op, fd, &ev) < 0) {
        op = errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(w->ep, op, fd, &ev) < 0) {
            fprintf(stderr, "loadgen: epoll_ctl: %s\n", strerror(errno));
            return -1;
        }
    }
    if (known)
        w->fd_reg[fd] = events;
    return 0;
}

static void fd_unwatch(struct worker *w, int fd)
{
    epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF: fine */
    if ((size_t)fd < w->fd_cap)
        w->fd_reg[fd] = FD_UNWATCHED;
}

/* curl says which sockets to watch for what. A keep-alive connection is
 * "removed" when its transfer ends and "added" again for the next request
 * on it a moment later; that would be two epoll_ctl calls per request, so
 * a removed socket stays registered (lazily) until it fires while curl does
 * not want it (the server closed the idle connection) or curl closes it. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                          void *socketp)
{
    (void)easy;
    (void)socketp;
    struct worker *w = userp;
    if (what == CURL_POLL_REMOVE) {
        if ((size_t)s < w->fd_cap)
            w->fd_want[s] = 0;
        else
            fd_unwatch(w, s);
        return 0;
    }
    uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                      (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if ((size_t)s < w->fd_cap)
        w->fd_want[s] = 1;
    return fd_watch(w, s, events);
}

/* Every socket curl makes comes from here (and, with --sources, is bound
 * to its source address before curl connects it). A new socket may reuse
 * the number of one curl closed behind our back (its connection cache
 * closes some without telling the easy handle's close callback): whatever
 * the table says about that number is stale, and the kernel dropped the
 * old socket from epoll when it was closed. */
static curl_socket_t on_curl_open(void *userp, curlsocktype purpose,
                                  struct curl_sockaddr *a)
{
    (void)purpose;
    struct worker *w = userp;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC,
                             a->protocol);
    uint32_t src = source_addr(w->sh->opt, w->next_source);
    if (s >= 0 && src) { /* --sources: each new socket from the next one */
        w->next_source += w->sh->live->nloops;
        if (raw_bind_source(s, src) < 0) {
            close(s);
            s = -1;
        }
    }
    if (s < 0) { /* the request fails before it leaves: pause (worker.c) */
        w->pause_until = now_s() + RETRY_PAUSE_MS / 1000.0;
        return CURL_SOCKET_BAD;
    }
    if ((size_t)s < w->fd_cap) {
        w->fd_reg[s] = FD_UNWATCHED;
        w->fd_want[s] = 0;
    }
    return s;
}

static int on_curl_close(void *userp, curl_socket_t s)
{
    struct worker *w = userp;
    if ((size_t)s < w->fd_cap) {
        w->fd_reg[s] = FD_UNWATCHED; /* close() drops it from epoll */
        w->fd_want[s] = 0;
    }
    return close(s);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct worker *w = userp;
    /* 0 means "call me back at once": due at time 0, so the next wait
     * does not sleep (now_s() + 0 would round up to a 1 ms sleep). */
    w->timer_at = timeout_ms < 0   ? -1
                  : timeout_ms == 0 ? 0
                                    : now_s() + (double)timeout_ms / 1000;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slot *sl = userp;
    size_t n = size * nmemb;
    if (sl->body) {
        size_t room = PRINT_BODY_MAX - sl->body_len;
        size_t take = n < room ? n : room;
        memcpy(sl->body + sl->body_len, data, take);
        sl->body_len += take;
    }
    return n; /* the rest is read and dropped: only timing matters */
}

bool setup_easy(struct worker *w, struct slot *sl, char *errbuf)
{
    const struct options *o = w->sh->opt;
    CURL *e = curl_easy_init();
    if (!e)
        return false;
    sl->easy = e;
    curl_easy_setopt(e, CURLOPT_CURLU, w->url); /* parsed once, not per call */
    curl_easy_setopt(e, CURLOPT_PRIVATE, sl);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_curl_open);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, w);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_curl_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, w);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy: skips env lookups */
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->sh->headers);
    if (!o->keepalive) {
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    }
    const char *m = method_name(o);
    if (o->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(o->body));
    }
    if (strcmp(m, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(m, "GET") == 0 && !o->body)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    else if (strcmp(m, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    if (o->print) {
        sl->body = malloc(PRINT_BODY_MAX);
        if (!sl->body)
            return false;
    }
    return true;
}

/* --engine curl: the multi handle, and the per-descriptor tables its
 * socket callback keeps (what curl wants watched, what epoll has). */
bool worker_init_curl(struct worker *w, CURLU *url)
{
    long nslots = (long)w->nslots;
    w->multi = curl_multi_init();
    w->url = curl_url_dup(url);
    if (!w->multi || !w->url)
        return false;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    /* Exactly this worker's share of connections: no more, and all kept. */
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, nslots);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, nslots);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, nslots);

    struct rlimit rl;
    w->fd_cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1 << 20
                    ? (size_t)rl.rlim_cur
                    : 1 << 20;
    w->fd_reg = malloc(w->fd_cap * sizeof *w->fd_reg);
    w->fd_want = calloc(w->fd_cap, 1);
    w->errbufs = calloc(w->nslots, sizeof *w->errbufs);
    if (!w->fd_reg || !w->fd_want || !w->errbufs)
        return false;
    memset(w->fd_reg, 0xff, w->fd_cap * sizeof *w->fd_reg); /* UNWATCHED */
    return true;
}

static enum outcome classify(CURLcode rc, long status)
{
    if (rc == CURLE_OK)
        return status >= 200 && status < 300 ? OUT_OK : OUT_HTTP;
    switch (rc) {
    case CURLE_COULDNT_CONNECT: /* refused, or no route */
        return OUT_REFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return OUT_TIMEOUT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        return OUT_RESET;
    case CURLE_GOT_NOTHING:
        return OUT_CLOSED;
    default:
        return OUT_OTHER;
    }
}

/* Collects finished transfers; their slots become free for the next. */
void collect_done(struct worker *w, double now)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct slot *sl = (struct slot *)priv;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(w->multi, e);
        const char *eb = w->errbufs[sl - w->slots];
        finish(w, sl, now, classify(rc, status),
               rc == CURLE_OK ? (int)status : 0,
               eb[0] ? eb : curl_easy_strerror(rc));
    }
}

void curl_dispatch(struct worker *w, const struct epoll_event *ev)
{
    uint32_t fd = (uint32_t)ev->data.u64;
    if (fd < w->fd_cap && !w->fd_want[fd]) {
        fd_unwatch(w, (int)fd); /* an idle connection closed: curl finds
                                   out itself when it next looks at it */
        return;
    }
    int flags = 0;
    if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        flags |= CURL_CSELECT_IN;
    if (ev->events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (ev->events & EPOLLERR)
        flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(w->multi, (curl_socket_t)fd, flags, &running);
}
