#!/usr/bin/env bash
# s14-pools: examples/pools has a fourth mode, "serial": one client sending every request in turn
# needs: examples/pools 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
# 20 requests of a 50 ms bill: 4 workers need about 0.25 s; one client,
# one request after another, about 1 s.
ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 50
got=$(timeout 30 "$B/examples/pools" "http://127.0.0.1:$PORT/api/exchange_sync" 20 4 2>&1)
line=$(grep -E '^serial ' <<<"$got")
secs=$(sed -n 's/^serial .*: \([0-9.]*\) s, 20 answered 200$/\1/p' <<<"$line")
msg="looked for 'serial ... N s, 20 answered 200' with N from 0.95 to 3 (20 requests of 50 ms one after another) from $B/examples/pools; got: ${line:-$(tr '\n' ' ' <<<"$got")}"
[ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s >= 0.95 && s <= 3) }' && ex_pass "$msg"
ex_fail "$msg"
