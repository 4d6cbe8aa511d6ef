/* Unit tests for 06-coroutines/coro: the scheduler on its own, without the
 * server. Each test creates a scheduler, spawns coroutines, runs the loop
 * and checks what happened and when. Check forks for every test, so a
 * crash or a leftover scheduler never leaks into the next one. */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "../06-coroutines/coro.h"
#include "callback.h"
#include "harness.h"
#include "timer.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#define INT_RESULT(p) ((int)(intptr_t)(p))
#define AS_PTR(n) ((void *)(intptr_t)(n))

/* Every test runs once per way of switching, per kind of stack and on
 * each backend (main): these are the ones in use, so every co_sched_init
 * here passes them. */
static enum co_switch test_switch;
static enum co_stack test_stack;
static const char *test_backend = "epoll";

static void init_sched(void)
{
    struct co_options opts = {.switch_kind = test_switch,
                              .stack_kind = test_stack,
                              .backend = test_backend};
    ck_assert_int_eq(co_sched_init(&opts), 0);
}

static void run_and_free(void)
{
    ck_assert_int_eq(co_sched_run(), 0);
    co_sched_free();
}

static void nonblocking_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

/* ---- sleeping and yielding ---- */

static int wake_order[8];
static int num_woken;

static void *sleeper(void *arg)
{
    int ms = INT_RESULT(arg);
    ck_assert_int_eq(co_sleep(ms), 0);
    wake_order[num_woken++] = ms;
    return arg;
}

START_TEST(sleeps_wake_in_deadline_order)
{
    init_sched();
    int delays[] = {100, 40, 70, 0};
    struct co *cs[4];
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_nonnull(cs[i] = co_spawn(sleeper, AS_PTR(delays[i])));
    double t0 = harness_now();
    ck_assert_int_eq(co_sched_run(), 0);
    double took = harness_now() - t0;
    ck_assert_int_eq(num_woken, 4);
    int expect[] = {0, 40, 70, 100};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(wake_order[i], expect[i]);
    /* Side by side: about the longest sleep, not the sum (210 ms). */
    ck_assert_double_ge(took, 0.098);
    ck_assert_double_lt(took, 0.180);
    /* main may join coroutines that have finished. */
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        ck_assert_int_eq(co_join(cs[i], -1, &r), 0);
        ck_assert_int_eq(INT_RESULT(r), delays[i]);
    }
    co_sched_free();
}
END_TEST

static char trace[32];
static int trace_len;

static void *yielder(void *arg)
{
    for (int i = 0; i < 3; i++) {
        trace[trace_len++] = *(const char *)arg;
        ck_assert_int_eq(co_yield(), 0);
    }
    return NULL;
}

START_TEST(yield_lets_the_others_run)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(yielder, "A")), 0);
    ck_assert_int_eq(co_detach(co_spawn(yielder, "B")), 0);
    run_and_free();
    ck_assert_str_eq(trace, "ABABAB");
}
END_TEST

/* ---- join and gather ---- */

static void *square_later(void *arg)
{
    int n = INT_RESULT(arg);
    co_sleep(n);
    return AS_PTR(n * n);
}

static void *joiner(void *arg)
{
    (void)arg;
    struct co *slow = co_spawn(square_later, AS_PTR(30));
    struct co *fast = co_spawn(square_later, AS_PTR(0));
    ck_assert_int_eq(co_sleep(10), 0); /* fast is done before it is joined */
    void *r = NULL;
    ck_assert_int_eq(co_join(slow, -1, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 900);
    ck_assert_int_eq(co_join(fast, -1, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 0);
    /* What cannot be joined says why and leaves the handle alone. */
    ck_assert_int_eq(co_join(co_self(), -1, NULL), -EDEADLK);
    struct co *gone = co_spawn(square_later, AS_PTR(1));
    ck_assert_int_eq(co_detach(gone), 0);
    ck_assert_int_eq(co_join(gone, -1, NULL), -EINVAL);
    return AS_PTR(7);
}

START_TEST(join_returns_results)
{
    init_sched();
    struct co *j = co_spawn(joiner, NULL);
    ck_assert_int_eq(co_join(j, -1, NULL), -EPERM); /* main cannot wait */
    ck_assert_int_eq(co_sched_run(), 0);
    void *r;
    ck_assert_int_eq(co_join(j, -1, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 7);
    co_sched_free();
}
END_TEST

static bool cleanup_ran;
static int victim_rc;

/* Sleeps "forever"; whatever ends the sleep, it cleans up and says how. */
static void *long_sleeper(void *arg)
{
    (void)arg;
    victim_rc = co_sleep(10000);
    cleanup_ran = true;
    return AS_PTR(victim_rc);
}

static void *wait_for_with_timeout(void *arg)
{
    (void)arg;
    struct co *victim = co_spawn(long_sleeper, NULL);
    double t0 = harness_now();
    void *r = NULL;
    ck_assert_int_eq(co_join(victim, 50, &r), -ETIMEDOUT);
    ck_assert_double_lt(harness_now() - t0, 1.0);
    ck_assert_double_ge(harness_now() - t0, 0.045);
    /* asyncio.wait_for semantics: the task was cancelled and awaited. */
    ck_assert(cleanup_ran);
    ck_assert_int_eq(INT_RESULT(r), -ECANCELED);
    return NULL;
}

START_TEST(join_with_a_timeout_cancels_the_task)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(wait_for_with_timeout, NULL)), 0);
    run_and_free();
}
END_TEST

static void *gatherer(void *arg)
{
    (void)arg;
    int delays[] = {100, 20, 80, 40, 60};
    struct co *cs[6];
    for (int i = 0; i < 5; i++)
        cs[i] = co_spawn(square_later, AS_PTR(delays[i]));
    cs[5] = NULL; /* a failed spawn: skipped */
    void *results[6];
    double t0 = harness_now();
    ck_assert_int_eq(co_gather(cs, 6, -1, results), 0);
    double took = harness_now() - t0;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(INT_RESULT(results[i]), delays[i] * delays[i]);
    ck_assert_ptr_null(results[5]);
    ck_assert_double_ge(took, 0.098);
    ck_assert_double_lt(took, 0.200); /* together: not 300 ms */
    return NULL;
}

START_TEST(gather_collects_every_result)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(gatherer, NULL)), 0);
    run_and_free();
}
END_TEST

static void *sleep_then_report(void *arg)
{
    return AS_PTR(co_sleep(INT_RESULT(arg)));
}

static void *gatherer_with_timeout(void *arg)
{
    (void)arg;
    struct co *cs[3] = {co_spawn(sleep_then_report, AS_PTR(10)),
                        co_spawn(sleep_then_report, AS_PTR(5000)),
                        co_spawn(sleep_then_report, AS_PTR(5000))};
    void *results[3];
    double t0 = harness_now();
    ck_assert_int_eq(co_gather(cs, 3, 100, results), -ETIMEDOUT);
    ck_assert_double_lt(harness_now() - t0, 1.0);
    ck_assert_int_eq(INT_RESULT(results[0]), 0);
    ck_assert_int_eq(INT_RESULT(results[1]), -ECANCELED);
    ck_assert_int_eq(INT_RESULT(results[2]), -ECANCELED);
    return NULL;
}

START_TEST(gather_with_a_timeout_cancels_the_rest)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(gatherer_with_timeout, NULL)), 0);
    run_and_free();
}
END_TEST

/* ---- cancellation ---- */

static void *cancel_soon(void *arg)
{
    struct co *victim = arg;
    ck_assert_int_eq(co_sleep(20), 0);
    ck_assert_int_eq(co_cancel(victim), 0);
    double t0 = harness_now();
    ck_assert_int_eq(co_join(victim, -1, NULL), 0);
    ck_assert_double_lt(harness_now() - t0, 0.5);
    /* A cancel of ourselves is seen by our own next wait. */
    ck_assert_int_eq(co_cancel(co_self()), 0);
    ck_assert_int_eq(co_sleep(1), -ECANCELED);
    ck_assert_int_eq(co_sleep(1), 0); /* one-shot, as in asyncio */
    return NULL;
}

