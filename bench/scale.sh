# scale.sh: the "bytes" scenario of bench/bench.sh, sourced by it: many
# clients at once, and what each one costs the server. It uses bench.sh's
# helpers (start_stage, stop_stage, lg, jget, failures, say, row, note,
# num, spread, table_start, csv_start, csv_row, selected) and its
# variables (B, TMP, QUICK, ROUNDS).
#
# For each size (1000, 10,000, 100,000 clients) and each event-loop stage
# (05, 06, and the rows of BENCH_SCALE_EXTRA), in interleaved rounds: the
# stage is started with a 1 s delay, every client opens a connection and
# sends one sync request (one bill) at once, and loadgen records when each
# was answered while it samples the server's memory (VmRSS summed over its
# processes). A client's cost is the growth of that memory over the run,
# divided by the clients: (peak - idle) / clients. The kernel's memory for
# each socket (buffers, struct tcp_sock) is not in RSS and not counted.
#
# One process may hold only so many descriptors (the hard RLIMIT_NOFILE,
# 20,000 on the lecture's machine), one per client, on both sides: past
# about three quarters of that, the server runs with --workers N and
# loadgen with --procs N. And one source address reaches one server port
# through the ephemeral port range only (net.ipv4.ip_local_port_range,
# about 28,000 ports), and connect() searches it for a free port: Linux
# tries the even half first (odd ports are left for bind), and past it
# each connect searches longer (20,000 connections from one address cost
# loadgen 4.6 s of CPU, from two 0.97 s; 2026-12-07). So past a third of
# the range, loadgen spreads its connections over --sources loopback
# addresses. No sysctl is changed.
#
#   BENCH_SCALE_SIZES="1000 10000 100000"  the sizes (quick: 1000 5000)
#   BENCH_SCALE_EXTRA="06-coroutines --stack shared"  more rows, each a
#                     stage and its arguments; several are separated by
#                     commas (that one is the default; empty: none)
#
# make scale runs it alone, short (20,000 clients: two workers), and fails
# unless every request was answered (the CI form of the 100,000 run).
# shellcheck shell=bash

# scale_plan N: how to hold N clients here. Sets SC_WORKERS (server
# processes), SC_PROCS (loadgen processes) and SC_SOURCES (source
# addresses).
scale_plan() {
    local n=$1 hard ports lo hi
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768 hi=60999; }
    ports=$((hi - lo + 1))
    local per=$((hard * 3 / 4))
    SC_WORKERS=$(((n + per - 1) / per))
    SC_PROCS=$SC_WORKERS
    # Two loadgen processes at least: opening connections is CPU work on
    # the client's side (both ends of a loopback handshake), spread it.
    [ "$SC_PROCS" -lt 2 ] && SC_PROCS=2
    SC_SOURCES=$(((n + ports / 3 - 1) / (ports / 3)))
}

# scale_once STAGE N KEY ARGS...: one run of N clients against STAGE
# started with ARGS; appends its figures to $TMP/scale-KEY-*. Returns 1
# when not every request was answered.
scale_once() {
    local s=$1 n=$2 key=$3 f
    shift 3
    scale_plan "$n"
    local workers=()
    [ "$SC_WORKERS" -gt 1 ] && workers=(--workers "$SC_WORKERS")
    if ! start_stage "$s" --delay-ms 1000 "${workers[@]}" "$@"; then
        note "  $s: $START_ERR"
        echo "$START_ERR" >"$TMP/scale-$key-why"
        return 1
    fi
    f=$TMP/scale-$key.json
    lg "$f" --engine raw -n "$n" -c "$n" --procs "$SC_PROCS" \
        --sources "$SC_SOURCES" --bills 1 --timeout-ms 60000 \
        --watch-pid "$SPID" "http://127.0.0.1:$SPORT/api/exchange_sync"
    stop_stage
    local ok idle peak
    ok=$(jget "$f" ok) idle=$(jget "$f" server_rss_start_kb) peak=$(jget "$f" server_rss_peak_kb)
    echo "$ok" >>"$TMP/scale-$key-ok"
    jget "$f" wall_s >>"$TMP/scale-$key-wall"
    echo >>"$TMP/scale-$key-wall"
    num %.3f "$(jget "$f" max_ms) / 1000" >>"$TMP/scale-$key-slowest"
    echo >>"$TMP/scale-$key-slowest"
    jget "$f" max_in_flight >>"$TMP/scale-$key-inflight"
    echo >>"$TMP/scale-$key-inflight"
    echo "$idle" >>"$TMP/scale-$key-idle"
    echo "$peak" >>"$TMP/scale-$key-peak"
    num %.0f "($peak - $idle) * 1024 / $n" >>"$TMP/scale-$key-bytes"
    echo >>"$TMP/scale-$key-bytes"
    echo "$SC_WORKERS" >"$TMP/scale-$key-workers"
    echo "$SC_PROCS x $SC_SOURCES" >"$TMP/scale-$key-client"
    local bad
    bad=$(failures "$f")
    [ "$bad" != none ] && note "  $s, $n clients: $bad${STOP_NOTE:+ ($STOP_NOTE)}"
    [ -n "$STOP_NOTE" ] && echo "$STOP_NOTE" >"$TMP/scale-$key-why"
    [ "$ok" = "$n" ] && [ -z "$STOP_NOTE" ]
}

