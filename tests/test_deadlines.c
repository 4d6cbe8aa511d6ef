/* The deadlines every server keeps (common/timer.h, common/deadlines.h):
 * the time left to a deadline is what poll and the coroutines' waits take,
 * and the three deadlines of reading a request are each fixed when their
 * phase begins, whatever arrives later. The stages' end-to-end checks of
 * the same rule are in test_attack (a slow client is cut off in time). */
#include <check.h>
#include <limits.h>
#include <string.h>

#include "deadlines.h"
#include "harness.h"
#include "http.h"
#include "timer.h"

START_TEST(time_left_is_a_poll_timeout)
{
    uint64_t now = 1000;
    ck_assert_int_eq(timer_ms_left(1250, now), 250);
    ck_assert_int_eq(timer_ms_left(1000, now), 0);
    ck_assert_int_eq(timer_ms_left(10, now), 0); /* passed: never negative */
    ck_assert_int_eq(timer_ms_left(now + (1ull << 40), now), INT_MAX);
    ck_assert_int_eq(timer_ms_left(TIMER_NEVER, now), -1);
    ck_assert_uint_eq(timer_deadline_in(-1), TIMER_NEVER);
    uint64_t before = timer_now_ms();
    uint64_t d = timer_deadline_in(500);
    ck_assert(d >= before + 500 && d <= timer_now_ms() + 500);
}
END_TEST

static void feed(struct http_parser *p, const char *text)
{
    ck_assert_uint_eq(http_parser_feed(p, text, strlen(text)), strlen(text));
    http_parser_parse(p);
}

/* The head's deadline is fixed by its first byte, a CR of an empty line
 * included, and more bytes, however late, never move it. */
START_TEST(the_head_deadline_is_fixed_at_the_first_byte)
{
    struct http_parser p;
    http_parser_init(&p);
    struct deadlines d;
    deadlines_start(&d, 1000);
    ck_assert_uint_eq(deadlines_update(&d, &p, 200, 300), d.idle);
    ck_assert(d.head == 0 && d.body == 0);

    uint64_t before = timer_now_ms();
    feed(&p, "\r");
    uint64_t head = deadlines_update(&d, &p, 200, 300);
    ck_assert(head >= before + 200 && head <= timer_now_ms() + 200);
    ck_assert_uint_eq(head, d.head);
    harness_sleep_ms(30);
    feed(&p, "\nGET / HTTP/1.1\r\nHost: x\r\n");
    ck_assert_uint_eq(deadlines_update(&d, &p, 200, 300), head);
    ck_assert_uint_eq(deadlines_due(&d), head);
    http_parser_free(&p);
}
END_TEST

/* The body's deadline starts at the head's end and then governs alone. */
START_TEST(the_body_deadline_starts_at_the_head_end)
{
    struct http_parser p;
    http_parser_init(&p);
    struct deadlines d;
    deadlines_start(&d, 1000);
    feed(&p, "POST /x HTTP/1.1\r\nHost: x\r\n");
    deadlines_update(&d, &p, 200, 300);
    uint64_t head = d.head;
    harness_sleep_ms(30);
    uint64_t before = timer_now_ms();
    feed(&p, "Content-Length: 4\r\n\r\nab");
    uint64_t body = deadlines_update(&d, &p, 200, 300);
    ck_assert_uint_eq(d.head, head);
    ck_assert(body >= before + 300 && body <= timer_now_ms() + 300);
    harness_sleep_ms(30);
    feed(&p, "c");
    ck_assert_uint_eq(deadlines_update(&d, &p, 200, 300), body);

    /* The next request begins a new wait: idle again, nothing begun. */
    deadlines_start(&d, 1000);
    ck_assert(d.head == 0 && d.body == 0);
    ck_assert_uint_eq(deadlines_due(&d), d.idle);
    http_parser_free(&p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("deadlines");
    TCase *tc = tcase_create("deadlines");
    tcase_add_test(tc, time_left_is_a_poll_timeout);
    tcase_add_test(tc, the_head_deadline_is_fixed_at_the_first_byte);
    tcase_add_test(tc, the_body_deadline_starts_at_the_head_end);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
