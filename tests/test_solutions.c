/* Every exercise's solution still works: for each solutions/<id>.patch,
 * its check (tests/exercises/<id>.sh) fails on the tree as built and
 * passes on a scratch copy with the patch applied and rebuilt; every id
 * has its answers (solutions/<id>.md) and at least one known-wrong answer
 * (tests/exercises/wrong/), each of which still applies. Running the wrong
 * answers themselves takes minutes: make exercises-check does it (CI).
 * tests/exercises/solutions.sh does the work (two scratch trees with the
 * built objects copied, so only what a patch changes recompiles); this
 * program runs it and fails naming every id that no longer applies, builds
 * or passes. It tests patches, not memory: under a sanitizer it skips. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

START_TEST(every_solution_passes_its_check)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    printf("test_solutions: SKIP under a sanitizer build (it tests the "
           "solution patches, not memory)\n");
    return;
#endif
    const char *dir = getenv("STAGE_BIN_DIR");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "./tests/exercises/solutions.sh %s 2>&1",
             dir ? dir : "build");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    char line[1024];
    char failed[4096] = "";
    int passed = 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        if (strncmp(line, "ok ", 3) == 0) {
            passed++;
        } else if (strncmp(line, "FAIL ", 5) == 0) {
            /* The id: the word after FAIL, up to its colon. */
            size_t n = strcspn(line + 5, ":\n");
            size_t used = strlen(failed);
            snprintf(failed + used, sizeof failed - used, " %.*s", (int)n,
                     line + 5);
        }
    }
    int status = pclose(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("test_solutions: %d solutions passed in %.1f s\n", passed,
           (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    ck_assert_msg(failed[0] == '\0', "solutions failing:%s", failed);
    ck_assert_msg(status == 0, "tests/exercises/solutions.sh exited %d",
                  status);
    ck_assert_msg(passed > 0, "no solution ran");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("solutions");
    TCase *tc = tcase_create("solutions");
    /* All of them well under a minute; the time-out is a backstop. */
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, every_solution_passes_its_check);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
