/* 02-fork: a process per connection.
 *
 * The model: the parent process only accepts. For every connection it
 * fork()s a child, closes its own copy of the socket and goes straight back
 * to accept. The child is a copy of the parent at that instant; it serves
 * its one connection with the same blocking calls as 01 (read, nanosleep,
 * write, curl), as many keep-alive requests as the client sends, and exits.
 * The kernel schedules the processes, so a child asleep in nanosleep costs
 * the other clients nothing: twenty clients that each wait 2 s all get
 * their answers after 2 s, not 40.
 *
 * What it costs: a process per connection. fork copies the page tables and
 * every page the child then writes (copy-on-write), each child holds a pid
 * and a scheduler slot, and a thousand sleeping clients are a thousand
 * processes. --max-children (default 256) caps that: past it the parent
 * answers 503 itself and closes. Processes share no memory, which costs
 * three times more:
 * - The parent must wait() for every child, or the dead child stays a
 *   zombie (a process table entry holding its exit status). A SIGCHLD
 *   handler writes a byte to a pipe, the accept loop poll()s that pipe
 *   beside the listening socket, and reap_children() calls waitpid(WNOHANG)
 *   in a loop: signals of one kind merge while pending, so one SIGCHLD may
 *   stand for several dead children. The handler itself only writes the
 *   byte; counting and logging happen in the loop, where any call is safe.
 * - The async route waits its bills one after another, not together. To
 *   wait three bills at once the child would need three more waiters (three
 *   more processes), and each subtotal would then live in another process's
 *   memory: getting it back needs inter-process communication, a pipe per
 *   bill or a MAP_SHARED page plus a waitpid per helper. Threads (03) share
 *   memory and get this for free; LECTURE.md has the pipe version as an
 *   exercise.
 * - The async budget (--max-jobs, --max-bills: accepted jobs and their
 *   bills not yet done, checked before the ok) must be one count for all
 *   the children, and a global variable would be a copy in each. It lives
 *   in a MAP_SHARED page mapped before the first fork, updated with atomic
 *   operations. A child that dies mid-job (killed from outside) keeps its
 *   share of the budget; a crash is a bug, and the log shows it.
 *
 * Stopping (SIGINT/SIGTERM): the parent stops accepting, closes the
 * listening socket and waits for its children (SHUTDOWN_GRACE_MS at most).
 * The children learn of the stop through the shutdown pipe they inherited:
 * the parent's handler writes one byte to it and nobody ever reads it, so
 * it stays readable in every process at once. A child between requests
 * polls that pipe beside its socket (conn_io_read_request) and closes its
 * idle connection at once; a child inside a request finishes it, answers
 * "Connection: close", and finishes its callback. The children ignore SIGINT/SIGTERM themselves:
 * the stop is the parent's decision (Ctrl-C in a terminal signals the whole
 * process group, and a child killed one by one must not stop the server).
 * A child still busy when the grace period ends dies with the parent
 * (PR_SET_PDEATHSIG), so a stopped server leaves no orphans.
 *
 * --prefork N (UNP's pre-forked server, chapter 30): the fork moves out of
 * the request's path. N children are forked at start and each one loops:
 * wait for the listener, accept, serve that connection to its end, again.
 * The parent only reaps and stops them. No fork per client, so a new
 * connection costs what it costs in 01; but N is also the number of
 * clients served at once (the rest wait in the kernel's backlog), and a
 * slow client holds a whole child. All N wait on one listener, and poll()
 * wakes every one of them for each new client, though only one accept()
 * wins: the thundering herd, counted per child as "empty wake-ups" and
 * printed at exit. --accept-lock makes the children take turns waiting
 * (a process-shared mutex, as UNP's lock_wait), so none wakes for nothing.
 *
 * What to notice in the log: the pid on every line says who wrote it. The
 * parent (the pid of the first lines) writes "forked child 4122 for
 * 127.0.0.1:53000"; then pid 4122 serves that connection; then the parent
 * writes "child 4122 exited (status 0)". Start two slow curls at once and
 * see two children sleep through the same two seconds.
 *
 * Simplifications, on purpose:
 * - A slow client holds its child until its request's deadlines pass
 *   (--idle-timeout-ms, --header-timeout-ms, --body-timeout-ms; they never
 *   move, however the bytes trickle in). Here that costs one process, not
 *   the server, which is the point of the model.
 * - Past --max-children the parent writes the 503 without reading the
 *   request: it cannot afford to wait for a slow client. It drops what has
 *   already arrived and shuts its side first, so the answer is not lost to
 *   a reset; bytes that arrive later may still meet a reset
 *   (conn_io_refuse_busy).
 *
 * Reading and answering a connection's requests is the same in 01 and 03,
 * so it lives in common/conn_io (conn_io_serve); this file is the model. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "conn_io.h"
#include "endpoint.h"
#include "http.h"
#include "jobcap.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "stage.h"
#include "timer.h"
#include "trace.h"

#define STAGE "02-fork"

static struct config cfg;
static unsigned jitter_seed = 1; /* reseeded in each child, see child_main */
/* The async budget (jobcap.h). Jobs run in the children, which share no
 * memory with each other: the budget lives in a MAP_SHARED page, made
 * before the first fork, so every child sees and updates the same counts
 * (lock-free atomics work across processes). */
