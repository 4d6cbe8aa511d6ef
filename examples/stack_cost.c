/* stack_cost: what a parked coroutine costs with a stack of its own and
 * with one shared stack (06's --stack shared), in time and in bytes.
 *
 * Section 8 ("Smaller coroutines: one shared stack"). A hundred coroutines
 * take turns through 06's scheduler: each has a frame of `extra` bytes
 * more than the bare minimum and calls co_yield in a loop, so every resume
 * is one round trip through the scheduler (the coroutine switches out, the
 * scheduler switches to the next one). With separate stacks nothing is
 * copied. With one shared stack every resume changes the stack's owner:
 * the parked one's frames are copied out and the next one's copied back,
 * two memcpy of the saved size. The figures are medians of five rounds,
 * the two kinds of stack interleaved in each round so that a busy machine
 * slows both alike, with the lowest and highest round in brackets; "saved"
 * is the average copy the shared stack made (the frames, plus the
 * registers at the top of the stack). libaco publishes its own resume at
 * 20.6 ns for 0 bytes copied to 350 ns for 2 KiB (its README, a c5d.large).
 *
 * What to notice: a copy of a few hundred bytes costs little next to the
 * switch itself; the cost grows with the size, and a coroutine that parks
 * with a deep stack pays it at every resume. What a parked coroutine
 * holds: with its own stack, the pages it touched (at least one, 4 KiB);
 * with the shared stack, its saved bytes. Both keep a control block.
 *
 *   build/examples/stack_cost [setjmp|swapcontext]   (the switch; setjmp) */
#include "../06-coroutines/coro.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COROUTINES 100
#define YIELDS 2000   /* per coroutine and measurement */
#define ROUNDS 5

static const size_t extras[] = {0, 256, 512, 1024, 2048, 4096};
#define NSIZES (sizeof extras / sizeof extras[0])

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A frame `extra` bytes larger, touched at both ends, then the turns. */
static void *take_turns(void *arg)
{
    size_t extra = (size_t)(uintptr_t)arg;
    volatile char pad[extra + 1];
    pad[0] = pad[extra] = 1;
    for (int i = 0; i < YIELDS; i++)
        co_yield();
    return (void *)(uintptr_t)pad[extra];
}

/* ns per resume for one measurement; *saved gets the average copy. */
static double measure(enum co_stack kind, enum co_switch sw, size_t extra,
                      size_t *saved)
{
    struct co_options opts = {.stack_kind = kind, .switch_kind = sw};
    if (co_sched_init(&opts) != 0) {
        fprintf(stderr, "stack_cost: co_sched_init failed\n");
        exit(1);
    }
    for (int i = 0; i < COROUTINES; i++) {
        struct co *c = co_spawn(take_turns, (void *)(uintptr_t)extra);
        if (!c || co_detach(c) != 0) {
            fprintf(stderr, "stack_cost: co_spawn failed\n");
            exit(1);
        }
    }
    double t0 = now_ns();
    if (co_sched_run() != 0) {
        fprintf(stderr, "stack_cost: co_sched_run failed\n");
        exit(1);
    }
    double ns = now_ns() - t0;
    struct co_stack_stats st;
    co_stack_stats(&st);
    *saved = st.saves ? st.saved_bytes / st.saves : 0;
    co_sched_free();
    return ns / ((double)COROUTINES * YIELDS);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_cell(double *v)
{
    qsort(v, ROUNDS, sizeof *v, cmp);
    char cell[40];
    snprintf(cell, sizeof cell, "%.1f (%.1f-%.1f)", v[ROUNDS / 2], v[0],
             v[ROUNDS - 1]);
    printf("  %-22s", cell);
}

int main(int argc, char **argv)
{
    enum co_switch sw = CO_SWITCH_SETJMP;
    const char *sw_name = "setjmp";
    if (argc > 1 && strcmp(argv[1], "swapcontext") == 0) {
        sw = CO_SWITCH_SWAPCONTEXT;
        sw_name = "swapcontext";
    } else if (argc > 1 && strcmp(argv[1], "setjmp") != 0) {
        fprintf(stderr, "usage: %s [setjmp|swapcontext]\n", argv[0]);
        return 2;
    }
    static double ns[NSIZES][2][ROUNDS];
    size_t saved[NSIZES] = {0};
    for (int r = 0; r < ROUNDS; r++)
        for (size_t s = 0; s < NSIZES; s++) {
            size_t unused;
            ns[s][0][r] = measure(CO_STACK_SEPARATE, sw, extras[s], &unused);
            ns[s][1][r] = measure(CO_STACK_SHARED, sw, extras[s], &saved[s]);
        }
    printf("ns per resume, %d coroutines taking turns, switch %s "
           "(median of %d rounds, min-max):\n", COROUTINES, sw_name, ROUNDS);
    printf("%-8s %-8s  %-22s  %-22s\n", "extra", "saved", "separate stacks",
           "shared stack");
    for (size_t s = 0; s < NSIZES; s++) {
        printf("%-8zu %-8zu", extras[s], saved[s]);
        print_cell(ns[s][0]);
        print_cell(ns[s][1]);
        printf("\n");
    }
    struct co_stack_stats st;
    co_sched_init(NULL);
    co_stack_stats(&st);
    co_sched_free();
    printf("a parked coroutine holds: its control block (%zu bytes) and, "
           "with separate stacks, the pages it touched (at least one); "
           "with the shared stack, its saved bytes\n", st.block_size);
    return 0;
}
