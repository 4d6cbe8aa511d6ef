/* tiny_coro: 06-coroutines' idea in one file. Read this first, then see
 * what the real one adds.
 *
 * A coroutine is a function with a stack of its own, so it can stop in the
 * middle (park) and be resumed later where it stood: swapcontext saves one
 * set of registers and loads another. The scheduler runs every ready
 * coroutine, then sleeps in epoll_wait until a parked one can go on: its fd
 * is ready (co_wait_fd) or its time has come (co_sleep). So serve() below
 * is 01's straight-line code, and one thread still serves everyone.
 *
 * Shortcuts, on purpose (06 does each properly): swapcontext, a system
 * call per switch (06 can switch with setjmp); 64 KiB stacks without a
 * guard page; sleepers in a sorted list (06: a heap); waits that cannot
 * time out or be cancelled; no keep-alive. The HTTP text is the naive
 * tiny_http.h. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "list.h"
#include "tiny_http.h"

struct co {
    ucontext_t ctx;                      /* its registers while parked */
    void (*fn)(void *);
    void *arg;
    int done;
    long long wake_ms;                   /* co_sleep: due at this time */
    struct list link;                    /* in `ready` or `sleepers` */
    char stack[64 * 1024];
};

static ucontext_t scheduler;             /* where a parking coroutine goes */
static struct co *current;               /* the one running now */
static struct list ready = {&ready, &ready}, sleepers = {&sleepers, &sleepers};
static int ep;                           /* epoll: who waits for which fd */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void co_main(void)                /* a coroutine's first frame */
{
    current->fn(current->arg);
    current->done = 1;                   /* then uc_link: the scheduler */
}

/* getcontext "returns twice" (like setjmp): no local may live across it,
 * hence a function of its own. */
static int context_on(ucontext_t *uc, char *stack, size_t size)
{
    if (getcontext(uc) < 0)
        return -1;
    uc->uc_stack = (stack_t){.ss_sp = stack, .ss_size = size};
    uc->uc_link = &scheduler;
    makecontext(uc, co_main, 0);
    return 0;
}

/* A new coroutine running fn(arg), ready to run; NULL if out of memory.
 * Its context starts co_main on its own stack and ends in the scheduler. */
static struct co *co_spawn(void (*fn)(void *), void *arg)
{
    struct co *co = malloc(sizeof *co);
    if (!co || context_on(&co->ctx, co->stack, sizeof co->stack) < 0) {
        free(co);
        return NULL;
    }
    co->fn = fn;
    co->arg = arg;
    co->done = 0;
    list_push_back(&ready, &co->link);
    return co;
}

/* Saves this coroutine's registers and runs the scheduler; whoever put it
 * on a list (ready, sleepers) or in epoll resumes it from here. */
static void park(void)
{
    swapcontext(&current->ctx, &scheduler);
}

static void co_yield(void)               /* let the others run first */
{
    list_push_back(&ready, &current->link);
    park();
}

static void co_sleep(int ms)
{
    current->wake_ms = now_ms() + ms;
    struct list *pos = sleepers.prev;    /* from the latest: most go last */
    while (pos != &sleepers && LIST_ITEM(pos, struct co, link)->wake_ms > current->wake_ms)
        pos = pos->prev;
    list_insert_before(pos->next, &current->link);
    park();
}

/* Parks until fd is ready for events (EPOLLIN, EPOLLOUT); -1 if it cannot. */
static int co_wait_fd(int fd, unsigned events)
{
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.ptr = current};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0 &&
        (errno != ENOENT || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0))
        return -1;
    park();
    return 0;
}

/* The scheduler: run whoever is ready; sleep until a fd or a sleeper is due. */
static void co_run(void)
{
    for (;;) {
        struct list *it;
        while ((it = list_pop_front(&ready))) {
            current = LIST_ITEM(it, struct co, link);
            swapcontext(&scheduler, &current->ctx); /* back when it parks */
            if (current->done)
                free(current);
        }
        long long ms = -1;
        if (!list_empty(&sleepers)) {
            ms = LIST_ITEM(sleepers.next, struct co, link)->wake_ms - now_ms();
            ms = ms < 0 ? 0 : ms;
        }
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, (int)ms);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return;
        }
        for (int i = 0; i < n; i++)
            list_push_back(&ready, &((struct co *)ev[i].data.ptr)->link);
        while (!list_empty(&sleepers) &&
               LIST_ITEM(sleepers.next, struct co, link)->wake_ms <= now_ms())
            list_push_back(&ready, list_pop_front(&sleepers));
    }
}

/* ---- the server: a coroutine per connection, written like 01 ---- */

static int delay_ms = 2000, lfd;

/* Sends all of out (NULL: out of memory, nothing), parking while the
 * socket is full. */
static void send_all(int fd, char *out, size_t len)
{
    for (size_t sent = 0; out && sent < len;) {
        ssize_t n = send(fd, out + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno != EAGAIN || co_wait_fd(fd, EPOLLOUT) < 0))
            break;
        sent += n > 0 ? (size_t)n : 0;
    }
    free(out);
}

/* A connection's coroutine: read a request, wait its bills one after the
 * other, answer, close. 01's code; only the waits park instead of block. */
static void serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char in[8192 + 1], *out;
    size_t got = 0, len;
    const char *body = NULL;
    while (!body) {
        ssize_t n = recv(fd, in + got, sizeof in - 1 - got, 0);
        if (n < 0 && errno == EAGAIN && co_wait_fd(fd, EPOLLIN) == 0)
            continue;                    /* parked until readable */
        if (n <= 0 || (got += (size_t)n) == sizeof in - 1) {
            close(fd);                   /* gone, an error, or too big */
            return;
        }
        in[got] = '\0';
        body = tiny_whole_request(in, got, &len);
    }
    struct exchange_request req;
    if (tiny_route(in, body, len, &req, &out, &len)) {
        for (size_t i = 0; i < req.num_bills; i++)
            co_sleep(delay_ms);          /* 01's nanosleep, but parked */
        out = tiny_breakdown(&req, &len);
    }
    send_all(fd, out, len);
    close(fd);
}

static void acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0 && co_spawn(serve, (void *)(intptr_t)fd))
            co_yield();                  /* the new one reads first */
        else if (fd >= 0)
            close(fd);
        else if (errno != EAGAIN || co_wait_fd(lfd, EPOLLIN) < 0)
            co_sleep(100);               /* EMFILE: pause, do not spin */
    }
}

int main(int argc, char **argv)
{
    int port = 8006, one = 1;
    tiny_options(argc, argv, &port, &delay_ms);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(lfd, (struct sockaddr *)&a, len) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)&a, &len) ||
        (ep = epoll_create1(0)) < 0 || !co_spawn(acceptor, NULL)) {
        perror("listen");
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    co_run();
    return 1;
}
