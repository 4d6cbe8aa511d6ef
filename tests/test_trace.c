/* test_trace: --trace and tools/trace.
 *
 *   format   the line format, O_APPEND from a forked child and its parent
 *            at once, nothing written while tracing is off, a loop
 *            thread's turn written at once, counters only when they
 *            change, functions named from the symbol table, the client's
 *            port on an accept and its requests
 *   model    tools/trace's pairing of begins and ends, rows, the states
 *            of 06's coroutines and 05's callbacks, the arrows, the
 *            counters, the busy window, and that the JSON and the page
 *            hold one drawing per span
 *   stages   every stage traces accept, request, each bill and the
 *            callback, paired; 04-06 their loop's turns, 05-06 their
 *            callbacks, 06 its coroutines' switches
 *   browser  headless Chromium opens the page of a real run of 05 and 06
 *            (each with loadgen, both tracing): the bars it drew, counted
 *            by the page's own script, equal the trace's begin events;
 *            06's panel has running and parked states, arrows and
 *            counters, 05's its loop's turns; the screenshot shows their
 *            colours. And a page of 10,000 requests is parsed and laid out
 *            in under 2 s. Skipped with a message only where chromium is
 *            not installed. */
#include <check.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef HAVE_ZLIB
#include <zlib.h>
#endif

#include "harness.h"
#include "symtab.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SAN_BUILD 1
#endif
#endif
#include "trace.h"
#include "../tools/trace/tracetool.h"

/* ---- helpers ---- */

static char *make_temp_dir(void)
{
    char tmpl[] = "/tmp/test_trace.XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static void remove_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_trace: could not remove %s\n", dir);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Lines of a trace with this name and phase (" bill B "), counted by the
 * test itself, not by the tool under test. */
static size_t trace_lines(const char *text, const char *name, char ph)
{
    char needle[32];
    snprintf(needle, sizeof needle, " %s %c ", name, ph);
    return count_of(text, needle);
}

/* ---- format ---- */

START_TEST(format_is_seven_fields)
{
    char line[TRACE_LINE_MAX];
    int n = trace_format(line, 1234567, 42, 43, -1, TRACE_BILL_BEGIN, 99,
                         NULL);
    ck_assert_str_eq(line, "1234567 42 43 -1 bill B 99\n");
    ck_assert_int_eq(n, (int)strlen(line));
    trace_format(line, 5, 1, 1, 7, TRACE_CLIENT_FIRST, 3, NULL);
    ck_assert_str_eq(line, "5 1 1 7 first_byte I 3\n");
    trace_format(line, 5, 1, 1, -1, TRACE_NUM_KINDS, 0, "04-select");
    ck_assert_str_eq(line, "5 1 1 -1 stage M 0 04-select\n");
    trace_format(line, 18446744073709551615u, -7, 8, 3, TRACE_CO_END, 3,
                 "read fd 7");
    ck_assert_str_eq(line, "18446744073709551615 -7 8 3 co E 3 read fd 7\n");
    trace_format(line, 1, 1, 1, -1, TRACE_COUNT_CONNS, 0, "a\nb");
    ck_assert_str_eq(line, "1 1 1 -1 conns C 0 a b\n"); /* one line */
    char longer[200];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    n = trace_format(line, 18446744073709551615u, -9223372036854775807L,
                     -9223372036854775807L, -9223372036854775807L,
                     TRACE_CLIENT_FIRST, 18446744073709551615u, longer);
    ck_assert_int_lt(n, TRACE_LINE_MAX);
    ck_assert_int_eq(line[n - 1], '\n');
}
END_TEST

/* Lines in the file at path (0 if there is none). */
static size_t lines_in(const char *path)
{
    char *text = harness_read_file(path);
    size_t n = text ? count_of(text, "\n") : 0;
    free(text);
    return n;
}

static void *traces_once(void *arg)
{
    (void)arg;
    TRACE(TRACE_REQ_BEGIN, NULL, 9);
    return NULL;
}

/* The loop thread gathers a turn: its lines go out when it next blocks;
 * any other thread's at once. */
START_TEST(loop_thread_writes_its_turn_at_once)
{
    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_open(path, "unit"), 0);
    ck_assert_uint_eq(lines_in(path), 1);
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, 1, "timeout", 5);
    ck_assert_uint_eq(lines_in(path), 2);
    TRACE_NOTE(TRACE_BLOCKED_END, 1, "events", 1);
    TRACE(TRACE_REQ_BEGIN, NULL, 7);
    TRACE(TRACE_REQ_END, NULL, 7);
    ck_assert_uint_eq(lines_in(path), 2); /* gathered */
    pthread_t other;
    ck_assert_int_eq(pthread_create(&other, NULL, traces_once, NULL), 0);
    pthread_join(other, NULL);
    ck_assert_uint_eq(lines_in(path), 3); /* not the loop: written at once */
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, 1, "timeout", 5);
    ck_assert_uint_eq(lines_in(path), 7);
    TRACE(TRACE_REQ_BEGIN, NULL, 8);
    trace_close(); /* writes what is left */
    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(count_of(text, "\n"), 8);
    /* In order: the turn's lines between its two blocked B. */
    const char *e = strstr(text, " blocked E 1 events 1\n");
    const char *r7 = strstr(text, " request B 7\n");
    const char *b2 = strstr(e ? e : text, " blocked B 1 timeout 5\n");
    ck_assert(e && r7 && b2 && e < r7 && r7 < b2);
    free(text);
    remove_dir(dir);
    free(dir);
}
END_TEST

START_TEST(counters_only_when_they_change)
{
    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_open(path, "unit"), 0);
    TRACE(TRACE_COUNT_CONNS, NULL, 0);
    TRACE(TRACE_COUNT_CONNS, NULL, 1);
    TRACE(TRACE_COUNT_CONNS, NULL, 1);
    TRACE(TRACE_COUNT_JOBS, NULL, 1);
    TRACE(TRACE_COUNT_CONNS, NULL, 0);
    trace_close();
    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(trace_lines(text, "conns", 'C'), 3);
    ck_assert_uint_eq(trace_lines(text, "jobs", 'C'), 1);
    free(text);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* A callback the trace names: static, as the stages' are. */
