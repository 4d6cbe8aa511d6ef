/* model: see tracetool.h. Reads trace lines, sorts them by time, pairs
 * each begin with its end, turns the scheduler's events into states
 * (running, parked, ready, blocked), puts spans on lanes and rows, finds
 * the arrows, cuts the panel to its busy window, and writes the Chrome
 * JSON.
 *
 * The lookups that a 100,000-event trace makes per event (which lane,
 * which open span) go through one small hash table, so a panel is read
 * in time proportional to its events. */
#include "tracetool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const span_names[SPAN_KINDS] = {
    [SPAN_CLIENT] = "client", [SPAN_REQUEST] = "request",
    [SPAN_BILL] = "bill", [SPAN_CALLBACK] = "callback",
    [SPAN_RUNNING] = "running", [SPAN_PARKED] = "parked",
    [SPAN_READY] = "ready", [SPAN_BLOCKED] = "blocked"};

struct event {
    uint64_t t, id;
    long pid, tid, co;
    char name[16];
    char ph;
    size_t seq;       /* file order: breaks ties between equal times */
    char label[40];
};

/* Grows *arr (of size elem) to hold one more; NULL if out of memory. */
static void *grow(void *arr, size_t *cap, size_t len, size_t elem)
{
    if (len < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *n = realloc(arr, ncap * elem);
    if (n)
        *cap = ncap;
    return n;
}

#define PUSH(arr, len, cap) \
    ((arr) = grow((arr), &(cap), (len), sizeof *(arr)))

/* ---- a hash table: four numbers to an index ---- */

struct key { uint64_t a, b, c, d; };
struct slot { struct key k; size_t v; bool used; };
struct table { struct slot *slots; size_t cap, len; };

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdu;
}

static size_t table_pos(const struct table *t, struct key k)
{
    uint64_t h = mix(mix(mix(mix(0, k.a), k.b), k.c), k.d);
    size_t i = (size_t)h & (t->cap - 1);
    while (t->slots[i].used && memcmp(&t->slots[i].k, &k, sizeof k) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* The value under k, or SIZE_MAX. */
static size_t table_get(const struct table *t, struct key k)
{
    if (t->cap == 0)
        return SIZE_MAX;
    size_t i = table_pos(t, k);
    return t->slots[i].used ? t->slots[i].v : SIZE_MAX;
}

/* Sets k to v (SIZE_MAX: as good as removed). False: out of memory. */
static bool table_put(struct table *t, struct key k, size_t v)
{
    if (2 * (t->len + 1) > t->cap) {
        struct table n = {calloc(t->cap ? t->cap * 2 : 256, sizeof *n.slots),
                          t->cap ? t->cap * 2 : 256, 0};
        if (!n.slots)
            return false;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].used) {
                size_t j = table_pos(&n, t->slots[i].k);
                n.slots[j] = t->slots[i];
                n.len++;
            }
        free(t->slots);
        *t = n;
    }
    size_t i = table_pos(t, k);
    if (!t->slots[i].used)
        t->len++;
    t->slots[i] = (struct slot){.k = k, .v = v, .used = true};
    return true;
}

/* ---- reading a panel: the state while events are taken ---- */

/* What the reader remembers per lane while it goes (not drawn). */
struct lane_state {
    size_t state_span;  /* the open state span (coroutine), or SIZE_MAX */
    size_t run_span;    /* the loop callback running on this thread */
    bool pending;       /* a wake or spawn waits for this lane's next
                           run: the arrow it will get */
    uint64_t pend_t;
    size_t pend_span, pend_lane;
    char pend_what[16];
    uint64_t wait_from; /* owner lanes: when its last callback returned */
    bool closed;        /* owner lanes: its fd was accepted again, so the
                           owner's next callback starts a new lane */
};

struct reader {
    struct panel *p;
    struct event *ev;
    size_t nev;
    struct table lanes;      /* (kind, pid, tid, co/owner) -> lane */
    struct table fd_lanes;   /* (pid, fd) -> the owner lane named after it */
    struct table open;       /* (span kind, pid, id, 0) -> newest open span */
    size_t *prev_open;       /* per span: the one it hid in `open` */
    size_t prev_cap;
    struct lane_state *ls;   /* per lane */
    size_t ls_cap;
};

