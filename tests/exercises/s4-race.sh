#!/usr/bin/env bash
# s4-race: examples/race holds a mutex across its read, yield and write: no update lost
# needs: examples/race
. "$(dirname "$0")/lib.sh"
out=$(timeout 10 "$B/examples/race" 2>&1)
rc=$?
[ $rc -eq 0 ] && grep -q '^counter: 20000 of 20000, 0 updates lost$' <<<"$out" &&
    ex_pass "$B/examples/race: $out"
ex_fail "looked for 'counter: 20000 of 20000, 0 updates lost' and exit status 0 from $B/examples/race; got status $rc: $out"
