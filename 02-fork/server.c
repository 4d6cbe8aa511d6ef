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
 *   memory and get this for free. What one trip through a pipe costs,
 *   against a function call, is measured in LECTURE.md section 3 ("Zombies
 *   and the price of IPC").
 * - The async budget (--max-jobs, --max-bills: accepted jobs and their
 *   bills not yet done, checked before the ok) must be one count for all
 *   the children, and a global variable would be a copy in each. It lives
 *   in a MAP_SHARED page mapped before the first fork, updated with atomic
 *   operations, with one slot per job that names it (see "Stopping").
 *
 * Stopping (SIGINT/SIGTERM): the parent stops accepting, closes the
 * listening socket and waits for its children, at most --drain-ms. The
 * children learn of the stop through the shutdown pipes they inherited
 * (shutdown.h): the parent's handler writes one byte to the stop pipe and
 * nobody ever reads it, so it stays readable in every process at once. A
 * child between requests polls that pipe beside its socket
 * (conn_io_read_request) and closes its idle connection at once; a child
 * inside a request finishes it, answers "Connection: close", and goes on
 * with its job's bills and callback. When the drain is over (a second
 * signal, or --drain-ms passed) the parent writes the now pipe: every wait
 * of every child watches it, so they all give up and exit, and the parent
 * gives them SHUTDOWN_UNWIND_MS to do so. The children ignore SIGINT/
 * SIGTERM themselves: the stop is the parent's decision (Ctrl-C in a
 * terminal signals the whole process group, and a child killed one by one
 * must not stop the server). A child still there after that dies with the
 * parent (PR_SET_PDEATHSIG), so a stopped server leaves no orphans.
 *
 * The jobs are the children's, but the parent answers for them: each one
 * holds a slot with its request id in the shared budget (jobcap.h), so the
 * parent's last lines name every job whose callback was not delivered
 * (jobcap_report), and a child that dies outside a stop (killed, or
 * crashed) has its jobs named when it is reaped (jobcap_reclaim), and
 * their places given back.
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
 * --prefork N [--accept-lock] is UNP's pre-forked server (chapter 30): N
 * children forked at start, each accepting for itself. What they do is in
 * prefork.c; this file forks and reaps them like any child (run_prefork).
 *
 * Reading and answering a connection's requests is the same in 01 and 03,
 * so it lives in common/conn_io (conn_io_serve); this file is the model. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "outbox.h"
#include "prefork.h"
#include "shutdown.h"
#include "stage.h"
#include "timer.h"
#include "trace.h"

#define STAGE "02-fork"

static struct config cfg;
static unsigned jitter_seed = 1; /* reseeded in each child: spawn_child */
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
static bool stopping;              /* the parent has begun the stop */
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
        /* Outside a stop a child exits 0 only once its job is over; any
         * other end may have taken jobs with it. (In a stop, the report
         * names every job left: wait_for_children.) */
        if (!stopping && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            jobcap_reclaim(jobcap, pid, outbox_fate());
    }
}

/* ---- The child's side: one connection, blocking calls ---- */

/* The async route's second half, once the client has its answer and its
 * connection is closed. Sequential on purpose: see the header (IPC). */
static void finish_async_job(struct exchange_request *job)
{
    log_info("job %s: waiting %zu bills one after another in this process, "
             "then the callback", job->request_id, job->num_bills);
    /* Only this process sleeps; delivered, given up, or cut by the stop. */
    conn_io_run_job(&cfg, jobcap, job, &jitter_seed);
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
    /* If the parent goes first (killed, or done unwinding), we go too. */
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

/* Where every child ends: its libcurl state freed, then exit(0), which
 * flushes stdio. */
static void __attribute__((noreturn)) child_exit(void)
{
    callback_global_cleanup();
    exit(0);
}

/* ---- The parent's side: accept, fork, refuse, reap ---- */

/* fork(), with the parent's bookkeeping around it: the stop signals
 * blocked across it; in the child, the parent's role dropped at once
 * (listen_fd closed unless it is -1) and a jitter seed of its own (it
 * inherited the parent's random state: without a new seed every child
 * would draw the same jitter); in the parent, the child counted. Returns
 * what fork returns: 0 in the child, its pid, or -1 (errno). */
static pid_t spawn_child(int listen_fd)
{
    sigset_t old;
    shutdown_mask_signals(SIG_BLOCK, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        child_leave_parent_role(listen_fd, parent);
        jitter_seed = (unsigned)getpid();
        return 0;
    }
    int err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL); /* a pending stop runs now */
    if (pid > 0)
        live_children++;
    errno = err;
    return pid;
}

/* A new client: a child of its own, which serves it and exits, or a 503
 * past --max-children (or when fork fails). */
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
    pid_t pid = spawn_child(listen_fd);
    if (pid == 0) {
        log_info("child serving %s", peer);
        serve_connection(fd, peer);
        child_exit();
    }
    if (pid < 0) {
        log_warn("fork: %s; refusing %s with 503", strerror(errno), peer);
        conn_io_refuse_busy(fd, "cannot start a process");
        return;
    }
    /* The child has its own copy of the socket; ours would only keep the
     * connection open after the child closes it. */
    close(fd);
    log_info("forked child %d for %s (%d live)", (int)pid, peer,
             live_children);
}

