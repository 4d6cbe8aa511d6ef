/* workers: one event-loop server run as N worker processes (05 and 06
 * --workers N), the way nginx and uvicorn --workers use a second core.
 *
 * Processes, not threads. 05 and 06 keep their whole state in file-scope
 * variables (the loop, the connection list, the budget, 06's scheduler),
 * read by every callback without a lock. A worker process gets its own
 * copy of all of it from fork, so the stage runs unchanged N times over:
 * nothing to lock, nothing for ThreadSanitizer to find, and a worker that
 * crashes takes only its own clients with it. Threads would need every one
 * of those variables made per-thread (or locked), all through code that is
 * about the event loop, not about cores. What processes cost: nothing is
 * shared, so each worker has its own share of the async budget
 * (workers_share), its own curl handles, and its own log lines (the pid
 * says which worker wrote one).
 *
 * Two ways to hand out connections:
 * - SO_REUSEPORT (the default): one listener per worker on the same port;
 *   the kernel hashes each new connection (addresses and ports) to one
 *   listener's queue. Spread is even on average, blind to load.
 * - --shared-listener: one listener, in every worker's epoll with
 *   EPOLLEXCLUSIVE (loop_exclusive_fd): a new client wakes one or more
 *   idle waiters (epoll_ctl(2) promises no fewer than one, not exactly
 *   one) instead of all. The kernel wakes the first waiter on the list,
 *   so one worker tends to take most of the clients while it keeps up.
 * When the workers have stopped, the parent logs how many connections each
 * one accepted (net_accepted), the line the bench's designs rows read.
 *
 * Stopping: SIGINT/SIGTERM to the parent writes the shutdown pipe (shutdown.h)
 * that every worker inherited and watches, so all of them stop together
 * and finish their requests within --drain-ms (a second signal writes the
 * now pipe, which they watch too); each worker names the jobs it did not
 * deliver; the parent waits for every one (no zombies) and exits 0 if
 * they all did. A worker dies with the parent (PR_SET_PDEATHSIG) if the
 * parent is killed outright.
 *
 * --outbox: one file for all the workers (outbox.h says why): the parent
 * reads and compacts it before the fork, and worker i replays the jobs
 * i, i + N, i + 2N... of it (workers_index). */
#ifndef COMMON_WORKERS_H
#define COMMON_WORKERS_H

#include "config.h"

/* --workers' upper bound (config.c checks it). */
#define WORKERS_MAX 256

/* The share of a whole-server budget (--max-jobs, --max-bills) each of
 * cfg->workers workers gets: total / workers, at least 1. */
int workers_share(const struct config *cfg, int total);

/* Which worker this process is, 0 to cfg->workers - 1 (0 without
 * --workers): the share of start-up work it takes, such as the outbox's
 * jobs to replay (job i goes to worker i % workers). */
int workers_index(void);

/* Listens (SO_REUSEPORT listeners or one shared one, as cfg says), prints
 * the "listening on" line, forks cfg->workers workers and waits for them
 * all. Worker i runs serve(its listener) and exits with what serve
 * returned. Call after shutdown_init and before creating any loop or
 * thread. Returns main's exit status: 0 if every worker exited 0. */
int workers_run(const struct config *cfg, int (*serve)(int listen_fd));

#endif
