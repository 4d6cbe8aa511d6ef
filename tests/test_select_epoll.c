/* Integration tests specific to the one-thread stages, 04-select and
 * 05-epoll-callbacks: what a single thread must survive without blocking.
 *
 * Most tests run once per row (Check loop tests); STAGES=04-select limits a
 * run to some rows, as in test_stages. Timing margins are generous: the
 * machine is shared and sanitizer builds are slow. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evconn.h"
#include "harness.h"
#include "log.h"

struct row {
    const char *name;
    int load;       /* concurrent sync requests the stage must take at once */
};

static const struct row rows[] = {
    {"04-select", 500},
    {"05-epoll-callbacks", 2000},
};
#define NUM_ROWS ((int)(sizeof rows / sizeof rows[0]))

static bool row_selected(int i)
{
    return harness_stage_selected(rows[i].name);
}

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";
static const char *const one_bill_answer =
    "{\"status\":\"completed\",\"request_id\":\"one\",\"breakdown\":["
    "{\"denomination_id\":7,\"subtotal_rub\":6.0}],\"total_rub\":6.0}";

/* A case that gives its stage a main service also sets this callback
 * deadline: retries end 750 ms after the first try, exactly three tries
 * (the first backoff is 250-500 ms, the second is cut to end at the
 * deadline), so a failing callback is given up quickly. */
#define CALLBACK_DEADLINE_MS 750

static void stop_stage(struct proc *p)
{
    ck_assert_int_eq(proc_stop(p, 25000), 0);
}

/* Waits until the server's log contains needle. */
static bool wait_for_log(struct proc *p, const char *needle, int timeout_ms)
{
    double deadline = harness_now() + timeout_ms / 1000.0;
    do {
        if (strstr(harness_read_log(p), needle))
            return true;
        harness_sleep_ms(20);
    } while (harness_now() < deadline);
    return strstr(harness_read_log(p), needle) != NULL;
}

static void expect_quick_get_root(int port, double max_s)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.seconds < max_s, "GET / took %.3f s (limit %.2f s)",
                  r.seconds, max_s);
    http_result_free(&r);
}

/* ---- the server's threads, from /proc ---- */

/* Samples the thread count every 10 ms on a helper thread while the test
 * thread drives the load. */
struct thread_probe {
    pid_t pid;
    pthread_t th;
    atomic_bool stop;
    int max, samples;
};

static void *probe_main(void *arg)
{
    struct thread_probe *tp = arg;
    while (!atomic_load(&tp->stop)) {
        int n = harness_thread_count(tp->pid);
        if (n > 0) {
            tp->samples++;
            if (n > tp->max)
                tp->max = n;
        }
        harness_sleep_ms(10);
    }
    return NULL;
}

static void probe_start(struct thread_probe *tp, pid_t pid)
{
    tp->pid = pid;
    tp->max = tp->samples = 0;
    atomic_store(&tp->stop, false);
    ck_assert_int_eq(pthread_create(&tp->th, NULL, probe_main, tp), 0);
}

static void probe_stop(struct thread_probe *tp)
{
    atomic_store(&tp->stop, true);
    pthread_join(tp->th, NULL);
}

/* ---- raw HTTP over one connection ---- */

/* Seconds until the server closes fd (recv 0 or an error), or -1. */
static double seconds_until_closed(int fd, int timeout_ms)
{
    double start = harness_now(), deadline = start + timeout_ms / 1000.0;
    char buf[512];
    while (harness_now() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)((deadline - harness_now()) * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return harness_now() - start;
    }
    return -1;
}

static char *post_sync_text(const char *extra_headers)
{
    char *text;
    ck_assert_int_ge(asprintf(&text,
        "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
        strlen(one_bill_body), extra_headers, one_bill_body), 0);
    return text;
}

/* ---- fake main services ---- */

/* A listening socket nobody accepts from: connections complete in the
 * kernel's backlog, requests are sent, and no answer ever comes. */
static int silent_listener(int *port)
{
    return harness_listen(port);
}

/* A main service that answers every request with 500, on a thread (the
 * harness's fake main service with a one-status script). */
static void failing_start(struct fake_main *fs)
{
    static const int status_500[] = {500};
    fake_main_start(fs, 0, status_500, 1);
}

/* ---- the tests ---- */

/* The lecture's point: one thread, hundreds or thousands of clients
 * waiting at once, all answered after about one delay. */
