/* loop: see loop.h. The part every backend shares: a table of
 * registrations indexed by fd, common/timer's heap, the queue of
 * operations done and not yet delivered, and the turn. What the kernel
 * is asked, and how its answers come back, is the backends' business:
 * loop_epoll.c and loop_uring.c, behind loop_impl.h.
 *
 * How a report finds its owner. Each registration is a slot in a table
 * indexed by the fd number (fds are small integers, so a table beats a hash
 * map). When a slot is taken by a new owner it gets a fresh generation
 * number, and the kernel is handed the generation with the fd (epoll's
 * event data, io_uring's user_data). When the report comes back, the fd
 * picks the slot and the generation says whether the slot still belongs
 * to the owner the report was about. */
#include "loop_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "trace.h"

static struct loop *loop_alloc(const struct loop_backend_ops *be)
{
    struct loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->be = be;
    timer_heap_init(&loop->timers);
    int rc = be->open(loop);
    if (rc < 0) {
        free(loop);
        errno = -rc;
        return NULL;
    }
    return loop;
}

struct loop *loop_new(void) { return loop_alloc(&loop_epoll_backend); }

struct loop *loop_new_backend(enum loop_backend backend)
{
    return loop_alloc(backend == LOOP_BACKEND_URING ? &loop_uring_backend
                                                    : &loop_epoll_backend);
}

/* Why io_uring could not be had, in words a reader of the log can act
 * on. */
static const char *loop_refusal(int err)
{
    switch (err) {
    case ENOTSUP:
        return "this program was built without liburing (tools/deps.sh "
               "installs liburing-dev; then make clean all)";
    case EPERM:
        return "the kernel refused it (a seccomp filter, as containers "
               "set, or the sysctl kernel.io_uring_disabled)";
    case ENOSYS:
        return "this kernel was built without it";
    case EINVAL:
        return "this kernel's io_uring lacks what the backend needs "
               "(Linux 5.19)";
    default:
        return "it could not be set up";
    }
}

struct loop *loop_open(const char *backend)
{
    if (strcmp(backend, "epoll") == 0)
        return loop_new();
    if (strcmp(backend, "uring") != 0) {
        errno = EINVAL;
        return NULL;
    }
    struct loop *loop = loop_new_backend(LOOP_BACKEND_URING);
    if (loop != NULL)
        return loop;
    int err = errno;
    if (err == ENOMEM)
        return NULL;
    log_warn("--backend uring: no io_uring: %s (%s); running on epoll",
             loop_refusal(err), strerror(err));
    return loop_new();
}

const char *loop_backend_name(const struct loop *loop)
{
    return loop->be->name;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    trace_flush(); /* the last turn's events (trace.h) */
    loop->be->close(loop);
    free(loop->slots);
    free(loop->done);
    timer_heap_free(&loop->timers);
    free(loop);
}

/* ------------------------------------------------------------------ */
/* Registrations                                                       */

/* Makes slots[fd] exist, growing the table by doubling. calloc, not
 * realloc and memset: a large table comes straight from mmap, whose pages
 * are the kernel's zeros until touched, so the slots not yet used cost no
 * memory (16,384 slots for 10,000 clients would be 2.7 MB). */
static struct loop_slot *loop_slot(struct loop *loop, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need > loop->num_slots) {
        size_t n = loop->num_slots ? loop->num_slots : 64;
        while (n < need)
            n *= 2;
        struct loop_slot *s = calloc(n, sizeof *s);
        if (s == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        if (loop->num_slots > 0)
            memcpy(s, loop->slots, loop->num_slots * sizeof *s);
        free(loop->slots);
        loop->slots = s;
        loop->num_slots = n;
    }
    return &loop->slots[fd];
}

struct loop_slot *loop_slot_of(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->num_slots ||
        loop->slots[fd].mode == LOOP_MODE_NONE)
        return NULL;
    return &loop->slots[fd];
}

bool loop_current(struct loop *loop, int fd, uint32_t gen, bool count)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s != NULL && s->gen == gen)
        return true;
    if (count)
        loop->stale++;
    return false;
}

uint32_t loop_new_gen(struct loop *loop)
{
    if (++loop->next_gen == 0) /* after 4 billion owners: skip 0 */
        ++loop->next_gen;
    return loop->next_gen;
}

/* Whether s's owner may still be called: what loop_run counts to know
 * that nothing can ever happen again. */
