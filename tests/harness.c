/* harness: see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

#define START_TIMEOUT_MS 20000 /* sanitizer builds start slowly */

double harness_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

const struct stage_traits harness_stages[HARNESS_NUM_STAGES] = {
    {"01-blocking", .overlaps = false, .keep_alive = false, .exhausts = false},
    {"02-fork", .overlaps = true, .keep_alive = true, .exhausts = false},
    {"03-threads", .overlaps = true, .keep_alive = true, .exhausts = true},
    {"04-select", .overlaps = true, .keep_alive = true, .exhausts = true},
    {"05-epoll-callbacks", .overlaps = true, .keep_alive = true,
     .exhausts = true, .backends = true},
    {"06-coroutines", .overlaps = true, .keep_alive = true, .exhausts = true,
     .backends = true},
};

bool harness_stage_selected(const char *name)
{
    const char *only = getenv("STAGES");
    if (only && *only && !strstr(only, name))
        return false;
    return access(name, F_OK) == 0;
}

bool harness_row_selected(int row)
{
    return row >= 0 && row < HARNESS_NUM_STAGES &&
           harness_stage_selected(harness_stages[row].name);
}

int harness_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

bool harness_skip(const char *test)
{
    const char *list = getenv("HARNESS_SKIP");
    size_t n = strlen(test);
    for (const char *p = list; p && (p = strstr(p, test)) != NULL; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) {
            printf("SKIPPED %s: named in HARNESS_SKIP\n", test);
            fflush(stdout);
            return true;
        }
    }
    return false;
}

char *harness_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[8192];
    size_t got;
    while (mem && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, got, mem);
    bool ok = !ferror(f);
    if (mem)
        fclose(mem); /* sets buf */
    fclose(f);
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

const char *harness_bin(const char *name)
{
    static char path[512];
    const char *dir = getenv("STAGE_BIN_DIR");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "build", name);
    return path;
}

static void harness_curl_init(void)
{
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        net_raise_fd_limit(); /* thousands of sockets, here and in the
                                 servers started from here */
        signal(SIGPIPE, SIG_IGN);
        done = 1;
    }
}

int harness_wait_listening(int fd, pid_t pid)
{
    char line[256];
    size_t cap = sizeof line, len = 0;
    double deadline = harness_now() + START_TIMEOUT_MS / 1000.0;
    while (harness_now() < deadline && len < cap - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0) {
            if (waitpid(pid, NULL, WNOHANG) == pid)
                return -1; /* it died before listening */
            continue;
        }
        ssize_t n = read(fd, line + len, cap - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        line[len] = '\0';
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            char *colon = strrchr(line, ':');
            if (strncmp(line, "listening on http://", 20) != 0 || !colon)
                return -1;
            return atoi(colon + 1);
        }
    }
    return -1;
}

void proc_start(struct proc *p, const char *name, const char *const *args,
                const char *const *env)
{
    proc_start_limited(p, name, args, env, 0);
}

void proc_start_limited(struct proc *p, const char *name,
                        const char *const *args, const char *const *env,
                        int max_fds)
{
    harness_curl_init();
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    const char *bin = harness_bin(name);
    ck_assert_msg(access(bin, X_OK) == 0, "%s is not built", bin);

    int out[2];
    ck_assert(pipe2(out, O_CLOEXEC) == 0);
    /* The log goes to a memory file, never a pipe: a pipe nobody drains
     * would block a chatty server once 64 KiB of log piled up. */
    p->log_fd = memfd_create("server-log", 0);
    ck_assert(p->log_fd >= 0);
    /* O_APPEND: a memfd's file offset is not updated atomically, so lines
     * written at once by several threads or forked children would land on
     * the same offset and overwrite each other. Appends never do. */
    ck_assert(fcntl(p->log_fd, F_SETFL, O_APPEND) == 0);

    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    for (int i = 0; args && args[i] && argc < 62; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;

    pid_t parent = getpid();
    p->pid = fork();
    ck_assert(p->pid >= 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], STDOUT_FILENO);
        dup2(p->log_fd, STDERR_FILENO);
        setpgid(0, 0); /* signals to the test's group do not reach it */
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        struct rlimit few = {(rlim_t)max_fds, (rlim_t)max_fds};
        if (max_fds > 0 && setrlimit(RLIMIT_NOFILE, &few) < 0)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        execv(bin, argv);
        _exit(127);
    }
    close(out[1]);
    p->port = harness_wait_listening(out[0], p->pid);
    close(out[0]);
    if (p->port <= 0) {
        fprintf(stderr, "%s did not start; its log:\n%s\n", name,
                harness_read_log(p));
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        ck_abort_msg("%s did not print its listening line", name);
    }
}

