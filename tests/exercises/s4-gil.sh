#!/usr/bin/env bash
# s4-gil: 06's worker pool has one thread (CO_DEFAULT_WORKERS 1): two threads in all after offloaded work
# needs: 06-coroutines loadgen
. "$(dirname "$0")/lib.sh"
ex_start s "$B/06-coroutines" --quiet --delay-ms 0 --cpu-ms 20 --offload
out=$(timeout 20 "$B/loadgen" -c 4 -n 8 --url "http://127.0.0.1:$PORT/api/exchange_sync" --bills 1 --quiet 2>&1)
ok=$(sed -n 's/.*requests *8 in .*: \([0-9]*\) ok.*/\1/p' <<<"$out")
threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$PID/status")
msg="06 --offload answered ${ok:-no} of 8 requests with CPU work and has ${threads:-no} threads in all (want 8, and 2: the loop's and one worker; 1 would mean nothing was offloaded)"
ex_verdict "$msg" [ "${ok:-0}" = 8 -a "${threads:-0}" = 2 ]
