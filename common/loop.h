/* loop: a small callback event loop over epoll, in the style of a library.
 *
 * Everything 04-select wrote inline in its main loop (which sockets to
 * watch, which deadline is next, who to call when something is ready) moves
 * here, behind five verbs:
 *
 *   loop_watch(loop, fd, LOOP_READABLE, fn, arg)  call fn(loop, fd, ev, arg)
 *                                                 whenever fd is readable
 *   loop_unwatch(loop, fd)                        forget fd (before close!)
 *   loop_timer_arm(loop, &timer, ms)              call timer's fn after ms
 *   loop_timer_cancel(loop, &timer)               never mind
 *   loop_run(loop) / loop_stop(loop)              turn the crank / stop it
 *
 * Two users stand on it: 05-epoll-callbacks, whose server is a chain of
 * callbacks, and 06-coroutines, whose scheduler registers one callback per
 * waiting coroutine whose only job is to resume it (asyncio's Task is such
 * a callback on its loop). libcurl's multi socket API is glued onto it
 * once, in common/curl_loop.
 *
 * The caller keeps its state in its own structs and gets it back through the
 * void *arg it registered: the loop knows nothing about HTTP, connections or
 * curl. That is the whole bargain of callbacks: the loop is simple and
 * reusable, and every user pays by splitting its logic into functions that
 * must find their state again each time they are called.
 *
 * Level-triggered, on purpose. epoll can report "fd is readable" (level:
 * every epoll_wait says so again until the data is read) or "fd became
 * readable" (edge: said once). This loop is level-triggered, like select()
 * in 04: a callback may read one chunk and return, and if more is waiting
 * the next turn calls it again. Nothing is lost if a callback stops early,
 * which is the property a teaching server wants. The cost is an extra
 * epoll_wait result for data a callback chose not to read yet, and the
 * obligation to stop watching what you are not ready to handle (a socket
 * whose peer hung up stays "readable" forever): loop_watch with events 0
 * pauses a registration for exactly that. Edge-triggered would save a few
 * system calls under heavy load but oblige every callback to drain the fd
 * until EAGAIN, or the fd goes silent for good: an easy bug to write and a
 * hard one to find.
 *
 * Stale events. epoll_wait hands back a batch of events, and callbacks run
 * one after another. If an earlier callback in the batch closes fd 7 and a
 * later one accepts a new connection that the kernel numbers 7 again, the
 * batch still holds an event "7 is readable" that was about the old
 * connection. Redis and others learned this the hard way. Here every
 * registration gets a generation number, stored in the event next to the
 * fd; an event whose generation is no longer the fd's current one is
 * dropped (and counted: loop_stale_events). Level triggering makes dropping
 * safe: if the new owner's fd is really ready, the next turn says so again.
 *
 * Timers are deadlines on CLOCK_MONOTONIC (common/timer's heap): a clock
 * change never fires or delays them. The loop sleeps in epoll_wait exactly
 * until the earliest one; there is no polling interval. A loop_timer is
 * embedded in the caller's struct, so arming one never allocates.
 *
 * One thread: nothing here is thread-safe, and nothing needs to be. */
#ifndef LOOP_H
#define LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "timer.h"

struct loop;

/* What a callback is told, and what loop_watch asks for. */
enum {
    LOOP_READABLE = 1 << 0,
    LOOP_WRITABLE = 1 << 1,
    LOOP_ERROR = 1 << 2, /* reported only: the peer hung up or the socket has
                            an error; it comes with the watched READABLE/
                            WRITABLE bits, so the next read or write says why */
};

/* Called when fd is ready for (some of) the events it is watched for. */
typedef void (*loop_io_fn)(struct loop *loop, int fd, unsigned events,
                           void *arg);

/* Called once when a timer's deadline has passed. */
typedef void (*loop_timer_fn)(struct loop *loop, void *arg);

struct loop_timer {
    struct timer_node node; /* the heap's; do not touch */
    loop_timer_fn fn;
    void *arg;
};

/* A new loop (an epoll instance and an empty timer heap), or NULL with
 * errno set. */
struct loop *loop_new(void);

/* Frees the loop. Registrations and armed timers are simply forgotten: their
 * owners are not called. */
void loop_free(struct loop *loop);

