/* What is specific to 02-fork and 03-threads, beyond the shared table in
 * test_stages.c: many clients at once, the process and thread limits,
 * cleanup of children and threads, bills waited together (03) or one after
 * another (02), and a stop that neither waits for idle connections nor
 * drops pending callbacks.
 *
 * STAGES=03-threads limits a run to one stage (the ThreadSanitizer run
 * builds only 03). */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define DELAY_MS 300
#define DELAY_S (DELAY_MS / 1000.0)

static const char *const rows[] = {"02-fork", "03-threads"};
#define NUM_ROWS ((int)(sizeof rows / sizeof rows[0]))

static bool selected(const char *stage)
{
    return harness_stage_selected(stage);
}

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";

static const char *const three_bills_body =
    "{\"request_id\": \"%s\", \"exchange_rate\": 75.5, \"bills\": ["
    "{\"denomination_id\": 1, \"denomination\": 10.0, \"count\": 5},"
    "{\"denomination_id\": 2, \"denomination\": 20.0, \"count\": 3},"
    "{\"denomination_id\": 3, \"denomination\": 50.0, \"count\": 1}]}";

static const char *const three_bills_result =
    "{\"request_id\":\"%s\",\"breakdown\":["
    "{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
    "{\"denomination_id\":2,\"subtotal_rub\":4530.0},"
    "{\"denomination_id\":3,\"subtotal_rub\":3775.0}]}";

static const char *const test_env[] = {"SECRET_TOKEN=test-token", NULL};

static void start_main_service(struct proc *m, char *url, size_t len)
{
    proc_start(m, "main-service", NULL, test_env);
    snprintf(url, len, "http://127.0.0.1:%d", m->port);
}

/* ---- /proc: children and threads of a server ---- */

struct children {
    int total, zombies;
};

/* The children of pid, from /proc. */
static struct children children_of(pid_t pid)
{
    struct children c;
    c.total = harness_children_of(pid, NULL, 0, &c.zombies);
    return c;
}

/* Polls until the thread count is want (true) or timeout_ms passes. */
static bool threads_settle_at(pid_t pid, int want, int timeout_ms)
{
    double give_up = harness_now() + timeout_ms / 1000.0;
    while (harness_thread_count(pid) != want) {
        if (harness_now() > give_up)
            return false;
        harness_sleep_ms(20);
    }
    return true;
}

/* The thread count once it has not moved for 200 ms. */
static int stable_thread_count(pid_t pid)
{
    int last = harness_thread_count(pid);
    for (int same = 0; same < 10;) {
        harness_sleep_ms(20);
        int now = harness_thread_count(pid);
        same = now == last ? same + 1 : 0;
        last = now;
    }
    return last;
}

static void expect_get_root(int port)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
}

static int count_occurrences(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Timestamps ("+   1.234s") of the log lines that contain needle. */
static int log_times(const char *log, const char *needle, double *out,
                     int max)
{
    int n = 0;
    for (const char *line = log; *line && n < max;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 1023 ? len : 1023),
                 line);
        double t;
        if (strstr(buf, needle) && sscanf(buf, "+ %lfs", &t) == 1)
            out[n++] = t;
        line += len + (end ? 1 : 0);
    }
    return n;
}

static double span(const double *t, int n)
{
    double lo = t[0], hi = t[0];
    for (int i = 1; i < n; i++) {
        lo = t[i] < lo ? t[i] : lo;
        hi = t[i] > hi ? t[i] : hi;
    }
    return hi - lo;
}

/* ---- Both stages ---- */

/* Twenty clients that each wait one delay are answered after about one
 * delay, not twenty: the waits overlap in processes or threads. */
START_TEST(twenty_sync_requests_take_about_one_delay)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS});
    enum { N = 20 };
    struct http_result r[N];
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, N, r);
    double first = r[0].start, last = r[0].end;
    for (int k = 0; k < N; k++) {
        ck_assert_int_eq(r[k].status, 200);
        first = r[k].start < first ? r[k].start : first;
        last = r[k].end > last ? r[k].end : last;
        http_result_free(&r[k]);
    }
    ck_assert_msg(last - first < 3 * DELAY_S, "%d requests took %.3f s, "
                  "expected about %.1f", N, last - first, DELAY_S);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* Fifty clients stall halfway through a request; a fifty-first is served
 * at once. */
