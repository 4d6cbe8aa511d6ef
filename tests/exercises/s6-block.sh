#!/usr/bin/env bash
# s6-block: 04 sleeps 200 ms in a step that reads a request, and every client waits for it
# needs: 04-select
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet
t0=$(date +%s%N)
for i in 1 2 3; do curl -s -m 5 -o /dev/null "http://127.0.0.1:$PORT/" & done
wait $(jobs -p | grep -v "^$PID$")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
msg="3 concurrent GET / took $ms ms together (want at least 500: 200 ms each, one after another)"
ex_verdict "$msg" [ "$ms" -ge 500 ]