static void on_something_ready(void) {}

START_TEST(functions_named_from_the_symbol_table)
{
    const char *name = symtab_name((uintptr_t)on_something_ready);
    ck_assert_ptr_nonnull(name);
    ck_assert_str_eq(name, "on_something_ready");
    ck_assert_str_eq(symtab_name((uintptr_t)symtab_name), "symtab_name");
    /* Inside a function, not only at its start. */
    ck_assert_str_eq(symtab_name((uintptr_t)trace_format + 1),
                     "trace_format");
    ck_assert_ptr_null(symtab_name((uintptr_t)&printf)); /* libc's */

    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_open(path, "unit"), 0);
    TRACE_FN(TRACE_RUN_BEGIN, 0, on_something_ready, 7);
    TRACE_FN(TRACE_CO_SPAWN, 3, on_something_ready, -1);
    trace_close();
    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, " run B 0 on_something_ready fd 7\n"));
    ck_assert_ptr_nonnull(strstr(text, " spawn I 3 on_something_ready\n"));
    free(text);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* An accept and the connection's requests name the client's port, which
 * is how the tool finds the client request a server request answers. */
START_TEST(accept_and_requests_carry_the_port)
{
    int port, lfd = harness_listen(&port);
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(cfd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    ck_assert_int_eq(getsockname(cfd, (struct sockaddr *)&me, &len), 0);
    int fd = accept(lfd, NULL, NULL);
    ck_assert_int_ge(fd, 0);

    char *dir = make_temp_dir();
    char path[256], want[64];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_open(path, "unit"), 0);
    TRACE(TRACE_ACCEPT, NULL, fd);
    TRACE(TRACE_REQ_BEGIN, NULL, fd);
    TRACE(TRACE_REQ_END, NULL, fd);
    trace_close();
    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    snprintf(want, sizeof want, " accept I %d port %d\n", fd,
             ntohs(me.sin_port));
    ck_assert_msg(strstr(text, want), "no '%s' in:\n%s", want, text);
    snprintf(want, sizeof want, " request B %d port %d\n", fd,
             ntohs(me.sin_port));
    ck_assert_msg(strstr(text, want), "no '%s' in:\n%s", want, text);
    free(text);
    close(fd);
    close(cfd);
    close(lfd);
    remove_dir(dir);
    free(dir);
}
END_TEST

START_TEST(off_writes_nothing_and_fork_appends_whole_lines)
{
    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_fd, -1);
    TRACE(TRACE_ACCEPT, NULL, 1); /* off: no file appears */
    ck_assert_int_ne(access(path, F_OK), 0);

    ck_assert_int_eq(trace_open(path, "unit"), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    for (int i = 0; i < 500; i++)
        TRACE(TRACE_BILL_BEGIN, NULL, i);
    if (child == 0)
        _exit(0); /* no flush needed: every event is already written */
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    trace_close();

    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    size_t lines = 0, from_child = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long t, id;
        long pid, tid, co;
        char name[16], ph;
        ck_assert_int_eq(sscanf(line, "%llu %ld %ld %ld %15s %c %llu", &t,
                                &pid, &tid, &co, name, &ph, &id), 7);
        lines++;
        if (pid == (long)child) {
            from_child++;
            ck_assert_int_eq(tid, pid); /* its own tid, not the parent's */
        }
    }
    ck_assert_uint_eq(lines, 1 + 1000);
    ck_assert_uint_eq(from_child, 500);
    free(text);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* ---- model ---- */

/* Two requests interleaved on one lane (04's way), one bill left open, an
 * end nobody began, a client request with its first byte, a bad line. */
static const char model_trace[] =
    "100 7 7 -1 stage M 0 04-select\n"
    "100 7 7 -1 accept I 5\n"
    "110 7 7 -1 request B 5\n"
    "120 7 7 -1 request B 6\n"
    "130 7 7 -1 bill B 1000\n"
    "400 7 7 -1 request E 5\n"
    "450 7 7 -1 request E 6\n"
    "460 7 7 -1 request E 9\n"
    "105 8 8 -1 client B 77\n"
    "390 8 8 -1 first_byte I 77\n"
    "410 8 8 -1 client E 77\n"
    "500 7 9 -1 callback B 3\n"
    "not a trace line\n";

static void load_model(struct panel *p)
{
    FILE *in = fmemopen((void *)model_trace, sizeof model_trace - 1, "r");
    ck_assert_ptr_nonnull(in);
    ck_assert(panel_read(p, in, "04-select"));
    fclose(in);
}

START_TEST(model_pairs_and_stacks)
{
    struct panel p;
    load_model(&p);
    ck_assert_uint_eq(p.bad_lines, 1);
    ck_assert_uint_eq(p.unmatched_ends, 1);
    ck_assert_uint_eq(p.events, 11);
    ck_assert_uint_eq(p.length, 400 + 8); /* and a margin of 2% */
    ck_assert_uint_eq(panel_count(&p, true), 1);
    ck_assert_uint_eq(panel_count(&p, false), 4);
    ck_assert_uint_eq(p.nlanes, 2); /* the loop, and thread 9 */
    ck_assert_int_eq(p.lanes[0].rows, 3); /* two requests and a bill overlap */
    ck_assert_uint_eq(p.nmarks, 1);
    for (size_t i = 0; i < p.nspans; i++) {
        const struct span *s = &p.spans[i];
        if (s->kind == SPAN_CLIENT) {
            ck_assert_uint_eq(s->t0, 5);
            ck_assert_uint_eq(s->first, 290);
            ck_assert_uint_eq(s->t1, 310);
        }
        if (s->kind == SPAN_BILL) { /* open: drawn to the end */
            ck_assert(s->open);
            ck_assert_uint_eq(s->t1, p.length);
        }
        if (s->kind == SPAN_REQUEST && s->id == 6)
            ck_assert_uint_eq(s->t1 - s->t0, 330);
    }
    panel_free(&p);
}
END_TEST

