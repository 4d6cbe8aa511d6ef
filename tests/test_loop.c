/* Unit tests for common/loop.c: the callback event loop of 05 and 06, on
 * each of its backends. Every test is a loop test over `backends`: the
 * same promise, checked against epoll and against io_uring (skipped, and
 * said so, in a build without liburing). Pipes stand in for sockets in
 * the readiness tests: a pipe's read end with a byte in it is readable,
 * its write end is writable; the completion tests use socket pairs. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "loop.h"
#include "loop_impl.h" /* loop_uring_no_multishot */
#include "net.h"

/* The rows: each backend, and io_uring once more as on a kernel without
 * multishot receive (before Linux 6.0), where every loop_recv is a
 * one-shot receive of its own. */
static const struct {
    const char *name;
    enum loop_backend backend;
    bool one_shot;
} backends[] = {
    {"epoll", LOOP_BACKEND_EPOLL, false},
    {"uring", LOOP_BACKEND_URING, false},
    {"uring one-shot", LOOP_BACKEND_URING, true},
};
#define NUM_BACKENDS ((int)(sizeof backends / sizeof backends[0]))

/* A new loop on backends[i], or the test's end with SKIPPED when this
 * build has no io_uring (the one reason a backend may be missing). */
#define new_loop(i) new_loop_or_skip(i, __func__)
static struct loop *new_loop_or_skip(int i, const char *test)
{
    loop_uring_no_multishot = backends[i].one_shot;
    struct loop *loop = loop_new_backend(backends[i].backend);
    if (loop == NULL && errno == ENOTSUP) {
        printf("SKIPPED %s on %s: built without liburing\n", test,
               backends[i].name);
        return NULL;
    }
    ck_assert_msg(loop != NULL, "loop_new_backend(%s): %s", backends[i].name,
                  strerror(errno));
    ck_assert_str_eq(loop_backend_name(loop),
                     backends[i].backend == LOOP_BACKEND_URING ? "uring"
                                                               : "epoll");
    return loop;
}

static void make_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

static void put_byte(int fd)
{
    ck_assert_int_eq(write(fd, "x", 1), 1);
}

/* ---- readable / writable ---- */

struct io_seen {
    int calls;
    int fd;
    unsigned events;
};

static void on_io_stop(struct loop *loop, int fd, unsigned events, void *arg)
{
    struct io_seen *seen = arg;
    seen->calls++;
    seen->fd = fd;
    seen->events = events;
    loop_stop(loop);
}

START_TEST(readable_callback_fires)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    struct io_seen seen = {0};
    ck_assert_int_eq(loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen), 0);
    put_byte(p[1]);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 1);
    ck_assert_int_eq(seen.fd, p[0]);
    ck_assert(seen.events & LOOP_READABLE);
    ck_assert(!(seen.events & LOOP_WRITABLE));
    loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

START_TEST(writable_callback_fires)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    struct io_seen seen = {0};
    ck_assert_int_eq(loop_watch(loop, p[1], LOOP_WRITABLE, on_io_stop, &seen), 0);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 1);
    ck_assert_int_eq(seen.fd, p[1]);
    ck_assert(seen.events & LOOP_WRITABLE);
    loop_unwatch(loop, p[1]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

/* Level-triggered: a byte nobody reads is reported again on every turn. */
static void on_count_until_three(struct loop *loop, int fd, unsigned events,
                                 void *arg)
{
    (void)fd;
    (void)events;
    if (++*(int *)arg == 3)
        loop_stop(loop);
}

START_TEST(level_triggered_reports_again_until_read)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    int calls = 0;
    loop_watch(loop, p[0], LOOP_READABLE, on_count_until_three, &calls);
    put_byte(p[1]);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(calls, 3);
    loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

/* ---- timers ---- */

struct order {
    int fired[8];
    int n;
    int stop_after;
};

struct tagged_timer {
    struct loop_timer timer;
    struct order *order;
    int id;
};

static void on_tagged(struct loop *loop, void *arg)
{
    struct tagged_timer *t = arg;
    t->order->fired[t->order->n++] = t->id;
    if (t->order->n == t->order->stop_after)
        loop_stop(loop);
}

static void tagged_init(struct tagged_timer *t, struct order *o, int id)
{
    t->order = o;
    t->id = id;
    loop_timer_init(&t->timer, on_tagged, t);
}

START_TEST(timers_fire_in_deadline_order)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct order o = {.stop_after = 4};
    struct tagged_timer t[4];
    int delays[4] = {60, 20, 40, 20}; /* ids 1 and 3 tie: arming order */
    for (int i = 0; i < 4; i++) {
        tagged_init(&t[i], &o, i);
        ck_assert_int_eq(loop_timer_arm(loop, &t[i].timer, (uint64_t)delays[i]), 0);
    }
    uint64_t start = timer_now_ms();
    ck_assert_int_eq(loop_run(loop), 0);
    uint64_t took = timer_now_ms() - start;
    ck_assert_int_eq(o.n, 4);
    ck_assert_int_eq(o.fired[0], 1);
    ck_assert_int_eq(o.fired[1], 3);
    ck_assert_int_eq(o.fired[2], 2);
    ck_assert_int_eq(o.fired[3], 0);
    ck_assert_uint_ge(took, 59);  /* the loop waited for the deadlines */
    ck_assert_uint_lt(took, 2000); /* and did not oversleep grossly */
    loop_free(loop);
}
END_TEST

