#!/usr/bin/env bash
# The instructor demo: every built stage side by side. For each stage, five
# concurrent sync requests of two bills each (300 ms a bill), drawn as a
# timeline, then one async request whose callback is shown arriving at the
# main service. Cleans up everything it started, also on Ctrl-C.
# Usage: tools/demo.sh [BUILD_DIR]     (make demo passes build/)
set -u
B=${1:-build}
DELAY=300
N=5
pids=()
tmp=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

# start NAME ARGS...: runs a server on a free port, sets $port.
start() {
    local name=$1; shift
    "$B/$name" --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
    pids+=($!)
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on http:\/\/.*:\([0-9]*\)$/\1/p' "$tmp/$name.out")
        [ -n "$port" ] && return 0
        sleep 0.05
    done
    echo "demo: $name did not start; its log:"; cat "$tmp/$name.log"; exit 1
}

body='{"request_id":"demo","exchange_rate":75.5,"bills":[{"denomination_id":1,"denomination":10.0,"count":5},{"denomination_id":2,"denomination":20.0,"count":3}]}'

export SECRET_TOKEN=demo-token
start main-service
main_port=$port
echo "main service on port $main_port"
echo

summary="$tmp/summary"
for bin in "$B"/0[1-6]-*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    start "$name" --delay-ms $DELAY --main-service "http://127.0.0.1:$main_port"
    stage_pid=${pids[-1]}
    echo "== $name: $N concurrent sync requests, 2 bills x $DELAY ms each"
    t0=$(date +%s.%N)
    for i in $(seq $N); do
        ( s=$(date +%s.%N)
          curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
               -d "$body" "http://127.0.0.1:$port/api/exchange_sync"
          e=$(date +%s.%N)
          echo "$i $s $e" >>"$tmp/$name.times" ) &
    done
    wait $(jobs -p | grep -v "^$stage_pid$" | grep -v "^${pids[0]}$") 2>/dev/null
    # Draw each request's start..end on a shared axis (one column = 100 ms).
    sort -n "$tmp/$name.times" | awk -v t0="$t0" '
        { s = int(($2 - t0) * 10); e = int(($3 - t0) * 10); bar = "";
          for (c = 0; c < e; c++) bar = bar (c < s ? " " : "#");
          printf "  req %d |%-40s| %.2f s\n", $1, bar, $3 - t0;
          if ($3 - t0 > wall) wall = $3 - t0 }
        END { printf "  wall %.2f s (ideal %.2f s)\n", wall, 0.6 }' | tee "$tmp/$name.chart"
    wall=$(tail -1 "$tmp/$name.chart" | awk '{print $2}')

    echo "  async request: answer, then the callback at the main service"
    curl -s -X POST -H 'Content-Type: application/json' \
         -d "${body/\"demo\"/\"demo-$name\"}" "http://127.0.0.1:$port/api/exchange_async"
    echo
    got=$(curl -s "http://127.0.0.1:$main_port/api/exchange_result/demo-$name?wait_ms=5000")
    echo "  main service has: $got"
    echo "$name $wall" >>"$summary"
    kill "$stage_pid" 2>/dev/null; wait "$stage_pid" 2>/dev/null
    echo
done

echo "== summary: $N concurrent sync requests of 2 bills at $DELAY ms"
printf '  %-22s %s\n' stage "wall time"
while read -r name wall; do printf '  %-22s %s s\n' "$name" "$wall"; done <"$summary"
echo "  (all overlapping: $((2 * DELAY)) ms; one at a time: $((N * 2 * DELAY)) ms)"
