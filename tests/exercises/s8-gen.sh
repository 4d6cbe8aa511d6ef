#!/usr/bin/env bash
# s8-gen: examples/gen_sched runs a third task, C, interleaved with A and B
# needs: examples/gen_sched
. "$(dirname "$0")/lib.sh"
got=$(timeout 10 "$B/examples/gen_sched" 2>&1 | tr '\n' ' ')
want="A 0 0 B 0 0 C 0 0 A 1 1 B 1 1 C 1 1 A 2 3 B 2 3 C 2 3 "
[ "$got" = "$want" ] && ex_pass "three tasks interleave: $got"
ex_fail "looked for '$want' from $B/examples/gen_sched; got: $got"