/* The parent waits on three things: a new client, a dead child, a stop.
 * Returns true when a client waits, false once a stop was asked. With
 * listen_fd -1 (--prefork: the children accept) it only reaps, and also
 * returns false once no child is left. */
static bool parent_wait(int listen_fd)
{
    struct pollfd fds[3] = {{.fd = listen_fd, .events = POLLIN},
                            {.fd = sigchld_pipe[0], .events = POLLIN},
                            {.fd = shutdown_fd(), .events = POLLIN}};
    for (;;) { /* poll skips an entry whose fd is -1 */
        if (shutdown_requested() || (listen_fd < 0 && live_children == 0))
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

/* Waits on the SIGCHLD pipe and the now pipe, at most timeout_ms, then
 * reaps. */
static void wait_for_a_child(int timeout_ms)
{
    struct pollfd p[2] = {{.fd = sigchld_pipe[0], .events = POLLIN},
                          {.fd = shutdown_now_fd(), .events = POLLIN}};
    if (poll(p, 2, timeout_ms) < 0 && errno != EINTR)
        log_warn("poll: %s", strerror(errno));
    reap_children();
}

/* Lets the children finish what they are doing, at most --drain-ms (a
 * second signal ends it at once); then the now pipe tells them to give
 * up, and they get SHUTDOWN_UNWIND_MS to exit. The report follows. */
static void wait_for_children(void)
{
    stopping = true;
    reap_children();
    while (live_children > 0 && !shutdown_now_requested())
        wait_for_a_child(shutdown_cut_timeout(-1));
    if (live_children > 0) {
        shutdown_now(); /* the children watch it in every wait */
        log_warn("drain over: %d children still busy; they give up now",
                 live_children);
    }
    uint64_t give_up = timer_deadline_in(SHUTDOWN_UNWIND_MS);
    while (live_children > 0 && timer_now_ms() < give_up)
        wait_for_a_child(timer_ms_left(give_up, timer_now_ms()));
    if (live_children > 0)
        log_warn("%d children did not exit within %d ms; they die with the "
                 "parent", live_children, SHUTDOWN_UNWIND_MS);
    jobcap_report(jobcap, outbox_fate());
}

/* ---- At start: the jobs of the outbox (outbox.h) ---- */

/* A child per job that never ended, as for a connection: it takes the
 * job's place in the shared budget, runs it, and exits. Past
 * --max-children the rest stay in the outbox for the next start. */
static void replay_outbox(int listen_fd)
{
    for (size_t i = 0; i < outbox_replay_count(); i++) {
        if (live_children >= cfg.max_children) {
            log_warn("outbox: %zu jobs not replayed: %d children already; "
                     "they stay in the outbox for the next start",
                     outbox_replay_count() - i, live_children);
            break;
        }
        pid_t pid = spawn_child(listen_fd);
        if (pid == 0) {
            struct exchange_request job;
            if (endpoint_admit_replay(jobcap, i, &job))
                finish_async_job(&job);
            child_exit();
        }
        if (pid < 0)
            log_warn("fork: %s; outbox job %zu stays for the next start",
                     strerror(errno), i + 1);
    }
    outbox_replay_done();
}

/* ---- --prefork N: the children are forked at start (prefork.c) ---- */

/* Forks cfg.prefork children that each accept on lfd for themselves
 * (prefork_child), and closes the parent's copy of lfd; from then on the
 * parent only reaps, until a stop or until no child is left. Returns
 * main's exit status: 0 if every child was gone at the end of the stop. */
static int run_prefork(int lfd)
{
    struct prefork *pf = prefork_new(cfg.prefork, cfg.accept_lock);
    if (pf == NULL)
        return 1;
    log_info("prefork: forking %d children, each accepting on the listener "
             "and serving one connection at a time (accept lock %s)",
             cfg.prefork, cfg.accept_lock ? "on" : "off");
    for (int i = 0; i < cfg.prefork; i++) {
        pid_t pid = spawn_child(-1); /* the child keeps lfd: it accepts */
        if (pid == 0) {
            prefork_child(pf, i, lfd, serve_connection);
            child_exit();
        }
        if (pid < 0) {
            log_warn("fork: %s; %d children only", strerror(errno), i);
            break;
        }
        log_info("prefork child %d is pid %d", i + 1, (int)pid);
    }
    close(lfd); /* the children accept; the port closes with the last */
    while (parent_wait(-1))
        ;
    stopping = true;
    log_info("%s: waiting for %d prefork children", live_children > 0
             ? "stop requested" : "every child is gone", live_children);
    wait_for_children();
    prefork_log_totals(pf);
    prefork_free(pf);
    return live_children == 0 ? 0 : 1;
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
    if (cfg.prefork > 0) /* each child has its own descriptor table */
        log_info("clients: %d at once, one per child (--prefork); the "
                 "others wait in the listen queue", cfg.prefork);
    else
        log_info("clients: up to %d at once, a process each "
                 "(--max-children); past it 503", cfg.max_children);
    replay_outbox(lfd);
    if (cfg.prefork > 0) {
        int rc = run_prefork(lfd);
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
    log_info("stop requested: not accepting; waiting for %d children "
             "(at most %d ms)", live_children, cfg.drain_ms);
    wait_for_children();
    log_info("exiting");
    callback_global_cleanup();
    jobcap_free_shared(jobcap);
    return 0;
}
