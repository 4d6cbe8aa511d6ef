/* The tiny versions (examples/tiny_select.c, tiny_epoll.c, tiny_coro.c)
 * answer the lecture's request exactly as the stages do, and their slow
 * requests overlap on one thread. The overlap check is run once against a
 * sequential server too (01-blocking), which must fail it: a check that
 * cannot say "wrong" proves nothing. The tests/mutants/tiny-*.patch make
 * each tiny version wait with a blocking sleep, and this test kills them. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define DELAY_MS 400
#define DELAY_S (DELAY_MS / 1000.0)
#define PARALLEL 4 /* a sequential server needs PARALLEL delays for them */

static const char *const tiny[] = {"examples/tiny_select",
                                   "examples/tiny_epoll",
                                   "examples/tiny_coro"};
#define NUM_TINY (int)(sizeof tiny / sizeof tiny[0])

static const char *const lecture_body =
    "{\"request_id\": \"sync_test\", \"exchange_rate\": 75.5, \"bills\": ["
    "{\"denomination_id\": 1, \"denomination\": 10.0, \"count\": 5},"
    "{\"denomination_id\": 2, \"denomination\": 20.0, \"count\": 3}]}";

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";

static void start(struct proc *p, const char *name)
{
    static const char *const args[] = {"--delay-ms", "400", NULL};
    proc_start(p, name, args, NULL);
}

/* The tiny versions have no clean stop (their header says so): killed. */
static void stop(struct proc *p)
{
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    close(p->log_fd);
}

START_TEST(lecture_request_gets_the_stages_answer)
{
    struct proc s;
    start(&s, tiny[_i]);
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", lecture_body, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body,
        "{\"status\":\"completed\",\"request_id\":\"sync_test\",\"breakdown\":["
        "{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
        "{\"denomination_id\":2,\"subtotal_rub\":4530.0}],"
        "\"total_rub\":8305.0}");
    /* Two bills, waited one after the other. */
    ck_assert_double_ge(r.seconds, 2 * DELAY_S * 0.95);
    http_result_free(&r);

    http_request("POST", s.port, "/api/exchange_sync", "{\"bills\": [", &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"detail\":\"body is not valid JSON\"}");
    http_result_free(&r);
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    http_result_free(&r);
    stop(&s);
}
END_TEST

/* PARALLEL one-bill requests at once: the wall time from the first start
 * to the last end, after checking every answer. */
static double parallel_wall(int port)
{
    struct http_result r[PARALLEL];
    http_parallel("POST", port, "/api/exchange_sync", one_bill_body, PARALLEL,
                  r);
    double first = r[0].start, last = r[0].end;
    for (int k = 0; k < PARALLEL; k++) {
        ck_assert_int_eq(r[k].status, 200);
        ck_assert_str_eq(r[k].body,
            "{\"status\":\"completed\",\"request_id\":\"one\",\"breakdown\":["
            "{\"denomination_id\":7,\"subtotal_rub\":6.0}],\"total_rub\":6.0}");
        ck_assert_double_ge(r[k].seconds, DELAY_S * 0.95); /* it waited */
        first = r[k].start < first ? r[k].start : first;
        last = r[k].end > last ? r[k].end : last;
        http_result_free(&r[k]);
    }
    return last - first;
}

/* Overlapping means all of them in under two delays: a server that waits
 * one bill at a time needs PARALLEL. */
static bool overlapped(double wall)
{
    return wall < 2 * DELAY_S;
}

START_TEST(slow_requests_overlap_on_one_thread)
{
    if (harness_skip("slow_requests_overlap_on_one_thread"))
        return; /* under qemu, which counts a thread of its own */
    struct proc s;
    start(&s, tiny[_i]);
    double wall = parallel_wall(s.port);
    ck_assert_msg(overlapped(wall), "%d requests of one %d ms bill took "
                  "%.3f s: they did not overlap", PARALLEL, DELAY_MS, wall);
    ck_assert_int_eq(harness_thread_count(s.pid), 1);
    stop(&s);
}
END_TEST

/* The check above, against a sequential server: it must say "wrong". */
START_TEST(a_sequential_server_fails_the_overlap_check)
{
    struct proc s;
    static const char *const args[] = {"--delay-ms", "400", "--quiet", NULL};
    proc_start(&s, "01-blocking", args, NULL);
    double wall = parallel_wall(s.port);
    ck_assert_msg(!overlapped(wall), "01-blocking passed the overlap check "
                  "(%.3f s): the check proves nothing", wall);
    ck_assert_double_ge(wall, PARALLEL * DELAY_S * 0.95);
    ck_assert_int_eq(proc_stop(&s, 5000), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tiny");
    TCase *tc = tcase_create("tiny");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, lecture_request_gets_the_stages_answer, 0, NUM_TINY);
    tcase_add_loop_test(tc, slow_requests_overlap_on_one_thread, 0, NUM_TINY);
    tcase_add_test(tc, a_sequential_server_fails_the_overlap_check);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