START_TEST(cancelled_timer_never_fires)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct order o = {.stop_after = 1};
    struct tagged_timer a, b;
    tagged_init(&a, &o, 1);
    tagged_init(&b, &o, 2);
    loop_timer_arm(loop, &a.timer, 10);
    loop_timer_arm(loop, &b.timer, 30);
    ck_assert(loop_timer_armed(&a.timer));
    loop_timer_cancel(loop, &a.timer);
    ck_assert(!loop_timer_armed(&a.timer));
    loop_timer_cancel(loop, &a.timer); /* twice is harmless */
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(o.n, 1);
    ck_assert_int_eq(o.fired[0], 2);
    loop_free(loop);
}
END_TEST

/* A timer cancelled by an earlier timer of the same turn does not fire,
 * though both were due. */
struct canceller {
    struct loop_timer timer;
    struct loop_timer *victim;
};

static void on_cancel_victim(struct loop *loop, void *arg)
{
    struct canceller *c = arg;
    loop_timer_cancel(loop, c->victim);
}

START_TEST(timer_cancelled_in_the_same_turn_does_not_fire)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct order o = {.stop_after = 99};
    struct tagged_timer victim;
    tagged_init(&victim, &o, 7);
    struct canceller c = {.victim = &victim.timer};
    loop_timer_init(&c.timer, on_cancel_victim, &c);
    uint64_t when = timer_now_ms() + 10;
    loop_timer_arm_at(loop, &c.timer, when);
    loop_timer_arm_at(loop, &victim.timer, when);
    /* Nothing else to wait for: loop_run returns on its own. */
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(o.n, 0);
    loop_free(loop);
}
END_TEST

START_TEST(loop_stop_from_a_timer_and_run_again)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct order o = {.stop_after = 1};
    struct tagged_timer a, b;
    tagged_init(&a, &o, 1);
    tagged_init(&b, &o, 2);
    loop_timer_arm(loop, &a.timer, 5);
    loop_timer_arm(loop, &b.timer, 300);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(o.n, 1);          /* stopped after a, b still armed */
    ck_assert(loop_timer_armed(&b.timer));
    o.stop_after = 2;
    ck_assert_int_eq(loop_run(loop), 0); /* the same loop runs again */
    ck_assert_int_eq(o.n, 2);
    ck_assert_int_eq(o.fired[1], 2);
    loop_free(loop);
}
END_TEST

START_TEST(run_returns_when_nothing_is_left)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    ck_assert_int_eq(loop_run(loop), 0); /* no fd, no timer: at once */
    loop_free(loop);
}
END_TEST

/* A timer that re-arms itself for "now" must not starve I/O: it runs once
 * per turn (a busy loop of the caller's making, but not a hang), and a byte
 * written 20 ms later still gets its readable callback. */
struct rearm {
    struct loop_timer timer;
    int runs;
};

static void on_rearm_now(struct loop *loop, void *arg)
{
    struct rearm *r = arg;
    r->runs++;
    loop_timer_arm(loop, &r->timer, 0);
}

struct writer {
    struct loop_timer timer;
    int fd;
};

static void on_write_byte(struct loop *loop, void *arg)
{
    (void)loop;
    put_byte(((struct writer *)arg)->fd);
}

START_TEST(self_rearming_timer_does_not_starve_io)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    struct rearm r = {0};
    loop_timer_init(&r.timer, on_rearm_now, &r);
    loop_timer_arm(loop, &r.timer, 0);
    struct writer w = {.fd = p[1]};
    loop_timer_init(&w.timer, on_write_byte, &w);
    loop_timer_arm(loop, &w.timer, 20);
    struct io_seen seen = {0};
    loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 1);
    ck_assert_int_ge(r.runs, 2);
    loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

/* ---- registrations change ---- */

START_TEST(watch_again_switches_events)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int s[2];
    make_pipe(s);
    /* A pipe's read end is never writable: watching it for WRITABLE only
     * means a pending byte must not call anyone. */
    struct io_seen seen = {0};
    loop_watch(loop, s[0], LOOP_READABLE, on_io_stop, &seen);
    ck_assert_int_eq(loop_watch(loop, s[0], LOOP_WRITABLE, on_io_stop, &seen), 0);
    put_byte(s[1]);
    struct order o = {.stop_after = 1};
    struct tagged_timer guard;
    tagged_init(&guard, &o, 1);
    loop_timer_arm(loop, &guard.timer, 100);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 0);
    ck_assert_int_eq(o.n, 1);
    /* And back to READABLE: now it fires. */
    loop_watch(loop, s[0], LOOP_READABLE, on_io_stop, &seen);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 1);
    loop_unwatch(loop, s[0]);
    close(s[0]);
    close(s[1]);
    loop_free(loop);
}
END_TEST

