/* coro_impl: what the scheduler's files share. Private to 06-coroutines.
 *
 * The core is coro.c (run loop, park and wake, switch, spawn),
 * coro_sched.c, coro_switch.c, coro_stack.c and this header. Every other
 * coro_*.c builds on the core's one way of waiting: register somewhere,
 * describe the undo in a struct co_wait, co_park, and have whoever
 * finishes the wait call co_wait_end. */
#ifndef CORO_IMPL_H
#define CORO_IMPL_H

#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <ucontext.h>

#include "coro.h"
#include "coro_san.h"
#include "list.h"
#include "loop.h"

enum co_state {
    CO_READY,    /* in the ready queue */
    CO_RUNNING,  /* on the CPU: sched->current */
    CO_WAITING,  /* parked; some event, timer or other coroutine wakes it */
    CO_DONE,     /* returned; only the control block is left */
};

/* One wait, as whoever parks describes it to the core (a clause, in
 * libdill's words): how to take the coroutine back out of what it
 * registered with, and what else the core must know about the wait.
 * co_park keeps a copy in the control block: loop callbacks and other
 * coroutines read it while the waiter is parked, and with a shared stack
 * (coro_stack.c) a parked waiter's locals are not at their addresses. */
struct co_wait {
    void (*undo)(struct co *c, void *arg); /* NULL: nothing to undo */
    void *arg;
    int timer_result;      /* what the wait returns if its timer fires */
    bool must_finish;      /* co_cancel cannot end it: it only marks c, and
                              the wait says -ECANCELED once it is over */
    bool only_a_coroutine; /* only another coroutine can end it (a join):
                              without a timer it is not wakeable, so
                              co_sched_run can tell a deadlock */
    const char *why;       /* what it waits for, as the trace and the task
                              list say it: "read fd", "sleep", "join co" */
    long detail;           /* and which one (the fd, the coroutine), or -1:
                              "read fd 7" */
};

struct co {
    long id;
    co_fn fn;
    void *arg, *result;
    union {                    /* at the top of its stack (coro_switch.c) */
        ucontext_t *ctx;       /* swapcontext: how it starts, then its
                                  registers while not running */
        jmp_buf *jb;           /* setjmp: its registers while not running */
    };
    char *map;                 /* the whole mapping (guard page + stack) */
    char *stack;               /* the usable part, just above the guard
                                  (the one shared stack, if shared) */
    char *sp;                  /* shared: the lowest byte of its frames
                                  when it last switched out */
    char *saved;               /* shared: its frames while another
                                  coroutine has the stack (coro_stack.c) */
    size_t saved_len, saved_cap;
    struct list ready_link;    /* in sched->ready while CO_READY */
    struct list all_link;      /* in sched->all until its block is freed */

    const struct co_wait *wait; /* while parked: what it waits for, the
                                  copy below */
    struct co_wait wait_copy;
    uint64_t parked_ms;        /* since when (timer_now_ms): the task list */
    struct loop_timer timer;   /* the wait's deadline, when it has one */

    struct co *join_waiter;    /* the coroutine parked in co_join on us */
    struct san_fiber san;

    /* The small fields last, side by side, so the compiler pads once: a
     * parked coroutine's whole cost is this block and its saved frames
     * (coro.h, "Stacks"), 256 bytes here where holes made it 280. */
    enum co_state state;
    int wake_result;           /* what the wait returns: set by the waker */
    bool started;              /* entered once (its context is built then) */
    bool wakeable;             /* counted in sched->wakeable */
    bool claimed;              /* co_join has started on this handle */
    bool detached;
    bool cancel_pending;       /* co_cancel happened; the next wait says so */
};

/* Who waits on an fd: at most one coroutine per direction (a reader also
 * for co_recv and co_accept, a writer for co_send). */
struct co_fd {
    struct co *reader, *writer;
    void (*take)(int client); /* co_accept: where each client goes */
};

/* A part of the scheduler that starts on first use (worker threads, an
 * HTTP client) and must end before the coroutines' stacks go, since it may
 * still point into them: co_at_free registers it, and co_sched_free runs
 * `end`, first registered first. */
struct co_cleanup {
    struct list link;
    void (*end)(struct co_cleanup *self);
};

