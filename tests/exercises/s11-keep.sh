#!/usr/bin/env bash
# s11-keep: a job given up by its deadline stays in the outbox; one refused (403) does not
# needs: 05-epoll-callbacks main-service
. "$(dirname "$0")/lib.sh"
box=$EX_DIR/outbox.jsonl
post() { # post PORT ID: one async job
    curl -s -m 5 -o /dev/null -X POST "http://127.0.0.1:$1/api/exchange_async" \
        -H 'Content-Type: application/json' -d "{\"request_id\":\"$2\",\"exchange_rate\":2,\"bills\":[{\"denomination_id\":1,\"denomination\":1.5,\"count\":2}]}"
}
wait_for() { # wait_for LOG TEXT: up to 5 s
    for _ in $(seq 100); do grep -q "$2" "$1" && return 0; sleep 0.05; done
    return 1
}
# 1. A main service with another token: the job is refused, 403.
SECRET_TOKEN=theirs ex_start m1 "$B/main-service" --quiet
SECRET_TOKEN=ours ex_start s1 "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --outbox "$box" --main-service "http://127.0.0.1:$PORT"
post "$PORT" keep_refused
wait_for "$EX_DIR/s1.log" 'keep_refused rejected: HTTP 403' || ex_fail "no 403 for keep_refused"
ex_stop "$PID"
# 2. Nobody listens: the job is given up at its deadline.
SECRET_TOKEN=ours ex_start s2 "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --callback-deadline-ms 300 --outbox "$box" --main-service http://127.0.0.1:1
post "$PORT" keep_late
wait_for "$EX_DIR/s2.log" 'keep_late given up after' || ex_fail "keep_late was not given up"
ex_stop "$PID"
# 3. The main service is back, with our token: what does the restart replay?
SECRET_TOKEN=ours ex_start m3 "$B/main-service" --quiet
main=$PORT
SECRET_TOKEN=ours ex_start s3 "$B/05-epoll-callbacks" --quiet --delay-ms 10 \
    --outbox "$box" --main-service "http://127.0.0.1:$main"
late=$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$main/api/exchange_result/keep_late?wait_ms=1500")
refused=$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$main/api/exchange_result/keep_refused")
msg="after a restart: the job given up at its deadline is stored: $late (want 200: kept in the outbox, replayed), the job refused with 403 is stored: $refused (want 404: its end was written, it is not replayed)"
kept_and_ended() { [ "$late" = 200 ] && [ "$refused" = 404 ]; }
ex_verdict "$msg" kept_and_ended
