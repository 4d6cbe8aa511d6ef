/* tasks: the server's lists of coroutines (its connections, its background
 * jobs, the connections idle between requests), so that a stop can find
 * and cancel them. A list of common/list.h with a count. A task leaves its
 * list before its coroutine returns, so a handle found in a list is always
 * alive. One thread: no locks. */
#ifndef TASKS_H
#define TASKS_H

#include <stddef.h>

#include "coro.h"
#include "list.h"

struct task {
    struct co *co;
    struct list link;            /* in one task_list */
};

struct task_list {
    struct list all;
    size_t count;
};

/* An empty list, as the initializer of the static list named l. */
#define TASK_LIST_INIT(l) {.all = {.next = &(l).all, .prev = &(l).all}}

static inline void task_add(struct task_list *l, struct task *t)
{
    list_push_back(&l->all, &t->link);
    l->count++;
}

static inline void task_remove(struct task_list *l, struct task *t)
{
    list_remove(&t->link);
    l->count--;
}

/* co_cancel on every task of l. co_cancel never switches, so no task
 * leaves l meanwhile. */
static inline void task_cancel_all(struct task_list *l)
{
    LIST_FOR_EACH(it, &l->all)
        co_cancel(LIST_ITEM(it, struct task, link)->co);
}

#endif
