/* loop_uring: the loop's completion backend (loop.h, loop_impl.h), on
 * io_uring through liburing.
 *
 * io_uring is two rings of memory shared with the kernel: the program
 * writes requests into the submission queue (SQ) and the kernel writes
 * results into the completion queue (CQ). One io_uring_enter system call
 * hands over every request queued since the last one and waits for
 * results, so the system calls no longer grow with the requests: a turn of
 * this loop is one io_uring_enter, however many receives, sends and
 * accepts it carries. Under load, when one turn finds many clients
 * ready, that is far less than a system call per request; for a lone
 * client it is about the same as epoll, a turn per request.
 *
 * What it asks of the kernel (Linux 5.19 or later):
 * - Multishot receive with a provided buffer ring (Linux 6.0; 5.19 gets a
 *   one-shot receive per loop_recv instead). One request per connection
 *   stays armed for its whole life, and each time bytes arrive the
 *   kernel takes a free buffer from a ring of LOOP_URING_BUFS buffers the
 *   loop shares with it, fills it and posts a completion naming it. No
 *   buffer is tied up in a connection that is not receiving, which is the
 *   point with ten thousand idle clients: 2 MiB for the whole loop
 *   instead of a buffer each. The loop copies the bytes into the owner's
 *   buffer when it asks (loop_recv) and puts the buffer back in the ring.
 * - Multishot accept: one request accepts client after client.
 * - One-shot polls for loop_watch (curl's sockets, pipes, eventfds: the
 *   owners that do their own I/O), re-armed after each report, which makes
 *   them level-triggered like the epoll backend.
 * - IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (Linux 6.1,
 *   else without them): the kernel finishes this ring's work only inside
 *   our io_uring_enter, in a batch, instead of interrupting the thread
 *   whenever a packet arrives.
 *
 * Whose memory (loop.h). The kernel may write into a buffer long after
 * the request was made, and a request outlives the close() of its
 * descriptor (it holds the file, not the number). So the kernel only ever
 * gets the loop's own memory: the provided buffers, and a copy of each
 * send (a few hundred bytes for an answer, copied once). An owner that
 * goes away is simply forgotten; its requests are cancelled
 * (IORING_OP_ASYNC_CANCEL), and their completions, which may still come
 * with bytes, are recognised as stale (the generation in their record no
 * longer matches the slot) and only give the loop's memory back.
 *
 * Records. Each request gets a small record (an index into a table), and
 * its user_data is the record's index and a sequence number, so every
 * request has a name that is never reused while it could still be
 * meant: a cancellation cannot hit a newer request that got the same
 * index, and a completion finds the fd, the generation and (for a send)
 * the copy it was about.
 *
 * The trap this backend must avoid, and epoll never had: a request still
 * waiting in the submission queue names its fd by number, and the number
 * is looked up only when the queue is submitted, at the next turn. If its
 * owner closes the fd in between and a new connection gets the same
 * number, the old request would run on the new connection: its bytes
 * received into a stale completion and lost, or, for a send, the old
 * owner's answer sent to the new client. So forgetting an fd turns its
 * requests that are still in the queue into no-ops (they are ours until
 * submitted), and cancels only the ones the kernel already has.
 *
 * What it costs: the rings (about 80 KiB here) and the buffers (2 MiB)
 * are memory the kernel pins or keeps mapped for the loop's life; a
 * container's seccomp profile or kernel.io_uring_disabled may refuse
 * io_uring altogether (loop_open then falls back to epoll); and every
 * byte received is copied once more than with epoll. */
#include "loop_impl.h"

#ifdef HAVE_LIBURING

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "timer.h"
#include "trace.h"

bool loop_uring_no_multishot;

/* Completions fetched from the ring per pass. */
#define UR_BATCH 256

enum ur_kind { UR_POLL = 1, UR_RECV, UR_SEND, UR_ACCEPT };

/* One request the kernel has or will have (see "Records" above). */
struct ur_op {
    uint32_t seq;  /* the user_data's upper half; 0 = free */
    uint8_t kind;
    int fd;
    uint32_t gen;  /* the owner it was made for */
    void *copy;    /* UR_SEND: the loop's copy of the bytes */
    bool nop;      /* withdrawn before submission: now a no-op */
    uint32_t next_free;
};

/* A completion, copied out of the ring so the ring's slot is free at once
 * and callbacks may submit more. */
