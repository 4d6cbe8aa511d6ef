/* soak_traffic: the connections of a soak, on one poll() loop.
 *
 * Every stage gets normal_conns keep-alive clients that loop over GET /, a
 * sync request of one bill and an async request of two bills (each async
 * with its own request_id, so its callback can be looked for), pausing
 * think_ms between requests; and one hostile slot (10% of the connections
 * with 9 normal ones) that plays the families of issue 12 in turn. Raw
 * sockets, not libcurl: hostile clients must send what no client library
 * would, and a normal request's latency is measured from its first byte
 * sent to its last byte read. */
#include "soak.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_CAP 65536
#define REQUEST_TIMEOUT_S 30.0   /* a normal request unanswered: failed */
#define HOSTILE_PAUSE_S 1.0      /* between two hostile connections */
#define TRICKLE_EVERY_S 1.5      /* issue 12's trickled head */
#define FLOOD_REQUESTS 40        /* pipelined async requests of 100 bills */
#define FLOOD_BILLS 100
#define LONG_POLLS 40            /* held on the main service at once */
#define LONG_POLL_WAIT_MS 15000
#define SLOW_READER_REQUESTS 1000

const char *const soak_family_names[NUM_FAMILIES] = {
    "trickled head", "stalled body", "async flood", "long-poll flood",
    "slow reader",
};

enum role { ROLE_NORMAL, ROLE_HOSTILE, ROLE_LONG_POLL };
enum kind { KIND_GET, KIND_SYNC, KIND_ASYNC };

struct conn {
    struct soak_stage *st;
    enum role role;
    int family;              /* hostile: what it plays */
    int port;
    int fd;                  /* -1: closed */
    bool connecting;
    char *out;               /* what is left to send: out[out_off..out_len) */
    size_t out_len, out_off;
    bool trickle;            /* one byte at a time, at next_at */
    char *in;
    size_t in_len;
    int *ids;                /* async ids of the requests awaiting answers, */
    int num_ids, answered;   /* in order; -1 for a request without one */
    enum kind kind;
    long counter;            /* a normal connection's requests so far */
    double started;          /* this request (normal), or this connection */
    double next_at;          /* the next step (0: none planned) */
    double end_at;           /* give up / stop holding */
};

static struct conn *conns;
static int num_conns;
static struct soak_traffic_cfg cfg;
static struct pollfd *pfds;
static int *pfd_conn;

/* ---- promises ---- */

int soak_stage_new_id(struct soak_stage *s)
{
    if ((size_t)s->next_id == s->cap_ids) {
        size_t cap = s->cap_ids ? s->cap_ids * 2 : 1024;
        unsigned char *p = realloc(s->promised, cap);
        unsigned char *q = p ? realloc(s->stored, cap) : NULL;
        if (!p || !q) {
            fprintf(stderr, "soak: out of memory\n");
            exit(3);
        }
        memset(p + s->cap_ids, 0, cap - s->cap_ids);
        memset(q + s->cap_ids, 0, cap - s->cap_ids);
        s->promised = p;
        s->stored = q;
        s->cap_ids = cap;
    }
    return s->next_id++;
}

static void record_latency(struct soak_stage *s, double ms)
{
    if (s->num_latency == s->cap_latency) {
        size_t cap = s->cap_latency ? s->cap_latency * 2 : 4096;
        double *p = realloc(s->latency_ms, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "soak: out of memory\n");
            exit(3);
        }
        s->latency_ms = p;
        s->cap_latency = cap;
    }
    s->latency_ms[s->num_latency++] = ms;
}

static void queue_out(struct conn *c, char *out, size_t len)
{
    free(c->out);
    c->out = out;
    c->out_len = len;
    c->out_off = 0;
}

static void expect_answers(struct conn *c, int n)
{
    free(c->ids);
    c->ids = malloc((size_t)n * sizeof *c->ids);
    if (!c->ids) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    for (int i = 0; i < n; i++)
        c->ids[i] = -1;
    c->num_ids = n;
    c->answered = 0;
}

