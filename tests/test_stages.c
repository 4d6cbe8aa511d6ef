/* Integration tests: every stage, started for real, driven over HTTP.
 *
 * One table, one row per stage. A row says how its model is expected to
 * differ (do requests overlap? does it keep connections alive?); every test
 * runs once per row (Check loop tests), so a new stage is one new row. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The harness's one stage table (tests/harness.c), under the short names
 * the cases use; _i is its row. */
#define stages harness_stages
#define NUM_STAGES HARNESS_NUM_STAGES
#define row_selected harness_row_selected

#define DELAY_MS 300
#define DELAY_S (DELAY_MS / 1000.0)

static const char *const lecture_body =
    "{\"request_id\": \"sync_test\", \"exchange_rate\": 75.5, \"bills\": ["
    "{\"denomination_id\": 1, \"denomination\": 10.0, \"count\": 5},"
    "{\"denomination_id\": 2, \"denomination\": 20.0, \"count\": 3}]}";

static const char *const one_bill_body =
    "{\"request_id\": \"one\", \"exchange_rate\": 2, \"bills\": ["
    "{\"denomination_id\": 7, \"denomination\": 1.5, \"count\": 2}]}";

/* How every case starts its stage: the test delay, and every wait on a
 * client (idle, head, body) bounded at 2 s (harness_stage_start). */
#define QUICK .delay_ms = DELAY_MS, .client_timeout_ms = 2000

static void stop_stage(struct proc *p)
{
    ck_assert_int_eq(proc_stop(p, 20000), 0);
}

static void expect_get_root(int port, const char *stage)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    char want[256];
    snprintf(want, sizeof want,
             "{\"message\":\"Exchange service is running\",\"stage\":\"%s\"}",
             stage);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, want);
    http_result_free(&r);
}

/* GET / names the stage; and the stage said at start how many clients it
 * can hold at once, and why (one, a cap, FD_SETSIZE, its descriptors). */
START_TEST(get_root_names_the_stage)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    expect_get_root(s.port, stages[_i].name);
    static const char *const why[HARNESS_NUM_STAGES] = {
        "clients: one at a time", "(--max-children)", "(--max-threads)",
        "below FD_SETSIZE, 1024", "descriptors, less", "descriptors, less"};
    const char *log = harness_read_log(&s);
    ck_assert_msg(strstr(log, why[_i]), "no '%s' in:\n%s", why[_i], log);
    stop_stage(&s);
}
END_TEST

START_TEST(sync_route_computes_the_lecture_example)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
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
    const char *log = harness_read_log(&s);
    ck_assert_ptr_nonnull(strstr(log, "bill 1: 3775.00 RUB"));
    ck_assert_ptr_nonnull(strstr(log, "bill 2: 4530.00 RUB"));
    stop_stage(&s);
}
END_TEST

/* The async route answers at once; the breakdown reaches the main service
 * later, with the shared token (the main service rejects any other). */
START_TEST(async_route_calls_back_the_main_service)
{
    if (!row_selected(_i))
        return;
    struct proc main_svc, s;
    static const char *const env[] = {"SECRET_TOKEN=test-token", NULL};
    proc_start(&main_svc, "main-service", NULL, env);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", main_svc.port);
    harness_stage_start(&s, stages[_i].name,
                        &(struct stage_opts){QUICK, .main_url = url});

    const char *body =
        "{\"request_id\": \"async_test\", \"exchange_rate\": 75.5, \"bills\": ["
        "{\"denomination_id\": 1, \"denomination\": 1.0, \"count\": 5},"
        "{\"denomination_id\": 2, \"denomination\": 2.0, \"count\": 3}]}";
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", body, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    ck_assert_double_lt(r.seconds, DELAY_S);
    http_result_free(&r);

    http_request("GET", main_svc.port,
                 "/api/exchange_result/async_test?wait_ms=10000", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body,
        "{\"request_id\":\"async_test\",\"breakdown\":["
        "{\"denomination_id\":1,\"subtotal_rub\":377.5},"
        "{\"denomination_id\":2,\"subtotal_rub\":453.0}]}");
    http_result_free(&r);
    stop_stage(&s);
    ck_assert_int_eq(proc_stop(&main_svc, 5000), 0);
}
END_TEST

