/* main-service: the peer that receives the exchange servers' callbacks (the
 * lecture's NestJS "main service"), so the whole toolkit runs on one machine.
 *
 * Routes
 *   GET  /                           200 {"message":"main service is running",
 *                                         "results":<count>}
 *   PUT  /api/exchange_result        body {"token","request_id","breakdown"}:
 *                                    403 wrong/missing token, 400 bad payload,
 *                                    200 {"status":"ok"} once stored (or
 *                                    stored already: the same result again),
 *                                    409 if another result is stored under
 *                                    that request_id
 *   GET  /api/exchange_result        200 ["id1","id2",...] (oldest first)
 *   GET  /api/exchange_result/{id}   200 {"request_id":..,"breakdown":[..]} or
 *                                    404 {"detail":"no result for <id>"}
 *        ...?wait_ms=N               long poll: holds the request until the
 *                                    result arrives or N ms (0..600000) pass
 *   other methods on those paths 405, any other path 404.
 *
 * The model, and why: a thread per connection, as in 03-threads. A
 * long-poll client is a request that waits, and the simplest correct way to
 * let many requests wait at once is to give each its own thread and let it
 * sleep on a condition variable (store.h says how results wake them). A
 * thread per waiter is fine at this scale (thousands), and the code reads
 * top to bottom like the blocking stages: it is built on the same
 * common/conn_io (reading requests, keep-alive, 100-continue, the error
 * answer and the lingering close, the acceptor's 503) and common/shutdown
 * (SIGINT/SIGTERM as a pipe). Threads are detached, get a small stack
 * (64 KiB; a JSON depth check keeps cJSON's recursion far from it), and
 * are capped (--max-conns, default 4096): past the cap the acceptor
 * answers 503 itself and closes.
 *
 * Details a reader may want to know:
 *  - Deadlines that never move, kept by conn_io: a request head must be
 *    complete 10 s after its first byte (--header-timeout-ms), a body 10 s
 *    after its head (--body-timeout-ms), or the client gets 408; a
 *    connection with no request under way is closed after 30 s
 *    (--idle-timeout-ms). A long poll's own wait is wait_ms.
 *  - PUT checks, in order: the body is a JSON object (400), the token
 *    (403: a caller without it learns nothing about the payload rules),
 *    request_id is a non-empty string of at most 128 bytes (400),
 *    breakdown is an array (400).
 *  - The stored result is the callback body minus the token, exactly as
 *    received (json.h), bounded in number (--max-results, default
 *    10000) and in bytes (--max-store-mb, default 256; 10000
 *    results of 54 KiB would be half a gigabyte): the oldest is evicted
 *    first, with a log line.
 *  - The request_id is an idempotency key (store.h): a sender that
 *    retries or replays may deliver a result twice, and it is stored
 *    once; a different result under the same id is refused with 409.
 *    So an exchange server's at-least-once delivery (its --outbox) gives
 *    exactly one stored result.
 *  - Every string it writes is valid UTF-8 JSON: a PUT whose request_id or
 *    breakdown holds invalid UTF-8 or a raw control byte in a string is a
 *    400 naming the field, and so is an id in the path that decodes to
 *    invalid UTF-8; cJSON escapes the rest.
 *  - The {id} in the path is percent-decoded (%XX; '+' stays '+'); a bad
 *    escape or %00 is a 400. Ids longer than 128 bytes are rejected (400),
 *    as the exchange servers never send them.
 *  - The token is compared in constant time (no early exit on a mismatch).
 *  - Long polls are capped on their own (--max-waiters, default 1024): a
 *    connection thread that waits for a result leaves the --max-conns
 *    count while it waits, so 20 long polls under --max-conns 20 still
 *    leave room for the callback they wait for. Past the cap a long poll
 *    gets 503 with Retry-After at once.
 *  - A long-poll waiter checks once a second whether its client hung up
 *    (POLLRDHUP and a zero-byte peek), so abandoned waiters do not pile up
 *    for up to ten minutes. A client that half-closes after its request is
 *    therefore treated as gone.
 *  - SIGINT/SIGTERM: stop accepting, wake every waiter (they answer 503
 *    "shutting down"), give requests in progress up to a second, exit 0.
 *    Results live in memory only, so nothing else needs saving. */
