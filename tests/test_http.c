/* Unit tests for common/http: the incremental request parser (every split
 * of the input gives the same answer, limits, pipelining, keep-alive,
 * Expect) and the response writer. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "harness.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* Feeds all n bytes (they must fit) and parses once. */
static enum http_parse_status feed_parse(struct http_parser *p, const void *s,
                                         size_t n)
{
    ck_assert_uint_eq(http_parser_feed(p, s, n), n);
    return http_parser_parse(p);
}

static enum http_parse_status feed_parse_str(struct http_parser *p,
                                             const char *s)
{
    return feed_parse(p, s, strlen(s));
}

/* Feeds one byte at a time, parsing after each: the answer must stay
 * NEED_MORE until the last byte. Returns the final answer. */
static enum http_parse_status feed_bytewise(struct http_parser *p,
                                            const char *s, size_t n)
{
    enum http_parse_status st = HTTP_NEED_MORE;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(st, HTTP_NEED_MORE);
        st = feed_parse(p, s + i, 1);
    }
    return st;
}

/* Parses a whole request that must fail; checks the status both when it
 * arrives at once and one byte at a time. */
static void expect_error(const char *req, size_t n, int status)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_msg(feed_parse(&p, req, n) == HTTP_ERROR, "no error for %.*s",
                  (int)(n < 60 ? n : 60), req);
    ck_assert_int_eq(p.error_status, status);
    ck_assert_ptr_nonnull(p.error_detail);
    ck_assert_uint_gt(strlen(p.error_detail), 0);
    http_parser_free(&p);

    http_parser_init(&p);
    enum http_parse_status st = HTTP_NEED_MORE;
    for (size_t i = 0; i < n && st == HTTP_NEED_MORE; i++)
        st = feed_parse(&p, req + i, 1);
    ck_assert_msg(st == HTTP_ERROR, "bytewise: no error for %.*s",
                  (int)(n < 60 ? n : 60), req);
    ck_assert_int_eq(p.error_status, status);
    http_parser_free(&p);
}

static void expect_error_str(const char *req, int status)
{
    expect_error(req, strlen(req), status);
}

/* ------------------------------------------------------------------ */
/* Well-formed requests                                                */

/* RFC 9112 3.2: an HTTP/1.1 request must name exactly one Host; HTTP/1.0
 * predates Host and may omit it. */
START_TEST(host_is_required_once)
{
    expect_error_str("GET / HTTP/1.1\r\n\r\n", 400);
    expect_error_str("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    expect_error_str("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.1\r\n\r\n"), HTTP_ERROR);
    ck_assert_str_eq(p.error_detail, "Host header required");
    http_parser_free(&p);
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.1\r\nHOST: a\r\n"
                                        "Host: b\r\n\r\n"), HTTP_ERROR);
    ck_assert_str_eq(p.error_detail, "more than one Host header");
    http_parser_free(&p);
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.0\r\n\r\n"), HTTP_DONE);
    http_parser_free(&p);
}
END_TEST

START_TEST(simple_get)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert(http_parser_empty(&p));
    const char *req = "GET /api/x?wait_ms=10&a=b HTTP/1.1\r\n"
                      "Host: localhost:8001\r\n"
                      "User-Agent:   curl/7.88  \r\n"
                      "Accept: */*\r\n"
                      "X-Empty:\r\n"
                      "\r\n";
    ck_assert_int_eq(feed_parse_str(&p, req), HTTP_DONE);
    ck_assert(!http_parser_empty(&p));
    const struct http_request *r = &p.req;
    ck_assert_str_eq(r->method, "GET");
    ck_assert_str_eq(r->path, "/api/x");
    ck_assert_str_eq(r->query, "wait_ms=10&a=b");
    ck_assert_int_eq(r->minor_version, 1);
    ck_assert_uint_eq(r->num_headers, 4);
    ck_assert_str_eq(r->headers[0].name, "Host");
    ck_assert_str_eq(r->headers[0].value, "localhost:8001");
    ck_assert_str_eq(http_request_header(r, "user-agent"), "curl/7.88");
    ck_assert_str_eq(http_request_header(r, "HOST"), "localhost:8001");
    ck_assert_str_eq(http_request_header(r, "x-empty"), "");
    ck_assert_ptr_null(http_request_header(r, "Content-Length"));
    ck_assert_uint_eq(r->body_len, 0);
    ck_assert_ptr_nonnull(r->body);
    ck_assert_str_eq(r->body, "");
    ck_assert(r->keep_alive);
    ck_assert(!http_parser_take_continue(&p));
    /* Asking again before consume gives the same answer. */
    ck_assert_int_eq(http_parser_parse(&p), HTTP_DONE);
    ck_assert_str_eq(r->path, "/api/x");
    http_parser_consume(&p);
    ck_assert(http_parser_empty(&p));
    ck_assert_int_eq(http_parser_parse(&p), HTTP_NEED_MORE);
    http_parser_free(&p);
}
END_TEST