START_TEST(paused_and_unwatched_fds_stay_silent)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    struct io_seen seen_p = {0}, seen_q = {0};
    loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen_p);
    loop_watch(loop, q[0], LOOP_READABLE, on_io_stop, &seen_q);
    loop_watch(loop, p[0], 0, on_io_stop, &seen_p); /* paused */
    loop_unwatch(loop, q[0]);
    loop_unwatch(loop, q[0]); /* twice is harmless */
    put_byte(p[1]);
    put_byte(q[1]);
    /* Only paused and unwatched fds, no timer: nothing can happen. */
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen_p.calls + seen_q.calls, 0);
    /* Unpausing delivers the byte that waited. */
    loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen_p);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen_p.calls, 1);
    ck_assert_int_eq(seen_q.calls, 0);
    loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    loop_free(loop);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    errno = 0;
    ck_assert_int_eq(loop_watch(loop, -1, LOOP_READABLE, on_io_stop, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(loop_watch(loop, 1000, LOOP_READABLE, on_io_stop, NULL), -1);
    ck_assert_int_eq(errno, EBADF); /* no such fd: said at once */
    loop_unwatch(loop, 1000);       /* nothing registered: harmless */
    ck_assert_int_eq(loop_run(loop), 0);
    loop_free(loop);
}
END_TEST

/* ---- the stale-event guard ----
 * Two pipes are readable, so one epoll_wait returns both events. Whichever
 * callback runs first closes the other pipe and puts a brand-new pipe on
 * the very same fd number (dup2), readable too, with a new owner. The
 * event still in the batch was about the old pipe: the new owner must not
 * get it in this batch. A 0 ms timer armed by the first callback fires
 * after the batch; only then may the new owner be called (level triggering
 * reports its byte again on the next turn). */
struct stale_test {
    int a[2], b[2];
    int calls_a, calls_b;
    int new_calls;
    bool batch_over;
    bool new_called_in_batch;
    struct loop_timer batch_end;
};

static void on_new_owner(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)fd;
    (void)events;
    struct stale_test *t = arg;
    t->new_calls++;
    if (!t->batch_over)
        t->new_called_in_batch = true;
    loop_stop(loop);
}

static void replace_with_new_owner(struct loop *loop, struct stale_test *t,
                                   int victim_fd, int victim_writer)
{
    loop_unwatch(loop, victim_fd);
    close(victim_writer);
    int fresh[2];
    make_pipe(fresh);
    put_byte(fresh[1]);
    /* dup2 closes the victim's read end and reuses its number at once. */
    ck_assert_int_eq(dup2(fresh[0], victim_fd), victim_fd);
    close(fresh[0]);
    close(fresh[1]); /* the byte stays readable */
    ck_assert_int_eq(loop_watch(loop, victim_fd, LOOP_READABLE, on_new_owner, t), 0);
    loop_timer_arm(loop, &t->batch_end, 0);
}

static void on_a(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    struct stale_test *t = arg;
    t->calls_a++;
    loop_unwatch(loop, fd); /* done with it: only the new owner remains */
    if (t->calls_a + t->calls_b == 1)
        replace_with_new_owner(loop, t, t->b[0], t->b[1]);
}

static void on_b(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)events;
    struct stale_test *t = arg;
    t->calls_b++;
    loop_unwatch(loop, fd);
    if (t->calls_a + t->calls_b == 1)
        replace_with_new_owner(loop, t, t->a[0], t->a[1]);
}

static void on_batch_end(struct loop *loop, void *arg)
{
    (void)loop;
    ((struct stale_test *)arg)->batch_over = true;
}

START_TEST(stale_event_is_not_dispatched_to_a_new_owner)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct stale_test t = {0};
    make_pipe(t.a);
    make_pipe(t.b);
    loop_timer_init(&t.batch_end, on_batch_end, &t);
    loop_watch(loop, t.a[0], LOOP_READABLE, on_a, &t);
    loop_watch(loop, t.b[0], LOOP_READABLE, on_b, &t);
    put_byte(t.a[1]);
    put_byte(t.b[1]);
    ck_assert_int_eq(loop_run(loop), 0);
    /* Exactly one of the old owners ran; the other was closed first. */
    ck_assert_int_eq(t.calls_a + t.calls_b, 1);
    ck_assert_msg(!t.new_called_in_batch,
                  "the old fd's event went to the new owner");
    ck_assert_int_eq(t.new_calls, 1); /* later, on its own event */
    ck_assert_uint_eq(loop_stale_events(loop), 1);
    loop_unwatch(loop, t.calls_a ? t.b[0] : t.a[0]); /* the new owner */
    close(t.a[0]);
    close(t.b[0]);
    close(t.calls_a ? t.a[1] : t.b[1]);
    loop_free(loop);
}
END_TEST

/* The same without a new owner: the closed fd's pending event is simply
 * dropped, and nobody is called with a dangling arg. */
struct close_test {
    int a[2], b[2];
    int calls;
};

static void on_close_other(struct loop *loop, int fd, unsigned events,
                           void *arg)
{
    (void)events;
    struct close_test *t = arg;
    t->calls++;
    int *other = fd == t->a[0] ? t->b : t->a;
    loop_unwatch(loop, other[0]);
    close(other[0]);
    close(other[1]);
    other[0] = other[1] = -1;
    loop_unwatch(loop, fd);
    /* No loop_stop: the batch must go on to the dropped event, and then
     * loop_run returns by itself because nothing is watched any more. */
}

START_TEST(event_of_an_fd_closed_earlier_in_the_batch_is_dropped)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct close_test t = {0};
    make_pipe(t.a);
    make_pipe(t.b);
    loop_watch(loop, t.a[0], LOOP_READABLE, on_close_other, &t);
    loop_watch(loop, t.b[0], LOOP_READABLE, on_close_other, &t);
    put_byte(t.a[1]);
    put_byte(t.b[1]);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(t.calls, 1);
    ck_assert_uint_eq(loop_stale_events(loop), 1);
    for (int i = 0; i < 2; i++) {
        if (t.a[i] >= 0)
            close(t.a[i]);
        if (t.b[i] >= 0)
            close(t.b[i]);
    }
    loop_free(loop);
}
END_TEST

