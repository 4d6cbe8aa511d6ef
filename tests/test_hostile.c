/* Hostile input, sent as raw bytes to every stage.
 *
 * A teaching server is run by students who throw anything at it. This test
 * throws it first: broken framing, sizes past every limit, Content-Length
 * that lies, bodies that never come, JSON that is broken or out of range,
 * random bytes, and the habits of real clients (pipelining, half-close,
 * 100-continue, HTTP/1.0). After every case the server must still answer
 * GET / with 200, and its log must hold no sanitizer report (in 02 a crash
 * kills only a child, so the log is the only witness).
 *
 * One table of stages, one row per stage, as in test_stages.c; each row
 * starts its stage once and runs every case against it. A case that fails
 * is recorded and the row goes on, so one run lists every broken case of a
 * stage (the row fails at the end with the whole list). STAGES=01-blocking
 * limits the rows; a row whose binary is missing fails.
 *
 * Statuses are exact where docs/DESIGN.md or common/http.h fix them. Where the
 * stages may differ by design (01 closes after every answer; a stalled
 * client holds 01 but not the others), the row says so. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* The harness's one stage table (tests/harness.c), under the short names
 * the cases use; _i is its row. */
#define stages harness_stages
#define NUM_STAGES HARNESS_NUM_STAGES
#define row_selected harness_row_selected

#define DELAY_MS 50
#define IDLE_TIMEOUT_MS 1000
#define ANSWER_TIMEOUT_MS 5000 /* sanitizer builds under load are slow */

/* ------------------------------------------------------------------ */
/* Failures: recorded, not fatal, so a row reports every broken case.  */

static char failures[32768];
static size_t failures_len;
static int num_failed;
static const char *current_case = "start";

static void case_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void case_fail(const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    num_failed++;
    int n = snprintf(failures + failures_len,
                     sizeof failures - failures_len, "\n  [%s] %s",
                     current_case, msg);
    if (n > 0 && (size_t)n < sizeof failures - failures_len)
        failures_len += (size_t)n;
    fprintf(stderr, "hostile: [%s] %s\n", current_case, msg);
}

/* Inside a case: stop the case at the first broken expectation. */
#define EXPECT(cond, ...)                                                \
    do {                                                                 \
        if (!(cond)) {                                                   \
            case_fail(__VA_ARGS__);                                      \
            return;                                                      \
        }                                                                \
    } while (0)

/* ------------------------------------------------------------------ */
/* A raw connection that reads whole responses.                       */

struct conn {
    int fd;
};

/* The harness's one response reader (tests/harness.h), under the names
 * the cases use. */
#define response harness_response
#define response_free harness_response_free
#define read_result harness_read
#define read_result_name harness_read_name
#define READ_OK HARNESS_READ_OK
#define READ_CLOSED HARNESS_READ_CLOSED
#define READ_GARBAGE HARNESS_READ_GARBAGE
#define READ_TIMEOUT HARNESS_READ_TIMEOUT

