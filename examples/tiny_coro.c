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
 * guard page; waits that cannot time out or be cancelled; no keep-alive.
 * tiny_http.h holds the rest: the HTTP text, the listening socket, and
 * the sleepers' deadlines, in a sorted list (06: a heap). */
#include <stdint.h>
#include <sys/epoll.h>
#include <ucontext.h>
#include <unistd.h>

#include "tiny_http.h"

struct co {
    ucontext_t ctx;                      /* its registers while parked */
    void (*fn)(void *);
    void *arg;
    bool done;
    struct list link;                    /* in `ready` while ready */
    struct tiny_timer wake;              /* in `sleepers` while asleep */
    char stack[64 * 1024];
};

static ucontext_t scheduler;             /* where a parking coroutine goes */
static struct co *current;               /* the one running now */
static struct list ready = {&ready, &ready}, sleepers = {&sleepers, &sleepers};
static int ep;                           /* epoll: who waits for which fd */

static void co_main(void)                /* a coroutine's first frame */
{
    current->fn(current->arg);
    current->done = true;                /* then uc_link: the scheduler */
}

/* getcontext "returns twice" (like setjmp): no local may live across it,
 * hence a function of its own. Its context starts co_main on co's own
 * stack and ends in the scheduler. */
static int context_on(struct co *co)
{
    if (getcontext(&co->ctx) < 0)
        return -1;
    co->ctx.uc_stack = (stack_t){.ss_sp = co->stack, .ss_size = sizeof co->stack};
    co->ctx.uc_link = &scheduler;
    makecontext(&co->ctx, co_main, 0);
    return 0;
}

/* A new coroutine running fn(arg), ready to run; NULL if out of memory. */
static struct co *co_spawn(void (*fn)(void *), void *arg)
{
    struct co *co = calloc(1, sizeof *co);
    if (!co || context_on(co) < 0) {
        free(co);
        return NULL;
    }
    co->fn = fn;
    co->arg = arg;
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
    tiny_timer_add(&sleepers, &current->wake, ms);
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
        for (struct list *it; (it = list_pop_front(&ready));) {
            current = LIST_ITEM(it, struct co, link);
            swapcontext(&scheduler, &current->ctx); /* back when it parks */
            if (current->done)
                free(current);
        }
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, tiny_timer_wait_ms(&sleepers));
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return;
        }
        for (int i = 0; i < n; i++)
            list_push_back(&ready, &((struct co *)ev[i].data.ptr)->link);
        for (struct tiny_timer *due; (due = tiny_timer_due(&sleepers));)
            list_push_back(&ready, &container_of(due, struct co, wake)->link);
    }
}

/* ---- the server: a coroutine per connection, written like 01 ---- */

static int delay_ms = 2000, lfd;

/* A connection's coroutine: read a request, wait its bills one after the
 * other, answer, close. 01's code; only the waits park instead of block. */
static void serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct tiny_req r = {.in_len = 0};   /* on this coroutine's stack */
    enum tiny_got got;
    while ((got = tiny_read(fd, &r)) == TINY_MORE &&
           co_wait_fd(fd, EPOLLIN) == 0)
        ;                                /* parked until readable */
    if (got == TINY_BILLS) {
        for (size_t i = 0; i < r.req.num_bills; i++)
            co_sleep(delay_ms);          /* 01's nanosleep, but parked */
        tiny_breakdown(&r);
    }
    while (got > TINY_MORE && tiny_send(fd, &r) == 0 &&
           co_wait_fd(fd, EPOLLOUT) == 0)
        ;                                /* parked while the socket is full */
    free(r.out);
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
    if ((lfd = tiny_listen(argc, argv, 8006, &delay_ms)) < 0 ||
        (ep = epoll_create1(0)) < 0 || !co_spawn(acceptor, NULL)) {
        perror(argv[0]);                 /* errno: what failed first */
        return 1;
    }
    co_run();                            /* returns only on an error */
    return 1;
}
