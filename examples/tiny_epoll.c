/* tiny_epoll: 05-epoll-callbacks' idea in one file. Read this first, then
 * see what the real one adds.
 *
 * The loop becomes a small library: "when this fd is ready, call this
 * function with this pointer" (loop_watch) and "in N ms, call that one"
 * (loop_timer). The server is a chain of callbacks, each doing one step and
 * registering the next: on_accept -> on_readable -> on_bill_done (once per
 * bill) -> on_writable. What a callback needs later must live in struct
 * conn, which comes back to it as the void *arg it registered.
 *
 * Shortcuts, on purpose (05 does each properly): timers in a sorted list
 * (05: a heap); no deadlines for slow clients, no keep-alive; accept()
 * failing with EMFILE would spin. No stale events: a connection is freed
 * only by its own callbacks and an fd comes at most once in a batch (05's
 * loop cannot promise that, and checks generations). The HTTP text is the
 * naive tiny_http.h. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "list.h"
#include "tiny_http.h"

typedef void callback(void *arg);
struct watch { callback *fn; void *arg; unsigned events; }; /* epoll's data */
struct timer { long long due_ms; callback *fn; void *arg; struct list link; };

static int ep;                                     /* the epoll instance */
static struct list timers = {&timers, &timers};    /* earliest first */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* When fd is ready for events, the loop calls fn(arg); events 0: no more. */
static int loop_watch(int fd, struct watch *w, unsigned events, callback *fn, void *arg)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = !events ? EPOLL_CTL_DEL : w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    *w = (struct watch){fn, arg, events};
    return epoll_ctl(ep, op, fd, &ev);
}

/* In ms milliseconds the loop calls fn(arg), once. */
static void loop_timer(struct timer *t, int ms, callback *fn, void *arg)
{
    *t = (struct timer){now_ms() + ms, fn, arg, {NULL, NULL}};
    struct list *pos = timers.prev;      /* from the latest: most go last */
    while (pos != &timers && LIST_ITEM(pos, struct timer, link)->due_ms > t->due_ms)
        pos = pos->prev;
    list_insert_before(pos->next, &t->link);
}

/* Sleep until a watched fd is ready or the earliest timer is due; call
 * back whoever is; again. */
static void loop_run(void)
{
    for (;;) {
        long long ms = -1;               /* no timer: until an fd is ready */
        if (!list_empty(&timers)) {
            ms = LIST_ITEM(timers.next, struct timer, link)->due_ms - now_ms();
            ms = ms < 0 ? 0 : ms;
        }
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, (int)ms);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return;
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = ev[i].data.ptr;
            w->fn(w->arg);
        }
        while (!list_empty(&timers) &&
               LIST_ITEM(timers.next, struct timer, link)->due_ms <= now_ms()) {
            struct timer *t = LIST_ITEM(list_pop_front(&timers), struct timer, link);
            t->fn(t->arg);
        }
    }
}

/* ---- the server: callbacks, in the order a request meets them ---- */

struct conn {
    int fd;
    struct watch watch;
    struct timer bill_timer;
    char in[8192 + 1];                   /* the request, NUL-terminated */
    size_t in_len;
    struct exchange_request req;
    size_t bills_done;
    char *out;                           /* the answer; how much is sent */
    size_t out_len, out_sent;
};

static int delay_ms = 2000, lfd;
static struct watch lwatch;              /* the listener's */
static callback on_readable, on_bill_done, on_writable;

static void drop(struct conn *c)         /* close() also leaves epoll */
{
    close(c->fd);
    free(c->out);
    free(c);
}

/* The answer in c->out goes out when the socket is writable. */
static void answer(struct conn *c)
{
    if (!c->out || loop_watch(c->fd, &c->watch, EPOLLOUT, on_writable, c) < 0)
        drop(c);                         /* no memory: closed unanswered */
}

/* I/O callback: the listener is readable: a new client. */
static void on_accept(void *arg)
{
    (void)arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    struct conn *c = fd >= 0 ? calloc(1, sizeof *c) : NULL;
    if (c)
        c->fd = fd;
    if (c && loop_watch(fd, &c->watch, EPOLLIN, on_readable, c) < 0)
        drop(c);
    else if (!c && fd >= 0)
        close(fd);
}

/* I/O callback: readable: take what came. A whole request's socket is
 * unwatched while its bills wait (so no I/O callback can free c under its
 * timer): the first bill's timer calls back. */
static void on_readable(void *arg)
{
    struct conn *c = arg;
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0 || (c->in_len += (size_t)n) == sizeof c->in - 1) {
        drop(c);                         /* gone, an error, or too big */
        return;
    }
    c->in[c->in_len] = '\0';
    size_t len;
    const char *body = tiny_whole_request(c->in, c->in_len, &len);
    if (!body)
        return;                          /* more to come: called again */
    if (!tiny_route(c->in, body, len, &c->req, &c->out, &c->out_len))
        answer(c);                       /* a 404 or a 400 */
    else if (loop_watch(c->fd, &c->watch, 0, NULL, NULL) < 0)
        drop(c);
    else
        loop_timer(&c->bill_timer, delay_ms, on_bill_done, c);
}

/* Timer callback: a bill is done; arm the next one, or answer. */
static void on_bill_done(void *arg)
{
    struct conn *c = arg;
    if (++c->bills_done < c->req.num_bills) {
        loop_timer(&c->bill_timer, delay_ms, on_bill_done, c);
        return;
    }
    c->out = tiny_breakdown(&c->req, &c->out_len);
    answer(c);
}

/* I/O callback: writable: send what fits; once all of it is sent, close. */
static void on_writable(void *arg)
{
    struct conn *c = arg;
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
                     MSG_NOSIGNAL);
    if (n > 0)
        c->out_sent += (size_t)n;
    if (c->out_sent == c->out_len || (n < 0 && errno != EAGAIN))
        drop(c);
}

int main(int argc, char **argv)
{
    int port = 8005, one = 1;
    tiny_options(argc, argv, &port, &delay_ms);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(lfd, (struct sockaddr *)&a, len) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)&a, &len) ||
        (ep = epoll_create1(0)) < 0 ||
        loop_watch(lfd, &lwatch, EPOLLIN, on_accept, NULL) < 0) {
        perror("listen");
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    loop_run();
    return 1;
}
