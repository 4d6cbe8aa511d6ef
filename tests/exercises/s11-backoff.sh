#!/usr/bin/env bash
# s11-backoff: a failed callback is retried after 0.1 s (doubling), not 0.5 s
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
# Port 1 on the loopback: nobody listens, every try is refused at once.
ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --callback-deadline-ms 1000 --main-service http://127.0.0.1:1
ex_post "$PORT" exchange_async 1 -o /dev/null
sleep 1.5
# Waits drawn from the upper half of 100, 200, 400 ms: tries near 0, 0.08,
# 0.23 and 0.53 s, the fifth at the 1 s deadline; 4 "failed" lines. From
# 0.5 s: 2. With no wait, or a wait that does not double: ten or more.
tries=$(grep -c 'try [0-9]* failed' "$EX_DIR/s.log")
msg="a callback to a main service that refuses, retried for 1 s: $tries tries failed before the last (want 4 to 6: waits of 0.1 s doubling; 0.5 s gives 2, no doubling ten or more)"
ex_verdict "$msg" [ "$tries" -ge 4 -a "$tries" -le 6 ]