struct ur_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct ur_state {
    struct io_uring ring;
    bool multishot_recv;      /* the kernel takes IORING_RECV_MULTISHOT */
    struct ur_op *ops;        /* index 0 unused: user_data 0 is ignored */
    uint32_t num_ops, free_op;
    uint32_t next_seq;
    size_t inflight;          /* requests whose last completion is due */
    struct io_uring_buf_ring *br; /* the provided buffers' ring */
    size_t br_bytes;
    char *bufs;               /* LOOP_URING_BUFS x LOOP_URING_BUF_SIZE */
    uint32_t *next;           /* a held buffer's successor in its chain */
    uint32_t *len;            /* bytes in a held buffer */
    unsigned held;            /* buffers out of the ring, holding bytes */
    struct loop_done *starved; /* fds whose receive wants a buffer */
    size_t num_starved, cap_starved;
    struct ur_cqe backlog[UR_BATCH]; /* left by a loop_stop mid-batch */
    size_t backlog_len, backlog_pos;
    bool closing;             /* loop_free: completions free, call nobody */
};

static struct ur_state *st_of(struct loop *loop) { return loop->state; }

/* ------------------------------------------------------------------ */
/* Records and submissions                                             */

/* A new record for a request about s's owner, or 0 (ENOMEM). */
static uint32_t ur_op_new(struct ur_state *st, enum ur_kind kind, int fd,
                          uint32_t gen)
{
    if (st->free_op == 0) {
        uint32_t n = st->num_ops ? 2 * st->num_ops : 1024;
        struct ur_op *t = realloc(st->ops, n * sizeof *t);
        if (t == NULL)
            return 0;
        for (uint32_t i = n; i-- > (st->num_ops ? st->num_ops : 1);) {
            t[i] = (struct ur_op){.next_free = st->free_op};
            st->free_op = i;
        }
        st->ops = t;
        st->num_ops = n;
    }
    uint32_t i = st->free_op;
    struct ur_op *op = &st->ops[i];
    st->free_op = op->next_free;
    if (++st->next_seq == 0)
        ++st->next_seq;
    *op = (struct ur_op){.seq = st->next_seq, .kind = (uint8_t)kind,
                         .fd = fd, .gen = gen};
    return i;
}

static uint64_t ur_tag(const struct ur_state *st, uint32_t i)
{
    return (uint64_t)st->ops[i].seq << 32 | i;
}

static void ur_op_free(struct ur_state *st, uint32_t i)
{
    free(st->ops[i].copy);
    st->ops[i] = (struct ur_op){.next_free = st->free_op};
    st->free_op = i;
}

/* A free submission entry. When the queue is full (a turn that asks for
 * more than LOOP_URING_ENTRIES), what is queued is submitted now: one
 * io_uring_enter more. NULL only if even that fails. */
static struct io_uring_sqe *ur_sqe(struct ur_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (sqe == NULL && io_uring_submit(&st->ring) >= 0)
        sqe = io_uring_get_sqe(&st->ring);
    return sqe;
}

/* A request for record i, ready for its prep: the entry, or NULL (the
 * record is freed, errno ENOMEM). */
static struct io_uring_sqe *ur_sqe_for(struct ur_state *st, uint32_t i)
{
    struct io_uring_sqe *sqe = ur_sqe(st);
    if (sqe == NULL) {
        ur_op_free(st, i);
        errno = ENOMEM;
    }
    return sqe;
}

static void ur_submitted(struct ur_state *st, struct io_uring_sqe *sqe,
                         uint32_t i)
{
    io_uring_sqe_set_data64(sqe, ur_tag(st, i));
    st->inflight++;
}

/* The request of record i is no longer wanted. Still in the submission
 * queue, it is ours: it becomes a no-op (it names its fd by number, which
 * may belong to someone else by the time the queue is submitted). Already
 * submitted, it is cancelled. Either way its completion still comes, and
 * frees the record. */
static void ur_withdraw(struct ur_state *st, uint32_t i)
{
    uint64_t tag = ur_tag(st, i);
    struct io_uring_sq *sq = &st->ring.sq;
    for (unsigned k = sq->sqe_head; k != sq->sqe_tail; k++) {
        struct io_uring_sqe *sqe = &sq->sqes[k & sq->ring_mask];
        if (sqe->user_data == tag) {
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, tag);
            st->ops[i].nop = true;
            return;
        }
    }
    struct io_uring_sqe *sqe = ur_sqe(st);
    if (sqe == NULL)
        return; /* it completes by itself sooner or later (or at close) */
    io_uring_prep_cancel64(sqe, tag, 0);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS; /* only a failure says a word */
}

