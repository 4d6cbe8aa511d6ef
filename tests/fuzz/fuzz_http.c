/* fuzz_http: libFuzzer target for the request parser (common/http.c).
 *
 * The input is what one client sends on one connection. It is parsed twice,
 * the two ways the stages read:
 *   pass 1 reads straight into the parser (http_parser_space + commit) in
 *          the largest chunks that fit, like a read(2) with a big buffer;
 *   pass 2 copies it in (http_parser_feed) in small chunks whose sizes come
 *          from a PRNG seeded with the input (often one byte), parsing after
 *          every chunk and sending "100 Continue" when owed, like a server
 *          under a slow client.
 * After each DONE the request is checked, answered (http_response_build) and
 * consumed, and parsing goes on with the pipelined rest; an ERROR ends the
 * stream, as the server then closes.
 *
 * What must hold:
 * - both passes tell the same story (http.h: "in any split ... the same
 *   answer"): the same requests at the same stream offsets, the same error;
 * - a DONE request is sane: method A-Z, path "/...", header names tokens,
 *   values trimmed and free of control bytes, every string NUL-terminated
 *   inside the head, body_len <= HTTP_MAX_BODY_BYTES and equal to
 *   Content-Length, body bytes equal to the input's at that offset;
 * - an ERROR has one of the documented statuses and a detail, and sticks;
 * - NEED_MORE always leaves room to read (else a server would wait forever);
 * - "100 Continue" is owed only to an HTTP/1.1 request with Expect whose
 *   body has not fully arrived, and at most once.
 *
 * Build and run: make fuzz (tests/fuzz/fuzz.mk). The same checks run
 * without libFuzzer in tests/test_fuzz_regressions.c. */
#include "fuzz_common.h"

#include <string.h>
#include <strings.h>

#include "http.h"

/* One thing that happened on the connection, for comparing the passes. */
struct fh_event {
    int kind;          /* HTTP_DONE or HTTP_ERROR */
    size_t offset;     /* stream offset of the request's first byte */
    uint64_t what;     /* DONE: fingerprint of the request; ERROR: status */
};

struct fh_story {
    struct fh_event *ev;
    size_t n, cap;
    enum http_parse_status last; /* how the stream ended */
    size_t end_offset;           /* where the unfinished request starts */
};

static void fh_record(struct fh_story *s, int kind, size_t offset,
                      uint64_t what)
{
    FUZZ_CHECK(s->n < s->cap, "more events than the input can hold");
    s->ev[s->n++] = (struct fh_event){kind, offset, what};
}

/* ---- checks on one request ------------------------------------------- */

/* s must point into the head and end with a NUL before the head's last
 * byte (that byte is borrowed while a pipelined request follows). */
static void fh_check_head_string(const struct http_parser *p, const char *s,
                                 const char *what)
{
    const char *head_end = p->buf + p->head_len - 1;
    FUZZ_CHECK(s != NULL && s >= p->buf && s < head_end,
               "%s points outside the head", what);
    FUZZ_CHECK(memchr(s, '\0', (size_t)(head_end - s)) != NULL,
               "%s is not NUL-terminated inside the head", what);
}

static bool fh_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void fh_check_request_line(const struct http_request *r)
{
    FUZZ_CHECK(r->method[0] != '\0', "empty method");
    for (const char *c = r->method; *c; c++)
        FUZZ_CHECK(*c >= 'A' && *c <= 'Z', "method byte 0x%02x",
                   (unsigned char)*c);
    FUZZ_CHECK(r->path[0] == '/', "path does not start with '/'");
    for (const unsigned char *c = (const unsigned char *)r->path; *c; c++)
        FUZZ_CHECK(*c > ' ' && *c != 0x7f && *c != '?',
                   "path byte 0x%02x", *c);
    for (const unsigned char *c = (const unsigned char *)r->query; *c; c++)
        FUZZ_CHECK(*c > ' ' && *c != 0x7f, "query byte 0x%02x", *c);
    FUZZ_CHECK(r->minor_version == 0 || r->minor_version == 1,
               "minor version %d", r->minor_version);
}