START_TEST(many_sync_requests_one_thread_one_delay)
{
    if (harness_skip("many_sync_requests_one_thread_one_delay") ||
        !row_selected(_i))
        return;
    const int delay_ms = 1000;
    int n = rows[_i].load;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = delay_ms, .client_timeout_ms = 30000});
    struct http_result *r = calloc((size_t)n, sizeof *r);
    ck_assert_ptr_nonnull(r);
    struct thread_probe tp;
    probe_start(&tp, s.pid);
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, n, r);
    probe_stop(&tp);

    double first = r[0].start, last = r[0].end;
    int ok = 0;
    for (int k = 0; k < n; k++) {
        if (r[k].status == 200 && strcmp(r[k].body, one_bill_answer) == 0)
            ok++;
        if (r[k].start < first)
            first = r[k].start;
        if (r[k].end > last)
            last = r[k].end;
        http_result_free(&r[k]);
    }
    free(r);
    ck_assert_msg(ok == n, "%d of %d requests answered 200 with the sum", ok, n);
    double wall = last - first;
    ck_assert_msg(wall >= delay_ms / 1000.0 * 0.95, "too fast: %.3f s", wall);
    ck_assert_msg(wall < 3.0 * delay_ms / 1000.0,
                  "%d requests took %.3f s; one delay is %.1f s", n, wall,
                  delay_ms / 1000.0);
    ck_assert_int_gt(tp.samples, 0);
    ck_assert_msg(tp.max == 1, "the server ran %d threads", tp.max);
    stop_stage(&s);
}
END_TEST

/* 04 only: select() cannot watch descriptor FD_SETSIZE or above. Hold more
 * connections than that; the excess must get a 503 at once, and the server
 * must go on serving once there is room again. */
#define HOLD 1100

START_TEST(select_answers_503_past_fd_setsize_and_goes_on)
{
    if (!row_selected(0))
        return;
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_max >= HOLD + 256,
                  "RLIMIT_NOFILE hard limit is %llu; this test needs %d "
                  "descriptors in the test and in the server. Raise it "
                  "(ulimit -Hn, or LimitNOFILE= for a service) and rerun.",
                  (unsigned long long)rl.rlim_max, HOLD + 256);
    rl.rlim_cur = rl.rlim_max; /* the server inherits it */
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

    struct proc s;
    harness_stage_start(&s, rows[0].name, &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 30000});
    static int fds[HOLD];
    static bool done[HOLD];
    for (int k = 0; k < HOLD; k++) {
        fds[k] = raw_connect(s.port);
        ck_assert_msg(fds[k] >= 0, "connect %d: %s", k, strerror(errno));
        done[k] = false;
    }
    /* Collect the 503s: each refused connection gets its answer and EOF;
     * the held ones stay silent. Stop after a quiet second. */
    static struct pollfd pfds[HOLD];
    int refused = 0, other = 0;
    double deadline = harness_now() + 20;
    for (;;) {
        int m = 0;
        static int which[HOLD];
        for (int k = 0; k < HOLD; k++)
            if (!done[k]) {
                pfds[m] = (struct pollfd){.fd = fds[k], .events = POLLIN};
                which[m++] = k;
            }
        int pr = poll(pfds, (nfds_t)m, 1000);
        if (pr <= 0 || harness_now() > deadline)
            break;
        for (int j = 0; j < m; j++) {
            if (!pfds[j].revents)
                continue;
            int k = which[j];
            char buf[1024];
            ssize_t n = recv(fds[k], buf, sizeof buf - 1, 0);
            buf[n > 0 ? n : 0] = '\0';
            if (raw_status(buf) == 503 && strstr(buf, "FD_SETSIZE"))
                refused++;
            else
                other++;
            done[k] = true;
        }
    }
    ck_assert_msg(other == 0, "%d connections got something else", other);
    ck_assert_msg(refused >= HOLD - FD_SETSIZE,
                  "only %d of %d connections were refused", refused, HOLD);
    ck_assert_msg(refused < HOLD, "no connection was kept");
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s), "FD_SETSIZE"));

    /* While full, a newcomer is refused too, at once. */
    struct http_result r;
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_double_lt(r.seconds, 2.0);
    http_result_free(&r);

    /* Let go of everything: the server notices, closes, and serves again. */
    for (int k = 0; k < HOLD; k++)
        close(fds[k]);
    harness_sleep_ms(500);
    expect_quick_get_root(s.port, 2.0);
    stop_stage(&s);
}
END_TEST

/* A callback PUT is in flight against a main service that never answers:
 * the one thread must not be waiting for it. */
