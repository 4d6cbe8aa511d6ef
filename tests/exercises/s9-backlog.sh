#!/usr/bin/env bash
# s9-backlog: the listen backlog is 8 connections, not 4096: while 01 is busy, the kernel queues at most 9
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --quiet --delay-ms 1500
ex_post "$PORT" exchange_sync 1 -o /dev/null & # holds 01 for 1.5 s
EX_PIDS+=($!)
sleep 0.2
for i in $(seq 20); do
    curl -s -m 3 -o /dev/null "http://127.0.0.1:$PORT/" &
    EX_PIDS+=($!)
done
sleep 0.5
# The listening socket's line in /proc/net/tcp (state 0A): its rx_queue
# is the number of completed connections waiting for accept().
hexport=$(printf '%04X' "$PORT")
q=$(awk -v p=":$hexport" '$2 ~ p"$" && $4 == "0A" { split($5, a, ":"); print a[2]; exit }' /proc/net/tcp)
q=$((16#${q:-0}))
msg="with 01 busy and 20 clients connecting, $q connections waited in the accept queue (want 1 to 9: a backlog of 8)"
ex_verdict "$msg" [ "$q" -ge 1 -a "$q" -le 9 ]
