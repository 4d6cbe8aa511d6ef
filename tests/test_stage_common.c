/* test_stage_common: what the stages' own files no longer write each
 * (issue 13): how every main begins (common/stage), blocking the stop
 * signals around a fork or a new thread (shutdown_mask_signals), 01 and
 * 02's request handling (conn_io_route, conn_io_serve_blocking), and the
 * server around 04 and 05's steps (evconn_server_*). Each is driven here
 * without a stage around it. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "callback.h"
#include "conn_io.h"
#include "evconn.h"
#include "evjob.h"
#include "harness.h"
#include "log.h"
#include "shutdown.h"
#include "stage.h"

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";

static char *post(const char *path)
{
    char *text;
    ck_assert_int_ge(asprintf(&text,
        "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: %zu\r\n\r\n%s",
        path, strlen(one_bill_body), one_bill_body), 0);
    return text;
}

/* Everything the peer of fd sends until it closes. */
static char *read_to_close(int fd)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_gt(n, 0);
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static bool in_mask(int sig)
{
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    return sigismember(&now, sig) == 1;
}

/* ---- stage_begin, shutdown_mask_signals ---- */

START_TEST(stage_begin_parses_and_sets_up_the_signals)
{
    char *argv[] = {"test", "--port", "0", "--delay-ms", "7", "--quiet", NULL};
    struct config cfg;
    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(stage_begin(&cfg, 6, argv, "00-test", 8000, 0,
                                 "A test."), 0);
    ck_assert_int_eq(cfg.port, 0);
    ck_assert_int_eq(cfg.delay_ms, 7);
    struct sigaction sa;
    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &sa), 0);
    ck_assert(sa.sa_handler == SIG_IGN);
    /* SIGTERM now only raises the flag and makes the pipe readable. */
    ck_assert(!shutdown_requested());
    ck_assert_int_ge(shutdown_fd(), 0);
    raise(SIGTERM);
    ck_assert(shutdown_requested());
    char c;
    ck_assert_int_eq(read(shutdown_fd(), &c, 1), 1);
    callback_global_cleanup();
}
END_TEST

START_TEST(the_stop_signals_are_blocked_then_restored)
{
    sigset_t old;
    ck_assert(!in_mask(SIGINT) && !in_mask(SIGTERM));
    shutdown_mask_signals(SIG_BLOCK, &old);
    ck_assert(in_mask(SIGINT) && in_mask(SIGTERM));
    ck_assert(!in_mask(SIGUSR1));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ck_assert(!in_mask(SIGINT) && !in_mask(SIGTERM));
    shutdown_mask_signals(SIG_BLOCK, NULL);
    shutdown_mask_signals(SIG_UNBLOCK, NULL);
    ck_assert(!in_mask(SIGINT) && !in_mask(SIGTERM));
}
END_TEST

/* ---- 01 and 02's requests (conn_io) ---- */

static struct config blocking_cfg(void)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.delay_ms = 1;
    cfg.idle_timeout_ms = cfg.header_timeout_ms = cfg.body_timeout_ms = 5000;
    return cfg;
}

/* A blocking stage's setup (a budget of one job) and a connection to it:
 * sv[0] is the server's end. */
struct blocking {
    struct config cfg;
    struct jobcap cap;
    unsigned seed;
    struct conn_io_stage st;
    int sv[2];
};

static void blocking_start(struct blocking *b, bool one_request)
{
    log_init("test", true);
    b->cfg = blocking_cfg();
    jobcap_init(&b->cap, 1, 10);
    b->seed = 1;
    b->st = (struct conn_io_stage){.cfg = &b->cfg, .stage = "00-test",
                                   .cap = &b->cap, .seed = &b->seed,
                                   .one_request = one_request};
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b->sv), 0);
}

/* 02's policy: keep-alive requests go on; a sync request's bills are
 * waited in the caller; an admitted async request's ok is the last
 * answer, and the job comes back to the caller after the close. */
