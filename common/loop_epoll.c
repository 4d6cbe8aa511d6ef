/* loop_epoll: the loop's readiness backend (loop.h, loop_impl.h), and its
 * default.
 *
 * epoll keeps the interest list in the kernel: a descriptor is registered
 * once (epoll_ctl) and every epoll_wait reports only those that are ready,
 * so a turn costs O(ready), not O(watched) as select()'s does, and there
 * is no FD_SETSIZE. What it reports is readiness, so for the completion
 * verbs this file does the I/O itself, the moment epoll says it would not
 * block: loop_recv is "wait until readable, then recv(2)", loop_send is
 * "send(2) now, and wait until writable only if that would block",
 * loop_accept is "wait until readable, then accept4(2) a batch". That is
 * how asyncio's selector loop implements sock_recv and sock_sendall, and
 * it costs what 05 cost before the completion verbs existed: a keep-alive
 * request is one recv, one send and a share of one epoll_wait.
 *
 * Registrations are changed lazily, to spare epoll_ctl calls: a socket
 * whose receive has just completed stays registered for readable, because
 * the next receive usually follows at once (a kept-alive connection reads
 * its next request), and only when epoll reports something nobody waits
 * for is the registration trimmed. So a connection pays one epoll_ctl in
 * its life (the ADD; the close removes it from epoll by itself), plus a
 * MOD only when the client sends while nobody reads (pipelining during a
 * bill's wait) or a send has to wait for room.
 *
 * What epoll cannot do: every byte still crosses the kernel boundary in a
 * system call of its own, one recv and one send per request however busy
 * the server is. io_uring's completion backend (loop_uring.c) batches
 * them. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop_impl.h"
#include "net.h"
#include "trace.h"

/* Events fetched per epoll_wait. More are simply fetched on the next turn:
 * level triggering keeps reporting them. */
#define EPOLL_MAX_EVENTS 256

struct epoll_state {
    int epfd;
};

static int epfd_of(const struct loop *loop)
{
    return ((const struct epoll_state *)loop->state)->epfd;
}

static int ep_open(struct loop *loop)
{
    struct epoll_state *st = malloc(sizeof *st);
    if (st == NULL)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = errno;
        free(st);
        return -err;
    }
    loop->state = st;
    return 0;
}

static void ep_close(struct loop *loop)
{
    close(epfd_of(loop));
    free(loop->state);
}

static void ep_del(struct loop *loop, int fd, struct loop_slot *s)
{
    if (!s->be.ep.in_epoll)
        return;
    /* ENOENT/EBADF: the fd was closed already, which removed it from epoll
     * by itself. Either way it is gone, which is what we wanted. */
    struct epoll_event unused = {0}; /* kernels before 2.6.9 insisted */
    epoll_ctl(epfd_of(loop), EPOLL_CTL_DEL, fd, &unused);
    s->be.ep.in_epoll = false;
    s->be.ep.events = 0;
}

