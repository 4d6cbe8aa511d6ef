#!/usr/bin/env bash
# s4-gil: 06's worker pool has one thread (CO_DEFAULT_WORKERS 1): two threads in all after offloaded work
# needs: 06-coroutines loadgen
. "$(dirname "$0")/lib.sh"
ex_start s "$B/06-coroutines" --quiet --delay-ms 0 --cpu-ms 20 --offload
"$B/loadgen" -c 4 -n 8 --url "http://127.0.0.1:$PORT/api/exchange_sync" --bills 1 --quiet >/dev/null 2>&1
threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$PID/status")
msg="06 ran offloaded work on ${threads:-no} threads in all (want at most 2: the loop's and one worker)"
[ -n "$threads" ] && [ "$threads" -le 2 ] && ex_pass "$msg"
ex_fail "$msg"
