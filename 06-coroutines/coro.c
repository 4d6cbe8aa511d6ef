/* coro: see coro.h for what each function does. This file is how.
 *
 * The parts, in the order they appear:
 *   1. sanitizer hooks     ASan and TSan must be told when we switch stacks
 *   2. data structures     a coroutine, an fd's waiters, the scheduler
 *   3. stacks              mmap + a PROT_NONE guard page
 *   4. switching           scheduler <-> coroutine with swapcontext
 *   5. waiting and waking  park, wake, cancel: the heart of it
 *   6. the loop            ready queue, epoll_wait, timers
 *   7. fd waits            one-shot epoll registrations, stale-event guard
 *   8. tasks               spawn, join, gather, detach
 *   9. worker pool         co_run_blocking: pthreads + an eventfd
 *  10. libcurl             a multi handle driven by the same epoll
 *
 * Only the scheduler switches to coroutines and coroutines only switch back
 * to the scheduler (never coroutine to coroutine). That costs a second
 * switch per hand-over but keeps every decision in one place: the loop. */
#include "coro.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <ucontext.h>
#include <unistd.h>

#include "timer.h"

/* ---- 1. sanitizer hooks ---------------------------------------------------
 * AddressSanitizer tracks which stack the thread is on; a swapcontext it was
 * not told about looks like a wild jump of the stack pointer and produces
 * false reports. ThreadSanitizer keeps a shadow call stack per thread and
 * needs a "fiber" per coroutine. Both get their calls right next to each
 * swapcontext below; in normal builds the hooks compile to nothing.
 *
 * One more TSan rule: it defers an asynchronous signal (SIGTERM, SIGINT)
 * that arrives while the thread runs ordinary code, queues it on the fiber
 * that was running, and calls the handler when that fiber next enters libc.
 * A coroutine that finishes before that takes the signal with it: its
 * fiber is destroyed, the handler never runs, and a stop request is lost
 * (seen as a server hanging after SIGTERM in make test SAN=thread). So in a
 * TSan build the loop thread keeps asynchronous signals blocked from
 * co_sched_init to co_sched_free and lets them in only while it sleeps in
 * epoll_pwait, on the scheduler's own fiber (tsan_block_async_signals). */
#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define CO_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(CO_ASAN)
#define CO_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(CO_TSAN)
#define CO_TSAN 1
#endif
#endif

#ifdef CO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define CO_MAX_EVENTS 256       /* epoll events fetched per loop turn */
#define CO_MIN_STACK (16 * 1024)

/* ---- 2. data structures ------------------------------------------------ */

enum co_state {
    CO_READY,    /* in the ready queue */
    CO_RUNNING,  /* on the CPU: sched->current */
    CO_WAITING,  /* parked; some event, timer or other coroutine wakes it */
    CO_DONE,     /* returned; only the control block is left */
};

/* What a parked coroutine waits for. A wake-up, a timeout and a cancel all
 * end a wait the same way (co_wait_end), and this says what to undo. */
enum co_wait {
    WAIT_NONE,
    WAIT_SLEEP,
    WAIT_FD,        /* wait_fd, as reader or writer */
    WAIT_JOIN,      /* wait_target to return */
    WAIT_UNWIND,    /* a cancelled wait_target to finish its cleanup */
    WAIT_BLOCKING,  /* a worker thread to run our job */
    WAIT_CURL,      /* wait_transfer to complete */
};

/* The waits co_cancel may cut short. The other two must run to their end:
 * a worker thread is writing into our stack (BLOCKING), or co_join must not
 * return while the coroutine it cancelled still runs (UNWIND). */
static bool co_wait_interruptible(enum co_wait w)
{
    return w == WAIT_SLEEP || w == WAIT_FD || w == WAIT_JOIN ||
           w == WAIT_CURL;
}

struct co_transfer; /* section 10 */

struct co {
    long id;
    enum co_state state;
    co_fn fn;
    void *arg, *result;
    ucontext_t ctx;            /* registers while not running */
    char *map;                 /* the whole mapping, guard page included */
    size_t map_len;
    char *stack;               /* the usable part, just above the guard */
    size_t stack_size;
    struct co *next_ready;     /* ready queue link */
    struct co *prev_all, *next_all; /* every control block, for co_sched_free */

    enum co_wait wait;
    int wake_result;           /* what the wait returns: set by the waker */
    int timer_result;          /* what the wait returns if its timer fires */
    struct timer_node timer;   /* the wait's deadline, when it has one */
    int wait_fd;
    struct co *wait_target;
    struct co_transfer *wait_transfer;

    struct co *join_waiter;    /* the coroutine parked in co_join on us */
    bool claimed;              /* co_join has started on this handle */
    bool detached;
    bool cancel_pending;       /* co_cancel happened; the next wait says so */
#ifdef CO_ASAN
    void *asan_fake_stack;
#endif
#ifdef CO_TSAN
    void *tsan_fiber;
#endif
};

