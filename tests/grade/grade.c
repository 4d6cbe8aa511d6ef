/* grade: runs the graded checks (checks.c) against one stage's binary and
 * reports like a lab driver: a line per check as it finishes, a table of
 * parts and points, build/grade/NN.json, and Autolab's autoresult as the
 * last line of output. `make grade` builds what it needs and calls it:
 *
 *   grade --stage N --bin-dir DIR --tools-dir DIR [--json FILE] [--only ID]
 *   grade --stage N --workflow "COMMAND"   a GitHub Classroom workflow
 *
 * Exit status: 0 once graded, whatever the score (a lab driver's answer is
 * its table; Autolab reads the last line, and make would print an error
 * after it otherwise); with --only, 0 if that check passed and 1 if not
 * (GitHub Classroom's command grader gives a step's points on exit 0); 2
 * when it could not grade. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grade.h"
#include "../harness.h"

static const struct grade_stage stages[] = {
    {2, "02-fork", GRADE_PROCESS_PER_CONN},
    {3, "03-threads", GRADE_THREAD_PER_CONN},
    {4, "04-select", GRADE_ONE_THREAD},
    {5, "05-epoll-callbacks", GRADE_ONE_THREAD},
    {6, "06-coroutines", GRADE_ONE_THREAD},
};

static const char *const parts[] = {"correctness", "concurrency", "robustness"};
#define NUM_PARTS 3

struct outcome {
    bool ran, passed;
    char *message;               /* why it failed (malloc'd), or NULL */
    double seconds;
};

/* Runs one check in a process of its own (Check's fork mode), with its
 * time limit: a crash or a hang fails that check only. */
static void run_check(const struct grade_check *c, struct outcome *o)
{
    Suite *s = suite_create("grade");
    TCase *tc = tcase_create(c->id);
    tcase_set_timeout(tc, c->timeout_s);
    tcase_add_test(tc, *c->test);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    double t0 = harness_now();
    srunner_run_all(sr, CK_SILENT);
    o->seconds = harness_now() - t0;
    TestResult **results = srunner_results(sr);
    o->ran = srunner_ntests_run(sr) == 1;
    o->passed = o->ran && tr_rtype(results[0]) == CK_PASS;
    o->message = o->passed ? NULL
                 : strdup(o->ran && tr_msg(results[0]) ? tr_msg(results[0])
                                                       : "did not run");
    free(results);
    srunner_free(sr);
}

/* A JSON string's contents: quotes, backslashes and control bytes escaped. */
static void json_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
}

/* build/grade/NN.json: GitHub Classroom's runner result (what its graders
 * hand its reporter: version, status, max_score, tests with their score)
 * with Autolab's "scores" beside it. */
static bool write_json(const char *path, const struct outcome *o,
                       const int *score, const int *max, int total, int max_total)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fprintf(f, "{\"version\": 1, \"status\": \"%s\", \"max_score\": %d, "
            "\"score\": %d, \"stage\": \"%s\", \"tests\": [",
            total == max_total ? "pass" : "fail", max_total, total,
            grade_target.stage->name);
    bool first = true;
    for (int i = 0; i < grade_num_checks; i++) {
        const struct grade_check *c = &grade_checks[i];
        if (!o[i].ran && !o[i].message)
            continue;
        fprintf(f, "%s\n  {\"name\": \"%s: %s\", \"status\": \"%s\", "
                "\"score\": %d, \"max_score\": %d, \"message\": \"",
                first ? "" : ",", c->part, c->id, o[i].passed ? "pass" : "fail",
                o[i].passed ? c->points : 0, c->points);
        json_text(f, o[i].passed ? c->what : o[i].message);
        fprintf(f, "\", \"test_code\": \"make grade STAGE=%d ONLY=%s\", "
                "\"filename\": \"\", \"line_no\": 0, \"duration\": %.0f}",
                grade_target.stage->number, c->id, o[i].seconds * 1000);
        first = false;
    }
    fprintf(f, "],\n \"scores\": {");
    for (int p = 0; p < NUM_PARTS; p++)
        fprintf(f, "%s\"%s\": %d", p ? ", " : "", parts[p], score[p]);
    fprintf(f, "}, \"max_scores\": {");
    for (int p = 0; p < NUM_PARTS; p++)
        fprintf(f, "%s\"%s\": %d", p ? ", " : "", parts[p], max[p]);
    fprintf(f, "}}\n");
    return fclose(f) == 0;
}

/* A GitHub Classroom workflow: one command-grader step per check, worth
 * its points, then the reporter that adds them up. */