START_TEST(callback_with_a_wrong_token_is_refused)
{
    if (!row_selected(_i))
        return;
    struct proc main_svc, s;
    static const char *const env[] = {"SECRET_TOKEN=other-token", NULL};
    proc_start(&main_svc, "main-service", NULL, env);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", main_svc.port);
    harness_stage_start(&s, stages[_i].name,
                        &(struct stage_opts){QUICK, .main_url = url});
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    /* 403 is a 4xx: the stage must give up at once, not retry. */
    http_request("GET", main_svc.port,
                 "/api/exchange_result/one?wait_ms=1500", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    http_result_free(&r);
    harness_sleep_ms(200);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s), "rejected"));
    stop_stage(&s);
    ck_assert_int_eq(proc_stop(&main_svc, 5000), 0);
}
END_TEST

/* Bad input of every kind in docs/DESIGN.md gets its status, and the server
 * goes on serving. */
struct bad_case {
    const char *what;
    const char *request;
    int status;
};

/* "Connection: close": raw_exchange reads until the server closes, and a
 * 400 for bad JSON otherwise keeps the connection for the idle timeout. */
#define POST_JSON(path, json) \
    "POST " path " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
    "Connection: close\r\nContent-Length: %zu\r\n\r\n" json

static const struct bad_case bad_cases[] = {
    {"malformed request line", "GARBAGE\r\n\r\n", 400},
    {"missing version", "GET /\r\n\r\n", 400},
    {"HTTP/2.0 version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
    {"header without colon", "GET / HTTP/1.1\r\nHost: x\r\nHost x\r\n\r\n", 400},
    {"POST without Content-Length",
     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n\r\n", 411},
    {"Transfer-Encoding",
     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
    {"body over 64 KiB",
     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
     "Content-Length: 70000\r\n\r\n", 413},
    /* Answers that keep the connection: "Connection: close" ends it at
     * once instead of at the idle timeout (as in POST_JSON). */
    {"unknown path",
     "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
    {"wrong method",
     "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
    {"GET on the sync route", "GET /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
     "Connection: close\r\n\r\n", 405},
    {"invalid JSON", POST_JSON("/api/exchange_sync", "{not json"), 400},
    {"JSON not an object", POST_JSON("/api/exchange_async", "[1,2]"), 400},
    {"missing request_id",
     POST_JSON("/api/exchange_sync", "{\"exchange_rate\":1,\"bills\":"
               "[{\"denomination_id\":1,\"denomination\":1,\"count\":1}]}"), 400},
    {"negative count",
     POST_JSON("/api/exchange_async", "{\"request_id\":\"x\",\"exchange_rate\""
               ":1,\"bills\":[{\"denomination_id\":1,\"denomination\":1,"
               "\"count\":-1}]}"), 400},
};
#define NUM_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

/* Fills in the %zu of POST_JSON cases with the real body length. */
static char *bad_case_text(const struct bad_case *c)
{
    const char *fmt = c->request;
    if (!strstr(fmt, "%zu"))
        return strdup(fmt);
    const char *body = strstr(fmt, "\r\n\r\n") + 4;
    size_t len = strlen(body);
    char *out;
    if (asprintf(&out, fmt, len) < 0)
        return NULL;
    return out;
}

START_TEST(bad_input_gets_its_status_and_the_server_goes_on)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    for (int k = 0; k < NUM_BAD; k++) {
        char *req = bad_case_text(&bad_cases[k]);
        char *resp = raw_exchange(s.port, req, strlen(req), 3000);
        ck_assert_msg(raw_status(resp) == bad_cases[k].status,
                      "%s: expected %d, got: %.200s", bad_cases[k].what,
                      bad_cases[k].status, resp);
        ck_assert_msg(strstr(resp, "{\"detail\":\"") != NULL,
                      "%s: no detail in %.200s", bad_cases[k].what, resp);
        free(resp);
        free(req);
        expect_get_root(s.port, stages[_i].name);
    }
    /* The detail names the bad field. */
    const char *bad_count =
        "{\"request_id\":\"x\",\"exchange_rate\":1,\"bills\":["
        "{\"denomination_id\":1,\"denomination\":1,\"count\":1},"
        "{\"denomination_id\":2,\"denomination\":1,\"count\":1.5}]}";
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", bad_count, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"detail\":\"bills[1].count must be a "
                             "non-negative integer\"}");
    http_result_free(&r);
    stop_stage(&s);
}
END_TEST

START_TEST(headers_over_8k_get_431)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    size_t n = 9000;
    char *req = malloc(n + 64);
    int k = snprintf(req, n + 64, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + k, 'a', n);
    strcpy(req + k + n, "\r\n\r\n");
    char *resp = raw_exchange(s.port, req, strlen(req), 3000);
    ck_assert_int_eq(raw_status(resp), 431);
    free(resp);
    free(req);
    expect_get_root(s.port, stages[_i].name);
    stop_stage(&s);
}
END_TEST

START_TEST(more_than_100_bills_get_400)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    char *body = malloc(16384);
    int n = sprintf(body, "{\"request_id\":\"x\",\"exchange_rate\":1,\"bills\":[");
    for (int b = 0; b < 101; b++)
        n += sprintf(body + n, "%s{\"denomination_id\":%d,\"denomination\":1,"
                     "\"count\":1}", b ? "," : "", b);
    strcpy(body + n, "]}");
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", body, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(r.body, "{\"detail\":\"bills must have at most 100 items\"}");
    http_result_free(&r);
    free(body);
    stop_stage(&s);
}
END_TEST

/* The heart of the lecture: do two requests wait side by side? */
START_TEST(concurrent_sync_requests_overlap_or_queue)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    struct http_result r[2];
    http_parallel("POST", s.port, "/api/exchange_sync", one_bill_body, 2, r);
    double wall = (r[0].end > r[1].end ? r[0].end : r[1].end) - r[0].start;
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(r[k].status, 200);
        http_result_free(&r[k]);
    }
    if (stages[_i].overlaps)
        ck_assert_msg(wall < 1.8 * DELAY_S, "took %.3f s, expected ~%.1f",
                      wall, DELAY_S);
    else
        ck_assert_msg(wall >= 2 * DELAY_S * 0.95, "took %.3f s, expected "
                      "twice %.1f", wall, DELAY_S);
    stop_stage(&s);
}
END_TEST

