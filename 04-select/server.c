/* 04-select: one thread serves everyone, with select() and a state machine
 * per connection.
 *
 * The model. Every socket is non-blocking, so no call can put the thread to
 * sleep except one: select(). Each turn of the loop, the server writes down
 * what every connection is waiting for (the read set, the write set), asks
 * select() to sleep until one of those sockets is ready or the earliest
 * deadline passes, and then takes one small step for each connection that
 * can move. A step reads what has arrived, or writes what fits, or notes
 * that a bill is done, and returns what the connection wants next:
 *
 *   EVCONN_READ    reading a request      the socket goes in the read set
 *   EVCONN_BILL    waiting for a bill     no set; its deadline wakes it
 *   EVCONN_WRITE   writing the response   the socket goes in the write set
 *   EVCONN_LINGER  answered, closing      the read set: read and drop what
 *                                         the client still sends, then close
 *   EVCONN_DURABLE its ok waits for the   no set; the outbox's flush thread
 *                  outbox (--outbox-sync) wakes it through a pipe
 *   EVCONN_CLOSE   done                   the loop closes and frees it
 *
 * That word is the connection's whole state; the loop applies it
 * (conn_apply). This is the lecture's "we take over the switching between
 * tasks ourselves": no thread is parked in read() or nanosleep(), so one
 * thread can hold thousands of clients that are mostly waiting.
 *
 * The steps are not in this file. They live in common/evconn.c, because
 * stage 05 runs exactly the same ones: read its header's table, then come
 * back here. What this file holds is the loop that drives them, and that
 * is the lesson: serve_one_turn builds the sets from each connection's
 * want, sleeps in select(), and calls the step that matches what select()
 * reported; conn_apply turns each answer into a set and a deadline. The
 * rest (accepting, starting jobs, stopping, main) is, line for line, the
 * text of 05-epoll-callbacks/server.c: diff the two files and every line
 * that differs talks to the loop.
 *
 * Waiting without sleeping. The simulated external call is not a nanosleep
 * any more but a deadline in a heap (common/timer). select()'s timeout is
 * the time left to the earliest deadline, so the loop wakes exactly when the
 * next bill is due; there is no polling interval and no busy loop. 500
 * clients waiting 2 s each cost 500 heap entries, not 500 threads. The sync
 * route waits its bills one after another (one deadline at a time, want
 * EVCONN_BILL); the async route arms one deadline per bill, so they wait
 * side by side, then PUTs the result with a curl *multi* handle whose
 * sockets join the same select (curl_multi_fdset, curl_multi_timeout,
 * curl_multi_perform). A retry after a failed PUT is one more deadline.
 *
 * What it costs.
 * - The programmer does the scheduling. The straight-line handler of 01
 *   is cut into steps, and what used to live in local variables (how much
 *   was read, which bill is next, what to do after writing) lives in
 *   struct evconn. Stage 05 keeps this shape; stage 06 gives the straight
 *   line back.
 * - One step that blocks or computes for long stalls every client. Nothing
 *   here may call a blocking function: not accept, not read, not sleep,
 *   not curl_easy_perform.
 * - select() itself is O(highest fd): the sets are rebuilt and scanned on
 *   every turn, and the kernel scans them again. Fine for hundreds of
 *   connections, wasteful for tens of thousands (05 moves to epoll).
 * - FD_SETSIZE. An fd_set is a fixed bitmap of FD_SETSIZE (1024) bits.
 *   FD_SET(1024, &set) writes past its end: memory corruption, or an abort
 *   under glibc's fortify checks. So select() can never watch descriptor
 *   1024 or above, however high the process's file limit is. A connection
 *   whose descriptor is that high gets an immediate 503 (a best-effort
 *   non-blocking send) and is closed, never passed to FD_SET. curl has the
 *   same problem with its own sockets: curl_multi_fdset silently leaves out
 *   any socket >= FD_SETSIZE, and reports max fd -1 when it has nothing
 *   left to report. When that happens while a transfer runs, the loop
 *   wakes every 100 ms to let curl look for itself, as curl's
 *   documentation suggests. To keep that rare, a curl socket that would be
 *   too high is refused when curl opens it (curl_refuse_high_socket): that
 *   try fails and is retried, and no transfer is left half-watched.
 *
 * Also in here: every wait on a client has a deadline that new bytes never
 * move: --idle-timeout-ms for a connection that has sent nothing yet,
 * --header-timeout-ms from a head's first byte (CR and LF count),
 * --body-timeout-ms from the head's end, so trickling a request byte by
 * byte does not help (slowloris). evconn_deadline says when, this loop
 * keeps the deadline in its heap; a late head or body gets 408. An async
 * job is reserved in a budget (--max-jobs, --max-bills) before its ok, or
 * refused with 503. Clients are accepted NET_ACCEPT_BATCH per turn, and
 * accept() failing with EMFILE pauses accepting for NET_ACCEPT_PAUSE_MS
 * (100 ms): a deadline, not a sleep, and no spinning on a listener that
 * stays readable. SIGINT/SIGTERM arrive as the shutdown pipe turning
 * readable: stop accepting, close idle keep-alive connections, finish the
 * rest (answers and callbacks) within --drain-ms (a deadline; a second
 * signal, the now pipe turning readable, ends it at once), name each job
 * whose callback was not delivered, exit 0. With --outbox-sync an ok
 * waits for a disk flush that a thread does for us: the thread's pipe is
 * one more descriptor in the read set.
 *
 * What to notice in the log. Every line has the same pid and no thread id:
 * one thread did everything. Start two sync requests at once: both
 * "bill ..." lines appear together, one delay after both "POST" lines.
 * During an async job, "GET /" lines keep being served while its bills wait
 * and its callback is retried. Past about 1020 open connections the log
 * says "refused ... FD_SETSIZE".
 *
 * Simplifications, on purpose:
 * - While a connection waits for its bills, its socket is in no set: a
 *   client that hangs up meanwhile is noticed when the answer is written.
 *   (Watching it would make select() return at once, again and again, for
 *   a pipelined request that is not to be read yet.)
 *
 * An answer is written at once, by the step that made it (evconn.c,
 * conn_flush): the socket goes in the write set only when its buffer is
 * full, so a keep-alive request costs one read and one write, not an extra
 * select() turn. */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "callback.h"
