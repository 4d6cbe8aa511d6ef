/* http: an incremental HTTP/1.1 request parser and a response writer.
 *
 * How the parser works, in three steps per request:
 *
 *   1. Find the end of the head (request line + headers): the first empty
 *      line. Bytes may arrive one at a time, so p->scanned remembers how far
 *      the search got; each call only looks at the new bytes (plus the two
 *      before them, since the terminator "\n\r\n" is three bytes long).
 *   2. Parse the head in place, once, when it is complete: the separators
 *      (' ', ':', CR, LF) are overwritten with NULs so method, path, query,
 *      header names and values become C strings inside the buffer. The
 *      limits that can be decided from the head (413, 411, 501, ...) are
 *      decided here, before any of the body is waited for.
 *   3. Wait until Content-Length bytes of body have arrived, NUL-terminate
 *      the body and answer DONE.
 *
 * The buffer. p->cap counts the bytes a client may fill; one more byte is
 * always allocated behind them so the body's NUL fits even when the request
 * ends exactly at the end of a full buffer. A client therefore never gets
 * more than HTTP_PARSER_MAX_BUFFER bytes, and the terminator never needs a
 * byte of its own.
 *
 * Pipelining. When the next request's bytes follow the body, the body's NUL
 * lands on the next request's first byte. That byte is kept in the last byte
 * of the head (the LF of the empty line, which nothing points at) and put
 * back by http_parser_consume.
 *
 * After DONE (until consume) and after ERROR the buffer is frozen:
 * http_parser_space reports avail 0 and nothing is reallocated, so the
 * pointers in p->req stay valid and the body's NUL is not overwritten.
 * Before DONE the buffer may still grow while a body arrives; the fields of
 * an already parsed head are then moved along (read them from p->req, do not
 * keep copies). A buffer that a big request grew is freed again once it is
 * empty, so idle keep-alive connections hold no memory beyond the struct. */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 9112 2.2: a server SHOULD ignore at least one empty line before the
 * request line (some clients send a CRLF after a POST body). A few are
 * tolerated; an endless stream of them is not a request. */
#define HTTP_MAX_LEADING_EMPTY_LINES 4

/* ------------------------------------------------------------------ */
/* Small character classes. Arguments are unsigned char values, so no  */
/* <ctype.h> pitfalls (negative chars) and no locale surprises.        */

static bool http_is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Control characters (CTL in RFC 5234): 0x00-0x1F and DEL. */
static bool http_is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

static bool http_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* tchar (RFC 9110 5.6.2): what header names are made of. */
static bool http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || http_is_digit(c))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* ------------------------------------------------------------------ */
/* State helpers                                                       */

/* Records why the request is refused. Every later parse answers ERROR:
 * after a framing error the stream cannot be trusted any more. */
static enum http_parse_status http_fail(struct http_parser *p, int status,
                                        const char *detail)
{
    p->error_status = status;
    p->error_detail = detail;
    return HTTP_ERROR;
}

/* True once a request is complete and not yet consumed: req.body is set at
 * DONE and cleared by consume, so it doubles as the "done" flag. */
static bool http_parser_done(const struct http_parser *p)
{
    return p->req.body != NULL;
}

/* Bytes a client may still add. Zero while frozen (done or failed). */
static size_t http_parser_room(const struct http_parser *p)
{
    if (p->error_status != 0 || http_parser_done(p))
        return 0;
    return p->cap - p->len;
}

/* Forgets the request just handled; keeps the buffer and its bytes. */
static void http_parser_reset_request(struct http_parser *p)
{
    p->scanned = 0;
    p->head_len = 0;
    p->body_len = 0;
    p->head_done = false;
    p->continue_owed = false;
    memset(&p->req, 0, sizeof p->req);
}

/* Moves one pointer of p->req from the old buffer to the new one. */
static const char *http_rebase(const char *ptr, const char *old_buf,
                               char *new_buf)
{
    return ptr == NULL ? NULL : new_buf + (ptr - old_buf);
}

/* Grows the buffer to new_cap client bytes (+1 for the body's NUL).
 * malloc + copy + free instead of realloc: the old buffer must still be
 * alive while the pointers of an already parsed head are moved over
 * (a head can be parsed while its body is still arriving). */
