/* Unit tests for tools/loadgen/rawhttp.c, loadgen's lean HTTP/1.1 client
 * (--engine raw). First the answer-head parser on exact inputs, then whole
 * requests against a scripted server thread on 127.0.0.1: answers cut into
 * pieces, keep-alive reuse, a server that closes an idle connection (the
 * request moves to a new one), answers framed by the connection's end,
 * 100 Continue, HEAD, and the failures loadgen counts by kind. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#include "../tools/loadgen/rawhttp.h"

/* ---- the parser -------------------------------------------------------- */

START_TEST(parses_status_length_and_connection)
{
    static const struct {
        const char *text;
        long ret; /* -2: the whole text's length */
        int status;
        long long length;
        bool chunked, close;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", -2, 200, 12, 0, 0},
        {"HTTP/1.1 404 Not Found\r\ncontent-length:3\r\n\r\nabc", 44, 404, 3,
         0, 0},
        {"HTTP/1.1 503\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", -2,
         503, 0, 0, 1},
        {"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", -2, 200,
         -1, 0, 1},
        {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", -2, 200, 2, 0, 1},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", -2, 200, -1, 0,
         0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -2,
         200, -1, 1, 0},
        {"HTTP/1.1 200 OK\nContent-Length:  7  \n\n", -2, 200, 7, 0, 0},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 25, 100, -1, 0,
         0},
        /* incomplete: more bytes needed */
        {"", 0, 0, 0, 0, 0},
        {"HTT", 0, 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n", 0, 0, 0, 0, 0},
        /* not HTTP, or not framed the way this client can trust */
        {"SSH-2.0-OpenSSH\r\n", -1, 0, 0, 0, 0},
        {"HTTP/2 200\r\n\r\n", -1, 0, 0, 0, 0},
        {"HTTP/1.1 20 OK\r\n\r\n", -1, 0, 0, 0, 0},
        {"HTTP/1.1 2000 OK\r\n\r\n", -1, 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", -1, 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -1, 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         -1, 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999\r\n\r\n", -1,
         0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", -1, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct raw_head h = {0};
        const char *t = cases[i].text;
        long want = cases[i].ret == -2 ? (long)strlen(t) : cases[i].ret;
        long got = raw_parse_head(t, strlen(t), &h);
        ck_assert_msg(got == want, "case %zu: %ld, want %ld", i, got, want);
        if (got <= 0)
            continue;
        ck_assert_msg(h.status == cases[i].status, "case %zu: status %d", i,
                      h.status);
        ck_assert_msg(h.content_length == cases[i].length,
                      "case %zu: length %lld", i, h.content_length);
        ck_assert_msg(h.chunked == cases[i].chunked, "case %zu: chunked", i);
        ck_assert_msg(h.close == cases[i].close, "case %zu: close", i);
    }
}
END_TEST

START_TEST(a_head_cut_anywhere_waits_for_the_rest)
{
    const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                    "Connection: close\r\n\r\nhello";
    size_t head = strlen(t) - 5;
    for (size_t cut = 0; cut < head; cut++) {
        struct raw_head h;
        ck_assert_msg(raw_parse_head(t, cut, &h) == 0, "cut %zu", cut);
    }
    struct raw_head h;
    ck_assert_int_eq(raw_parse_head(t, strlen(t), &h), (long)head);
    ck_assert(h.close);
}
END_TEST

/* Mangled heads (bytes flipped, cut, duplicated) never read outside the
 * buffer (the ASan build checks), and whatever is returned is sane. */
START_TEST(mangled_heads_are_refused_or_read_sanely)
{
    static const char seed[] = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n"
                               "Connection: keep-alive, close\r\n"
                               "Transfer-Encoding: chunked\r\n\r\nbody";
    static const char bytes[] = "\r\n: ,0123456789HTTP/1.chunkedclose";
    unsigned seedv = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t len = sizeof seed - 1;
        char *buf = malloc(len); /* exact size: ASan sees any overread */
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, seed, len);
        int edits = 1 + rand_r(&seedv) % 6;
        for (int e = 0; e < edits; e++)
            buf[(size_t)rand_r(&seedv) % len] =
                bytes[(size_t)rand_r(&seedv) % (sizeof bytes - 1)];
        len = (size_t)rand_r(&seedv) % (len + 1);
        struct raw_head h;
        long r = raw_parse_head(buf, len, &h);
        ck_assert(r >= -1 && r <= (long)len);
        if (r > 0) {
            ck_assert(h.status >= 100 && h.status <= 999);
            ck_assert(h.content_length >= -1);
        }
        free(buf);
    }
}
END_TEST