struct co_sched {
    size_t stack_size, page_size;
    struct loop *loop;         /* common/loop: the same loop as 05's */
    struct co_fd *fds;         /* indexed by fd, grown on demand */
    size_t nfds;
    struct list ready;         /* the ready queue, first to run first */
    size_t ready_len;
    struct list all;           /* every control block not yet freed */
    struct co *current;        /* the running coroutine, NULL in the loop */
    long next_id;
    size_t live;               /* coroutines that have not returned */
    size_t wakeable;           /* parked coroutines that something other
                                  than a coroutine can wake: if none and
                                  nobody is ready, that is a deadlock */
    bool running;              /* inside co_sched_run */
    void (*call_on_loop)(struct co *c); /* the core's one hook: set by a
                                  coroutine that switched out not to wait
                                  but to have this run on the loop's stack
                                  (coro_deep.c); co_resume runs it */
    struct {                   /* coro_deep.c: the call it asked for */
        co_fn fn;
        void *arg, *result;
        bool running;          /* making it now: no waits (co_running NULL) */
    } deep;
    void (*entry)(void);       /* where every coroutine starts */
    char **stack_cache;        /* mappings of finished coroutines, for
                                  the next ones (coro_stack.c) */
    size_t stack_cached;
    bool shared;               /* co_options.stack_kind: one stack for all */
    char *run_map, *run_stack; /* shared: its mapping, and the stack */
    struct co *owner;          /* shared: whose frames are on it now */
    struct co_stack_stats stats;
    bool use_setjmp;           /* co_options.switch_kind */
    ucontext_t ctx;            /* the loop's own registers while a
                                  coroutine runs (swapcontext)... */
    jmp_buf jb;                /* ...or (setjmp) */
    ucontext_t boot;           /* setjmp: builds each coroutine's first
                                  entry (coro_switch.c) */
    pthread_t loop_thread;
    int workers;               /* co_options.workers */
    struct list cleanups;      /* struct co_cleanup, for co_sched_free */
    struct san_loop san;
};

/* The one scheduler (coro.h, "Global state"). */
extern struct co_sched *sched;

/* The running coroutine, or NULL if the caller is not one. */
static inline struct co *co_running(void)
{
    return sched && !sched->deep.running ? sched->current : NULL;
}

/* Consumes a pending cancel: a wait about to start reports it at once. */
static inline bool co_take_cancel(struct co *c)
{
    bool was = c->cancel_pending;
    c->cancel_pending = false;
    return was;
}

/* Suspends the running coroutine c in wait w, already registered, with an
 * optional timeout (timeout_ms < 0: none) whose expiry makes the wait
 * return w->timer_result. Returns what ended the wait. */
int co_park(struct co *c, const struct co_wait *w, int timeout_ms);

/* Ends c's wait with result: undoes its registration (w->undo) and its
 * timer, queues c. */
void co_wait_end(struct co *c, int result);

/* Has cl->end run at co_sched_free (struct co_cleanup). */
void co_at_free(struct co_cleanup *cl);

/* A coroutine that returned (or, at co_sched_free, is abandoned): frees
 * its stack at once, and its control block too if it is detached. */
void co_retire(struct co *c);

/* Frees a retired coroutine's control block: co_join and co_detach, once
 * nobody needs its result. */
void co_block_free(struct co *c);

/* coro_stack.c: sets s->page_size and s->stack_size from the size asked
 * for (0: CO_DEFAULT_STACK_SIZE; rounded up to whole pages, at least 16
 * KiB) and, if shared, maps the one stack: 0 or a negative errno; gives c
 * a stack (c->map, c->stack; if shared, c->stack is the one), 0 or a
 * negative errno; takes it back (nothing if c has none) into a small cache,
 * or frees c's saved frames; unmaps the cache and the shared stack
 * (co_sched_free). */
int co_stacks_init(struct co_sched *s, size_t requested, bool shared);
int co_stack_alloc(struct co *c);
void co_stack_free(struct co *c);
void co_stacks_free(void);

/* coro_stack.c, the shared stack: c, about to switch out, marks where its
 * frames end (called last before the registers are saved, from the
 * innermost frame that must survive); the loop, about to switch to c,
 * makes the stack c's: saves the owner's frames, restores c's (nothing
 * with separate stacks, or if c owns it already). */
void co_stack_mark(struct co *c);
void co_stack_take(struct co *c);

/* coro_switch.c: prepares c's context (entry on its stack, built at the
 * first entry, so it returns 0); switches from the loop to c, returning
 * when c switches back; switches from the running c to the loop,
 * returning when c is resumed (never, if c is CO_DONE). Sanitizer hooks
 * included. */
int co_ctx_make(struct co *c, void (*entry)(void));
void co_ctx_enter(struct co *c);
void co_ctx_leave(struct co *c);

#endif
