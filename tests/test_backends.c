/* The event loop's backends seen from outside: 05 and 06 on io_uring
 * really run on it, and when the kernel refuses io_uring they say so in
 * one line and serve on epoll.
 *
 * How the refusal is forced: a seccomp filter, installed in the test's
 * own process (Check runs each test in a child of its own) and inherited
 * by the stage it starts, makes the io_uring_setup system call fail with
 * EPERM or ENOSYS. That is what a container's seccomp profile does
 * (Docker's default one answers io_uring_setup with EPERM since 25.0), and
 * the very errno the kernel itself returns under kernel.io_uring_disabled
 * (EPERM) or without CONFIG_IO_URING (ENOSYS); the filter only decides
 * the answer before the kernel's own code would, so everything the
 * server does after the system call is what it would do there. The
 * sysctl itself is not touched: it is the whole machine's. In a build
 * without liburing the same line says so instead, and the test checks
 * that. */
#include <check.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "loop.h"

#if defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

static const char *const stages[] = {"05-epoll-callbacks", "06-coroutines"};
#define NUM_STAGES ((int)(sizeof stages / sizeof stages[0]))

/* The errnos a kernel refuses io_uring with, one row each. */
static const int refusals[] = {EPERM, ENOSYS};
#define NUM_REFUSALS ((int)(sizeof refusals / sizeof refusals[0]))

#ifdef HAVE_LIBURING
static const bool built_with_uring = true;
#else
static const bool built_with_uring = false;
#endif

/* From now on, io_uring_setup fails with err in this process and in every
 * program it starts. False if this system cannot do that (then the test
 * says SKIPPED). */
static bool refuse_io_uring(int err)
{
#ifdef NATIVE_AUDIT_ARCH
    const char *fork_mode = getenv("CK_FORK");
    ck_assert_msg(!fork_mode || strcmp(fork_mode, "no") != 0,
                  "this test filters its own process: not with CK_FORK=no");
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K,
                 SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0],
                              .filter = filter};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
    (void)err;
    return false;
#endif
}

/* The lines of log that contain needle. */
static int count_lines(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void expect_serves(int port, const char *stage)
{
    struct http_result r;
    http_request("GET", port, "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, stage));
    http_result_free(&r);
    http_request("POST", port, "/api/exchange_sync",
                 "{\"request_id\": \"b\", \"exchange_rate\": 2, \"bills\": ["
                 "{\"denomination_id\": 1, \"denomination\": 5, "
                 "\"count\": 3}]}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"total_rub\":30.0"));
    http_result_free(&r);
}

/* Refused by the kernel (each errno, each stage): one line on stderr that
 * says why, then the stage serves on epoll. */
START_TEST(a_refused_io_uring_is_said_once_and_epoll_serves)
{
    int err = refusals[_i / NUM_STAGES];
    const char *stage = stages[_i % NUM_STAGES];
    if (!harness_stage_selected(stage))
        return;
    if (!refuse_io_uring(err)) {
        printf("SKIPPED %s: no seccomp filter here\n", __func__);
        return;
    }
    errno = 0;
    ck_assert_ptr_null(loop_new_backend(LOOP_BACKEND_URING));
    ck_assert_int_eq(errno, built_with_uring ? err : ENOTSUP);
    struct proc s;
    harness_stage_start(&s, stage, &(struct stage_opts){
        .delay_ms = 10, .args = (const char *const[]){"--backend", "uring",
                                                      NULL}});
    expect_serves(s.port, stage);
    const char *log = harness_read_log(&s);
    ck_assert_int_eq(count_lines(log, "no io_uring"), 1);
    ck_assert_int_eq(count_lines(log, "running on epoll"), 1);
    char why[128];
    snprintf(why, sizeof why, "(%s); running on epoll",
             strerror(built_with_uring ? err : ENOTSUP));
    ck_assert_msg(strstr(log, why), "the line does not say why: %s", log);
    ck_assert_ptr_nonnull(strstr(log, "event loop on epoll"));
    ck_assert_int_eq(proc_stop(&s, 10000), 0);
}
END_TEST

/* Not refused: the stage says it runs on io_uring, and serves. A build
 * without liburing says it falls back instead. */
START_TEST(uring_asked_and_granted_runs_on_uring)
{
    const char *stage = stages[_i];
    if (!harness_stage_selected(stage))
        return;
    struct proc s;
    harness_stage_start(&s, stage, &(struct stage_opts){
        .delay_ms = 10, .args = (const char *const[]){"--backend", "uring",
                                                      NULL}});
    expect_serves(s.port, stage);
    const char *log = harness_read_log(&s);
    if (built_with_uring)
        ck_assert_msg(strstr(log, "event loop on uring"), "%s", log);
    else
        ck_assert_ptr_nonnull(strstr(log, "built without liburing"));
    ck_assert_int_eq(proc_stop(&s, 10000), 0);
}
END_TEST

/* And the default stays epoll, without a word about io_uring. */
START_TEST(epoll_is_the_default)
{
    const char *stage = stages[_i];
    if (!harness_stage_selected(stage))
        return;
    struct proc s;
    harness_stage_start(&s, stage, &(struct stage_opts){.delay_ms = 10});
    expect_serves(s.port, stage);
    const char *log = harness_read_log(&s);
    if (!getenv("STAGE_BACKEND")) /* make test-uring changes the default */
        ck_assert_ptr_nonnull(strstr(log, "event loop on epoll"));
    ck_assert_ptr_null(strstr(log, "io_uring"));
    ck_assert_int_eq(proc_stop(&s, 10000), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backends");
    TCase *tc = tcase_create("backends");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, a_refused_io_uring_is_said_once_and_epoll_serves,
                        0, NUM_REFUSALS * NUM_STAGES);
    tcase_add_loop_test(tc, uring_asked_and_granted_runs_on_uring, 0,
                        NUM_STAGES);
    tcase_add_loop_test(tc, epoll_is_the_default, 0, NUM_STAGES);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
