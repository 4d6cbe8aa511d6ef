/* switch_cost: what one switch costs, from a function call to a process.
 *
 * Section 8 ("From generators to coroutines"), and section 3's IPC cost.
 * asyncio original: the seed's generator scheduler resumes a task with
 * next(gen); asyncio resumes a Task with one callback of its loop. Here
 * the same hand-over of control is timed five ways, on this machine:
 *   call        a plain function call through a pointer (no switch at all)
 *   setjmp      06's default switch (co_call_on_loop_stack: there and back,
 *               two switches, so the figure is per switch)
 *   swapcontext glibc's swapcontext, ping-pong between two contexts (it
 *               also restores the signal mask: one system call a switch)
 *   thread      a hand-off between two threads through a mutex and condvar
 *               (each hand-off wakes the other thread: futex calls and the
 *               kernel's scheduler)
 *   pipe        a round trip of one byte between two processes over two
 *               pipes (the IPC that 02's children would need), per one-way
 *               trip
 * What to notice: a coroutine switch costs tens of nanoseconds (setjmp)
 * to a few hundred (swapcontext's system call); anything the kernel has to
 * schedule (a thread woken, a process woken) costs microseconds, a hundred
 * times more. The order of the last two varies with the machine. */
#include "../06-coroutines/coro.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void report(const char *what, double ns, long ops)
{
    printf("%-12s %10.1f ns per op  (%ld ops)\n", what, ns / ops, ops);
}

/* ---- a function call ---------------------------------------------------- */
__attribute__((noinline)) static void *nothing(void *arg)
{
    __asm__ volatile("" ::: "memory"); /* the compiler may not drop the call */
    return arg;
}
static void *(*volatile call_ptr)(void *) = nothing;

/* ---- 06's setjmp switch --------------------------------------------------- */
#define CORO_CALLS 1000000L
static void *coro_bench(void *arg)
{
    double *ns = arg;
    double t0 = now_ns();
    for (long i = 0; i < CORO_CALLS; i++)
        co_call_on_loop_stack(nothing, NULL);
    *ns = now_ns() - t0;
    return NULL;
}

/* ---- swapcontext ---------------------------------------------------------- */
#define SWAPS 500000L
static ucontext_t main_ctx, peer_ctx;
static void peer(void)
{
    for (;;)
        swapcontext(&peer_ctx, &main_ctx);
}

/* ---- a thread hand-off ------------------------------------------------------- */
#define HANDOFFS 50000L
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long turn; /* even: main's turn, odd: the peer's */
static void *ponger(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (long i = 0; i < HANDOFFS; i++) {
        while (turn % 2 == 0)
            pthread_cond_wait(&cv, &mu);
        turn++;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ---- a pipe round trip between processes ----------------------------------- */
#define TRIPS 50000L
static int xfer(int rfd, int wfd, int first_write)
{
    char b = 'x';
    for (long i = 0; i < TRIPS; i++) {
        for (int step = 0; step < 2; step++) {
            ssize_t n;
            if ((step == 0) == first_write) {
                while ((n = write(wfd, &b, 1)) < 0 && errno == EINTR) {}
            } else {
                while ((n = read(rfd, &b, 1)) < 0 && errno == EINTR) {}
            }
            if (n != 1)
                return -1;
        }
    }
    return 0;
}

int main(void)
{
    double t0 = now_ns();
    const long calls = 100000000L;
    for (long i = 0; i < calls; i++)
        call_ptr(NULL);
    report("call", now_ns() - t0, calls);

    double ns = 0;
    if (co_sched_init(NULL) != 0 || !co_spawn(coro_bench, &ns) || co_sched_run() != 0) {
        fprintf(stderr, "switch_cost: scheduler failed\n");
        return 1;
    }
    co_sched_free();
    report("setjmp", ns, 2 * CORO_CALLS);

    static char stack[64 * 1024];
    if (getcontext(&peer_ctx) != 0) {
        perror("getcontext");
        return 1;
    }
    peer_ctx.uc_stack.ss_sp = stack;
    peer_ctx.uc_stack.ss_size = sizeof stack;
    peer_ctx.uc_link = NULL;
    makecontext(&peer_ctx, peer, 0);
    t0 = now_ns();
    for (long i = 0; i < SWAPS; i++)
        swapcontext(&main_ctx, &peer_ctx);
    report("swapcontext", now_ns() - t0, 2 * SWAPS);

    pthread_t th;
    int rc = pthread_create(&th, NULL, ponger, NULL);
    if (rc != 0) {
        fprintf(stderr, "pthread_create: %d\n", rc);
        return 1;
    }
    t0 = now_ns();
    pthread_mutex_lock(&mu);
    for (long i = 0; i < HANDOFFS; i++) {
        turn++;
        pthread_cond_signal(&cv);
        while (turn % 2 == 1)
            pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    report("thread", now_ns() - t0, 2 * HANDOFFS);
    pthread_join(th, NULL);

    int ab[2], ba[2];
    if (pipe(ab) != 0 || pipe(ba) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0)
        _exit(xfer(ab[0], ba[1], 0) == 0 ? 0 : 1);
    t0 = now_ns();
    int ok = xfer(ba[0], ab[1], 1) == 0;
    double pipe_ns = now_ns() - t0;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "switch_cost: the pipe round trip failed\n");
        return 1;
    }
    report("pipe", pipe_ns, 2 * TRIPS);
    return 0;
}