START_TEST(fifty_stalled_clients_do_not_delay_another)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS});
    enum { N = 50 };
    int fds[N];
    const char *half = "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\nContent-Le";
    for (int k = 0; k < N; k++) {
        fds[k] = raw_connect(s.port);
        ck_assert_int_ge(fds[k], 0);
        ck_assert_int_eq(write(fds[k], half, strlen(half)),
                         (ssize_t)strlen(half));
    }
    harness_sleep_ms(200);
    struct http_result r;
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.seconds < 0.5, "GET / took %.3f s behind %d stalled "
                  "clients", r.seconds, N);
    http_result_free(&r);
    for (int k = 0; k < N; k++)
        close(fds[k]);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* An idle keep-alive connection must not hold a stop for its idle timeout
 * (10 s here). */
START_TEST(stop_does_not_wait_for_idle_keep_alive)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS,
        .args = (const char *const[]){"--idle-timeout-ms", "10000", NULL}});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(write(fd, get, strlen(get)), (ssize_t)strlen(get));
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1); /* the answer; stay open */
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "Connection: keep-alive"));
    double t0 = harness_now();
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    double took = harness_now() - t0;
    ck_assert_msg(took < 2.0, "stop took %.3f s with an idle client", took);
    close(fd);
}
END_TEST

/* A request in flight when the stop comes is answered in full, as the
 * connection's last: "Connection: close", then the server closes it. */
START_TEST(stop_answers_the_request_in_flight_and_closes)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS,
        .args = (const char *const[]){"--idle-timeout-ms", "10000", NULL}});
    char req[512];
    snprintf(req, sizeof req, "POST /api/exchange_sync HTTP/1.1\r\nHost: x"
             "\r\nContent-Length: %zu\r\n\r\n%s", strlen(one_bill_body),
             one_bill_body);
    pid_t killer = fork();
    ck_assert_int_ge(killer, 0);
    if (killer == 0) {
        harness_sleep_ms(100);
        kill(s.pid, SIGTERM);
        _exit(0);
    }
    double t0 = harness_now();
    char *resp = raw_exchange(s.port, req, strlen(req), 5000);
    double took = harness_now() - t0;
    waitpid(killer, NULL, 0);
    ck_assert_int_eq(raw_status(resp), 200);
    ck_assert_ptr_nonnull(strstr(resp, "Connection: close"));
    ck_assert_msg(took < 2.0, "connection held %.3f s after the answer",
                  took);
    free(resp);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* A stop right after an async answer still delivers its callback. */
START_TEST(stop_finishes_pending_callbacks)
{
    if (!selected(rows[_i]))
        return;
    struct proc m, s;
    char url[64], body[512], want[512];
    start_main_service(&m, url, sizeof url);
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS, .main_url = url});
    snprintf(body, sizeof body, three_bills_body, "stopping");
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    http_request("GET", m.port, "/api/exchange_result/stopping?wait_ms=0",
                 NULL, &r);
    ck_assert_int_eq(r.status, 200);
    snprintf(want, sizeof want, three_bills_result, "stopping");
    ck_assert_str_eq(r.body, want);
    http_result_free(&r);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

/* Sends one byte every every_ms on fd until an answer arrives or
 * within_ms passes; the answer (up to the server's close) goes to buf.
 * Returns the seconds from the first byte to the answer, or -1 if none
 * came. The bytes are CR: a trickle that never even starts a request
 * line must not count as idle. */
static double trickle_until_answer(int fd, int every_ms, int within_ms,
                                   char *buf, size_t cap)
{
    double t0 = harness_now();
    size_t len = 0;
    buf[0] = '\0';
    while (harness_now() - t0 < within_ms / 1000.0) {
        if (send(fd, "\r", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
            errno != EAGAIN)
            break; /* closed: whatever was answered is in the socket */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, every_ms) > 0)
            break;
    }
    double answered = harness_now() - t0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (len + 1 >= cap || poll(&p, 1, 2000) <= 0)
            break;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return len > 0 ? answered : -1;
}

/* A client trickling a byte every 200 ms, quicker than the 600 ms idle
 * timeout, is cut off by the head's deadline (1 s from its first byte,
 * never moved) with a 408; its process or thread is then given back. */