/* Adds an async request with a fresh id as answer k; returns the text. */
static char *append_async(struct conn *c, char *buf, size_t *len, int k,
                          int bills)
{
    int n = soak_stage_new_id(c->st);
    char id[64];
    snprintf(id, sizeof id, "soak-%d-%d", c->st->index, n);
    c->ids[k] = n;
    char *body = soak_exchange_body(id, bills);
    buf = soak_append_post(buf, len, "/api/exchange_async", body);
    free(body);
    return buf;
}

/* ---- sockets ---- */

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->connecting = false;
    c->in_len = 0;
    c->trickle = false;
}

static bool conn_open(struct conn *c, int rcvbuf)
{
    c->fd = soak_connect(c->port, rcvbuf);
    /* EINPROGRESS: poll says when it is done (POLLOUT) or failed. */
    c->connecting = c->fd >= 0;
    return c->fd >= 0;
}

/* ---- answers ---- */

static void normal_answer(struct conn *c, int status, const char *resp,
                          size_t size)
{
    struct soak_stage *s = c->st;
    s->requests++;
    record_latency(s, (soak_now() - c->started) * 1000.0);
    if (status == 200)
        s->ok++;
    else if (status == 503)
        s->refused_503++;
    else {
        s->failed++;
        s->failed_by[FAIL_STATUS]++;
    }
    if (c->kind == KIND_ASYNC && c->ids[0] >= 0) {
        if (status == 200 && memmem(resp, size, "{\"status\":\"ok\"}", 15)) {
            s->promised[c->ids[0]] = 1;
            s->async_ok++;
        } else if (status == 503) {
            s->async_503++;
        }
    }
    c->answered++;
    c->next_at = soak_now() + cfg.think_ms / 1000.0;
}

static void hostile_answer(struct conn *c, int status, const char *resp,
                           size_t size)
{
    struct soak_stage *s = c->st;
    s->hostile_answers[c->family]++;
    int k = c->answered++;
    if (k < c->num_ids && c->ids[k] >= 0) {
        if (status == 200 && memmem(resp, size, "{\"status\":\"ok\"}", 15)) {
            s->promised[c->ids[k]] = 1;
            s->async_ok++;
        } else if (status == 503) {
            s->async_503++;
        }
    }
}

/* Reads what arrived; handles every whole response. False: closed. */
static bool conn_read(struct conn *c)
{
    bool open = true; /* an answer and the close often come together */
    while (open && c->in_len < IN_CAP) {
        ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            open = false;
        else
            c->in_len += (size_t)n;
    }
    size_t size;
    int status;
    bool closes;
    while (c->answered < c->num_ids &&
           soak_whole_response(c->in, c->in_len, &size, &status, &closes)) {
        if (c->role == ROLE_NORMAL)
            normal_answer(c, status, c->in, size);
        else
            hostile_answer(c, status, c->in, size);
        memmove(c->in, c->in + size, c->in_len - size);
        c->in_len -= size;
        if (closes)
            return false;
    }
    return open && c->in_len < IN_CAP; /* full: bigger than any answer */
}

/* ---- the next step of each kind of connection ---- */

static void normal_next(struct conn *c)
{
    if (c->answered < c->num_ids)
        return; /* still waiting */
    static const enum kind cycle[] = {KIND_GET, KIND_GET, KIND_SYNC,
                                      KIND_ASYNC};
    c->kind = cycle[c->counter++ % 4];
    expect_answers(c, 1);
    char *out = NULL;
    size_t len = 0;
    if (c->kind == KIND_GET) {
        static const char get[] = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n";
        out = soak_append(out, &len, get, sizeof get - 1);
    } else if (c->kind == KIND_SYNC) {
        char *body = soak_exchange_body(NULL, 1);
        out = soak_append_post(out, &len, "/api/exchange_sync", body);
        free(body);
    } else {
        out = append_async(c, out, &len, 0, 2);
    }
    queue_out(c, out, len);
    if (c->fd < 0 && !conn_open(c, 0)) {
        c->st->requests++;
        c->st->failed++;
        c->st->failed_by[FAIL_CONNECT]++;
        c->answered = c->num_ids;
        c->next_at = soak_now() + cfg.think_ms / 1000.0;
        return;
    }
    c->started = soak_now();
    c->end_at = c->started + REQUEST_TIMEOUT_S;
    c->next_at = 0;
}

