/* Unit tests for the harness's response reader (tests/harness.h), which
 * every raw-socket test relies on: a response is framed by its blank line
 * and its Content-Length, and nothing past it is read. Each case writes
 * the server's side of a socketpair by hand. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define GET_OK "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

/* A connected pair: sv[0] the test's side, sv[1] the "server". */
static void pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* Two pipelined answers and the start of a third arrive in one write:
 * each read takes one answer whole, and the third's bytes stay in the
 * socket for whoever reads next. */
START_TEST(pipelined_answers_are_read_one_at_a_time)
{
    int sv[2];
    pair(sv);
    const char *third = "HTTP/1.1 404 Not";
    harness_send_text(sv[1], GET_OK "HTTP/1.1 503 Busy\r\nconnection: "
                                    "close\r\ncontent-length: 2\r\n\r\n{}");
    harness_send_text(sv[1], third);
    struct harness_response r;
    ck_assert_int_eq(harness_read_response(sv[0], 1000, &r), HARNESS_READ_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.text, GET_OK);
    ck_assert_str_eq(r.body, "hello");
    ck_assert_uint_eq(r.body_len, 5);
    ck_assert(!r.close && !r.keep_alive);
    harness_response_free(&r);
    ck_assert_int_eq(harness_read_response(sv[0], 1000, &r), HARNESS_READ_OK);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "{}");
    ck_assert(r.close);
    harness_response_free(&r);
    char rest[64];
    ssize_t n = recv(sv[0], rest, sizeof rest - 1, MSG_DONTWAIT);
    ck_assert_int_eq(n, (ssize_t)strlen(third));
    rest[n] = '\0';
    ck_assert_str_eq(rest, third);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* An interim 100 has no body, whatever its head says, and the final
 * answer right behind it is read whole next; a head that arrives a byte
 * at a time is still one head. */
START_TEST(an_interim_answer_has_no_body)
{
    int sv[2];
    pair(sv);
    const char *both = "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
                       GET_OK;
    for (const char *p = both; *p; p++)
        harness_send_all(sv[1], p, 1);
    struct harness_response r;
    ck_assert_int_eq(harness_read_response(sv[0], 1000, &r), HARNESS_READ_OK);
    ck_assert_int_eq(r.status, 100);
    ck_assert_uint_eq(r.body_len, 0);
    harness_response_free(&r);
    char *text = harness_read_response_text(sv[0], 1000);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, GET_OK);
    free(text);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* What is not a whole response says why, and leaves nothing to free. */
START_TEST(what_is_not_a_response_is_named)
{
    static const struct {
        const char *sent;
        bool close;
        enum harness_read want;
    } cases[] = {
        {"", true, HARNESS_READ_CLOSED},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true,
         HARNESS_READ_GARBAGE},                  /* cut short */
        {"SSH-2.0-OpenSSH\r\n\r\n", false, HARNESS_READ_GARBAGE},
        {"HTTP/1.1 OK\r\n\r\n", false, HARNESS_READ_GARBAGE}, /* no code */
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false,
         HARNESS_READ_TIMEOUT},                  /* the rest never comes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int sv[2];
        pair(sv);
        harness_send_text(sv[1], cases[i].sent);
        if (cases[i].close)
            close(sv[1]);
        struct harness_response r;
        double t0 = harness_now();
        enum harness_read how = harness_read_response(sv[0], 300, &r);
        double took = harness_now() - t0;
        ck_assert_msg(how == cases[i].want, "case %zu: %s, want %s", i,
                      harness_read_name(how),
                      harness_read_name(cases[i].want));
        ck_assert_ptr_null(r.text);
        ck_assert_int_eq(r.status, 0);
        if (how == HARNESS_READ_TIMEOUT)
            ck_assert_msg(took >= 0.29, "timed out after %.3f s", took);
        close(sv[0]);
        if (!cases[i].close)
            close(sv[1]);
    }
}
END_TEST

/* The frame of a buffered response, as a reader with its own buffer (the
 * soak) uses it: the size once the head is in, before the body is. */
START_TEST(frame_and_header_lookup)
{
    const char *head = "HTTP/1.1 201 Created\r\nX-Content-Length: 9\r\n"
                       "CONTENT-LENGTH:  12\r\n\r\n";
    size_t head_len = 0;
    int status = 0;
    ck_assert_int_eq(harness_response_frame(head, strlen(head) - 1,
                                            &head_len, &status), 0);
    ck_assert_int_eq(harness_response_frame(head, strlen(head), &head_len,
                                            &status),
                     (long)strlen(head) + 12);
    ck_assert_uint_eq(head_len, strlen(head));
    ck_assert_int_eq(status, 201);
    const char *v = harness_header(head, head_len, "content-length");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(strncmp(v, "12\r\n", 4), 0);
    ck_assert_ptr_null(harness_header(head, head_len, "Length"));
    ck_assert_int_eq(harness_response_frame("GET / HTTP/1.1", 14, NULL,
                                            NULL), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("harness");
    TCase *tc = tcase_create("response reader");
    tcase_add_test(tc, pipelined_answers_are_read_one_at_a_time);
    tcase_add_test(tc, an_interim_answer_has_no_body);
    tcase_add_test(tc, what_is_not_a_response_is_named);
    tcase_add_test(tc, frame_and_header_lookup);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
