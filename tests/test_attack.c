/* Hostile load, against every stage: the protections around the parser
 * (issue 12). test_hostile.c throws bad bytes; this file throws bad
 * *behaviour*: clients that trickle, stall, flood and leave early.
 *
 *   deadlines      a head trickled one CR/LF at a time, a head trickled
 *                  after its first line, a body that stalls, a connection
 *                  that never speaks: each ends at its own deadline, which
 *                  new bytes never move (408 where an answer can go out)
 *   async budget   past --max-jobs / --max-bills the client gets 503 with
 *                  Retry-After, and every ok it did get is delivered
 *   lingering      after 413/431 the server half-closes and drains: the
 *                  client sees the answer and a FIN, never a reset
 *   stop           a sync request in flight at SIGTERM is answered
 *                  "Connection: close", then the server exits 0
 *   Host           HTTP/1.1 without exactly one Host is a 400
 *   logs           a request id cannot forge log lines or send escapes
 *   fd limit       a server raises its soft descriptor limit to the hard one
 *
 * One row per stage; each test starts its stage once. Timing windows have
 * a floor just under the deadline (the deadline did not come early) and a
 * generous ceiling (sanitizer builds on a loaded machine are slow). */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* The harness's stage table; 01 serves one connection at a time, by
 * design (the overlaps trait). */
#define NUM_STAGES HARNESS_NUM_STAGES
#define STAGE(i) (harness_stages[(i)].name)
#define CONCURRENT(i) (harness_stages[(i)].overlaps)

#define HEADER_MS 600
#define BODY_MS 900
#define IDLE_MS 1200
#define SLACK_S 1.5 /* how late a deadline may be noticed */
#define DELAY_MS 300 /* each bill's wait, where a case names no other */

static const char *const token_env[] = {"SECRET_TOKEN=test-token", NULL};

/* ------------------------------------------------------------------ */
/* Small raw-socket helpers.                                          */

static void expect_root_ok(int port, const char *stage)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    ck_assert_msg(r.status == 200, "%s: GET / after the attack: %ld",
                  stage, r.status);
    http_result_free(&r);
}

/* ------------------------------------------------------------------ */
/* Deadlines.                                                         */

struct slow_client {
    const char *what;
    const char *first;    /* sent at once ("" = nothing at all) */
    const char *drip;     /* then one byte of this every DRIP_MS, cycling */
    double deadline_s;    /* when the server must end it, from start */
    bool want_408;        /* an answer can go out: it must be a 408 */
    /* run state */
    int fd;
    double start, ended;
    size_t dripped;
    char got[512];
    size_t got_len;
    bool done, reset;
};

#define DRIP_MS 150

static struct slow_client slow_clients[] = {
    /* Only CRs: the head has begun (its first byte is a CR), so it has
     * HEADER_MS in all; counting it as "no request yet" let every byte
     * restart an idle timer, and 8 KiB of CRs at one a second is hours. */
    {.what = "CR trickle", .first = "\r", .drip = "\r",
     .deadline_s = HEADER_MS / 1000.0, .want_408 = true},
    {.what = "head trickle",
     .first = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", .drip = "a",
     .deadline_s = HEADER_MS / 1000.0, .want_408 = true},
    /* The body's own deadline starts where the head ends. */
    {.what = "body trickle",
     .first = "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
              "Content-Length: 500\r\n\r\n{",
     .drip = " ", .deadline_s = BODY_MS / 1000.0, .want_408 = true},
    /* Nothing at all: the idle deadline; an answer is optional. */
    {.what = "silent", .first = "", .drip = NULL,
     .deadline_s = IDLE_MS / 1000.0, .want_408 = false},
};
#define NUM_SLOW ((int)(sizeof slow_clients / sizeof slow_clients[0]))

static void slow_begin(struct slow_client *c, int port)
{
    c->fd = raw_connect(port);
    ck_assert_int_ge(c->fd, 0);
    c->start = harness_now();
    c->dripped = 0;
    c->got_len = 0;
    c->done = c->reset = false;
    if (*c->first)
        harness_send_all(c->fd, c->first, strlen(c->first));
}