START_TEST(builds_the_request_once)
{
    struct raw_request rq = {0};
    ck_assert(raw_request_build(&rq, "GET", "127.0.0.1:8005", "/", NULL,
                                true));
    ck_assert_str_eq(rq.bytes, "GET / HTTP/1.1\r\nHost: 127.0.0.1:8005\r\n"
                               "Accept: */*\r\n\r\n");
    ck_assert_uint_eq(rq.len, strlen(rq.bytes));
    raw_request_free(&rq);
    ck_assert(raw_request_build(&rq, "POST", "h", "/api/exchange_sync?x=1",
                                "{}", false));
    ck_assert_str_eq(rq.bytes, "POST /api/exchange_sync?x=1 HTTP/1.1\r\n"
                               "Host: h\r\nAccept: */*\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 2\r\n"
                               "Connection: close\r\n\r\n{}");
    raw_request_free(&rq);
    ck_assert(raw_request_build(&rq, "PUT", "h", "", NULL, true));
    ck_assert_str_eq(rq.bytes, "PUT / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"
                               "Content-Length: 0\r\n\r\n");
    raw_request_free(&rq);
    ck_assert(raw_request_build(&rq, "HEAD", "h", "/", NULL, true));
    ck_assert(rq.head);
    raw_request_free(&rq);
}
END_TEST

/* ---- a scripted server ------------------------------------------------- */

/* For each connection in turn, for each request read on it: the answer's
 * pieces are written with a pause between them; then the connection stays
 * open for the next request unless `close` says otherwise. */
struct script {
    const char *pieces[6]; /* an answer, in parts; NULL ends it */
    int pause_ms;
    bool close;            /* close after this answer */
    bool silent_close;     /* close at once without answering */
};

struct server {
    int lfd, port;
    const struct script *steps;
    size_t nsteps;
    int accepted;          /* connections taken */
    pthread_t tid;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Reads one request head (through the blank line); false at EOF. */
static bool read_request(int fd)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
        if (memmem(buf, len, "\r\n\r\n", 4))
            return true;
    }
    return false;
}

static void *serve(void *arg)
{
    struct server *s = arg;
    size_t i = 0;
    while (i < s->nsteps) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            break;
        s->accepted++;
        for (; i < s->nsteps; i++) {
            const struct script *st = &s->steps[i];
            if (!read_request(fd))
                break; /* the client gave up on this connection */
            if (st->silent_close) {
                i++;
                break;
            }
            for (int k = 0; st->pieces[k]; k++) {
                if (k)
                    sleep_ms(st->pause_ms);
                if (send(fd, st->pieces[k], strlen(st->pieces[k]),
                         MSG_NOSIGNAL) < 0)
                    break; /* the client left; its side reports it */
            }
            if (st->close) {
                i++;
                break;
            }
        }
        close(fd);
    }
    return NULL;
}

