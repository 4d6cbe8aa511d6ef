/* trace: what a server's workers do, one line per event, for pictures of
 * concurrency (tools/trace turns the lines into a timeline). --trace FILE
 * turns it on (config.c opens it); off, every TRACE() is one predicted
 * branch on a global and nothing else.
 *
 * A line is seven fields and an optional label, separated by one space:
 *
 *     T_US PID TID CO NAME PH ID [LABEL]
 *
 * T_US  CLOCK_MONOTONIC in microseconds (one clock for every process on
 *       the machine, so loadgen's lines and the server's line up)
 * PID TID  the worker's process and thread (gettid)
 * CO    the coroutine id in 06 (the one running when the event happened),
 *       -1 elsewhere
 * NAME  what happened (the table below)
 * PH    B (a span begins), E (it ends), I (an instant), C (a counter's new
 *       value), M (a label line: who traces)
 * ID    pairs a B with its E: the same PID, NAME and ID; a counter's value
 * LABEL free text: a callback's function, why a coroutine parked, the
 *       client's port
 *
 * The work (every stage; loadgen the client's):
 *   request   B/E  head and body parsed .. response written; id the fd,
 *                  label "port N" (the client's port, known from the
 *                  accept)
 *   bill      B/E  one bill's wait for the simulated external call
 *   callback  B/E  one PUT attempt .. its answer
 *   accept    I    a connection accepted; id the fd, label "port N"
 *   client    B/E  loadgen: request sent .. response read; label "port N",
 *                  its own port, so the tool can tell which server request
 *                  answered it
 *   first_byte I   loadgen: the response's first byte
 * The scheduler (04, 05, 06):
 *   blocked   B/E  the loop thread sleeps in select, epoll_wait or
 *                  io_uring_enter (--backend uring); id the
 *                  loop; label "timeout N" (ms) or "no timeout" on B,
 *                  "events N" (how many it reported) on E. Between an E and the
 *                  next B the thread dispatches.
 *   run       B/E  one loop callback runs; id its arg (the owner: a
 *                  connection in 05), label its function's name and, for
 *                  a descriptor's callback, "fd N"
 *   co        B/E  06: coroutine ID runs (switched in .. out); the E's
 *                  label says why it left: "read fd 7", "write fd 7",
 *                  "sleep", "join co 12", "pool", "curl", "yield", "done"
 *   wake      I    06: coroutine ID's wait ended (CO is who ended it: -1,
 *                  the loop, for a timer or an fd); it runs at its next B
 *   spawn     I    06: coroutine ID was created; label its function
 *   ready     C    06: the ready queue's length when the scheduler starts
 *                  a pass over it, and what is left at its end
 *   conns     C    open connections (04, 05, 06)
 *   jobs      C    async jobs accepted and not over (every stage)
 * A counter line is written only when its value changed.
 *
 * How lines are written. Each is one write(2) on an O_APPEND descriptor,
 * so lines from processes and threads sharing the file never interleave
 * inside a line, and a forked child needs no flush before _exit. One
 * exception keeps the scheduler's events cheap: the thread that runs a
 * loop gathers the lines of a turn in a buffer and writes them with one
 * write(2) when it next blocks (its "blocked B" event), or when the
 * buffer is full. So a crash loses at most the lines of the turn it
 * happened in. The cost of each, off and on, is in LECTURE.md's section
 * on pictures. */
#ifndef COMMON_TRACE_H
#define COMMON_TRACE_H

#include <stdint.h>

enum trace_kind {
    TRACE_ACCEPT,       /* I: a connection accepted; id = its fd */
    TRACE_REQ_BEGIN,    /* B: a whole request parsed; id = the fd */
    TRACE_REQ_END,      /* E: its response written; id = the fd */
    TRACE_BILL_BEGIN,   /* B: a bill's wait starts; id = job + index */
    TRACE_BILL_END,     /* E: its answer is in */
    TRACE_CB_BEGIN,     /* B: a callback PUT is sent; id = the callback */
    TRACE_CB_END,       /* E: its answer (or error) is in */
    TRACE_CLIENT_BEGIN, /* B: loadgen sends a request; id = its number */
    TRACE_CLIENT_FIRST, /* I: its first response byte arrives */
    TRACE_CLIENT_END,   /* E: its whole response is read */
    TRACE_BLOCKED_BEGIN, /* B: the loop sleeps in select/epoll_wait */
    TRACE_BLOCKED_END,  /* E: it is back with events (or a deadline) */
    TRACE_RUN_BEGIN,    /* B: a loop callback starts; id = its arg */
    TRACE_RUN_END,      /* E: it returned */
    TRACE_CO_BEGIN,     /* B: a coroutine is switched in; id = its id */
    TRACE_CO_END,       /* E: it is switched out; label = why */
    TRACE_CO_WAKE,      /* I: its wait ended; id = its id */
    TRACE_CO_SPAWN,     /* I: it was created; id = its id */
    TRACE_COUNT_READY,  /* C: the ready queue's length */
    TRACE_COUNT_CONNS,  /* C: open connections */
    TRACE_COUNT_JOBS,   /* C: async jobs in flight */
    TRACE_NUM_KINDS
};