static void long_polls_start(struct conn *slot)
{
    for (int i = 0; i < num_conns; i++) {
        struct conn *c = &conns[i];
        if (c->role != ROLE_LONG_POLL || c->st != slot->st)
            continue;
        char req[160];
        int n = snprintf(req, sizeof req,
                         "GET /api/exchange_result/soak-nowhere-%d-%d?"
                         "wait_ms=%d HTTP/1.1\r\nHost: soak\r\n\r\n",
                         slot->st->index, i, LONG_POLL_WAIT_MS);
        char *out = NULL;
        size_t len = 0;
        out = soak_append(out, &len, req, (size_t)n);
        queue_out(c, out, len);
        expect_answers(c, 1);
        c->family = HOSTILE_LONG_POLLS;
        c->started = soak_now();
        c->end_at = c->started + SOAK_HOSTILE_HOLD_S;
        if (!conn_open(c, 0))
            c->answered = 1; /* the main service is down: nothing held */
    }
}

static bool long_polls_done(struct conn *slot)
{
    for (int i = 0; i < num_conns; i++)
        if (conns[i].role == ROLE_LONG_POLL && conns[i].st == slot->st &&
            conns[i].fd >= 0)
            return false;
    return true;
}

static void hostile_start(struct conn *c)
{
    struct soak_stage *s = c->st;
    c->family = (int)(c->counter++ % NUM_FAMILIES);
    s->hostile[c->family]++;
    c->started = soak_now();
    c->end_at = c->started + SOAK_HOSTILE_HOLD_S;
    c->next_at = 0;
    char *out = NULL;
    size_t len = 0;
    int rcvbuf = 0;
    switch (c->family) {
    case HOSTILE_TRICKLE: {
        static const char head[] = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n";
        out = soak_append(out, &len, head, sizeof head - 1);
        expect_answers(c, 1);
        c->trickle = true;
        c->next_at = c->started;
        break;
    }
    case HOSTILE_STALLED_BODY: {
        static const char part[] =
            "POST /api/exchange_sync HTTP/1.1\r\nHost: soak\r\nContent-Type: "
            "application/json\r\nContent-Length: 400\r\n\r\n"
            "{\"request_id\": \"stalled\", ";
        out = soak_append(out, &len, part, sizeof part - 1);
        expect_answers(c, 1);
        break;
    }
    case HOSTILE_ASYNC_FLOOD:
        expect_answers(c, FLOOD_REQUESTS);
        for (int k = 0; k < FLOOD_REQUESTS; k++)
            out = append_async(c, out, &len, k, FLOOD_BILLS);
        break;
    case HOSTILE_LONG_POLLS:
        expect_answers(c, 0);
        long_polls_start(c);
        return; /* the slot itself opens nothing */
    case HOSTILE_SLOW_READER: {
        static const char get[] = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n";
        for (int k = 0; k < SLOW_READER_REQUESTS; k++)
            out = soak_append(out, &len, get, sizeof get - 1);
        expect_answers(c, 0); /* answers are never read */
        c->end_at = c->started + SOAK_SLOW_READER_HOLD_S;
        rcvbuf = 4096;        /* so the server's writes back up soon */
        break;
    }
    }
    queue_out(c, out, len);
    if (!conn_open(c, rcvbuf))
        c->end_at = c->started; /* refused: over at the next turn */
}

enum outcome { ENDED_DONE, ENDED_CLOSED, ENDED_HELD };

/* Ends a hostile connection: done (every answer read), closed by the
 * server (how soon says whether a deadline held), or held by us until
 * our own limit (the server let it stay). */
