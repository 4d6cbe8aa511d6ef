/* main-service: the peer that receives the exchange servers' callbacks (the
 * lecture's NestJS "main service"), so the whole toolkit runs on one machine.
 *
 * Routes
 *   GET  /                           200 {"message":"main service is running",
 *                                         "results":<count>}
 *   PUT  /api/exchange_result        body {"token","request_id","breakdown"}:
 *                                    403 wrong/missing token, 400 bad payload,
 *                                    200 {"status":"ok"} once stored
 *   GET  /api/exchange_result        200 ["id1","id2",...] (oldest first)
 *   GET  /api/exchange_result/{id}   200 {"request_id":..,"breakdown":[..]} or
 *                                    404 {"detail":"no result for <id>"}
 *        ...?wait_ms=N               long poll: holds the request until the
 *                                    result arrives or N ms (0..600000) pass
 *   other methods on those paths 405, any other path 404.
 *
 * The model, and why: a thread per connection. A long-poll client is a
 * request that waits, and the simplest correct way to let many requests wait
 * at once is to give each its own thread and let it sleep on a condition
 * variable: one mutex guards the result store, and a stored result
 * broadcasts a condition, so the waiters on it wake, look for their ids and
 * go back to sleep if theirs is not there yet. With a single condition every
 * result would wake every waiter (measured on 2 cores: with 1000 waiters,
 * 1000 PUTs took 5.6 s instead of 0.3 s), so there are 256 conditions,
 * picked by the id's hash: a result wakes about 1/256 of the waiters (the
 * same run: 0.4 s). That is the only refinement; a thread per waiter is fine
 * at this scale (thousands), and the code reads top to bottom like the
 * blocking stages. Threads are detached, get a small stack (64 KiB; a JSON
 * depth check keeps cJSON's recursion far from it), and are capped
 * (--max-conns, default 4096): past the cap the acceptor answers 503 itself
 * and closes.
 *
 * Details a reader may want to know:
 *  - Keep-alive, pipelining and "Expect: 100-continue" are handled; an idle
 *    connection is closed after 30 s (SO_RCVTIMEO). A request the parser
 *    rejects gets its status and {"detail"}, then the connection is closed
 *    (after draining what the client still sends, so the reply survives).
 *  - PUT checks, in order: the body is a JSON object (400), the token
 *    (403: a caller without it learns nothing about the payload rules),
 *    request_id is a non-empty string of at most 128 bytes (400),
 *    breakdown is an array (400).
 *  - The stored result is the callback body minus the token, exactly as
 *    received: the raw text of "request_id" and "breakdown" (whitespace
 *    outside strings removed), so numbers keep their spelling (3775.0 stays
 *    3775.0; re-printing through cJSON would make it 3775).
 *  - The store is a hash table plus an insertion-ordered list, bounded
 *    (--max-results, default 10000): the oldest result is evicted first. A
 *    second PUT for the same id replaces the result.
 *  - The {id} in the path is percent-decoded (%XX; '+' stays '+'); a bad
 *    escape or %00 is a 400. Ids longer than 128 bytes are rejected (400),
 *    as the exchange servers never send them.
 *  - The token is compared in constant time (no early exit on a mismatch).
 *  - A long-poll waiter checks once a second whether its client hung up
 *    (POLLRDHUP and a zero-byte peek), so abandoned waiters do not pile up
 *    for up to ten minutes. A client that half-closes after its request is
 *    therefore treated as gone.
 *  - SIGINT/SIGTERM: the handler only writes a byte to a self-pipe; the
 *    accept loop poll()s the listener and the pipe, stops accepting, wakes
 *    every waiter (they answer 503 "shutting down"), gives requests in
 *    progress up to a second, then exits 0. Results live in memory only, so
 *    nothing else needs saving.
 *  - EMFILE/ENFILE from accept: warn, back off 100 ms, never spin. */
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "net.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 3001
#define DEFAULT_TOKEN "MY_SECRET_TOKEN"
#define DEFAULT_MAX_CONNS 4096
#define DEFAULT_MAX_RESULTS 10000
#define IDLE_TIMEOUT_MS 30000
#define MAX_WAIT_MS 600000
#define PEER_CHECK_MS 1000     /* how often a long-poll waiter checks its peer */
#define SHUTDOWN_GRACE_MS 1000 /* requests in progress get this long at exit */
#define MAX_JSON_DEPTH 32      /* keeps cJSON's recursion small */
#define STORE_BUCKETS 16384    /* power of two */
#define WAKE_STRIPES 256       /* condition variables; divides STORE_BUCKETS */
#define RESULT_PATH "/api/exchange_result"

