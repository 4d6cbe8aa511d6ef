/* tracetool: the model behind tools/trace, the tool that turns --trace
 * files (common/trace.h) into pictures. One file is one panel (a stage and
 * the loadgen run against it); its events become spans on lanes: a lane
 * per worker (process, thread or coroutine), split into rows where the
 * worker's spans overlap (04 and 05 interleave many requests on one lane),
 * and the client's requests above, one row each. */
#ifndef TOOLS_TRACETOOL_H
#define TOOLS_TRACETOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum span_kind { SPAN_CLIENT, SPAN_REQUEST, SPAN_BILL, SPAN_CALLBACK,
                 SPAN_KINDS };
extern const char *const span_names[SPAN_KINDS]; /* "client", "request" .. */

struct span {
    enum span_kind kind;
    long pid;
    uint64_t id;
    uint64_t t0, t1;  /* us since the panel's start; t1 = the panel's end
                         while open */
    uint64_t first;   /* client: first byte (us since start), 0 unknown */
    bool open;        /* no end in the trace (the run stopped first) */
    size_t lane;      /* server: index into lanes */
    int row;          /* client: its own row; server: row in its lane */
};

struct lane {
    long pid, tid, co;
    int rows;         /* rows its overlapping spans need (at least 1) */
    char label[48];
};

struct mark {         /* an instant: an accept */
    uint64_t t;
    size_t lane;
};

struct panel {
    char title[72];   /* the file's name without ".trace" */
    uint64_t start;   /* absolute us of its first event */
    uint64_t length;  /* us from its first event to its last */
    struct span *spans;
    size_t nspans, spans_cap;
    struct lane *lanes;
    size_t nlanes, lanes_cap;
    struct mark *marks;
    size_t nmarks, marks_cap;
    int client_rows;
    size_t events, bad_lines, unmatched_ends;
};

/* Reads one trace file into p (zeroed first). False, with errno, if the
 * file cannot be read or holds no event. */
bool panel_load(struct panel *p, const char *path);

/* Reads a trace from an open stream (the unit test's way in). */
bool panel_read(struct panel *p, FILE *in, const char *title);

void panel_free(struct panel *p);

/* How many spans of a kind: client bars, or worker spans (every other). */
size_t panel_count(const struct panel *p, bool client);

/* The Chrome trace event format (chrome://tracing, ui.perfetto.dev): a
 * process per panel, a thread per lane row, X events for spans. */
bool write_chrome_json(FILE *out, const struct panel *ps, size_t n);

/* A self-contained page: inline SVG, a little JavaScript for hover
 * details and for counting what was drawn (#drawn). */
bool write_html(FILE *out, const struct panel *ps, size_t n,
                const char *heading);

/* dir/<title>.png for each panel through gnuplot. 0; 1 when gnuplot is
 * not installed (said on stderr); -1 on an error. */
int write_pngs(const char *dir, const struct panel *ps, size_t n);

/* The longest panel: the common time axis. */
uint64_t panels_length(const struct panel *ps, size_t n);

#endif
