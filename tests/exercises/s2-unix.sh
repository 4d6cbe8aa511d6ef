#!/usr/bin/env bash
# s2-unix: examples/socket_cost.c also times a round trip over a Unix
# socket pair, on a line of its own that starts with "unix".
B=${B:-build}
out=$(timeout 30 "$B/examples/socket_cost" 2>&1)
if grep -Eq '^unix +[0-9.]+ us' <<<"$out"; then
    echo "s2-unix: $(grep '^unix' <<<"$out")"
    exit 0
fi
echo "s2-unix: looked for a line 'unix <N> us' from $B/examples/socket_cost; got: $(tr '\n' ' ' <<<"$out")"
exit 1
