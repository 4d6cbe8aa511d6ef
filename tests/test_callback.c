/* Unit tests for common/callback's retry policy: the backoff schedule
 * (0.5 s doubling to 8 s, with jitter), the deadline that ends it, which
 * statuses are retried (RFC 9110: 408, 425, 429, 503 and other 5xx) and
 * which are given up at once (other 4xx, 501, 505), Retry-After in both
 * its forms and cut by the deadline, and a callback that outlives a short
 * outage of the main service. Time is simulated where it can be (the
 * deadline is moved back by each wait instead of sleeping); the network
 * tests use a tiny responder in a thread of this process, or the
 * harness's scripted fake main service. */
#include "callback.h"
#include "harness.h"
#include "log.h"
#include "timer.h"

#include <check.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

/* The nominal wait after the tries-th failure: what the jitter draws
 * below. */
static long nominal_ms(int tries)
{
    long n = CALLBACK_BACKOFF_MS;
    for (int i = 1; i < tries && n < CALLBACK_BACKOFF_MAX_MS; i++)
        n *= 2;
    return n < CALLBACK_BACKOFF_MAX_MS ? n : CALLBACK_BACKOFF_MAX_MS;
}

START_TEST(backoff_doubles_to_8s_with_jitter)
{
    ck_assert_int_eq(nominal_ms(1), 500);
    ck_assert_int_eq(nominal_ms(5), 8000);
    ck_assert_int_eq(nominal_ms(6), 8000);
    unsigned seed = 12345;
    for (int tries = 1; tries <= 12; tries++) {
        long lo = LONG_MAX, hi = 0, want = nominal_ms(tries);
        for (int i = 0; i < 500; i++) {
            long w = callback_backoff_ms(tries, &seed);
            ck_assert_msg(w >= want / 2 && w <= want,
                          "try %d: %ld ms outside [%ld, %ld]", tries, w,
                          want / 2, want);
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
        }
        /* Jitter really spreads: 500 draws cover most of the range. */
        ck_assert_msg(hi - lo > want / 4, "try %d: draws %ld..%ld", tries,
                      lo, hi);
    }
    /* Absurd try counts neither overflow nor exceed the cap. */
    for (int tries = 30; tries < 100000; tries *= 7) {
        long w = callback_backoff_ms(tries, &seed);
        ck_assert(w >= CALLBACK_BACKOFF_MAX_MS / 2 &&
                  w <= CALLBACK_BACKOFF_MAX_MS);
    }
}
END_TEST

/* Two callbacks with different seeds do not retry in step. */
START_TEST(jitter_differs_between_callbacks)
{
    struct callback *a = callback_new("http://127.0.0.1:9", strdup("{}"),
                                      "a", 60000);
    struct callback *b = callback_new("http://127.0.0.1:9", strdup("{}"),
                                      "b", 60000);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    int same = 0;
    for (int i = 0; i < 8; i++) {
        long wa, wb;
        ck_assert_int_eq(callback_after_attempt(a, CURLE_COULDNT_CONNECT,
                                                &wa), CALLBACK_RETRY);
        ck_assert_int_eq(callback_after_attempt(b, CURLE_COULDNT_CONNECT,
                                                &wb), CALLBACK_RETRY);
        same += wa == wb;
    }
    ck_assert_int_lt(same, 8);
    callback_free(a);
    callback_free(b);
}
END_TEST

/* Runs the policy against a main service that never answers, on a
 * simulated clock: each wait is "spent" by moving the callback's times
 * back. Returns the simulated time at the give-up, in ms; *tries_out and
 * *max_wait_out tell how it got there. */
static uint64_t simulate_outage(int deadline_ms, int *tries_out,
                                long *max_wait_out)
{
    struct callback *cb = callback_new("http://127.0.0.1:9", strdup("{}"),
                                       "outage", deadline_ms);
    ck_assert_ptr_nonnull(cb);
    uint64_t spent = 0;
    long max_wait = 0, wait = 0;
    int tries = 0;
    while (callback_after_attempt(cb, CURLE_COULDNT_CONNECT, &wait) ==
           CALLBACK_RETRY) {
        tries++;
        ck_assert_int_ge(wait, 0);
        ck_assert_int_le(wait, CALLBACK_BACKOFF_MAX_MS);
        if (spent + (uint64_t)nominal_ms(tries) < (uint64_t)deadline_ms)
            ck_assert(wait >= nominal_ms(tries) / 2 &&
                      wait <= nominal_ms(tries));
        max_wait = wait > max_wait ? wait : max_wait;
        spent += (uint64_t)wait;
        cb->started_ms -= (uint64_t)wait;
        cb->give_up_at_ms -= (uint64_t)wait;
        ck_assert_int_lt(tries, 10000);
    }
    ck_assert_int_eq(cb->tries, tries + 1);
    callback_free(cb);
    *tries_out = tries + 1;
    *max_wait_out = max_wait;
    return spent;
}

