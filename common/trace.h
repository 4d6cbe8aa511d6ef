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
 * CO    the coroutine id in 06, -1 elsewhere
 * NAME  accept | request | bill | callback | client | first_byte | stage
 * PH    B (a span begins), E (it ends), I (an instant), M (a label line)
 * ID    pairs a B with its E: the same PID, NAME and ID
 *
 * Spans: request (head and body parsed .. response written), bill (one
 * bill's wait for the simulated external call), callback (one PUT attempt
 * .. its answer), client (loadgen: request sent .. response read). Each
 * event is one write(2) on an O_APPEND descriptor: lines from processes
 * and threads sharing the file never interleave inside a line, a forked
 * child needs no flush before _exit, and a crash loses nothing written. */
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
    TRACE_NUM_KINDS
};

/* The trace file's descriptor, -1 while tracing is off. Set once at
 * start-up, before any thread or child exists. */
extern int trace_fd;

/* One event if tracing is on. obj and i make the id: (uintptr_t)obj + i,
 * unique while the object lives (a job's bills: the job and the index). */
#define TRACE(kind, obj, i)                                                \
    do {                                                                   \
        if (__builtin_expect(trace_fd >= 0, 0))                            \
            trace_event((kind), (const void *)(obj), (uint64_t)(i));       \
    } while (0)

/* Opens path for appending (created 0644 if missing) and writes a label
 * line naming who traces (a stage, "loadgen"). 0, or -1 with errno. */
int trace_open(const char *path, const char *label);

/* Stops tracing and closes the file. */
void trace_close(void);

/* 06 tells the tracer how to ask which coroutine runs (co_current_id): a
 * function, so common/ does not depend on 06's scheduler. */
void trace_set_coro_source(long (*current_id)(void));

/* Writes one event now; use TRACE(), which skips the call when off. */
void trace_event(enum trace_kind kind, const void *obj, uint64_t i);

/* The same with its own time (t_us, trace_now_us's clock): loadgen writes
 * a request's start, first byte and end when it ends. */
void trace_event_at(enum trace_kind kind, const void *obj, uint64_t i,
                    uint64_t t_us);

/* Formats one line into buf (at least TRACE_LINE_MAX bytes); returns its
 * length. Exposed for the unit test and for trace_event. */
#define TRACE_LINE_MAX 160
int trace_format(char *buf, uint64_t t_us, long pid, long tid, long co,
                 enum trace_kind kind, uint64_t id, const char *label);

/* CLOCK_MONOTONIC in microseconds, the clock of every trace line. */
uint64_t trace_now_us(void);

#endif
