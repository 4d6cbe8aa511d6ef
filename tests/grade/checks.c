/* The graded checks of `make grade` (grade.h): what each asks of the
 * server, and the wrong answer it must reject, in its comment.
 *
 * The concurrency checks are built so that a server serving one request
 * at a time cannot pass any of them, whatever it prints: timings are taken
 * by the client, every slow request must have really waited its bill, and
 * the model and CPU checks look only while requests overlap (and fail when
 * they did not). They are proven against the wrong implementations kept
 * as patches in tests/grade/wrong/ (tests/grade/check.sh). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grade.h"
#include "../harness.h"

struct grade_target grade_target;

#define FAST_MS 300   /* a bill, where only the answer matters */
#define SLOW_MS 500   /* a bill, where overlap is measured */
#define PARALLEL 8    /* requests at once: in turn they take 8 bills */

static const char *const lecture_body =
    "{\"request_id\": \"sync_test\", \"exchange_rate\": 75.5, \"bills\": ["
    "{\"denomination_id\": 1, \"denomination\": 10.0, \"count\": 5},"
    "{\"denomination_id\": 2, \"denomination\": 20.0, \"count\": 3}]}";
static const char *const lecture_answer =
    "{\"status\":\"completed\",\"request_id\":\"sync_test\",\"breakdown\":["
    "{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
    "{\"denomination_id\":2,\"subtotal_rub\":4530.0}],\"total_rub\":8305.0}";

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";

/* ---- starting and talking ---- */

/* The server under grade, on a free port, with a bill of delay_ms and the
 * options in extra (NULL-terminated, may be NULL). */
static void start_server(struct proc *p, int delay_ms, const char *const *extra)
{
    char delay[16];
    snprintf(delay, sizeof delay, "%d", delay_ms);
    const char *args[24] = {"--delay-ms", delay, "--quiet"};
    int n = 3;
    for (int k = 0; extra && extra[k] && n < 23; k++)
        args[n++] = extra[k];
    args[n] = NULL;
    static const char *const env[] = {"SECRET_TOKEN=grade-token", NULL};
    setenv("STAGE_BIN_DIR", grade_target.bin_dir, 1);
    proc_start(p, grade_target.stage->name, args, env);
}

static void start_main_service(struct proc *p, char *url, size_t cap)
{
    static const char *const args[] = {"--quiet", NULL};
    static const char *const env[] = {"SECRET_TOKEN=grade-token", NULL};
    setenv("STAGE_BIN_DIR", grade_target.tools_dir, 1);
    proc_start(p, "main-service", args, env);
    snprintf(url, cap, "http://127.0.0.1:%d", p->port);
}

/* A port nobody listens on: a main service that is down. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A JSON POST as raw text, closing after its answer; malloc'd. */
static char *post_text(const char *path, const char *body)
{
    char *text;
    ck_assert(asprintf(&text, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       "application/json\r\nConnection: close\r\n"
                       "Content-Length: %zu\r\n\r\n%s", path, strlen(body),
                       body) >= 0);
    return text;
}

/* What follows the head of a raw answer ("" if none). */
static const char *body_of(const char *response)
{
    const char *end = strstr(response, "\r\n\r\n");
    return end ? end + 4 : "";
}

/* GET / on a new connection: the status of the answer's first bytes (0 if
 * none came within limit_s), and how long they took. Bounded, so a server
 * that is stuck costs seconds, not the check's whole time limit. */
static int get_root_within(int port, double limit_s, double *took)
{
    double t0 = harness_now();
    int fd = raw_connect(port), status = 0;
    if (fd >= 0) {
        harness_send_text(fd, "GET / HTTP/1.1\r\nHost: x\r\nConnection: "
                              "close\r\n\r\n");
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char buf[256];
        ssize_t n = poll(&pfd, 1, (int)(limit_s * 1000)) > 0
                        ? recv(fd, buf, sizeof buf - 1, 0) : -1;
        buf[n > 0 ? n : 0] = '\0';
        status = raw_status(buf);
        close(fd);
    }
    *took = harness_now() - t0;
    return status;
}