START_TEST(cancel_during_a_sleep)
{
    init_sched();
    struct co *victim = co_spawn(long_sleeper, NULL);
    ck_assert_int_eq(co_detach(co_spawn(cancel_soon, victim)), 0);
    double t0 = harness_now();
    run_and_free();
    ck_assert_double_lt(harness_now() - t0, 1.0);
    ck_assert_int_eq(victim_rc, -ECANCELED);
    ck_assert(cleanup_ran);
}
END_TEST

static int fd_victim_pipe[2];

static void *fd_waiter(void *arg)
{
    (void)arg;
    char buf[8];
    victim_rc = (int)co_read(fd_victim_pipe[0], buf, sizeof buf, -1);
    ck_assert_int_eq(co_close(fd_victim_pipe[0]), 0); /* the cleanup */
    cleanup_ran = true;
    return NULL;
}

START_TEST(cancel_during_an_fd_wait)
{
    init_sched();
    nonblocking_pipe(fd_victim_pipe);
    struct co *victim = co_spawn(fd_waiter, NULL);
    ck_assert_int_eq(co_detach(co_spawn(cancel_soon, victim)), 0);
    run_and_free();
    ck_assert_int_eq(victim_rc, -ECANCELED);
    ck_assert(cleanup_ran);
    close(fd_victim_pipe[1]);
}
END_TEST

static void *sleeps_twice(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_sleep(5), -ECANCELED); /* cancelled before it ran */
    ck_assert_int_eq(co_sleep(5), 0);
    cleanup_ran = true;
    return NULL;
}

START_TEST(cancel_before_the_first_run_hits_the_first_wait)
{
    init_sched();
    struct co *c = co_spawn(sleeps_twice, NULL);
    ck_assert_int_eq(co_cancel(c), 0);
    ck_assert_int_eq(co_sched_run(), 0);
    ck_assert(cleanup_ran);
    ck_assert_int_eq(co_cancel(c), -ESRCH); /* finished: nothing to cancel */
    ck_assert_int_eq(co_join(c, -1, NULL), 0);
    co_sched_free();
}
END_TEST

/* ---- fd waits ---- */

static void *timing_out(void *arg)
{
    (void)arg;
    int p[2];
    nonblocking_pipe(p);
    double t0 = harness_now();
    ck_assert_int_eq(co_wait_readable(p[0], 50), -ETIMEDOUT);
    double took = harness_now() - t0;
    ck_assert_double_ge(took, 0.045);
    ck_assert_double_lt(took, 0.5);
    char buf[4];
    ck_assert_int_eq(co_read(p[0], buf, sizeof buf, 20), -ETIMEDOUT);
    ck_assert_int_eq(co_wait_readable(p[0], 0), -ETIMEDOUT); /* just a look */
    /* Writable has a timeout too: fill the pipe, then wait for room. */
    char chunk[4096] = {0};
    while (write(p[1], chunk, sizeof chunk) > 0)
        ;
    ck_assert_int_eq(co_wait_writable(p[1], 30), -ETIMEDOUT);
    ck_assert_int_eq(co_wait_readable(p[0], 0), 0); /* full: readable now */
    co_close(p[0]);
    co_close(p[1]);
    return NULL;
}

START_TEST(a_wait_times_out)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(timing_out, NULL)), 0);
    run_and_free();
}
END_TEST

#define STREAM_BYTES (4 * 1024 * 1024)
static int pair[2];

static void *stream_writer(void *arg)
{
    (void)arg;
    char *data = malloc(STREAM_BYTES);
    for (size_t i = 0; i < STREAM_BYTES; i++)
        data[i] = (char)(i * 7);
    ck_assert_int_eq(co_write(pair[0], data, STREAM_BYTES, 5000), STREAM_BYTES);
    free(data);
    co_close(pair[0]); /* end of stream for the reader */
    return NULL;
}

static void *stream_reader(void *arg)
{
    (void)arg;
    char buf[8192]; /* a coroutine's stack is 64 KiB: keep frames small */
    size_t total = 0;
    bool intact = true;
    for (;;) {
        ssize_t n = co_read(pair[1], buf, sizeof buf, 5000);
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            intact &= buf[i] == (char)((total + (size_t)i) * 7);
        total += (size_t)n;
    }
    ck_assert(intact);
    co_close(pair[1]);
    return AS_PTR((int)total);
}

START_TEST(read_and_write_suspend_on_eagain)
{
    init_sched();
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    ck_assert_int_eq(co_detach(co_spawn(stream_writer, NULL)), 0);
    struct co *r = co_spawn(stream_reader, NULL);
    ck_assert_int_eq(co_sched_run(), 0);
    void *total;
    ck_assert_int_eq(co_join(r, -1, &total), 0);
    ck_assert_int_eq(INT_RESULT(total), STREAM_BYTES);
    co_sched_free();
}
END_TEST

static int busy_pipe[2];

static void *second_reader(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_wait_readable(busy_pipe[0], 100), -EBUSY);
    ck_assert_int_eq(co_wait_writable(busy_pipe[1], 100), 0);
    ck_assert_int_eq(write(busy_pipe[1], "x", 1), 1);
    return NULL;
}

static void *first_reader(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_wait_readable(busy_pipe[0], 1000), 0);
    return NULL;
}

START_TEST(one_waiter_per_fd_and_direction)
{
    init_sched();
    nonblocking_pipe(busy_pipe);
    ck_assert_int_eq(co_detach(co_spawn(first_reader, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(second_reader, NULL)), 0);
    run_and_free();
}
END_TEST

/* After a wait the loop keeps watching the fd (the next wait is then
 * free), but an fd that stays readable while its coroutine does something
 * else must not make every turn of the loop report it again: the process
 * would spin. 300 ms asleep beside an unread byte cost almost no CPU
 * (spinning, even a loaded machine gives it far more than 30 ms). */
static int unread_pipe[2];

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *wait_then_ignore(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_wait_readable(unread_pipe[0], 1000), 0);
    double cpu0 = cpu_seconds();
    ck_assert_int_eq(co_sleep(300), 0); /* the byte stays unread */
    ck_assert_double_lt(cpu_seconds() - cpu0, 0.03);
    ck_assert_int_eq(co_wait_readable(unread_pipe[0], 1000), 0); /* again */
    ck_assert_int_eq(co_close(unread_pipe[0]), 0);
    return NULL;
}

START_TEST(an_fd_nobody_waits_for_does_not_spin_the_loop)
{
    init_sched();
    nonblocking_pipe(unread_pipe);
    ck_assert_int_eq(write(unread_pipe[1], "x", 1), 1);
    ck_assert_int_eq(co_detach(co_spawn(wait_then_ignore, NULL)), 0);
    run_and_free();
    close(unread_pipe[1]);
}
END_TEST

/* The stale-event trap (STYLE #5). Two readers are woken by one epoll
 * batch. Whichever runs first closes the other's fd with co_close and puts
 * a fresh, empty pipe under the same number, as accept() would. The second
 * reader must learn that its fd is gone (-EBADF), not believe it is
 * readable; and a new waiter on the reused number must not be woken by the
 * old event. */
static int pa[2], pb[2];
static int guard_rc[2];
static int fresh_rc = 1;
static int fresh_write_end = -1;

static void *fresh_waiter(void *arg)
{
    fresh_rc = co_wait_readable(INT_RESULT(arg), 100);
    return NULL;
}

