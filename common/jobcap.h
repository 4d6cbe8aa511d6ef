/* jobcap: the budget of async work a server has promised to finish, and
 * which jobs hold it.
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
 * Each reserved job also holds one of max_jobs slots with its request id,
 * so that a promise never disappears without a word: a stop that ends
 * before a job does names it (jobcap_report), and so does 02's parent when
 * a child dies holding jobs (jobcap_reclaim). A job knows its slot
 * (exchange_request.slot), given by jobcap_take.
 *
 * The counters and each slot's state are C11 atomics, so 03's threads
 * share one budget without a lock, and 02's children share one through
 * jobcap_new_shared (an anonymous MAP_SHARED mapping survives fork;
 * lock-free atomics work across processes). 04-06 use it from their one
 * thread. */
#ifndef COMMON_JOBCAP_H
#define COMMON_JOBCAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "exchange.h"

/* One reserved job: FREE, then TAKEN while jobcap_take fills it, then HELD
 * until the job is over. Zeroed memory is a FREE slot. */
struct jobcap_slot {
    atomic_int state;
    atomic_long bills;        /* its bills still reserved */
    pid_t owner;              /* the process that runs the job (02) */
    char id[EXCHANGE_MAX_ID_LEN + 1];
};

struct jobcap {
    atomic_long jobs, bills;  /* in flight now */
    long max_jobs, max_bills;
    atomic_ulong next_slot;   /* where the search for a free slot begins */
    struct jobcap_slot *slots; /* max_jobs of them */
};

/* Sets up a budget in memory the caller owns (one process); its slots are
 * allocated (zeroed, so only the pages used become memory). 0, or -1 with
 * errno (ENOMEM). Free the slots with jobcap_free. */
int jobcap_init(struct jobcap *cap, long max_jobs, long max_bills);
void jobcap_free(struct jobcap *cap);

/* A budget and its slots in one shared anonymous mapping, for processes
 * forked after this call (02). NULL with errno if mmap fails. Free with
 * jobcap_free_shared. */
struct jobcap *jobcap_new_shared(long max_jobs, long max_bills);
void jobcap_free_shared(struct jobcap *cap);

/* Reserves one job with job->num_bills bills, and a slot that records its
 * request id and this process as its owner (job->slot). True if both
 * caps allow it; otherwise nothing is reserved, job->slot is -1, and *why
 * (if not NULL) names the cap that was hit, as a static text for a 503's
 * detail. */
bool jobcap_take(struct jobcap *cap, struct exchange_request *job,
                 const char **why);

/* n of job's bills finished waiting. */
void jobcap_bills_done(struct jobcap *cap, const struct exchange_request *job,
                       size_t n);

/* job is over (its callback delivered or given up): its slot and its
 * bills still reserved are given back. */
void jobcap_job_done(struct jobcap *cap, struct exchange_request *job);

/* The stop's report: logs, one line each, every job still held (its
 * callback was not delivered), then how many; where says what became of
 * them ("kept in the outbox ...", or "lost"). Returns the count. Call once
 * the workers that hold them have stopped. */
size_t jobcap_report(struct jobcap *cap, const char *where);

/* A process died holding jobs (02's parent, on reaping a child that did
 * not exit cleanly): logs each of owner's held jobs as undelivered (where
 * as above), gives their slots and bills back, and returns how many. */
size_t jobcap_reclaim(struct jobcap *cap, pid_t owner, const char *where);

/* Current counts, for logs and tests. */
long jobcap_jobs(const struct jobcap *cap);
long jobcap_bills(const struct jobcap *cap);

#endif
