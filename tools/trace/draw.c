/* draw: the pictures of tools/trace (tracetool.h): a self-contained HTML
 * page of inline SVG, and PNGs through gnuplot. Both use one layout, top
 * to bottom: the client's requests, a row per client connection; the
 * server's lanes, a band per worker (its states on the first row, its
 * work below); the counters, a track each. Arrows join the rows.
 *
 * Bars a student can see: every bar is at least MIN_PX wide, and bars of
 * one kind on one row that touch (less than a pixel apart) are drawn as
 * one, its opacity the share of the time they really cover: a
 * 10,000-request trace stays a few thousand shapes, which a browser opens
 * at once, and a dense stretch still looks as busy as it was. */
#include "tracetool.h"

#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { GUTTER = 170, PLOT = 1000, PAD = 20, AXIS = 26, CLIENT_PITCH = 8,
       CLIENT_H = 6, ROW_PITCH = 13, ROW_H = 10, LANE_GAP = 4,
       SECTION_GAP = 14, COUNTER_H = 30, COUNTER_GAP = 6, MAX_FLOWS = 2500 };
#define MIN_PX 3.0
#define NARROW_PX 12.0 /* bars only this wide are drawn as one when they */
#define TOUCH_PX 4.0   /* are at most this far apart */

static const char *const colors[SPAN_KINDS] = {
    [SPAN_CLIENT] = "#8a8f98", [SPAN_REQUEST] = "#4c78a8",
    [SPAN_BILL] = "#f58518", [SPAN_CALLBACK] = "#54a24b",
    [SPAN_RUNNING] = "#b2182b", [SPAN_PARKED] = "#c5b0d5",
    [SPAN_READY] = "#ffd92f", [SPAN_BLOCKED] = "#9ecae1"};

static const char *const meanings[SPAN_KINDS] = {
    [SPAN_CLIENT] = "a client's request, sent .. answered (tick: first "
                    "byte); a row per client connection",
    [SPAN_REQUEST] = "the server serves a request: parsed .. answered",
    [SPAN_BILL] = "a bill waits for the simulated external call",
    [SPAN_CALLBACK] = "the callback PUT to the main service",
    [SPAN_RUNNING] = "on the CPU: a coroutine between two switches, or a "
                     "loop callback",
    [SPAN_PARKED] = "a coroutine parked (its label says why), or a "
                    "connection of 05 waiting for its next callback",
    [SPAN_READY] = "woken, in the ready queue, waiting for the CPU",
    [SPAN_BLOCKED] = "the loop asleep in select/epoll_wait; the gaps are "
                     "its turns' work"};

static const char *const counter_colors[] = {"#6a3d9a", "#e7298a", "#1b9e77",
                                             "#666666"};
#define FLOW_COLOR "#333333"

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

static int counter_y(const struct panel *p, size_t c)
{
    return lane_y(p, p->nlanes) + SECTION_GAP / 2 +
           (int)c * (COUNTER_H + COUNTER_GAP);
}

static int panel_height(const struct panel *p)
{
    return counter_y(p, p->ncounters) + 6;
}

static int span_y(const struct panel *p, const struct span *s)
{
    return s->kind == SPAN_CLIENT ? client_y(s->row)
                                  : lane_y(p, s->lane) + s->row * ROW_PITCH;
}

static int span_h(const struct span *s)
{
    return s->kind == SPAN_CLIENT ? CLIENT_H : ROW_H;
}

/* A time axis: px per us, the same for every panel or each its own. */
struct scale {
    double px_per_us;
    uint64_t len;     /* us drawn */
};

static double x_of(const struct scale *sc, uint64_t t)
{
    return GUTTER + (double)t * sc->px_per_us;
}

static int plot_width(const struct scale *sc)
{
    return (int)((double)sc->len * sc->px_per_us + 0.5);
}

/* A round step for about eight ticks over len us: 1, 2 or 5 times 10^k ms. */
static double tick_ms(uint64_t len)
{
    double want = (double)len / 1000.0 / 8.0, step = 0.001;
    while (step * 10 <= want)
        step *= 10;
    return want > step * 5 ? step * 5 : want > step * 2 ? step * 2 : step;
}