#include "config.h"
#include "endpoint.h"
#include "evconn.h"
#include "evjob.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "shutdown.h"
#include "stage.h"
#include "timer.h"
#include "trace.h"

#define STAGE "04-select"

#define CURL_BLIND_POLL_MS 100 /* curl is busy but gave us no socket */

static struct config cfg;

/* ------------------------------------------------------------------ */
/* Deadlines: everything this server waits for that is not a socket.   */

/* One heap holds the deadlines of connections, bills, retries and the
 * accept pause. The kind says whose a deadline is, so the loop knows which
 * step is due when it passes. */
enum deadline_kind {
    DEADLINE_CONN,      /* struct conn: a timeout, or its current bill */
    DEADLINE_JOB_BILL,  /* struct bill_wait: one bill of an async job */
    DEADLINE_JOB_RETRY, /* struct job: time to try the callback again */
    DEADLINE_ACCEPT,    /* the accept pause after EMFILE is over */
    DEADLINE_DRAIN,     /* the stop's drain is over */
};

struct deadline {
    struct timer_node node;
    enum deadline_kind kind;
};

static struct timer_heap deadlines;

static void deadline_init(struct deadline *d, enum deadline_kind kind)
{
    timer_node_init(&d->node);
    d->kind = kind;
}

/* Arms (or moves) d to at_ms. False only if the heap could not grow. */
static bool deadline_at(struct deadline *d, uint64_t at_ms)
{
    if (timer_heap_push(&deadlines, &d->node, at_ms) == 0)
        return true;
    log_warn("no memory for one more deadline");
    return false;
}

static void deadline_cancel(struct deadline *d)
{
    timer_heap_remove(&deadlines, &d->node);
}

/* ------------------------------------------------------------------ */
/* The server's state: globals, because one thread owns all of it.     */

/* What every connection and job shares (common/evconn, common/evjob),
 * set up in main with this loop's part (ops, after begin_stop). */
static struct evconn_server srv;

/* A connection: the shared state machine, plus the one deadline this loop
 * keeps for it (a timeout, or its current bill). */
struct conn {
    struct evconn ev;         /* ev.fd is always < FD_SETSIZE (conn_take) */
    struct deadline deadline;
};

/* An async job: its bills wait concurrently, then its callback is PUT. */
struct job;
struct bill_wait {
    struct deadline timer;
    struct job *job;
    size_t index;
};

struct job {
    struct evjob core;        /* the steps' state (common/evjob) */
    struct deadline retry;
    struct bill_wait bills[]; /* core.req.num_bills of them */
};