START_TEST(serve_blocking_answers_then_hands_back_the_async_job)
{
    struct blocking b;
    blocking_start(&b, false);
    char *sync = post("/api/exchange_sync"), *async = post("/api/exchange_async");
    harness_send_text(b.sv[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    harness_send_text(b.sv[1], sync);
    harness_send_text(b.sv[1], async);
    struct exchange_request job;
    ck_assert(conn_io_serve_blocking(&b.st, b.sv[0], "peer", &job));
    ck_assert_str_eq(job.request_id, "one");
    ck_assert_int_eq(job.num_bills, 1);
    ck_assert_int_eq(jobcap_jobs(&b.cap), 1); /* reserved for the caller */
    char *got = read_to_close(b.sv[1]); /* sv[0] was closed */
    ck_assert_ptr_nonnull(strstr(got, "\"total_rub\":6.0"));
    ck_assert_ptr_nonnull(strstr(got, "{\"status\":\"ok\"}"));
    ck_assert_ptr_nonnull(strstr(got, "Connection: close"));
    free(got);
    close(b.sv[1]);

    /* The budget is full now: the next async request gets a 503 and the
     * connection goes on, with no job handed back. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b.sv), 0);
    harness_send_text(b.sv[1], async);
    shutdown(b.sv[1], SHUT_WR);
    ck_assert(!conn_io_serve_blocking(&b.st, b.sv[0], "peer", &job));
    got = read_to_close(b.sv[1]);
    ck_assert_ptr_nonnull(strstr(got, "HTTP/1.1 503"));
    free(got);
    close(b.sv[1]);
    free(sync);
    free(async);
    jobcap_free(&b.cap);
}
END_TEST

/* 01's policy: one request per connection, "Connection: close". */
START_TEST(serve_blocking_one_request_closes_after_the_first_answer)
{
    struct blocking b;
    blocking_start(&b, true);
    harness_send_text(b.sv[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    struct exchange_request job;
    ck_assert(!conn_io_serve_blocking(&b.st, b.sv[0], "peer", &job));
    char *got = read_to_close(b.sv[1]);
    ck_assert_ptr_nonnull(strstr(got, "Connection: close"));
    ck_assert_ptr_null(strstr(strstr(got, "HTTP/1.1") + 1, "HTTP/1.1"));
    free(got);
    close(b.sv[1]);
    jobcap_free(&b.cap);
}
END_TEST

START_TEST(wait_bills_gives_each_bill_back_to_the_budget)
{
    log_init("test", true);
    struct config cfg = blocking_cfg();
    struct jobcap cap;
    jobcap_init(&cap, 1, 10);
    struct exchange_request job = {.num_bills = 2, .exchange_rate = 2};
    strcpy(job.request_id, "two");
    job.bills[0].denomination = 1.5;
    job.bills[0].count = 2;
    job.bills[1].denomination = 10;
    job.bills[1].count = 1;
    ck_assert(jobcap_take(&cap, &job, NULL));
    double subtotals[EXCHANGE_MAX_BILLS];
    unsigned seed = 1;
    ck_assert(conn_io_wait_bills(&cfg, &job, subtotals, &seed, &cap));
    ck_assert_double_eq_tol(subtotals[0], 6.0, 1e-9);
    ck_assert_double_eq_tol(subtotals[1], 20.0, 1e-9);
    ck_assert_int_eq(jobcap_bills(&cap), 0);
    ck_assert_int_eq(jobcap_jobs(&cap), 1); /* the job is the caller's */
    jobcap_free(&cap);
}
END_TEST

/* ---- the server around 04 and 05's steps (evconn) ---- */

static int closed_conns, freed_jobs;

static void test_close_conn(struct evconn *c)
{
    evconn_release(c);
    free(c);
    closed_conns++;
}

static void test_free_job(struct evjob *job)
{
    evjob_release(job, NULL);
    free(job);
    freed_jobs++;
}

static bool test_start_job(const struct exchange_request *req)
{
    (void)req;
    return false;
}

static const struct evconn_ops test_ops = {.start_job = test_start_job,
                                           .close_conn = test_close_conn,
                                           .free_job = test_free_job};

START_TEST(a_stop_closes_idle_connections_and_drop_ends_the_rest)
{
    log_init("test", true);
    struct config cfg = blocking_cfg();
    struct evconn_server srv;
    evconn_server_init(&srv, &cfg, "00-test", &test_ops, 4, 8);
    ck_assert_int_eq(jobcap_jobs(&srv.budget), 0);
    ck_assert(!srv.stopping && srv.num_conns == 0 && srv.jitter_seed == 1);
    closed_conns = freed_jobs = 0;

    /* Two connections: one idle, one with a request begun; one job. */
    int idle[2], busy[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, idle), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, busy), 0);
    struct evconn *a = evconn_alloc(sizeof *a, idle[0]);
    struct evconn *b = evconn_alloc(sizeof *b, busy[0]);
    ck_assert(a && b);
    evconn_init(a, &srv, idle[0]);
    evconn_init(b, &srv, busy[0]);
    harness_send_text(busy[1], "GET / HT");
    ck_assert_int_eq(evconn_on_readable(b), EVCONN_READ);
    struct evjob *job = calloc(1, sizeof *job);
    ck_assert_ptr_nonnull(job);
    struct exchange_request req = {.num_bills = 1};
    ck_assert(jobcap_take(&srv.budget, &req, NULL));
    evjob_init(job, &srv, &req);

    evconn_server_stop(&srv);
    ck_assert(srv.stopping);
    ck_assert_int_eq(closed_conns, 1); /* only the idle one */
    ck_assert_int_eq(srv.num_conns, 1);
    ck_assert_ptr_eq(LIST_ITEM(srv.conns.next, struct evconn, link), b);
    ck_assert_ptr_eq(srv.conns.next->next, &srv.conns); /* b alone */
    ck_assert(!evconn_server_done(&srv));

    evconn_server_drop(&srv);
    ck_assert_int_eq(closed_conns, 2);
    ck_assert_int_eq(freed_jobs, 1);
    ck_assert(evconn_server_done(&srv));
    close(idle[1]);
    close(busy[1]);
    evconn_server_free(&srv);
}
END_TEST

int main(void)
{
    const TTest *const cases[] = {
        stage_begin_parses_and_sets_up_the_signals,
        the_stop_signals_are_blocked_then_restored,
        serve_blocking_answers_then_hands_back_the_async_job,
        serve_blocking_one_request_closes_after_the_first_answer,
        wait_bills_gives_each_bill_back_to_the_budget,
        a_stop_closes_idle_connections_and_drop_ends_the_rest,
    };
    Suite *s = suite_create("stage_common");
    TCase *tc = tcase_create("shared");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tcase_add_test(tc, cases[i]);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
