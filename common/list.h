/* list: one intrusive doubly linked list for the whole project.
 *
 * A struct that wants to be in a list embeds a `struct list` link; the list
 * itself is a `struct list` head. The list is circular with the head as its
 * sentinel, so insert and remove never test for an empty list or an end,
 * and an item can leave its list in O(1) knowing only itself (a closing
 * connection, a cancelled wait). LIST_ITEM turns a link back into the
 * struct that holds it. libdill (list.h) and the Linux kernel (list.h) use
 * the same shape; one copy here means one place to get it right.
 *
 *     struct conn { ...; struct list link; };
 *     struct list conns;
 *     list_init(&conns);
 *     list_push_back(&conns, &c->link);
 *     LIST_FOR_EACH_SAFE(it, next, &conns) {
 *         struct conn *c = LIST_ITEM(it, struct conn, link);
 *         ...                       (c may be removed and freed here)
 *     }
 */
#ifndef COMMON_LIST_H
#define COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};

/* The struct of type `type` whose member `member` is at `ptr`: how an
 * intrusive link (a list's, a timer heap's) finds the struct around it. */
#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* The struct that holds the link `it`. */
#define LIST_ITEM(it, type, member) container_of(it, type, member)

/* Every link of `head`, first to last. The _SAFE form reads the next link
 * before the body runs, so the body may remove (and free) `it`. */
#define LIST_FOR_EACH(it, head) \
    for (struct list *it = (head)->next; it != (head); it = it->next)
#define LIST_FOR_EACH_SAFE(it, nx, head)                                  \
    for (struct list *it = (head)->next, *nx = it->next; it != (head);    \
         it = nx, nx = it->next)

/* An empty list: the head points at itself both ways. An unlinked item is
 * kept the same way, so list_linked() can tell whether it is in a list. */
static inline void list_init(struct list *head) { head->next = head->prev = head; }

static inline bool list_empty(const struct list *head) { return head->next == head; }

/* True when `item` is in some list (it was inserted and not removed since;
 * only for items that were list_init'ed or removed with list_remove). */
static inline bool list_linked(const struct list *item) { return item->next != item; }

/* Puts `item` just before `pos`; before the head means at the end. */
static inline void list_insert_before(struct list *pos, struct list *item)
{
    item->next = pos;
    item->prev = pos->prev;
    pos->prev->next = item;
    pos->prev = item;
}

static inline void list_push_back(struct list *head, struct list *item)
{
    list_insert_before(head, item);
}

static inline void list_push_front(struct list *head, struct list *item)
{
    list_insert_before(head->next, item);
}

/* Takes `item` out of its list and leaves it unlinked (list_linked false),
 * so removing it twice is harmless. */
static inline void list_remove(struct list *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    list_init(item);
}

/* The first link, removed; NULL when the list is empty (a FIFO's pop). */
static inline struct list *list_pop_front(struct list *head)
{
    if (list_empty(head))
        return NULL;
    struct list *first = head->next;
    list_remove(first);
    return first;
}

#endif