/* user + system CPU seconds of pid and of its children alive now. */
static double cpu_seconds(pid_t pid)
{
    pid_t kids[256];
    int zombies, n = harness_children_of(pid, kids, 256, &zombies);
    double total = 0;
    for (int k = -1; k < n && k < 256; k++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)(k < 0 ? pid : kids[k]));
        FILE *f = fopen(path, "r");
        size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[got] = '\0';
        char *p = strrchr(buf, ')'); /* fields after "(comm)" */
        unsigned long long utime = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                        "%llu %llu", &utime, &stime) == 2)
            total += (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    }
    return total;
}

/* A sync request's answer, for the checks that are not about its JSON
 * (the correctness checks hold every byte of it): 200, a breakdown. */
static bool completed(long status, const char *body)
{
    return status == 200 && strstr(body, "\"status\":\"completed\"");
}

/* ---- slow requests in the background, to look at the server meanwhile ---- */

struct burst {
    int port;
    int delay_ms;
    double wall;                 /* first start to last end */
    char failure[512];           /* "" if every answer was right and waited */
    pthread_t thread;
};

static void *burst_main(void *arg)
{
    struct burst *b = arg;
    struct http_result r[PARALLEL];
    http_parallel("POST", b->port, "/api/exchange_sync", one_bill_body,
                  PARALLEL, r);
    double first = r[0].start, last = r[0].end;
    b->failure[0] = '\0';
    for (int k = 0; k < PARALLEL; k++) {
        if (!b->failure[0] && !completed(r[k].status, r[k].body))
            snprintf(b->failure, sizeof b->failure, "a one-bill request got "
                     "%ld %.200s; expected 200 and its breakdown",
                     r[k].status, r[k].body);
        else if (!b->failure[0] && r[k].seconds < b->delay_ms / 1000.0 * 0.95)
            snprintf(b->failure, sizeof b->failure, "a one-bill request was "
                     "answered in %.3f s: its bill (--delay-ms %d) was not "
                     "waited", r[k].seconds, b->delay_ms);
        first = r[k].start < first ? r[k].start : first;
        last = r[k].end > last ? r[k].end : last;
        http_result_free(&r[k]);
    }
    b->wall = last - first;
    return NULL;
}

static void burst_start(struct burst *b, int port, int delay_ms)
{
    b->port = port;
    b->delay_ms = delay_ms;
    ck_assert_int_eq(pthread_create(&b->thread, NULL, burst_main, b), 0);
}

/* Waits for the burst and fails the check unless its requests were right,
 * each waited its bill, and all of them overlapped: under two bills from
 * the first start to the last answer, where one at a time takes PARALLEL. */
static void burst_expect_overlap(struct burst *b)
{
    pthread_join(b->thread, NULL);
    ck_assert_msg(!b->failure[0], "%s", b->failure);
    ck_assert_msg(b->wall < 2 * b->delay_ms / 1000.0,
                  "%d requests of one %d ms bill, sent at once, took %.2f s "
                  "from the first start to the last answer: they did not "
                  "overlap (overlapping: about %.1f s; one at a time: %.1f s)",
                  PARALLEL, b->delay_ms, b->wall, b->delay_ms / 1000.0,
                  PARALLEL * b->delay_ms / 1000.0);
}

/* ================= correctness (40) ================= */

/* Wrong: another stage's name, a 404, extra spaces in the JSON. */
START_TEST(root)
{
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    char want[160];
    snprintf(want, sizeof want, "{\"message\":\"Exchange service is "
             "running\",\"stage\":\"%s\"}", grade_target.stage->name);
    struct http_result r;
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_msg(r.status == 200 && strcmp(r.body, want) == 0,
                  "GET / answered %ld %.200s; expected 200 %s", r.status,
                  r.body, want);
    http_result_free(&r);
    proc_stop(&s, 10000);
}
END_TEST

/* Wrong: a subtotal off by the lecture notes' factor of ten, bills waited
 * side by side inside one request (the sync route waits them in turn). */
START_TEST(lecture)
{
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", lecture_body, &r);
    ck_assert_msg(r.status == 200 && strcmp(r.body, lecture_answer) == 0,
                  "the lecture's request got %ld %.300s; expected 200 %s",
                  r.status, r.body, lecture_answer);
    ck_assert_msg(r.seconds >= 2 * FAST_MS / 1000.0 * 0.95,
                  "answered in %.3f s: its two bills of %d ms are waited one "
                  "after the other", r.seconds, FAST_MS);
    http_result_free(&r);
    proc_stop(&s, 10000);
}
END_TEST