static bool loop_slot_wants(const struct loop_slot *s)
{
    switch (s->mode) {
    case LOOP_MODE_WATCH:
        return s->events != 0;
    case LOOP_MODE_STREAM:
    case LOOP_MODE_ACCEPT:
        return s->recv.fn != NULL || s->send.fn != NULL;
    }
    return false;
}

/* Keeps loop->wanting in step with s, whose wants were `before`. */
static void loop_recount(struct loop *loop, const struct loop_slot *s,
                         bool before)
{
    bool now = loop_slot_wants(s);
    if (now && !before)
        loop->wanting++;
    else if (before && !now)
        loop->wanting--;
}

/* The slot for fd in mode: an inactive one becomes a new owner's (a new
 * generation); one in another mode is refused with EBUSY (loop_impl.h,
 * enum loop_mode, says why). *fresh tells the caller to undo on failure. */
static struct loop_slot *loop_take(struct loop *loop, int fd, uint8_t mode,
                                   bool *fresh)
{
    if (fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    struct loop_slot *s = loop_slot(loop, fd);
    if (s == NULL)
        return NULL;
    *fresh = s->mode == LOOP_MODE_NONE;
    if (*fresh) {
        *s = (struct loop_slot){.gen = loop_new_gen(loop), .mode = mode};
    } else if (s->mode != mode) {
        errno = EBUSY;
        return NULL;
    }
    return s;
}

static int exclusive_fd = -1; /* see loop_exclusive_fd */

void loop_exclusive_fd(int fd) { exclusive_fd = fd; }

bool loop_is_exclusive(int fd) { return fd == exclusive_fd; }

int loop_watch(struct loop *loop, int fd, unsigned events, loop_io_fn fn,
               void *arg)
{
    if (fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    bool fresh;
    struct loop_slot *s = loop_take(loop, fd, LOOP_MODE_WATCH, &fresh);
    if (s == NULL)
        return -1;
    bool before = loop_slot_wants(s);
    events &= LOOP_READABLE | LOOP_WRITABLE;
    if (loop->be->watch(loop, fd, s, events) < 0) {
        int saved = errno;
        if (fresh)
            s->mode = LOOP_MODE_NONE; /* nothing was registered */
        errno = saved;
        return -1;
    }
    s = &loop->slots[fd];
    s->events = events;
    s->fn = fn;
    s->arg = arg;
    loop_recount(loop, s, before);
    return 0;
}

/* loop_unwatch and loop_forget_closed: the backend lets go, the slot is
 * cleared. The generation stays: the next owner gets a new one, and
 * reports about this one still in a batch no longer match an active
 * slot. */
static void loop_drop(struct loop *loop, int fd, bool closed)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s == NULL)
        return;
    bool before = loop_slot_wants(s);
    loop->be->forget(loop, fd, s, closed);
    s = &loop->slots[fd];
    uint32_t gen = s->gen;
    *s = (struct loop_slot){.gen = gen};
    loop_recount(loop, s, before);
}

void loop_unwatch(struct loop *loop, int fd)
{
    if (fd == exclusive_fd)
        exclusive_fd = -1;
    loop_drop(loop, fd, false);
}

void loop_forget_closed(struct loop *loop, int fd)
{
    loop_drop(loop, fd, true);
}

/* ------------------------------------------------------------------ */
/* Completion                                                          */

/* Fills op with a new request and hands it to the backend (start). */
static int loop_start_op(struct loop *loop, int fd, uint8_t mode, bool send,
                         char *buf, size_t len, loop_done_fn fn, void *arg)
{
    if (fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    bool fresh;
    struct loop_slot *s = loop_take(loop, fd, mode, &fresh);
    if (s == NULL)
        return -1;
    struct loop_op *op = send ? &s->send : &s->recv;
    if (op->fn != NULL) {
        errno = EBUSY;
        return -1;
    }
    bool before = loop_slot_wants(s);
    *op = (struct loop_op){.fn = fn, .arg = arg, .buf = buf, .len = len};
    int rc = mode == LOOP_MODE_ACCEPT ? loop->be->accept(loop, fd, s)
             : send                   ? loop->be->send(loop, fd, s)
                                      : loop->be->recv(loop, fd, s);
    s = &loop->slots[fd];
    op = send ? &s->send : &s->recv;
    if (rc < 0) {
        int saved = errno;
        *op = (struct loop_op){0};
        if (fresh)
            loop_drop(loop, fd, false); /* whatever the backend began */
        errno = saved;
        return -1;
    }
    loop_recount(loop, s, before);
    return 0;
}

int loop_recv(struct loop *loop, int fd, void *buf, size_t len,
              loop_done_fn fn, void *arg)
{
    return loop_start_op(loop, fd, LOOP_MODE_STREAM, false, buf, len, fn,
                         arg);
}

int loop_send(struct loop *loop, int fd, const void *buf, size_t len,
              loop_done_fn fn, void *arg)
{
    /* The loop never writes through it: the cast only lets one struct
     * hold both directions. */
    return loop_start_op(loop, fd, LOOP_MODE_STREAM, true, (char *)buf, len,
                         fn, arg);
}

int loop_accept(struct loop *loop, int fd, loop_done_fn fn, void *arg)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s != NULL && s->mode == LOOP_MODE_ACCEPT && s->recv.fn != NULL) {
        s->recv.fn = fn; /* accepting already: new owner callback only */
        s->recv.arg = arg;
        return 0;
    }
    return loop_start_op(loop, fd, LOOP_MODE_ACCEPT, false, NULL, 0, fn,
                         arg);
}

