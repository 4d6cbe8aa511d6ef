/* tiny_http.h: the plumbing the three tiny servers (tiny_select.c,
 * tiny_epoll.c, tiny_coro.c) share and that is not their subject: the
 * options and the listening socket, the clock and a list of deadlines,
 * reading a request and writing an answer without blocking, a naive look
 * at the request, and the answer's text. What each one is about, how it
 * waits and who runs when, is in its own file.
 *
 * Naive on purpose: the request is searched with strstr for its blank line
 * and Content-Length (the stages use common/http's parser, with limits
 * and answers past them); the options are read with atoi. The JSON is
 * common/exchange's, as in every stage. */
#ifndef EXAMPLES_TINY_HTTP_H
#define EXAMPLES_TINY_HTTP_H

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "exchange.h"
#include "list.h"

/* Monotonic milliseconds: what a bill's deadline is counted in. */
static inline long long tiny_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A deadline in a list kept earliest first (the stages keep a heap,
 * common/timer.h: a list costs a walk per deadline, fine for a few). */
struct tiny_timer {
    long long due_ms;
    struct list link;
};

/* Puts t in timers, due in ms, after every deadline that is not later. */
static inline void tiny_timer_add(struct list *timers, struct tiny_timer *t,
                                  int ms)
{
    t->due_ms = tiny_now_ms() + ms;
    struct list *pos = timers->prev;     /* from the latest: most go last */
    while (pos != timers &&
           LIST_ITEM(pos, struct tiny_timer, link)->due_ms > t->due_ms)
        pos = pos->prev;
    list_insert_before(pos->next, &t->link);
}

/* How long to sleep: the ms to the earliest deadline, 0 if it has passed,
 * -1 if there is none (until something else happens). */
static inline int tiny_timer_wait_ms(const struct list *timers)
{
    if (list_empty(timers))
        return -1;
    long long ms = LIST_ITEM(timers->next, struct tiny_timer, link)->due_ms -
                   tiny_now_ms();
    return ms < 0 ? 0 : (int)ms;
}

/* The earliest deadline, taken out of timers, if it has passed; else NULL. */
static inline struct tiny_timer *tiny_timer_due(struct list *timers)
{
    if (tiny_timer_wait_ms(timers) != 0)
        return NULL;
    return LIST_ITEM(list_pop_front(timers), struct tiny_timer, link);
}

/* Reads --port N (0: any free port; default `port`) and --delay-ms N, then
 * listens on 127.0.0.1 with a non-blocking socket and prints the stages'
 * "listening on" line. The socket, or -1 (errno says why). */
static inline int tiny_listen(int argc, char **argv, int port, int *delay_ms)
{
    for (int i = 1; i + 1 < argc; i += 2)
        *(strcmp(argv[i], "--port") ? delay_ms : &port) = atoi(argv[i + 1]);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&a, len) || listen(fd, 128) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

/* One request and its answer, as they come and go. */
struct tiny_req {
    char in[8192 + 1];                   /* the request so far, with a NUL */
    size_t in_len;
    struct exchange_request req;         /* parsed, once it is whole */
    char *out;                           /* the answer (NULL: no memory) */
    size_t out_len, out_sent;
};

/* One send of what is left of r's answer. 1 once all of it is sent, 0
 * while more must go (EAGAIN, or only a part), -1 on an error or without
 * an answer. */
static inline int tiny_send(int fd, struct tiny_req *r)
{
    ssize_t n = r->out ? send(fd, r->out + r->out_sent,
                              r->out_len - r->out_sent, MSG_NOSIGNAL) : -1;
    if (n < 0)
        return r->out && errno == EAGAIN ? 0 : -1;
    r->out_sent += (size_t)n;
    return r->out_sent == r->out_len;
}

/* Sets r's answer: HTTP, carrying json (freed here; NULL, or no memory
 * for the answer: r->out NULL), closing the connection. */
static inline void tiny_answer(struct tiny_req *r, const char *status,
                               char *json)
{
    int n = json ? asprintf(&r->out, "HTTP/1.1 %s\r\nContent-Type: "
                            "application/json\r\nContent-Length: %zu\r\n"
                            "Connection: close\r\n\r\n%s", status,
                            strlen(json), json) : -1;
    free(json);
    r->out = n < 0 ? NULL : r->out;
    r->out_len = n < 0 ? 0 : (size_t)n;
}

/* What tiny_read found. */
enum tiny_got {
    TINY_GONE = -1, /* the client hung up, failed, or sent more than fits */
    TINY_MORE,      /* only a part so far (or EAGAIN): more must come */
    TINY_ANSWER,    /* a whole request, answered at once: 404 or 400 */
    TINY_BILLS,     /* POST /api/exchange_sync, valid: its bills to wait */
};

/* One recv from a non-blocking fd into r, and once the request is whole
 * (the head's blank line, then Content-Length bytes), its route: r->req
 * parsed for TINY_BILLS, r's answer set for TINY_ANSWER. */
static inline enum tiny_got tiny_read(int fd, struct tiny_req *r)
{
    ssize_t n = recv(fd, r->in + r->in_len, sizeof r->in - 1 - r->in_len, 0);
    if (n < 0 && errno == EAGAIN)
        return TINY_MORE;
    if (n <= 0 || (r->in_len += (size_t)n) == sizeof r->in - 1)
        return TINY_GONE;
    r->in[r->in_len] = '\0';
    const char *end = strstr(r->in, "\r\n\r\n");
    const char *cl = strcasestr(r->in, "\r\nContent-Length:");
    size_t len = end && cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    if (!end || len > r->in_len - (size_t)(end + 4 - r->in))
        return TINY_MORE;
    char err[256];
    if (strncmp(r->in, "POST /api/exchange_sync ", 24) != 0)
        tiny_answer(r, "404 Not Found", exchange_error_body("Not Found"));
    else if (exchange_parse_request(end + 4, len, &r->req, err, sizeof err) < 0)
        tiny_answer(r, "400 Bad Request", exchange_error_body(err));
    else
        return TINY_BILLS;
    return TINY_ANSWER;
}

/* r's answer once every bill was waited for: 200 and the breakdown. */
static inline void tiny_breakdown(struct tiny_req *r)
{
    double subtotals[EXCHANGE_MAX_BILLS];
    for (size_t i = 0; i < r->req.num_bills; i++)
        subtotals[i] = exchange_subtotal(&r->req.bills[i], r->req.exchange_rate);
    tiny_answer(r, "200 OK", exchange_sync_response(&r->req, subtotals));
}

#endif
