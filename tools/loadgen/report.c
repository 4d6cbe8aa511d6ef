/* report: what a run measured, as text or --json, and the
 * --timeline picture of every request on one time axis. */
#include "loadgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const outcome_names[OUT_KINDS] = {
    "ok", "http", "refused", "timeout", "reset", "closed", "error"};
/* The same, as --json keys (each key must appear once in the output). */
static const char *const outcome_keys[OUT_KINDS] = {
    "ok", "http_errors", "refused", "timeout", "reset", "closed",
    "other_errors"};

/* ---- results ---------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    return v[rank ? rank - 1 : 0];
}

/* The most requests in flight at one moment: sent, and not yet ended
 * (answered or failed). */
static bool max_in_flight(const struct loadgen *lg, size_t *out)
{
    size_t n = 0;
    double *sent = malloc((lg->nrecs ? lg->nrecs : 1) * sizeof *sent);
    double *end = malloc((lg->nrecs ? lg->nrecs : 1) * sizeof *end);
    if (!sent || !end) {
        free(sent);
        free(end);
        return false;
    }
    for (size_t i = 0; i < lg->nrecs; i++)
        if (lg->recs[i].outcome < OUT_KINDS) {
            sent[n] = lg->recs[i].sent;
            end[n++] = lg->recs[i].end;
        }
    qsort(sent, n, sizeof *sent, cmp_double);
    qsort(end, n, sizeof *end, cmp_double);
    /* Walk the sends in time order; before each, count the ends that came
     * by then (j of them): i + 1 - j are in flight just after it. */
    size_t most = 0;
    for (size_t i = 0, j = 0; i < n; i++) {
        while (j < i && end[j] <= sent[i])
            j++;
        if (i + 1 - j > most)
            most = i + 1 - j;
    }
    free(sent);
    free(end);
    *out = most;
    return true;
}

