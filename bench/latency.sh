# latency.sh: the "latency" scenario of bench/bench.sh, sourced by it. It
# uses bench.sh's helpers (start_stage, stop_stage, lg, jget, failures,
# say, row, note, num, spread, table_start, csv_start, csv_row, selected,
# client) and its variables (B, LG, TMP, QUICK, ROUNDS, PIDS, CLIENTS).
#
# Latency measured honestly: loadgen --rate, an open loop. Requests are
# due on a fixed schedule, whatever the server does, and each is timed
# from when it was due, so a server that stalls cannot hide the queue it
# builds (wrk2 measures so). Two tables:
#
#   1. 04, 05 and 06 serving GET / at a fixed rate on 64 connections:
#      p50, p99 and max, in interleaved rounds.
#   2. Coordinated omission, shown: 06 --blocking-bug (section 8's
#      pitfall) stalls its whole loop while one sync request's bill
#      sleeps. A closed-loop client (each connection sends again once
#      answered, as wrk and ab do) and an open-loop one measure GET / at
#      the same time, through the same stall.
# shellcheck shell=bash

LAT_RATE=20000 # requests/s for table 1: a tenth of what 04-06 can serve

bench_latency() {
    local secs=3 stall_ms=500 probe_s=2 rate=1000
    [ -n "$QUICK" ] && secs=1 probe_s=1.5
    local stages=() s r
    for s in 04-select 05-epoll-callbacks 06-coroutines; do
        selected "$s" "${BENCH_STAGES:-}" && [ -x "$B/$s" ] && stages+=("$s")
    done
    note "latency: ${stages[*]:-no stage} at $LAT_RATE requests/s, then a ${stall_ms} ms stall, $ROUNDS round(s)"
    say "## Latency: an open loop, and what a closed loop hides"
    say ""
    say "loadgen --rate R sends on a fixed schedule (an open loop) and times each request from when it was due, not from when a connection was free to send it. Medians of $ROUNDS interleaved rounds, the range in brackets."
    say ""
    say "### GET / at $LAT_RATE requests/s, 64 keep-alive connections, ${secs} s"
    say ""
    local -A port pid
    for s in "${stages[@]}"; do
        if start_stage "$s" --delay-ms 0; then
            port[$s]=$SPORT pid[$s]=$SPID
        else
            note "  $s: $START_ERR"
        fi
    done
    local f
    for ((r = 1; r <= ROUNDS; r++)); do
        note "  round $r/$ROUNDS"
        for s in "${stages[@]}"; do
            [ -n "${port[$s]:-}" ] || continue
            f=$TMP/lat-$s.json
            lg "$f" --engine raw --rate "$LAT_RATE" -c 64 -d "$secs" \
                --timeout-ms 10000 "http://127.0.0.1:${port[$s]}/"
            local k
            for k in p50_ms p99_ms max_ms send_lag_p99_ms rps; do
                jget "$f" "$k" >>"$TMP/lat-$s-$k"
                echo >>"$TMP/lat-$s-$k"
            done
            [ "$(failures "$f")" != none ] && note "  $s: $(failures "$f")"
        done
    done
    for s in "${stages[@]}"; do
        [ -n "${pid[$s]:-}" ] || continue
        SPID=${pid[$s]}
        stop_stage
        [ -n "$STOP_NOTE" ] && note "  $s: $STOP_NOTE"
    done
    table_start "stage|answered/s|p50 (ms)|p99 (ms)|max (ms)|sent late, p99 (ms)"
    csv_start latency.csv "stage,rps,p50_ms,p99_ms,max_ms,send_lag_p99_ms"
    for s in "${stages[@]}"; do
        if [ ! -s "$TMP/lat-$s-p50_ms" ]; then
            row "$s|did not start|||| "
            continue
        fi
        row "$s|$(spread "$TMP/lat-$s-rps" %.0f)|$(spread "$TMP/lat-$s-p50_ms" %.2f)|$(spread "$TMP/lat-$s-p99_ms" %.2f)|$(spread "$TMP/lat-$s-max_ms" %.1f)|$(spread "$TMP/lat-$s-send_lag_p99_ms" %.2f)"
        csv_row latency.csv "$s,$(median "$TMP/lat-$s-rps"),$(median "$TMP/lat-$s-p50_ms"),$(median "$TMP/lat-$s-p99_ms"),$(median "$TMP/lat-$s-max_ms"),$(median "$TMP/lat-$s-send_lag_p99_ms")"
    done
    say ""
    latency_stall "$stall_ms" "$probe_s" "$rate"
}

