/* Fault tests: every stage, started for real, while the world misbehaves.
 *
 * The main service is down, slow, or answering 500 while async jobs want to
 * deliver their results; it comes back inside the retry window; the server
 * runs out of descriptors; SIGTERM arrives while requests and callbacks are
 * in flight. The retry policy is common/callback.c's (backoff from 500 ms
 * doubling to 8 s, each wait drawn from [half, whole], until
 * --callback-deadline-ms; 5 s per try), so every stage must show the same
 * log lines; what differs per model is whether others are served meanwhile
 * (01 stalls by design) and whether a low descriptor limit is reached at
 * all (01 holds one connection, 02's parent closes each socket after fork).
 *
 * The harness's one stage table, as in test_stages.c: same STAGES filter,
 * same rule that a row runs when its folder exists.
 *
 * The fake main service is the harness's (a thread of the test, scripted
 * statuses). Its thread is started only after every proc_start of its
 * test, so no fork ever copies a process with a second thread running. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

/* The harness's one stage table (tests/harness.c), under the short names
 * the cases use; _i is its row. */
#define stages harness_stages
#define NUM_STAGES HARNESS_NUM_STAGES
#define row_selected harness_row_selected

#define TOKEN "test-token"
static const char *const token_env[] = {"SECRET_TOKEN=" TOKEN, NULL};

/* "At once" for GET / while a job waits elsewhere. Sanitizer builds and a
 * shared 2-core machine need the margin; a stalled server needs seconds. */
#define FAST_S 0.3
/* The retry policy of common/callback.h, in seconds: the nominal first two
 * backoffs; with jitter each wait is between half of it and all of it. */
#define BACKOFF_1_S 0.5
#define BACKOFF_2_S 1.0

/* ---- small helpers ---- */

/* Every case's stage keeps an idle keep-alive connection up to 5 s; its
 * callback deadline is the default (120 s) unless the case sets one. */
static const char *const idle_5s[] = {"--idle-timeout-ms", "5000", NULL};

static void stop_stage(struct proc *p)
{
    ck_assert_int_eq(proc_stop(p, 20000), 0);
}

/* A port on which nothing listens (it was free a moment ago). */
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

static void url_of(char *out, size_t cap, int port)
{
    snprintf(out, cap, "http://127.0.0.1:%d", port);
}

/* Waits until the server's log contains needle; seconds waited, or fails
 * the test after timeout_ms. */
static double wait_log(struct proc *p, const char *needle, int timeout_ms)
{
    double start = harness_now();
    for (;;) {
        if (strstr(harness_read_log(p), needle))
            return harness_now() - start;
        if (harness_now() - start > timeout_ms / 1000.0) {
            fprintf(stderr, "--- %s log:\n%s\n", p->name, harness_read_log(p));
            ck_abort_msg("%s: no \"%s\" in the log after %d ms", p->name,
                         needle, timeout_ms);
        }
        harness_sleep_ms(10);
    }
}

/* Offset of needle in the log, or -1. */
static long log_offset(struct proc *p, const char *needle)
{
    const char *log = harness_read_log(p);
    const char *at = strstr(log, needle);
    return at ? at - log : -1;
}

/* The backoff the log announced after try n of callback id ("callback id:
 * try n failed: why; next try in W ms"), or -1. */
static long logged_backoff_ms(struct proc *p, const char *id, int n)
{
    char needle[128];
    snprintf(needle, sizeof needle, "callback %s: try %d failed: ", id, n);
    const char *at = strstr(harness_read_log(p), needle);
    const char *eol = at ? strchr(at, '\n') : NULL;
    const char *next = at ? strstr(at, "; next try in ") : NULL;
    long ms = -1;
    if (next && (!eol || next < eol))
        sscanf(next, "; next try in %ld ms", &ms);
    return ms;
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *at = strstr(hay, needle); at; at = strstr(at + 1, needle))
        n++;
    return n;
}

static void one_bill_body(char *out, size_t cap, const char *id)
{
    snprintf(out, cap,
             "{\"request_id\": \"%s\", \"exchange_rate\": 2, \"bills\": ["
             "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}",
             id);
}