START_TEST(get_root_answered_while_a_callback_hangs)
{
    if (!row_selected(_i))
        return;
    int silent_port;
    int silent = silent_listener(&silent_port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", silent_port);
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 30000,
        .main_url = url, .callback_deadline_ms = CALLBACK_DEADLINE_MS});
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_result_free(&r);
    ck_assert(wait_for_log(&s, "callback one: PUT, try 1", 5000));
    harness_sleep_ms(300); /* connected, request sent, waiting for nothing */
    for (int k = 0; k < 5; k++)
        expect_quick_get_root(s.port, 0.3);
    int threads = harness_thread_count(s.pid);
    ck_assert_msg(threads >= 1 && threads <= 2,
                  "%d threads (one, plus perhaps curl's resolver)", threads);
    ck_assert_ptr_null(strstr(harness_read_log(&s), "delivered"));
    /* Closing the silent listener resets the hanging PUT; the retries meet
     * a closed port and the job gives up. */
    close(silent);
    ck_assert(wait_for_log(&s, "callback one given up after ", 20000));
    expect_quick_get_root(s.port, 0.3);
    stop_stage(&s);
}
END_TEST

/* The main service answers 500: retried with backoff (timers, not sleeps),
 * and everyone else is served meanwhile. */
START_TEST(main_service_500_is_retried_and_the_loop_serves)
{
    if (!row_selected(_i))
        return;
    struct fake_main fs;
    failing_start(&fs);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fs.port);
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 30000,
        .main_url = url, .callback_deadline_ms = CALLBACK_DEADLINE_MS});
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    double deadline = harness_now() + 20;
    int served = 0;
    while (!strstr(harness_read_log(&s), "given up after 3 tries") &&
           harness_now() < deadline) {
        expect_quick_get_root(s.port, 0.3);
        served++;
        harness_sleep_ms(50);
    }
    const char *log = harness_read_log(&s);
    ck_assert_ptr_nonnull(strstr(log, "callback one given up after 3 tries"));
    ck_assert_ptr_nonnull(strstr(log, "try 1 failed: HTTP 500; next try in"));
    ck_assert_ptr_nonnull(strstr(log, "try 2 failed: HTTP 500; next try in"));
    ck_assert_int_eq(fake_main_requests(&fs), 3);
    ck_assert_int_ge(served, 5); /* the backoffs (0.75 s in all) were served */
    stop_stage(&s);
    fake_main_close(&fs);
}
END_TEST

/* Keep-alive: several requests on one connection; then a pipeline of
 * three (GET, POST that waits a bill, GET) in one write, answered in
 * order. */
START_TEST(keep_alive_and_a_three_request_pipeline)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 200, .client_timeout_ms = 30000});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int k = 0; k < 3; k++) {
        harness_send_text(fd, get);
        char *resp = harness_read_response_text(fd, 5000);
        ck_assert_ptr_nonnull(resp);
        ck_assert_int_eq(raw_status(resp), 200);
        ck_assert_ptr_nonnull(strstr(resp, "Connection: keep-alive"));
        free(resp);
    }
    char *post = post_sync_text("");
    harness_send_text(fd, post);
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(resp);
    ck_assert_ptr_nonnull(strstr(resp, one_bill_answer));
    free(resp);

    char *pipeline;
    ck_assert_int_ge(asprintf(&pipeline, "%s%s%s", get, post,
                              "GET / HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n"), 0);
    harness_send_text(fd, pipeline);
    char *a = harness_read_response_text(fd, 5000);
    char *b = harness_read_response_text(fd, 5000);
    char *c = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(strstr(a, "Exchange service is running"));
    ck_assert_ptr_nonnull(strstr(b, one_bill_answer));
    ck_assert_ptr_nonnull(strstr(c, "Exchange service is running"));
    ck_assert_ptr_nonnull(strstr(c, "Connection: close"));
    ck_assert_msg(seconds_until_closed(fd, 3000) >= 0,
                  "not closed after Connection: close");
    free(a);
    free(b);
    free(c);
    free(pipeline);
    free(post);
    close(fd);
    /* All of it on one connection. */
    const char *log = harness_read_log(&s);
    const char *first = strstr(log, "connection from");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + 1, "connection from"));
    stop_stage(&s);
}
END_TEST

