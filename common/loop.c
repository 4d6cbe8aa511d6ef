/* loop: see loop.h. An epoll instance, a table of registrations indexed by
 * fd, and common/timer's heap.
 *
 * How an event finds its owner. Each registration is a slot in a table
 * indexed by the fd number (fds are small integers, so a table beats a hash
 * map). When a slot is taken by a new owner it gets a fresh generation
 * number, and epoll is handed (generation << 32 | fd) as the event's data.
 * When the event comes back, the fd picks the slot and the generation says
 * whether the slot still belongs to the owner the event was about. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "trace.h"

/* Events fetched per epoll_wait. More are simply fetched on the next turn:
 * level triggering keeps reporting them. */
#define LOOP_MAX_EVENTS 256

struct loop_slot {
    loop_io_fn fn;
    void *arg;
    unsigned events;   /* what the owner asked for; 0 = paused */
    uint32_t gen;      /* which owner; 0 = never used */
    bool active;       /* registered (possibly paused) */
    bool in_epoll;     /* currently known to the epoll instance */
};

struct loop {
    int epfd;
    struct loop_slot *slots; /* indexed by fd */
    size_t num_slots;
    uint32_t next_gen;
    size_t in_epoll;         /* slots epoll can report: if 0 and no timer,
                                nothing can ever happen */
    struct timer_heap timers;
    bool stopped;
    bool wait_masked;        /* epoll_pwait with wait_mask */
    sigset_t wait_mask;
    unsigned long stale;
};

struct loop *loop_new(void)
{
    struct loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int saved = errno;
        free(loop);
        errno = saved;
        return NULL;
    }
    timer_heap_init(&loop->timers);
    return loop;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    trace_flush(); /* the last turn's events (trace.h) */
    close(loop->epfd);
    free(loop->slots);
    timer_heap_free(&loop->timers);
    free(loop);
}

/* ------------------------------------------------------------------ */
/* Registrations                                                       */

/* Makes slots[fd] exist, growing the table by doubling. */
static struct loop_slot *loop_slot(struct loop *loop, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need > loop->num_slots) {
        size_t n = loop->num_slots ? loop->num_slots : 64;
        while (n < need)
            n *= 2;
        struct loop_slot *s = realloc(loop->slots, n * sizeof *s);
        if (s == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        memset(s + loop->num_slots, 0, (n - loop->num_slots) * sizeof *s);
        loop->slots = s;
        loop->num_slots = n;
    }
    return &loop->slots[fd];
}

static uint32_t loop_new_gen(struct loop *loop)
{
    if (++loop->next_gen == 0) /* after 4 billion owners: skip 0 */
        ++loop->next_gen;
    return loop->next_gen;
}

static void loop_epoll_del(struct loop *loop, int fd, struct loop_slot *s)
{
    if (!s->in_epoll)
        return;
    /* ENOENT/EBADF: the fd was closed already, which removed it from epoll
     * by itself. Either way it is gone, which is what we wanted. */
    struct epoll_event unused = {0}; /* kernels before 2.6.9 insisted */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &unused);
    s->in_epoll = false;
    loop->in_epoll--;
}

static int exclusive_fd = -1; /* see loop_exclusive_fd */

void loop_exclusive_fd(int fd) { exclusive_fd = fd; }