static void *guarded_reader(void *arg)
{
    int me = INT_RESULT(arg);
    int mine = me ? pb[0] : pa[0], other = me ? pa[0] : pb[0];
    guard_rc[me] = co_wait_readable(mine, 1000);
    if (guard_rc[me] == 0 && guard_rc[!me] == 1) {
        ck_assert_int_eq(co_close(other), 0);
        int np[2];
        nonblocking_pipe(np);
        if (np[0] != other) { /* the number may already have been reused */
            ck_assert_int_eq(dup3(np[0], other, O_CLOEXEC), other);
            close(np[0]);
        }
        fresh_write_end = np[1]; /* open, unused: the new pipe stays empty */
        ck_assert_int_eq(co_detach(co_spawn(fresh_waiter, AS_PTR(other))), 0);
    }
    return NULL;
}

START_TEST(stale_events_do_not_wake_the_wrong_waiter)
{
    init_sched();
    nonblocking_pipe(pa);
    nonblocking_pipe(pb);
    ck_assert_int_eq(write(pa[1], "a", 1), 1);
    ck_assert_int_eq(write(pb[1], "b", 1), 1);
    guard_rc[0] = guard_rc[1] = 1;
    ck_assert_int_eq(co_detach(co_spawn(guarded_reader, AS_PTR(0))), 0);
    ck_assert_int_eq(co_detach(co_spawn(guarded_reader, AS_PTR(1))), 0);
    run_and_free();
    /* One was first and got its data; the other learned its fd was closed. */
    ck_assert_int_eq(guard_rc[0] + guard_rc[1], -EBADF);
    ck_assert(guard_rc[0] == 0 || guard_rc[1] == 0);
    ck_assert_int_eq(fresh_rc, -ETIMEDOUT);
    close(fresh_write_end);
}
END_TEST

/* ---- many coroutines ---- */

/* ThreadSanitizer makes every coroutine a fiber, and a fiber is a TSan
 * thread with its own trace; its runtime cannot hold 10,000 of them alive
 * at once (about 8,000 is the ceiling), so that one build runs fewer. */
#if defined(__SANITIZE_THREAD__)
#define MANY 5000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MANY 5000
#endif
#endif
#ifndef MANY
#define MANY 10000
#endif

static void *many_parent(void *arg)
{
    (void)arg;
    struct co **cs = malloc(MANY * sizeof *cs);
    void **results = malloc(MANY * sizeof *results);
    for (int i = 0; i < MANY; i++) {
        cs[i] = co_spawn(square_later, AS_PTR(i % 10));
        ck_assert_ptr_nonnull(cs[i]);
    }
    ck_assert_int_eq(co_gather(cs, MANY, -1, results), 0);
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(INT_RESULT(results[i]), (i % 10) * (i % 10));
    free(cs);
    free(results);
    return NULL;
}

START_TEST(ten_thousand_coroutines_spawned_and_joined)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(many_parent, NULL)), 0);
    double t0 = harness_now();
    run_and_free();
    ck_assert_double_lt(harness_now() - t0, 20.0);
}
END_TEST

/* ---- the worker pool ---- */

static void *blocking_increment(void *arg)
{
    harness_sleep_ms(200); /* a blocking call: only a thread can wait so */
    return AS_PTR(INT_RESULT(arg) + 1);
}

static int ticks;
static bool offloaded_done;

static void *ticker(void *arg)
{
    (void)arg;
    while (!offloaded_done) {
        co_sleep(10);
        ticks++;
    }
    return NULL;
}

static void *offloader(void *arg)
{
    (void)arg;
    void *r = NULL;
    ck_assert_int_eq(co_run_blocking(blocking_increment, AS_PTR(41), &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 42);
    offloaded_done = true;
    return NULL;
}

START_TEST(run_blocking_returns_while_others_run)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(ticker, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(offloader, NULL)), 0);
    run_and_free();
    ck_assert_int_ge(ticks, 10); /* the loop kept going for ~200 ms */
}
END_TEST

static void *sleep_ms_on_thread(void *arg)
{
    harness_sleep_ms(INT_RESULT(arg));
    return arg;
}

static void *offload_one(void *arg)
{
    void *r = NULL;
    ck_assert_int_eq(co_run_blocking(sleep_ms_on_thread, arg, &r), 0);
    return r;
}

START_TEST(run_blocking_calls_run_in_parallel)
{
    struct co_options opts = {.workers = 4, .switch_kind = test_switch,
                              .stack_kind = test_stack,
                              .backend = test_backend};
    ck_assert_int_eq(co_sched_init(&opts), 0);
    struct co *cs[8];
    for (int i = 0; i < 8; i++)
        cs[i] = co_spawn(offload_one, AS_PTR(100));
    double t0 = harness_now();
    ck_assert_int_eq(co_sched_run(), 0);
    double took = harness_now() - t0;
    for (int i = 0; i < 8; i++) {
        void *r;
        ck_assert_int_eq(co_join(cs[i], -1, &r), 0);
        ck_assert_int_eq(INT_RESULT(r), 100);
    }
    /* Eight 100 ms calls on four threads: two rounds (one thread: 0.8 s). */
    ck_assert_double_ge(took, 0.195);
    ck_assert_double_lt(took, 0.600);
    co_sched_free();
}
END_TEST

static void *offloaded_then_cancelled(void *arg)
{
    (void)arg;
    void *r = NULL;
    double t0 = harness_now();
    ck_assert_int_eq(co_run_blocking(sleep_ms_on_thread, AS_PTR(150), &r),
                     -ECANCELED);
    /* The function was not abandoned halfway: it ran to its end. */
    ck_assert_double_ge(harness_now() - t0, 0.145);
    ck_assert_int_eq(INT_RESULT(r), 150);
    cleanup_ran = true;
    return NULL;
}

START_TEST(run_blocking_reports_a_cancel_after_the_function)
{
    init_sched();
    struct co *victim = co_spawn(offloaded_then_cancelled, NULL);
    ck_assert_int_eq(co_detach(co_spawn(cancel_soon, victim)), 0);
    run_and_free();
    ck_assert(cleanup_ran);
}
END_TEST

/* ---- what the loop reports ---- */

static struct co *ha, *hb;

static void *join_the_other(void *arg)
{
    return AS_PTR(co_join(*(struct co **)arg, -1, NULL));
}

START_TEST(a_deadlock_is_reported_not_slept_through)
{
    init_sched();
    ha = co_spawn(join_the_other, &hb);
    hb = co_spawn(join_the_other, &ha);
    ck_assert_int_eq(co_sched_run(), -EDEADLK);
    co_sched_free(); /* frees both suspended coroutines */
}
END_TEST

static long seen_ids[3];

static void *say_id(void *arg)
{
    seen_ids[INT_RESULT(arg)] = co_current_id();
    ck_assert_int_eq(co_current_id(), co_id(co_self()));
    return NULL;
}

START_TEST(ids_count_up_and_main_has_none)
{
    ck_assert_int_eq(co_current_id(), -1);
    init_sched();
    ck_assert_int_eq(co_current_id(), -1);
    ck_assert_ptr_null(co_self());
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(co_detach(co_spawn(say_id, AS_PTR(i))), 0);
    ck_assert_int_eq(co_sleep(1), -EPERM); /* main is not a coroutine */
    run_and_free();
    ck_assert_int_eq(seen_ids[0], 1);
    ck_assert_int_eq(seen_ids[1], 2);
    ck_assert_int_eq(seen_ids[2], 3);
}
END_TEST

/* ---- the guard page ----
 * Two neighbouring stacks: the overflowing coroutine is spawned first, its
 * neighbour second, and mmap hands out addresses top down, so the
 * neighbour's stack usually ends right where the overflowing one's guard
 * page begins. Without the guard the overflow runs on into the neighbour
 * (whose frames it overwrites) or past the guard into whatever lies below:
 * either way the fault, if any, is not in the guard page. So the test
 * demands the fault address inside the page just below the overflowing
 * stack, exactly, and the neighbour's canary intact. */