/* Posts a one-bill async job and checks the immediate {"status":"ok"}. */
static void post_async(int port, const char *id)
{
    char body[256];
    one_bill_body(body, sizeof body, id);
    struct http_result r;
    http_request("POST", port, "/api/exchange_async", body, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_result_free(&r);
}

/* GET / answered 200 within limit_s (a stage that overlaps work). */
static void expect_root_within(int port, double limit_s)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.seconds < limit_s, "GET / took %.3f s (limit %.2f s)",
                  r.seconds, limit_s);
    http_result_free(&r);
}

/* Every PUT the fake saw was the callback of job id with our token. */
static void fake_expect_callbacks(struct fake_main *f, const char *id)
{
    char want_id[200];
    snprintf(want_id, sizeof want_id, "\"request_id\":\"%s\"", id);
    int n = fake_main_requests(f);
    for (int k = 0; k < n && k < FAKE_MAIN_MAX_REQUESTS; k++) {
        const char *head = fake_main_head(f, k);
        const char *body = fake_main_body(f, k);
        ck_assert_msg(strncmp(head, "PUT /api/exchange_result ", 25) == 0,
                      "request %d: %.60s", k, head);
        ck_assert_ptr_nonnull(strstr(body, "\"token\":\"" TOKEN "\""));
        ck_assert_ptr_nonnull(strstr(body, want_id));
        ck_assert_ptr_nonnull(strstr(body,
            "\"breakdown\":[{\"denomination_id\":7,\"subtotal_rub\":6"));
    }
}

/* ---- 1. the main service is down ---- */

START_TEST(main_service_down_retries_with_backoff_then_gives_up)
{
    if (!row_selected(_i))
        return;
    char url[64];
    url_of(url, sizeof url, closed_port());
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url,
        .callback_deadline_ms = 3000, .args = idle_5s});

    double posted = harness_now();
    post_async(s.port, "down_job");
    wait_log(&s, "callback down_job: ", 10000);
    if (stages[_i].overlaps)
        expect_root_within(s.port, FAST_S); /* during the retries */
    wait_log(&s, "callback down_job given up after ", 15000);
    double took = harness_now() - posted;
    /* Retried until the 3 s deadline, not longer, nothing stalled. */
    ck_assert_double_ge(took, 3.0 - 0.05);
    ck_assert_double_lt(took, 10.0);

    /* The backoff doubles, each wait jittered within [half, whole]. */
    long w1 = logged_backoff_ms(&s, "down_job", 1);
    long w2 = logged_backoff_ms(&s, "down_job", 2);
    ck_assert_msg(w1 >= BACKOFF_1_S * 500 && w1 <= BACKOFF_1_S * 1000,
                  "first backoff %ld ms", w1);
    ck_assert_msg(w2 >= BACKOFF_2_S * 500 && w2 <= BACKOFF_2_S * 1000,
                  "second backoff %ld ms", w2);
    long r1 = log_offset(&s, "callback down_job: try 1 failed");
    long r2 = log_offset(&s, "callback down_job: try 2 failed");
    long r3 = log_offset(&s, "callback down_job: try 3 failed");
    long gave_up = log_offset(&s, "callback down_job given up after ");
    ck_assert(r1 >= 0 && r2 > r1 && r3 > r2 && gave_up > r3);
    /* Every try but the last announced its retry; none came after. */
    int tries = 0;
    sscanf(harness_read_log(&s) + gave_up,
           "callback down_job given up after %d tries", &tries);
    ck_assert_int_ge(tries, 4); /* try 3 starts by 1.5 s: one more by 3 s */
    ck_assert_int_eq(count_in(harness_read_log(&s), "callback down_job: try "),
                     tries - 1);

    expect_root_within(s.port, 5.0); /* 01 too, once its stall is over */
    stop_stage(&s);
}
END_TEST

/* ---- 2. the main service is slow ---- */

