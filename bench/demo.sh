#!/usr/bin/env bash
# The instructor demo (make demo): every built stage, one after another, in
# well under a minute. For each stage: five concurrent sync requests of two
# bills (300 ms a bill) drawn as a timeline by build/loadgen, the server's
# own log lines for the first bill (who handled it, and when), then one
# async request whose callback is shown arriving at the main service. A
# summary table closes. Stages that are not built are listed as such.
# Every server and loadgen run writes --trace into DEMO_OUT (default
# BUILD_DIR/demo), and build/trace turns those into one page, demo.html
# (plus demo.json for Perfetto, and PNGs where gnuplot is installed);
# the page's path is printed at the end. 06 also runs once with
# --blocking-bug, to show every lane frozen. Then, where FastAPI and
# uvicorn are installed (tools/deps.sh --optional), the seed's app
# (bench/exchange_app.py) serves the same requests on asyncio's loop,
# traced the same way, and asyncio.html draws it beside 06 on one time
# axis; where they are not, one line says so and asyncio.html draws 06
# alone.
# Everything it starts is stopped again, also on Ctrl-C.
#
# Usage: bench/demo.sh [BUILD_DIR]          (make demo passes build/)
# Environment: DEMO_PAUSE=1 waits for Enter between stages (for a lecture);
# DEMO_OUT=DIR puts the traces and the page there.
set -u

B=${1:-build}
LG=$B/loadgen
OUTDIR=${DEMO_OUT:-$B/demo}
DELAY=300 N=5 BILLS=2
ONE_MS=$((DELAY * BILLS))          # one request: its bills one after another
STAGES=(01-blocking 02-fork 03-threads 04-select 05-epoll-callbacks 06-coroutines)

for tool in loadgen main-service trace; do
    if [ ! -x "$B/$tool" ]; then
        echo "demo: $B/$tool is missing; build first (make, or make demo)" >&2
        exit 1
    fi
done

if [ -t 1 ]; then
    BOLD=$(printf '\033[1m') DIM=$(printf '\033[2m') OFF=$(printf '\033[0m')
