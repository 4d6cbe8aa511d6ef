#!/usr/bin/env bash
# s10-poll: the main service holds a long poll for at most a minute
# (MS_MAX_WAIT_MS 60000): wait_ms=60001 gets 400, wait_ms=60000 is taken.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s10-poll "$B/main-service"
curl -s -o /dev/null -X PUT "http://127.0.0.1:$port/api/exchange_result" -H 'Content-Type: application/json' \
    -d '{"token":"MY_SECRET_TOKEN","request_id":"cap","breakdown":[]}'
ok=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/exchange_result/cap?wait_ms=60000")
over=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/exchange_result/cap?wait_ms=60001")
if [ "$ok" = 200 ] && [ "$over" = 400 ]; then
    echo "s10-poll: wait_ms=60000 -> 200, wait_ms=60001 -> 400: done"
    exit 0
fi
echo "s10-poll: looked for wait_ms=60000 -> 200 and wait_ms=60001 -> 400; got $ok and $over"
exit 1
