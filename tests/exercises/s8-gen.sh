#!/usr/bin/env bash
# s8-gen: examples/gen_sched runs a third task, C, counting to 4, interleaved with A and B
# needs: examples/gen_sched
. "$(dirname "$0")/lib.sh"
# C counts one step further than A and B, so its last line comes alone,
# after the others have ended: a scheduler that stops when two tasks have
# ended, or a C that shares another task's callee, shows a different text.
got=$(timeout 10 "$B/examples/gen_sched" 2>&1 | tr '\n' ' ')
want="A 0 0 B 0 0 C 0 0 A 1 1 B 1 1 C 1 1 A 2 3 B 2 3 C 2 3 C 3 6 "
[ "$got" = "$want" ] && ex_pass "three tasks interleave: $got"
ex_fail "looked for '$want' from $B/examples/gen_sched; got: $got"