static int cmp_event(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int kind_of(const char *name)
{
    for (int k = 0; k < SPAN_KINDS; k++)
        if (strcmp(name, span_names[k]) == 0)
            return k;
    return -1;
}

/* The lane of a worker, created on its first event. SIZE_MAX: no memory. */
static size_t lane_of(struct reader *r, enum lane_kind kind, long pid,
                      long tid, long co, uint64_t owner)
{
    struct panel *p = r->p;
    /* Loop and worker lanes are one thread's: the same key. */
    struct key k = {kind == LANE_OWNER ? 2 : kind == LANE_COROUTINE,
                    (uint64_t)pid, (uint64_t)tid,
                    kind == LANE_OWNER ? owner : (uint64_t)co};
    size_t l = table_get(&r->lanes, k);
    if (l != SIZE_MAX && !r->ls[l].closed)
        return l;
    if (!PUSH(p->lanes, p->nlanes, p->lanes_cap) ||
        !PUSH(r->ls, p->nlanes, r->ls_cap) ||
        !table_put(&r->lanes, k, p->nlanes))
        return SIZE_MAX;
    struct lane *ln = &p->lanes[p->nlanes];
    *ln = (struct lane){.kind = kind, .pid = pid, .tid = tid, .co = co,
                        .owner = owner, .rows = 1};
    if (kind == LANE_COROUTINE)
        snprintf(ln->label, sizeof ln->label, "co %ld", co);
    else if (kind == LANE_OWNER) /* named after its first callback */
        ln->label[0] = '\0';
    else if (tid != pid)
        snprintf(ln->label, sizeof ln->label, "thread %ld", tid);
    else
        snprintf(ln->label, sizeof ln->label, "process %ld", pid);
    r->ls[p->nlanes] = (struct lane_state){.state_span = SIZE_MAX,
                                           .run_span = SIZE_MAX,
                                           .pend_span = SIZE_MAX};
    return p->nlanes++;
}

/* The thread's own lane (loop or worker). */
static size_t thread_lane(struct reader *r, const struct event *e)
{
    return lane_of(r, LANE_WORKER, e->pid, e->tid, -1, 0);
}

/* A new span, open, on lane; its index, or SIZE_MAX (no memory). */
static size_t span_open(struct reader *r, enum span_kind kind,
                        const struct event *e, size_t lane, bool state)
{
    struct panel *p = r->p;
    if (!PUSH(p->spans, p->nspans, p->spans_cap) ||
        !PUSH(r->prev_open, p->nspans, r->prev_cap))
        return SIZE_MAX;
    struct span *s = &p->spans[p->nspans];
    *s = (struct span){.kind = kind, .pid = e->pid, .id = e->id, .t0 = e->t,
                       .open = true, .state = state, .lane = lane,
                       .port = -1};
    r->prev_open[p->nspans] = SIZE_MAX;
    return p->nspans++;
}

/* Remembers an open span to be closed by its E (same kind, pid, id). */
static bool span_expect_end(struct reader *r, size_t i)
{
    const struct span *s = &r->p->spans[i];
    struct key k = {s->kind, (uint64_t)s->pid, s->id, 0};
    r->prev_open[i] = table_get(&r->open, k);
    return table_put(&r->open, k, i);
}

/* The newest open span an end closes, taken off the table; or SIZE_MAX. */
static size_t span_take_open(struct reader *r, int kind, long pid,
                             uint64_t id)
{
    struct key k = {(uint64_t)kind, (uint64_t)pid, id, 0};
    size_t i = table_get(&r->open, k);
    if (i != SIZE_MAX && !table_put(&r->open, k, r->prev_open[i]))
        return SIZE_MAX;
    return i;
}

static void span_close(struct panel *p, size_t i, uint64_t t)
{
    if (i == SIZE_MAX)
        return;
    p->spans[i].t1 = t;
    p->spans[i].open = false;
}

static long label_port(const char *label)
{
    long port;
    return sscanf(label, "port %ld", &port) == 1 ? port : -1;
}

static bool add_flow(struct panel *p, const char *what, size_t from_span,
                     size_t from_lane, size_t to_span, uint64_t t0,
                     uint64_t t1)
{
    if (!PUSH(p->flows, p->nflows, p->flows_cap))
        return false;
    struct flow *f = &p->flows[p->nflows++];
    *f = (struct flow){.t0 = t0, .t1 = t1, .from_span = from_span,
                       .from_lane = from_lane, .to_span = to_span};
    snprintf(f->what, sizeof f->what, "%s", what);
    return true;
}

static struct counter *counter_of(struct panel *p, const char *name)
{
    for (size_t i = 0; i < p->ncounters; i++)
        if (strcmp(p->counters[i].name, name) == 0)
            return &p->counters[i];
    if (p->ncounters == PANEL_COUNTERS)
        return NULL;
    struct counter *c = &p->counters[p->ncounters++];
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

/* ---- the events, one kind at a time ---- */

/* request, bill, callback, client: work. In 05 a span begun inside a
 * callback belongs to that callback's owner (its connection). */
static bool take_work(struct reader *r, const struct event *e, int kind)
{
    struct panel *p = r->p;
    if (e->ph == 'E') {
        size_t i = span_take_open(r, kind, e->pid, e->id);
        if (i == SIZE_MAX)
            p->unmatched_ends++; /* a reject's answer, or begun untraced */
        span_close(p, i, e->t);
        return true;
    }
    size_t lane = 0;
    if (kind != SPAN_CLIENT) {
        size_t tl = thread_lane(r, e);
        if (tl == SIZE_MAX)
            return false;
        size_t run = r->ls[tl].run_span;
        if (e->co >= 0)
            lane = lane_of(r, LANE_COROUTINE, e->pid, e->tid, e->co, 0);
        else if (!p->coroutines && run != SIZE_MAX &&
                 p->lanes[p->spans[run].lane].kind == LANE_OWNER)
            lane = p->spans[run].lane;
        else
            lane = tl;
    }
    size_t i = lane == SIZE_MAX ? SIZE_MAX
                                : span_open(r, (enum span_kind)kind, e, lane,
                                            false);
    if (i == SIZE_MAX)
        return false;
    if (kind == SPAN_CLIENT || kind == SPAN_REQUEST)
        p->spans[i].port = label_port(e->label);
    return span_expect_end(r, i);
}

/* blocked: the loop thread's state row. */
static bool take_blocked(struct reader *r, const struct event *e)
{
    struct panel *p = r->p;
    if (e->ph == 'E') {
        span_close(p, span_take_open(r, SPAN_BLOCKED, e->pid, e->id), e->t);
        return true;
    }
    size_t l = thread_lane(r, e);
    if (l == SIZE_MAX)
        return false;
    p->lanes[l].kind = LANE_LOOP;
    size_t i = span_open(r, SPAN_BLOCKED, e, l, true);
    if (i == SIZE_MAX)
        return false;
    snprintf(p->spans[i].label, sizeof p->spans[i].label, "%s", e->label);
    return span_expect_end(r, i);
}

/* run: a loop callback. In 05 a callback with an owner (arg) runs on the
 * owner's lane, and the time between two of its runs is its wait. */
static bool take_run(struct reader *r, const struct event *e)
{
    struct panel *p = r->p;
    size_t tl = thread_lane(r, e);
    if (tl == SIZE_MAX)
        return false;
    if (e->ph == 'E') {
        size_t i = r->ls[tl].run_span;
        r->ls[tl].run_span = SIZE_MAX;
        span_close(p, i, e->t);
        if (i != SIZE_MAX && p->lanes[p->spans[i].lane].kind == LANE_OWNER)
            r->ls[p->spans[i].lane].wait_from = e->t;
        return true;
    }
    bool owned = !p->coroutines && e->id != 0;
    size_t l = owned ? lane_of(r, LANE_OWNER, e->pid, e->tid, -1, e->id) : tl;
    if (l == SIZE_MAX)
        return false;
    struct lane *ln = &p->lanes[l];
    int fd;
    if (owned && !ln->label[0]) {
        snprintf(ln->label, sizeof ln->label, "%s", e->label);
        if (sscanf(e->label, "%*s fd %d", &fd) == 1 &&
            !table_put(&r->fd_lanes, (struct key){(uint64_t)e->pid,
                                                  (uint64_t)fd, 0, 0}, l))
            return false;
    }
    if (owned && r->ls[l].wait_from) { /* the wait this run ends */
        size_t w = span_open(r, SPAN_PARKED, e, l, true);
        if (w == SIZE_MAX)
            return false;
        p->spans[w].t0 = r->ls[l].wait_from;
        span_close(p, w, e->t);
        snprintf(p->spans[w].label, sizeof p->spans[w].label, "until %.33s",
                 e->label);
    }
    size_t i = span_open(r, SPAN_RUNNING, e, l, owned);
    if (i == SIZE_MAX)
        return false;
    snprintf(p->spans[i].label, sizeof p->spans[i].label, "%s", e->label);
    r->ls[tl].run_span = i;
    return true;
}

/* A wake or a spawn: the arrow starts at the callback running on the
 * waker's thread (the loop's), or at the waking coroutine's lane, and ends
 * at the target's next run. */
static void pend_flow(struct reader *r, const struct event *e, size_t target,
                      const char *what)
{
    size_t from = e->co >= 0
                      ? lane_of(r, LANE_COROUTINE, e->pid, e->tid, e->co, 0)
                      : thread_lane(r, e);
    if (from == SIZE_MAX)
        return;
    struct lane_state *t = &r->ls[target];
    t->pending = true;
    t->pend_t = e->t;
    t->pend_span = e->co < 0 ? r->ls[from].run_span : SIZE_MAX;
    t->pend_lane = from;
    snprintf(t->pend_what, sizeof t->pend_what, "%s", what);
}

/* A coroutine's state row: the state span it is in ends at t, the next
 * (kind, label) begins. */
static bool co_state(struct reader *r, const struct event *e, size_t l,
                     int kind, const char *label)
{
    struct panel *p = r->p;
    span_close(p, r->ls[l].state_span, e->t);
    r->ls[l].state_span = SIZE_MAX;
    if (kind < 0)
        return true;
    size_t i = span_open(r, (enum span_kind)kind, e, l, true);
    if (i == SIZE_MAX)
        return false;
    snprintf(p->spans[i].label, sizeof p->spans[i].label, "%s", label);
    r->ls[l].state_span = i;
    return true;
}

/* co, wake, spawn: 06's coroutines (id is the coroutine). */
static bool take_co(struct reader *r, const struct event *e)
{
    size_t l = lane_of(r, LANE_COROUTINE, e->pid, e->tid, (long)e->id, 0);
    if (l == SIZE_MAX)
        return false;
    struct panel *p = r->p;
    struct lane_state *ls = &r->ls[l];
    if (strcmp(e->name, "spawn") == 0) {
        snprintf(p->lanes[l].label, sizeof p->lanes[l].label, "co %llu %.24s",
                 (unsigned long long)e->id, e->label);
        pend_flow(r, e, l, "spawn");
        return co_state(r, e, l, SPAN_READY, "spawned");
    }
    if (strcmp(e->name, "wake") == 0) {
        pend_flow(r, e, l, "wake");
        return co_state(r, e, l, SPAN_READY, "woken");
    }
    if (e->ph == 'E') { /* switched out: why says what it waits for */
        bool done = strcmp(e->label, "done") == 0;
        bool yield = strcmp(e->label, "yield") == 0;
        return co_state(r, e, l, done ? -1 : yield ? SPAN_READY : SPAN_PARKED,
                        e->label);
    }
    if (!co_state(r, e, l, SPAN_RUNNING, ""))
        return false;
    if (ls->pending) {
        ls->pending = false;
        return add_flow(p, ls->pend_what, ls->pend_span, ls->pend_lane,
                        ls->state_span, ls->pend_t, e->t);
    }
    return true;
}

static bool take_counter(struct reader *r, const struct event *e)
{
    struct counter *c = counter_of(r->p, e->name);
    if (!c)
        return true; /* a fifth counter: not drawn */
    if (!PUSH(c->points, c->npoints, c->cap))
        return false;
    c->points[c->npoints++] = (struct point){.t = e->t, .value = (long)e->id};
    return true;
}

static bool take_event(struct reader *r, const struct event *e)
{
    struct panel *p = r->p;
    int kind = kind_of(e->name);
    if (kind >= SPAN_CLIENT && kind <= SPAN_CALLBACK &&
        (e->ph == 'B' || e->ph == 'E'))
        return take_work(r, e, kind);
    if (strcmp(e->name, "blocked") == 0)
        return take_blocked(r, e);
    if (strcmp(e->name, "run") == 0)
        return take_run(r, e);
    if (strcmp(e->name, "co") == 0 || strcmp(e->name, "wake") == 0 ||
        strcmp(e->name, "spawn") == 0)
        return take_co(r, e);
    if (e->ph == 'C')
        return take_counter(r, e);
    if (e->ph == 'I' && strcmp(e->name, "accept") == 0) {
        /* A new connection on this fd: the owner lane of the old one, if
         * any, is over (its struct may be reused: a new lane). */
        size_t old = table_get(&r->fd_lanes,
                               (struct key){(uint64_t)e->pid, e->id, 0, 0});
        if (old != SIZE_MAX) {
            r->ls[old].closed = true;
            r->ls[old].wait_from = 0;
        }
        size_t lane = e->co >= 0 ? lane_of(r, LANE_COROUTINE, e->pid, e->tid,
                                           e->co, 0)
                                 : thread_lane(r, e);
        if (lane == SIZE_MAX || !PUSH(p->marks, p->nmarks, p->marks_cap))
            return false;
        p->marks[p->nmarks++] = (struct mark){.t = e->t, .lane = lane};
    } else if (e->ph == 'I' && strcmp(e->name, "first_byte") == 0) {
        struct key k = {SPAN_CLIENT, (uint64_t)e->pid, e->id, 0};
        size_t i = table_get(&r->open, k);
        if (i != SIZE_MAX)
            p->spans[i].first = e->t;
    }
    return true;
}

/* ---- after the last event ---- */

static bool is_work(const struct event *e)
{
    static const char *const names[] = {"client", "accept", "request",
                                        "bill", "callback", "first_byte"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(e->name, names[i]) == 0)
            return true;
    return false;
}

/* The busy window: from the first piece of work to the last, 2% more on
 * each side; everything when there is no work at all. */
static void busy_window(const struct event *ev, size_t n, uint64_t *from,
                        uint64_t *to)
{
    uint64_t a = UINT64_MAX, b = 0;
    for (size_t i = 0; i < n; i++)
        if (is_work(&ev[i])) {
            a = ev[i].t < a ? ev[i].t : a;
            b = ev[i].t > b ? ev[i].t : b;
        }
    if (a > b) {
        a = ev[0].t;
        b = ev[n - 1].t;
    }
    uint64_t margin = (b - a) / 50;
    *from = a > ev[0].t + margin ? a - margin : ev[0].t;
    *to = b + margin; /* room to see the last bar end */
}

static uint64_t clip(uint64_t t, uint64_t from, uint64_t to)
{
    return (t < from ? from : t > to ? to : t) - from;
}

/* Keeps what overlaps [from, to], in its times from `from` on; spans that
 * fall outside go, and so do arrows that pointed at them. */
static bool cut_to_window(struct panel *p, uint64_t from, uint64_t to)
{
    size_t *map = malloc((p->nspans ? p->nspans : 1) * sizeof *map), k = 0;
    if (!map)
        return false;
    for (size_t i = 0; i < p->nspans; i++) {
        struct span *s = &p->spans[i];
        if (s->open)
            s->t1 = to;
        map[i] = SIZE_MAX;
        if (s->t1 < from || s->t0 > to)
            continue;
        s->t0 = clip(s->t0, from, to);
        s->t1 = clip(s->t1, from, to);
        s->first = s->first ? clip(s->first, from, to) : 0;
        map[i] = k;
        p->spans[k++] = *s;
    }
    p->nspans = k;
    k = 0;
    for (size_t i = 0; i < p->nflows; i++) {
        struct flow f = p->flows[i];
        bool from_gone = f.from_span != SIZE_MAX &&
                         map[f.from_span] == SIZE_MAX;
        if (from_gone || map[f.to_span] == SIZE_MAX || f.t0 < from ||
            f.t1 > to)
            continue;
        f.from_span = f.from_span == SIZE_MAX ? SIZE_MAX : map[f.from_span];
        f.to_span = map[f.to_span];
        f.t0 -= from;
        f.t1 -= from;
        p->flows[k++] = f;
    }
    p->nflows = k;
    free(map);
    k = 0;
    for (size_t i = 0; i < p->nmarks; i++)
        if (p->marks[i].t >= from && p->marks[i].t <= to)
            p->marks[k++] = (struct mark){p->marks[i].t - from,
                                          p->marks[i].lane};
    p->nmarks = k;
    for (size_t c = 0; c < p->ncounters; c++) {
        struct counter *ct = &p->counters[c];
        size_t j = 0;
        for (size_t i = 0; i < ct->npoints; i++) {
            struct point pt = ct->points[i];
            if (pt.t > to)
                break;
            if (pt.t < from && i + 1 < ct->npoints &&
                ct->points[i + 1].t <= from)
                continue; /* an older value, replaced before the window */
            pt.t = clip(pt.t, from, to);
            ct->max = pt.value > ct->max ? pt.value : ct->max;
            ct->points[j++] = pt;
        }
        ct->npoints = j;
    }
    p->start = from;
    p->length = to - from;
    return true;
}

/* Client requests to the server requests that answered them: the same
 * port, the server's begin inside the client's span, in order. */
static int cmp_port(const void *a, const void *b, void *spans)
{
    const struct span *s = spans;
    const struct span *x = &s[*(const size_t *)a], *y = &s[*(const size_t *)b];
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

static bool client_flows(struct panel *p)
{
    size_t *c = malloc((p->nspans + 1) * sizeof *c), nc = 0;
    size_t *q = malloc((p->nspans + 1) * sizeof *q), nq = 0;
    bool ok = c && q;
    for (size_t i = 0; ok && i < p->nspans; i++) {
        if (p->spans[i].port < 0)
            continue;
        if (p->spans[i].kind == SPAN_CLIENT)
            c[nc++] = i;
        else if (p->spans[i].kind == SPAN_REQUEST)
            q[nq++] = i;
    }
    if (ok) {
        qsort_r(c, nc, sizeof *c, cmp_port, p->spans);
        qsort_r(q, nq, sizeof *q, cmp_port, p->spans);
    }
    for (size_t i = 0, j = 0; ok && i < nc; i++) {
        const struct span *cs = &p->spans[c[i]];
        while (j < nq && (p->spans[q[j]].port < cs->port ||
                          (p->spans[q[j]].port == cs->port &&
                           p->spans[q[j]].t0 < cs->t0)))
            j++;
        if (j < nq && p->spans[q[j]].port == cs->port &&
            p->spans[q[j]].t0 <= cs->t1) {
            ok = add_flow(p, "request", c[i], 0, q[j], p->spans[q[j]].t0,
                          p->spans[q[j]].t0);
            j++;
        }
    }
    free(c);
    free(q);
    return ok;
}

/* Loops first, then the rest as they appeared; a lane with nothing in
 * the window (no span, no accept) goes: a task that only ran at start-up. Spans, marks and
 * arrows follow their lanes. */
static bool order_lanes(struct panel *p)
{
    size_t *map = malloc((p->nlanes + 1) * sizeof *map), k = 0;
    bool *used = calloc(p->nlanes + 1, sizeof *used);
    struct lane *old = malloc((p->nlanes + 1) * sizeof *old);
    if (!map || !old || !used) {
        free(map);
        free(old);
        free(used);
        return false;
    }
    for (size_t i = 0; i < p->nspans; i++)
        if (p->spans[i].kind != SPAN_CLIENT)
            used[p->spans[i].lane] = true;
    for (size_t i = 0; i < p->nmarks; i++) /* an acceptor: accepts only */
        used[p->marks[i].lane] = true;
    memcpy(old, p->lanes, p->nlanes * sizeof *old);
    for (size_t l = 0; l < p->nlanes; l++)
        map[l] = SIZE_MAX;
    for (int pass = 0; pass < 2; pass++)
        for (size_t l = 0; l < p->nlanes; l++)
            if (used[l] && (old[l].kind == LANE_LOOP) == (pass == 0)) {
                map[l] = k;
                p->lanes[k++] = old[l];
            }
    p->nlanes = k;
    for (size_t i = 0; i < p->nspans; i++)
        if (p->spans[i].kind != SPAN_CLIENT)
            p->spans[i].lane = map[p->spans[i].lane];
    k = 0;
    for (size_t i = 0; i < p->nmarks; i++)
        if (map[p->marks[i].lane] != SIZE_MAX)
            p->marks[k++] = (struct mark){p->marks[i].t,
                                          map[p->marks[i].lane]};
    p->nmarks = k;
    k = 0;
    for (size_t i = 0; i < p->nflows; i++) {
        struct flow f = p->flows[i];
        if (f.from_span == SIZE_MAX && map[f.from_lane] == SIZE_MAX)
            continue;
        f.from_lane = f.from_span == SIZE_MAX ? map[f.from_lane] : 0;
        p->flows[k++] = f;
    }
    p->nflows = k;
    free(map);
    free(old);
    free(used);
    return true;
}

/* Rows. A lane with states keeps row 0 for them; its other spans take the
 * first row free at their start, so overlapping spans stack. Client bars
 * get a row per client connection (its port), and the rest the first row
 * free. Spans come in order of their start. */
static int first_free_row(uint64_t **ends, size_t *n, size_t *cap,
                          const struct span *s)
{
    size_t r = 0;
    while (r < *n && (*ends)[r] > s->t0)
        r++;
    if (r == *n) {
        if (!PUSH(*ends, *n, *cap))
            return -1;
        (*n)++;
    }
    (*ends)[r] = s->t1 > s->t0 ? s->t1 : s->t0 + 1;
    return (int)r;
}

static int cmp_start(const void *a, const void *b, void *spans)
{
    const struct span *s = spans;
    const struct span *x = &s[*(const size_t *)a], *y = &s[*(const size_t *)b];
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

static bool panel_pack(struct panel *p)
{
    for (size_t i = 0; i < p->nspans; i++)
        if (p->spans[i].state)
            p->lanes[p->spans[i].lane].has_state = true;
    struct { uint64_t *ends; size_t n, cap; } *rows =
        calloc(p->nlanes + 1, sizeof *rows), client = {0};
    size_t *by_start = malloc((p->nspans + 1) * sizeof *by_start);
    struct table ports = {0};
    bool ok = rows && by_start;
    for (size_t i = 0; ok && i < p->nspans; i++)
        by_start[i] = i;
    if (ok)
        qsort_r(by_start, p->nspans, sizeof *by_start, cmp_start, p->spans);
    int port_rows = 0;
    for (size_t i = 0; ok && i < p->nspans; i++) { /* a row per port */
        struct span *s = &p->spans[by_start[i]];
        if (s->kind != SPAN_CLIENT || s->port < 0)
            continue;
        struct key k = {(uint64_t)s->port, 0, 0, 0};
        size_t row = table_get(&ports, k);
        if (row == SIZE_MAX) {
            row = (size_t)port_rows++;
            ok = table_put(&ports, k, row);
        }
        s->row = (int)row;
    }
    for (size_t i = 0; ok && i < p->nspans; i++) {
        struct span *s = &p->spans[by_start[i]];
        if (s->kind == SPAN_CLIENT) {
            if (s->port < 0) {
                int r = first_free_row(&client.ends, &client.n, &client.cap,
                                       s);
                ok = r >= 0;
                s->row = port_rows + r;
            }
            continue;
        }
        if (s->state) {
            s->row = 0;
            continue;
        }
        int r = first_free_row(&rows[s->lane].ends, &rows[s->lane].n,
                               &rows[s->lane].cap, s);
        ok = r >= 0;
        s->row = r + p->lanes[s->lane].has_state;
    }
    for (size_t l = 0; ok && l < p->nlanes; l++) {
        int need = (int)rows[l].n + p->lanes[l].has_state;
        p->lanes[l].rows = need > 0 ? need : 1;
    }
    p->client_rows = port_rows + (int)client.n;
    for (size_t l = 0; rows && l < p->nlanes; l++)
        free(rows[l].ends);
    free(rows);
    free(client.ends);
    free(by_start);
    free(ports.slots);
    return ok;
}

/* A title lands in JSON, HTML and file names: keep only what needs no
 * escaping anywhere. */
static void clean_title(char *s)
{
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789.-", *s))
            *s = '_';
}

static bool parse_line(const char *line, struct event *e)
{
    unsigned long long t, id;
    int used = 0;
    if (sscanf(line, "%llu %ld %ld %ld %15s %c %llu%n", &t, &e->pid, &e->tid,
               &e->co, e->name, &e->ph, &id, &used) != 7)
        return false;
    e->t = t;
    e->id = id;
    const char *rest = line + used;
    rest += strspn(rest, " ");
    snprintf(e->label, sizeof e->label, "%.*s", (int)strcspn(rest, "\r\n"),
             rest);
    return true;
}

static bool is_coroutine_event(const struct event *e)
{
    return strcmp(e->name, "co") == 0 || strcmp(e->name, "spawn") == 0 ||
           strcmp(e->name, "wake") == 0;
}

static bool panel_build(struct reader *r)
{
    struct panel *p = r->p;
    qsort(r->ev, r->nev, sizeof *r->ev, cmp_event);
    for (size_t i = 0; i < r->nev && !p->coroutines; i++)
        p->coroutines = is_coroutine_event(&r->ev[i]);
    uint64_t from, to;
    busy_window(r->ev, r->nev, &from, &to);
    p->events = r->nev;
    bool ok = true;
    for (size_t i = 0; ok && i < r->nev; i++)
        ok = take_event(r, &r->ev[i]);
    return ok && client_flows(p) && cut_to_window(p, from, to) &&
           order_lanes(p) && panel_pack(p);
}

bool panel_read(struct panel *p, FILE *in, const char *title)
{
    memset(p, 0, sizeof *p);
    snprintf(p->title, sizeof p->title, "%s", title);
    clean_title(p->title);
    struct reader r = {.p = p};
    size_t cap = 0;
    char line[512];
    bool ok = true;
    while (ok && fgets(line, sizeof line, in)) {
        struct event e = {.seq = r.nev};
        if (!parse_line(line, &e))
            p->bad_lines++;
        else if (e.ph == 'M')
            continue; /* who traced: the file's name says it for the panel */
        else if (!PUSH(r.ev, r.nev, cap))
            ok = false;
        else
            r.ev[r.nev++] = e;
    }
    ok = ok && (r.nev == 0 || panel_build(&r));
    free(r.ev);
    free(r.lanes.slots);
    free(r.fd_lanes.slots);
    free(r.open.slots);
    free(r.prev_open);
    free(r.ls);
    if (!ok)
        errno = ENOMEM;
    else if (r.nev == 0)
        errno = ENODATA;
    return ok && r.nev > 0;
}

bool panel_load(struct panel *p, const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return false;
    /* The panel's title: the file's name without its directory and
     * ".trace" (bench/demo.sh names them 01-blocking.trace, ...). */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char title[sizeof p->title];
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ".trace") == 0)
        len -= 6;
    snprintf(title, sizeof title, "%.*s", (int)len, base);
    bool ok = panel_read(p, in, title);
    int err = errno;
    fclose(in);
    errno = err;
    return ok;
}

void panel_free(struct panel *p)
{
    free(p->spans);
    free(p->lanes);
    free(p->marks);
    free(p->flows);
    for (size_t i = 0; i < p->ncounters; i++)
        free(p->counters[i].points);
    memset(p, 0, sizeof *p);
}

size_t panel_count_kind(const struct panel *p, enum span_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nspans; i++)
        n += p->spans[i].kind == kind;
    return n;
}

size_t panel_count(const struct panel *p, bool client)
{
    if (client)
        return panel_count_kind(p, SPAN_CLIENT);
    return panel_count_kind(p, SPAN_REQUEST) + panel_count_kind(p, SPAN_BILL) +
           panel_count_kind(p, SPAN_CALLBACK);
}

uint64_t panels_length(const struct panel *ps, size_t n)
{
    uint64_t len = 1;
    for (size_t i = 0; i < n; i++)
        if (ps[i].length > len)
            len = ps[i].length;
    return len;
}

/* ---- Chrome trace event format ---- */

/* The JSON's thread id of a lane's row: clients first (1..), then the
 * lanes in order, a thousand rows apart. */
static long json_tid(const struct span *s)
{
    return s->kind == SPAN_CLIENT ? 1 + s->row
                                  : 1000000 + (long)s->lane * 1000 + s->row;
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", *s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

static void json_names(FILE *out, const struct panel *p, size_t k)
{
    for (int r = 0; r < p->client_rows; r++)
        fprintf(out, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":"
                     "%zu,\"tid\":%d,\"args\":{\"name\":\"client row %d\"}}",
                k + 1, 1 + r, 1 + r);
    for (size_t l = 0; l < p->nlanes; l++)
        for (int r = 0; r < p->lanes[l].rows; r++) {
            char name[80];
            snprintf(name, sizeof name, "%s%s%.0d", p->lanes[l].label,
                     r ? " #" : "", r);
            fprintf(out, ",\n{\"name\":\"thread_name\",\"ph\":\"M\","
                         "\"pid\":%zu,\"tid\":%ld,\"args\":{\"name\":",
                    k + 1, 1000000 + (long)l * 1000 + r);
            json_string(out, name);
            fputs("}}", out);
        }
}

static void json_flows(FILE *out, const struct panel *p, size_t k,
                       size_t *flow_id)
{
    for (size_t i = 0; i < p->nflows; i++) {
        const struct flow *f = &p->flows[i];
        long from = f->from_span != SIZE_MAX
                        ? json_tid(&p->spans[f->from_span])
                        : 1000000 + (long)f->from_lane * 1000;
        ++*flow_id;
        fprintf(out, ",\n{\"name\":\"%s\",\"cat\":\"flow\",\"ph\":\"s\","
                     "\"id\":%zu,\"ts\":%llu,\"pid\":%zu,\"tid\":%ld}"
                     ",\n{\"name\":\"%s\",\"cat\":\"flow\",\"ph\":\"f\","
                     "\"bp\":\"e\",\"id\":%zu,\"ts\":%llu,\"pid\":%zu,"
                     "\"tid\":%ld}",
                f->what, *flow_id, (unsigned long long)f->t0, k + 1, from,
                f->what, *flow_id, (unsigned long long)f->t1, k + 1,
                json_tid(&p->spans[f->to_span]));
    }
}

bool write_chrome_json(FILE *out, const struct panel *ps, size_t n)
{
    fprintf(out, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    const char *sep = "";
    size_t flow_id = 0;
    for (size_t k = 0; k < n; k++) {
        const struct panel *p = &ps[k];
        fprintf(out, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%zu,"
                     "\"args\":{\"name\":\"%s\"}}", sep, k + 1, p->title);
        sep = ",\n";
        json_names(out, p, k);
        for (size_t i = 0; i < p->nspans; i++) {
            const struct span *s = &p->spans[i];
            fprintf(out, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\","
                         "\"ts\":%llu,\"dur\":%llu,\"pid\":%zu,\"tid\":%ld,"
                         "\"args\":{\"id\":\"%llx\",\"open\":%s,\"label\":",
                    span_names[s->kind],
                    s->kind == SPAN_CLIENT ? "client" : "server",
                    (unsigned long long)s->t0,
                    (unsigned long long)(s->t1 - s->t0), k + 1, json_tid(s),
                    (unsigned long long)s->id, s->open ? "true" : "false");
            json_string(out, s->label);
            fputs("}}", out);
        }
        for (size_t i = 0; i < p->nmarks; i++)
            fprintf(out, ",\n{\"name\":\"accept\",\"ph\":\"i\",\"s\":\"t\","
                         "\"ts\":%llu,\"pid\":%zu,\"tid\":%ld}",
                    (unsigned long long)p->marks[i].t, k + 1,
                    1000000 + (long)p->marks[i].lane * 1000);
        json_flows(out, p, k, &flow_id);
        for (size_t c = 0; c < p->ncounters; c++)
            for (size_t i = 0; i < p->counters[c].npoints; i++)
                fprintf(out, ",\n{\"name\":\"%s\",\"ph\":\"C\",\"ts\":%llu,"
                             "\"pid\":%zu,\"args\":{\"%s\":%ld}}",
                        p->counters[c].name,
                        (unsigned long long)p->counters[c].points[i].t, k + 1,
                        p->counters[c].name, p->counters[c].points[i].value);
    }
    fprintf(out, "\n]}\n");
    return !ferror(out);
}