else
    BOLD= DIM= OFF=
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/demo.XXXXXX")
mkdir -p "$OUTDIR" || exit 1
rm -f "$OUTDIR"/*.trace
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 30); do
        local alive=
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL -- "-$p" "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
# The trap may run while loadgen's output goes to a file: it writes to the
# script's own stdout, saved as fd 3.
exec 3>&1
trap 'echo >&3; echo "demo: interrupted; stopping what it started" >&3; exit 130' INT TERM

SETSID=
command -v setsid >/dev/null 2>&1 && SETSID=setsid
STARTS=0

# start NAME ARGS...: a server on a free port, its log kept; sets PID, PORT.
start() {
    local name=$1
    shift
    STARTS=$((STARTS + 1))
    OUT=$TMP/$STARTS.out LOG=$TMP/$STARTS.log
    SECRET_TOKEN=demo-token $SETSID "$B/$name" --port 0 "$@" >"$OUT" 2>"$LOG" &
    PID=$!
    PIDS+=("$PID")
    PORT=$("$(dirname "$0")/../tools/announced-port" "$OUT" "$PID") && return 0
    echo "  $name did not start; the end of its log:"
    tail -3 "$LOG" | sed 's/^/    /'
    return 1
}

stop() {
    kill -TERM "$PID" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$PID" "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
}

heading() { printf '\n%s%s%s\n' "$BOLD" "$*" "$OFF"; }
secs() { awk "BEGIN { printf \"%.2f\", ($1) }"; }

model_of() {
    case $1 in
    01-*) echo "one connection at a time" ;;
    02-*) echo "a process per connection" ;;
    03-*) echo "a thread per connection" ;;
    04-*) echo "one thread, select() + state machines" ;;
    05-*) echo "one thread, an epoll loop of callbacks" ;;
    06-*) echo "one thread, coroutines over epoll" ;;
    esac
}

# What to look at, one sentence per stage.
notice_of() {
    case $1 in
    01-*) echo "a staircase: each request waits for the one before it, so the last one takes $N x $(secs "$ONE_MS / 1000") s. The log shows one pid doing everything in turn." ;;
    02-*) echo "a wall: all five wait at the same time, each in its own process (a different pid per request in the log)." ;;
    03-*) echo "a wall: one thread per connection (a different tid per request), all in one process." ;;
    04-*) echo "a wall from a single thread: select() watches every socket and the waits are deadlines in a timer heap." ;;
    05-*) echo "a wall from a single thread: the epoll loop calls back whatever is ready; nothing ever sleeps." ;;
    06-*) echo "a wall from a single thread: each connection is a coroutine (co N in the log) written as plain sequential code." ;;
    esac
}

body_for() {
    printf '{"request_id":"%s","exchange_rate":75.5,"bills":[%s]}' "$1" \
        '{"denomination_id":1,"denomination":10.0,"count":5},{"denomination_id":2,"denomination":20.0,"count":3}'
}

printf '%sprogressive-servers: one endpoint, six concurrency models%s\n' "$BOLD" "$OFF"
echo "For each stage: $N concurrent POST /api/exchange_sync, $BILLS bills each, ${DELAY} ms per bill."
echo "One request needs $(secs "$ONE_MS / 1000") s; served together the five take $(secs "$ONE_MS / 1000") s, one at a time $(secs "$N * $ONE_MS / 1000") s."

if ! start main-service; then exit 1; fi
MAIN_PID=$PID MAIN_PORT=$PORT
echo "The main service (it receives the async callbacks) listens on port $MAIN_PORT."

SUMMARY=()
first=1
for s in "${STAGES[@]}"; do
    if [ ! -x "$B/$s" ]; then
        heading "== $s: not built (skipped)"
        SUMMARY+=("$s|$(model_of "$s")|-|-|-|not built")
        continue
    fi
    if [ "${DEMO_PAUSE:-0}" = 1 ] && [ -t 0 ] && [ -z "$first" ]; then
        printf '%s(Enter for %s)%s' "$DIM" "$s" "$OFF"
        read -r _
    fi
    first=
    heading "== $s: $(model_of "$s")"
    TRACE=$OUTDIR/$s.trace
    if ! start "$s" --delay-ms "$DELAY" --main-service "http://127.0.0.1:$MAIN_PORT" --trace "$TRACE"; then
        SUMMARY+=("$s|$(model_of "$s")|-|-|-|did not start")
        continue
    fi

    # The five sync requests, drawn.
    # One time axis for every stage (five requests one at a time), so a
    # wall is visibly short next to 01's staircase.
    "$LG" --quiet --timeline --span "$(secs "$N * $ONE_MS / 1000")" \
        -c "$N" -n "$N" --timeout-ms 20000 --trace "$TRACE" \
        --body "$(body_for "demo-sync")" \
        "http://127.0.0.1:$PORT/api/exchange_sync" >"$TMP/run.txt" 2>&1
    sed 's/^/  /' "$TMP/run.txt"
    wall=$(sed -n 's/^  requests  [0-9]* in \([0-9.]*\) s:.*/\1/p' "$TMP/run.txt")
    echo
    echo "  ${BOLD}Notice${OFF}: $(notice_of "$s")"
    echo "  The server's log, first bill of each request (when, and who handled it):"
    grep 'bill 1:' "$LOG" | head -"$N" | sed "s/ $s / /; s/^+ */    +/"

    # One async request: an answer at once, the result later by callback.
    id="demo-$s"
    echo "  Async: POST /api/exchange_async (id $id), then a long poll at the main service:"
    "$LG" --print -n 1 --timeout-ms 10000 --body "$(body_for "$id")" --trace "$TRACE" \
        "http://127.0.0.1:$PORT/api/exchange_async" 2>&1 | sed 's/^/    answer:   /'
    cb=$("$LG" --print -n 1 --timeout-ms 10000 \
        "http://127.0.0.1:$MAIN_PORT/api/exchange_result/$id?wait_ms=8000" 2>&1)
    echo "$cb" | sed 's/^/    callback: /'
    cb_ms=$(printf '%s' "$cb" | sed -n 's/^HTTP 200 in \([0-9]*\) ms:.*/\1/p')
    stop
    if [ -n "$wall" ]; then
        SUMMARY+=("$s|$(model_of "$s")|$(secs "$wall")|$(secs "$ONE_MS / 1000")|$(awk -v w="$wall" -v i="$ONE_MS" 'BEGIN { printf "%.1f", w * 1000 / i }')|${cb_ms:+$(secs "$cb_ms / 1000") s}")
    else
        SUMMARY+=("$s|$(model_of "$s")|-|-|-|the sync run failed")
    fi
