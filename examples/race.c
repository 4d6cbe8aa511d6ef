/* race: two threads add to one counter, and updates are lost.
 *
 * Section 4 ("Races and deadlocks, run"). Seed original: the third
 * lecture's shared counter, `counter += 1` in two threads, which loses
 * updates because the read, the addition and the write are three steps.
 * Here each thread adds 1 to `counter` 10000 times as those three steps,
 * with a sched_yield() between the read and the write: the other thread
 * then nearly always runs in the gap, reads the same value, and one of the
 * two writes is lost. The yield only widens a window every unlocked
 * read-modify-write has; without it the loss is rarer, never impossible.
 * Each load and store is atomic (relaxed), so this is no data race in C11's
 * sense and no undefined behaviour: what goes wrong is the interleaving,
 * which is what a race is. Exit status 0 if no update was lost, else 1.
 * What to notice: about half the additions are lost (9979 to 10000 of
 * 20000 in ten runs on the lecture's 2-core machine), and nothing crashes
 * or warns.
 * The cure (exercise s4-race): hold one mutex across the read, the yield
 * and the write, so the three steps are one. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define THREADS 2
#define ADDS 10000

static atomic_long counter;
static pthread_barrier_t start; /* both threads begin together */

static void *adder(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < ADDS; i++) {
        long v = atomic_load_explicit(&counter, memory_order_relaxed);
        sched_yield(); /* the other thread runs here, and reads v too */
        atomic_store_explicit(&counter, v + 1, memory_order_relaxed);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    int rc = pthread_barrier_init(&start, NULL, THREADS);
    if (rc != 0) {
        fprintf(stderr, "pthread_barrier_init: %s\n", strerror(rc));
        return 2;
    }
    for (int i = 0; i < THREADS; i++) {
        rc = pthread_create(&t[i], NULL, adder, NULL);
        if (rc != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(rc));
            return 2; /* the started thread waits at the barrier; exit ends it */
        }
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);

    long got = atomic_load(&counter), want = (long)THREADS * ADDS;
    printf("counter: %ld of %ld, %ld updates lost\n", got, want, want - got);
    return got == want ? 0 : 1;
}
