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
 * and accept() failing with EMFILE would spin (04 pauses). tiny_http.h
 * holds the rest: the HTTP text, the clock, the listening socket. */
#include <sys/select.h>
#include <unistd.h>

#include "tiny_http.h"

enum state { READ, BILL, WRITE };

struct conn {
    enum state state;
    struct tiny_req r;                   /* the request and its answer */
    size_t bills_done;
    long long due_ms;                    /* when the current bill is done */
};

static struct conn *conns[FD_SETSIZE];   /* by descriptor; NULL: none */
static int delay_ms = 2000;

static void drop(int fd)
{
    close(fd);
    free(conns[fd]->r.out);
    free(conns[fd]);
    conns[fd] = NULL;
}

/* The steps. Each one does what the socket or the clock allows, without
 * ever blocking, and sets the state: what to wait for next. */

/* READ, readable: take what came; a whole request waits its first bill. */
static void on_readable(int fd)
{
    struct conn *c = conns[fd];
    switch (tiny_read(fd, &c->r)) {
    case TINY_GONE:
        drop(fd);
        break;
    case TINY_MORE:                      /* stay READ */
        break;
    case TINY_ANSWER:                    /* a 404 or a 400 */
        c->state = WRITE;
        break;
    case TINY_BILLS:
        c->state = BILL;
        c->due_ms = tiny_now_ms() + delay_ms;
        break;
    }
}

/* BILL, its deadline passed: wait the next one, or answer. */
static void on_bill_due(struct conn *c)
{
    if (++c->bills_done < c->r.req.num_bills) {
        c->due_ms = tiny_now_ms() + delay_ms;
        return;
    }
    tiny_breakdown(&c->r);
    c->state = WRITE;
}

/* WRITE, writable: send what fits; once all of it is sent, close. */
static void on_writable(int fd)
{
    struct conn *c = conns[fd];
    if (tiny_send(fd, &c->r) != 0)
        drop(fd);                        /* all sent, or an error */
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
        long long now = tiny_now_ms();
        long long ms = due < 0 ? -1 : due > now ? due - now : 0;
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
            else if (c && c->state == BILL && c->due_ms <= tiny_now_ms())
                on_bill_due(c);
        }
        /* ...then a new client (it was in no set this turn): state READ. */
        int fd = ready > 0 && FD_ISSET(lfd, &rd)
                     ? accept4(lfd, NULL, NULL, SOCK_NONBLOCK) : -1;
        if (fd >= 0 && (fd >= FD_SETSIZE ||
                        !(conns[fd] = calloc(1, sizeof *conns[fd]))))
            close(fd);
    }
}

int main(int argc, char **argv)
{
    int lfd = tiny_listen(argc, argv, 8004, &delay_ms);
    if (lfd < 0) {
        perror(argv[0]);
        return 1;
    }
    serve(lfd);                          /* returns only on an error */
    return 1;
}
