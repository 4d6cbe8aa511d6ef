/* loop_impl: what common/loop.c shares with its backends, loop_epoll.c
 * and loop_uring.c. Private to those three files.
 *
 * Redis's event loop is split the same way: ae.c holds the loop (timers,
 * the registration table, the turn) and ae_epoll.c, ae_kqueue.c,
 * ae_select.c each hold one kernel interface behind a handful of
 * functions. Here loop.c keeps everything a backend has no say in: the
 * table of slots indexed by fd and their generations, the timer heap,
 * the queue of completions ready to be delivered, and the turn itself.
 * A backend keeps the kernel's side: how a slot's wishes become kernel
 * registrations or submissions, and how what the kernel reports becomes
 * calls of the delivery functions at the end of this file. */
#ifndef COMMON_LOOP_IMPL_H
#define COMMON_LOOP_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "timer.h"

/* What an fd is used for, set by the first call that registers it and
 * kept until loop_unwatch or loop_forget_closed: a descriptor is either
 * watched (its owner does its own I/O when told it may) or the loop moves
 * its bytes (loop_recv, loop_send) or accepts on it (loop_accept), never
 * two at once: on io_uring a poll for readiness and a receive would race
 * for the same bytes. */
enum loop_mode {
    LOOP_MODE_NONE,   /* not registered */
    LOOP_MODE_WATCH,  /* loop_watch */
    LOOP_MODE_STREAM, /* loop_recv, loop_send */
    LOOP_MODE_ACCEPT, /* loop_accept */
};

/* One receive or send the owner asked for (loop_recv, loop_send), or the
 * accept callback (in recv). fn NULL: none. */
struct loop_op {
    loop_done_fn fn;
    void *arg;
    char *buf;      /* the owner's: touched only as loop.h promises */
    size_t len;
    ssize_t result; /* what fn gets, once `ready` */
    bool ready;     /* done, waiting in the delivery queue */
};

/* The epoll backend's part of a slot. */
struct loop_epoll_slot {
    unsigned events; /* LOOP_READABLE | LOOP_WRITABLE given to epoll */
    bool in_epoll;
};

/* The io_uring backend's part of a slot: its requests in flight (indexes
 * of loop_uring.c's records, 0 for none), and the bytes received and not
 * yet taken (a chain of provided buffers). All zero is the empty state. */
struct loop_uring_slot {
    uint32_t poll_op;    /* a POLL_ADD (watch) */
    uint32_t recv_op;    /* a receive, multishot or one-shot */
    uint32_t send_op;
    uint32_t accept_op;  /* a multishot accept */
    uint32_t pend_head;  /* first and last buffer of the bytes not taken, */
    uint32_t pend_tail;  /* while pend_count > 0 */
    uint32_t pend_off;   /* bytes of the first one already taken */
    uint16_t pend_count; /* buffers held */
    bool recv_started;   /* the owner has asked for bytes once */
    bool recv_cancelled; /* recv_op is being cancelled: too much held */
    bool starved;        /* its receive ended for lack of buffers */
    bool ended;          /* after the held bytes: the end of the stream */
    int end_err;         /* then: 0 the peer closed, < 0 a receive error */
};

struct loop_slot {
    uint32_t gen;         /* which owner; 0 = never used */
    uint8_t mode;         /* enum loop_mode; NONE = inactive */
    /* LOOP_MODE_WATCH */
    unsigned events;      /* what the owner asked for; 0 = paused */
    loop_io_fn fn;
    void *arg;
    /* LOOP_MODE_STREAM (and ACCEPT: recv.fn, recv.arg) */
    struct loop_op recv, send;
    union {
        struct loop_epoll_slot ep;
        struct loop_uring_slot ur;
    } be;
};

/* A completion waiting to be delivered: which fd's which op. */
struct loop_done {
    int fd;
    uint32_t gen;
    bool send;           /* else recv */
};

/* How a backend serves the loop. Every function but open and close is
 * handed the slot it is about; a slot pointer is valid only until the next
 * call that may register an fd (the table grows by realloc). */
