/* grade: the lab driver behind `make grade STAGE=N [DIR=folder]`.
 *
 * A stage (or a student's folder built like one: its .c files linked with
 * common/) is started for real and driven over HTTP by graded checks, each
 * worth points in one of three parts: correctness (40), concurrency (40),
 * robustness (20). grade.c runs them and reports; checks.c holds them.
 * Every concurrency check first makes slow requests overlap and fails when
 * they do not, so a server that serves one request at a time scores no
 * concurrency point, whatever it prints. tests/grade/wrong/ keeps the
 * wrong implementations each check must catch (tests/grade/check.sh). */
#ifndef TESTS_GRADE_H
#define TESTS_GRADE_H

#include <check.h>

/* What the stage's model promises about processes and threads while it
 * serves many clients at once. */
enum grade_model {
    GRADE_ONE_THREAD,       /* 04, 05, 06: one thread, no child process */
    GRADE_PROCESS_PER_CONN, /* 02: a child process per connection */
    GRADE_THREAD_PER_CONN,  /* 03: a thread per connection */
};

struct grade_stage {
    int number;             /* STAGE=N */
    const char *name;       /* its folder, binary and "stage" in GET / */
    enum grade_model model;
};

/* What is graded, set by grade.c before any check runs. */
struct grade_target {
    const struct grade_stage *stage;
    const char *bin_dir;    /* holds the binary named stage->name */
    const char *tools_dir;  /* holds main-service */
};
extern struct grade_target grade_target;

/* One graded check. Each is a Check test, run in a process of its own with
 * a time limit, so a crash or a hang costs its points and nothing else. */
struct grade_check {
    const char *id;         /* GRADE_ONLY=id runs only this one */
    const char *part;       /* "correctness", "concurrency", "robustness" */
    int points;
    const char *what;       /* what it asks of the server, in one line */
    const TTest *const *test; /* &name of its START_TEST */
    int timeout_s;
};

extern const struct grade_check grade_checks[];
extern const int grade_num_checks;

/* Not graded, run first: the server alone, asked GET / once. Its failure
 * says how the server ended and what its log said last (a lab's stub
 * says "TODO: write ..."), which explains the failures that follow. */
extern const struct grade_check grade_starts;

#endif