/* An fd forgotten after its close: nothing is called for it, its number
 * can be watched by a new owner at once, and a loop left with nothing
 * watched returns. */
START_TEST(a_closed_and_forgotten_fd_is_silent_and_its_number_reusable)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2], q[2];
    make_pipe(p);
    struct io_seen seen = {0};
    ck_assert_int_eq(loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen),
                     0);
    put_byte(p[1]);
    int num = p[0];
    close(p[0]);
    loop_forget_closed(loop, num);
    ck_assert_ptr_null(loop_watcher(loop, num));
    close(p[1]);
    ck_assert_int_eq(loop_run(loop), 0); /* nothing left: returns at once */
    ck_assert_int_eq(seen.calls, 0);

    make_pipe(q); /* the lowest free numbers: q[0] takes p[0]'s */
    ck_assert_int_eq(q[0], num);
    ck_assert_int_eq(loop_watch(loop, q[0], LOOP_READABLE, on_io_stop, &seen),
                     0);
    put_byte(q[1]);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(seen.calls, 1);
    ck_assert_int_eq(seen.fd, q[0]);
    close(q[0]);
    close(q[1]);
    loop_free(loop);
}
END_TEST

/* ---- one turn at a time (06's scheduler drives the loop this way) ---- */

static void on_count(struct loop *loop, int fd, unsigned events, void *arg)
{
    (void)loop;
    (void)fd;
    (void)events;
    ++*(int *)arg;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(run_once_turns_once_and_waits_at_most_its_timeout)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    int calls = 0;
    ck_assert_int_eq(loop_watch(loop, p[0], LOOP_READABLE, on_count, &calls),
                     0);
    put_byte(p[1]);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(calls, 1); /* one turn: one call, though still ready */
    char c;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    double t0 = now_s();
    ck_assert_int_eq(loop_run_once(loop, 50), 0); /* nothing comes */
    double took = now_s() - t0;
    ck_assert_int_eq(calls, 1);
    ck_assert_double_ge(took, 0.045);
    ck_assert_double_lt(took, 1.0);
    loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

START_TEST(watcher_names_the_callback_of_a_watched_fd)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int p[2];
    make_pipe(p);
    int calls = 0;
    ck_assert_ptr_null(loop_watcher(loop, p[0]));
    ck_assert_ptr_null(loop_watcher(loop, -1));
    loop_watch(loop, p[0], LOOP_READABLE, on_count, &calls);
    ck_assert(loop_watcher(loop, p[0]) == on_count);
    loop_watch(loop, p[0], 0, on_count, &calls); /* paused is still his */
    ck_assert(loop_watcher(loop, p[0]) == on_count);
    loop_unwatch(loop, p[0]);
    ck_assert_ptr_null(loop_watcher(loop, p[0]));
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

static volatile sig_atomic_t got_usr1;

static void on_timer_count(struct loop *loop, void *arg)
{
    (void)loop;
    ++*(int *)arg;
}

static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

/* A signal the thread blocks is let in only while the loop waits: a
 * pending one interrupts that wait at once (06 under TSan relies on it). */
START_TEST(wait_sigmask_lets_a_blocked_signal_in_while_waiting)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    sigset_t usr1, during_wait;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &usr1, &during_wait), 0);
    sigdelset(&during_wait, SIGUSR1);
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct loop_timer t;
    int fired = 0;
    loop_timer_init(&t, on_timer_count, &fired);
    loop_timer_arm(loop, &t, 2000);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    ck_assert(!got_usr1); /* blocked: pending */
    loop_set_wait_sigmask(loop, &during_wait);
    double t0 = now_s();
    ck_assert_int_eq(loop_run_once(loop, -1), 0);
    ck_assert(got_usr1);
    ck_assert_double_lt(now_s() - t0, 1.0); /* not the timer's 2 s */
    ck_assert_int_eq(fired, 0);
    loop_free(loop);
}
END_TEST

/* ---- completion: the loop moves the bytes ---- */

static void make_pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
                                             SOCK_CLOEXEC, 0, sv), 0);
}

struct done_seen {
    int calls;
    ssize_t result;
    bool stop;        /* loop_stop when called */
};

static void on_done(struct loop *loop, int fd, ssize_t result, void *arg)
{
    (void)fd;
    struct done_seen *d = arg;
    d->calls++;
    d->result = result;
    if (d->stop)
        loop_stop(loop);
}

/* Turns the loop until d was called or ms pass. */
static void run_until_called(struct loop *loop, struct done_seen *d, int ms)
{
    uint64_t deadline = timer_now_ms() + (uint64_t)ms;
    while (d->calls == 0 && timer_now_ms() < deadline)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
}

/* Bytes arrive in the caller's buffer, and the peer's close is a 0 after
 * them; loop_recv with no buffer only says that something is there. */
START_TEST(recv_delivers_bytes_then_the_end)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    char buf[64] = {0};
    struct done_seen d = {0};
    ck_assert_int_eq(loop_recv(loop, sv[0], NULL, 0, on_done, &d), 0);
    ck_assert_int_eq(loop_recv(loop, sv[0], buf, sizeof buf, on_done, &d), -1);
    ck_assert_int_eq(errno, EBUSY); /* one receive at a time */
    ck_assert_int_eq(write(sv[1], "hello", 5), 5);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.result, 1);  /* something is there... */
    d = (struct done_seen){0};
    ck_assert_int_eq(loop_recv(loop, sv[0], buf, sizeof buf, on_done, &d), 0);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 5);  /* ...and nothing of it was taken */
    ck_assert_str_eq(buf, "hello");
    close(sv[1]);
    d = (struct done_seen){0};
    ck_assert_int_eq(loop_recv(loop, sv[0], buf, sizeof buf, on_done, &d), 0);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 0);
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    loop_free(loop);
}
END_TEST

