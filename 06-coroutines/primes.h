/* primes: the CPU-bound half of a bill under --cpu-ms (server.c), kept
 * apart so the server reads as the model and this as the workload. */
#ifndef PRIMES_H
#define PRIMES_H

struct cpu_work {
    int ms;               /* in: CPU time to spend */
    long primes, largest; /* out: what was found */
};

/* Real work, not a sleep: counts primes by trial division until w->ms of
 * this thread's CPU time are spent, and returns w. It runs on whichever
 * thread calls it: the loop's (inline) or a worker's (--offload, through
 * co_run_blocking, whose co_fn type it has). */
void *count_primes(void *w);

#endif