/* Wrong: the ok sent after the bills; no callback, or a wrong one. */
START_TEST(async)
{
    struct proc m, s;
    char url[64];
    start_main_service(&m, url, sizeof url);
    const char *const extra[] = {"--main-service", url, NULL};
    start_server(&s, FAST_MS, extra);
    const char *body =
        "{\"request_id\": \"grade_async\", \"exchange_rate\": 75.5, \"bills\": ["
        "{\"denomination_id\": 1, \"denomination\": 1.0, \"count\": 5},"
        "{\"denomination_id\": 2, \"denomination\": 2.0, \"count\": 3}]}";
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", body, &r);
    ck_assert_msg(r.status == 200 && strcmp(r.body, "{\"status\":\"ok\"}") == 0,
                  "the async route answered %ld %.200s; expected 200 "
                  "{\"status\":\"ok\"}", r.status, r.body);
    ck_assert_msg(r.seconds < FAST_MS / 1000.0, "the ok took %.3f s: it "
                  "comes at once, before the bills (%d ms each)", r.seconds,
                  FAST_MS);
    http_result_free(&r);
    const char *want = "{\"request_id\":\"grade_async\",\"breakdown\":["
                       "{\"denomination_id\":1,\"subtotal_rub\":377.5},"
                       "{\"denomination_id\":2,\"subtotal_rub\":453.0}]}";
    http_request("GET", m.port, "/api/exchange_result/grade_async?wait_ms=10000",
                 NULL, &r);
    ck_assert_msg(r.status == 200 && strcmp(r.body, want) == 0,
                  "the main service holds %ld %.300s for the job; expected "
                  "the callback's %s", r.status, r.body, want);
    http_result_free(&r);
    proc_stop(&s, 10000);
    proc_stop(&m, 5000);
}
END_TEST

struct status_case {
    const char *what;
    const char *request;
    int status;
};

/* Wrong: 200 or 400 for everything, a hang on what cannot be parsed. */
START_TEST(statuses)
{
    static const struct status_case cases[] = {
        {"an unknown path",
         "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        {"GET on the sync route", "GET /api/exchange_sync HTTP/1.1\r\n"
         "Host: x\r\nConnection: close\r\n\r\n", 405},
        {"DELETE /", "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
         "\r\n", 405},
        {"a malformed request line", "GARBAGE\r\n\r\n", 400},
        {"a POST without Content-Length", "POST /api/exchange_sync HTTP/1.1"
         "\r\nHost: x\r\n\r\n", 411},
        {"a body over 64 KiB", "POST /api/exchange_sync HTTP/1.1\r\nHost: x"
         "\r\nContent-Length: 70000\r\n\r\n", 413},
        {"Transfer-Encoding", "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"headers over 8 KiB", NULL, 431},
    };
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *req = NULL;
        if (cases[k].request)
            req = strdup(cases[k].request);
        else
            ck_assert(asprintf(&req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
                               "%09000d\r\n\r\n", 0) >= 0);
        char *resp = raw_exchange(s.port, req, strlen(req), 3000);
        ck_assert_msg(raw_status(resp) == cases[k].status &&
                      strncmp(body_of(resp), "{\"detail\":\"", 11) == 0,
                      "%s: expected %d with a {\"detail\": ...} body, got "
                      "%.200s", cases[k].what, cases[k].status,
                      *resp ? resp : "(nothing within 3 s)");
        free(resp);
        free(req);
    }
    double took;
    ck_assert_msg(get_root_within(s.port, 3.0, &took) == 200,
                  "after the bad requests GET / got no 200");
    proc_stop(&s, 10000);
}
END_TEST

struct bad_body {
    const char *route;
    const char *body;
    const char *detail;
};

/* Wrong: 500, a crash, an ok for a bad async body, a detail that does not
 * name the field. */
