#!/usr/bin/env bash
# s11-missing: a callback with no token at all gets 401 with its challenge (WWW-Authenticate: Bearer), a wrong token still 403, the right one 200 (in the body or as Bearer)
# needs: main-service
. "$(dirname "$0")/lib.sh"
ex_start m "$B/main-service" --quiet
# put TOKEN_MEMBER [CURL ARGS...]: the status, then the challenge, if any.
put() {
    local member=$1
    shift
    curl -s -m 5 -o /dev/null -D "$EX_DIR/head" -w '%{http_code}' -X PUT \
        "http://127.0.0.1:$PORT/api/exchange_result" -H 'Content-Type: application/json' \
        -d "{$member\"request_id\":\"tok\",\"breakdown\":[]}" "$@"
    echo " $(tr -d '\r' <"$EX_DIR/head" | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *\([^ ]*\).*/\1/p')"
}
read -r none none_challenge <<<"$(put '')"
read -r wrong _ <<<"$(put '"token":"WRONG",')"
read -r right _ <<<"$(put '"token":"MY_SECRET_TOKEN",')"
read -r bearer _ <<<"$(put '' -H 'Authorization: Bearer MY_SECRET_TOKEN')"
read -r bearer_wrong _ <<<"$(put '' -H 'Authorization: Bearer WRONG')"
msg="no token answered $none with challenge '${none_challenge:-none}' (want 401 with 'Bearer': RFC 9110 requires one), wrong $wrong (want 403), right $right (want 200); as Authorization: Bearer, right $bearer (want 200), wrong $bearer_wrong (want 403)"
[ "$none" = 401 ] && [ "$none_challenge" = Bearer ] && [ "$wrong" = 403 ] && [ "$right" = 200 ] &&
    [ "$bearer" = 200 ] && [ "$bearer_wrong" = 403 ] && ex_pass "$msg"
ex_fail "$msg"