/* An idle owner waits without a buffer (05's kept-alive clients hold
 * none), then asks for the bytes: they come in the same turn, so a
 * request still costs one wait, not two (on epoll the recv(2) follows the
 * first callback at once; on io_uring the bytes are held already). */
struct wake_then_read {
    struct done_seen woke, read;
    char buf[64];
};

static void on_woke_read(struct loop *loop, int fd, ssize_t result,
                         void *arg)
{
    struct wake_then_read *w = arg;
    on_done(loop, fd, result, &w->woke);
    ck_assert_int_eq(loop_recv(loop, fd, w->buf, sizeof w->buf, on_done,
                               &w->read), 0);
}

START_TEST(a_wait_without_a_buffer_gets_its_bytes_in_the_same_turn)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    struct wake_then_read w = {0};
    ck_assert_int_eq(loop_recv(loop, sv[0], NULL, 0, on_woke_read, &w), 0);
    ck_assert_int_eq(loop_run_once(loop, 0), 0); /* armed, nothing there */
    ck_assert_int_eq(w.woke.calls, 0);
    ck_assert_int_eq(write(sv[1], "hello", 5), 5);
    for (int turns = 0; w.woke.calls == 0 && turns < 200; turns++)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    ck_assert_int_eq(w.woke.calls, 1);
    ck_assert_int_eq(w.woke.result, 1);
    ck_assert_msg(w.read.calls == 1, "the bytes waited for another turn");
    ck_assert_int_eq(w.read.result, 5);
    ck_assert_str_eq(w.buf, "hello");
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* A send's callback never runs inside loop_send, even when the bytes went
 * at once: it comes later in the turn. */
static bool in_send_call;

static void on_sent_outside(struct loop *loop, int fd, ssize_t result,
                            void *arg)
{
    ck_assert_msg(!in_send_call, "fn ran inside loop_send");
    on_done(loop, fd, result, arg);
}

START_TEST(send_reports_its_count_later_in_the_turn)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    char answer[] = "answer";
    struct done_seen d = {0};
    in_send_call = true;
    ck_assert_int_eq(loop_send(loop, sv[0], answer, 6, on_sent_outside, &d),
                     0);
    in_send_call = false;
    memcpy(answer, "XXXXXX", 6); /* the caller's buffer is free again on
                                    io_uring; on epoll it went already */
    ck_assert_int_eq(d.calls, 0);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 6);
    char got[16] = {0};
    ck_assert_int_eq(read(sv[1], got, sizeof got), 6);
    ck_assert_str_eq(got, "answer");
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* A send that does not fit waits for room, then reports what went. */
START_TEST(send_into_a_full_socket_waits_for_room)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    static char block[65536];
    while (write(sv[0], block, sizeof block) > 0) /* fill it */
        ;
    ck_assert_int_eq(errno, EAGAIN);
    struct done_seen d = {0};
    ck_assert_int_eq(loop_send(loop, sv[0], "late", 4, on_done, &d), 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    ck_assert_int_eq(d.calls, 0); /* no room: still waiting */
    char sink[65536];
    while (read(sv[1], sink, sizeof sink) > 0) /* room, and the data */
        ;
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 4);
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* A withdrawn receive calls nobody and writes nothing into its buffer;
 * the bytes wait for the next receive. */
START_TEST(cancelled_recv_leaves_its_buffer_and_the_bytes)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    char first[16] = "untouched", second[16] = {0};
    struct done_seen d = {0};
    ck_assert_int_eq(loop_recv(loop, sv[0], first, sizeof first, on_done, &d),
                     0);
    ck_assert_int_eq(loop_run_once(loop, 10), 0); /* armed */
    loop_recv_cancel(loop, sv[0]);
    loop_recv_cancel(loop, sv[0]); /* twice is harmless */
    ck_assert_int_eq(write(sv[1], "data", 4), 4);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    ck_assert_int_eq(d.calls, 0);
    ck_assert_str_eq(first, "untouched");
    ck_assert_int_eq(loop_recv(loop, sv[0], second, sizeof second, on_done,
                               &d), 0);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 4);
    ck_assert_str_eq(second, "data");
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* The stale-completion guard: a receive is in flight on fd N when its
 * owner closes N and frees the buffer; bytes for the old connection are
 * on their way, and a new connection gets the number N at once. Nothing
 * may reach the new owner but its own bytes, nothing may be written into
 * the freed buffer (ASan would see it), and the old callback never
 * runs. */
START_TEST(completion_after_close_reaches_no_one)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int old[2], fresh[2];
    make_pair(old);
    char *old_buf = malloc(64);
    struct done_seen old_d = {0}, new_d = {0};
    ck_assert_int_eq(loop_recv(loop, old[0], old_buf, 64, on_done, &old_d), 0);
    ck_assert_int_eq(loop_run_once(loop, 10), 0); /* in flight */
    ck_assert_int_eq(write(old[1], "OLD", 3), 3);
    int num = old[0];
    close(old[0]);
    loop_forget_closed(loop, num);
    free(old_buf);
    make_pair(fresh);
    ck_assert_int_eq(fresh[0], num); /* the same number, a new owner */
    char new_buf[64] = {0};
    ck_assert_int_eq(loop_recv(loop, fresh[0], new_buf, sizeof new_buf,
                               on_done, &new_d), 0);
    ck_assert_int_eq(write(fresh[1], "NEW", 3), 3);
    run_until_called(loop, &new_d, 2000);
    ck_assert_int_eq(old_d.calls, 0);
    ck_assert_int_eq(new_d.result, 3);
    ck_assert_str_eq(new_buf, "NEW");
    loop_unwatch(loop, fresh[0]);
    close(fresh[0]);
    close(fresh[1]);
    close(old[1]);
    loop_free(loop);
}
END_TEST