static void fh_check_header(const struct http_header *h)
{
    FUZZ_CHECK(h->name[0] != '\0', "empty header name");
    for (const unsigned char *c = (const unsigned char *)h->name; *c; c++)
        FUZZ_CHECK(fh_is_tchar(*c), "header name byte 0x%02x", *c);
    size_t n = strlen(h->value);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h->value[i];
        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f),
                   "header value byte 0x%02x", c);
    }
    if (n > 0) {
        FUZZ_CHECK(h->value[0] != ' ' && h->value[0] != '\t',
                   "header value not trimmed on the left");
        FUZZ_CHECK(h->value[n - 1] != ' ' && h->value[n - 1] != '\t',
                   "header value not trimmed on the right");
    }
}

/* Content-Length as a reader would take it: the first element of the first
 * such header (the parser already refused any disagreement). */
static bool fh_content_length(const struct http_request *r, size_t *out)
{
    const char *v = http_request_header(r, "Content-Length");
    if (v == NULL)
        return false;
    size_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++)
        n = n * 10 + (size_t)(*v - '0'); /* <= 64 KiB, checked by caller */
    *out = n;
    return true;
}

static void fh_check_framing(const struct http_parser *p)
{
    const struct http_request *r = &p->req;
    FUZZ_CHECK(r->body_len <= HTTP_MAX_BODY_BYTES, "body_len %zu",
               r->body_len);
    FUZZ_CHECK(r->body_len == p->body_len, "body_len disagrees");
    FUZZ_CHECK(p->head_len <= HTTP_MAX_HEADER_BYTES, "head_len %zu",
               p->head_len);
    FUZZ_CHECK(p->head_len + r->body_len <= p->len, "request past the data");
    FUZZ_CHECK(r->num_headers <= HTTP_MAX_HEADERS, "%zu headers",
               r->num_headers);
    FUZZ_CHECK(http_request_header(r, "Transfer-Encoding") == NULL,
               "a request with Transfer-Encoding was accepted");
    size_t cl = 0;
    if (fh_content_length(r, &cl))
        FUZZ_CHECK(cl == r->body_len, "Content-Length %zu, body %zu", cl,
                   r->body_len);
    else
        FUZZ_CHECK(r->body_len == 0, "a body without Content-Length");
    if (http_request_header(r, "Connection") == NULL)
        FUZZ_CHECK(r->keep_alive == (r->minor_version == 1),
                   "keep-alive default wrong for HTTP/1.%d",
                   r->minor_version);
}

/* The body: where the parser says, NUL-terminated, and the very bytes the
 * client sent after the head. */
static void fh_check_body(const struct http_parser *p, const uint8_t *data,
                          size_t offset)
{
    const struct http_request *r = &p->req;
    FUZZ_CHECK(r->body == p->buf + p->head_len, "body not after the head");
    FUZZ_CHECK(r->body[r->body_len] == '\0', "body not NUL-terminated");
    FUZZ_CHECK(memcmp(r->body, data + offset + p->head_len, r->body_len) == 0,
               "body bytes differ from the input");
}

/* A server answers every request; the answer must frame the body exactly. */
static void fh_check_response(const struct http_request *r)
{
    size_t len = 0;
    char *resp = http_response_build(200, r->body, r->body_len, r->keep_alive,
                                     &len);
    FUZZ_CHECK(resp != NULL, "http_response_build failed");
    FUZZ_CHECK(len >= r->body_len && strncmp(resp, "HTTP/1.1 200 OK\r\n", 17)
               == 0, "bad response head");
    const char *blank = strstr(resp, "\r\n\r\n");
    FUZZ_CHECK(blank != NULL && (size_t)(blank + 4 - resp) + r->body_len == len,
               "response length does not frame the body");
    FUZZ_CHECK(memcmp(blank + 4, r->body, r->body_len) == 0,
               "response body differs");
    free(resp);
}

static uint64_t fh_fingerprint(const struct http_request *r)
{
    uint64_t h = FUZZ_HASH_INIT;
    h = fuzz_hash(h, r->method, strlen(r->method) + 1);
    h = fuzz_hash(h, r->path, strlen(r->path) + 1);
    h = fuzz_hash(h, r->query, strlen(r->query) + 1);
    for (size_t i = 0; i < r->num_headers; i++) {
        h = fuzz_hash(h, r->headers[i].name, strlen(r->headers[i].name) + 1);
        h = fuzz_hash(h, r->headers[i].value, strlen(r->headers[i].value) + 1);
    }
    int flags[3] = {r->minor_version, r->keep_alive, (int)r->num_headers};
    h = fuzz_hash(h, flags, sizeof flags);
    return fuzz_hash(h, r->body, r->body_len);
}

