#!/usr/bin/env bash
# s2-served: 01 logs how long it held each connection ("closed PEER after S s")
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --delay-ms 200
# Two connections a second apart, each held for one 200 ms bill: both must
# say about 0.2 s (the seconds since the start would say more the second time).
ex_post "$PORT" exchange_sync 1 -o /dev/null
sleep 1
ex_post "$PORT" exchange_sync 1 -o /dev/null
secs=$(grep -Eo 'closed [^ ]+ after [0-9.]+ s' "$EX_DIR/s.log" | sed 's/.* after \([0-9.]*\) s$/\1/' | tr '\n' ' ')
msg="01 held two sync requests of one 200 ms bill, a second apart, and logged 'closed PEER after S s' with S: '${secs:-none}' (want two, each from 0.19 to 0.8)"
awk -v s="$secs" 'BEGIN { n = split(s, a, " "); if (n != 2) exit 1
    for (i = 1; i <= n; i++) if (a[i] < 0.19 || a[i] > 0.8) exit 1 }' && ex_pass "$msg"
ex_fail "$msg"