static struct jobcap *jobcap;
/* How each child answers its requests (conn_io_serve_blocking); .cap is
 * the shared budget, mapped in main. */
static struct conn_io_stage serving = {
    .cfg = &cfg, .stage = STAGE, .seed = &jitter_seed};

/* ---- The parent's side: who is alive ---- */

static int live_children;          /* touched by the accept loop only */
static int sigchld_pipe[2] = {-1, -1};

/* Runs whenever a child dies. Only async-signal-safe work here: one write
 * to wake the loop, which does the reaping. */
static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(sigchld_pipe[1], "c", 1); /* full pipe: awake */
    (void)ignored;
    errno = saved;
}

static int sigchld_init(void)
{
    if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    /* SA_RESTART: a child dying must not make the parent's other calls
     * fail with EINTR. SA_NOCLDSTOP: a stopped child is not a dead one. */
    struct sigaction sa = {.sa_handler = on_sigchld,
                           .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGCHLD, &sa, NULL);
}

static void log_child_status(pid_t pid, int status)
{
    if (WIFEXITED(status))
        log_info("child %d exited (status %d); %d live", (int)pid,
                 WEXITSTATUS(status), live_children);
    else if (WIFSIGNALED(status))
        log_warn("child %d exited: killed by signal %d (%s); %d live",
                 (int)pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)), live_children);
}

/* Collects every dead child, so none stays a zombie. The pipe is drained
 * first: a child dying during the loop then leaves a byte for next time. */
static void reap_children(void)
{
    char buf[64];
    while (read(sigchld_pipe[0], buf, sizeof buf) > 0)
        ;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return; /* 0: the rest are alive; -1 ECHILD: there are none */
        live_children--;
        log_child_status(pid, status);
    }
}

/* ---- The child's side: one connection, blocking calls ---- */

/* The async route's second half, once the client has its answer and its
 * connection is closed. Sequential on purpose: see the header (IPC). */
static void finish_async_job(const struct exchange_request *job)
{
    log_info("job %s: waiting %zu bills one after another in this process, "
             "then the callback", job->request_id, job->num_bills);
    double subtotals[EXCHANGE_MAX_BILLS]; /* only this process sleeps */
    conn_io_wait_bills(&cfg, job, subtotals, &jitter_seed, jobcap);
    conn_io_send_callback(&cfg, job, subtotals); /* delivered or given up */
    jobcap_job_done(jobcap);
}

/* The child was born a copy of the accept loop; it drops that role before
 * doing anything else: no listening socket, no SIGCHLD pipe, and SIGINT/
 * SIGTERM ignored (the stop arrives through the shutdown pipe instead).
 * The parent blocked those two signals around fork, so none can run the
 * parent's handler in here before they are ignored. */
