/* rawhttp: loadgen's lean HTTP/1.1 client (--engine raw).
 *
 * Why it exists: libcurl spends ~7 us of user CPU per request on loopback
 * (building the request, re-reading the URL, parsing every header; it
 * also makes two poll() calls per request), about as much as the kernel's
 * whole TCP round trip. Against 05 on GET / that made loadgen, not the
 * server, the bottleneck. This client does what wrk does and no more: the
 * request is built once, a connection sends it with one send() and reads
 * the answer with recv() as epoll reports data, and only the status line,
 * Content-Length and Connection are looked at.
 *
 * Limits, by design: plain http://, one request in flight per connection
 * (no pipelining), answers framed by Content-Length or by the connection's
 * end; a chunked answer is reported as an error (use --engine curl). */
#ifndef RAWHTTP_H
#define RAWHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RAW_BUF_SIZE 8192 /* answer headers must fit in this */

/* What one request came to. */
enum raw_result {
    RAW_PENDING, /* still under way: wait for the connection's next event */
    RAW_DONE,    /* a whole answer arrived; status in conn->status */
    RAW_REFUSED, /* could not connect */
    RAW_RESET,   /* send or receive failed (reset, broken pipe) */
    RAW_CLOSED,  /* the server closed without a byte of answer */
    RAW_ERROR    /* anything else; conn->error says what */
};

/* The request every connection of a worker sends, built once. */
struct raw_request {
    char *bytes;    /* request line, headers and body */
    size_t len;
    bool head;      /* HEAD: answers carry no body */
    bool keepalive; /* false: "Connection: close", a new connection each */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* One client connection and the request on it. */
struct raw_conn {
    int fd;             /* -1: none open */
    uint32_t source;    /* IPv4 source address (network order) its
                           connections are opened from; 0: the kernel's
                           choice (raw_conn_init) */
    bool connecting;
    bool peer_closed;   /* epoll saw the server's FIN on this connection */
    bool retried;       /* this request already moved to a new connection */
    unsigned long served; /* answers read on this connection */
    size_t sent;        /* request bytes sent */
    bool got_bytes;     /* any byte of this answer arrived */
    bool in_body;
    bool close_after;   /* the server said Connection: close */
    long long body_left; /* -1: until the connection ends */
    int status;
    const char *error;  /* RAW_ERROR's reason, a static string */
    char *capture;      /* NULL, or room for capture_max body bytes */
    size_t capture_max, capture_len;
    size_t len;         /* bytes in buf */
    char buf[RAW_BUF_SIZE];
};

/* An answer's head, as raw_parse_head reads it. */
struct raw_head {
    int status;
    long long content_length; /* -1: none given */
    bool chunked;
    bool close;               /* Connection: close, or HTTP/1.0 without
                                 keep-alive */
};

/* Builds rq->bytes from the pieces of a URL. body may be NULL. Returns
 * false when out of memory. */
bool raw_request_build(struct raw_request *rq, const char *method,
                       const char *host_port, const char *path_query,
                       const char *body, bool keepalive);
void raw_request_free(struct raw_request *rq);

void raw_conn_init(struct raw_conn *c);

/* Binds a new, unconnected IPv4 socket to source address addr (network
 * order) and lets connect() choose the port (IP_BIND_ADDRESS_NO_PORT): a
 * port is then unique per destination, not per source address, so each
 * source address gives a server the whole ephemeral port range (where
 * the option is unknown, bind() picks the port: fewer connections per
 * address, as before Linux 4.2). 0, or -1 with errno. */
int raw_bind_source(int fd, uint32_t addr);

/* Starts rq on c: opens a connection when c has none (registering it with
 * epoll set ep, edge-triggered, with tag as its data) and sends what it
 * can. Most requests end RAW_PENDING here; the answer comes by events. */
enum raw_result raw_start(struct raw_conn *c, const struct raw_request *rq,
                          int ep, uint64_t tag);

/* Handles epoll's events for c's connection while a request is on it. */
enum raw_result raw_event(struct raw_conn *c, const struct raw_request *rq,
                          int ep, uint64_t tag, uint32_t events);

/* Closes c's connection, if any (a timed-out request, an idle connection
 * the server ended, the end of the run). */
void raw_close(struct raw_conn *c);

/* Reads an answer's head from buf[0..len). Returns its length in bytes
 * (through the blank line) when complete, 0 when more bytes are needed,
 * -1 when it is not HTTP. */
long raw_parse_head(const char *buf, size_t len, struct raw_head *h);

#endif
