/* tasklist: see tasklist.h. */
#include "tasklist.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int tasklist_pipe[2] = {-1, -1};

/* Async-signal-safe: one write, errno kept. A full pipe is readable
 * already, so a lost byte loses nothing. */
static void tasklist_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(tasklist_pipe[1], "q", 1);
    (void)ignored;
    errno = saved;
}

int tasklist_init(void)
{
    if (tasklist_pipe[0] < 0 &&
        pipe2(tasklist_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa = {.sa_handler = tasklist_on_signal,
                           .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGQUIT, &sa, NULL);
}

int tasklist_fd(void) { return tasklist_pipe[0]; }

void tasklist_drain(void)
{
    char buf[64];
    ssize_t n;
    do
        n = read(tasklist_pipe[0], buf, sizeof buf);
    while (n > 0 || (n < 0 && errno == EINTR));
}

void tasklist_line(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w;
    do
        w = write(STDERR_FILENO, line, (size_t)n);
    while (w < 0 && errno == EINTR);
}