START_TEST(trickled_head_gets_408_and_frees_its_worker)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS, .args = (const char *const[]){
            "--header-timeout-ms", "1000", "--idle-timeout-ms", "600", NULL}});
    expect_get_root(s.port);
    bool fork_row = strcmp(rows[_i], "02-fork") == 0;
    int idle = fork_row ? 0 : stable_thread_count(s.pid);
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    char buf[2048];
    double took = trickle_until_answer(fd, 200, 5000, buf, sizeof buf);
    close(fd);
    ck_assert_msg(took >= 0.9 && took < 2.0, "answered after %.2f s: %s",
                  took, buf);
    ck_assert_int_eq(raw_status(buf), 408);
    ck_assert_ptr_nonnull(strstr(buf, "Connection: close"));
    ck_assert_ptr_nonnull(strstr(buf, "{\"detail\":\"request head"));
    if (fork_row) {
        double give_up = harness_now() + 3.0;
        while (children_of(s.pid).total > 0 && harness_now() < give_up)
            harness_sleep_ms(50);
        ck_assert_int_eq(children_of(s.pid).total, 0);
    } else {
        ck_assert_msg(threads_settle_at(s.pid, idle, 3000), "expected %d "
                      "threads, have %d", idle, harness_thread_count(s.pid));
    }
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* A body sent a byte at a time, each quicker than the idle timeout, is
 * cut off 1 s after the head ended: 408 naming the body. */
START_TEST(trickled_body_gets_408_at_its_deadline)
{
    if (!selected(rows[_i]))
        return;
    struct proc s;
    harness_stage_start(&s, rows[_i], &(struct stage_opts){
        .delay_ms = DELAY_MS, .args = (const char *const[]){
            "--body-timeout-ms", "1000", "--idle-timeout-ms", "600", NULL}});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *head = "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: 100\r\n\r\n";
    ck_assert_int_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    double t0 = harness_now();
    char buf[2048] = "";
    size_t len = 0;
    while (harness_now() - t0 < 5.0 && len == 0) {
        ck_assert_int_eq(send(fd, " ", 1, MSG_NOSIGNAL), 1);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
            len = n > 0 ? (size_t)n : 0;
            buf[len] = '\0';
            break;
        }
    }
    double took = harness_now() - t0;
    close(fd);
    ck_assert_msg(took >= 0.9 && took < 2.0, "answered after %.2f s: %s",
                  took, buf);
    ck_assert_int_eq(raw_status(buf), 408);
    ck_assert_ptr_nonnull(strstr(buf, "request body"));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* Three slow requests, room for two: the third is refused with 503, and
 * once the two are done the server serves again. */
static void third_request_gets_503(const char *stage, const char *limit_opt)
{
    struct proc s;
    harness_stage_start(&s, stage, &(struct stage_opts){
        .delay_ms = 1000,
        .args = (const char *const[]){limit_opt, "2", NULL}});
    struct http_result r[3];
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, 3, r);
    int ok = 0, busy = 0;
    for (int k = 0; k < 3; k++) {
        if (r[k].status == 200)
            ok++;
        if (r[k].status == 503) {
            busy++;
            ck_assert_ptr_nonnull(strstr(r[k].body, "server busy"));
            ck_assert_double_lt(r[k].seconds, 0.5); /* at once */
        }
        http_result_free(&r[k]);
    }
    ck_assert_int_ge(busy, 1);
    ck_assert_int_eq(ok + busy, 3);
    ck_assert_int_ge(ok, 1);
    /* The slots come back when the connections end. */
    harness_sleep_ms(200);
    http_parallel("GET", s.port, "/", NULL, 2, r);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(r[k].status, 200);
        http_result_free(&r[k]);
    }
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}

/* ---- 02-fork ---- */