START_TEST(connection_header_follows_the_model)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    const char *two = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    char *resp = raw_exchange(s.port, two, strlen(two), 1500);
    ck_assert_int_eq(raw_status(resp), 200);
    const char *second = strstr(resp + 1, "HTTP/1.1 200");
    if (stages[_i].keep_alive) {
        ck_assert_ptr_nonnull(strstr(resp, "Connection: keep-alive"));
        ck_assert_ptr_nonnull(second); /* pipelined, answered in order */
    } else {
        ck_assert_ptr_nonnull(strstr(resp, "Connection: close"));
        ck_assert_ptr_null(second);
    }
    free(resp);
    stop_stage(&s);
}
END_TEST

/* A client that sends half a request: concurrent stages keep serving
 * others; 01 is held until its idle timeout, which is the lesson. */
START_TEST(stalled_client_and_others)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *half = "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\nContent-Le";
    ck_assert_int_eq(write(fd, half, strlen(half)), (ssize_t)strlen(half));
    harness_sleep_ms(100);
    struct http_result r;
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    if (stages[_i].overlaps)
        ck_assert_double_lt(r.seconds, 0.5);
    else /* held until the stalled client timed out (2 s) */
        ck_assert_double_ge(r.seconds, 1.5);
    http_result_free(&r);
    close(fd);
    stop_stage(&s);
}
END_TEST

START_TEST(sigterm_exits_cleanly)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    expect_get_root(s.port, stages[_i].name);
    ck_assert_int_eq(proc_stop(&s, 10000), 0);
}
END_TEST

START_TEST(sigterm_finishes_the_request_in_flight)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        harness_sleep_ms(100);
        kill(s.pid, SIGTERM);
        _exit(0);
    }
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_sync", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    waitpid(child, NULL, 0);
    ck_assert_int_eq(proc_stop(&s, 10000), 0);
}
END_TEST

START_TEST(blocking_stage_logs_its_stall)
{
    if (!row_selected(0))
        return;
    struct proc s;
    /* Nobody listens: the callback is retried until its deadline. */
    const char *const extra[] = {"--callback-deadline-ms", "1000", NULL};
    harness_stage_start(&s, stages[0].name, &(struct stage_opts){
        QUICK, .main_url = "http://127.0.0.1:9", .args = extra});
    struct http_result r;
    http_request("POST", s.port, "/api/exchange_async", one_bill_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    harness_sleep_ms(50);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s), "server stalled"));
    /* While stalled (bill wait + callback retries), GET / waits. */
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_double_ge(r.seconds, DELAY_S * 0.8);
    http_result_free(&r);
    ck_assert_ptr_nonnull(strstr(harness_read_log(&s), "stall over"));
    stop_stage(&s);
}
END_TEST