struct loop_backend_ops {
    const char *name;
    /* Makes the kernel object: 0 or a negative errno. */
    int (*open)(struct loop *loop);
    /* Cancels what is in flight, waits for the kernel to let go of the
     * loop's memory, frees the kernel object. */
    void (*close)(struct loop *loop);
    /* A watched slot's events changed (0: paused). 0 or -1 with errno. */
    int (*watch)(struct loop *loop, int fd, struct loop_slot *s,
                 unsigned events);
    /* The slot's owner is gone (closed: fd is already closed). The slot is
     * cleared by the caller afterwards. */
    void (*forget)(struct loop *loop, int fd, struct loop_slot *s,
                   bool closed);
    /* s->recv (or s->send) was just asked for: start it, or complete it
     * at once with loop_complete_later. 0 or -1 with errno. */
    int (*recv)(struct loop *loop, int fd, struct loop_slot *s);
    int (*send)(struct loop *loop, int fd, struct loop_slot *s);
    /* The owner withdrew s->send (already cleared): nothing of the
     * owner's may be touched from now on. */
    void (*send_cancel)(struct loop *loop, int fd, struct loop_slot *s);
    /* Starts accepting on a listening fd (s->recv.fn). 0 or -1. */
    int (*accept)(struct loop *loop, int fd, struct loop_slot *s);
    /* Waits at most timeout_ms (-1: no limit) for the kernel's reports
     * and delivers them (loop_call_watcher, loop_complete...). 0 (also
     * when a signal cut the wait short), or -1 with errno. */
    int (*wait)(struct loop *loop, int timeout_ms);
};

extern const struct loop_backend_ops loop_epoll_backend;
extern const struct loop_backend_ops loop_uring_backend; /* refuses to open
                                                        without liburing */

/* Tests only: the io_uring backend behaves as on a kernel without
 * multishot receive (before Linux 6.0), one receive per loop_recv. */
extern bool loop_uring_no_multishot;

/* A fresh generation for a new owner of a slot. */
uint32_t loop_new_gen(struct loop *loop);

struct loop {
    const struct loop_backend_ops *be;
    void *state;              /* the backend's own */
    struct loop_slot *slots;  /* indexed by fd */
    size_t num_slots;
    uint32_t next_gen;
    size_t wanting;           /* slots that may call someone: if 0, no
                                 done, and no timer, nothing ever will */
    struct timer_heap timers;
    struct loop_done *done;   /* completions to deliver, in order */
    size_t done_len, done_cap;
    bool waited_last_turn;    /* see loop_run_once: never skip two waits */
    bool stopped;
    bool wait_masked;         /* wait with wait_mask */
    sigset_t wait_mask;
    unsigned long stale;
};

/* The slot of fd if fd is registered (any mode), else NULL. */
struct loop_slot *loop_slot_of(struct loop *loop, int fd);

/* True if gen names fd's current owner: a report about an older owner is
 * stale. Counts it (loop_stale_events) when it is. */
bool loop_current(struct loop *loop, int fd, uint32_t gen, bool count);

/* True for the fd loop_exclusive_fd marked (epoll's EPOLLEXCLUSIVE). */
bool loop_is_exclusive(int fd);

/* A watched fd is ready: calls its owner with ready limited to what it
 * still watches (nothing if that is 0). */
void loop_call_watcher(struct loop *loop, int fd, unsigned ready);

/* Completes s's recv (send = false) or send with result now: clears the
 * op, then calls its fn. For a backend reporting from its wait. */
void loop_complete(struct loop *loop, int fd, bool send, ssize_t result);

/* The same, delivered later in this turn (loop_run_once): for a backend
 * that finishes an op inside the call that asked for it, where calling
 * the owner back would re-enter it. */
int loop_complete_later(struct loop *loop, int fd, struct loop_slot *s,
                        bool send, ssize_t result);

/* Hands a client accepted on listening fd to its owner. */
void loop_call_acceptor(struct loop *loop, int fd, int client);

/* The accept on fd failed with err: the loop stops accepting there (the
 * owner calls loop_accept again when it wants to) and tells the owner. */
void loop_accept_failed(struct loop *loop, int fd, int err);

#endif