/* Everything about a DONE request; returns its fingerprint. */
static uint64_t fh_check_done(struct http_parser *p, const uint8_t *data,
                              size_t offset)
{
    const struct http_request *r = &p->req;
    fh_check_head_string(p, r->method, "method");
    fh_check_head_string(p, r->path, "path");
    fh_check_head_string(p, r->query, "query");
    for (size_t i = 0; i < r->num_headers; i++) {
        fh_check_head_string(p, r->headers[i].name, "header name");
        fh_check_head_string(p, r->headers[i].value, "header value");
        fh_check_header(&r->headers[i]);
    }
    fh_check_request_line(r);
    fh_check_framing(p);
    fh_check_body(p, data, offset);
    uint64_t fp = fh_fingerprint(r);
    /* Asking again before consume gives the same request, untouched. */
    FUZZ_CHECK(http_parser_parse(p) == HTTP_DONE, "DONE did not stick");
    FUZZ_CHECK(fh_fingerprint(r) == fp, "request changed on a second parse");
    size_t avail = 1;
    FUZZ_CHECK(http_parser_space(p, &avail) != NULL && avail == 0,
               "buffer not frozen after DONE");
    FUZZ_CHECK(!http_parser_take_continue(p), "100 Continue owed after DONE");
    fh_check_response(r);
    return fp;
}

static void fh_check_error(struct http_parser *p)
{
    int s = p->error_status;
    FUZZ_CHECK(s == 400 || s == 411 || s == 413 || s == 431 || s == 501 ||
                   s == 505, "undocumented error status %d", s);
    FUZZ_CHECK(p->error_detail != NULL && p->error_detail[0] != '\0',
               "error %d without a detail", s);
    FUZZ_CHECK(http_parser_parse(p) == HTTP_ERROR, "ERROR did not stick");
    size_t avail = 1;
    FUZZ_CHECK(http_parser_space(p, &avail) != NULL && avail == 0,
               "buffer not frozen after ERROR");
    /* The answer a server sends before it closes. */
    size_t len = 0;
    char *resp = http_response_build(s, p->error_detail,
                                     strlen(p->error_detail), false, &len);
    char want[64];
    int n = snprintf(want, sizeof want, "HTTP/1.1 %d %s\r\n", s,
                     http_status_text(s));
    FUZZ_CHECK(resp != NULL && strncmp(resp, want, (size_t)n) == 0 &&
                   strcmp(http_status_text(s), "Unknown") != 0,
               "bad status line for %d", s);
    FUZZ_CHECK(strstr(resp, "Connection: close\r\n") != NULL,
               "error answer does not close");
    free(resp);
}

/* NEED_MORE with nothing arrived but empty lines is an idle connection. */
static void fh_check_empty(const struct http_parser *p, const uint8_t *data,
                           size_t from, size_t to)
{
    bool blank = true;
    for (size_t i = from; i < to; i++)
        if (data[i] != '\r' && data[i] != '\n')
            blank = false;
    FUZZ_CHECK(http_parser_empty(p) == blank, "http_parser_empty is %d",
               !blank);
}

/* ---- the two passes ---------------------------------------------------- */

/* Handles a DONE or ERROR; returns true if the stream goes on. */
static bool fh_step(struct http_parser *p, enum http_parse_status st,
                    const uint8_t *data, size_t *start, struct fh_story *s)
{
    if (st == HTTP_DONE) {
        uint64_t fp = fh_check_done(p, data, *start);
        fh_record(s, HTTP_DONE, *start, fp);
        *start += p->head_len + p->body_len;
        http_parser_consume(p);
        return true;
    }
    fh_check_error(p);
    fh_record(s, HTTP_ERROR, *start, (uint64_t)p->error_status);
    return false;
}

/* Pass 1: read(2)-like, straight into the parser, big chunks. */
static void fh_pass_direct(const uint8_t *data, size_t size,
                           struct fh_story *s)
{
    struct http_parser p;
    http_parser_init(&p);
    size_t pos = 0, start = 0;
    for (;;) {
        enum http_parse_status st = http_parser_parse(&p);
        if (st != HTTP_NEED_MORE) {
            if (fh_step(&p, st, data, &start, s))
                continue;
            break;
        }
        size_t avail = 0;
        char *space = http_parser_space(&p, &avail);
        FUZZ_CHECK(space != NULL, "http_parser_space: out of memory");
        FUZZ_CHECK(avail > 0, "NEED_MORE with a full buffer: a server "
                              "would wait forever");
        if (pos == size) {
            fh_check_empty(&p, data, start, pos);
            break;
        }
        size_t n = size - pos < avail ? size - pos : avail;
        memcpy(space, data + pos, n);
        http_parser_commit(&p, n);
        pos += n;
    }
    s->last = http_parser_parse(&p);
    s->end_offset = start;
    http_parser_free(&p);
}

