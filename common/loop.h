/* loop: a small callback event loop, in the style of a library, over
 * epoll (the default) or io_uring.
 *
 * Everything 04-select wrote inline in its main loop (which sockets to
 * watch, which deadline is next, who to call when something is ready) moves
 * here, behind a few verbs:
 *
 *   loop_watch(loop, fd, LOOP_READABLE, fn, arg)  call fn(loop, fd, ev, arg)
 *                                                 whenever fd is readable
 *   loop_unwatch(loop, fd)                        forget fd (before close!)
 *   loop_recv(loop, fd, buf, len, fn, arg)        read into buf, then call
 *                                                 fn(loop, fd, n, arg)
 *   loop_send(loop, fd, buf, len, fn, arg)        send buf, then call fn
 *   loop_accept(loop, fd, fn, arg)                call fn with each client
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
 * Readiness and completion. A kernel can tell a program about I/O in two
 * ways. epoll (like select and poll) reports readiness: "fd 7 is readable
 * now, you may read it without waiting", and the program then makes the
 * read system call itself. io_uring reports completion: the program hands
 * the kernel the whole operation ("receive on fd 7"), and later learns
 * "the receive on fd 7 is done: 93 bytes". One answer is "you may read",
 * the other "I have read". loop_watch is the readiness verb and works on
 * both backends (io_uring can poll too). loop_recv, loop_send and
 * loop_accept are the completion verbs, and they are the seam that lets
 * one server run on either kernel interface: the caller says "read into
 * this buffer, call me back with the result". On epoll the loop waits
 * until fd is readable and makes the recv itself, just before the
 * callback (asyncio's selector loop implements loop.sock_recv the same
 * way); on io_uring the kernel receives while nobody waits, and the loop
 * only copies the bytes out. 05 and 06 use the completion verbs for their
 * clients, so their code is the same on both; 04 keeps its own readiness
 * loop on select().
 *
 * The backends (common/loop_epoll.c, common/loop_uring.c) sit behind this
 * one API, as Redis's ae.c has ae_epoll.c and ae_select.c behind it: each
 * file argues its own trade-offs. loop_open picks one by name and falls
 * back to epoll, saying why in one line, when io_uring cannot be had
 * (built without liburing; the kernel refuses it: EPERM under a
 * container's seccomp filter or kernel.io_uring_disabled, ENOSYS on a
 * kernel without it).
 *
 * Whose memory. A buffer given to loop_recv or loop_send stays the
 * caller's: the loop touches it only inside that call or just before it
 * calls fn, and never after loop_recv_cancel, loop_send_cancel,
 * loop_unwatch or loop_forget_closed. That is free on epoll, where the
 * loop does the read itself; on io_uring, where the kernel works while the
 * caller does other things, the loop keeps that promise by giving the
 * kernel only memory it owns (received bytes land in the loop's own
 * buffers and are copied out; an answer is copied before it is sent), and
 * by keeping that memory until the kernel says it is done with it. So a
 * connection closed while its receive is in flight frees nothing the
 * kernel may still write.
 *
 * Level-triggered, on purpose. epoll can report "fd is readable" (level:
 * every epoll_wait says so again until the data is read) or "fd became
 * readable" (edge: said once). This loop is level-triggered, like select()
 * in 04, on both backends: a callback may read one chunk and return, and
 * if more is waiting the next turn calls it again. Nothing is lost if a
 * callback stops early, which is the property a teaching server wants.
 * The cost is an extra report for data a callback chose not to read yet,
 * and the obligation to stop watching what you are not ready to handle (a
 * socket whose peer hung up stays "readable" forever): loop_watch with
 * events 0 pauses a registration for exactly that. Edge-triggered would
 * save a few system calls under heavy load but oblige every callback to
 * drain the fd until EAGAIN, or the fd goes silent for good: an easy bug
 * to write and a hard one to find.
 *
 * Stale events. The kernel hands back a batch of events (or completions),
 * and callbacks run one after another. If an earlier callback in the
 * batch closes fd 7 and a later one accepts a new connection that the
 * kernel numbers 7 again, the batch still holds an event "7 is readable"
 * that was about the old connection. Redis and others learned this the
 * hard way. Here every registration gets a generation number, carried by
 * everything the kernel reports back (epoll's event data, io_uring's
 * user_data) next to the fd; a report whose generation is no longer the
 * fd's current one is dropped (and counted: loop_stale_events). Level
 * triggering makes dropping safe: if the new owner's fd is really ready,
 * the next turn says so again.
 *
 * Timers are deadlines on CLOCK_MONOTONIC (common/timer's heap): a clock
 * change never fires or delays them. The loop sleeps in the kernel exactly
 * until the earliest one; there is no polling interval. A loop_timer is
 * embedded in the caller's struct, so arming one never allocates.
 *
 * One thread: nothing here is thread-safe, and nothing needs to be. */
#ifndef LOOP_H
#define LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* Called once when a completion verb is done (loop_recv, loop_send), or
 * for each client loop_accept took: result is what the system call would
 * have returned, a negative errno on failure. */
