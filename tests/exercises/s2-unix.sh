#!/usr/bin/env bash
# s2-unix: examples/socket_cost also times a round trip over a Unix socket pair ("unix <N> us")
# needs: examples/socket_cost
. "$(dirname "$0")/lib.sh"
out=$(timeout 30 "$B/examples/socket_cost" 2>&1)
line=$(grep -E '^unix +[0-9.]+ us' <<<"$out" | head -1)
[ -n "$line" ] && ex_pass "$line"
ex_fail "looked for a line 'unix <N> us' from $B/examples/socket_cost; got: $(tr '\n' ' ' <<<"$out")"
