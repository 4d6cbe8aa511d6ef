/* jobcap: the budget of async work a server has promised to finish.
 *
 * POST /api/exchange_async answers {"status":"ok"} before its bills are
 * waited for and its result is PUT: that ok is a promise. A server may only
 * make promises it can keep, so every stage reserves a job (and its bills)
 * here BEFORE answering, and gives them back when the job is over
 * (delivered, or given up after the retry policy). Past either cap the
 * client gets 503 with Retry-After instead of an ok (endpoint_admit_job).
 *
 *   jobs   accepted async jobs not yet over          cfg->max_jobs
 *   bills  their bills still waiting for their call  cfg->max_bills
 *
 * The counters are C11 atomics, so 03's threads share one budget without a
 * lock, and 02's children share one through jobcap_new_shared (an anonymous
 * MAP_SHARED page survives fork; lock-free atomics work across processes).
 * 04-06 use it from their one thread. */
#ifndef COMMON_JOBCAP_H
#define COMMON_JOBCAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct jobcap {
    atomic_long jobs, bills; /* in flight now */
    long max_jobs, max_bills;
};

/* Sets up a budget in memory the caller owns (one process). */
void jobcap_init(struct jobcap *cap, long max_jobs, long max_bills);

/* A budget in a shared anonymous mapping, for processes forked after this
 * call (02). NULL with errno if mmap fails. Free with jobcap_free_shared. */
struct jobcap *jobcap_new_shared(long max_jobs, long max_bills);
void jobcap_free_shared(struct jobcap *cap);

/* Reserves one job with num_bills bills. True if both fit; otherwise
 * nothing is reserved and *why (if not NULL) names the cap that was hit,
 * as a static text for a 503's detail. */
bool jobcap_take(struct jobcap *cap, size_t num_bills, const char **why);

/* n of a job's bills finished waiting. */
void jobcap_bills_done(struct jobcap *cap, size_t n);

/* A job is over (its callback delivered or given up); its bills must have
 * been returned with jobcap_bills_done first. */
void jobcap_job_done(struct jobcap *cap);

/* Current counts, for logs and tests. */
long jobcap_jobs(const struct jobcap *cap);
long jobcap_bills(const struct jobcap *cap);

#endif