/* Who an fd number belongs to right now, from the scheduler's view. */
enum co_fd_kind { FD_UNUSED, FD_COROUTINES, FD_CURL, FD_WAKEUP };

/* One slot per fd number (a table indexed by fd, grown on demand).
 *
 * gen is the stale-event guard: it is bumped whenever the number starts a
 * new life (co_close, or libcurl dropping or taking the socket), and it is
 * stored in every epoll registration next to the fd (data.u64 = gen << 32 |
 * fd). An event fetched for an earlier life carries the old gen and is
 * ignored, instead of waking whoever uses the number now. */
struct co_fd {
    enum co_fd_kind kind;
    uint32_t gen;
    bool registered;           /* epoll knows this fd (as far as we know) */
    struct co *reader, *writer;
};

/* A call waiting for a worker thread; lives on the caller's stack. */
struct co_job {
    co_fn fn;
    void *arg;
    void *result;
    struct co *co;
    struct co_job *next;
};

struct co_pool {
    pthread_mutex_t lock;      /* guards the two lists and stop */
    pthread_cond_t work;       /* a job was queued, or stop was set */
    struct co_job *todo_head, *todo_tail;
    struct co_job *done_head, *done_tail;
    bool stop;
    int efd;                   /* eventfd: "done list not empty" */
    pthread_t *threads;
    int nthreads, wanted;
};

/* One co_curl_perform in progress; lives on the caller's stack. */
struct co_transfer {
    CURL *easy;
    struct co *co;
    CURLcode result;
    struct co_transfer *prev, *next;
};

struct co_sched {
    size_t stack_size, page_size;
    int epfd;
    struct co_fd *fds;
    size_t nfds;
    struct timer_heap timers;
    struct co *ready_head, *ready_tail;
    size_t ready_len;
    struct co *all;            /* every control block not yet freed */
    struct co *current;        /* the running coroutine, NULL in the loop */
    long next_id;
    size_t live;               /* coroutines that have not returned */
    size_t fd_waits, jobs_pending, transfers; /* for deadlock detection */
    bool running;              /* inside co_sched_run */
    ucontext_t ctx;            /* the loop's own registers while a
                                  coroutine runs */
    pthread_t loop_thread;
    struct co_pool pool;
    CURLM *multi;              /* created on the first co_curl_perform */
    struct timer_node curl_timer;
    struct co_transfer *transfer_list;
    struct epoll_event events[CO_MAX_EVENTS];
#ifdef CO_ASAN
    void *asan_fake_stack;
    const void *loop_stack_bottom;
    size_t loop_stack_size;
#endif
#ifdef CO_TSAN
    void *tsan_fiber;
    sigset_t tsan_wait_mask;   /* the thread's mask before co_sched_init */
#endif
};

/* The one scheduler (coro.h, "Global state"). Set by co_sched_init,
 * cleared by co_sched_free; written only by the loop thread, before any
 * worker starts or after they all stopped. */
static struct co_sched *sched;

static void co_wait_end(struct co *c, int result);

/* The running coroutine, or NULL if the caller is not one. */
static struct co *co_running(void)
{
    return sched ? sched->current : NULL;
}

/* ---- 3. stacks ------------------------------------------------------------
 * Each stack is its own mapping: [guard page][stack_size bytes]. Stacks
 * grow down, so running off the end touches the guard page and the kernel
 * sends SIGSEGV, instead of silently overwriting whatever lies below.
 * MAP_NORESERVE: pages are only committed when touched, so 10,000 idle
 * coroutines cost a few pages each, not 64 KiB each.
 * Simplification: a stack is unmapped as soon as its coroutine returns. A
 * busy server would keep a small cache of stacks to save the mmap, mprotect
 * and munmap per coroutine. */

static int co_stack_alloc(struct co *c)
{
    size_t len = sched->stack_size + sched->page_size;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    if (mprotect(map, sched->page_size, PROT_NONE) < 0) {
        int err = errno;
        munmap(map, len);
        return -err;
    }
    c->map = map;
    c->map_len = len;
    c->stack = map + sched->page_size;
    c->stack_size = sched->stack_size;
    return 0;
}

static void co_stack_free(struct co *c)
{
    if (!c->map)
        return;
#ifdef CO_ASAN
    /* Frames that never returned (ours always end in a switch) leave their
     * redzones poisoned; a later mapping at this address must start clean. */
    __asan_unpoison_memory_region(c->stack, c->stack_size);
#endif
    munmap(c->map, c->map_len);
    c->map = NULL;
    c->stack = NULL;
}

/* ---- 4. switching ----------------------------------------------------------
 * co_resume runs in the loop and switches to a coroutine; co_switch_out
 * runs in a coroutine and switches back. swapcontext saves the callee-saved
 * registers, the stack pointer and (glibc) the signal mask, which costs a
 * system call per switch; hand-written assembly switches avoid that, at the
 * price of portability and readability. */

static void co_retire(struct co *c);