/* Chunk sizes for pass 2: mostly tiny, sometimes large. */
static size_t fh_chunk(uint64_t *rng)
{
    uint64_t r = fuzz_rand(rng);
    switch (r & 3) {
    case 0: return 1;
    case 1: return 1 + (size_t)((r >> 8) % 8);
    case 2: return 1 + (size_t)((r >> 8) % 300);
    default: return 1 + (size_t)((r >> 8) % 20000);
    }
}

/* "100 Continue" is owed only to a waiting HTTP/1.1 client with Expect. */
static void fh_check_continue(const struct http_parser *p, size_t start,
                              size_t pos, bool *sent)
{
    FUZZ_CHECK(!*sent, "100 Continue owed twice for one request");
    *sent = true;
    const struct http_request *r = &p->req;
    FUZZ_CHECK(p->head_done, "100 Continue before the head is parsed");
    bool expect = false;
    for (size_t i = 0; i < r->num_headers; i++)
        if (strcasecmp(r->headers[i].name, "Expect") == 0 &&
            strcasecmp(r->headers[i].value, "100-continue") == 0)
            expect = true;
    FUZZ_CHECK(expect, "100 Continue without Expect: 100-continue");
    FUZZ_CHECK(r->minor_version == 1, "100 Continue to HTTP/1.0");
    FUZZ_CHECK(p->body_len > 0 && pos < start + p->head_len + p->body_len,
               "100 Continue with the body already here");
}

/* Pass 2: copied in small random chunks, a server's habits included. */
static void fh_pass_feed(const uint8_t *data, size_t size, struct fh_story *s)
{
    uint64_t rng = fuzz_hash(FUZZ_HASH_INIT, data, size);
    struct http_parser p;
    http_parser_init(&p);
    size_t pos = 0, start = 0;
    bool continue_sent = false;
    for (;;) {
        enum http_parse_status st = http_parser_parse(&p);
        if (st != HTTP_NEED_MORE) {
            continue_sent = false;
            if (fh_step(&p, st, data, &start, s))
                continue;
            break;
        }
        if (http_parser_take_continue(&p))
            fh_check_continue(&p, start, pos, &continue_sent);
        if (pos == size) {
            fh_check_empty(&p, data, start, pos);
            break;
        }
        size_t want = fh_chunk(&rng);
        if (want > size - pos)
            want = size - pos;
        size_t n = http_parser_feed(&p, data + pos, want);
        FUZZ_CHECK(n > 0, "NEED_MORE but the parser takes no bytes");
        pos += n;
    }
    s->last = http_parser_parse(&p);
    s->end_offset = start;
    http_parser_free(&p);
}

static void fh_compare(const struct fh_story *a, const struct fh_story *b)
{
    FUZZ_CHECK(a->n == b->n, "the splits disagree: %zu vs %zu events", a->n,
               b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct fh_event *x = &a->ev[i], *y = &b->ev[i];
        FUZZ_CHECK(x->kind == y->kind && x->offset == y->offset &&
                       x->what == y->what,
                   "the splits disagree at event %zu (offset %zu / %zu, "
                   "kind %d / %d, %llu / %llu)", i, x->offset, y->offset,
                   x->kind, y->kind, (unsigned long long)x->what,
                   (unsigned long long)y->what);
    }
    FUZZ_CHECK(a->last == b->last && a->end_offset == b->end_offset,
               "the splits end differently");
}

int fuzz_http_input(const uint8_t *data, size_t size)
{
    /* The shortest request, "A / HTTP/1.0\n\n", is 14 bytes. */
    size_t cap = size / 14 + 2;
    struct fh_story a = {calloc(cap, sizeof *a.ev), 0, cap, HTTP_NEED_MORE, 0};
    struct fh_story b = {calloc(cap, sizeof *b.ev), 0, cap, HTTP_NEED_MORE, 0};
    FUZZ_CHECK(a.ev != NULL && b.ev != NULL, "out of memory");
    fh_pass_direct(data, size, &a);
    fh_pass_feed(data, size, &b);
    fh_compare(&a, &b);
    free(a.ev);
    free(b.ev);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_http_input(data, size);
}
#endif
