/* soak: make soak (issue 12). Every stage and the main service, started
 * together, get SOAK_SECONDS (default 300) of mixed traffic: keep-alive
 * clients asking GET /, sync and async requests, and one hostile slot per
 * stage (10% of its connections) playing trickled heads, stalled bodies,
 * floods of async work, long-poll floods against the main service and
 * slow readers. The main service is stopped twice, a quarter and five
 * eighths into the run, for SOAK_OUTAGE_SECONDS (default 20; a sixth of a
 * run shorter than a minute) and restarted on its port.
 *
 * Then it checks, per stage, and prints a table README can quote:
 *   - no crash: the process ran throughout, its log has no sanitizer
 *     report and no child killed by a signal, and SIGTERM ends it with 0;
 *   - no lost callback: every async request answered {"status":"ok"} has
 *     its result in the main service (GET /api/exchange_result/{id}, or,
 *     for results stored by an instance stopped for an outage, that
 *     instance's "result ID received" log line), or a give-up logged by
 *     the stage; with 20 s outages and the 120 s callback deadline there
 *     must be no give-up either;
 *   - descriptors and resident memory back near the baseline taken after
 *     a warm-up;
 *   - the p99 latency of normal requests during the attack (at most
 *     SOAK_P99_MS, default 2000; 01-blocking, which does not overlap
 *     requests (tests/harness.c's trait), is reported, not judged: one
 *     trickling client holds it by design).
 *
 * Then the crash-restart loop (soak_crash.c): each stage, with --outbox,
 * killed with SIGKILL in the middle of its jobs and restarted, several
 * times; every job answered "ok" must be stored exactly once.
 *
 * Environment: SOAK_SECONDS, SOAK_OUTAGE_SECONDS, SOAK_DRAIN_SECONDS
 * (default 60: how long callbacks may still arrive after the traffic),
 * SOAK_CONNS (normal connections per stage, default 9), SOAK_THINK_MS
 * (default 100), SOAK_P99_MS, SOAK_CRASH_ROUNDS (lives per stage in the
 * crash-restart loop, default 5; 0 skips it), STAGES (as in make test),
 * STAGE_BIN_DIR
 * (default build), SOAK_LOG_DIR (default $STAGE_BIN_DIR/soak-logs). */
#include "soak.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../harness.h"
#include "net.h"

#define TOKEN_ENV "SECRET_TOKEN=soak-token"
#define FD_SLACK 4               /* descriptors over the baseline allowed */
#define RSS_SLACK_KIB (32 * 1024)
#define SETTLE_S 15.0            /* for descriptors to come back at the end */
#define STOP_TIMEOUT_MS 30000

#define MAX_STAGES HARNESS_NUM_STAGES

static struct soak_stage stages[MAX_STAGES];
static int num_stages;
static struct soak_proc main_svc;
static int main_port;
static int main_crashes;         /* unplanned exits of the main service */
static int main_fd_base, main_fd_end;
static long main_rss_base, main_rss_end;
static char bin_dir[256], log_dir[300];
static const char *main_args[16];

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A free port for the main service, so it can come back on the same one. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("soak: a free port");
        exit(3);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static bool main_start(void)
{
    static char bin[300];
    snprintf(bin, sizeof bin, "%s/main-service", bin_dir);
    static const char *const env[] = {TOKEN_ENV, NULL};
    /* Right after a stop the port can be busy for a moment. */
    for (int tries = 0; tries < 50; tries++) {
        if (soak_proc_start(&main_svc, bin, main_args, env))
            return true;
        sleep_s(0.2);
    }
    return false;
}

static void main_outage(double seconds)
{
    printf("soak: main service down for %.0f s\n", seconds);
    fflush(stdout);
    if (!soak_proc_alive(&main_svc))
        main_crashes++;
    else if (soak_proc_stop(&main_svc, STOP_TIMEOUT_MS) != 0)
        main_crashes++; /* a stop must end it with 0 */
    soak_traffic_run(soak_now() + seconds);
    if (!main_start()) {
        fprintf(stderr, "soak: the main service does not come back\n");
        exit(3);
    }
    printf("soak: main service back on port %d\n", main_svc.port);
    fflush(stdout);
}