START_TEST(path_without_query)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "DELETE / HTTP/1.0\r\n\r\n"), HTTP_DONE);
    ck_assert_str_eq(p.req.method, "DELETE");
    ck_assert_str_eq(p.req.path, "/");
    ck_assert_str_eq(p.req.query, "");
    ck_assert_int_eq(p.req.minor_version, 0);
    ck_assert_uint_eq(p.req.num_headers, 0);
    http_parser_free(&p);
}
END_TEST

static const char post_req[] =
    "POST /api/exchange_sync HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 43\r\n"
    "\r\n"
    "{\"request_id\": \"a\", \"exchange_rate\": 75.5}\n";

static void check_post(const struct http_parser *p)
{
    const struct http_request *r = &p->req;
    ck_assert_str_eq(r->method, "POST");
    ck_assert_str_eq(r->path, "/api/exchange_sync");
    ck_assert_str_eq(r->query, "");
    ck_assert_uint_eq(r->num_headers, 3);
    ck_assert_str_eq(http_request_header(r, "content-type"), "application/json");
    ck_assert_uint_eq(r->body_len, 43);
    ck_assert_str_eq(r->body, "{\"request_id\": \"a\", \"exchange_rate\": 75.5}\n");
    ck_assert(r->keep_alive);
}

START_TEST(post_every_split)
{
    size_t n = strlen(post_req);
    for (size_t k = 0; k <= n; k++) {
        struct http_parser p;
        http_parser_init(&p);
        enum http_parse_status st = feed_parse(&p, post_req, k);
        ck_assert_int_eq(st, k == n ? HTTP_DONE : HTTP_NEED_MORE);
        if (k < n)
            st = feed_parse(&p, post_req + k, n - k);
        ck_assert_msg(st == HTTP_DONE, "split at %zu", k);
        check_post(&p);
        http_parser_consume(&p);
        ck_assert(http_parser_empty(&p));
        http_parser_free(&p);
    }
}
END_TEST

START_TEST(post_byte_at_a_time)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_bytewise(&p, post_req, strlen(post_req)), HTTP_DONE);
    check_post(&p);
    http_parser_free(&p);
}
END_TEST

/* A head parsed while its body still arrives: growing the buffer for a big
 * body must carry the parsed fields along. */
START_TEST(big_body_grows_buffer)
{
    size_t body_len = 60000;
    char head[128];
    int hn = snprintf(head, sizeof head,
                      "PUT /big?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                      "X-Tag: kept\r\n\r\n", body_len);
    char *body = malloc(body_len);
    ck_assert_ptr_nonnull(body);
    for (size_t i = 0; i < body_len; i++)
        body[i] = (char)('a' + i % 26);

    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse(&p, head, (size_t)hn), HTTP_NEED_MORE);
    ck_assert_str_eq(p.req.path, "/big");
    for (size_t off = 0; off < body_len; off += 1000) {
        size_t chunk = body_len - off < 1000 ? body_len - off : 1000;
        enum http_parse_status st = feed_parse(&p, body + off, chunk);
        ck_assert_int_eq(st, off + chunk == body_len ? HTTP_DONE : HTTP_NEED_MORE);
    }
    ck_assert_str_eq(p.req.method, "PUT");
    ck_assert_str_eq(p.req.path, "/big");
    ck_assert_str_eq(p.req.query, "x=1");
    ck_assert_str_eq(http_request_header(&p.req, "x-tag"), "kept");
    ck_assert_uint_eq(p.req.body_len, body_len);
    ck_assert_mem_eq(p.req.body, body, body_len);
    ck_assert_int_eq(p.req.body[body_len], '\0');
    http_parser_consume(&p);
    ck_assert(http_parser_empty(&p));
    /* The parser is reusable after the big request. */
    ck_assert_int_eq(feed_parse_str(&p, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_DONE);
    ck_assert_str_eq(p.req.path, "/again");
    http_parser_free(&p);
    free(body);
}
END_TEST

START_TEST(bare_lf_line_endings)
{
    struct http_parser p;
    http_parser_init(&p);
    const char *req = "POST /a HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc";
    ck_assert_int_eq(feed_bytewise(&p, req, strlen(req)), HTTP_DONE);
    ck_assert_str_eq(p.req.path, "/a");
    ck_assert_str_eq(http_request_header(&p.req, "host"), "x");
    ck_assert_str_eq(p.req.body, "abc");
    http_parser_free(&p);

    /* Mixed endings too. */
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.1\r\nHost: x\r\nA: 1\nB: 2\r\n\n"),
                     HTTP_DONE);
    ck_assert_str_eq(http_request_header(&p.req, "a"), "1");
    ck_assert_str_eq(http_request_header(&p.req, "b"), "2");
    http_parser_free(&p);
}
END_TEST