static void hostile_end(struct conn *c, enum outcome how)
{
    struct soak_stage *s = c->st;
    if (how == ENDED_CLOSED) {
        s->hostile_closed[c->family]++;
        s->hostile_close_s[c->family] += soak_now() - c->started;
    } else if (how == ENDED_HELD) {
        s->hostile_held[c->family]++;
    }
    conn_close(c);
    c->family = -1;
    c->next_at = soak_now() + HOSTILE_PAUSE_S;
}

/* ---- the loop ---- */

static void conn_send(struct conn *c)
{
    while (c->out_off < c->out_len) {
        size_t n = c->out_len - c->out_off;
        if (c->trickle)
            n = 1;
        ssize_t w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)w;
        if (c->trickle) {
            c->next_at = soak_now() + TRICKLE_EVERY_S;
            return;
        }
    }
}

/* The connection closed or failed: what that means for its role. */
static void conn_lost(struct conn *c)
{
    if (c->role == ROLE_NORMAL) {
        if (c->answered < c->num_ids) {
            c->st->requests++;
            c->st->failed++;
            c->st->failed_by[FAIL_CLOSED]++;
            c->answered = c->num_ids;
        }
        conn_close(c);
        if (c->next_at == 0)
            c->next_at = soak_now() + cfg.think_ms / 1000.0;
    } else if (c->role == ROLE_HOSTILE) {
        hostile_end(c, ENDED_CLOSED);
    } else {
        conn_close(c);
    }
}

static void on_event(struct conn *c, short revents)
{
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (revents & (POLLERR | POLLHUP))) {
            if (c->role == ROLE_NORMAL && c->answered < c->num_ids) {
                c->st->requests++;
                c->st->failed++;
                c->st->failed_by[FAIL_CONNECT]++;
                c->answered = c->num_ids;
            }
            conn_lost(c);
            return;
        }
        c->connecting = false;
    }
    if ((revents & POLLOUT) && !c->trickle)
        conn_send(c);
    if (c->fd < 0) {
        conn_lost(c);
        return;
    }
    bool reads = c->role != ROLE_HOSTILE || c->family != HOSTILE_SLOW_READER;
    if (reads && (revents & (POLLIN | POLLHUP | POLLERR))) {
        if (!conn_read(c)) {
            conn_lost(c);
            return;
        }
    } else if (!reads && (revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        conn_lost(c); /* the server closed the slow reader: good */
        return;
    }
    if (c->role == ROLE_HOSTILE && c->num_ids > 0 &&
        c->answered == c->num_ids && c->family != HOSTILE_TRICKLE &&
        c->family != HOSTILE_STALLED_BODY)
        hostile_end(c, ENDED_DONE); /* the whole flood was answered */
    else if (c->role == ROLE_LONG_POLL && c->answered == c->num_ids)
        conn_close(c);
}

/* Timed steps: think pauses over, trickled bytes, deadlines. */
static void on_time(struct conn *c, double now)
{
    switch (c->role) {
    case ROLE_NORMAL:
        if (c->answered < c->num_ids && c->fd >= 0 && now > c->end_at) {
            c->st->requests++;
            c->st->failed++; /* timed out */
            c->st->failed_by[FAIL_TIMEOUT]++;
            c->answered = c->num_ids;
            conn_close(c);
            c->next_at = now + cfg.think_ms / 1000.0;
        } else if (c->next_at != 0 && now >= c->next_at) {
            normal_next(c);
        }
        break;
    case ROLE_HOSTILE:
        if (c->family < 0) {
            if (now >= c->next_at)
                hostile_start(c);
        } else if (c->family == HOSTILE_LONG_POLLS) {
            if (long_polls_done(c))
                hostile_end(c, ENDED_DONE);
        } else if (now >= c->end_at) {
            hostile_end(c, c->fd >= 0 ? ENDED_HELD : ENDED_CLOSED);
        } else if (c->trickle && c->fd >= 0 && !c->connecting &&
                   now >= c->next_at) {
            if (c->out_off < c->out_len)
                conn_send(c);
            else
                c->trickle = false; /* all sent: now only waits */
            if (c->fd < 0)
                hostile_end(c, ENDED_CLOSED);
        }
        break;
    case ROLE_LONG_POLL:
        if (c->fd >= 0 && now >= c->end_at)
            conn_close(c);
        break;
    }
}