static bool conn_open(struct conn *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = raw_connect(port);
    return c->fd >= 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Sends everything; false if the server closed first (which a server may
 * do after answering an error: what it said is still read afterwards). */
static bool conn_send(struct conn *c, const void *bytes, size_t n)
{
    const char *p = bytes;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool conn_send_str(struct conn *c, const char *s)
{
    return conn_send(c, s, strlen(s));
}

/* One whole response, and not a byte more: READ_OK (free r with
 * response_free), READ_CLOSED, READ_GARBAGE or READ_TIMEOUT. */
static enum read_result conn_read_response(struct conn *c, struct response *r,
                                           int timeout_ms)
{
    return harness_read_response(c->fd, timeout_ms, r);
}

/* Waits for the server to close: READ_CLOSED, READ_TIMEOUT, or
 * READ_GARBAGE if bytes came instead. */
static enum read_result conn_wait_close(struct conn *c, int timeout_ms)
{
    bool timed_out;
    char *rest = harness_read_to_end(c->fd, timeout_ms, NULL, &timed_out);
    enum read_result how = *rest ? READ_GARBAGE
                           : timed_out ? READ_TIMEOUT : READ_CLOSED;
    free(rest);
    return how;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

/* A growing byte string (requests may hold NULs). */
struct bytes {
    char *p;
    size_t len;
};

static void bytes_add(struct bytes *b, const void *data, size_t n)
{
    b->p = realloc(b->p, b->len + n + 1);
    ck_assert(b->p != NULL);
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void bytes_addf(struct bytes *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bytes_addf(struct bytes *b, const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0);
    bytes_add(b, s, (size_t)n);
    free(s);
}

static void bytes_repeat(struct bytes *b, char c, size_t n)
{
    char *s = malloc(n);
    ck_assert(s != NULL);
    memset(s, c, n);
    bytes_add(b, s, n);
    free(s);
}

/* POST path with a JSON body, as curl sends it. */
static void bytes_post(struct bytes *b, const char *path, const char *json,
                       size_t json_len)
{
    bytes_addf(b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Content-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n", path, json_len);
    bytes_add(b, json, json_len);
}

#define ONE_BILL "[{\"denomination_id\":7,\"denomination\":1.5,\"count\":2}]"
#define VALID_JSON \
    "{\"request_id\":\"h\",\"exchange_rate\":2,\"bills\":" ONE_BILL "}"
#define VALID_ANSWER \
    "{\"status\":\"completed\",\"request_id\":\"h\",\"breakdown\":[" \
    "{\"denomination_id\":7,\"subtotal_rub\":6.0}],\"total_rub\":6.0}"

/* ------------------------------------------------------------------ */
/* The context of a row, and what follows every case                   */

struct ctx {
    const struct stage_traits *row;
    struct proc *proc;
    int port;
    size_t log_seen;  /* log bytes already searched for sanitizer reports */
};

/* The server still works, and said nothing alarming meanwhile. Returns
 * false if it is gone (the row cannot go on). */
static bool server_still_fine(struct ctx *x)
{
    struct http_result r;
    http_request("GET", x->port, "/", NULL, &r);
    char want[160];
    snprintf(want, sizeof want,
             "{\"message\":\"Exchange service is running\",\"stage\":\"%s\"}",
             x->row->name);
    bool ok = r.status == 200 && strcmp(r.body, want) == 0;
    if (!ok)
        case_fail("afterwards GET / gave %ld %.200s", r.status, r.body);
    http_result_free(&r);

    const char *log = harness_read_log(x->proc);
    size_t len = strlen(log);
    const char *fresh = log + (x->log_seen <= len ? x->log_seen : len);
    static const char *const alarms[] = {"AddressSanitizer", "LeakSanitizer",
                                         "runtime error:", "ThreadSanitizer",
                                         "killed by signal", NULL};
    for (int i = 0; alarms[i]; i++) {
        const char *hit = strstr(fresh, alarms[i]);
        if (hit)
            case_fail("the log says: %.300s", hit > fresh + 200 ? hit - 200
                                                                 : fresh);
    }
    x->log_seen = len;
    return r.status != 0;
}

/* ------------------------------------------------------------------ */
/* Table cases: send bytes, expect one status                          */

enum {
    F_CLOSES = 1,    /* a framing error: "Connection: close", then EOF */
    F_SHUT_WR = 2,   /* half-close once the bytes are sent */
    F_ANY_ERROR = 4, /* random bytes: no answer or any 4xx/5xx, then EOF */
};

struct simple_case {
    const char *name;
    const char *text;          /* the raw request, or NULL: */
    size_t text_len;           /* its length if it holds a NUL, else 0 */
    const char *json;          /* POST /api/exchange_sync with this body */
    void (*build)(struct bytes *b, int arg); /* or built by code */
    int arg;
    int status;                /* the first answer's status */
    const char *detail;        /* a piece of the {"detail": ...}, or NULL */
    unsigned flags;
    const char *answer;        /* the exact body of a 200, or NULL */
};

/* --- builders --- */

static void build_head_of_size(struct bytes *b, int total)
{
    const char *start = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    bytes_add(b, start, strlen(start));
    bytes_repeat(b, 'a', (size_t)total - strlen(start) - 4);
    bytes_add(b, "\r\n\r\n", 4);
}

static void build_long_url(struct bytes *b, int n)
{
    bytes_addf(b, "GET /");
    bytes_repeat(b, 'u', (size_t)n);
    bytes_addf(b, " HTTP/1.1\r\nHost: x\r\n\r\n");
}

/* Host and n more headers: 100-byte ones from 100 on (past 8 KiB), short
 * ones below (to reach the count limit, 64, well inside 8 KiB). */
static void build_headers(struct bytes *b, int n)
{
    bytes_addf(b, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < n; i++) {
        bytes_addf(b, "X-Header-%03d: ", i);
        bytes_repeat(b, 'v', n >= 100 ? 84 : 4);
        bytes_addf(b, "\r\n");
    }
    bytes_addf(b, "\r\n");
}

/* A valid body padded with spaces to exactly n bytes. */
static void build_body_of_size(struct bytes *b, int n)
{
    struct bytes json = {0};
    bytes_addf(&json, "%s", VALID_JSON);
    bytes_repeat(&json, ' ', (size_t)n - json.len);
    bytes_post(b, "/api/exchange_sync", json.p, json.len);
    free(json.p);
}

/* Only the head: the server must refuse before any body is sent. */
static void build_declared_body(struct bytes *b, int n)
{
    bytes_addf(b, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: %d\r\n\r\n", n);
}

static void build_bills(struct bytes *b, int n)
{
    struct bytes json = {0};
    bytes_addf(&json, "{\"request_id\":\"many\",\"exchange_rate\":1,\"bills\":[");
    for (int i = 0; i < n; i++)
        bytes_addf(&json, "%s{\"denomination_id\":%d,\"denomination\":1,"
                          "\"count\":1}", i ? "," : "", i);
    bytes_addf(&json, "]}");
    bytes_post(b, "/api/exchange_sync", json.p, json.len);
    free(json.p);
}

static void build_request_id(struct bytes *b, int n)
{
    struct bytes json = {0};
    bytes_addf(&json, "{\"request_id\":\"");
    bytes_repeat(&json, 'i', (size_t)n);
    bytes_addf(&json, "\",\"exchange_rate\":2,\"bills\":" ONE_BILL "}");
    bytes_post(b, "/api/exchange_sync", json.p, json.len);
    free(json.p);
}

static void build_nested(struct bytes *b, int depth)
{
    struct bytes json = {0};
    bytes_repeat(&json, '[', (size_t)depth);
    bytes_repeat(&json, ']', (size_t)depth);
    bytes_post(b, "/api/exchange_sync", json.p, json.len);
    free(json.p);
}

/* A valid request with an unknown field nested n levels deep (n + 1 in
 * all, with the object around it). */
static void build_deep_extra(struct bytes *b, int n)
{
    struct bytes json = {0};
    bytes_addf(&json, "{\"request_id\":\"h\",\"exchange_rate\":2,\"x\":");
    bytes_repeat(&json, '[', (size_t)n);
    bytes_repeat(&json, ']', (size_t)n);
    bytes_addf(&json, ",\"bills\":" ONE_BILL "}");
    bytes_post(b, "/api/exchange_sync", json.p, json.len);
    free(json.p);
}

/* A fixed-seed PRNG (xorshift64*): the same "random" bytes every run, so a
 * failure can be replayed. */
static uint64_t rng_state;

static uint8_t rng_byte(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint8_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 56);
}

static void add_random(struct bytes *b, size_t n, bool printable)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = rng_byte();
        if (printable)
            c = c < 16 ? (c < 8 ? '\r' : '\n') : (uint8_t)(' ' + c % 95);
        bytes_add(b, &c, 1);
    }
}

/* Random blobs of five shapes (arg), all seeded the same way. */
static void build_random(struct bytes *b, int shape)
{
    rng_state = 0x5eed0000u + (uint64_t)shape;
    switch (shape) {
    case 0: add_random(b, 1024, false); break;       /* pure noise */
    case 1: add_random(b, 4096, true); break;        /* text-like noise */
    case 2:                                          /* noise in headers */
        bytes_addf(b, "GET / HTTP/1.1\r\nHost: x\r\n");
        add_random(b, 2048, false);
        bytes_addf(b, "\r\n\r\n");
        break;
    case 3:                                          /* noise past 8 KiB */
        add_random(b, 16384, true);
        break;
    default:                                         /* noise as JSON */
        bytes_addf(b, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 1000\r\n\r\n");
        add_random(b, 1000, false);
        break;
    }
}

#define NUL_REQUEST "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n"

#define POST_SYNC(headers) \
    "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n" headers "\r\n"

static const struct simple_case simple_cases[] = {
    /* --- broken framing --- */
    {"request line: one word", "GET\r\n\r\n", .status = 400,
     .detail = "request line is malformed", .flags = F_CLOSES},
    {"request line: two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"request line: trailing space", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"request line: tabs", "GET\t/\tHTTP/1.1\r\nHost: x\r\n\r\n",
     .status = 400, .detail = "control character", .flags = F_CLOSES},
    {"request line: DEL in target", "GET /a\x7f HTTP/1.1\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"version: lowercase", "GET / http/1.1\r\nHost: x\r\n\r\n", .status = 400,
     .detail = "HTTP version is malformed", .flags = F_CLOSES},
    {"version: HTTP/1.10", "GET / HTTP/1.10\r\nHost: x\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"version: HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", .status = 505,
     .flags = F_CLOSES},
    {"version: HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", .status = 505,
     .flags = F_CLOSES},
    /* RFC 9110 9.1: methods are case-sensitive, so "get" is not GET. The
     * parser takes only uppercase tokens and answers 400 before routing. */
    {"method: lowercase get", "get / HTTP/1.1\r\nHost: x\r\n\r\n",
     .status = 400, .detail = "request method is malformed",
     .flags = F_CLOSES},
    {"method: unknown BREW", "BREW / HTTP/1.1\r\nHost: x\r\n\r\n",
     .status = 405},
    {"target: absolute form", "GET http://127.0.0.1/ HTTP/1.1\r\n"
     "Host: x\r\n\r\n", .status = 400, .detail = "must start with '/'",
     .flags = F_CLOSES},
    {"target: asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"header: space before colon", "GET / HTTP/1.1\r\nHost: x\r\nHost : x\r\n\r\n",
     .status = 400, .detail = "whitespace before the colon",
     .flags = F_CLOSES},
    {"header: obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n",
     .status = 400, .detail = "line folding", .flags = F_CLOSES},
    {"header: space in name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"header: empty name", "GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n", .status = 400,
     .flags = F_CLOSES},
    {"header: control byte in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01z\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"header: byte 0xff in name", "GET / HTTP/1.1\r\nHost: x\r\nX-\xff: v\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"header: obs-text bytes in a value", "GET / HTTP/1.1\r\nHost: x\r\n"
     "X-Name: caf\xe9 \xff\r\n\r\n", .status = 200},
    {"target: odd bytes in the query", "GET /?%00%ff&a=%%%&=\xd0\xaf "
     "HTTP/1.1\r\nHost: x\r\n\r\n", .status = 200},
    {"line endings: bare LF", "GET / HTTP/1.1\nHost: x\n\n", .status = 200},
    {"line endings: mixed CRLF and LF", "GET / HTTP/1.1\r\nHost: x\n\r\n",
     .status = 200},
    {"line endings: bare CR", "GET / HTTP/1.1\rHost: x\r\r\n\r\n",
     .status = 400, .flags = F_CLOSES},
    {"line endings: 2 empty lines first", "\r\n\r\nGET / HTTP/1.1\r\n"
     "Host: x\r\n\r\n", .status = 200},
    {"line endings: 5 empty lines first", "\r\n\r\n\r\n\r\n\r\nGET / "
     "HTTP/1.1\r\n\r\n", .status = 400, .flags = F_CLOSES},

    /* --- sizes past every limit --- */
    {"size: head of exactly 8 KiB", .build = build_head_of_size, .arg = 8192,
     .status = 200},
    {"size: head of 8 KiB + 1", .build = build_head_of_size, .arg = 8193,
     .status = 431, .flags = F_CLOSES},
    {"size: URL of 7000 bytes", .build = build_long_url, .arg = 7000,
     .status = 404},
    {"size: URL of 9000 bytes", .build = build_long_url, .arg = 9000,
     .status = 431, .flags = F_CLOSES},
    {"size: 100 headers of 100 bytes", .build = build_headers, .arg = 100,
     .status = 431, .flags = F_CLOSES},
    {"size: 64 headers (Host + 63)", .build = build_headers, .arg = 63,
     .status = 200},
    {"size: 65 headers (Host + 64)", .build = build_headers, .arg = 64,
     .status = 431, .detail = "more than 64 headers", .flags = F_CLOSES},
    {"size: body of exactly 64 KiB", .build = build_body_of_size,
     .arg = 65536, .status = 200, .answer = VALID_ANSWER},
    {"size: body of 64 KiB + 1", .build = build_declared_body, .arg = 65537,
     .status = 413, .flags = F_CLOSES},
    {"size: 101 bills", .build = build_bills, .arg = 101, .status = 400,
     .detail = "bills must have at most 100 items"},
    {"size: request_id of 129 bytes", .build = build_request_id, .arg = 129,
     .status = 400, .detail = "request_id must be"},
    {"size: request_id of 60000 bytes", .build = build_request_id,
     .arg = 60000, .status = 400, .detail = "request_id must be"},
    {"size: request_id of 128 bytes", .build = build_request_id, .arg = 128,
     .status = 200},

    /* --- Content-Length and other framing headers that lie --- */
    {"CL: two different", POST_SYNC("Content-Length: 2\r\nContent-Length: "
     "3\r\n") "{}x", .status = 400, .detail = "conflicting",
     .flags = F_CLOSES},
    {"CL: list of two values", POST_SYNC("Content-Length: 2, 3\r\n") "{}x",
     .status = 400, .flags = F_CLOSES},
    {"CL: negative", POST_SYNC("Content-Length: -1\r\n"), .status = 400,
     .detail = "not a number", .flags = F_CLOSES},
    {"CL: hex", POST_SYNC("Content-Length: 0x10\r\n"), .status = 400,
     .flags = F_CLOSES},
    {"CL: plus sign", POST_SYNC("Content-Length: +2\r\n") "{}",
     .status = 400, .flags = F_CLOSES},
    {"CL: empty", POST_SYNC("Content-Length:\r\n"), .status = 400,
     .flags = F_CLOSES},
    {"CL: 2^64 overflows", POST_SYNC("Content-Length: 18446744073709551616"
     "\r\n"), .status = 400, .detail = "too large", .flags = F_CLOSES},
    {"CL: 2^64-1 is merely too big", POST_SYNC("Content-Length: "
     "18446744073709551615\r\n"), .status = 413, .flags = F_CLOSES},
    {"CL: two equal values", POST_SYNC("Content-Length: 2\r\n"
     "Content-Length: 2\r\n") "{}", .status = 400,
     .detail = "request_id must be"},
    {"CL: zero on POST", POST_SYNC("Content-Length: 0\r\n"), .status = 400,
     .detail = "body is not valid JSON"},
    {"CL: absent on PUT", "PUT / HTTP/1.1\r\nHost: x\r\n\r\n", .status = 411,
     .flags = F_CLOSES},
    {"TE: with CL", POST_SYNC("Content-Length: 5\r\nTransfer-Encoding: "
     "chunked\r\n") "0\r\n\r\n", .status = 501, .flags = F_CLOSES},
    {"TE: chunked alone on POST", POST_SYNC("Transfer-Encoding: chunked\r\n")
     "5\r\nhello\r\n0\r\n\r\n", .status = 501,
     .detail = "Transfer-Encoding is not supported", .flags = F_CLOSES},
    {"TE: alone, lowercase", "GET / HTTP/1.1\r\nHost: x\r\n"
     "transfer-encoding: identity\r\n\r\n", .status = 501, .flags = F_CLOSES},
    {"TE: space before colon", "GET / HTTP/1.1\r\nHost: x\r\n"
     "Transfer-Encoding : chunked\r\n\r\n", .status = 400, .flags = F_CLOSES},
    {"NUL byte in a header", NUL_REQUEST, sizeof NUL_REQUEST - 1,
     .status = 400, .detail = "NUL", .flags = F_CLOSES},
    {"Connection: keep-alive, close", "GET / HTTP/1.1\r\nHost: x\r\n"
     "Connection: keep-alive, close\r\n\r\n", .status = 200,
     .flags = F_CLOSES},

    /* --- JSON that is broken, mistyped or out of range --- */
    {"JSON: NaN", .json = "{\"request_id\":\"h\",\"exchange_rate\":NaN,"
     "\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "body is not valid JSON"},
    {"JSON: -Infinity", .json = "{\"request_id\":\"h\",\"exchange_rate\":"
     "-Infinity,\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "body is not valid JSON"},
    {"JSON: Infinity", .json = "{\"request_id\":\"h\",\"exchange_rate\":2,"
     "\"bills\":[{\"denomination_id\":1,\"denomination\":Infinity,"
     "\"count\":1}]}", .status = 400, .detail = "body is not valid JSON"},
    {"JSON: 1e400", .json = "{\"request_id\":\"h\",\"exchange_rate\":1e400,"
     "\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "exchange_rate must be a positive number"},
    {"JSON: subtotal overflows", .json = "{\"request_id\":\"h\","
     "\"exchange_rate\":1e300,\"bills\":[{\"denomination_id\":1,"
     "\"denomination\":1e300,\"count\":1}]}", .status = 400,
     .detail = "bills[0] subtotal is too large"},
    {"JSON: count as a string", .json = "{\"request_id\":\"h\","
     "\"exchange_rate\":1,\"bills\":[{\"denomination_id\":1,"
     "\"denomination\":1,\"count\":\"5\"}]}", .status = 400,
     .detail = "bills[0].count must be a non-negative integer"},
    {"JSON: denomination -0.0", .json = "{\"request_id\":\"h\","
     "\"exchange_rate\":1,\"bills\":[{\"denomination_id\":1,"
     "\"denomination\":-0.0,\"count\":1}]}", .status = 400,
     .detail = "bills[0].denomination must be a positive number"},
    {"JSON: id past 2^53", .json = "{\"request_id\":\"h\",\"exchange_rate\":1,"
     "\"bills\":[{\"denomination_id\":9007199254740992,\"denomination\":1,"
     "\"count\":1}]}", .status = 400,
     .detail = "bills[0].denomination_id must be an integer"},
    /* cJSON recurses per level (up to 1000): this once overflowed 06's
     * 64 KiB coroutine stacks; common/exchange.c now caps the depth. */
    {"JSON: 10000 nested arrays", .build = build_nested, .arg = 10000,
     .status = 400, .detail = "body nests deeper than 32 levels"},
    {"JSON: 900 levels in an extra field", .build = build_deep_extra,
     .arg = 900, .status = 400, .detail = "body nests deeper than 32 levels"},
    {"JSON: 32 levels in all", .build = build_deep_extra, .arg = 31,
     .status = 200, .answer = VALID_ANSWER},
    {"JSON: invalid UTF-8 in a string", .json = "{\"request_id\":\"caf\xe9\","
     "\"exchange_rate\":2,\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "body is not valid UTF-8"},
    {"JSON: overlong UTF-8 slash", .json = "{\"request_id\":\"\xc0\xaf\","
     "\"exchange_rate\":2,\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "body is not valid UTF-8"},
    {"JSON: lone surrogate escape", .json = "{\"request_id\":\"\\ud800\","
     "\"exchange_rate\":2,\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "body is not valid JSON"},
    {"JSON: duplicate key", .json = "{\"request_id\":\"a\",\"request_id\":"
     "\"b\",\"exchange_rate\":2,\"bills\":" ONE_BILL "}", .status = 400,
     .detail = "request_id is given more than once"},
    {"JSON: duplicate key in a bill", .json = "{\"request_id\":\"a\","
     "\"exchange_rate\":2,\"bills\":[{\"denomination_id\":1,\"count\":1,"
     "\"denomination\":1,\"count\":9}]}", .status = 400,
     .detail = "bills[0].count is given more than once"},
    {"JSON: trailing garbage", .json = VALID_JSON " x", .status = 400,
     .detail = "body is not valid JSON"},
    /* RFC 8259 8.1: a parser MAY ignore a byte order mark; cJSON does. */
    {"JSON: byte order mark", .json = "\xef\xbb\xbf" VALID_JSON,
     .status = 200, .answer = VALID_ANSWER},
    {"JSON: null", .json = "null", .status = 400,
     .detail = "body must be a JSON object"},
    {"JSON: bills empty", .json = "{\"request_id\":\"h\",\"exchange_rate\":1,"
     "\"bills\":[]}", .status = 400,
     .detail = "bills must be a non-empty array"},
    {"JSON: valid, with unicode id", .json = "{\"request_id\":\"\xd0\xaf-"
     "\\u00e9\",\"exchange_rate\":2,\"bills\":" ONE_BILL "}", .status = 200,
     .answer = "{\"status\":\"completed\",\"request_id\":\"\xd0\xaf-\xc3\xa9\","
     "\"breakdown\":[{\"denomination_id\":7,\"subtotal_rub\":6.0}],"
     "\"total_rub\":6.0}"},

    /* --- random bytes, the same every run --- */
    {"random: 1 KiB of noise", .build = build_random, .arg = 0,
     .flags = F_ANY_ERROR | F_SHUT_WR},
    {"random: 4 KiB of text-like noise", .build = build_random, .arg = 1,
     .flags = F_ANY_ERROR | F_SHUT_WR},
    {"random: noise as headers", .build = build_random, .arg = 2,
     .flags = F_ANY_ERROR | F_SHUT_WR},
    {"random: 16 KiB of text-like noise", .build = build_random, .arg = 3,
     .flags = F_ANY_ERROR | F_SHUT_WR},
    {"random: noise as the JSON body", .build = build_random, .arg = 4,
     .status = 400},
};
#define NUM_SIMPLE ((int)(sizeof simple_cases / sizeof simple_cases[0]))

static void simple_case_bytes(const struct simple_case *k, struct bytes *b)
{
    if (k->build)
        k->build(b, k->arg);
    else if (k->json)
        bytes_post(b, "/api/exchange_sync", k->json, strlen(k->json));
    else
        bytes_add(b, k->text, k->text_len ? k->text_len : strlen(k->text));
}

/* Random bytes may get no answer at all; any answer must be an error. */
static void check_random_answer(struct conn *c)
{
    struct response r;
    enum read_result rr = conn_read_response(c, &r, ANSWER_TIMEOUT_MS);
    EXPECT(rr == READ_OK || rr == READ_CLOSED, "answer: %s",
           read_result_name(rr));
    if (rr == READ_OK) {
        int s = r.status;
        response_free(&r);
        EXPECT(s >= 400 && s <= 599, "random bytes got %d", s);
        rr = conn_wait_close(c, ANSWER_TIMEOUT_MS);
        EXPECT(rr == READ_CLOSED, "after the answer: %s",
               read_result_name(rr));
    }
}

static void check_answer(const struct ctx *x, const struct simple_case *k,
                         struct conn *c)
{
    struct response r;
    enum read_result rr = conn_read_response(c, &r, ANSWER_TIMEOUT_MS);
    EXPECT(rr == READ_OK, "expected %d, got: %s", k->status,
           read_result_name(rr));
    int status = r.status;
    bool has_detail = strstr(r.body, "{\"detail\":\"") == r.body;
    bool detail_ok = !k->detail || strstr(r.body, k->detail) != NULL;
    bool answer_ok = !k->answer || strcmp(r.body, k->answer) == 0;
    bool close_hdr = r.close;
    char body[240];
    snprintf(body, sizeof body, "%s", r.body);
    response_free(&r);
    EXPECT(status == k->status, "expected %d, got %d %s", k->status, status,
           body);
    EXPECT(status < 400 || has_detail, "no {\"detail\":..} in %s", body);
    EXPECT(detail_ok, "detail should mention \"%s\": %s", k->detail, body);
    EXPECT(answer_ok, "answer %s", body);
    if ((k->flags & F_CLOSES) || !x->row->keep_alive) {
        EXPECT(close_hdr, "no \"Connection: close\" on the answer");
        rr = conn_wait_close(c, ANSWER_TIMEOUT_MS);
        EXPECT(rr == READ_CLOSED, "after the answer: %s",
               read_result_name(rr));
    }
}

static void run_simple_case(const struct ctx *x, const struct simple_case *k)
{
    struct bytes b = {0};
    simple_case_bytes(k, &b);
    struct conn c;
    if (!conn_open(&c, x->port)) {
        free(b.p);
        case_fail("cannot connect");
        return;
    }
    conn_send(&c, b.p, b.len); /* may stop early: the server may close */
    if (k->flags & F_SHUT_WR)
        shutdown(c.fd, SHUT_WR);
    free(b.p);
    if (k->flags & F_ANY_ERROR)
        check_random_answer(&c);
    else
        check_answer(x, k, &c);
    conn_close(&c);
}

/* ------------------------------------------------------------------ */
/* Cases that need a conversation                                      */

/* Reads one answer and checks its status; false (and recorded) if not. */
static bool expect_status(struct conn *c, int status, struct response *r,
                          const char *what)
{
    enum read_result rr = conn_read_response(c, r, ANSWER_TIMEOUT_MS);
    if (rr != READ_OK) {
        case_fail("%s: expected %d, got: %s", what, status,
                  read_result_name(rr));
        return false;
    }
    if (r->status != status) {
        case_fail("%s: expected %d, got %d %.200s", what, status, r->status,
                  r->body);
        response_free(r);
        return false;
    }
    return true;
}

/* Content-Length shorter than the body: the rest looks like a second
 * request. The first is answered; the rest is then refused or dropped. */
static void case_cl_shorter_than_body(const struct ctx *x)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    struct bytes b = {0};
    bytes_addf(&b, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %zu\r\n\r\n%s", strlen(VALID_JSON),
               VALID_JSON);
    bytes_addf(&b, "{\"smuggled\": \"GET /admin HTTP/1.1\"}\r\n\r\n");
    conn_send(&c, b.p, b.len);
    free(b.p);
    struct response r;
    bool ok = expect_status(&c, 200, &r, "first request");
    if (ok) {
        ok = strcmp(r.body, VALID_ANSWER) == 0;
        if (!ok)
            case_fail("first answer %.200s", r.body);
        response_free(&r);
    }
    if (ok) {
        enum read_result rr = conn_read_response(&c, &r, ANSWER_TIMEOUT_MS);
        if (rr == READ_OK) {
            if (r.status != 400)
                case_fail("the leftover bytes got %d, not 400", r.status);
            response_free(&r);
            rr = conn_wait_close(&c, ANSWER_TIMEOUT_MS);
        }
        if (rr != READ_CLOSED)
            case_fail("after the leftover bytes: %s", read_result_name(rr));
    }
    conn_close(&c);
}

/* Content-Length longer than what is sent, and the client half-closes: the
 * end of the stream comes at once, so the server must not wait for its
 * idle timeout, and must not answer the truncated request as if whole. */
static void case_cl_longer_then_close(const struct ctx *x)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    double t0 = harness_now();
    conn_send_str(&c, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 100\r\n\r\n{\"request_id\":");
    shutdown(c.fd, SHUT_WR);
    struct response r;
    enum read_result rr = conn_read_response(&c, &r, ANSWER_TIMEOUT_MS);
    double took = harness_now() - t0;
    if (rr == READ_OK) {
        int s = r.status;
        response_free(&r);
        conn_close(&c);
        EXPECT(s == 400, "a truncated body got %d", s);
        return;
    }
    conn_close(&c);
    EXPECT(rr == READ_CLOSED, "answer: %s", read_result_name(rr));
    EXPECT(took < 0.9 * IDLE_TIMEOUT_MS / 1000.0,
           "closed after %.2f s: the end of the stream was not noticed", took);
}

/* A stalled client is closed after the idle timeout (not before: it may be
 * slow, not dead), with at most a 408. Concurrent stages serve others
 * meanwhile. */
static void stalled_client(const struct ctx *x, const char *bytes)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    double t0 = harness_now();
    conn_send_str(&c, bytes);
    if (x->row->overlaps) {
        harness_sleep_ms(100);
        struct http_result r;
        http_request("GET", x->port, "/", NULL, &r);
        long s = r.status;
        double took = r.seconds;
        http_result_free(&r);
        if (s != 200 || took > 0.5)
            case_fail("another client waited %.2f s (status %ld) while this "
                      "one stalled", took, s);
    }
    struct response r;
    enum read_result rr = conn_read_response(&c, &r, 6 * IDLE_TIMEOUT_MS);
    double took = harness_now() - t0;
    int status = rr == READ_OK ? r.status : 0;
    if (rr == READ_OK) {
        response_free(&r);
        rr = conn_wait_close(&c, ANSWER_TIMEOUT_MS);
    }
    conn_close(&c);
    EXPECT(rr == READ_CLOSED, "stalled connection: %s after %.2f s",
           read_result_name(rr), took);
    EXPECT(status == 0 || status == 408, "a stalled client got %d", status);
    EXPECT(took >= 0.8 * IDLE_TIMEOUT_MS / 1000.0 &&
               took <= 5.0 * IDLE_TIMEOUT_MS / 1000.0,
           "closed after %.2f s; the idle timeout is %d ms", took,
           IDLE_TIMEOUT_MS);
}

static void case_stall_body_never_arrives(const struct ctx *x)
{
    stalled_client(x, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 100\r\n\r\n{\"request_");
}

static void case_stall_in_the_head(const struct ctx *x)
{
    stalled_client(x, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
}

static void case_stall_silent_client(const struct ctx *x)
{
    stalled_client(x, "");
}

/* shutdown(SHUT_WR) after a whole request: the answer must still come. */
static void half_close(const struct ctx *x, const char *req, const char *want)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send_str(&c, req);
    shutdown(c.fd, SHUT_WR);
    struct response r;
    bool ok = expect_status(&c, 200, &r, "half-closed request");
    if (ok) {
        ok = strstr(r.body, want) != NULL;
        if (!ok)
            case_fail("answer %.200s", r.body);
        response_free(&r);
    }
    enum read_result rr = ok ? conn_wait_close(&c, ANSWER_TIMEOUT_MS)
                             : READ_CLOSED;
    conn_close(&c);
    EXPECT(rr == READ_CLOSED, "after the answer: %s", read_result_name(rr));
}

static void case_half_close_get(const struct ctx *x)
{
    half_close(x, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Exchange service");
}

static void case_half_close_sync(const struct ctx *x)
{
    struct bytes b = {0};
    bytes_post(&b, "/api/exchange_sync", VALID_JSON, strlen(VALID_JSON));
    half_close(x, b.p, VALID_ANSWER);
    free(b.p);
}

/* 50 requests in one write. Keep-alive stages answer all, in order (the
 * statuses cycle 200, 404, 405, so the order shows); 01 answers the first
 * and closes. */
static void case_pipelined_burst(const struct ctx *x)
{
    static const char *const reqs[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    static const int want[] = {200, 404, 405};
    struct bytes b = {0};
    for (int i = 0; i < 50; i++)
        bytes_addf(&b, "%s", reqs[i % 3]);
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    int answered = 0;
    for (int i = 0; i < (x->row->keep_alive ? 50 : 1); i++) {
        struct response r;
        char what[32];
        snprintf(what, sizeof what, "answer %d", i + 1);
        if (!expect_status(&c, want[i % 3], &r, what))
            break;
        response_free(&r);
        answered++;
    }
    if (answered < (x->row->keep_alive ? 50 : 1)) {
        conn_close(&c); /* expect_status said why */
        return;
    }
    enum read_result rr = READ_CLOSED;
    if (!x->row->keep_alive)
        rr = conn_wait_close(&c, ANSWER_TIMEOUT_MS);
    conn_close(&c);
    EXPECT(rr == READ_CLOSED, "01 after its one answer: %s",
           read_result_name(rr));
}

/* Two POSTs in one write, the second starting right after the first's
 * body: the body boundary must come from Content-Length alone. */
static void case_pipelined_posts(const struct ctx *x)
{
    const char *a = "{\"request_id\":\"first\",\"exchange_rate\":2,"
                    "\"bills\":" ONE_BILL "}";
    const char *b2 = "{\"request_id\":\"second\",\"exchange_rate\":2,"
                     "\"bills\":" ONE_BILL "}";
    struct bytes b = {0};
    bytes_post(&b, "/api/exchange_sync", a, strlen(a));
    bytes_post(&b, "/api/exchange_sync", b2, strlen(b2));
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    static const char *const ids[] = {"\"first\"", "\"second\""};
    for (int i = 0; i < (x->row->keep_alive ? 2 : 1); i++) {
        struct response r;
        if (!expect_status(&c, 200, &r, ids[i]))
            break;
        if (!strstr(r.body, ids[i]))
            case_fail("answer %d is %.200s", i + 1, r.body);
        response_free(&r);
    }
    conn_close(&c);
}

/* A slow client: the request arrives one byte at a time. Every model must
 * parse incrementally and answer once the last byte is in. */
static void case_one_byte_at_a_time(const struct ctx *x)
{
    struct bytes b = {0};
    bytes_post(&b, "/api/exchange_sync", VALID_JSON, strlen(VALID_JSON));
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool sent = true;
    for (size_t i = 0; i < b.len && sent; i++) {
        sent = conn_send(&c, b.p + i, 1);
        if (i % 16 == 0)
            harness_sleep_ms(1);
    }
    free(b.p);
    struct response r;
    bool ok = sent && expect_status(&c, 200, &r, "answer");
    if (ok) {
        if (strcmp(r.body, VALID_ANSWER) != 0)
            case_fail("answer %.200s", r.body);
        response_free(&r);
    } else if (!sent) {
        case_fail("the server closed while the request trickled in");
    }
    conn_close(&c);
}

static void expect_continue_head(struct bytes *b, size_t body_len)
{
    bytes_addf(b, "POST /api/exchange_sync HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\n"
                  "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
               body_len);
}

/* Expect: 100-continue, as curl sends a big POST: the interim answer comes
 * before any of the body is sent, then the final one. */
static void case_expect_continue(const struct ctx *x)
{
    struct bytes b = {0};
    expect_continue_head(&b, strlen(VALID_JSON));
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    struct response r;
    bool ok = expect_status(&c, 100, &r, "interim answer");
    if (ok) {
        response_free(&r);
        conn_send_str(&c, VALID_JSON);
        ok = expect_status(&c, 200, &r, "final answer");
    }
    if (ok) {
        if (strcmp(r.body, VALID_ANSWER) != 0)
            case_fail("final answer %.200s", r.body);
        response_free(&r);
    }
    conn_close(&c);
}

/* The client does not wait for 100 Continue (curl gives up after 1 s):
 * an interim answer may or may not come, the final one must. */
static void case_expect_continue_body_at_once(const struct ctx *x)
{
    struct bytes b = {0};
    expect_continue_head(&b, strlen(VALID_JSON));
    bytes_addf(&b, "%s", VALID_JSON);
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    struct response r;
    enum read_result rr = conn_read_response(&c, &r, ANSWER_TIMEOUT_MS);
    if (rr == READ_OK && r.status == 100) {
        response_free(&r);
        rr = conn_read_response(&c, &r, ANSWER_TIMEOUT_MS);
    }
    conn_close(&c);
    EXPECT(rr == READ_OK, "final answer: %s", read_result_name(rr));
    int s = r.status;
    bool body_ok = r.body && strcmp(r.body, VALID_ANSWER) == 0;
    response_free(&r);
    EXPECT(s == 200 && body_ok, "final answer %d", s);
}

/* A body that is too big is refused at once: no "100 Continue" invites it. */
static void case_expect_continue_too_big(const struct ctx *x)
{
    struct bytes b = {0};
    expect_continue_head(&b, 70000);
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    struct response r;
    bool ok = expect_status(&c, 413, &r, "answer");
    if (ok)
        response_free(&r);
    conn_close(&c);
}

/* HTTP/1.0 with "Connection: keep-alive": keep-alive stages keep the
 * connection and say so; 01 closes. */
static void case_http10_keep_alive(const struct ctx *x)
{
    const char *req = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send_str(&c, req);
    struct response r;
    if (!expect_status(&c, 200, &r, "first answer")) {
        conn_close(&c);
        return;
    }
    bool close_hdr = r.close, ka_hdr = r.keep_alive;
    response_free(&r);
    if (!x->row->keep_alive) {
        enum read_result rr = conn_wait_close(&c, ANSWER_TIMEOUT_MS);
        conn_close(&c);
        EXPECT(close_hdr, "01 must answer \"Connection: close\"");
        EXPECT(rr == READ_CLOSED, "01 after its answer: %s",
               read_result_name(rr));
        return;
    }
    bool ok = ka_hdr;
    if (!ok)
        case_fail("no \"Connection: keep-alive\" for an HTTP/1.0 keep-alive");
    if (ok) {
        conn_send_str(&c, req);
        ok = expect_status(&c, 200, &r, "second answer on the connection");
        if (ok)
            response_free(&r);
    }
    conn_close(&c);
}

/* HTTP/1.0 without Host or Connection: answered, then closed. */
static void case_http10_plain(const struct ctx *x)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send_str(&c, "GET / HTTP/1.0\r\n\r\n");
    struct response r;
    if (!expect_status(&c, 200, &r, "answer")) {
        conn_close(&c);
        return;
    }
    bool close_hdr = r.close;
    response_free(&r);
    enum read_result rr = conn_wait_close(&c, ANSWER_TIMEOUT_MS);
    conn_close(&c);
    EXPECT(close_hdr, "no \"Connection: close\" for HTTP/1.0");
    EXPECT(rr == READ_CLOSED, "after the answer: %s", read_result_name(rr));
}

/* A GET with a body: the body is read (framing) and ignored; on keep-alive
 * stages the next request on the connection is answered normally. */
static void case_get_with_body(const struct ctx *x)
{
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send_str(&c, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"
                      "GET /x HTTP/");
    struct response r;
    bool ok = expect_status(&c, 200, &r, "answer");
    if (ok)
        response_free(&r);
    if (ok && x->row->keep_alive) {
        conn_send_str(&c, "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
        if (expect_status(&c, 404, &r, "next request"))
            response_free(&r);
    }
    conn_close(&c);
}

/* The client leaves while its sync request is being computed: writing the
 * answer then fails (EPIPE/ECONNRESET), which must not kill anything. */
static void client_leaves(const struct ctx *x, bool reset)
{
    struct bytes b = {0};
    const char *two_bills = "{\"request_id\":\"gone\",\"exchange_rate\":2,"
        "\"bills\":[{\"denomination_id\":1,\"denomination\":1,\"count\":1},"
        "{\"denomination_id\":2,\"denomination\":1,\"count\":1}]}";
    bytes_post(&b, "/api/exchange_sync", two_bills, strlen(two_bills));
    struct conn c;
    EXPECT(conn_open(&c, x->port), "cannot connect");
    conn_send(&c, b.p, b.len);
    free(b.p);
    if (reset) { /* close with SO_LINGER 0 sends a reset, not a FIN */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    harness_sleep_ms(20);
    conn_close(&c);
    harness_sleep_ms(150); /* past the two bills: the write has failed */
}

static void case_client_leaves(const struct ctx *x)
{
    client_leaves(x, false);
}

static void case_client_resets(const struct ctx *x)
{
    client_leaves(x, true);
}

struct special_case {
    const char *name;
    void (*run)(const struct ctx *x);
};

static const struct special_case special_cases[] = {
    {"CL shorter than the body", case_cl_shorter_than_body},
    {"CL longer than sent, then half-close", case_cl_longer_then_close},
    {"stall: body never arrives", case_stall_body_never_arrives},
    {"stall: in the middle of the head", case_stall_in_the_head},
    {"stall: connects and says nothing", case_stall_silent_client},
    {"half-close after GET /", case_half_close_get},
    {"half-close after a sync POST", case_half_close_sync},
    {"pipelined burst of 50", case_pipelined_burst},
    {"pipelined POSTs back to back", case_pipelined_posts},
    {"one byte at a time", case_one_byte_at_a_time},
    {"Expect: 100-continue", case_expect_continue},
    {"Expect: 100-continue, body sent at once",
     case_expect_continue_body_at_once},
    {"Expect: 100-continue, body too big", case_expect_continue_too_big},
    {"HTTP/1.0 keep-alive", case_http10_keep_alive},
    {"HTTP/1.0 without Host", case_http10_plain},
    {"GET with a body", case_get_with_body},
    {"client leaves during a sync request", case_client_leaves},
    {"client resets during a sync request", case_client_resets},
};
#define NUM_SPECIAL ((int)(sizeof special_cases / sizeof special_cases[0]))

/* ------------------------------------------------------------------ */
/* The row                                                             */

START_TEST(hostile_input_leaves_the_server_serving)
{
    if (!row_selected(_i))
        return;
    /* A stall is bounded by the deadline of the phase it stalls in. */
    struct proc p;
    harness_stage_start(&p, stages[_i].name, &(struct stage_opts){
        .delay_ms = DELAY_MS, .client_timeout_ms = IDLE_TIMEOUT_MS,
        .args = (const char *const[]){"--jitter-ms", "0", NULL}});
    struct ctx x = {.row = &stages[_i], .proc = &p, .port = p.port};
    bool alive = true;

    for (int k = 0; k < NUM_SIMPLE && alive; k++) {
        current_case = simple_cases[k].name;
        run_simple_case(&x, &simple_cases[k]);
        alive = server_still_fine(&x);
    }
    for (int k = 0; k < NUM_SPECIAL && alive; k++) {
        current_case = special_cases[k].name;
        special_cases[k].run(&x);
        alive = server_still_fine(&x);
    }

    fprintf(stderr, "hostile: %s: %d cases, %d failed check(s)\n",
            stages[_i].name, NUM_SIMPLE + NUM_SPECIAL, num_failed);
    current_case = "SIGTERM after it all";
    int rc = proc_stop(&p, 20000);
    if (rc != 0)
        case_fail("exit status %d", rc);
    ck_assert_msg(num_failed == 0, "%s: %d failed check(s) over %d cases:%s",
                  stages[_i].name, num_failed, NUM_SIMPLE + NUM_SPECIAL,
                  failures);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("hostile");
    TCase *tc = tcase_create("every stage");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, hostile_input_leaves_the_server_serving, 0,
                        NUM_STAGES);
    suite_add_tcase(suite, tc);
    return harness_run(suite);
}