static void co_resume(struct co *c)
{
    sched->current = c;
    c->state = CO_RUNNING;
#ifdef CO_ASAN
    __sanitizer_start_switch_fiber(&sched->asan_fake_stack, c->stack,
                                   c->stack_size);
#endif
#ifdef CO_TSAN
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#endif
    if (swapcontext(&sched->ctx, &c->ctx) < 0)
        abort(); /* only fails on a bad pointer: a bug here, not an error */
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(sched->asan_fake_stack, NULL, NULL);
#endif
    sched->current = NULL;
    if (c->state == CO_DONE)
        co_retire(c); /* off its stack now, so the stack can go */
}

static void co_switch_out(struct co *c)
{
#ifdef CO_ASAN
    /* A finished coroutine passes NULL: its fake stack dies with it. */
    __sanitizer_start_switch_fiber(
        c->state == CO_DONE ? NULL : &c->asan_fake_stack,
        sched->loop_stack_bottom, sched->loop_stack_size);
#endif
#ifdef CO_TSAN
    __tsan_switch_to_fiber(sched->tsan_fiber, 0);
#endif
    if (swapcontext(&c->ctx, &sched->ctx) < 0)
        abort();
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake_stack, NULL, NULL);
#endif
}

/* Every coroutine starts here (makecontext passes no arguments that can
 * hold a pointer portably, so it finds itself as sched->current). */
static void co_trampoline(void)
{
#ifdef CO_ASAN
    /* Learns the loop's stack, to name it when switching back. */
    __sanitizer_finish_switch_fiber(NULL, &sched->loop_stack_bottom,
                                    &sched->loop_stack_size);
#endif
    struct co *c = sched->current;
    c->result = c->fn(c->arg);
    c->state = CO_DONE;
    sched->live--;
    if (c->join_waiter)
        co_wait_end(c->join_waiter, 0);
    co_switch_out(c);
    abort(); /* a finished coroutine is never resumed */
}

static void co_block_free(struct co *c)
{
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else
        sched->all = c->next_all;
    if (c->next_all)
        c->next_all->prev_all = c->prev_all;
    free(c);
}

/* A coroutine just returned: its stack goes at once; its control block
 * stays for co_join, unless nobody will ever join it. */
static void co_retire(struct co *c)
{
    co_stack_free(c);
#ifdef CO_TSAN
    __tsan_destroy_fiber(c->tsan_fiber);
    c->tsan_fiber = NULL;
#endif
    if (c->detached)
        co_block_free(c);
}

/* ---- 5. waiting and waking ------------------------------------------------
 * A wait is: register interest somewhere (an fd slot, a target's
 * join_waiter, the worker queue, the curl multi), then co_park, which arms
 * the optional timer and switches to the loop. Whoever ends the wait calls
 * co_wait_end(c, result): it undoes the registration and the timer and
 * queues c. So a timeout, an event and a cancel can never both fire: the
 * first one removes the others. */

static void ready_push(struct co *c)
{
    c->state = CO_READY;
    c->next_ready = NULL;
    if (sched->ready_tail)
        sched->ready_tail->next_ready = c;
    else
        sched->ready_head = c;
    sched->ready_tail = c;
    sched->ready_len++;
}

static struct co *ready_pop(void)
{
    struct co *c = sched->ready_head;
    if (c) {
        sched->ready_head = c->next_ready;
        if (!sched->ready_head)
            sched->ready_tail = NULL;
        sched->ready_len--;
    }
    return c;
}

static void transfer_unlink(struct co_transfer *t);

/* Takes c out of whatever it was registered with for its current wait. */
static void co_wait_undo(struct co *c)
{
    switch (c->wait) {
    case WAIT_FD: {
        struct co_fd *f = &sched->fds[c->wait_fd];
        /* Its epoll registration stays armed (one-shot): if it fires, it
         * finds no waiter and is dropped. No extra system call now. */
        if (f->reader == c)
            f->reader = NULL;
        if (f->writer == c)
            f->writer = NULL;
        sched->fd_waits--;
        break;
    }
    case WAIT_JOIN:
    case WAIT_UNWIND:
        if (c->wait_target->join_waiter == c)
            c->wait_target->join_waiter = NULL;
        break;
    case WAIT_BLOCKING:
        sched->jobs_pending--;
        break;
    case WAIT_CURL:
        transfer_unlink(c->wait_transfer);
        /* Aborts the transfer if it is still running. */
        curl_multi_remove_handle(sched->multi, c->wait_transfer->easy);
        sched->transfers--;
        break;
    case WAIT_NONE:
    case WAIT_SLEEP:
        break;
    }
}

static void co_wait_end(struct co *c, int result)
{
    co_wait_undo(c);
    timer_heap_remove(&sched->timers, &c->timer);
    c->wake_result = result;
    ready_push(c);
}

/* Consumes a pending cancel: a wait about to start reports it at once. */
static bool co_take_cancel(struct co *c)
{
    bool was = c->cancel_pending;
    c->cancel_pending = false;
    return was;
}

