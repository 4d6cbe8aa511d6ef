/* tiny_select: 04-select's idea in one file. Read this first, then see what
 * the real one adds.
 *
 * One thread serves everyone. Every socket is non-blocking, so the only
 * call that sleeps is select(). A connection's state says what the loop
 * waits for on its behalf: READ (its socket goes in the read set), BILL (in
 * no set: its bill's deadline bounds select's timeout), WRITE (the write
 * set). Each turn builds the sets, sleeps until a socket is ready or the
 * earliest bill is due, then takes one step for each connection that can
 * move. A bill's wait is a number in a struct, not a sleeping thread.
 *
 * Shortcuts, on purpose (04 does each properly): no deadlines for slow
 * clients, no keep-alive, a descriptor >= FD_SETSIZE is closed unanswered,
 * and accept() failing with EMFILE would spin (04 pauses). The HTTP text
 * is the naive tiny_http.h. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tiny_http.h"

enum state { READ, BILL, WRITE };

struct conn {
    enum state state;
    char in[8192 + 1];                   /* the request, NUL-terminated */
    size_t in_len;
    struct exchange_request req;
    size_t bills_done;
    long long due_ms;                    /* when the current bill is done */
    char *out;                           /* the answer; how much is sent */
    size_t out_len, out_sent;
};

static struct conn *conns[FD_SETSIZE];   /* by descriptor; NULL: none */
static int delay_ms = 2000;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void drop(int fd)
{
    close(fd);
    free(conns[fd]->out);
    free(conns[fd]);
    conns[fd] = NULL;
}

/* The steps. Each one does what the socket or the clock allows, without
 * ever blocking, and sets the state: what to wait for next. */

/* READ, readable: take what came; a whole request waits its first bill. */
static void on_readable(int fd)
{
    struct conn *c = conns[fd];
    ssize_t n = recv(fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
    if (n < 0 && errno == EAGAIN)
        return;                          /* stay READ */
    if (n <= 0 || (c->in_len += (size_t)n) == sizeof c->in - 1) {
        drop(fd);                        /* gone, an error, or too big */
        return;
    }
    c->in[c->in_len] = '\0';
    size_t len;
    const char *body = tiny_whole_request(c->in, c->in_len, &len);
    if (body && tiny_route(c->in, body, len, &c->req, &c->out, &c->out_len)) {
        c->state = BILL;
        c->due_ms = now_ms() + delay_ms;
    } else if (body) {
        c->state = WRITE;                /* a 404 or a 400 */
    }
}

/* BILL, its deadline passed: wait the next one, or answer. */
static void on_bill_due(struct conn *c)
{
    if (++c->bills_done < c->req.num_bills) {
        c->due_ms = now_ms() + delay_ms;
        return;
    }
    c->out = tiny_breakdown(&c->req, &c->out_len);
    c->state = WRITE;
}

/* WRITE, writable: send what fits; once all of it is sent, close. */
static void on_writable(int fd)
{
    struct conn *c = conns[fd];
    ssize_t n = c->out ? send(fd, c->out + c->out_sent,   /* NULL: no */
                              c->out_len - c->out_sent, MSG_NOSIGNAL) : 0;
    if (n > 0)
        c->out_sent += (size_t)n;
    if (c->out_sent == c->out_len || (n < 0 && errno != EAGAIN))
        drop(fd);
}

/* The loop. */
static void serve(int lfd)
{
    for (;;) {
        fd_set rd, wr;
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        FD_SET(lfd, &rd);
        int max_fd = lfd;
        long long due = -1;              /* the earliest bill, or none */
        for (int fd = 0; fd < FD_SETSIZE; fd++) {
            struct conn *c = conns[fd];
            if (c && c->state == READ)
                FD_SET(fd, &rd);
            else if (c && c->state == WRITE)
                FD_SET(fd, &wr);
            else if (c && (due < 0 || c->due_ms < due))
                due = c->due_ms;
            if (c && fd > max_fd)
                max_fd = fd;
        }
        long long ms = due < 0 ? -1 : due > now_ms() ? due - now_ms() : 0;
        struct timeval tv = {ms / 1000, ms % 1000 * 1000};
        int ready = select(max_fd + 1, &rd, &wr, NULL, ms < 0 ? NULL : &tv);
        if (ready < 0 && errno != EINTR) {
            perror("select");
            return;
        }
        /* One step for each connection that can move... */
        for (int fd = 0; ready >= 0 && fd <= max_fd; fd++) {
            struct conn *c = conns[fd];
            if (c && c->state == READ && FD_ISSET(fd, &rd))
                on_readable(fd);
            else if (c && c->state == WRITE && FD_ISSET(fd, &wr))
                on_writable(fd);
            else if (c && c->state == BILL && c->due_ms <= now_ms())
                on_bill_due(c);
        }
        /* ...then a new client (it was in no set this turn): state READ. */
        int fd = ready > 0 && FD_ISSET(lfd, &rd)
                     ? accept4(lfd, NULL, NULL, SOCK_NONBLOCK) : -1;
        if (fd >= 0 && (fd >= FD_SETSIZE || !(conns[fd] = calloc(1, sizeof *conns[fd]))))
            close(fd);
    }
}

int main(int argc, char **argv)
{
    int port = 8004, one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    tiny_options(argc, argv, &port, &delay_ms);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(lfd, (struct sockaddr *)&a, len) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)&a, &len)) {
        perror("listen");
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    serve(lfd);
    return 1;
}
