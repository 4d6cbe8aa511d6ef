/* test_loadgen: the benchmark client (tools/loadgen/) end to end, run as
 * a program against servers that exist from the start: 01-blocking (one
 * request at a time, closes every connection) and the main service (a
 * thread per connection, keep-alive, long polling for a concurrent wait).
 * Checked: the --json counts and keys, failures by kind (refused, timeout,
 * HTTP status), the timeline's shape (a staircase from 01, a wall from a
 * concurrent server, sampling past 40 rows), --stall, --watch-pid, --print,
 * --span, -t, -d, progress lines, Ctrl-C, and the command line.
 *
 * Every check runs once per engine (--engine curl, then --engine raw): the
 * two must count, time and draw the same requests the same way. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The engine under test; main() runs the whole suite once for each. */
static const char *engine = "curl";

struct run {
    int status;  /* exit status, 128+signal if killed */
    char *out;   /* stdout, malloc'd */
    char *err;   /* stderr, malloc'd */
};

static char *read_all_fd(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* A loadgen started and not yet waited for (start_loadgen). */
struct started {
    pid_t pid;
    int out_fd, err_fd;
};

/* Starts build/loadgen with args (NULL-terminated). With fd_limit > 0 it
 * may hold only that many descriptors (soft and hard RLIMIT_NOFILE, set
 * in the child, which holds only stdin, stdout and stderr). */
static void start_loadgen(struct started *st, const char *const *args,
                          long fd_limit)
{
    const char *bin = harness_bin("loadgen");
    ck_assert_msg(access(bin, X_OK) == 0, "%s is not built", bin);
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = (char *)"--engine";
    argv[argc++] = (char *)engine;
    for (int i = 0; args[i] && argc < 63; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    int out[2];
    ck_assert(pipe2(out, O_CLOEXEC) == 0);
    st->err_fd = memfd_create("loadgen-stderr", MFD_CLOEXEC);
    ck_assert(st->err_fd >= 0);
    st->pid = fork();
    ck_assert(st->pid >= 0);
    if (st->pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(st->err_fd, STDERR_FILENO);
        signal(SIGPIPE, SIG_DFL);
        if (fd_limit > 0) {
            struct rlimit rl = {(rlim_t)fd_limit, (rlim_t)fd_limit};
            close_range(3, ~0U, 0);
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        execv(bin, argv);
        _exit(127);
    }
    close(out[1]);
    st->out_fd = out[0];
}

/* Waits for a started loadgen and collects what it printed. With
 * kill_after_ms > 0 a loadgen still running then is killed (SIGKILL):
 * one that never stops fails its test instead of hanging it. */
static void finish_loadgen(struct run *r, struct started *st,
                           int kill_after_ms)
{
    if (kill_after_ms > 0) { /* it prints its summary when it ends */
        struct pollfd p = {.fd = st->out_fd, .events = POLLIN};
        int n;
        while ((n = poll(&p, 1, kill_after_ms)) < 0 && errno == EINTR)
            ;
        if (n == 0)
            kill(st->pid, SIGKILL);
    }
    r->out = read_all_fd(st->out_fd);
    close(st->out_fd);
    int status;
    while (waitpid(st->pid, &status, 0) < 0 && errno == EINTR)
        ;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status)
                                  : 128 + WTERMSIG(status);
    lseek(st->err_fd, 0, SEEK_SET);
    r->err = read_all_fd(st->err_fd);
    close(st->err_fd);
}

/* Runs build/loadgen with args (NULL-terminated). With sigint_after_ms > 0
 * it gets a SIGINT that long after the start. */
static void run_loadgen(struct run *r, const char *const *args,
                        int sigint_after_ms)
{
    struct started st;
    start_loadgen(&st, args, 0);
    if (sigint_after_ms > 0) {
        harness_sleep_ms(sigint_after_ms);
        kill(st.pid, SIGINT);
    }
    finish_loadgen(r, &st, 0);
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* The number after "key": in loadgen's JSON (every key appears once). */
static double json_num(const char *json, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    ck_assert_msg(p != NULL, "no key %s in:\n%s", key, json);
    return strtod(p + strlen(pat), NULL);
}

static char *url_of(int port, const char *path)
{
    char *u;
    ck_assert_int_ge(asprintf(&u, "http://127.0.0.1:%d%s", port, path), 0);
    return u;
}

/* The 01 the load generator is pointed at logs nothing (harness_stage_start
 * gives it a delay and one deadline for every wait on a client). */
static const char *const quiet[] = {"--quiet", NULL};

static void start_main(struct proc *p)
{
    static const char *const env[] = {"SECRET_TOKEN=test-token", NULL};
    proc_start(p, "main-service", NULL, env);
}

/* ---- a server that stalls once, on a thread of this test ----
 *
 * It answers every request at once (200, keep-alive, "ok"), except that
 * once, stall_after_ms after its first request, it stops for stall_ms:
 * reads nothing and answers nothing, as a server does in a long garbage
 * collection or a blocking call on its event loop. It also notes the
 * source address of every connection (which 127.0.0.x). One thread,
 * poll() over its connections. */
#define STALL_MAX_CONNS 128

struct stall_server {
    int lfd, port, stop_pipe[2];
    int stall_after_ms, stall_ms;
    pthread_t thread;
    unsigned long connections;
    bool peers[256];       /* peers[x]: a connection came from 127.0.0.x */
};

static void *stall_server_run(void *arg)
{
    struct stall_server *sv = arg;
    struct pollfd p[STALL_MAX_CONNS + 2];
    char bufs[STALL_MAX_CONNS][1024];
    size_t lens[STALL_MAX_CONNS] = {0};
    int nconn = 0;
    double first = 0;
    bool stalled = sv->stall_ms == 0;
    p[0] = (struct pollfd){.fd = sv->stop_pipe[0], .events = POLLIN};
    p[1] = (struct pollfd){.fd = sv->lfd, .events = POLLIN};
    for (;;) {
        if (poll(p, (nfds_t)(nconn + 2), -1) < 0)
            continue;
        if (p[0].revents)
            break;
        if ((p[1].revents & POLLIN) && nconn < STALL_MAX_CONNS) {
            struct sockaddr_in a;
            socklen_t len = sizeof a;
            int fd = accept(sv->lfd, (struct sockaddr *)&a, &len);
            if (fd >= 0) {
                sv->peers[ntohl(a.sin_addr.s_addr) & 0xff] = true;
                sv->connections++;
                lens[nconn] = 0;
                p[2 + nconn++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        }
        for (int i = 0; i < nconn; i++) {
            if (!p[2 + i].revents)
                continue;
            ssize_t n = read(p[2 + i].fd, bufs[i] + lens[i],
                             sizeof bufs[i] - lens[i]);
            if (n <= 0) { /* closed: the last one takes its place */
                close(p[2 + i].fd);
                nconn--;
                p[2 + i] = p[2 + nconn];
                memcpy(bufs[i], bufs[nconn], lens[nconn]);
                lens[i--] = lens[nconn];
                continue;
            }
            lens[i] += (size_t)n;
            char *end;
            while ((end = memmem(bufs[i], lens[i], "\r\n\r\n", 4))) {
                double now = harness_now();
                if (!first)
                    first = now;
                if (!stalled && now - first >= sv->stall_after_ms / 1000.0) {
                    stalled = true;
                    harness_sleep_ms(sv->stall_ms);
                }
                static const char ok[] = "HTTP/1.1 200 OK\r\n"
                                         "Content-Length: 2\r\n\r\nok";
                if (send(p[2 + i].fd, ok, sizeof ok - 1, MSG_NOSIGNAL) < 0)
                    break;
                size_t used = (size_t)(end + 4 - bufs[i]);
                memmove(bufs[i], bufs[i] + used, lens[i] - used);
                lens[i] -= used;
            }
        }
    }
    for (int i = 0; i < nconn; i++)
        close(p[2 + i].fd);
    return NULL;
}

/* Starts it listening on 127.0.0.1 (all of 127.0.0.0/8 reaches it). */
static void stall_server_start(struct stall_server *sv, int stall_after_ms,
                               int stall_ms)
{
    *sv = (struct stall_server){.stall_after_ms = stall_after_ms,
                                .stall_ms = stall_ms};
    sv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sv->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(sv->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(sv->lfd, 256), 0);
    ck_assert_int_eq(getsockname(sv->lfd, (struct sockaddr *)&a, &len), 0);
    sv->port = ntohs(a.sin_port);
    ck_assert_int_eq(pipe2(sv->stop_pipe, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&sv->thread, NULL, stall_server_run, sv),
                     0);
}

static void stall_server_stop(struct stall_server *sv)
{
    ck_assert_int_eq(write(sv->stop_pipe[1], "x", 1), 1);
    pthread_join(sv->thread, NULL);
    close(sv->lfd);
    close(sv->stop_pipe[0]);
    close(sv->stop_pipe[1]);
}

/* Rows of a --timeline chart: lines starting with "  #". Fills bars[i]
 * with row i's bar (between the '|'), returns how many. */
static int timeline_rows(const char *text, char bars[][256], int max)
{
    int n = 0;
    for (const char *line = text; line && *line && n < max;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 3 && strncmp(line, "  #", 3) == 0) {
            const char *a = memchr(line, '|', len);
            const char *b = a ? memchr(a + 1, '|', len - (size_t)(a + 1 - line))
                              : NULL;
            ck_assert_msg(a && b, "row without a bar: %.*s", (int)len, line);
            size_t bl = (size_t)(b - a - 1);
            ck_assert_uint_lt(bl, 256);
            memcpy(bars[n], a + 1, bl);
            bars[n][bl] = '\0';
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static int first_col(const char *bar, char c)
{
    const char *p = strchr(bar, c);
    return p ? (int)(p - bar) : -1;
}

START_TEST(json_counts_twenty_requests)
{
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 2000, .args = quiet});
    char *url = url_of(s.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "-n", "20", "-c", "5",
                                          "--url", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_int_eq((int)json_num(r.out, "requests"), 20);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 20);
    ck_assert_int_eq((int)json_num(r.out, "failed"), 0);
    ck_assert_int_eq((int)json_num(r.out, "concurrency"), 5);
    ck_assert_ptr_nonnull(strstr(r.out, "\"status_counts\": {\"200\": 20}"));
    ck_assert_ptr_nonnull(strstr(r.out, "\"keepalive\": true"));
    ck_assert_ptr_nonnull(strstr(r.out, "\"method\": \"GET\""));
    ck_assert(json_num(r.out, "rps") > 0);
    double mn = json_num(r.out, "min_ms"), p50 = json_num(r.out, "p50_ms");
    double p90 = json_num(r.out, "p90_ms"), p99 = json_num(r.out, "p99_ms");
    double mx = json_num(r.out, "max_ms");
    ck_assert(mn > 0 && mn <= p50 && p50 <= p90 && p90 <= p99 && p99 <= mx);
    ck_assert_str_eq(r.err, ""); /* a short run prints no progress */
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(sync_requests_with_bills_queue_behind_each_other_on_01)
{
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 2000, .args = quiet});
    char *url = url_of(s.port, "/api/exchange_sync");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--bills", "2", "-n", "3",
                                          "-c", "3", "--url", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 3);
    ck_assert_ptr_nonnull(strstr(r.out, "\"method\": \"POST\""));
    /* 3 requests x 2 bills x 100 ms, one request at a time. */
    ck_assert(json_num(r.out, "wall_s") >= 0.55);
    ck_assert(json_num(r.out, "max_ms") >= 550);
    ck_assert(json_num(r.out, "min_ms") >= 180);
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(timeline_draws_a_staircase_for_01)
{
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 2000, .args = quiet});
    char *url = url_of(s.port, "/api/exchange_sync");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--timeline", "--width", "40",
                                          "--bills", "1", "-c", "4", url,
                                          NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_msg(strncmp(r.out, "timeline: 4 requests", 20) == 0, "%s", r.out);
    char bars[8][256];
    ck_assert_int_eq(timeline_rows(r.out, bars, 8), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq((int)strlen(bars[i]), 40);
        ck_assert_int_eq(first_col(bars[i], '#'), 0); /* all sent at once */
        if (i > 0) /* ...and answered one after another */
            ck_assert_msg(count_char(bars[i], '#') >
                              count_char(bars[i - 1], '#') + 5,
                          "not a staircase:\n%s", r.out);
    }
    ck_assert_int_eq(count_char(bars[3], '#'), 40); /* the last ends it */
    /* the summary follows the chart */
    ck_assert_ptr_nonnull(strstr(r.out, "4 ok (2xx), 0 failed"));
    ck_assert_ptr_nonnull(strstr(r.out, "latency"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(timeline_draws_a_wall_for_a_concurrent_server)
{
    if (harness_skip("timeline_draws_a_wall_for_a_concurrent_server"))
        return;
    /* Six long polls on the main service wait 300 ms each, together, and
     * end with 404 (no such result): a wall, drawn with 'x'. */
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/api/exchange_result/none?wait_ms=300");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--timeline", "--width", "40",
                                          "-c", "6", url, NULL}, 0);
    ck_assert_int_eq(r.status, 1); /* failures: 404s */
    char bars[8][256];
    ck_assert_int_eq(timeline_rows(r.out, bars, 8), 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(count_char(bars[i], '#'), 0);
        ck_assert_int_ge(count_char(bars[i], 'x'), 36);
        ck_assert_int_eq(first_col(bars[i], 'x'), 0);
    }
    ck_assert_ptr_nonnull(strstr(r.out, "HTTP 404"));
    ck_assert_ptr_nonnull(strstr(r.out, "failures  HTTP 404 x6"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(span_fixes_the_time_axis)
{
    /* Four requests of 100 ms on 01 end at 0.4 s; on a 1 s axis of 40
     * columns the last bar covers about 16 of them. */
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 2000, .args = quiet});
    char *url = url_of(s.port, "/api/exchange_sync");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--timeline", "--width", "40",
                                          "--span", "1", "--bills", "1",
                                          "-c", "4", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    char bars[8][256];
    ck_assert_int_eq(timeline_rows(r.out, bars, 8), 4);
    int last = count_char(bars[3], '#');
    ck_assert_msg(last >= 15 && last <= 22, "last bar %d of 40:\n%s", last,
                  r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "one column = 25 ms"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(threads_share_the_requests)
{
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "-t", "3", "-c", "6", "-n",
                                          "600", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_int_eq((int)json_num(r.out, "threads"), 3);
    ck_assert_int_eq((int)json_num(r.out, "requests"), 600);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 600);
    run_free(&r);
    /* -d with threads, and more threads than connections is trimmed */
    run_loadgen(&r, (const char *const[]){"--json", "-t", "8", "-c", "2", "-d",
                                          "0.5", url, NULL}, 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq((int)json_num(r.out, "threads"), 2);
    ck_assert(json_num(r.out, "ok") > 10);
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(timeline_samples_forty_rows_of_many)
{
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--timeline", "-n", "100", "-c",
                                          "10", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "timeline: 100 requests (40 rows, "
                                        "sampled evenly by start time)"));
    char bars[64][256];
    ck_assert_int_eq(timeline_rows(r.out, bars, 64), 40);
    ck_assert_int_eq((int)strlen(bars[0]), 60); /* not a tty: 60 columns */
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(json_timeline_lists_every_request)
{
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--timeline", "-n", "7",
                                          "-c", "3", url, NULL}, 0);
    ck_assert_int_eq(r.status, 0);
    int rows = 0;
    for (const char *p = r.out; (p = strstr(p, "{\"start_ms\": ")); p++)
        rows++;
    ck_assert_int_eq(rows, 7);
    ck_assert_ptr_nonnull(
        strstr(r.out, "\"status\": 200, \"outcome\": \"ok\"}"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(refused_connections_are_counted)
{
    /* A bound socket that does not listen: connecting to it is refused,
     * and nobody else can take the port meanwhile. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    ck_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    char *url = url_of(ntohs(a.sin_port), "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "-n", "4", "-c", "2", url,
                                          NULL}, 0);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq((int)json_num(r.out, "refused"), 4);
    ck_assert_int_eq((int)json_num(r.out, "failed"), 4);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\"status_counts\": {}"));
    run_free(&r);
    run_loadgen(&r, (const char *const[]){"-n", "2", url, NULL}, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "failures  refused 2"));
    run_free(&r);
    free(url);
    close(fd);
}
END_TEST

START_TEST(timeouts_and_http_statuses_are_counted)
{
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 1000, .client_timeout_ms = 2000, .args = quiet});
    char *url = url_of(s.port, "/api/exchange_sync");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--bills", "1",
                                          "--timeout-ms", "200", "-n", "2",
                                          "-c", "2", url, NULL}, 0);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq((int)json_num(r.out, "timeout"), 2);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 0);
    run_free(&r);
    free(url);
    /* a 404 is an answer, counted by status */
    url = url_of(s.port, "/nowhere");
    run_loadgen(&r, (const char *const[]){"--json", "-n", "3", "-c", "1", url,
                                          NULL}, 0);
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq((int)json_num(r.out, "http_errors"), 3);
    ck_assert_ptr_nonnull(strstr(r.out, "\"status_counts\": {\"404\": 3}"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(stalled_connections_hold_01_until_its_idle_timeout)
{
    /* Three half-sent requests reach 01 first; it waits 200 ms on each
     * before dropping it, so the measured request waits about 600 ms. */
    struct proc s;
    harness_stage_start(&s, "01-blocking", &(struct stage_opts){
        .delay_ms = 100, .client_timeout_ms = 200, .args = quiet});
    char *url = url_of(s.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--stall", "3", "-n", "1",
                                          url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 1);
    ck_assert_int_eq((int)json_num(r.out, "stall_requested"), 3);
    ck_assert_int_eq((int)json_num(r.out, "stall_connected"), 3);
    ck_assert_int_eq((int)json_num(r.out, "stall_dropped"), 3);
    ck_assert(json_num(r.out, "max_ms") >= 450);
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&s, 20000), 0);
}
END_TEST

START_TEST(watch_pid_reports_the_servers_memory_and_cpu)
{
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)m.pid);
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--watch-pid", pid, "-n",
                                          "300", "-c", "20", "--stall", "10",
                                          url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert(json_num(r.out, "server_rss_start_kb") > 0);
    ck_assert(json_num(r.out, "server_rss_peak_kb") >=
              json_num(r.out, "server_rss_start_kb"));
    /* a thread per connection: the stalls alone hold ten threads */
    ck_assert(json_num(r.out, "server_threads_peak") >= 10);
    ck_assert_int_eq((int)json_num(r.out, "server_procs_peak"), 1);
    ck_assert(json_num(r.out, "server_cpu_s") >= 0);
    ck_assert_int_eq((int)json_num(r.out, "stall_dropped"), 0);
    run_free(&r);
    /* the text form says the same in one line */
    run_loadgen(&r, (const char *const[]){"--watch-pid", pid, "-n", "10", url,
                                          NULL}, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "  server    cpu "));
    ck_assert_ptr_nonnull(strstr(r.out, "in 1 process\n"));
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(print_shows_each_response_like_a_tiny_curl)
{
    struct proc m;
    start_main(&m);
    char *put = url_of(m.port, "/api/exchange_result");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--print", "--method", "PUT",
                                          "--body",
                                          "{\"token\":\"test-token\","
                                          "\"request_id\":\"p1\","
                                          "\"breakdown\":[]}",
                                          "-n", "1", put, NULL}, 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strncmp(r.out, "HTTP 200 in ", 12) == 0, "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, " ms: {\"status\":\"ok\"}\n"));
    ck_assert_ptr_null(strstr(r.out, "latency")); /* no summary */
    run_free(&r);
    char *get = url_of(m.port, "/api/exchange_result/p1");
    run_loadgen(&r, (const char *const[]){"--print", get, NULL}, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "{\"request_id\":\"p1\","
                                        "\"breakdown\":[]}"));
    run_free(&r);
    free(put);
    free(get);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(duration_keepalive_off_and_progress)
{
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "-d", "2.5", "-c", "4",
                                          "--no-keepalive", url, NULL}, 0);
    ck_assert_msg(r.status == 0, "exit %d, stderr:\n%s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "\"keepalive\": false"));
    double wall = json_num(r.out, "wall_s");
    ck_assert_msg(wall >= 2.4 && wall < 6, "wall %f", wall);
    ck_assert(json_num(r.out, "requests") > 20);
    /* stderr is not a terminal: one plain progress line a second */
    ck_assert_msg(strstr(r.err, "loadgen:   2.") && strstr(r.err, "req/s"),
                  "no progress line in:\n%s", r.err);
    ck_assert_ptr_null(strchr(r.err, '\r'));
    run_free(&r);
    run_loadgen(&r, (const char *const[]){"--json", "--quiet", "-d", "2.2",
                                          "-c", "2", url, NULL}, 0);
    ck_assert_str_eq(r.err, "");
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

START_TEST(sigint_stops_the_run_and_still_reports)
{
    if (harness_skip("sigint_stops_the_run_and_still_reports"))
        return;
    struct proc m;
    start_main(&m);
    char *url = url_of(m.port, "/");
    struct run r;
    run_loadgen(&r, (const char *const[]){"--json", "--quiet", "-d", "60",
                                          "-c", "4", url, NULL}, 700);
    ck_assert_int_eq(r.status, 130);
    ck_assert_ptr_nonnull(strstr(r.out, "\"interrupted\": true"));
    ck_assert(json_num(r.out, "requests") > 0);
    ck_assert_int_eq((int)json_num(r.out, "failed"), 0);
    run_free(&r);
    free(url);
    ck_assert_int_eq(proc_stop(&m, 5000), 0);
}
END_TEST

/* Coordinated omission. The server stalls for 500 ms in the middle of a
 * 1.5 s run. A closed loop (each connection sends again once answered)
 * sends nothing while it waits, so only the few requests in flight see
 * the stall: its max does, its p99 does not. The open loop (--rate 200)
 * has 100 requests due during the stall; each is timed from when it was
 * due, so they wait 0 to 500 ms, a third of the run: p90 shows it. A
 * loadgen that timed them from when they really left (a connection came
 * free after the stall) would show p90 as fast as the closed loop's: that
 * is what this check rejects (tests/mutants/rate-from-sent.patch). */
START_TEST(open_loop_shows_a_stall_the_closed_loop_hides)
{
    struct stall_server sv;
    stall_server_start(&sv, 500, 500);
    char *url = url_of(sv.port, "/");
    struct started open_st, closed_st;
    start_loadgen(&open_st, (const char *const[]){"--json", "--quiet",
                  "--rate", "200", "-c", "8", "-d", "1.5", url, NULL}, 0);
    start_loadgen(&closed_st, (const char *const[]){"--json", "--quiet",
                  "-c", "8", "-d", "1.5", url, NULL}, 0);
    struct run o, c;
    finish_loadgen(&o, &open_st, 20000);
    finish_loadgen(&c, &closed_st, 20000);
    stall_server_stop(&sv);
    ck_assert_msg(o.status == 0 && c.status == 0, "exit %d and %d:\n%s%s",
                  o.status, c.status, o.err, c.err);
    /* both saw the stall... */
    ck_assert_msg(json_num(o.out, "max_ms") >= 400, "%s", o.out);
    ck_assert_msg(json_num(c.out, "max_ms") >= 400, "%s", c.out);
    /* ...the open loop at its schedule: about 300 requests, a third of
     * them due during the stall... */
    ck_assert_int_eq((int)json_num(o.out, "rate"), 200);
    int n = (int)json_num(o.out, "requests");
    ck_assert_msg(n >= 280 && n <= 302, "%d requests", n);
    ck_assert_msg(json_num(o.out, "p90_ms") >= 200, "open loop:\n%s", o.out);
    ck_assert_msg(json_num(o.out, "send_lag_p99_ms") >= 200, "%s", o.out);
    /* ...while the closed loop's percentiles say nothing happened */
    ck_assert_msg(json_num(c.out, "requests") > 300, "%s", c.out);
    ck_assert_msg(json_num(c.out, "p90_ms") < 100, "closed loop:\n%s",
                  c.out);
    ck_assert_int_eq((int)json_num(c.out, "rate"), 0);
    run_free(&o);
    run_free(&c);
    free(url);
}
END_TEST

/* --procs and --sources: 80 connections where one process may hold 64
 * descriptors. One process cannot open them all (some fail at once, "no
 * file descriptor"); two processes of 40 each can, and each connection
 * comes from one of three source addresses, 127.0.0.2 to 127.0.0.4. */
START_TEST(procs_and_sources_spread_the_connections)
{
    struct stall_server sv;
    stall_server_start(&sv, 0, 0);
    char *url = url_of(sv.port, "/");
    struct started st;
    struct run r;
    start_loadgen(&st, (const char *const[]){"--json", "--quiet", "-c", "80",
                  "-n", "160", url, NULL}, 64);
    finish_loadgen(&r, &st, 20000);
    ck_assert_msg(r.status == 1 && json_num(r.out, "failed") > 0,
                  "exit %d:\n%s%s", r.status, r.out, r.err);
    run_free(&r);
    ck_assert(sv.peers[1]); /* the kernel's choice */
    memset(sv.peers, 0, sizeof sv.peers);
    sv.connections = 0;
    start_loadgen(&st, (const char *const[]){"--json", "--quiet", "-c", "80",
                  "-n", "160", "--procs", "2", "--sources", "3", url, NULL},
                  64);
    finish_loadgen(&r, &st, 20000);
    stall_server_stop(&sv);
    ck_assert_msg(r.status == 0, "exit %d:\n%s%s", r.status, r.out, r.err);
    ck_assert_int_eq((int)json_num(r.out, "ok"), 160);
    ck_assert_int_eq((int)json_num(r.out, "procs"), 2);
    ck_assert_int_eq((int)json_num(r.out, "sources"), 3);
    ck_assert_uint_eq(sv.connections, 80); /* keep-alive: two requests each */
    ck_assert(sv.peers[2] && sv.peers[3] && sv.peers[4]);
    ck_assert(!sv.peers[1] && !sv.peers[5]);
    run_free(&r);
    /* the sources reach only a loopback server */
    run_loadgen(&r, (const char *const[]){"--sources", "2",
                                          "http://[::1]:1/", NULL}, 0);
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "--sources"));
    run_free(&r);
    free(url);
}
END_TEST