#define GUARD_CANARY 0x5a

static char *stack_top_probe;              /* a local of the overflower */
static volatile char *neighbour_canary;    /* 512 bytes on the neighbour */
static uintptr_t guard_page_size;          /* sysconf, before the fault */

static int recurse(int depth)
{
    volatile char pad[256];
    pad[0] = (char)depth;
    pad[255] = (char)depth;
    if (depth > 100000000) /* never: keeps the recursion finite on paper */
        return pad[0];
    return recurse(depth + 1) + pad[0] + pad[255];
}

static void *overflow(void *arg)
{
    (void)arg;
    char here;
    stack_top_probe = &here;
    co_yield(); /* the neighbour goes first and parks with its canary */
    return AS_PTR(recurse(0));
}

/* One frame larger than a page writes only where it needs to: without
 * help it steps over the guard page into whatever lies below (the
 * neighbour's stack, here). The build asks the compiler to probe every
 * page of a large frame (-fstack-clash-protection, in the Makefile), so
 * the first probe past the stack's end faults on the guard page. */
#define BIG_FRAME (3 * 4096)

__attribute__((noinline)) static int big_frame(int i)
{
    volatile char b[BIG_FRAME];
    b[i] = 1; /* only its lowest byte */
    return b[i];
}

/* Small frames down to about `left` bytes above the stack's end, then one
 * big frame. */
__attribute__((noinline)) static int descend(uintptr_t end, uintptr_t left)
{
    volatile char pad[256];
    pad[0] = 0;
    if ((uintptr_t)pad - end > left)
        return descend(end, left) + pad[0];
    return big_frame(0) + pad[0];
}

static uintptr_t stack_top(void);

static void *big_frame_overflow(void *arg)
{
    (void)arg;
    char here;
    stack_top_probe = &here;
    co_yield(); /* the neighbour goes first and parks with its canary */
    descend(stack_top() - CO_DEFAULT_STACK_SIZE, 1024);
    _exit(45); /* the big frame stepped over the guard page unnoticed */
}

static void *neighbour(void *arg)
{
    (void)arg;
    volatile char canary[512];
    for (size_t i = 0; i < sizeof canary; i++)
        canary[i] = GUARD_CANARY;
    neighbour_canary = canary;
    co_sleep(10000); /* parked while the other one overflows */
    return NULL;
}

/* Exit 42 if the fault address lies in the overflowing stack's guard page
 * and the neighbour's canary is intact; 43 for a fault elsewhere, 44 for a
 * trampled neighbour. Above the probe lie the first frames (a few hundred
 * bytes) and, at the very top, the context the switch keeps there
 * (coro_switch.c): a jmp_buf, or a whole ucontext_t, which is more than a
 * 4 KiB page on arm64 (4560 bytes). So the stack's top is the probe plus
 * that context, rounded up to a page, and the guard page is exactly
 * [top - size - page, top - size). With one shared stack that is the
 * shared stack's guard page, and there is no neighbouring stack: the
 * neighbour's frames were copied out to the heap when the overflowing
 * coroutine took the stack back, and its canary's address is the
 * overflowing one's now. The fault in the guard page is what proves that
 * nothing below was written. */
static uintptr_t stack_top(void)
{
    uintptr_t page = guard_page_size;
    uintptr_t context = test_switch == CO_SWITCH_SWAPCONTEXT
                            ? sizeof(ucontext_t)
                            : sizeof(jmp_buf);
    return ((uintptr_t)stack_top_probe + context + page - 1) & ~(page - 1);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    uintptr_t page = guard_page_size;
    uintptr_t bottom = stack_top() - CO_DEFAULT_STACK_SIZE;
    uintptr_t addr = (uintptr_t)si->si_addr;
    if (addr < bottom - page || addr >= bottom)
        _exit(43);
    if (test_stack == CO_STACK_SHARED)
        _exit(42);
    for (size_t i = 0; i < 512; i++)
        if (neighbour_canary[i] != GUARD_CANARY)
            _exit(44);
    _exit(42);
}

/* Runs `overflower` and its neighbour in a child and asserts the child's
 * end: 42, a fault on the guard page with the neighbour intact. */
static void expect_death_on_the_guard_page(co_fn overflower)
{
    int err[2];
    ck_assert_int_eq(pipe(err), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(err[1], STDERR_FILENO);
        stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
        sigaltstack(&ss, NULL);
        struct sigaction sa = {.sa_sigaction = on_segv,
                               .sa_flags = SA_SIGINFO | SA_ONSTACK};
        sigaction(SIGSEGV, &sa, NULL);
        guard_page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
        init_sched();
        co_detach(co_spawn(overflower, NULL));
        co_detach(co_spawn(neighbour, NULL));
        co_sched_run();
        _exit(0); /* survived: the test fails below */
    }
    close(err[1]);
    char report[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof report - 1 &&
           (n = read(err[0], report + len, sizeof report - 1 - len)) > 0)
        len += (size_t)n;
    report[len] = '\0';
    close(err[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
#ifdef UNDER_SANITIZER
    /* A sanitizer may catch the fault before our handler does; then it
     * must at least have killed the child and said so. */
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 42)) {
        ck_assert_msg(WIFSIGNALED(status) ||
                          (WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                           WEXITSTATUS(status) != 43 &&
                           WEXITSTATUS(status) != 44 &&
                           WEXITSTATUS(status) != 45),
                      "child survived the overflow: %s", report);
        ck_assert_msg(strstr(report, "stack-overflow") ||
                          strstr(report, "SEGV"),
                      "no sanitizer report: %s", report);
        return;
    }
#endif
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
                  "expected a fault on the guard page with the neighbour "
                  "intact (exit 42), got status %#x (exit 43: the fault was "
                  "elsewhere; 44: the neighbour's stack was overwritten; 45: "
                  "a frame stepped over the guard unnoticed): %s",
                  status, report);
}

START_TEST(a_stack_overflow_dies_on_the_guard_page)
{
    expect_death_on_the_guard_page(overflow);
}
END_TEST

START_TEST(a_frame_larger_than_a_page_dies_on_the_guard_page_too)
{
    expect_death_on_the_guard_page(big_frame_overflow);
}
END_TEST

/* ---- co_close and a waiter still parked ----
 * The stale-event test covers a waiter already woken by the same batch;
 * this one covers the waiter still parked: co_close must wake it with
 * -EBADF at once, not leave it to its timeout (or forever, without one). */

static int closed_pipe[2];

static void *parked_reader(void *arg)
{
    (void)arg;
    double t0 = harness_now();
    ck_assert_int_eq(co_wait_readable(closed_pipe[0], 5000), -EBADF);
    ck_assert_double_lt(harness_now() - t0, 1.0);
    return NULL;
}

static void *closer(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_sleep(10), 0);
    ck_assert_int_eq(co_close(closed_pipe[0]), 0);
    return NULL;
}

