/* rawhttp: loadgen's lean HTTP/1.1 client; see rawhttp.h for why.
 *
 * A connection is registered with epoll once, edge-triggered, for input
 * and output: the kernel then reports each new arrival (connect done,
 * answer bytes, the server's FIN) and nothing while we have nothing to do,
 * so a keep-alive request costs one send(), usually one recv(), and a
 * share of one epoll_wait(): no epoll_ctl per request. The price of edge
 * triggering is a rule: after an event, read until recv() says EAGAIN or
 * returns less than asked (the queue was empty then; later bytes bring a
 * new event). One exception: when the event says the server already sent
 * its FIN (EPOLLRDHUP), no later event will say it again, so reading goes
 * on until recv() returns 0. */
#include "rawhttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

/* ---- the request, built once ----------------------------------------- */

bool raw_request_build(struct raw_request *rq, const char *method,
                       const char *host_port, const char *path_query,
                       const char *body, bool keepalive)
{
    if (!path_query || !*path_query)
        path_query = "/";
    char length[96] = "";
    if (body)
        snprintf(length, sizeof length,
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                 strlen(body));
    else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
             strcmp(method, "PATCH") == 0)
        snprintf(length, sizeof length, "Content-Length: 0\r\n");
    int n = asprintf(&rq->bytes,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n%s%s\r\n%s",
                     method, path_query, host_port, length,
                     keepalive ? "" : "Connection: close\r\n",
                     body ? body : "");
    if (n < 0) {
        rq->bytes = NULL;
        return false;
    }
    rq->len = (size_t)n;
    rq->head = strcmp(method, "HEAD") == 0;
    rq->keepalive = keepalive;
    return true;
}

void raw_request_free(struct raw_request *rq)
{
    free(rq->bytes);
    rq->bytes = NULL;
}

/* ---- the answer's head ------------------------------------------------ */

/* Does the comma-separated header value v (n bytes) hold token t? */
static bool has_token(const char *v, size_t n, const char *t)
{
    size_t tl = strlen(t);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(v + i, t, tl) == 0 &&
            (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' '))
            return true;
    return false;
}

/* Lines end in CRLF (a bare LF is taken too); the head ends at an empty
 * line. Only what framing needs is read: the status, Content-Length,
 * Transfer-Encoding and Connection. */
long raw_parse_head(const char *buf, size_t len, struct raw_head *h)
{
    static const char proto[] = "HTTP/1.";
    size_t pl = sizeof proto - 1;
    if (memcmp(buf, proto, len < pl ? len : pl) != 0)
        return -1; /* not HTTP, whatever follows */
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return 0;
    /* "HTTP/1.x 200 OK": the version digit, a space, three digits */
    size_t line = (size_t)(nl - buf);
    if (line < pl + 5 || (buf[pl] != '0' && buf[pl] != '1') ||
        buf[pl + 1] != ' ')
        return -1;
    const char *s = buf + pl + 2;
    if (s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
        s[2] > '9' || (s + 3 < nl && s[3] != ' ' && s[3] != '\r'))
        return -1;
    *h = (struct raw_head){.status = (s[0] - '0') * 100 + (s[1] - '0') * 10 +
                                     (s[2] - '0'),
                           .content_length = -1};
    bool says_close = false, says_keep_alive = false;
    const char *p = nl + 1, *end = buf + len;
    for (;;) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return 0;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n == 0)
            break; /* the blank line */
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p)
            return -1;
        size_t name = (size_t)(colon - p);
        const char *v = colon + 1, *ve = p + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vn = (size_t)(ve - v);
        if (name == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            long long cl = 0;
            if (vn == 0 || vn > 15)
                return -1;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return -1;
                cl = cl * 10 + (v[i] - '0');
            }
            if (h->content_length >= 0 && h->content_length != cl)
                return -1; /* two lengths that disagree */
            h->content_length = cl;
        } else if (name == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            h->chunked = h->chunked || has_token(v, vn, "chunked");
        } else if (name == 10 && strncasecmp(p, "Connection", 10) == 0) {
            says_close = says_close || has_token(v, vn, "close");
            says_keep_alive = says_keep_alive || has_token(v, vn, "keep-alive");
        }
        p = nl + 1;
    }
    /* HTTP/1.0 closes after the answer unless it says keep-alive */
    h->close = says_close || (buf[pl] == '0' && !says_keep_alive);
    return (long)(nl + 1 - buf);
}