START_TEST(bad_input)
{
    static char many[8192];
    int n = snprintf(many, sizeof many, "{\"request_id\":\"x\",\"exchange_rate"
                     "\":1,\"bills\":[");
    for (int b = 0; b < 101; b++)
        n += snprintf(many + n, sizeof many - (size_t)n, "%s{\"denomination_id"
                      "\":%d,\"denomination\":1,\"count\":1}", b ? "," : "", b);
    snprintf(many + n, sizeof many - (size_t)n, "]}");
    const struct bad_body cases[] = {
        {"/api/exchange_sync", "{not json", "body is not valid JSON"},
        {"/api/exchange_sync", "[1,2]", "body must be a JSON object"},
        {"/api/exchange_sync", "{\"request_id\":\"x\",\"exchange_rate\":1,"
         "\"bills\":[{\"denomination_id\":1,\"denomination\":1,\"count\":1},"
         "{\"denomination_id\":2,\"denomination\":1,\"count\":1.5}]}",
         "bills[1].count must be a non-negative integer"},
        {"/api/exchange_sync", "{\"request_id\":\"x\",\"exchange_rate\":0,"
         "\"bills\":[{\"denomination_id\":1,\"denomination\":1,\"count\":1}]}",
         "exchange_rate must be a positive number"},
        {"/api/exchange_sync", many, "bills must have at most 100 items"},
        {"/api/exchange_async", "{\"request_id\":\"x\",\"exchange_rate\":1,"
         "\"bills\":[{\"denomination_id\":1,\"denomination\":-1,\"count\":1}]}",
         "bills[0].denomination must be a positive number"},
    };
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char want[160];
        snprintf(want, sizeof want, "{\"detail\":\"%s\"}", cases[k].detail);
        struct http_result r;
        http_request("POST", s.port, cases[k].route, cases[k].body, &r);
        ck_assert_msg(r.status == 400 && strcmp(r.body, want) == 0,
                      "POST %s %.60s... got %ld %.200s; expected 400 %s",
                      cases[k].route, cases[k].body, r.status, r.body, want);
        http_result_free(&r);
    }
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", one_bill_body, &r);
    ck_assert_msg(completed(r.status, r.body), "after the bad bodies a good "
                  "one got %ld %.200s", r.status, r.body);
    http_result_free(&r);
    proc_stop(&s, 10000);
}
END_TEST

/* ================= concurrency (40) ================= */

/* Wrong: one request at a time (01), a blocking sleep for the bill inside
 * a loop or a scheduler, answers that skip the wait. */
START_TEST(overlap)
{
    struct proc s;
    start_server(&s, SLOW_MS, NULL);
    struct burst b;
    burst_start(&b, s.port, SLOW_MS);
    burst_expect_overlap(&b);
    proc_stop(&s, 10000);
}
END_TEST

/* Two clients stop halfway, one in its head and one in its body, and stay
 * connected. Wrong: a server that waits in read() for one of them (every
 * other client waits too), or that drops them instead of finishing their
 * requests once they go on. */
START_TEST(stalled)
{
    struct proc s;
    const char *const extra[] = {"--header-timeout-ms", "10000",
                                 "--body-timeout-ms", "10000",
                                 "--idle-timeout-ms", "10000", NULL};
    start_server(&s, FAST_MS, extra);
    char *whole = post_text("/api/exchange_sync", one_bill_body);
    size_t len = strlen(whole), cut_head = 40;
    size_t cut_body = (size_t)(strstr(whole, "\r\n\r\n") + 4 - whole) + 20;
    int in_head = raw_connect(s.port), in_body = raw_connect(s.port);
    ck_assert(in_head >= 0 && in_body >= 0);
    harness_send_all(in_head, whole, cut_head);
    harness_send_all(in_body, whole, cut_body);
    harness_sleep_ms(200);

    double took;
    int status = get_root_within(s.port, 2.0, &took);
    ck_assert_msg(status == 200 && took < 1.0, "with two clients stalled "
                  "mid-request, GET / got %d after %.2f s: one stalled client "
                  "holds up everyone", status, took);
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", one_bill_body, &r);
    ck_assert_msg(r.status == 200 && r.seconds < FAST_MS / 1000.0 + 1.0,
                  "with two clients stalled, a one-bill request got %ld "
                  "after %.2f s", r.status, r.seconds);
    http_result_free(&r);

    /* The stalled ones go on: each must get its answer. */
    harness_send_all(in_head, whole + cut_head, len - cut_head);
    harness_send_all(in_body, whole + cut_body, len - cut_body);
    int fds[2] = {in_head, in_body};
    for (int k = 0; k < 2; k++) {
        char *resp = harness_read_to_end(fds[k], 5000, NULL, NULL);
        ck_assert_msg(completed(raw_status(resp), body_of(resp)),
                      "the client stalled in its %s, once it went on, got "
                      "%.200s", k ? "body" : "head",
                      *resp ? resp : "(nothing, or a reset)");
        free(resp);
        close(fds[k]);
    }
    free(whole);
    proc_stop(&s, 10000);
}
END_TEST