/* Watches fd for events (LOOP_READABLE | LOOP_WRITABLE): fn(loop, fd, ready,
 * arg) runs on each turn of the loop while fd is ready. Watching an fd that
 * is already watched replaces its events, fn and arg (that is how a
 * connection goes from "waiting to read" to "waiting to write"). events 0
 * pauses the registration: no callbacks, not even for errors, until the
 * next loop_watch. Watching again for the same events costs no system
 * call. 0, or -1 with errno (ENOMEM, or epoll_ctl's errno). */
int loop_watch(struct loop *loop, int fd, unsigned events, loop_io_fn fn,
               void *arg);

/* Stops watching fd. Call it BEFORE close(fd): the loop must know that the
 * next fd with this number belongs to someone else. Harmless on an fd that
 * is not watched. Events for fd already fetched in the current batch are
 * dropped. */
void loop_unwatch(struct loop *loop, int fd);

/* loop_unwatch for an fd its owner has just closed: epoll dropped the fd
 * by itself when the last descriptor of its socket was closed, so the
 * loop forgets the registration without a system call (one epoll_ctl
 * less per connection). Only for an fd never dup'ed nor inherited by a
 * child: otherwise the socket lives on in epoll and may still be
 * reported (as a stale event, then dropped). Call it before the next
 * accept or open can reuse the number. */
void loop_forget_closed(struct loop *loop, int fd);

/* Prepares a timer: fn(loop, arg) will run when it fires. Call once. */
void loop_timer_init(struct loop_timer *t, loop_timer_fn fn, void *arg);

/* Arms t to fire delay_ms from now (re-arms it if already armed). Timers
 * due at the same moment fire in the order they were armed. 0, or -1 with
 * errno ENOMEM. */
int loop_timer_arm(struct loop *loop, struct loop_timer *t,
                   uint64_t delay_ms);

/* Arms t for an absolute deadline on timer_now_ms()'s clock. */
int loop_timer_arm_at(struct loop *loop, struct loop_timer *t,
                      uint64_t deadline_ms);

/* Disarms t; harmless if it is not armed. After this, t's fn is not called
 * even if its deadline already passed in the current turn. */
void loop_timer_cancel(struct loop *loop, struct loop_timer *t);

bool loop_timer_armed(const struct loop_timer *t);

/* Runs the loop: wait (epoll_wait, timeout = the earliest deadline), call
 * the callbacks of every ready fd, then of every expired timer, repeat.
 * Returns 0 after loop_stop, or when nothing is watched and no timer is
 * armed (nothing could ever happen again); -1 with errno if epoll_wait
 * fails for a reason other than EINTR. */
int loop_run(struct loop *loop);

/* One turn of loop_run, for a caller with work of its own between turns
 * (06's scheduler runs its ready coroutines there): waits at most
 * timeout_ms (-1: until the earliest timer, or for ever if none is armed),
 * calls the callbacks of the ready fds, then of the expired timers. 0
 * (also after a signal interrupted the wait), or -1 with errno if
 * epoll_wait failed. */
int loop_run_once(struct loop *loop, int timeout_ms);

/* While the loop sleeps in epoll_wait, the thread's signal mask is *mask
 * (epoll_pwait); at all other times it is whatever the thread set. For a
 * thread that keeps asynchronous signals blocked except while it waits
 * (06 under ThreadSanitizer: coro_san.h says why). NULL: plain epoll_wait.
 * The mask is copied. */
void loop_set_wait_sigmask(struct loop *loop, const sigset_t *mask);

/* The callback fd is watched with (paused or not), or NULL if it is not
 * watched: lets a user refuse an fd someone else registered. */
loop_io_fn loop_watcher(const struct loop *loop, int fd);

/* Marks fd, a listening socket that several worker processes watch in
 * their own loops (05 and 06 --workers --shared-listener), to be added to
 * epoll with EPOLLEXCLUSIVE: a new client then wakes one waiting worker
 * (or a few), not every one. The mark is the process's (one loop per
 * worker process) so that it reaches 06, whose listener is watched
 * through coro_fd, as well as 05's loop_watch; loop_unwatch(fd) clears it,
 * so a reused descriptor number does not inherit it. -1 clears it. */
void loop_exclusive_fd(int fd);

/* Makes loop_run return once the callback that calls it returns: no further
 * callback runs in this turn. Callable from any callback. */
void loop_stop(struct loop *loop);

/* How many events were dropped because their fd changed owner within a
 * batch (see "Stale events" above). For logs and tests. */
unsigned long loop_stale_events(const struct loop *loop);

#endif
