/* draw: the pictures of tools/trace (tracetool.h): a self-contained
 * HTML page of inline SVG, and PNGs through gnuplot. Both use one layout:
 * the client's requests on top, a row each; the server's lanes below, a
 * band per worker with as many rows as its overlapping spans need. */
#include "tracetool.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { GUTTER = 150, PLOT = 900, PAD = 20, AXIS = 26, CLIENT_PITCH = 7,
       CLIENT_H = 5, ROW_PITCH = 9, ROW_H = 7, LANE_GAP = 4, SECTION_GAP = 14 };

static const char *const colors[SPAN_KINDS] = {
    [SPAN_CLIENT] = "#8a8f98", [SPAN_REQUEST] = "#4c78a8",
    [SPAN_BILL] = "#f58518", [SPAN_CALLBACK] = "#54a24b"};

/* ---- the layout, in pixels ---- */

static int client_y(int row) { return AXIS + row * CLIENT_PITCH; }

static int lanes_top(const struct panel *p)
{
    return client_y(p->client_rows) + SECTION_GAP;
}

static int lane_y(const struct panel *p, size_t lane)
{
    int y = lanes_top(p);
    for (size_t l = 0; l < lane; l++)
        y += p->lanes[l].rows * ROW_PITCH + LANE_GAP;
    return y;
}

static int panel_height(const struct panel *p)
{
    return lane_y(p, p->nlanes) + 6;
}

static int span_y(const struct panel *p, const struct span *s)
{
    return s->kind == SPAN_CLIENT ? client_y(s->row)
                                  : lane_y(p, s->lane) + s->row * ROW_PITCH;
}

static double x_of(uint64_t t, uint64_t len)
{
    return GUTTER + (double)t * PLOT / (double)len;
}

/* A round step for about eight ticks over len us: 1, 2 or 5 times 10^k ms. */
static double tick_ms(uint64_t len)
{
    double want = (double)len / 1000.0 / 8.0, step = 0.001;
    while (step * 10 <= want)
        step *= 10;
    return want > step * 5 ? step * 5 : want > step * 2 ? step * 2 : step;
}

/* ---- HTML ---- */

static void html_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

static void svg_axis(FILE *out, const struct panel *p, uint64_t len)
{
    double step = tick_ms(len);
    int h = panel_height(p);
    for (double ms = 0; ms * 1000.0 <= (double)len + 0.5; ms += step) {
        double x = x_of((uint64_t)(ms * 1000.0), len);
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"16\" x2=\"%.1f\" "
                     "y2=\"%d\"/><text class=\"tick\" x=\"%.1f\" y=\"12\">"
                     "%g ms</text>\n", x, x, h, x, ms);
    }
    fprintf(out, "<text class=\"label\" x=\"4\" y=\"%d\">client requests"
                 "</text>\n", client_y(0) + 6);
}

static void svg_lanes(FILE *out, const struct panel *p)
{
    for (size_t l = 0; l < p->nlanes; l++) {
        int y = lane_y(p, l), h = p->lanes[l].rows * ROW_PITCH;
        fprintf(out, "<rect class=\"band\" x=\"0\" y=\"%d\" width=\"%d\" "
                     "height=\"%d\"/><text class=\"label\" x=\"4\" y=\"%d\">",
                y - 1, GUTTER + PLOT, h, y + 7);
        html_text(out, p->lanes[l].label);
        fputs("</text>\n", out);
    }
}

static void svg_span(FILE *out, const struct panel *p, const struct span *s,
                     uint64_t len)
{
    double x0 = x_of(s->t0, len), x1 = x_of(s->t1, len);
    double w = x1 - x0 < 1 ? 1 : x1 - x0;
    bool client = s->kind == SPAN_CLIENT;
    const char *lane = client ? "client" : p->lanes[s->lane].label;
    fprintf(out, "<rect class=\"%s %s%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                 "height=\"%d\" fill=\"%s\" data-k=\"%s\" data-lane=\"%s\" "
                 "data-t0=\"%.3f\" data-t1=\"%.3f\"><title>%s %s: %.1f .. "
                 "%.1f ms%s</title></rect>\n",
            client ? "client" : "span", span_names[s->kind],
            s->open ? " open" : "", x0, span_y(p, s), w,
            client ? CLIENT_H : ROW_H, colors[s->kind], span_names[s->kind],
            lane, s->t0 / 1000.0, s->t1 / 1000.0, span_names[s->kind], lane,
            s->t0 / 1000.0, s->t1 / 1000.0, s->open ? " (no end traced)" : "");
    if (client && s->first > s->t0)
        fprintf(out, "<line class=\"fb\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                     "y2=\"%d\"/>\n", x_of(s->first, len), span_y(p, s),
                x_of(s->first, len), span_y(p, s) + CLIENT_H);
}

