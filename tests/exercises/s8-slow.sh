#!/usr/bin/env bash
# s8-slow: 06's scheduler warns "slow coroutine" when one runs 100 ms or more without giving the loop back
# needs: 06-coroutines
. "$(dirname "$0")/lib.sh"
# Both sides: a coroutine that blocks 200 ms in nanosleep (--blocking-bug)
# must be reported; one that parks 200 ms in co_sleep must not (it gave
# the loop back: waiting is not running).
ex_start s "$B/06-coroutines" --quiet --blocking-bug --delay-ms 200
ex_post "$PORT" exchange_sync 1 -o /dev/null
ex_stop "$PID"
slow=$(grep -ci 'slow coroutine' "$EX_DIR/s.log")
ex_start fine "$B/06-coroutines" --quiet --delay-ms 200
ex_post "$PORT" exchange_sync 1 -o /dev/null
ex_stop "$PID"
parked=$(grep -ci 'slow coroutine' "$EX_DIR/fine.log")
msg="06 --blocking-bug (a 200 ms nanosleep inside a coroutine) logged $slow 'slow coroutine' warning(s) (want 1 or more); without it (a 200 ms co_sleep) $parked (want 0)"
ex_verdict "$msg" [ "$slow" -ge 1 -a "$parked" = 0 ]
