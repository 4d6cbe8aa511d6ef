#!/usr/bin/env bash
# s8-offload: 06 sends CPU work of 50 ms or more to its worker pool even without --offload
# needs: 06-coroutines
. "$(dirname "$0")/lib.sh"
ex_start s "$B/06-coroutines" --quiet --cpu-ms 1000 --delay-ms 10
ex_post "$PORT" exchange_sync 1 -o /dev/null &
sleep 0.15
ms=$(ex_time_ms curl -s -m 5 "http://127.0.0.1:$PORT/")
wait $!
msg="GET / during a sync request's 1000 ms of CPU work (--cpu-ms 1000, no --offload) took $ms ms (want under 400: the loop stays free)"
ex_verdict "$msg" [ "$ms" -lt 400 ]