/* What a wait returns once the loop runs c again. A cancel that arrived
 * after the wait was already over (c was ready, not yet running) still
 * wins, as in asyncio: the coroutine learns about it here. */
static int co_resumed(struct co *c)
{
    c->wait = WAIT_NONE;
    return co_take_cancel(c) ? -ECANCELED : c->wake_result;
}

/* Suspends the running coroutine c in wait `kind`, already registered,
 * with an optional timeout whose expiry returns timer_result. */
static int co_park(struct co *c, enum co_wait kind, int timeout_ms,
                   int timer_result)
{
    c->wait = kind;
    c->timer_result = timer_result;
    if (timeout_ms >= 0 &&
        timer_heap_push(&sched->timers, &c->timer,
                        timer_now_ms() + (uint64_t)timeout_ms) < 0) {
        co_wait_undo(c);
        c->wait = WAIT_NONE;
        return -ENOMEM;
    }
    c->state = CO_WAITING;
    co_switch_out(c);
    return co_resumed(c);
}

int co_cancel(struct co *c)
{
    if (!sched || !c)
        return -EINVAL;
    if (c->state == CO_DONE)
        return -ESRCH;
    c->cancel_pending = true;
    if (c->state == CO_WAITING && co_wait_interruptible(c->wait))
        co_wait_end(c, -ECANCELED);
    return 0;
}

int co_yield(void)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    c->wake_result = 0;
    ready_push(c); /* to the back of the queue: everyone else goes first */
    co_switch_out(c);
    return co_resumed(c);
}

int co_sleep(int ms)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (co_take_cancel(c))
        return -ECANCELED;
    return co_park(c, WAIT_SLEEP, ms < 0 ? 0 : ms, 0);
}

/* Deadlines for calls made of several waits (co_read, co_write, co_gather). */
static uint64_t co_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : timer_now_ms() + (uint64_t)timeout_ms;
}

