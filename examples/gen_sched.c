/* gen_sched: the seed's generator scheduler, with its task stack, in C.
 *
 * Section 8 ("From generators to coroutines"). Python original (the second
 * seed lecture, after David Beazley): tasks are generators; the scheduler
 * resumes each with next() until its next `yield`; a task that yields
 * another generator "calls" it, so each task keeps a stack of generators
 * and the callee's return value goes back to its caller:
 *
 *   def add(a, b): yield; return a + b
 *   def counter(name, n):
 *       total = 0
 *       for i in range(n): total = yield add(total, i); print(name, i, total)
 *
 * C has no yield. A generator can still be written by hand: its locals
 * move into a struct (a generator's frame is a heap object in Python too)
 * and "where it stopped" is a number, resumed with a switch (Duff's
 * device, as protothreads do). Every local that must survive a yield has
 * to live in the struct, and a generator can only yield from its own body,
 * not from a function it calls: that is why 06 gives each coroutine a real
 * stack with ucontext instead (see examples/switch_cost.c for the price).
 * What to notice: the two tasks' lines alternate, as in the Python.
 * gen_sched --time times one resume of a generator instead (compare
 * examples/switch_cost's figures for a call and a coroutine switch). */
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { GEN_YIELD, GEN_CALL, GEN_DONE };

/* A generator: its resume point, its locals, and what it calls/returns. */
struct gen {
    int pc;                        /* where to resume (0: the start) */
    int (*step)(struct gen *);     /* runs it to its next yield */
    const char *name;
    long a, b, i, n, total;        /* the locals that survive a yield */
    struct gen *callee;            /* set with GEN_CALL */
    long sent;                     /* the callee's return value, sent in */
    long ret;                      /* set with GEN_DONE */
};

#define GEN_BEGIN(g) switch ((g)->pc) { case 0:
#define GEN_YIELD_(g, code) do { (g)->pc = __LINE__; return (code); case __LINE__:; } while (0)
#define GEN_END(g) } (g)->pc = -1; return GEN_DONE

/* def add(a, b): yield; return a + b */
static int add_step(struct gen *g)
{
    GEN_BEGIN(g);
    GEN_YIELD_(g, GEN_YIELD);
    g->ret = g->a + g->b;
    GEN_END(g);
}

/* def counter(name, n): ... total = yield add(total, i) ... */
static int counter_step(struct gen *g)
{
    static struct gen adders[2];   /* one callee at a time per task */
    GEN_BEGIN(g);
    for (g->i = 0; g->i < g->n; g->i++) {
        g->callee = &adders[g->name[0] == 'B'];
        *g->callee = (struct gen){.step = add_step, .a = g->total, .b = g->i};
        GEN_YIELD_(g, GEN_CALL);
        g->total = g->sent;
        printf("%s %ld %ld\n", g->name, g->i, g->total);
    }
    GEN_END(g);
}

/* A task: a stack of generators, the top one running. */
struct task {
    struct gen *stack[8];
    int depth;
};

/* def ticker(): while True: yield, the smallest generator there is. */
static int ticker_step(struct gen *g)
{
    GEN_BEGIN(g);
    for (;;)
        GEN_YIELD_(g, GEN_YIELD);
    GEN_END(g);
}

/* gen_sched --time: what one resume of a hand-written generator costs
 * (a call through the step pointer, a switch on the resume point, a
 * return), per resume, over RESUMES of them. */
#define RESUMES 10000000L
static int time_resumes(void)
{
    struct gen t = {.step = ticker_step};
    int (*volatile step)(struct gen *) = ticker_step; /* not inlined away */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < RESUMES; i++)
        step(&t);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("generator resume %6.1f ns (%ld resumes)\n", ns / RESUMES, RESUMES);
    return 0;
}

/* The seed's two tasks, scheduled round robin. */
static int demo(void)
{
    struct gen a = {.step = counter_step, .name = "A", .n = 3};
    struct gen b = {.step = counter_step, .name = "B", .n = 3};
    struct task tasks[2] = {{{&a}, 1}, {{&b}, 1}};
    int live = 2;
    while (live > 0) {                      /* the scheduler's loop */
        for (int t = 0; t < 2; t++) {       /* round robin over the ready tasks */
            struct task *tk = &tasks[t];
            if (tk->depth == 0)
                continue;
            struct gen *top = tk->stack[tk->depth - 1];
            int what = top->step(top);
            if (what == GEN_CALL && tk->depth < 8) {
                tk->stack[tk->depth++] = top->callee;   /* push the callee */
            } else if (what == GEN_DONE) {
                if (--tk->depth == 0)
                    live--;                             /* the task ended */
                else
                    tk->stack[tk->depth - 1]->sent = top->ret; /* return to the caller */
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--time") == 0)
        return time_resumes();
    return demo();
}