static bool http_parser_grow(struct http_parser *p, size_t new_cap)
{
    char *nb = malloc(new_cap + 1);
    if (nb == NULL) {
        errno = ENOMEM;
        return false;
    }
    if (p->buf != NULL)
        memcpy(nb, p->buf, p->len);
    if (p->head_done) {
        struct http_request *r = &p->req;
        r->method = http_rebase(r->method, p->buf, nb);
        r->path = http_rebase(r->path, p->buf, nb);
        r->query = http_rebase(r->query, p->buf, nb);
        for (size_t i = 0; i < r->num_headers; i++) {
            r->headers[i].name = http_rebase(r->headers[i].name, p->buf, nb);
            r->headers[i].value = http_rebase(r->headers[i].value, p->buf, nb);
        }
    }
    free(p->buf);
    p->buf = nb;
    p->cap = new_cap;
    return true;
}

/* ------------------------------------------------------------------ */
/* Buffer API                                                          */

void http_parser_init(struct http_parser *p)
{
    /* No allocation here (init cannot report ENOMEM): the first
     * http_parser_space allocates. */
    memset(p, 0, sizeof *p);
}

void http_parser_free(struct http_parser *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

char *http_parser_space(struct http_parser *p, size_t *avail)
{
    *avail = 0;
    if (p->buf == NULL && !http_parser_grow(p, HTTP_PARSER_INITIAL_CAP))
        return NULL;
    /* Frozen: a valid pointer with nothing to write (see the top comment). */
    if (p->error_status != 0 || http_parser_done(p))
        return p->buf + p->len;
    /* Grow only when full, doubling, up to one maximal request. */
    if (p->len == p->cap && p->cap < HTTP_PARSER_MAX_BUFFER) {
        size_t new_cap = p->cap * 2;
        if (new_cap > HTTP_PARSER_MAX_BUFFER)
            new_cap = HTTP_PARSER_MAX_BUFFER;
        if (!http_parser_grow(p, new_cap))
            return NULL;
    }
    *avail = p->cap - p->len;
    return p->buf + p->len;
}

void http_parser_commit(struct http_parser *p, size_t n)
{
    /* A caller bug (committing more than space offered) must not push len
     * past the buffer: clamp rather than corrupt. */
    size_t room = http_parser_room(p);
    p->len += n < room ? n : room;
}

size_t http_parser_feed(struct http_parser *p, const void *data, size_t n)
{
    const char *src = data;
    size_t taken = 0;
    while (taken < n) {
        size_t avail;
        char *dst = http_parser_space(p, &avail);
        if (dst == NULL || avail == 0)
            break;
        size_t chunk = n - taken < avail ? n - taken : avail;
        memcpy(dst, src + taken, chunk);
        http_parser_commit(p, chunk);
        taken += chunk;
    }
    return taken;
}

bool http_parser_empty(const struct http_parser *p)
{
    /* Stray empty lines between requests are not the start of one. */
    for (size_t i = 0; i < p->len; i++)
        if (p->buf[i] != '\r' && p->buf[i] != '\n')
            return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* Step 1: where does the head end?                                    */

/* Skips the empty lines allowed before the request line. Sets *start to the
 * request line's first byte; NEED_MORE while only empty lines (or a lone
 * trailing CR) have arrived. */
static enum http_parse_status http_skip_empty_lines(struct http_parser *p,
                                                    size_t *start)
{
    const char *b = p->buf;
    size_t i = 0;
    for (int lines = 0;; lines++) {
        size_t next;
        if (i < p->len && b[i] == '\n')
            next = i + 1;
        else if (i + 1 < p->len && b[i] == '\r' && b[i + 1] == '\n')
            next = i + 2;
        else if (i + 1 == p->len && b[i] == '\r')
            return HTTP_NEED_MORE; /* CR LF or CR garbage? wait and see */
        else
            break;
        if (lines == HTTP_MAX_LEADING_EMPTY_LINES)
            return http_fail(p, 400, "too many empty lines before the request");
        i = next;
    }
    if (i == p->len)
        return HTTP_NEED_MORE;
    *start = i;
    return HTTP_DONE;
}

/* Looks for the empty line that ends the head, only in bytes not searched
 * before. A head must fit in HTTP_MAX_HEADER_BYTES (counted from the start
 * of the buffer, empty lines before the request included), so nothing past
 * that is searched: if the end is not there, the answer is 431 whatever
 * follows. On DONE p->head_len is set and *start is where the request
 * line begins. */
static enum http_parse_status http_find_head_end(struct http_parser *p,
                                                 size_t *start_out)
{
    size_t start;
    enum http_parse_status st = http_skip_empty_lines(p, &start);
    if (st != HTTP_DONE)
        return st;
    *start_out = start;

    const char *b = p->buf;
    size_t limit = p->len < HTTP_MAX_HEADER_BYTES ? p->len
                                                  : HTTP_MAX_HEADER_BYTES;
    /* The terminator is "\n\n" or "\n\r\n": a '\n' seen last time in the
     * final two bytes may only now be followed by the rest of it. */
    size_t from = p->scanned >= 2 ? p->scanned - 2 : 0;
    if (from < start)
        from = start;
    while (from < limit) {
        const char *nl = memchr(b + from, '\n', limit - from);
        if (nl == NULL)
            break;
        size_t i = (size_t)(nl - b);
        if (i + 1 < limit && b[i + 1] == '\n') {
            p->head_len = i + 2;
            return HTTP_DONE;
        }
        if (i + 2 < limit && b[i + 1] == '\r' && b[i + 2] == '\n') {
            p->head_len = i + 3;
            return HTTP_DONE;
        }
        from = i + 1;
    }
    p->scanned = limit;
    if (p->len >= HTTP_MAX_HEADER_BYTES)
        return http_fail(p, 431, "header section exceeds 8 KiB");
    return HTTP_NEED_MORE;
}

/* ------------------------------------------------------------------ */
/* Step 2: parse the head in place                                     */

/* Cuts the next line out of the head: returns its first byte, sets *n to
 * its length without CR LF / LF and moves *pos past it. The head always
 * ends with '\n', so a line end is always found. */
static char *http_next_line(char *buf, size_t *pos, size_t end, size_t *n)
{
    char *line = buf + *pos;
    char *nl = memchr(line, '\n', end - *pos);
    size_t len = (size_t)(nl - line);
    *pos += len + 1;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    *n = len;
    return line;
}

/* "HTTP/1.1" -> minor version; 505 for a well-formed other version. */
static enum http_parse_status http_parse_version(struct http_parser *p,
                                                 const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 ||
        !http_is_digit((unsigned char)v[5]) || v[6] != '.' ||
        !http_is_digit((unsigned char)v[7]))
        return http_fail(p, 400, "HTTP version is malformed");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return http_fail(p, 505, "HTTP version not supported");
    p->req.minor_version = v[7] - '0';
    return HTTP_DONE;
}

/* "METHOD SP target SP HTTP/1.1": exactly three parts, single spaces. */
static enum http_parse_status http_parse_request_line(struct http_parser *p,
                                                      char *line, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (http_is_ctl((unsigned char)line[i]))
            return http_fail(p, 400, "control character in the request line");

    char *sp1 = memchr(line, ' ', n);
    if (sp1 == NULL)
        return http_fail(p, 400, "request line is malformed");
    char *target = sp1 + 1;
    char *end = line + n;
    char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (sp2 == NULL || memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1)) != NULL)
        return http_fail(p, 400, "request line is malformed");

    /* Methods are tokens; every method this toolkit knows is uppercase
     * letters, and accepting only those keeps garbage out early. */
    if (sp1 == line)
        return http_fail(p, 400, "request method is malformed");
    for (char *c = line; c < sp1; c++)
        if (*c < 'A' || *c > 'Z')
            return http_fail(p, 400, "request method is malformed");

    /* Origin form only: no "*", no absolute URLs (this is not a proxy). */
    if (sp2 == target || *target != '/')
        return http_fail(p, 400, "request target must start with '/'");

    enum http_parse_status st =
        http_parse_version(p, sp2 + 1, (size_t)(end - sp2 - 1));
    if (st != HTTP_DONE)
        return st;

    *sp1 = '\0';
    *sp2 = '\0';
    char *q = memchr(target, '?', (size_t)(sp2 - target));
    p->req.method = line;
    p->req.path = target;
    if (q != NULL) {
        *q = '\0';
        p->req.query = q + 1;
    } else {
        p->req.query = sp2; /* the NUL just written: "" inside the buffer */
    }
    return HTTP_DONE;
}

