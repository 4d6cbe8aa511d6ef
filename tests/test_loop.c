/* Unit tests for common/loop.c: the callback event loop of 05 and 06.
 * Pipes stand in for sockets: a pipe's read end with a byte in it is
 * readable, its write end is writable. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "loop.h"

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
    struct loop *loop = loop_new();
    ck_assert_ptr_nonnull(loop);
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
    errno = 0;
    ck_assert_int_eq(loop_watch(loop, -1, LOOP_READABLE, on_io_stop, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(loop_watch(loop, 1000, LOOP_READABLE, on_io_stop, NULL), -1);
    ck_assert_int_eq(errno, EBADF); /* epoll_ctl's answer for no such fd */
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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
    struct loop *loop = loop_new();
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

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, readable_callback_fires);
    tcase_add_test(tc, writable_callback_fires);
    tcase_add_test(tc, level_triggered_reports_again_until_read);
    tcase_add_test(tc, timers_fire_in_deadline_order);
    tcase_add_test(tc, cancelled_timer_never_fires);
    tcase_add_test(tc, timer_cancelled_in_the_same_turn_does_not_fire);
    tcase_add_test(tc, loop_stop_from_a_timer_and_run_again);
    tcase_add_test(tc, run_returns_when_nothing_is_left);
    tcase_add_test(tc, self_rearming_timer_does_not_starve_io);
    tcase_add_test(tc, watch_again_switches_events);
    tcase_add_test(tc, paused_and_unwatched_fds_stay_silent);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, stale_event_is_not_dispatched_to_a_new_owner);
    tcase_add_test(tc, event_of_an_fd_closed_earlier_in_the_batch_is_dropped);
    tcase_add_test(tc, a_closed_and_forgotten_fd_is_silent_and_its_number_reusable);
    tcase_add_test(tc, run_once_turns_once_and_waits_at_most_its_timeout);
    tcase_add_test(tc, watcher_names_the_callback_of_a_watched_fd);
    tcase_add_test(tc, wait_sigmask_lets_a_blocked_signal_in_while_waiting);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