/* Clears s's op; the backend hears of a withdrawn send. */
static void loop_cancel_op(struct loop *loop, int fd, bool send)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s == NULL || s->mode != LOOP_MODE_STREAM)
        return;
    struct loop_op *op = send ? &s->send : &s->recv;
    if (op->fn == NULL)
        return;
    bool before = loop_slot_wants(s);
    *op = (struct loop_op){0};
    if (send)
        loop->be->send_cancel(loop, fd, s);
    loop_recount(loop, &loop->slots[fd], before);
}

void loop_recv_cancel(struct loop *loop, int fd)
{
    loop_cancel_op(loop, fd, false);
}

void loop_send_cancel(struct loop *loop, int fd)
{
    loop_cancel_op(loop, fd, true);
}

void loop_complete(struct loop *loop, int fd, bool send, ssize_t result)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s == NULL)
        return;
    struct loop_op *op = send ? &s->send : &s->recv;
    if (op->fn == NULL)
        return;
    bool before = loop_slot_wants(s);
    struct loop_op done = *op;
    *op = (struct loop_op){0}; /* first: fn may ask for the next one */
    loop_recount(loop, s, before);
    TRACE_FN(TRACE_RUN_BEGIN, (uintptr_t)done.arg, done.fn, fd);
    done.fn(loop, fd, result, done.arg);
    TRACE(TRACE_RUN_END, done.arg, 0);
}

int loop_complete_later(struct loop *loop, int fd, struct loop_slot *s,
                        bool send, ssize_t result)
{
    if (loop->done_len == loop->done_cap) {
        size_t n = loop->done_cap ? 2 * loop->done_cap : 64;
        struct loop_done *d = realloc(loop->done, n * sizeof *d);
        if (d == NULL) {
            errno = ENOMEM;
            return -1;
        }
        loop->done = d;
        loop->done_cap = n;
    }
    struct loop_op *op = send ? &s->send : &s->recv;
    op->result = result;
    op->ready = true;
    loop->done[loop->done_len++] =
        (struct loop_done){.fd = fd, .gen = s->gen, .send = send};
    return 0;
}

/* Delivers the operations done before this pass began, in order. One
 * whose owner went (or withdrew it, or asked again) meanwhile is
 * skipped: its entry names a generation, and only a ready op counts. The
 * ones queued by these callbacks wait for the next turn, as timers do;
 * so do the rest after a loop_stop. */
static void loop_deliver_done(struct loop *loop)
{
    size_t n = loop->done_len, i;
    for (i = 0; i < n && !loop->stopped; i++) {
        struct loop_done d = loop->done[i];
        if (!loop_current(loop, d.fd, d.gen, false))
            continue;
        struct loop_slot *s = &loop->slots[d.fd];
        struct loop_op *op = d.send ? &s->send : &s->recv;
        if (op->fn == NULL || !op->ready)
            continue;
        loop_complete(loop, d.fd, d.send, op->result);
    }
    if (i == 0)
        return;
    memmove(loop->done, loop->done + i,
            (loop->done_len - i) * sizeof *loop->done);
    loop->done_len -= i;
}

void loop_call_acceptor(struct loop *loop, int fd, int client)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    void *arg = s->recv.arg; /* s may move or change owner inside fn */
    TRACE_FN(TRACE_RUN_BEGIN, (uintptr_t)arg, s->recv.fn, fd);
    s->recv.fn(loop, fd, client, arg);
    TRACE(TRACE_RUN_END, arg, 0);
}

void loop_accept_failed(struct loop *loop, int fd, int err)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s == NULL || s->recv.fn == NULL)
        return;
    loop_complete(loop, fd, false, -err);
}

