/* coro_fd: waiting on descriptors (coro.h, "waiting"): co_wait_readable,
 * co_wait_writable, co_read, co_write (readiness), co_recv, co_send,
 * co_accept (completion), co_close. The scheduler's core (coro.c) knows
 * how to park a coroutine; this file knows which fd it waits for, as
 * libtask keeps fd.c beside task.c.
 *
 * Readiness: co_on_fd is the loop callback of every fd a coroutine waits
 * on with loop_watch: it resumes the waiter, which then makes its own
 * read or write. After a wake the registration is kept, so the usual next
 * wait costs no system call; a registration that reports an fd nobody
 * waits on is paused then (level triggering would report it on every
 * turn). The cost of keeping it: an fd must be closed with co_close,
 * which tells the loop.
 *
 * Completion: co_recv, co_send and co_accept hand the operation itself to
 * the loop (loop_recv, loop_send, loop_accept) and park until co_on_done
 * says how it went; the coroutine wakes with the bytes already in its
 * buffer. The wait's undo withdraws the operation, so a timeout or a
 * cancel leaves nothing behind that could write into the coroutine's
 * buffer later (common/loop.h, "Whose memory"). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coro_impl.h"

static struct co_fd *co_fd_slot(int fd)
{
    if ((size_t)fd >= sched->nfds) {
        size_t n = sched->nfds ? sched->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct co_fd *t = realloc(sched->fds, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + sched->nfds, 0, (n - sched->nfds) * sizeof *t);
        sched->fds = t;
        sched->nfds = n;
    }
    return &sched->fds[fd];
}

/* A slot holds its coroutine from the wait until it runs again; only a
 * parked one is still waiting. */
static bool co_fd_waiting(const struct co *c)
{
    return c && c->state == CO_WAITING;
}

static unsigned co_fd_interest(const struct co_fd *f)
{
    return (co_fd_waiting(f->reader) ? LOOP_READABLE : 0u) |
           (co_fd_waiting(f->writer) ? LOOP_WRITABLE : 0u);
}

/* Loop callback: fd is ready (an error or hang-up comes as both). */
static void co_on_fd(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)arg;
    struct co_fd *f = &sched->fds[fd];
    unsigned waiting = co_fd_interest(f);
    if ((events & waiting & LOOP_READABLE))
        co_wait_end(f->reader, 0);
    if ((events & waiting & LOOP_WRITABLE))
        co_wait_end(f->writer, 0);
    if (events & waiting)
        return;
    if (loop_watch(loop, fd, waiting, co_on_fd, NULL) < 0) {
        int err = -errno;
        if (co_fd_waiting(f->reader))
            co_wait_end(f->reader, err);
        if (co_fd_waiting(f->writer))
            co_wait_end(f->writer, err);
    }
}

static int co_wait_fd(int fd, bool writing, int timeout_ms)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    if (fd < 0)
        return -EBADF;
    loop_io_fn owner = loop_watcher(sched->loop, fd);
    if (owner && owner != co_on_fd)
        return -EBUSY; /* a curl socket, or the worker pool's eventfd */
    struct co_fd *f = co_fd_slot(fd);
    if (!f)
        return -ENOMEM;
    struct co **me = writing ? &f->writer : &f->reader;
    if (*me)
        return -EBUSY;
    unsigned events = (writing ? LOOP_WRITABLE : LOOP_READABLE) |
                      (co_fd_interest(f) & ~(writing ? LOOP_WRITABLE
                                                     : LOOP_READABLE));
    if (loop_watch(sched->loop, fd, events, co_on_fd, NULL) < 0)
        return -errno;
    *me = c;
    /* No undo: the slot is cleared below, when c runs again, so that
     * co_close can still find a waiter it woke but that has not run. */
    const struct co_wait w = {.timer_result = -ETIMEDOUT,
                              .why = writing ? "write fd" : "read fd",
                              .detail = fd};
    int rc = co_park(c, &w, timeout_ms);
    f = &sched->fds[fd]; /* the table may have moved meanwhile */
    if (f->reader == c)
        f->reader = NULL;
    if (f->writer == c)
        f->writer = NULL;
    return rc;
}

int co_wait_readable(int fd, int timeout_ms)
{
    return co_wait_fd(fd, false, timeout_ms);
}

int co_wait_writable(int fd, int timeout_ms)
{
    return co_wait_fd(fd, true, timeout_ms);
}

ssize_t co_read(int fd, void *buf, size_t n, int timeout_ms)
{
    uint64_t deadline = timer_deadline_in(timeout_ms);
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = co_wait_readable(fd,
                                  timer_ms_left(deadline, timer_now_ms()));
        if (rc < 0)
            return rc;
    }
}