/* ------------------------------------------------------------------ */
/* Provided buffers and the bytes a slot holds                         */

static char *ur_buf(struct ur_state *st, uint32_t bid)
{
    return st->bufs + (size_t)bid * LOOP_URING_BUF_SIZE;
}

/* Puts buffer bid in the kernel's ring. */
static void ur_give(struct ur_state *st, uint32_t bid)
{
    io_uring_buf_ring_add(st->br, ur_buf(st, bid), LOOP_URING_BUF_SIZE,
                          (unsigned short)bid,
                          io_uring_buf_ring_mask(LOOP_URING_BUFS), 0);
    io_uring_buf_ring_advance(st->br, 1);
}

/* Gives back a buffer a completion brought (counted in st->held). */
static void ur_recycle(struct ur_state *st, uint32_t bid)
{
    ur_give(st, bid);
    st->held--;
}

/* Keeps n bytes of buffer bid for u's owner, after what u holds. */
static void ur_hold(struct ur_state *st, struct loop_uring_slot *u,
                    uint32_t bid, uint32_t n)
{
    st->len[bid] = n;
    if (u->pend_count++ == 0) {
        u->pend_head = bid;
        u->pend_off = 0;
    } else {
        st->next[u->pend_tail] = bid;
    }
    u->pend_tail = bid;
}

static void ur_drop_pending(struct ur_state *st, struct loop_uring_slot *u)
{
    for (; u->pend_count > 0; u->pend_count--) {
        uint32_t bid = u->pend_head;
        u->pend_head = st->next[bid];
        ur_recycle(st, bid);
    }
}

/* What a receive for op gets from the bytes u holds: copies up to op->len
 * of them into op->buf (buffers emptied go back to the ring) and returns
 * the count; with nothing held, the end (0 or -errno); for op->len 0, 1.
 * Call only when u holds bytes or has ended. */
static ssize_t ur_take(struct ur_state *st, struct loop_uring_slot *u,
                       const struct loop_op *op)
{
    if (u->pend_count == 0)
        return u->end_err;
    if (op->len == 0)
        return 1;
    size_t got = 0;
    while (got < op->len && u->pend_count > 0) {
        uint32_t bid = u->pend_head;
        size_t k = st->len[bid] - u->pend_off;
        if (k > op->len - got)
            k = op->len - got;
        memcpy(op->buf + got, ur_buf(st, bid) + u->pend_off, k);
        got += k;
        u->pend_off += (uint32_t)k;
        if (u->pend_off == st->len[bid]) {
            u->pend_head = st->next[bid];
            u->pend_off = 0;
            u->pend_count--;
            ur_recycle(st, bid);
        }
    }
    return (ssize_t)got;
}

/* ------------------------------------------------------------------ */
/* What each slot has in flight                                        */

/* A one-shot poll for s's events. Level-triggered by re-arming: a poll
 * made while fd is ready completes at once. */
static int ur_arm_poll(struct loop *loop, int fd, struct loop_slot *s)
{
    struct ur_state *st = st_of(loop);
    uint32_t i = ur_op_new(st, UR_POLL, fd, s->gen);
    struct io_uring_sqe *sqe = i ? ur_sqe_for(st, i) : NULL;
    if (sqe == NULL) {
        errno = ENOMEM;
        return -1;
    }
    unsigned mask = ((s->events & LOOP_READABLE) ? POLLIN : 0u) |
                    ((s->events & LOOP_WRITABLE) ? POLLOUT : 0u);
    io_uring_prep_poll_add(sqe, fd, mask);
    ur_submitted(st, sqe, i);
    s->be.ur.poll_op = i;
    return 0;
}

/* Brings a streamed slot's receive in line with the rules: armed while the
 * stream has not ended and holds fewer than LOOP_URING_PENDING_MAX
 * buffers (a multishot receive once the owner has asked for bytes; a
 * one-shot only while it waits for some), cancelled when it holds that
 * many (the owner is not reading: let TCP's window push back on the
 * client instead of the loop's memory), and left alone while starved of
 * buffers until some come back. */