static void server_start(struct server *s, const struct script *steps,
                         size_t n)
{
    *s = (struct server){.steps = steps, .nsteps = n};
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert(bind(s->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    ck_assert(listen(s->lfd, 16) == 0);
    socklen_t len = sizeof a;
    ck_assert(getsockname(s->lfd, (struct sockaddr *)&a, &len) == 0);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&s->tid, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
    shutdown(s->lfd, SHUT_RDWR); /* ends a blocked accept() */
    pthread_join(s->tid, NULL);
    close(s->lfd);
}

/* ---- a client: one connection, driven to each answer ------------------ */

struct client {
    int ep;
    struct raw_request rq;
    struct raw_conn *c;
};

static void client_init(struct client *cl, int port, const char *method,
                        bool keepalive)
{
    cl->ep = epoll_create1(EPOLL_CLOEXEC);
    ck_assert_int_ge(cl->ep, 0);
    ck_assert(raw_request_build(&cl->rq, method, "127.0.0.1", "/", NULL,
                                keepalive));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memcpy(&cl->rq.addr, &a, sizeof a);
    cl->rq.addrlen = sizeof a;
    cl->c = malloc(sizeof *cl->c);
    ck_assert_ptr_nonnull(cl->c);
    raw_conn_init(cl->c);
}

static void client_free(struct client *cl)
{
    raw_close(cl->c);
    free(cl->c);
    raw_request_free(&cl->rq);
    close(cl->ep);
}

/* A scripted server and a client of it; with body, the client keeps each
 * answer's body there. */
static void start_both(struct server *s, const struct script *steps,
                       size_t n, struct client *cl, const char *method,
                       char *body, size_t body_max)
{
    server_start(s, steps, n);
    client_init(cl, s->port, method, true);
    cl->c->capture = body;
    cl->c->capture_max = body_max;
}

/* One request, waited for (5 s at most). */
static enum raw_result request(struct client *cl)
{
    enum raw_result r = raw_start(cl->c, &cl->rq, cl->ep, 42);
    for (int waited = 0; r == RAW_PENDING; waited++) {
        ck_assert_msg(waited < 50, "no answer in 5 s");
        struct epoll_event ev;
        int n = epoll_wait(cl->ep, &ev, 1, 100);
        ck_assert(n >= 0 || errno == EINTR);
        if (n == 1) {
            ck_assert_uint_eq(ev.data.u64, 42);
            r = raw_event(cl->c, &cl->rq, cl->ep, 42, ev.events);
        }
    }
    return r;
}

#define OK5 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

START_TEST(keep_alive_answers_in_pieces)
{
    static const struct script steps[] = {
        {{OK5, NULL}, 0, false, false},
        {{"HTT", "P/1.1 201 Created\r\nContent-Le", "ngth: 3\r\n\r", "\na",
          "bc", NULL}, 20, false, false},
        {{"HTTP/1.1 100 Continue\r\n\r\n", OK5, NULL}, 20, false, false},
    };
    struct server s;
    struct client cl;
    char body[64];
    start_both(&s, steps, 3, &cl, "GET", body, sizeof body);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->status, 200);
    ck_assert_int_eq((int)cl.c->capture_len, 5);
    ck_assert(memcmp(body, "hello", 5) == 0);
    int fd = cl.c->fd;
    ck_assert_int_ge(fd, 0); /* kept open for the next request */
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->status, 201);
    ck_assert(memcmp(body, "abc", 3) == 0);
    ck_assert_int_eq(cl.c->fd, fd);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->status, 200); /* the 100 was skipped */
    client_free(&cl);
    server_stop(&s);
    ck_assert_int_eq(s.accepted, 1); /* three requests, one connection */
}
END_TEST

START_TEST(a_closed_idle_connection_moves_the_request_to_a_new_one)
{
    static const struct script steps[] = {
        {{OK5, NULL}, 0, false, false},
        {{NULL}, 0, false, true}, /* ends the connection, no answer */
        {{OK5, NULL}, 0, false, false},
    };
    struct server s;
    struct client cl;
    start_both(&s, steps, 3, &cl, "GET", NULL, 0);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(request(&cl), RAW_DONE); /* retried on a new one */
    ck_assert_int_eq(cl.c->status, 200);
    client_free(&cl);
    server_stop(&s);
    ck_assert_int_eq(s.accepted, 2);
}
END_TEST

START_TEST(connection_close_and_answers_framed_by_the_end)
{
    static const struct script steps[] = {
        {{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
          "ok", NULL}, 0, true, false},
        {{"HTTP/1.0 200 OK\r\n\r\nuntil ", "the end", NULL}, 20, true, false},
        {{OK5, NULL}, 0, true, false},
    };
    struct server s;
    struct client cl;
    char body[64];
    start_both(&s, steps, 3, &cl, "GET", body, sizeof body);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->fd, -1); /* the server said close */
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq((int)cl.c->capture_len, 13);
    ck_assert(memcmp(body, "until the end", 13) == 0);
    client_free(&cl);
    /* keep-alive off: every request on a connection of its own */
    client_init(&cl, s.port, "GET", false);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->fd, -1);
    client_free(&cl);
    server_stop(&s);
    ck_assert_int_eq(s.accepted, 3);
}
END_TEST

