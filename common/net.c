/* net: see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "trace.h"

#define NET_BACKLOG 4096 /* the kernel caps it at net.core.somaxconn */

static unsigned long accepted; /* per process: see net_accepted */

unsigned long net_accepted(void) { return accepted; }

/* net_listen, with SO_REUSEPORT too if reuseport. */
static int net_listen_opt(const char *host, int port, bool reuseport,
                          int *bound_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        /* Without SO_REUSEADDR a restart fails for a minute while old
         * connections sit in TIME_WAIT. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (reuseport &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
            err = errno;
            close(fd);
            fd = -1;
            continue;
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, NET_BACKLOG) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        /* The usual cause in a classroom: the same stage still running in
         * another terminal. Say how to get past it. */
        fprintf(stderr, "cannot listen on %s:%d: %s%s\n", host, port,
                strerror(err),
                err == EADDRINUSE ? " (a server still running there? stop it,"
                                    " or pass --port N; --port 0 takes any"
                                    " free port)" : "");
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        fprintf(stderr, "getsockname: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    *bound_port = ntohs(ss.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int net_listen(const char *host, int port, int *bound_port)
{
    return net_listen_opt(host, port, false, bound_port);
}

void net_announce(const char *host, int port)
{
    if (strchr(host, ':'))
        printf("listening on http://[%s]:%d\n", host, port);
    else
        printf("listening on http://%s:%d\n", host, port);
    fflush(stdout);
}

void net_ignore_sigpipe(void)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

int net_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur >= rl.rlim_max)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* Raises the limit and says what the server got, so a log shows why it
 * stopped accepting (EMFILE) at the count it did. Once a process. */
static void net_log_fd_limit(void)
{
    static bool said;
    if (said)
        return;
    said = true;
    int rc = net_raise_fd_limit();
    int err = errno;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    char limit[32];
    if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(limit, sizeof limit, "unlimited");
    else
        snprintf(limit, sizeof limit, "%llu", (unsigned long long)rl.rlim_cur);
    if (rc < 0)
        log_warn("descriptors: cannot raise the limit (%s); up to %s",
                 strerror(err), limit);
    else
        log_info("descriptors: up to %s (the hard limit)", limit);
}

long net_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > LONG_MAX)
        return LONG_MAX;
    return (long)rl.rlim_cur;
}

long net_log_loop_clients(long reserved, int processes)
{
    net_log_fd_limit();
    long fds = net_fd_limit();
    if (fds == LONG_MAX) {
        log_info("clients: no descriptor limit; memory is the limit");
        return LONG_MAX;
    }
    long keep = NET_FD_OWN + reserved;
    long each = fds > keep ? fds - keep : 0;
    if (processes > 1)
        log_info("clients: up to %ld at once in each of %d workers, %ld in "
                 "all (%ld descriptors a process, less %ld kept for the "
                 "server's own and its callbacks' connections)", each,
                 processes, each * processes, fds, keep);
    else
        log_info("clients: up to %ld at once (%ld descriptors, less %ld "
                 "kept for the server's own and its callbacks' "
                 "connections; --workers N holds N times as many)", each,
                 fds, keep);
    return each;
}

int net_listen_announce(const struct config *cfg)
{
    net_log_fd_limit();
    int port;
    int fd = net_listen(cfg->host, cfg->port, &port);
    if (fd < 0)
        return -1;
    if (net_set_nonblocking(fd) < 0) {
        fprintf(stderr, "listening socket: O_NONBLOCK: %s\n",
                strerror(errno));
        close(fd);
        return -1;
    }
    config_log(cfg);
    net_announce(cfg->host, port);
    return fd;
}

int net_listen_announce_reuseport(const struct config *cfg, int *fds, int n)
{
    net_log_fd_limit();
    int port = cfg->port;
    for (int i = 0; i < n; i++) {
        fds[i] = net_listen_opt(cfg->host, port, true, &port);
        if (fds[i] >= 0 && net_set_nonblocking(fds[i]) < 0) {
            fprintf(stderr, "listening socket: O_NONBLOCK: %s\n",
                    strerror(errno));
            close(fds[i]);
            fds[i] = -1;
        }
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    config_log(cfg);
    net_announce(cfg->host, port);
    return 0;
}

int net_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int net_set_timeouts(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void net_count_accept(int fd)
{
    accepted++;
    TRACE(TRACE_ACCEPT, NULL, fd);
}

int net_accept(int listen_fd, bool nonblocking)
{
    int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, flags);
        if (fd >= 0) {
            net_count_accept(fd);
            return fd;
        }
        /* A client that gave up before we accepted it is not our error. */
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        return -1;
    }
}

int net_accept_batch(int listen_fd, void (*take)(int fd))
{
    for (int i = 0; i < NET_ACCEPT_BATCH; i++) {
        int fd = net_accept(listen_fd, true);
        if (fd >= 0) {
            take(fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0; /* drained */
        int err = errno;
        log_warn("accept: %s; not accepting for %d ms", strerror(err),
                 NET_ACCEPT_PAUSE_MS);
        return err;
    }
    return 0;
}

ssize_t net_read_some(int fd, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

ssize_t net_write_some(int fd, const void *buf, size_t n)
{
    for (;;) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        return w;
    }
}

int net_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = net_write_some(fd, p, n);
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

bool net_linger_begin(int fd)
{
    return shutdown(fd, SHUT_WR) == 0;
}

bool net_linger_drop(int fd, size_t *dropped)
{
    char sink[4096];
    while (*dropped < NET_LINGER_MAX_BYTES) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false; /* the client closed too, or failed */
        *dropped += (size_t)n;
    }
    return false;
}

void net_peer_name(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN], port[8];
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port,
                    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, "%s:%s", host, port);
}