/* While PARALLEL requests wait their bills together, the processes and
 * threads are the model's: one thread and no child for 04-06, a child
 * per connection for 02, a thread per connection for 03. Wrong: a
 * thread or a process per connection handed in for 04-06; and any server
 * whose requests did not overlap (nothing to judge, no points). */
START_TEST(model)
{
    struct proc s;
    start_server(&s, 2 * SLOW_MS, NULL);
    struct burst b;
    burst_start(&b, s.port, 2 * SLOW_MS);
    int max_threads = 0, max_kids = 0;
    for (int t = 0; t < 8; t++) { /* from 0.3 to 0.65 of the bill */
        harness_sleep_ms(t == 0 ? 3 * SLOW_MS / 5 : SLOW_MS / 10);
        int zombies, threads = harness_thread_count(s.pid);
        int kids = harness_children_of(s.pid, NULL, 0, &zombies);
        max_threads = threads > max_threads ? threads : max_threads;
        max_kids = kids > max_kids ? kids : max_kids;
    }
    burst_expect_overlap(&b);
    switch (grade_target.stage->model) {
    case GRADE_ONE_THREAD:
        ck_assert_msg(max_threads == 1 && max_kids == 0, "%d requests "
                      "overlapped with up to %d threads and %d child "
                      "processes: this model serves everyone from one "
                      "thread", PARALLEL, max_threads, max_kids);
        break;
    case GRADE_THREAD_PER_CONN:
        ck_assert_msg(max_threads > PARALLEL, "%d requests overlapped with "
                      "at most %d threads: expected a thread per connection "
                      "besides the main one", PARALLEL, max_threads);
        break;
    case GRADE_PROCESS_PER_CONN:
        ck_assert_msg(max_kids >= PARALLEL, "%d requests overlapped with at "
                      "most %d child processes: expected one per connection",
                      PARALLEL, max_kids);
        break;
    }
    proc_stop(&s, 10000);
}
END_TEST

/* Waiting costs no CPU: neither while PARALLEL requests wait their bills
 * together nor while idle clients stay connected. Wrong: a loop that polls
 * (select or epoll_wait with a zero timeout, a read retried on EAGAIN),
 * and any server whose requests did not overlap. */
START_TEST(idle_cpu)
{
    struct proc s;
    start_server(&s, 2 * SLOW_MS, NULL);
    struct burst b;
    burst_start(&b, s.port, 2 * SLOW_MS);
    harness_sleep_ms(3 * SLOW_MS / 5);
    double t0 = harness_now(), c0 = cpu_seconds(s.pid);
    harness_sleep_ms(SLOW_MS);
    double waiting = cpu_seconds(s.pid) - c0, window = harness_now() - t0;
    burst_expect_overlap(&b);
    ck_assert_msg(waiting < 0.1 * window, "while %d requests waited their "
                  "bills the server used %.0f ms of CPU in %.0f ms: waiting "
                  "should cost nothing (a loop that polls?)", PARALLEL,
                  waiting * 1000, window * 1000);

    int idle[4];
    for (int k = 0; k < 4; k++)
        ck_assert_int_ge(idle[k] = raw_connect(s.port), 0);
    harness_sleep_ms(200);
    t0 = harness_now();
    c0 = cpu_seconds(s.pid);
    harness_sleep_ms(1000);
    double idling = cpu_seconds(s.pid) - c0;
    window = harness_now() - t0;
    ck_assert_msg(idling < 0.05 * window, "with 4 idle clients connected "
                  "the server used %.0f ms of CPU in %.0f ms: an idle server "
                  "should sleep", idling * 1000, window * 1000);
    for (int k = 0; k < 4; k++)
        close(idle[k]);
    proc_stop(&s, 10000);
}
END_TEST

/* ================= robustness (20) ================= */

/* Reads fd until the peer closes or limit_s pass: its answer's status (0:
 * none), and when the end came. */
