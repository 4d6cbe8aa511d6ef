/* trace: turns --trace files into pictures of concurrency.
 *
 *   trace [--json OUT] [--html OUT] [--png DIR] [--title TEXT] FILE...
 *
 * Each FILE is one panel: a stage's trace (or the FastAPI app's,
 * EXCHANGE_TRACE) with the loadgen run against it appended
 * (common/trace.h has the line format), cut to its busy window. The page
 * can draw every panel on one time axis or each across the width; each
 * PNG fills its own. This file is the command line; model.c reads the
 * lines into spans, lanes, arrows and counters and writes the Chrome
 * JSON; draw.c draws the page and the PNGs. */
#include "tracetool.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* ---- the command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: trace [--json OUT] [--html OUT] [--png DIR] [--title TEXT] "
        "FILE...\n"
        "Turns --trace files (a stage's, with loadgen's appended) into\n"
        "pictures: one panel per FILE, each cut to its busy window.\n"
        "  --json OUT    Chrome trace event JSON (chrome://tracing, Perfetto)\n"
        "  --html OUT    a self-contained page (inline SVG), opens offline\n"
        "  --png DIR     DIR/<stage>.png per panel through gnuplot, if it is\n"
        "                installed (a message, not an error, if not)\n"
        "  --title TEXT  the page's heading (default \"Pictures of "
        "concurrency\")\n"
        "Without an output option it prints each panel's counts.\n");
}

/* Writes to path through fn; false with a message on failure. */
static bool write_file(const char *path, const struct panel *ps, size_t n,
                       const char *title, bool html)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "trace: %s: %s\n", path, strerror(errno));
        return false;
    }
    bool ok = html ? write_html(out, ps, n, title)
                   : write_chrome_json(out, ps, n);
    if (fclose(out) != 0 || !ok) {
        fprintf(stderr, "trace: writing %s failed\n", path);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    const char *json = NULL, *html = NULL, *png = NULL;
    const char *title = "Pictures of concurrency";
    static const struct option opts[] = {
        {"json", required_argument, 0, 'j'}, {"html", required_argument, 0, 'H'},
        {"png", required_argument, 0, 'p'}, {"title", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = optarg; break;
        case 'H': html = optarg; break;
        case 'p': png = optarg; break;
        case 't': title = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    size_t n = (size_t)(argc - optind);
    if (n == 0) {
        usage(stderr);
        return 2;
    }
    struct panel *ps = calloc(n, sizeof *ps);
    if (!ps)
        return 3;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *path = argv[optind + (int)i];
        if (!panel_load(&ps[i], path)) {
            fprintf(stderr, "trace: %s: %s\n", path, strerror(errno));
            rc = 1;
        } else if (ps[i].bad_lines) {
            fprintf(stderr, "trace: %s: %zu line(s) not understood, "
                            "skipped\n", path, ps[i].bad_lines);
        }
        if (!json && !html && !png)
            printf("%s: %zu events, %zu client bars, %zu worker spans, "
                   "%zu lanes, %.1f ms\n", ps[i].title, ps[i].events,
                   panel_count(&ps[i], true), panel_count(&ps[i], false),
                   ps[i].nlanes, (double)ps[i].length / 1000.0);
    }
    if (rc == 0 && json && !write_file(json, ps, n, title, false))
        rc = 1;
    if (rc == 0 && html && !write_file(html, ps, n, title, true))
        rc = 1;
    if (rc == 0 && png && write_pngs(png, ps, n) < 0)
        rc = 1;
    for (size_t i = 0; i < n; i++)
        panel_free(&ps[i]);
    free(ps);
    return rc;
}