START_TEST(expect_100_continue_gets_the_go_ahead)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 30000});
    int fd = raw_connect(s.port);
    char head[256];
    snprintf(head, sizeof head,
             "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
             "Expect: 100-continue\r\n\r\n", strlen(one_bill_body));
    harness_send_text(fd, head);
    char *interim = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(interim);
    ck_assert_int_eq(raw_status(interim), 100);
    harness_send_text(fd, one_bill_body);
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(raw_status(resp), 200);
    ck_assert_ptr_nonnull(strstr(resp, one_bill_answer));
    free(interim);
    free(resp);
    close(fd);
    stop_stage(&s);
}
END_TEST

/* An idle client is closed after the idle timeout; so is one that trickles
 * a request a byte at a time (slowloris): its timeout counts from the
 * first byte, not from the last. */
START_TEST(idle_and_trickling_clients_are_closed)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 600});
    int idle = raw_connect(s.port);
    double t = seconds_until_closed(idle, 5000);
    ck_assert_msg(t >= 0.4 && t < 2.0, "idle client closed after %.3f s", t);
    close(idle);

    int slow = raw_connect(s.port);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    double start = harness_now();
    bool closed = false;
    for (size_t k = 0; k < strlen(req) && !closed; k++) {
        if (send(slow, req + k, 1, MSG_NOSIGNAL) != 1)
            break; /* reset: closed already */
        struct pollfd pfd = {.fd = slow, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            char buf[256];
            closed = recv(slow, buf, sizeof buf, 0) <= 0;
        }
    }
    double took = harness_now() - start;
    ck_assert_msg(took < 2.0, "a trickling client was kept %.3f s", took);
    close(slow);
    expect_quick_get_root(s.port, 0.5);
    const char *log = harness_read_log(&s);
    ck_assert_ptr_nonnull(strstr(log, "idle for 600 ms"));
    ck_assert_ptr_nonnull(strstr(log, "request head not complete within "
                                      "600 ms"));
    stop_stage(&s);
}
END_TEST

static long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long utime = -1, stime = -1;
    /* Fields 14 and 15; the command (field 2) has no spaces here. */
    int got = fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                        "%ld %ld", &utime, &stime);
    fclose(f);
    return got == 2 ? utime + stime : -1;
}

/* Out of descriptors: accept fails with EMFILE while the listener stays
 * readable. The server must pause accepting, not spin, and recover. It
 * starts with 40 descriptors (harness.h says why not a prlimit later). */
START_TEST(emfile_pauses_accepting_without_spinning)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 30000, .max_fds = 40});
    enum { N = 60 };
    int fds[N];
    for (int k = 0; k < N; k++) {
        fds[k] = raw_connect(s.port);
        ck_assert_int_ge(fds[k], 0); /* the kernel's backlog takes them */
    }
    ck_assert(wait_for_log(&s, "Too many open files; not accepting for 100 ms",
                           5000));
    long before = cpu_ticks(s.pid);
    harness_sleep_ms(1000);
    long used = cpu_ticks(s.pid) - before;
    long hz = sysconf(_SC_CLK_TCK);
    ck_assert_msg(before >= 0 && used < hz / 4,
                  "the server used %ld ticks of CPU in a second (%ld/s): "
                  "spinning", used, hz);
    for (int k = 0; k < N; k++)
        close(fds[k]);
    harness_sleep_ms(500);
    expect_quick_get_root(s.port, 2.0);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s), "accepting again"));
    stop_stage(&s);
}
END_TEST

/* SIGTERM: an idle keep-alive connection is closed at once, while an async
 * job's bills and callback still finish before the exit. */
/* A client that half-closes right after its sync request: the end of its
 * stream arrives while the bill waits. The loop must not spin on that
 * "readable" (05 pauses the socket when input comes during a wait, issue
 * 14), and the answer still goes out. */
START_TEST(input_during_a_bill_wait_does_not_spin)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 1500, .client_timeout_ms = 30000});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    char *req = post_sync_text("");
    harness_send_text(fd, req);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    harness_sleep_ms(200);
    long before = cpu_ticks(s.pid);
    harness_sleep_ms(1000);
    long used = cpu_ticks(s.pid) - before;
    long hz = sysconf(_SC_CLK_TCK);
    ck_assert_msg(before >= 0 && used < hz / 4,
                  "the server used %ld ticks of CPU in a second (%ld/s) "
                  "while a bill waited: spinning", used, hz);
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(resp);
    ck_assert_ptr_nonnull(strstr(resp, one_bill_answer));
    free(resp);
    free(req);
    close(fd);
    stop_stage(&s);
}
END_TEST