static int co_time_left(uint64_t deadline)
{
    if (deadline == UINT64_MAX)
        return -1;
    uint64_t now = timer_now_ms();
    if (now >= deadline)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

/* ---- 6. the loop ------------------------------------------------------ */

static void fd_event(uint64_t data, uint32_t events);
static void curl_on_timeout(void);

/* Runs the coroutines that are ready now. Those that become ready during
 * this pass (by co_yield, a spawn, a wake-up) wait for the next pass, so a
 * coroutine that yields in a loop cannot keep epoll from being polled. */
static void run_ready(void)
{
    for (size_t n = sched->ready_len; n > 0 && sched->ready_head; n--)
        co_resume(ready_pop());
}

static void timers_fire(void)
{
    uint64_t now = timer_now_ms();
    struct timer_node *n;
    while ((n = timer_heap_pop_expired(&sched->timers, now)) != NULL) {
        if (n == &sched->curl_timer) {
            curl_on_timeout();
        } else {
            struct co *c = container_of(n, struct co, timer);
            co_wait_end(c, c->timer_result);
        }
    }
}

/* Could anything still wake a parked coroutine when no timer is armed? */
static bool sched_can_wake(void)
{
    return sched->fd_waits > 0 || sched->jobs_pending > 0 ||
           sched->transfers > 0;
}

int co_sched_run(void)
{
    if (!sched)
        return -EINVAL;
    if (sched->running)
        return -EBUSY;
    sched->running = true;
#ifdef CO_TSAN
    sched->tsan_fiber = __tsan_get_current_fiber();
#endif
    int rc = 0;
    while (sched->live > 0) {
        run_ready();
        if (sched->live == 0)
            break;
        /* Sleep until the earliest deadline; not at all if someone is
         * ready; forever (-1) if only descriptors can wake us. */
        int timeout = sched->ready_head ? 0
                                        : timer_heap_timeout_ms(&sched->timers,
                                                                timer_now_ms());
        if (timeout < 0 && !sched->ready_head && !sched_can_wake()) {
            rc = -EDEADLK;
            break;
        }
#ifdef CO_TSAN
        int n = epoll_pwait(sched->epfd, sched->events, CO_MAX_EVENTS, timeout,
                            &sched->tsan_wait_mask); /* see section 1 */
#else
        int n = epoll_wait(sched->epfd, sched->events, CO_MAX_EVENTS, timeout);
#endif
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        /* Every event of the batch only queues coroutines; none runs until
         * the whole batch is handled. Descriptor events go before timers,
         * so data that arrived just at the deadline is not a timeout. */
        for (int i = 0; i < n; i++)
            fd_event(sched->events[i].data.u64, sched->events[i].events);
        timers_fire();
    }
    sched->running = false;
    return rc;
}

/* ---- 7. fd waits ---------------------------------------------------------
 * A coroutine's wait is registered EPOLLONESHOT: epoll reports the fd once
 * and then ignores it until the next wait re-arms it (EPOLL_CTL_MOD). So an
 * fd that stays readable while its coroutine is busy elsewhere (a keep-alive
 * client sending its next request while we compute) never makes epoll_wait
 * return again and again. The registration is kept between waits, so a
 * wait costs one epoll_ctl, not an ADD and a DEL. */

static struct co_fd *fd_slot(int fd)
{
    if (fd < 0)
        return NULL;
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

/* Tells epoll to watch fd for events, tagged with the slot's gen. */
static int fd_ctl(int fd, struct co_fd *f, uint32_t events)
{
    struct epoll_event ev = {
        .events = events,
        .data.u64 = ((uint64_t)f->gen << 32) | (uint32_t)fd,
    };
    int op = f->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(sched->epfd, op, fd, &ev);
    if (rc < 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
        /* closed with close(2) and the number reused: epoll forgot it */
        rc = epoll_ctl(sched->epfd, EPOLL_CTL_ADD, fd, &ev);
    else if (rc < 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
        rc = epoll_ctl(sched->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (rc < 0)
        return -errno;
    f->registered = true;
    return 0;
}

static int fd_arm_waiters(int fd, struct co_fd *f)
{
    uint32_t ev = EPOLLONESHOT | (f->reader ? EPOLLIN : 0u) |
                  (f->writer ? EPOLLOUT : 0u);
    return fd_ctl(fd, f, ev);
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
    struct co_fd *f = fd_slot(fd);
    if (!f)
        return -ENOMEM;
    if (f->kind == FD_CURL || f->kind == FD_WAKEUP)
        return -EBUSY;
    struct co **slot = writing ? &f->writer : &f->reader;
    if (*slot)
        return -EBUSY;
    f->kind = FD_COROUTINES;
    *slot = c;
    int rc = fd_arm_waiters(fd, f);
    if (rc < 0) {
        *slot = NULL;
        return rc;
    }
    uint32_t gen = f->gen;
    c->wait_fd = fd;
    sched->fd_waits++;
    rc = co_park(c, WAIT_FD, timeout_ms, -ETIMEDOUT);
    /* Woken by an event, but co_close ran before we did: the fd we were
     * told about is gone, whatever the number means now. */
    if (rc == 0 && sched->fds[fd].gen != gen)
        rc = -EBADF;
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

static void fd_wake_waiters(int fd, struct co_fd *f, uint32_t events)
{
    const uint32_t trouble = EPOLLERR | EPOLLHUP; /* wake both: the next
                                                     call reports it */
    if (f->reader && (events & (EPOLLIN | trouble)))
        co_wait_end(f->reader, 0);
    if (f->writer && (events & (EPOLLOUT | trouble)))
        co_wait_end(f->writer, 0);
    /* The one-shot registration is spent; the other direction may still
     * have a waiter, so arm it again for that one. */
    if (f->reader || f->writer) {
        int rc = fd_arm_waiters(fd, f);
        if (rc < 0 && f->reader)
            co_wait_end(f->reader, rc);
        if (rc < 0 && f->writer)
            co_wait_end(f->writer, rc);
    }
}

static void pool_collect(void);
static void curl_on_socket(int fd, uint32_t events);

static void fd_event(uint64_t data, uint32_t events)
{
    int fd = (int)(uint32_t)data;
    uint32_t gen = (uint32_t)(data >> 32);
    if ((size_t)fd >= sched->nfds || sched->fds[fd].gen != gen)
        return; /* stale: reported for an earlier life of this number */
    struct co_fd *f = &sched->fds[fd];
    switch (f->kind) {
    case FD_COROUTINES:
        fd_wake_waiters(fd, f, events);
        break;
    case FD_WAKEUP:
        pool_collect();
        break;
    case FD_CURL:
        curl_on_socket(fd, events);
        break;
    case FD_UNUSED:
        break;
    }
}

ssize_t co_read(int fd, void *buf, size_t n, int timeout_ms)
{
    uint64_t deadline = co_deadline(timeout_ms);
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = co_wait_readable(fd, co_time_left(deadline));
        if (rc < 0)
            return rc;
    }
}

ssize_t co_write(int fd, const void *buf, size_t n, int timeout_ms)
{
    uint64_t deadline = co_deadline(timeout_ms);
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
        int rc = co_wait_writable(fd, co_time_left(deadline));
        if (rc < 0)
            return rc;
    }
    return (ssize_t)n;
}

int co_close(int fd)
{
    if (sched && fd >= 0 && (size_t)fd < sched->nfds) {
        struct co_fd *f = &sched->fds[fd];
        if (f->kind == FD_CURL || f->kind == FD_WAKEUP)
            return -EBUSY;
        if (f->reader)
            co_wait_end(f->reader, -EBADF);
        if (f->writer)
            co_wait_end(f->writer, -EBADF);
        /* close(2) drops the registration only when no dup of the fd is
         * left anywhere (a forked child, say); say it explicitly. */
        if (f->registered)
            (void)epoll_ctl(sched->epfd, EPOLL_CTL_DEL, fd, NULL);
        f->registered = false;
        f->kind = FD_UNUSED;
        f->gen++;
    }
    /* Linux frees the fd even when close reports EINTR: never retry. */
    if (close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

/* ---- 8. tasks --------------------------------------------------------- */

/* A context that starts co_trampoline on c's stack. Its own function
 * because getcontext "returns twice" in the compiler's eyes, and no other
 * local variable should live across it. */
static int co_context_init(struct co *c)
{
    if (getcontext(&c->ctx) < 0)
        return -errno;
    c->ctx.uc_stack.ss_sp = c->stack;
    c->ctx.uc_stack.ss_size = c->stack_size;
    c->ctx.uc_link = NULL; /* never returns through it: see co_trampoline */
    makecontext(&c->ctx, co_trampoline, 0);
    return 0;
}

struct co *co_spawn(co_fn fn, void *arg)
{
    if (!sched || !fn) {
        errno = EINVAL;
        return NULL;
    }
    struct co *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = co_stack_alloc(c);
    if (rc == 0)
        rc = co_context_init(c);
    if (rc < 0) {
        co_stack_free(c);
        free(c);
        errno = -rc;
        return NULL;
    }
#ifdef CO_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
    c->id = sched->next_id++;
    c->fn = fn;
    c->arg = arg;
    c->wait_fd = -1;
    timer_node_init(&c->timer);
    c->next_all = sched->all;
    if (sched->all)
        sched->all->prev_all = c;
    sched->all = c;
    sched->live++;
    ready_push(c);
    return c;
}

int co_detach(struct co *c)
{
    if (!sched || !c || c->claimed || c->detached)
        return -EINVAL;
    c->detached = true;
    if (c->state == CO_DONE)
        co_block_free(c);
    return 0;
}

/* Parks self until t has returned (or the timeout or a cancel). */
static int co_wait_for(struct co *self, struct co *t, enum co_wait kind,
                       int timeout_ms)
{
    t->join_waiter = self;
    self->wait_target = t;
    return co_park(self, kind, timeout_ms, -ETIMEDOUT);
}

/* The checks that leave a handle untouched when they fail. */
static int co_join_check(const struct co *self, const struct co *t)
{
    if (!t)
        return -EINVAL;
    if (t == self)
        return -EDEADLK;
    if (t->claimed || t->detached)
        return -EINVAL;
    if (!self && t->state != CO_DONE)
        return -EPERM;
    return 0;
}

int co_join(struct co *t, int timeout_ms, void **result)
{
    if (!sched)
        return -EINVAL;
    struct co *self = co_running();
    int rc = co_join_check(self, t);
    if (rc < 0)
        return rc;
    if (t->state != CO_DONE) {
        t->claimed = true;
        rc = co_take_cancel(self) ? -ECANCELED
                                  : co_wait_for(self, t, WAIT_JOIN, timeout_ms);
        if (rc < 0 && t->state != CO_DONE) {
            /* wait_for's rule: what we stop waiting for, we stop. Then we
             * wait for its cleanup, so no coroutine outlives its handle. */
            co_cancel(t);
            while (t->state != CO_DONE)
                if (co_wait_for(self, t, WAIT_UNWIND, -1) == -ECANCELED)
                    rc = -ECANCELED;
        }
    }
    if (result)
        *result = t->result;
    co_block_free(t);
    return rc;
}

int co_gather(struct co **cs, size_t n, int timeout_ms, void **results)
{
    if (!sched || (!cs && n > 0))
        return -EINVAL;
    struct co *self = co_running();
    for (size_t i = 0; i < n; i++) {
        int rc = cs[i] ? co_join_check(self, cs[i]) : 0;
        if (rc < 0)
            return rc;
    }
    uint64_t deadline = co_deadline(timeout_ms);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (cs[i]) {
            int jr = co_join(cs[i], rc < 0 ? -1 : co_time_left(deadline), &r);
            if (jr < 0 && rc == 0) {
                rc = jr; /* the first failure cancels the rest... */
                for (size_t j = i + 1; j < n; j++)
                    if (cs[j])
                        co_cancel(cs[j]);
            } else if (jr == -ECANCELED) {
                rc = -ECANCELED; /* ...and being cancelled outranks a timeout */
            }
        }
        if (results)
            results[i] = r;
    }
    return rc;
}

struct co *co_self(void)
{
    return co_running();
}

long co_id(const struct co *c)
{
    return c ? c->id : -1;
}

long co_current_id(void)
{
    /* Worker threads log too; they must not read sched->current, which
     * the loop thread writes. sched itself is stable while they run. */
    struct co_sched *s = sched;
    if (!s || !pthread_equal(pthread_self(), s->loop_thread) || !s->current)
        return -1;
    return s->current->id;
}

/* ---- 9. worker pool --------------------------------------------------------
 * co_run_blocking queues a job (which lives on the waiting coroutine's
 * stack: that coroutine cannot leave until the job is back) and parks. A
 * worker runs it, moves it to the done list and writes the eventfd, which
 * sits in the loop's epoll like any socket; the loop then wakes the
 * waiters of every finished job. The mutex is the only synchronisation
 * between the loop and the workers; it also orders the worker's write of
 * job->result before the coroutine reads it. */

static void pool_notify(struct co_pool *p)
{
    uint64_t one = 1;
    /* EAGAIN would mean the counter is full: it is readable anyway. */
    while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void *pool_worker(void *arg)
{
    struct co_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->todo_head && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        struct co_job *job = p->todo_head;
        if (!job)
            break; /* stopping, and nothing is left to run */
        p->todo_head = job->next;
        if (!p->todo_head)
            p->todo_tail = NULL;
        pthread_mutex_unlock(&p->lock);

        job->result = job->fn(job->arg);

        pthread_mutex_lock(&p->lock);
        job->next = NULL;
        if (p->done_tail)
            p->done_tail->next = job;
        else
            p->done_head = job;
        p->done_tail = job;
        pool_notify(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts the workers on first use. Signals stay with the loop thread: the
 * workers block them all, so a SIGTERM interrupts epoll_wait, not a job. */
static int pool_start(struct co_pool *p)
{
    if (p->nthreads > 0)
        return 0;
    p->threads = calloc((size_t)p->wanted, sizeof *p->threads);
    if (!p->threads)
        return -ENOMEM;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < p->wanted; i++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, pool_worker, p) != 0)
            break;
        p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p->nthreads > 0 ? 0 : -EAGAIN;
}

/* Waits for the running and queued jobs, then ends the workers. */
static void pool_stop(struct co_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
}

/* The eventfd fired: wake the coroutines whose jobs are done. */
static void pool_collect(void)
{
    struct co_pool *p = &sched->pool;
    uint64_t count;
    /* Reset first: a job finishing after the list is taken writes again. */
    while (read(p->efd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&p->lock);
    struct co_job *job = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (job) {
        struct co_job *next = job->next;
        co_wait_end(job->co, 0);
        job = next;
    }
}

int co_run_blocking(co_fn fn, void *arg, void **result)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    if (co_take_cancel(c))
        return -ECANCELED;
    struct co_pool *p = &sched->pool;
    if (pool_start(p) < 0)
        return -EAGAIN;
    struct co_job job = {.fn = fn, .arg = arg, .co = c};
    pthread_mutex_lock(&p->lock);
    if (p->todo_tail)
        p->todo_tail->next = &job;
    else
        p->todo_head = &job;
    p->todo_tail = &job;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    sched->jobs_pending++;
    /* No timeout and not interruptible: only pool_collect ends this wait,
     * so `job` outlives the worker's use of it. */
    int rc = co_park(c, WAIT_BLOCKING, -1, 0);
    if (result)
        *result = job.result;
    return rc;
}

/* ---- 10. libcurl -----------------------------------------------------------
 * libcurl's multi "socket" API lets the application own the waiting: curl
 * says which sockets it wants watched (CURLMOPT_SOCKETFUNCTION) and when it
 * wants to be called back anyway (CURLMOPT_TIMERFUNCTION); we put both into
 * our epoll and timer heap and call curl_multi_socket_action when they
 * fire. A finished transfer shows up in curl_multi_info_read, and we wake
 * the coroutine that awaits it. Curl's sockets are registered
 * level-triggered: curl keeps its interest up to date itself. */

static void transfer_unlink(struct co_transfer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        sched->transfer_list = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* Wakes the coroutines whose transfers finished. A linear search over the
 * transfers in flight: they are few, and CURLOPT_PRIVATE stays the
 * caller's. */
static void curl_check_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sched->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle; /* msg dies with remove_handle */
        CURLcode result = msg->data.result;
        for (struct co_transfer *t = sched->transfer_list; t; t = t->next) {
            if (t->easy == easy) {
                t->result = result;
                co_wait_end(t->co, 0); /* removes the handle too */
                break;
            }
        }
    }
}

static void curl_on_socket(int fd, uint32_t events)
{
    int flags = 0;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action(sched->multi, fd, flags, &running);
    curl_check_done();
}

static void curl_on_timeout(void)
{
    int running;
    curl_multi_socket_action(sched->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_check_done();
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp)
{
    (void)easy;
    (void)userp;
    (void)socketp;
    struct co_fd *f = fd_slot(fd);
    if (!f)
        return -1;
    if (what == CURL_POLL_REMOVE) {
        if (f->kind == FD_CURL) {
            if (f->registered)
                (void)epoll_ctl(sched->epfd, EPOLL_CTL_DEL, fd, NULL);
            f->registered = false;
            f->kind = FD_UNUSED;
            f->gen++; /* curl will close it; events in this batch go stale */
        }
        return 0;
    }
    if (f->kind != FD_CURL) {
        /* A new socket under a number coroutines used: the fd they waited
         * on was closed (without co_close), so their waits are over. */
        if (f->reader)
            co_wait_end(f->reader, -EBADF);
        if (f->writer)
            co_wait_end(f->writer, -EBADF);
        f->kind = FD_CURL;
        f->registered = false;
        f->gen++;
    }
    uint32_t ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                  ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    return fd_ctl(fd, f, ev) == 0 ? 0 : -1;
}

/* Never calls curl back from here (curl forbids it): it only arms our
 * timer, and the loop calls curl when the timer is due (0 ms: next turn). */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    (void)userp;
    if (timeout_ms < 0) {
        timer_heap_remove(&sched->timers, &sched->curl_timer);
        return 0;
    }
    return timer_heap_push(&sched->timers, &sched->curl_timer,
                           timer_now_ms() + (uint64_t)timeout_ms) == 0 ? 0 : -1;
}

static int curl_setup(void)
{
    CURLM *m = curl_multi_init();
    if (!m)
        return -ENOMEM;
    if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, curl_socket_cb) ||
        curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, curl_timer_cb)) {
        curl_multi_cleanup(m);
        return -EINVAL;
    }
    sched->multi = m;
    return 0;
}

int co_curl_perform(CURL *easy)
{
    struct co *c = co_running();
    if (!c)
        return -EPERM;
    if (!easy)
        return -EINVAL;
    if (co_take_cancel(c))
        return -ECANCELED;
    if (!sched->multi) {
        int rc = curl_setup();
        if (rc < 0)
            return rc;
    }
    struct co_transfer t = {.easy = easy, .co = c, .result = CURLE_OK};
    CURLMcode mc = curl_multi_add_handle(sched->multi, easy);
    if (mc != CURLM_OK)
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    t.next = sched->transfer_list;
    if (t.next)
        t.next->prev = &t;
    sched->transfer_list = &t;
    sched->transfers++;
    c->wait_transfer = &t;
    int rc = co_park(c, WAIT_CURL, -1, 0);
    return rc < 0 ? rc : (int)t.result;
}

/* ---- the scheduler's life ------------------------------------------------ */

#ifdef CO_TSAN
/* Section 1: under TSan, asynchronous signals wait for epoll_pwait. The
 * synchronous ones (a fault, abort) cannot wait and stay unblocked. */
static void tsan_block_async_signals(struct co_sched *s)
{
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL,
                                       SIGTRAP, SIGSYS, SIGABRT};
    sigset_t async;
    sigfillset(&async);
    for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++)
        sigdelset(&async, sync_signals[i]);
    pthread_sigmask(SIG_BLOCK, &async, &s->tsan_wait_mask);
}
#endif

