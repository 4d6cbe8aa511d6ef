/* coro: a small coroutine scheduler on ucontext and common/loop (05's
 * event loop: epoll or io_uring, and a timer heap).
 *
 * This is asyncio's event loop written out in C, so a student can see that
 * nothing in `async`/`await` is magic. The vocabulary maps one to one:
 *
 *   asyncio                              coro
 *   ----------------------------------   -----------------------------------
 *   asyncio.run(main())                  co_sched_init; co_spawn; co_sched_run
 *                                        (but see co_sched_run: asyncio.run
 *                                        cancels what main left pending;
 *                                        co_sched_run waits for it)
 *   asyncio.create_task(coro)            co_spawn(fn, arg)
 *   await task                           co_join(task, -1, &result)
 *   asyncio.wait_for(task, timeout)      co_join(task, timeout_ms, &result)
 *   asyncio.gather(*tasks)               co_gather(tasks, n, -1, results)
 *   task.cancel() / CancelledError       co_cancel(task) / a wait returns
 *                                        -ECANCELED
 *   await asyncio.sleep(s)               co_sleep(ms)
 *   await asyncio.sleep(0)               co_yield()
 *   await reader.read(n)                 co_read(fd, buf, n, timeout_ms)
 *   writer.write(b); await drain()       co_write(fd, buf, n, timeout_ms)
 *   await loop.sock_recv(sock, n)        co_recv(fd, buf, n, timeout_ms)
 *   await loop.sock_sendall(sock, b)     co_send(fd, buf, n, timeout_ms)
 *   await loop.sock_accept(sock)         co_accept(fd, take, timeout_ms)
 *   loop.add_reader (a Future on an fd)  co_wait_readable(fd, timeout_ms)
 *   await loop.run_in_executor(None, f)  co_run_blocking(f, arg, &result)
 *   await client.put(...)  (aiohttp)     co_curl_perform(easy)
 *
 * The model. A coroutine is a function with its own stack. It runs until it
 * has to wait (a sleep, a socket, another coroutine, a thread, an HTTP
 * transfer); the wait saves its registers (_setjmp, or swapcontext: see
 * "Switching" below) and returns to the
 * scheduler, which runs the next ready coroutine. A wait registers a
 * callback on the event loop whose only job is to mark the coroutine ready
 * again (asyncio's Task is such a callback on its loop). When nothing is
 * ready the scheduler turns the loop: it sleeps in epoll_wait (or
 * io_uring_enter, --backend uring) until a descriptor is ready or the
 * earliest deadline is due, the callbacks mark their coroutines ready,
 * and the scheduler runs them. The code of a
 * coroutine reads like blocking code; only its waits are different.
 *
 * Everything runs on one thread, the one that calls co_sched_run: a
 * coroutine is never interrupted, it only gives the CPU away at the waits
 * listed below. So coroutines need no locks between them, and a coroutine
 * that computes for a second (or calls nanosleep) stops every other one for
 * that second. co_run_blocking is the way out for such work.
 *
 * Waits. Every function that may suspend the caller returns 0 (or a byte
 * count, or a CURLcode) on success and a negative errno on failure, in the
 * style of libdill:
 *   -ETIMEDOUT  the wait's timeout passed first (asyncio.TimeoutError)
 *   -ECANCELED  someone called co_cancel on this coroutine (CancelledError)
 *   -EPERM      called outside a coroutine (from main, or a worker thread)
 *   others      what the system call said (-ECONNRESET, -EBADF, -ENOMEM...)
 * timeout_ms < 0 means "no timeout"; 0 means "only if it is ready now".
 *
 * Cancellation is cooperative and one-shot, as in asyncio. co_cancel(c)
 * makes c's current wait return -ECANCELED at once (or, if c is not waiting
 * right now, its next wait). c then runs its own cleanup code, which may
 * wait again normally, and returns. A coroutine that never waits cannot be
 * cancelled; a second co_cancel before c saw the first is merged into it.
 *
 * Ownership.
 *  - co_spawn returns a handle. Exactly one of co_join, co_gather or
 *    co_detach must be called on it, once; after that the handle is gone.
 *  - A coroutine's stack (an mmap'd region, stack_size bytes, with a
 *    PROT_NONE guard page below it so an overflow faults instead of
 *    corrupting memory) is freed as soon as the coroutine returns. The
 *    small control block that holds its result lives on until co_join
 *    reads it, or is freed at once if the coroutine was detached. One
 *    guard page stops frames smaller than a page; a larger frame is
 *    caught only in code built with -fstack-clash-protection
 *    (coro_stack.c). With a shared stack (below) the region is the
 *    scheduler's, and a coroutine owns only the copy of its frames.
 *  - Descriptors belong to the caller. The scheduler owns only its loop's
 *    epoll fd (or io_uring ring), an eventfd for the worker pool and,
 *    through libcurl, the
 *    sockets of HTTP transfers.
 *
 * Switching. A coroutine is built with getcontext/makecontext (POSIX until
 * 2008, a glibc extension since) and then switched to and from in one of
 * two ways (coro_switch.c):
 *   CO_SWITCH_SWAPCONTEXT  the textbook switch, glibc's swapcontext (GNU
 *       Pth's "mcsc": makecontext + swapcontext), which also saves and
 *       restores the signal mask: one rt_sigprocmask system call per
 *       switch, a few hundred ns.
 *   CO_SWITCH_SETJMP (the default)  _setjmp/_longjmp once a coroutine has
 *       been entered the first time (the switch of GNU Pth's "sjlj"): a
 *       few registers saved in user space, no system call, tens of ns.
 * What setjmp gives up is the signal mask per coroutine: with it, every
 * coroutine runs with the thread's mask, and a coroutine that blocks a
 * signal blocks it for all of them until it unblocks it. That is fine
 * here: no coroutine changes its mask, signals are taken by a handler that
 * writes to a pipe (common/shutdown) read by a coroutine like any socket,
 * and in a ThreadSanitizer build the mask is the loop thread's, changed
 * only inside epoll_pwait (coro_san.h). A program whose coroutines must
 * each keep their own mask should pick CO_SWITCH_SWAPCONTEXT.
 *
 * Stacks (coro_stack.c). By default every coroutine has a stack of its
 * own, and a parked coroutine keeps its frames where they are: at least
 * one page of memory (4 KiB) each. With CO_STACK_SHARED all of them run on
 * one stack, the scheduler's (the copy stack of Tencent's libco and of
 * libaco): a coroutine that parks leaves its frames there, and when
 * another one is to run there, the scheduler first copies the parked one's
 * frames (only the bytes it used, a few hundred for a connection waiting
 * for its bill) into a buffer of their size, and copies the other one's
 * back. A parked coroutine then costs its control block and its saved
 * bytes; a switch to another coroutine costs two memcpy of their sizes.
 * The rule it imposes on code: while a coroutine is parked, its locals are
 * not at their addresses (another coroutine's frames are), so nothing but
 * the coroutine itself may use a pointer into its stack until it runs
 * again: no loop callback, no other coroutine, no worker thread. A record
 * that others reach while the owner waits (a node in a list of waiters, a
 * result a child writes, a job a thread reads) must live in the heap. The
 * one exception is co_call_on_loop_stack: the caller does not park, and
 * its frames stay put during the call. stack_size is the most a coroutine
 * may use in both modes: past it, the guard page faults.
 *
 * Global state: exactly one scheduler exists at a time, and coro.c keeps a
 * single pointer to it (`sched`, shared with the scheduler's other files
 * through the private coro_impl.h) so that co_sleep and friends need no
 * scheduler argument. It is created by co_sched_init and destroyed by
 * co_sched_free. The two parts that start on first use, the worker pool
 * (coro_pool.c) and the curl multi (coro_curl.c), each keep a pointer in
 * their own file and end with the scheduler; nothing else is global.
 *
 * Files: the core is coro.c (run loop, park and wake, switch, spawn),
 * coro_sched.c (init and free), coro_switch.c, coro_stack.c and
 * coro_impl.h; built on it, coro_task.c (join, gather, cancel), coro_fd.c
 * (descriptors), coro_pool.c, coro_curl.c and coro_deep.c
 * (co_call_on_loop_stack); coro_san.h tells the sanitizers about switches.
 *
 * Threads: every co_* function must be called on the thread that runs
 * co_sched_run (and co_sched_init/co_spawn from that thread before it).
 * The only code that runs elsewhere is the function given to
 * co_run_blocking. */
