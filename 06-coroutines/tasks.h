/* tasks: the server's lists of coroutines (its connections, its
 * background jobs), so that a stop can find and cancel them. A task
 * removes itself from its list just before its coroutine returns, so a
 * handle found in a list is always alive. One thread: no locks. */
#ifndef TASKS_H
#define TASKS_H

#include <stdbool.h>
#include <stddef.h>

#include "coro.h"

struct task {
    struct co *co;
    bool idle;                   /* a connection waiting for a new request */
    struct task *prev, *next;
};

struct task_list {
    struct task head;            /* circular, with a sentinel */
    size_t count;
};

/* An empty list, as the initializer of the static list named l. */
#define TASK_LIST_INIT(l) {.head = {.prev = &(l).head, .next = &(l).head}}

static inline void task_add(struct task_list *l, struct task *t)
{
    t->next = &l->head;
    t->prev = l->head.prev;
    l->head.prev->next = t;
    l->head.prev = t;
    l->count++;
}

static inline void task_remove(struct task_list *l, struct task *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    l->count--;
}

#endif