START_TEST(json_and_page_draw_every_span)
{
    struct panel p;
    load_model(&p);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert(write_chrome_json(out, &p, 1));
    fclose(out);
    ck_assert_uint_eq(count_of(buf, "\"ph\":\"X\""), 5);
    ck_assert_uint_eq(count_of(buf, "\"name\":\"accept\""), 1);
    ck_assert_ptr_nonnull(strstr(buf, "\"args\":{\"name\":\"04-select\"}"));
    free(buf);

    out = open_memstream(&buf, &len);
    ck_assert(write_html(out, &p, 1, "a <test> page"));
    fclose(out);
    ck_assert_uint_eq(count_of(buf, "<rect class=\"client "), 1);
    ck_assert_uint_eq(count_of(buf, "<rect class=\"span "), 4);
    ck_assert_uint_eq(count_of(buf, " open\""), 2); /* the bill, the PUT */
    ck_assert_ptr_nonnull(strstr(buf, "a &lt;test&gt; page"));
    /* Self-contained: nothing to fetch, so it opens offline. */
    ck_assert_ptr_null(strstr(buf, "src="));
    ck_assert_ptr_null(strstr(buf, "<link"));
    free(buf);
    panel_free(&p);
}
END_TEST

/* 06's scheduler: an acceptor parked since start-up (before the busy
 * window), a connection's coroutine that sleeps for a bill, the client's
 * request from port 4000. */
static const char coro_trace[] =
    "1000 9 9 -1 stage M 0 06-coroutines\n"
    "1000 9 9 -1 spawn I 1 accept_loop\n"
    "1001 9 9 -1 ready C 1\n"
    "1002 9 9 1 co B 1\n"
    "1003 9 9 1 co E 1 read fd 6\n"
    "1004 9 9 -1 ready C 0\n"
    "1005 9 9 -1 blocked B 77 no timeout\n"
    "5000 9 9 -1 blocked E 77 events 1\n"
    "5001 9 9 -1 run B 0 co_on_fd fd 6\n"
    "5002 9 9 -1 wake I 1\n"
    "5003 9 9 -1 run E 0\n"
    "5004 9 9 1 co B 1\n"
    "5005 9 9 1 accept I 8 port 4000\n"
    "5006 9 9 1 spawn I 2 serve_connection\n"
    "5007 9 9 1 conns C 1\n"
    "5008 9 9 1 co E 1 read fd 6\n"
    "5010 9 9 2 co B 2\n"
    "5011 9 9 2 request B 8 port 4000\n"
    "5012 9 9 2 bill B 500\n"
    "5013 9 9 2 co E 2 sleep\n"
    "5014 9 9 -1 blocked B 77 timeout 300\n"
    "5300 9 9 -1 blocked E 77 events 0\n"
    "5301 9 9 -1 run B 123 co_on_timer\n"
    "5302 9 9 -1 wake I 2\n"
    "5303 9 9 -1 run E 123\n"
    "5304 9 9 2 co B 2\n"
    "5305 9 9 2 bill E 500\n"
    "5306 9 9 2 request E 8\n"
    "5307 9 9 2 co E 2 read fd 8\n"
    "4990 10 11 -1 client B 1 port 4000\n"
    "5310 10 11 -1 client E 1\n";

static void load(struct panel *p, const char *text, const char *title)
{
    FILE *in = fmemopen((void *)text, strlen(text), "r");
    ck_assert_ptr_nonnull(in);
    ck_assert(panel_read(p, in, title));
    fclose(in);
}

/* The one span of kind on lane l that begins at t0, or NULL. */
static const struct span *span_at(const struct panel *p, size_t l,
                                  enum span_kind kind, uint64_t t0)
{
    for (size_t i = 0; i < p->nspans; i++)
        if (p->spans[i].lane == l && p->spans[i].kind == kind &&
            p->spans[i].t0 == t0)
            return &p->spans[i];
    return NULL;
}

static size_t lane_named(const struct panel *p, const char *label)
{
    for (size_t l = 0; l < p->nlanes; l++)
        if (strcmp(p->lanes[l].label, label) == 0)
            return l;
    ck_abort_msg("no lane '%s'", label);
    return 0;
}

static size_t flows_of(const struct panel *p, const char *what)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nflows; i++)
        n += strcmp(p->flows[i].what, what) == 0;
    return n;
}

