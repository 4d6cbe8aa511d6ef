/* The build on a system without epoll (the Makefile's "Native builds need
 * Linux"): with HAVE_EPOLL=no, make builds exactly 01-03 and says so in
 * one line that points at the container; any other goal (make test, make
 * demo...) stops at once with one line that does the same; on a system
 * that is not Linux (SYSTEM=Darwin), nothing builds and one line says so.
 * Checked with dry runs (make -n -B), which build nothing; with epoll, the
 * same dry run builds every stage and says nothing of the kind. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

struct dry_run {
    char *out;       /* make's own lines ("make: ..."), and what it linked:
                        a summary short enough for a failure message */
    int status;      /* make's exit status */
    char linked[16][64]; /* programs linked into build/ (-o build/NAME) */
    int nlinked;
    int hint_lines;  /* lines that point at the container */
    bool loop_compiled; /* common/loop.c (epoll) was compiled */
};

/* make -s -n -B ARGS in the repository, as a make of its own, of the
 * plain build: `make test SAN=1` exports SAN to its tests, and a dry run
 * under it would link into build/asan/. */
static void dry_run(const char *args, struct dry_run *r)
{
    memset(r, 0, sizeof *r);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u SAN make -s -n -B "
             "%s 2>&1",
             args);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    char line[8192];
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "make: ") || strstr(line, "Makefile:"))
            harness_appendf(&r->out, "%s", line);
        if (strstr(line, "README.md, \"macOS and Windows\""))
            r->hint_lines++;
        if (strstr(line, " -c common/loop.c "))
            r->loop_compiled = true;
        /* A link: "... -o build/NAME" at the end of the line. */
        char *o = strstr(line, " -o build/");
        if (o && r->nlinked < 16) {
            char name[64];
            if (sscanf(o, " -o build/%63[^ \n]", name) == 1 &&
                !strchr(name, '/') && !strstr(name, ".a")) {
                snprintf(r->linked[r->nlinked++], 64, "%s", name);
                harness_appendf(&r->out, "linked build/%s\n", name);
            }
        }
    }
    r->status = pclose(p);
    if (r->out == NULL)
        r->out = strdup("");
}

static bool linked(const struct dry_run *r, const char *name)
{
    for (int i = 0; i < r->nlinked; i++)
        if (strcmp(r->linked[i], name) == 0)
            return true;
    return false;
}

START_TEST(without_epoll_make_builds_exactly_01_to_03_and_says_so)
{
    struct dry_run r;
    dry_run("HAVE_EPOLL=no all", &r);
    ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
                  "make all without epoll failed:\n%s", r.out);
    ck_assert_msg(r.nlinked == 3 && linked(&r, "01-blocking") &&
                      linked(&r, "02-fork") && linked(&r, "03-threads"),
                  "expected exactly 01-03 linked, got %d programs:\n%s",
                  r.nlinked, r.out);
    ck_assert_msg(!r.loop_compiled, "common/loop.c (epoll) compiled:\n%s",
                  r.out);
    ck_assert_msg(r.hint_lines == 1, "expected one line naming the "
                  "container, got %d:\n%s", r.hint_lines, r.out);
    ck_assert_msg(strstr(r.out, "make: no epoll here: building 01-blocking "
                                "02-fork 03-threads only") != NULL,
                  "the line does not name the stages built:\n%s", r.out);
    free(r.out);
}
END_TEST

START_TEST(without_epoll_other_goals_stop_with_one_line)
{
    static const char *const goals[] = {"test", "demo", "examples"};
    for (size_t i = 0; i < sizeof goals / sizeof goals[0]; i++) {
        char args[64];
        snprintf(args, sizeof args, "HAVE_EPOLL=no %s", goals[i]);
        struct dry_run r;
        dry_run(args, &r);
        ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0,
                      "make %s without epoll did not stop:\n%s", goals[i],
                      r.out);
        ck_assert_msg(r.nlinked == 0 && r.hint_lines == 1 &&
                          strstr(r.out, "needs epoll") != NULL,
                      "make %s: expected one line about epoll and the "
                      "container, nothing built:\n%s", goals[i], r.out);
        free(r.out);
    }
}
END_TEST

/* Not Linux (macOS): nothing builds, and one line says why and where to
 * go instead. */
START_TEST(elsewhere_than_linux_make_builds_nothing_and_says_so)
{
    struct dry_run r;
    dry_run("SYSTEM=Darwin all", &r);
    ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0,
                  "make all on Darwin did not stop:\n%s", r.out);
    ck_assert_msg(r.nlinked == 0 && r.hint_lines == 1 &&
                      strstr(r.out, "on Darwin nothing here builds "
                                    "natively") != NULL,
                  "expected one line and nothing built:\n%s", r.out);
    free(r.out);
}
END_TEST

/* The control: with epoll (Linux, where make test runs), every stage. */
START_TEST(with_epoll_make_builds_every_stage_and_no_note)
{
    struct dry_run r;
    dry_run("HAVE_EPOLL=yes all", &r);
    ck_assert_msg(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
                  "make all failed:\n%s", r.out);
    static const char *const stages[] = {
        "01-blocking", "02-fork", "03-threads", "04-select",
        "05-epoll-callbacks", "06-coroutines", "main-service"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        ck_assert_msg(linked(&r, stages[i]), "%s not linked:\n%s",
                      stages[i], r.out);
    ck_assert_int_eq(r.hint_lines, 0);
    free(r.out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("make gate");
    TCase *tc = tcase_create("no epoll");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, without_epoll_make_builds_exactly_01_to_03_and_says_so);
    tcase_add_test(tc, without_epoll_other_goals_stop_with_one_line);
    tcase_add_test(tc, elsewhere_than_linux_make_builds_nothing_and_says_so);
    tcase_add_test(tc, with_epoll_make_builds_every_stage_and_no_note);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
