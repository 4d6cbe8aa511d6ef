/* soak_crash: the soak's crash-restart loop. Every stage, one after
 * another, runs with --outbox beside a main service of its own; async jobs
 * are posted to it for a random 0.5 to 2 s, then it is killed with
 * SIGKILL (no drain, no last word) and started again on the same outbox,
 * SOAK_CRASH_ROUNDS times (default 5); the last round ends with SIGTERM.
 * Then every job that was answered "ok" must be stored by the main service
 * exactly once: not lost (the outbox replayed it) and not stored twice
 * (the main service's idempotency key absorbed the repeats of jobs
 * delivered just before a kill). */
#include "soak.h"

#include "../harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CRASH_TOKEN_ENV "SECRET_TOKEN=soak-token"
#define CRASH_MAX_JOBS 20000 /* per stage, a bound for the tables */

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Kills p at once and reaps it: the crash. */
static void crash(struct soak_proc *p)
{
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = text ? strstr(text, needle) : NULL; at;
         at = strstr(at + 1, needle))
        n++;
    return n;
}

struct crash_tally {
    int rounds, promised, stored, lost, twice, repeats;
};

/* Posts jobs "crash-<stage>-<n>" to port for ms milliseconds, marking each
 * answered {"status":"ok",...} in ok[]. */
static void post_for(int port, const char *stage, int ms, int *next,
                     unsigned char *ok)
{
    double until = soak_now() + ms / 1000.0;
    while (soak_now() < until && *next < CRASH_MAX_JOBS) {
        char id[96];
        snprintf(id, sizeof id, "crash-%s-%d", stage, *next);
        char *body = soak_exchange_body(id, 1);
        struct http_result r;
        http_request("POST", port, "/api/exchange_async", body, &r);
        free(body);
        if (r.status == 200 && strstr(r.body, "\"status\":\"ok\""))
            ok[*next] = 1;
        http_result_free(&r);
        (*next)++;
    }
}

/* The loop for one stage; its verdict in *t. */
static void crash_stage(const char *bin_dir, const char *log_dir,
                        const char *stage, int rounds, struct crash_tally *t)
{
    static const char *const env[] = {CRASH_TOKEN_ENV, NULL};
    struct soak_proc m = {.name = "main-service"}, s = {.name = stage};
    snprintf(m.log_path, sizeof m.log_path, "%s/crash-main-%s.log", log_dir,
             stage);
    snprintf(s.log_path, sizeof s.log_path, "%s/crash-%s.log", log_dir,
             stage);
    char outbox[600], bin[300], url[64];
    snprintf(outbox, sizeof outbox, "%s/crash-%s.jsonl", log_dir, stage);
    unlink(m.log_path);
    unlink(s.log_path);
    unlink(outbox);
    snprintf(bin, sizeof bin, "%s/main-service", bin_dir);
    const char *margs[] = {"--port", "0", "--max-results", "1000000", NULL};
    if (!soak_proc_start(&m, bin, margs, env))
        exit(3);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", m.port);
    snprintf(bin, sizeof bin, "%s/%s", bin_dir, stage);
    const char *args[] = {"--port", "0", "--delay-ms", "200", "--jitter-ms",
                          "100", "--outbox", outbox, "--main-service", url,
                          NULL};
    unsigned char *ok = calloc(CRASH_MAX_JOBS, 1);
    if (!ok)
        exit(3);
    int next = 0;
    *t = (struct crash_tally){.rounds = rounds};
    for (int round = 0; round < rounds; round++) {
        if (!soak_proc_start(&s, bin, args, env))
            exit(3);
        post_for(s.port, stage, 500 + rand() % 1500, &next, ok);
        if (round < rounds - 1)
            crash(&s); /* in the middle of its jobs */
    }
    /* The last life ends politely, once its jobs are delivered. */
    nap_ms(1500);
    soak_proc_stop(&s, 30000);
    char *log = soak_read_file(m.log_path);
    for (int n = 0; n < next; n++) {
        if (!ok[n])
            continue;
        t->promised++;
        char needle[128];
        snprintf(needle, sizeof needle, "result crash-%s-%d received", stage,
                 n);
        int got = count_lines_with(log, needle);
        t->stored += got > 0;
        t->lost += got == 0;
        t->twice += got > 1;
    }
    t->repeats = 0;
    for (const char *at = log ? strstr(log, " repeated: ") : NULL; at;
         at = strstr(at + 1, " repeated: "))
        t->repeats++;
    free(log);
    soak_proc_stop(&m, 10000);
    free(ok);
}

int soak_crash_run(const char *bin_dir, const char *log_dir, int rounds)
{
    if (rounds <= 0)
        return 0;
    printf("\n### crash-restart loop: %d lives per stage with --outbox, "
           "each but the last ended by SIGKILL in the middle of its jobs\n\n"
           "| stage | async ok | stored once | lost | stored twice | repeats "
           "absorbed by the key | verdict |\n|---|---|---|---|---|---|---|\n",
           rounds);
    int failures = 0;
    for (int i = 0; i < HARNESS_NUM_STAGES; i++) {
        if (!harness_row_selected(i))
            continue;
        struct crash_tally t;
        crash_stage(bin_dir, log_dir, harness_stages[i].name, rounds, &t);
        bool pass = t.lost == 0 && t.twice == 0 && t.promised > 0;
        failures += !pass;
        printf("| %s | %d | %d | %d | %d | %d | %s |\n",
               harness_stages[i].name, t.promised, t.stored - t.twice, t.lost,
               t.twice, t.repeats, pass ? "pass" : "FAIL");
        fflush(stdout);
    }
    return failures;
}