/* The same within one batch: two connections receive at once, and the
 * first callback closes the other and gives its number to a new
 * connection, while the other's completion, bytes and all, is still in
 * the batch. The bytes must be dropped, not handed to the new owner. */
struct batch_close {
    int a[2], b[2];
    char *buf_a, *buf_b;
    struct done_seen da, db;
    int fresh[2];
    char fresh_buf[64];
    struct done_seen dn;
    int replaced;          /* 'a' or 'b' */
};

static void replace_other(struct loop *loop, struct batch_close *t,
                          int *victim, char **victim_buf, int who)
{
    t->replaced = who;
    int num = victim[0];
    close(victim[0]);
    loop_forget_closed(loop, num);
    free(*victim_buf);
    *victim_buf = NULL;
    make_pair(t->fresh);
    ck_assert_int_eq(t->fresh[0], num);
    ck_assert_int_eq(loop_recv(loop, t->fresh[0], t->fresh_buf,
                               sizeof t->fresh_buf, on_done, &t->dn), 0);
    ck_assert_int_eq(write(t->fresh[1], "NEW", 3), 3);
}

static void on_batch_a(struct loop *loop, int fd, ssize_t n, void *arg)
{
    struct batch_close *t = arg;
    on_done(loop, fd, n, &t->da);
    if (!t->replaced)
        replace_other(loop, t, t->b, &t->buf_b, 'b');
}

static void on_batch_b(struct loop *loop, int fd, ssize_t n, void *arg)
{
    struct batch_close *t = arg;
    on_done(loop, fd, n, &t->db);
    if (!t->replaced)
        replace_other(loop, t, t->a, &t->buf_a, 'a');
}

START_TEST(completion_in_the_batch_of_a_closed_fd_reaches_no_one)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    struct batch_close t = {.buf_a = malloc(64), .buf_b = malloc(64)};
    make_pair(t.a);
    make_pair(t.b);
    ck_assert_int_eq(loop_recv(loop, t.a[0], t.buf_a, 64, on_batch_a, &t), 0);
    ck_assert_int_eq(loop_recv(loop, t.b[0], t.buf_b, 64, on_batch_b, &t), 0);
    ck_assert_int_eq(loop_run_once(loop, 10), 0); /* both in flight */
    ck_assert_int_eq(write(t.a[1], "OLD", 3), 3);
    ck_assert_int_eq(write(t.b[1], "OLD", 3), 3);
    run_until_called(loop, &t.dn, 2000);
    ck_assert_int_eq(t.da.calls + t.db.calls, 1); /* the other was closed */
    ck_assert_int_eq(t.dn.calls, 1);
    ck_assert_int_eq(t.dn.result, 3);
    ck_assert_msg(memcmp(t.fresh_buf, "NEW", 3) == 0,
                  "the new owner got the old connection's bytes");
    int *kept = t.replaced == 'a' ? t.b : t.a;
    loop_unwatch(loop, kept[0]);
    loop_unwatch(loop, t.fresh[0]);
    close(kept[0]);
    close(kept[1]);
    close(t.fresh[0]);
    close(t.fresh[1]);
    close(t.replaced == 'a' ? t.a[1] : t.b[1]);
    free(t.buf_a);
    free(t.buf_b);
    loop_free(loop);
}
END_TEST

/* A send still queued for the kernel when its owner closes the fd must
 * not run on the next owner of the number (io_uring names the fd by
 * number until the queue is submitted): the new peer gets nothing of the
 * old answer. */
START_TEST(queued_send_of_a_closed_fd_never_reaches_its_new_owner)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int old[2], fresh[2];
    make_pair(old);
    struct done_seen old_d = {0};
    ck_assert_int_eq(loop_send(loop, old[0], "SECRET", 6, on_done, &old_d),
                     0);
    int num = old[0];
    close(old[0]);
    loop_forget_closed(loop, num);
    make_pair(fresh);
    ck_assert_int_eq(fresh[0], num);
    struct done_seen new_d = {0};
    char buf[16];
    ck_assert_int_eq(loop_recv(loop, fresh[0], buf, sizeof buf, on_done,
                               &new_d), 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    char got[16];
    ck_assert_int_eq(read(fresh[1], got, sizeof got), -1);
    ck_assert_int_eq(errno, EAGAIN); /* nothing came on the new connection */
    ck_assert_int_eq(old_d.calls, 0);
    loop_unwatch(loop, fresh[0]);
    close(fresh[0]);
    close(fresh[1]);
    close(old[1]);
    loop_free(loop);
}
END_TEST

/* Each client is handed over, counted by net_accepted. */
struct accepted {
    int fds[8];
    int n;
};

static void on_client(struct loop *loop, int fd, ssize_t client, void *arg)
{
    (void)loop;
    (void)fd;
    struct accepted *a = arg;
    ck_assert_int_ge(client, 0);
    ck_assert_int_lt(a->n, 8);
    a->fds[a->n++] = (int)client;
}