START_TEST(slow_main_service_gets_its_callback_and_nobody_waits)
{
    if (!row_selected(_i))
        return;
    struct fake_main f;
    static const int ok[] = {200};
    fake_main_listen(&f, 1500, ok, 1);
    char url[64];
    url_of(url, sizeof url, f.port);
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url, .args = idle_5s});
    fake_main_run(&f);

    post_async(s.port, "slow_job");
    fake_main_wait_requests(&f, 1, 10000);
    double put_at = harness_now();
    if (stages[_i].overlaps)
        expect_root_within(s.port, FAST_S); /* the PUT is still held */
    wait_log(&s, "callback slow_job delivered (HTTP 200, try 1)", 10000);
    ck_assert_double_ge(harness_now() - put_at, 1.0);
    ck_assert_int_eq(fake_main_requests(&f), 1);
    fake_expect_callbacks(&f, "slow_job");
    stop_stage(&s);
    fake_main_close(&f);
}
END_TEST

/* ---- 3. the main service answers 500 ---- */

START_TEST(main_service_500_twice_then_200_delivers_on_the_third_try)
{
    if (!row_selected(_i))
        return;
    struct fake_main f;
    static const int script[] = {500, 500, 200};
    fake_main_listen(&f, 0, script, 3);
    char url[64];
    url_of(url, sizeof url, f.port);
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url, .args = idle_5s});
    fake_main_run(&f);

    post_async(s.port, "flaky_job");
    wait_log(&s, "callback flaky_job: try 1 failed: HTTP 500; next try in ",
             10000);
    if (stages[_i].overlaps)
        expect_root_within(s.port, FAST_S);
    wait_log(&s, "callback flaky_job delivered (HTTP 200, try 3)", 15000);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s),
        "callback flaky_job: try 2 failed: HTTP 500; next try in "));
    ck_assert_int_eq(fake_main_requests(&f), 3);
    /* Each backoff really waited: at least half its nominal (jitter). */
    ck_assert_double_ge(fake_main_at(&f, 1) - fake_main_at(&f, 0), BACKOFF_1_S / 2 - 0.05);
    ck_assert_double_ge(fake_main_at(&f, 2) - fake_main_at(&f, 1), BACKOFF_2_S / 2 - 0.05);
    ck_assert_double_ge(fake_main_at(&f, 1) - fake_main_at(&f, 0),
                        logged_backoff_ms(&s, "flaky_job", 1) / 1000.0 - 0.05);
    ck_assert_double_ge(fake_main_at(&f, 2) - fake_main_at(&f, 1),
                        logged_backoff_ms(&s, "flaky_job", 2) / 1000.0 - 0.05);
    fake_expect_callbacks(&f, "flaky_job");
    stop_stage(&s);
    fake_main_close(&f);
}
END_TEST

START_TEST(main_service_always_500_fails_after_three_tries_without_a_stall)
{
    if (!row_selected(_i))
        return;
    struct fake_main f;
    static const int broken[] = {500};
    fake_main_listen(&f, 0, broken, 1);
    char url[64];
    url_of(url, sizeof url, f.port);
    struct proc s;
    /* A 750 ms deadline means exactly three tries: the first backoff
     * (250-500 ms) ends before it, the second (500-1000 ms) is cut to end
     * at it, and the third try's failure is past it. */
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url,
        .callback_deadline_ms = 750, .args = idle_5s});
    fake_main_run(&f);

    double posted = harness_now();
    post_async(s.port, "broken_job");
    fake_main_wait_requests(&f, 2, 10000);
    if (stages[_i].overlaps)
        expect_root_within(s.port, FAST_S);
    wait_log(&s, "callback broken_job given up after 3 tries over ", 15000);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s),
        "(--callback-deadline-ms): HTTP 500"));
    ck_assert_double_lt(harness_now() - posted, 10.0);
    /* Given up for good: no fourth try, however long we wait. */
    harness_sleep_ms(1500);
    ck_assert_int_eq(fake_main_requests(&f), 3);
    fake_expect_callbacks(&f, "broken_job");
    expect_root_within(s.port, 5.0);
    stop_stage(&s);
    fake_main_close(&f);
}
END_TEST

/* ---- 4. the main service comes back inside the retry window ---- */