START_TEST(co_close_wakes_a_parked_waiter)
{
    init_sched();
    nonblocking_pipe(closed_pipe);
    ck_assert_int_eq(co_detach(co_spawn(parked_reader, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(closer, NULL)), 0);
    run_and_free();
    close(closed_pipe[1]);
}
END_TEST

/* ---- completion: co_recv, co_send, co_accept ----
 * The loop moves the bytes (coro.h): a stream crosses intact, a timed-out
 * receive leaves its buffer alone and its bytes for the next one, a
 * receiver parked when its fd is closed wakes with -EBADF and nothing
 * reaches its buffer afterwards, and co_accept hands over each client. */

static void *sender(void *arg)
{
    (void)arg;
    char *data = malloc(STREAM_BYTES);
    for (size_t i = 0; i < STREAM_BYTES; i++)
        data[i] = (char)(i * 13);
    ck_assert_int_eq(co_send(pair[0], data, STREAM_BYTES, 5000), STREAM_BYTES);
    free(data);
    ck_assert_int_eq(co_wait_readable(pair[0], 10), -EBUSY); /* streamed */
    co_close(pair[0]);
    return NULL;
}

static void *receiver(void *arg)
{
    (void)arg;
    char buf[8192];
    size_t total = 0;
    bool intact = true;
    for (;;) {
        ssize_t n = co_recv(pair[1], buf, sizeof buf, 5000);
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            intact &= buf[i] == (char)((total + (size_t)i) * 13);
        total += (size_t)n;
    }
    ck_assert(intact);
    co_close(pair[1]);
    return AS_PTR((int)total);
}

START_TEST(recv_and_send_move_a_stream_intact)
{
    init_sched();
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    ck_assert_int_eq(co_detach(co_spawn(sender, NULL)), 0);
    struct co *r = co_spawn(receiver, NULL);
    ck_assert_int_eq(co_sched_run(), 0);
    void *total;
    ck_assert_int_eq(co_join(r, -1, &total), 0);
    ck_assert_int_eq(INT_RESULT(total), STREAM_BYTES);
    co_sched_free();
}
END_TEST

static void *late_receiver(void *arg)
{
    (void)arg;
    char buf[16] = "untouched";
    ck_assert_int_eq(co_recv(pair[1], buf, sizeof buf, 50), -ETIMEDOUT);
    ck_assert_int_eq(co_recv(pair[1], NULL, 0, 0), -ETIMEDOUT); /* a look */
    ck_assert_str_eq(buf, "untouched");
    ck_assert_int_eq(write(pair[0], "late", 4), 4);
    ck_assert_int_eq(co_recv(pair[1], NULL, 0, 1000), 1); /* there now */
    ck_assert_int_eq(co_recv(pair[1], buf, sizeof buf, 1000), 4);
    ck_assert(memcmp(buf, "late", 4) == 0);
    co_close(pair[1]);
    close(pair[0]);
    return NULL;
}

START_TEST(a_timed_out_recv_leaves_its_buffer_and_the_bytes)
{
    init_sched();
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    ck_assert_int_eq(co_detach(co_spawn(late_receiver, NULL)), 0);
    run_and_free();
}
END_TEST

/* A receive and a send whose buffers are on the caller's stack, while
 * another coroutine runs there in between (with a shared stack it does:
 * the receiver's frames are copied out, and the loop moves the bytes
 * while they are). The bytes must reach the receiver's buffer, not
 * whatever lies at its address meanwhile, and the other's frames must
 * stay as they were. With separate stacks this holds trivially. */
static void *stack_buf_receiver(void *arg)
{
    (void)arg;
    char buf[64];
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(co_recv(pair[1], buf, sizeof buf, 5000), 5);
    ck_assert_msg(memcmp(buf, "hello", 5) == 0,
                  "the bytes did not reach the parked receiver's buffer");
    char reply[] = "world"; /* sent from this stack while it parks */
    ck_assert_int_eq(co_send(pair[1], reply, 5, 5000), 5);
    return NULL;
}

static void *stack_buf_neighbour(void *arg)
{
    (void)arg;
    char mine[512];
    memset(mine, 'n', sizeof mine);
    ck_assert_int_eq(co_sleep(20), 0); /* the receiver is parked by now */
    ck_assert_int_eq(write(pair[0], "hello", 5), 5);
    ck_assert_int_eq(co_sleep(50), 0); /* parked on the stack meanwhile */
    for (size_t i = 0; i < sizeof mine; i++)
        ck_assert_msg(mine[i] == 'n', "the loop wrote into a neighbour's "
                      "frames at byte %zu", i);
    char got[8] = {0};
    ck_assert_int_eq(co_read(pair[0], got, 5, 5000), 5);
    ck_assert_str_eq(got, "world");
    return NULL;
}

START_TEST(recv_and_send_with_buffers_on_the_stack)
{
    init_sched();
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    struct co *r = co_spawn(stack_buf_receiver, NULL);
    struct co *n = co_spawn(stack_buf_neighbour, NULL);
    ck_assert_int_eq(co_sched_run(), 0);
    ck_assert_int_eq(co_join(r, -1, NULL), 0);
    ck_assert_int_eq(co_join(n, -1, NULL), 0);
    co_sched_free();
    close(pair[0]);
    close(pair[1]);
}
END_TEST

static char *parked_buf;

static void *parked_receiver(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_recv(pair[1], parked_buf, 64, 5000), -EBADF);
    return NULL;
}

static void *recv_closer(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_sleep(10), 0); /* the receive is in flight */
    ck_assert_int_eq(write(pair[0], "OLD", 3), 3);
    int num = pair[1];
    ck_assert_int_eq(co_close(pair[1]), 0);
    free(parked_buf); /* ASan: nothing may write here any more */
    int fresh[2];
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fresh), 0);
    ck_assert_int_eq(fresh[0], num); /* the number, reused at once */
    ck_assert_int_eq(write(fresh[1], "NEW", 3), 3);
    char buf[8] = {0};
    ck_assert_int_eq(co_recv(fresh[0], buf, sizeof buf, 1000), 3);
    ck_assert_str_eq(buf, "NEW");
    co_close(fresh[0]);
    close(fresh[1]);
    close(pair[0]);
    return NULL;
}

START_TEST(co_close_ends_a_parked_recv_and_nothing_lands_after)
{
    init_sched();
    ck_assert_int_eq(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    parked_buf = malloc(64);
    ck_assert_int_eq(co_detach(co_spawn(parked_receiver, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(recv_closer, NULL)), 0);
    run_and_free();
}
END_TEST

static int accepted_fds[4], num_accepted;

static void take_client(int fd)
{
    ck_assert_int_lt(num_accepted, 4);
    accepted_fds[num_accepted++] = fd;
}

static void *acceptor(void *arg)
{
    int lfd = INT_RESULT(arg);
    ck_assert_int_eq(co_accept(lfd, take_client, -1), -ECANCELED);
    return NULL;
}

static int test_listen_fd;

static void *dialer(void *arg)
{
    struct co *acc = arg;
    int port;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ck_assert_int_eq(getsockname(test_listen_fd, (struct sockaddr *)&ss, &sl),
                     0);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int c[3];
    for (int k = 0; k < 3; k++)
        ck_assert_int_ge(c[k] = raw_connect(port), 0);
    for (int k = 0; k < 100 && num_accepted < 3; k++)
        ck_assert_int_eq(co_sleep(10), 0);
    ck_assert_int_eq(num_accepted, 3);
    ck_assert_int_eq(co_cancel(acc), 0);
    ck_assert_int_eq(co_join(acc, -1, NULL), 0);
    for (int k = 0; k < 3; k++) {
        close(c[k]);
        close(accepted_fds[k]);
    }
    co_close(test_listen_fd);
    return NULL;
}

START_TEST(accept_hands_each_client_to_take)
{
    init_sched();
    int port;
    test_listen_fd = harness_listen(&port);
    ck_assert_int_eq(fcntl(test_listen_fd, F_SETFL, O_NONBLOCK), 0);
    num_accepted = 0;
    struct co *acc = co_spawn(acceptor, AS_PTR(test_listen_fd));
    ck_assert_int_eq(co_detach(co_spawn(dialer, acc)), 0);
    run_and_free();
}
END_TEST

/* ---- a join whose timeout and target end in the same turn ----
 * A hog blocks the thread past both deadlines, so the target's sleep and
 * the joiner's timeout fire in one loop turn, target first. (Pass 1: the
 * joiner spawns the target and parks, the hog yields; pass 2: the target
 * parks, then the hog blocks.) The target's deadline comes 40 ms before
 * the joiner's, so it fires first however slowly (a sanitizer build) the
 * target got to its sleep. The timeout must take the joiner off the
 * target: when the target then returns it must not wake the joiner a
 * second time (a coroutine queued twice). */

static void *sleeps_10(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_sleep(10), 0);
    return AS_PTR(7);
}

static void *joins_with_50(void *arg)
{
    (void)arg;
    struct co *t = co_spawn(sleeps_10, NULL);
    void *r = NULL;
    ck_assert_int_eq(co_join(t, 50, &r), -ETIMEDOUT);
    ck_assert_int_eq(INT_RESULT(r), 7); /* it did finish, just late */
    return NULL;
}

static void *hog(void *arg)
{
    (void)arg;
    ck_assert_int_eq(co_yield(), 0);
    timer_nanosleep_ms(150); /* blocks the thread: both deadlines pass */
    return NULL;
}

START_TEST(a_timed_out_join_is_not_woken_again_by_its_target)
{
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(joins_with_50, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(hog, NULL)), 0);
    run_and_free();
}
END_TEST