START_TEST(fork_leaves_no_zombies)
{
    if (!selected("02-fork"))
        return;
    struct proc s;
    harness_stage_start(&s, "02-fork", &(struct stage_opts){
        .delay_ms = DELAY_MS});
    ck_assert_int_eq(children_of(s.pid).total, 0);
    enum { N = 30 };
    struct http_result r[N];
    http_parallel("GET", s.port, "/", NULL, N, r);
    for (int k = 0; k < N; k++) {
        ck_assert_int_eq(r[k].status, 200);
        http_result_free(&r[k]);
    }
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, 10, r);
    for (int k = 0; k < 10; k++) {
        ck_assert_int_eq(r[k].status, 200);
        http_result_free(&r[k]);
    }
    /* Every client has closed: every child exits and is reaped. */
    double give_up = harness_now() + 5.0;
    struct children c;
    while ((c = children_of(s.pid)).total > 0 && harness_now() < give_up)
        harness_sleep_ms(50);
    ck_assert_msg(c.total == 0, "%d children left, %d of them zombies",
                  c.total, c.zombies);
    const char *log = harness_read_log(&s);
    ck_assert_int_eq(count_occurrences(log, "forked child"), N + 10);
    ck_assert_int_eq(count_occurrences(log, "exited (status 0)"), N + 10);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(fork_refuses_past_max_children)
{
    if (!selected("02-fork"))
        return;
    third_request_gets_503("02-fork", "--max-children");
}
END_TEST

/* The contrast with 03: a child waits its bills one after another. */
START_TEST(fork_async_bills_wait_in_turn)
{
    if (!selected("02-fork"))
        return;
    struct proc m, s;
    char url[64], body[512];
    start_main_service(&m, url, sizeof url);
    harness_stage_start(&s, "02-fork", &(struct stage_opts){
        .delay_ms = DELAY_MS, .main_url = url});
    snprintf(body, sizeof body, three_bills_body, "in_turn");
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", body, &r);
    ck_assert_int_eq(r.status, 200);
    double answered = r.end;
    http_result_free(&r);
    http_request("GET", m.port, "/api/exchange_result/in_turn?wait_ms=5000",
                 NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_double_ge(r.end - answered, 3 * DELAY_S * 0.9);
    http_result_free(&r);
    double t[3];
    ck_assert_int_eq(log_times(harness_read_log(&s), "(request in_turn)", t,
                               3), 3);
    ck_assert_double_ge(span(t, 3), 2 * DELAY_S * 0.9);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

/* ---- 03-threads ---- */

START_TEST(threads_return_to_idle_count)
{
    if (!selected("03-threads"))
        return;
    struct proc s;
    harness_stage_start(&s, "03-threads", &(struct stage_opts){
        .delay_ms = DELAY_MS});
    /* The idle count, taken after one request: a sanitizer runtime may
     * start a helper thread of its own with the first thread it sees. */
    expect_get_root(s.port);
    int idle = stable_thread_count(s.pid);
    ck_assert_int_ge(idle, 1);
    /* A thread per open connection... */
    enum { OPEN = 10 };
    int fds[OPEN];
    for (int k = 0; k < OPEN; k++) {
        fds[k] = raw_connect(s.port);
        ck_assert_int_ge(fds[k], 0);
    }
    ck_assert_msg(threads_settle_at(s.pid, idle + OPEN, 3000),
                  "expected %d threads, have %d", idle + OPEN,
                  harness_thread_count(s.pid));
    for (int k = 0; k < OPEN; k++)
        close(fds[k]);
    ck_assert_msg(threads_settle_at(s.pid, idle, 3000),
                  "expected %d threads, have %d", idle, harness_thread_count(s.pid));
    /* ...and none left behind by a burst. */
    enum { N = 20 };
    struct http_result r[N];
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, N, r);
    for (int k = 0; k < N; k++) {
        ck_assert_int_eq(r[k].status, 200);
        http_result_free(&r[k]);
    }
    ck_assert_msg(threads_settle_at(s.pid, idle, 3000),
                  "expected %d threads, have %d", idle, harness_thread_count(s.pid));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(threads_refuse_past_max_threads)
{
    if (!selected("03-threads"))
        return;
    third_request_gets_503("03-threads", "--max-threads");
}
END_TEST

/* Three bills, a thread each: the callback arrives one delay after the
 * answer, and the three "bill" lines are logged together. */
START_TEST(threads_async_bills_finish_together)
{
    if (!selected("03-threads"))
        return;
    struct proc m, s;
    char url[64], body[512], want[512];
    start_main_service(&m, url, sizeof url);
    harness_stage_start(&s, "03-threads", &(struct stage_opts){
        .delay_ms = DELAY_MS, .main_url = url});
    snprintf(body, sizeof body, three_bills_body, "together");
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", body, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    double answered = r.end;
    http_result_free(&r);
    http_request("GET", m.port, "/api/exchange_result/together?wait_ms=5000",
                 NULL, &r);
    ck_assert_int_eq(r.status, 200);
    snprintf(want, sizeof want, three_bills_result, "together");
    ck_assert_str_eq(r.body, want);
    ck_assert_msg(r.end - answered < 2 * DELAY_S, "callback came %.3f s "
                  "after the answer", r.end - answered);
    http_result_free(&r);
    double t[3];
    ck_assert_int_eq(log_times(harness_read_log(&s), "(request together)", t,
                               3), 3);
    ck_assert_msg(span(t, 3) < 0.1, "bills logged %.3f s apart", span(t, 3));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

/* ---- 03: bounded threads under an async flood ---- */

/* Samples the thread count of a server every few ms, keeping the highest.
 * stop and max are atomics: the test thread and the sampler share them. */
struct thread_sampler {
    pid_t pid;
    atomic_int stop, max;
    pthread_t thread;
};

static void *sample_threads(void *arg)
{
    struct thread_sampler *ts = arg;
    while (!atomic_load(&ts->stop)) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)ts->pid);
        FILE *f = fopen(path, "r");
        int n = -1;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "Threads: %d", &n) == 1)
                break;
        if (f)
            fclose(f);
        if (n > atomic_load(&ts->max))
            atomic_store(&ts->max, n); /* only this thread writes it */
        harness_sleep_ms(5);
    }
    return NULL;
}