static void start_all(void)
{
    snprintf(log_dir, sizeof log_dir, "%s/soak-logs", bin_dir);
    const char *d = getenv("SOAK_LOG_DIR");
    if (d && *d)
        snprintf(log_dir, sizeof log_dir, "%s", d);
    mkdir(log_dir, 0755);

    main_port = free_port();
    static char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", main_port);
    int n = 0;
    main_args[n++] = "--port";
    main_args[n++] = port_s;
    main_args[n++] = "--max-results";
    main_args[n++] = "1000000"; /* every promise of the run stays looked up */
    main_args[n] = NULL;
    main_svc.name = "main-service";
    snprintf(main_svc.log_path, sizeof main_svc.log_path, "%s/main-service.log",
             log_dir);
    unlink(main_svc.log_path);
    if (!main_start())
        exit(3);

    static char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", main_port);
    const char *args[] = {"--port", "0", "--delay-ms", "20", "--jitter-ms",
                          "10", "--main-service", url, NULL};
    static const char *const env[] = {TOKEN_ENV, NULL};
    for (int i = 0; i < MAX_STAGES; i++) {
        if (!harness_row_selected(i))
            continue; /* not in STAGES, or not in this tree */
        struct soak_stage *s = &stages[num_stages];
        s->index = i + 1;
        s->traits = &harness_stages[i];
        s->proc.name = harness_stages[i].name;
        snprintf(s->proc.log_path, sizeof s->proc.log_path, "%s/%s.log",
                 log_dir, s->proc.name);
        unlink(s->proc.log_path);
        char bin[300];
        snprintf(bin, sizeof bin, "%s/%s", bin_dir, s->proc.name);
        if (!soak_proc_start(&s->proc, bin, args, env))
            exit(3);
        num_stages++;
    }
}

/* A few requests of each kind, then the baseline of descriptors and RSS. */
static void warm_up_and_measure(void)
{
    for (int i = 0; i < num_stages; i++) {
        int fd = -1;
        for (int k = 0; k < 5; k++)
            soak_http_get(&fd, stages[i].proc.port, "/", 5000);
        if (fd >= 0)
            close(fd);
    }
    sleep_s(1.0);
    for (int i = 0; i < num_stages; i++) {
        stages[i].fd_base = soak_fd_count(stages[i].proc.pid);
        stages[i].rss_base = soak_rss_kib(stages[i].proc.pid);
    }
}

/* The traffic, in one-second steps, with the two outages on the way. */
static void run_traffic(double seconds, double outage)
{
    struct soak_traffic_cfg cfg = {
        .normal_conns = env_int("SOAK_CONNS", 9),
        .think_ms = env_int("SOAK_THINK_MS", 100),
        .main_port = main_port,
    };
    soak_traffic_init(stages, num_stages, &cfg);
    double t0 = soak_now(), end = t0 + seconds;
    double outages[2] = {t0 + seconds / 4, t0 + seconds * 5 / 8};
    int next_outage = 0;
    while (soak_now() < end) {
        double step = soak_now() + 1.0;
        if (next_outage < 2 && step >= outages[next_outage]) {
            soak_traffic_run(outages[next_outage]);
            main_outage(outage);
            next_outage++;
            continue;
        }
        soak_traffic_run(step < end ? step : end);
        for (int i = 0; i < num_stages; i++)
            if (stages[i].proc.pid > 0 && !soak_proc_alive(&stages[i].proc))
                printf("soak: %s died (status %d)\n", stages[i].proc.name,
                       stages[i].proc.exit_status);
        if (main_svc.pid > 0 && !soak_proc_alive(&main_svc)) {
            printf("soak: the main service died; restarting it\n");
            main_crashes++;
            if (!main_start())
                exit(3);
        }
        int elapsed = (int)(soak_now() - t0);
        if (elapsed % 10 == 0) {
            long req = 0, ok = 0;
            for (int i = 0; i < num_stages; i++) {
                req += stages[i].requests;
                ok += stages[i].async_ok;
            }
            printf("soak: %3d s: %ld normal requests, %ld async ok\n",
                   elapsed, req, ok);
            fflush(stdout);
        }
    }
    soak_traffic_stop();
}

/* ---- lost callbacks ---- */

/* Marks in flags every id "soak-<index>-<n>" of stage index found in text
 * on lines that contain marker (NULL: every line holding one). */
