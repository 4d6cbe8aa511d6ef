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
fds=$(cat /proc/"$PID"/task/*/comm | sed -n 's/^conn \([0-9]*\)$/\1/p' | sort -n | tr '\n' ' ')
# Each name's number must be one of the process's open sockets (a thread
# named after a counter or after the listening socket points nowhere).
sockets=0
for fd in $fds; do
    case $(readlink "/proc/$PID/fd/$fd") in socket:*) sockets=$((sockets + 1)) ;; esac
done
distinct=$(tr ' ' '\n' <<<"$fds" | grep . | sort -u | wc -l)
wait "${pids[@]}"
msg="03 with 3 slow requests has threads named '$names'; the conn numbers '$fds' are $sockets open sockets, $distinct distinct (want 3 threads named 'conn FD', each FD a different connected socket)"
ex_verdict "$msg" [ "$sockets" = 3 -a "$distinct" = 3 ]