/* When connections cannot even be opened (no descriptor left here; no
 * local port left, in a big run), a request fails before it leaves. The
 * loop then pauses RETRY_PAUSE_MS (100 ms) instead of retrying at once:
 * the run ends on time and records a bounded number of failures (40
 * connections, at most one failure each per pause: a few hundred in a
 * second), where a loop that retried at once spun until -d was over, or,
 * timing its retries with the clock read before the burst, for ever. */
START_TEST(connections_that_cannot_open_pause_the_loop)
{
    struct stall_server sv;
    stall_server_start(&sv, 0, 0);
    char *url = url_of(sv.port, "/");
    struct started st;
    struct run r;
    double t0 = harness_now();
    start_loadgen(&st, (const char *const[]){"--json", "--quiet", "-c", "40",
                  "-d", "1", url, NULL}, 24);
    finish_loadgen(&r, &st, 10000);
    double took = harness_now() - t0;
    stall_server_stop(&sv);
    ck_assert_msg(r.status == 1, "exit %d after %.1f s:\n%s%s", r.status,
                  took, r.out, r.err);
    ck_assert_msg(took < 5, "took %.1f s", took);
    double failed = json_num(r.out, "failed");
    ck_assert_msg(failed > 0 && failed <= 40 * 15, "%.0f failed:\n%s",
                  failed, r.out);
    ck_assert(json_num(r.out, "ok") > 0); /* the connections it did open */
    run_free(&r);
    free(url);
}
END_TEST