static void ur_stream_sync(struct loop *loop, int fd, struct loop_slot *s)
{
    struct ur_state *st = st_of(loop);
    struct loop_uring_slot *u = &s->be.ur;
    if (s->mode != LOOP_MODE_STREAM)
        return;
    if (u->recv_op != 0) {
        if (u->pend_count >= LOOP_URING_PENDING_MAX && !u->recv_cancelled) {
            u->recv_cancelled = true;
            ur_withdraw(st, u->recv_op);
        }
        return;
    }
    bool want = u->recv_started && !u->ended &&
                u->pend_count < LOOP_URING_PENDING_MAX &&
                (st->multishot_recv
                     ? true
                     : s->recv.fn != NULL && !s->recv.ready &&
                           u->pend_count == 0);
    if (!want)
        return;
    if (u->starved) {
        if (st->held >= LOOP_URING_BUFS)
            return; /* still none free: wait in the starved list */
        u->starved = false;
    }
    uint32_t i = ur_op_new(st, UR_RECV, fd, s->gen);
    struct io_uring_sqe *sqe = i ? ur_sqe_for(st, i) : NULL;
    if (sqe == NULL)
        return; /* out of memory: the owner's wait ends at its deadline */
    if (st->multishot_recv)
        io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, fd, NULL, LOOP_URING_BUF_SIZE, 0);
    /* A receive is armed when the socket is usually empty (a kept-alive
     * client sends after our answer): wait first instead of trying. */
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    ur_submitted(st, sqe, i);
    u->recv_op = i;
    u->recv_cancelled = false;
}

/* Feeds s's waiting receive from what it holds, if anything. A receive
 * already fed (by ur_recv, its result waiting for delivery) is not fed
 * twice: that would write over the bytes it was given. */
static void ur_feed(struct loop *loop, int fd, struct loop_slot *s)
{
    struct loop_uring_slot *u = &s->be.ur;
    if (s->recv.fn == NULL || s->recv.ready ||
        (u->pend_count == 0 && !u->ended))
        return;
    ssize_t n = ur_take(st_of(loop), u, &s->recv);
    loop_complete(loop, fd, false, n);
}