#include "json.h"
#include "opts.h"
#include "path.h"
#include "store.h"

#include "conn_io.h"
#include "endpoint.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "shutdown.h"
#include "timer.h"
#include "utf8.h"

#include <cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_GRACE_MS 1000 /* requests in progress get this long at exit */
#define MAX_JSON_DEPTH 32  /* keeps cJSON's recursion small */

/* Sanitizers make stack frames much larger; give threads room for them.
 * The system's minimum wins where it is larger (thread_stack_bytes). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define THREAD_STACK_BYTES (1024 * 1024)
#else
#define THREAD_STACK_BYTES (64 * 1024)
#endif

/* ---------------------------------------------------------------- settings */

/* Set in main before any thread starts, read-only afterwards. */
static struct ms_options g_opt;
static size_t g_token_len;
static struct conn_io_limits g_limits; /* g_opt's deadlines for conn_io */

static atomic_int g_conn_threads; /* connection threads alive, less the
                                     waiters */
static atomic_int g_waiters;      /* connection threads in a long poll */
static atomic_int g_busy;         /* requests between parse and reply */

/* ------------------------------------------------------------------ helpers */

/* Every byte of the expected token is compared, whatever the given one
 * holds, and differences are OR-ed together: the time taken does not say how
 * many leading bytes were right. */
static bool token_ok(const char *given)
{
    size_t given_len = strlen(given);
    unsigned diff = given_len != g_token_len;
    for (size_t i = 0; i < g_token_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= g ^ (unsigned char)g_opt.token[i];
    }
    return diff == 0;
}

static void reply_error(struct endpoint_reply *rep, int status,
                        const char *detail)
{
    rep->status = status;
    rep->body = exchange_error_body(detail);
}

static void reply_nomem(struct endpoint_reply *rep)
{
    rep->status = 500;
    rep->body = NULL; /* rendered as a 500 {"detail"} (endpoint.h) */
}

/* --------------------------------------------------------------- handlers */

/* The body parsed as one JSON object and nothing after it, or NULL. */
static cJSON *parse_object(const struct http_request *req)
{
    if (memchr(req->body, '\0', req->body_len))
        return NULL;
    const char *parse_end = NULL;
    cJSON *root =
        cJSON_ParseWithLengthOpts(req->body, req->body_len, &parse_end, 0);
    if (root && (json_skip_ws(parse_end, req->body + req->body_len) !=
                     req->body + req->body_len ||
                 !cJSON_IsObject(root))) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Why a callback body cannot be stored: its status, *detail set; or 0.
 * The token first: a caller without it learns nothing about the payload
 * rules. The text is stored as received, so it must be what we may write:
 * UTF-8 without raw control bytes in its strings. */
static int check_callback(const struct http_request *req, const cJSON *root,
                          const char **detail)
{
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "token");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    if (!cJSON_IsString(token) || !token_ok(token->valuestring)) {
        *detail = "invalid token";
        return 403;
    }
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
        strlen(id->valuestring) > EXCHANGE_MAX_ID_LEN) {
        *detail = "request_id must be a non-empty string of at most 128 "
                  "bytes";
        return 400;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "breakdown"))) {
        *detail = "breakdown must be an array";
        return 400;
    }
    const char *bad = json_unclean_member(req->body, req->body_len, root);
    if (bad) {
        *detail = strcmp(bad, "request_id") == 0
                      ? "request_id must be UTF-8 without raw control "
                        "characters"
                      : "breakdown must be UTF-8 without raw control "
                        "characters";
        return 400;
    }
    return 0;
}

/* Stores a checked callback body; the reply says how it went. The
 * request_id is the idempotency key (store.h): the same result again is
 * answered as the first was, and stored once; another result under a
 * stored id is a 409, and the first stays. */
