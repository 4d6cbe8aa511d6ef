#!/usr/bin/env bash
# s4-lockorder: examples/deadlock takes its two mutexes in one order in both threads and finishes
# needs: examples/deadlock
. "$(dirname "$0")/lib.sh"
out=$(timeout 10 "$B/examples/deadlock" 2>&1)
rc=$?
[ $rc -eq 0 ] && grep -q '^no deadlock' <<<"$out" &&
    ex_pass "$B/examples/deadlock finished: no deadlock"
ex_fail "looked for 'no deadlock' and exit status 0 from $B/examples/deadlock; got status $rc: $out"
