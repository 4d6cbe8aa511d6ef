#!/usr/bin/env bash
# s4-names: each of 03's connection threads is named "conn FD", so ps -L and top -H say what it does
# needs: 03-threads
. "$(dirname "$0")/lib.sh"
ex_start s "$B/03-threads" --quiet --delay-ms 1000
pids=()
for i in 1 2 3; do
    ex_post "$PORT" exchange_sync 1 -o /dev/null &
    pids+=($!)
done
sleep 0.4
names=$(cat /proc/"$PID"/task/*/comm | sort | tr '\n' ',')
n=$(cat /proc/"$PID"/task/*/comm | grep -c '^conn [0-9]*$')
wait "${pids[@]}"
msg="03 with 3 slow requests has threads named '$names' (want 3 named 'conn FD')"
ex_verdict "$msg" [ "$n" -ge 3 ]
