#!/usr/bin/env bash
# s11-token: a callback with no token at all gets 401, a wrong token
# still 403, the right one 200.
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
[ -n "$port" ] || { echo "s11-token: main-service did not start"; exit 1; }
put() {
    curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$port/api/exchange_result" \
        -H 'Content-Type: application/json' -d "{$1\"request_id\":\"tok\",\"breakdown\":[]}"
}
none=$(put '')
wrong=$(put '"token":"WRONG",')
right=$(put '"token":"MY_SECRET_TOKEN",')
if [ "$none" = 401 ] && [ "$wrong" = 403 ] && [ "$right" = 200 ]; then
    echo "s11-token: no token -> 401, wrong -> 403, right -> 200: done"
    exit 0
fi
echo "s11-token: looked for no token -> 401, wrong -> 403, right -> 200; got $none, $wrong, $right"
exit 1
