/* test_jobcap: the async-work budget (common/jobcap), the 503 it turns
 * into (endpoint_admit_job), and the slots that name every job it holds:
 * an ok is only said for work that fits, and a job that is never
 * delivered is never forgotten in silence. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "endpoint.h"
#include "harness.h"
#include "jobcap.h"
#include "log.h"

/* A job with `bills` bills and id `id`. */
static struct exchange_request job_of(const char *id, size_t bills)
{
    struct exchange_request job;
    memset(&job, 0, sizeof job);
    snprintf(job.request_id, sizeof job.request_id, "%s", id);
    job.num_bills = bills;
    job.slot = -1;
    return job;
}

START_TEST(caps_jobs_then_bills)
{
    struct jobcap cap;
    ck_assert_int_eq(jobcap_init(&cap, 2, 10), 0);
    const char *why = NULL;
    struct exchange_request a = job_of("a", 4), b = job_of("b", 6),
                            c = job_of("c", 0), d = job_of("d", 7);
    ck_assert(jobcap_take(&cap, &a, &why));
    ck_assert(jobcap_take(&cap, &b, &why));
    ck_assert(a.slot >= 0 && b.slot >= 0 && a.slot != b.slot);
    /* A third job is over --max-jobs even with no bills. */
    ck_assert(!jobcap_take(&cap, &c, &why));
    ck_assert_ptr_nonnull(strstr(why, "--max-jobs"));
    ck_assert_int_eq(c.slot, -1);
    jobcap_bills_done(&cap, &b, 6);
    jobcap_job_done(&cap, &b);
    ck_assert_int_eq(b.slot, -1);
    /* Room for a job again, but 7 bills would make 11 > 10: refused whole,
     * nothing kept. */
    ck_assert(!jobcap_take(&cap, &d, &why));
    ck_assert_ptr_nonnull(strstr(why, "--max-bills"));
    ck_assert_int_eq(jobcap_jobs(&cap), 1);
    ck_assert_int_eq(jobcap_bills(&cap), 4);
    b = job_of("b2", 6);
    ck_assert(jobcap_take(&cap, &b, &why));
    ck_assert_int_eq(jobcap_bills(&cap), 10);
    /* A job over gives back the bills it still held, with its slot. */
    jobcap_job_done(&cap, &a);
    ck_assert_int_eq(jobcap_bills(&cap), 6);
    ck_assert_int_eq(jobcap_jobs(&cap), 1);
    jobcap_free(&cap);
    /* One job larger than the whole bill budget can never fit. */
    struct jobcap small;
    ck_assert_int_eq(jobcap_init(&small, 5, 3), 0);
    struct exchange_request big = job_of("big", 4);
    ck_assert(!jobcap_take(&small, &big, NULL));
    ck_assert_int_eq(jobcap_jobs(&small), 0);
    jobcap_free(&small);
}
END_TEST

enum { THREADS = 8, TRIES = 20000 };
static struct jobcap shared_cap;
static atomic_long overs, clashes;

static void *racer(void *arg)
{
    (void)arg;
    for (int i = 0; i < TRIES; i++) {
        struct exchange_request job = job_of("r", 1);
        if (!jobcap_take(&shared_cap, &job, NULL))
            continue;
        if (jobcap_jobs(&shared_cap) > shared_cap.max_jobs)
            atomic_fetch_add(&overs, 1);
        /* The slot is this job's alone while it holds it. */
        if (atomic_load(&shared_cap.slots[job.slot].bills) != 1)
            atomic_fetch_add(&clashes, 1);
        jobcap_bills_done(&shared_cap, &job, 1);
        jobcap_job_done(&shared_cap, &job);
    }
    return NULL;
}

/* Threads racing for the last places never take more than the cap, nor
 * one slot twice (03). */
/* A count that lost a place (a 02 child killed in the middle of giving
 * its job back) must not hang the next take in a search for a free slot
 * that is not there: it is refused, with the limit named, and the budget
 * is left as it was. */
START_TEST(a_broken_count_refuses_instead_of_spinning)
{
    struct jobcap cap;
    ck_assert_int_eq(jobcap_init(&cap, 2, 10), 0);
    const char *why = NULL;
    struct exchange_request a = job_of("a", 1), b = job_of("b", 1),
                            c = job_of("c", 1);
    ck_assert(jobcap_take(&cap, &a, &why));
    ck_assert(jobcap_take(&cap, &b, &why));
    atomic_fetch_sub(&cap.jobs, 1); /* both slots held, one place counted */
    ck_assert(!jobcap_take(&cap, &c, &why));
    ck_assert_ptr_nonnull(strstr(why, "--max-jobs"));
    ck_assert_int_eq(c.slot, -1);
    ck_assert_int_eq(jobcap_jobs(&cap), 1);
    ck_assert_int_eq(jobcap_bills(&cap), 2);
    jobcap_free(&cap);
}
END_TEST

START_TEST(threads_never_exceed_the_cap)
{
    ck_assert_int_eq(jobcap_init(&shared_cap, 3, 1000), 0);
    atomic_init(&overs, 0);
    atomic_init(&clashes, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&overs), 0);
    ck_assert_int_eq(atomic_load(&clashes), 0);
    ck_assert_int_eq(jobcap_jobs(&shared_cap), 0);
    ck_assert_int_eq(jobcap_bills(&shared_cap), 0);
    jobcap_free(&shared_cap);
}
END_TEST