static void store_callback(const struct http_request *req, const cJSON *root,
                           struct endpoint_reply *rep)
{
    const char *id = cJSON_GetObjectItemCaseSensitive(root, "request_id")
                         ->valuestring;
    bool nomem;
    char *json = json_stored_result(req->body, req->body_len, root, &nomem);
    if (!json && !nomem) {
        reply_error(rep, 400, "body must be a JSON object");
        return;
    }
    /* log_info escapes the id: it cannot forge log lines (log.h). */
    switch (json ? store_put(id, json) : STORE_PUT_NOMEM) { /* takes json */
    case STORE_NEW:
        log_info("result %s received: %d bills", id,
                 cJSON_GetArraySize(
                     cJSON_GetObjectItemCaseSensitive(root, "breakdown")));
        break;
    case STORE_REPEAT:
        log_info("result %s repeated: stored already, not stored again", id);
        break;
    case STORE_CONFLICT: {
        log_warn("result %s refused: another result is stored under this "
                 "request_id", id);
        char detail[EXCHANGE_MAX_ID_LEN + 64];
        snprintf(detail, sizeof detail,
                 "request_id %s already has a different result", id);
        reply_error(rep, 409, detail);
        return;
    }
    case STORE_PUT_NOMEM:
        reply_nomem(rep);
        return;
    }
    rep->status = 200;
    rep->body = exchange_json_object("status", "ok", NULL);
}

/* PUT /api/exchange_result: the checks of the top comment, in its order. */
static void handle_put(const struct http_request *req,
                       struct endpoint_reply *rep)
{
    if (json_depth(req->body, req->body_len) > MAX_JSON_DEPTH) {
        reply_error(rep, 400, "body nests too deeply");
        return;
    }
    cJSON *root = parse_object(req);
    const char *detail = "body must be a JSON object";
    int status = root ? check_callback(req, root, &detail) : 400;
    if (status)
        reply_error(rep, status, detail);
    else
        store_callback(req, root, rep);
    cJSON_Delete(root);
}

/* True when the client closed its end (or the socket failed): a long-poll
 * waiter then stops waiting for nobody. */
static bool peer_gone(void *arg)
{
    int fd = (int)(intptr_t)arg;
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

/* How a handler's answer ends its connection. */
enum answer { ANSWER, ANSWER_LAST, NO_ANSWER };

/* The long poll's outcome as an answer. */
static enum answer wait_reply(const char *id, int wait_ms, int fd,
                              struct endpoint_reply *rep)
{
    char *json;
    switch (store_wait(id, wait_ms, &json, peer_gone, (void *)(intptr_t)fd)) {
    case STORE_FOUND:
        rep->status = 200;
        rep->body = json;
        return ANSWER;
    case STORE_TIMEOUT: {
        char detail[EXCHANGE_MAX_ID_LEN + 32];
        snprintf(detail, sizeof detail, "no result for %s", id);
        reply_error(rep, 404, detail);
        return ANSWER;
    }
    case STORE_STOPPING:
        reply_error(rep, 503, "shutting down");
        return ANSWER_LAST;
    case STORE_GONE:
        return NO_ANSWER; /* nobody to answer */
    case STORE_NOMEM:
        break;
    }
    reply_nomem(rep);
    return ANSWER;
}

/* A long poll leaves the connections' count for the waiters' own while it
 * waits: unauthenticated waiters are capped apart (--max-waiters), so they
 * never take the threads callbacks need. False, and nothing counted, when
 * the waiters are at their cap. */
static bool waiter_enter(void)
{
    if (atomic_fetch_add(&g_waiters, 1) >= g_opt.max_waiters) {
        atomic_fetch_sub(&g_waiters, 1);
        return false;
    }
    atomic_fetch_sub(&g_conn_threads, 1);
    return true;
}

/* Back among the connections. True if that put them over --max-conns: the
 * waiter's answer is then its connection's last. */
static bool waiter_leave(void)
{
    atomic_fetch_sub(&g_waiters, 1);
    return atomic_fetch_add(&g_conn_threads, 1) >= g_opt.max_conns;
}

/* A long poll: waits as a waiter (see waiter_enter), or 503 if there are
 * too many. wait_ms 0 only looks, and counts as an ordinary request. */
static enum answer long_poll(const char *id, int wait_ms, int fd,
                             struct endpoint_reply *rep)
{
    if (wait_ms == 0)
        return wait_reply(id, 0, fd, rep);
    if (!waiter_enter()) {
        log_warn("%d long polls waiting: refusing one with 503",
                 g_opt.max_waiters);
        endpoint_busy("too many long polls waiting", rep);
        return ANSWER;
    }
    enum answer a = wait_reply(id, wait_ms, fd, rep);
    if (waiter_leave() && a == ANSWER)
        a = ANSWER_LAST;
    return a;
}

/* GET /api/exchange_result/{raw_id}[?wait_ms=N] */
static enum answer handle_get_result(const struct http_request *req,
                                     const char *raw_id, int fd,
                                     struct endpoint_reply *rep)
{
    char *id = malloc(strlen(raw_id) + 1);
    int wait_ms;
    enum answer a = ANSWER;
    if (!id)
        reply_nomem(rep);
    else if (percent_decode(raw_id, id) < 0)
        reply_error(rep, 400, "request id in the path is badly "
                              "percent-encoded");
    else if (id[0] == '\0' || strlen(id) > EXCHANGE_MAX_ID_LEN)
        reply_error(rep, 400, "request id must be 1 to 128 bytes");
    else if (!utf8_valid((const unsigned char *)id, strlen(id)))
        reply_error(rep, 400, "request id in the path must be UTF-8");
    else if (query_wait_ms(req->query, &wait_ms) < 0)
        reply_error(rep, 400, "wait_ms must be an integer from 0 to 600000");
    else
        a = long_poll(id, wait_ms < 0 ? 0 : wait_ms, fd, rep);
    free(id);
    return a;
}

/* GET /api/exchange_result: the stored ids, oldest first. */
static void handle_list(struct endpoint_reply *rep)
{
    rep->body = store_list_json();
    rep->status = rep->body ? 200 : 500;
}

static void handle_root(struct endpoint_reply *rep)
{
    char body[128];
    snprintf(body, sizeof body,
             "{\"message\":\"main service is running\",\"results\":%zu}",
             store_count());
    rep->status = 200;
    rep->body = strdup(body);
}

static enum answer route(const struct http_request *req, int fd,
                         struct endpoint_reply *rep)
{
    const char *m = req->method, *path = req->path, *id;
    bool get = strcmp(m, "GET") == 0;
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
    } else if ((id = result_id_in(path))) {
        if (get)
            return handle_get_result(req, id, fd, rep);
        reply_error(rep, 405, "Method Not Allowed");
    } else {
        reply_error(rep, 404, "Not Found");
    }
    return ANSWER;
}

