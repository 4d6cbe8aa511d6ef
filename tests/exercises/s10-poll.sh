#!/usr/bin/env bash
# s10-poll: the main service holds a long poll at most a minute: wait_ms=60001 gets 400, 60000 is taken
# needs: main-service
. "$(dirname "$0")/lib.sh"
ex_start m "$B/main-service" --quiet
curl -s -m 5 -o /dev/null -X PUT "http://127.0.0.1:$PORT/api/exchange_result" -H 'Content-Type: application/json' \
    -d '{"token":"MY_SECRET_TOKEN","request_id":"cap","breakdown":[]}'
ok=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/exchange_result/cap?wait_ms=60000")
over=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/exchange_result/cap?wait_ms=60001")
msg="wait_ms=60000 answered $ok (want 200), wait_ms=60001 answered $over (want 400)"
[ "$ok" = 200 ] && [ "$over" = 400 ] && ex_pass "$msg"
ex_fail "$msg"
