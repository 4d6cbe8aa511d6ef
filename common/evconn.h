/* evconn: the per-connection state machine of the event-driven stages,
 * 04-select and 05-epoll-callbacks.
 *
 * Those two stages differ in one thing: the loop. 04 builds fd_sets and
 * calls select(); 05 registers callbacks with an epoll loop. What a
 * connection does when its socket is ready or its deadline passes is the
 * same in both, so it is written once, here, as steps. A step does what can
 * be done now, without waiting, and returns what the connection wants next:
 * handlers tell the loop what they want, and the loop applies it.
 *
 *   want           the loop must               until the deadline (then
 *                                              evconn_on_timeout)
 *   EVCONN_READ    watch the socket readable   one of deadlines.h's three,
 *                                              none of which new bytes
 *                                              move: no byte yet,
 *                                              --idle-timeout-ms after the
 *                                              accept or the last answer;
 *                                              a head begun (CR/LF count),
 *                                              --header-timeout-ms after
 *                                              its first byte; a body,
 *                                              --body-timeout-ms after the
 *                                              head's end
 *   EVCONN_BILL    watch nothing               the sync bill is due (then
 *                                              evconn_on_bill_due instead)
 *   EVCONN_WRITE   watch the socket writable   --idle-timeout-ms after the
 *                  (the socket's buffer was    last progress
 *                  full: a step writes an
 *                  answer at once, so most
 *                  never ask for this)
 *   EVCONN_LINGER  watch the socket readable   NET_LINGER_MS after the
 *                  (the lingering close of     answer
 *                  net.h)
 *   EVCONN_DURABLE watch nothing: its ok       --idle-timeout-ms (the
 *                  waits for the outbox's      flush never came: close)
 *                  flush (--outbox-sync), on
 *                  outbox.h's thread; then
 *                  evconn_next_durable
 *   EVCONN_CLOSE   stop watching, close it     -
 *                  (evconn_release), free it
 *
 * Past the head's or the body's deadline the client gets 408 {"detail":
 * ...} with "Connection: close", then the lingering close; a connection
 * that never sent a byte is closed without a word (an unsolicited 408 on
 * an idle keep-alive would race with a request the client may be sending
 * at that moment, and be read as its answer).
 *
 * Each stage has one function that applies a want (conn_apply): 04 notes
 * which set the socket goes in and moves the connection's deadline in its
 * heap; 05 asks its loop to receive or send for that want and arms a loop
 * timer. evconn_deadline says when the wait ends, so the timeouts (idle,
 * slowloris, stalled reader, linger) are decided here too, and both loops
 * only arm what they are told.
 *
 * Readiness or completion (common/loop.h says more). 04 hears "the socket
 * is readable" and lets a step make the read: evconn_on_readable,
 * evconn_on_writable, evconn_on_lingering. 05's loop makes the reads and
 * writes itself, on epoll or io_uring, and hands a step what came of
 * them: evconn_on_received and evconn_on_sent, with the buffers
 * evconn_recv_buffer and evconn_send_data name. Both kinds of step share
 * everything after the system call, so the two stages still run the same
 * connection logic. A server whose loop does the I/O sets
 * srv->loop_does_io, and its steps never write by themselves: an answer
 * waits as EVCONN_WRITE for the loop's send.
 *
 * An async job's steps are in evjob: a job outlives its connection. The one
 * thing a connection's step cannot do by itself is start such a job (arming
 * its bills is the loop's business), so the stage supplies that
 * operation: evconn_ops.start_job (beside the two that end a connection
 * and a job, for a stop: evconn_server_stop). Before it, the step
 * reserves the job and its bills in srv->budget (common/jobcap): past
 * --max-jobs or --max-bills the client gets 503 with Retry-After, never an
 * ok for work the server may drop. With --outbox the job is written down
 * before the ok (outbox.h): the write is a write() into the page cache,
 * done right here; with --outbox-sync the ok also waits for a disk flush,
 * which this thread must not wait for: outbox.h's thread does it, the
 * connection waits in EVCONN_DURABLE, and the loop wakes it when the
 * thread's pipe says a flush ended.
 *
 * One thread drives every connection: nothing here is thread-safe. A step
 * keeps no state of its own outside the connection it is given; a routed
 * request lives on the step's stack until the connection (sync) or the new
 * job (async) copies it. */
#ifndef COMMON_EVCONN_H
#define COMMON_EVCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "deadlines.h"
#include "exchange.h"
#include "http.h"
#include "jobcap.h"
#include "list.h"

#define EVCONN_WRITE_BURST 16            /* answers one step writes at once
                                            (pipelined requests) before the
                                            loop's next turn */

struct evconn;
struct evjob;

/* Read buffers an idle connection gave back, kept for the next one that
 * reads: at most this many a server, each HTTP_PARSER_INITIAL_CAP (64 KiB
 * in all: http.h). Freeing each at once would make malloc shrink and
 * regrow its heap every few requests (05 gives its buffer back after
 * every answer). */
#define EVCONN_SPARE_BUFFERS 16