/* The trace file's descriptor, -1 while tracing is off. Set once at
 * start-up, before any thread or child exists. */
extern int trace_fd;

/* True while tracing is on: the one test every hook makes first. */
#define TRACE_ON() __builtin_expect(trace_fd >= 0, 0)

/* One event if tracing is on. obj and i make the id: (uintptr_t)obj + i,
 * unique while the object lives (a job's bills: the job and the index). */
#define TRACE(kind, obj, i)                                                \
    do {                                                                   \
        if (TRACE_ON())                                                    \
            trace_event((kind), (const void *)(obj), (uint64_t)(i));       \
    } while (0)

/* One event with a label, "what" or "what n" (n >= 0): "read fd 7". */
#define TRACE_NOTE(kind, id, what, n)                                      \
    do {                                                                   \
        if (TRACE_ON())                                                    \
            trace_note((kind), (uint64_t)(id), (what), (long)(n));         \
    } while (0)

/* One event labelled with a function's name (and "fd N" for fd >= 0):
 * which callback ran, which function a coroutine runs. */
#define TRACE_FN(kind, id, fn, fd)                                         \
    do {                                                                   \
        if (TRACE_ON())                                                    \
            trace_fn((kind), (uint64_t)(id), (void (*)(void))(fn), (fd));  \
    } while (0)

/* Opens path for appending (created 0644 if missing) and writes a label
 * line naming who traces (a stage, "loadgen"). 0, or -1 with errno. */
int trace_open(const char *path, const char *label);

/* Writes what the calling thread has gathered (see "How lines are
 * written"), stops tracing and closes the file. */
void trace_close(void);

/* Writes what the calling thread has gathered now: before it forks, or
 * when its loop ends. */
void trace_flush(void);

/* 06 tells the tracer how to ask which coroutine runs (co_current_id): a
 * function, so common/ does not depend on 06's scheduler. */
void trace_set_coro_source(long (*current_id)(void));

/* Writes one event now; use TRACE(), which skips the call when off.
 * accept and request events get their "port N" label here. */
void trace_event(enum trace_kind kind, const void *obj, uint64_t i);

/* The same with its own time (t_us, trace_now_us's clock) and label
 * ("what n", or "what" for n < 0, or none for a NULL what): loadgen
 * writes a request's start, first byte and end when it ends. */
void trace_event_at(enum trace_kind kind, uint64_t id, const char *what,
                    long n, uint64_t t_us);

/* TRACE_NOTE's and TRACE_FN's writers. trace_fn names fn from the
 * program's own symbol table (symtab.h); a function it cannot name is
 * written as its address. */
void trace_note(enum trace_kind kind, uint64_t id, const char *what, long n);
void trace_fn(enum trace_kind kind, uint64_t id, void (*fn)(void), int fd);

/* Formats one line into buf (at least TRACE_LINE_MAX bytes); returns its
 * length. label may be NULL; it is cut at 64 bytes. kind TRACE_NUM_KINDS
 * writes the "stage M" line that names who traces. Exposed for the unit
 * test and for the writers above. */
#define TRACE_LINE_MAX 192
int trace_format(char *buf, uint64_t t_us, long pid, long tid, long co,
                 enum trace_kind kind, uint64_t id, const char *label);

/* The name and phase of a kind, as a line writes them ("run", 'B'). */
const char *trace_kind_name(enum trace_kind kind);
char trace_kind_phase(enum trace_kind kind);

/* CLOCK_MONOTONIC in microseconds, the clock of every trace line. */
uint64_t trace_now_us(void);

#endif