/* 01 serves one client at a time, so a client that trickles its head
 * holds everyone: but only until the head's deadline (1 s from its first
 * byte), however often it sends (every 200 ms here, quicker than the
 * 600 ms idle timeout). It gets 408; the client queued behind it is
 * served right after. */
START_TEST(blocking_stage_trickler_holds_it_until_the_head_deadline)
{
    if (!row_selected(0))
        return;
    struct proc s;
    const char *const extra[] = {"--header-timeout-ms", "1000",
                                 "--idle-timeout-ms", "600", NULL};
    harness_stage_start(&s, stages[0].name,
                        &(struct stage_opts){QUICK, .args = extra});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    pid_t trickler = fork();
    ck_assert_int_ge(trickler, 0);
    if (trickler == 0) { /* one CR every 200 ms for 4 s */
        for (int k = 0; k < 20; k++) {
            if (send(fd, "\r", 1, MSG_NOSIGNAL) < 0)
                break;
            harness_sleep_ms(200);
        }
        _exit(0);
    }
    harness_sleep_ms(100);
    struct http_result r;
    http_request("GET", s.port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.seconds > 0.6 && r.seconds < 2.0,
                  "GET / waited %.2f s behind a trickler", r.seconds);
    http_result_free(&r);
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    ck_assert_int_eq(raw_status(buf), 408);
    close(fd);
    waitpid(trickler, NULL, 0);
    stop_stage(&s);
}
END_TEST

/* After a 431 the client may still be sending the rest of its oversized
 * head. Closing with those bytes unread would make the kernel answer
 * them with a reset, which on a real network can destroy the 431 before
 * the client reads it (on loopback it arrives first, so the test looks
 * for the reset itself): 01 half-closes and drains first (the lingering
 * close), and the client sees an orderly end of the stream. */
START_TEST(blocking_stage_431_survives_unread_input)
{
    if (!row_selected(0))
        return;
    struct proc s;
    harness_stage_start(&s, stages[0].name, &(struct stage_opts){QUICK});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    static char big[64 * 1024];
    int k = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\n"
                     "X-Big: ");
    memset(big + k, 'a', sizeof big - (size_t)k);
    size_t sent = 0;
    while (sent < sizeof big) { /* the server stops reading at 8 KiB */
        ssize_t n = send(fd, big + sent, sizeof big - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    harness_sleep_ms(300); /* the server has answered and closed by now */
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    ck_assert_msg(n > 0, "no answer: %s", n < 0 ? strerror(errno) : "EOF");
    buf[n] = '\0';
    ck_assert_int_eq(raw_status(buf), 431);
    /* Then an orderly end of the stream, not a reset. */
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    ck_assert_msg(n == 0, "after the 431: %s", strerror(errno));
    close(fd);
    expect_get_root(s.port, stages[0].name);
    stop_stage(&s);
}
END_TEST

/* SIGPIPE is ignored, as the kernel reports it: the writes use MSG_NOSIGNAL
 * too, but libcurl, a log pipe or a future write(2) would not, and one
 * client that hangs up early must not kill the server. Two layers, so each
 * is checked on its own: this is the process's side. */
START_TEST(sigpipe_is_ignored)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    unsigned long long ignored = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "SigIgn: %llx", &ignored) == 1;
    fclose(f);
    ck_assert_msg(found, "no SigIgn line in %s", path);
    ck_assert_msg(ignored & (1ULL << (SIGPIPE - 1)),
                  "%s does not ignore SIGPIPE (SigIgn %llx)", stages[_i].name,
                  ignored);
    stop_stage(&s);
}
END_TEST

/* Without --host a stage listens on 127.0.0.1 only: a teaching server
 * with a --blocking-bug switch is not for the network. The kernel's socket
 * table says what was bound, whatever the announce line says. */