/* What a loop supplies to the steps and to a stop: the three things they
 * cannot do by themselves, because each touches what only the loop holds
 * (timers, registrations, the stage's struct around evconn and evjob). */
struct evconn_ops {
    /* Starts an async job for req (copy it: req lives on the caller's
     * stack): arms its bills, then evjob_init, which takes over req's
     * reservation in budget. False, with nothing started and the
     * reservation untouched, if it could not (out of memory): the client
     * then gets a 503. So everything that can fail comes before
     * evjob_init. */
    bool (*start_job)(const struct exchange_request *req);
    /* Ends a connection: cancels what the loop holds for it, then
     * evconn_release, then frees the stage's struct around it. */
    void (*close_conn)(struct evconn *c);
    /* Ends a job the same way (evjob_release). */
    void (*free_job)(struct evjob *job);
};

/* What one server shares with all its connections and jobs (evjob.h), set
 * up by evconn_server_init; the loop sets stopping on SIGINT/SIGTERM
 * (evconn_server_stop). The lists (list.h) are kept by
 * evconn_init/evconn_release and evjob_init/evjob_release, for the loop to
 * walk (LIST_ITEM finds the evconn, container_of the stage's struct around
 * it) and for a stop to count. */
struct evconn_server {
    const struct config *cfg; /* timeouts, bill delays, main service, token */
    const char *stage;        /* "04-select": GET / names it */
    const struct evconn_ops *ops; /* the loop's part */
    struct jobcap budget;     /* async jobs and bills promised, not done */
    bool stopping;            /* answers say "Connection: close" from now */
    bool loop_does_io;        /* the loop reads and writes (05): the
                                 steps never write an answer themselves */
    unsigned jitter_seed;     /* rand_r's state for the bills' jitter */
    struct list conns;        /* every open connection (evconn.link), newest
                                 first */
    size_t num_conns;
    struct list jobs;         /* every async job not yet done (evjob.link) */
    size_t num_jobs;
    struct list durable;      /* connections in EVCONN_DURABLE, oldest
                                 first (evconn.durable_link) */
    char *spare[EVCONN_SPARE_BUFFERS]; /* read buffers given back */
    size_t num_spare;
};

/* Sets srv up for a stage: no connection or job yet, the async budget
 * (jobcap_init) of max_jobs and max_bills, jitter seed 1. ops must
 * outlive srv. */
void evconn_server_init(struct evconn_server *srv, const struct config *cfg,
                        const char *stage, const struct evconn_ops *ops,
                        long max_jobs, long max_bills);

/* Zeroed memory for a new connection's struct, size bytes (its evconn
 * and the loop's fields beside it). NULL if there is none: then fd is
 * closed, and that is logged. */
void *evconn_alloc(size_t size, int fd);

/* The stop's part that is the same for every loop: sets srv->stopping
 * (answers from now on say "Connection: close"), logs what is left to
 * finish, and closes every connection idle between requests
 * (ops->close_conn). Not accepting any more, and bounding the rest by
 * --drain-ms (and a second signal), are the loop's. */
void evconn_server_stop(struct evconn_server *srv);

/* True once srv is stopping and nothing is left in flight: the loop may
 * end. */
bool evconn_server_done(const struct evconn_server *srv);

/* Ends every connection and job still there (ops->close_conn,
 * ops->free_job): for after a loop that ended before they did (the drain
 * ran out, or the loop failed). Report the jobs first (jobcap_report). */
void evconn_server_drop(struct evconn_server *srv);

/* At start: starts the outbox's jobs that never ended (outbox.h), those
 * whose index is share modulo shares (--workers: each worker its share),
 * each admitted into srv->budget as a new job would be, then frees the
 * list. A job that cannot start stays in the outbox for the next start. */
void evconn_server_replay(struct evconn_server *srv, int share, int shares);

/* Gives back what evconn_server_init took (the budget's slots): after
 * evconn_server_drop, when the server is done. */
void evconn_server_free(struct evconn_server *srv);

/* The outbox's flush thread woke the loop (outbox_syncer_fd, after
 * outbox_syncer_woken): the next connection in EVCONN_DURABLE whose
 * record a flush has now covered, taken off srv->durable; NULL when none
 * is left. The loop applies evconn_on_durable to each. */
struct evconn *evconn_next_durable(struct evconn_server *srv);

/* What a connection waits for next: its whole state (see the table). */
enum evconn_want {
    EVCONN_READ,
    EVCONN_BILL,
    EVCONN_WRITE,
    EVCONN_LINGER,
    EVCONN_DURABLE,
    EVCONN_CLOSE,
};

struct evconn_sync; /* the sync route's bills, one after another */

