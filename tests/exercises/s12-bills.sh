#!/usr/bin/env bash
# s12-bills: a request may carry at most 50 bills (EXCHANGE_MAX_BILLS):
# 51 bills get 400, 50 still get 200.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s12-bills "$B/01-blocking" --delay-ms 0
status_for() {
    local bills=
    for i in $(seq "$1"); do bills="$bills${bills:+,}{\"denomination_id\":$i,\"denomination\":1,\"count\":1}"; done
    curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/exchange_sync" \
        -H 'Content-Type: application/json' \
        -d "{\"request_id\":\"b$1\",\"exchange_rate\":2,\"bills\":[$bills]}"
}
s50=$(status_for 50)
s51=$(status_for 51)
if [ "$s50" = 200 ] && [ "$s51" = 400 ]; then
    echo "s12-bills: 50 bills -> 200, 51 bills -> 400: done"
    exit 0
fi
echo "s12-bills: looked for 50 bills -> 200 and 51 bills -> 400; got $s50 and $s51"
exit 1