/* One turn: drip a byte if due, read what came. */
static void slow_step(struct slow_client *c, double now)
{
    if (c->done)
        return;
    if (c->drip && now >= c->start + (double)(c->dripped + 1) * DRIP_MS / 1000) {
        char b = c->drip[c->dripped % strlen(c->drip)];
        /* The server may have closed already: a failed send is not the
         * test's business, the read below tells what happened. */
        (void)!send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        c->dripped++;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->got + c->got_len,
                         sizeof c->got - 1 - c->got_len, MSG_DONTWAIT);
        if (n > 0) {
            c->got_len += (size_t)n;
            c->got[c->got_len] = '\0';
            if (c->got_len < sizeof c->got - 1)
                continue;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            c->reset = n < 0 && errno == ECONNRESET;
            c->done = true;
            c->ended = now;
            close(c->fd);
        }
        return;
    }
}

static void slow_check(const struct slow_client *c, const char *stage)
{
    ck_assert_msg(c->done, "%s, %s: still open %.1f s after its start "
                  "(deadline %.1f s): a deadline that new bytes move?",
                  stage, c->what, harness_now() - c->start, c->deadline_s);
    double took = c->ended - c->start;
    ck_assert_msg(took >= c->deadline_s - 0.15,
                  "%s, %s: ended after %.2f s, before its %.1f s deadline",
                  stage, c->what, took, c->deadline_s);
    ck_assert_msg(took <= c->deadline_s + SLACK_S,
                  "%s, %s: ended after %.2f s, long past its %.1f s deadline",
                  stage, c->what, took, c->deadline_s);
    if (c->want_408)
        ck_assert_msg(raw_status(c->got) == 408 &&
                      strstr(c->got, "\r\nConnection: close\r\n") &&
                      strstr(c->got, "{\"detail\":"),
                      "%s, %s: want a 408 with Connection: close and a "
                      "detail, got [%s]%s", stage, c->what, c->got,
                      c->reset ? " then a reset" : "");
    ck_assert_msg(!c->reset, "%s, %s: ended with a reset, not a FIN",
                  stage, c->what);
}

static void run_slow(struct slow_client *list, int n, int port)
{
    for (int k = 0; k < n; k++)
        slow_begin(&list[k], port);
    double give_up = harness_now() + IDLE_MS / 1000.0 + SLACK_S + 1;
    for (;;) {
        bool all = true;
        double now = harness_now();
        for (int k = 0; k < n; k++) {
            slow_step(&list[k], now);
            all = all && list[k].done;
        }
        if (all || now > give_up)
            break;
        harness_sleep_ms(20);
    }
    for (int k = 0; k < n; k++)
        if (!list[k].done)
            close(list[k].fd);
}

/* Also checks item 4 of the issue on the way: the server is started with a
 * soft descriptor limit of 512 and must raise it to the hard one. */
START_TEST(each_wait_ends_at_its_own_deadline)
{
    if (!harness_row_selected(_i))
        return;
    /* The harness raises its own limit once, on first use: let it do so
     * now, so that the low limit below is the one the server inherits. */
    int probe = raw_connect(1);
    if (probe >= 0)
        close(probe);
    struct rlimit saved, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    if (low.rlim_max > 512)
        low.rlim_cur = 512;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct proc s;
    harness_stage_start(&s, STAGE(_i), &(struct stage_opts){
        .delay_ms = DELAY_MS, .args = (const char *const[]){
            "--header-timeout-ms", "600", "--body-timeout-ms", "900",
            "--idle-timeout-ms", "1200", NULL}});
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);

    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)s.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    long soft = -1, hard = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Max open files", 14) == 0)
            sscanf(line + 14, "%ld %ld", &soft, &hard);
    fclose(f);
    ck_assert_msg(soft == hard && soft > 512, "%s: descriptor limit "
                  "soft %ld, hard %ld: not raised", STAGE(_i), soft, hard);

    if (CONCURRENT(_i)) {
        run_slow(slow_clients, NUM_SLOW, s.port);
    } else {
        /* 01 meets one client at a time: each must let go in time. */
        for (int k = 0; k < NUM_SLOW; k++)
            run_slow(&slow_clients[k], 1, s.port);
    }
    for (int k = 0; k < NUM_SLOW; k++)
        slow_check(&slow_clients[k], STAGE(_i));
    expect_root_ok(s.port, STAGE(_i));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* A keep-alive connection idle after an answer is closed at the idle
 * deadline, counted from the answer. */
