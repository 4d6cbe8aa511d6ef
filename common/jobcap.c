/* jobcap: see jobcap.h. */
#include "jobcap.h"

#include <sys/mman.h>

#include "trace.h"

void jobcap_init(struct jobcap *cap, long max_jobs, long max_bills)
{
    atomic_init(&cap->jobs, 0);
    atomic_init(&cap->bills, 0);
    cap->max_jobs = max_jobs;
    cap->max_bills = max_bills;
}

struct jobcap *jobcap_new_shared(long max_jobs, long max_bills)
{
    _Static_assert(ATOMIC_LONG_LOCK_FREE == 2,
                   "a shared budget needs lock-free atomics");
    void *p = mmap(NULL, sizeof(struct jobcap), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    jobcap_init(p, max_jobs, max_bills);
    return p;
}

void jobcap_free_shared(struct jobcap *cap)
{
    if (cap != NULL)
        munmap(cap, sizeof *cap);
}

/* Adds n to *counter unless that passes max; compare-and-swap, so two
 * threads can never both take the last slot. */
static bool take(atomic_long *counter, long n, long max)
{
    long now = atomic_load(counter);
    do {
        if (n > max - now)
            return false;
    } while (!atomic_compare_exchange_weak(counter, &now, now + n));
    return true;
}

bool jobcap_take(struct jobcap *cap, size_t num_bills, const char **why)
{
    if (!take(&cap->jobs, 1, cap->max_jobs)) {
        if (why)
            *why = "too many async jobs in flight (--max-jobs)";
        return false;
    }
    if (num_bills > (size_t)cap->max_bills ||
        !take(&cap->bills, (long)num_bills, cap->max_bills)) {
        atomic_fetch_sub(&cap->jobs, 1);
        if (why)
            *why = "too many bills in flight (--max-bills)";
        return false;
    }
    TRACE(TRACE_COUNT_JOBS, NULL, atomic_load(&cap->jobs));
    return true;
}

void jobcap_bills_done(struct jobcap *cap, size_t n)
{
    atomic_fetch_sub(&cap->bills, (long)n);
}

void jobcap_job_done(struct jobcap *cap)
{
    long left = atomic_fetch_sub(&cap->jobs, 1) - 1;
    TRACE(TRACE_COUNT_JOBS, NULL, left);
}

long jobcap_jobs(const struct jobcap *cap)
{
    return atomic_load(&cap->jobs);
}

long jobcap_bills(const struct jobcap *cap)
{
    return atomic_load(&cap->bills);
}