static int ur_arm_accept(struct loop *loop, int fd, struct loop_slot *s)
{
    struct ur_state *st = st_of(loop);
    uint32_t i = ur_op_new(st, UR_ACCEPT, fd, s->gen);
    struct io_uring_sqe *sqe = i ? ur_sqe_for(st, i) : NULL;
    if (sqe == NULL) {
        errno = ENOMEM;
        return -1;
    }
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
    ur_submitted(st, sqe, i);
    s->be.ur.accept_op = i;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The backend's functions (loop_impl.h)                               */

static int ur_watch(struct loop *loop, int fd, struct loop_slot *s,
                    unsigned events)
{
    struct ur_state *st = st_of(loop);
    struct loop_uring_slot *u = &s->be.ur;
    if (u->poll_op != 0 && s->events == events)
        return 0; /* that poll is in flight already */
    /* A new or paused registration: say EBADF now, as epoll_ctl would,
     * rather than in a completion. */
    if (u->poll_op == 0 && s->events == 0 && fcntl(fd, F_GETFD) < 0)
        return -1;
    if (u->poll_op != 0) {
        ur_withdraw(st, u->poll_op);
        u->poll_op = 0;
    }
    if (events == 0)
        return 0;
    unsigned was = s->events;
    s->events = events; /* what ur_arm_poll asks for */
    int rc = ur_arm_poll(loop, fd, s);
    s->events = was;    /* loop.c sets it on success */
    return rc;
}

static void ur_forget(struct loop *loop, int fd, struct loop_slot *s,
                      bool closed)
{
    (void)fd;
    (void)closed; /* no system call either way: cancellations are queued */
    struct ur_state *st = st_of(loop);
    struct loop_uring_slot *u = &s->be.ur;
    uint32_t ops[] = {u->poll_op, u->recv_op, u->accept_op, u->send_op};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        if (ops[k] != 0)
            ur_withdraw(st, ops[k]);
    ur_drop_pending(st, u);
    /* A starved entry names the old generation: it is skipped later. */
}

static int ur_recv(struct loop *loop, int fd, struct loop_slot *s)
{
    struct loop_uring_slot *u = &s->be.ur;
    u->recv_started = true;
    if (u->pend_count > 0 || u->ended) {
        ssize_t n = ur_take(st_of(loop), u, &s->recv);
        if (loop_complete_later(loop, fd, s, false, n) < 0)
            return -1;
    }
    ur_stream_sync(loop, fd, s); /* bytes taken may let it be re-armed */
    return 0;
}

static int ur_send(struct loop *loop, int fd, struct loop_slot *s)
{
    struct ur_state *st = st_of(loop);
    size_t len = s->send.len < LOOP_URING_SEND_MAX ? s->send.len
                                                   : LOOP_URING_SEND_MAX;
    void *copy = malloc(len ? len : 1);
    uint32_t i = copy ? ur_op_new(st, UR_SEND, fd, s->gen) : 0;
    if (i == 0) {
        free(copy);
        errno = ENOMEM;
        return -1;
    }
    memcpy(copy, s->send.buf, len);
    st->ops[i].copy = copy;
    struct io_uring_sqe *sqe = ur_sqe_for(st, i);
    if (sqe == NULL)
        return -1;
    io_uring_prep_send(sqe, fd, copy, len, MSG_NOSIGNAL);
    ur_submitted(st, sqe, i);
    s->be.ur.send_op = i;
    return 0;
}

static void ur_send_cancel(struct loop *loop, int fd, struct loop_slot *s)
{
    (void)fd;
    if (s->be.ur.send_op != 0) {
        ur_withdraw(st_of(loop), s->be.ur.send_op);
        s->be.ur.send_op = 0;
    }
}

static int ur_accept(struct loop *loop, int fd, struct loop_slot *s)
{
    if (s->be.ur.accept_op != 0)
        return 0; /* still armed: it was only the callback that changed */
    return ur_arm_accept(loop, fd, s);
}

/* ------------------------------------------------------------------ */
/* Completions                                                         */

/* The slot record i is about, if it still is (its owner's, and the
 * request the slot counts as its own in *field), else NULL. */
static struct loop_slot *ur_owner(struct loop *loop, const struct ur_op *op,
                                  uint32_t i, size_t field)
{
    struct loop_slot *s = loop_slot_of(loop, op->fd);
    if (s == NULL || s->gen != op->gen)
        return NULL;
    uint32_t *mine = (uint32_t *)((char *)&s->be.ur + field);
    return *mine == i ? s : NULL;
}

static void ur_on_poll(struct loop *loop, uint32_t i, int res, bool final)
{
    struct ur_op op = st_of(loop)->ops[i];
    struct loop_slot *s =
        ur_owner(loop, &op, i, offsetof(struct loop_uring_slot, poll_op));
    if (final)
        ur_op_free(st_of(loop), i);
    if (s == NULL) {
        if (res > 0)
            loop->stale++; /* a report about a previous owner */
        return;
    }
    s->be.ur.poll_op = 0;
    if (res == -ECANCELED)
        return;
    unsigned ready = 0;
    if (res < 0 || (res & (POLLERR | POLLHUP)))
        ready = LOOP_READABLE | LOOP_WRITABLE | LOOP_ERROR;
    if (res > 0 && (res & POLLIN))
        ready |= LOOP_READABLE;
    if (res > 0 && (res & POLLOUT))
        ready |= LOOP_WRITABLE;
    loop_call_watcher(loop, op.fd, ready);
    /* Level-triggered: still watched, so ask again. A poll made while fd
     * is still ready completes at once, next turn. */
    s = loop_slot_of(loop, op.fd);
    if (s != NULL && s->gen == op.gen && s->mode == LOOP_MODE_WATCH &&
        s->events != 0 && s->be.ur.poll_op == 0)
        ur_arm_poll(loop, op.fd, s);
}

static void ur_starve(struct loop *loop, int fd, struct loop_slot *s)
{
    struct ur_state *st = st_of(loop);
    s->be.ur.starved = true;
    if (st->num_starved == st->cap_starved) {
        size_t n = st->cap_starved ? 2 * st->cap_starved : 64;
        struct loop_done *t = realloc(st->starved, n * sizeof *t);
        if (t == NULL)
            return; /* re-armed on the owner's next loop_recv instead */
        st->starved = t;
        st->cap_starved = n;
    }
    st->starved[st->num_starved++] = (struct loop_done){.fd = fd,
                                                        .gen = s->gen};
}

static void ur_on_recv(struct loop *loop, uint32_t i, int res,
                       uint32_t flags)
{
    struct ur_state *st = st_of(loop);
    struct ur_op op = st->ops[i];
    bool final = !(flags & IORING_CQE_F_MORE);
    bool has_buf = flags & IORING_CQE_F_BUFFER;
    uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;
    struct loop_slot *s =
        ur_owner(loop, &op, i, offsetof(struct loop_uring_slot, recv_op));
    if (final)
        ur_op_free(st, i);
    if (has_buf)
        st->held++; /* out of the ring: held, or recycled below */
    if (s == NULL) {
        /* Bytes for an owner that went: the buffer goes straight back. */
        if (has_buf)
            ur_recycle(st, bid);
        if (res > 0)
            loop->stale++;
        return;
    }
    struct loop_uring_slot *u = &s->be.ur;
    if (final)
        u->recv_op = 0;
    if (has_buf && res > 0)
        ur_hold(st, u, bid, (uint32_t)res);
    else if (has_buf)
        ur_recycle(st, bid);
    if (res == -ENOBUFS) {
        ur_starve(loop, op.fd, s);
    } else if (res == -EINVAL && st->multishot_recv) {
        st->multishot_recv = false; /* before Linux 6.0: one-shot ones */
    } else if (res <= 0 && res != -ECANCELED) {
        u->ended = true;
        u->end_err = res;
    }
    ur_feed(loop, op.fd, s);
    s = loop_slot_of(loop, op.fd);
    if (s != NULL && s->gen == op.gen)
        ur_stream_sync(loop, op.fd, s);
}

static void ur_on_send(struct loop *loop, uint32_t i, int res)
{
    struct ur_state *st = st_of(loop);
    struct ur_op op = st->ops[i];
    struct loop_slot *s =
        ur_owner(loop, &op, i, offsetof(struct loop_uring_slot, send_op));
    ur_op_free(st, i); /* and the copy: the kernel is done with it */
    if (s == NULL)
        return;
    s->be.ur.send_op = 0;
    loop_complete(loop, op.fd, true, res);
}

static void ur_on_accept(struct loop *loop, uint32_t i, int res,
                         bool final)
{
    struct ur_state *st = st_of(loop);
    struct ur_op op = st->ops[i];
    struct loop_slot *s =
        ur_owner(loop, &op, i, offsetof(struct loop_uring_slot, accept_op));
    if (final)
        ur_op_free(st, i);
    if (s == NULL || s->recv.fn == NULL) {
        /* Accepted after its owner stopped accepting: nobody will serve
         * this client, so do not keep it waiting. */
        if (res >= 0) {
            close(res);
            loop->stale++;
        }
        return;
    }
    if (final)
        s->be.ur.accept_op = 0;
    if (res >= 0) {
        net_count_accept(res);
        loop_call_acceptor(loop, op.fd, res);
        s = loop_slot_of(loop, op.fd);
        if (final && s != NULL && s->gen == op.gen && s->recv.fn != NULL &&
            s->be.ur.accept_op == 0)
            ur_arm_accept(loop, op.fd, s); /* the kernel ended it: again */
        return;
    }
    if (!final) {
        ur_withdraw(st, i); /* a failure stops accepting (loop.h) */
        s->be.ur.accept_op = 0;
    }
    loop_accept_failed(loop, op.fd, -res);
}

static void ur_dispatch(struct loop *loop, const struct ur_cqe *c)
{
    struct ur_state *st = st_of(loop);
    uint32_t i = (uint32_t)c->user_data;
    if (i == 0 || i >= st->num_ops ||
        st->ops[i].seq != (uint32_t)(c->user_data >> 32))
        return; /* a failed cancellation says it found nothing: fine */
    bool final = !(c->flags & IORING_CQE_F_MORE);
    if (final)
        st->inflight--;
    if (st->ops[i].nop) {
        /* Withdrawn before it was submitted: nothing happened. The slot
         * may still count it as its own (a receive cancelled for holding
         * too much): it no longer is. */
        struct ur_op op = st->ops[i];
        struct loop_slot *s = loop_slot_of(loop, op.fd);
        if (s != NULL && s->gen == op.gen && op.kind == UR_RECV &&
            s->be.ur.recv_op == i)
            s->be.ur.recv_op = 0;
        ur_op_free(st, i);
        return;
    }
    if (st->closing) {
        if (c->flags & IORING_CQE_F_BUFFER) {
            st->held++;
            ur_recycle(st, c->flags >> IORING_CQE_BUFFER_SHIFT);
        }
        if (st->ops[i].kind == UR_ACCEPT && c->res >= 0)
            close(c->res);
        if (final)
            ur_op_free(st, i);
        return;
    }
    switch (st->ops[i].kind) {
    case UR_POLL:
        ur_on_poll(loop, i, c->res, final);
        break;
    case UR_RECV:
        ur_on_recv(loop, i, c->res, c->flags);
        break;
    case UR_SEND:
        ur_on_send(loop, i, c->res);
        break;
    case UR_ACCEPT:
        ur_on_accept(loop, i, c->res, final);
        break;
    }
}

/* Buffers came back: the receives that ran out may go on. */
static void ur_rearm_starved(struct loop *loop)
{
    struct ur_state *st = st_of(loop);
    size_t kept = 0;
    for (size_t k = 0; k < st->num_starved; k++) {
        struct loop_done d = st->starved[k];
        struct loop_slot *s = loop_slot_of(loop, d.fd);
        if (s == NULL || s->gen != d.gen || !s->be.ur.starved)
            continue;
        ur_stream_sync(loop, d.fd, s);
        s = &loop->slots[d.fd];
        if (s->be.ur.starved)
            st->starved[kept++] = d;
    }
    st->num_starved = kept;
}

/* Handles the completions of the backlog from backlog_pos on, stopping
 * after a loop_stop (the rest stays for the next turn). */
static void ur_drain_backlog(struct loop *loop)
{
    struct ur_state *st = st_of(loop);
    while (st->backlog_pos < st->backlog_len && !loop->stopped)
        ur_dispatch(loop, &st->backlog[st->backlog_pos++]);
    if (st->backlog_pos == st->backlog_len)
        st->backlog_pos = st->backlog_len = 0;
}

/* Copies the ring's completions into the backlog and handles them, until
 * the ring is empty or a callback stops the loop. */
static void ur_reap(struct loop *loop)
{
    struct ur_state *st = st_of(loop);
    struct io_uring_cqe *cqes[UR_BATCH];
    while (!loop->stopped || st->closing) {
        unsigned n = io_uring_peek_batch_cqe(&st->ring, cqes, UR_BATCH);
        if (n == 0)
            break;
        for (unsigned k = 0; k < n; k++)
            st->backlog[k] = (struct ur_cqe){.user_data = cqes[k]->user_data,
                                             .res = cqes[k]->res,
                                             .flags = cqes[k]->flags};
        io_uring_cq_advance(&st->ring, n);
        st->backlog_len = n;
        st->backlog_pos = 0;
        if (st->closing) {
            while (st->backlog_pos < n)
                ur_dispatch(loop, &st->backlog[st->backlog_pos++]);
            st->backlog_pos = st->backlog_len = 0;
            continue;
        }
        ur_drain_backlog(loop);
    }
    if (st->num_starved > 0 && st->held < LOOP_URING_BUFS)
        ur_rearm_starved(loop);
}

/* One turn's io_uring_enter: submits what the turn queued and waits for
 * at least one completion, at most timeout_ms; then handles what came. */
static int ur_wait(struct loop *loop, int timeout_ms)
{
    struct ur_state *st = st_of(loop);
    if (st->backlog_len > 0) { /* a loop_stop left some: no waiting */
        io_uring_submit(&st->ring);
        ur_drain_backlog(loop);
        if (st->backlog_len == 0)
            ur_reap(loop);
        return 0;
    }
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (timeout_ms % 1000) * 1000000L};
    struct io_uring_cqe *cqe;
    /* The trace's picture of a turn: asleep in here, then dispatching. */
    TRACE_NOTE(TRACE_BLOCKED_BEGIN, (uintptr_t)loop,
               timeout_ms < 0 ? "no timeout" : "timeout", timeout_ms);
    int rc = io_uring_submit_and_wait_timeout(
        &st->ring, &cqe, 1, timeout_ms >= 0 ? &ts : NULL,
        loop->wait_masked ? &loop->wait_mask : NULL);
    TRACE_NOTE(TRACE_BLOCKED_END, (uintptr_t)loop, "events",
               io_uring_cq_ready(&st->ring));
    /* -ETIME: the timeout; -EINTR: a signal, whose handler wrote to a
     * pipe we watch; -EBUSY: completions pile up beyond the ring, which
     * the reaping below makes room for. */
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
        errno = -rc;
        return -1;
    }
    ur_reap(loop);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Birth and end                                                       */