static int status_at_close(int fd, double limit_s, double *at)
{
    bool timed_out = false;
    char *resp = harness_read_to_end(fd, (int)(limit_s * 1000), NULL,
                                     &timed_out);
    *at = timed_out ? -1 : harness_now();
    int status = raw_status(resp);
    free(resp);
    return status;
}

/* Every wait on a client ends at its deadline, which its bytes never move:
 * a head trickled a byte every 100 ms, and a body that stops, get 408 at
 * 500 ms; an idle connection is closed at 800 ms, and so is one idle after
 * its answer (keep-alive), counted from the answer. Wrong: no deadline, a
 * deadline that each byte restarts (slowloris), a silent close, a
 * keep-alive wait left on the answered request's deadline (a close at
 * 500 ms). */
START_TEST(deadlines)
{
    struct proc s;
    const char *const extra[] = {"--header-timeout-ms", "500",
                                 "--body-timeout-ms", "500",
                                 "--idle-timeout-ms", "800", NULL};
    start_server(&s, FAST_MS, extra);

    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaa";
    double first = harness_now(), answered = -1, at;
    for (size_t k = 0; head[k] && answered < 0; k++) {
        if (send(fd, head + k, 1, MSG_NOSIGNAL) != 1)
            break; /* closed on us: what it said comes below */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) /* an answer, or the end */
            answered = harness_now();
    }
    int status = status_at_close(fd, 3.0, &at);
    close(fd);
    answered = answered < 0 ? at : answered;
    ck_assert_msg(status == 408 && answered > 0 && answered - first < 1.2,
                  "a head trickled a byte every 100 ms (--header-timeout-ms "
                  "500) got %d %.2f s after its first byte; expected 408 at "
                  "about 0.5 s", status, answered < 0 ? -1 : answered - first);

    fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    harness_send_text(fd, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 50\r\n\r\n{\"request_id\"");
    first = harness_now();
    status = status_at_close(fd, 3.0, &at);
    close(fd);
    ck_assert_msg(status == 408 && at - first > 0.4 && at - first < 1.5,
                  "a body that stopped halfway (--body-timeout-ms 500) got "
                  "%d, closed after %.2f s; expected 408 at about 0.5 s",
                  status, at < 0 ? -1 : at - first);

    fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    first = harness_now();
    status = status_at_close(fd, 3.0, &at);
    close(fd);
    ck_assert_msg(status == 0 && at > 0 && at - first > 0.7 && at - first < 2.0,
                  "a client that sent nothing (--idle-timeout-ms 800) was "
                  "%s after %.2f s%s; expected a close at about 0.8 s",
                  at < 0 ? "still connected" : "closed", harness_now() - first,
                  status ? " with an answer" : "");

    /* A server may close after any answer that says so (01 closes after
     * every one); one that keeps the connection open owes it a new wait. */
    fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    harness_send_text(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    char *answer = harness_read_response_text(fd, 2000);
    first = harness_now();
    ck_assert_msg(answer && raw_status(answer) == 200, "a keep-alive GET / "
                  "got %.200s; expected 200", answer ? answer : "nothing");
    bool kept = !strcasestr(answer, "\r\nConnection: close\r\n");
    free(answer);
    status = status_at_close(fd, 3.0, &at);
    close(fd);
    ck_assert_msg(!kept || (status == 0 && at > 0 && at - first > 0.7 &&
                            at - first < 2.0),
                  "a keep-alive client silent after its answer "
                  "(--idle-timeout-ms 800) was %s %.2f s after the answer%s; "
                  "expected a close at about 0.8 s",
                  at < 0 ? "still connected" : "closed",
                  (at < 0 ? harness_now() : at) - first,
                  status ? " with another answer" : "");
    proc_stop(&s, 10000);
}
END_TEST

/* An async job's ok is a promise, made only within the budget: past
 * --max-bills the answer is 503 with Retry-After, before any ok. Wrong:
 * an ok for work the server has no room for. */
START_TEST(async_budget)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    const char *const extra[] = {"--max-bills", "3", "--main-service", url,
                                 "--callback-deadline-ms", "300", NULL};
    struct proc s;
    start_server(&s, 100, extra);
    const char *bill = "{\"denomination_id\":1,\"denomination\":1,\"count\":1}";
    char four[512], three[512];
    snprintf(four, sizeof four, "{\"request_id\":\"four\",\"exchange_rate\":1,"
             "\"bills\":[%s,%s,%s,%s]}", bill, bill, bill, bill);
    snprintf(three, sizeof three, "{\"request_id\":\"three\",\"exchange_rate\""
             ":1,\"bills\":[%s,%s,%s]}", bill, bill, bill);
    char *req = post_text("/api/exchange_async", four);
    char *resp = raw_exchange(s.port, req, strlen(req), 3000);
    ck_assert_msg(raw_status(resp) == 503 && strstr(resp, "\r\nRetry-After: "),
                  "an async job of 4 bills with --max-bills 3 got %.200s; "
                  "expected 503 with Retry-After", *resp ? resp : "nothing");
    free(resp);
    free(req);
    req = post_text("/api/exchange_async", three);
    resp = raw_exchange(s.port, req, strlen(req), 3000);
    ck_assert_msg(raw_status(resp) == 200 &&
                  strcmp(body_of(resp), "{\"status\":\"ok\"}") == 0,
                  "an async job of 3 bills with --max-bills 3 got %.200s; "
                  "expected its ok", *resp ? resp : "nothing");
    free(resp);
    free(req);
    proc_stop(&s, 10000);
}
END_TEST

