#!/usr/bin/env bash
# s11-backoff: a failed callback is retried after 0.1 s (doubling), not 0.5 s
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
# Port 1 on the loopback: nobody listens, every try is refused at once.
ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --callback-deadline-ms 1000 --main-service http://127.0.0.1:1
ex_post "$PORT" exchange_async 1 -o /dev/null
sleep 1.5
tries=$(grep -c 'try [0-9]* failed' "$EX_DIR/s.log")
msg="a callback to a main service that refuses, retried for 1 s: $tries tries failed (want at least 4; waits of 0.5 s doubling give 2 or 3)"
ex_verdict "$msg" [ "$tries" -ge 4 ]
