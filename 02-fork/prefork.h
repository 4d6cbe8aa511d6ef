/* prefork: 02-fork's --prefork N, UNP's pre-forked server (chapter 30).
 * server.c forks the N children at start and reaps them as it reaps the
 * model's children; what each child does, the page they share and the
 * accept lock are here. What it is, what it costs, what to notice:
 * prefork.c's header. */
#ifndef FORK_PREFORK_H
#define FORK_PREFORK_H

#include <stdbool.h>

/* The page the children share: each one's counts, and the accept lock. */
struct prefork;

/* Maps the shared page for `children` children. Call it before the first
 * fork: the children share no other memory. With accept_lock the page
 * holds the mutex they take turns on. NULL (logged) if the page or its
 * lock cannot be made. */
struct prefork *prefork_new(int children, bool accept_lock);

/* Child i's life (0 <= i < children), called in the child right after its
 * fork: wait until listen_fd has a client, accept it, serve(fd, peer) to
 * the connection's end (serve closes fd), and again, until the stop
 * (shutdown.h). Then it closes listen_fd, logs its counts and returns, and
 * the child exits. */
void prefork_child(struct prefork *pf, int i, int listen_fd,
                   void (*serve)(int fd, const char *peer));

/* The parent's summary line once the children are gone: accepts and empty
 * wake-ups per child. Printed even with --quiet: make bench reads it. */
void prefork_log_totals(const struct prefork *pf);

/* Destroys the lock and unmaps the page; the children must be gone. */
void prefork_free(struct prefork *pf);

#endif