typedef void (*loop_done_fn)(struct loop *loop, int fd, ssize_t result,
                             void *arg);

/* Called once when a timer's deadline has passed. */
typedef void (*loop_timer_fn)(struct loop *loop, void *arg);

struct loop_timer {
    struct timer_node node; /* the heap's; do not touch */
    loop_timer_fn fn;
    void *arg;
};

/* The kernel interfaces a loop can stand on (see "Readiness and
 * completion" above). */
enum loop_backend {
    LOOP_BACKEND_EPOLL,
    LOOP_BACKEND_URING,
};

/* A new loop on epoll (an epoll instance and an empty timer heap), or NULL
 * with errno set. */
struct loop *loop_new(void);

/* A new loop on the given backend, or NULL with errno: for io_uring, what
 * the kernel said (EPERM: a seccomp filter, as containers set, or
 * kernel.io_uring_disabled; ENOSYS: a kernel without io_uring; EINVAL: one
 * too old for what the backend needs, Linux 5.19), or ENOTSUP when this
 * program was built without liburing. */
struct loop *loop_new_backend(enum loop_backend backend);

/* The loop a server asked for by name ("epoll" or "uring", from
 * --backend): that backend, or, when io_uring cannot be had, epoll after
 * one line on stderr saying why. NULL with errno only if epoll fails too,
 * memory runs out (ENOMEM), or for an unknown name (EINVAL). */
struct loop *loop_open(const char *backend);

/* "epoll" or "uring": what the loop runs on. */
const char *loop_backend_name(const struct loop *loop);

/* Frees the loop. Registrations and armed timers are simply forgotten: their
 * owners are not called. On io_uring it first cancels what is in flight
 * and waits (at most a second) until the kernel has let go of the loop's
 * buffers. */
void loop_free(struct loop *loop);

/* Watches fd for events (LOOP_READABLE | LOOP_WRITABLE): fn(loop, fd, ready,
 * arg) runs on each turn of the loop while fd is ready. Watching an fd that
 * is already watched replaces its events, fn and arg (that is how a
 * connection goes from "waiting to read" to "waiting to write"). events 0
 * pauses the registration: no callbacks, not even for errors, until the
 * next loop_watch. Watching again for the same events costs no system
 * call. 0, or -1 with errno (ENOMEM, EBADF, EBUSY if the loop moves fd's
 * bytes or accepts on it, or epoll_ctl's errno). */
int loop_watch(struct loop *loop, int fd, unsigned events, loop_io_fn fn,
               void *arg);

/* Forgets fd, whatever it was registered for (a watch, a receive or send
 * in flight, accepting): its callbacks are not called any more, and
 * buffers given with it are not touched again. Call it BEFORE close(fd):
 * the loop must know that the next fd with this number belongs to someone
 * else. Harmless on an fd that is not registered. Events for fd already
 * fetched in the current batch are dropped. */
void loop_unwatch(struct loop *loop, int fd);

/* loop_unwatch for an fd its owner has just closed: epoll dropped the fd
 * by itself when the last descriptor of its socket was closed, so the
 * loop forgets the registration without a system call (one epoll_ctl
 * less per connection); io_uring's cancellations go with the next
 * submission. Only for an fd never dup'ed nor inherited by a child:
 * otherwise the socket lives on in epoll and may still be reported (as a
 * stale event, then dropped). Call it before the next accept or open can
 * reuse the number. */
void loop_forget_closed(struct loop *loop, int fd);

/* ---- Completion: the loop moves the bytes ----
 *
 * For a stream socket whose owner wants results, not readiness. One
 * receive and one send may be outstanding per fd, each until its fn runs
 * or it is cancelled. fn is never called from inside the call that asked
 * (even when the result is known at once, as when epoll's send fits): it
 * runs later in the same turn, so an owner never sees its own callback
 * re-enter it. */

/* Receives the next bytes fd delivers into buf (at most len), then calls
 * fn(loop, fd, n, arg): n > 0 bytes, 0 when the peer closed, or -errno.
 * len 0 (buf may be NULL) only waits until something is there: fn gets 1
 * (bytes, or the end, which the next receive reports), or -errno; if fn
 * then asks for the bytes, they come in the same turn (an idle owner
 * need hold no buffer, and a request still costs one wait). On
 * epoll: a wait for readable, then recv(2) just before fn. On io_uring: a
 * multishot receive stays armed and bytes may arrive before anyone asks;
 * the loop keeps at most LOOP_URING_PENDING_MAX buffers of them per fd
 * (then stops receiving there until the owner reads), and an end or error
 * is reported after the bytes that came before it. 0, or -1 with errno
 * (EBUSY: a receive is outstanding, or fd is watched or accepting;
 * ENOMEM). */
int loop_recv(struct loop *loop, int fd, void *buf, size_t len,
              loop_done_fn fn, void *arg);

/* Withdraws fd's outstanding receive, if any: fn is not called, buf not
 * touched. Bytes that arrive meanwhile wait for the next loop_recv. No
 * system call. */
void loop_recv_cancel(struct loop *loop, int fd);

