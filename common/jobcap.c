/* jobcap: see jobcap.h. */
#include "jobcap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "trace.h"

enum { SLOT_FREE = 0, SLOT_TAKEN, SLOT_HELD };

static void jobcap_set(struct jobcap *cap, long max_jobs, long max_bills,
                       struct jobcap_slot *slots)
{
    atomic_init(&cap->jobs, 0);
    atomic_init(&cap->bills, 0);
    atomic_init(&cap->next_slot, 0);
    cap->max_jobs = max_jobs;
    cap->max_bills = max_bills;
    cap->slots = slots;
}

int jobcap_init(struct jobcap *cap, long max_jobs, long max_bills)
{
    struct jobcap_slot *slots = calloc((size_t)max_jobs, sizeof *slots);
    jobcap_set(cap, max_jobs, max_bills, slots);
    return slots ? 0 : -1;
}

void jobcap_free(struct jobcap *cap)
{
    free(cap->slots);
    cap->slots = NULL;
}

static size_t shared_size(long max_jobs)
{
    return sizeof(struct jobcap) + (size_t)max_jobs * sizeof(struct jobcap_slot);
}

struct jobcap *jobcap_new_shared(long max_jobs, long max_bills)
{
    _Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
                   "a shared budget needs lock-free atomics");
    /* Zero-filled, and only the pages touched become memory. */
    struct jobcap *cap = mmap(NULL, shared_size(max_jobs),
                              PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cap == MAP_FAILED)
        return NULL;
    jobcap_set(cap, max_jobs, max_bills, (struct jobcap_slot *)(cap + 1));
    return cap;
}

void jobcap_free_shared(struct jobcap *cap)
{
    if (cap != NULL)
        munmap(cap, shared_size(cap->max_jobs));
}

/* Adds n to *counter unless that passes max; compare-and-swap, so two
 * threads can never both take the last place. */
static bool take(atomic_long *counter, long n, long max)
{
    long now = atomic_load(counter);
    do {
        if (n > max - now)
            return false;
    } while (!atomic_compare_exchange_weak(counter, &now, now + n));
    return true;
}

/* A free slot for a job already counted in cap->jobs: there is one, since
 * every counted job holds at most one of the max_jobs slots and a slot is
 * freed before its job's count is given back (slot_release). The search
 * starts where the last one ended, so it is short while few are held; it
 * gives up after two rounds (-1), which only a broken count could cause
 * (a process killed between the two steps of a release), rather than
 * spin. */
static int claim_slot(struct jobcap *cap)
{
    unsigned long n = (unsigned long)cap->max_jobs;
    unsigned long i = atomic_fetch_add(&cap->next_slot, 1);
    for (unsigned long tried = 0; tried < 2 * n; tried++, i++) {
        struct jobcap_slot *s = &cap->slots[i % n];
        int free_state = SLOT_FREE;
        if (atomic_compare_exchange_strong(&s->state, &free_state,
                                           SLOT_TAKEN))
            return (int)(i % n);
    }
    return -1;
}

bool jobcap_take(struct jobcap *cap, struct exchange_request *job,
                 const char **why)
{
    job->slot = -1;
    if (!take(&cap->jobs, 1, cap->max_jobs)) {
        if (why)
            *why = "too many async jobs in flight (--max-jobs)";
        return false;
    }
    if (job->num_bills > (size_t)cap->max_bills ||
        !take(&cap->bills, (long)job->num_bills, cap->max_bills)) {
        atomic_fetch_sub(&cap->jobs, 1);
        if (why)
            *why = "too many bills in flight (--max-bills)";
        return false;
    }
    int i = claim_slot(cap);
    if (i < 0) {
        atomic_fetch_sub(&cap->bills, (long)job->num_bills);
        atomic_fetch_sub(&cap->jobs, 1);
        if (why)
            *why = "no free job slot (--max-jobs)";
        return false;
    }
    struct jobcap_slot *s = &cap->slots[i];
    atomic_store(&s->bills, (long)job->num_bills);
    s->owner = getpid();
    memcpy(s->id, job->request_id, sizeof s->id);
    atomic_store(&s->state, SLOT_HELD); /* publishes the lines above */
    job->slot = i;
    TRACE(TRACE_COUNT_JOBS, NULL, atomic_load(&cap->jobs));
    return true;
}

/* job's slot, or NULL (no slot: never taken, or already done). */
static struct jobcap_slot *slot_of(struct jobcap *cap,
                                   const struct exchange_request *job)
{
    if (job->slot < 0 || job->slot >= cap->max_jobs)
        return NULL;
    return &cap->slots[job->slot];
}

void jobcap_bills_done(struct jobcap *cap, const struct exchange_request *job,
                       size_t n)
{
    struct jobcap_slot *s = slot_of(cap, job);
    if (s)
        atomic_fetch_sub(&s->bills, (long)n);
    atomic_fetch_sub(&cap->bills, (long)n);
}

/* Gives a held slot back with whatever it still reserves: the slot first,
 * then the job's place in the count. The other order would let a new job
 * be counted while every slot still looked held; and a process killed
 * between the two steps (02's children share the budget) would leave a
 * held slot that jobcap_reclaim releases a second time, one place too
 * many. This order leaves at worst one place taken until the restart. */
static void slot_release(struct jobcap *cap, struct jobcap_slot *s)
{
    atomic_fetch_sub(&cap->bills, atomic_exchange(&s->bills, 0));
    atomic_store(&s->state, SLOT_FREE);
    long left = atomic_fetch_sub(&cap->jobs, 1) - 1;
    TRACE(TRACE_COUNT_JOBS, NULL, left);
}

void jobcap_job_done(struct jobcap *cap, struct exchange_request *job)
{
    struct jobcap_slot *s = slot_of(cap, job);
    if (s)
        slot_release(cap, s);
    job->slot = -1;
}

size_t jobcap_report(struct jobcap *cap, const char *where)
{
    size_t n = 0;
    for (long i = 0; i < cap->max_jobs; i++) {
        struct jobcap_slot *s = &cap->slots[i];
        if (atomic_load(&s->state) != SLOT_HELD)
            continue;
        log_warn("stop: job %s: callback not delivered; %s", s->id, where);
        n++;
    }
    if (n == 0)
        log_info("stop: 0 callbacks not delivered");
    else
        log_warn("stop: %zu callback%s not delivered", n, n == 1 ? "" : "s");
    return n;
}

size_t jobcap_reclaim(struct jobcap *cap, pid_t owner, const char *where)
{
    size_t n = 0;
    for (long i = 0; i < cap->max_jobs; i++) {
        struct jobcap_slot *s = &cap->slots[i];
        if (atomic_load(&s->state) != SLOT_HELD || s->owner != owner)
            continue;
        log_warn("job %s: callback not delivered: process %d died with it; "
                 "%s", s->id, (int)owner, where);
        slot_release(cap, s);
        n++;
    }
    return n;
}

long jobcap_jobs(const struct jobcap *cap)
{
    return atomic_load(&cap->jobs);
}

long jobcap_bills(const struct jobcap *cap)
{
    return atomic_load(&cap->bills);
}
