#!/usr/bin/env bash
# s8-offload: 06 sends CPU work of 50 ms or more to its worker pool even without --offload, and keeps shorter work on the loop
# needs: 06-coroutines
. "$(dirname "$0")/lib.sh"
# 1 s of CPU work: GET / meanwhile must not wait for it.
ex_start s "$B/06-coroutines" --quiet --cpu-ms 1000 --delay-ms 10
ex_post "$PORT" exchange_sync 1 -o /dev/null &
sleep 0.15
ms=$(ex_time_ms curl -s -m 5 "http://127.0.0.1:$PORT/")
wait $!
ex_stop "$PID"
# The pool starts on its first job: its threads say whether work went
# there. 50 ms (the threshold) must, 10 ms must not (a hop to a thread
# and back costs more than it saves for work that short).
threads_after() {
    ex_start "cpu$1" "$B/06-coroutines" --quiet --cpu-ms "$1" --delay-ms 0
    ex_post "$PORT" exchange_sync 1 -o /dev/null
    sed -n 's/^Threads:[[:space:]]*//p' "/proc/$PID/status"
    ex_stop "$PID"
}
at50=$(threads_after 50)
at10=$(threads_after 10)
msg="GET / during a sync request's 1000 ms of CPU work (no --offload) took $ms ms (want under 400: the loop stays free); after a bill of 50 ms 06 had ${at50:-?} threads (want more than 1: offloaded), after one of 10 ms ${at10:-?} (want 1: on the loop)"
ex_verdict "$msg" [ "$ms" -lt 400 -a "${at50:-0}" -gt 1 -a "${at10:-0}" = 1 ]
