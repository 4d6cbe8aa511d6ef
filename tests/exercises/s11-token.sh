#!/usr/bin/env bash
# s11-token: a callback answered 403 logs that the two sides' SECRET_TOKEN differ
# needs: 05-epoll-callbacks main-service
. "$(dirname "$0")/lib.sh"
SECRET_TOKEN=theirs ex_start m "$B/main-service" --quiet
main=$PORT
SECRET_TOKEN=ours ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --main-service "http://127.0.0.1:$main"
ex_post "$PORT" exchange_async 1 -o /dev/null
sleep 0.5
line=$(grep 'HTTP 403' "$EX_DIR/s.log" | head -1)
msg="a callback with the wrong token was logged as '${line:-nothing}' (want the line to name SECRET_TOKEN)"
ex_verdict "$msg" grep -q 'HTTP 403.*SECRET_TOKEN' "$EX_DIR/s.log"