START_TEST(leading_empty_lines_ignored)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "\r\n"), HTTP_NEED_MORE);
    ck_assert(http_parser_empty(&p));
    const char *rest = "\r\n\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(feed_bytewise(&p, rest, strlen(rest)), HTTP_DONE);
    ck_assert_str_eq(p.req.path, "/x");
    http_parser_free(&p);

    /* A client that sends only empty lines is not sending a request. */
    expect_error_str("\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits and malformed input                                          */

START_TEST(huge_header_431)
{
    /* A header value that pushes the head past 8 KiB. */
    size_t n = HTTP_MAX_HEADER_BYTES + 100;
    char *req = malloc(n + 1);
    ck_assert_ptr_nonnull(req);
    strcpy(req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    size_t used = strlen(req);
    memset(req + used, 'a', n - used - 4);
    memcpy(req + n - 4, "\r\n\r\n", 4);
    req[n] = '\0';
    expect_error(req, n, 431);

    /* Without any end of line at all: 431 as soon as 8 KiB arrived. */
    struct http_parser p;
    http_parser_init(&p);
    memset(req, 'G', n);
    ck_assert_int_eq(feed_parse(&p, req, HTTP_MAX_HEADER_BYTES - 1), HTTP_NEED_MORE);
    ck_assert_int_eq(feed_parse(&p, req, 1), HTTP_ERROR);
    ck_assert_int_eq(p.error_status, 431);
    http_parser_free(&p);
    free(req);
}
END_TEST

/* A head of exactly HTTP_MAX_HEADER_BYTES passes; one byte more does not. */
START_TEST(header_limit_boundary)
{
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t n = HTTP_MAX_HEADER_BYTES + extra;
        char *req = malloc(n);
        ck_assert_ptr_nonnull(req);
        const char *start = "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: ";
        size_t sl = strlen(start);
        memcpy(req, start, sl);
        memset(req + sl, 'b', n - sl - 4);
        memcpy(req + n - 4, "\r\n\r\n", 4);
        if (extra == 0) {
            struct http_parser p;
            http_parser_init(&p);
            ck_assert_int_eq(feed_bytewise(&p, req, n), HTTP_DONE);
            ck_assert_uint_eq(strlen(http_request_header(&p.req, "x-fill")),
                              n - sl - 4);
            http_parser_free(&p);
        } else {
            /* Decided at byte 8192, before the last LF even arrives. */
            expect_error(req, n, 431);
        }
        free(req);
    }
}
END_TEST

/* Builds a GET with `count` headers. */
static char *many_headers(int count, size_t *n)
{
    size_t cap = 64 + (size_t)count * 16;
    char *req = malloc(cap);
    ck_assert_ptr_nonnull(req);
    /* Host is one of the count headers (HTTP/1.1 requires it). */
    size_t len = (size_t)sprintf(req, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 1; i < count; i++)
        len += (size_t)sprintf(req + len, "X-H%d: %d\r\n", i, i);
    len += (size_t)sprintf(req + len, "\r\n");
    *n = len;
    return req;
}

START_TEST(too_many_headers_431)
{
    size_t n;
    char *req = many_headers(HTTP_MAX_HEADERS, &n);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse(&p, req, n), HTTP_DONE);
    ck_assert_uint_eq(p.req.num_headers, HTTP_MAX_HEADERS);
    ck_assert_str_eq(http_request_header(&p.req, "x-h63"), "63");
    http_parser_free(&p);
    free(req);

    req = many_headers(HTTP_MAX_HEADERS + 1, &n);
    expect_error(req, n, 431);
    free(req);
}
END_TEST

START_TEST(body_too_large_413_early)
{
    struct http_parser p;
    http_parser_init(&p);
    /* Only the head is sent: the answer must not wait for 70000 bytes. */
    ck_assert_int_eq(feed_parse_str(&p, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                                        "Content-Length: 70000\r\n\r\n"),
                     HTTP_ERROR);
    ck_assert_int_eq(p.error_status, 413);
    ck_assert_str_eq(p.error_detail, "body exceeds 64 KiB");
    /* Sticky: more bytes do not change the answer. */
    http_parser_feed(&p, "xxxx", 4);
    ck_assert_int_eq(http_parser_parse(&p), HTTP_ERROR);
    ck_assert_int_eq(p.error_status, 413);
    http_parser_free(&p);

    expect_error_str("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", 413);
}
END_TEST

START_TEST(body_at_limit_accepted)
{
    size_t n = HTTP_MAX_BODY_BYTES;
    char head[96];
    int hn = snprintf(head, sizeof head,
                      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse(&p, head, (size_t)hn), HTTP_NEED_MORE);
    char *body = calloc(1, n);
    ck_assert_ptr_nonnull(body);
    memset(body, 'z', n);
    ck_assert_int_eq(feed_parse(&p, body, n), HTTP_DONE);
    ck_assert_uint_eq(p.req.body_len, n);
    ck_assert_uint_eq(strlen(p.req.body), n);
    http_parser_free(&p);
    free(body);
}
END_TEST

START_TEST(length_required_411)
{
    expect_error_str("POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n\r\n", 411);
    expect_error_str("PUT /api/exchange_result HTTP/1.1\r\nHost: x\r\n\r\n", 411);
    /* A GET without a length simply has no body. */
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_DONE);
    ck_assert_uint_eq(p.req.body_len, 0);
    http_parser_free(&p);
}
END_TEST