/* "Name: value": stores the header with the value trimmed of SP/HT. */
static enum http_parse_status http_parse_header_line(struct http_parser *p,
                                                     char *line, size_t n)
{
    struct http_request *r = &p->req;
    if (http_is_ows((unsigned char)line[0]))
        return http_fail(p, 400, "obsolete line folding is not supported");
    char *colon = memchr(line, ':', n);
    if (colon == NULL)
        return http_fail(p, 400, "header line has no colon");
    if (colon == line)
        return http_fail(p, 400, "header name is empty");
    /* RFC 9112 5.1: whitespace before the colon MUST be rejected; proxies
     * disagree on what it means (request smuggling). */
    if (http_is_ows((unsigned char)colon[-1]))
        return http_fail(p, 400, "whitespace before the colon in a header");
    for (char *c = line; c < colon; c++)
        if (!http_is_tchar((unsigned char)*c))
            return http_fail(p, 400, "header name is malformed");

    char *v = colon + 1, *ve = line + n;
    while (v < ve && http_is_ows((unsigned char)*v))
        v++;
    while (ve > v && http_is_ows((unsigned char)ve[-1]))
        ve--;
    for (char *c = v; c < ve; c++)
        if (*c != '\t' && http_is_ctl((unsigned char)*c))
            return http_fail(p, 400, "control character in a header value");

    if (r->num_headers == HTTP_MAX_HEADERS)
        return http_fail(p, 431, "more than 64 headers");
    *colon = '\0';
    *ve = '\0'; /* at most line[n]: the CR or LF, still inside the head */
    r->headers[r->num_headers].name = line;
    r->headers[r->num_headers].value = v;
    r->num_headers++;
    return HTTP_DONE;
}

