/* shutdown: see shutdown.h. */
#include "shutdown.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "timer.h"

/* Signals this process took: the first asks for a stop, the second for
 * "now". Per process on purpose: Ctrl-C signals every process of the
 * group at once, and each must count it as one. */
static volatile sig_atomic_t signals_taken;
static int drain_ms;
/* When the drain ends, on timer_now_ms's clock; 0: no stop seen yet.
 * Lock-free, so the handler may store it and any thread read it. */
static _Atomic uint64_t drain_deadline;
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && sizeof(long) == 8,
               "the handler stores a 64-bit deadline without a lock");
static int stop_pipe[2] = {-1, -1};
static int now_pipe[2] = {-1, -1};

/* Starts this process's drain clock unless it runs already. */
static void drain_begin(void)
{
    uint64_t none = 0;
    atomic_compare_exchange_strong(&drain_deadline, &none,
                                   timer_now_ms() + (uint64_t)drain_ms);
}

/* Async-signal-safe throughout: clock_gettime, write, atomics. */
static void shutdown_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    int pipe_fd = signals_taken++ == 0 ? stop_pipe[1] : now_pipe[1];
    if (pipe_fd == stop_pipe[1])
        drain_begin();
    /* Non-blocking: if the pipe is somehow full, it is readable already. */
    ssize_t ignored = write(pipe_fd, "x", 1);
    (void)ignored;
    errno = saved;
}

int shutdown_init(int drain)
{
    drain_ms = drain > 0 ? drain : 0;
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(now_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    struct sigaction sa = {.sa_handler = shutdown_on_signal,
                           .sa_flags = SA_RESTART};
    /* Neither signal interrupts the handler of the other: each is counted
     * once, in order. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
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

int shutdown_fd(void) { return stop_pipe[0]; }

int shutdown_now_fd(void) { return now_pipe[0]; }

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return fd >= 0 && poll(&p, 1, 0) > 0;
}

bool shutdown_requested(void)
{
    if (!readable(stop_pipe[0]))
        return false;
    drain_begin(); /* a process that learns of it here starts its clock */
    return true;
}

void shutdown_now(void)
{
    ssize_t ignored = write(now_pipe[1], "x", 1); /* full: readable */
    (void)ignored;
}

int shutdown_drain_left_ms(void)
{
    uint64_t deadline = atomic_load(&drain_deadline);
    return deadline ? timer_ms_left(deadline, timer_now_ms()) : -1;
}

bool shutdown_drain_over(void)
{
    if (shutdown_drain_left_ms() != 0)
        return false;
    shutdown_now(); /* the deadline passed: tell everyone */
    return true;
}

bool shutdown_now_requested(void)
{
    return readable(now_pipe[0]) || shutdown_drain_over();
}

int shutdown_cut_timeout(int timeout_ms)
{
    int left = shutdown_drain_left_ms();
    if (left < 0)
        return timeout_ms;
    return timeout_ms < 0 || left < timeout_ms ? left : timeout_ms;
}

bool shutdown_sleep_ms(int ms)
{
    uint64_t due = timer_deadline_in(ms);
    for (;;) {
        if (shutdown_drain_over())
            return false;
        int left = timer_ms_left(due, timer_now_ms());
        if (left == 0)
            return true;
        struct pollfd p = {.fd = now_pipe[0], .events = POLLIN};
        if (poll(&p, 1, shutdown_cut_timeout(left)) > 0)
            return false; /* a second signal, or another's deadline */
    }
}

bool shutdown_wait_accept(int listen_fd)
{
    struct pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN},
                            {.fd = stop_pipe[0], .events = POLLIN}};
    for (;;) {
        int n = poll(fds, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (fds[1].revents) {
            drain_begin(); /* this process's clock, if the signal was not */
            return false;
        }
        if (fds[0].revents)
            return true;
    }
}