START_TEST(sigterm_closes_idle_and_finishes_pending_callbacks)
{
    if (!row_selected(_i))
        return;
    struct proc main_svc, s;
    static const char *const env[] = {"SECRET_TOKEN=test-token", NULL};
    proc_start(&main_svc, "main-service", NULL, env);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", main_svc.port);
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 700, .client_timeout_ms = 30000,
        .main_url = url, .callback_deadline_ms = CALLBACK_DEADLINE_MS});

    int idle = raw_connect(s.port);
    harness_send_text(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    char *resp = harness_read_response_text(idle, 5000);
    ck_assert_ptr_nonnull(resp);
    free(resp);

    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    double start = harness_now();
    kill(s.pid, SIGTERM);
    double closed_after = seconds_until_closed(idle, 3000);
    ck_assert_msg(closed_after >= 0 && closed_after < 0.5,
                  "idle keep-alive connection closed after %.3f s",
                  closed_after);
    int rc = proc_wait(&s, 25000); /* a second SIGTERM would cut the drain */
    double took = harness_now() - start;
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(took >= 0.5, "exited after %.3f s, before its job", took);
    http_request("GET", main_svc.port, "/api/exchange_result/one", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    close(idle);
    ck_assert_int_eq(proc_stop(&main_svc, 5000), 0);
}
END_TEST

/* ---- deadlines that bytes never move (issue 12, item 1) ---- */

/* After an answer that closes: a FIN within timeout_ms, not a reset (the
 * lingering close drained what the client sent). */
static void expect_fin(int fd, int timeout_ms)
{
    double t = seconds_until_closed(fd, timeout_ms);
    ck_assert_msg(t >= 0, "still open %d ms after the 408", timeout_ms);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    ck_assert_msg(err != ECONNRESET, "the 408 ended in a reset");
}

static void expect_408(const char *resp, const char *detail)
{
    ck_assert_msg(resp != NULL, "no answer at all");
    ck_assert_int_eq(raw_status(resp), 408);
    ck_assert_ptr_nonnull(strstr(resp, "\r\nConnection: close\r\n"));
    ck_assert_msg(strstr(resp, detail) != NULL, "[%s]", resp);
}

/* "Expect: 100-continue": evconn writes the go-ahead (EVCONN_WRITE) and
 * goes back to reading, and the body's deadline still counts from the
 * head's end, not from the interim answer or from any new byte. A client
 * that never sends the body gets a 408, then a FIN. */
START_TEST(a_body_that_never_comes_after_100_continue_gets_408)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 50, .client_timeout_ms = 600});
    int fd = raw_connect(s.port);
    harness_send_text(fd, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 40\r\nExpect: 100-continue\r\n\r\n");
    double start = harness_now();
    char *interim = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(interim);
    ck_assert_int_eq(raw_status(interim), 100);
    harness_sleep_ms(300);
    harness_send_text(fd, "{\"request_id\""); /* part of it, then silence */
    char *resp = harness_read_response_text(fd, 5000);
    double took = harness_now() - start;
    expect_408(resp, "request body not complete within 600 ms");
    ck_assert_msg(took >= 0.45 && took < 2.5,
                  "408 after %.3f s (body deadline 0.6 s)", took);
    expect_fin(fd, 3000);
    ck_assert(wait_for_log(&s, "(--body-timeout-ms); 408", 2000));
    free(interim);
    free(resp);
    close(fd);
    expect_quick_get_root(s.port, 0.5);
    stop_stage(&s);
}
END_TEST

/* A pipelined request's head waits while the one before it is served (a
 * sync request: one bill delay). Its deadline counts from when the server
 * turns to it, not from when its bytes arrived: the client did not keep
 * the server waiting, the server kept it. */
START_TEST(a_pipelined_head_is_timed_from_when_its_turn_comes)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 900, .client_timeout_ms = 600});
    int fd = raw_connect(s.port);
    char *first = post_sync_text("");
    char *both;
    ck_assert_int_ge(asprintf(&both, "%sGET / HTTP/1.1\r\nHost: x\r\n",
                              first), 0);
    harness_send_text(fd, both);
    /* After the 900 ms bill: */
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(raw_status(resp), 200);
    free(resp);
    /* Over 600 ms since the second head's first byte, under 600 ms since
     * its turn came: it may still finish. */
    harness_sleep_ms(250);
    harness_send_text(fd, "\r\n");
    resp = harness_read_response_text(fd, 5000);
    ck_assert_msg(resp != NULL && raw_status(resp) == 200,
                  "the pipelined request was cut: [%s]", resp ? resp : "");
    ck_assert_ptr_nonnull(strstr(resp, "Exchange service is running"));
    free(resp);
    free(first);
    free(both);
    close(fd);
    stop_stage(&s);
}
END_TEST

