/* net: the socket plumbing every stage shares, so stage files show only the
 * concurrency model. All helpers retry on EINTR; none of them can raise
 * SIGPIPE (writes use MSG_NOSIGNAL). */
#ifndef COMMON_NET_H
#define COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

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

/* O_NONBLOCK on. 0 or -1. */
int net_set_nonblocking(int fd);

/* Receive and send timeouts on a blocking socket (SO_RCVTIMEO/SO_SNDTIMEO),
 * so one stalled peer cannot hold a blocking server forever. 0 or -1. */
int net_set_timeouts(int fd, int ms);

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

/* "127.0.0.1:53412" of the peer, for logs. Never fails (writes "?"). */
void net_peer_name(int fd, char *out, size_t outlen);

#endif