START_TEST(transfer_encoding_501)
{
    expect_error_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n0\r\n\r\n", 501);
    expect_error_str("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     "transfer-encoding: gzip\r\n\r\nhello", 501);
}
END_TEST

static const char *const bad_request_lines[] = {
    "GET /\r\n\r\n",                        /* missing version (HTTP/0.9) */
    "GET\r\n\r\n",                          /* one part */
    "GET / HTTP/1.1 extra\r\n\r\n",         /* four parts */
    "GET  / HTTP/1.1\r\n\r\n",              /* double space */
    " GET / HTTP/1.1\r\nHost: x\r\n\r\n",              /* empty method */
    "get / HTTP/1.1\r\nHost: x\r\n\r\n",               /* lowercase method */
    "G3T / HTTP/1.1\r\n\r\n",               /* digit in method */
    "GET x HTTP/1.1\r\nHost: x\r\n\r\n",               /* target not starting with / */
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",           /* asterisk form */
    "GET http://a/ HTTP/1.1\r\nHost: x\r\n\r\n",       /* absolute form */
    "GET /a\tb HTTP/1.1\r\n\r\n",           /* control char in target */
    "GET /a\x7f HTTP/1.1\r\n\r\n",          /* DEL in target */
    "GET / HTTP/1.1\rX\r\n\r\n",            /* bare CR inside */
    "GET / http/1.1\r\n\r\n",               /* lowercase version */
    "GET / HTTP/1.1x\r\n\r\n",              /* trailing garbage */
    "GET / HTTP/11\r\n\r\n",                /* no dot */
    "GET / HTTP/1.10\r\n\r\n",              /* two-digit minor */
    "GET / FOO/1.1\r\n\r\n",                /* not HTTP */
    "GET / HTTP/1.1 \r\n\r\n",              /* trailing space */
    "\x16\x03\x01\x02\x01\x01\xfc\x03\x03\r\n\r\n", /* TLS hello */
};

START_TEST(malformed_request_line_400)
{
    expect_error_str(bad_request_lines[_i], 400);
}
END_TEST

static const char *const bad_header_lines[] = {
    "GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nHost : x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nHost\t: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n  folded\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\tfolded\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n X: 1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nBad(Name): x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nA: b\x01 c\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n",
};

START_TEST(malformed_header_line_400)
{
    expect_error_str(bad_header_lines[_i], 400);
}
END_TEST

START_TEST(nul_byte_400)
{
    static const char a[] = "GET /a\0b HTTP/1.1\r\n\r\n";
    expect_error(a, sizeof a - 1, 400);
    static const char b[] = "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n";
    expect_error(b, sizeof b - 1, 400);
    static const char c[] = "GET / HTTP/1.1\r\nHost: x\r\nX\0: ab\r\n\r\n";
    expect_error(c, sizeof c - 1, 400);
    /* A NUL in the body is just data. */
    static const char d[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na\0b";
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse(&p, d, sizeof d - 1), HTTP_DONE);
    ck_assert_uint_eq(p.req.body_len, 3);
    ck_assert_mem_eq(p.req.body, "a\0b", 4);
    http_parser_free(&p);
}
END_TEST

START_TEST(version_505)
{
    expect_error_str("GET / HTTP/2.0\r\n\r\n", 505);
    expect_error_str("GET / HTTP/0.9\r\n\r\n", 505);
    expect_error_str("GET / HTTP/1.2\r\n\r\n", 505);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/3.0\r\n\r\n"), HTTP_ERROR);
    ck_assert_str_eq(p.error_detail, "HTTP version not supported");
    http_parser_free(&p);
}
END_TEST

static const char *const bad_lengths[] = {
    "Content-Length: abc\r\n",
    "Content-Length: -1\r\n",
    "Content-Length: +5\r\n",
    "Content-Length: 5x\r\n",
    "Content-Length: 0x10\r\n",
    "Content-Length: 1 2\r\n",
    "Content-Length:\r\n",
    "Content-Length: 5,\r\n",
    "Content-Length: 99999999999999999999999999\r\n",   /* overflows */
    "Content-Length: 5\r\nContent-Length: 6\r\n",       /* conflict */
    "Content-Length: 5, 6\r\n",                         /* conflict in a list */
    "Content-Length: 5\r\nContent-Length: 5, 7\r\n",
};

START_TEST(bad_content_length_400)
{
    char req[256];
    snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: x\r\n%s\r\nhello", bad_lengths[_i]);
    expect_error_str(req, 400);
}
END_TEST

START_TEST(conflicting_length_detail_and_equal_duplicates)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                        "Content-Length: 4\r\n\r\nabcd"),
                     HTTP_ERROR);
    ck_assert_int_eq(p.error_status, 400);
    ck_assert_str_eq(p.error_detail, "conflicting Content-Length headers");
    http_parser_free(&p);

    /* Identical duplicates are one length. */
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                        "content-length: 3 , 3\r\n\r\nabc"),
                     HTTP_DONE);
    ck_assert_str_eq(p.req.body, "abc");
    http_parser_free(&p);

    /* Leading zeros are still digits. */
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 003\r\n"
                                        "\r\nabc"),
                     HTTP_DONE);
    ck_assert_uint_eq(p.req.body_len, 3);
    http_parser_free(&p);
}
END_TEST