START_TEST(command_line)
{
    struct run r;
    run_loadgen(&r, (const char *const[]){"--help", NULL}, 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "usage: loadgen"));
    ck_assert_ptr_nonnull(strstr(r.out, "--timeline"));
    run_free(&r);
    static const char *const bad[][6] = {
        {NULL},                                      /* no URL */
        {"-c", "0", "http://127.0.0.1:1/", NULL},     /* bad concurrency */
        {"-n", "5", "-d", "1", "http://127.0.0.1:1/", NULL},
        {"--bogus", "http://127.0.0.1:1/", NULL},
        {"--timeout-ms", NULL},                       /* missing value */
        {"http://a/", "http://b/", NULL},             /* two URLs */
        {"--engine", "fast", "http://127.0.0.1:1/", NULL},
        {"--engine", "raw", "https://127.0.0.1:1/", NULL}, /* plain only */
        {"--procs", "0", "http://127.0.0.1:1/", NULL},
        {"--rate", "0", "http://127.0.0.1:1/", NULL},
        {"--sources", "251", "http://127.0.0.1:1/", NULL}, /* 127.0.0.252+ */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_loadgen(&r, bad[i], 0);
        ck_assert_msg(r.status == 2, "case %zu: exit %d", i, r.status);
        ck_assert_ptr_nonnull(strstr(r.err, "loadgen: "));
        run_free(&r);
    }
    /* A bad number is named with its option and its range. */
    run_loadgen(&r, (const char *const[]){"-c", "5x", "http://a/", NULL}, 0);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "-c wants 1..1000000, not '5x'"), "%s", r.err);
    run_free(&r);
}
END_TEST

