/* test_log: log lines escape what a client controls (common/log_escape), so
 * a request id cannot forge lines or send terminal escapes, and the strict
 * UTF-8 check behind it (common/utf8). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "utf8.h"

static const char *esc(const char *in, size_t inlen, size_t outlen)
{
    static char out[512];
    ck_assert_uint_le(outlen, sizeof out);
    size_t n = log_escape(out, outlen, in, inlen);
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

/* A string literal, all of it (embedded NULs included). */
#define ESC(lit) esc(lit, sizeof(lit) - 1, 512)

START_TEST(controls_and_bad_bytes_are_escaped)
{
    const char forged[] = "id\n+   9.999s 05 pid 1 | fake line";
    ck_assert_str_eq(esc(forged, strlen(forged), 512),
                     "id\\x0a+   9.999s 05 pid 1 | fake line");
    ck_assert_str_eq(ESC("\x1b[2J\r\t\x7f"),
                     "\\x1b[2J\\x0d\\x09\\x7f");
    /* U+009B (C1 CSI, as UTF-8 c2 9b), a lone continuation byte, a
     * truncated sequence, an overlong slash, a surrogate. */
    ck_assert_str_eq(ESC("\xc2\x9b|\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80"),
                     "\\xc2\\x9b|\\x80|\\xe2\\x82|\\xc0\\xaf|\\xed\\xa0\\x80");
    /* A NUL inside the text is shown, not a line end. */
    ck_assert_str_eq(ESC("a\0b"), "a\\x00b");
}
END_TEST

START_TEST(text_and_unicode_pass_unchanged)
{
    const char *ru = "курс 75.5 \xe2\x82\xbd \xf0\x9f\x92\xb5 \"ok\"";
    ck_assert_str_eq(esc(ru, strlen(ru), 512), ru);
    /* A backslash is doubled, so "\\x0a" typed by a client stays
     * distinguishable from an escaped newline. */
    ck_assert_str_eq(ESC("a\\x0a"), "a\\\\x0a");
}
END_TEST

START_TEST(cut_at_a_character_boundary)
{
    /* 5 bytes of room (4 + NUL): "ab" + a 3-byte char would need 6. */
    ck_assert_str_eq(esc("ab\xe2\x82\xbd", 5, 5), "ab");
    ck_assert_str_eq(esc("a\nb", 3, 4), "a"); /* \x0a needs 4 more */
    ck_assert_str_eq(esc("abc", 3, 1), "");
}
END_TEST

START_TEST(utf8_is_strict)
{
    ck_assert(utf8_valid((const unsigned char *)"", 0));
    ck_assert(utf8_valid((const unsigned char *)"\xf4\x8f\xbf\xbf", 4));
    ck_assert(!utf8_valid((const unsigned char *)"\xf4\x90\x80\x80", 4));
    ck_assert(!utf8_valid((const unsigned char *)"\xe0\x80\xaf", 3));
    ck_assert(!utf8_valid((const unsigned char *)"\xff", 1));
    unsigned cp = 0;
    ck_assert_uint_eq(utf8_char_len((const unsigned char *)"\xd0\xba", 2, &cp), 2);
    ck_assert_uint_eq(cp, 0x43a);
}
END_TEST

/* The whole path: a hostile message through log_info comes out as exactly
 * one line on stderr, with no raw control byte in it. */
START_TEST(log_info_writes_one_clean_line)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
    log_init("test", false);
    log_info("request %s done", "x\ny\x1b]0;owned\x07");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[2048];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strchr(buf, '\n') == buf + n - 1, "not one line: %s", buf);
    for (ssize_t i = 0; i < n - 1; i++)
        ck_assert_msg((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f,
                      "raw control byte %d in %s", buf[i], buf);
    ck_assert_ptr_nonnull(strstr(buf, "request x\\x0ay\\x1b]0;owned\\x07 done"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("escape");
    tcase_add_test(tc, controls_and_bad_bytes_are_escaped);
    tcase_add_test(tc, text_and_unicode_pass_unchanged);
    tcase_add_test(tc, cut_at_a_character_boundary);
    tcase_add_test(tc, utf8_is_strict);
    tcase_add_test(tc, log_info_writes_one_clean_line);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
