#!/usr/bin/env bash
# s2-onesleep: 01 waits once for all of a request's bills, not once per bill
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --quiet --delay-ms 300
# Both sides: four waits take 1.2 s, none takes a few ms; one takes 0.3 s.
t0=$(date +%s%N)
body=$(ex_post "$PORT" exchange_sync 4)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
bills=$(grep -o '"subtotal_rub"' <<<"$body" | wc -l)
msg="a sync request of 4 bills at --delay-ms 300 took $ms ms with $bills subtotals (want 290 to 700 ms: one wait, not four and not none; and all 4 subtotals)"
ex_verdict "$msg" [ "$ms" -ge 290 -a "$ms" -lt 700 -a "$bills" = 4 ]
