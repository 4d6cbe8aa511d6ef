#!/usr/bin/env bash
# s14-pools: examples/pools has a fourth mode, "serial": one client sending every request in turn
# needs: examples/pools 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 0
got=$(timeout 30 "$B/examples/pools" "http://127.0.0.1:$PORT/api/exchange_sync" 20 4 2>&1)
line=$(grep -E '^serial +20 requests, .* 20 answered 200$' <<<"$got")
[ -n "$line" ] && ex_pass "$line"
ex_fail "looked for a 'serial ... 20 answered 200' line from $B/examples/pools; got: $(tr '\n' ' ' <<<"$got")"
