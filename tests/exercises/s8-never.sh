#!/usr/bin/env bash
# s8-never: examples/never_awaited has a round 3 whose main awaits its task: the task's line comes before main returns
# needs: examples/never_awaited
. "$(dirname "$0")/lib.sh"
out=$(timeout 20 "$B/examples/never_awaited" 2>&1)
got=$(grep '^round 3: ' <<<"$out" | tr '\n' '|')
msg="looked for 'round 3: hello from the task' then 'round 3: main returns...' from $B/examples/never_awaited; got: ${got:-no round 3}"
grep -q '^round 3: hello from the task$' <<<"$out" &&
    grep -A1 '^round 3: hello from the task$' <<<"$out" | grep -q '^round 3: main returns' &&
    ex_pass "$msg"
ex_fail "$msg"