/* A shared budget is one budget across fork (02's children). */
START_TEST(shared_budget_spans_processes)
{
    struct jobcap *cap = jobcap_new_shared(1, 100);
    ck_assert_ptr_nonnull(cap);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct exchange_request job = job_of("child", 5);
        _exit(jobcap_take(cap, &job, NULL) ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The child's job holds the only place. */
    struct exchange_request job = job_of("parent", 1);
    ck_assert(!jobcap_take(cap, &job, NULL));
    ck_assert_int_eq(jobcap_bills(cap), 5);
    jobcap_free_shared(cap);
}
END_TEST

/* The stop's report names every job still held, and only those, one line
 * each and the count; 02's parent names (and frees) the jobs of a child
 * that died with them, and no other. */
START_TEST(report_and_reclaim_name_the_jobs_held)
{
    int err[2];
    ck_assert_int_eq(pipe(err), 0);
    int saved = dup(STDERR_FILENO);
    dup2(err[1], STDERR_FILENO);
    log_init("test", false);

    struct jobcap *cap = jobcap_new_shared(4, 100);
    ck_assert_ptr_nonnull(cap);
    struct exchange_request kept = job_of("kept_job", 2),
                            done = job_of("done_job", 1);
    ck_assert(jobcap_take(cap, &kept, NULL));
    ck_assert(jobcap_take(cap, &done, NULL));
    jobcap_job_done(cap, &done);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* dies holding two jobs */
        struct exchange_request x = job_of("child_x", 3),
                                y = job_of("child_y", 1);
        if (!jobcap_take(cap, &x, NULL) || !jobcap_take(cap, &y, NULL))
            _exit(1);
        raise(SIGKILL);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(jobcap_jobs(cap), 3);
    ck_assert_int_eq(jobcap_reclaim(cap, pid, "lost"), 2);
    ck_assert_int_eq(jobcap_reclaim(cap, pid, "lost"), 0);
    ck_assert_int_eq(jobcap_jobs(cap), 1);
    ck_assert_int_eq(jobcap_bills(cap), 2);
    ck_assert_int_eq(jobcap_report(cap, "kept somewhere"), 1);

    dup2(saved, STDERR_FILENO);
    close(err[1]);
    char buf[4096] = "";
    ssize_t n = read(err[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(err[0]);
    ck_assert_msg(strstr(buf, "job child_x: callback not delivered: "
                              "process") && strstr(buf, "job child_y"),
                  "%s", buf);
    ck_assert_msg(strstr(buf, "stop: job kept_job: callback not delivered; "
                              "kept somewhere"), "%s", buf);
    ck_assert_msg(strstr(buf, "stop: 1 callback not delivered"), "%s", buf);
    ck_assert_msg(!strstr(buf, "done_job"), "%s", buf);
    jobcap_free_shared(cap);
}
END_TEST

/* Past the cap the ok becomes a 503 with Retry-After that names the cap. */
START_TEST(admit_turns_ok_into_503_with_retry_after)
{
    struct jobcap cap;
    ck_assert_int_eq(jobcap_init(&cap, 1, 100), 0);
    struct exchange_request job = job_of("cap_test", 2);

    struct endpoint_reply reply = { 200, strdup("{\"status\":\"ok\"}"), 0 };
    ck_assert(endpoint_admit_job(&cap, &job, &reply));
    ck_assert_int_eq(reply.status, 200);
    ck_assert_int_eq(reply.retry_after_s, 0);
    endpoint_reply_free(&reply);

    reply = (struct endpoint_reply){ 200, strdup("{\"status\":\"ok\"}"), 0 };
    ck_assert(!endpoint_admit_job(&cap, &job, &reply));
    ck_assert_int_eq(reply.status, 503);
    ck_assert_str_eq(reply.body, "{\"detail\":\"server busy: too many async "
                                 "jobs in flight (--max-jobs)\"}");
    size_t len = 0;
    char *out = endpoint_reply_render(&reply, true, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0,
                  "%s", out);
    ck_assert_msg(strstr(out, "\r\nRetry-After: 1\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "\r\n\r\n{\"detail\"") != NULL, "%s", out);
    free(out);
    endpoint_reply_free(&reply);
    ck_assert_int_eq(jobcap_jobs(&cap), 1);
    jobcap_free(&cap);
}
END_TEST

/* The async ok says how durable the job is; the default stays the bytes
 * every client of the endpoint knows. */
START_TEST(async_ok_says_how_durable)
{
    static const struct {
        enum outbox_level level;
        const char *body;
    } cases[] = {
        {OUTBOX_MEMORY, "{\"status\":\"ok\"}"},
        {OUTBOX_WRITTEN, "{\"status\":\"ok\",\"durable\":\"written\"}"},
        {OUTBOX_SYNCED, "{\"status\":\"ok\",\"durable\":\"synced\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct endpoint_reply reply = {200, strdup("x"), 0};
        endpoint_async_ok(&reply, cases[i].level);
        ck_assert_int_eq(reply.status, 200);
        ck_assert_str_eq(reply.body, cases[i].body);
        endpoint_reply_free(&reply);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jobcap");
    TCase *tc = tcase_create("budget");
    tcase_add_test(tc, caps_jobs_then_bills);
    tcase_add_test(tc, a_broken_count_refuses_instead_of_spinning);
    tcase_add_test(tc, threads_never_exceed_the_cap);
    tcase_add_test(tc, shared_budget_spans_processes);
    tcase_add_test(tc, report_and_reclaim_name_the_jobs_held);
    tcase_add_test(tc, admit_turns_ok_into_503_with_retry_after);
    tcase_add_test(tc, async_ok_says_how_durable);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