START_TEST(head_answers_have_no_body)
{
    static const struct script steps[] = {
        {{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", NULL}, 0, false,
         false},
        {{"HTTP/1.1 204 No Content\r\n\r\n", NULL}, 0, false, false},
    };
    struct server s;
    struct client cl;
    start_both(&s, steps, 2, &cl, "HEAD", NULL, 0);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->status, 200);
    ck_assert_int_eq(request(&cl), RAW_DONE);
    ck_assert_int_eq(cl.c->status, 204);
    client_free(&cl);
    server_stop(&s);
}
END_TEST

START_TEST(failures_are_told_apart)
{
    static const struct script steps[] = {
        {{NULL}, 0, false, true},                        /* closed */
        {{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal", NULL}, 0, true,
         false},                                         /* cut short */
        {{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", NULL}, 0,
         true, false},                                   /* chunked */
        {{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", NULL}, 0, true,
         false},                                         /* too long */
        {{"garbage\r\n\r\n", NULL}, 0, true, false},     /* not HTTP */
    };
    struct server s;
    struct client cl;
    start_both(&s, steps, 5, &cl, "GET", NULL, 0);
    ck_assert_int_eq(request(&cl), RAW_CLOSED); /* a fresh connection: no
                                                   retry */
    ck_assert_int_eq(request(&cl), RAW_ERROR);
    ck_assert_ptr_nonnull(strstr(cl.c->error, "middle of an answer"));
    ck_assert_int_eq(request(&cl), RAW_ERROR);
    ck_assert_ptr_nonnull(strstr(cl.c->error, "--engine curl"));
    ck_assert_int_eq(request(&cl), RAW_ERROR);
    ck_assert_ptr_nonnull(strstr(cl.c->error, "Content-Length"));
    ck_assert_int_eq(request(&cl), RAW_ERROR);
    ck_assert_ptr_nonnull(strstr(cl.c->error, "not HTTP"));
    ck_assert_int_eq(cl.c->fd, -1);
    client_free(&cl);
    server_stop(&s);
    /* nobody listens on the port now */
    client_init(&cl, s.port, "GET", true);
    ck_assert_int_eq(request(&cl), RAW_REFUSED);
    client_free(&cl);
}
END_TEST

/* A burst of new connections: each request leaves as soon as its
 * connection is open, not when the loop next hears from it (loadgen opened
 * 10,000 connections before sending a byte, which added the burst's whole
 * connect time to every answer). On loopback the handshake is usually over
 * when connect() returns, so most requests are already at the listener
 * here, where no raw_event has run yet; one is enough to tell. */
START_TEST(a_burst_sends_each_request_once_its_connection_is_open)
{
    enum { N = 8 };
    int port;
    int lfd = harness_listen(&port);
    struct client cl[N];
    for (int i = 0; i < N; i++) {
        client_init(&cl[i], port, "GET", true);
        ck_assert_int_eq(raw_start(cl[i].c, &cl[i].rq, cl[i].ep, 1),
                         RAW_PENDING);
    }
    int arrived = 0;
    for (int i = 0; i < N; i++) {
        int fd = accept(lfd, NULL, NULL);
        ck_assert_int_ge(fd, 0);
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == (ssize_t)cl[0].rq.len &&
            memcmp(buf, cl[0].rq.bytes, (size_t)n) == 0)
            arrived++;
        close(fd);
    }
    ck_assert_msg(arrived > 0, "no request was sent before its first event");
    for (int i = 0; i < N; i++)
        client_free(&cl[i]);
    close(lfd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rawhttp");
    TCase *tc = tcase_create("rawhttp");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, parses_status_length_and_connection);
    tcase_add_test(tc, a_head_cut_anywhere_waits_for_the_rest);
    tcase_add_test(tc, mangled_heads_are_refused_or_read_sanely);
    tcase_add_test(tc, builds_the_request_once);
    tcase_add_test(tc, keep_alive_answers_in_pieces);
    tcase_add_test(tc, a_closed_idle_connection_moves_the_request_to_a_new_one);
    tcase_add_test(tc, connection_close_and_answers_framed_by_the_end);
    tcase_add_test(tc, head_answers_have_no_body);
    tcase_add_test(tc, failures_are_told_apart);
    tcase_add_test(tc, a_burst_sends_each_request_once_its_connection_is_open);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
