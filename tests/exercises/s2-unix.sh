#!/usr/bin/env bash
# s2-unix: examples/socket_cost also times a round trip over a Unix socket pair ("unix <N> us")
# needs: examples/socket_cost
. "$(dirname "$0")/lib.sh"
# Three runs; the median unix/TCP ratio must show a socket pair cheaper
# than TCP on loopback (2.5 to 3 times here: no TCP/IP stack), yet take
# some time (a figure not divided by the number of trips, or the TCP pair
# timed again under the new name, is off on one side).
ratios=""
lines=""
for run in 1 2 3; do
    out=$(timeout 30 "$B/examples/socket_cost" 2>&1)
    tcp=$(sed -n 's/^round trip *\([0-9.]*\) us.*/\1/p' <<<"$out")
    unix=$(sed -n 's/^unix *\([0-9.]*\) us.*/\1/p' <<<"$out" | head -1)
    [ -n "$tcp" ] && [ -n "$unix" ] ||
        ex_fail "looked for lines 'round trip <N> us' and 'unix <N> us' from $B/examples/socket_cost; got: $(tr '\n' ' ' <<<"$out")"
    lines="$lines${lines:+; }unix $unix us, TCP $tcp us"
    ratios="$ratios $(awk -v u="$unix" -v t="$tcp" 'BEGIN { printf "%.3f", u / t }')"
done
median=$(tr ' ' '\n' <<<"$ratios" | grep . | sort -n | sed -n 2p)
msg="three runs: $lines (want the median unix/TCP ratio, $median, from 0.05 to 0.7)"
ex_verdict "$msg" awk -v r="$median" 'BEGIN { exit !(r >= 0.05 && r <= 0.7) }'
