#!/usr/bin/env bash
# What the outbox costs (LECTURE section 11): async requests per second
# through the whole pipeline (the ok, the job, its callback to the main
# service, the end record), with the jobs in memory, with --outbox (one
# write() before each ok) and with --outbox-sync (and an fdatasync the ok
# waits for), for a stage of each way of waiting: 03 blocks its thread,
# 05 hands the flush to a thread and waits in its loop, 06 awaits it on
# its worker pool.
#
# The three modes are interleaved, ROUNDS times (default 5), so that a
# machine busy with something else slows them alike; each cell is the
# median with the range. Each run: loadgen --engine raw, 32 connections,
# SECONDS (default 3) s, one bill, --delay-ms 0, a fresh main service and
# a fresh outbox file in a temporary folder (TMPDIR: the file system
# measured).
#
# Usage: bench/outbox_cost.sh [BUILD_DIR]; ROUNDS, SECONDS, STAGES_COST
# (default "03-threads 05-epoll-callbacks 06-coroutines") to change.
set -u
cd "$(dirname "$0")/.."
B=${1:-build}
ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_COST:-3}
STAGES_COST=${STAGES_COST:-"03-threads 05-epoll-callbacks 06-coroutines"}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/outbox-cost.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

start() { # start NAME CMD...: sets PORT and PID
    local name=$1
    shift
    "$@" --port 0 >"$TMP/$name.out" 2>/dev/null &
    PID=$!
    PIDS+=("$PID")
    PORT=$(tools/announced-port "$TMP/$name.out" "$PID" 10) ||
        { echo "outbox_cost: $name did not start" >&2; exit 1; }
}

# run STAGE MODE: one measurement; prints requests/s.
run() {
    local stage=$1 mode=$2 ms ms_pid opts=()
    start ms "$B/main-service" --quiet
    ms=$PORT ms_pid=$PID
    rm -f "$TMP/outbox.jsonl"
    case $mode in
    written) opts=(--outbox "$TMP/outbox.jsonl") ;;
    synced) opts=(--outbox "$TMP/outbox.jsonl" --outbox-sync) ;;
    esac
    start "$stage" "$B/$stage" --quiet --delay-ms 0 --max-jobs 100000 \
        --max-bills 1000000 --main-service "http://127.0.0.1:$ms" "${opts[@]}"
    "$B/loadgen" --engine raw -c 32 -d "$SECS" --json --quiet \
        --url "http://127.0.0.1:$PORT/api/exchange_async" --bills 1 |
        sed -n 's/.*"rps": *\([0-9.]*\).*/\1/p'
    kill -TERM "$PID" "$ms_pid"
    wait "$PID" "$ms_pid" 2>/dev/null
}

# median and range of the numbers on stdin: "median (min-max)"
summary() {
    sort -n | awk '{v[NR] = $1} END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "%.0f (%.0f-%.0f)", m, v[1], v[NR] }'
}

echo "async requests/s, median (min-max) of $ROUNDS interleaved runs of ${SECS} s, 32 connections, delay 0"
echo "run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(uname -m)); outbox in ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'))"
echo
echo '| stage | in memory | --outbox | --outbox-sync |'
echo '|---|---|---|---|'
for stage in $STAGES_COST; do
    : >"$TMP/memory" >"$TMP/written" >"$TMP/synced"
    for ((r = 0; r < ROUNDS; r++)); do
        for mode in memory written synced; do
            run "$stage" "$mode" >>"$TMP/$mode"
        done
    done
    printf '| %s | %s | %s | %s |\n' "$stage" "$(summary <"$TMP/memory")" \
        "$(summary <"$TMP/written")" "$(summary <"$TMP/synced")"
done