START_TEST(accept_hands_over_each_client)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int port;
    int lfd = harness_listen(&port);
    ck_assert_int_eq(net_set_nonblocking(lfd), 0);
    struct accepted a = {0};
    unsigned long before = net_accepted();
    ck_assert_int_eq(loop_accept(loop, lfd, on_client, &a), 0);
    int clients[3];
    for (int k = 0; k < 3; k++)
        ck_assert_int_ge(clients[k] = raw_connect(port), 0);
    uint64_t deadline = timer_now_ms() + 2000;
    while (a.n < 3 && timer_now_ms() < deadline)
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    ck_assert_int_eq(a.n, 3);
    ck_assert_uint_eq(net_accepted() - before, 3);
    for (int k = 0; k < 3; k++) {
        ck_assert_int_ne(fcntl(a.fds[k], F_GETFL) & O_NONBLOCK, 0);
        close(a.fds[k]);
        close(clients[k]);
    }
    loop_unwatch(loop, lfd);
    close(lfd);
    loop_free(loop);
}
END_TEST

/* An fd is watched or streamed, not both (loop_impl.h says why). */
START_TEST(a_watched_fd_is_not_streamed_and_back)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    struct done_seen d = {0};
    struct io_seen seen = {0};
    char buf[8];
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READABLE, on_io_stop, &seen),
                     0);
    ck_assert_int_eq(loop_recv(loop, sv[0], buf, sizeof buf, on_done, &d), -1);
    ck_assert_int_eq(errno, EBUSY);
    loop_unwatch(loop, sv[0]);
    ck_assert_int_eq(loop_recv(loop, sv[0], buf, sizeof buf, on_done, &d), 0);
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READABLE, on_io_stop, &seen),
                     -1);
    ck_assert_int_eq(errno, EBUSY);
    ck_assert_ptr_null(loop_watcher(loop, sv[0]));
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* Every byte arrives once and in order while receives chain (each
 * callback asks for the next) and more bytes keep coming: a receive
 * answered at once from what the loop holds must not be answered again
 * when more arrives before its callback runs. */
#define CHAIN_BYTES (256 * 1024)

struct chain_recv {
    int fd;
    char *got;
    size_t have;
    bool failed;
};

static void on_chain_recv(struct loop *loop, int fd, ssize_t n, void *arg)
{
    (void)fd;
    struct chain_recv *c = arg;
    if (n <= 0) {
        c->failed = true;
        return;
    }
    c->have += (size_t)n;
    size_t want = CHAIN_BYTES - c->have < 700 ? CHAIN_BYTES - c->have : 700;
    if (want > 0)
        ck_assert_int_eq(loop_recv(loop, c->fd, c->got + c->have, want,
                                   on_chain_recv, c), 0);
}

START_TEST(bytes_come_once_and_in_order_while_receives_chain)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2];
    make_pair(sv);
    char *data = malloc(CHAIN_BYTES);
    struct chain_recv c = {.fd = sv[0], .got = calloc(1, CHAIN_BYTES)};
    for (int k = 0; k < CHAIN_BYTES; k++)
        data[k] = (char)(k % 251);
    ck_assert_int_eq(loop_recv(loop, sv[0], c.got, 700, on_chain_recv, &c), 0);
    size_t sent = 0;
    uint64_t deadline = timer_now_ms() + 10000;
    while (c.have < CHAIN_BYTES && !c.failed && timer_now_ms() < deadline) {
        size_t chunk = CHAIN_BYTES - sent < 3000 ? CHAIN_BYTES - sent : 3000;
        ssize_t n = chunk ? write(sv[1], data + sent, chunk) : 0;
        if (n > 0)
            sent += (size_t)n;
        ck_assert_int_eq(loop_run_once(loop, sent < CHAIN_BYTES ? 0 : 10), 0);
    }
    ck_assert(!c.failed);
    ck_assert_uint_eq(c.have, CHAIN_BYTES);
    ck_assert_msg(memcmp(c.got, data, CHAIN_BYTES) == 0,
                  "bytes lost, doubled or out of order");
    free(data);
    free(c.got);
    loop_unwatch(loop, sv[0]);
    close(sv[0]);
    close(sv[1]);
    loop_free(loop);
}
END_TEST

/* One connection whose owner does not read cannot take every receive
 * buffer: it holds a few (LOOP_URING_PENDING_MAX), then the kernel keeps
 * the rest in its socket, and another connection is still served. Every
 * byte of the first one arrives in order once its owner reads. */
#define HOG_BYTES (4 * 1024 * 1024) /* twice what all the buffers hold */

