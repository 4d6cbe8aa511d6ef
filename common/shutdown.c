/* shutdown: see shutdown.h. */
#include "shutdown.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t shutdown_flag;
static int shutdown_pipe[2] = {-1, -1};

static void shutdown_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    shutdown_flag = 1;
    /* Non-blocking: if the pipe is somehow full, it is readable already. */
    ssize_t ignored = write(shutdown_pipe[1], "x", 1);
    (void)ignored;
    errno = saved;
}

int shutdown_init(void)
{
    if (pipe2(shutdown_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa = {.sa_handler = shutdown_on_signal,
                           .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
}

void shutdown_mask_signals(int how, sigset_t *old)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    /* Fails only for a bad how: a bug, not a state to handle. */
    (void)pthread_sigmask(how, &stop_signals, old);
}

int shutdown_fd(void) { return shutdown_pipe[0]; }

bool shutdown_requested(void) { return shutdown_flag != 0; }

bool shutdown_wait_accept(int listen_fd)
{
    struct pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN},
                            {.fd = shutdown_pipe[0], .events = POLLIN}};
    while (!shutdown_requested()) {
        int n = poll(fds, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (fds[1].revents)
            return false;
        if (fds[0].revents)
            return true;
    }
    return false;
}