static void print_workflow(const char *command)
{
    const char *args = strncmp(command, "make grade", 10) ? "" : command + 10;
    printf("# GitHub Classroom autograding for %s: one step per graded "
           "check.\n# Written by: make -s grade-workflow%s\n"
           "name: Autograding Tests\n'on': [push, repository_dispatch]\n"
           "permissions:\n  checks: write\n  actions: read\n  contents: read\n"
           "jobs:\n  run-autograding-tests:\n    runs-on: ubuntu-latest\n"
           "    if: github.actor != 'github-classroom[bot]'\n    steps:\n"
           "    - uses: actions/checkout@v4\n"
           "    - name: build\n      run: %s ONLY=none\n",
           grade_target.stage->name, args, command);
    char runners[1024] = "";
    for (int i = 0; i < grade_num_checks; i++) {
        const struct grade_check *c = &grade_checks[i];
        printf("    - name: %s\n      id: %s\n"
               "      uses: classroom-resources/autograding-command-grader@v1\n"
               "      with:\n        test-name: %s\n        command: %s ONLY=%s\n"
               "        timeout: 2\n        max-score: %d\n",
               c->id, c->id, c->id, command, c->id, c->points);
        snprintf(runners + strlen(runners), sizeof runners - strlen(runners),
                 "%s%s", i ? "," : "", c->id);
    }
    printf("    - name: Autograding Reporter\n"
           "      uses: classroom-resources/autograding-grading-reporter@v1\n"
           "      env:\n");
    for (int i = 0; i < grade_num_checks; i++) {
        char upper[64];
        size_t k = 0;
        for (const char *p = grade_checks[i].id; *p && k < sizeof upper - 1; p++)
            upper[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        upper[k] = '\0';
        printf("        %s_RESULTS: \"${{steps.%s.outputs.result}}\"\n", upper,
               grade_checks[i].id);
    }
    printf("      with:\n        runners: %s\n", runners);
}

static int usage(void)
{
    fprintf(stderr, "usage: grade --stage N --bin-dir DIR --tools-dir DIR "
            "[--json FILE] [--only ID]\n       grade --stage N --workflow "
            "COMMAND\nchecks:");
    for (int i = 0; i < grade_num_checks; i++)
        fprintf(stderr, " %s", grade_checks[i].id);
    fprintf(stderr, "\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *json = NULL, *only = NULL, *workflow = NULL;
    int number = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (!strcmp(opt, "--stage"))
            number = atoi(val);
        else if (!strcmp(opt, "--bin-dir"))
            grade_target.bin_dir = val;
        else if (!strcmp(opt, "--tools-dir"))
            grade_target.tools_dir = val;
        else if (!strcmp(opt, "--json"))
            json = val;
        else if (!strcmp(opt, "--only"))
            only = val;
        else if (!strcmp(opt, "--workflow"))
            workflow = val;
        else
            return usage();
    }
    if (argc % 2 == 0)
        return usage();
    for (size_t k = 0; k < sizeof stages / sizeof stages[0]; k++)
        if (stages[k].number == number)
            grade_target.stage = &stages[k];
    if (!grade_target.stage) {
        fprintf(stderr, "grade: STAGE is 2, 3, 4, 5 or 6 (01 serves one "
                "client at a time by design: there is no concurrency to "
                "grade), not '%d'\n", number);
        return 2;
    }
    if (workflow) {
        print_workflow(workflow);
        return 0;
    }
    bool known = !only || !strcmp(only, "none");
    for (int i = 0; only && i < grade_num_checks; i++)
        known = known || !strcmp(only, grade_checks[i].id);
    if (!grade_target.bin_dir || !grade_target.tools_dir || !known)
        return usage();
    if (only && !strcmp(only, "none"))
        return 0; /* built, nothing to run (the workflow's build step) */

    setvbuf(stdout, NULL, _IOLBF, 0); /* Autolab streams what we print */
    printf("grade: %s (%s/%s), %d check%s\n", grade_target.stage->name,
           grade_target.bin_dir, grade_target.stage->name,
           only ? 1 : grade_num_checks, only ? "" : "s");
    /* A server that dies or never answers fails every check: say why
     * once, above them. */
    struct outcome pre = {0};
    run_check(&grade_starts, &pre);
    if (!pre.passed) { /* its log's lines indented below the first */
        printf("  before the checks, started alone:");
        for (char *line = pre.message, *nl; line && *line; line = nl) {
            nl = strchr(line, '\n');
            if (nl)
                *nl++ = '\0';
            printf("%s%s\n", line == pre.message ? " " : "    ", line);
        }
        printf("\n");
    }
    free(pre.message);
    struct outcome o[64] = {{0}};
    int score[NUM_PARTS] = {0}, max[NUM_PARTS] = {0}, total = 0, max_total = 0;
    double t0 = harness_now();
    for (int i = 0; i < grade_num_checks && i < 64; i++) {
        const struct grade_check *c = &grade_checks[i];
        int p = 0;
        while (p < NUM_PARTS - 1 && strcmp(parts[p], c->part))
            p++;
        max[p] += c->points;
        max_total += c->points;
        if (only && strcmp(only, c->id))
            continue;
        run_check(c, &o[i]);
        score[p] += o[i].passed ? c->points : 0;
        total += o[i].passed ? c->points : 0;
        printf("  %-12s %-13s %2d/%-2d %5.1f s  %s\n", c->part, c->id,
               o[i].passed ? c->points : 0, c->points, o[i].seconds, c->what);
        if (!o[i].passed)
            printf("%29s FAILED: %s\n", "", o[i].message);
    }
    printf("\n");
    for (int p = 0; p < NUM_PARTS && !only; p++)
        printf("  %-12s %3d/%d\n", parts[p], score[p], max[p]);
    printf("  %-12s %3d/%d   (%.0f s)%s\n", "total", total, max_total,
           harness_now() - t0, only ? "   only one check was run" : "");
    if (json && !write_json(json, o, score, max, total, max_total)) {
        fprintf(stderr, "grade: cannot write %s: %s\n", json, strerror(errno));
        return 2;
    }
    if (json)
        printf("  written to %s\n", json);
    /* Autolab: the last line of output is the autoresult. */
    printf("{\"scores\": {");
    for (int p = 0; p < NUM_PARTS; p++)
        printf("%s\"%s\": %d", p ? ", " : "", parts[p], score[p]);
    printf("}}\n");
    for (int i = 0; i < grade_num_checks; i++)
        free(o[i].message);
    if (only) {
        for (int i = 0; i < grade_num_checks; i++)
            if (!strcmp(only, grade_checks[i].id))
                return o[i].passed ? 0 : 1;
    }
    return 0;
}
