/* coro_ps: co_print_tasks (coro.h, "who am I"), what every coroutine is
 * doing, for the task list a SIGQUIT prints (common/tasklist.h). libtask
 * prints its tasks on SIGQUIT; `python -m asyncio ps PID` lists an
 * asyncio program's tasks and what each awaits.
 *
 * The core already knows all of it: each wait says what it waits for in
 * its struct co_wait (why, detail), co_park noted when it began, and a
 * wait with a timeout has its timer armed. This file only reads. */
#include "coro_impl.h"

#include <stdio.h>

#include "symtab.h"
#include "tasklist.h"

/* What c waits for, and until when: "read fd 7, times out in 250 ms";
 * "sleep, ends in 250 ms" (a sleep's timer is its success). */
static void co_waits_for(const struct co *c, uint64_t now, char *buf,
                         size_t len)
{
    int n = c->wait->detail >= 0
                ? snprintf(buf, len, "%s %ld", c->wait->why, c->wait->detail)
                : snprintf(buf, len, "%s", c->wait->why);
    if (n >= 0 && (size_t)n < len && loop_timer_armed(&c->timer)) {
        uint64_t due = c->timer.node.deadline_ms;
        snprintf(buf + n, len - (size_t)n, ", %s in %llu ms",
                 c->wait->timer_result == 0 ? "ends" : "times out",
                 (unsigned long long)(due > now ? due - now : 0));
    }
}

size_t co_print_tasks(void)
{
    if (!sched)
        return 0;
    uint64_t now = timer_now_ms();
    size_t n = 0;
    LIST_FOR_EACH(it, &sched->all) {
        const struct co *c = LIST_ITEM(it, struct co, all_link);
        if (c->state == CO_DONE)
            continue; /* returned; only its result waits for co_join */
        const char *fn = symtab_name((uintptr_t)c->fn);
        char what[128] = "", age[24] = "-";
        const char *state = c->state == CO_RUNNING ? "running"
                            : c->state == CO_READY ? "ready"
                                                   : "parked";
        if (c->state == CO_WAITING) {
            co_waits_for(c, now, what, sizeof what);
            snprintf(age, sizeof age, "%llu",
                     (unsigned long long)(now - c->parked_ms));
        } else if (c->state == CO_RUNNING) {
            snprintf(what, sizeof what, "(printing this list)");
        }
        tasklist_line("  co %-4ld %-20s %-7s %6s ms  %s", c->id,
                      fn ? fn : "?", state, age, what);
        n++;
    }
    return n;
}