/* Walks a comma-separated list (Connection, Content-Length) calling fn on
 * each element trimmed of SP/HT. Stops early when fn returns false. */
static bool http_each_element(const char *list,
                              bool (*fn)(const char *s, size_t n, void *ctx),
                              void *ctx)
{
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *e = comma != NULL ? comma : s + strlen(s);
        const char *b = s;
        while (b < e && http_is_ows((unsigned char)*b))
            b++;
        while (e > b && http_is_ows((unsigned char)e[-1]))
            e--;
        if (!fn(b, (size_t)(e - b), ctx))
            return false;
        if (comma == NULL)
            return true;
        s = comma + 1;
    }
}

/* Content-Length, as it is collected over all its headers and elements. */
struct http_length {
    bool seen;
    size_t value;
    const char *error; /* detail of the first problem, or NULL */
};

/* One element of a Content-Length list: digits only, no overflow, equal to
 * any value seen before ("5, 5" is one length; "5, 6" is an attack). */
static bool http_length_element(const char *s, size_t n, void *ctx)
{
    struct http_length *cl = ctx;
    size_t v = 0;
    if (n == 0) {
        cl->error = "Content-Length is not a number";
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!http_is_digit(c)) {
            cl->error = "Content-Length is not a number";
            return false;
        }
        if (v > (SIZE_MAX - (size_t)(c - '0')) / 10) {
            cl->error = "Content-Length is too large a number";
            return false;
        }
        v = v * 10 + (size_t)(c - '0');
    }
    if (cl->seen && v != cl->value) {
        cl->error = "conflicting Content-Length headers";
        return false;
    }
    cl->seen = true;
    cl->value = v;
    return true;
}

/* Connection options this parser cares about. */
struct http_connection {
    bool close, keep_alive;
};

static bool http_connection_token(const char *s, size_t n, void *ctx)
{
    struct http_connection *c = ctx;
    if (n == 5 && strncasecmp(s, "close", 5) == 0)
        c->close = true;
    else if (n == 10 && strncasecmp(s, "keep-alive", 10) == 0)
        c->keep_alive = true;
    return true;
}