/* ---- awaiting libcurl ---- */

static int main_port;

static size_t drop_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static CURL *easy_get(const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", main_port, path);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, drop_body);
    return e;
}

static long status_of(CURL *e)
{
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

static void start_main_service(struct proc *p)
{
    static const char *const env[] = {"SECRET_TOKEN=test-token", NULL};
    proc_start(p, "main-service", NULL, env);
    main_port = p->port;
}

static void *put_result(void *arg)
{
    struct callback *cb = arg;
    ck_assert_int_eq(co_curl_perform(cb->easy), CURLE_OK);
    ck_assert_int_eq(status_of(cb->easy), 200);
    return NULL;
}

START_TEST(a_curl_put_is_awaited)
{
    struct proc ms;
    start_main_service(&ms);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ms.port);
    char *body = strdup("{\"token\":\"test-token\","
                        "\"request_id\":\"coro_unit\","
                        "\"breakdown\":[{\"denomination_id\":1,"
                        "\"subtotal_rub\":3775.0}]}");
    struct callback *cb = callback_new(url, body, "coro_unit", 10000);
    ck_assert_ptr_nonnull(cb);
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(put_result, cb)), 0);
    run_and_free();
    callback_free(cb);
    struct http_result r;
    http_request("GET", ms.port, "/api/exchange_result/coro_unit", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"request_id\":\"coro_unit\",\"breakdown\":["
                             "{\"denomination_id\":1,"
                             "\"subtotal_rub\":3775.0}]}");
    http_result_free(&r);
    ck_assert_int_eq(proc_stop(&ms, 5000), 0);
}
END_TEST

/* A long poll for a result that never comes: the main service answers 404
 * after wait_ms. Two of them awaited at once take one wait, not two. */
static void *long_poll(void *arg)
{
    CURL *e = easy_get(arg);
    int rc = co_curl_perform(e);
    long code = status_of(e);
    curl_easy_cleanup(e);
    return AS_PTR(rc == CURLE_OK ? (int)code : rc);
}

static void *two_long_polls(void *arg)
{
    (void)arg;
    struct co *cs[2] = {
        co_spawn(long_poll, "/api/exchange_result/nothing1?wait_ms=400"),
        co_spawn(long_poll, "/api/exchange_result/nothing2?wait_ms=400")};
    void *r[2];
    double t0 = harness_now();
    ck_assert_int_eq(co_gather(cs, 2, -1, r), 0);
    double took = harness_now() - t0;
    ck_assert_int_eq(INT_RESULT(r[0]), 404);
    ck_assert_int_eq(INT_RESULT(r[1]), 404);
    ck_assert_double_ge(took, 0.39);
    ck_assert_double_lt(took, 0.75);
    offloaded_done = true; /* stops the ticker */
    return NULL;
}

START_TEST(curl_transfers_overlap_and_the_loop_keeps_running)
{
    struct proc ms;
    start_main_service(&ms);
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(ticker, NULL)), 0);
    ck_assert_int_eq(co_detach(co_spawn(two_long_polls, NULL)), 0);
    run_and_free();
    ck_assert_int_ge(ticks, 20);
    ck_assert_int_eq(proc_stop(&ms, 5000), 0);
}
END_TEST

static void *cancel_a_transfer(void *arg)
{
    (void)arg;
    struct co *poll = co_spawn(long_poll,
                               "/api/exchange_result/never?wait_ms=5000");
    co_sleep(100);
    double t0 = harness_now();
    ck_assert_int_eq(co_cancel(poll), 0);
    void *r;
    ck_assert_int_eq(co_join(poll, -1, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), -ECANCELED);
    ck_assert_double_lt(harness_now() - t0, 0.5);
    /* The multi handle is still fine for the next transfer. */
    CURL *e = easy_get("/");
    ck_assert_int_eq(co_curl_perform(e), CURLE_OK);
    ck_assert_int_eq(status_of(e), 200);
    curl_easy_cleanup(e);
    return NULL;
}

START_TEST(a_curl_transfer_can_be_cancelled)
{
    struct proc ms;
    start_main_service(&ms);
    init_sched();
    ck_assert_int_eq(co_detach(co_spawn(cancel_a_transfer, NULL)), 0);
    run_and_free();
    ck_assert_int_eq(proc_stop(&ms, 5000), 0);
}
END_TEST

/* ---- co_call_on_loop_stack ---------------------------------------- */

struct on_loop_probe {
    char *coroutine_local;  /* an address on the coroutine's stack */
    long distance;          /* from there to fn's own local */
    int wait_rc;            /* what a wait says inside fn */
    long id_inside;         /* co_current_id inside fn */
};

static void *probe_on_loop(void *arg)
{
    struct on_loop_probe *p = arg;
    char here;
    p->distance = labs((long)((intptr_t)&here - (intptr_t)p->coroutine_local));
    p->wait_rc = co_sleep(1);
    p->id_inside = co_current_id();
    return AS_PTR(42);
}

static void *calls_on_loop(void *arg)
{
    struct on_loop_probe *p = arg;
    char mine;
    p->coroutine_local = &mine;
    void *r = co_call_on_loop_stack(probe_on_loop, p);
    ck_assert_int_eq(co_sleep(1), 0); /* a wait works again afterwards */
    return r;
}

/* fn runs on another stack (the loop's, not within this coroutine's 64
 * KiB), may not wait, and its result comes back. */
START_TEST(a_deep_call_runs_on_the_loop_stack)
{
    init_sched();
    struct on_loop_probe p = {0};
    struct co *c = co_spawn(calls_on_loop, &p);
    ck_assert_ptr_nonnull(c);
    long id = co_id(c);
    void *r = NULL;
    ck_assert_int_eq(co_sched_run(), 0);
    ck_assert_int_eq(co_join(c, -1, &r), 0);
    co_sched_free();
    ck_assert_int_eq(INT_RESULT(r), 42);
    ck_assert_int_gt(p.distance, CO_DEFAULT_STACK_SIZE);
    ck_assert_int_eq(p.wait_rc, -EPERM);
    ck_assert_int_eq(p.id_inside, id);
}
END_TEST

/* ---- the shared stack (coro.h, "Stacks") ----
 * Every test above runs with one shared stack too (main). These check what
 * only the shared stack must get right: a parked coroutine's frames come
 * back exactly, the copies happen only when the stack changes hands, the
 * core never reads a parked coroutine's stack, and a coroutine that parks
 * from somewhere else is stopped before its frames are copied. In the
 * separate-stack runs they hold trivially (no copies at all). */

#define FRAME_BYTES (16 * 1024)

static int frames_intact;

