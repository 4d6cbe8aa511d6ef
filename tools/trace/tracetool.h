/* tracetool: the model behind tools/trace, the tool that turns --trace
 * files (common/trace.h) into pictures. One file is one panel (a stage and
 * the loadgen run against it). Its events become:
 *
 *   spans    bars on rows: the client's requests (a row per client
 *            connection, known by its port), and the server's work and
 *            scheduling on lanes
 *   lanes    a band per worker: a process, a thread, a coroutine (06), or
 *            the owner of a callback (05: a connection); a band whose
 *            worker has states (running, parked, ready; or, for a loop
 *            thread, blocked) draws them on its first row, its work
 *            (requests, bills, callbacks) on the rows below, as many as
 *            overlapping spans need
 *   flows    arrows: a client's request to the server request that
 *            answered it; a wake-up (a timer, an fd, another coroutine)
 *            to the run it caused; a spawn to the new coroutine's first
 *            run
 *   counters step lines under the lanes: open connections, async jobs,
 *            the ready queue
 *
 * A panel is cut to its busy window: from its first piece of work (a
 * client request, an accept, a request) to its last, with a small margin,
 * so a server's idle start-up is not drawn. */
#ifndef TOOLS_TRACETOOL_H
#define TOOLS_TRACETOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum span_kind {
    SPAN_CLIENT,   /* loadgen: request sent .. answer read */
    SPAN_REQUEST,  /* server: request parsed .. answered */
    SPAN_BILL,     /* a bill's wait */
    SPAN_CALLBACK, /* a callback PUT */
    SPAN_RUNNING,  /* on the CPU: a coroutine between switches, a loop
                      callback's run */
    SPAN_PARKED,   /* a coroutine parked (label: why), or a connection of
                      05 waiting between its callbacks (label: for which) */
    SPAN_READY,    /* woken, in the ready queue, not yet running */
    SPAN_BLOCKED,  /* a loop thread asleep in select/epoll_wait */
    SPAN_KINDS
};
extern const char *const span_names[SPAN_KINDS]; /* "client", "request" .. */

struct span {
    enum span_kind kind;
    long pid;
    uint64_t id;
    uint64_t t0, t1;  /* us since the panel's start; t1 = the panel's end
                         while open */
    uint64_t first;   /* client: first byte (us since start), 0 unknown */
    bool open;        /* no end in the trace (the run stopped first) */
    bool state;       /* drawn on its lane's state row */
    size_t lane;      /* server: index into lanes */
    int row;          /* client: its row; server: row in its lane */
    long port;        /* client and request: the client's port, or -1 */
    char label[40];   /* why parked, which callback ran, ... */
};

enum lane_kind {
    LANE_LOOP,        /* a thread that runs a loop (it blocks in one) */
    LANE_WORKER,      /* a process or thread (01-03, 04) */
    LANE_COROUTINE,   /* 06 */
    LANE_OWNER,       /* 05: what a callback was registered for */
};

struct lane {
    enum lane_kind kind;
    long pid, tid, co;
    uint64_t owner;   /* LANE_OWNER: the callbacks' arg */
    bool has_state;   /* row 0 is its state row */
    int rows;         /* rows it needs (at least 1) */
    size_t order;     /* drawing order: loops first, then by appearance */
    char label[48];
};

struct mark {         /* an instant: an accept */
    uint64_t t;
    size_t lane;
};

struct flow {         /* an arrow, from a span (or a lane's first row) to
                         a span */
    uint64_t t0, t1;
    size_t from_span; /* SIZE_MAX: from lane from_lane's first row */
    size_t from_lane;
    size_t to_span;
    char what[16];    /* "request", "wake", "spawn" */
};

struct point { uint64_t t; long value; };

struct counter {      /* one track: conns, jobs, ready */
    char name[16];
    struct point *points;
    size_t npoints, cap;
    long max;
};

#define PANEL_COUNTERS 4

struct panel {
    char title[72];   /* the file's name without ".trace" */
    uint64_t start;   /* absolute us of the busy window's start */
    uint64_t length;  /* us the window lasts */
    struct span *spans;
    size_t nspans, spans_cap;
    struct lane *lanes;
    size_t nlanes, lanes_cap;
    struct mark *marks;
    size_t nmarks, marks_cap;
    struct flow *flows;
    size_t nflows, flows_cap;
    struct counter counters[PANEL_COUNTERS];
    size_t ncounters;
    int client_rows;
    bool coroutines;  /* 06: it has coroutine events */
    size_t events, bad_lines, unmatched_ends;
};

/* Reads one trace file into p (zeroed first). False, with errno, if the
 * file cannot be read or holds no event. */
bool panel_load(struct panel *p, const char *path);

/* Reads a trace from an open stream (the unit test's way in). */
bool panel_read(struct panel *p, FILE *in, const char *title);

void panel_free(struct panel *p);

/* How many spans of a kind the panel has. */
size_t panel_count_kind(const struct panel *p, enum span_kind kind);

/* How many spans of a kind: client bars, or work spans (request, bill,
 * callback). */
size_t panel_count(const struct panel *p, bool client);

/* The Chrome trace event format (chrome://tracing, ui.perfetto.dev): a
 * process per panel, a thread per lane row, X events for spans, s/f flow
 * events for the arrows, C events for the counters. */
bool write_chrome_json(FILE *out, const struct panel *ps, size_t n);

/* A self-contained page: inline SVG, a legend, a little JavaScript for
 * hover details, the choice of scale, and counting what was drawn
 * (#drawn). */
bool write_html(FILE *out, const struct panel *ps, size_t n,
                const char *heading);

/* dir/<title>.png for each panel through gnuplot, each zoomed to its own
 * busy window. 0; 1 when gnuplot is not installed (said on stderr); -1 on
 * an error. */
int write_pngs(const char *dir, const struct panel *ps, size_t n);

/* The longest panel: the common time axis. */
uint64_t panels_length(const struct panel *ps, size_t n);

#endif
