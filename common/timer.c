/* timer: see timer.h. A textbook binary heap over node pointers; each node
 * remembers its slot so removal needs no search. */
#include "timer.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>

uint64_t timer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t timer_deadline_in(int ms)
{
    return ms < 0 ? TIMER_NEVER : timer_now_ms() + (uint64_t)ms;
}

int timer_ms_left(uint64_t deadline, uint64_t now)
{
    if (deadline == TIMER_NEVER)
        return -1;
    if (deadline <= now)
        return 0;
    return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

void timer_node_init(struct timer_node *n) { n->index = TIMER_NOT_ARMED; }

bool timer_node_armed(const struct timer_node *n)
{
    return n->index != TIMER_NOT_ARMED;
}

void timer_heap_init(struct timer_heap *h)
{
    *h = (struct timer_heap){0};
}

void timer_heap_free(struct timer_heap *h)
{
    for (size_t i = 0; i < h->len; i++)
        h->items[i]->index = TIMER_NOT_ARMED;
    free(h->items);
    *h = (struct timer_heap){0};
}

static bool timer_before(const struct timer_node *a, const struct timer_node *b)
{
    if (a->deadline_ms != b->deadline_ms)
        return a->deadline_ms < b->deadline_ms;
    return a->seq < b->seq;
}

static void timer_place(struct timer_heap *h, size_t i, struct timer_node *n)
{
    h->items[i] = n;
    n->index = i;
}

static void timer_sift_up(struct timer_heap *h, size_t i)
{
    struct timer_node *n = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(n, h->items[parent]))
            break;
        timer_place(h, i, h->items[parent]);
        i = parent;
    }
    timer_place(h, i, n);
}

static void timer_sift_down(struct timer_heap *h, size_t i)
{
    struct timer_node *n = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && timer_before(h->items[child + 1], h->items[child]))
            child++;
        if (!timer_before(h->items[child], n))
            break;
        timer_place(h, i, h->items[child]);
        i = child;
    }
    timer_place(h, i, n);
}

int timer_heap_push(struct timer_heap *h, struct timer_node *n,
                    uint64_t deadline_ms)
{
    timer_heap_remove(h, n);
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct timer_node **items = realloc(h->items, cap * sizeof *items);
        if (!items) {
            errno = ENOMEM;
            return -1;
        }
        h->items = items;
        h->cap = cap;
    }
    n->deadline_ms = deadline_ms;
    n->seq = h->next_seq++;
    timer_place(h, h->len++, n);
    timer_sift_up(h, n->index);
    return 0;
}

void timer_heap_remove(struct timer_heap *h, struct timer_node *n)
{
    size_t i = n->index;
    if (i == TIMER_NOT_ARMED || i >= h->len || h->items[i] != n)
        return;
    n->index = TIMER_NOT_ARMED;
    struct timer_node *last = h->items[--h->len];
    if (i == h->len)
        return;
    /* The last node fills the hole; it may belong above or below it. */
    timer_place(h, i, last);
    timer_sift_up(h, i);
    timer_sift_down(h, last->index);
}

struct timer_node *timer_heap_peek(const struct timer_heap *h)
{
    return h->len ? h->items[0] : NULL;
}

struct timer_node *timer_heap_pop_expired(struct timer_heap *h, uint64_t now)
{
    struct timer_node *n = timer_heap_peek(h);
    if (!n || n->deadline_ms > now)
        return NULL;
    timer_heap_remove(h, n);
    return n;
}

int timer_heap_timeout_ms(const struct timer_heap *h, uint64_t now)
{
    struct timer_node *n = timer_heap_peek(h);
    return n ? timer_ms_left(n->deadline_ms, now) : -1;
}

size_t timer_heap_size(const struct timer_heap *h) { return h->len; }

void timer_nanosleep_ms(int ms)
{
    struct timespec left = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}