/* Fills a large frame with its own pattern, parks while the other one
 * fills the same addresses (with a shared stack) with another, and checks
 * its pattern after each wait. */
static void *pattern_keeper(void *arg)
{
    unsigned char seed = (unsigned char)INT_RESULT(arg);
    volatile unsigned char frame[FRAME_BYTES];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (unsigned char)(seed + i * 7);
    for (int round = 0; round < 3; round++) {
        ck_assert_int_eq(co_yield(), 0);
        ck_assert_int_eq(co_sleep(1), 0);
        for (size_t i = 0; i < sizeof frame; i++)
            ck_assert_uint_eq(frame[i], (unsigned char)(seed + i * 7));
    }
    frames_intact++;
    return NULL;
}

/* Two coroutines with 16 KiB frames at the same addresses take turns:
 * each finds its own bytes after every wait (restored, not left over). */
START_TEST(parked_frames_come_back_exactly)
{
    init_sched();
    frames_intact = 0;
    co_detach(co_spawn(pattern_keeper, AS_PTR(1)));
    co_detach(co_spawn(pattern_keeper, AS_PTR(2)));
    run_and_free();
    ck_assert_int_eq(frames_intact, 2);
}
END_TEST

static void *yield_alone(void *arg)
{
    for (int i = 0; i < INT_RESULT(arg); i++)
        ck_assert_int_eq(co_yield(), 0);
    return NULL;
}

static void *add_1000(void *arg)
{
    *(int *)arg += 1000;
    return NULL;
}

/* A deep call writes into its caller's frame: the caller keeps the stack
 * meanwhile (it does not park), so that is allowed in both modes, and the
 * write is there when the call returns, not an older copy of the frame. */
static void *yield_with_deep_calls(void *arg)
{
    for (int i = 0; i < INT_RESULT(arg); i++) {
        volatile int mine = i;
        co_call_on_loop_stack(add_1000, (int *)&mine);
        ck_assert_int_eq(mine, i + 1000);
        ck_assert_int_eq(co_yield(), 0);
    }
    return NULL;
}

/* The copy is lazy: a coroutine alone copies nothing however often it
 * parks, and neither does a deep call; two taking turns copy once per
 * change of owner, each copy a few hundred bytes. */
START_TEST(the_shared_stack_copies_only_when_it_changes_hands)
{
    init_sched();
    co_detach(co_spawn(yield_with_deep_calls, AS_PTR(100)));
    ck_assert_int_eq(co_sched_run(), 0);
    struct co_stack_stats alone;
    ck_assert_int_eq(co_stack_stats(&alone), 0);
    co_detach(co_spawn(yield_alone, AS_PTR(100)));
    co_detach(co_spawn(yield_alone, AS_PTR(100)));
    ck_assert_int_eq(co_sched_run(), 0);
    struct co_stack_stats two;
    ck_assert_int_eq(co_stack_stats(&two), 0);
    co_sched_free();
    ck_assert_int_gt(two.block_size, 0);
    if (test_stack == CO_STACK_SEPARATE) {
        ck_assert_int_eq(two.saves, 0);
        return;
    }
    ck_assert_int_eq(alone.saves, 0);
    /* A and B alternate: 100 yields each, the last resume of each finds
     * the other one's frames (or none, once it has returned). */
    ck_assert_int_ge(two.saves, 199);
    ck_assert_int_le(two.saves, 201);
    /* The frames, and the registers at the top: a whole ucontext_t with
     * swapcontext (4560 bytes on arm64). */
    size_t context = test_switch == CO_SWITCH_SWAPCONTEXT ? sizeof(ucontext_t)
                                                          : sizeof(jmp_buf);
    ck_assert_int_lt(two.largest, 2048 + context);
    ck_assert_int_eq(two.saved_bytes / two.saves > 0, 1);
}
END_TEST

/* Deep calls between parks, while another coroutine takes the stack at
 * every park: each call's write is found in the frame, copied out and
 * back with it. */
START_TEST(deep_calls_write_into_frames_that_are_copied)
{
    init_sched();
    co_detach(co_spawn(yield_with_deep_calls, AS_PTR(50)));
    co_detach(co_spawn(yield_with_deep_calls, AS_PTR(50)));
    run_and_free();
}
END_TEST

/* co_join parks with its wait record (struct co_wait) in its own frame;
 * its target then runs on the same stack, over that frame, and the core
 * reads the record while the joiner is parked: to undo the join when the
 * target returns, and for what a timeout returns. So the core keeps a
 * copy (coro.c, co_park). The target fills its frame with junk first. */
static void *scribble(void *arg)
{
    volatile unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 0xa5;
    if (INT_RESULT(arg) > 0)
        co_sleep(INT_RESULT(arg)); /* parked on top of its junk */
    return AS_PTR(junk[7]);
}

static void *join_a_scribbler(void *arg)
{
    (void)arg;
    void *r = NULL;
    ck_assert_int_eq(co_join(co_spawn(scribble, AS_PTR(0)), 1000, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 0xa5);
    ck_assert_int_eq(co_join(co_spawn(scribble, AS_PTR(5000)), 20, &r),
                     -ETIMEDOUT);
    ck_assert_int_eq(INT_RESULT(r), 0xa5); /* cancelled, then returned */
    return AS_PTR(1);
}

START_TEST(a_parked_waits_record_is_not_read_from_its_stack)
{
    init_sched();
    struct co *c = co_spawn(join_a_scribbler, NULL);
    ck_assert_int_eq(co_sched_run(), 0);
    void *r = NULL;
    ck_assert_int_eq(co_join(c, -1, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), 1);
    co_sched_free();
}
END_TEST

/* co_run_blocking's job is read and written by a worker thread, and
 * linked to the other jobs, while its coroutine is parked: it lives in the
 * heap (coro_pool.c). Four at once, each with its own answer. */
static void *offload_and_check(void *arg)
{
    void *r = NULL;
    ck_assert_int_eq(co_run_blocking(sleep_ms_on_thread, arg, &r), 0);
    ck_assert_int_eq(INT_RESULT(r), INT_RESULT(arg));
    return r;
}

START_TEST(offloaded_jobs_are_not_on_their_coroutines_stacks)
{
    init_sched();
    for (int i = 0; i < 4; i++)
        co_detach(co_spawn(offload_and_check, AS_PTR(20 + 5 * i)));
    run_and_free();
}
END_TEST

/* A coroutine that parks while it runs on a stack of its own making (a
 * ucontext of its own, a signal handler on sigaltstack) cannot have its
 * frames copied: they are not on the shared stack. The scheduler stops
 * with a message instead of copying the wrong memory back over someone
 * else's frames. */
static ucontext_t side_ctx, back_ctx;

static void park_on_the_side(void)
{
    co_yield(); /* from the side stack */
    setcontext(&back_ctx);
}

static void *parks_off_its_stack(void *arg)
{
    (void)arg;
    static char side[64 * 1024];
    ck_assert_int_eq(getcontext(&side_ctx), 0);
    side_ctx.uc_stack.ss_sp = side;
    side_ctx.uc_stack.ss_size = sizeof side;
    side_ctx.uc_link = NULL;
    makecontext(&side_ctx, park_on_the_side, 0);
    swapcontext(&back_ctx, &side_ctx);
    return NULL;
}

START_TEST(a_coroutine_that_parks_off_the_shared_stack_is_stopped)
{
    if (test_stack != CO_STACK_SHARED)
        return; /* its own stack keeps its frames wherever they are */
    int err[2];
    ck_assert_int_eq(pipe(err), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(err[1], STDERR_FILENO);
        init_sched();
        co_detach(co_spawn(parks_off_its_stack, NULL));
        co_detach(co_spawn(yield_alone, AS_PTR(1))); /* takes the stack */
        co_sched_run();
        _exit(0);
    }
    close(err[1]);
    char report[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof report - 1 &&
           (n = read(err[0], report + len, sizeof report - 1 - len)) > 0)
        len += (size_t)n;
    report[len] = '\0';
    close(err[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "status %#x: %s", status, report);
    ck_assert_msg(strstr(report, "outside the shared stack"), "%s", report);
}
END_TEST

/* ---- what each switch keeps: the signal mask (coro.h, "Switching") ---- */

static bool usr2_blocked(void)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, SIGUSR2) == 1;
}