START_TEST(retries_until_the_deadline_then_gives_up)
{
    int tries;
    long max_wait;
    /* 120 s, the default: the last try starts right at the deadline
     * (within the few real milliseconds this loop takes). */
    uint64_t spent = simulate_outage(120000, &tries, &max_wait);
    ck_assert_msg(spent >= 119900 && spent <= 120000, "gave up at %llu ms",
                  (unsigned long long)spent);
    ck_assert_int_gt(max_wait, CALLBACK_BACKOFF_MAX_MS / 2);
    /* 7.5 s to reach the cap, then 4..8 s a try: 18..33 tries in all. */
    ck_assert_msg(tries >= 18 && tries <= 33, "%d tries", tries);

    /* A deadline shorter than the first backoff: one wait, cut to it. */
    spent = simulate_outage(100, &tries, &max_wait);
    ck_assert_int_eq(tries, 2);
    ck_assert_int_le(spent, 100);
    /* No deadline at all: the first failure is the last. */
    spent = simulate_outage(0, &tries, &max_wait);
    ck_assert_int_eq(tries, 1);
    ck_assert_int_eq(spent, 0);
}
END_TEST

/* ---- Against a real socket ---- */

/* Answers each of n connections with status, "Connection: close"; with
 * listen_after_ms > 0 the socket only listens after that long, so
 * connections are refused meanwhile (the main service is down). */
struct responder {
    int fd, port, status, n, listen_after_ms;
    int served;
    pthread_t thread;
};

static void drain_request(int c)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t r = read(c, buf + len, sizeof buf - 1 - len);
        if (r <= 0)
            return;
        len += (size_t)r;
        buf[len] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "content-length:");
        if (end && cl &&
            len >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10))
            return;
    }
}