static struct conn *add_conn(struct soak_stage *s, enum role role, int port)
{
    struct conn *c = &conns[num_conns++];
    memset(c, 0, sizeof *c);
    c->st = s;
    c->role = role;
    c->port = port;
    c->fd = -1;
    c->family = -1;
    c->in = malloc(IN_CAP);
    if (!c->in) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    return c;
}

void soak_traffic_init(struct soak_stage *stages, int n,
                       const struct soak_traffic_cfg *c)
{
    cfg = *c;
    int per_stage = cfg.normal_conns + 1 + LONG_POLLS;
    conns = calloc((size_t)(n * per_stage), sizeof *conns);
    pfds = calloc((size_t)(n * per_stage), sizeof *pfds);
    pfd_conn = calloc((size_t)(n * per_stage), sizeof *pfd_conn);
    if (!conns || !pfds || !pfd_conn) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    double now = soak_now();
    for (int i = 0; i < n; i++) {
        struct soak_stage *s = &stages[i];
        for (int k = 0; k < cfg.normal_conns; k++) {
            struct conn *nc = add_conn(s, ROLE_NORMAL, s->proc.port);
            nc->next_at = now + k * 0.01; /* not all in the same instant */
            nc->counter = k;
        }
        struct conn *h = add_conn(s, ROLE_HOSTILE, s->proc.port);
        h->next_at = now + 0.5 + 0.2 * i;
        h->counter = i; /* stages start on different families */
        for (int k = 0; k < LONG_POLLS; k++)
            add_conn(s, ROLE_LONG_POLL, cfg.main_port);
    }
}

void soak_traffic_run(double until)
{
    for (;;) {
        double now = soak_now();
        if (now >= until)
            return;
        for (int i = 0; i < num_conns; i++)
            on_time(&conns[i], now);
        int m = 0;
        double wake = until;
        for (int i = 0; i < num_conns; i++) {
            struct conn *c = &conns[i];
            if (c->next_at > 0 && c->next_at < wake)
                wake = c->next_at;
            if (c->fd < 0)
                continue;
            short ev = POLLRDHUP;
            if (c->connecting || (c->out_off < c->out_len && !c->trickle))
                ev |= POLLOUT;
            if (c->role != ROLE_HOSTILE || c->family != HOSTILE_SLOW_READER)
                ev |= POLLIN;
            pfds[m] = (struct pollfd){.fd = c->fd, .events = ev};
            pfd_conn[m++] = i;
        }
        int timeout = (int)((wake - now) * 1000) + 1;
        if (timeout > 100)
            timeout = 100; /* deadlines are checked at least this often */
        if (timeout < 0)
            timeout = 0;
        int r = poll(pfds, (nfds_t)m, timeout);
        if (r < 0 && errno != EINTR) {
            perror("soak: poll");
            exit(3);
        }
        for (int j = 0; r > 0 && j < m; j++)
            if (pfds[j].revents)
                on_event(&conns[pfd_conn[j]], pfds[j].revents);
    }
}

void soak_traffic_stop(void)
{
    /* A request still unanswered after a second is a server holding it
     * (01 behind a trickled head): its wait so far is a lower bound of its
     * latency, and it failed. */
    double now = soak_now();
    for (int i = 0; i < num_conns; i++) {
        struct conn *c = &conns[i];
        if (c->role != ROLE_NORMAL || c->answered >= c->num_ids ||
            now - c->started < 1.0)
            continue;
        c->st->requests++;
        c->st->failed++;
        c->st->failed_by[FAIL_PENDING]++;
        record_latency(c->st, (now - c->started) * 1000.0);
    }
    for (int i = 0; i < num_conns; i++) {
        conn_close(&conns[i]);
        free(conns[i].in);
        free(conns[i].out);
        free(conns[i].ids);
    }
    free(conns);
    free(pfds);
    free(pfd_conn);
    conns = NULL;
    num_conns = 0;
}