int co_sched_init(const struct co_options *opts)
{
    if (sched)
        return -EBUSY;
    struct co_sched *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    long page = sysconf(_SC_PAGESIZE);
    s->page_size = page > 0 ? (size_t)page : 4096;
    size_t size = opts && opts->stack_size ? opts->stack_size
                                           : CO_DEFAULT_STACK_SIZE;
    if (size < CO_MIN_STACK)
        size = CO_MIN_STACK;
    s->stack_size = (size + s->page_size - 1) / s->page_size * s->page_size;
    s->pool.wanted = opts && opts->workers > 0 ? opts->workers
                                               : CO_DEFAULT_WORKERS;
    s->next_id = 1;
    s->loop_thread = pthread_self();
#ifdef CO_TSAN
    tsan_block_async_signals(s);
#endif
    timer_heap_init(&s->timers);
    timer_node_init(&s->curl_timer);
    pthread_mutex_init(&s->pool.lock, NULL);
    pthread_cond_init(&s->pool.work, NULL);
    s->pool.efd = -1;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    int rc = s->epfd < 0 ? -errno : 0;
    if (rc == 0) {
        s->pool.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->pool.efd < 0)
            rc = -errno;
    }
    sched = s;
    if (rc == 0) {
        struct co_fd *f = fd_slot(s->pool.efd);
        if (!f)
            rc = -ENOMEM;
        else {
            f->kind = FD_WAKEUP;
            rc = fd_ctl(s->pool.efd, f, EPOLLIN);
        }
    }
    if (rc < 0)
        co_sched_free();
    return rc;
}

void co_sched_free(void)
{
    struct co_sched *s = sched;
    if (!s || s->running)
        return;
    pool_stop(&s->pool);
    /* Transfers of coroutines that will never run again. */
    while (s->transfer_list) {
        struct co_transfer *t = s->transfer_list;
        transfer_unlink(t);
        curl_multi_remove_handle(s->multi, t->easy);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi); /* may still call curl_socket_cb */
    while (s->all) {
        struct co *c = s->all;
        co_stack_free(c);
#ifdef CO_TSAN
        if (c->tsan_fiber)
            __tsan_destroy_fiber(c->tsan_fiber);
#endif
        co_block_free(c);
    }
    timer_heap_free(&s->timers);
    if (s->pool.efd >= 0)
        close(s->pool.efd);
    if (s->epfd >= 0)
        close(s->epfd);
    pthread_mutex_destroy(&s->pool.lock);
    pthread_cond_destroy(&s->pool.work);
#ifdef CO_TSAN
    pthread_sigmask(SIG_SETMASK, &s->tsan_wait_mask, NULL);
#endif
    free(s->fds);
    free(s);
    sched = NULL;
}