# latency_stall MS SECONDS RATE: the closed and the open loop through the
# same stall of 06 --blocking-bug.
latency_stall() {
    local stall_ms=$1 probe_s=$2 rate=$3
    say "### A stall of ${stall_ms} ms, measured two ways"
    say ""
    if ! selected 06-coroutines "${BENCH_STAGES:-}" || [ ! -x "$B/06-coroutines" ]; then
        say "06-coroutines is not built (or not selected): skipped."
        say ""
        return
    fi
    say "06-coroutines --blocking-bug --delay-ms $stall_ms: one sync request (one bill) sleeps in nanosleep on the loop's thread, so nothing else is served for ${stall_ms} ms. Two clients measure GET / on 8 connections each for ${probe_s} s, at the same time, through that stall (sent ${probe_s} s / 3 into the run): a closed loop (each connection sends again once answered, as wrk and ab do) and an open loop at $rate requests/s."
    say ""
    if ! start_stage 06-coroutines --delay-ms "$stall_ms" --blocking-bug; then
        say "06-coroutines did not start: $START_ERR"
        say ""
        return
    fi
    local r f k url="http://127.0.0.1:$SPORT"
    for ((r = 1; r <= ROUNDS; r++)); do
        "$LG" --json --quiet --engine raw -c 8 -d "$probe_s" \
            --timeout-ms 10000 "$url/" >"$TMP/stall-closed.json" 2>/dev/null &
        local closed=$!
        "$LG" --json --quiet --engine raw --rate "$rate" -c 8 -d "$probe_s" \
            --timeout-ms 10000 "$url/" >"$TMP/stall-open.json" 2>/dev/null &
        local open=$!
        CLIENTS+=("$closed" "$open")
        sleep "$(num %.2f "$probe_s / 3")"
        lg "$TMP/stall-sync.json" -n 1 --bills 1 --timeout-ms 10000 \
            "$url/api/exchange_sync"
        wait "$closed" "$open"
        for f in closed open; do
            for k in requests p50_ms p90_ms p99_ms max_ms; do
                jget "$TMP/stall-$f.json" "$k" >>"$TMP/stall-$f-$k"
                echo >>"$TMP/stall-$f-$k"
            done
        done
    done
    stop_stage
    [ -n "$STOP_NOTE" ] && note "  06-coroutines --blocking-bug: $STOP_NOTE"
    table_start "client|requests|p50 (ms)|p90 (ms)|p99 (ms)|max (ms)"
    for f in closed open; do
        local label="closed loop, 8 connections"
        [ "$f" = open ] && label="open loop, $rate requests/s on 8 connections"
        row "$label|$(spread "$TMP/stall-$f-requests" %.0f)|$(spread "$TMP/stall-$f-p50_ms" %.2f)|$(spread "$TMP/stall-$f-p90_ms" %.1f)|$(spread "$TMP/stall-$f-p99_ms" %.1f)|$(spread "$TMP/stall-$f-max_ms" %.0f)"
    done
    say ""
    say "What to compare: the max, where both clients meet the same stall, and the percentiles. A closed loop sends nothing while it waits, so only its requests in flight see the stall, a sliver of thousands; the open loop keeps its schedule, so every request due during the stall waits for it, as clients arriving at that rate would. Coordinated omission is what the closed loop leaves out."
    say ""
}
