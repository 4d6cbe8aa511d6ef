/* pipe_bills: a job's bills in one process, the way 02's child waits them.
 *
 * Section 3 ("Zombies and the price of IPC"). 02's async route waits its
 * bills one after another in one child: to wait them together it would
 * need a process per bill, and each subtotal would then be computed in
 * another address space, out of the parent's reach (02-fork/server.c's
 * header says why). This program is that job on its own: three bills,
 * each an external call that takes its time (300, 200 and 100 ms here),
 * waited one after another, then the breakdown in the request's order:
 *   bill 1: 20.00 RUB (pid 4121)
 *   bill 2: 80.00 RUB (pid 4121)
 *   bill 3: 30.00 RUB (pid 4121)
 *   total 130.00 RUB in 600 ms
 * What to notice: the waits add up (600 ms), and every line carries the
 * same pid. Exercise s3-pipe makes the bills wait together, a child
 * process each, and brings their subtotals back through a pipe: then the
 * pids differ and the job takes as long as its longest bill. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define BILLS 3

struct bill {
    double denomination;
    int count;
    int wait_ms; /* how long the external call takes */
};

static const struct bill bills[BILLS] = {{10.0, 1, 300}, {20.0, 2, 200}, {5.0, 3, 100}};
static const double rate = 2.0;

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* The external call: waits, then answers with the subtotal. */
static double price(const struct bill *b)
{
    struct timespec wait = {b->wait_ms / 1000, (b->wait_ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {}
    return b->denomination * b->count * rate;
}

int main(void)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double subtotals[BILLS];
    pid_t by[BILLS];
    for (int i = 0; i < BILLS; i++) {
        subtotals[i] = price(&bills[i]);
        by[i] = getpid();
    }
    double total = 0;
    for (int i = 0; i < BILLS; i++) {
        printf("bill %d: %.2f RUB (pid %d)\n", i + 1, subtotals[i], (int)by[i]);
        total += subtotals[i];
    }
    printf("total %.2f RUB in %ld ms\n", total, ms_since(&t0));
    return 0;
}
