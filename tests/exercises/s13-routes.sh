#!/usr/bin/env bash
# s13-routes: examples/fastapi_routes.py's /blocking route keeps its time.sleep and its async def, yet no longer stops the event loop
# needs: loadgen
. "$(dirname "$0")/lib.sh"
# The python3 that has FastAPI and uvicorn (Debian's, once installed).
py=""
for p in python3 /usr/bin/python3; do
    "$p" -c 'import fastapi, uvicorn' 2>/dev/null && { py=$p; break; }
done
[ -n "$py" ] || ex_skip "needs FastAPI and uvicorn (tools/deps.sh --optional)"
ex_start app "$py" examples/fastapi_routes.py
# Five concurrent requests of 300 ms: on a loop that keeps running they
# all end after about 0.3 s; on a blocked one, after 0.3 to 1.5 s. And
# none may end sooner than its 300 ms: a wait that is not awaited is no
# wait at all.
out=$(timeout 20 "$B/loadgen" -c 5 -n 5 --url "http://127.0.0.1:$PORT/blocking?ms=300" 2>&1)
ok=$(sed -n 's/.*requests *5 in .*: \([0-9]*\) ok.*/\1/p' <<<"$out")
lat=$(sed -n 's/^ *latency *min \([0-9.]*\) .* max \([0-9.]*\) ms.*/\1 \2/p' <<<"$out")
msg="5 concurrent GET /blocking?ms=300: ${ok:-0} of 5 answered, latency min and max ${lat:-?} ms (want 5, each from 280 to 800 ms: the five waits overlap, none skipped)"
ex_verdict "$msg" awk -v ok="${ok:-0}" -v t="$lat" 'BEGIN { if (ok != 5 || split(t, a, " ") != 2) exit 1
    exit !(a[1] >= 280 && a[2] <= 800) }'