START_TEST(model_draws_coroutine_states)
{
    struct panel p;
    load(&p, coro_trace, "06-coroutines");
    ck_assert(p.coroutines);
    /* The busy window: the client's request, 2% either side, not the
     * idle start-up (t = 4990 - 6 is 0). */
    ck_assert_uint_eq(p.start, 4984);
    ck_assert_uint_eq(p.length, 5310 + 6 - 4984);
    ck_assert_uint_eq(p.nlanes, 3);
    ck_assert_int_eq(p.lanes[0].kind, LANE_LOOP); /* the loop first */
    size_t co2 = lane_named(&p, "co 2 serve_connection");
    ck_assert(p.lanes[co2].has_state);
    ck_assert_int_eq(p.lanes[co2].rows, 3); /* states, request, bill */
    /* Running, parked for its bill with the reason, woken, running. */
    const struct span *run1 = span_at(&p, co2, SPAN_RUNNING, 5010 - 4984);
    const struct span *park = span_at(&p, co2, SPAN_PARKED, 5013 - 4984);
    const struct span *ready = span_at(&p, co2, SPAN_READY, 5302 - 4984);
    const struct span *last = span_at(&p, co2, SPAN_PARKED, 5307 - 4984);
    ck_assert(run1 && park && ready && last);
    ck_assert_uint_eq(run1->t1, 5013 - 4984);
    ck_assert_str_eq(park->label, "sleep");
    ck_assert_uint_eq(park->t1, 5302 - 4984);
    ck_assert_uint_eq(ready->t1, 5304 - 4984);
    ck_assert_str_eq(last->label, "read fd 8");
    ck_assert(last->open); /* still parked when the trace ends */
    ck_assert_int_eq(park->row, 0);
    /* The acceptor's wait began before the window: cut, not dropped. */
    size_t co1 = lane_named(&p, "co 1 accept_loop");
    const struct span *acc = span_at(&p, co1, SPAN_PARKED, 0);
    ck_assert(acc && strcmp(acc->label, "read fd 6") == 0);
    ck_assert_uint_eq(acc->t1, 5002 - 4984);
    /* The arrows: the client's request to the server's, the timer's and
     * the fd's callbacks to the runs they caused, the spawn. */
    ck_assert_uint_eq(flows_of(&p, "request"), 1);
    ck_assert_uint_eq(flows_of(&p, "wake"), 2);
    ck_assert_uint_eq(flows_of(&p, "spawn"), 1);
    for (size_t i = 0; i < p.nflows; i++) {
        const struct flow *f = &p.flows[i];
        const struct span *to = &p.spans[f->to_span];
        if (strcmp(f->what, "request") == 0) {
            ck_assert_int_eq(p.spans[f->from_span].kind, SPAN_CLIENT);
            ck_assert_int_eq(to->kind, SPAN_REQUEST);
        } else {
            ck_assert_int_eq(to->kind, SPAN_RUNNING);
            ck_assert_uint_eq(f->t1, to->t0);
        }
        if (strcmp(f->what, "wake") == 0 && to->lane == co2) {
            ck_assert_int_eq(p.spans[f->from_span].kind, SPAN_RUNNING);
            ck_assert_str_eq(p.spans[f->from_span].label, "co_on_timer");
        }
    }
    /* Counters: conns, and the ready queue's 0 from before the window. */
    ck_assert_uint_eq(p.ncounters, 2);
    ck_assert_str_eq(p.counters[0].name, "ready");
    ck_assert_uint_eq(p.counters[0].npoints, 1);
    ck_assert_int_eq(p.counters[0].points[0].value, 0);
    ck_assert_str_eq(p.counters[1].name, "conns");
    ck_assert_int_eq(p.counters[1].max, 1);
    panel_free(&p);
}
END_TEST

/* 05's callbacks: a connection's callbacks run on its own lane (their
 * arg), the time between them is its wait, named after the callback that
 * ends it; a new connection in a reused struct is a new lane. */
static const char callback_trace[] =
    "100 7 7 -1 blocked B 55 no timeout\n"
    "200 7 7 -1 blocked E 55 events 1\n"
    "201 7 7 -1 run B 0 on_accept fd 5\n"
    "202 7 7 -1 accept I 9 port 5000\n"
    "203 7 7 -1 conns C 1\n"
    "204 7 7 -1 run E 0\n"
    "205 7 7 -1 run B 4096 on_readable fd 9\n"
    "206 7 7 -1 request B 9 port 5000\n"
    "207 7 7 -1 bill B 800\n"
    "208 7 7 -1 run E 4096\n"
    "209 7 7 -1 blocked B 55 timeout 100\n"
    "309 7 7 -1 blocked E 55 events 0\n"
    "310 7 7 -1 run B 4096 on_bill_done\n"
    "311 7 7 -1 bill E 800\n"
    "312 7 7 -1 request E 9\n"
    "313 7 7 -1 run E 4096\n"
    "400 7 7 -1 run B 0 on_accept fd 5\n"
    "401 7 7 -1 accept I 9 port 5001\n"
    "402 7 7 -1 run E 0\n"
    "403 7 7 -1 run B 4096 on_readable fd 9\n"
    "404 7 7 -1 run E 4096\n";

START_TEST(model_draws_callback_owners)
{
    struct panel p;
    load(&p, callback_trace, "05-epoll-callbacks");
    ck_assert(!p.coroutines);
    ck_assert_uint_eq(p.start, 199); /* 202 less 2% of 202..401 */
    ck_assert_uint_eq(p.length, 404 - 199);
    ck_assert_uint_eq(p.nlanes, 3);
    ck_assert_int_eq(p.lanes[0].kind, LANE_LOOP);
    ck_assert_int_eq(p.lanes[1].kind, LANE_OWNER);
    ck_assert_int_eq(p.lanes[2].kind, LANE_OWNER);
    ck_assert_str_eq(p.lanes[1].label, "on_readable fd 9");
    ck_assert_str_eq(p.lanes[2].label, "on_readable fd 9");
    /* The first connection: two runs, the wait between them, its work. */
    ck_assert_ptr_nonnull(span_at(&p, 1, SPAN_RUNNING, 205 - 199));
    ck_assert_ptr_nonnull(span_at(&p, 1, SPAN_RUNNING, 310 - 199));
    const struct span *wait = span_at(&p, 1, SPAN_PARKED, 208 - 199);
    ck_assert(wait);
    ck_assert_uint_eq(wait->t1, 310 - 199);
    ck_assert_str_eq(wait->label, "until on_bill_done");
    ck_assert_ptr_nonnull(span_at(&p, 1, SPAN_REQUEST, 206 - 199));
    ck_assert_ptr_nonnull(span_at(&p, 1, SPAN_BILL, 207 - 199));
    /* The second: no wait carried over from the first. */
    ck_assert_uint_eq(panel_count_kind(&p, SPAN_PARKED), 1);
    ck_assert_ptr_nonnull(span_at(&p, 2, SPAN_RUNNING, 403 - 199));
    /* The loop: asleep, then its own callbacks on the row below. */
    const struct span *b = span_at(&p, 0, SPAN_BLOCKED, 209 - 199);
    ck_assert(b && b->state && b->row == 0);
    ck_assert_str_eq(b->label, "timeout 100");
    const struct span *acc = span_at(&p, 0, SPAN_RUNNING, 201 - 199);
    ck_assert(acc && !acc->state && acc->row == 1);
    panel_free(&p);
}
END_TEST

