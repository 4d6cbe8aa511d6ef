#!/usr/bin/env bash
# s2-served: 01 logs how long it held each connection ("closed PEER after S s")
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --delay-ms 200
ex_post "$PORT" exchange_sync 1 -o /dev/null
line=$(grep -Eo 'closed [^ ]+ after [0-9.]+ s' "$EX_DIR/s.log" | head -1)
secs=${line##* after }
secs=${secs% s}
msg="01 held a sync request of one 200 ms bill and logged '${line:-no closed PEER after S s line}' (want S from 0.2 to 1.0)"
[ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s >= 0.19 && s <= 1.0) }' && ex_pass "$msg"
ex_fail "$msg"