static CURLM *multi;          /* every callback PUT in flight */
static int transfers;         /* easy handles in it */

/* SIGINT/SIGTERM set srv.stopping; this deadline bounds the stop. */
static struct deadline drain;
static bool done;             /* serve_one_turn no more */

/* ------------------------------------------------------------------ */
/* Stopping is decided wherever the last piece of work ends.            */

static void stop_if_done(void)
{
    if (evconn_server_done(&srv))
        done = true;
}

/* ------------------------------------------------------------------ */
/* Connections: opening, closing, and "what next".                      */

/* The connection around one of srv.conns. */
static struct conn *conn_of(struct evconn *ev)
{
    return container_of(ev, struct conn, ev);
}

/* srv's close_conn, for the connection around ev. */
static void conn_close(struct evconn *ev)
{
    struct conn *c = conn_of(ev);
    deadline_cancel(&c->deadline);
    evconn_release(ev);
    free(c);
    stop_if_done();
}

/* "What next": the table of evconn.h, for this loop. The socket's set is
 * read from c->ev.want when the next turn builds the sets; here only the
 * deadline that ends the wait is moved, to the moment evconn_deadline
 * names. It is the last thing every step's caller does; on failure it
 * closes the connection, so the caller must not touch c after it. */
static void conn_apply(struct conn *c, enum evconn_want want)
{
    if (want == EVCONN_CLOSE ||
        !deadline_at(&c->deadline, evconn_deadline(&c->ev)))
        conn_close(&c->ev);
}

/* The connection's deadline passed: a bill is due, or it waited too long. */
static void conn_deadline_passed(struct conn *c)
{
    if (c->ev.want == EVCONN_BILL)
        conn_apply(c, evconn_on_bill_due(&c->ev));
    else
        conn_apply(c, evconn_on_timeout(&c->ev));
}

static void conn_open(int fd)
{
    struct conn *c = evconn_alloc(sizeof *c, fd);
    if (c == NULL)
        return;
    deadline_init(&c->deadline, DEADLINE_CONN);
    evconn_init(&c->ev, &srv, fd);
    conn_apply(c, EVCONN_READ); /* a new connection waits for a request */
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

static int listen_fd = -1;
static struct deadline accept_resume; /* the pause after EMFILE */
static bool accept_paused;

/* A descriptor select() cannot watch (see FD_SETSIZE at the top): answer
 * 503 with one non-blocking send, best effort, and close. */
static void refuse_beyond_fd_setsize(int fd)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    log_warn("refused %s: descriptor %d does not fit in select()'s "
             "FD_SETSIZE (%d)", peer, fd, FD_SETSIZE);
    struct endpoint_reply reply;
    endpoint_busy("too many connections for select() (FD_SETSIZE)", &reply);
    size_t len;
    char *text = endpoint_reply_render(&reply, false, &len);
    endpoint_reply_free(&reply);
    if (text && net_write_some(fd, text, len) < 0)
        log_info("%s: could not even send the 503: %s", peer,
                 strerror(errno));
    free(text);
    /* The lingering close (net.h), cut to one pass: this descriptor cannot
     * enter select() to wait for more, so half-close, drop what the
     * request already sent (so close() sends a FIN, not a reset that could
     * destroy the 503 on its way), and close. */
    size_t dropped = 0;
    if (net_linger_begin(fd))
        (void)net_linger_drop(fd, &dropped);
    close(fd);
}

/* A new client from net_accept_batch: only what fits in an fd_set. */
static void conn_take(int fd)
{
    if (fd >= FD_SETSIZE)
        refuse_beyond_fd_setsize(fd);
    else
        conn_open(fd);
}

/* accept() failed (logged): stop watching the listener for
 * NET_ACCEPT_PAUSE_MS. */
static void accept_pause(void)
{
    accept_paused = deadline_at(&accept_resume,
                                timer_now_ms() + NET_ACCEPT_PAUSE_MS);
}

/* The pause is over. */
static void accept_resumed(void)
{
    accept_paused = false;
    log_info("accepting again");
}

/* ------------------------------------------------------------------ */
/* Async jobs: concurrent bills, then a callback PUT through curl multi. */

/* The job around one of srv.jobs (or a finished transfer's). */
static struct job *job_of(struct evjob *core)
{
    return container_of(core, struct job, core);
}