/* The page draws what the model holds: states, arrows, counters, lanes
 * (what the browser test then counts in a real page, here without one). */
START_TEST(page_draws_states_arrows_counters)
{
    struct panel p[2];
    load(&p[0], coro_trace, "06-coroutines");
    load(&p[1], callback_trace, "05-epoll-callbacks");
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert(write_html(out, p, 2, "states"));
    fclose(out);
    /* Two scales (the panels' lengths differ): each panel is drawn twice,
     * the same shapes at two widths. */
    ck_assert_ptr_nonnull(strstr(buf, "<svg class=\"v-fit\""));
#define DRAWN(what) (count_of(buf, what) / 2)
    ck_assert_uint_eq(DRAWN("<path class=\"flow "), p[0].nflows + p[1].nflows);
    ck_assert_uint_eq(DRAWN("<path class=\"flow wake\""), 2);
    ck_assert_uint_eq(DRAWN("<path class=\"counter "), 2 + 1);
    ck_assert_uint_ge(DRAWN("<rect class=\"state parked"), 3);
    ck_assert_uint_ge(DRAWN("<rect class=\"state running"), 3);
    ck_assert_uint_ge(DRAWN("<rect class=\"state ready"), 1);
    ck_assert_uint_ge(DRAWN("<rect class=\"state blocked"), 2);
    ck_assert_uint_eq(DRAWN("lane-co\""), 2);
    ck_assert_uint_eq(DRAWN("lane-loop\""), 2);
    ck_assert_uint_eq(DRAWN("lane-owner\""), 2);
#undef DRAWN
    ck_assert_ptr_nonnull(strstr(buf, ">sleep</text>")); /* why, in it */
    free(buf);
    panel_free(&p[0]);
    panel_free(&p[1]);
}
END_TEST

/* ---- stages ---- */

static const char sync_body[] =
    "{\"request_id\":\"trace-sync\",\"exchange_rate\":2.0,\"bills\":["
    "{\"denomination_id\":1,\"denomination\":10.0,\"count\":1},"
    "{\"denomination_id\":2,\"denomination\":20.0,\"count\":1},"
    "{\"denomination_id\":3,\"denomination\":50.0,\"count\":1}]}";
static const char async_body[] =
    "{\"request_id\":\"trace-async\",\"exchange_rate\":2.0,\"bills\":["
    "{\"denomination_id\":1,\"denomination\":10.0,\"count\":1},"
    "{\"denomination_id\":2,\"denomination\":20.0,\"count\":1}]}";

/* Waits until the trace holds n lines like " name ph ", up to 5 s. */
static char *wait_trace(const char *path, const char *name, char ph, size_t n)
{
    for (int i = 0; i < 100; i++) {
        char *text = harness_read_file(path);
        if (text && trace_lines(text, name, ph) >= n)
            return text;
        free(text);
        harness_sleep_ms(50);
    }
    return harness_read_file(path);
}

START_TEST(every_stage_traces_its_steps)
{
    const char *stage = harness_stages[_i].name;
    if (!harness_row_selected(_i))
        return;
    char *dir = make_temp_dir();
    char path[256], main_url[64];
    snprintf(path, sizeof path, "%s/%s.trace", dir, stage);
    struct fake_main fm;
    fake_main_listen(&fm, 0, (const int[]){200}, 1);
    snprintf(main_url, sizeof main_url, "http://127.0.0.1:%d", fm.port);
    struct proc p;
    harness_stage_start(&p, stage, &(struct stage_opts){
        .delay_ms = 30, .main_url = main_url,
        .args = (const char *const[]){"--trace", path, NULL}});
    fake_main_run(&fm);

    struct http_result r;
    http_request("POST", p.port, "/api/exchange_sync", sync_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    http_request("POST", p.port, "/api/exchange_async", async_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    fake_main_wait_requests(&fm, 1, 5000);

    char *text = wait_trace(path, "callback", 'E', 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, " stage M 0 ") != NULL, "%s: no label", stage);
    ck_assert_uint_ge(trace_lines(text, "accept", 'I'), 1);
    ck_assert_uint_eq(trace_lines(text, "request", 'B'), 2);
    ck_assert_uint_eq(trace_lines(text, "request", 'E'), 2);
    ck_assert_uint_eq(trace_lines(text, "bill", 'B'), 5);
    ck_assert_uint_eq(trace_lines(text, "bill", 'E'), 5);
    ck_assert_uint_eq(trace_lines(text, "callback", 'B'), 1);
    ck_assert_uint_eq(trace_lines(text, "callback", 'E'), 1);
    /* The tool pairs every one of them (a state may be open: the loop
     * still asleep, a coroutine still parked). */
    struct panel pn;
    ck_assert(panel_load(&pn, path));
    ck_assert_uint_eq(panel_count(&pn, false), 8);
    for (size_t k = 0; k < pn.nspans; k++)
        ck_assert_msg(!pn.spans[k].open || pn.spans[k].state ||
                          pn.spans[k].kind > SPAN_CALLBACK,
                      "%s: a %s span has no end", stage,
                      span_names[pn.spans[k].kind]);
    ck_assert_str_eq(pn.title, stage);
    panel_free(&pn);
    if (strcmp(stage, "06-coroutines") == 0) /* lanes are coroutines */
        ck_assert_ptr_null(strstr(text, " -1 bill B "));
    /* Every stage counts its async jobs: one taken, then given back. */
    ck_assert_uint_ge(trace_lines(text, "jobs", 'C'), 2);
    /* The scheduler: a loop's turns (04-06; the last may still be
     * asleep), its callbacks (05, 06), the coroutines (06). */
    bool loop = stage[1] >= '4', callbacks = stage[1] >= '5';
    size_t blocked = trace_lines(text, "blocked", 'B');
    if (loop) {
        ck_assert_uint_ge(blocked, 3);
        ck_assert_uint_le(blocked - trace_lines(text, "blocked", 'E'), 1);
        ck_assert_uint_ge(trace_lines(text, "conns", 'C'), 2);
    } else {
        ck_assert_uint_eq(blocked, 0);
    }
    if (callbacks) {
        ck_assert_uint_ge(trace_lines(text, "run", 'B'), 5);
        ck_assert_uint_eq(trace_lines(text, "run", 'B'),
                          trace_lines(text, "run", 'E'));
    }
    if (strcmp(stage, "06-coroutines") == 0) {
        ck_assert_uint_ge(trace_lines(text, "spawn", 'I'), 4);
        /* Each switch in has its switch out (the one running now aside). */
        ck_assert_uint_ge(trace_lines(text, "co", 'B'), 8);
        ck_assert_uint_le(trace_lines(text, "co", 'B') -
                              trace_lines(text, "co", 'E'), 1);
        ck_assert_uint_ge(trace_lines(text, "wake", 'I'), 5);
        ck_assert_ptr_nonnull(strstr(text, " sleep\n"));    /* a bill */
        ck_assert_ptr_nonnull(strstr(text, " join co "));   /* gather */
        ck_assert_ptr_nonnull(strstr(text, " curl\n"));     /* the PUT */
        ck_assert_ptr_nonnull(strstr(text, " spawn I "));
        ck_assert_ptr_nonnull(strstr(text, " serve_connection\n"));
    }
    free(text);
    proc_stop(&p, 5000);
    fake_main_close(&fm);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* ---- browser ---- */

/* Runs argv with stdout to out_path (or /dev/null) and stderr to
 * /dev/null, in its own process group, killed after timeout_ms. Its exit
 * status, or -1 if it had to be killed or did not start. */
static int run(char *const argv[], const char *out_path, int timeout_ms)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        int out = open(out_path ? out_path : "/dev/null",
                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (out < 0 || null < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0 ||
            dup2(null, 0) < 0)
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    for (int waited = 0;; waited += 20) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (waited >= timeout_ms) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        harness_sleep_ms(20);
    }
}

/* "chromium" (Debian) or "chromium-browser", if one is on PATH. */
static const char *find_chromium(void)
{
    static const char *const names[] = {"chromium", "chromium-browser"};
    const char *path = getenv("PATH");
    for (size_t k = 0; path && k < 2; k++) {
        char *copy = strdup(path), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            char full[512];
            snprintf(full, sizeof full, "%s/%s", d, names[k]);
            if (access(full, X_OK) == 0) {
                free(copy);
                return names[k];
            }
        }
        free(copy);
    }
    return NULL;
}