void harness_stage_start(struct proc *p, const char *name,
                         const struct stage_opts *o)
{
    static const struct stage_opts none;
    static const char *const env[] = {"SECRET_TOKEN=" HARNESS_TOKEN, NULL};
    static const char *const client_waits[] = {
        "--idle-timeout-ms", "--header-timeout-ms", "--body-timeout-ms"};
    if (o == NULL)
        o = &none;
    char delay[16], timeout[16], deadline[16];
    snprintf(delay, sizeof delay, "%d", o->delay_ms);
    snprintf(timeout, sizeof timeout, "%d", o->client_timeout_ms);
    snprintf(deadline, sizeof deadline, "%d", o->callback_deadline_ms);
    const char *args[60];
    int n = 0;
    const char *backend = getenv("STAGE_BACKEND");
    for (int k = 0; backend && *backend && k < HARNESS_NUM_STAGES; k++) {
        if (harness_stages[k].backends &&
            strcmp(harness_stages[k].name, name) == 0) {
            args[n++] = "--backend";
            args[n++] = backend;
        }
    }
    if (o->delay_ms) {
        args[n++] = "--delay-ms";
        args[n++] = delay;
    }
    for (int k = 0; o->client_timeout_ms && k < 3; k++) {
        args[n++] = client_waits[k];
        args[n++] = timeout;
    }
    if (o->main_url) {
        args[n++] = "--main-service";
        args[n++] = o->main_url;
    }
    if (o->callback_deadline_ms) {
        args[n++] = "--callback-deadline-ms";
        args[n++] = deadline;
    }
    char extra[256];
    const char *words = getenv("HARNESS_STAGE_ARGS");
    snprintf(extra, sizeof extra, "%s", words ? words : "");
    for (char *save, *w = strtok_r(extra, " ", &save); w;
         w = strtok_r(NULL, " ", &save)) {
        ck_assert_msg(n < 59, "harness_stage_start: too many arguments");
        args[n++] = w;
    }
    for (int k = 0; o->args && o->args[k]; k++) {
        ck_assert_msg(n < 59, "harness_stage_start: too many arguments");
        args[n++] = o->args[k];
    }
    args[n] = NULL;
    proc_start_limited(p, name, args, env, o->max_fds);
}

int proc_stop(struct proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    return proc_wait(p, timeout_ms);
}

static char *exit_log; /* harness_exit_log */

int proc_wait(struct proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    int status = 0, rc = -1;
    double deadline = harness_now() + timeout_ms / 1000.0;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status)
                                   : 128 + WTERMSIG(status);
            break;
        }
        if (harness_now() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            rc = -1;
            break;
        }
        harness_sleep_ms(10);
    }
    p->pid = 0;
    free(exit_log);
    exit_log = strdup(harness_read_log(p));
    if (rc != 0 || getenv("HARNESS_VERBOSE"))
        fprintf(stderr, "--- %s exited with %d; its log:\n%s\n", p->name, rc,
                exit_log ? exit_log : "");
    if (p->log_fd >= 0)
        close(p->log_fd);
    p->log_fd = -1;
    return rc;
}

const char *harness_exit_log(void)
{
    return exit_log ? exit_log : "";
}

const char *harness_read_log(struct proc *p)
{
    static char *buf;
    free(buf);
    buf = NULL;
    off_t size = p->log_fd >= 0 ? lseek(p->log_fd, 0, SEEK_END) : 0;
    if (size < 0)
        size = 0;
    buf = malloc((size_t)size + 1);
    if (!buf)
        return "";
    ssize_t n = size > 0 ? pread(p->log_fd, buf, (size_t)size, 0) : 0;
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* ---- HTTP through libcurl ---- */

struct sink {
    char *data;
    size_t len;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    char *d = realloc(s->data, s->len + n + 1);
    if (!d)
        return 0;
    memcpy(d + s->len, ptr, n);
    s->data = d;
    s->len += n;
    d[s->len] = '\0';
    return n;
}

static CURL *harness_easy(const char *method, int port, const char *path,
                          const char *body, struct sink *sink,
                          struct curl_slist **hdrs)
{
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    return e;
}

static void harness_finish(CURL *e, CURLcode rc, struct sink *sink,
                           struct http_result *r)
{
    r->end = harness_now();
    r->seconds = r->end - r->start;
    r->status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = sink->data ? sink->data : strdup("");
}

void http_request(const char *method, int port, const char *path,
                  const char *body, struct http_result *r)
{
    harness_curl_init();
    struct sink sink = {0};
    struct curl_slist *hdrs;
    CURL *e = harness_easy(method, port, path, body, &sink, &hdrs);
    r->start = harness_now();
    CURLcode rc = curl_easy_perform(e);
    harness_finish(e, rc, &sink, r);
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
}

void http_parallel(const char *method, int port, const char *path,
                   const char *body, int n, struct http_result *out)
{
    harness_curl_init();
    CURLM *m = curl_multi_init();
    CURL **easy = calloc((size_t)n, sizeof *easy);
    struct sink *sinks = calloc((size_t)n, sizeof *sinks);
    struct curl_slist **hdrs = calloc((size_t)n, sizeof *hdrs);
    ck_assert(m && easy && sinks && hdrs);
    for (int i = 0; i < n; i++) {
        easy[i] = harness_easy(method, port, path, body, &sinks[i], &hdrs[i]);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, (void *)(long)i);
        out[i].start = harness_now();
        curl_multi_add_handle(m, easy[i]);
    }
    int running = n;
    while (running > 0) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            void *priv;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            int i = (int)(long)priv;
            harness_finish(msg->easy_handle, msg->data.result, &sinks[i], &out[i]);
        }
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(hdrs[i]);
    }
    curl_multi_cleanup(m);
    free(easy);
    free(sinks);
    free(hdrs);
}

