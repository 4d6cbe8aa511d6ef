#!/usr/bin/env bash
# s10-cap: the main service holds a long poll at most 1 s, whatever wait_ms asks; a shorter one as asked
# needs: main-service
. "$(dirname "$0")/lib.sh"
ex_start m "$B/main-service" --quiet
# poll WAIT_MS: "CODE MS", a long poll for a result that never comes.
poll() {
    local t0 code
    t0=$(date +%s%N)
    code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$PORT/api/exchange_result/nobody?wait_ms=$1")
    echo "$code $(( ($(date +%s%N) - t0) / 1000000 ))"
}
read -r code ms <<<"$(poll 5000)"
read -r code2 ms2 <<<"$(poll 300)"
msg="a long poll with wait_ms=5000 for a result that never comes ended after $ms ms with '$code' (want 404 after 950 to 1500 ms); one with wait_ms=300 after $ms2 ms with '$code2' (want 404 after 280 to 800 ms: shorter waits are kept)"
[ "$code" = 404 ] && [ "$ms" -ge 950 ] && [ "$ms" -le 1500 ] &&
    [ "$code2" = 404 ] && [ "$ms2" -ge 280 ] && [ "$ms2" -le 800 ] && ex_pass "$msg"
ex_fail "$msg"
