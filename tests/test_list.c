/* Unit tests for common/list.h: the one intrusive list every module uses. */
#include <check.h>
#include <stdio.h>

#include "harness.h"
#include "list.h"

struct item {
    int id;
    struct list link;
};

/* The ids of the list, front to back, as a string: "1 2 3". */
static const char *ids(struct list *head)
{
    static char buf[128];
    size_t n = 0;
    buf[0] = '\0';
    LIST_FOR_EACH(it, head)
        n += (size_t)snprintf(buf + n, sizeof buf - n, n ? " %d" : "%d",
                              LIST_ITEM(it, struct item, link)->id);
    return buf;
}

START_TEST(push_back_and_front_keep_order)
{
    struct list head;
    list_init(&head);
    ck_assert(list_empty(&head));
    struct item it[4] = {{.id = 1}, {.id = 2}, {.id = 3}, {.id = 4}};
    list_push_back(&head, &it[1].link);
    list_push_back(&head, &it[2].link);
    list_push_front(&head, &it[0].link);
    list_push_back(&head, &it[3].link);
    ck_assert_str_eq(ids(&head), "1 2 3 4");
    ck_assert(!list_empty(&head));
}
END_TEST

START_TEST(remove_from_anywhere_leaves_item_unlinked)
{
    struct list head;
    list_init(&head);
    struct item it[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    for (int i = 0; i < 3; i++)
        list_push_back(&head, &it[i].link);
    ck_assert(list_linked(&it[1].link));
    list_remove(&it[1].link);
    ck_assert(!list_linked(&it[1].link));
    list_remove(&it[1].link); /* twice is harmless */
    ck_assert_str_eq(ids(&head), "1 3");
    list_remove(&it[0].link);
    list_remove(&it[2].link);
    ck_assert(list_empty(&head));
}
END_TEST

START_TEST(safe_walk_may_remove_the_current_item)
{
    struct list head;
    list_init(&head);
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].id = i;
        list_push_back(&head, &it[i].link);
    }
    LIST_FOR_EACH_SAFE(cur, nx, &head) {
        if (LIST_ITEM(cur, struct item, link)->id % 2 == 0)
            list_remove(cur);
    }
    ck_assert_str_eq(ids(&head), "1 3");
}
END_TEST

START_TEST(pop_front_is_a_fifo)
{
    struct list head;
    list_init(&head);
    ck_assert_ptr_null(list_pop_front(&head));
    struct item it[3] = {{.id = 7}, {.id = 8}, {.id = 9}};
    for (int i = 0; i < 3; i++)
        list_push_back(&head, &it[i].link);
    for (int i = 0; i < 3; i++) {
        struct list *l = list_pop_front(&head);
        ck_assert_ptr_nonnull(l);
        ck_assert_int_eq(LIST_ITEM(l, struct item, link)->id, 7 + i);
        ck_assert(!list_linked(l));
    }
    ck_assert_ptr_null(list_pop_front(&head));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("list");
    TCase *tc = tcase_create("list");
    tcase_add_test(tc, push_back_and_front_keep_order);
    tcase_add_test(tc, remove_from_anywhere_leaves_item_unlinked);
    tcase_add_test(tc, safe_walk_may_remove_the_current_item);
    tcase_add_test(tc, pop_front_is_a_fifo);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