/* The ring, with the flags this kernel takes, or a negative errno: what
 * io_uring_setup said when it refuses io_uring altogether. */
static int ur_ring_init(struct io_uring *ring)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, /* 6.1 */
        IORING_SETUP_COOP_TASKRUN,                               /* 5.19 */
        0,
    };
    int rc = -EINVAL;
    for (size_t k = 0; k < sizeof tries / sizeof tries[0]; k++) {
        struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | tries[k],
                                    .cq_entries = LOOP_URING_CQ_ENTRIES};
        rc = io_uring_queue_init_params(LOOP_URING_ENTRIES, ring, &p);
        if (rc != -EINVAL)
            break; /* done, or refused for a reason flags do not change */
    }
    if (rc == 0 && (!(ring->features & IORING_FEAT_EXT_ARG) ||
                    !(ring->features & IORING_FEAT_NODROP))) {
        io_uring_queue_exit(ring); /* before 5.11: too old */
        rc = -EINVAL;
    }
    return rc;
}

/* The provided buffers: their memory, and the ring through which the
 * loop hands them to the kernel (buffer group 0). 0 or a negative errno
 * (EINVAL before Linux 5.19). */
static int ur_bufs_init(struct ur_state *st)
{
    st->br_bytes = LOOP_URING_BUFS * sizeof(struct io_uring_buf);
    st->br = mmap(NULL, st->br_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st->br == MAP_FAILED) {
        st->br = NULL;
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)st->br,
                                   .ring_entries = LOOP_URING_BUFS,
                                   .bgid = 0};
    int rc = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (rc < 0)
        return rc;
    st->bufs = malloc((size_t)LOOP_URING_BUFS * LOOP_URING_BUF_SIZE);
    st->next = calloc(LOOP_URING_BUFS, sizeof *st->next);
    st->len = calloc(LOOP_URING_BUFS, sizeof *st->len);
    if (st->bufs == NULL || st->next == NULL || st->len == NULL)
        return -ENOMEM;
    io_uring_buf_ring_init(st->br);
    for (uint32_t bid = 0; bid < LOOP_URING_BUFS; bid++)
        ur_give(st, bid);
    return 0;
}

