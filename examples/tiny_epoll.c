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
 * Shortcuts, on purpose (05 does each properly): no deadlines for slow
 * clients, no keep-alive; accept() failing with EMFILE would spin. No
 * stale events: a connection is freed only by its own callbacks and an fd
 * comes at most once in a batch (05's loop cannot promise that, and checks
 * generations). tiny_http.h holds the rest: the HTTP text, the listening
 * socket, and the timers' deadlines, in a sorted list (05: a heap). */
#include <sys/epoll.h>
#include <unistd.h>

#include "tiny_http.h"

typedef void callback(void *arg);
struct watch { callback *fn; void *arg; unsigned events; }; /* epoll's data */
struct timer { struct tiny_timer deadline; callback *fn; void *arg; };

static int ep;                                     /* the epoll instance */
static struct list timers = {&timers, &timers};    /* earliest first */

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
    t->fn = fn;
    t->arg = arg;
    tiny_timer_add(&timers, &t->deadline, ms);
}

/* Sleep until a watched fd is ready or the earliest timer is due; call
 * back whoever is; again. */
static void loop_run(void)
{
    for (;;) {
        struct epoll_event ev[64];       /* no timer: until an fd is ready */
        int n = epoll_wait(ep, ev, 64, tiny_timer_wait_ms(&timers));
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return;
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = ev[i].data.ptr;
            w->fn(w->arg);
        }
        for (struct tiny_timer *due; (due = tiny_timer_due(&timers));) {
            struct timer *t = container_of(due, struct timer, deadline);
            t->fn(t->arg);
        }
    }
}

/* ---- the server: callbacks, in the order a request meets them ---- */

struct conn {
    int fd;
    struct watch watch;
    struct timer bill_timer;
    struct tiny_req r;                   /* the request and its answer */
    size_t bills_done;
};

static int delay_ms = 2000, lfd;
static struct watch lwatch;              /* the listener's */
static callback on_readable, on_bill_done, on_writable;

static void drop(struct conn *c)         /* close() also leaves epoll */
{
    close(c->fd);
    free(c->r.out);
    free(c);
}

/* c's answer goes out when the socket is writable. */
static void answer(struct conn *c)
{
    if (!c->r.out || loop_watch(c->fd, &c->watch, EPOLLOUT, on_writable, c) < 0)
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
    enum tiny_got got = tiny_read(c->fd, &c->r);
    if (got == TINY_GONE)
        drop(c);
    else if (got == TINY_MORE)
        return;                          /* more to come: called again */
    else if (got == TINY_ANSWER)
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
    if (++c->bills_done < c->r.req.num_bills) {
        loop_timer(&c->bill_timer, delay_ms, on_bill_done, c);
        return;
    }
    tiny_breakdown(&c->r);
    answer(c);
}

/* I/O callback: writable: send what fits; once all of it is sent, close. */
static void on_writable(void *arg)
{
    struct conn *c = arg;
    if (tiny_send(c->fd, &c->r) != 0)
        drop(c);                         /* all sent, or an error */
}

int main(int argc, char **argv)
{
    if ((lfd = tiny_listen(argc, argv, 8005, &delay_ms)) < 0 ||
        (ep = epoll_create1(0)) < 0 ||
        loop_watch(lfd, &lwatch, EPOLLIN, on_accept, NULL) < 0) {
        perror(argv[0]);                 /* errno: what failed first */
        return 1;
    }
    loop_run();                          /* returns only on an error */
    return 1;
}