static void toggle_usr2(void)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    pthread_sigmask(usr2_blocked() ? SIG_UNBLOCK : SIG_BLOCK, &one, NULL);
}

static bool seen_by_b;

static void *mask_changer(void *arg)
{
    (void)arg;
    toggle_usr2();
    co_yield(); /* b runs now and looks */
    toggle_usr2();
    return NULL;
}

static void *mask_reader(void *arg)
{
    (void)arg;
    seen_by_b = usr2_blocked();
    return NULL;
}

/* swapcontext gives each coroutine its own mask; setjmp shares the
 * thread's, so one coroutine's change is seen by the next. */
START_TEST(the_signal_mask_is_per_coroutine_only_with_swapcontext)
{
    init_sched(); /* (which, under TSan, blocks SIGUSR2 itself) */
    bool before = usr2_blocked();
    co_detach(co_spawn(mask_changer, NULL));
    co_detach(co_spawn(mask_reader, NULL));
    ck_assert_int_eq(co_sched_run(), 0);
    ck_assert_int_eq(usr2_blocked(), before);
    co_sched_free();
    if (test_switch == CO_SWITCH_SWAPCONTEXT)
        ck_assert_int_eq(seen_by_b, before);
    else
        ck_assert_int_ne(seen_by_b, before);
}
END_TEST

static Suite *coro_suite(const char *name)
{
    Suite *s = suite_create(name);
    TCase *basics = tcase_create("scheduler");
    tcase_set_timeout(basics, 60);
    tcase_add_test(basics, sleeps_wake_in_deadline_order);
    tcase_add_test(basics, yield_lets_the_others_run);
    tcase_add_test(basics, join_returns_results);
    tcase_add_test(basics, join_with_a_timeout_cancels_the_task);
    tcase_add_test(basics, gather_collects_every_result);
    tcase_add_test(basics, gather_with_a_timeout_cancels_the_rest);
    tcase_add_test(basics, cancel_during_a_sleep);
    tcase_add_test(basics, cancel_during_an_fd_wait);
    tcase_add_test(basics, cancel_before_the_first_run_hits_the_first_wait);
    tcase_add_test(basics, a_wait_times_out);
    tcase_add_test(basics, read_and_write_suspend_on_eagain);
    tcase_add_test(basics, one_waiter_per_fd_and_direction);
    tcase_add_test(basics, stale_events_do_not_wake_the_wrong_waiter);
    tcase_add_test(basics, an_fd_nobody_waits_for_does_not_spin_the_loop);
    /* These never touch the loop's descriptors: once, on epoll, is enough
     * (the io_uring pass would only add their seconds). */
    if (strcmp(test_backend, "epoll") == 0) {
        tcase_add_test(basics, ten_thousand_coroutines_spawned_and_joined);
        tcase_add_test(basics, a_deadlock_is_reported_not_slept_through);
        tcase_add_test(basics, ids_count_up_and_main_has_none);
        tcase_add_test(basics, a_stack_overflow_dies_on_the_guard_page);
        tcase_add_test(basics,
                       a_frame_larger_than_a_page_dies_on_the_guard_page_too);
    }
    tcase_add_test(basics, co_close_wakes_a_parked_waiter);
    tcase_add_test(basics, recv_and_send_move_a_stream_intact);
    tcase_add_test(basics, a_timed_out_recv_leaves_its_buffer_and_the_bytes);
    tcase_add_test(basics, recv_and_send_with_buffers_on_the_stack);
    tcase_add_test(basics, co_close_ends_a_parked_recv_and_nothing_lands_after);
    tcase_add_test(basics, accept_hands_each_client_to_take);
    tcase_add_test(basics, a_timed_out_join_is_not_woken_again_by_its_target);
    tcase_add_test(basics,
                   the_signal_mask_is_per_coroutine_only_with_swapcontext);
    tcase_add_test(basics, a_deep_call_runs_on_the_loop_stack);
    suite_add_tcase(s, basics);

    TCase *shared = tcase_create("shared stack");
    tcase_set_timeout(shared, 10);
    tcase_add_test(shared, parked_frames_come_back_exactly);
    tcase_add_test(shared, the_shared_stack_copies_only_when_it_changes_hands);
    tcase_add_test(shared, deep_calls_write_into_frames_that_are_copied);
    tcase_add_test(shared, a_parked_waits_record_is_not_read_from_its_stack);
    tcase_add_test(shared, offloaded_jobs_are_not_on_their_coroutines_stacks);
    tcase_add_test(shared,
                   a_coroutine_that_parks_off_the_shared_stack_is_stopped);
    suite_add_tcase(s, shared);

    TCase *pool = tcase_create("worker pool");
    tcase_set_timeout(pool, 60);
    tcase_add_test(pool, run_blocking_returns_while_others_run);
    tcase_add_test(pool, run_blocking_calls_run_in_parallel);
    tcase_add_test(pool, run_blocking_reports_a_cancel_after_the_function);
    suite_add_tcase(s, pool);

    TCase *curl = tcase_create("libcurl");
    tcase_set_timeout(curl, 60);
    tcase_add_test(curl, a_curl_put_is_awaited);
    tcase_add_test(curl, curl_transfers_overlap_and_the_loop_keeps_running);
    tcase_add_test(curl, a_curl_transfer_can_be_cancelled);
    suite_add_tcase(s, curl);
    return s;
}

/* The whole suite once per switch and per kind of stack on epoll, and
 * once more with setjmp on io_uring for each kind of stack (CO_SWITCH=
 * setjmp or swapcontext runs only that switch; CO_STACK=separate or shared
 * only that stack; CO_BACKEND=epoll or uring only that backend). Without
 * io_uring (a build without liburing, a kernel that refuses it) the loop
 * falls back to epoll, and the pass says so. */
int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static const struct {
        enum co_switch kind;
        const char *name, *backend;
    } ways[] = {{CO_SWITCH_SETJMP, "setjmp", "epoll"},
                {CO_SWITCH_SWAPCONTEXT, "swapcontext", "epoll"},
                {CO_SWITCH_SETJMP, "setjmp", "uring"}};
    static const struct { enum co_stack kind; const char *name; } stacks[] = {
        {CO_STACK_SEPARATE, "separate"}, {CO_STACK_SHARED, "shared"}};
    const char *only = getenv("CO_SWITCH");
    const char *only_stack = getenv("CO_STACK");
    const char *only_backend = getenv("CO_BACKEND");
    int failed = 0;
    for (size_t k = 0; k < sizeof stacks / sizeof stacks[0]; k++) {
        if (only_stack && *only_stack &&
            strcmp(only_stack, stacks[k].name) != 0)
            continue;
        for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++) {
            if ((only && *only && strcmp(only, ways[i].name) != 0) ||
                (only_backend && *only_backend &&
                 strcmp(only_backend, ways[i].backend) != 0))
                continue;
            test_switch = ways[i].kind;
            test_stack = stacks[k].kind;
            test_backend = ways[i].backend;
            char name[80];
            snprintf(name, sizeof name, "coro, switch %s, %s stacks, on %s",
                     ways[i].name, stacks[k].name, ways[i].backend);
            failed |= harness_run(coro_suite(name));
        }
    }
    curl_global_cleanup();
    return failed;
}