/* ---- a connection ----------------------------------------------------- */

void raw_conn_init(struct raw_conn *c)
{
    memset(c, 0, offsetof(struct raw_conn, buf));
    c->fd = -1;
}

void raw_close(struct raw_conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also drops it from epoll */
    c->fd = -1;
    c->connecting = false;
    c->peer_closed = false;
    c->served = 0;
}

static enum raw_result fail(struct raw_conn *c, const char *why)
{
    raw_close(c);
    c->error = why;
    return RAW_ERROR;
}

int raw_bind_source(int fd, uint32_t addr)
{
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = addr};
    /* Unknown to Linux before 4.2 and to qemu-user (ENOPROTOOPT): then
     * bind() picks the port now, and one address's ports are shared by
     * all its destinations. It still works; fewer connections fit. */
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof one) < 0 && errno != ENOPROTOOPT)
        return -1;
    return bind(fd, (const struct sockaddr *)&a, sizeof a);
}

static enum raw_result open_conn(struct raw_conn *c,
                                 const struct raw_request *rq, int ep,
                                 uint64_t tag)
{
    c->fd = socket(rq->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return fail(c, errno == EMFILE || errno == ENFILE
                           ? "no file descriptor left for a connection"
                           : "cannot open a socket");
    if (c->source && raw_bind_source(c->fd, c->source) < 0)
        return fail(c, "cannot bind the connection to its source address");
    int one = 1; /* a request goes out in one send(): no Nagle delay */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connecting = false;
    if (connect(c->fd, (const struct sockaddr *)&rq->addr, rq->addrlen) < 0) {
        if (errno == EADDRNOTAVAIL)
            return fail(c, "no free local port (too many connections in "
                           "TIME_WAIT?)");
        if (errno != EINPROGRESS) {
            raw_close(c);
            return RAW_REFUSED;
        }
        c->connecting = true;
    }
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        return fail(c, "epoll_ctl failed");
    return RAW_PENDING;
}

static enum raw_result send_some(struct raw_conn *c,
                                 const struct raw_request *rq, int ep,
                                 uint64_t tag);

/* Sends the request, opening a connection first when there is none. */
static enum raw_result begin(struct raw_conn *c, const struct raw_request *rq,
                             int ep, uint64_t tag)
{
    c->sent = 0;
    c->len = 0;
    if (c->fd < 0) {
        enum raw_result r = open_conn(c, rq, ep, tag);
        if (r != RAW_PENDING)
            return r;
    }
    /* Even when connect() said EINPROGRESS: on loopback the handshake is
     * usually over by the time it returns, and a burst of new clients
     * should each send at once, not after the whole burst has connected.
     * A socket still connecting says EAGAIN; EPOLLOUT comes when it is
     * open. */
    return send_some(c, rq, ep, tag);
}

/* The connection failed before a byte of the answer came. A keep-alive
 * connection may have been closed by the server while it sat idle (its
 * idle timeout, or 01 closing after every answer): then the request moves
 * once to a new connection, as curl and browsers do. */
static enum raw_result lost(struct raw_conn *c, const struct raw_request *rq,
                            int ep, uint64_t tag, enum raw_result r)
{
    bool reused = c->served > 0;
    raw_close(c);
    if (!reused || c->retried)
        return r;
    c->retried = true;
    return begin(c, rq, ep, tag);
}

static enum raw_result send_some(struct raw_conn *c,
                                 const struct raw_request *rq, int ep,
                                 uint64_t tag)
{
    while (c->sent < rq->len) {
        ssize_t n = send(c->fd, rq->bytes + c->sent, rq->len - c->sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            c->connecting = false; /* bytes went: it is open */
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return RAW_PENDING; /* EPOLLOUT comes when there is room */
        } else if (c->connecting) {
            raw_close(c); /* the connect failed (refused, say) */
            return RAW_REFUSED;
        } else {
            return lost(c, rq, ep, tag, RAW_RESET);
        }
    }
    return RAW_PENDING; /* now the answer */
}

enum raw_result raw_start(struct raw_conn *c, const struct raw_request *rq,
                          int ep, uint64_t tag)
{
    c->retried = false;
    c->got_bytes = false;
    c->in_body = false;
    c->close_after = false;
    c->body_left = 0;
    c->status = 0;
    c->error = NULL;
    c->capture_len = 0;
    return begin(c, rq, ep, tag);
}

/* Body bytes: counted against Content-Length, kept for --print. */
static enum raw_result body_bytes(struct raw_conn *c, const char *p, size_t n)
{
    if (c->capture) {
        size_t room = c->capture_max - c->capture_len;
        size_t take = n < room ? n : room;
        memcpy(c->capture + c->capture_len, p, take);
        c->capture_len += take;
    }
    if (c->body_left < 0)
        return RAW_PENDING; /* framed by the connection's end */
    if ((long long)n > c->body_left)
        return fail(c, "more bytes than the answer's Content-Length");
    c->body_left -= (long long)n;
    if (c->body_left > 0)
        return RAW_PENDING;
    c->served++;
    if (c->close_after || c->peer_closed)
        raw_close(c);
    return RAW_DONE;
}

/* New bytes are in buf: read the head once it is whole, then the body. */
static enum raw_result consume(struct raw_conn *c,
                               const struct raw_request *rq)
{
    if (c->in_body) {
        size_t n = c->len;
        c->len = 0;
        return body_bytes(c, c->buf, n);
    }
    for (;;) {
        struct raw_head h;
        long hl = raw_parse_head(c->buf, c->len, &h);
        if (hl < 0)
            return fail(c, "the answer is not HTTP/1.x");
        if (hl == 0)
            return c->len == sizeof c->buf
                       ? fail(c, "the answer's headers are over 8 KiB")
                       : RAW_PENDING;
        if (h.status < 200 && h.status != 101) {
            /* 100 Continue and friends: the real answer follows */
            memmove(c->buf, c->buf + hl, c->len - (size_t)hl);
            c->len -= (size_t)hl;
            continue;
        }
        if (h.chunked)
            return fail(c, "a chunked answer: --engine raw reads "
                           "Content-Length only; try --engine curl");
        c->status = h.status;
        c->close_after = h.close || !rq->keepalive || h.status == 101;
        c->body_left = rq->head || h.status == 204 || h.status == 304 ||
                               h.status == 101
                           ? 0
                           : h.content_length;
        if (c->body_left < 0)
            c->close_after = true;
        c->in_body = true;
        size_t n = c->len - (size_t)hl;
        c->len = 0;
        return body_bytes(c, c->buf + hl, n);
    }
}

static enum raw_result read_some(struct raw_conn *c,
                                 const struct raw_request *rq, int ep,
                                 uint64_t tag)
{
    for (;;) {
        size_t room = sizeof c->buf - c->len;
        ssize_t n = recv(c->fd, c->buf + c->len, room, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RAW_PENDING;
            if (c->got_bytes) {
                raw_close(c);
                return RAW_RESET;
            }
            return lost(c, rq, ep, tag, RAW_RESET);
        }
        if (n == 0) {
            if (c->in_body && c->body_left < 0) {
                c->served++;
                raw_close(c);
                return RAW_DONE;
            }
            if (!c->got_bytes)
                return lost(c, rq, ep, tag, RAW_CLOSED);
            return fail(c, "the connection ended in the middle of an answer");
        }
        c->got_bytes = true;
        c->len += (size_t)n;
        enum raw_result r = consume(c, rq);
        if (r != RAW_PENDING || c->fd < 0)
            return r;
        if ((size_t)n < room && !c->peer_closed)
            return RAW_PENDING; /* drained: the next bytes bring an event */
    }
}

enum raw_result raw_event(struct raw_conn *c, const struct raw_request *rq,
                          int ep, uint64_t tag, uint32_t events)
{
    if (c->fd < 0)
        return RAW_PENDING;
    if (events & (EPOLLRDHUP | EPOLLHUP))
        c->peer_closed = true;
    if (c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return RAW_PENDING;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            raw_close(c);
            return RAW_REFUSED;
        }
        c->connecting = false;
    }
    if (c->sent < rq->len) {
        enum raw_result r = send_some(c, rq, ep, tag);
        if (r != RAW_PENDING || c->fd < 0 || c->connecting ||
            c->sent < rq->len)
            return r;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        return read_some(c, rq, ep, tag);
    return RAW_PENDING;
}