void http_result_free(struct http_result *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- raw sockets, for what curl would never send ---- */

int raw_connect(int port)
{
    harness_curl_init();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

char *raw_exchange(int port, const void *bytes, size_t len, int timeout_ms)
{
    struct sink sink = {0};
    int fd = raw_connect(port);
    if (fd >= 0) {
        const char *p = bytes;
        while (len > 0) {
            ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break; /* the server may close early: read what it said */
            p += w;
            len -= (size_t)w;
        }
        double deadline = harness_now() + timeout_ms / 1000.0;
        char buf[4096];
        while (harness_now() < deadline) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int left = (int)((deadline - harness_now()) * 1000) + 1;
            int r = poll(&pfd, 1, left);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            sink_write(buf, 1, (size_t)n, &sink);
        }
        close(fd);
    }
    return sink.data ? sink.data : strdup("");
}

int harness_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

int raw_status(const char *response)
{
    int status = 0;
    if (sscanf(response, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* ---- one HTTP response ---- */

#define RESPONSE_HEAD_MAX 65536 /* no server here sends a longer head */

const char *harness_header(const char *head, size_t head_len,
                           const char *name)
{
    size_t n = strlen(name);
    const char *end = head + head_len;
    const char *l = memmem(head, head_len, "\r\n", 2); /* past the status */
    while (l && (size_t)(end - l) > n + 2) {
        l += 2; /* the start of a header line */
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            return v;
        }
        l = memmem(l, (size_t)(end - l), "\r\n", 2);
    }
    return NULL;
}

/* The decimal number at the start of a header value (it ends at the
 * line's "\r\n", so the digits cannot run past the head); 0 if none. */
static size_t header_number(const char *v)
{
    size_t n = 0;
    for (; v && *v >= '0' && *v <= '9'; v++)
        n = n * 10 + (size_t)(*v - '0');
    return n;
}

long harness_response_frame(const char *buf, size_t len, size_t *head_len,
                            int *status)
{
    static const char version[] = "HTTP/1.";
    if (memcmp(buf, version, len < 7 ? len : 7) != 0)
        return -1;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return len > RESPONSE_HEAD_MAX ? -1 : 0;
    size_t head = (size_t)(end + 4 - buf);
    char line[64]; /* the status line, NUL-terminated for sscanf */
    size_t k = head < sizeof line - 1 ? head : sizeof line - 1;
    memcpy(line, buf, k);
    line[k] = '\0';
    int code;
    if (sscanf(line, "HTTP/1.%*d %d", &code) != 1)
        return -1;
    size_t body = code < 200 ? 0 : /* an interim answer has no body */
        header_number(harness_header(buf, head, "Content-Length"));
    if (head_len)
        *head_len = head;
    if (status)
        *status = code;
    return (long)(head + body);
}

/* Peeks at what has arrived on fd after buf[0..len) and says how much of
 * it belongs to the head: up to the blank line if it is there, else all
 * of it. 0: the peer closed (or reset); -1 with errno: nothing yet. */
static ssize_t head_bytes_waiting(int fd, char *buf, size_t len, size_t cap)
{
    ssize_t got = recv(fd, buf + len, cap - len, MSG_PEEK);
    if (got < 0 && errno != EINTR && errno != EAGAIN &&
        errno != EWOULDBLOCK)
        return 0; /* a reset is an end too */
    if (got <= 0)
        return got;
    size_t from = len < 3 ? 0 : len - 3; /* the blank line may straddle */
    const char *end = memmem(buf + from, len + (size_t)got - from,
                             "\r\n\r\n", 4);
    return end ? end + 4 - (buf + len) : got;
}

enum harness_read harness_read_response(int fd, int timeout_ms,
                                        struct harness_response *r)
{
    memset(r, 0, sizeof *r);
    size_t cap = 4096, len = 0, head = 0;
    long whole = 0; /* the response's size, once its head is in */
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    double deadline = harness_now() + timeout_ms / 1000.0;
    enum harness_read how;
    for (;;) {
        if (whole == 0)
            whole = harness_response_frame(buf, len, &head, &r->status);
        if (whole < 0 || (whole > 0 && (size_t)whole == len)) {
            how = whole < 0 ? HARNESS_READ_GARBAGE : HARNESS_READ_OK;
            break;
        }
        int left = (int)((deadline - harness_now()) * 1000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = left > 0 ? poll(&pfd, 1, left) : 0;
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            how = HARNESS_READ_TIMEOUT;
            break;
        }
        size_t room = whole > 0 ? (size_t)whole : len + 4096;
        if (room > cap) {
            cap = room;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
        /* The body's size is known once the head is in; until then take
         * no more than the head, so nothing past this response is read. */
        ssize_t want = whole > 0 ? whole - (long)len
                                 : head_bytes_waiting(fd, buf, len, cap);
        ssize_t got = want > 0 ? recv(fd, buf + len, (size_t)want, 0) : want;
        if (got < 0 && (errno == EINTR || errno == EAGAIN ||
                        errno == EWOULDBLOCK))
            continue;
        if (got <= 0) {
            how = len == 0 ? HARNESS_READ_CLOSED : HARNESS_READ_GARBAGE;
            break;
        }
        len += (size_t)got;
    }
    if (how != HARNESS_READ_OK) {
        free(buf);
        memset(r, 0, sizeof *r);
        return how;
    }
    buf[len] = '\0';
    r->text = buf;
    r->head_len = head;
    r->body = buf + head;
    r->body_len = len - head;
    const char *conn = harness_header(buf, head, "Connection");
    r->close = conn && strncasecmp(conn, "close", 5) == 0;
    r->keep_alive = conn && strncasecmp(conn, "keep-alive", 10) == 0;
    return how;
}

char *harness_read_response_text(int fd, int timeout_ms)
{
    struct harness_response r;
    if (harness_read_response(fd, timeout_ms, &r) == HARNESS_READ_OK)
        return r.text;
    harness_response_free(&r);
    return NULL;
}

void harness_response_free(struct harness_response *r)
{
    free(r->text);
    memset(r, 0, sizeof *r);
}

const char *harness_read_name(enum harness_read how)
{
    static const char *const names[] = {"ok", "closed without an answer",
                                        "not an HTTP response", "timed out"};
    return names[how];
}

void harness_appendf(char **buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    char *joined = NULL;
    if (text && asprintf(&joined, "%s%s", *buf ? *buf : "", text) >= 0) {
        free(*buf);
        *buf = joined;
    }
    free(text);
}

int harness_thread_count(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1; /* gone; callable from any thread (no ck_assert) */
    int threads = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &threads) == 1)
            break;
    fclose(f);
    return threads;
}

void harness_send_all(int fd, const void *data, size_t n)
{
    const char *s = data;
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

char *harness_read_to_end(int fd, int timeout_ms, bool *reset, bool *timed_out)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    bool reset_, timed_out_;
    if (reset == NULL)
        reset = &reset_;
    if (timed_out == NULL)
        timed_out = &timed_out_;
    *reset = *timed_out = false;
    double deadline = harness_now() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((deadline - harness_now()) * 1000);
        if (left <= 0) {
            *timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            *timed_out = true;
            break;
        }
        if (len + 4096 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *reset = errno == ECONNRESET;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

void harness_send_text(int fd, const char *text)
{
    harness_send_all(fd, text, strlen(text));
}

int harness_children_of(pid_t pid, pid_t *kids, int max, int *zombies)
{
    int n = 0;
    *zombies = 0;
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* gone meanwhile */
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
        char *paren = strrchr(buf, ')'), state;
        int ppid;
        if (!paren || sscanf(paren + 1, " %c %d", &state, &ppid) != 2 ||
            ppid != pid)
            continue;
        *zombies += state == 'Z';
        if (n < max)
            kids[n] = (pid_t)atoi(e->d_name);
        n++;
    }
    closedir(d);
    return n;
}