/* Headless Chromium on page: the DOM after its script ran (dump != NULL),
 * or a screenshot (shot != NULL). A fresh profile each time. */
static int chromium(const char *browser, const char *dir, const char *page,
                    const char *dump, const char *shot)
{
    char profile[300], url[300], shot_arg[300];
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile%s", dir,
             shot ? "-shot" : "-dom");
    snprintf(url, sizeof url, "file://%s", page);
    snprintf(shot_arg, sizeof shot_arg, "--screenshot=%s", shot ? shot : "");
    char *argv[] = {(char *)browser, "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", "--window-size=1250,1600", profile,
                    shot ? shot_arg : "--dump-dom", url, NULL};
    return run(argv, dump, 20000);
}

/* ---- a PNG, decoded just enough to look at its pixels ---- */
#ifdef HAVE_ZLIB

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

struct pixels { unsigned char *rgb; uint32_t w, h; size_t bpp; };

/* 8-bit RGB or RGBA, not interlaced: what Chromium writes. */
static bool png_decode(const char *path, struct pixels *px)
{
    char *raw = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    FILE *mem = open_memstream(&raw, &len);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    const unsigned char *b = (const unsigned char *)raw;
    bool ok = len > 33 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && b[24] == 8 &&
              (b[25] == 2 || b[25] == 6) && b[28] == 0;
    unsigned char *z = NULL;
    size_t zlen = 0;
    if (ok) {
        px->w = be32(b + 16);
        px->h = be32(b + 20);
        px->bpp = b[25] == 6 ? 4 : 3;
        for (size_t at = 8; at + 12 <= len;) {
            uint32_t clen = be32(b + at);
            if (at + 12 + clen > len)
                break;
            if (memcmp(b + at + 4, "IDAT", 4) == 0) {
                z = realloc(z, zlen + clen);
                memcpy(z + zlen, b + at + 8, clen);
                zlen += clen;
            }
            at += 12 + clen;
        }
    }
    size_t stride = ok ? px->w * px->bpp : 0;
    uLongf out_len = ok ? (uLongf)(stride + 1) * px->h : 0;
    unsigned char *data = ok ? malloc(out_len) : NULL;
    ok = ok && data && z && uncompress(data, &out_len, z, zlen) == Z_OK &&
         out_len == (stride + 1) * px->h;
    px->rgb = ok ? malloc(stride * px->h) : NULL;
    for (uint32_t y = 0; ok && y < px->h; y++) {
        const unsigned char *in = data + y * (stride + 1) + 1;
        unsigned char *row = px->rgb + y * stride;
        const unsigned char *up = y ? row - stride : NULL;
        for (size_t x = 0; x < stride; x++) {
            int a = x >= px->bpp ? row[x - px->bpp] : 0, u = up ? up[x] : 0;
            int c = x >= px->bpp && up ? up[x - px->bpp] : 0;
            int pred[] = {0, a, u, (a + u) / 2, paeth(a, u, c)};
            int ft = in[-1];
            ok = ft <= 4;
            row[x] = (unsigned char)(in[x] + (ok ? pred[ft] : 0));
        }
    }
    free(raw);
    free(z);
    free(data);
    return ok;
}

/* Pixels of exactly this colour (the page's bars are solid rectangles). */
static size_t pixels_of(const struct pixels *px, unsigned rgb)
{
    size_t n = 0;
    for (size_t i = 0; i < (size_t)px->w * px->h; i++) {
        const unsigned char *p = px->rgb + i * px->bpp;
        n += ((unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2]) == rgb;
    }
    return n;
}


