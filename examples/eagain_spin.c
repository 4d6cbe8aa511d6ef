/* eagain_spin: waiting without select/epoll burns a core.
 *
 * Section 6 ("Non-blocking I/O and EAGAIN"). Seed original: the polling
 * loop of the third lecture, `while True: try: data = sock.recv(...)
 * except BlockingIOError: continue` over non-blocking sockets, before it
 * reinvents the event loop with select.
 * A child process sends one byte every 200 ms over a socket pair, five
 * times. The parent reads them twice: first by calling read on the
 * non-blocking socket again and again (EAGAIN, EAGAIN, ... data), then by
 * sleeping in epoll_wait until the kernel says the socket is readable.
 * What to notice: both take the same second of wall time, but the spinning
 * loop keeps a core busy the whole time (cpu near 100%, millions of
 * useless system calls); epoll_wait costs a handful of calls and ~0% cpu.
 * That is what 04's select and 05's epoll buy. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BYTES 5
#define GAP_MS 200

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The sender: one byte every GAP_MS, then it exits. */
static pid_t start_sender(int fd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    for (int i = 0; i < BYTES; i++) {
        struct timespec gap = {0, GAP_MS * 1000000L};
        while (nanosleep(&gap, &gap) != 0 && errno == EINTR) {}
        if (write(fd, "x", 1) != 1)
            _exit(1);
    }
    _exit(0);
}

static int reap(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Reads BYTES bytes from the non-blocking fd; spin=1 retries read at once
 * on EAGAIN, spin=0 sleeps in epoll_wait first. Counts the system calls. */
static int receive(int fd, int spin, long *calls)
{
    int ep = -1;
    if (!spin) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            perror("epoll");
            return -1;
        }
    }
    int got = 0;
    *calls = 0;
    while (got < BYTES) {
        if (!spin) {
            struct epoll_event ev;
            ++*calls;
            if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR) {
                perror("epoll_wait");
                close(ep);
                return -1;
            }
        }
        char b;
        ++*calls;
        ssize_t n = read(fd, &b, 1);
        if (n == 1)
            got++;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            perror("read");
            return -1;
        }
    }
    if (ep >= 0)
        close(ep);
    return 0;
}

int main(void)
{
    const char *names[2] = {"spin", "epoll"};
    for (int spin = 1; spin >= 0; spin--) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
            perror("socketpair");
            return 1;
        }
        int fl = fcntl(sv[0], F_GETFL);
        if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) < 0) {
            perror("fcntl");
            return 1;
        }
        double wall0 = clock_s(CLOCK_MONOTONIC);
        double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        pid_t pid = start_sender(sv[1]);
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        long calls = 0;
        int rc = receive(sv[0], spin, &calls);
        double wall = clock_s(CLOCK_MONOTONIC) - wall0;
        double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        if (reap(pid) != 0 || rc != 0)
            return 1;
        close(sv[0]);
        close(sv[1]);
        printf("%-6s waited %.2f s, cpu %3.0f%%, %ld system calls\n",
               names[1 - spin], wall, 100 * cpu / wall, calls);
    }
    return 0;
}