START_TEST(listens_on_loopback_by_default)
{
    if (!row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){QUICK});
    FILE *f = fopen("/proc/net/tcp", "r");
    ck_assert_ptr_nonnull(f);
    char line[512], addr[16] = "";
    unsigned port, state;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, " %*d: %8[0-9A-F]:%x %*[0-9A-F]:%*x %x", addr, &port,
                   &state) == 3 &&
            port == (unsigned)s.port && state == 0x0A)
            break;
        else
            addr[0] = '\0';
    fclose(f);
    ck_assert_msg(strcmp(addr, "0100007F") == 0,
                  "%s listens on [%s] (hex, from /proc/net/tcp), not on "
                  "127.0.0.1", stages[_i].name, addr);
    stop_stage(&s);
}
END_TEST

/* ---- the task list (SIGQUIT; common/tasklist.h): 05 and 06 ---- */

static bool lists_tasks(int row)
{
    return strcmp(stages[row].name, "05-epoll-callbacks") == 0 ||
           strcmp(stages[row].name, "06-coroutines") == 0;
}

/* What arrives on fd until the server closes it (the request said
 * "Connection: close") or timeout_ms passes; malloc'd. */
static char *raw_read_all(int fd, int timeout_ms)
{
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    double deadline = harness_now() + timeout_ms / 1000.0;
    while (harness_now() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        if (len + 1024 > cap)
            ck_assert_ptr_nonnull(text = realloc(text, cap *= 2));
        ssize_t n = recv(fd, text + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    return text;
}

/* Waits up to 5 s until the log holds n task lists; the log. */
static const char *wait_lists(struct proc *p, size_t n)
{
    const char *log = harness_read_log(p);
    for (int i = 0; i < 100; i++) {
        size_t have = 0;
        for (const char *q = log; (q = strstr(q, "tasks: end")); q++)
            have++;
        if (have >= n)
            break;
        harness_sleep_ms(50);
        log = harness_read_log(p);
    }
    return log;
}

/* The line of the list's last edition that holds needle, copied. */
static void list_line(const char *log, const char *needle, char *out,
                      size_t len)
{
    const char *list = log, *q;
    while ((q = strstr(list + 1, "\ntasks: ")) && strncmp(q, "\ntasks: end", 11))
        list = q;
    const char *hit = strstr(list, needle);
    ck_assert_msg(hit, "no '%s' in the task list:\n%s", needle, list);
    const char *start = hit, *end = strchr(hit, '\n');
    while (start > log && start[-1] != '\n')
        start--;
    snprintf(out, len, "%.*s", (int)(end ? end - start : (long)strlen(start)),
             start);
}

/* A request parked in its bill's wait shows, with what it waits for and
 * for how long; the server goes on serving; a second SIGQUIT prints the
 * list again, and nothing prints it a third time (the pipe is drained). */
START_TEST(sigquit_lists_a_request_in_its_bill_wait)
{
    if (!row_selected(_i) || !lists_tasks(_i))
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name,
                        &(struct stage_opts){.delay_ms = 300,
                                             .client_timeout_ms = 2000});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(lecture_body), lecture_body);
    harness_send_all(fd, req, (size_t)n);
    harness_sleep_ms(150);
    ck_assert_int_eq(kill(s.pid, SIGQUIT), 0);
    const char *log = wait_lists(&s, 1);
    char line[512];
    bool coroutines = stages[_i].name[1] == '6';
    long age = -1, left = -1;
    if (coroutines) { /* its coroutine, parked in the bill's co_sleep */
        list_line(log, "serve_connection", line, sizeof line);
        ck_assert_msg(sscanf(strstr(line, "parked") ? strstr(line, "parked")
                                                    : "",
                             "parked %ld ms sleep, ends in %ld ms", &age,
                             &left) == 2, "not parked in a sleep: %s", line);
    } else { /* the connection, waiting for its first bill */
        list_line(log, "conn fd", line, sizeof line);
        ck_assert_msg(sscanf(strstr(line, " bill ") ? strstr(line, " bill ")
                                                    : "",
                             " bill %ld ms bill 1 of 2, due in %ld ms", &age,
                             &left) == 2, "not in its bill: %s", line);
    }
    ck_assert_msg(age >= 100 && age <= 300 && left >= 0 && left <= 200,
                  "waited %ld ms, %ld left: %s", age, left, line);
    ck_assert_ptr_nonnull(strstr(log, "tasks: "));
    /* Serving on: others now, and the request in its wait, in full. */
    expect_get_root(s.port, stages[_i].name);
    char *answer = raw_read_all(fd, 3000);
    ck_assert_int_eq(raw_status(answer), 200);
    ck_assert_ptr_nonnull(strstr(answer, "\"total_rub\":8305.0"));
    free(answer);
    close(fd);
    ck_assert_int_eq(kill(s.pid, SIGQUIT), 0);
    wait_lists(&s, 2);
    harness_sleep_ms(200);
    log = harness_read_log(&s);
    size_t lists = 0;
    for (const char *q = log; (q = strstr(q, "tasks: end")); q++)
        lists++;
    ck_assert_uint_eq(lists, 2);
    stop_stage(&s);
}
END_TEST

