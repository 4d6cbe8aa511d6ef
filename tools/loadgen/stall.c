/* stall: --stall N, connections that send half a request and then
 * hold still while the measured requests run (slowloris), held by the
 * main thread. */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The classic slow client: a request line and one header, then silence.
 * No blank line, so the server must keep waiting for the rest. */
static const char stall_request[] = "GET / HTTP/1.1\r\nHost: loadgen\r\n";

static void stall_close(struct loadgen *lg, size_t i, enum stall_state s)
{
    lg->stall_states[i] = s;
    if (lg->stall_fds[i] >= 0)
        close(lg->stall_fds[i]);
    lg->stall_fds[i] = -1;
}

/* Opens the stalls and waits (up to 3 s) until each has connected and sent
 * its half request, so they are in place before the measured requests. A
 * Ctrl-C meanwhile stays pending (main blocks the signals) until the run's
 * supervisor takes it. */
bool stalls_open(struct loadgen *lg, CURLU *url)
{
    size_t n = (size_t)lg->opt.stall;
    if (!n)
        return true;
    struct addrinfo *ai = resolve_url(url);
    lg->stall_fds = malloc(n * sizeof *lg->stall_fds);
    lg->stall_states = malloc(n * sizeof *lg->stall_states);
    struct pollfd *pfd = malloc(n * sizeof *pfd);
    if (!ai || !lg->stall_fds || !lg->stall_states || !pfd) {
        if (ai)
            freeaddrinfo(ai);
        free(pfd);
        free(lg->stall_fds);
        free(lg->stall_states);
        lg->stall_fds = NULL;
        lg->stall_states = NULL;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        lg->stall_states[i] = STALL_CONNECTING;
        lg->stall_fds[i] = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
                                  SOCK_CLOEXEC, 0);
        if (lg->stall_fds[i] < 0 ||
            (connect(lg->stall_fds[i], ai->ai_addr, ai->ai_addrlen) < 0 &&
             errno != EINPROGRESS))
            stall_close(lg, i, STALL_FAILED);
    }
    freeaddrinfo(ai);
    double deadline = now_s() + STALL_CONNECT_WAIT_MS / 1000.0;
    for (;;) {
        nfds_t k = 0;
        for (size_t i = 0; i < n; i++)
            pfd[i] = (struct pollfd){
                .fd = lg->stall_states[i] == STALL_CONNECTING ? lg->stall_fds[i]
                                                              : -1,
                .events = POLLOUT};
        for (size_t i = 0; i < n; i++)
            k += pfd[i].fd >= 0;
        double left = deadline - now_s();
        if (!k || left <= 0)
            break;
        if (poll(pfd, n, (int)ceil(left * 1000)) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
                err ||
                send(pfd[i].fd, stall_request, sizeof stall_request - 1,
                     MSG_NOSIGNAL) != (ssize_t)(sizeof stall_request - 1))
                stall_close(lg, i, STALL_FAILED);
            else
                lg->stall_states[i] = STALL_HOLDING;
        }
    }
    free(pfd);
    return true;
}

/* After the run: a stall the server closed (or answered, e.g. with 408)
 * reads as end of stream, an error or data; one still held reads EAGAIN. */
void stalls_check(struct loadgen *lg)
{
    for (size_t i = 0; i < (size_t)lg->opt.stall; i++) {
        if (lg->stall_states[i] != STALL_HOLDING)
            continue;
        char c;
        ssize_t r = recv(lg->stall_fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (!(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
            lg->stall_states[i] = STALL_DROPPED;
    }
}

size_t stalls_count(const struct loadgen *lg, enum stall_state s)
{
    size_t n = 0;
    for (size_t i = 0; lg->stall_states && i < (size_t)lg->opt.stall; i++)
        n += lg->stall_states[i] == s;
    return n;
}