START_TEST(idle_keep_alive_is_closed)
{
    if (!harness_row_selected(_i) || !CONCURRENT(_i))
        return; /* 01 closes after every answer */
    struct proc s;
    harness_stage_start(&s, STAGE(_i), &(struct stage_opts){
        .delay_ms = DELAY_MS,
        .args = (const char *const[]){"--idle-timeout-ms", "800", NULL}});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    harness_send_all(fd, req, strlen(req));
    char *resp = harness_read_response_text(fd, 5000);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(raw_status(resp), 200);
    free(resp);
    double t0 = harness_now();
    bool reset, timed_out;
    char *rest = harness_read_to_end(fd, 5000, &reset, &timed_out);
    double took = harness_now() - t0;
    close(fd);
    ck_assert_msg(!timed_out && !reset, "%s: idle connection not closed "
                  "cleanly (%s)", STAGE(_i), timed_out ? "still open"
                                                        : "reset");
    ck_assert_msg(took >= 0.65 && took <= 0.8 + SLACK_S,
                  "%s: idle keep-alive closed after %.2f s (want 0.8)",
                  STAGE(_i), took);
    ck_assert_msg(*rest == '\0' || raw_status(rest) == 408,
                  "%s: unexpected bytes on an idle close: [%s]", STAGE(_i),
                  rest);
    free(rest);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Bounded async work.                                                */

/* A raw POST of json to path; close asks for "Connection: close" (then
 * raw_exchange need not wait out a keep-alive). Malloc'd. */
static char *post_request(const char *path, const char *json, bool close)
{
    char *req = NULL;
    ck_assert_int_gt(asprintf(&req, "POST %s HTTP/1.1\r\nHost: x\r\n%s"
                              "Content-Length: %zu\r\n\r\n%s", path,
                              close ? "Connection: close\r\n" : "",
                              strlen(json), json), 0);
    return req;
}

static char *async_request(const char *id, int bills)
{
    char json[8192];
    int n = snprintf(json, sizeof json,
                     "{\"request_id\": \"%s\", \"exchange_rate\": 2, "
                     "\"bills\": [", id);
    for (int b = 0; b < bills; b++)
        n += snprintf(json + n, sizeof json - (size_t)n,
                      "%s{\"denomination_id\": %d, \"denomination\": 1.0, "
                      "\"count\": 1}", b ? "," : "", b + 1);
    snprintf(json + n, sizeof json - (size_t)n, "]}");
    return post_request("/api/exchange_async", json, true);
}

static bool result_stored(int main_port, const char *id, int wait_ms)
{
    char path[200];
    snprintf(path, sizeof path, "/api/exchange_result/%s?wait_ms=%d", id,
             wait_ms);
    struct http_result r;
    http_request("GET", main_port, path, NULL, &r);
    bool ok = r.status == 200;
    http_result_free(&r);
    return ok;
}

static void expect_busy_503(const char *resp, const char *cap,
                            const char *stage)
{
    ck_assert_msg(raw_status(resp) == 503, "%s: want 503, got [%s]", stage,
                  resp);
    ck_assert_msg(strstr(resp, "\r\nRetry-After: ") != NULL,
                  "%s: a 503 without Retry-After: [%s]", stage, resp);
    ck_assert_msg(strstr(resp, "{\"detail\":") && strstr(resp, cap),
                  "%s: the 503 does not name %s: [%s]", stage, cap, resp);
}

#define FLOOD 4
#define MAX_JOBS "2"

START_TEST(async_work_is_bounded_before_the_ok)
{
    if (!harness_row_selected(_i))
        return;
    struct proc main_svc, s;
    proc_start(&main_svc, "main-service", NULL, token_env);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", main_svc.port);
    harness_stage_start(&s, STAGE(_i), &(struct stage_opts){
        .delay_ms = 800, .main_url = url, .args = (const char *const[]){
            "--max-jobs", MAX_JOBS, "--max-bills", "5", NULL}});

    /* One job larger than the whole bill budget: refused in every stage. */
    char *req = async_request("too_many_bills", 6);
    char *resp = raw_exchange(s.port, req, strlen(req), 5000);
    expect_busy_503(resp, "--max-bills", STAGE(_i));
    free(req);
    free(resp);

    /* FLOOD jobs at once, one connection each (01 takes them one by one
     * and finishes each before the next, so it never exceeds the cap). */
    int fds[FLOOD];
    char ids[FLOOD][32];
    for (int k = 0; k < FLOOD; k++) {
        snprintf(ids[k], sizeof ids[k], "flood_%d", k);
        fds[k] = raw_connect(s.port);
        ck_assert_int_ge(fds[k], 0);
        req = async_request(ids[k], 1);
        harness_send_all(fds[k], req, strlen(req));
        free(req);
    }
    bool accepted[FLOOD];
    int oks = 0;
    for (int k = 0; k < FLOOD; k++) {
        resp = harness_read_response_text(fds[k], 15000);
        ck_assert_msg(resp != NULL, "%s: no whole answer to job %d",
                      STAGE(_i), k);
        accepted[k] = raw_status(resp) == 200;
        if (accepted[k]) {
            ck_assert_msg(strstr(resp, "{\"status\":\"ok\"}") != NULL,
                          "[%s]", resp);
            oks++;
        } else {
            expect_busy_503(resp, "--max-jobs", STAGE(_i));
        }
        free(resp);
        close(fds[k]);
    }
    if (CONCURRENT(_i))
        ck_assert_msg(oks == atoi(MAX_JOBS), "%s: %d of %d jobs accepted "
                      "with --max-jobs %s", STAGE(_i), oks, FLOOD, MAX_JOBS);
    /* Every ok is a promise kept: its result reaches the main service. The
     * refused ones never do. */
    for (int k = 0; k < FLOOD; k++)
        if (accepted[k])
            ck_assert_msg(result_stored(main_svc.port, ids[k], 15000),
                          "%s: %s was accepted but never called back",
                          STAGE(_i), ids[k]);
    for (int k = 0; k < FLOOD; k++)
        if (!accepted[k])
            ck_assert(!result_stored(main_svc.port, ids[k], 0));
    /* The budget comes back once the jobs are over. */
    harness_sleep_ms(300);
    req = async_request("after_flood", 1);
    resp = raw_exchange(s.port, req, strlen(req), 5000);
    ck_assert_msg(raw_status(resp) == 200, "%s: budget not returned: [%s]",
                  STAGE(_i), resp);
    free(req);
    free(resp);
    ck_assert(result_stored(main_svc.port, "after_flood", 15000));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    ck_assert_int_eq(proc_stop(&main_svc, 5000), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lingering close, and a stop in the middle of a request.           */

/* Sends a request the server refuses before reading it all (head, then
 * `more` bytes it will not read), then reads: the whole answer, then a FIN.
 * A plain close() over unread bytes would send a reset instead, which on a
 * real network can destroy the answer before the client reads it. */
static void refused_then_fin(int port, const char *head, char filler,
                             size_t more, int want, const char *stage)
{
    int fd = raw_connect(port);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(head) + more;
    char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, head, strlen(head));
    memset(buf + strlen(head), filler, more);
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        ck_assert_msg(w > 0, "%s: sending the refused request failed after "
                      "%zu of %zu bytes (%s): reset over unread input",
                      stage, off, n, strerror(errno));
        off += (size_t)w;
    }
    free(buf);
    bool reset, timed_out;
    char *got = harness_read_to_end(fd, 5000, &reset, &timed_out);
    close(fd);
    ck_assert_msg(raw_status(got) == want, "%s: want %d, got [%.200s]",
                  stage, want, got);
    ck_assert_msg(!reset, "%s: the %d was followed by a reset, not a FIN",
                  stage, want);
    ck_assert_msg(!timed_out, "%s: no FIN after the %d", stage, want);
    free(got);
}

START_TEST(refusals_end_in_a_lingering_close)
{
    if (!harness_row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, STAGE(_i),
                        &(struct stage_opts){.delay_ms = DELAY_MS});
    refused_then_fin(s.port,
                     "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 300000\r\n\r\n", 'x', 200000, 413,
                     STAGE(_i));
    refused_then_fin(s.port, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ", 'p',
                     100000, 431, STAGE(_i));
    /* RFC 9112 3.2: HTTP/1.1 without Host, or with two, is a 400. */
    static const char *const hostless[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    };
    for (int k = 0; k < 2; k++) {
        char *got = raw_exchange(s.port, hostless[k], strlen(hostless[k]),
                                 5000);
        ck_assert_msg(raw_status(got) == 400 && strstr(got, "Host"),
                      "%s: want a 400 naming Host, got [%s]", STAGE(_i), got);
        free(got);
    }
    expect_root_ok(s.port, STAGE(_i));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* The stop arrives while a keep-alive sync request waits for its bill: the
 * answer still comes, says "Connection: close", and the server exits 0. */
START_TEST(stop_during_a_request_answers_connection_close)
{
    if (!harness_row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, STAGE(_i), &(struct stage_opts){.delay_ms = 1000});
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char *json = "{\"request_id\": \"stop\", \"exchange_rate\": 2, "
                       "\"bills\": [{\"denomination_id\": 1, "
                       "\"denomination\": 1.0, \"count\": 1}]}";
    char *req = post_request("/api/exchange_sync", json, false);
    harness_send_all(fd, req, strlen(req));
    free(req);
    harness_sleep_ms(300);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    char *resp = harness_read_response_text(fd, 10000);
    close(fd);
    ck_assert_msg(resp != NULL, "%s: no whole answer during the stop",
                  STAGE(_i));
    ck_assert_msg(raw_status(resp) == 200, "%s: [%s]", STAGE(_i), resp);
    ck_assert_msg(strstr(resp, "\r\nConnection: close\r\n") != NULL,
                  "%s: an answer during a stop must close: [%s]", STAGE(_i),
                  resp);
    free(resp);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Logs.                                                              */

START_TEST(request_ids_cannot_forge_log_lines)
{
    if (!harness_row_selected(_i))
        return;
    struct proc s;
    harness_stage_start(&s, STAGE(_i), &(struct stage_opts){
        .args = (const char *const[]){"--delay-ms", "0", NULL}});
    const char *json =
        "{\"request_id\": \"inj\\nFORGED | WARNING: \\u001b[31mred\", "
        "\"exchange_rate\": 2, \"bills\": [{\"denomination_id\": 1, "
        "\"denomination\": 1.0, \"count\": 1}]}";
    char *req = post_request("/api/exchange_sync", json, true);
    char *resp = raw_exchange(s.port, req, strlen(req), 5000);
    ck_assert_int_eq(raw_status(resp), 200);
    free(req);
    free(resp);
    harness_sleep_ms(100);
    char *log = strdup(harness_read_log(&s));
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
    ck_assert_msg(strstr(log, "\nFORGED") == NULL, "%s: a forged log line:"
                  "\n%s", STAGE(_i), log);
    ck_assert_msg(strchr(log, '\x1b') == NULL, "%s: a raw ESC in the log",
                  STAGE(_i));
    ck_assert_msg(strstr(log, "inj\\x0aFORGED") != NULL, "%s: the id is "
                  "not in the log, escaped:\n%s", STAGE(_i), log);
    free(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("attack");
    TCase *tc = tcase_create("stages");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, each_wait_ends_at_its_own_deadline, 0, NUM_STAGES);
    tcase_add_loop_test(tc, idle_keep_alive_is_closed, 0, NUM_STAGES);
    tcase_add_loop_test(tc, async_work_is_bounded_before_the_ok, 0, NUM_STAGES);
    tcase_add_loop_test(tc, refusals_end_in_a_lingering_close, 0, NUM_STAGES);
    tcase_add_loop_test(tc, stop_during_a_request_answers_connection_close, 0,
                        NUM_STAGES);
    tcase_add_loop_test(tc, request_ids_cannot_forge_log_lines, 0, NUM_STAGES);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