START_TEST(result_delivered_when_the_main_service_comes_back)
{
    if (!row_selected(_i))
        return;
    int port = closed_port();
    char url[64], port_arg[16];
    url_of(url, sizeof url, port);
    snprintf(port_arg, sizeof port_arg, "%d", port);
    struct proc s, m;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url, .args = idle_5s});

    post_async(s.port, "late_job");
    wait_log(&s, "callback late_job: ", 10000); /* the first try failed */
    /* proc_start passes "--port 0" first; the last --port wins. */
    const char *margs[] = {"--port", port_arg, NULL};
    proc_start(&m, "main-service", margs, token_env);
    ck_assert_int_eq(m.port, port);

    struct http_result r;
    http_request("GET", m.port, "/api/exchange_result/late_job?wait_ms=5000",
                 NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"request_id\":\"late_job\""));
    ck_assert_ptr_nonnull(strstr(r.body, "\"subtotal_rub\":6"));
    http_result_free(&r);
    /* The stage logs once it has read the answer: a moment after the
     * store woke our long poll. */
    wait_log(&s, "callback late_job delivered (HTTP 200, try ", 5000);
    ck_assert_ptr_null(strstr(harness_read_log(&s), "late_job failed"));
    stop_stage(&s);
    ck_assert_int_eq(proc_stop(&m, 10000), 0);
}
END_TEST

/* ---- 5. out of descriptors ---- */

#define FD_LIMIT 64
#define HOLDERS 100

/* user + system CPU seconds the process has used so far. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after "(comm)": state is the 3rd, utime the 14th. */
    char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long long utime = 0, stime = 0;
    ck_assert_int_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                                   "%*u %llu %llu", &utime, &stime), 2);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

START_TEST(descriptor_exhaustion_no_busy_loop_and_recovery)
{
    if (!row_selected(_i))
        return;
    char url[64];
    url_of(url, sizeof url, closed_port());
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 100, .main_url = url, .args = idle_5s});
    /* The limit goes on the running server, soft and hard alike: 04 and
     * 05 raise their soft limit to the hard one at start, which is what a
     * low `ulimit -n` in a shell (hard and soft) would stop too. 02's
     * children inherit it. */
    struct rlimit low = {FD_LIMIT, FD_LIMIT};
    ck_assert_int_eq(prlimit(s.pid, RLIMIT_NOFILE, &low, NULL), 0);

    int holders[HOLDERS];
    for (int k = 0; k < HOLDERS; k++) {
        holders[k] = raw_connect(s.port);
        ck_assert_int_ge(holders[k], 0);
    }
    if (stages[_i].exhausts)
        wait_log(&s, "Too many open files", 10000);
    else
        harness_sleep_ms(500);

    /* Exhausted (or queued): the server must sleep, not spin on accept. */
    double before = cpu_seconds(s.pid);
    harness_sleep_ms(1000);
    double used = cpu_seconds(s.pid) - before;
    ck_assert_msg(used < 0.25, "%s used %.2f s of CPU in 1 s while its "
                  "clients held every descriptor", stages[_i].name, used);

    for (int k = 0; k < HOLDERS; k++)
        close(holders[k]);
    /* Recovery: descriptors free again, new clients are served. */
    expect_root_within(s.port, 10.0);
    struct http_result many[5];
    http_parallel("GET", s.port, "/", NULL, 5, many);
    for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(many[k].status, 200);
        http_result_free(&many[k]);
    }
    stop_stage(&s);
}
END_TEST

/* ---- 6. SIGTERM with work in flight ---- */

struct bg_request {
    int port;
    const char *path;
    char body[256];
    struct http_result r;
    pthread_t thread;
};

static void *bg_request_main(void *arg)
{
    struct bg_request *b = arg;
    http_request("POST", b->port, b->path, b->body, &b->r);
    return NULL;
}

static void bg_sync_start(struct bg_request *b, int port, const char *id)
{
    b->port = port;
    b->path = "/api/exchange_sync";
    one_bill_body(b->body, sizeof b->body, id);
    ck_assert_int_eq(pthread_create(&b->thread, NULL, bg_request_main, b), 0);
}

