/* 02-fork --prefork N: UNP's pre-forked server (chapter 30).
 *
 * What it is: the fork moves out of the request's path. N children are
 * forked once, at start (server.c), and each one loops: wait for the
 * listener, accept, serve that connection to its end, again. The parent
 * only reaps and stops them, as in the model.
 *
 * What it costs: no fork per client, so a new connection costs what it
 * costs in 01. But N is also the number of clients served at once (the
 * rest wait in the kernel's backlog), and a slow or idle keep-alive client
 * holds a whole child. A child that dies is not replaced: the log says so,
 * and the others go on.
 *
 * What to notice: all N children wait on one listener, and poll() wakes
 * every one of them for each new client, though only one accept() wins:
 * the thundering herd, counted per child as "empty wake-ups" and printed
 * by the parent at exit (prefork_log_totals). --accept-lock makes the
 * children take turns waiting (a process-shared mutex, UNP's lock_wait),
 * so none wakes for nothing, at the price of a lock round trip per accept.
 * A plain blocking accept() would not show the herd: Linux wakes one
 * accept() waiter since 2.4. Waiting in poll, as here and in any server
 * that also watches a stop pipe, brings it back. */
#include "prefork.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conn_io.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"

/* What a child counts. Each child writes only its own row; the parent
 * reads them once the children are gone. */
struct prefork_stats {
    unsigned long accepts; /* connections this child accepted */
    unsigned long empty;   /* wake-ups that found nothing to accept */
};

/* A MAP_SHARED page mapped before the forks, the only memory the children
 * share. The accept lock lives in it too: a pthread mutex made
 * process-shared, and robust, so a child killed while holding it does not
 * stop the others for good. */
struct prefork {
    size_t size;           /* of the mapping */
    int children;
    bool accept_lock;      /* --accept-lock: lock is made and used */
    pthread_mutex_t lock;
    struct prefork_stats child[];
};

/* The accept lock: a mutex in the shared page, usable across processes
 * (the children are processes) and robust. 0 or an errno value. */
static int accept_lock_init(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    int err = pthread_mutexattr_init(&attr);
    if (err)
        return err; /* attr was never made: nothing to destroy */
    if ((err = pthread_mutexattr_setpshared(&attr,
                                            PTHREAD_PROCESS_SHARED)) == 0 &&
        (err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0)
        err = pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return err;
}

struct prefork *prefork_new(int children, bool accept_lock)
{
    size_t size = sizeof(struct prefork) +
                  (size_t)children * sizeof(struct prefork_stats);
    struct prefork *pf = mmap(NULL, size, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pf == MAP_FAILED) {
        log_warn("prefork: cannot map the shared page: %s", strerror(errno));
        return NULL;
    }
    pf->size = size; /* the rest is zero, as a fresh mapping is */
    pf->children = children;
    pf->accept_lock = accept_lock;
    int err = accept_lock ? accept_lock_init(&pf->lock) : 0;
    if (err) {
        log_warn("prefork: cannot make the accept lock: %s", strerror(err));
        munmap(pf, size);
        return NULL;
    }
    return pf;
}

static void accept_lock_take(struct prefork *pf)
{
    if (pthread_mutex_lock(&pf->lock) == EOWNERDEAD) {
        log_warn("a child died holding the accept lock; taking it over");
        pthread_mutex_consistent(&pf->lock);
    }
}

/* Without the lock every idle child waits in poll() on the same listener,
 * and poll wakes them all for each new client: one accept() gets it, the
 * others get EAGAIN, counted in `empty` (the herd). With the lock only the
 * child holding it waits in poll(); the others wait for the lock. */
void prefork_child(struct prefork *pf, int i, int listen_fd,
                   void (*serve)(int fd, const char *peer))
{
    struct prefork_stats *me = &pf->child[i];
    log_info("prefork child %d is ready to accept", i + 1);
    for (;;) {
        if (pf->accept_lock)
            accept_lock_take(pf);
        bool ready = shutdown_wait_accept(listen_fd); /* false: the stop */
        int fd = ready ? conn_io_accept(listen_fd) : -1;
        int err = errno;
        if (pf->accept_lock)
            pthread_mutex_unlock(&pf->lock);
        if (!ready)
            break;
        if (fd < 0) {
            if (err == EAGAIN || err == EWOULDBLOCK)
                me->empty++; /* another child took it */
            continue;
        }
        me->accepts++;
        char peer[64];
        net_peer_name(fd, peer, sizeof peer);
        log_info("prefork child %d serving %s", i + 1, peer);
        serve(fd, peer);
    }
    log_info("prefork child %d: accepted %lu, woke for nothing %lu times; "
             "exiting", i + 1, me->accepts, me->empty);
    close(listen_fd);
}

void prefork_log_totals(const struct prefork *pf)
{
    char accepts[512], empty[512];
    size_t a = 0, e = 0;
    unsigned long total = 0;
    for (int i = 0; i < pf->children; i++) {
        const struct prefork_stats *c = &pf->child[i];
        if (a < sizeof accepts)
            a += (size_t)snprintf(accepts + a, sizeof accepts - a, " %lu",
                                  c->accepts);
        if (e < sizeof empty)
            e += (size_t)snprintf(empty + e, sizeof empty - e, " %lu",
                                  c->empty);
        total += c->empty;
    }
    /* A result, not an event: printed even with --quiet, for the bench. */
    fprintf(stderr, "02-fork: prefork: accepts per child:%s; empty wake-ups "
            "per child:%s (%lu in all, accept lock %s)\n",
            a ? accepts : "", e ? empty : "", total,
            pf->accept_lock ? "on" : "off");
}

void prefork_free(struct prefork *pf)
{
    if (pf->accept_lock)
        pthread_mutex_destroy(&pf->lock);
    munmap(pf, pf->size);
}
