/* The labs' generator (tools/lab.sh, make lab): every manifest of labs/
 * still matches its stage, so work that renames a cut function fails
 * here, in make test, and not in a student's make lab. In a scratch copy
 * of 04-select, it is proven to say "wrong": a renamed function stops it,
 * naming the function and writing nothing; a lab that exists is not
 * written over without --force; and `solve` puts back exactly what was
 * cut, and refuses a lab changed anywhere else. Grading the labs (as
 * written: nothing; solved: full marks) is make grade-check's, minutes
 * long. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

static const char *const lab_names[] = {"02-fork", "03-threads", "04-select",
                                        "05-epoll-callbacks", "06-coroutines"};
#define NUM_LABS (int)(sizeof lab_names / sizeof lab_names[0])

/* Runs a shell command; its output (stdout and stderr) in *out, malloc'd.
 * Returns its exit status. */
static int run(const char *cmd, char **out)
{
    char *full = NULL;
    ck_assert(asprintf(&full, "(%s) 2>&1", cmd) >= 0);
    FILE *p = popen(full, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    *out = NULL;
    char line[1024];
    while (fgets(line, sizeof line, p))
        harness_appendf(out, "%s", line);
    int st = pclose(p);
    free(full);
    if (*out == NULL)
        *out = strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(every_manifest_matches_its_stage)
{
    char cmd[256], *out;
    snprintf(cmd, sizeof cmd, "./tools/lab.sh check labs/%s.lab", lab_names[_i]);
    int rc = run(cmd, &out);
    ck_assert_msg(rc == 0, "%s: %s", cmd, out);
    free(out);
}
END_TEST

/* A scratch copy of what make lab STAGE=4 reads, in a new folder; the
 * shell commands that follow run in it. */
static char scratch[64];

static void scratch_make(void)
{
    snprintf(scratch, sizeof scratch, "%s/lab-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert(mkdtemp(scratch) != NULL);
    char *cmd, *out;
    ck_assert(asprintf(&cmd, "s=%s && mkdir -p $s/tools $s/labs $s/common "
                       "&& cp tools/lab.sh $s/tools/ && cp labs/04-select.lab "
                       "$s/labs/ && cp -r 04-select $s/ && cp common/evconn.c "
                       "$s/common/", scratch) >= 0);
    ck_assert_msg(run(cmd, &out) == 0, "%s", out);
    free(out);
    free(cmd);
}

/* Runs cmd in the scratch copy. */
static int in_scratch(const char *cmd, char **out)
{
    char *full = NULL;
    ck_assert(asprintf(&full, "cd %s && %s", scratch, cmd) >= 0);
    int rc = run(full, out);
    free(full);
    return rc;
}

static void scratch_remove(void)
{
    char cmd[128], *out;
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    run(cmd, &out);
    free(out);
}

START_TEST(a_renamed_function_stops_it_by_name)
{
    scratch_make();
    char *out;
    ck_assert(in_scratch("sed -i 's/^static bool serve_one_turn(void)$/"
                         "static bool serve_turn(void)/' 04-select/server.c",
                         &out) == 0);
    free(out);
    int rc = in_scratch("tools/lab.sh new labs/04-select.lab", &out);
    ck_assert_msg(rc != 0 && strstr(out, "no definition of serve_one_turn()"),
                  "a manifest naming a function that is gone: exit %d, %s",
                  rc, out);
    free(out);
    rc = in_scratch("test ! -e lab/04-select", &out);
    ck_assert_msg(rc == 0, "lab/04-select was written all the same");
    free(out);
    scratch_remove();
}
END_TEST

START_TEST(a_lab_is_never_written_over_without_force)
{
    scratch_make();
    char *out;
    int rc = in_scratch("tools/lab.sh new labs/04-select.lab", &out);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    /* A stub in place of each cut function, saying what to write. */
    rc = in_scratch("grep -c 'lab_todo(\"serve_one_turn\", \"LECTURE.md "
                    "section 6' lab/04-select/server.c && grep -c "
                    "'lab_todo(\"conn_write\"' lab/04-select/evconn.c", &out);
    ck_assert_msg(rc == 0, "no stubs in the lab: %s", out);
    free(out);
    rc = in_scratch("echo mine > lab/04-select/server.c && "
                    "tools/lab.sh new labs/04-select.lab", &out);
    ck_assert_msg(rc != 0 && strstr(out, "not written") &&
                  strstr(out, "FORCE=1"), "a second make lab: exit %d, %s",
                  rc, out);
    free(out);
    rc = in_scratch("grep -qx mine lab/04-select/server.c", &out);
    ck_assert_msg(rc == 0, "the student's server.c was written over");
    free(out);
    rc = in_scratch("tools/lab.sh new labs/04-select.lab --force && "
                    "grep -q lab_todo lab/04-select/server.c", &out);
    ck_assert_msg(rc == 0, "--force did not write the lab again: %s", out);
    free(out);
    scratch_remove();
}
END_TEST

START_TEST(solve_puts_back_what_was_cut_and_nothing_else)
{
    scratch_make();
    char *out;
    int rc = in_scratch("tools/lab.sh new labs/04-select.lab && "
                        "tools/lab.sh solve labs/04-select.lab && "
                        "! grep -q lab_todo lab/04-select/*.c", &out);
    ck_assert_msg(rc == 0, "new, then solve: %s", out);
    free(out);
    /* A lab changed outside its cut functions is not the reference. */
    rc = in_scratch("tools/lab.sh new labs/04-select.lab --force && "
                    "sed -i 's/^#define CURL_BLIND_POLL_MS 100/"
                    "#define CURL_BLIND_POLL_MS 0/' lab/04-select/server.c "
                    "&& tools/lab.sh solve labs/04-select.lab", &out);
    ck_assert_msg(rc != 0 && strstr(out, "changed more than the cut bodies"),
                  "solve took a changed lab: exit %d, %s", rc, out);
    free(out);
    scratch_remove();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("labs");
    TCase *tc = tcase_create("labs");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, every_manifest_matches_its_stage, 0, NUM_LABS);
    tcase_add_test(tc, a_renamed_function_stops_it_by_name);
    tcase_add_test(tc, a_lab_is_never_written_over_without_force);
    tcase_add_test(tc, solve_puts_back_what_was_cut_and_nothing_else);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
