#!/usr/bin/env bash
# s8-slow: 06's scheduler warns "slow coroutine" when one runs 100 ms or more without giving the loop back
# needs: 06-coroutines
. "$(dirname "$0")/lib.sh"
ex_start s "$B/06-coroutines" --quiet --blocking-bug --delay-ms 200
ex_post "$PORT" exchange_sync 1 -o /dev/null
slow=$(grep -ci 'slow coroutine' "$EX_DIR/s.log")
msg="06 --blocking-bug (a 200 ms nanosleep inside a coroutine) logged $slow 'slow coroutine' warning(s) (want at least 1)"
ex_verdict "$msg" [ "$slow" -ge 1 ]