struct evconn {
    int fd;
    char peer[64];              /* "127.0.0.1:53422", for log lines */
    enum evconn_want want;      /* set by every step before it returns */
    struct evconn_server *srv;
    /* When each wait ends (evconn_deadline); none moves when bytes
     * arrive. */
    struct deadlines read;      /* the request's: idle from the accept or
                                   the last answer, the head from its first
                                   byte (or, if it came pipelined, its
                                   turn), the body from the head's end */
    uint64_t write_since_ms;    /* the answer was queued or last progressed */
    uint64_t linger_since_ms;   /* the lingering close began */
    struct http_parser parser;
    char *out;                  /* the response (or 100 Continue) */
    size_t out_len, out_sent;
    bool out_interim;           /* out is "100 Continue": more to read */
    bool out_fresh;             /* out was queued and not yet tried: the
                                   step that queued it writes it at once */
    bool close_after_write;
    size_t lingered;            /* bytes dropped while closing */
    struct evconn_sync *sync;   /* allocated on the first sync request */
    struct list link;           /* in srv->conns */
    /* EVCONN_DURABLE: the outbox ticket its ok waits for, since when, and
     * its place in srv->durable; keep_alive for that ok. */
    uint64_t durable_ticket;
    uint64_t durable_since_ms;
    bool durable_keep_alive;
    struct list durable_link;
};

/* Sets c up for a freshly accepted non-blocking fd, adds it to
 * srv->conns and logs it; its want is EVCONN_READ, for the loop to apply. */
void evconn_init(struct evconn *c, struct evconn_server *srv, int fd);

/* Takes c out of srv->conns, closes its fd, logs "closed", frees what c
 * holds (not c itself). The loop must forget the fd first (05:
 * loop_unwatch) and cancel c's timers. */
void evconn_release(struct evconn *c);

/* The steps. Each records its answer in c->want and returns it. */

/* The socket is readable while c wants EVCONN_READ: one read into the
 * parser, then parse, route and answer whatever is complete. */
enum evconn_want evconn_on_readable(struct evconn *c);

/* The socket is writable while c wants EVCONN_WRITE: send what fits; after
 * the last byte, the next pipelined request, a new wait, or the lingering
 * close. */
enum evconn_want evconn_on_writable(struct evconn *c);

/* The socket is readable while c wants EVCONN_LINGER: drop what the
 * client still sends (net_linger_drop); EVCONN_CLOSE once it closes too or
 * sends too much. */
enum evconn_want evconn_on_lingering(struct evconn *c);

/* The steps of a loop that makes the reads and writes itself (05: its
 * loop_recv and loop_send on epoll or io_uring). */

/* Where the bytes c waits for go while it wants EVCONN_READ (the
 * parser's free space) or EVCONN_LINGER (a scratch buffer: those bytes are
 * dropped), and *len how many fit. *len is 0 while c is idle (no byte of
 * a request buffered): it holds no buffer then, and the loop's wait ends
 * when bytes are there, for evconn_on_received to ask again. NULL
 * (logged) when there is no room: close c. */
char *evconn_recv_buffer(struct evconn *c, size_t *len);

/* The loop received n bytes into evconn_recv_buffer (0: the client
 * closed; < 0: -errno) while c wanted EVCONN_READ or EVCONN_LINGER: parse
 * and answer what is complete, or count what the lingering close drops.
 * After a wait with *len 0, n > 0 only says bytes are there: EVCONN_READ,
 * and the next evconn_recv_buffer gives room for them. */
enum evconn_want evconn_on_received(struct evconn *c, ssize_t n);

/* What to send while c wants EVCONN_WRITE: *len bytes at the result. */
const char *evconn_send_data(const struct evconn *c, size_t *len);

/* The loop sent n bytes of evconn_send_data (< 0: -errno): the rest, the
 * next pipelined request, a new wait, or the lingering close. */
enum evconn_want evconn_on_sent(struct evconn *c, ssize_t n);

/* The sync bill c waited for (EVCONN_BILL) is due: compute it, then wait
 * for the next one or answer. */
enum evconn_want evconn_on_bill_due(struct evconn *c);

/* c's ok can go (evconn_next_durable gave it): the ok says how durable
 * the job is (endpoint_async_ok), then it is written. */
enum evconn_want evconn_on_durable(struct evconn *c);

/* c's deadline passed while it wanted READ, WRITE, LINGER or DURABLE:
 * log why. EVCONN_WRITE for a 408 (a head or body too slow: the answer,
 * then the lingering close), else EVCONN_CLOSE (idle, not reading its
 * answer, done lingering, no flush came). */
enum evconn_want evconn_on_timeout(struct evconn *c);

/* When c's current wait ends (timer_now_ms()'s clock), for every want but
 * EVCONN_CLOSE: the loop arms its timer for this. */
uint64_t evconn_deadline(const struct evconn *c);

/* True if c waits for a request that has not begun (an idle keep-alive):
 * what a stopping server closes at once. */
bool evconn_idle(const struct evconn *c);

/* Prints srv's task list (common/tasklist.h): a line per connection
 * (its fd, its peer, what it waits for, for how long, and when that wait
 * ends) and per async job (its bills, its PUT or its retry). */
void evconn_server_list(const struct evconn_server *srv);

/* When a bill's simulated external call started now ends: now + --delay-ms
 * + a random 0..--jitter-ms. Waiting is a deadline, never a sleep. */
uint64_t evconn_bill_deadline(struct evconn_server *srv);

#endif