/* Out of descriptors (64, held by 100 clients), the server sleeps instead
 * of retrying accept() in a loop, and serves again once they are free.
 * Wrong: a spin on EMFILE, a crash, a listener that never comes back. */
START_TEST(out_of_fds)
{
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    struct rlimit low = {64, 64}; /* soft and hard: servers raise the soft */
    ck_assert_int_eq(prlimit(s.pid, RLIMIT_NOFILE, &low, NULL), 0);
    int holders[100];
    for (int k = 0; k < 100; k++)
        ck_assert_int_ge(holders[k] = raw_connect(s.port), 0);
    harness_sleep_ms(700);
    double c0 = cpu_seconds(s.pid);
    harness_sleep_ms(1000);
    double used = cpu_seconds(s.pid) - c0;
    for (int k = 0; k < 100; k++)
        close(holders[k]);
    ck_assert_msg(used < 0.25, "while 100 clients held every descriptor the "
                  "server used %.2f s of CPU in 1 s: accept() failing with "
                  "EMFILE must pause, not spin", used);
    double took, start = harness_now();
    int status = 0;
    while (status != 200 && harness_now() - start < 10)
        status = get_root_within(s.port, 2.0, &took);
    ck_assert_msg(status == 200, "once the descriptors were free again, "
                  "GET / got no 200 within 10 s");
    proc_stop(&s, 10000);
}
END_TEST

/* SIGTERM: the request in flight is finished (and says Connection:
 * close), an idle connection is closed, the process exits 0 in time and
 * listens no more. Wrong: dying mid-request, exiting non-zero, waiting
 * for the idle client's timeout. */
START_TEST(clean_stop)
{
    struct proc s;
    start_server(&s, 2 * FAST_MS, NULL);
    int busy = raw_connect(s.port);
    ck_assert_int_ge(busy, 0);
    const char *req = "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\nContent-Length: ";
    char text[512];
    snprintf(text, sizeof text, "%s%zu\r\n\r\n%s", req, strlen(one_bill_body),
             one_bill_body);
    harness_send_text(busy, text);
    int idle = raw_connect(s.port);
    ck_assert_int_ge(idle, 0);
    harness_sleep_ms(FAST_MS / 2);
    pid_t pid = s.pid;
    double t0 = harness_now();
    kill(pid, SIGTERM);
    char *resp = harness_read_to_end(busy, 5000, NULL, NULL);
    ck_assert_msg(completed(raw_status(resp), body_of(resp)) &&
                  strstr(resp, "\r\nConnection: close\r\n"),
                  "the request in flight at SIGTERM got %.300s; expected "
                  "its 200 answer with Connection: close",
                  *resp ? resp : "(nothing)");
    free(resp);
    double at;
    (void)status_at_close(idle, 3.0, &at);
    ck_assert_msg(at > 0, "an idle connection was not closed within 3 s "
                  "of SIGTERM");
    int rc = proc_stop(&s, 5000); /* signalled again: it is stopping */
    ck_assert_msg(rc == 0, "after SIGTERM the server exited with %d (-1: "
                  "still running after 5 s); expected 0", rc);
    ck_assert_msg(harness_now() - t0 < 5, "the stop took %.1f s",
                  harness_now() - t0);
    close(busy);
    close(idle);
}
END_TEST