#ifndef CORO_H
#define CORO_H

#include <curl/curl.h>
#include <stddef.h>
#include <sys/types.h>

#define CO_DEFAULT_STACK_SIZE (64 * 1024)
#define CO_DEFAULT_WORKERS 4

/* How to switch stacks (see "Switching" above). */
enum co_switch {
    CO_SWITCH_DEFAULT = 0,  /* CO_SWITCH_SETJMP */
    CO_SWITCH_SETJMP,
    CO_SWITCH_SWAPCONTEXT,
};

/* Where coroutines run (see "Stacks" above). */
enum co_stack {
    CO_STACK_DEFAULT = 0,   /* CO_STACK_SEPARATE */
    CO_STACK_SEPARATE,
    CO_STACK_SHARED,
};

struct co_options {
    size_t stack_size; /* bytes per coroutine, or of the shared stack,
                          rounded up to whole pages (at least 16 KiB);
                          0 = CO_DEFAULT_STACK_SIZE */
    int workers;       /* threads for co_run_blocking (started on first
                          use); 0 = CO_DEFAULT_WORKERS */
    enum co_switch switch_kind; /* 0 = CO_SWITCH_SETJMP */
    enum co_stack stack_kind;   /* 0 = CO_STACK_SEPARATE */
    const char *backend; /* the loop's kernel interface, "epoll" or
                            "uring" (common/loop.h, loop_open: epoll,
                            said on stderr, if io_uring is refused);
                            NULL = "epoll" */
};