/* srv's free_job, for the job around core. */
static void job_free(struct evjob *core)
{
    struct job *job = job_of(core);
    for (size_t i = 0; i < job->core.req.num_bills; i++)
        deadline_cancel(&job->bills[i].timer);
    deadline_cancel(&job->retry);
    if (job->core.in_transfer)
        transfers--;
    evjob_release(&job->core, multi);
    free(job);
    stop_if_done();
}

/* curl's CURLOPT_SOCKOPTFUNCTION, called for every socket curl opens.
 * curl_multi_fdset silently leaves out sockets >= FD_SETSIZE: with one
 * transfer that is the "max fd -1" case (the loop polls every 100 ms), but
 * with several, a high one would be left out while the others are
 * reported, and it would move only when something else woke the loop. So
 * such a socket is refused as it is born: that try fails (logged) and the
 * retry policy takes over, a moment later, when descriptors may be free. */
static int curl_refuse_high_socket(void *clientp, curl_socket_t fd,
                                   curlsocktype purpose)
{
    (void)clientp;
    (void)purpose;
    if (fd < FD_SETSIZE)
        return CURL_SOCKOPT_OK;
    log_warn("curl's socket %d does not fit in select()'s FD_SETSIZE (%d)",
             (int)fd, FD_SETSIZE);
    return CURL_SOCKOPT_ERROR;
}

/* Does what a job step asked for. A PUT does not run here: curl's sockets
 * join the next select(), and curl_multi_perform moves it along. */
static void job_apply(struct job *job, enum evjob_want want)
{
    switch (want) {
    case EVJOB_BILLS: /* its other bills' deadlines are still armed */
        return;
    case EVJOB_PUT: /* every socket of this try must fit in the sets */
        curl_easy_setopt(job->core.cb->easy, CURLOPT_SOCKOPTFUNCTION,
                         curl_refuse_high_socket);
        if (!evjob_put(&job->core, multi))
            job_free(&job->core);
        else
            transfers++;
        return;
    case EVJOB_RETRY: /* the backoff is a deadline like any other */
        if (!deadline_at(&job->retry, job->core.retry_at_ms))
            job_free(&job->core);
        return;
    case EVJOB_DONE:
        job_free(&job->core);
        return;
    }
}

/* srv.start_job: one deadline per bill, all armed now: they run out side
 * by side. What can fail comes first (evconn.h). */
static bool job_start(const struct exchange_request *req)
{
    struct job *job = calloc(1, sizeof *job +
                                    req->num_bills * sizeof job->bills[0]);
    if (job == NULL)
        return false;
    deadline_init(&job->retry, DEADLINE_JOB_RETRY);
    for (size_t i = 0; i < req->num_bills; i++) {
        struct bill_wait *b = &job->bills[i];
        b->job = job;
        b->index = i;
        deadline_init(&b->timer, DEADLINE_JOB_BILL);
    }
    for (size_t i = 0; i < req->num_bills; i++) {
        if (!deadline_at(&job->bills[i].timer, evconn_bill_deadline(&srv))) {
            while (i-- > 0)
                deadline_cancel(&job->bills[i].timer);
            free(job);
            return false;
        }
    }
    /* The point of no return: the job takes over its reservation. */
    evjob_init(&job->core, &srv, req);
    return true;
}

/* Lets curl do whatever its sockets and timers allow, without blocking,
 * then collects the transfers that finished. */
static void curl_drive(void)
{
    int running;
    CURLMcode rc = curl_multi_perform(multi, &running);
    if (rc != CURLM_OK)
        log_warn("curl_multi_perform: %s", curl_multi_strerror(rc));
    struct evjob *core;
    CURLcode result;
    while ((core = evjob_next_finished(multi, &result)) != NULL) {
        transfers--;
        job_apply(job_of(core), evjob_on_put_done(core, result));
    }
}

/* ------------------------------------------------------------------ */
/* Stopping                                                            */

/* The drain is over (its deadline, or a second signal): every process is
 * told (shutdown_now); whatever is left is named and dropped after the
 * loop. */
static void drain_over(void)
{
    shutdown_now();
    log_warn("drain over: dropping %zu connections and %zu jobs",
             srv.num_conns, srv.num_jobs);
    done = true;
}

/* SIGINT/SIGTERM: the shutdown pipe is readable. Stop accepting, close
 * connections idle between requests, and let everything in flight finish
 * within --drain-ms (a second signal ends that at once); the last
 * conn_close or job_free ends the loop (stop_if_done). Answers written
 * from now on say "Connection: close". */