/* Not blank: the bars are there, in their own colours. */
static void expect_drawn(const char *browser, const char *dir,
                         const char *shot)
{
    (void)browser;
    (void)dir;
    struct pixels px = {0};
    ck_assert_msg(png_decode(shot, &px), "cannot read the screenshot");
    size_t all = (size_t)px.w * px.h;
    ck_assert_uint_lt(pixels_of(&px, 0xffffff), all * 98 / 100);
    /* The legend's keys are 80 pixels each: the panels must add more. */
    static const struct { unsigned rgb; const char *what; } drawn[] = {
        {0x8a8f98, "client bars"}, {0xf58518, "bills"},
        {0x4c78a8, "requests"}, {0xb2182b, "running"},
        {0xc5b0d5, "parked"}, {0x9ecae1, "blocked"},
        {0x333333, "arrows"}, {0x6a3d9a, "a counter"}};
    for (size_t i = 0; i < sizeof drawn / sizeof *drawn; i++)
        ck_assert_msg(pixels_of(&px, drawn[i].rgb) > 300,
                      "%s: %zu pixels of #%06x", drawn[i].what,
                      pixels_of(&px, drawn[i].rgb), drawn[i].rgb);
    free(px.rgb);
}
#else
/* Without zlib the pixels stay unread: the screenshot must at least be
 * far bigger than a blank page's (a white PNG compresses to almost
 * nothing). */
static void expect_drawn(const char *browser, const char *dir,
                         const char *shot)
{
    char blank[300], blank_shot[300];
    snprintf(blank, sizeof blank, "%s/blank.html", dir);
    snprintf(blank_shot, sizeof blank_shot, "%s/blank.png", dir);
    FILE *f = fopen(blank, "w");
    ck_assert_ptr_nonnull(f);
    fputs("<!DOCTYPE html><html><body></body></html>\n", f);
    fclose(f);
    ck_assert_int_eq(chromium(browser, dir, blank, NULL, blank_shot), 0);
    struct stat ours, empty;
    ck_assert_int_eq(stat(shot, &ours), 0);
    ck_assert_int_eq(stat(blank_shot, &empty), 0);
    printf("test_trace: no zlib: screenshot %lld bytes, a blank page's "
           "%lld\n", (long long)ours.st_size, (long long)empty.st_size);
    ck_assert_int_gt(ours.st_size, 3 * empty.st_size);
}
#endif

/* The attribute's number in the DOM after #drawn, or -1. */
static long drawn_count(const char *dom, const char *attr)
{
    const char *d = dom ? strstr(dom, "id=\"drawn\"") : NULL;
    const char *a = d ? strstr(d, attr) : NULL;
    return a ? strtol(a + strlen(attr), NULL, 10) : -1;
}

/* The attribute's number inside the tag that holds data-stage="stage"
 * (the page's script wrote it there), or -1. */
static long section_count(const char *dom, const char *stage,
                          const char *attr)
{
    char want[96];
    snprintf(want, sizeof want, "data-stage=\"%s\"", stage);
    const char *s = dom ? strstr(dom, want) : NULL;
    const char *end = s ? strchr(s, '>') : NULL;
    const char *a = s ? strstr(s, attr) : NULL;
    return a && a < end ? strtol(a + strlen(attr), NULL, 10) : -1;
}

/* A stage served `requests` sync requests of `body`, `clients` at a
 * time, both it and loadgen tracing into tr; returns the trace's text. */
