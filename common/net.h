/* net: the socket plumbing every stage shares, so stage files show only the
 * concurrency model. All helpers retry on EINTR; none of them can raise
 * SIGPIPE (writes use MSG_NOSIGNAL). */
#ifndef COMMON_NET_H
#define COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* After accept() fails with anything but EAGAIN (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM...), a server stops accepting for this long instead of retrying:
 * the listener stays readable, so retrying at once would spin, and 100 ms
 * lets closing connections free descriptors. Every stage pauses its own
 * way (a sleep, a deadline, a loop timer, co_sleep), for this long. */
#define NET_ACCEPT_PAUSE_MS 100

/* An event-driven server accepts at most this many clients per wake-up,
 * then serves the others: a flood of connects cannot starve the clients it
 * already has, and a level-triggered listener reports the rest next turn
 * (Redis accepts in batches the same way). */
#define NET_ACCEPT_BATCH 64

/* What every server does before its first accept, in one call: raises the
 * descriptor limit (net_raise_fd_limit; logs what it got), listens on
 * cfg->host:cfg->port (net_listen), makes the listener non-blocking (an
 * event loop must never sleep in accept(); a blocking acceptor must not
 * either, when a client gives up between poll and accept), logs the
 * settings (config_log) and prints the one stdout line (net_announce).
 * Returns the listening fd, or -1 after printing why to stderr. */
int net_listen_announce(const struct config *cfg);

/* For a server of n worker processes (05 and 06 --workers): what
 * net_listen_announce does, but n listeners on the same port, each with
 * SO_REUSEPORT, into fds[0..n-1]: the kernel then hashes each new
 * connection to one of them, so each worker accepts from its own queue and
 * no worker wakes for another's client. With port 0 the first one picks
 * the port and the others join it. 0, or -1 after printing why (none left
 * open). */
int net_listen_announce_reuseport(const struct config *cfg, int *fds, int n);

/* Connections this process accepted (net_accept, net_count_accept), for
 * the "accepts per worker" lines (each worker is a process: one count
 * each). */
unsigned long net_accepted(void);

/* What net_accept does with each client the kernel hands over (the
 * trace's accept event, net_accepted's count), for a client accepted
 * another way: io_uring's multishot accept (common/loop_uring.c). */
void net_count_accept(int fd);

/* Binds and listens on host:port with SO_REUSEADDR (port 0 = any free
 * port). Returns the fd and stores the real port in *bound_port, or returns
 * -1 after printing why to stderr. The fd is close-on-exec. */
int net_listen(const char *host, int port, int *bound_port);

/* Prints the one stdout line scripts wait for, "listening on http://H:P",
 * and flushes it. */
void net_announce(const char *host, int port);

/* Ignores SIGPIPE process-wide: a peer that vanishes mid-write must cost an
 * EPIPE, not the server. */
void net_ignore_sigpipe(void);

/* Raises the soft descriptor limit to the hard one: a shell's soft limit
 * (often 1024) would stop accept() with EMFILE long before a one-thread
 * server runs out of anything else. 0, or -1 with errno. */
int net_raise_fd_limit(void);

/* Descriptors a server keeps for itself besides its clients' sockets:
 * stdio, the listener, the stop pipe, the loop's, curl's own, a log or a
 * trace. A round figure, on the safe side. */
#define NET_FD_OWN 16

/* The soft descriptor limit now (net_listen_announce raised it to the
 * hard one), or LONG_MAX when there is none. */
long net_fd_limit(void);

/* The line an event-loop server (05, 06) logs at start: how many clients
 * each of its `processes` (--workers) can hold at once, its descriptors
 * (raised to the hard limit first, and said, as net_listen_announce
 * does) less NET_FD_OWN and `reserved` (its callbacks' connections), and
 * how many that makes in all. Returns the figure per process. */
long net_log_loop_clients(long reserved, int processes);

/* O_NONBLOCK on. 0 or -1. */
int net_set_nonblocking(int fd);

/* Receive and send timeouts on a blocking socket (SO_RCVTIMEO/SO_SNDTIMEO),
 * so one stalled peer cannot hold a blocking server forever. 0 or -1. */
int net_set_timeouts(int fd, int ms);

/* Accepts up to NET_ACCEPT_BATCH queued clients from a non-blocking
 * listener as non-blocking close-on-exec sockets, handing each to
 * take(fd). 0 when the queue is empty or the batch is done; otherwise the
 * errno after which the caller pauses accepting for NET_ACCEPT_PAUSE_MS
 * (already logged: "accept: ...; not accepting for 100 ms"). */
int net_accept_batch(int listen_fd, void (*take)(int fd));

/* accept4 with close-on-exec (and O_NONBLOCK if nonblocking), retrying
 * EINTR and ECONNABORTED. Returns the fd, or -1 with errno (EAGAIN when a
 * non-blocking listener is drained; EMFILE/ENFILE when out of descriptors:
 * the caller backs off instead of spinning). */
int net_accept(int listen_fd, bool nonblocking);

/* One read: retries EINTR. >0 bytes, 0 at end of stream, -1 with errno
 * (EAGAIN on an empty non-blocking socket). */
ssize_t net_read_some(int fd, void *buf, size_t n);

/* One send: retries EINTR. >0 bytes, -1 with errno (EAGAIN when a
 * non-blocking socket's buffer is full). */
ssize_t net_write_some(int fd, const void *buf, size_t n);

/* Sends all n bytes on a blocking socket, looping over partial writes.
 * 0, or -1 with errno (EPIPE, ECONNRESET, EAGAIN after a send timeout). */
int net_write_all(int fd, const void *buf, size_t n);

/* ---- The lingering close ----
 *
 * After an answer that ends a connection (an error, a 408, "Connection:
 * close"), the client may still be sending what will never be read.
 * Closing a socket over unread input makes the kernel send a reset, and a
 * reset can destroy the answer before the client reads it. So every server
 * ends such a connection the same way: half-close (net_linger_begin: our
 * FIN goes out after the answer), read and drop what the client still
 * sends (net_linger_drop) until it closes too, for at most NET_LINGER_MS
 * and NET_LINGER_MAX_BYTES, then close. Only the wait in between differs:
 * conn_io_linger blocks or parks (01-03, 06), evconn's EVCONN_LINGER is a
 * want its loop watches (04, 05). */
#define NET_LINGER_MS 1000                /* then close whatever comes */
#define NET_LINGER_MAX_BYTES (256 * 1024) /* a few requests' worth; past
                                             it the client is not stopping */

/* Shuts our side of fd (SHUT_WR): the lingering close begins. False if
 * that failed (the client is gone): close at once. */
bool net_linger_begin(int fd);

/* Reads and drops what fd holds now, without waiting, counting it in
 * *dropped. True while the linger goes on: nothing more for now, so wait
 * until fd is readable (or NET_LINGER_MS has passed) and call again. False
 * once it is over: the client closed or failed, or NET_LINGER_MAX_BYTES
 * were dropped. Then close fd. */
bool net_linger_drop(int fd, size_t *dropped);

/* "127.0.0.1:53412" of the peer, for logs. Never fails (writes "?"). */
void net_peer_name(int fd, char *out, size_t outlen);

#endif