/* The meaning of the headers: framing (length, 411/413/501), keep-alive,
 * Expect. Runs once the whole head is parsed. */
static enum http_parse_status http_apply_headers(struct http_parser *p)
{
    struct http_request *r = &p->req;
    struct http_length cl = {false, 0, NULL};
    struct http_connection conn = {false, false};
    bool expect_continue = false;
    size_t hosts = 0;

    for (size_t i = 0; i < r->num_headers; i++) {
        const char *name = r->headers[i].name, *value = r->headers[i].value;
        /* Chunked bodies are not implemented; any Transfer-Encoding would
         * make Content-Length framing ambiguous, so refuse them all. */
        if (strcasecmp(name, "Transfer-Encoding") == 0)
            return http_fail(p, 501, "Transfer-Encoding is not supported");
        if (strcasecmp(name, "Content-Length") == 0 && cl.error == NULL)
            http_each_element(value, http_length_element, &cl);
        else if (strcasecmp(name, "Connection") == 0)
            http_each_element(value, http_connection_token, &conn);
        else if (strcasecmp(name, "Host") == 0)
            hosts++;
        else if (strcasecmp(name, "Expect") == 0 &&
                 strcasecmp(value, "100-continue") == 0)
            expect_continue = true;
    }
    if (cl.error != NULL)
        return http_fail(p, 400, cl.error);
    if (!cl.seen && (strcmp(r->method, "POST") == 0 ||
                     strcmp(r->method, "PUT") == 0))
        return http_fail(p, 411, "Content-Length required");
    if (cl.value > HTTP_MAX_BODY_BYTES)
        return http_fail(p, 413, "body exceeds 64 KiB");
    /* RFC 9112 3.2: an HTTP/1.1 request names its Host, and no request
     * names two (a proxy and this server could pick different ones). */
    if (hosts > 1)
        return http_fail(p, 400, "more than one Host header");
    if (hosts == 0 && r->minor_version == 1)
        return http_fail(p, 400, "Host header required");

    p->body_len = cl.value;
    if (r->minor_version == 1)
        r->keep_alive = !conn.close;
    else
        r->keep_alive = conn.keep_alive && !conn.close;
    /* Only a client still holding its body back needs the interim answer,
     * and HTTP/1.0 clients never wait for one (RFC 9110 10.1.1). */
    p->continue_owed = expect_continue && r->minor_version == 1 &&
                       p->body_len > 0 && p->len < p->head_len + p->body_len;
    return HTTP_DONE;
}

/* Step 2 as a whole: checks and cuts the head, from the request line at
 * pos to p->head_len. */
static enum http_parse_status http_parse_head(struct http_parser *p,
                                              size_t pos)
{
    enum http_parse_status st;
    /* A NUL would silently cut a name or value short once in C strings. */
    if (memchr(p->buf + pos, '\0', p->head_len - pos) != NULL)
        return http_fail(p, 400, "NUL byte in the header section");

    size_t n;
    char *line = http_next_line(p->buf, &pos, p->head_len, &n);
    st = http_parse_request_line(p, line, n);
    while (st == HTTP_DONE) {
        line = http_next_line(p->buf, &pos, p->head_len, &n);
        if (n == 0)
            break; /* the empty line: end of the head */
        st = http_parse_header_line(p, line, n);
    }
    if (st != HTTP_DONE)
        return st;
    return http_apply_headers(p);
}

/* ------------------------------------------------------------------ */
/* Parse API                                                           */

enum http_parse_status http_parser_parse(struct http_parser *p)
{
    if (p->error_status != 0)
        return HTTP_ERROR;
    if (http_parser_done(p))
        return HTTP_DONE; /* asked again before consume: same answer */

    if (!p->head_done) {
        size_t start = 0;
        enum http_parse_status st = http_find_head_end(p, &start);
        if (st != HTTP_DONE)
            return st;
        st = http_parse_head(p, start);
        if (st != HTTP_DONE)
            return st;
        p->head_done = true;
    }

