/* deadlock: two threads, two mutexes, taken in opposite orders.
 *
 * Section 4 ("Races and deadlocks"). Seed original: the third lecture's
 * warning that threads need locks, "and locks need care"; Python's
 * threading.Lock deadlocks the same way.
 * A "transfer" thread locks account A then B; an "audit" thread locks B
 * then A. Each holds its first lock while it waits 50 ms for the second,
 * so each waits for the other forever. main gives them 1 s
 * (pthread_timedjoin_np) and reports the hang; the threads are stuck for
 * good, so main exits without them (exit status 2).
 * What to notice: nothing crashes and nothing is printed: a deadlock is
 * silence. With --one-at-a-time the audit starts only after the transfer
 * has finished: the same code then never hangs, yet ThreadSanitizer still
 * names the danger ("lock-order-inversion (potential deadlock)"), because
 * it records the order in which every thread takes its locks:
 *   cc -fsanitize=thread -g -pthread examples/deadlock.c -o /tmp/deadlock
 *   /tmp/deadlock --one-at-a-time
 * The cure is one global order: every thread takes A before B. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_timedjoin_np */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t account_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t account_b = PTHREAD_MUTEX_INITIALIZER;

static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Takes first, waits, takes second: the window in which the other thread
 * takes the second one is 50 ms wide, so the hang is certain. */
static void *move(void *arg)
{
    pthread_mutex_t **locks = arg;
    pthread_mutex_lock(locks[0]);
    pause_ms(50);
    pthread_mutex_lock(locks[1]);
    pthread_mutex_unlock(locks[1]);
    pthread_mutex_unlock(locks[0]);
    return NULL;
}

int main(int argc, char **argv)
{
    int one_at_a_time = argc > 1 && strcmp(argv[1], "--one-at-a-time") == 0;
    static pthread_mutex_t *transfer[2] = {&account_a, &account_b};
    static pthread_mutex_t *audit[2] = {&account_b, &account_a};
    pthread_t t1, t2;
    int rc = pthread_create(&t1, NULL, move, transfer);
    if (rc == 0 && one_at_a_time)
        rc = pthread_join(t1, NULL);
    if (rc == 0)
        rc = pthread_create(&t2, NULL, move, audit);
    if (rc != 0) {
        fprintf(stderr, "pthread_create: %s\n", strerror(rc));
        return 1;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    int r1 = one_at_a_time ? 0 : pthread_timedjoin_np(t1, NULL, &deadline);
    int r2 = pthread_timedjoin_np(t2, NULL, &deadline);
    if (r1 == ETIMEDOUT || r2 == ETIMEDOUT) {
        printf("deadlock: both threads still waiting after 1 s\n");
        return 2; /* the stuck threads die with the process */
    }
    printf("no deadlock: both transfers done\n");
    return 0;
}
