/* Unit tests for common/config.c's config_number, the one reader of a
 * number on a command line (the stages' options, loadgen's, the main
 * service's), and for the message a stage prints when one is bad. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"

#define UNTOUCHED 4242L

/* config_number(s, min, max) as "ok V" or "no" (and *out untouched). */
static const char *number(const char *s, long min, long max)
{
    static char buf[64];
    long v = UNTOUCHED;
    if (config_number(s, min, max, &v))
        snprintf(buf, sizeof buf, "ok %ld", v);
    else
        snprintf(buf, sizeof buf, v == UNTOUCHED ? "no" : "no, but *out %ld",
                 v);
    return buf;
}

START_TEST(whole_numbers_in_range_are_read)
{
    ck_assert_str_eq(number("0", 0, 65535), "ok 0");
    ck_assert_str_eq(number("8001", 0, 65535), "ok 8001");
    ck_assert_str_eq(number("65535", 0, 65535), "ok 65535"); /* max itself */
    ck_assert_str_eq(number("16", 16, 65536), "ok 16");      /* min itself */
    ck_assert_str_eq(number("007", 0, 10), "ok 7"); /* decimal, not octal */
    ck_assert_str_eq(number("-5", -10, 10), "ok -5");
    ck_assert_str_eq(number("-0", 0, 10), "ok 0");
}
END_TEST

START_TEST(out_of_range_and_negative_are_refused)
{
    ck_assert_str_eq(number("65536", 0, 65535), "no");
    ck_assert_str_eq(number("15", 16, 65536), "no");
    ck_assert_str_eq(number("0", 1, 100), "no");
    ck_assert_str_eq(number("-1", 0, 65535), "no");
    ck_assert_str_eq(number("-11", -10, 10), "no");
}
END_TEST

/* strtol clamps an overflow to LONG_MAX (or LONG_MIN) and says so only in
 * errno: a parser that forgets errno reads 2^63 as a valid LONG_MAX. */
START_TEST(overflow_is_refused_not_clamped)
{
    char max[32], min[32], want[40];
    snprintf(max, sizeof max, "%ld", LONG_MAX);
    snprintf(min, sizeof min, "%ld", LONG_MIN);
    snprintf(want, sizeof want, "ok %ld", LONG_MAX);
    ck_assert_str_eq(number(max, 0, LONG_MAX), want);
    snprintf(want, sizeof want, "ok %ld", LONG_MIN);
    ck_assert_str_eq(number(min, LONG_MIN, 0), want);
    ck_assert_str_eq(number("9223372036854775808", 0, LONG_MAX), "no");
    ck_assert_str_eq(number("99999999999999999999999", 0, LONG_MAX), "no");
    ck_assert_str_eq(number("-9223372036854775809", LONG_MIN, 0), "no");
    /* An int option must not wrap either: 2^32 + 80 is not port 80. */
    ck_assert_str_eq(number("4294967376", 0, 65535), "no");
}
END_TEST

START_TEST(empty_and_junk_are_refused)
{
    static const char *const junk[] = {
        "",      /* empty */
        "-",     /* a sign alone */
        "12x",   /* trailing junk */
        "1.5",   /* not whole */
        "12 ",   /* trailing blank */
        " 12",   /* leading blank: strtol would skip it */
        "\t12",
        "+12",   /* strtol would take the plus */
        "0x1f",  /* not decimal */
        "1e3",
        "--5",
        "5-",
        "twelve",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        ck_assert_msg(strcmp(number(junk[i], -100000, 100000), "no") == 0,
                      "'%s': %s", junk[i], number(junk[i], -100000, 100000));
}
END_TEST

/* A stage told a bad number exits 2 naming the option, the range and the
 * value, so the user sees what to fix. */
START_TEST(a_stage_names_the_option_and_the_bad_value)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        char *argv[] = {"00-test", "--port", "80x", NULL};
        struct config cfg;
        config_parse(&cfg, 3, argv, "00-test", 8000, 0, "A test.");
        _exit(0); /* not reached: the option is bad */
    }
    close(fds[1]);
    char err[512];
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof err &&
           (n = read(fds[0], err + len, sizeof err - 1 - len)) > 0)
        len += (size_t)n;
    err[len] = '\0';
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 2);
    ck_assert_msg(strstr(err, "--port") && strstr(err, "'80x'") &&
                  strstr(err, "65535"), "stderr: %s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config_number");
    tcase_add_test(tc, whole_numbers_in_range_are_read);
    tcase_add_test(tc, out_of_range_and_negative_are_refused);
    tcase_add_test(tc, overflow_is_refused_not_clamped);
    tcase_add_test(tc, empty_and_junk_are_refused);
    tcase_add_test(tc, a_stage_names_the_option_and_the_bad_value);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