/* Tells epoll what slot s wants now: ADD, MOD or DEL. */
static int loop_epoll_sync(struct loop *loop, int fd, struct loop_slot *s,
                           unsigned events)
{
    if (events == 0) {
        loop_epoll_del(loop, fd, s);
        s->events = 0;
        return 0;
    }
    if (s->in_epoll && s->events == events)
        return 0; /* nothing changes: spare the system call */
    struct epoll_event ev = {0};
    ev.events = ((events & LOOP_READABLE) ? EPOLLIN : 0) |
                ((events & LOOP_WRITABLE) ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd;
    if (fd == exclusive_fd) {
        /* epoll refuses MOD on an EPOLLEXCLUSIVE registration: a change
         * is a DEL and a new ADD. */
        ev.events |= EPOLLEXCLUSIVE;
        loop_epoll_del(loop, fd, s);
    }
    int op = s->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(loop->epfd, op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT) {
        /* The owner closed fd without loop_unwatch and a new fd got the
         * number: treat it as a new owner, with a new generation. */
        s->gen = loop_new_gen(loop);
        ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd;
        s->in_epoll = false;
        loop->in_epoll--;
        op = EPOLL_CTL_ADD;
        rc = epoll_ctl(loop->epfd, op, fd, &ev);
    }
    if (rc < 0)
        return -1;
    if (op == EPOLL_CTL_ADD) {
        s->in_epoll = true;
        loop->in_epoll++;
    }
    s->events = events;
    return 0;
}

int loop_watch(struct loop *loop, int fd, unsigned events, loop_io_fn fn,
               void *arg)
{
    if (fd < 0 || fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    struct loop_slot *s = loop_slot(loop, fd);
    if (s == NULL)
        return -1;
    bool fresh = !s->active;
    if (fresh) {
        *s = (struct loop_slot){.gen = loop_new_gen(loop), .active = true};
    }
    events &= LOOP_READABLE | LOOP_WRITABLE;
    if (loop_epoll_sync(loop, fd, s, events) < 0) {
        int saved = errno;
        if (fresh)
            s->active = false; /* nothing was registered */
        errno = saved;
        return -1;
    }
    s->fn = fn;
    s->arg = arg;
    return 0;
}

void loop_unwatch(struct loop *loop, int fd)
{
    if (fd == exclusive_fd)
        exclusive_fd = -1;
    if (fd < 0 || (size_t)fd >= loop->num_slots || !loop->slots[fd].active)
        return;
    struct loop_slot *s = &loop->slots[fd];
    loop_epoll_del(loop, fd, s);
    /* The generation stays: the next owner gets a new one, and events of
     * this one still in the batch no longer match an active slot. */
    s->active = false;
    s->events = 0;
    s->fn = NULL;
    s->arg = NULL;
}

void loop_forget_closed(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->num_slots || !loop->slots[fd].active)
        return;
    struct loop_slot *s = &loop->slots[fd];
    if (s->in_epoll) { /* gone from epoll with the close: only count it */
        s->in_epoll = false;
        loop->in_epoll--;
    }
    s->active = false;
    s->events = 0;
    s->fn = NULL;
    s->arg = NULL;
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

/* What a callback is told about an epoll event, limited to what its owner
 * still watches. A hang-up or error counts as readable and writable, so
 * the owner's next read or write meets it and learns why. */
static unsigned loop_ready(uint32_t ev, unsigned watched)
{
    unsigned ready = 0;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        ready |= LOOP_READABLE;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ready |= LOOP_WRITABLE;
    ready &= watched;
    if (ready && (ev & (EPOLLHUP | EPOLLERR)))
        ready |= LOOP_ERROR;
    return ready;
}

/* Calls the owner of one fetched event, unless it went stale. The slot is
 * looked up again for every event: an earlier callback of the same batch
 * may have unwatched it, handed the number to a new owner, changed what it
 * watches, or grown (moved) the table. */
static void loop_dispatch(struct loop *loop, const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    if ((size_t)fd >= loop->num_slots || !loop->slots[fd].active ||
        loop->slots[fd].gen != gen) {
        loop->stale++;
        return;
    }
    struct loop_slot *s = &loop->slots[fd];
    unsigned ready = loop_ready(ev->events, s->events);
    if (ready == 0)
        return; /* the owner no longer watches for this: not stale, moot */
    void *arg = s->arg; /* s may move or change owner inside fn */
    TRACE_FN(TRACE_RUN_BEGIN, (uintptr_t)arg, s->fn, fd);
    s->fn(loop, fd, ready, arg);
    TRACE(TRACE_RUN_END, arg, 0);
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    loop->stopped = false; /* a loop_stop ends this turn, not the next */
    int timeout = timer_heap_timeout_ms(&loop->timers, timer_now_ms());
    if (timeout_ms >= 0 && (timeout < 0 || timeout_ms < timeout))
        timeout = timeout_ms;
    /* The trace's picture of a turn: asleep in here, then dispatching. */
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, (uintptr_t)loop,
               timeout < 0 ? "no timeout" : "timeout", timeout);
    int n = loop->wait_masked
                ? epoll_pwait(loop->epfd, events, LOOP_MAX_EVENTS, timeout,
                              &loop->wait_mask)
                : epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
    TRACE_NOTE(TRACE_BLOCKED_END, (uintptr_t)loop, "events", n);
    if (n < 0) {
        if (errno != EINTR)
            return -1;
        n = 0; /* a signal: its handler wrote to a pipe we watch */
    }
    for (int i = 0; i < n && !loop->stopped; i++)
        loop_dispatch(loop, &events[i]);
    loop_fire_timers(loop);
    return 0;
}

int loop_run(struct loop *loop)
{
    do {
        if (loop->in_epoll == 0 && timer_heap_size(&loop->timers) == 0)
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
    if (fd < 0 || (size_t)fd >= loop->num_slots || !loop->slots[fd].active)
        return NULL;
    return loop->slots[fd].fn;
}

void loop_stop(struct loop *loop) { loop->stopped = true; }

unsigned long loop_stale_events(const struct loop *loop)
{
    return loop->stale;
}
