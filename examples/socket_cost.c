/* socket_cost: what a TCP connection costs next to a message on one.
 *
 * Section 2 ("A socket, measured"). Seed original: the third lecture's
 * low-level server (socket, bind, listen, accept, recv, send, close), a
 * system call each. Both ends live in this one process on loopback, so
 * the figures are the kernel's work and nothing else:
 *   connection  socket + connect (the three-way handshake) + accept +
 *               close on both sides, per connection
 *   round trip  a 100-byte "request" and its "answer" over a connection
 *               that stays open (send, recv, send, recv), per round trip
 * What to notice: a new connection costs several round trips' worth of
 * system calls, which is why every stage keeps connections alive and
 * why loadgen reuses them by default. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECTIONS 2000
#define TRIPS 20000

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Moves exactly n bytes: one send and one recv, which suffice on loopback
 * for 100 bytes; anything short is reported as an error. */
static int pass(int from, int to, char *buf, size_t n)
{
    ssize_t w, r;
    while ((w = send(from, buf, n, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    while ((r = recv(to, buf, n, MSG_WAITALL)) < 0 && errno == EINTR) {}
    return w == (ssize_t)n && r == (ssize_t)n ? 0 : -1;
}

/* Connects a new socket to the listener and accepts it: *c is the
 * client's end, *s the server's. The handshake completes in the kernel
 * before accept, so one thread can do both. */
static int open_connection(int lfd, const struct sockaddr_in *addr, int *c, int *s)
{
    *c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*c < 0 || connect(*c, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        perror("connect");
        return -1;
    }
    *s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (*s < 0) {
        perror("accept4");
        return -1;
    }
    return 0;
}

int main(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(lfd, 128) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
        perror("listen");
        return 1;
    }

    double t0 = now_us();
    int c, s;
    for (int i = 0; i < CONNECTIONS; i++) {
        if (open_connection(lfd, &addr, &c, &s) != 0)
            return 1;
        close(c);
        close(s);
    }
    double conn_us = (now_us() - t0) / CONNECTIONS;

    if (open_connection(lfd, &addr, &c, &s) != 0)
        return 1;
    char buf[100];
    memset(buf, 'x', sizeof buf);
    t0 = now_us();
    for (int i = 0; i < TRIPS; i++)
        if (pass(c, s, buf, sizeof buf) != 0 || pass(s, c, buf, sizeof buf) != 0) {
            fprintf(stderr, "socket_cost: a round trip failed\n");
            return 1;
        }
    double trip_us = (now_us() - t0) / TRIPS;
    close(c);
    close(s);
    close(lfd);
    printf("connection  %6.1f us (socket, connect, accept, 2 x close)\n", conn_us);
    printf("round trip  %6.1f us (100 bytes there and back on an open connection)\n", trip_us);
    return 0;
}
