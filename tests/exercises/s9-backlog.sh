#!/usr/bin/env bash
# s9-backlog: the listen backlog is 8 connections, not 4096: while 01 is busy, the kernel queues 9 (backlog + 1)
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --quiet --delay-ms 2500
ex_post "$PORT" exchange_sync 1 -o /dev/null & # holds 01 for 2.5 s
EX_PIDS+=($!)
sleep 0.2
for i in $(seq 20); do
    curl -s -m 4 -o /dev/null "http://127.0.0.1:$PORT/" &
    EX_PIDS+=($!)
done
# The listening socket's line in /proc/net/tcp (state 0A): its rx_queue
# is the number of completed connections waiting for accept(). Linux
# queues one more than the backlog; the most seen over 1.5 s is the
# queue's length (the clients start at their own pace on a busy machine).
hexport=$(printf '%04X' "$PORT")
most=0
for i in $(seq 15); do
    q=$(awk -v p=":$hexport" '$2 ~ p"$" && $4 == "0A" { split($5, a, ":"); print a[2]; exit }' /proc/net/tcp)
    q=$((16#${q:-0}))
    [ "$q" -gt "$most" ] && most=$q
    sleep 0.1
done
msg="with 01 busy and 20 clients connecting, at most $most connections waited in the accept queue (want 9: a backlog of 8, plus the one Linux adds)"
ex_verdict "$msg" [ "$most" = 9 ]