/* Not graded: the server started alone and asked GET / once. When that
 * fails, the message says how the server ended and how its log ends (a
 * lab's "TODO: write serve_one_turn (...)", a crash's last words), which
 * explains every failure below it: grade.c prints it above the table.
 * Wrong: a server that dies at its first turn, or never answers. */
START_TEST(starts)
{
    struct proc s;
    start_server(&s, FAST_MS, NULL);
    double took;
    int status = get_root_within(s.port, 2.0, &took);
    if (status == 200) { /* how it stops is the shutdown check's */
        kill(s.pid, SIGKILL);
        waitpid(s.pid, NULL, 0);
        return;
    }
    char how[128] = "still running, silent";
    int ws = 0;
    pid_t r = 0;
    for (int k = 0; k < 20 && (r = waitpid(s.pid, &ws, WNOHANG)) == 0; k++)
        harness_sleep_ms(10);
    if (r == s.pid) {
        if (WIFSIGNALED(ws))
            snprintf(how, sizeof how, "gone, killed by signal %d (%s)",
                     WTERMSIG(ws), strsignal(WTERMSIG(ws)));
        else
            snprintf(how, sizeof how, "gone, exit status %d",
                     WEXITSTATUS(ws));
        s.pid = 0; /* reaped: proc_stop has nothing left to stop */
    }
    /* Its log's last lines: what it said before it stopped. */
    const char *log = harness_read_log(&s);
    size_t len = strlen(log);
    const char *tail = log + len;
    for (int lines = 0; tail > log; tail--)
        if (tail[-1] == '\n' && tail < log + len && ++lines == 4)
            break;
    char got[32] = "no answer within 2 s";
    if (status)
        snprintf(got, sizeof got, "status %d", status);
    ck_abort_msg("GET / got %s; the server is %s. Its log ends:\n%s", got,
                 how, *tail ? tail : "(nothing)\n");
}
END_TEST

const struct grade_check grade_starts = {
    "starts", "none", 0, "the server starts and answers GET /", &starts, 10};

const struct grade_check grade_checks[] = {
    {"root", "correctness", 4,
     "GET / answers the exact JSON naming the stage", &root, 20},
    {"lecture", "correctness", 10,
     "the lecture's request: the exact breakdown, its bills one after the "
     "other", &lecture, 20},
    {"async", "correctness", 8,
     "the async route: ok at once, then the breakdown PUT to the main "
     "service", &async, 30},
    {"statuses", "correctness", 8,
     "404, 405, 400, 411, 413, 501, 505 and 431, each with a detail",
     &statuses, 40},
    {"bad-input", "correctness", 10,
     "bad JSON and bad fields get 400 with the detail naming them",
     &bad_input, 20},
    {"overlap", "concurrency", 12,
     "8 slow requests at once overlap (each waits its bill)", &overlap,
     30},
    {"stalled", "concurrency", 10,
     "clients stalled mid-request hold up nobody, and are served when they "
     "go on", &stalled, 30},
    {"model", "concurrency", 10,
     "while requests overlap: the model's threads and processes",
     &model, 30},
    {"idle-cpu", "concurrency", 8,
     "while requests overlap, and idle: the server uses no CPU",
     &idle_cpu, 30},
    {"deadlines", "robustness", 8,
     "a trickled head and a stalled body get 408, an idle client is closed "
     "(new, or after its answer), each on time", &deadlines, 30},
    {"async-budget", "robustness", 3,
     "past --max-bills an async job gets 503 with Retry-After, not an ok",
     &async_budget, 30},
    {"out-of-fds", "robustness", 3,
     "out of descriptors: no spinning, and serving again afterwards",
     &out_of_fds, 40},
    {"shutdown", "robustness", 6,
     "SIGTERM: the request in flight finishes, then a clean exit 0",
     &clean_stop, 30},
};
const int grade_num_checks = (int)(sizeof grade_checks / sizeof grade_checks[0]);
