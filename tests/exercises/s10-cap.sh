#!/usr/bin/env bash
# s10-cap: the main service holds a long poll at most 1 s, whatever wait_ms asks
# needs: main-service
. "$(dirname "$0")/lib.sh"
ex_start m "$B/main-service" --quiet
t0=$(date +%s%N)
code=$(curl -s -m 2.2 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$PORT/api/exchange_result/nobody?wait_ms=5000")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
msg="a long poll with wait_ms=5000 for a result that never comes ended after $ms ms with '$code' (want 404 after 900 to 2000 ms)"
[ "$code" = 404 ] && [ "$ms" -ge 900 ] && [ "$ms" -le 2000 ] && ex_pass "$msg"
ex_fail "$msg"