/* The list is printed by the loop, between two steps, never from inside
 * the handler: while a bill computes on the loop thread (--cpu-ms), a
 * SIGQUIT's list waits until that computation is over. A handler that
 * printed would cut into the step, with the state half updated. */
START_TEST(sigquit_list_waits_for_the_step_in_progress)
{
    if (!row_selected(_i) || strcmp(stages[_i].name, "06-coroutines") != 0)
        return;
    struct proc s;
    harness_stage_start(&s, stages[_i].name, &(struct stage_opts){
        .delay_ms = 1, .args = (const char *const[]){"--cpu-ms", "500",
                                                     NULL}});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(one_bill_body), one_bill_body);
    harness_send_all(fd, req, (size_t)n);
    harness_sleep_ms(150); /* the bill computes for 500 ms from ~1 ms */
    ck_assert_int_eq(kill(s.pid, SIGQUIT), 0);
    const char *log = wait_lists(&s, 1);
    const char *done = strstr(log, "cpu work: 500 ms");
    const char *list = strstr(log, "tasks: ");
    ck_assert_msg(done && list && done < list,
                  "the list did not wait for the step:\n%s", log);
    char *answer = raw_read_all(fd, 3000);
    ck_assert_int_eq(raw_status(answer), 200);
    free(answer);
    close(fd);
    stop_stage(&s);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("stages");
    TCase *tc = tcase_create("every stage");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, get_root_names_the_stage, 0, NUM_STAGES);
    tcase_add_loop_test(tc, sync_route_computes_the_lecture_example, 0, NUM_STAGES);
    tcase_add_loop_test(tc, async_route_calls_back_the_main_service, 0, NUM_STAGES);
    tcase_add_loop_test(tc, callback_with_a_wrong_token_is_refused, 0, NUM_STAGES);
    tcase_add_loop_test(tc, bad_input_gets_its_status_and_the_server_goes_on, 0, NUM_STAGES);
    tcase_add_loop_test(tc, headers_over_8k_get_431, 0, NUM_STAGES);
    tcase_add_loop_test(tc, more_than_100_bills_get_400, 0, NUM_STAGES);
    tcase_add_loop_test(tc, concurrent_sync_requests_overlap_or_queue, 0, NUM_STAGES);
    tcase_add_loop_test(tc, connection_header_follows_the_model, 0, NUM_STAGES);
    tcase_add_loop_test(tc, stalled_client_and_others, 0, NUM_STAGES);
    tcase_add_loop_test(tc, sigterm_exits_cleanly, 0, NUM_STAGES);
    tcase_add_loop_test(tc, sigterm_finishes_the_request_in_flight, 0, NUM_STAGES);
    tcase_add_loop_test(tc, sigpipe_is_ignored, 0, NUM_STAGES);
    tcase_add_loop_test(tc, listens_on_loopback_by_default, 0, NUM_STAGES);
    suite_add_tcase(suite, tc);
    TCase *one = tcase_create("01-blocking only");
    tcase_set_timeout(one, 120);
    tcase_add_test(one, blocking_stage_logs_its_stall);
    tcase_add_test(one, blocking_stage_trickler_holds_it_until_the_head_deadline);
    tcase_add_test(one, blocking_stage_431_survives_unread_input);
    suite_add_tcase(suite, one);
    TCase *list = tcase_create("task list");
    tcase_set_timeout(list, 30);
    tcase_add_loop_test(list, sigquit_lists_a_request_in_its_bill_wait, 0,
                        NUM_STAGES);
    tcase_add_loop_test(list, sigquit_list_waits_for_the_step_in_progress, 0,
                        NUM_STAGES);
    suite_add_tcase(suite, list);
    return harness_run(suite);
}