static void bg_sync_expect_200(struct bg_request *b, const char *id)
{
    pthread_join(b->thread, NULL);
    char want[256];
    snprintf(want, sizeof want,
             "{\"status\":\"completed\",\"request_id\":\"%s\",\"breakdown\":["
             "{\"denomination_id\":7,\"subtotal_rub\":6.0}],"
             "\"total_rub\":6.0}", id);
    ck_assert_int_eq(b->r.status, 200);
    ck_assert_str_eq(b->r.body, want);
    http_result_free(&b->r);
}

static void expect_result_stored(struct proc *m, const char *id)
{
    char path[160];
    snprintf(path, sizeof path, "/api/exchange_result/%s?wait_ms=10000", id);
    struct http_result r;
    http_request("GET", m->port, path, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"subtotal_rub\":6"));
    http_result_free(&r);
}

static void start_main_service(struct proc *m, char *url, size_t cap)
{
    proc_start(m, "main-service", NULL, token_env);
    url_of(url, cap, m->port);
}

/* Both kinds of work at once: a sync request waiting its bill and an async
 * job whose callback is still to come. */
static void sigterm_with_both_in_flight(int i)
{
    struct proc m, s;
    char url[64];
    start_main_service(&m, url, sizeof url);
    harness_stage_start(&s, stages[i].name, &(struct stage_opts){
        .delay_ms = 500, .main_url = url, .args = idle_5s});

    struct bg_request sync = {0};
    bg_sync_start(&sync, s.port, "term_sync");
    wait_log(&s, "POST /api/exchange_sync", 10000);
    post_async(s.port, "term_async");
    wait_log(&s, "POST /api/exchange_async", 10000);
    harness_sleep_ms(100);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);

    bg_sync_expect_200(&sync, "term_sync");
    expect_result_stored(&m, "term_async");
    stop_stage(&s);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&m), "term_async"));
    ck_assert_int_eq(proc_stop(&m, 10000), 0);
}

/* 01 has one thing in flight at a time: a client queued behind it is in
 * the kernel's backlog, not in flight, and a stop refuses it. So each
 * kind of work gets its own run. */
static void sigterm_blocking_one_at_a_time(int i)
{
    struct proc m, s;
    char url[64];
    start_main_service(&m, url, sizeof url);

    harness_stage_start(&s, stages[i].name, &(struct stage_opts){
        .delay_ms = 500, .main_url = url, .args = idle_5s});
    struct bg_request sync = {0};
    bg_sync_start(&sync, s.port, "term_sync");
    wait_log(&s, "POST /api/exchange_sync", 10000);
    harness_sleep_ms(100);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    bg_sync_expect_200(&sync, "term_sync");
    stop_stage(&s);

    harness_stage_start(&s, stages[i].name, &(struct stage_opts){
        .delay_ms = 500, .main_url = url, .args = idle_5s});
    post_async(s.port, "term_async");
    wait_log(&s, "server stalled", 10000);
    harness_sleep_ms(100);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    expect_result_stored(&m, "term_async");
    stop_stage(&s);
    ck_assert_int_eq(proc_stop(&m, 10000), 0);
}

START_TEST(sigterm_finishes_requests_and_callbacks_then_exits_0)
{
    if (!row_selected(_i))
        return;
    if (stages[_i].overlaps)
        sigterm_with_both_in_flight(_i);
    else
        sigterm_blocking_one_at_a_time(_i);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("faults");
    TCase *tc = tcase_create("every stage");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, main_service_down_retries_with_backoff_then_gives_up, 0, NUM_STAGES);
    tcase_add_loop_test(tc, slow_main_service_gets_its_callback_and_nobody_waits, 0, NUM_STAGES);
    tcase_add_loop_test(tc, main_service_500_twice_then_200_delivers_on_the_third_try, 0, NUM_STAGES);
    tcase_add_loop_test(tc, main_service_always_500_fails_after_three_tries_without_a_stall, 0, NUM_STAGES);
    tcase_add_loop_test(tc, result_delivered_when_the_main_service_comes_back, 0, NUM_STAGES);
    tcase_add_loop_test(tc, descriptor_exhaustion_no_busy_loop_and_recovery, 0, NUM_STAGES);
    tcase_add_loop_test(tc, sigterm_finishes_requests_and_callbacks_then_exits_0, 0, NUM_STAGES);
    suite_add_tcase(suite, tc);
    return harness_run(suite);
}