bench_scale() {
    local sizes=${BENCH_SCALE_SIZES:-1000 10000 100000}
    [ -n "$QUICK" ] && sizes=${BENCH_SCALE_SIZES:-1000 5000}
    local rows=() s spec
    for s in 05-epoll-callbacks 06-coroutines; do
        selected "$s" "${BENCH_STAGES:-}" && [ -x "$B/$s" ] && rows+=("$s")
    done
    local IFS_SAVE=$IFS
    IFS=,
    for spec in ${BENCH_SCALE_EXTRA-06-coroutines --stack shared}; do
        spec=${spec# }
        [ -n "$spec" ] && selected "${spec%% *}" "${BENCH_STAGES:-}" &&
            [ -x "$B/${spec%% *}" ] && rows+=("$spec")
    done
    IFS=$IFS_SAVE
    note "bytes per client: ${rows[*]:-no stage} with $sizes clients, $ROUNDS round(s)"
    say "## Bytes per client: $sizes clients at once, each with one 1 s request"
    say ""
    say "Every client opens a connection and sends one sync request (one bill of 1 s) at once. The server's memory is VmRSS summed over its processes (its workers), sampled every 50 ms: idle before the run, and its peak; a client costs (peak - idle) / clients (the kernel's socket memory is not in RSS). Past three quarters of $(ulimit -Hn) descriptors a process, the server runs --workers N and loadgen --procs N; past a third of the ephemeral ports, loadgen uses --sources N loopback addresses (connect() searches longer for a free port as the range fills). 'wall' is from the first request sent to the last answered (it includes the time to open every connection); 'slowest' is the longest one request waited, sent to answered; 'in flight' is the most requests sent and not yet answered at one moment. Medians of $ROUNDS interleaved rounds, the range in brackets."
    say ""
    local r n key i words
    for ((r = 1; r <= ROUNDS; r++)); do
        note "  round $r/$ROUNDS"
        for n in $sizes; do
            for i in "${!rows[@]}"; do
                key=$n-$i
                read -r -a words <<<"${rows[$i]}" # a stage, its arguments
                scale_once "${words[0]}" "$n" "$key" "${words[@]:1}" ||
                    echo 1 >"$TMP/scale-$key-failed"
            done
        done
    done
    table_start "stage|clients|workers|loadgen procs x sources|answered (fewest)|wall (s)|slowest (s)|in flight|RSS idle (MB)|RSS peak (MB)|bytes per client"
    csv_start bytes-per-client.csv "stage,clients,workers,answered_min,wall_s,slowest_s,in_flight,rss_idle_kb,rss_peak_kb,bytes_per_client"
    for n in $sizes; do
        for i in "${!rows[@]}"; do
            key=$n-$i
            if [ ! -s "$TMP/scale-$key-ok" ]; then
                row "${rows[$i]}|$n|-|-|$(cat "$TMP/scale-$key-why" 2>/dev/null)||||||"
                SCALE_FAILED=1
                continue
            fi
            local fewest
            fewest=$(sort -n "$TMP/scale-$key-ok" | head -1)
            [ -e "$TMP/scale-$key-failed" ] && SCALE_FAILED=1
            row "${rows[$i]}|$n|$(cat "$TMP/scale-$key-workers")|$(cat "$TMP/scale-$key-client")|$fewest$([ "$fewest" != "$n" ] && printf ' (not all)')$([ -e "$TMP/scale-$key-why" ] && printf '; %s' "$(cat "$TMP/scale-$key-why")")|$(spread "$TMP/scale-$key-wall" %.2f)|$(spread "$TMP/scale-$key-slowest" %.2f)|$(spread "$TMP/scale-$key-inflight" %.0f)|$(spread "$TMP/scale-$key-idle" %.1f 0.0009765625)|$(spread "$TMP/scale-$key-peak" %.1f 0.0009765625)|$(spread "$TMP/scale-$key-bytes" %.0f)"
            csv_row bytes-per-client.csv "${rows[$i]},$n,$(cat "$TMP/scale-$key-workers"),$fewest,$(median "$TMP/scale-$key-wall"),$(median "$TMP/scale-$key-slowest"),$(median "$TMP/scale-$key-inflight"),$(median "$TMP/scale-$key-idle"),$(median "$TMP/scale-$key-peak"),$(median "$TMP/scale-$key-bytes")"
        done
    done
    say ""
}