ssize_t co_write(int fd, const void *buf, size_t n, int timeout_ms)
{
    uint64_t deadline = timer_deadline_in(timeout_ms);
    const char *p = buf;
    size_t left = n;
    bool is_socket = true; /* send(MSG_NOSIGNAL) until told otherwise */
    while (left > 0) {
        ssize_t w = is_socket ? send(fd, p, left, MSG_NOSIGNAL)
                              : write(fd, p, left);
        if (w > 0) {
            p += w;
            left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == ENOTSOCK && is_socket) {
            is_socket = false; /* a pipe: plain write */
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = co_wait_writable(fd,
                                  timer_ms_left(deadline, timer_now_ms()));
        if (rc < 0)
            return rc;
    }
    return (ssize_t)n;
}

/* ---- completion: the loop moves the bytes ---------------------------- */

const char *co_sched_backend(void)
{
    return sched ? loop_backend_name(sched->loop) : NULL;
}

/* Done callback of co_recv and co_send: the operation is over, and result
 * is what its system call would have said. arg says which direction. */
static void co_on_done(struct loop *loop, int fd, ssize_t result, void *arg)
{
    (void)loop;
    struct co_fd *f = &sched->fds[fd];
    struct co *c = arg ? f->writer : f->reader;
    if (co_fd_waiting(c))
        co_wait_end(c, (int)result); /* at most INT_MAX: see co_park_on */
}

static void co_recv_undo(struct co *c, void *arg)
{
    (void)c;
    loop_recv_cancel(sched->loop, (int)(intptr_t)arg);
}

static void co_send_undo(struct co *c, void *arg)
{
    (void)c;
    loop_send_cancel(sched->loop, (int)(intptr_t)arg);
}

/* The checks every completion wait begins with: the running coroutine,
 * or NULL and *rc. */
static struct co *co_io_begin(int fd, bool writing, int *rc)
{
    struct co *c = co_running();
    struct co_fd *f = NULL;
    *rc = !c                  ? -EPERM
          : co_take_cancel(c) ? -ECANCELED
          : fd < 0            ? -EBADF
          : !(f = co_fd_slot(fd)) ? -ENOMEM
          : (writing ? f->writer : f->reader) ? -EBUSY
                                              : 0;
    return *rc == 0 ? c : NULL;
}

/* Parks c until the loop's operation on fd (started by the caller) is
 * done, timeout_ms passes or c is cancelled; the undo withdraws the
 * operation in the last two cases. Its result, or -ETIMEDOUT,
 * -ECANCELED, -EBADF (co_close). */
static int co_park_on(struct co *c, int fd, bool writing, int timeout_ms)
{
    struct co_fd *f = &sched->fds[fd];
    struct co **me = writing ? &f->writer : &f->reader;
    *me = c;
    struct co_wait w = {.undo = writing ? co_send_undo : co_recv_undo,
                        .arg = (void *)(intptr_t)fd,
                        .timer_result = -ETIMEDOUT,
                        .why = writing ? "send fd" : "recv fd",
                        .detail = fd};
    int rc = co_park(c, &w, timeout_ms);
    f = &sched->fds[fd]; /* the table may have moved meanwhile */
    me = writing ? &f->writer : &f->reader;
    if (*me == c)
        *me = NULL;
    return rc;
}

/* True if p is on the shared stack (coro.h, "Stacks"). The loop touches
 * a receive's or a send's buffer while its coroutine is parked, and a
 * parked coroutine's locals are not at their addresses then: another
 * coroutine's frames are. Such a buffer goes through the heap instead:
 * one malloc and one memcpy, only for a buffer on a shared stack. */
static bool co_on_shared_stack(const void *p)
{
    const char *q = p;
    return sched->shared && q >= sched->run_stack &&
           q < sched->run_stack + sched->stack_size;
}

/* co_recv's receive into buf, which the loop fills while c is parked. */
__attribute__((noinline)) static ssize_t co_recv_into(struct co *c, int fd,
                                                      void *buf, size_t n,
                                                      int timeout_ms)
{
    if (loop_recv(sched->loop, fd, buf, n, co_on_done, NULL) < 0)
        return -errno;
    return co_park_on(c, fd, false, timeout_ms);
}

ssize_t co_recv(int fd, void *buf, size_t n, int timeout_ms)
{
    int rc;
    struct co *c = co_io_begin(fd, false, &rc);
    if (!c)
        return rc;
    if (n > INT_MAX)
        n = INT_MAX;
    if (n == 0 || !co_on_shared_stack(buf))
        return co_recv_into(c, fd, buf, n, timeout_ms);
    char *heap = malloc(n);
    if (!heap)
        return -ENOMEM;
    ssize_t got = co_recv_into(c, fd, heap, n, timeout_ms);
    if (got > 0) /* c runs again: its buffer is back in place */
        memcpy(buf, heap, (size_t)got);
    free(heap); /* the loop is done with it: a wait ended otherwise
                   withdrew the receive (co_recv_undo) */
    return got;
}

/* co_send's loop, on a buffer the loop may read while c is parked. */
static ssize_t co_send_all(int fd, const char *p, size_t n, int timeout_ms)
{
    uint64_t deadline = timer_deadline_in(timeout_ms);
    size_t left = n;
    while (left > 0) {
        int rc;
        struct co *c = co_io_begin(fd, true, &rc);
        if (!c)
            return rc;
        if (loop_send(sched->loop, fd, p, left < INT_MAX ? left : INT_MAX,
                      co_on_done, (void *)1) < 0)
            return -errno;
        rc = co_park_on(c, fd, true, timer_ms_left(deadline, timer_now_ms()));
        if (rc < 0)
            return rc;
        p += rc;
        left -= (size_t)rc;
    }
    return (ssize_t)n;
}

ssize_t co_send(int fd, const void *buf, size_t n, int timeout_ms)
{
    if (n == 0 || !sched || !co_on_shared_stack(buf))
        return co_send_all(fd, buf, n, timeout_ms);
    char *heap = malloc(n);
    if (!heap)
        return -ENOMEM;
    memcpy(heap, buf, n);
    ssize_t rc = co_send_all(fd, heap, n, timeout_ms);
    free(heap); /* withdrawn if the wait ended otherwise (co_send_undo) */
    return rc;
}

/* Done callback of co_accept: a client for take, or the failure that
 * ended accepting, which ends the acceptor's wait. */
static void co_on_accept(struct loop *loop, int fd, ssize_t client,
                         void *arg)
{
    (void)loop;
    (void)arg;
    struct co_fd *f = &sched->fds[fd];
    if (client >= 0) {
        if (f->take)
            f->take((int)client);
        else
            close((int)client); /* not ours to serve */
        return;
    }
    f->take = NULL; /* the loop stopped accepting by itself */
    if (co_fd_waiting(f->reader))
        co_wait_end(f->reader, (int)client);
}

/* The acceptor's wait ended another way (cancelled, timed out): stop
 * accepting, or a client would come with nobody to take it. */
static void co_accept_undo(struct co *c, void *arg)
{
    (void)c;
    int fd = (int)(intptr_t)arg;
    if (sched->fds[fd].take != NULL) {
        sched->fds[fd].take = NULL;
        loop_unwatch(sched->loop, fd);
    }
}

int co_accept(int fd, void (*take)(int client), int timeout_ms)
{
    int rc;
    struct co *c = co_io_begin(fd, false, &rc);
    if (!c)
        return rc;
    if (!take)
        return -EINVAL;
    sched->fds[fd].take = take;
    if (loop_accept(sched->loop, fd, co_on_accept, NULL) < 0) {
        sched->fds[fd].take = NULL;
        return -errno;
    }
    sched->fds[fd].reader = c;
    struct co_wait w = {.undo = co_accept_undo, .arg = (void *)(intptr_t)fd,
                        .timer_result = -ETIMEDOUT, .why = "accept fd",
                        .detail = fd};
    rc = co_park(c, &w, timeout_ms);
    if (sched->fds[fd].reader == c)
        sched->fds[fd].reader = NULL;
    return rc;
}

/* The fd of c's wait is gone. If the loop already woke c (it sits in the
 * ready queue), the event was about the old fd: c must not believe the
 * number it gets back, which accept may hand out again before c runs. */
static void co_fd_gone(struct co *c)
{
    if (co_fd_waiting(c))
        co_wait_end(c, -EBADF);
    else if (c)
        c->wake_result = -EBADF;
}

int co_close(int fd)
{
    if (sched && fd >= 0) {
        loop_io_fn owner = loop_watcher(sched->loop, fd);
        if (owner && owner != co_on_fd)
            return -EBUSY;
        if ((size_t)fd < sched->nfds) {
            co_fd_gone(sched->fds[fd].reader);
            co_fd_gone(sched->fds[fd].writer);
            sched->fds[fd] = (struct co_fd){0};
        }
        loop_unwatch(sched->loop, fd); /* the next owner of the number is
                                          someone else (loop.h) */
    }
    /* Linux frees the fd even when close reports EINTR: never retry. */
    if (close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}