/* ---- the async budget (issue 12, item 2) ---- */

/* A refusal past the budget is an ordinary answer: the keep-alive
 * connection goes on, and the bills come back as they are done, before
 * the job's callback is over. */
START_TEST(a_budget_refusal_keeps_the_connection_and_bills_come_back)
{
    if (!row_selected(_i))
        return;
    int port;
    int silent = silent_listener(&port); /* callbacks hang: jobs stay open */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct proc s;
    const char *args[] = {"--max-jobs", "3", "--max-bills", "1", NULL};
    harness_stage_start(&s, rows[_i].name, &(struct stage_opts){
        .delay_ms = 300, .main_url = url, .callback_deadline_ms = 2000,
        .args = args});
    int fd = raw_connect(s.port);
    char *req;
    ck_assert_int_ge(asprintf(&req, "POST /api/exchange_async HTTP/1.1\r\n"
                              "Host: x\r\nContent-Length: %zu\r\n\r\n%s",
                              strlen(one_bill_body), one_bill_body), 0);
    harness_send_text(fd, req);
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_msg(resp && raw_status(resp) == 200, "[%s]", resp);
    free(resp);
    harness_send_text(fd, req); /* its bill still waits: no bill left */
    resp = harness_read_response_text(fd, 5000);
    ck_assert_msg(resp && raw_status(resp) == 503, "[%s]", resp);
    ck_assert_ptr_nonnull(strstr(resp, "\r\nRetry-After: "));
    ck_assert_ptr_nonnull(strstr(resp, "--max-bills"));
    ck_assert_ptr_nonnull(strstr(resp, "Connection: keep-alive"));
    free(resp);
    /* The first job's bill is done, its callback hangs: the bill is back,
     * the job is not, and there is room for two more jobs. */
    harness_sleep_ms(600);
    for (int k = 0; k < 2; k++) {
        harness_send_text(fd, req);
        resp = harness_read_response_text(fd, 5000);
        ck_assert_msg(resp && raw_status(resp) == 200, "job %d: [%s]", k,
                      resp);
        free(resp);
        harness_sleep_ms(600);
    }
    harness_send_text(fd, req); /* three jobs open: --max-jobs */
    resp = harness_read_response_text(fd, 5000);
    ck_assert_msg(resp && raw_status(resp) == 503, "[%s]", resp);
    ck_assert_ptr_nonnull(strstr(resp, "--max-jobs"));
    free(resp);
    free(req);
    close(fd);
    /* Closing the silent listener resets the hanging PUTs; their retries
     * meet a closed port and give up, and the stop can finish. */
    close(silent);
    stop_stage(&s);
}
END_TEST

/* The steps themselves, without a loop (issue 14): an answer is written by
 * the step that made it, so a keep-alive request leaves the connection
 * wanting READ again with the answer already on its way; 05 then needs no
 * epoll_ctl between requests. Pipelined answers are written
 * EVCONN_WRITE_BURST per step, the rest on the next turn. */
static void step_server(struct evconn_server *srv, struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->header_timeout_ms = cfg->body_timeout_ms = 10000;
    cfg->idle_timeout_ms = 10000;
    evconn_server_init(srv, cfg, "steps", NULL, 1, 1); /* no loop: no ops */
}

/* A step server and one connection to it: c on sv[0], its client sv[1]. */
static void step_conn(struct evconn_server *srv, struct config *cfg,
                      struct evconn *c, int sv[2])
{
    log_init("steps", true);
    step_server(srv, cfg);
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    evconn_init(c, srv, sv[0]);
}

/* How many answers to GET / the peer can read now. */
static int answers_waiting(int fd)
{
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf &&
           (n = recv(fd, buf + len, sizeof buf - len, MSG_DONTWAIT)) > 0)
        len += (size_t)n;
    int count = 0;
    for (const char *p = buf; (p = memmem(p, len - (size_t)(p - buf),
                                          "HTTP/1.1 200", 12)) != NULL; p++)
        count++;
    return count;
}