static Suite *loadgen_suite(void)
{
    Suite *s = suite_create(engine);
    TCase *tc = tcase_create(engine);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, json_counts_twenty_requests);
    tcase_add_test(tc, sync_requests_with_bills_queue_behind_each_other_on_01);
    tcase_add_test(tc, timeline_draws_a_staircase_for_01);
    tcase_add_test(tc, timeline_draws_a_wall_for_a_concurrent_server);
    tcase_add_test(tc, span_fixes_the_time_axis);
    tcase_add_test(tc, threads_share_the_requests);
    tcase_add_test(tc, timeline_samples_forty_rows_of_many);
    tcase_add_test(tc, json_timeline_lists_every_request);
    tcase_add_test(tc, refused_connections_are_counted);
    tcase_add_test(tc, timeouts_and_http_statuses_are_counted);
    tcase_add_test(tc, stalled_connections_hold_01_until_its_idle_timeout);
    tcase_add_test(tc, watch_pid_reports_the_servers_memory_and_cpu);
    tcase_add_test(tc, print_shows_each_response_like_a_tiny_curl);
    tcase_add_test(tc, duration_keepalive_off_and_progress);
    tcase_add_test(tc, sigint_stops_the_run_and_still_reports);
    tcase_add_test(tc, open_loop_shows_a_stall_the_closed_loop_hides);
    tcase_add_test(tc, procs_and_sources_spread_the_connections);
    tcase_add_test(tc, connections_that_cannot_open_pause_the_loop);
    tcase_add_test(tc, command_line);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int failed = 0;
    static const char *const engines[] = {"curl", "raw"};
    for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++) {
        engine = engines[i];
        failed |= harness_run(loadgen_suite());
    }
    return failed;
}