/* A coroutine, as its creator holds it: asyncio's Task. Opaque. */
struct co;

/* What a coroutine runs. Its return value is what co_join hands back; to
 * return an int, return (void *)(intptr_t)n. */
typedef void *(*co_fn)(void *arg);

/* ---- the scheduler (the event loop) ---------------------------------- */

/* Creates the one scheduler: its event loop (common/loop) and the ready
 * queue. opts may be NULL for the defaults. 0, or a negative errno
 * (-EBUSY if a scheduler already exists). In a ThreadSanitizer build it
 * also blocks asynchronous signals on the calling thread until
 * co_sched_free; the loop takes them while it waits (coro_san.h). */
int co_sched_init(const struct co_options *opts);

/* "epoll" or "uring": what the scheduler's loop runs on (its backend, or
 * epoll after io_uring was refused); NULL without a scheduler. */
const char *co_sched_backend(void);

/* The loop: runs ready coroutines, sleeps in the kernel until the next
 * descriptor event or deadline, wakes whoever waited for it, and repeats
 * until every coroutine has returned (asyncio.run). Returns 0 then;
 * -EDEADLK if coroutines remain but nothing could ever wake them (say, two
 * coroutines joining each other); another negative errno if the loop's
 * wait failed.
 * Coroutines left over stay suspended until co_sched_free. */
int co_sched_run(void);

/* Destroys the scheduler: stops the worker threads (after the functions
 * they are running return), aborts pending HTTP transfers, frees every
 * coroutine that is left without running it further, frees the loop.
 * Handles become invalid. Safe to call without a scheduler. */
void co_sched_free(void);

/* ---- tasks --------------------------------------------------------------- */

/* Creates a coroutine that will run fn(arg) and puts it at the end of the
 * ready queue; it starts when the current coroutine next waits (or when
 * co_sched_run starts, if called from main). asyncio.create_task. Returns
 * its handle, or NULL with errno (ENOMEM, EINVAL without a scheduler). */
struct co *co_spawn(co_fn fn, void *arg);

/* Gives up the handle: the coroutine runs on, and everything it owns is
 * freed when it returns; its result is dropped. A fire-and-forget task.
 * 0, or -EINVAL if the handle was already joined or detached. */
int co_detach(struct co *c);

/* Waits until c returns and stores its result in *result (if result is not
 * NULL): `await task`. With timeout_ms >= 0 this is asyncio.wait_for: if c
 * is not done in time, c is cancelled, co_join waits for its cleanup to
 * finish and returns -ETIMEDOUT. If the caller itself is cancelled while
 * waiting, c is cancelled too (asyncio does the same), awaited, and
 * co_join returns -ECANCELED. In every one of these cases the handle is
 * consumed and *result holds whatever c returned.
 * Other errors leave the handle untouched: -EDEADLK (joining yourself),
 * -EINVAL (already joined or detached), -EPERM (c is still running and the
 * caller is not a coroutine; main may join coroutines that have finished,
 * e.g. after co_sched_run returns). */
int co_join(struct co *c, int timeout_ms, void **result);

/* Joins n distinct coroutines: asyncio.gather. results (may be NULL) gets
 * each one's result in order. NULL handles are skipped (their result is
 * NULL), so a failed co_spawn can go straight into the array. timeout_ms
 * bounds the whole gather. On a timeout or a cancellation every coroutine
 * that has not finished is cancelled and awaited, then -ETIMEDOUT or
 * -ECANCELED is returned. All handles are consumed in every case but
 * -EPERM/-EINVAL/-EDEADLK, which are checked before anything is joined. */