START_TEST(an_answer_is_written_by_the_step_that_made_it)
{
    struct config cfg;
    struct evconn_server srv;
    struct evconn c;
    int sv[2];
    step_conn(&srv, &cfg, &c, sv);
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    harness_send_text(sv[1], get);
    ck_assert_int_eq(evconn_on_readable(&c), EVCONN_READ);
    ck_assert_int_eq(answers_waiting(sv[1]), 1);

    /* Twenty pipelined: the first step answers a burst, the loop's next
     * turn (writable) the rest. */
    char *many = malloc(20 * strlen(get) + 1);
    ck_assert_ptr_nonnull(many);
    many[0] = '\0';
    for (int i = 0; i < 20; i++)
        strcat(many, get);
    harness_send_text(sv[1], many);
    free(many);
    ck_assert_int_eq(evconn_on_readable(&c), EVCONN_WRITE);
    ck_assert_int_eq(answers_waiting(sv[1]), EVCONN_WRITE_BURST);
    ck_assert_int_eq(evconn_on_writable(&c), EVCONN_READ);
    ck_assert_int_eq(answers_waiting(sv[1]), 20 - EVCONN_WRITE_BURST);
    evconn_release(&c);
    close(sv[1]);
    evconn_server_free(&srv);
}
END_TEST

/* While a sync request's bills wait, the connection holds no read buffer
 * (issue 14: 10,000 waiting clients in 32 MiB); a pipelined request behind
 * it keeps its bytes. */
