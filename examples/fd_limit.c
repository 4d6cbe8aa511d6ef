/* fd_limit: a client is a descriptor, and descriptors run out first.
 *
 * Section 9 ("Many clients"). Every connection a server holds is a file
 * descriptor, and a process may have at most RLIMIT_NOFILE of them open:
 * its soft limit (`ulimit -n`; 1024 on many systems) is what applies, its
 * hard limit (`ulimit -Hn`) how far the process may raise it by itself.
 * This program opens connections to its own listener on loopback, both
 * ends in this process (two descriptors each), until a call fails, then
 * reports which one and why:
 *   limit: soft 1024, hard 1048576
 *   509 connections (1018 descriptors) open, then accept: Too many open files (EMFILE)
 * (The client's end of each connection is made first; when it finds no
 * room, the last server end is closed to make some, so that the story
 * ends where a server's does: at accept.)
 * What to notice: the connection that failed was complete. The kernel
 * finished its handshake before accept, so the client believes it is
 * connected while the server cannot take it: a server at its descriptor
 * limit holds clients in its backlog that it will never serve, and a
 * level-triggered loop that retries accept at once spins (04-06 pause
 * accepting instead). It stops at MAX_CONNECTIONS (10000, c10k) if the
 * limit is higher, and closes everything before it exits.
 * Exercise s9-fds raises the soft limit to the hard one at the start, as
 * net_raise_fd_limit (common/net.c) does for every stage. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNECTIONS 10000

/* "1024", or "unlimited". */
static const char *limit_text(rlim_t v, char *buf, size_t n)
{
    if (v == RLIM_INFINITY)
        return "unlimited";
    snprintf(buf, n, "%llu", (unsigned long long)v);
    return buf;
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("getrlimit");
        return 1;
    }
    char soft[32], hard[32];
    printf("limit: soft %s, hard %s\n", limit_text(rl.rlim_cur, soft, sizeof soft),
           limit_text(rl.rlim_max, hard, sizeof hard));

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(lfd, 128) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
        perror("listen");
        return 1;
    }
    int *fds = malloc(2 * MAX_CONNECTIONS * sizeof *fds);
    if (!fds) {
        perror("malloc");
        return 1;
    }
    int n = 0, open_fds = 0;
    const char *failed = NULL;
    int err = 0;
    while (n < MAX_CONNECTIONS) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 && errno == EMFILE && n > 0) {
            /* The client's end found no room: free the last server end
             * (that connection is half gone now), so that the next client
             * connects and the story ends where a server's does. */
            close(fds[--open_fds]);
            n--;
            c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        }
        if (c < 0) {
            failed = "socket", err = errno;
            break;
        }
        fds[open_fds++] = c;
        if (connect(c, (struct sockaddr *)&addr, sizeof addr) != 0) {
            failed = "connect", err = errno;
            break;
        }
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0) {
            failed = "accept", err = errno;
            break;
        }
        fds[open_fds++] = s;
        n++;
    }
    if (failed)
        printf("%d connections (%d descriptors) open, then %s: %s (%s)\n", n, 2 * n, failed,
               strerror(err), err == EMFILE ? "EMFILE" : "not EMFILE");
    else
        printf("%d connections (%d descriptors) open, and no limit reached\n", n, 2 * n);
    for (int i = 0; i < open_fds; i++)
        close(fds[i]);
    free(fds);
    close(lfd);
    return 0;
}
