/* fake_main: the scriptable fake main service of the tests (see harness.h).
 * Plain blocking sockets on one thread of the test: it serves one
 * connection at a time, which is all a scripted answer needs, and keeps
 * the order of requests the order of the script. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAKE_READ_TIMEOUT_S 5.0  /* a sender that stops mid-request */
#define FAKE_REQUEST_MAX 65536   /* a callback is a few KiB at most */

static bool fake_stopping(struct fake_main *f)
{
    pthread_mutex_lock(&f->lock);
    bool stop = f->stop;
    pthread_mutex_unlock(&f->lock);
    return stop;
}

/* Reads one request (head + Content-Length body) into a malloc'd string;
 * *body_at gets the body's offset. NULL if the client gave up, stalled or
 * the fake is stopping. */
static char *fake_read_request(struct fake_main *f, int fd, size_t *body_at)
{
    size_t cap = FAKE_REQUEST_MAX, len = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    double deadline = harness_now() + FAKE_READ_TIMEOUT_S;
    while (harness_now() < deadline && !fake_stopping(f)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        *end = '\0'; /* the head alone, for the header search */
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
        *end = '\r';
        *body_at = (size_t)(end + 4 - buf);
        if (len >= *body_at + want || len == cap)
            return buf;
    }
    free(buf);
    return NULL;
}

static void fake_answer(int fd, int status, const char *header)
{
    const char *body = status / 100 == 2 ? "{\"status\":\"ok\"}"
                                         : "{\"detail\":\"scripted failure\"}";
    char out[1024];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d Scripted\r\nContent-Type: application/json"
                     "\r\n%s%sContent-Length: %zu\r\nConnection: close"
                     "\r\n\r\n%s", status, header ? header : "",
                     header ? "\r\n" : "", strlen(body), body);
    ssize_t w = send(fd, out, (size_t)n, MSG_NOSIGNAL);
    (void)w; /* a client that left is the stage's problem, judged by it */
}

static void fake_serve_one(struct fake_main *f, int fd)
{
    size_t body_at = 0;
    char *req = fake_read_request(f, fd, &body_at);
    if (!req)
        return;
    pthread_mutex_lock(&f->lock);
    int k = f->requests++;
    if (k < FAKE_MAIN_MAX_REQUESTS) {
        f->at[k] = harness_now();
        f->bodies[k] = strdup(req + body_at);
        req[body_at] = '\0';
        f->heads[k] = strdup(req);
    }
    pthread_mutex_unlock(&f->lock);
    free(req);
    /* Slow, but interruptible so the test never waits on its own fake. */
    for (int waited = 0; waited < f->delay_ms && !fake_stopping(f);
         waited += 10)
        harness_sleep_ms(10);
    int idx = k < f->num_statuses ? k : f->num_statuses - 1;
    fake_answer(fd, f->statuses[idx], f->headers[idx]);
}

static void *fake_main_thread(void *arg)
{
    struct fake_main *f = arg;
    while (!fake_stopping(f)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* the client left, or EMFILE: poll again */
        fake_serve_one(f, fd);
        close(fd);
    }
    return NULL;
}

void fake_main_listen(struct fake_main *f, int delay_ms, const int *statuses,
                      int n)
{
    ck_assert_msg(n >= 1 && n <= FAKE_MAIN_MAX_STATUSES,
                  "a script of %d statuses", n);
    memset(f, 0, sizeof *f);
    f->delay_ms = delay_ms;
    memcpy(f->statuses, statuses, (size_t)n * sizeof *statuses);
    f->num_statuses = n;
    pthread_mutex_init(&f->lock, NULL);
    f->lfd = harness_listen(&f->port);
}

void fake_main_set_header(struct fake_main *f, int k, const char *header)
{
    ck_assert(k >= 0 && k < f->num_statuses);
    f->headers[k] = header;
}

void fake_main_run(struct fake_main *f)
{
    ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main_thread, f), 0);
    f->running = true;
}

void fake_main_start(struct fake_main *f, int delay_ms, const int *statuses,
                     int n)
{
    fake_main_listen(f, delay_ms, statuses, n);
    fake_main_run(f);
}

int fake_main_requests(struct fake_main *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->requests;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fake_main_wait_requests(struct fake_main *f, int n, int timeout_ms)
{
    double start = harness_now();
    while (fake_main_requests(f) < n) {
        ck_assert_msg(harness_now() - start < timeout_ms / 1000.0,
                      "the fake main service got %d requests, wanted %d "
                      "within %d ms", fake_main_requests(f), n, timeout_ms);
        harness_sleep_ms(10);
    }
}

/* Request k's record, read under the lock (the thread writes it once). */
static void fake_record(struct fake_main *f, int k, const char **head,
                        const char **body, double *at)
{
    *head = *body = NULL;
    *at = 0;
    if (k < 0 || k >= FAKE_MAIN_MAX_REQUESTS)
        return;
    pthread_mutex_lock(&f->lock);
    if (k < f->requests) {
        *head = f->heads[k];
        *body = f->bodies[k];
        *at = f->at[k];
    }
    pthread_mutex_unlock(&f->lock);
}

const char *fake_main_head(struct fake_main *f, int k)
{
    const char *head, *body;
    double at;
    fake_record(f, k, &head, &body, &at);
    return head;
}

const char *fake_main_body(struct fake_main *f, int k)
{
    const char *head, *body;
    double at;
    fake_record(f, k, &head, &body, &at);
    return body;
}

double fake_main_at(struct fake_main *f, int k)
{
    const char *head, *body;
    double at;
    fake_record(f, k, &head, &body, &at);
    return at;
}

void fake_main_close(struct fake_main *f)
{
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_mutex_unlock(&f->lock);
    if (f->running)
        pthread_join(f->thread, NULL);
    f->running = false;
    close(f->lfd);
    f->lfd = -1;
    for (int i = 0; i < FAKE_MAIN_MAX_REQUESTS; i++) {
        free(f->bodies[i]);
        free(f->heads[i]);
        f->bodies[i] = f->heads[i] = NULL;
    }
    pthread_mutex_destroy(&f->lock);
}