START_TEST(error_is_sticky)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "BAD\r\n\r\n"), HTTP_ERROR);
    int status = p.error_status;
    const char *detail = p.error_detail;
    size_t avail;
    ck_assert_ptr_nonnull(http_parser_space(&p, &avail));
    ck_assert_uint_eq(avail, 0);
    http_parser_feed(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    ck_assert_int_eq(http_parser_parse(&p), HTTP_ERROR);
    ck_assert_int_eq(p.error_status, status);
    ck_assert_ptr_eq(p.error_detail, detail);
    http_parser_consume(&p); /* no-op: nothing was parsed */
    ck_assert_int_eq(http_parser_parse(&p), HTTP_ERROR);
    http_parser_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Keep-alive                                                          */

struct keep_alive_case {
    const char *version, *connection; /* connection NULL: no header */
    bool keep_alive;
};

static const struct keep_alive_case keep_alive_cases[] = {
    {"HTTP/1.1", NULL, true},
    {"HTTP/1.1", "close", false},
    {"HTTP/1.1", "Close", false},
    {"HTTP/1.1", "keep-alive", true},
    {"HTTP/1.1", "Upgrade, close", false},
    {"HTTP/1.1", "closed", true},          /* a different token */
    {"HTTP/1.0", NULL, false},
    {"HTTP/1.0", "keep-alive", true},
    {"HTTP/1.0", "Keep-Alive, Upgrade", true},
    {"HTTP/1.0", " upgrade ,KEEP-ALIVE ", true},
    {"HTTP/1.0", "close", false},
    {"HTTP/1.0", "keep-alive, close", false},
    {"HTTP/1.0", "keep-alive-ish", false},
};

START_TEST(keep_alive_rules)
{
    const struct keep_alive_case *c = &keep_alive_cases[_i];
    char req[256];
    if (c->connection != NULL)
        snprintf(req, sizeof req, "GET / %s\r\nHost: x\r\n"
                 "Connection: %s\r\n\r\n", c->version, c->connection);
    else
        snprintf(req, sizeof req, "GET / %s\r\nHost: x\r\n\r\n", c->version);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, req), HTTP_DONE);
    ck_assert_msg(p.req.keep_alive == c->keep_alive, "%s / %s", c->version,
                  c->connection ? c->connection : "(none)");
    http_parser_free(&p);
}
END_TEST

START_TEST(keep_alive_two_connection_headers)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                        "Connection: close\r\n\r\n"),
                     HTTP_DONE);
    ck_assert(!p.req.keep_alive);
    http_parser_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Pipelining                                                          */

static const char pipelined[] =
    "POST /api/exchange_async HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    "GET /second?q=2 HTTP/1.1\r\nHost: h\r\n\r\n"
    "PUT /third HTTP/1.0\r\nContent-Length: 2\r\n\r\nok";

static void check_pipelined(struct http_parser *p)
{
    ck_assert_int_eq(http_parser_parse(p), HTTP_DONE);
    ck_assert_str_eq(p->req.method, "POST");
    ck_assert_str_eq(p->req.path, "/api/exchange_async");
    ck_assert_uint_eq(p->req.body_len, 5);
    ck_assert_str_eq(p->req.body, "hello");
    ck_assert(!http_parser_empty(p));
    http_parser_consume(p);

    ck_assert_int_eq(http_parser_parse(p), HTTP_DONE);
    ck_assert_str_eq(p->req.method, "GET"); /* its 'G' survived the NUL */
    ck_assert_str_eq(p->req.path, "/second");
    ck_assert_str_eq(p->req.query, "q=2");
    ck_assert_str_eq(http_request_header(&p->req, "host"), "h");
    ck_assert_uint_eq(p->req.body_len, 0);
    ck_assert_str_eq(p->req.body, "");
    ck_assert(p->req.keep_alive);
    http_parser_consume(p);

    ck_assert_int_eq(http_parser_parse(p), HTTP_DONE);
    ck_assert_str_eq(p->req.method, "PUT");
    ck_assert_str_eq(p->req.path, "/third");
    ck_assert_str_eq(p->req.body, "ok");
    ck_assert(!p->req.keep_alive);
    http_parser_consume(p);
    ck_assert(http_parser_empty(p));
    ck_assert_int_eq(http_parser_parse(p), HTTP_NEED_MORE);
}

START_TEST(pipelined_in_one_feed)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_uint_eq(http_parser_feed(&p, pipelined, sizeof pipelined - 1),
                      sizeof pipelined - 1);
    check_pipelined(&p);
    http_parser_free(&p);
}
END_TEST

/* Every split of the three requests into two feeds, parsing and consuming
 * as a server would after each feed. */