static void svg_panel(FILE *out, const struct panel *p, uint64_t len)
{
    fprintf(out, "<section class=\"panel\" data-stage=\"%s\" "
                 "data-client-bars=\"%zu\" data-worker-spans=\"%zu\">\n"
                 "<h2>%s</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"%d\" height=\"%d\">\n", p->title,
            panel_count(p, true), panel_count(p, false), p->title,
            GUTTER + PLOT + PAD, panel_height(p));
    svg_lanes(out, p);
    svg_axis(out, p, len);
    for (size_t i = 0; i < p->nspans; i++)
        svg_span(out, p, &p->spans[i], len);
    for (size_t i = 0; i < p->nmarks; i++) {
        double x = x_of(p->marks[i].t, len);
        int y = lane_y(p, p->marks[i].lane);
        fprintf(out, "<path class=\"mark\" d=\"M%.1f %d l-3 -4 h6 z\"><title>"
                     "accept at %.1f ms</title></path>\n", x, y,
                p->marks[i].t / 1000.0);
    }
    fputs("</svg>\n</section>\n", out);
}

static const char page_style[] =
    "body{font:13px sans-serif;margin:16px;color:#222;background:#fff}"
    "h2{font-size:14px;margin:14px 0 2px}svg{display:block}"
    ".grid{stroke:#e3e3e3}.tick{font-size:10px;fill:#666}"
    ".label{font-size:10px;fill:#333}.band{fill:#f4f5f7}"
    ".span,.client{stroke:#fff;stroke-width:0.6}"
    ".open{stroke:#000;stroke-dasharray:2 2}.fb{stroke:#222;stroke-width:2}"
    ".mark{fill:#222}#tip{position:fixed;display:none;background:#ffd;"
    "border:1px solid #999;padding:2px 6px;pointer-events:none}"
    ".key{display:inline-block;width:12px;height:9px;margin:0 4px 0 12px}";

/* Counts what the browser drew into #drawn (the browser test reads it),
 * and shows a span's details under the pointer. */
static const char page_script[] =
    "(function(){\n"
    "var c=document.querySelectorAll('svg rect.client').length;\n"
    "var w=document.querySelectorAll('svg rect.span').length;\n"
    "var d=document.getElementById('drawn');\n"
    "d.setAttribute('data-client-bars',c);\n"
    "d.setAttribute('data-worker-spans',w);\n"
    "d.textContent='drawn: '+c+' client bars, '+w+' worker spans';\n"
    "var tip=document.getElementById('tip');\n"
    "document.addEventListener('mousemove',function(e){\n"
    " var t=e.target,k=t.getAttribute&&t.getAttribute('data-k');\n"
    " if(!k){tip.style.display='none';return;}\n"
    " var a=+t.getAttribute('data-t0'),b=+t.getAttribute('data-t1');\n"
    " tip.textContent=k+' on '+t.getAttribute('data-lane')+': '+a.toFixed(1)"
    "+' .. '+b.toFixed(1)+' ms ('+(b-a).toFixed(1)+' ms)';\n"
    " tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';\n"
    " tip.style.display='block';});\n"
    "})();\n";