/* A pipelined async request of `bills` bills, id "flood_<conn>_<k>". */
static char *flood_request(int conn, int k, int bills)
{
    char json[8192];
    int n = snprintf(json, sizeof json, "{\"request_id\": \"flood_%d_%d\", "
                     "\"exchange_rate\": 2, \"bills\": [", conn, k);
    for (int b = 0; b < bills; b++)
        n += snprintf(json + n, sizeof json - (size_t)n,
                      "%s{\"denomination_id\": %d, \"denomination\": 1.0, "
                      "\"count\": 1}", b ? "," : "", b + 1);
    n += snprintf(json + n, sizeof json - (size_t)n, "]}");
    char *req = NULL;
    ck_assert_int_gt(asprintf(&req, "POST /api/exchange_async HTTP/1.1\r\n"
                              "Host: x\r\nContent-Length: %d\r\n\r\n%s", n,
                              json), 0);
    return req;
}

/* Reads n pipelined responses from fd within 20 s; status[k] gets each
 * one's status, and *with_retry_after counts the 503s that carry
 * Retry-After. */
static void read_responses(int fd, int n, int *status, int *with_retry_after)
{
    double give_up = harness_now() + 20.0;
    for (int k = 0; k < n; k++) {
        struct harness_response r;
        int left_ms = (int)((give_up - harness_now()) * 1000);
        enum harness_read how = harness_read_response(fd, left_ms, &r);
        ck_assert_msg(how == HARNESS_READ_OK, "answer %d of %d: %s", k + 1,
                      n, harness_read_name(how));
        status[k] = r.status;
        if (r.status == 503 &&
            harness_header(r.text, r.head_len, "Retry-After") != NULL)
            ++*with_retry_after;
        harness_response_free(&r);
    }
}

/* Issue 12's flood, scaled down: pipelined async requests of 100 bills
 * over 4 connections. A thread per bill made this thousands of threads;
 * now the budget refuses what does not fit (503 with Retry-After, before
 * any ok) and each accepted job waits its bills in at most 4 threads. Every
 * accepted job calls back. */