START_TEST(pipelined_every_split)
{
    size_t n = sizeof pipelined - 1;
    for (size_t k = 0; k <= n; k++) {
        struct http_parser p;
        http_parser_init(&p);
        const char *paths[3];
        int done = 0;
        char got[3][32];
        for (int part = 0; part < 2; part++) {
            const char *s = part == 0 ? pipelined : pipelined + k;
            size_t len = part == 0 ? k : n - k;
            ck_assert_uint_eq(http_parser_feed(&p, s, len), len);
            while (http_parser_parse(&p) == HTTP_DONE) {
                ck_assert_int_lt(done, 3);
                snprintf(got[done], sizeof got[done], "%s %s", p.req.path,
                         p.req.body);
                paths[done] = got[done];
                done++;
                http_parser_consume(&p);
            }
        }
        ck_assert_int_eq(done, 3);
        ck_assert_str_eq(paths[0], "/api/exchange_async hello");
        ck_assert_str_eq(paths[1], "/second ");
        ck_assert_str_eq(paths[2], "/third ok");
        ck_assert(http_parser_empty(&p));
        http_parser_free(&p);
    }
}
END_TEST

/* A CRLF some clients add after a POST body does not count as a request. */
START_TEST(crlf_after_body_is_idle)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                        "\r\nx\r\n"),
                     HTTP_DONE);
    ck_assert_str_eq(p.req.body, "x");
    http_parser_consume(&p);
    ck_assert(http_parser_empty(&p));
    ck_assert_int_eq(http_parser_parse(&p), HTTP_NEED_MORE);
    ck_assert_int_eq(feed_parse_str(&p, "GET /n HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP_DONE);
    ck_assert_str_eq(p.req.path, "/n");
    http_parser_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Expect: 100-continue                                                */

START_TEST(expect_continue)
{
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                                        "Content-Length: 4\r\n"
                                        "Expect: 100-Continue\r\n\r\n"),
                     HTTP_NEED_MORE);
    ck_assert(http_parser_take_continue(&p));
    ck_assert(!http_parser_take_continue(&p)); /* exactly once */
    ck_assert_int_eq(feed_parse_str(&p, "da"), HTTP_NEED_MORE);
    ck_assert(!http_parser_take_continue(&p));
    ck_assert_int_eq(feed_parse_str(&p, "ta"), HTTP_DONE);
    ck_assert_str_eq(p.req.body, "data");
    ck_assert(!http_parser_take_continue(&p));
    http_parser_consume(&p);

    /* Body sent along with the head: nobody is waiting. */
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                        "Expect: 100-continue\r\n\r\nhi"),
                     HTTP_DONE);
    ck_assert(!http_parser_take_continue(&p));
    http_parser_consume(&p);

    /* No body at all: nothing to wait for. */
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                        "Expect: 100-continue\r\n\r\n"),
                     HTTP_DONE);
    ck_assert(!http_parser_take_continue(&p));
    http_parser_consume(&p);

    /* HTTP/1.0 clients never wait for 100 Continue. */
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.0\r\nContent-Length: 2\r\n"
                                        "Expect: 100-continue\r\n\r\n"),
                     HTTP_NEED_MORE);
    ck_assert(!http_parser_take_continue(&p));
    http_parser_free(&p);

    /* Without Expect: no interim response. */
    http_parser_init(&p);
    ck_assert_int_eq(feed_parse_str(&p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"),
                     HTTP_NEED_MORE);
    ck_assert(!http_parser_take_continue(&p));
    http_parser_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Buffer                                                              */

/* Fills the parser with feed() until it takes nothing more. */
static size_t fill(struct http_parser *p, const char *data, size_t n)
{
    size_t total = 0;
    while (total < n) {
        size_t t = http_parser_feed(p, data + total, n - total);
        if (t == 0)
            break;
        total += t;
    }
    return total;
}

START_TEST(full_buffer_gives_done_or_error)
{
    size_t max = HTTP_PARSER_MAX_BUFFER;
    char *data = malloc(max + 10);
    ck_assert_ptr_nonnull(data);

    /* Garbage without a line end: the buffer fills, then 431. */
    memset(data, 'A', max + 10);
    struct http_parser p;
    http_parser_init(&p);
    ck_assert_uint_eq(fill(&p, data, max + 10), max);
    size_t avail = 1;
    ck_assert_ptr_nonnull(http_parser_space(&p, &avail));
    ck_assert_uint_eq(avail, 0);
    ck_assert_int_eq(http_parser_parse(&p), HTTP_ERROR);
    ck_assert_int_eq(p.error_status, 431);
    http_parser_free(&p);

    /* A maximal request (8 KiB head + 64 KiB body) fills it exactly, plus
     * bytes of a next request that do not fit: DONE, body NUL-terminated. */
    const char *start = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\nX-Pad: ";
    size_t sl = strlen(start);
    size_t head = HTTP_MAX_HEADER_BYTES;
    memcpy(data, start, sl);
    memset(data + sl, 'p', head - sl - 4);
    memcpy(data + head - 4, "\r\n\r\n", 4);
    memset(data + head, 'b', HTTP_MAX_BODY_BYTES);
    memcpy(data + max, "GET / HTTP", 10);
    http_parser_init(&p);
    ck_assert_uint_eq(fill(&p, data, max + 10), max);
    ck_assert_ptr_nonnull(http_parser_space(&p, &avail));
    ck_assert_uint_eq(avail, 0);
    ck_assert_int_eq(http_parser_parse(&p), HTTP_DONE);
    ck_assert_uint_eq(p.req.body_len, HTTP_MAX_BODY_BYTES);
    ck_assert_uint_eq(strlen(p.req.body), HTTP_MAX_BODY_BYTES);
    /* After DONE the buffer is frozen until consume. */
    ck_assert_ptr_nonnull(http_parser_space(&p, &avail));
    ck_assert_uint_eq(avail, 0);
    ck_assert_uint_eq(http_parser_feed(&p, "x", 1), 0);
    http_parser_consume(&p);
    ck_assert(http_parser_empty(&p));
    /* The rest arrives now. */
    ck_assert_int_eq(feed_parse(&p, data + max, 10), HTTP_NEED_MORE);
    ck_assert_int_eq(feed_parse_str(&p, "/1.1\r\nHost: x\r\n\r\n"), HTTP_DONE);
    ck_assert_str_eq(p.req.method, "GET");
    http_parser_free(&p);
    free(data);
}
END_TEST

START_TEST(space_and_commit)
{
    struct http_parser p;
    http_parser_init(&p);
    const char *req = "GET /sc HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t n = strlen(req), done = 0;
    while (done < n) {
        size_t avail;
        char *dst = http_parser_space(&p, &avail);
        ck_assert_ptr_nonnull(dst);
        ck_assert_uint_gt(avail, 0);
        size_t chunk = avail < 3 ? avail : 3; /* a short read */
        if (chunk > n - done)
            chunk = n - done;
        memcpy(dst, req + done, chunk);
        http_parser_commit(&p, chunk);
        done += chunk;
        enum http_parse_status st = http_parser_parse(&p);
        ck_assert_int_eq(st, done == n ? HTTP_DONE : HTTP_NEED_MORE);
    }
    ck_assert_str_eq(p.req.path, "/sc");
    http_parser_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Property: the split never changes the answer                        */

/* What a parse ended with, in a comparable form. */
struct outcome {
    enum http_parse_status st;
    int error_status;
    char summary[256];
};

/* Feeds data in chunks of random size (1..max_chunk), parsing after each
 * and consuming every DONE, like a server. Records the first ERROR or the
 * requests seen. */
static void run_chunked(const char *data, size_t n, size_t max_chunk,
                        unsigned *seed, struct outcome *o)
{
    struct http_parser p;
    http_parser_init(&p);
    memset(o, 0, sizeof *o);
    size_t off = 0, used = 0;
    o->st = HTTP_NEED_MORE;
    while (off < n && o->st != HTTP_ERROR) {
        size_t chunk = 1 + (size_t)rand_r(seed) % max_chunk;
        if (chunk > n - off)
            chunk = n - off;
        off += http_parser_feed(&p, data + off, chunk);
        for (;;) {
            o->st = http_parser_parse(&p);
            if (o->st != HTTP_DONE)
                break;
            int w = snprintf(o->summary + used, sizeof o->summary - used,
                             "[%s %s?%s %zu %d %zu]", p.req.method, p.req.path,
                             p.req.query, p.req.num_headers, p.req.keep_alive,
                             p.req.body_len);
            if (w > 0 && (size_t)w < sizeof o->summary - used)
                used += (size_t)w;
            http_parser_consume(&p);
        }
    }
    o->error_status = p.error_status;
    http_parser_free(&p);
}

START_TEST(random_splits_agree)
{
    static const char *const templates[] = {
        "POST /api/exchange_sync?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd"
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET /a HTTP/1.1\nHost: x\nExpect: 100-continue\nContent-Length: 2\n\nhi\r\n"
        "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    };
    static const char noise[] = "\r\n :\t\0/?,A1-";
    unsigned seed = 12345;
    char buf[512];
    for (int iter = 0; iter < 3000; iter++) {
        const char *t = templates[iter % 2];
        size_t n = strlen(t);
        memcpy(buf, t, n);
        /* A few random byte changes, most of them syntax characters. */
        int changes = rand_r(&seed) % 4;
        for (int c = 0; c < changes; c++) {
            size_t at = (size_t)rand_r(&seed) % n;
            buf[at] = rand_r(&seed) % 4 == 0
                          ? (char)(rand_r(&seed) % 256)
                          : noise[(size_t)rand_r(&seed) % (sizeof noise - 1)];
        }
        struct outcome whole, split;
        run_chunked(buf, n, n, &seed, &whole); /* mostly large chunks */
        struct outcome one;
        run_chunked(buf, n, 1, &seed, &one);
        run_chunked(buf, n, 7, &seed, &split);
        ck_assert_int_eq(one.st, split.st);
        ck_assert_int_eq(one.error_status, split.error_status);
        ck_assert_str_eq(one.summary, split.summary);
        ck_assert_int_eq(one.st, whole.st);
        ck_assert_int_eq(one.error_status, whole.error_status);
        ck_assert_str_eq(one.summary, whole.summary);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Responses                                                           */

START_TEST(response_build_exact)
{
    size_t n = 0;
    char *r = http_response_build(200, "{\"status\":\"ok\"}", 15, true, &n);
    ck_assert_ptr_nonnull(r);
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 15\r\n"
                       "Connection: keep-alive\r\n"
                       "\r\n"
                       "{\"status\":\"ok\"}";
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_mem_eq(r, want, n);
    free(r);

    r = http_response_build(404, "{}", 2, false, &n);
    ck_assert_ptr_nonnull(r);
    want = "HTTP/1.1 404 Not Found\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: 2\r\n"
           "Connection: close\r\n"
           "\r\n"
           "{}";
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_mem_eq(r, want, n);
    free(r);

    /* No body at all. */
    r = http_response_build(431, NULL, 0, false, &n);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: 0\r\n"
                        "Connection: close\r\n\r\n");
    free(r);

    /* An extra header line, and a length of many digits (the head is put
     * together by hand, not by snprintf). */
    static char big[1234567];
    memset(big, 'x', sizeof big);
    r = http_response_build_with(503, "Retry-After: 1\r\n", big, sizeof big,
                                 true, &n);
    ck_assert_ptr_nonnull(r);
    want = "HTTP/1.1 503 Service Unavailable\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: 1234567\r\n"
           "Connection: keep-alive\r\n"
           "Retry-After: 1\r\n"
           "\r\n";
    ck_assert_uint_eq(n, strlen(want) + sizeof big);
    ck_assert_mem_eq(r, want, strlen(want));
    ck_assert_mem_eq(r + strlen(want), big, sizeof big);
    ck_assert(r[n] == '\0');
    free(r);
}
END_TEST

START_TEST(status_texts)
{
    static const int statuses[] = {100, 200, 400, 403, 404, 405, 408, 411,
                                   413, 431, 500, 501, 503, 505};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        const char *t = http_status_text(statuses[i]);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_ne(t, "Unknown");
    }
    ck_assert_str_eq(http_status_text(200), "OK");
    ck_assert_str_eq(http_status_text(405), "Method Not Allowed");
    ck_assert_str_eq(http_status_text(505), "HTTP Version Not Supported");
    ck_assert_str_eq(http_status_text(799), "Unknown");
    ck_assert_str_eq(HTTP_CONTINUE_RESPONSE, "HTTP/1.1 100 Continue\r\n\r\n");
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

int main(void)
{
    Suite *s = suite_create("http");

    TCase *tc = tcase_create("parse");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, simple_get);
    tcase_add_test(tc, path_without_query);
    tcase_add_test(tc, post_every_split);
    tcase_add_test(tc, post_byte_at_a_time);
    tcase_add_test(tc, big_body_grows_buffer);
    tcase_add_test(tc, bare_lf_line_endings);
    tcase_add_test(tc, leading_empty_lines_ignored);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, huge_header_431);
    tcase_add_test(tc, header_limit_boundary);
    tcase_add_test(tc, too_many_headers_431);
    tcase_add_test(tc, body_too_large_413_early);
    tcase_add_test(tc, body_at_limit_accepted);
    tcase_add_test(tc, length_required_411);
    tcase_add_test(tc, host_is_required_once);
    tcase_add_test(tc, transfer_encoding_501);
    tcase_add_loop_test(tc, malformed_request_line_400, 0, COUNT(bad_request_lines));
    tcase_add_loop_test(tc, malformed_header_line_400, 0, COUNT(bad_header_lines));
    tcase_add_test(tc, nul_byte_400);
    tcase_add_test(tc, version_505);
    tcase_add_loop_test(tc, bad_content_length_400, 0, COUNT(bad_lengths));
    tcase_add_test(tc, conflicting_length_detail_and_equal_duplicates);
    tcase_add_test(tc, error_is_sticky);
    suite_add_tcase(s, tc);

    tc = tcase_create("connection");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, keep_alive_rules, 0, COUNT(keep_alive_cases));
    tcase_add_test(tc, keep_alive_two_connection_headers);
    tcase_add_test(tc, pipelined_in_one_feed);
    tcase_add_test(tc, pipelined_every_split);
    tcase_add_test(tc, crlf_after_body_is_idle);
    tcase_add_test(tc, expect_continue);
    suite_add_tcase(s, tc);

    tc = tcase_create("buffer_and_response");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, full_buffer_gives_done_or_error);
    tcase_add_test(tc, space_and_commit);
    tcase_add_test(tc, random_splits_agree);
    tcase_add_test(tc, response_build_exact);
    tcase_add_test(tc, status_texts);
    suite_add_tcase(s, tc);

    return harness_run(s);
}