static char *traced_run(const char *stage, const char *tr, const char *body,
                        int requests, int clients, int delay_ms)
{
    struct proc p;
    char url[96], n[16], c[16];
    harness_stage_start(&p, stage, &(struct stage_opts){
        .delay_ms = delay_ms,
        .args = (const char *const[]){"--trace", tr, NULL}});
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/exchange_sync", p.port);
    snprintf(n, sizeof n, "%d", requests);
    snprintf(c, sizeof c, "%d", clients);
    char *lg[] = {(char *)harness_bin("loadgen"), "--quiet", "-c", c, "-n", n,
                  "--trace", (char *)tr, "--body", (char *)body, url, NULL};
    ck_assert_int_eq(run(lg, NULL, 30000), 0);
    proc_stop(&p, 5000);
    char *text = harness_read_file(tr);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* 05 and 06 on one page: each panel drew every client request and every
 * piece of work the trace holds; 06 its coroutines running and parked,
 * arrows and counters; 05 its loop's turns. Then the screenshot. */
START_TEST(chromium_draws_states_arrows_counters)
{
    const char *browser = find_chromium();
    if (!browser) {
        printf("test_trace: SKIPPED the browser test: no chromium on PATH "
               "(apt-get install chromium; .ci/run does)\n");
        return;
    }
    static const char *const stages[] = {"05-epoll-callbacks",
                                         "06-coroutines"};
    char *dir = make_temp_dir();
    char tr[2][300], page[300], dom[300], shot[300];
    long client[2], worker[2];
    bool ran[2] = {false, false};
    for (int k = 0; k < 2; k++) {
        snprintf(tr[k], sizeof tr[k], "%s/%s.trace", dir, stages[k]);
        for (int i = 0; i < HARNESS_NUM_STAGES; i++)
            ran[k] |= harness_row_selected(i) &&
                      strcmp(harness_stages[i].name, stages[k]) == 0;
        if (!ran[k])
            continue;
        char *text = traced_run(stages[k], tr[k], sync_body, 6, 6, 100);
        client[k] = (long)trace_lines(text, "client", 'B');
        worker[k] = (long)(trace_lines(text, "request", 'B') +
                           trace_lines(text, "bill", 'B') +
                           trace_lines(text, "callback", 'B'));
        ck_assert_int_eq(client[k], 6);
        ck_assert_int_eq(worker[k], 6 + 6 * 3);
        free(text);
    }
    if (!ran[0] && !ran[1])
        return; /* STAGES names neither */
    snprintf(page, sizeof page, "%s/page.html", dir);
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    snprintf(shot, sizeof shot, "%s/shot.png", dir);
    char *tool[] = {(char *)harness_bin("trace"), "--html", page,
                    ran[0] ? tr[0] : tr[1], ran[0] && ran[1] ? tr[1] : NULL,
                    NULL};
    ck_assert_int_eq(run(tool, NULL, 10000), 0);

    ck_assert_int_eq(chromium(browser, dir, page, dom, NULL), 0);
    char *html = harness_read_file(dom);
    ck_assert_ptr_nonnull(html);
    for (int k = 0; k < 2; k++) {
        if (!ran[k])
            continue;
        const char *st = stages[k];
        ck_assert_int_eq(section_count(html, st, "data-drawn-client-bars=\""),
                         client[k]);
        ck_assert_int_eq(section_count(html, st,
                                       "data-drawn-worker-spans=\""),
                         worker[k]);
        /* An arrow from each client request to the server's, and the
         * counter of open connections. */
        ck_assert_int_ge(section_count(html, st, "data-drawn-flows=\""), 6);
        ck_assert_int_ge(section_count(html, st, "data-drawn-counters=\""), 1);
        ck_assert_int_eq(section_count(html, st, "data-drawn-loop-lanes=\""),
                         1);
        /* Every bill is a wait of the loop: a turn asleep each at least. */
        ck_assert_int_ge(section_count(html, st, "data-drawn-blocked=\""), 6);
        ck_assert_int_ge(section_count(html, st, "data-drawn-running=\""),
                         6 * 4);
        ck_assert_int_ge(section_count(html, st, "data-drawn-parked=\""),
                         6 * 3);
    }
    if (ran[1]) { /* a lane per coroutine; a wake arrow after each bill */
        const char *st = stages[1];
        ck_assert_int_ge(section_count(html, st, "data-drawn-co-lanes=\""), 5);
        ck_assert_int_ge(section_count(html, st, "data-drawn-flows=\""),
                         6 + 6 * 3);
        ck_assert_int_ge(section_count(html, st, "data-drawn-ready=\""),
                         6 * 3);
        ck_assert_int_ge(section_count(html, st, "data-drawn-counters=\""), 2);
    }
    free(html);

    ck_assert_int_eq(chromium(browser, dir, page, NULL, shot), 0);
    expect_drawn(browser, dir, shot);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* 10,000 sync requests of a bill served by 06, 50 at a time: the page is
 * parsed, laid out and its script run in under 2 s (the page's own
 * clock). */
START_TEST(chromium_opens_10000_requests_in_2_s)
{
    const char *browser = find_chromium();
#ifdef SAN_BUILD
    /* It would time the sanitizer's 10,000 requests, not the page. */
    printf("test_trace: the 10,000-request page is timed in plain builds "
           "only\n");
    return;
#endif
    bool selected = false;
    for (int i = 0; i < HARNESS_NUM_STAGES; i++)
        selected |= harness_row_selected(i) &&
                    strcmp(harness_stages[i].name, "06-coroutines") == 0;
    if (!browser || !selected) {
        if (!browser)
            printf("test_trace: SKIPPED the 10,000-request page: no "
                   "chromium on PATH\n");
        return;
    }
    char *dir = make_temp_dir();
    char tr[300], page[300], dom[300];
    snprintf(tr, sizeof tr, "%s/06-coroutines.trace", dir);
    snprintf(page, sizeof page, "%s/page.html", dir);
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    static const char one_bill[] =
        "{\"request_id\":\"trace-10k\",\"exchange_rate\":2.0,\"bills\":["
        "{\"denomination_id\":1,\"denomination\":10.0,\"count\":1}]}";
    char *text = traced_run("06-coroutines", tr, one_bill, 10000, 50, 1);
    ck_assert_int_eq((long)trace_lines(text, "client", 'B'), 10000);
    size_t lines = count_of(text, "\n");
    free(text);
    char *tool[] = {(char *)harness_bin("trace"), "--html", page, tr, NULL};
    ck_assert_int_eq(run(tool, NULL, 30000), 0);
    double t0 = harness_now();
    ck_assert_int_eq(chromium(browser, dir, page, dom, NULL), 0);
    double wall = harness_now() - t0;
    char *html = harness_read_file(dom);
    long ms = drawn_count(html, "data-ms=\"");
    struct stat st;
    ck_assert_int_eq(stat(page, &st), 0);
    printf("test_trace: 10,000 requests, %zu trace lines, a %lld KiB page: "
           "parsed and laid out in %ld ms (chromium ran %.2f s in all)\n",
           lines, (long long)st.st_size / 1024, ms, wall);
    ck_assert_int_eq(drawn_count(html, "data-client-bars=\""), 10000);
    ck_assert_int_gt(ms, 0);
    ck_assert_int_lt(ms, 2000);
    free(html);
    remove_dir(dir);
    free(dir);
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, format_is_seven_fields);
    tcase_add_test(tc, off_writes_nothing_and_fork_appends_whole_lines);
    tcase_add_test(tc, loop_thread_writes_its_turn_at_once);
    tcase_add_test(tc, counters_only_when_they_change);
    tcase_add_test(tc, functions_named_from_the_symbol_table);
    tcase_add_test(tc, accept_and_requests_carry_the_port);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_add_test(tc, model_pairs_and_stacks);
    tcase_add_test(tc, json_and_page_draw_every_span);
    tcase_add_test(tc, model_draws_coroutine_states);
    tcase_add_test(tc, model_draws_callback_owners);
    tcase_add_test(tc, page_draws_states_arrows_counters);
    suite_add_tcase(s, tc);
    tc = tcase_create("stages");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, every_stage_traces_its_steps, 0,
                        HARNESS_NUM_STAGES);
    suite_add_tcase(s, tc);
    tc = tcase_create("browser");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, chromium_draws_states_arrows_counters);
    tcase_add_test(tc, chromium_opens_10000_requests_in_2_s);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run(trace_suite());
}