/* Sanitizers make stack frames much larger; give threads room for them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define THREAD_STACK_BYTES (1024 * 1024)
#else
#define THREAD_STACK_BYTES (64 * 1024)
#endif

/* ---------------------------------------------------------------- settings */

/* Set in main before any thread starts, read-only afterwards. */
static const char *g_token;
static size_t g_token_len;
static int g_max_conns = DEFAULT_MAX_CONNS;
static size_t g_max_results = DEFAULT_MAX_RESULTS;

static atomic_int g_conn_threads; /* connection threads alive */
static atomic_int g_busy;         /* requests between parse and reply */
static atomic_bool g_stopping;    /* set (under g_store.mu) on SIGINT/TERM */

static int g_signal_pipe[2] = {-1, -1};

/* ------------------------------------------------------------------- store */

struct result {
    char *id;                   /* decoded request_id */
    char *json;                 /* {"request_id":..,"breakdown":[..]} */
    struct result *hnext;       /* next in the hash bucket */
    struct result *older, *newer; /* insertion order, for eviction */
};

static struct {
    pthread_mutex_t mu;
    /* A stored result broadcasts the stripe its id hashes to; exit
     * broadcasts them all. */
    pthread_cond_t arrived[WAKE_STRIPES];
    struct result *buckets[STORE_BUCKETS];
    struct result *oldest, *newest;
    size_t count;
} g_store = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h & (STORE_BUCKETS - 1));
}

