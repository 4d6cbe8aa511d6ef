/* model: see tracetool.h. Reads trace lines, pairs each begin with
 * its end, puts spans on lanes and rows, and writes the Chrome JSON. */
#include "tracetool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const span_names[SPAN_KINDS] = {
    [SPAN_CLIENT] = "client", [SPAN_REQUEST] = "request",
    [SPAN_BILL] = "bill", [SPAN_CALLBACK] = "callback"};

struct event {
    uint64_t t, id;
    long pid, tid, co;
    char name[16];
    char ph;
    size_t seq;       /* file order: breaks ties between equal times */
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
static size_t lane_of(struct panel *p, long pid, long tid, long co)
{
    for (size_t i = 0; i < p->nlanes; i++)
        if (p->lanes[i].pid == pid && p->lanes[i].tid == tid &&
            p->lanes[i].co == co)
            return i;
    if (!PUSH(p->lanes, p->nlanes, p->lanes_cap))
        return SIZE_MAX;
    struct lane *l = &p->lanes[p->nlanes];
    *l = (struct lane){.pid = pid, .tid = tid, .co = co, .rows = 1};
    if (co >= 0)
        snprintf(l->label, sizeof l->label, "coroutine %ld", co);
    else if (tid != pid)
        snprintf(l->label, sizeof l->label, "thread %ld", tid);
    else
        snprintf(l->label, sizeof l->label, "process %ld", pid);
    return p->nlanes++;
}

/* The newest open span that an end closes: same process, kind and id. */
static struct span *open_span(struct panel *p, int kind, long pid,
                              uint64_t id, bool want_open)
{
    for (size_t i = p->nspans; i-- > 0;) {
        struct span *s = &p->spans[i];
        if ((int)s->kind == kind && s->pid == pid && s->id == id &&
            s->open == want_open)
            return s;
    }
    return NULL;
}

static bool take_event(struct panel *p, const struct event *e)
{
    uint64_t t = e->t - p->start;
    int kind = kind_of(e->name);
    if (e->ph == 'B' && kind >= 0) {
        size_t lane = kind == SPAN_CLIENT ? 0
                                          : lane_of(p, e->pid, e->tid, e->co);
        if (lane == SIZE_MAX || !PUSH(p->spans, p->nspans, p->spans_cap))
            return false;
        p->spans[p->nspans++] = (struct span){
            .kind = (enum span_kind)kind, .pid = e->pid, .id = e->id,
            .t0 = t, .open = true, .lane = lane};
    } else if (e->ph == 'E' && kind >= 0) {
        struct span *s = open_span(p, kind, e->pid, e->id, true);
        if (s) {
            s->t1 = t;
            s->open = false;
        } else {
            p->unmatched_ends++; /* a reject's answer, or begun untraced */
        }
    } else if (e->ph == 'I' && strcmp(e->name, "accept") == 0) {
        size_t lane = lane_of(p, e->pid, e->tid, e->co);
        if (lane == SIZE_MAX || !PUSH(p->marks, p->nmarks, p->marks_cap))
            return false;
        p->marks[p->nmarks++] = (struct mark){.t = t, .lane = lane};
    } else if (e->ph == 'I' && strcmp(e->name, "first_byte") == 0) {
        struct span *s = open_span(p, SPAN_CLIENT, e->pid, e->id, true);
        if (!s)
            s = open_span(p, SPAN_CLIENT, e->pid, e->id, false);
        if (s)
            s->first = t;
    }
    return true;
}

/* Rows: client bars one each, in order of start; a lane's spans take the
 * first row free at their start, so overlapping spans stack. */
static bool panel_pack(struct panel *p)
{
    uint64_t *ends = NULL;
    size_t nends = 0, cap = 0;
    for (size_t l = 0; l < p->nlanes; l++) {
        nends = 0;
        for (size_t i = 0; i < p->nspans; i++) {
            struct span *s = &p->spans[i];
            if (s->kind == SPAN_CLIENT || s->lane != l)
                continue;
            size_t r = 0;
            while (r < nends && ends[r] > s->t0)
                r++;
            if (r == nends) {
                if (!PUSH(ends, nends, cap))
                    return false;
                nends++;
            }
            ends[r] = s->t1 > s->t0 ? s->t1 : s->t0 + 1;
            s->row = (int)r;
        }
        p->lanes[l].rows = nends ? (int)nends : 1;
    }
    free(ends);
    for (size_t i = 0; i < p->nspans; i++)
        if (p->spans[i].kind == SPAN_CLIENT)
            p->spans[i].row = p->client_rows++;
    return true;
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

static bool parse_line(const char *line, struct event *e, char *label,
                       size_t label_len)
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
    snprintf(label, label_len, "%.*s", (int)strcspn(rest, "\r\n"), rest);
    return true;
}

bool panel_read(struct panel *p, FILE *in, const char *title)
{
    memset(p, 0, sizeof *p);
    snprintf(p->title, sizeof p->title, "%s", title);
    struct event *ev = NULL;
    size_t n = 0, cap = 0;
    char line[512], label[72];
    bool ok = true;
    while (ok && fgets(line, sizeof line, in)) {
        struct event e = {.seq = n};
        if (!parse_line(line, &e, label, sizeof label))
            p->bad_lines++;
        else if (e.ph == 'M')
            continue; /* who traced: the file's name says it for the panel */
        else if (!PUSH(ev, n, cap))
            ok = false;
        else
            ev[n++] = e;
    }
    clean_title(p->title);
    if (ok && n > 0) {
        qsort(ev, n, sizeof *ev, cmp_event);
        p->start = ev[0].t;
        p->length = ev[n - 1].t - ev[0].t;
        p->events = n;
        for (size_t i = 0; ok && i < n; i++)
            ok = take_event(p, &ev[i]);
        for (size_t i = 0; ok && i < p->nspans; i++)
            if (p->spans[i].open)
                p->spans[i].t1 = p->length;
        ok = ok && panel_pack(p);
    }
    free(ev);
    if (!ok)
        errno = ENOMEM;
    else if (n == 0)
        errno = ENODATA;
    return ok && n > 0;
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
    memset(p, 0, sizeof *p);
}

size_t panel_count(const struct panel *p, bool client)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nspans; i++)
        n += (p->spans[i].kind == SPAN_CLIENT) == client;
    return n;
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
 * lanes in order of appearance, a thousand rows apart. */
