/* tiny_http.h: the plumbing the three tiny servers (tiny_select.c,
 * tiny_epoll.c, tiny_coro.c) share and that is not their subject: the
 * options, a naive look at the request, and the answer's text. What each
 * one is about, how it waits and who runs when, is in its own file.
 *
 * Naive on purpose: the request is searched with strstr for its blank line
 * and Content-Length (the stages use common/http's parser, with limits
 * and answers past them); the options are read with atoi. The JSON is
 * common/exchange's, as in every stage. */
#ifndef EXAMPLES_TINY_HTTP_H
#define EXAMPLES_TINY_HTTP_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"

/* --port N (0: any free port) and --delay-ms N. */
static inline void tiny_options(int argc, char **argv, int *port, int *delay_ms)
{
    for (int i = 1; i + 1 < argc; i += 2)
        *(strcmp(argv[i], "--port") ? delay_ms : port) = atoi(argv[i + 1]);
}

/* The body of the request in `in` (len bytes, NUL-terminated) once all of
 * it is there: the head's blank line, then Content-Length bytes; *body_len
 * gets their number. NULL while more must come. */
static inline const char *tiny_whole_request(const char *in, size_t len,
                                             size_t *body_len)
{
    const char *end = strstr(in, "\r\n\r\n");
    const char *cl = strcasestr(in, "\r\nContent-Length:");
    *body_len = end && cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
    return end && *body_len <= len - (size_t)(end + 4 - in) ? end + 4 : NULL;
}

/* An HTTP answer carrying json (freed here), closing the connection:
 * malloc'd, its length in *len; NULL if out of memory. */
static inline char *tiny_response(const char *status, char *json, size_t *len)
{
    char *text = NULL;
    int n = json ? asprintf(&text, "HTTP/1.1 %s\r\nContent-Type: application/"
                            "json\r\nContent-Length: %zu\r\nConnection: close"
                            "\r\n\r\n%s", status, strlen(json), json) : -1;
    free(json);
    *len = n < 0 ? 0 : (size_t)n;
    return n < 0 ? NULL : text;
}

/* A whole request: true with *req parsed when its bills are to be waited
 * (POST /api/exchange_sync with a valid body); else false with *out the
 * answer to send now, 404 or 400 (NULL if out of memory). */
static inline bool tiny_route(const char *in, const char *body, size_t len,
                              struct exchange_request *req, char **out,
                              size_t *out_len)
{
    char err[256];
    if (strncmp(in, "POST /api/exchange_sync ", 24) != 0)
        *out = tiny_response("404 Not Found", exchange_error_body("Not Found"),
                             out_len);
    else if (exchange_parse_request(body, len, req, err, sizeof err) < 0)
        *out = tiny_response("400 Bad Request", exchange_error_body(err),
                             out_len);
    else
        return true;
    return false;
}

/* The answer once every bill was waited for: 200 and the breakdown. */
static inline char *tiny_breakdown(const struct exchange_request *req,
                                   size_t *len)
{
    double subtotals[EXCHANGE_MAX_BILLS];
    for (size_t i = 0; i < req->num_bills; i++)
        subtotals[i] = exchange_subtotal(&req->bills[i], req->exchange_rate);
    return tiny_response("200 OK", exchange_sync_response(req, subtotals), len);
}

#endif
