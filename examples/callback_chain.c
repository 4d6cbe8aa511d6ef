/* callback_chain: one HTTP request as a chain of callbacks, on 05's loop.
 *
 * Section 7 ("Callback hell"). Seed original: the series' handlers with a
 * success and an error callback, and Node.js's fetch(url, function (err,
 * res) {...}). Usage: callback_chain PORT...: fetches GET / from
 * 127.0.0.1:PORT, every port at once, on one thread, with common/loop.h.
 * A fetch is three steps, each a callback that registers the next:
 *   fetch_start    socket, a non-blocking connect; wait until writable
 *   on_connected   the connect's result (SO_ERROR); write the request;
 *                  wait until readable
 *   on_readable    read until the server closes (Connection: close);
 *                  then finish, which calls the user's callback, done
 * and finish() is where a fetch ends: the fd unwatched and closed, the
 * user told, once. When every fetch has ended the loop has nothing left
 * to watch and loop_run returns by itself.
 *   fetch 1 (port 8005): HTTP/1.1 200 OK, 3 callbacks, 0.4 ms
 *   3 fetches ended in 1 ms; descriptors: 4 before, 4 after
 * What to notice: the happy path is already spread over three functions
 * and a struct. The error paths are not written at all: any failure
 * (a refused connection, a read error) ends the whole program with
 * die(), every other fetch with it, and a server that never answers keeps
 * its fetch, and the loop, waiting for ever. Exercise s7-chain gives the
 * chain its error path and a deadline. */
#include "../common/loop.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FETCHES 8

struct fetch {
    int id, port, fd;
    int callbacks;   /* how many of our callbacks the loop ran for it */
    char buf[4096];  /* the answer, up to its first 4 KiB */
    size_t len;
    struct timespec t0;
};

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The descriptors this process has open (its /proc/self/fd entries, the
 * directory's own fd apart). */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

/* The user's callback: one line per fetch, its status line or its error. */
static void done(struct fetch *f, const char *error)
{
    if (error) {
        printf("fetch %d (port %d): error: %s, %d callbacks, %.1f ms\n", f->id, f->port,
               error, f->callbacks, ms_since(&f->t0));
        return;
    }
    size_t line = strcspn(f->buf, "\r\n");
    printf("fetch %d (port %d): %.*s, %d callbacks, %.1f ms\n", f->id, f->port, (int)line,
           f->buf, f->callbacks, ms_since(&f->t0));
}

/* The end of a fetch: its fd forgotten by the loop and closed, the user
 * told. */
static void finish(struct loop *loop, struct fetch *f, const char *error)
{
    loop_unwatch(loop, f->fd);
    close(f->fd);
    f->fd = -1;
    done(f, error);
}

/* No error path yet: any failure ends the program. */
static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void on_readable(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    struct fetch *f = arg;
    f->callbacks++;
    char *at = f->buf + f->len;
    size_t room = sizeof f->buf - 1 - f->len;
    char scratch[4096];
    ssize_t n = read(fd, room ? at : scratch, room ? room : sizeof scratch);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return; /* nothing yet: the loop calls again */
    if (n < 0)
        die("read");
    if (n > 0) {
        f->len += room ? (size_t)n : 0;
        return; /* more may come, until the server closes */
    }
    f->buf[f->len] = '\0';
    finish(loop, f, NULL);
}

static void on_connected(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    struct fetch *f = arg;
    f->callbacks++;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        die("getsockopt");
    if (err != 0) {
        errno = err;
        die("connect");
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        die("write"); /* a fresh socket's buffer takes 60 bytes at once */
    if (loop_watch(loop, fd, LOOP_READABLE, on_readable, f) < 0)
        die("loop_watch");
}

static void fetch_start(struct loop *loop, struct fetch *f)
{
    clock_gettime(CLOCK_MONOTONIC, &f->t0);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(f->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        die("connect");
    if (loop_watch(loop, f->fd, LOOP_WRITABLE, on_connected, f) < 0)
        die("loop_watch");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc - 1 > MAX_FETCHES) {
        fprintf(stderr, "usage: callback_chain PORT... (at most %d)\n", MAX_FETCHES);
        return 2;
    }
    struct loop *loop = loop_new();
    if (!loop)
        die("loop_new");
    static struct fetch fetches[MAX_FETCHES];
    int before = open_fds();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < argc - 1; i++) {
        fetches[i] = (struct fetch){.id = i + 1, .port = atoi(argv[i + 1]), .fd = -1};
        fetch_start(loop, &fetches[i]);
    }
    /* Returns once nothing is watched and no timer is armed. */
    if (loop_run(loop) < 0)
        die("loop_run");
    printf("%d fetches ended in %.0f ms; descriptors: %d before, %d after\n", argc - 1,
           ms_since(&t0), before, open_fds());
    loop_free(loop);
    return 0;
}