static const char *lane_name(const struct lane *l, char *buf, size_t len)
{
    if (l->kind == LANE_LOOP)
        snprintf(buf, len, "loop (%s)", l->label);
    else
        snprintf(buf, len, "%s", l->label);
    return buf;
}

/* ---- bars that touch drawn as one ---- */

struct bar {
    const struct span *s; /* the first; the group's kind, lane and row */
    bool narrow;          /* every span in it is under NARROW_PX wide */
    uint64_t t0, t1;      /* the group's extent */
    uint64_t covered;     /* us its spans cover (overlaps counted twice) */
    size_t n;
};

static int bar_order(const void *a, const void *b)
{
    const struct span *x = *(const struct span *const *)a,
                      *y = *(const struct span *const *)b;
    long kx = x->kind == SPAN_CLIENT ? -1 : (long)x->lane,
         ky = y->kind == SPAN_CLIENT ? -1 : (long)y->lane;
    if (kx != ky)
        return kx < ky ? -1 : 1;
    if (x->row != y->row)
        return x->row < y->row ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

/* The panel's bars at this scale; *n of them. NULL: no memory. */
static struct bar *bars_of(const struct panel *p, const struct scale *sc,
                           size_t *n)
{
    const struct span **order = malloc((p->nspans + 1) * sizeof *order);
    struct bar *bars = malloc((p->nspans + 1) * sizeof *bars);
    *n = 0;
    if (!order || !bars) {
        free(order);
        free(bars);
        return NULL;
    }
    for (size_t i = 0; i < p->nspans; i++)
        order[i] = &p->spans[i];
    qsort(order, p->nspans, sizeof *order, bar_order);
    double us_per_px = 1.0 / sc->px_per_us;
    uint64_t touch = (uint64_t)(us_per_px * TOUCH_PX);
    for (size_t i = 0; i < p->nspans; i++) {
        const struct span *s = order[i];
        struct bar *last = *n ? &bars[*n - 1] : NULL;
        bool narrow = (double)(s->t1 - s->t0) < us_per_px * NARROW_PX;
        if (last && narrow && last->narrow && last->s->kind == s->kind &&
            last->s->row == s->row &&
            (s->kind == SPAN_CLIENT || s->lane == last->s->lane) &&
            !s->open && !last->s->open && s->t0 <= last->t1 + touch) {
            last->t1 = s->t1 > last->t1 ? s->t1 : last->t1;
            last->covered += s->t1 - s->t0;
            last->n++;
            continue;
        }
        bars[(*n)++] = (struct bar){.s = s, .narrow = narrow, .t0 = s->t0,
                                    .t1 = s->t1, .covered = s->t1 - s->t0,
                                    .n = 1};
    }
    free(order);
    return bars;
}

/* A bar's drawn width: at least MIN_PX, and a wide one a pixel short, so
 * that two bars end to end (a request's bills) stay two. */
static double bar_width(double w)
{
    return w < MIN_PX ? MIN_PX : w > 2 * MIN_PX + 1 ? w - 1 : w;
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

static void svg_axis(FILE *out, const struct panel *p, const struct scale *sc)
{
    double step = tick_ms(sc->len);
    int h = panel_height(p);
    for (double ms = 0; ms * 1000.0 <= (double)sc->len + 0.5; ms += step) {
        double x = x_of(sc, (uint64_t)(ms * 1000.0));
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"16\" x2=\"%.1f\" "
                     "y2=\"%d\"/><text class=\"tick\" x=\"%.1f\" y=\"12\">"
                     "%g ms</text>\n", x, x, h, x, ms);
    }
    if (p->client_rows)
        fprintf(out, "<text class=\"label\" x=\"4\" y=\"%d\">client requests"
                     "</text>\n", client_y(0) + 6);
}

static void svg_lanes(FILE *out, const struct panel *p, const struct scale *sc)
{
    for (size_t l = 0; l < p->nlanes; l++) {
        const struct lane *ln = &p->lanes[l];
        int y = lane_y(p, l), h = ln->rows * ROW_PITCH;
        char name[96];
        fprintf(out, "<rect class=\"band %s\" x=\"0\" y=\"%d\" width=\"%d\" "
                     "height=\"%d\"/><text class=\"label\" x=\"4\" y=\"%d\">",
                ln->kind == LANE_COROUTINE ? "lane-co"
                : ln->kind == LANE_LOOP    ? "lane-loop"
                : ln->kind == LANE_OWNER   ? "lane-owner"
                                           : "lane-worker",
                y - 1, GUTTER + plot_width(sc), h, y + 9);
        html_text(out, lane_name(ln, name, sizeof name));
        fputs("</text>\n", out);
    }
}

/* A bar. Its kind is its second class (the style gives its colour), its
 * lane is its group's (svg_bars), so that a big page stays small. */
static void svg_bar(FILE *out, const struct panel *p, const struct scale *sc,
                    const struct bar *b)
{
    const struct span *s = b->s;
    double x0 = x_of(sc, b->t0), x1 = x_of(sc, b->t1);
    double w = bar_width(x1 - x0);
    bool client = s->kind == SPAN_CLIENT;
    /* A merged stretch wider than a narrow bar is as opaque as it is
     * busy; a short one is drawn in full, or it would fade away. */
    double extent = (double)(b->t1 - b->t0), share = 1.0;
    if (b->n > 1 && w > NARROW_PX)
        share = (double)b->covered / extent;
    int y = span_y(p, s);
    fprintf(out, "<rect class=\"%s %s%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                 "height=\"%d\"",
            client ? "client" : s->state ? "state" : "span",
            span_names[s->kind], s->open ? " open" : "", x0, y, w, span_h(s));
    if (share < 1.0)
        fprintf(out, " fill-opacity=\"%.2f\"", share < 0.3 ? 0.3 : share);
    if (b->n > 1)
        fprintf(out, " data-n=\"%zu\"", b->n);
    fprintf(out, " data-t0=\"%.3f\" data-t1=\"%.3f\"", b->t0 / 1000.0,
            b->t1 / 1000.0);
    if (b->n == 1 && s->label[0]) {
        fputs(" data-label=\"", out);
        html_text(out, s->label);
        fputc('"', out);
    }
    fputs("/>\n", out);
    /* A parked bar says why, where there is room. */
    if (b->n == 1 && s->kind == SPAN_PARKED && s->label[0] &&
        w > 6.0 * (double)strlen(s->label) + 6) {
        fprintf(out, "<text class=\"in\" x=\"%.1f\" y=\"%d\">", x0 + 3,
                y + ROW_H - 2);
        html_text(out, s->label);
        fputs("</text>\n", out);
    }
    if (client && b->n == 1 && s->first > s->t0)
        fprintf(out, "<line class=\"fb\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                     "y2=\"%d\"/>\n", x_of(sc, s->first), y,
                x_of(sc, s->first), y + CLIENT_H);
}

/* The bars for which keep(kind) holds, a group per lane that names it
 * for the pointer's details. */
static void svg_bars(FILE *out, const struct panel *p, const struct scale *sc,
                     const struct bar *bars, size_t n,
                     bool (*keep)(enum span_kind))
{
    long group = -2;
    for (size_t i = 0; i < n; i++) {
        const struct span *s = bars[i].s;
        if (!keep(s->kind))
            continue;
        long lane = s->kind == SPAN_CLIENT ? -1 : (long)s->lane;
        if (lane != group) {
            char name[96];
            if (group != -2)
                fputs("</g>\n", out);
            fputs("<g data-lane=\"", out);
            html_text(out, lane < 0 ? "client"
                                    : lane_name(&p->lanes[lane], name,
                                                sizeof name));
            fputs("\">\n", out);
            group = lane;
        }
        svg_bar(out, p, sc, &bars[i]);
    }
    if (group != -2)
        fputs("</g>\n", out);
}

static bool is_state(enum span_kind k)
{
    return k == SPAN_PARKED || k == SPAN_READY || k == SPAN_BLOCKED;
}
static bool is_work(enum span_kind k) { return k <= SPAN_CALLBACK; }
static bool is_running(enum span_kind k) { return k == SPAN_RUNNING; }

/* Where an arrow leaves and lands: the middle of a span's row edge. */
static void flow_ends(const struct panel *p, const struct scale *sc,
                      const struct flow *f, double *x0, double *y0,
                      double *x1, double *y1)
{
    *x0 = x_of(sc, f->t0);
    *x1 = x_of(sc, f->t1);
    const struct span *to = &p->spans[f->to_span];
    double top = span_y(p, to);
    if (f->from_span != SIZE_MAX) {
        const struct span *from = &p->spans[f->from_span];
        *y0 = span_y(p, from) + span_h(from);
    } else {
        *y0 = lane_y(p, f->from_lane) + ROW_H / 2.0;
    }
    *y1 = *y0 < top ? top : top + span_h(to);
}

static void svg_flows(FILE *out, const struct panel *p, const struct scale *sc)
{
    if (p->nflows > MAX_FLOWS) {
        fprintf(out, "<text class=\"label\" x=\"%d\" y=\"%d\">%zu arrows, "
                     "not drawn (more than %d): the JSON shows them in "
                     "Perfetto</text>\n", GUTTER, panel_height(p) - 2,
                p->nflows, MAX_FLOWS);
        return;
    }
    for (size_t i = 0; i < p->nflows; i++) {
        double x0, y0, x1, y1;
        flow_ends(p, sc, &p->flows[i], &x0, &y0, &x1, &y1);
        fprintf(out, "<path class=\"flow %s\" d=\"M%.1f %.1f L%.1f %.1f\" "
                     "marker-end=\"url(#arrowhead)\"/>\n",
                p->flows[i].what, x0, y0, x1, y1);
    }
}

static void svg_counters(FILE *out, const struct panel *p,
                         const struct scale *sc)
{
    for (size_t c = 0; c < p->ncounters; c++) {
        const struct counter *ct = &p->counters[c];
        int top = counter_y(p, c), bottom = top + COUNTER_H;
        double k = ct->max > 0 ? (double)(COUNTER_H - 4) / (double)ct->max
                               : 0;
        fprintf(out, "<rect class=\"band\" x=\"0\" y=\"%d\" width=\"%d\" "
                     "height=\"%d\"/><text class=\"label\" x=\"4\" y=\"%d\">"
                     "%s (up to %ld)</text>\n<path class=\"counter %s\" "
                     "stroke=\"%s\" fill=\"%s\" d=\"M%d %d",
                top, GUTTER + plot_width(sc), COUNTER_H, top + 12, ct->name,
                ct->max, ct->name, counter_colors[c], counter_colors[c],
                GUTTER, bottom);
        for (size_t i = 0; i < ct->npoints; i++)
            fprintf(out, " H%.1f V%.1f", x_of(sc, ct->points[i].t),
                    bottom - k * (double)ct->points[i].value);
        fprintf(out, " H%.1f V%d Z\"/>\n", x_of(sc, sc->len), bottom);
    }
}

static void svg_panel(FILE *out, const struct panel *p, const struct scale *sc,
                      const char *variant)
{
    size_t nbars;
    struct bar *bars = bars_of(p, sc, &nbars);
    fprintf(out, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"%d\" height=\"%d\">\n", variant,
            GUTTER + plot_width(sc) + PAD, panel_height(p));
    svg_lanes(out, p, sc);
    svg_axis(out, p, sc);
    /* States first, then work, then the runs on top, so a short run
     * stays visible. */
    if (bars) {
        svg_bars(out, p, sc, bars, nbars, is_state);
        svg_bars(out, p, sc, bars, nbars, is_work);
        svg_bars(out, p, sc, bars, nbars, is_running);
    }
    for (size_t i = 0; i < p->nmarks; i++) {
        double x = x_of(sc, p->marks[i].t);
        int y = lane_y(p, p->marks[i].lane);
        fprintf(out, "<path class=\"mark\" d=\"M%.1f %d l-3 -4 h6 z\"/>\n", x,
                y);
    }
    svg_counters(out, p, sc);
    svg_flows(out, p, sc);
    fputs("</svg>\n", out);
    free(bars);
}

static void html_panel(FILE *out, const struct panel *p, uint64_t len_all,
                       bool two_scales)
{
    fprintf(out, "<section class=\"panel\" data-stage=\"%s\" "
                 "data-client-bars=\"%zu\" data-worker-spans=\"%zu\" "
                 "data-flows=\"%zu\" data-counters=\"%zu\">\n"
                 "<h2>%s <small>(%.1f ms from its first piece of work to "
                 "its last)</small></h2>\n", p->title, panel_count(p, true),
            panel_count(p, false), p->nflows, p->ncounters, p->title,
            p->length / 1000.0);
    uint64_t len = p->length ? p->length : 1;
    struct scale own = {(double)PLOT / (double)len, len};
    struct scale same = {(double)PLOT / (double)len_all, len};
    if (two_scales) {
        svg_panel(out, p, &same, "v-same");
        svg_panel(out, p, &own, "v-fit");
    } else {
        svg_panel(out, p, &own, "v-same v-fit");
    }
    fputs("</section>\n", out);
}

static const char page_style[] =
    "body{font:13px sans-serif;margin:16px;color:#222;background:#fff}"
    "h2{font-size:14px;margin:14px 0 2px}h2 small{font-weight:normal;"
    "color:#666}svg{display:block}body.fit svg.v-same:not(.v-fit),"
    "body:not(.fit) svg.v-fit:not(.v-same){display:none}"
    ".grid{stroke:#e3e3e3}.tick{font-size:10px;fill:#666}"
    ".label{font-size:10px;fill:#333}.band{fill:#f4f5f7}"
    ".in{font-size:9px;fill:#3f2a56;pointer-events:none}"
    ".open{stroke:#000;stroke-dasharray:2 2;stroke-width:0.6}"
    ".fb{stroke:#222;stroke-width:2}.mark{fill:#222}"
    ".flow{stroke:" FLOW_COLOR ";stroke-width:1.2;fill:none;"
    "shape-rendering:crispEdges}"
    ".counter{stroke-width:1.2;fill-opacity:0.25;shape-rendering:crispEdges}"
    "#tip{position:fixed;display:none;background:#ffd;border:1px solid #999;"
    "padding:2px 6px;pointer-events:none}"
    ".legend{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;"
    "margin:8px 0;max-width:1100px}"
    ".key{display:inline-block;width:10px;height:8px;margin-right:4px}"
    ".keyarrow{display:inline-block;width:18px;border-top:2px solid "
    FLOW_COLOR ";vertical-align:middle}";

/* Counts what the browser drew into #drawn (the browser test reads it,
 * with the time the page took to be parsed and laid out), switches the
 * scale, and shows a bar's details under the pointer. */
static const char page_script[] =
    "(function(){\n"
    "var kinds={'client-bars':'rect.client','worker-spans':"
    "'rect.span.request,rect.span.bill,rect.span.callback',"
    "'running':'rect.running','parked':'rect.parked','ready':'rect.ready',"
    "'blocked':'rect.blocked','flows':'path.flow','counters':'path.counter',"
    "'co-lanes':'rect.lane-co','loop-lanes':'rect.lane-loop'};\n"
    "function count(root,sel){var n=0;root.querySelectorAll(sel)"
    ".forEach(function(e){n+=+(e.getAttribute('data-n')||1);});return n;}\n"
    "var total={};\n"
    "document.querySelectorAll('section.panel').forEach(function(s){\n"
    " var svg=s.querySelector('svg.v-same');\n"
    " for(var k in kinds){var v=count(svg,kinds[k]);"
    "s.setAttribute('data-drawn-'+k,v);total[k]=(total[k]||0)+v;}});\n"
    "var d=document.getElementById('drawn'),text=[];\n"
    "for(var k in kinds){d.setAttribute('data-'+k,total[k]||0);"
    "text.push((total[k]||0)+' '+k);}\n"
    "document.body.getBoundingClientRect();\n"
    "var ms=Math.round(performance.now());\n"
    "d.setAttribute('data-ms',ms);\n"
    "d.textContent='drawn: '+text.join(', ')+'; parsed and laid out in '+ms"
    "+' ms';\n"
    "var sc=document.getElementById('scale');\n"
    "if(sc)sc.addEventListener('change',function(e){"
    "document.body.classList.toggle('fit',e.target.value==='fit');});\n"
    "var tip=document.getElementById('tip');\n"
    "document.addEventListener('mousemove',function(e){\n"
    " var t=e.target,k=t.getAttribute&&t.getAttribute('data-t0')!==null"
    "&&t.classList[1];\n"
    " if(!k){tip.style.display='none';return;}\n"
    " var a=+t.getAttribute('data-t0'),b=+t.getAttribute('data-t1'),"
    "n=+t.getAttribute('data-n'),l=t.getAttribute('data-label');\n"
    " tip.textContent=(n>1?n+' x ':'')+k+(l?' ('+l+')':'')+' on '+"
    "t.parentNode.getAttribute('data-lane')+': '+a.toFixed(3)+' .. '+"
    "b.toFixed(3)+"
    "' ms ('+(b-a).toFixed(3)+' ms)';\n"
    " tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';\n"
    " tip.style.display='block';});\n"
    "})();\n";

static void html_legend(FILE *out)
{
    fputs("<div class=\"legend\">\n", out);
    for (int k = 0; k < SPAN_KINDS; k++)
        fprintf(out, "<span><span class=\"key\" style=\"background:%s\">"
                     "</span>%s</span><span>%s</span>\n",
                colors[k], span_names[k], meanings[k]);
    fprintf(out, "<span><span class=\"keyarrow\"></span> arrow</span><span>"
                 "a client's request to the server request that answered it; "
                 "a wake-up (a timer's or an fd's callback, or another "
                 "coroutine) to the run it caused; a spawn to the new "
                 "coroutine's first run</span>\n<span><span class=\"key\" "
                 "style=\"background:%s\"></span>counters</span><span>"
                 "under the lanes: open connections (conns), async jobs in "
                 "flight (jobs), the ready queue when the scheduler starts a "
                 "pass (ready)</span>\n</div>\n", counter_colors[0]);
}

bool write_html(FILE *out, const struct panel *ps, size_t n,
                const char *heading)
{
    uint64_t len = panels_length(ps, n);
    bool two = false;
    for (size_t i = 0; i < n; i++)
        two = two || ps[i].length != len;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>", out);
    html_text(out, heading);
    fprintf(out, "</title>\n<style>%s", page_style);
    for (int k = 0; k < SPAN_KINDS; k++)
        fprintf(out, "rect.%s{fill:%s}", span_names[k], colors[k]);
    fputs("</style></head>\n<body>\n<h1>", out);
    html_text(out, heading);
    fputs("</h1>\n<p>Time runs left to right. Each panel is one run, cut to "
          "its busy window (its first piece of work to its last). Above: the "
          "client's requests; below: the server's workers, a band each "
          "(states on its first row, work below, overlapping spans stacked); "
          "at the bottom: counters. Bars narrower than 3 px are drawn 3 px "
          "wide; bars of a kind that touch on a row are drawn as one, as "
          "opaque as they are busy. Hover for times.</p>\n", out);
    html_legend(out);
    if (two)
        fputs("<p><label>Scale: <select id=\"scale\"><option value=\"same\">"
              "one time axis for every panel</option><option value=\"fit\">"
              "each panel fills the width</option></select></label></p>\n",
              out);
    /* One arrowhead for every panel's arrows. */
    fputs("<svg width=\"0\" height=\"0\" style=\"position:absolute\"><defs>"
          "<marker id=\"arrowhead\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" "
          "markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">"
          "<path d=\"M0 0 L8 4 L0 8 z\" fill=\"" FLOW_COLOR "\"/></marker>"
          "</defs></svg>\n", out);
    for (size_t i = 0; i < n; i++)
        html_panel(out, &ps[i], len, two);
    fprintf(out, "<p id=\"drawn\">drawn: (needs JavaScript)</p>\n"
                 "<div id=\"tip\"></div>\n<script>\n%s</script>\n"
                 "</body></html>\n", page_script);
    return !ferror(out);
}

/* ---- PNG through gnuplot ---- */

/* gnuplot's colour of a "#rrggbb". */
static const char *gp_rgb(const char *hex) { return hex + 1; }

/* dir/<title>.gp: boxes in the page's pixel layout (x in ms, y in pixels
 * downwards), lane labels as y tics, arrows as vectors, counters as
 * steps. */
static bool gnuplot_script(FILE *gp, const char *png, const struct panel *p)
{
    int h = panel_height(p);
    uint64_t len = p->length ? p->length : 1;
    struct scale sc = {(double)PLOT / (double)len, len};
    double ms_per_px = (double)len / 1000.0 / PLOT;
    fprintf(gp, "set terminal pngcairo size %d,%d font 'sans,9' "
                "noenhanced\nset output '%s'\nset title '%s: %.0f ms, from "
                "its first piece of work to its last' font 'sans,11'\n"
                "set xrange [0:%.3f]\nset yrange [%d:%d]\n"
                "set lmargin at screen 0.16\nset rmargin at screen 0.98\n"
                "set bmargin 6\nset xlabel 'ms' offset 0,0.5\nunset key\n"
                "set grid xtics\nset ytics scale 0 font 'sans,8' (\"client\" "
                "%d", GUTTER + PLOT + 40, h + 200, png, p->title,
            len / 1000.0, len / 1000.0, h, AXIS - 4, client_y(0) + 3);
    for (size_t l = 0; l < p->nlanes; l++) {
        char name[96];
        fprintf(gp, ", \"%s\" %d", lane_name(&p->lanes[l], name, sizeof name),
                lane_y(p, l) + 5);
    }
    for (size_t c = 0; c < p->ncounters; c++)
        fprintf(gp, ", \"%s (up to %ld)\" %d", p->counters[c].name,
                p->counters[c].max, counter_y(p, c) + COUNTER_H / 2);
    fputs(")\n", gp);
    /* The legend: a key per kind under the plot, and the arrows. */
    for (int k = 0; k < SPAN_KINDS; k++)
        fprintf(gp, "set object %d rect from screen %.3f, screen 0.012 to "
                    "screen %.3f, screen 0.027 fc rgb '#%s' fs solid "
                    "noborder front\nset label %d at screen %.3f, screen "
                    "0.02 '%s' font 'sans,8'\n",
                100 + k, 0.01 + k * 0.09, 0.025 + k * 0.09,
                gp_rgb(colors[k]), 100 + k, 0.028 + k * 0.09,
                span_names[k]);
    fprintf(gp, "set arrow 99 from screen 0.74, screen 0.02 to screen 0.765, "
                "screen 0.02 lc rgb '" FLOW_COLOR "' head size screen "
                "0.006,25 filled\nset label 99 at screen 0.77, screen 0.02 "
                "'arrows: request, wake-up, spawn' font 'sans,8'\n");
    fputs("$bars << EOD\n", gp);
    size_t nbars;
    struct bar *bars = bars_of(p, &sc, &nbars);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; bars && i < nbars; i++) {
            const struct bar *b = &bars[i];
            if ((b->s->kind == SPAN_RUNNING) != (pass == 1))
                continue;
            double a = b->t0 / 1000.0;
            double z = a + bar_width((b->t1 - b->t0) / 1000.0 / ms_per_px) *
                               ms_per_px;
            int hh = span_h(b->s);
            fprintf(gp, "%.4f %.1f %.4f %.1f 0x%s\n", (a + z) / 2,
                    span_y(p, b->s) + hh / 2.0, (z - a) / 2, hh / 2.0,
                    gp_rgb(colors[b->s->kind]));
        }
    fputs("EOD\n$labels << EOD\n", gp);
    size_t nlabels = 0;
    for (size_t i = 0; bars && i < nbars; i++) {
        const struct bar *b = &bars[i];
        double w = (b->t1 - b->t0) / 1000.0 / ms_per_px;
        if (b->n == 1 && b->s->kind == SPAN_PARKED && b->s->label[0] &&
            w > 6.0 * (double)strlen(b->s->label) + 6 && ++nlabels)
            fprintf(gp, "%.4f %.1f \"%s\"\n", b->t0 / 1000.0 + 3 * ms_per_px,
                    span_y(p, b->s) + ROW_H / 2.0, b->s->label);
    }
    free(bars);
    fputs("EOD\n$flows << EOD\n", gp);
    for (size_t i = 0; p->nflows <= MAX_FLOWS && i < p->nflows; i++) {
        double x0, y0, x1, y1;
        flow_ends(p, &sc, &p->flows[i], &x0, &y0, &x1, &y1);
        x0 = (x0 - GUTTER) * ms_per_px;
        x1 = (x1 - GUTTER) * ms_per_px;
        fprintf(gp, "%.4f %.1f %.4f %.1f\n", x0, y0, x1 - x0, y1 - y0);
    }
    fputs("EOD\n$marks << EOD\n", gp);
    for (size_t i = 0; i < p->nmarks; i++)
        fprintf(gp, "%.4f %d\n", p->marks[i].t / 1000.0,
                lane_y(p, p->marks[i].lane) - 1);
    fputs("EOD\n", gp);
    for (size_t c = 0; c < p->ncounters; c++) {
        const struct counter *ct = &p->counters[c];
        int bottom = counter_y(p, c) + COUNTER_H;
        double k = ct->max > 0 ? (double)(COUNTER_H - 4) / (double)ct->max
                               : 0;
        fprintf(gp, "$counter%zu << EOD\n0 %d\n", c, bottom);
        for (size_t i = 0; i < ct->npoints; i++)
            fprintf(gp, "%.4f %.1f\n", ct->points[i].t / 1000.0,
                    bottom - k * (double)ct->points[i].value);
        fprintf(gp, "%.4f %.1f\nEOD\n", len / 1000.0,
                ct->npoints ? bottom - k * (double)ct->points[ct->npoints - 1]
                                                   .value
                            : (double)bottom);
    }
    fputs("plot $bars using 1:2:3:4:5 with boxxyerror fs solid 1.0 noborder "
          "lc rgb variable", gp);
    if (p->nflows > 0 && p->nflows <= MAX_FLOWS)
        fputs(", $flows using 1:2:3:4 with vectors head size screen "
              "0.005,25 filled lc rgb '" FLOW_COLOR "' lw 1", gp);
    if (p->nmarks > 0) /* accepts: a triangle on the acceptor's lane */
        fputs(", $marks using 1:2 with points pt 11 ps 0.8 lc rgb '#222222'",
              gp);
    if (nlabels > 0)
        fputs(", $labels using 1:2:3 with labels left font 'sans,7' tc rgb "
              "'#3f2a56'", gp);
    for (size_t c = 0; c < p->ncounters; c++)
        fprintf(gp, ", $counter%zu using 1:2 with steps lw 1.5 lc rgb '%s'",
                c, counter_colors[c]);
    fputc('\n', gp);
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
    for (size_t i = 0; i < n; i++) {
        char script[4096], png[4096];
        snprintf(script, sizeof script, "%s/%s.gp", dir, ps[i].title);
        snprintf(png, sizeof png, "%s/%s.png", dir, ps[i].title);
        FILE *gp = fopen(script, "w");
        if (!gp) {
            fprintf(stderr, "trace: %s: %s\n", script, strerror(errno));
            return -1;
        }
        bool ok = gnuplot_script(gp, png, &ps[i]);
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