    /* Step 3: the body. Both lengths are within the limits, so no overflow,
     * and end <= HTTP_PARSER_MAX_BUFFER = cap at most: buf[end] exists. */
    size_t end = p->head_len + p->body_len;
    if (p->len < end)
        return HTTP_NEED_MORE;
    if (p->len > end)
        p->buf[p->head_len - 1] = p->buf[end]; /* keep the next request's
                                                  first byte; see the top */
    p->buf[end] = '\0';
    p->req.body = p->buf + p->head_len;
    p->req.body_len = p->body_len;
    p->continue_owed = false; /* the body is here: nobody waits any more */
    return HTTP_DONE;
}

bool http_parser_take_continue(struct http_parser *p)
{
    bool owed = p->continue_owed;
    p->continue_owed = false;
    return owed;
}

void http_parser_consume(struct http_parser *p)
{
    if (!http_parser_done(p))
        return; /* nothing parsed: nothing to drop */
    size_t end = p->head_len + p->body_len;
    size_t rest = p->len - end;
    if (rest > 0) {
        p->buf[end] = p->buf[p->head_len - 1]; /* undo the body's NUL */
        memmove(p->buf, p->buf + end, rest);
    }
    p->len = rest;
    http_parser_reset_request(p);
    /* An idle connection should not pin the 72 KiB a big request needed. */
    if (p->len == 0 && p->cap > HTTP_PARSER_INITIAL_CAP) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
}

char *http_parser_take_buffer(struct http_parser *p)
{
    if (p->len != 0 || p->buf == NULL || http_parser_done(p) ||
        p->error_status != 0)
        return NULL;
    char *buf = p->buf;
    p->buf = NULL;
    p->cap = 0;
    return buf;
}

void http_parser_trim(struct http_parser *p)
{
    free(http_parser_take_buffer(p));
}

bool http_parser_give_buffer(struct http_parser *p, char *buf)
{
    if (p->buf != NULL)
        return false;
    p->buf = buf;
    p->cap = HTTP_PARSER_INITIAL_CAP;
    return true;
}

const char *http_request_header(const struct http_request *req,
                                const char *name)
{
    for (size_t i = 0; i < req->num_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

char *http_response_build(int status, const char *body, size_t body_len,
                          bool keep_alive, size_t *out_len)
{
    return http_response_build_with(status, "", body, body_len, keep_alive,
                                    out_len);
}

/* v in decimal at buf (at least 24 bytes); returns its length. */
static size_t put_decimal(char *buf, long long v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v
                                 : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(buf, p, n);
    return n;
}

/* The head is put together from its pieces with memcpy: two passes of
 * snprintf (one to measure, one to write) were a tenth of a small
 * request's user time. */
char *http_response_build_with(int status, const char *extra,
                               const char *body, size_t body_len,
                               bool keep_alive, size_t *out_len)
{
    char code[24], length[24];
    size_t code_len = put_decimal(code, status);
    if (body_len > LLONG_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    size_t length_len = put_decimal(length, (long long)body_len);
    const char *pieces[] = {
        "HTTP/1.1 ", code, " ", http_status_text(status),
        "\r\nContent-Type: application/json\r\nContent-Length: ", length,
        "\r\nConnection: ", keep_alive ? "keep-alive" : "close", "\r\n",
        extra ? extra : "", "\r\n"};
    enum { NPIECES = sizeof pieces / sizeof pieces[0] };
    size_t sizes[NPIECES], head = 0;
    for (size_t i = 0; i < NPIECES; i++) {
        sizes[i] = i == 1 ? code_len : i == 5 ? length_len : strlen(pieces[i]);
        head += sizes[i];
    }
    if (body_len > SIZE_MAX - head - 1) {
        errno = ENOMEM;
        return NULL;
    }
    size_t total = head + body_len;
    char *out = malloc(total + 1); /* +1: a NUL; handy for logs */
    if (out == NULL)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < NPIECES; i++) {
        memcpy(p, pieces[i], sizes[i]);
        p += sizes[i];
    }
    if (body_len > 0)
        memcpy(p, body, body_len);
    out[total] = '\0';
    *out_len = total;
    return out;
}