static void begin_stop(void)
{
    close(listen_fd);
    listen_fd = -1;
    deadline_cancel(&accept_resume);
    if (!deadline_at(&drain, timer_now_ms() + (uint64_t)srv.cfg->drain_ms))
        done = true;
    evconn_server_stop(&srv); /* stopping, logged, idle ones closed */
    stop_if_done();
}

/* The outbox's flush thread has flushed (--outbox-sync): every
 * connection whose ok waited for it answers now. */
static void outbox_flushed(void)
{
    outbox_syncer_woken();
    struct evconn *e;
    while ((e = evconn_next_durable(&srv)) != NULL)
        conn_apply(conn_of(e), evconn_on_durable(e));
}

/* This loop's part of the shared server (evconn.h). */
static const struct evconn_ops ops = {
    .start_job = job_start, .close_conn = conn_close, .free_job = job_free};

/* ------------------------------------------------------------------ */
/* The loop                                                            */

/* Adds fd to a set. Descriptors >= FD_SETSIZE never get here (conn_take
 * refuses them); the check stays because FD_SET beyond the bitmap would
 * corrupt memory, and such a bound is a real check, not an assert. */
static void watch_fd(int fd, fd_set *set, int *max_fd)
{
    if (fd < 0 || fd >= FD_SETSIZE) {
        log_warn("descriptor %d cannot be watched by select()", fd);
        return;
    }
    FD_SET(fd, set);
    if (fd > *max_fd)
        *max_fd = fd;
}

/* The sooner of two timeouts in ms, where -1 means "no timeout". */
static int sooner(int a, long b)
{
    if (b < 0)
        return a;
    if (b > 86400000L)
        b = 86400000L;
    return (a < 0 || b < a) ? (int)b : a;
}

/* Every deadline that has passed, earliest first: whose it is says which
 * step is due. */
static void deadlines_expire(void)
{
    uint64_t now = timer_now_ms();
    struct timer_node *node;
    while ((node = timer_heap_pop_expired(&deadlines, now)) != NULL) {
        struct deadline *d = container_of(node, struct deadline, node);
        switch (d->kind) {
        case DEADLINE_CONN:
            conn_deadline_passed(container_of(d, struct conn, deadline));
            break;
        case DEADLINE_JOB_BILL: {
            struct bill_wait *b = container_of(d, struct bill_wait, timer);
            job_apply(b->job, evjob_on_bill_due(&b->job->core, b->index));
            break;
        }
        case DEADLINE_JOB_RETRY:
            job_apply(container_of(d, struct job, retry), EVJOB_PUT);
            break;
        case DEADLINE_ACCEPT:
            accept_resumed();
            break;
        case DEADLINE_DRAIN:
            drain_over();
            break;
        }
    }
}

/* One turn: write down what everyone waits for, sleep in select() until
 * something is ready or the earliest deadline, then step whoever can move.
 * False if select() itself failed (a bug: nothing sensible is left). */
