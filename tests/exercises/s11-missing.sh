#!/usr/bin/env bash
# s11-missing: a callback with no token at all gets 401, a wrong token still 403, the right one 200
# needs: main-service
. "$(dirname "$0")/lib.sh"
ex_start m "$B/main-service" --quiet
put() {
    curl -s -m 5 -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$PORT/api/exchange_result" \
        -H 'Content-Type: application/json' -d "{$1\"request_id\":\"tok\",\"breakdown\":[]}"
}
none=$(put '')
wrong=$(put '"token":"WRONG",')
right=$(put '"token":"MY_SECRET_TOKEN",')
msg="no token answered $none (want 401), wrong $wrong (want 403), right $right (want 200)"
[ "$none" = 401 ] && [ "$wrong" = 403 ] && [ "$right" = 200 ] && ex_pass "$msg"
ex_fail "$msg"