/* Sends some of buf (at most len; on io_uring at most
 * LOOP_URING_SEND_MAX), waiting until fd can take it, then calls fn with
 * the count sent (> 0, maybe less than len: send the rest next) or -errno.
 * MSG_NOSIGNAL: a vanished peer is -EPIPE, never SIGPIPE. On epoll the
 * send is tried at once (an answer almost always fits) and fd is watched
 * for writable only when it does not; on io_uring buf is copied, and the
 * send goes out with the turn's one submission. 0, or -1 with errno
 * (EBUSY: a send is outstanding, or fd is watched or accepting; ENOMEM). */
int loop_send(struct loop *loop, int fd, const void *buf, size_t len,
              loop_done_fn fn, void *arg);

/* Withdraws fd's outstanding send: fn is not called, buf not touched. The
 * bytes may still go out (on io_uring the kernel may hold the loop's copy
 * already), so only a close should follow. */
void loop_send_cancel(struct loop *loop, int fd);

/* Accepts clients on a non-blocking listening socket, calling fn(loop,
 * fd, client, arg) for each, a non-blocking close-on-exec socket counted
 * by net_accepted, until loop_unwatch(fd). On epoll: readable, then at
 * most NET_ACCEPT_BATCH accept4 calls per turn; on io_uring: a multishot
 * accept. A failure (EMFILE...) is fn with -errno, after which the loop
 * stops accepting until the owner calls loop_accept again (05 and 06
 * pause NET_ACCEPT_PAUSE_MS first). A client accepted after its owner
 * stopped (the kernel raced it) is closed. 0, or -1 with errno. */
int loop_accept(struct loop *loop, int fd, loop_done_fn fn, void *arg);

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

/* Runs the loop: wait (timeout = the earliest deadline), call the
 * callbacks of every ready fd and done operation, then of every expired
 * timer, repeat. Returns 0 after loop_stop, or when nothing is registered
 * and no timer is armed (nothing could ever happen again); -1 with errno
 * if the wait fails for a reason other than EINTR. */
int loop_run(struct loop *loop);

/* One turn of loop_run, for a caller with work of its own between turns
 * (06's scheduler runs its ready coroutines there): waits at most
 * timeout_ms (-1: until the earliest timer, or for ever if none is armed),
 * calls the callbacks of the ready fds and the done operations, then of
 * the expired timers. A turn that begins with operations already done
 * (say, a send that fitted at once) delivers them without waiting, but
 * never two turns in a row: the kernel is asked at least every other
 * turn, so a chain of instant completions cannot starve the other fds. 0
 * (also after a signal interrupted the wait), or -1 with errno if the
 * wait failed. */
int loop_run_once(struct loop *loop, int timeout_ms);

/* While the loop sleeps in the kernel, the thread's signal mask is *mask
 * (epoll_pwait, or io_uring_enter's sigmask); at all other times it is
 * whatever the thread set. For a
 * thread that keeps asynchronous signals blocked except while it waits
 * (06 under ThreadSanitizer: coro_san.h says why). NULL: plain epoll_wait.
 * The mask is copied. */
void loop_set_wait_sigmask(struct loop *loop, const sigset_t *mask);

/* The callback fd is watched with (paused or not), or NULL if it is not
 * watched (or used by the completion verbs): lets a user refuse an fd
 * someone else registered. */
loop_io_fn loop_watcher(const struct loop *loop, int fd);

/* Marks fd, a listening socket that several worker processes watch in
 * their own loops (05 and 06 --workers --shared-listener), to be added to
 * epoll with EPOLLEXCLUSIVE: a new client then wakes one waiting worker
 * (or a few), not every one. The mark is the process's (one loop per
 * worker process) so that it reaches 06's listener as well as 05's;
 * loop_unwatch(fd) clears it, so a reused descriptor number does not
 * inherit it. -1 clears it. io_uring's accept needs no mark: the kernel
 * queues it as an exclusive waiter by itself. */
void loop_exclusive_fd(int fd);

/* Makes loop_run return once the callback that calls it returns: no further
 * callback runs in this turn. Callable from any callback. */
void loop_stop(struct loop *loop);

/* How many events were dropped because their fd changed owner within a
 * batch (see "Stale events" above). For logs and tests. */
unsigned long loop_stale_events(const struct loop *loop);

/* The io_uring backend's sizes (common/loop_uring.c argues them). */
#define LOOP_URING_ENTRIES 256      /* submission queue; a turn that queues
                                       more submits early: one more
                                       io_uring_enter */
#define LOOP_URING_CQ_ENTRIES 4096  /* completion queue; past it the kernel
                                       keeps the overflow
                                       (IORING_FEAT_NODROP) for the next
                                       turn */
#define LOOP_URING_BUFS 1024        /* provided receive buffers per loop... */
#define LOOP_URING_BUF_SIZE 2048    /* ...of this size: 2 MiB in all */
#define LOOP_URING_PENDING_MAX 4    /* buffers of bytes one fd may hold
                                       unread; past it its receive is
                                       cancelled until the owner reads */
#define LOOP_URING_SEND_MAX (64 * 1024) /* bytes one loop_send copies */

#endif