static void ur_free_state(struct ur_state *st, bool ring_made)
{
    if (ring_made)
        io_uring_queue_exit(&st->ring); /* unregisters the buffer ring */
    if (st->br != NULL)
        munmap(st->br, st->br_bytes);
    free(st->bufs);
    free(st->next);
    free(st->len);
    if (st->ops != NULL)
        for (uint32_t i = 1; i < st->num_ops; i++)
            free(st->ops[i].copy);
    free(st->ops);
    free(st->starved);
    free(st);
}

static int ur_open(struct loop *loop)
{
    struct ur_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return -ENOMEM;
    int rc = ur_ring_init(&st->ring);
    if (rc < 0) {
        free(st);
        return rc;
    }
    rc = ur_bufs_init(st);
    if (rc < 0) {
        ur_free_state(st, true);
        return rc;
    }
    st->multishot_recv = !loop_uring_no_multishot;
    /* The ring's own fd registered (Linux 5.18): each io_uring_enter then
     * skips looking it up. Without it, the same, a little slower. */
    io_uring_register_ring_fd(&st->ring);
    loop->state = st;
    return 0;
}

/* Cancels everything and waits until the kernel has finished with every
 * request, since each may still write into the loop's buffers or read a
 * send's copy. If the kernel has not let go within a second, the memory
 * is left allocated rather than freed under it. */