/* ------------------------------------------------------------ connections */

/* conn_io's handler: one parsed request, answered. True if the connection
 * goes on. */
static bool serve_request(int fd, const struct http_request *req, void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_busy, 1);
    struct endpoint_reply rep = {0};
    enum answer a = route(req, fd, &rep);
    bool more = false;
    if (a == NO_ANSWER)
        endpoint_reply_free(&rep);
    else
        more = conn_io_answer(fd, req, &rep, a == ANSWER_LAST);
    atomic_fetch_sub(&g_busy, 1);
    return more;
}

static void *connection_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    conn_io_serve(fd, &g_limits, serve_request, NULL);
    if (close(fd) < 0)
        log_warn("close: %s", strerror(errno));
    atomic_fetch_sub(&g_conn_threads, 1);
    return NULL;
}

static void spawn_connection(int fd, pthread_attr_t *attr)
{
    if (atomic_fetch_add(&g_conn_threads, 1) >= g_opt.max_conns) {
        atomic_fetch_sub(&g_conn_threads, 1);
        log_warn("%d connections open: refusing one with 503",
                 g_opt.max_conns);
        conn_io_refuse_busy(fd, "too many connections");
        return;
    }
    pthread_t tid;
    int rc = pthread_create(&tid, attr, connection_main, (void *)(intptr_t)fd);
    if (rc != 0) {
        atomic_fetch_sub(&g_conn_threads, 1);
        log_warn("pthread_create: %s: refusing a connection with 503",
                 strerror(rc));
        conn_io_refuse_busy(fd, "cannot start a thread");
    }
}

/* ------------------------------------------------------------------- main */

/* Listens, non-blocking so a client that vanishes between poll() and
 * accept() cannot block the acceptor (and with it the stop), and prints
 * the one stdout line. -1 if it cannot. */
static int listen_and_announce(const char *host, int port)
{
    int bound;
    int fd = net_listen(host, port, &bound);
    if (fd < 0)
        return -1;
    if (net_set_nonblocking(fd) < 0) {
        perror("listening socket: O_NONBLOCK");
        close(fd);
        return -1;
    }
    net_announce(host, bound);
    log_info("main service on http://%s:%d (max %d connections, %d long "
             "polls; store: %zu results, %zu MB)", host, bound,
             g_opt.max_conns, g_opt.max_waiters, g_opt.max_results,
             g_opt.max_store_mb);
    return fd;
}

