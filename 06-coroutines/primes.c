/* primes: see primes.h. */
#include "primes.h"

#include <stdbool.h>
#include <time.h>

void *count_primes(void *arg)
{
    struct cpu_work *w = arg;
    struct timespec start, now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    long n = 1;
    for (;;) {
        for (int k = 0; k < 512; k++) {
            n++;
            bool prime = n % 2 != 0 || n == 2;
            for (long d = 3; prime && d * d <= n; d += 2)
                prime = n % d != 0;
            if (prime) {
                w->primes++;
                w->largest = n;
            }
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
        long spent_ms = (now.tv_sec - start.tv_sec) * 1000 +
                        (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent_ms >= w->ms)
            return w;
    }
}