bool write_html(FILE *out, const struct panel *ps, size_t n,
                const char *heading)
{
    uint64_t len = panels_length(ps, n);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>", out);
    html_text(out, heading);
    fprintf(out, "</title>\n<style>%s</style></head>\n<body>\n<h1>", page_style);
    html_text(out, heading);
    fputs("</h1>\n<p>Time runs left to right, the same scale in every panel "
          "(each from its own first event). Above: the client's requests, "
          "one row each (the tick is the first byte). Below: the server's "
          "workers, a band each; overlapping spans stack in rows.", out);
    for (int k = 0; k < SPAN_KINDS; k++)
        fprintf(out, "<span class=\"key\" style=\"background:%s\"></span>%s",
                colors[k], span_names[k]);
    fputs("</p>\n", out);
    for (size_t i = 0; i < n; i++)
        svg_panel(out, &ps[i], len);
    fprintf(out, "<p id=\"drawn\">drawn: (needs JavaScript)</p>\n"
                 "<div id=\"tip\"></div>\n<script>\n%s</script>\n"
                 "</body></html>\n", page_script);
    return !ferror(out);
}

/* ---- PNG through gnuplot ---- */

/* dir/<title>.gp and its data inline: boxes in the page's pixel layout
 * (x in ms, y in pixels downwards), lane labels as y tics. */
static bool gnuplot_script(FILE *gp, const char *png, const struct panel *p,
                           uint64_t len)
{
    int h = panel_height(p);
    fprintf(gp, "set terminal pngcairo size %d,%d font 'sans,9'\n"
                "set output '%s'\nset title '%s  (grey: client request, blue: "
                "request served, orange: bill wait, green: callback)'\n"
                "set xrange [0:%.3f]\nset yrange [%d:%d]\n"
                "set xlabel 'ms'\nunset key\nset grid xtics\n"
                "set ytics scale 0 (\"client\" %d", GUTTER + PLOT + 120,
            h * 2 + 120, png, p->title, (double)len / 1000.0, h, AXIS - 4,
            client_y(0) + 3);
    for (size_t l = 0; l < p->nlanes; l++)
        fprintf(gp, ", \"%s\" %d", p->lanes[l].label, lane_y(p, l) + 4);
    fputs(")\n$spans << EOD\n", gp);
    for (size_t i = 0; i < p->nspans; i++) {
        const struct span *s = &p->spans[i];
        double a = s->t0 / 1000.0, b = s->t1 / 1000.0;
        int hh = s->kind == SPAN_CLIENT ? CLIENT_H : ROW_H;
        fprintf(gp, "%.3f %.1f %.3f %.1f 0x%s\n", (a + b) / 2,
                span_y(p, s) + hh / 2.0, (b - a) / 2, hh / 2.0,
                colors[s->kind] + 1);
    }
    fputs("EOD\nplot $spans using 1:2:3:4:5 with boxxyerror "
          "fs solid 1.0 noborder lc rgb variable\n", gp);
    return !ferror(gp);
}

/* Runs gnuplot on script. 0 done, 1 no gnuplot here, -1 it failed. */
static int run_gnuplot(const char *script)
{
    char *argv[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (err == ENOENT)
        return 1;
    if (err) {
        fprintf(stderr, "trace: starting gnuplot: %s\n", strerror(err));
        return -1;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    /* posix_spawnp may report a missing program only as exit 127. */
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int write_pngs(const char *dir, const struct panel *ps, size_t n)
{
    uint64_t len = panels_length(ps, n);
    for (size_t i = 0; i < n; i++) {
        char script[4096], png[4096];
        snprintf(script, sizeof script, "%s/%s.gp", dir, ps[i].title);
        snprintf(png, sizeof png, "%s/%s.png", dir, ps[i].title);
        FILE *gp = fopen(script, "w");
        if (!gp) {
            fprintf(stderr, "trace: %s: %s\n", script, strerror(errno));
            return -1;
        }
        bool ok = gnuplot_script(gp, png, &ps[i], len);
        if (fclose(gp) != 0 || !ok)
            return -1;
        int rc = run_gnuplot(script);
        if (rc == 1) {
            fprintf(stderr, "trace: gnuplot is not installed: no PNGs "
                            "(apt-get install gnuplot-nox)\n");
            return 1;
        }
        if (rc < 0) {
            fprintf(stderr, "trace: gnuplot failed on %s\n", script);
            return -1;
        }
        unlink(script);
    }
    return 0;
}