int co_gather(struct co **cs, size_t n, int timeout_ms, void **results);

/* Asks c to stop: task.cancel(). c's current wait (or its next one, if it
 * is running or ready) returns -ECANCELED, and c unwinds through its own
 * code. A co_run_blocking in progress cannot be interrupted (a thread
 * cannot be stopped safely): it reports -ECANCELED when its function has
 * returned. 0, or -ESRCH if c has already returned. Never suspends. */
int co_cancel(struct co *c);

/* ---- waiting ------------------------------------------------------------- */

/* Lets every other ready coroutine run once, then continues: await
 * asyncio.sleep(0). 0 or -ECANCELED. */
int co_yield(void);

/* Suspends the caller for ms milliseconds (CLOCK_MONOTONIC, to the
 * millisecond) while others run: await asyncio.sleep(ms / 1000). Never
 * -ETIMEDOUT: running out the time is success. 0 or -ECANCELED. */
int co_sleep(int ms);

/* Suspends until fd is readable (or has an error or a hangup, which the
 * next read reports), or timeout_ms passes. fd must be a socket, pipe,
 * eventfd or similar (not a regular file: -EPERM) and should be
 * non-blocking. One coroutine at a time may wait on each direction of an
 * fd (-EBUSY otherwise). 0, -ETIMEDOUT, -ECANCELED, -EBADF (fd closed with
 * co_close meanwhile), or another negative errno from epoll_ctl. */
int co_wait_readable(int fd, int timeout_ms);

/* The same for writable (room in the send buffer, or an error). */
int co_wait_writable(int fd, int timeout_ms);

/* Reads up to n bytes from a non-blocking fd, suspending while there is
 * nothing to read. Returns the byte count (> 0), 0 at end of stream, or a
 * negative errno (-ETIMEDOUT if nothing came within timeout_ms,
 * -ECANCELED, -ECONNRESET, ...). Data already there is returned without
 * suspending (so a pending cancel is seen only at the next real wait). */
ssize_t co_read(int fd, void *buf, size_t n, int timeout_ms);

/* Writes all n bytes to a non-blocking fd, suspending whenever its buffer
 * is full; sockets are written with MSG_NOSIGNAL, so a vanished peer costs
 * -EPIPE, never SIGPIPE. timeout_ms bounds the whole call. Returns n, or a
 * negative errno; after an error part of the data may have been sent. */
ssize_t co_write(int fd, const void *buf, size_t n, int timeout_ms);

/* Completion: the loop moves the bytes (common/loop.h, "Readiness and
 * completion"), for stream sockets. Where co_read is read(2) and a park
 * when it would block, co_recv hands the receive itself to the loop and
 * parks until it is done: on epoll the loop waits for readable and reads
 * just before waking the coroutine; on io_uring the kernel receives while
 * the thread serves others, and the turn's receives, sends and accepts
 * cost one system call together. The buffer is touched only while the
 * caller is parked in the call (a timeout or cancel withdraws the
 * operation), so it may live on the coroutine's stack; with a shared
 * stack such a buffer goes through a copy in the heap, since the loop
 * touches it while the caller's frames are copied out. An fd used this
 * way is not also waited on with co_wait_readable/co_read (-EBUSY) until
 * it is closed with co_close. */

/* Receives up to n bytes (at least one) into buf, parking until some
 * arrive. The count (> 0), 0 when the peer closed, or a negative errno
 * (-ETIMEDOUT, -ECANCELED, -EBADF after co_close, -ECONNRESET...). n 0
 * only waits until something is there (bytes, or the end the next
 * co_recv reports) and returns 1, taking nothing. */
ssize_t co_recv(int fd, void *buf, size_t n, int timeout_ms);

/* Sends all n bytes, parking until the loop has sent each part;
 * timeout_ms bounds the whole call. n, or a negative errno (-EPIPE for a
 * vanished peer, never SIGPIPE); after an error part of it may have gone. */
ssize_t co_send(int fd, const void *buf, size_t n, int timeout_ms);

/* Parks the caller while the loop accepts clients on a non-blocking
 * listening socket, handing each to take(client) as it comes (from the
 * loop: take must not wait; 06 spawns a coroutine there). Returns only
 * when accepting failed (-EMFILE...: the loop has stopped accepting; call
 * again to go on), or with -ETIMEDOUT, -ECANCELED or -EBADF, which stop
 * accepting too. */
int co_accept(int fd, void (*take)(int client), int timeout_ms);