done

# 06's deliberate bug: a bill waits in nanosleep, and with it every
# coroutine. Only its picture is kept (the timeline above shows the wait).
if [ -x "$B/06-coroutines" ]; then
    heading "== 06-coroutines --blocking-bug: one sleeping coroutine freezes the thread"
    TRACE=$OUTDIR/06-coroutines-blocking-bug.trace
    if start 06-coroutines --delay-ms "$DELAY" --blocking-bug --trace "$TRACE"; then
        "$LG" --quiet --timeline --span "$(secs "$N * $ONE_MS / 1000")" \
            -c "$N" -n "$N" --timeout-ms 20000 --trace "$TRACE" \
            --body "$(body_for "demo-bug")" \
            "http://127.0.0.1:$PORT/api/exchange_sync" 2>&1 | sed 's/^/  /'
        stop
    fi
fi
# asyncio beside C: the seed's FastAPI app on uvicorn with asyncio's own
# loop (uvloop's is not Python's to look into), traced (EXCHANGE_TRACE),
# the same five sync requests and one async. Debian's python3 first: its
# packages are the ones tools/deps.sh --optional installs.
PY=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import fastapi, uvicorn' >/dev/null 2>&1; then
        PY=$p
        break
    fi
done
if [ -z "$PY" ]; then
    heading "== FastAPI: not installed (tools/deps.sh --optional installs it); asyncio.html draws 06 alone"
    SUMMARY+=("fastapi|the seed's app on asyncio|-|-|-|not installed")
else
    heading "== fastapi: the seed's app (bench/exchange_app.py) on uvicorn's asyncio loop"
    TRACE=$OUTDIR/fastapi.trace
    FPORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    EXCHANGE_DELAY_MS=$DELAY EXCHANGE_TRACE=$TRACE SECRET_TOKEN=demo-token \
        MAIN_SERVICE_URL="http://127.0.0.1:$MAIN_PORT" $SETSID "$PY" -m uvicorn \
        exchange_app:app --app-dir "$(dirname "$0")" --loop asyncio \
        --host 127.0.0.1 --port "$FPORT" --no-access-log >"$TMP/fastapi.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    if "$(dirname "$0")/../tools/wait-port" "$FPORT" 15 >/dev/null 2>&1; then
        "$LG" --quiet --timeline --span "$(secs "$N * $ONE_MS / 1000")" \
            -c "$N" -n "$N" --timeout-ms 20000 --trace "$TRACE" \
            --body "$(body_for "demo-sync")" \
            "http://127.0.0.1:$FPORT/api/exchange_sync" >"$TMP/run.txt" 2>&1
        sed 's/^/  /' "$TMP/run.txt"
        wall=$(sed -n 's/^  requests  [0-9]* in \([0-9.]*\) s:.*/\1/p' "$TMP/run.txt")
        echo
        echo "  ${BOLD}Notice${OFF}: a wall again: the sync route is a plain def, which FastAPI runs on its thread pool (a thread per request, each in time.sleep), while asyncio's loop waits."
        id="demo-fastapi"
        echo "  Async: POST /api/exchange_async (id $id), then a long poll at the main service:"
        "$LG" --print -n 1 --timeout-ms 10000 --body "$(body_for "$id")" --trace "$TRACE" \
            "http://127.0.0.1:$FPORT/api/exchange_async" 2>&1 | sed 's/^/    answer:   /'
        cb=$("$LG" --print -n 1 --timeout-ms 10000 \
            "http://127.0.0.1:$MAIN_PORT/api/exchange_result/$id?wait_ms=8000" 2>&1)
        echo "$cb" | sed 's/^/    callback: /'
        cb_ms=$(printf '%s' "$cb" | sed -n 's/^HTTP 200 in \([0-9]*\) ms:.*/\1/p')
        SUMMARY+=("fastapi|the seed's app on asyncio|$(secs "${wall:-0}")|$(secs "$ONE_MS / 1000")|$(awk -v w="${wall:-0}" -v i="$ONE_MS" 'BEGIN { printf "%.1f", w * 1000 / i }')|${cb_ms:+$(secs "$cb_ms / 1000") s}")
    else
        echo "  uvicorn did not start; the end of its log:"
        tail -3 "$TMP/fastapi.log" | sed 's/^/    /'
        SUMMARY+=("fastapi|the seed's app on asyncio|-|-|-|did not start")
    fi
    stop
