#!/usr/bin/env bash
# s6-block: 04 sleeps 200 ms in a step that reads a request, and every client waits for it
# needs: 04-select loadgen
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet
# Three concurrent GET / from one client: each waits for the steps before
# its own, so the answers come one after another, after about 0.2, 0.4
# and 0.6 s (a staircase). A sleep somewhere else shows another shape:
# no wait at all, or all three answered together.
out=$(timeout 20 "$B/loadgen" -c 3 -n 3 --url "http://127.0.0.1:$PORT/" 2>&1)
lat=$(sed -n 's/^ *latency *min \([0-9.]*\) *p50 \([0-9.]*\) .* max \([0-9.]*\) ms.*/\1 \2 \3/p' <<<"$out")
msg="3 concurrent GET / answered after ${lat:-?} ms (min, median, max; want a staircase: the first from 180 ms, each next one at least 150 ms later, the last by 1500 ms)"
ex_verdict "$msg" awk -v t="$lat" 'BEGIN { if (split(t, a, " ") != 3) exit 1
    exit !(a[1] >= 180 && a[2] - a[1] >= 150 && a[3] - a[2] >= 150 && a[3] <= 1500) }'