/* Closes an fd that coroutines may be waiting on. Their waits return
 * -EBADF, and so does a wait whose "ready" event was already fetched but
 * not yet delivered: the fd number may be reused at once by accept or
 * socket, and the old event must not wake the new owner's waiter (the
 * stale-event trap Redis fell into). Always close this way an fd that a
 * coroutine has waited on: the loop keeps watching it between waits, and
 * must hear that the number is free. 0 or a negative errno (-EBUSY for an
 * fd libcurl or the worker pool owns). */
int co_close(int fd);

/* ---- leaving the loop for blocking work ---------------------------------- */

/* Runs fn(arg) on one of the worker threads and suspends the caller until
 * it returns; meanwhile the other coroutines keep running.
 * loop.run_in_executor(None, fn, arg). Use it for CPU-heavy work or a call
 * that blocks (a library without a non-blocking API). *result (may be
 * NULL) gets fn's return value. fn runs on another thread: it must not
 * call co_* functions or touch data the coroutines use without locks, and
 * with a shared stack arg must not point into the caller's stack (see
 * "Stacks"). 0, -EAGAIN if no worker thread could be started, -ENOMEM,
 * or -ECANCELED: a cancellation that arrives while fn runs is reported
 * after fn returns (*result is set then), one that was pending before the
 * call means fn is never started. */
int co_run_blocking(co_fn fn, void *arg, void **result);

/* Performs a configured libcurl easy transfer through the scheduler's curl
 * multi handle, whose sockets and timeouts live in the same epoll and
 * timer heap as everything else, and suspends until it completes: the C
 * form of `await client.put(...)`. Returns the transfer's CURLcode (>= 0;
 * CURLE_OK when an HTTP answer of any status arrived: read it with
 * curl_easy_getinfo), or a negative errno: -ECANCELED (the transfer was
 * aborted), -ENOMEM / -EINVAL if it could not be started. Give the easy
 * handle its own timeout (CURLOPT_TIMEOUT_MS); co_curl_perform has none.
 * The scheduler does not use CURLOPT_PRIVATE: it stays yours. */
int co_curl_perform(CURL *easy);

/* Runs fn(arg) on the scheduler's own stack (the thread's, megabytes
 * deep) and returns its result: for deep calls that need no wait, such as
 * parsing JSON or formatting numbers, so that the coroutine's stack only
 * ever holds its own shallow frames. Stack pages, once touched, stay
 * memory until the coroutine ends; a snprintf of a double or a cJSON parse
 * touches a few KiB, and 10,000 waiting connections would each keep them.
 * Costs two switches (tens of ns with CO_SWITCH_SETJMP). fn must not wait:
 * a co_* wait inside it returns -EPERM, as outside a coroutine (co_self is
 * NULL there; co_current_id still names the caller, for the log). Called
 * outside a coroutine it simply calls fn. */
void *co_call_on_loop_stack(co_fn fn, void *arg);

/* ---- what the shared stack costs ----------------------------------------- */

/* The copies a shared stack made so far (all zero with separate stacks):
 * what a parked coroutine costs is its saved bytes and its control block. */
struct co_stack_stats {
    size_t saves;           /* parked coroutines' frames copied out */
    size_t saved_bytes;     /* bytes those copies moved, in all */
    size_t largest;         /* the largest copy */
    size_t held, holders;   /* bytes in save buffers now, and how many */
    size_t held_peak, holders_at_peak; /* the most bytes held at once */
    size_t block_size;      /* bytes of one control block */
};

/* Fills *out: 0, or -EINVAL without a scheduler. */
int co_stack_stats(struct co_stack_stats *out);

/* ---- who am I ------------------------------------------------------------ */

/* The running coroutine, or NULL outside coroutines. */
struct co *co_self(void);

/* A coroutine's id: 1, 2, 3... in spawn order, never reused. */
long co_id(const struct co *c);

/* The running coroutine's id, or -1 outside coroutines (in main, in the
 * scheduler itself, on a worker thread). Made for log_set_coroutine_id_fn,
 * so every log line says which coroutine wrote it. */
long co_current_id(void);

/* Prints a line per coroutine that has not returned, oldest first, with
 * common/tasklist's tasklist_line: its id, the function it runs, its
 * state (running, ready, parked), for how long it has been parked, what
 * it waits for ("read fd 7", "sleep", "join co 12", "pool", "curl") and
 * when that wait times out. The task list of a SIGQUIT (`python -m
 * asyncio ps PID` lists the same). Returns how many it printed. Never
 * suspends. */
size_t co_print_tasks(void);

#endif
