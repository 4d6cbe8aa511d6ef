#!/usr/bin/env bash
# s4-stack: 03's connection threads get the default 8 MiB stack instead of 256 KiB
# needs: 03-threads
. "$(dirname "$0")/lib.sh"
ex_start s "$B/03-threads" --quiet --delay-ms 1500
pids=()
for i in $(seq 10); do
    ex_post "$PORT" exchange_sync 1 -o /dev/null &
    pids+=($!)
done
sleep 0.6
# A thread's stack is one mapping of its size (the guard page apart).
big=0
while read -r range _; do
    kb=$(( (0x${range#*-} - 0x${range%-*}) / 1024 ))
    [ "$kb" -ge 8000 ] && [ "$kb" -le 8200 ] && big=$((big + 1))
done <"/proc/$PID/maps"
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$PID/status")
wait "${pids[@]}"
msg="03 with 10 slow requests: $threads threads, $big mappings of about 8 MiB (want 10: one stack each, and 11 threads)"
ex_verdict "$msg" [ "$big" = 10 -a "$threads" = 11 ]
