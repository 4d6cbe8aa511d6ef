#!/usr/bin/env bash
# s4-race: examples/race holds a mutex across its read, yield and write: no update lost
# needs: examples/race
. "$(dirname "$0")/lib.sh"
# No update lost proves little by itself: without the sched_yield() the
# window is so narrow that a run may lose nothing with no lock at all.
# So the program is built here with its sched_yield() counted (the
# linker's --wrap): the yields must all still happen, 20000 of them,
# and the lock must make them harmless.
cat >"$EX_DIR/count_yield.c" <<'C'
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
int __real_sched_yield(void);
static atomic_long yields;
static void report(void) { fprintf(stderr, "yields: %ld\n", atomic_load(&yields)); }
int __wrap_sched_yield(void)
{
    static atomic_flag once = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&once))
        atexit(report);
    atomic_fetch_add(&yields, 1);
    return __real_sched_yield();
}
C
bin=$EX_DIR/race
${CC:-cc} -O2 -pthread examples/race.c "$EX_DIR/count_yield.c" -Wl,--wrap=sched_yield \
    -o "$bin" 2>"$EX_DIR/cc.log" ||
    ex_fail "could not build examples/race.c: $(head -3 "$EX_DIR/cc.log")"
out=$(timeout 20 "$bin" 2>&1)
line=$(grep '^counter: ' <<<"$out")
lost=$(sed -n 's/^counter: [0-9]* of 20000, \([0-9]*\) updates lost$/\1/p' <<<"$line")
yields=$(sed -n 's/^yields: //p' <<<"$out")
msg="examples/race said '${line:-nothing}' after ${yields:-no} sched_yield calls (want 0 of its 20000 additions lost, with all 20000 yields still made)"
ex_verdict "$msg" [ "${lost:-x}" = 0 -a "${yields:-0}" = 20000 ]
