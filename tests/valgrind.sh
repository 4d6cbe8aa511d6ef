#!/usr/bin/env bash
# valgrind memcheck spot check of one stage (make valgrind).
#
#   tests/valgrind.sh [BUILD_DIR [STAGE]]     defaults: build 03-threads
#
# Runs the stage under memcheck with the main service beside it (not under
# valgrind), sends the lecture example with curl (GET /, the sync route, the
# async route and its callback, bad requests: broken JSON, a bad field, a
# malformed request line, an unknown path), then SIGTERM. Fails on any
# memcheck error, any definite leak, a wrong answer, or an exit status other
# than 0. "Still reachable" memory (libcurl's and OpenSSL's global caches)
# is not a leak and is not reported.
set -euo pipefail

B=${1:-build}
STAGE=${2:-03-threads}
TIMEOUT_S=60

command -v valgrind >/dev/null || { echo "valgrind: not installed" \
    "(apt-get install valgrind)" >&2; exit 1; }
command -v curl >/dev/null || { echo "valgrind: curl not installed" >&2; exit 1; }
for bin in "$B/$STAGE" "$B/main-service"; do
    [ -x "$bin" ] || { echo "valgrind: $bin is not built (make)" >&2; exit 1; }
done

work=$(mktemp -d)
stage_pid=""
main_pid=""
cleanup() {
    for pid in $stage_pid $main_pid; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "valgrind: FAILED: $*" >&2
    for f in vg.log stage.log main.log; do
        [ -s "$work/$f" ] && { echo "--- $f (last 60 lines)" >&2; tail -n 60 "$work/$f" >&2; }
    done
    exit 1
}

# Prints the port that process $2 announces in file $1; fails after
# TIMEOUT_S (valgrind starts slowly).
wait_port() { "$(dirname "$0")/../tools/announced-port" "$1" "$2" "$TIMEOUT_S"; }

export SECRET_TOKEN=valgrind-token
"$B/main-service" --port 0 >"$work/main.out" 2>"$work/main.log" &
main_pid=$!
main_port=$(wait_port "$work/main.out" "$main_pid") || fail "main-service did not start"

valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --error-exitcode=1 \
    --log-file="$work/vg.log" \
    "$B/$STAGE" --port 0 --delay-ms 200 \
    --main-service "http://127.0.0.1:$main_port" \
    >"$work/stage.out" 2>"$work/stage.log" &
stage_pid=$!
port=$(wait_port "$work/stage.out" "$stage_pid") || fail "$STAGE did not start under valgrind"
echo "valgrind: $STAGE under memcheck on port $port, main service on $main_port"

# request METHOD PATH BODY WANT_STATUS [MUST_CONTAIN]
request() {
    local method=$1 path=$2 body=$3 want=$4 contains=${5:-} code
    local args=(-s -o "$work/body" -w '%{http_code}' --max-time "$TIMEOUT_S"
                -X "$method" -H 'Content-Type: application/json')
    [ -n "$body" ] && args+=(--data-binary "$body")
    code=$(curl "${args[@]}" "http://127.0.0.1:$port$path") || true
    [ "$code" = "$want" ] || fail "$method $path: HTTP $code, wanted $want: $(cat "$work/body" 2>/dev/null)"
    if [ -n "$contains" ] && ! grep -qF -- "$contains" "$work/body"; then
        fail "$method $path: answer lacks $contains: $(cat "$work/body")"
    fi
    echo "valgrind: $method $path -> $code"
}

lecture='{"request_id": "sync_test", "exchange_rate": 75.5, "bills": [
 {"denomination_id": 1, "denomination": 10.0, "count": 5},
 {"denomination_id": 2, "denomination": 20.0, "count": 3}]}'
request GET / "" 200 "\"stage\":\"$STAGE\""
request POST /api/exchange_sync "$lecture" 200 '"total_rub":8305.0'
request POST /api/exchange_async "${lecture/sync_test/vg_async}" 200 '{"status":"ok"}'
request POST /api/exchange_sync '{"request_id": "broken", ' 400 '"detail"'
request POST /api/exchange_sync "${lecture/\"count\": 3/\"count\": -3}" 400 'count'
request GET /no/such/path "" 404 '"detail"'

# A request line curl would never send, over bash's /dev/tcp.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'NOT A REQUEST LINE\r\n\r\n' >&3
raw=$(timeout "$TIMEOUT_S" head -c 12 <&3 || true)
exec 3<&-
case "$raw" in
    "HTTP/1.1 400") echo "valgrind: malformed request line -> 400" ;;
    *) fail "malformed request line: got '$raw', wanted HTTP/1.1 400" ;;
esac

# The async job's callback reaches the main service.
code=$(curl -s -o "$work/body" -w '%{http_code}' --max-time "$TIMEOUT_S" \
    "http://127.0.0.1:$main_port/api/exchange_result/vg_async?wait_ms=30000") || true
[ "$code" = 200 ] || fail "callback of vg_async never arrived (HTTP $code)"
echo "valgrind: callback delivered: $(cat "$work/body")"

kill -TERM "$stage_pid"
rc=0
wait "$stage_pid" || rc=$?
stage_pid=""
grep -q 'ERROR SUMMARY: 0 errors' "$work/vg.log" || fail "memcheck found errors"
if grep -qE 'definitely lost: [1-9]' "$work/vg.log"; then
    fail "memcheck found definite leaks"
fi
[ "$rc" -eq 0 ] || fail "$STAGE exited with $rc after SIGTERM"
kill -TERM "$main_pid"
wait "$main_pid" || true
main_pid=""
grep -E 'ERROR SUMMARY|definitely lost|All heap blocks' "$work/vg.log" |
    sed 's/^==[0-9]*== /valgrind: /'
echo "valgrind: $STAGE clean"
