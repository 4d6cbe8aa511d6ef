/* shutdown: SIGINT/SIGTERM turned into something a loop can wait on.
 *
 * The handler only sets a flag and writes one byte to a self-pipe; all real
 * work happens in the loop that sees the pipe become readable. Blocking
 * stages poll() the pipe beside the listening socket, select/epoll stages
 * add it to their sets, so a stop request wakes every kind of loop without
 * racing against it. */
#ifndef COMMON_SHUTDOWN_H
#define COMMON_SHUTDOWN_H

#include <signal.h>
#include <stdbool.h>

/* Installs the handlers (SA_RESTART, so other calls are not disturbed) and
 * creates the pipe. Call once in main. 0, or -1 with errno. */
int shutdown_init(void);

/* The pipe's read end: readable once a stop was asked. Never read it;
 * it stays readable so every loop that watches it sees the request. */
int shutdown_fd(void);

/* True once SIGINT or SIGTERM has arrived. Async-signal-safe. */
bool shutdown_requested(void);

/* Waits until listen_fd is readable (true) or a stop was asked (false);
 * for the blocking stages' accept loops. Retries EINTR. */
bool shutdown_wait_accept(int listen_fd);

/* Blocks (how = SIG_BLOCK) or unblocks (SIG_UNBLOCK) SIGINT and SIGTERM
 * in the calling thread, saving the mask it had in *old unless old is
 * NULL; sigprocmask(SIG_SETMASK, old, NULL) puts it back. Around a fork
 * or a pthread_create, so the new child or thread cannot run the stop
 * handler before it has decided what to do with these signals. */
void shutdown_mask_signals(int how, sigset_t *old);

/* Seconds a stopping server waits for in-flight work before it gives up. */
#define SHUTDOWN_GRACE_MS 15000

#endif