static void ur_close(struct loop *loop)
{
    struct ur_state *st = st_of(loop);
    st->closing = true;
    while (st->backlog_pos < st->backlog_len) /* what a loop_stop left */
        ur_dispatch(loop, &st->backlog[st->backlog_pos++]);
    st->backlog_pos = st->backlog_len = 0;
    struct io_uring_sqe *sqe = ur_sqe(st);
    if (sqe != NULL) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
                                           IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, 0);
    }
    uint64_t deadline = timer_now_ms() + 1000;
    while (st->inflight > 0 && timer_now_ms() < deadline) {
        struct __kernel_timespec ts = {.tv_nsec = 100 * 1000000L};
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
        ur_reap(loop);
    }
    if (st->inflight > 0)
        return; /* leaked on purpose: see above */
    ur_free_state(st, true);
}

const struct loop_backend_ops loop_uring_backend = {
    .name = "uring",
    .open = ur_open,
    .close = ur_close,
    .watch = ur_watch,
    .forget = ur_forget,
    .recv = ur_recv,
    .send = ur_send,
    .send_cancel = ur_send_cancel,
    .accept = ur_accept,
    .wait = ur_wait,
};

#else /* built without liburing: the backend refuses to open */

#include <errno.h>

bool loop_uring_no_multishot;

static int ur_refuse(struct loop *loop)
{
    (void)loop;
    return -ENOTSUP;
}

const struct loop_backend_ops loop_uring_backend = {.name = "uring",
                                                .open = ur_refuse};

#endif
