/* timer: a binary min-heap of deadlines on CLOCK_MONOTONIC, for the stages
 * that wait without sleeping (04-select, 05-epoll-callbacks, 06-coroutines).
 *
 * The heap is intrusive: the owner embeds a struct timer_node and finds its
 * way back with container_of. Nothing is allocated per timer, and a node
 * knows its own slot, so cancelling is O(log n) with no search. Equal
 * deadlines come out in the order they were pushed. */
#ifndef COMMON_TIMER_H
#define COMMON_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h" /* container_of */

struct timer_node {
    uint64_t deadline_ms; /* absolute, on timer_now_ms()'s clock */
    uint64_t seq;         /* push order: breaks ties between equal deadlines */
    size_t index;         /* slot in the heap, or TIMER_NOT_ARMED */
};

#define TIMER_NOT_ARMED ((size_t)-1)

struct timer_heap {
    struct timer_node **items;
    size_t len, cap;
    uint64_t next_seq;
};

/* Milliseconds on CLOCK_MONOTONIC: immune to wall-clock jumps. */
uint64_t timer_now_ms(void);

/* ---- Deadlines that never move ----
 *
 * Every wait with a time limit counts down to a deadline: an absolute time
 * on timer_now_ms()'s clock, fixed once when the wait begins. It is never
 * a timeout restarted by each byte, so a client that trickles a byte at a
 * time gains nothing, and an early wake-up (EINTR, a spurious "ready")
 * costs nothing: the next wait gets what is left. */

/* A deadline that is never reached: a wait without a time limit. */
#define TIMER_NEVER UINT64_MAX

/* The deadline ms from now: timer_now_ms() + ms, or TIMER_NEVER for
 * ms < 0. */
uint64_t timer_deadline_in(int ms);

/* Milliseconds from now until deadline (both on timer_now_ms()'s clock),
 * as poll, epoll_wait and the coroutines' waits take a timeout: 0 once it
 * has passed, INT_MAX at most, -1 for TIMER_NEVER. */
int timer_ms_left(uint64_t deadline, uint64_t now);

/* Marks a node as not in any heap; call once before first use. */
void timer_node_init(struct timer_node *n);

/* True while the node sits in a heap. */
bool timer_node_armed(const struct timer_node *n);

void timer_heap_init(struct timer_heap *h);

/* Frees the heap's array (not the nodes, which belong to their owners). */
void timer_heap_free(struct timer_heap *h);

/* Arms n for deadline_ms (re-arms it if already armed). 0, or -1 with
 * errno=ENOMEM. */
int timer_heap_push(struct timer_heap *h, struct timer_node *n,
                    uint64_t deadline_ms);

/* Disarms n; harmless if it is not armed. */
void timer_heap_remove(struct timer_heap *h, struct timer_node *n);

/* The earliest node, or NULL when the heap is empty. */
struct timer_node *timer_heap_peek(const struct timer_heap *h);

/* Removes and returns the earliest node whose deadline is <= now, or NULL.
 * Loops call it until NULL to fire everything that is due. */
struct timer_node *timer_heap_pop_expired(struct timer_heap *h, uint64_t now);

/* Milliseconds until the earliest deadline (timer_ms_left), or -1 when the
 * heap is empty: exactly what select/epoll_wait want as a timeout. */
int timer_heap_timeout_ms(const struct timer_heap *h, uint64_t now);

size_t timer_heap_size(const struct timer_heap *h);

/* The blocking stages' way to wait (01-03): nanosleep for ms, resuming
 * after signal interruptions. The calling thread does nothing meanwhile. */
void timer_nanosleep_ms(int ms);

#endif
