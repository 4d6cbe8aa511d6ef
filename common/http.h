/* http: an incremental HTTP/1.1 request parser and a response writer.
 *
 * The parser owns one growing buffer per connection. Bytes go in as they
 * arrive, in any split (one byte at a time works), and http_parser_parse
 * answers NEED_MORE, DONE or ERROR with the status to send. After a DONE
 * the request's fields point into the buffer; http_parser_consume then drops
 * that request and keeps any bytes after it (the next pipelined request).
 *
 * Limits (docs/DESIGN.md) and what breaking them answers:
 *   request line + headers over 8 KiB     431
 *   Content-Length over 64 KiB            413
 *   POST/PUT without Content-Length       411
 *   any Transfer-Encoding                 501 (a simplification: RFC 9112
 *                                         requires HTTP/1.1 servers to read
 *                                         chunked bodies; this one refuses
 *                                         them rather than parse them)
 *   malformed request line or header      400
 *   HTTP/1.1 without Host, or two Hosts   400
 *   HTTP version other than 1.0 / 1.1     505
 * Bare LF line endings are accepted, as RFC 9112 allows. */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADER_BYTES (8 * 1024)
#define HTTP_MAX_BODY_BYTES (64 * 1024)
#define HTTP_MAX_HEADERS 64

/* The interim response owed to a client that sent "Expect: 100-continue". */
#define HTTP_CONTINUE_RESPONSE "HTTP/1.1 100 Continue\r\n\r\n"

enum http_parse_status { HTTP_NEED_MORE, HTTP_DONE, HTTP_ERROR };

struct http_header {
    const char *name, *value; /* NUL-terminated, inside the parser buffer */
};

struct http_request {
    const char *method;  /* "GET", NUL-terminated */
    const char *path;    /* "/api/exchange_sync": the target up to '?' */
    const char *query;   /* after '?', or "" */
    int minor_version;   /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t num_headers;
    const char *body;    /* body_len bytes, NUL-terminated for convenience */
    size_t body_len;
    bool keep_alive;     /* HTTP/1.1 unless "Connection: close";
                            HTTP/1.0 only with "Connection: keep-alive" */
};

struct http_parser {
    char *buf;           /* owned; grows up to HTTP_PARSER_MAX_BUFFER */
    size_t len, cap;
    size_t scanned;      /* header bytes already searched for the blank line */
    size_t head_len;     /* bytes of request line + headers, once known */
    size_t body_len;     /* Content-Length, once the head is parsed */
    bool head_done;
    bool continue_owed;  /* Expect: 100-continue seen, not yet taken */
    int error_status;    /* after HTTP_ERROR: 400, 411, 413, 431, 501, 505 */
    const char *error_detail; /* after HTTP_ERROR: a short static text */
    struct http_request req;
};

/* First allocation: enough for any ordinary request; big ones double it. */
#define HTTP_PARSER_INITIAL_CAP 4096

/* Most bytes a parser buffers: one maximal request. */
#define HTTP_PARSER_MAX_BUFFER (HTTP_MAX_HEADER_BYTES + HTTP_MAX_BODY_BYTES)

void http_parser_init(struct http_parser *p);
void http_parser_free(struct http_parser *p);

/* Where the next read(2) may write, and how much: reading straight into the
 * parser saves a copy. *avail is 0 when the buffer is full; a full buffer
 * always holds a whole request or an error, so parse before reading more.
 * Returns NULL (errno ENOMEM) if growing failed. */
char *http_parser_space(struct http_parser *p, size_t *avail);

/* Records that n bytes were written at http_parser_space(). */
void http_parser_commit(struct http_parser *p, size_t n);

/* Copies up to n bytes in (space + commit). Returns how many were taken,
 * fewer than n when the buffer is full. */
size_t http_parser_feed(struct http_parser *p, const void *data, size_t n);

/* Parses what has arrived. DONE: p->req is complete and valid until
 * http_parser_consume. ERROR: p->error_status and p->error_detail say why;
 * answer, then close (the stream cannot be resynchronised). */
enum http_parse_status http_parser_parse(struct http_parser *p);

/* True exactly once per request when the client waits for "100 Continue"
 * before sending its body: the caller then sends HTTP_CONTINUE_RESPONSE. */
bool http_parser_take_continue(struct http_parser *p);

/* Drops the request just parsed, keeps the bytes after it. */
void http_parser_consume(struct http_parser *p);

/* Frees the buffer if it holds no byte (the next http_parser_space
 * allocates again): for a connection that will not read for a while, such
 * as one whose request waits. */
void http_parser_trim(struct http_parser *p);

/* The same, for a caller that keeps spare buffers: hands the buffer over
 * instead of freeing it; NULL when the parser holds bytes, or no buffer.
 * It is HTTP_PARSER_INITIAL_CAP bytes: a buffer that grew for a big
 * request is freed as soon as it is empty (http_parser_consume). */
char *http_parser_take_buffer(struct http_parser *p);

/* Gives a parser without a buffer one taken from another (malloc'd,
 * HTTP_PARSER_INITIAL_CAP bytes), which it will free. False (buf still
 * the caller's) when it has one. */
bool http_parser_give_buffer(struct http_parser *p, char *buf);

/* True if no bytes of a next request have arrived (an idle keep-alive). */
bool http_parser_empty(const struct http_parser *p);

/* Case-insensitive header lookup: the value, or NULL. */
const char *http_request_header(const struct http_request *req,
                                const char *name);

/* "OK", "Not Found", ... for the statuses this toolkit sends. */
const char *http_status_text(int status);

/* Formats a whole response: status line, Content-Type (application/json),
 * Content-Length, Connection (keep-alive or close), blank line, body.
 * Returns a malloc'd buffer of *out_len bytes, or NULL on ENOMEM. */
char *http_response_build(int status, const char *body, size_t body_len,
                          bool keep_alive, size_t *out_len);

/* The same with extra header lines after Connection: extra is "" or whole
 * lines, each ending in CRLF ("Retry-After: 1\r\n"). */
char *http_response_build_with(int status, const char *extra,
                               const char *body, size_t body_len,
                               bool keep_alive, size_t *out_len);

#endif