/* ------------------------------------------------------------------ */
/* Readiness                                                           */

void loop_call_watcher(struct loop *loop, int fd, unsigned ready)
{
    struct loop_slot *s = loop_slot_of(loop, fd);
    if (s == NULL || s->mode != LOOP_MODE_WATCH)
        return;
    bool error = ready & LOOP_ERROR;
    ready &= s->events;
    if (ready == 0)
        return; /* the owner no longer watches for this: not stale, moot */
    if (error)
        ready |= LOOP_ERROR;
    void *arg = s->arg; /* s may move or change owner inside fn */
    TRACE_FN(TRACE_RUN_BEGIN, (uintptr_t)arg, s->fn, fd);
    s->fn(loop, fd, ready, arg);
    TRACE(TRACE_RUN_END, arg, 0);
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */

void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *arg)
{
    timer_node_init(&t->node);
    t->fn = fn;
    t->arg = arg;
}

int loop_timer_arm_at(struct loop *loop, struct loop_timer *t,
                      uint64_t deadline_ms)
{
    return timer_heap_push(&loop->timers, &t->node, deadline_ms);
}

int loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t delay_ms)
{
    return loop_timer_arm_at(loop, t, timer_now_ms() + delay_ms);
}

void loop_timer_cancel(struct loop *loop, struct loop_timer *t)
{
    timer_heap_remove(&loop->timers, &t->node);
}

bool loop_timer_armed(const struct loop_timer *t)
{
    return timer_node_armed(&t->node);
}

/* Fires every timer that is due, earliest first. Only timers armed before
 * this pass began: one that re-arms itself for "now" (or a chain of them)
 * waits for the next turn instead of running again and again until the
 * millisecond ticks over, so I/O gets its turn in between. The heap orders
 * by (deadline, arming order) and a timer armed during the pass has a
 * deadline >= now, so once the earliest one is new, every older due timer
 * has fired. */
static void loop_fire_timers(struct loop *loop)
{
    uint64_t now = timer_now_ms();
    uint64_t armed_before = loop->timers.next_seq;
    struct timer_node *n;
    while (!loop->stopped && (n = timer_heap_peek(&loop->timers)) != NULL &&
           n->deadline_ms <= now && n->seq < armed_before) {
        timer_heap_remove(&loop->timers, n);
        struct loop_timer *t = container_of(n, struct loop_timer, node);
        void *arg = t->arg; /* t may be gone when fn returns */
        TRACE_FN(TRACE_RUN_BEGIN, (uintptr_t)arg, t->fn, -1);
        t->fn(loop, arg);
        TRACE(TRACE_RUN_END, arg, 0);
    }
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

int loop_run_once(struct loop *loop, int timeout_ms)
{
    loop->stopped = false; /* a loop_stop ends this turn, not the next */
    /* Operations already done are delivered without waiting, unless the
     * last turn did not wait either (loop.h: never two in a row). */
    bool skip_wait = loop->done_len > 0 && loop->waited_last_turn;
    if (!skip_wait) {
        int timeout = timer_heap_timeout_ms(&loop->timers, timer_now_ms());
        if (timeout_ms >= 0 && (timeout < 0 || timeout_ms < timeout))
            timeout = timeout_ms;
        if (loop->done_len > 0)
            timeout = 0;
        if (loop->be->wait(loop, timeout) < 0)
            return -1;
    }
    loop->waited_last_turn = !skip_wait;
    if (!loop->stopped)
        loop_deliver_done(loop);
    loop_fire_timers(loop);
    return 0;
}

int loop_run(struct loop *loop)
{
    do {
        if (loop->wanting == 0 && loop->done_len == 0 &&
            timer_heap_size(&loop->timers) == 0)
            return 0; /* nothing left that could ever call anyone */
        if (loop_run_once(loop, -1) < 0)
            return -1;
    } while (!loop->stopped);
    return 0;
}

void loop_set_wait_sigmask(struct loop *loop, const sigset_t *mask)
{
    loop->wait_masked = mask != NULL;
    if (mask != NULL)
        loop->wait_mask = *mask;
}

loop_io_fn loop_watcher(const struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->num_slots ||
        loop->slots[fd].mode != LOOP_MODE_WATCH)
        return NULL;
    return loop->slots[fd].fn;
}

void loop_stop(struct loop *loop) { loop->stopped = true; }

unsigned long loop_stale_events(const struct loop *loop)
{
    return loop->stale;
}
