/* Unit tests for common/timer: the min-heap of deadlines used by 04-06. */
#include <check.h>
#include <stdlib.h>
#include <time.h>

#include "timer.h"
#include "harness.h"

struct item {
    int id;
    struct timer_node node;
};

START_TEST(pops_in_deadline_order)
{
    struct timer_heap h;
    timer_heap_init(&h);
    int deadlines[] = {50, 10, 40, 30, 20, 60, 0};
    struct item items[7];
    for (int i = 0; i < 7; i++) {
        items[i].id = i;
        timer_node_init(&items[i].node);
        ck_assert_int_eq(timer_heap_push(&h, &items[i].node, (uint64_t)deadlines[i]), 0);
    }
    ck_assert_uint_eq(timer_heap_size(&h), 7);
    int expect[] = {6, 1, 4, 3, 2, 0, 5};
    for (int i = 0; i < 7; i++) {
        struct timer_node *n = timer_heap_pop_expired(&h, 1000);
        ck_assert_ptr_nonnull(n);
        ck_assert_int_eq(container_of(n, struct item, node)->id, expect[i]);
        ck_assert(!timer_node_armed(n));
    }
    ck_assert_ptr_null(timer_heap_pop_expired(&h, 1000));
    timer_heap_free(&h);
}
END_TEST

START_TEST(equal_deadlines_keep_push_order)
{
    struct timer_heap h;
    timer_heap_init(&h);
    struct item items[100];
    for (int i = 0; i < 100; i++) {
        items[i].id = i;
        timer_node_init(&items[i].node);
        timer_heap_push(&h, &items[i].node, 5);
    }
    for (int i = 0; i < 100; i++) {
        struct timer_node *n = timer_heap_pop_expired(&h, 5);
        ck_assert_int_eq(container_of(n, struct item, node)->id, i);
    }
    timer_heap_free(&h);
}
END_TEST

START_TEST(only_expired_are_popped_and_timeout_is_exact)
{
    struct timer_heap h;
    timer_heap_init(&h);
    ck_assert_int_eq(timer_heap_timeout_ms(&h, 0), -1);
    struct item a = {.id = 1}, b = {.id = 2};
    timer_node_init(&a.node);
    timer_node_init(&b.node);
    timer_heap_push(&h, &a.node, 100);
    timer_heap_push(&h, &b.node, 300);
    ck_assert_int_eq(timer_heap_timeout_ms(&h, 40), 60);
    ck_assert_ptr_null(timer_heap_pop_expired(&h, 99));
    ck_assert_ptr_eq(timer_heap_pop_expired(&h, 100), &a.node);
    ck_assert_ptr_null(timer_heap_pop_expired(&h, 299));
    ck_assert_int_eq(timer_heap_timeout_ms(&h, 500), 0);
    timer_heap_free(&h);
}
END_TEST

START_TEST(remove_and_rearm)
{
    struct timer_heap h;
    timer_heap_init(&h);
    struct item items[10];
    for (int i = 0; i < 10; i++) {
        items[i].id = i;
        timer_node_init(&items[i].node);
        timer_heap_push(&h, &items[i].node, (uint64_t)(i * 10));
    }
    timer_heap_remove(&h, &items[0].node);
    timer_heap_remove(&h, &items[5].node);
    timer_heap_remove(&h, &items[5].node); /* twice is harmless */
    timer_heap_push(&h, &items[9].node, 1); /* re-arm moves it to the front */
    ck_assert_uint_eq(timer_heap_size(&h), 8);
    int expect[] = {9, 1, 2, 3, 4, 6, 7, 8};
    for (int i = 0; i < 8; i++) {
        struct timer_node *n = timer_heap_pop_expired(&h, 1000);
        ck_assert_int_eq(container_of(n, struct item, node)->id, expect[i]);
    }
    ck_assert_uint_eq(timer_heap_size(&h), 0);
    timer_heap_free(&h);
}
END_TEST

/* Random pushes and removals against a sorted check: the heap invariant
 * holds through thousands of operations. */
START_TEST(random_operations_stay_ordered)
{
    struct timer_heap h;
    timer_heap_init(&h);
    enum { N = 5000 };
    struct item *items = calloc(N, sizeof *items);
    unsigned seed = 42;
    for (int i = 0; i < N; i++) {
        items[i].id = i;
        timer_node_init(&items[i].node);
        timer_heap_push(&h, &items[i].node, rand_r(&seed) % 1000);
    }
    for (int i = 0; i < N; i += 3)
        timer_heap_remove(&h, &items[i].node);
    uint64_t last = 0;
    size_t popped = 0;
    struct timer_node *n;
    while ((n = timer_heap_pop_expired(&h, UINT64_MAX)) != NULL) {
        ck_assert_uint_ge(n->deadline_ms, last);
        last = n->deadline_ms;
        popped++;
    }
    ck_assert_uint_eq(popped, N - (N + 2) / 3);
    timer_heap_free(&h);
    free(items);
}
END_TEST

START_TEST(monotonic_clock_advances)
{
    uint64_t a = timer_now_ms();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    uint64_t b = timer_now_ms();
    ck_assert_uint_ge(b - a, 19);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("timer");
    TCase *tc = tcase_create("heap");
    tcase_add_test(tc, pops_in_deadline_order);
    tcase_add_test(tc, equal_deadlines_keep_push_order);
    tcase_add_test(tc, only_expired_are_popped_and_timeout_is_exact);
    tcase_add_test(tc, remove_and_rearm);
    tcase_add_test(tc, random_operations_stay_ordered);
    tcase_add_test(tc, monotonic_clock_advances);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