static void *responder_main(void *arg)
{
    struct responder *rs = arg;
    if (rs->listen_after_ms > 0) {
        timer_nanosleep_ms(rs->listen_after_ms);
        if (listen(rs->fd, 8) < 0)
            return NULL;
    }
    for (int i = 0; i < rs->n; i++) {
        int c = accept(rs->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        drain_request(c);
        char resp[256];
        int len = snprintf(resp, sizeof resp,
                           "HTTP/1.1 %d X\r\nContent-Length: 2\r\n"
                           "Connection: close\r\n\r\n{}", rs->status);
        ssize_t w = write(c, resp, (size_t)len);
        (void)w;
        close(c);
        rs->served++;
    }
    return NULL;
}

static void responder_start(struct responder *rs, int status, int n,
                            int listen_after_ms)
{
    *rs = (struct responder){.status = status, .n = n,
                             .listen_after_ms = listen_after_ms};
    rs->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(rs->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(rs->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    getsockname(rs->fd, (struct sockaddr *)&a, &alen);
    rs->port = ntohs(a.sin_port);
    if (listen_after_ms == 0) /* up from the start: listening before any try */
        ck_assert_int_eq(listen(rs->fd, 8), 0);
    ck_assert_int_eq(pthread_create(&rs->thread, NULL, responder_main, rs),
                     0);
}

static void responder_stop(struct responder *rs)
{
    pthread_join(rs->thread, NULL);
    close(rs->fd);
}

static struct callback *callback_to(int port, int deadline_ms)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    return callback_new(url, strdup("{}"), "cb_test", deadline_ms);
}

static const int client_errors[] = {400, 403, 404, 409, 422, 499};

START_TEST(client_errors_are_never_retried)
{
    struct responder rs;
    responder_start(&rs, client_errors[_i], 1, 0);
    /* 3 s: room for several retries (the first after 0.25-0.5 s), so a
     * retried 4xx shows in the count, and the test stays short even then. */
    struct callback *cb = callback_to(rs.port, 3000);
    double t0 = harness_now();
    ck_assert(!callback_send_blocking(cb));
    ck_assert_int_eq(cb->tries, 1);
    ck_assert_msg(harness_now() - t0 < 1.0, "no backoff after a 4xx");
    callback_free(cb);
    responder_stop(&rs);
    ck_assert_int_eq(rs.served, 1);
}
END_TEST

START_TEST(outlives_an_outage)
{
    /* Down (connections refused) for 2.5 s, then up: delivered on the
     * first try after it is back, within one backoff of that moment. */
    struct responder rs;
    responder_start(&rs, 200, 1, 2500);
    struct callback *cb = callback_to(rs.port, 20000);
    double t0 = harness_now();
    ck_assert(callback_send_blocking(cb));
    double took = harness_now() - t0;
    ck_assert_int_ge(cb->tries, 3); /* 0.5 + 1 s of backoff < 2.5 s */
    ck_assert_msg(took >= 2.4 && took < 2.5 + 4.5, "delivered after %.2f s",
                  took);
    callback_free(cb);
    responder_stop(&rs);
}
END_TEST

/* ---- The retry rule, against the scripted fake main service ---- */

/* One callback per status, each to its own fake main service that answers
 * that status and then 200, all sent at once from threads (so the test
 * waits one backoff, not one per status). */
struct scripted {
    struct fake_main fake;
    struct callback *cb;
    bool delivered;
    double took;
    pthread_t thread;
};

static void *scripted_send(void *arg)
{
    struct scripted *sc = arg;
    double t0 = harness_now();
    sc->delivered = callback_send_blocking(sc->cb);
    sc->took = harness_now() - t0;
    return NULL;
}

static void send_each(const int *statuses, int n, struct scripted *sc)
{
    for (int i = 0; i < n; i++) {
        const int script[] = {statuses[i], 200};
        fake_main_start(&sc[i].fake, 0, script, 2);
        sc[i].cb = callback_to(sc[i].fake.port, 10000);
        ck_assert_ptr_nonnull(sc[i].cb);
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&sc[i].thread, NULL, scripted_send,
                                        &sc[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(sc[i].thread, NULL);
}

static void scripted_free(struct scripted *sc, int n)
{
    for (int i = 0; i < n; i++) {
        callback_free(sc[i].cb);
        fake_main_close(&sc[i].fake);
    }
}

START_TEST(temporary_statuses_are_retried)
{
    static const int temporary[] = {408, 425, 429, 503, 500, 502, 504};
    enum { N = sizeof temporary / sizeof temporary[0] };
    struct scripted sc[N];
    send_each(temporary, N, sc);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(sc[i].delivered && sc[i].cb->tries == 2,
                      "HTTP %d: delivered %d after %d tries", temporary[i],
                      sc[i].delivered, sc[i].cb->tries);
        ck_assert_int_eq(fake_main_requests(&sc[i].fake), 2);
    }
    scripted_free(sc, N);
}
END_TEST

START_TEST(permanent_statuses_are_given_up_at_once)
{
    static const int permanent[] = {400, 401, 403, 404, 409, 410, 413, 422,
                                    501, 505};
    enum { N = sizeof permanent / sizeof permanent[0] };
    struct scripted sc[N];
    send_each(permanent, N, sc);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(!sc[i].delivered && sc[i].cb->tries == 1,
                      "HTTP %d: delivered %d after %d tries", permanent[i],
                      sc[i].delivered, sc[i].cb->tries);
        ck_assert_msg(sc[i].took < 0.2, "HTTP %d: no backoff, took %.3f s",
                      permanent[i], sc[i].took);
        ck_assert_int_eq(fake_main_requests(&sc[i].fake), 1);
    }
    scripted_free(sc, N);
}
END_TEST

/* The second try comes after what Retry-After asked, not after the first
 * backoff (250-500 ms). */
START_TEST(retry_after_seconds_is_honoured)
{
    static const int script[] = {503, 200};
    struct fake_main f;
    fake_main_listen(&f, 0, script, 2);
    fake_main_set_header(&f, 0, "Retry-After: 1");
    fake_main_run(&f);
    struct callback *cb = callback_to(f.port, 10000);
    ck_assert(callback_send_blocking(cb));
    ck_assert_int_eq(cb->tries, 2);
    double gap = fake_main_at(&f, 1) - fake_main_at(&f, 0);
    ck_assert_msg(gap >= 0.95 && gap < 1.6, "second try %.3f s after the "
                  "first (Retry-After: 1)", gap);
    callback_free(cb);
    fake_main_close(&f);
}
END_TEST

/* An HTTP-date an hour away is honoured, but only up to the callback's
 * deadline: the last try starts at the deadline, as after a backoff. */
START_TEST(retry_after_date_is_cut_by_the_deadline)
{
    static const int script[] = {429, 200};
    char header[80];
    time_t later = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(header, sizeof header, "Retry-After: %a, %d %b %Y %H:%M:%S GMT",
             &tm);
    struct fake_main f;
    fake_main_listen(&f, 0, script, 2);
    fake_main_set_header(&f, 0, header);
    fake_main_run(&f);
    struct callback *cb = callback_to(f.port, 900);
    ck_assert(callback_send_blocking(cb));
    ck_assert_int_eq(cb->tries, 2);
    double gap = fake_main_at(&f, 1) - fake_main_at(&f, 0);
    /* The first backoff would be 250-500 ms: past 700, Retry-After won. */
    ck_assert_msg(gap >= 0.7 && gap < 1.4, "second try %.3f s after the "
                  "first (asked for an hour, deadline 0.9 s)", gap);
    callback_free(cb);
    fake_main_close(&f);
}
END_TEST

static Suite *callback_suite(void)
{
    Suite *s = suite_create("callback");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, backoff_doubles_to_8s_with_jitter);
    tcase_add_test(tc, jitter_differs_between_callbacks);
    tcase_add_test(tc, retries_until_the_deadline_then_gives_up);
    suite_add_tcase(s, tc);
    tc = tcase_create("network");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, client_errors_are_never_retried, 0,
                        (int)(sizeof client_errors / sizeof *client_errors));
    tcase_add_test(tc, outlives_an_outage);
    suite_add_tcase(s, tc);
    tc = tcase_create("rule");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, temporary_statuses_are_retried);
    tcase_add_test(tc, permanent_statuses_are_given_up_at_once);
    tcase_add_test(tc, retry_after_seconds_is_honoured);
    tcase_add_test(tc, retry_after_date_is_cut_by_the_deadline);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_callback", true);
    callback_global_init();
    SRunner *sr = srunner_create(callback_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    callback_global_cleanup();
    return failed == 0 ? 0 : 1;
}
