#!/usr/bin/env bash
# s11-token: a callback with no token at all gets 401, a wrong token
# still 403, the right one 200.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s11-token "$B/main-service"
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
