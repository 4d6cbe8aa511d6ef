#!/usr/bin/env bash
# s10-poll: the main service holds a long poll for at most a minute
# (MS_MAX_WAIT_MS 60000): wait_ms=60001 gets 400, wait_ms=60000 is taken.
B=${B:-build}
out=$(mktemp)
"$B/main-service" --quiet --port 0 >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
port=
for _ in $(seq 50); do
    port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "s10-poll: main-service did not start"; exit 1; }
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
