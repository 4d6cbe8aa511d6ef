/* test_jobcap: the async-work budget (common/jobcap) and the 503 it turns
 * into (endpoint_admit_job): an ok is only said for work that fits. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "endpoint.h"
#include "harness.h"
#include "jobcap.h"

START_TEST(caps_jobs_then_bills)
{
    struct jobcap cap;
    jobcap_init(&cap, 2, 10);
    const char *why = NULL;
    ck_assert(jobcap_take(&cap, 4, &why));
    ck_assert(jobcap_take(&cap, 6, &why));
    /* A third job is over --max-jobs even with no bills. */
    ck_assert(!jobcap_take(&cap, 0, &why));
    ck_assert_ptr_nonnull(strstr(why, "--max-jobs"));
    jobcap_bills_done(&cap, 6);
    jobcap_job_done(&cap);
    /* Room for a job again, but 7 bills would make 11 > 10: refused whole,
     * nothing kept. */
    ck_assert(!jobcap_take(&cap, 7, &why));
    ck_assert_ptr_nonnull(strstr(why, "--max-bills"));
    ck_assert_int_eq(jobcap_jobs(&cap), 1);
    ck_assert_int_eq(jobcap_bills(&cap), 4);
    ck_assert(jobcap_take(&cap, 6, &why));
    ck_assert_int_eq(jobcap_bills(&cap), 10);
    /* One job larger than the whole bill budget can never fit. */
    struct jobcap small;
    jobcap_init(&small, 5, 3);
    ck_assert(!jobcap_take(&small, 4, NULL));
    ck_assert_int_eq(jobcap_jobs(&small), 0);
}
END_TEST

enum { THREADS = 8, TRIES = 20000 };
static struct jobcap shared_cap;
static atomic_long overs;

static void *racer(void *arg)
{
    (void)arg;
    for (int i = 0; i < TRIES; i++) {
        if (!jobcap_take(&shared_cap, 1, NULL))
            continue;
        if (jobcap_jobs(&shared_cap) > shared_cap.max_jobs)
            atomic_fetch_add(&overs, 1);
        jobcap_bills_done(&shared_cap, 1);
        jobcap_job_done(&shared_cap);
    }
    return NULL;
}

/* Threads racing for the last slots never take more than the cap (03). */
START_TEST(threads_never_exceed_the_cap)
{
    jobcap_init(&shared_cap, 3, 1000);
    atomic_init(&overs, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&overs), 0);
    ck_assert_int_eq(jobcap_jobs(&shared_cap), 0);
    ck_assert_int_eq(jobcap_bills(&shared_cap), 0);
}
END_TEST

/* A shared budget is one budget across fork (02's children). */
START_TEST(shared_budget_spans_processes)
{
    struct jobcap *cap = jobcap_new_shared(1, 100);
    ck_assert_ptr_nonnull(cap);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(jobcap_take(cap, 5, NULL) ? 0 : 1);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The child's job holds the only slot. */
    ck_assert(!jobcap_take(cap, 1, NULL));
    ck_assert_int_eq(jobcap_bills(cap), 5);
    jobcap_free_shared(cap);
}
END_TEST

/* Past the cap the ok becomes a 503 with Retry-After that names the cap. */
START_TEST(admit_turns_ok_into_503_with_retry_after)
{
    struct jobcap cap;
    jobcap_init(&cap, 1, 100);
    struct exchange_request job;
    memset(&job, 0, sizeof job);
    strcpy(job.request_id, "cap_test");
    job.num_bills = 2;

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
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jobcap");
    TCase *tc = tcase_create("budget");
    tcase_add_test(tc, caps_jobs_then_bills);
    tcase_add_test(tc, threads_never_exceed_the_cap);
    tcase_add_test(tc, shared_budget_spans_processes);
    tcase_add_test(tc, admit_turns_ok_into_503_with_retry_after);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