static long json_tid(const struct span *s)
{
    return s->kind == SPAN_CLIENT ? 1 + s->row
                                  : 1000000 + (long)s->lane * 1000 + s->row;
}

bool write_chrome_json(FILE *out, const struct panel *ps, size_t n)
{
    fprintf(out, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    const char *sep = "";
    for (size_t k = 0; k < n; k++) {
        const struct panel *p = &ps[k];
        fprintf(out, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%zu,"
                     "\"args\":{\"name\":\"%s\"}}", sep, k + 1, p->title);
        sep = ",\n";
        for (int r = 0; r < p->client_rows; r++)
            fprintf(out, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":"
                         "%zu,\"tid\":%d,\"args\":{\"name\":\"client "
                         "request %d\"}}", k + 1, 1 + r, 1 + r);
        for (size_t l = 0; l < p->nlanes; l++)
            for (int r = 0; r < p->lanes[l].rows; r++)
                fprintf(out, ",\n{\"name\":\"thread_name\",\"ph\":\"M\","
                             "\"pid\":%zu,\"tid\":%ld,\"args\":{\"name\":"
                             "\"%s%s%.0d\"}}", k + 1,
                        1000000 + (long)l * 1000 + r, p->lanes[l].label,
                        r ? " #" : "", r);
        for (size_t i = 0; i < p->nspans; i++) {
            const struct span *s = &p->spans[i];
            fprintf(out, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\","
                         "\"ts\":%llu,\"dur\":%llu,\"pid\":%zu,\"tid\":%ld,"
                         "\"args\":{\"id\":\"%llx\",\"open\":%s}}",
                    span_names[s->kind],
                    s->kind == SPAN_CLIENT ? "client" : "server",
                    (unsigned long long)s->t0,
                    (unsigned long long)(s->t1 - s->t0), k + 1, json_tid(s),
                    (unsigned long long)s->id, s->open ? "true" : "false");
        }
        for (size_t i = 0; i < p->nmarks; i++)
            fprintf(out, ",\n{\"name\":\"accept\",\"ph\":\"i\",\"s\":\"t\","
                         "\"ts\":%llu,\"pid\":%zu,\"tid\":%ld}",
                    (unsigned long long)p->marks[i].t, k + 1,
                    1000000 + (long)p->marks[i].lane * 1000);
    }
    fprintf(out, "\n]}\n");
    return !ferror(out);
}