static void child_leave_parent_role(int listen_fd, pid_t parent)
{
    if (listen_fd >= 0) /* -1: a prefork child keeps it, to accept */
        close(listen_fd);
    close(sigchld_pipe[0]);
    close(sigchld_pipe[1]);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    shutdown_mask_signals(SIG_UNBLOCK, NULL);
    /* If the parent gives up on us (grace period over), we go with it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(1);
}

/* One connection, start to end, in this process: every request,
 * keep-alive included, blocking in each read, sleep and write (only this
 * process waits); a sync request's bills waited here, an async one's ok
 * given only if the shared budget has room (else a 503 and the connection
 * goes on), and that ok the connection's last answer. Then the async job,
 * once the client is gone. */
static void serve_connection(int fd, const char *peer)
{
    struct exchange_request job;
    if (conn_io_serve_blocking(&serving, fd, peer, &job))
        finish_async_job(&job);
}

static void __attribute__((noreturn)) child_main(int fd, const char *peer)
{
    /* The child inherited the parent's random state: without this, every
     * child would draw the same jitter. */
    jitter_seed = (unsigned)getpid();
    log_info("child serving %s", peer);
    serve_connection(fd, peer);
    callback_global_cleanup();
    exit(0);
}

/* ---- The parent's side: accept, fork, refuse, reap ---- */

static void fork_child(int listen_fd, int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    if (live_children >= cfg.max_children) {
        log_warn("%d children already: refusing %s with 503", live_children,
                 peer);
        conn_io_refuse_busy(fd, "too many child processes");
        return;
    }
    sigset_t old;
    shutdown_mask_signals(SIG_BLOCK, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        child_leave_parent_role(listen_fd, parent);
        child_main(fd, peer);
    }
    sigprocmask(SIG_SETMASK, &old, NULL); /* a pending stop runs now */
    if (pid < 0) {
        log_warn("fork: %s; refusing %s with 503", strerror(errno), peer);
        conn_io_refuse_busy(fd, "cannot start a process");
        return;
    }
    live_children++;
    /* The child has its own copy of the socket; ours would only keep the
     * connection open after the child closes it. */
    close(fd);
    log_info("forked child %d for %s (%d live)", (int)pid, peer,
             live_children);
}

/* The parent waits on three things: a new client, a dead child, a stop.
 * Returns false once a stop was asked. */
static bool parent_wait(int listen_fd)
{
    struct pollfd fds[3] = {{.fd = listen_fd, .events = POLLIN},
                            {.fd = sigchld_pipe[0], .events = POLLIN},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    for (;;) {
        if (shutdown_requested())
            return false;
        int n = poll(fds, 3, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_warn("poll: %s; stopping", strerror(errno));
            return false;
        }
        if (fds[2].revents)
            return false;
        if (fds[1].revents)
            reap_children();
        if (fds[0].revents)
            return true;
    }
}

/* Lets the children finish, at most SHUTDOWN_GRACE_MS. */
static void wait_for_children(void)
{
    uint64_t give_up = timer_now_ms() + SHUTDOWN_GRACE_MS;
    reap_children();
    while (live_children > 0) {
        uint64_t now = timer_now_ms();
        if (now >= give_up) {
            log_warn("%d children still busy after %d ms; they die with the "
                     "parent", live_children, SHUTDOWN_GRACE_MS);
            return;
        }
        struct pollfd p = {.fd = sigchld_pipe[0], .events = POLLIN};
        if (poll(&p, 1, (int)(give_up - now)) < 0 && errno != EINTR)
            log_warn("poll: %s", strerror(errno));
        reap_children();
    }
}

/* ---- --prefork N: UNP's pre-forked server ---- */

/* What the prefork children count, in a MAP_SHARED page mapped before the
 * forks (they share no other memory); each child writes only its own row
 * and the parent reads them once the children are gone. The accept lock
 * lives in the same page: a pthread mutex made process-shared, and robust,
 * so a child killed while holding it does not stop the others for good. */
struct prefork_stats {
    unsigned long accepts; /* connections this child accepted */
    unsigned long empty;   /* wake-ups that found nothing to accept */
};
struct prefork_shared {
    pthread_mutex_t lock;  /* --accept-lock */
    struct prefork_stats child[];
};
static struct prefork_shared *prefork;
static size_t prefork_size;

static int accept_lock_init(void)
{
    pthread_mutexattr_t attr;
    int err = pthread_mutexattr_init(&attr);
    if (!err)
        err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!err)
        err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!err)
        err = pthread_mutex_init(&prefork->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return err;
}

static void accept_lock_take(void)
{
    if (pthread_mutex_lock(&prefork->lock) == EOWNERDEAD) {
        log_warn("a child died holding the accept lock; taking it over");
        pthread_mutex_consistent(&prefork->lock);
    }
}

/* A prefork child: wait until the listener is readable, accept, serve that
 * one connection to its end (and its async job), and again, until the
 * stop. Without the lock every idle child waits in poll() on the same
 * listener, and poll wakes them all for each new client: one accept()
 * gets it, the others get EAGAIN, counted in `empty` (the thundering
 * herd). With --accept-lock only the child holding the lock waits in
 * poll(); the others wait for the lock, and no wake-up is wasted, at the
 * price of a lock round trip per accept. (A plain blocking accept() would
 * not show the herd: Linux wakes one accept() waiter since 2.6. Waiting in
 * poll, as here and in any server that also watches a stop pipe, does.) */
static void __attribute__((noreturn)) prefork_child(int lfd, int i)
{
    jitter_seed = (unsigned)getpid();
    struct prefork_stats *me = &prefork->child[i];
    for (;;) {
        if (cfg.accept_lock)
            accept_lock_take();
        bool ready = shutdown_wait_accept(lfd); /* false: the stop pipe */
        int fd = ready ? conn_io_accept(lfd) : -1;
        int err = errno;
        if (cfg.accept_lock)
            pthread_mutex_unlock(&prefork->lock);
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
        serve_connection(fd, peer);
    }
    log_info("prefork child %d: accepted %lu, woke for nothing %lu times; "
             "exiting", i + 1, me->accepts, me->empty);
    close(lfd);
    callback_global_cleanup();
    exit(0);
}

/* The parent's summary line, the one make bench and the tests read. */
static void prefork_log_totals(void)
{
    char accepts[512], empty[512];
    size_t a = 0, e = 0;
    unsigned long total = 0;
    for (int i = 0; i < cfg.prefork; i++) {
        const struct prefork_stats *c = &prefork->child[i];
        if (a < sizeof accepts)
            a += (size_t)snprintf(accepts + a, sizeof accepts - a, " %lu",
                                  c->accepts);
        if (e < sizeof empty)
            e += (size_t)snprintf(empty + e, sizeof empty - e, " %lu",
                                  c->empty);
        total += c->empty;
    }
    /* A result, not an event: printed even with --quiet, for the bench. */
    fprintf(stderr, "%s: prefork: accepts per child:%s; empty wake-ups per "
            "child:%s (%lu in all, accept lock %s)\n", STAGE,
            a ? accepts : "", e ? empty : "", total,
            cfg.accept_lock ? "on" : "off");
}

/* Forks cfg.prefork children that all accept on lfd, then waits for a
 * stop (or for every child to be gone) and for the children to finish.
 * The children are not replaced if one dies: the log says so, and the
 * others go on. Returns main's exit status. */
static int prefork_run(int lfd)
{
    prefork_size = sizeof *prefork +
                   (size_t)cfg.prefork * sizeof prefork->child[0];
    prefork = mmap(NULL, prefork_size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (prefork == MAP_FAILED || accept_lock_init() != 0) {
        log_warn("prefork: cannot map the shared page or its lock");
        return 1;
    }
    log_info("prefork: forking %d children, each accepting on the listener "
             "and serving one connection at a time (accept lock %s)",
             cfg.prefork, cfg.accept_lock ? "on" : "off");
    sigset_t old;
    pid_t parent = getpid();
    for (int i = 0; i < cfg.prefork; i++) {
        shutdown_mask_signals(SIG_BLOCK, &old);
        pid_t pid = fork();
        if (pid == 0) {
            child_leave_parent_role(-1, parent);
            prefork_child(lfd, i);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (pid < 0) {
            log_warn("fork: %s; %d children only", strerror(errno), i);
            break;
        }
        live_children++;
        log_info("prefork child %d is pid %d", i + 1, (int)pid);
    }
    close(lfd); /* the children accept; the port closes with the last */
    struct pollfd fds[2] = {{.fd = sigchld_pipe[0], .events = POLLIN},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    while (live_children > 0 && !shutdown_requested()) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR) {
            log_warn("poll: %s; stopping", strerror(errno));
            break;
        }
        if (fds[1].revents)
            break;
        if (fds[0].revents)
            reap_children();
    }
    log_info("%s: waiting for %d prefork children", live_children > 0
             ? "stop requested" : "every child is gone", live_children);
    wait_for_children();
    prefork_log_totals();
    int rc = live_children == 0 ? 0 : 1;
    pthread_mutex_destroy(&prefork->lock);
    munmap(prefork, prefork_size);
    return rc;
}

int main(int argc, char **argv)
{
    /* Before any fork (stage.h): the children inherit libcurl's setup and
     * create their own curl handles. */
    if (stage_begin(&cfg, argc, argv, STAGE, 8002,
                    CONFIG_MAX_CHILDREN | CONFIG_PREFORK, "Stage 02: "
                    "forks a child process for every connection.") < 0)
        return 1;
    if (sigchld_init() < 0) {
        perror("sigchld_init");
        return 1;
    }
    jobcap = jobcap_new_shared(cfg.max_jobs, cfg.max_bills);
    if (jobcap == NULL) {
        perror("jobcap: mmap");
        return 1;
    }
    serving.cap = jobcap;
    int lfd = net_listen_announce(&cfg); /* then "listening on ..." on stdout */
    if (lfd < 0)
        return 1;
    if (cfg.prefork > 0) {
        int rc = prefork_run(lfd);
        callback_global_cleanup();
        jobcap_free_shared(jobcap);
        return rc;
    }

    while (parent_wait(lfd)) {
        int fd = conn_io_accept(lfd);
        if (fd >= 0)
            fork_child(lfd, fd);
    }

    close(lfd); /* new clients are refused from now on */
    log_info("stop requested: not accepting; waiting for %d children",
             live_children);
    wait_for_children();
    log_info("exiting");
    callback_global_cleanup();
    jobcap_free_shared(jobcap);
    return 0;
}
