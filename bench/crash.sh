#!/usr/bin/env bash
# The kill -9 run of LECTURE section 11: what an async "ok" is worth when
# the server dies in the middle of its work.
#
# For each server: start it beside the main service, post N async jobs
# (N/2, then kill -9 right after the last "ok", then a restart, then the
# other N/2), wait for the results to settle, and count what the main
# service stored. A job answered "ok" and never stored is lost; one
# stored twice would be a duplicate (the main service's idempotency key
# makes a repeat a no-op, and its log counts the repeats).
#
#   servers   03-threads, 05-epoll-callbacks, 06-coroutines, each with its
#             jobs in memory and with --outbox; and the seed's FastAPI
#             service (bench/exchange_app.py: BackgroundTasks) under
#             uvicorn, when python3 can import fastapi, uvicorn and httpx
#             (tools/deps.sh --optional installs them)
#
# Usage: bench/crash.sh [BUILD_DIR] [N]     (defaults: build 200)
# Prints one markdown table. Each bill waits CRASH_DELAY_MS (300) ms, so
# the jobs posted in the last 300 ms before the kill are in flight.
set -u
cd "$(dirname "$0")/.."
B=${1:-build}
N=${2:-200}
DELAY=${CRASH_DELAY_MS:-300}
export SECRET_TOKEN=crash-token
TMP=$(mktemp -d "${TMPDIR:-/tmp}/crash.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD with --port 0 (its stdout to a file), sets
# PORT and PID.
start() {
    local name=$1
    shift
    "$@" --port 0 >"$TMP/$name.out" 2>>"$TMP/$name.log" &
    PID=$!
    PIDS+=("$PID")
    PORT=$(tools/announced-port "$TMP/$name.out" "$PID" 10) ||
        { echo "crash: $name did not start: $(tail -2 "$TMP/$name.log")" >&2; exit 1; }
}

# A free port for uvicorn, which prints no "listening on" line of ours.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_fastapi() {
    PORT=$(free_port)
    EXCHANGE_DELAY_MS=$DELAY MAIN_SERVICE_URL=http://127.0.0.1:$MS \
        /usr/bin/python3 -m uvicorn exchange_app:app --app-dir bench \
        --host 127.0.0.1 --port "$PORT" --no-access-log \
        --log-level warning >>"$TMP/fastapi.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        sleep 0.05
    done
    echo "crash: uvicorn did not start: $(tail -2 "$TMP/fastapi.log")" >&2
    exit 1
}

# post RUN FROM TO: jobs RUN-FROM .. RUN-(TO-1); counts the oks in OKS.
post() {
    local run=$1 i
    for ((i = $2; i < $3; i++)); do
        curl -s -m 10 -X POST "http://127.0.0.1:$PORT/api/exchange_async" \
            -H 'Content-Type: application/json' \
            -d "{\"request_id\":\"$run-$i\",\"exchange_rate\":2,\"bills\":[{\"denomination_id\":1,\"denomination\":1.5,\"count\":2}]}" |
            grep -q '"status":"ok"' && OKS=$((OKS + 1))
    done
}

# stored RUN: how many of RUN's jobs the main service holds.
stored() {
    curl -s "http://127.0.0.1:$MS/api/exchange_result" |
        tr ',' '\n' | grep -c "\"$1-"
}

# launch KIND: starts STAGE:mem (jobs in memory), STAGE:box (--outbox) or
# fastapi, for the run named RUN.
launch() {
    local stage=${1%%:*}
    case $1 in
    fastapi) start_fastapi ;;
    *:mem) start "$stage" "$B/$stage" --quiet --delay-ms "$DELAY"                --main-service "http://127.0.0.1:$MS" ;;
    *:box) start "$stage" "$B/$stage" --quiet --delay-ms "$DELAY"                --main-service "http://127.0.0.1:$MS"                --outbox "$TMP/$stage.jsonl" ;;
    esac
}

# one RUN LABEL KIND: the kill -9 run of one server.
one() {
    local run=$1 label=$2 kind=$3
    OKS=0
    launch "$kind"
    post "$run" 0 $((N / 2))
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null
    launch "$kind"
    post "$run" $((N / 2)) "$N"
    sleep $(((DELAY * 4) / 1000 + 2)) # the bills, a callback, some slack
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null
    local got repeats
    got=$(stored "$run")
    repeats=$(grep -c "result $run-[0-9]* repeated" "$TMP/ms.log")
    printf '| %s | %d | %d | %d | %d |\n' "$label" "$OKS" "$got" \
        $((OKS - got)) "$repeats"
}

start ms "$B/main-service"
MS=$PORT
echo "kill -9 in the middle of $N async jobs ($((N / 2)) posted, kill -9, restart, $((N / 2)) more; each bill ${DELAY} ms)"
echo "run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(uname -m))"
echo
echo '| server | "ok" answers | stored | lost | repeats absorbed by the key |'
echo '|---|---|---|---|---|'
for stage in 03-threads 05-epoll-callbacks 06-coroutines; do
    one "$stage-mem" "$stage, in memory" "$stage:mem"
    one "$stage-box" "$stage, --outbox" "$stage:box"
done
if /usr/bin/python3 -c 'import fastapi, uvicorn, httpx' 2>/dev/null; then
    one fastapi "FastAPI BackgroundTasks (uvicorn)" fastapi
else
    echo "| FastAPI BackgroundTasks | not measured: python3 cannot import fastapi, uvicorn and httpx (tools/deps.sh --optional) | | | |"
fi