START_TEST(threads_stay_bounded_under_an_async_flood)
{
    if (!selected("03-threads"))
        return;
    enum { CONNS = 4, PER_CONN = 40, BILLS = 100, MAX_JOBS = 6 };
    struct proc m, s;
    char url[64];
    start_main_service(&m, url, sizeof url);
    const char *args[] = {"--max-jobs", "6", "--max-bills", "1000", NULL};
    harness_stage_start(&s, "03-threads", &(struct stage_opts){
        .delay_ms = DELAY_MS, .main_url = url, .args = args});
    expect_get_root(s.port);
    int idle = stable_thread_count(s.pid);
    struct thread_sampler ts = {.pid = s.pid};
    atomic_init(&ts.stop, 0);
    atomic_init(&ts.max, 0);
    ck_assert_int_eq(pthread_create(&ts.thread, NULL, sample_threads, &ts),
                     0);
    int fds[CONNS];
    for (int c = 0; c < CONNS; c++) {
        fds[c] = raw_connect(s.port);
        ck_assert_int_ge(fds[c], 0);
        for (int k = 0; k < PER_CONN; k++) {
            char *req = flood_request(c, k, BILLS);
            size_t len = strlen(req);
            ck_assert_int_eq(send(fds[c], req, len, MSG_NOSIGNAL),
                             (ssize_t)len);
            free(req);
        }
    }
    int status[CONNS][PER_CONN], oks = 0, busy = 0, retry_after = 0;
    for (int c = 0; c < CONNS; c++) {
        read_responses(fds[c], PER_CONN, status[c], &retry_after);
        for (int k = 0; k < PER_CONN; k++) {
            oks += status[c][k] == 200;
            busy += status[c][k] == 503;
        }
    }
    ck_assert_int_eq(oks + busy, CONNS * PER_CONN);
    ck_assert_int_ge(oks, MAX_JOBS);
    ck_assert_int_gt(busy, 0);
    ck_assert_int_eq(retry_after, busy);
    /* Every ok is a promise kept. */
    for (int c = 0; c < CONNS; c++)
        for (int k = 0; k < PER_CONN; k++) {
            if (status[c][k] != 200)
                continue;
            char path[96];
            snprintf(path, sizeof path,
                     "/api/exchange_result/flood_%d_%d?wait_ms=10000", c, k);
            struct http_result r;
            http_request("GET", m.port, path, NULL, &r);
            ck_assert_msg(r.status == 200, "flood_%d_%d accepted, never "
                          "called back", c, k);
            http_result_free(&r);
        }
    atomic_store(&ts.stop, 1);
    pthread_join(ts.thread, NULL);
    /* idle + a thread per connection + per job its own and 4 bill threads */
    int bound = idle + CONNS + MAX_JOBS * (1 + 4);
    int peak = atomic_load(&ts.max);
    fprintf(stderr, "03 under the flood: %d threads idle, %d at the peak "
            "(bound %d), %d ok, %d refused\n", idle, peak, bound, oks, busy);
    ck_assert_msg(peak <= bound, "%d threads at the peak; bound %d", peak,
                  bound);
    for (int c = 0; c < CONNS; c++)
        close(fds[c]);
    ck_assert_msg(threads_settle_at(s.pid, idle, 5000), "expected %d "
                  "threads, have %d", idle, harness_thread_count(s.pid));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("fork and threads");
    TCase *both = tcase_create("02 and 03");
    tcase_set_timeout(both, 120);
    tcase_add_loop_test(both, twenty_sync_requests_take_about_one_delay, 0,
                        NUM_ROWS);
    tcase_add_loop_test(both, fifty_stalled_clients_do_not_delay_another, 0,
                        NUM_ROWS);
    tcase_add_loop_test(both, stop_does_not_wait_for_idle_keep_alive, 0,
                        NUM_ROWS);
    tcase_add_loop_test(both, stop_answers_the_request_in_flight_and_closes,
                        0, NUM_ROWS);
    tcase_add_loop_test(both, stop_finishes_pending_callbacks, 0, NUM_ROWS);
    tcase_add_loop_test(both, trickled_head_gets_408_and_frees_its_worker, 0,
                        NUM_ROWS);
    tcase_add_loop_test(both, trickled_body_gets_408_at_its_deadline, 0,
                        NUM_ROWS);
    suite_add_tcase(suite, both);
    TCase *fork_tc = tcase_create("02-fork");
    tcase_set_timeout(fork_tc, 120);
    tcase_add_test(fork_tc, fork_leaves_no_zombies);
    tcase_add_test(fork_tc, fork_refuses_past_max_children);
    tcase_add_test(fork_tc, fork_async_bills_wait_in_turn);
    suite_add_tcase(suite, fork_tc);
    TCase *threads_tc = tcase_create("03-threads");
    tcase_set_timeout(threads_tc, 120);
    tcase_add_test(threads_tc, threads_return_to_idle_count);
    tcase_add_test(threads_tc, threads_refuse_past_max_threads);
    tcase_add_test(threads_tc, threads_async_bills_finish_together);
    tcase_add_test(threads_tc, threads_stay_bounded_under_an_async_flood);
    suite_add_tcase(suite, threads_tc);
    return harness_run(suite);
}