START_TEST(an_unread_connection_cannot_starve_the_others)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int hog[2], other[2];
    make_pair(hog);
    make_pair(other);
    int size = 1 << 20;
    setsockopt(hog[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    char *data = malloc(HOG_BYTES), *got = malloc(HOG_BYTES);
    for (int k = 0; k < HOG_BYTES; k++)
        data[k] = (char)(k * 7 + k / 4096);
    /* One byte read starts the stream; then its owner stops reading. */
    struct done_seen d = {0};
    ck_assert_int_eq(write(hog[1], data, 1), 1);
    ck_assert_int_eq(loop_recv(loop, hog[0], got, 1, on_done, &d), 0);
    run_until_called(loop, &d, 2000);
    ck_assert_int_eq(d.result, 1);
    size_t sent = 1;
    uint64_t until = timer_now_ms() + 300; /* as much as it takes in */
    while (sent < HOG_BYTES && timer_now_ms() < until) {
        ssize_t n = write(hog[1], data + sent, HOG_BYTES - sent);
        if (n > 0)
            sent += (size_t)n;
        ck_assert_int_eq(loop_run_once(loop, 1), 0);
    }
    /* The other connection. */
    struct done_seen od = {0};
    char obuf[8] = {0};
    ck_assert_int_eq(loop_recv(loop, other[0], obuf, sizeof obuf, on_done,
                               &od), 0);
    ck_assert_int_eq(write(other[1], "hi", 2), 2);
    run_until_called(loop, &od, 2000);
    ck_assert_int_eq(od.result, 2);
    ck_assert_str_eq(obuf, "hi");
    /* Now the hog is read, to the last byte, in order. */
    size_t have = 1;
    uint64_t deadline = timer_now_ms() + 20000;
    while (have < HOG_BYTES && timer_now_ms() < deadline) {
        if (sent < HOG_BYTES) {
            ssize_t n = write(hog[1], data + sent, HOG_BYTES - sent);
            if (n > 0)
                sent += (size_t)n;
        }
        d = (struct done_seen){0};
        ck_assert_int_eq(loop_recv(loop, hog[0], got + have,
                                   HOG_BYTES - have, on_done, &d), 0);
        run_until_called(loop, &d, 1000);
        loop_recv_cancel(loop, hog[0]);
        if (d.calls)
            ck_assert_int_gt(d.result, 0);
        have += d.calls ? (size_t)d.result : 0;
    }
    ck_assert_uint_eq(have, HOG_BYTES);
    ck_assert_msg(memcmp(got, data, HOG_BYTES) == 0, "the bytes came mixed");
    free(data);
    free(got);
    loop_unwatch(loop, hog[0]);
    loop_unwatch(loop, other[0]);
    for (int k = 0; k < 2; k++) {
        close(hog[k]);
        close(other[k]);
    }
    loop_free(loop);
}
END_TEST

/* Operations that complete at once (epoll's send that fits) are delivered
 * without a wait, but never two turns in a row: a callback that sends
 * again from every completion cannot keep a watched pipe from being
 * heard. */
struct chain {
    int fd;
    long sends;
};

static void on_chain_sent(struct loop *loop, int fd, ssize_t result,
                          void *arg)
{
    (void)fd;
    struct chain *c = arg;
    ck_assert_int_eq(result, 1);
    c->sends++;
    ck_assert_int_eq(loop_send(loop, c->fd, "x", 1, on_chain_sent, c), 0);
}

START_TEST(instant_completions_do_not_starve_the_watched)
{
    struct loop *loop = new_loop(_i);
    if (loop == NULL)
        return;
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);
    struct chain c = {.fd = sv[0]};
    ck_assert_int_eq(loop_send(loop, sv[0], "x", 1, on_chain_sent, &c), 0);
    ck_assert_int_eq(loop_run_once(loop, 0), 0); /* the chain is going */
    struct io_seen seen = {0};
    ck_assert_int_eq(loop_watch(loop, p[0], LOOP_READABLE, on_io_stop, &seen),
                     0);
    put_byte(p[1]);
    uint64_t deadline = timer_now_ms() + 2000;
    char sink[4096];
    while (seen.calls == 0 && timer_now_ms() < deadline) {
        ck_assert_int_eq(loop_run_once(loop, 0), 0);
        while (read(sv[1], sink, sizeof sink) > 0) /* room for more */
            ;
    }
    ck_assert_msg(seen.calls == 1, "the pipe was not heard in 2 s "
                                   "(%ld sends meanwhile)", c.sends);
    loop_unwatch(loop, sv[0]);
    loop_unwatch(loop, p[0]);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, readable_callback_fires, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, writable_callback_fires, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, level_triggered_reports_again_until_read, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, timers_fire_in_deadline_order, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, cancelled_timer_never_fires, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, timer_cancelled_in_the_same_turn_does_not_fire, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, loop_stop_from_a_timer_and_run_again, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, run_returns_when_nothing_is_left, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, self_rearming_timer_does_not_starve_io, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, watch_again_switches_events, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, paused_and_unwatched_fds_stay_silent, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, bad_arguments_are_refused, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, stale_event_is_not_dispatched_to_a_new_owner, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, event_of_an_fd_closed_earlier_in_the_batch_is_dropped, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, a_closed_and_forgotten_fd_is_silent_and_its_number_reusable, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, run_once_turns_once_and_waits_at_most_its_timeout, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, watcher_names_the_callback_of_a_watched_fd, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, wait_sigmask_lets_a_blocked_signal_in_while_waiting, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, recv_delivers_bytes_then_the_end, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, a_wait_without_a_buffer_gets_its_bytes_in_the_same_turn, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, send_reports_its_count_later_in_the_turn, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, send_into_a_full_socket_waits_for_room, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, cancelled_recv_leaves_its_buffer_and_the_bytes, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, completion_after_close_reaches_no_one, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, completion_in_the_batch_of_a_closed_fd_reaches_no_one, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, queued_send_of_a_closed_fd_never_reaches_its_new_owner, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, accept_hands_over_each_client, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, a_watched_fd_is_not_streamed_and_back, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, bytes_come_once_and_in_order_while_receives_chain, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, an_unread_connection_cannot_starve_the_others, 0, NUM_BACKENDS);
    tcase_add_loop_test(tc, instant_completions_do_not_starve_the_watched, 0, NUM_BACKENDS);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