static bool serve_one_turn(void)
{
    fd_set rd, wr, ex;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_ZERO(&ex);
    int max_fd = -1;
    /* Before the stop its pipe; during it the now pipe (a second signal). */
    watch_fd(srv.stopping ? shutdown_now_fd() : shutdown_fd(), &rd, &max_fd);
    if (outbox_syncs())
        watch_fd(outbox_syncer_fd(), &rd, &max_fd);
    if (listen_fd >= 0 && !accept_paused)
        watch_fd(listen_fd, &rd, &max_fd);
    LIST_FOR_EACH(it, &srv.conns) {
        struct evconn *e = LIST_ITEM(it, struct evconn, link);
        if (e->want == EVCONN_READ || e->want == EVCONN_LINGER)
            watch_fd(e->fd, &rd, &max_fd);
        else if (e->want == EVCONN_WRITE)
            watch_fd(e->fd, &wr, &max_fd);
    }
    int timeout = timer_heap_timeout_ms(&deadlines, timer_now_ms());
    if (transfers > 0) {
        int curl_max_fd = -1;
        long curl_ms = -1;
        curl_multi_fdset(multi, &rd, &wr, &ex, &curl_max_fd);
        curl_multi_timeout(multi, &curl_ms);
        if (curl_max_fd > max_fd)
            max_fd = curl_max_fd;
        timeout = sooner(timeout, curl_ms);
        if (curl_max_fd == -1) /* busy, but nothing select() can watch */
            timeout = sooner(timeout, CURL_BLIND_POLL_MS);
    }

    struct timeval tv = {.tv_sec = timeout / 1000,
                         .tv_usec = (timeout % 1000) * 1000};
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, 0, timeout < 0 ? "no timeout" : "timeout",
               timeout); /* the trace's picture of a turn: asleep here */
    int n = select(max_fd + 1, &rd, &wr, &ex, timeout < 0 ? NULL : &tv);
    TRACE_NOTE(TRACE_BLOCKED_END, 0, "events", n);
    if (n < 0 && errno == EINTR)
        return true; /* a signal: the shutdown pipe says the rest */
    if (n < 0) {
        log_warn("select: %s", strerror(errno));
        return false;
    }

    if (srv.stopping && FD_ISSET(shutdown_now_fd(), &rd))
        drain_over();
    else if (!srv.stopping && FD_ISSET(shutdown_fd(), &rd))
        begin_stop();
    if (outbox_syncs() && FD_ISSET(outbox_syncer_fd(), &rd))
        outbox_flushed();
    /* Connections first, then new ones: a connection accepted this turn
     * was not in the sets, and must not be stepped on a bit that belonged
     * to an fd closed earlier in the turn. A step only ever closes its own
     * connection, so saving next (the _SAFE walk) is enough. */
    LIST_FOR_EACH_SAFE(it, next, &srv.conns) {
        struct evconn *e = LIST_ITEM(it, struct evconn, link);
        if (FD_ISSET(e->fd, &rd) && e->want == EVCONN_READ)
            conn_apply(conn_of(e), evconn_on_readable(e));
        else if (FD_ISSET(e->fd, &rd) && e->want == EVCONN_LINGER)
            conn_apply(conn_of(e), evconn_on_lingering(e));
        else if (FD_ISSET(e->fd, &wr) && e->want == EVCONN_WRITE)
            conn_apply(conn_of(e), evconn_on_writable(e));
    }
    /* The listener is readable: accept a batch (net.h). */
    if (listen_fd >= 0 && !accept_paused && FD_ISSET(listen_fd, &rd) &&
        net_accept_batch(listen_fd, conn_take) != 0)
        accept_pause();
    if (transfers > 0)
        curl_drive();
    deadlines_expire();
    return true;
}

/* ------------------------------------------------------------------ */

/* Says at start how many clients select() lets this server hold: the
 * descriptors below FD_SETSIZE (and the limit) that it does not hold
 * already; its callbacks' connections take from the same ones. */
static void log_clients(void)
{
    int lowest = dup(listen_fd); /* dup takes the lowest free descriptor */
    if (lowest >= 0)
        close(lowest);
    long below = net_fd_limit() < FD_SETSIZE ? net_fd_limit() : FD_SETSIZE;
    log_info("clients: up to %ld at once (select() watches descriptors "
             "below FD_SETSIZE, %d, and the server holds %d of them); past "
             "it 503", below - lowest, FD_SETSIZE, lowest);
}

int main(int argc, char **argv)
{
    if (stage_begin(&cfg, argc, argv, STAGE, 8004, 0,
                    "Stage 04: one thread serves every connection with "
                    "select() and a state machine per connection.\n"
                    "A connection on a descriptor select() cannot watch "
                    "(FD_SETSIZE, 1024) gets 503.") < 0)
        return 1;
    evconn_server_init(&srv, &cfg, STAGE, &ops, cfg.max_jobs, cfg.max_bills);
    multi = curl_multi_init();
    if (multi == NULL) {
        log_warn("curl_multi_init failed");
        return 1;
    }
    timer_heap_init(&deadlines);
    deadline_init(&accept_resume, DEADLINE_ACCEPT);
    deadline_init(&drain, DEADLINE_DRAIN);
    log_info("one thread; select() can watch descriptors below %d",
             FD_SETSIZE);
    listen_fd = net_listen_announce(&cfg);
    if (listen_fd < 0)
        return 1;
    log_clients();
    if (outbox_syncs() && outbox_syncer_start() < 0)
        return 1;
    evconn_server_replay(&srv, 0, 1);

    int rc = 0;
    while (!done) {
        if (!serve_one_turn()) {
            rc = 1;
            break;
        }
    }
    jobcap_report(&srv.budget, outbox_fate());
    evconn_server_drop(&srv);
    evconn_server_free(&srv);
    outbox_syncer_stop();
    if (listen_fd >= 0)
        close(listen_fd);
    curl_multi_cleanup(multi);
    callback_global_cleanup();
    timer_heap_free(&deadlines);
    log_info("stopped");
    return rc;
}