bool summarize(const struct loadgen *lg, struct summary *s)
{
    memset(s, 0, sizeof *s);
    size_t n = lg->nrecs ? lg->nrecs : 1;
    double *lat = malloc(n * sizeof *lat), *lag = malloc(n * sizeof *lag);
    if (!lat || !lag) {
        free(lat);
        free(lag);
        return false;
    }
    if (!max_in_flight(lg, &s->max_in_flight)) {
        free(lat);
        free(lag);
        return false;
    }
    double first = 0, last = 0;
    for (size_t i = 0; i < lg->nrecs; i++) {
        const struct record *r = &lg->recs[i];
        if (r->outcome >= OUT_KINDS)
            continue;
        s->counts[r->outcome]++;
        if (r->status > 0 && r->status < 600)
            s->status_count[r->status]++;
        if (!s->finished++ || r->start < first)
            first = r->start;
        if (r->end > last)
            last = r->end;
        if (r->outcome == OUT_OK) {
            lag[s->ok] = (r->sent - r->start) * 1e3;
            lat[s->ok++] = (r->end - r->start) * 1e3;
        }
    }
    s->failed = s->finished - s->ok;
    s->wall = s->finished ? last - first : 0;
    s->rps = s->wall > 0 ? (double)s->ok / s->wall : 0;
    if (s->ok) {
        qsort(lat, s->ok, sizeof *lat, cmp_double);
        qsort(lag, s->ok, sizeof *lag, cmp_double);
        double sum = 0;
        for (size_t i = 0; i < s->ok; i++)
            sum += lat[i];
        s->min = lat[0];
        s->max = lat[s->ok - 1];
        s->mean = sum / (double)s->ok;
        s->p50 = percentile(lat, s->ok, 0.50);
        s->p90 = percentile(lat, s->ok, 0.90);
        s->p99 = percentile(lat, s->ok, 0.99);
        s->lag_p99 = percentile(lag, s->ok, 0.99);
        s->lag_max = lag[s->ok - 1];
    }
    free(lat);
    free(lag);
    return true;
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* loadgen's CPU time: this process's and, with --procs, its reaped
 * processes'. */
static double client_cpu_s(void)
{
    double s = 0;
    struct rusage ru;
    for (int i = 0; i < 2; i++)
        if (getrusage(i ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru) == 0)
            s += (double)ru.ru_utime.tv_sec +
                 (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    return s;
}

static double watch_cpu_s(const struct server_watch *w)
{
    return (double)(w->cpu_end - w->cpu_start) / (double)sysconf(_SC_CLK_TCK);
}

/* One key per line and no key twice, so a shell script can grep a value:
 * sed -n 's/.*"p99_ms": \([0-9.]*\).*\/\1/p'. */
void print_json(const struct loadgen *lg, const struct summary *s)
{
    const struct options *o = &lg->opt;
    FILE *out = stdout;
    fprintf(out, "{\n  \"url\": ");
    json_string(out, o->url);
    fprintf(out, ",\n  \"method\": ");
    json_string(out, method_name(o));
    fprintf(out, ",\n  \"engine\": \"%s\",\n", engine_names[o->engine]);
    fprintf(out, "  \"concurrency\": %ld,\n", o->concurrency);
    fprintf(out, "  \"threads\": %ld,\n", o->threads);
    fprintf(out, "  \"procs\": %ld,\n", o->procs);
    fprintf(out, "  \"sources\": %ld,\n", o->sources);
    fprintf(out, "  \"rate\": %.0f,\n", o->rate);
    fprintf(out, "  \"keepalive\": %s,\n", o->keepalive ? "true" : "false");
    fprintf(out, "  \"requests\": %zu,\n", s->finished);
    fprintf(out, "  \"ok\": %zu,\n  \"failed\": %zu,\n", s->ok, s->failed);
    for (int k = OUT_HTTP; k < OUT_KINDS; k++)
        fprintf(out, "  \"%s\": %zu,\n", outcome_keys[k], s->counts[k]);
    fprintf(out, "  \"status_counts\": {");
    bool first = true;
    for (int c = 0; c < 600; c++)
        if (s->status_count[c]) {
            fprintf(out, "%s\"%d\": %zu", first ? "" : ", ", c,
                    s->status_count[c]);
            first = false;
        }
    fprintf(out, "},\n");
    fprintf(out, "  \"first_error\": ");
    json_string(out, lg->first_error);
    fprintf(out, ",\n  \"wall_s\": %.4f,\n  \"rps\": %.1f,\n", s->wall, s->rps);
    fprintf(out, "  \"min_ms\": %.3f,\n  \"mean_ms\": %.3f,\n"
                 "  \"p50_ms\": %.3f,\n  \"p90_ms\": %.3f,\n"
                 "  \"p99_ms\": %.3f,\n  \"max_ms\": %.3f,\n",
            s->min, s->mean, s->p50, s->p90, s->p99, s->max);
    fprintf(out, "  \"max_in_flight\": %zu,\n", s->max_in_flight);
    fprintf(out, "  \"send_lag_p99_ms\": %.3f,\n"
                 "  \"send_lag_max_ms\": %.3f,\n", s->lag_p99, s->lag_max);
    fprintf(out, "  \"interrupted\": %s,\n",
            lg->interrupted ? "true" : "false");
    fprintf(out, "  \"client_cpu_s\": %.3f,\n", client_cpu_s());
    fprintf(out, "  \"stall_requested\": %ld,\n  \"stall_connected\": %zu,\n"
                 "  \"stall_failed\": %zu,\n  \"stall_dropped\": %zu,\n",
            o->stall, stalls_count(lg, STALL_HOLDING) +
                          stalls_count(lg, STALL_DROPPED),
            stalls_count(lg, STALL_FAILED) + stalls_count(lg, STALL_CONNECTING),
            stalls_count(lg, STALL_DROPPED));
    const struct server_watch *w = &lg->watch;
    if (w->pid && w->alive)
        fprintf(out, "  \"server_cpu_s\": %.3f,\n"
                     "  \"server_rss_start_kb\": %ld,\n"
                     "  \"server_rss_peak_kb\": %ld,\n"
                     "  \"server_threads_peak\": %ld,\n"
                     "  \"server_procs_peak\": %ld,\n",
                watch_cpu_s(w), w->rss_start_kb, w->rss_peak_kb,
                w->threads_peak, w->procs_peak);
    if (o->timeline) {
        fprintf(out, "  \"timeline\": [");
        double t0 = 0;
        for (size_t i = 0; i < lg->nrecs; i++)
            if (lg->recs[i].outcome < OUT_KINDS &&
                (!t0 || lg->recs[i].start < t0))
                t0 = lg->recs[i].start;
        first = true;
        for (size_t i = 0; i < lg->nrecs; i++) {
            const struct record *r = &lg->recs[i];
            if (r->outcome >= OUT_KINDS)
                continue;
            fprintf(out, "%s\n    {\"start_ms\": %.1f, \"end_ms\": %.1f, "
                         "\"status\": %d, \"outcome\": \"%s\"}",
                    first ? "" : ",", (r->start - t0) * 1e3,
                    (r->end - t0) * 1e3, r->status, outcome_names[r->outcome]);
            first = false;
        }
        fprintf(out, "\n  ],\n");
    }
    fprintf(out, "  \"version\": 1\n}\n");
}

static void print_ms(FILE *out, const char *name, double ms)
{
    fprintf(out, "  %s %.*f", name, ms < 10 ? 2 : ms < 100 ? 1 : 0, ms);
}

static void print_failures(FILE *out, const struct summary *s)
{
    fprintf(out, "  failures ");
    if (!s->failed) {
        fprintf(out, " none\n");
        return;
    }
    const char *sep = " ";
    for (int k = OUT_REFUSED; k < OUT_KINDS; k++)
        if (s->counts[k]) {
            fprintf(out, "%s%s %zu", sep, outcome_names[k], s->counts[k]);
            sep = ", ";
        }
    for (int c = 0; c < 600; c++)
        if (s->status_count[c] && (c < 200 || c >= 300)) {
            fprintf(out, "%sHTTP %d x%zu", sep, c, s->status_count[c]);
            sep = ", ";
        }
    fputc('\n', out);
}

void print_text(const struct loadgen *lg, const struct summary *s)
{
    const struct options *o = &lg->opt;
    FILE *out = stdout;
    fprintf(out, "%s %s  concurrency %ld, keep-alive %s", method_name(o),
            o->url, o->concurrency, o->keepalive ? "on" : "off");
    if (o->procs > 1)
        fprintf(out, ", %ld processes", o->procs);
    if (o->threads > 1)
        fprintf(out, ", %ld threads%s", o->threads,
                o->procs > 1 ? " each" : "");
    if (o->sources)
        fprintf(out, ", %ld source addresses", o->sources);
    if (o->engine != ENGINE_CURL)
        fprintf(out, ", engine %s", engine_names[o->engine]);
    if (o->rate > 0)
        fprintf(out, ", open loop at %.0f requests/s", o->rate);
    fputc('\n', out);
    fprintf(out, "  requests  %zu in %.3f s: %zu ok (2xx), %zu failed, "
                 "%.1f requests/s%s\n",
            s->finished, s->wall, s->ok, s->failed, s->rps,
            lg->interrupted ? " (interrupted)" : "");
    if (s->ok) {
        fprintf(out, "  latency ");
        print_ms(out, "min", s->min);
        print_ms(out, "p50", s->p50);
        print_ms(out, "p90", s->p90);
        print_ms(out, "p99", s->p99);
        print_ms(out, "max", s->max);
        fprintf(out, " ms%s\n", o->rate > 0 ? ", from when each was due" : "");
        if (o->rate > 0) { /* the part of it spent waiting for a connection */
            fprintf(out, "  sent late");
            print_ms(out, "p99", s->lag_p99);
            print_ms(out, "max", s->lag_max);
            fprintf(out, " ms (after it was due: no connection was free, or the\n"
                         "            client itself was late)\n");
        }
    }
    print_failures(out, s);
    if (lg->first_error[0])
        fprintf(out, "  first error: %s\n", lg->first_error);
    if (o->stall)
        fprintf(out, "  stalled   %zu of %ld connections held half a request;"
                     " the server dropped %zu\n",
                stalls_count(lg, STALL_HOLDING) +
                    stalls_count(lg, STALL_DROPPED),
                o->stall, stalls_count(lg, STALL_DROPPED));
    const struct server_watch *w = &lg->watch;
    if (w->pid && w->alive) {
        double cpu = watch_cpu_s(w);
        fprintf(out, "  server    cpu %.2f s (%.0f us/request), memory %.1f MB"
                     " -> %.1f MB peak, %ld thread%s in %ld process%s\n",
                cpu, s->finished ? cpu * 1e6 / (double)s->finished : 0.0,
                (double)w->rss_start_kb / 1024, (double)w->rss_peak_kb / 1024,
                w->threads_peak, w->threads_peak == 1 ? "" : "s",
                w->procs_peak, w->procs_peak == 1 ? "" : "es");
    }
}

/* ---- the timeline ----------------------------------------------------- */

static int cmp_start(const void *a, const void *b)
{
    const struct record *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

static int timeline_width(const struct options *o)
{
    if (o->width)
        return o->width;
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
        ws.ws_col > 40) {
        int w = ws.ws_col - 26; /* label and end time around the bar */
        return w > TIMELINE_MAX_WIDTH ? TIMELINE_MAX_WIDTH : w;
    }
    return TIMELINE_DEFAULT_WIDTH;
}

/* A tick step of 1, 2 or 5 times a power of ten, at least min_s apart. */
static double nice_step(double min_s)
{
    double p = pow(10, floor(log10(min_s)));
    if (p <= 0 || !isfinite(p))
        return 1;
    for (int m = 1; m <= 10; m *= 10)
        for (int k = 0; k < 3; k++) {
            double step = (double[]){1, 2, 5}[k] * p * m;
            if (step >= min_s)
                return step;
        }
    return 10 * p;
}

static void print_ruler(FILE *out, int indent, int width, double span)
{
    double step = nice_step(span * 8 / width);
    int decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3;
    char labels[TIMELINE_MAX_WIDTH * 10 + 64];
    char ruler[TIMELINE_MAX_WIDTH * 10 + 8];
    memset(labels, ' ', sizeof labels);
    memset(ruler, '-', (size_t)width + 1);
    int free_from = 0, end = 0;
    for (int k = 0;; k++) {
        double t = k * step;
        int col = (int)lround(t / span * width);
        if (col > width)
            break;
        ruler[col] = '+';
        char lab[32];
        int len = snprintf(lab, sizeof lab, "%.*fs", decimals, t);
        if (col >= free_from && col + len < (int)sizeof labels - 1) {
            memcpy(labels + col, lab, (size_t)len);
            free_from = col + len + 2;
            end = col + len;
        }
    }
    labels[end] = '\0';
    ruler[width + 1] = '\0';
    /* indent + 1: column c of the ruler sits over cell c of the bars. */
    fprintf(out, "%*s%s\n%*s%s\n", indent + 1, "", labels, indent + 1, "",
            ruler);
}

void print_timeline(struct loadgen *lg)
{
    FILE *out = stdout;
    size_t n = 0;
    for (size_t i = 0; i < lg->nrecs; i++)
        if (lg->recs[i].outcome < OUT_KINDS)
            n++;
    if (!n)
        return;
    /* Rows in start order, numbered in that order: request #1 started
     * first. (qsort is not stable; requests sent in the same instant may
     * swap numbers, which changes nothing in the picture.) */
    struct row {
        struct record r; /* first: cmp_start sorts rows as records */
        size_t num;
    } *rows = malloc(n * sizeof *rows);
    if (!rows)
        return;
    size_t k = 0;
    for (size_t i = 0; i < lg->nrecs; i++)
        if (lg->recs[i].outcome < OUT_KINDS)
            rows[k++] = (struct row){lg->recs[i], 0};
    qsort(rows, n, sizeof *rows, cmp_start); /* r is the first member */
    for (size_t i = 0; i < n; i++)
        rows[i].num = i + 1;
    double t0 = rows[0].r.start, t1 = t0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].r.end > t1)
            t1 = rows[i].r.end;
    double span = t1 - t0 > 1e-3 ? t1 - t0 : 1e-3;
    if (lg->opt.span_s > span)
        span = lg->opt.span_s;
    int width = timeline_width(&lg->opt);
    size_t shown = n < TIMELINE_MAX_ROWS ? n : TIMELINE_MAX_ROWS;
    int numw = snprintf(NULL, 0, "%zu", n);
    int indent = 2 + 1 + numw + 1; /* "  #123 " */

    fprintf(out, "timeline: %zu request%s", n, n == 1 ? "" : "s");
    if (shown < n)
        fprintf(out, " (%zu rows, sampled evenly by start time)", shown);
    fprintf(out, "; '#' from sent to answered, 'x' failed; "
                 "one column = %.0f ms\n", span * 1e3 / width);
    print_ruler(out, indent, width, span);
    char bar[TIMELINE_MAX_WIDTH * 10 + 2];
    for (size_t i = 0; i < shown; i++) {
        size_t pick = shown == n ? i : i * (n - 1) / (shown - 1);
        const struct record *r = &rows[pick].r;
        int a = (int)floor((r->start - t0) / span * width);
        int b = (int)ceil((r->end - t0) / span * width);
        if (a >= width)
            a = width - 1;
        if (b <= a)
            b = a + 1;
        if (b > width)
            b = width;
        memset(bar, ' ', (size_t)width);
        memset(bar + a, r->outcome == OUT_OK ? '#' : 'x', (size_t)(b - a));
        bar[width] = '\0';
        fprintf(out, "  #%-*zu |%s| %.2f s", numw, rows[pick].num, bar,
                r->end - t0);
        if (r->outcome == OUT_HTTP)
            fprintf(out, "  HTTP %d", r->status);
        else if (r->outcome != OUT_OK)
            fprintf(out, "  %s", outcome_names[r->outcome]);
        fputc('\n', out);
    }
    free(rows);
}
