#!/usr/bin/env bash
# s8-gen: examples/gen_sched.c runs a third task, C, interleaved with A
# and B: A 0, B 0, C 0, A 1, ... C 2 3.
B=${B:-build}
got=$(timeout 10 "$B/examples/gen_sched" 2>&1 | tr '\n' ' ')
want="A 0 0 B 0 0 C 0 0 A 1 1 B 1 1 C 1 1 A 2 3 B 2 3 C 2 3 "
if [ "$got" = "$want" ]; then
    echo "s8-gen: three tasks interleave: $got"
    exit 0
fi
echo "s8-gen: looked for '$want' from $B/examples/gen_sched; got: $got"
exit 1