/* Caller holds g_store.mu. */
static struct result *store_find(const char *id)
{
    for (struct result *r = g_store.buckets[hash_id(id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

/* Caller holds g_store.mu. */
static void list_unlink(struct result *r)
{
    if (r->older)
        r->older->newer = r->newer;
    else
        g_store.oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        g_store.newest = r->older;
    r->older = r->newer = NULL;
}

/* Caller holds g_store.mu. */
static void list_append(struct result *r)
{
    r->older = g_store.newest;
    r->newer = NULL;
    if (g_store.newest)
        g_store.newest->newer = r;
    else
        g_store.oldest = r;
    g_store.newest = r;
}

/* Caller holds g_store.mu. */
static void store_evict_oldest(void)
{
    struct result *r = g_store.oldest;
    if (!r)
        return;
    list_unlink(r);
    struct result **pp = &g_store.buckets[hash_id(r->id)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    g_store.count--;
    free(r->id);
    free(r->json);
    free(r);
}

/* Stores (or replaces) id's result and wakes every waiter. Takes ownership
 * of json. 0, or -1 on ENOMEM (json freed). */
static int store_put(const char *id, char *json)
{
    struct result *fresh = calloc(1, sizeof *fresh);
    char *id_copy = strdup(id);
    if (!fresh || !id_copy) {
        free(fresh);
        free(id_copy);
        free(json);
        return -1;
    }
    pthread_mutex_lock(&g_store.mu);
    struct result *r = store_find(id);
    if (r) { /* a repeated callback replaces the old result */
        free(r->json);
        r->json = json;
        list_unlink(r);
        list_append(r);
        free(fresh);
        free(id_copy);
    } else {
        fresh->id = id_copy;
        fresh->json = json;
        size_t b = hash_id(id);
        fresh->hnext = g_store.buckets[b];
        g_store.buckets[b] = fresh;
        list_append(fresh);
        if (++g_store.count > g_max_results)
            store_evict_oldest();
    }
    pthread_cond_broadcast(&g_store.arrived[hash_id(id) % WAKE_STRIPES]);
    pthread_mutex_unlock(&g_store.mu);
    return 0;
}

static size_t store_count(void)
{
    pthread_mutex_lock(&g_store.mu);
    size_t n = g_store.count;
    pthread_mutex_unlock(&g_store.mu);
    return n;
}

/* ------------------------------------------------------------------ helpers */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec ns_to_timespec(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000,
                             .tv_nsec = ns % 1000000000};
}

/* Copies s for a log line, replacing control bytes so a hostile id cannot
 * forge log lines; cut at outlen-1 bytes. */
static const char *printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outlen; i++)
        out[i] = ((unsigned char)s[i] < 32 || s[i] == 127) ? '?' : s[i];
    out[i] = '\0';
    return out;
}

/* Every byte of the expected token is compared, whatever the given one
 * holds, and differences are OR-ed together: the time taken does not say how
 * many leading bytes were right. */
static bool token_ok(const char *given)
{
    size_t given_len = strlen(given);
    unsigned diff = given_len != g_token_len;
    for (size_t i = 0; i < g_token_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= g ^ (unsigned char)g_token[i];
    }
    return diff == 0;
}

/* ---------------------------------------------------------- raw JSON text
 * cJSON validates the body; these walk the same (valid) text to recover the
 * raw spelling of a member's value. They follow cJSON's own rules: any byte
 * <= 32 is whitespace, a backslash in a string escapes the next byte. */

static const char *skip_ws(const char *s, const char *end)
{
    while (s < end && (unsigned char)*s <= 32)
        s++;
    return s;
}

static const char *skip_string(const char *s, const char *end)
{
    for (s++; s < end && *s != '"'; s++)
        if (*s == '\\')
            s++;
    return s < end ? s + 1 : end;
}

static const char *skip_value(const char *s, const char *end)
{
    if (s >= end)
        return end;
    if (*s == '"')
        return skip_string(s, end);
    if (*s == '{' || *s == '[') {
        int depth = 0;
        while (s < end) {
            if (*s == '"') {
                s = skip_string(s, end);
                continue;
            }
            if (*s == '{' || *s == '[')
                depth++;
            else if ((*s == '}' || *s == ']') && --depth == 0)
                return s + 1;
            s++;
        }
        return end;
    }
    while (s < end && (unsigned char)*s > 32 && *s != ',' && *s != '}' &&
           *s != ']')
        s++;
    return s;
}

/* The raw text of the value of the index-th member of the top-level object
 * in [s, end). 0, or -1 if the text is not shaped as expected. */
static int member_span(const char *s, const char *end, int index,
                       const char **vstart, const char **vend)
{
    if (end - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* cJSON skips a UTF-8 byte order mark too */
    s = skip_ws(s, end);
    if (s >= end || *s != '{')
        return -1;
    s++;
    for (int k = 0;; k++) {
        s = skip_ws(s, end);
        if (s >= end || *s != '"')
            return -1;
        s = skip_ws(skip_string(s, end), end);
        if (s >= end || *s != ':')
            return -1;
        s = skip_ws(s + 1, end);
        const char *v = s;
        s = skip_value(s, end);
        if (k == index) {
            *vstart = v;
            *vend = s;
            return 0;
        }
        s = skip_ws(s, end);
        if (s >= end || *s != ',')
            return -1;
        s++;
    }
}

/* Appends [s, end) to out with whitespace outside strings removed. */
static char *append_minified(char *out, const char *s, const char *end)
{
    bool in_string = false;
    for (; s < end; s++) {
        if (in_string) {
            *out++ = *s;
            if (*s == '\\' && s + 1 < end)
                *out++ = *++s;
            else if (*s == '"')
                in_string = false;
        } else if ((unsigned char)*s > 32) {
            *out++ = *s;
            in_string = *s == '"';
        }
    }
    return out;
}

/* How deeply [ and { nest, outside strings. */
static int json_depth(const char *s, size_t len)
{
    int depth = 0, max = 0;
    const char *end = s + len;
    while (s < end) {
        if (*s == '"') {
            s = skip_string(s, end);
            continue;
        }
        if (*s == '{' || *s == '[') {
            if (++depth > max)
                max = depth;
        } else if (*s == '}' || *s == ']') {
            depth--;
        }
        s++;
    }
    return max;
}

/* Position of the first member named key in a cJSON object (the one
 * cJSON_GetObjectItemCaseSensitive returns), or -1. */
static int member_index(const cJSON *obj, const char *key)
{
    int i = 0;
    for (const cJSON *c = obj->child; c; c = c->next, i++)
        if (c->string && strcmp(c->string, key) == 0)
            return i;
    return -1;
}

/* --------------------------------------------------------------- handlers */

struct reply {
    int status;
    char *body;  /* malloc'd JSON, or NULL after ENOMEM (sent as a 500) */
    bool close;  /* close the connection after this reply */
};

static void reply_error(struct reply *rep, int status, const char *detail)
{
    rep->status = status;
    rep->body = exchange_error_body(detail);
}

/* PUT /api/exchange_result */
static void handle_put(const struct http_request *req, struct reply *rep)
{
    const char *end = req->body + req->body_len;
    if (memchr(req->body, '\0', req->body_len)) {
        reply_error(rep, 400, "body must be a JSON object");
        return;
    }
    if (json_depth(req->body, req->body_len) > MAX_JSON_DEPTH) {
        reply_error(rep, 400, "body nests too deeply");
        return;
    }
    const char *parse_end = NULL;
    cJSON *root =
        cJSON_ParseWithLengthOpts(req->body, req->body_len, &parse_end, 0);
    if (root && skip_ws(parse_end, end) != end) { /* trailing garbage */
        cJSON_Delete(root);
        root = NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        reply_error(rep, 400, "body must be a JSON object");
        return;
    }
    /* The token first: a caller without it learns nothing about the
     * payload rules. */
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "token");
    if (!cJSON_IsString(token) || !token_ok(token->valuestring)) {
        cJSON_Delete(root);
        reply_error(rep, 403, "invalid token");
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
        strlen(id->valuestring) > EXCHANGE_MAX_ID_LEN) {
        cJSON_Delete(root);
        reply_error(rep, 400,
                    "request_id must be a non-empty string of at most 128 "
                    "bytes");
        return;
    }
    const cJSON *breakdown =
        cJSON_GetObjectItemCaseSensitive(root, "breakdown");
    if (!cJSON_IsArray(breakdown)) {
        cJSON_Delete(root);
        reply_error(rep, 400, "breakdown must be an array");
        return;
    }
    const char *id_s, *id_e, *bd_s, *bd_e;
    if (member_span(req->body, end, member_index(root, "request_id"), &id_s,
                    &id_e) < 0 ||
        member_span(req->body, end, member_index(root, "breakdown"), &bd_s,
                    &bd_e) < 0) {
        /* cJSON accepted text this scanner does not follow: should not
         * happen, but never store something we cannot vouch for. */
        cJSON_Delete(root);
        reply_error(rep, 400, "body must be a JSON object");
        return;
    }
    static const char k_id[] = "{\"request_id\":", k_bd[] = ",\"breakdown\":";
    char *json = malloc(sizeof k_id + sizeof k_bd + (size_t)(id_e - id_s) +
                        (size_t)(bd_e - bd_s) + 2);
    char *id_copy = strdup(id->valuestring);
    if (!json || !id_copy) {
        free(json);
        free(id_copy);
        cJSON_Delete(root);
        rep->status = 500;
        rep->body = NULL;
        return;
    }
    char *o = json;
    memcpy(o, k_id, sizeof k_id - 1);
    o = append_minified(o + sizeof k_id - 1, id_s, id_e);
    memcpy(o, k_bd, sizeof k_bd - 1);
    o = append_minified(o + sizeof k_bd - 1, bd_s, bd_e);
    *o++ = '}';
    *o = '\0';
    int bills = cJSON_GetArraySize(breakdown);
    cJSON_Delete(root);

    if (store_put(id_copy, json) < 0) {
        free(id_copy);
        rep->status = 500;
        rep->body = NULL;
        return;
    }
    char shown[EXCHANGE_MAX_ID_LEN + 1];
    log_info("result %s received: %d bills",
             printable(id_copy, shown, sizeof shown), bills);
    free(id_copy);
    rep->status = 200;
    rep->body = exchange_json_object("status", "ok", NULL);
}

/* Percent-decodes src into dst (at least strlen(src)+1 bytes). 0, or -1 on
 * a bad escape or an encoded NUL. */
static int percent_decode(const char *src, char *dst)
{
    for (; *src; src++) {
        if (*src != '%') {
            *dst++ = *src;
            continue;
        }
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = src[k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        if (v == 0)
            return -1;
        *dst++ = (char)v;
        src += 2;
    }
    *dst = '\0';
    return 0;
}

/* wait_ms from the query ("a=1&wait_ms=500"): 0 and *ms set (-1 when
 * absent), or -1 when present but not an integer 0..MAX_WAIT_MS. */
static int query_wait_ms(const char *query, int *ms)
{
    *ms = -1;
    for (const char *p = query; *p;) {
        size_t len = strcspn(p, "&");
        if (len > 8 && memcmp(p, "wait_ms=", 8) == 0) {
            long v = 0;
            for (size_t i = 8; i < len; i++) {
                if (p[i] < '0' || p[i] > '9' || v > MAX_WAIT_MS)
                    return -1;
                v = v * 10 + (p[i] - '0');
            }
            if (v > MAX_WAIT_MS)
                return -1;
            *ms = (int)v;
        } else if (len == 7 && memcmp(p, "wait_ms", 7) == 0) {
            return -1; /* "wait_ms" or "wait_ms=" with no number */
        } else if (len == 8 && memcmp(p, "wait_ms=", 8) == 0) {
            return -1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

/* True when the client closed its end (or the socket failed): a long-poll
 * waiter then stops waiting for nobody. */
static bool peer_gone(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
    int n = poll(&pfd, 1, 0);
    if (n <= 0)
        return false;
    if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    if (pfd.revents & POLLRDHUP) {
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return r == 0 ||
               (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                errno != EINTR);
    }
    return false;
}

enum wait_outcome { WAIT_FOUND, WAIT_TIMEOUT, WAIT_STOPPING, WAIT_GONE,
                    WAIT_NOMEM };

/* Waits up to wait_ms for id's result; on WAIT_FOUND *json is a malloc'd
 * copy. Sleeps on the condition variable, which every stored result
 * broadcasts; wakes at least every PEER_CHECK_MS to see if fd's client is
 * still there. wait_ms 0 just looks. */
static enum wait_outcome store_wait(const char *id, int wait_ms, int fd,
                                    char **json)
{
    int64_t start = now_ns();
    int64_t deadline = start + (int64_t)wait_ms * 1000000;
    int64_t next_check = start + (int64_t)PEER_CHECK_MS * 1000000;
    pthread_cond_t *arrived = &g_store.arrived[hash_id(id) % WAKE_STRIPES];
    enum wait_outcome out;
    *json = NULL;
    pthread_mutex_lock(&g_store.mu);
    for (;;) {
        struct result *r = store_find(id);
        if (r) {
            *json = strdup(r->json);
            out = *json ? WAIT_FOUND : WAIT_NOMEM;
            break;
        }
        if (atomic_load(&g_stopping)) {
            out = WAIT_STOPPING;
            break;
        }
        int64_t now = now_ns();
        if (now >= deadline) {
            out = WAIT_TIMEOUT;
            break;
        }
        if (now >= next_check) {
            pthread_mutex_unlock(&g_store.mu);
            bool gone = peer_gone(fd);
            pthread_mutex_lock(&g_store.mu);
            if (gone) {
                out = WAIT_GONE;
                break;
            }
            next_check = now + (int64_t)PEER_CHECK_MS * 1000000;
            continue; /* the result may have come while unlocked */
        }
        struct timespec wake =
            ns_to_timespec(deadline < next_check ? deadline : next_check);
        int rc = pthread_cond_timedwait(arrived, &g_store.mu, &wake);
        if (rc != 0 && rc != ETIMEDOUT) {
            log_warn("pthread_cond_timedwait: %s", strerror(rc));
            out = WAIT_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&g_store.mu);
    return out;
}

/* GET /api/exchange_result/{raw_id}[?wait_ms=N] */
static void handle_get_result(const struct http_request *req,
                              const char *raw_id, int fd, struct reply *rep)
{
    size_t raw_len = strlen(raw_id);
    char *id = malloc(raw_len + 1);
    if (!id) {
        rep->status = 500;
        rep->body = NULL;
        return;
    }
    int wait_ms;
    if (percent_decode(raw_id, id) < 0) {
        reply_error(rep, 400, "request id in the path is badly "
                              "percent-encoded");
    } else if (id[0] == '\0' || strlen(id) > EXCHANGE_MAX_ID_LEN) {
        reply_error(rep, 400, "request id must be 1 to 128 bytes");
    } else if (query_wait_ms(req->query, &wait_ms) < 0) {
        reply_error(rep, 400, "wait_ms must be an integer from 0 to 600000");
    } else {
        char *json;
        switch (store_wait(id, wait_ms < 0 ? 0 : wait_ms, fd, &json)) {
        case WAIT_FOUND:
            rep->status = 200;
            rep->body = json;
            break;
        case WAIT_TIMEOUT: {
            char detail[EXCHANGE_MAX_ID_LEN + 32];
            snprintf(detail, sizeof detail, "no result for %s", id);
            reply_error(rep, 404, detail);
            break;
        }
        case WAIT_STOPPING:
            reply_error(rep, 503, "shutting down");
            rep->close = true;
            break;
        case WAIT_GONE:
            rep->status = 0; /* nobody to answer */
            rep->close = true;
            break;
        case WAIT_NOMEM:
            rep->status = 500;
            rep->body = NULL;
            break;
        }
    }
    free(id);
}

/* GET /api/exchange_result: the stored ids, oldest first. */
static void handle_list(struct reply *rep)
{
    cJSON *arr = cJSON_CreateArray();
    bool ok = arr != NULL;
    pthread_mutex_lock(&g_store.mu);
    for (struct result *r = g_store.oldest; ok && r; r = r->newer) {
        cJSON *s = cJSON_CreateString(r->id);
        ok = s && cJSON_AddItemToArray(arr, s);
        if (s && !ok)
            cJSON_Delete(s);
    }
    pthread_mutex_unlock(&g_store.mu);
    rep->status = ok ? 200 : 500;
    rep->body = ok ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
}

static void handle_root(struct reply *rep)
{
    char body[128];
    snprintf(body, sizeof body,
             "{\"message\":\"main service is running\",\"results\":%zu}",
             store_count());
    rep->status = 200;
    rep->body = strdup(body);
}

static void route(const struct http_request *req, int fd, struct reply *rep)
{
    const char *m = req->method, *path = req->path;
    bool get = strcmp(m, "GET") == 0;
    static const char prefix[] = RESULT_PATH "/";
    if (strcmp(path, "/") == 0) {
        if (get)
            handle_root(rep);
        else
            reply_error(rep, 405, "Method Not Allowed");
    } else if (strcmp(path, RESULT_PATH) == 0) {
        if (strcmp(m, "PUT") == 0)
            handle_put(req, rep);
        else if (get)
            handle_list(rep);
        else
            reply_error(rep, 405, "Method Not Allowed");
    } else if (strncmp(path, prefix, sizeof prefix - 1) == 0 &&
               path[sizeof prefix - 1] != '\0' &&
               !strchr(path + sizeof prefix - 1, '/')) {
        if (get)
            handle_get_result(req, path + sizeof prefix - 1, fd, rep);
        else
            reply_error(rep, 405, "Method Not Allowed");
    } else {
        reply_error(rep, 404, "Not Found");
    }
}

/* Sends rep (a 500 if its body is missing). 0, or -1 if the peer is gone. */
static int send_reply(int fd, const struct reply *rep, bool keep_alive)
{
    static const char oom[] = "{\"detail\":\"out of memory\"}";
    int status = rep->body ? rep->status : 500;
    const char *body = rep->body ? rep->body : oom;
    size_t len;
    char *resp = http_response_build(status, body, strlen(body), keep_alive,
                                     &len);
    if (!resp) {
        log_warn("cannot build a response: out of memory");
        return -1;
    }
    int rc = net_write_all(fd, resp, len);
    free(resp);
    return rc;
}

/* ------------------------------------------------------------ connections */

/* After an error reply the client may still be sending (the body of a 413):
 * closing with unread bytes would reset the connection and could destroy
 * the reply before the client reads it. So: shut our side, then read and
 * drop what comes for at most a second (and 256 KiB). */
static void drain_before_close(int fd)
{
    if (shutdown(fd, SHUT_WR) < 0 || net_set_timeouts(fd, 1000) < 0)
        return;
    int64_t give_up = now_ns() + 1000000000;
    char buf[4096];
    size_t total = 0;
    while (total < 256 * 1024 && now_ns() < give_up) {
        ssize_t n = net_read_some(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

static void *connection_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char peer[64];
    net_peer_name(fd, peer, sizeof peer);
    if (net_set_timeouts(fd, IDLE_TIMEOUT_MS) < 0)
        log_warn("%s: setting timeouts: %s", peer, strerror(errno));

    struct http_parser p;
    http_parser_init(&p);
    for (;;) {
        enum http_parse_status st = http_parser_parse(&p);
        if (st == HTTP_NEED_MORE) {
            if (http_parser_take_continue(&p) &&
                net_write_all(fd, HTTP_CONTINUE_RESPONSE,
                              sizeof HTTP_CONTINUE_RESPONSE - 1) < 0)
                break;
            size_t avail;
            char *space = http_parser_space(&p, &avail);
            if (!space || avail == 0) {
                log_warn("%s: no buffer space: %s", peer,
                         space ? "buffer full" : strerror(errno));
                break;
            }
            ssize_t n = net_read_some(fd, space, avail);
            if (n == 0)
                break; /* the client closed */
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    log_info("%s: idle for %d s, closing", peer,
                             IDLE_TIMEOUT_MS / 1000);
                else if (errno != ECONNRESET)
                    log_warn("%s: read: %s", peer, strerror(errno));
                break;
            }
            http_parser_commit(&p, (size_t)n);
            continue;
        }
        if (st == HTTP_ERROR) {
            struct reply rep = {0};
            reply_error(&rep, p.error_status,
                        p.error_detail ? p.error_detail : "bad request");
            log_info("%s: bad request -> %d (%s)", peer, p.error_status,
                     p.error_detail ? p.error_detail : "?");
            if (send_reply(fd, &rep, false) == 0)
                drain_before_close(fd);
            free(rep.body);
            break;
        }

        atomic_fetch_add(&g_busy, 1);
        struct reply rep = {0};
        route(&p.req, fd, &rep);
        bool keep = p.req.keep_alive && !rep.close &&
                    !atomic_load(&g_stopping);
        int rc = -1;
        if (rep.status != 0) {
            char shown[96];
            log_info("%s %s -> %d", p.req.method,
                     printable(p.req.path, shown, sizeof shown),
                     rep.body ? rep.status : 500);
            rc = send_reply(fd, &rep, keep);
        }
        free(rep.body);
        atomic_fetch_sub(&g_busy, 1);
        if (rc < 0 || !keep)
            break;
        http_parser_consume(&p);
    }
    http_parser_free(&p);
    if (close(fd) < 0)
        log_warn("%s: close: %s", peer, strerror(errno));
    atomic_fetch_sub(&g_conn_threads, 1);
    return NULL;
}

/* Answers 503 from the acceptor, for a connection no thread can take. */
static void refuse(int fd, const char *why)
{
    struct reply rep = {0};
    reply_error(&rep, 503, why);
    if (net_set_timeouts(fd, 1000) == 0)
        send_reply(fd, &rep, false);
    free(rep.body);
    close(fd);
}

static void spawn_connection(int fd, pthread_attr_t *attr)
{
    if (atomic_fetch_add(&g_conn_threads, 1) >= g_max_conns) {
        atomic_fetch_sub(&g_conn_threads, 1);
        log_warn("%d connections open: refusing one with 503", g_max_conns);
        refuse(fd, "server busy: too many connections");
        return;
    }
    pthread_t tid;
    int rc = pthread_create(&tid, attr, connection_main, (void *)(intptr_t)fd);
    if (rc != 0) {
        atomic_fetch_sub(&g_conn_threads, 1);
        log_warn("pthread_create: %s: refusing a connection with 503",
                 strerror(rc));
        refuse(fd, "server busy: cannot start a thread");
    }
}

/* ------------------------------------------------------------------- main */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    /* The pipe is non-blocking: if it is full, a wakeup is already due. */
    if (write(g_signal_pipe[1], &b, 1) < 0) {
    }
    errno = saved;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
        "usage: %s [options]\n"
        "The main service: receives the exchange servers' callbacks and\n"
        "keeps the results in memory (a thread per connection).\n"
        "\n"
        "options:\n"
        "  --port N           port to listen on (default %d; 0 = any free "
        "port)\n"
        "  --host ADDR        address to bind (default 127.0.0.1)\n"
        "  --max-conns N      connection threads at most (default %d); "
        "past it, 503\n"
        "  --max-results N    results kept (default %d); the oldest is "
        "evicted\n"
        "  --quiet            log only warnings and errors\n"
        "  --help             this text\n"
        "\n"
        "environment:\n"
        "  SECRET_TOKEN       token a callback must carry (default %s,\n"
        "                     with a warning in the log)\n"
        "\n"
        "routes:\n"
        "  GET  /                          status and number of results\n"
        "  PUT  /api/exchange_result       store {\"token\",\"request_id\","
        "\"breakdown\"}:\n"
        "                                  403 bad token, 400 bad payload, "
        "200 {\"status\":\"ok\"}\n"
        "  GET  /api/exchange_result       the stored request ids\n"
        "  GET  /api/exchange_result/ID    the stored result, or 404\n"
        "       ...?wait_ms=N              long poll: wait up to N ms "
        "(0..%d)\n"
        "                                  for the result to arrive\n"
        "\n"
        "Once listening it prints \"listening on http://HOST:PORT\" to "
        "stdout.\n"
        "SIGINT/SIGTERM stop it (exit 0).\n",
        prog, DEFAULT_PORT, DEFAULT_MAX_CONNS, DEFAULT_MAX_RESULTS,
        DEFAULT_TOKEN, MAX_WAIT_MS);
}

static bool parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static void bad_usage(const char *prog, const char *msg, const char *arg)
{
    if (msg)
        fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "",
                arg ? arg : "");
    fprintf(stderr, "try '%s --help'\n", prog);
    exit(2);
}

static int install_signals(void)
{
    if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "pipe2: %s\n", strerror(errno));
        return -1;
    }
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 ||
        sigaction(SIGTERM, &sa, NULL) < 0) {
        fprintf(stderr, "sigaction: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int init_store(void)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        for (int i = 0; rc == 0 && i < WAKE_STRIPES; i++)
            rc = pthread_cond_init(&g_store.arrived[i], &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0)
        fprintf(stderr, "pthread_cond_init: %s\n", strerror(rc));
    return rc == 0 ? 0 : -1;
}

/* Stops accepting, wakes the waiters, gives requests in progress a moment. */
static void shut_down(int listen_fd)
{
    close(listen_fd);
    pthread_mutex_lock(&g_store.mu);
    atomic_store(&g_stopping, true);
    for (int i = 0; i < WAKE_STRIPES; i++)
        pthread_cond_broadcast(&g_store.arrived[i]);
    pthread_mutex_unlock(&g_store.mu);
    int64_t give_up = now_ns() + (int64_t)SHUTDOWN_GRACE_MS * 1000000;
    while (atomic_load(&g_busy) > 0 && now_ns() < give_up) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    log_info("stopped (%d connections dropped, %zu results discarded)",
             atomic_load(&g_conn_threads), store_count());
}

int main(int argc, char **argv)
{
    const char *prog = argv[0];
    const char *host = "127.0.0.1";
    long port = DEFAULT_PORT;
    bool quiet = false;
    enum { OPT_PORT = 1, OPT_HOST, OPT_MAX_CONNS, OPT_MAX_RESULTS, OPT_QUIET,
           OPT_HELP };
    static const struct option opts[] = {
        {"port", required_argument, 0, OPT_PORT},
        {"host", required_argument, 0, OPT_HOST},
        {"max-conns", required_argument, 0, OPT_MAX_CONNS},
        {"max-results", required_argument, 0, OPT_MAX_RESULTS},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0},
    };
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PORT:
            if (!parse_int(optarg, 0, 65535, &port))
                bad_usage(prog, "--port wants 0..65535", optarg);
            break;
        case OPT_HOST:
            host = optarg;
            break;
        case OPT_MAX_CONNS:
            if (!parse_int(optarg, 1, 100000, &v))
                bad_usage(prog, "--max-conns wants 1..100000", optarg);
            g_max_conns = (int)v;
            break;
        case OPT_MAX_RESULTS:
            if (!parse_int(optarg, 1, 10000000, &v))
                bad_usage(prog, "--max-results wants 1..10000000", optarg);
            g_max_results = (size_t)v;
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        case OPT_HELP:
            usage(stdout, prog);
            return 0;
        default: /* getopt_long has said what was wrong */
            bad_usage(prog, NULL, NULL);
        }
    }
    if (optind < argc)
        bad_usage(prog, "unexpected argument", argv[optind]);

    log_init("main-service", quiet);
    log_show_threads(true);
    const char *env_token = getenv("SECRET_TOKEN");
    g_token = env_token && *env_token ? env_token : DEFAULT_TOKEN;
    g_token_len = strlen(g_token);
    if (strcmp(g_token, DEFAULT_TOKEN) == 0)
        log_warn("SECRET_TOKEN is not set: accepting the default token %s; "
                 "set SECRET_TOKEN outside a classroom", DEFAULT_TOKEN);

    net_ignore_sigpipe();
    if (init_store() < 0 || install_signals() < 0)
        return 1;
    int bound;
    int lfd = net_listen(host, (int)port, &bound);
    if (lfd < 0)
        return 1;
    /* Non-blocking, so a connection that vanishes between poll() and
     * accept() cannot block the loop (and with it the signal pipe). */
    if (net_set_nonblocking(lfd) < 0) {
        fprintf(stderr, "fcntl: %s\n", strerror(errno));
        close(lfd);
        return 1;
    }
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc != 0) {
        fprintf(stderr, "pthread_attr: %s\n", strerror(rc));
        close(lfd);
        return 1;
    }
    rc = pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    if (rc != 0)
        log_warn("pthread_attr_setstacksize(%d): %s; using the default",
                 THREAD_STACK_BYTES, strerror(rc));

