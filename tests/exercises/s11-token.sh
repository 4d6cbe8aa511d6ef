#!/usr/bin/env bash
# s11-token: a callback answered 403 logs, once, that the two sides' SECRET_TOKEN differ (naming neither value)
# needs: 05-epoll-callbacks main-service
. "$(dirname "$0")/lib.sh"
SECRET_TOKEN=theirs-91c2 ex_start m "$B/main-service" --quiet
main=$PORT
SECRET_TOKEN=ours-7f3a ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --main-service "http://127.0.0.1:$main"
ex_post "$PORT" exchange_async 1 -o /dev/null
# A retry would come within the second (the first wait is 0.25 to 0.5 s).
sleep 1.2
line=$(grep 'HTTP 403' "$EX_DIR/s.log" | head -1)
lines=$(grep -c 'HTTP 403' "$EX_DIR/s.log")
leaks=$(grep -c -e 'ours-7f3a' -e 'theirs-91c2' "$EX_DIR/s.log")
names=$(grep -c 'HTTP 403.*SECRET_TOKEN' <<<"$line")
# A stage still retrying would wait out its stop's grace for the callback.
kill -KILL "$PID"
msg="a callback with the wrong token was logged $lines time(s) as '${line:-nothing}' (want once, not retried, naming SECRET_TOKEN); lines with a token's value: $leaks (want 0)"
ex_verdict "$msg" [ "$lines" = 1 -a "$leaks" = 0 -a "$names" = 1 ]