fi

PID=$MAIN_PID
stop

heading "== Summary: $N concurrent requests x $BILLS bills x ${DELAY} ms"
fmt='  %-19s %-38s %8s %9s %8s  %s\n'
printf "$fmt" stage model "wall (s)" "ideal (s)" "x ideal" "long poll held"
for line in "${SUMMARY[@]}"; do
    IFS='|' read -r a b c d e f <<<"$line"
    printf "$fmt" "$a" "$b" "$c" "$d" "$e" "$f"
done
echo
echo "  Ideal: the five requests overlap, so the wall time is one request, $(secs "$ONE_MS / 1000") s."
echo "  The async callback waits for both bills: one after another in 01 and 02"
echo "  ($(secs "$ONE_MS / 1000") s), together where the model allows it (03-06, $(secs "$DELAY / 1000") s). The long poll"
echo "  that waits for it starts just after the answer, so it is held a bit less."

# The pictures: one panel per trace, in the order the stages ran, with
# FastAPI's beside 06's; and asyncio.html, the two alone on one axis.
traces=() beside=()
for s in "${STAGES[@]}" fastapi 06-coroutines-blocking-bug; do
    [ -s "$OUTDIR/$s.trace" ] && traces+=("$OUTDIR/$s.trace")
done
for s in 06-coroutines fastapi; do
    [ -s "$OUTDIR/$s.trace" ] && beside+=("$OUTDIR/$s.trace")
done
if [ ${#traces[@]} -gt 0 ]; then
    heading "== Pictures"
    title="progressive-servers demo, $(date -u '+%Y-%m-%d %H:%M UTC'): $N x POST /api/exchange_sync, $BILLS bills x ${DELAY} ms, then one async"
    if "$B/trace" --title "$title" --html "$OUTDIR/demo.html" \
            --json "$OUTDIR/demo.json" "${traces[@]}"; then
        command -v gnuplot >/dev/null 2>&1 &&
            "$B/trace" --png "$OUTDIR" "${traces[@]}" &&
            echo "  PNGs (gnuplot): $OUTDIR/*.png"
        echo "  Perfetto / chrome://tracing: $OUTDIR/demo.json"
        echo "  The page (open it in a browser, offline): $OUTDIR/demo.html"
    fi
    if [ ${#beside[@]} -gt 0 ] &&
        "$B/trace" --title "asyncio beside C, $(date -u '+%Y-%m-%d %H:%M UTC'): 06-coroutines and the seed's FastAPI app, the same requests" \
            --html "$OUTDIR/asyncio.html" "${beside[@]}"; then
        echo "  06 and FastAPI on one time axis: $OUTDIR/asyncio.html"
    fi
fi
