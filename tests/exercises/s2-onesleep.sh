#!/usr/bin/env bash
# s2-onesleep: 01 waits once for all of a request's bills, not once per bill
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
# The sleeps are counted too: four shorter waits (the delay divided among
# the bills) take the same 0.3 s, yet still call the "external service"
# four times, each pretending to answer sooner than it does. A sleep is
# a nanosleep, or the wait that a stop can cut short (shutdown_sleep_ms:
# a poll of one pipe with a timeout).
ex_sleep_counter
LD_PRELOAD=$EX_DIR/sleeps.so ex_start s "$B/01-blocking" --quiet --delay-ms 300
# Both sides: four waits take 1.2 s, none takes a few ms; one takes 0.3 s.
t0=$(date +%s%N)
body=$(ex_post "$PORT" exchange_sync 4)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
bills=$(grep -o '"subtotal_rub"' <<<"$body" | wc -l)
ex_stop "$PID"
plain=$(sed -n 's/^blocking sleeps: //p' "$EX_DIR/s.log")
cut=$(sed -n 's/^pipe waits: //p' "$EX_DIR/s.log")
sleeps=$(( ${plain:-0} + ${cut:-0} ))
[ -n "$plain$cut" ] || sleeps=
msg="a sync request of 4 bills at --delay-ms 300 took $ms ms with $bills subtotals and ${sleeps:-?} sleeps (want 290 to 700 ms: one wait, not four and not none; all 4 subtotals; and 1 sleep)"
ex_verdict "$msg" [ "$ms" -ge 290 -a "$ms" -lt 700 -a "$bills" = 4 -a "${sleeps:-x}" = 1 ]
