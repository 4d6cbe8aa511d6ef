/* shutdown: SIGINT/SIGTERM turned into something a loop can wait on, and
 * a stop in two steps, each with a bound.
 *
 *   the first signal   a stop: stop accepting, finish what is in flight
 *                      (answers, bills, callback retries), at most
 *                      --drain-ms (default 5 s) from that signal
 *   the drain is over  "now": a second signal, or the drain deadline
 *                      passed. Every wait gives up at once; what was not
 *                      finished is abandoned, and the stage names each
 *                      job whose callback was not delivered
 *                      (jobcap_report), then exits.
 *
 * The handler only notes the time and writes one byte to a pipe: the stop
 * pipe on the first signal, the now pipe on the second. All real work
 * happens in the code that sees a pipe become readable. Blocking stages
 * poll() the pipes beside their sockets, select/epoll stages add them to
 * their sets, so a stop wakes every kind of loop without racing against
 * it. Nobody ever reads the pipes: once readable they stay readable, for
 * every process (02's children and the --workers inherit them) and every
 * thread at once.
 *
 * The drain deadline is kept by whoever waits: each wait below takes at
 * most the time left to it, and the first one to find it passed writes the
 * now pipe itself (shutdown_now), so the other waiters, threads and
 * processes wake up too. A process that did not take the signal (02's
 * child, a worker that was not signalled) starts its own drain clock the
 * first time it asks. */
#ifndef COMMON_SHUTDOWN_H
#define COMMON_SHUTDOWN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* After "now", how long a stage lets its workers (02's children, 03's
 * threads) notice it and unwind, before it reports and exits without
 * them. They watch the now pipe in every wait, so this is only a bound. */
#define SHUTDOWN_UNWIND_MS 500

/* Installs the handlers (SA_RESTART, so other calls are not disturbed) and
 * creates the pipes; drain_ms is --drain-ms. Call once in main. 0, or -1
 * with errno. */
int shutdown_init(int drain_ms);

/* The stop pipe's read end: readable once a stop was asked. Never read
 * it. */
int shutdown_fd(void);

/* The now pipe's read end: readable once the drain is over (a second
 * signal, or shutdown_now). Never read it. */
int shutdown_now_fd(void);

/* True once a stop was asked: the stop pipe is readable (a poll of the
 * pipe, so right in any process and thread; a process that learns of the
 * stop here starts its drain clock). */
bool shutdown_requested(void);

/* True once the drain is over: the now pipe is readable, or the drain
 * deadline has passed (shutdown_drain_over). */
bool shutdown_now_requested(void);

/* Ends the drain for everyone: the now pipe becomes readable. */
void shutdown_now(void);

/* Milliseconds left until this process's drain deadline; -1 while it has
 * none (no stop seen yet), 0 once it has passed. No system call, so a
 * wait may ask before every poll. */
int shutdown_drain_left_ms(void);

/* True once the drain deadline has passed; then it also writes the now
 * pipe, so every other waiter learns it. A wait that watches the now pipe
 * itself asks this after waking, instead of shutdown_now_requested. */
bool shutdown_drain_over(void);

/* timeout_ms (-1: none) cut to the time left to the drain deadline, for a
 * wait that must end with the drain. */
int shutdown_cut_timeout(int timeout_ms);

/* Sleeps ms milliseconds, resuming after signals, unless the drain ends
 * first: then it returns false at once (the sleep was cut). For the
 * blocking stages' waits: a bill, a backoff. */
bool shutdown_sleep_ms(int ms);

/* Waits until listen_fd is readable (true) or a stop was asked (false);
 * for the blocking stages' accept loops. Retries EINTR. */
bool shutdown_wait_accept(int listen_fd);

/* Blocks (how = SIG_BLOCK) or unblocks (SIG_UNBLOCK) SIGINT and SIGTERM
 * in the calling thread, saving the mask it had in *old unless old is
 * NULL; sigprocmask(SIG_SETMASK, old, NULL) puts it back. Around a fork
 * or a pthread_create, so the new child or thread cannot run the stop
 * handler before it has decided what to do with these signals. */
void shutdown_mask_signals(int how, sigset_t *old);

#endif