/* A thread per connection needs a descriptor per connection: a shell's
 * soft limit (often 1024) would leave clients in the backlog long before
 * --max-conns. Raised to the hard limit, and the result said. */
static void raise_fd_limit(void)
{
    if (net_raise_fd_limit() < 0)
        log_warn("raising the descriptor limit: %s", strerror(errno));
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("getrlimit: %s", strerror(errno));
    else if (rl.rlim_cur == RLIM_INFINITY)
        log_info("descriptor limit unlimited");
    else
        log_info("descriptor limit %llu", (unsigned long long)rl.rlim_cur);
}

/* THREAD_STACK_BYTES, or the system's minimum for a thread's stack where
 * that is larger: 16 KiB on x86-64, 128 KiB on arm64 (glibc's
 * PTHREAD_STACK_MIN there, for 64 KiB pages), where a 64 KiB stack is
 * refused with EINVAL. */
static size_t thread_stack_bytes(void)
{
    long min = sysconf(_SC_THREAD_STACK_MIN);
    return min > THREAD_STACK_BYTES ? (size_t)min : THREAD_STACK_BYTES;
}

/* Detached threads with a small stack. false if attr cannot be made. */
static bool thread_attr_init(pthread_attr_t *attr)
{
    int rc = pthread_attr_init(attr);
    if (rc == 0)
        rc = pthread_attr_setdetachstate(attr, PTHREAD_CREATE_DETACHED);
    if (rc != 0) {
        fprintf(stderr, "pthread_attr: %s\n", strerror(rc));
        return false;
    }
    size_t stack = thread_stack_bytes();
    rc = pthread_attr_setstacksize(attr, stack);
    if (rc != 0)
        log_warn("pthread_attr_setstacksize(%zu): %s; using the default",
                 stack, strerror(rc));
    return true;
}

/* Stops accepting, wakes the waiters, gives requests in progress a moment. */
static void shut_down(int listen_fd)
{
    close(listen_fd);
    store_stop();
    uint64_t give_up = timer_now_ms() + STOP_GRACE_MS;
    while (atomic_load(&g_busy) > 0 && timer_now_ms() < give_up)
        timer_nanosleep_ms(10);
    log_info("stopped (%d connections dropped, %zu results discarded)",
             atomic_load(&g_conn_threads) + atomic_load(&g_waiters),
             store_count());
}
int main(int argc, char **argv)
{
    ms_options_parse(&g_opt, argc, argv);
    g_token_len = strlen(g_opt.token);
    g_limits = (struct conn_io_limits){
        .idle_timeout_ms = g_opt.idle_timeout_ms,
        .header_timeout_ms = g_opt.header_timeout_ms,
        .body_timeout_ms = g_opt.body_timeout_ms};
    log_init("main-service", g_opt.quiet);
    log_show_threads(true);
    if (g_opt.token_is_default)
        log_warn("SECRET_TOKEN is not set: accepting the default token %s; "
                 "set SECRET_TOKEN outside a classroom", MS_DEFAULT_TOKEN);

    net_ignore_sigpipe();
    raise_fd_limit();
    if (store_init(g_opt.max_results, g_opt.max_store_mb << 20) < 0)
        return 1;
    /* Requests in progress get STOP_GRACE_MS after a stop (shutdown.h). */
    if (shutdown_init(STOP_GRACE_MS) < 0) {
        perror("shutdown_init");
        return 1;
    }
    pthread_attr_t attr;
    if (!thread_attr_init(&attr))
        return 1;
    int lfd = listen_and_announce(g_opt.host, g_opt.port);
    if (lfd < 0) {
        pthread_attr_destroy(&attr);
        return 1;
    }
    while (shutdown_wait_accept(lfd)) {
        int fd = conn_io_accept(lfd); /* backs off itself on EMFILE */
        if (fd >= 0)
            spawn_connection(fd, &attr);
    }
    log_info("stop requested: stopping");
    pthread_attr_destroy(&attr);
    shut_down(lfd);
    return 0;
}