/* Tells epoll that fd's slot s wants events now: ADD, MOD or DEL. */
static int ep_sync(struct loop *loop, int fd, struct loop_slot *s,
                   unsigned events)
{
    if (events == 0) {
        ep_del(loop, fd, s);
        return 0;
    }
    if (s->be.ep.in_epoll && s->be.ep.events == events)
        return 0; /* nothing changes: spare the system call */
    struct epoll_event ev = {0};
    ev.events = ((events & LOOP_READABLE) ? EPOLLIN : 0) |
                ((events & LOOP_WRITABLE) ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd;
    if (loop_is_exclusive(fd)) {
        /* epoll refuses MOD on an EPOLLEXCLUSIVE registration: a change
         * is a DEL and a new ADD. */
        ev.events |= EPOLLEXCLUSIVE;
        ep_del(loop, fd, s);
    }
    int op = s->be.ep.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(epfd_of(loop), op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT) {
        /* The owner closed fd without loop_unwatch and a new fd got the
         * number: treat it as a new owner, with a new generation. */
        s->gen = loop_new_gen(loop);
        ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd;
        s->be.ep.in_epoll = false;
        op = EPOLL_CTL_ADD;
        rc = epoll_ctl(epfd_of(loop), op, fd, &ev);
    }
    if (rc < 0)
        return -1;
    s->be.ep.in_epoll = true;
    s->be.ep.events = events;
    return 0;
}

static int ep_watch(struct loop *loop, int fd, struct loop_slot *s,
                    unsigned events)
{
    return ep_sync(loop, fd, s, events);
}

static void ep_forget(struct loop *loop, int fd, struct loop_slot *s,
                      bool closed)
{
    if (closed) /* gone from epoll with the close: no epoll_ctl */
        s->be.ep.in_epoll = false;
    else
        ep_del(loop, fd, s);
}

/* Makes sure epoll reports bits for fd, keeping what it reports already. */
static int ep_add_bits(struct loop *loop, int fd, struct loop_slot *s,
                       unsigned bits)
{
    unsigned have = s->be.ep.in_epoll ? s->be.ep.events : 0;
    return ep_sync(loop, fd, s, have | bits);
}

static int ep_recv(struct loop *loop, int fd, struct loop_slot *s)
{
    return ep_add_bits(loop, fd, s, LOOP_READABLE);
}

/* One send(2) of s's request: the count, or -errno; -EAGAIN when it
 * would block. */
static ssize_t ep_send_now(int fd, const struct loop_op *op)
{
    for (;;) {
        ssize_t n = send(fd, op->buf, op->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* An answer almost always fits in the socket's buffer, so the send is
 * made now, as the step that made the answer would have made it (nginx
 * and Redis write at once too); only when it would block does fd get
 * watched for writable. */
static int ep_send(struct loop *loop, int fd, struct loop_slot *s)
{
    ssize_t n = ep_send_now(fd, &s->send);
    if (n != -EAGAIN)
        return loop_complete_later(loop, fd, s, true, n);
    return ep_add_bits(loop, fd, s, LOOP_WRITABLE);
}

static void ep_send_cancel(struct loop *loop, int fd, struct loop_slot *s)
{
    (void)loop;
    (void)fd;
    (void)s; /* trimmed when epoll next reports it (ep_stream) */
}

static int ep_accept(struct loop *loop, int fd, struct loop_slot *s)
{
    return ep_sync(loop, fd, s, LOOP_READABLE);
}

/* What an epoll event says, in the loop's terms. A hang-up or error counts
 * as readable and writable, so the owner's next read or write meets it and
 * learns why. */
static unsigned ep_ready(uint32_t ev)
{
    unsigned ready = 0;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        ready |= LOOP_READABLE;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ready |= LOOP_WRITABLE;
    if (ev & (EPOLLHUP | EPOLLERR))
        ready |= LOOP_ERROR;
    return ready;
}

/* A streamed fd is ready: do the receive and the send its owner waits
 * for, just before calling back. Each callback may close fd or hand its
 * number to a new owner, so the slot is looked up again after it. */
static void ep_stream(struct loop *loop, int fd, uint32_t gen,
                      unsigned ready)
{
    struct loop_slot *s = &loop->slots[fd];
    /* Reported, and nobody waited for it: a kept-alive client that sent
     * while its bills wait, a hang-up, room nobody needs. Level
     * triggering would report it on every turn: it is trimmed below.
     * (What someone did wait for stays: its owner usually asks again at
     * once, as a kept-alive connection reads its next request.) */
    unsigned unwanted = ready & s->be.ep.events &
                        ~((s->recv.fn ? LOOP_READABLE : 0u) |
                          (s->send.fn ? LOOP_WRITABLE : 0u));
    while ((ready & LOOP_READABLE) && s->recv.fn != NULL) {
        size_t len = s->recv.len;
        ssize_t n = 1; /* a wait without a buffer: something is there */
        while (len > 0 &&
               (n = recv(fd, s->recv.buf, len, MSG_DONTWAIT)) < 0 &&
               errno == EINTR)
            ;
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            loop_complete(loop, fd, false, n >= 0 ? n : -errno);
        if (!loop_current(loop, fd, gen, false))
            return;
        s = &loop->slots[fd];
        /* An owner that waited without a buffer usually asks for the
         * bytes at once: read them now, not after another epoll_wait. */
        if (len > 0 || s->recv.len == 0)
            break;
    }
    if ((ready & LOOP_WRITABLE) && s->send.fn != NULL) {
        ssize_t n = ep_send_now(fd, &s->send);
        if (n != -EAGAIN)
            loop_complete(loop, fd, true, n);
        if (!loop_current(loop, fd, gen, false))
            return;
        s = &loop->slots[fd];
    }
    unwanted &= ~((s->recv.fn ? LOOP_READABLE : 0u) |
                  (s->send.fn ? LOOP_WRITABLE : 0u)); /* asked meanwhile */
    if (unwanted != 0)
        ep_sync(loop, fd, s, s->be.ep.events & ~unwanted);
}

/* A listener is readable: accept a batch (net.h, NET_ACCEPT_BATCH), then
 * serve the others; level triggering reports the rest next turn. */
static void ep_accept_ready(struct loop *loop, int fd, uint32_t gen)
{
    for (int i = 0; i < NET_ACCEPT_BATCH; i++) {
        int client = net_accept(fd, true);
        if (client < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* drained */
        if (client < 0) {
            /* The listener stays readable: stop watching it, or the next
             * turn would fail the same way at once. */
            int err = errno;
            ep_sync(loop, fd, &loop->slots[fd], 0);
            loop_accept_failed(loop, fd, err);
            return;
        }
        loop_call_acceptor(loop, fd, client);
        if (!loop_current(loop, fd, gen, false) ||
            loop->slots[fd].recv.fn == NULL)
            return; /* the owner stopped accepting */
    }
}

static int ep_wait(struct loop *loop, int timeout_ms)
{
    struct epoll_event events[EPOLL_MAX_EVENTS];
    /* The trace's picture of a turn: asleep in here, then dispatching. */
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, (uintptr_t)loop,
               timeout_ms < 0 ? "no timeout" : "timeout", timeout_ms);
    int n = loop->wait_masked
                ? epoll_pwait(epfd_of(loop), events, EPOLL_MAX_EVENTS,
                              timeout_ms, &loop->wait_mask)
                : epoll_wait(epfd_of(loop), events, EPOLL_MAX_EVENTS,
                             timeout_ms);
    TRACE_NOTE(TRACE_BLOCKED_END, (uintptr_t)loop, "events", n);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0; /* a signal: its handler wrote to a pipe we watch */
    }
    /* The slot is looked up again for every event: an earlier callback of
     * the same batch may have unwatched it, handed the number to a new
     * owner, changed what it watches, or grown (moved) the table. */
    for (int i = 0; i < n && !loop->stopped; i++) {
        int fd = (int)(uint32_t)events[i].data.u64;
        uint32_t gen = (uint32_t)(events[i].data.u64 >> 32);
        if (!loop_current(loop, fd, gen, true))
            continue;
        unsigned ready = ep_ready(events[i].events);
        switch (loop->slots[fd].mode) {
        case LOOP_MODE_WATCH:
            loop_call_watcher(loop, fd, ready);
            break;
        case LOOP_MODE_STREAM:
            ep_stream(loop, fd, gen, ready);
            break;
        case LOOP_MODE_ACCEPT:
            ep_accept_ready(loop, fd, gen);
            break;
        }
    }
    return 0;
}

const struct loop_backend_ops loop_epoll_backend = {
    .name = "epoll",
    .open = ep_open,
    .close = ep_close,
    .watch = ep_watch,
    .forget = ep_forget,
    .recv = ep_recv,
    .send = ep_send,
    .send_cancel = ep_send_cancel,
    .accept = ep_accept,
    .wait = ep_wait,
};