START_TEST(a_waiting_request_holds_no_read_buffer)
{
    struct config cfg;
    struct evconn_server srv;
    struct evconn c;
    int sv[2];
    step_conn(&srv, &cfg, &c, sv);
    cfg.delay_ms = 60000; /* read when the request is, not at the init */
    char *req = post_sync_text("");
    harness_send_text(sv[1], req);
    ck_assert_int_eq(evconn_on_readable(&c), EVCONN_BILL);
    ck_assert_ptr_null(c.parser.buf);
    evconn_release(&c);
    close(sv[1]);

    /* The same request with GET / pipelined behind it. */
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    evconn_init(&c, &srv, sv[0]);
    harness_send_text(sv[1], req);
    harness_send_text(sv[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(evconn_on_readable(&c), EVCONN_BILL);
    ck_assert_ptr_nonnull(c.parser.buf);
    ck_assert(!http_parser_empty(&c.parser));
    evconn_release(&c);
    close(sv[1]);
    free(req);
    evconn_server_free(&srv);
}
END_TEST

/* A kept-alive client may stay silent for minutes: 05's completion steps
 * hold no read buffer while no byte of a request is there (issue 26:
 * 10,000 answered clients would pin 40 MiB). The loop's "bytes are
 * there" brings one; a request that came half stays in its buffer. A
 * buffer given back is kept for the next reader, a bounded few of them
 * (freeing each would make malloc shrink and regrow its heap). */
static ssize_t step_recv(struct evconn *c, int fd)
{
    size_t len;
    char *buf = evconn_recv_buffer(c, &len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_gt(len, 0);
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    return n;
}

START_TEST(an_idle_connection_holds_no_read_buffer)
{
    struct config cfg;
    struct evconn_server srv;
    struct evconn c;
    int sv[2];
    step_conn(&srv, &cfg, &c, sv);
    size_t len = 1;
    ck_assert_ptr_nonnull(evconn_recv_buffer(&c, &len));
    ck_assert_uint_eq(len, 0); /* accepted, silent: a wait, no buffer */
    ck_assert_ptr_null(c.parser.buf);

    harness_send_text(sv[1], "GET / HTTP/1.1\r\nHost: x\r\n");
    ck_assert_int_eq(evconn_on_received(&c, 1), EVCONN_READ); /* there */
    ck_assert_int_eq(evconn_on_received(&c, step_recv(&c, sv[0])),
                     EVCONN_READ);
    ck_assert_ptr_nonnull(evconn_recv_buffer(&c, &len));
    ck_assert_uint_gt(len, 0); /* half a head: its buffer stays */
    ck_assert_ptr_nonnull(c.parser.buf);

    harness_send_text(sv[1], "\r\n");
    ck_assert_int_eq(evconn_on_received(&c, step_recv(&c, sv[0])),
                     EVCONN_WRITE); /* here the loop sends */
    /* All it read is answered: the buffer went back at once, kept for
     * the next connection to read. */
    ck_assert_ptr_null(c.parser.buf);
    ck_assert_uint_eq(srv.num_spare, 1);
    const char *answer = evconn_send_data(&c, &len);
    ssize_t sent = send(sv[0], answer, len, MSG_DONTWAIT);
    ck_assert_int_eq(sent, (ssize_t)len);
    ck_assert_int_eq(evconn_on_sent(&c, sent), EVCONN_READ);
    ck_assert_int_eq(answers_waiting(sv[1]), 1);
    ck_assert_ptr_nonnull(evconn_recv_buffer(&c, &len));
    ck_assert_uint_eq(len, 0); /* answered, kept alive: no buffer again */
    ck_assert_ptr_null(c.parser.buf);

    close(sv[1]); /* the end after a wait is the end */
    ck_assert_int_eq(evconn_on_received(&c, 1), EVCONN_READ);
    ck_assert_ptr_nonnull(evconn_recv_buffer(&c, &len));
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_eq(srv.num_spare, 0); /* the spare, not a new one */
    ck_assert_int_eq(evconn_on_received(&c, 0), EVCONN_CLOSE);
    evconn_release(&c);
    ck_assert_uint_eq(srv.num_spare, 1);

    /* A head of 6 KiB grows the buffer past 4 KiB: answered, that buffer
     * is freed, not kept (a spare is 4 KiB: 16 of them, 64 KiB). */
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    evconn_init(&c, &srv, sv[0]);
    char big[7000];
    int at = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    memset(big + at, 'p', 6000);
    snprintf(big + at + 6000, sizeof big - (size_t)at - 6000, "\r\n\r\n");
    harness_send_text(sv[1], big);
    evconn_recv_buffer(&c, &len);
    ck_assert_int_eq(evconn_on_received(&c, 1), EVCONN_READ);
    enum evconn_want want = EVCONN_READ;
    while (want == EVCONN_READ)
        want = evconn_on_received(&c, step_recv(&c, sv[0]));
    ck_assert_int_eq(want, EVCONN_WRITE);
    ck_assert_ptr_null(c.parser.buf);
    ck_assert_uint_eq(srv.num_spare, 0); /* the 4 KiB spare was taken */
    evconn_release(&c);
    close(sv[1]);

    /* The spares are bounded: more connections with a buffer than that
     * close, and the rest of their buffers are freed (ASan: no leak). */
    enum { N = EVCONN_SPARE_BUFFERS + 3 };
    struct evconn many[N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        close(sv[1]);
        evconn_init(&many[i], &srv, sv[0]);
        evconn_recv_buffer(&many[i], &len);
        ck_assert_int_eq(evconn_on_received(&many[i], 1), EVCONN_READ);
        ck_assert_ptr_nonnull(evconn_recv_buffer(&many[i], &len));
        ck_assert_uint_gt(len, 0);
    }
    for (int i = 0; i < N; i++)
        evconn_release(&many[i]);
    ck_assert_uint_eq(srv.num_spare, EVCONN_SPARE_BUFFERS);
    evconn_server_free(&srv);
    ck_assert_uint_eq(srv.num_spare, 0);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("select_epoll");
    TCase *tc = tcase_create("one thread");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, an_answer_is_written_by_the_step_that_made_it);
    tcase_add_test(tc, a_waiting_request_holds_no_read_buffer);
    tcase_add_test(tc, an_idle_connection_holds_no_read_buffer);
    tcase_add_loop_test(tc, many_sync_requests_one_thread_one_delay, 0, NUM_ROWS);
    tcase_add_test(tc, select_answers_503_past_fd_setsize_and_goes_on);
    tcase_add_loop_test(tc, get_root_answered_while_a_callback_hangs, 0, NUM_ROWS);
    tcase_add_loop_test(tc, main_service_500_is_retried_and_the_loop_serves, 0, NUM_ROWS);
    tcase_add_loop_test(tc, keep_alive_and_a_three_request_pipeline, 0, NUM_ROWS);
    tcase_add_loop_test(tc, expect_100_continue_gets_the_go_ahead, 0, NUM_ROWS);
    tcase_add_loop_test(tc, idle_and_trickling_clients_are_closed, 0, NUM_ROWS);
    tcase_add_loop_test(tc, emfile_pauses_accepting_without_spinning, 0, NUM_ROWS);
    tcase_add_loop_test(tc, input_during_a_bill_wait_does_not_spin, 0, NUM_ROWS);
    tcase_add_loop_test(tc, sigterm_closes_idle_and_finishes_pending_callbacks, 0, NUM_ROWS);
    tcase_add_loop_test(tc, a_body_that_never_comes_after_100_continue_gets_408,
                        0, NUM_ROWS);
    tcase_add_loop_test(tc, a_pipelined_head_is_timed_from_when_its_turn_comes,
                        0, NUM_ROWS);
    tcase_add_loop_test(tc,
                        a_budget_refusal_keeps_the_connection_and_bills_come_back,
                        0, NUM_ROWS);
    suite_add_tcase(suite, tc);
    return harness_run(suite);
}