static void ids_on_lines(const char *text, const char *marker, int index,
                         unsigned char *flags, int max)
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof prefix, "soak-%d-", index);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *p = memmem(line, len, prefix, (size_t)plen);
        if (p && (!marker || memmem(line, len, marker, strlen(marker)))) {
            int n = atoi(p + plen);
            if (n >= 0 && n < max)
                flags[n] = 1;
        }
        line = eol ? eol + 1 : NULL;
    }
}

/* Accounts for every promise of stage s: stored[n] becomes 1 when the
 * main service answers GET /api/exchange_result/{id} with 200, 2 when only
 * the log of a main service stopped for an outage says it was received
 * (its memory went with it), and gave_up[n] is set when the stage logged
 * its give-up. Returns the number of promises still unaccounted for. */
static long account(struct soak_stage *s, const char *main_log, int *fd)
{
    if (!s->gave_up)
        s->gave_up = calloc(s->cap_ids ? s->cap_ids : 1, 1);
    if (!s->gave_up) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    char *stage_log = soak_read_file(s->proc.log_path);
    if (stage_log) {
        /* Today's "failed after N tries", and issue 12's final give-up
         * line; not a try's "(gives up at ...)", which is no verdict. */
        static const char *const final[] = {"failed after", "gave up",
                                            "giving up", "give up"};
        for (size_t k = 0; k < sizeof final / sizeof final[0]; k++)
            ids_on_lines(stage_log, final[k], s->index, s->gave_up,
                         s->next_id);
        free(stage_log);
    }
    long missing = 0;
    for (int n = 0; n < s->next_id; n++) {
        if (!s->promised[n] || s->stored[n] == 1)
            continue;
        char path[96];
        snprintf(path, sizeof path, "/api/exchange_result/soak-%d-%d",
                 s->index, n);
        if (soak_http_get(fd, main_svc.port, path, 3000) == 200)
            s->stored[n] = 1;
    }
    unsigned char *logged = calloc(s->cap_ids ? s->cap_ids : 1, 1);
    if (!logged) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    if (main_log)
        ids_on_lines(main_log, " received", s->index, logged, s->next_id);
    for (int n = 0; n < s->next_id; n++) {
        if (!s->promised[n] || s->stored[n] == 1)
            continue;
        if (logged[n])
            s->stored[n] = 2;
        else if (!s->gave_up[n])
            missing++;
    }
    free(logged);
    return missing;
}

/* Waits up to seconds for every promise to be accounted for. */
static void drain_callbacks(int seconds)
{
    double deadline = soak_now() + seconds;
    for (;;) {
        char *main_log = soak_read_file(main_svc.log_path);
        int fd = -1;
        long missing = 0;
        for (int i = 0; i < num_stages; i++)
            missing += account(&stages[i], main_log, &fd);
        if (fd >= 0)
            close(fd);
        free(main_log);
        if (missing == 0 || soak_now() > deadline)
            return;
        sleep_s(1.0);
    }
}

struct verdict {
    long promised, stored_get, stored_log, gave_up, lost;
};

static struct verdict count_callbacks(const struct soak_stage *s)
{
    struct verdict v = {0};
    for (int n = 0; n < s->next_id; n++) {
        if (!s->promised[n])
            continue;
        v.promised++;
        if (s->stored[n] == 1)
            v.stored_get++;
        else if (s->stored[n] == 2)
            v.stored_log++;
        else if (s->gave_up[n])
            v.gave_up++;
        else
            v.lost++;
    }
    return v;
}

/* ---- health ---- */

/* Descriptors over the baseline, not counting the connections libcurl
 * keeps open to the main service (a bounded cache, reused by the next
 * callback). */
static bool fd_leak(const struct soak_stage *s)
{
    return s->fd_end - s->fd_end_to_main > s->fd_base + FD_SLACK;
}

static void settle_and_measure(void)
{
    double deadline = soak_now() + SETTLE_S;
    for (;;) {
        bool settled = true;
        for (int i = 0; i < num_stages; i++) {
            struct soak_stage *s = &stages[i];
            if (s->proc.pid <= 0)
                continue;
            s->fd_end = soak_fd_count(s->proc.pid);
            s->fd_end_to_main = soak_fds_to_port(s->proc.pid, main_port);
            s->children_end = soak_children(s->proc.pid);
            if (fd_leak(s))
                settled = false;
        }
        /* The stages' kept connections to it close on its idle timeout. */
        main_fd_end = soak_fd_count(main_svc.pid);
        if (main_fd_end > main_fd_base + FD_SLACK + num_stages)
            settled = false;
        if (settled || soak_now() > deadline)
            break;
        sleep_s(0.5);
    }
    for (int i = 0; i < num_stages; i++)
        if (stages[i].proc.pid > 0)
            stages[i].rss_end = soak_rss_kib(stages[i].proc.pid);
    main_rss_end = soak_rss_kib(main_svc.pid);
}

