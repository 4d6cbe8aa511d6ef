/* soak_http: the bytes of HTTP/1.1 as the soak writes and reads them:
 * requests built by appending, a response recognised whole from its
 * Content-Length (the harness's harness_response_frame), a non-blocking
 * connect, and a blocking GET for the checks after the traffic. */
#include "soak.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../harness.h"

char *soak_append(char *buf, size_t *len, const char *text, size_t n)
{
    char *p = realloc(buf, *len + n + 1);
    if (!p) {
        fprintf(stderr, "soak: out of memory\n");
        exit(3);
    }
    memcpy(p + *len, text, n);
    *len += n;
    p[*len] = '\0';
    return p;
}

char *soak_append_post(char *buf, size_t *len, const char *path,
                       const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: soak\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, strlen(body));
    buf = soak_append(buf, len, head, (size_t)n);
    return soak_append(buf, len, body, strlen(body));
}

char *soak_exchange_body(const char *id, int bills)
{
    size_t len = 0;
    char *b = NULL;
    char part[128];
    int n = snprintf(part, sizeof part,
                     "{\"request_id\": \"%s\", \"exchange_rate\": 2, "
                     "\"bills\": [", id ? id : "sync");
    b = soak_append(b, &len, part, (size_t)n);
    for (int i = 0; i < bills; i++) {
        n = snprintf(part, sizeof part,
                     "%s{\"denomination_id\": %d, \"denomination\": 1.5, "
                     "\"count\": 2}", i ? ", " : "", i + 1);
        b = soak_append(b, &len, part, (size_t)n);
    }
    return soak_append(b, &len, "]}", 2);
}

int soak_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ||
        errno == EINPROGRESS)
        return fd;
    close(fd);
    return -1;
}

bool soak_whole_response(const char *buf, size_t len, size_t *size,
                         int *status, bool *closes)
{
    size_t head;
    long whole = harness_response_frame(buf, len, &head, status);
    if (whole <= 0 || (size_t)whole > len)
        return false;
    const char *conn = harness_header(buf, head, "Connection");
    *size = (size_t)whole;
    *closes = conn && strncasecmp(conn, "close", 5) == 0;
    return true;
}

int soak_http_get(int *fd, int port, const char *path, int timeout_ms)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (*fd < 0) {
            *fd = soak_connect(port, 0);
            if (*fd < 0)
                return 0;
            struct pollfd p = {.fd = *fd, .events = POLLOUT};
            if (poll(&p, 1, timeout_ms) <= 0) {
                close(*fd);
                *fd = -1;
                return 0;
            }
        }
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: soak\r\n\r\n", path);
        bool sent = send(*fd, req, (size_t)n, MSG_NOSIGNAL) == n;
        static char in[65536];
        size_t len = 0, size;
        int status = 0;
        bool closes = false;
        double deadline = soak_now() + timeout_ms / 1000.0;
        while (sent && soak_now() < deadline) {
            struct pollfd p = {.fd = *fd, .events = POLLIN};
            if (poll(&p, 1, 50) <= 0)
                continue;
            ssize_t r = recv(*fd, in + len, sizeof in - len, 0);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0)
                break;
            len += (size_t)r;
            if (soak_whole_response(in, len, &size, &status, &closes)) {
                if (closes) {
                    close(*fd);
                    *fd = -1;
                }
                return status;
            }
        }
        close(*fd); /* a kept connection the server had closed: retry once */
        *fd = -1;
    }
    return 0;
}