    net_announce(host, bound);
    log_info("main service on http://%s:%d (max %d connections, %zu results)",
             host, bound, g_max_conns, g_max_results);

    /* Set after an accept error other than "drained" (EMFILE, ENFILE,
     * ENOBUFS...): the listener stays readable, so poll() would return at
     * once; wait 100 ms on the signal pipe alone instead, then retry. */
    bool backoff = false;
    for (;;) {
        struct pollfd pfds[2] = {
            {.fd = g_signal_pipe[0], .events = POLLIN},
            {.fd = lfd, .events = POLLIN},
        };
        int n = backoff ? poll(pfds, 1, 100) : poll(pfds, 2, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_warn("poll: %s", strerror(errno));
            break;
        }
        if (pfds[0].revents) {
            unsigned char sig = 0;
            if (read(g_signal_pipe[0], &sig, 1) < 0 && errno != EAGAIN)
                log_warn("signal pipe: %s", strerror(errno));
            log_info("signal %d: stopping", sig);
            break;
        }
        for (;;) {
            int fd = net_accept(lfd, false);
            if (fd >= 0) {
                backoff = false;
                spawn_connection(fd, &attr);
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                backoff = false;
                break;
            }
            if (!backoff) /* once per streak, not ten lines a second */
                log_warn("accept: %s: backing off", strerror(errno));
            backoff = true;
            break;
        }
    }
    pthread_attr_destroy(&attr);
    shut_down(lfd);
    return 0;
}