/* Lines of a log that witness a crash (02 loses only a child). */
static int crash_lines(const char *path)
{
    char *log = soak_read_file(path);
    if (!log)
        return 0;
    static const char *const marks[] = {"Sanitizer", "runtime error:",
                                        "killed by signal", "Segmentation"};
    int n = 0;
    for (size_t k = 0; k < sizeof marks / sizeof marks[0]; k++)
        for (const char *p = strstr(log, marks[k]); p;
             p = strstr(p + 1, marks[k]))
            n++;
    free(log);
    return n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(struct soak_stage *s, double q)
{
    if (s->num_latency == 0)
        return 0;
    size_t k = (size_t)(q * (double)(s->num_latency - 1) + 0.5);
    return s->latency_ms[k];
}

static bool rss_near(long base, long end)
{
    return end <= base + base / 2 + RSS_SLACK_KIB;
}

/* ---- the report ---- */

static int report(double seconds, double outage)
{
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    int p99_max = env_int("SOAK_P99_MS", 2000);
    /* AddressSanitizer keeps freed memory in quarantine, so RSS says
     * nothing there; its leak check at exit (a report in the log, counted
     * as a crash) does the job instead. */
    const char *san = getenv("SOAK_SAN");
    bool judge_rss = !san || !*san;
    printf("\n### make soak, %s: %.0f s, two main-service outages of %.0f s, "
           "%d normal connections per stage + 1 hostile\n\n",
           date, seconds, outage, env_int("SOAK_CONNS", 9));
    printf("| stage | normal requests | 503 | failed | p50 ms | p99 ms | "
           "hostile conns | async ok | stored (GET + log) | gave up | lost | "
           "fds base -> end | RSS MB base -> end | crashes | exit | "
           "verdict |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int failures = 0;
    for (int i = 0; i < num_stages; i++) {
        struct soak_stage *s = &stages[i];
        qsort(s->latency_ms, s->num_latency, sizeof *s->latency_ms,
              cmp_double);
        struct verdict v = count_callbacks(s);
        bool died = s->proc.crashed;
        int exit_status = soak_proc_stop(&s->proc, STOP_TIMEOUT_MS);
        /* After the stop: LeakSanitizer reports at exit. */
        int crashes = (died ? 1 : 0) + crash_lines(s->proc.log_path);
        long hostile = 0;
        for (int f = 0; f < NUM_FAMILIES; f++)
            hostile += s->hostile[f];
        double p99 = percentile(s, 0.99);
        /* A stage that serves one client at a time (01) is held by one
         * trickling client: its latency is the lesson, not a failure. */
        bool by_design = !s->traits->overlaps;
        char why[160] = "";
        if (crashes)
            strcat(why, " crash");
        if (exit_status != 0)
            strcat(why, " exit");
        if (v.lost || v.gave_up)
            strcat(why, " callbacks");
        if (fd_leak(s))
            strcat(why, " fds");
        if (judge_rss && !rss_near(s->rss_base, s->rss_end))
            strcat(why, " rss");
        if (!by_design && p99 > p99_max)
            strcat(why, " p99");
        if (!by_design && s->failed > 0)
            strcat(why, " failed"); /* others are served, whatever comes */
        if (s->children_end > 0)
            strcat(why, " children");
        if (*why)
            failures++;
        printf("| %s | %ld | %ld | %ld | %.0f | %.0f%s | %ld | %ld | "
               "%ld + %ld | %ld | %ld | %d -> %d (%d to main) | %.1f -> %.1f | "
               "%d | %d | "
               "%s%s |\n",
               s->proc.name, s->requests, s->refused_503, s->failed,
               percentile(s, 0.5), p99, by_design ? " (by design)" : "",
               hostile, v.promised, v.stored_get, v.stored_log, v.gave_up,
               v.lost, s->fd_base, s->fd_end, s->fd_end_to_main,
               s->rss_base / 1024.0,
               s->rss_end / 1024.0, crashes, exit_status,
               *why ? "FAIL:" : "pass", why);
    }
    int main_exit = soak_proc_stop(&main_svc, STOP_TIMEOUT_MS);
    int main_crash_lines = crash_lines(main_svc.log_path);
    /* Each stage may keep one connection to it open (libcurl's cache)
     * until its 30 s idle timeout: that is a caller's, not a leak. */
    int main_fd_max = main_fd_base + FD_SLACK + num_stages;
    bool main_ok = main_crashes == 0 && main_crash_lines == 0 &&
                   main_exit == 0 && main_fd_end <= main_fd_max &&
                   (!judge_rss || rss_near(main_rss_base, main_rss_end));
    if (!main_ok)
        failures++;
    printf("| main-service | | | | | | | | | | | %d -> %d | %.1f -> %.1f | "
           "%d | %d | %s |\n",
           main_fd_base, main_fd_end, main_rss_base / 1024.0,
           main_rss_end / 1024.0, main_crashes + main_crash_lines, main_exit,
           main_ok ? "pass" : "FAIL");
    printf("\nfailed normal requests (connect / closed before the answer / "
           "timeout / other status / unanswered at the end):");
    for (int i = 0; i < num_stages; i++)
        printf("%s %s %ld/%ld/%ld/%ld/%ld", i ? "," : "",
               stages[i].proc.name, stages[i].failed_by[FAIL_CONNECT],
               stages[i].failed_by[FAIL_CLOSED],
               stages[i].failed_by[FAIL_TIMEOUT],
               stages[i].failed_by[FAIL_STATUS],
               stages[i].failed_by[FAIL_PENDING]);
    printf("\n\nHostile connections: how many, how many the server closed "
           "(mean seconds until it did), how many were still open at the "
           "soak's own limit (%.0f s; slow readers %.0f s), answers read "
           "back; the rest had every answer read, or were still running when "
           "the traffic stopped.\n\n| stage |", SOAK_HOSTILE_HOLD_S, SOAK_SLOW_READER_HOLD_S);
    for (int f = 0; f < NUM_FAMILIES; f++)
        printf(" %s |", soak_family_names[f]);
    printf("\n|---|");
    for (int f = 0; f < NUM_FAMILIES; f++)
        printf("---|");
    for (int i = 0; i < num_stages; i++) {
        struct soak_stage *s = &stages[i];
        printf("\n| %s |", s->proc.name);
        for (int f = 0; f < NUM_FAMILIES; f++) {
            double mean = s->hostile_closed[f]
                              ? s->hostile_close_s[f] / s->hostile_closed[f]
                              : 0;
            printf(" %ld: closed %ld (%.1f s), held %ld, answers %ld |",
                   s->hostile[f], s->hostile_closed[f], mean,
                   s->hostile_held[f], s->hostile_answers[f]);
        }
    }
    printf("\n");
    return failures;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    net_raise_fd_limit();
    const char *dir = getenv("STAGE_BIN_DIR");
    snprintf(bin_dir, sizeof bin_dir, "%s", dir && *dir ? dir : "build");
    double seconds = env_int("SOAK_SECONDS", 300);
    /* Issue 12's outages are 20 s; a run under a minute gets a sixth of
     * itself, so that two of them still fit between the traffic. */
    double outage = env_int("SOAK_OUTAGE_SECONDS",
                            seconds >= 60 ? 20 : (int)(seconds / 6));
    int drain = env_int("SOAK_DRAIN_SECONDS", 60);

    start_all();
    warm_up_and_measure();
    main_fd_base = soak_fd_count(main_svc.pid);
    main_rss_base = soak_rss_kib(main_svc.pid);
    printf("soak: %d stages and the main service (port %d) for %.0f s; "
           "logs in %s\n", num_stages, main_port, seconds, log_dir);
    run_traffic(seconds, outage);

    /* Callbacks still retrying after the last outage get their time. */
    printf("soak: traffic over; waiting up to %d s for callbacks\n", drain);
    drain_callbacks(drain);
    /* The main service is judged against the baseline of its first start:
     * a restarted one is as fresh, and holds only the results since. */
    settle_and_measure();
    int failures = report(seconds, outage);
    failures += soak_crash_run(bin_dir, log_dir,
                               env_int("SOAK_CRASH_ROUNDS", 5));
    printf("\nlogs: %s\n", log_dir);
    printf("soak: %s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
