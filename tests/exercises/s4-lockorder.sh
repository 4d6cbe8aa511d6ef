#!/usr/bin/env bash
# s4-lockorder: examples/deadlock.c takes its two mutexes in one order in
# both threads, so it finishes instead of hanging.
B=${B:-build}
out=$(timeout 10 "$B/examples/deadlock" 2>&1)
if [ $? -eq 0 ] && grep -q '^no deadlock' <<<"$out"; then
    echo "s4-lockorder: build/examples/deadlock finished: no deadlock"
    exit 0
fi
echo "s4-lockorder: looked for 'no deadlock' and exit status 0 from $B/examples/deadlock; got: $out"
exit 1
