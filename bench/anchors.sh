# Sourced by bench/bench.sh (scenario "anchors"): issue 14's table. The
# event-driven stages beside two anchors measured in the same run, the
# rounds interleaved (every target once per round, medians over rounds) so
# the machine's drift hits all alike:
#
#   GET /, 64 and 1000 keep-alive connections   against nginx, 1 worker,
#                                               serving the same JSON
#                                               (bench/nginx.conf)
#   POST /api/exchange_sync, delay 0, 64 conns  against the seed's FastAPI
#                                               service on uvicorn (uvloop,
#                                               httptools): bench/exchange_app.py
#   BENCH_MANY (10,000) concurrent 1 s requests wall time and peak RSS
#
# An anchor that is not installed is reported in the table, never fatal
# (make deps installs them: nginx-light, python3-fastapi, python3-uvicorn,
# python3-uvloop, python3-httptools). The client is loadgen --engine raw on
# one thread, as wrk -t1 (bench/README.md says why it may stand in for wrk).
# Uses bench.sh's helpers: say, note, row, table_start, csv_*, lg, jget,
# num, start_stage, stop_stage, client, and its PIDS, TMP, LG, QUICK.

# The goals (issue 14), printed beside the figures: a ratio to its anchor.
ANCHOR_GOAL_GET=1.0   # 04 (64 connections) and 05, 06 (64 and 1000)
ANCHOR_GOAL_SYNC=30   # 04, 05, 06 against FastAPI
ANCHOR_GOAL_WALL=1.3  # seconds for the many-clients row (05, 06)

# anchor_free_port: a port nothing listens on now (nginx cannot be asked
# for port 0 and then tell us which it took).
anchor_free_port() {
    local py=python3
    command -v python3 >/dev/null 2>&1 || py=/usr/bin/python3
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# anchor_wait_port PORT PID: true once something answers GET / on PORT.
anchor_wait_port() {
    local _
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        "$LG" --quiet -n 1 -c 1 --timeout-ms 500 "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# anchor_nginx: starts nginx (1 worker) in a prefix under $TMP; sets
# NGINX_PORT and NGINX_PID, or ANCHOR_NGINX_WHY.
anchor_nginx() {
    NGINX_PORT= NGINX_PID= ANCHOR_NGINX_WHY=
    local bin
    bin=$(command -v nginx 2>/dev/null || true)
    [ -z "$bin" ] && [ -x /usr/sbin/nginx ] && bin=/usr/sbin/nginx
    if [ -z "$bin" ]; then
        ANCHOR_NGINX_WHY="nginx not installed (make deps: nginx-light)"
        return 1
    fi
    local conf=$BENCH_DIR/nginx.conf
    local prefix=$TMP/nginx
    mkdir -p "$prefix/tmp" || return 1
    NGINX_PORT=$(anchor_free_port)
    sed "s/@PORT@/$NGINX_PORT/" "$conf" >"$prefix/nginx.conf" || return 1
    # -e: the log before the config is read, which would be /var/log/nginx.
    "$bin" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        >"$prefix/out" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    if ! anchor_wait_port "$NGINX_PORT" "$NGINX_PID"; then
        ANCHOR_NGINX_WHY="nginx did not start: $(tail -1 "$prefix/error.log" 2>/dev/null)"
        kill -TERM "$NGINX_PID" 2>/dev/null
        NGINX_PID=
        return 1
    fi
}

# anchor_fastapi: starts bench/exchange_app.py under uvicorn (uvloop,
# httptools, delay 0); sets FASTAPI_PORT and FASTAPI_PID, or
# ANCHOR_FASTAPI_WHY. Debian's python3 first: its packages are the ones
# make deps installs.
anchor_fastapi() {
    FASTAPI_PORT= FASTAPI_PID= ANCHOR_FASTAPI_WHY=
    local py= p
    for p in /usr/bin/python3 python3; do
        if "$p" -c 'import fastapi, uvicorn, uvloop, httptools' >/dev/null 2>&1; then
            py=$p
            break
        fi
    done
    if [ -z "$py" ]; then
        ANCHOR_FASTAPI_WHY="fastapi/uvicorn/uvloop/httptools not importable (make deps: python3-fastapi python3-uvicorn python3-uvloop python3-httptools)"
        return 1
    fi
    local dir=$BENCH_DIR
    FASTAPI_PORT=$(anchor_free_port)
    EXCHANGE_DELAY_MS=0 MAIN_SERVICE_URL=http://127.0.0.1:9 \
        "$py" -m uvicorn exchange_app:app --app-dir "$dir" --host 127.0.0.1 \
        --port "$FASTAPI_PORT" --loop uvloop --http httptools \
        --no-access-log --log-level warning >"$TMP/fastapi.out" 2>&1 &
    FASTAPI_PID=$!
    PIDS+=("$FASTAPI_PID")
    if ! anchor_wait_port "$FASTAPI_PORT" "$FASTAPI_PID"; then
        ANCHOR_FASTAPI_WHY="uvicorn did not start: $(tail -1 "$TMP/fastapi.out" 2>/dev/null)"
        kill -TERM "$FASTAPI_PID" 2>/dev/null
        FASTAPI_PID=
        return 1
    fi
}

# anchor_stop PID: SIGTERM, then waits (nginx and uvicorn stop at once).
anchor_stop() {
    [ -z "$1" ] && return
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# anchor_median FILE: the median of the numbers in FILE (one a line).
anchor_median() {
    sort -g "$1" 2>/dev/null | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# anchor_rate NAME WORK PORT ARGS...: one loadgen run; appends its req/s to
# $TMP/anchor-WORK-NAME.
anchor_rate() {
    local name=$1 work=$2 port=$3
    shift 3
    local f=$TMP/anchor-$work-$name.json
    lg "$f" --engine raw -t 1 -d "$ANCHOR_S" --timeout-ms 10000 "$@" \
        "http://127.0.0.1:$port$ANCHOR_PATH"
    jget "$f" rps >>"$TMP/anchor-$work-$name"
    echo >>"$TMP/anchor-$work-$name"
    local bad
    bad=$(failures "$f")
    [ "$bad" != none ] && note "  $name $work: $bad"
}

# anchor_cell WORK NAME ANCHOR_MEDIAN: "146k (1.01x)", "-" when not run.
anchor_cell() {
    local m
    [ -s "$TMP/anchor-$1-$2" ] || { printf -- '-'; return; }
    m=$(anchor_median "$TMP/anchor-$1-$2")
    if [ "$(num %.0f "$3")" != 0 ]; then
        printf '%s (%sx)' "$(num %.1fk "$m / 1000")" "$(num %.2f "$m / $3")"
    else
        printf '%s' "$(num %.1fk "$m / 1000")"
    fi
}

bench_anchors() {
    local rounds=3 many=${BENCH_MANY:-10000}
    ANCHOR_S=3
    if [ -n "$QUICK" ]; then rounds=1 ANCHOR_S=1 many=${BENCH_MANY:-2000}; fi
    case "$many" in '' | *[!0-9]*) note "BENCH_MANY must be a number"; return ;; esac
    local stages=() s
    for s in 04-select 05-epoll-callbacks 06-coroutines; do
        selected "$s" "${BENCH_STAGES:-}" && [ -x "$B/$s" ] && stages+=("$s")
    done
    note "anchors: nginx and FastAPI beside ${stages[*]:-no stage}, $rounds round(s) of ${ANCHOR_S} s, then $many clients"
    say "## Anchors: the event-driven stages beside nginx and FastAPI (issue 14)"
    say ""
    say "Same run, rounds interleaved (each target once per round), medians of $rounds; loadgen --engine raw, one thread (as wrk -t1), keep-alive, ${ANCHOR_S} s a run. Anchors: nginx with 1 worker serving the same GET / JSON (bench/nginx.conf); the seed's FastAPI service (bench/exchange_app.py) on uvicorn with uvloop and httptools. In brackets: the rate over the anchor's; the goal is in the last column."
    say ""
    anchor_nginx || note "  $ANCHOR_NGINX_WHY"
    anchor_fastapi || note "  $ANCHOR_FASTAPI_WHY"
    # The stages, each on its own port with delay 0, all up for the rounds.
    local -A port pid
    for s in "${stages[@]}"; do
        if start_stage "$s" --delay-ms 0; then
            port[$s]=$SPORT pid[$s]=$SPID
        else
            note "  $s: $START_ERR"
        fi
    done
    local r
    for ((r = 1; r <= rounds; r++)); do
        note "  round $r/$rounds"
        ANCHOR_PATH=/
        [ -n "$NGINX_PID" ] && anchor_rate nginx get64 "$NGINX_PORT" -c 64
        for s in "${!port[@]}"; do anchor_rate "$s" get64 "${port[$s]}" -c 64; done
        [ -n "$NGINX_PID" ] && anchor_rate nginx get1000 "$NGINX_PORT" -c 1000
        for s in "${!port[@]}"; do
            [ "$s" = 04-select ] && continue # 1000 is near its FD_SETSIZE
            anchor_rate "$s" get1000 "${port[$s]}" -c 1000
        done
        ANCHOR_PATH=/api/exchange_sync
        [ -n "$FASTAPI_PID" ] && anchor_rate fastapi sync "$FASTAPI_PORT" -c 64 --bills 1
        for s in "${!port[@]}"; do anchor_rate "$s" sync "${port[$s]}" -c 64 --bills 1; done
    done
    for s in "${!port[@]}"; do SPID=${pid[$s]}; stop_stage; [ -n "$STOP_NOTE" ] && note "  $s: $STOP_NOTE"; done
    anchor_stop "$NGINX_PID"
    anchor_stop "$FASTAPI_PID"

    local ng fa
    ng=$(anchor_median "$TMP/anchor-get64-nginx")
    table_start "work|anchor|04-select|05-epoll-callbacks|06-coroutines|goal"
    csv_start anchors.csv "work,anchor_rps,04_rps,05_rps,06_rps"
    local a=${ANCHOR_NGINX_WHY:-nginx 1 worker $(num %.1fk "$ng / 1000")}
    row "GET /, 64 connections|$a|$(anchor_cell get64 04-select "$ng")|$(anchor_cell get64 05-epoll-callbacks "$ng")|$(anchor_cell get64 06-coroutines "$ng")|${ANCHOR_GOAL_GET}x nginx or better"
    csv_row anchors.csv "get64,$ng,$(anchor_median "$TMP/anchor-get64-04-select"),$(anchor_median "$TMP/anchor-get64-05-epoll-callbacks"),$(anchor_median "$TMP/anchor-get64-06-coroutines")"
    ng=$(anchor_median "$TMP/anchor-get1000-nginx")
    a=${ANCHOR_NGINX_WHY:-nginx 1 worker $(num %.1fk "$ng / 1000")}
    row "GET /, 1000 connections|$a|-|$(anchor_cell get1000 05-epoll-callbacks "$ng")|$(anchor_cell get1000 06-coroutines "$ng")|05, 06: ${ANCHOR_GOAL_GET}x nginx or better"
    csv_row anchors.csv "get1000,$ng,,$(anchor_median "$TMP/anchor-get1000-05-epoll-callbacks"),$(anchor_median "$TMP/anchor-get1000-06-coroutines")"
    fa=$(anchor_median "$TMP/anchor-sync-fastapi")
    a=${ANCHOR_FASTAPI_WHY:-FastAPI on uvicorn $(num %.1fk "$fa / 1000")}
    row "POST /api/exchange_sync, delay 0, 64 connections|$a|$(anchor_cell sync 04-select "$fa")|$(anchor_cell sync 05-epoll-callbacks "$fa")|$(anchor_cell sync 06-coroutines "$fa")|${ANCHOR_GOAL_SYNC}x FastAPI or better"
    csv_row anchors.csv "sync,$fa,$(anchor_median "$TMP/anchor-sync-04-select"),$(anchor_median "$TMP/anchor-sync-05-epoll-callbacks"),$(anchor_median "$TMP/anchor-sync-06-coroutines")"
    anchor_many "$many"
    say ""
}

# anchor_many N: N concurrent sync requests, one bill of 1 s, a connection
# each, against 05 and 06: wall time of the whole burst and peak RSS.
anchor_many() {
    local n=$1 s cells=() f
    for s in 04-select 05-epoll-callbacks 06-coroutines; do
        if [ "$s" = 04-select ] || ! selected "$s" "${BENCH_STAGES:-}" || [ ! -x "$B/$s" ]; then
            cells+=(-)
            continue
        fi
        note "  $s: $n concurrent 1 s requests"
        if ! start_stage "$s" --delay-ms 1000; then cells+=("$START_ERR"); continue; fi
        f=$TMP/anchor-many-$s.json
        # Two client threads: one alone spends about 0.35 s of CPU opening
        # 10,000 loopback connections (its connect() runs both ends of each
        # handshake), so the last request would leave a third of a second
        # after the first and the row would time the client.
        lg "$f" --engine raw -t 2 -n "$n" -c "$n" --bills 1 --timeout-ms 10000 \
            --watch-pid "$SPID" "http://127.0.0.1:$SPORT/api/exchange_sync"
        stop_stage
        local bad
        bad=$(failures "$f")
        cells+=("$(jget "$f" ok) ok in $(num %.2f "$(jget "$f" wall_s)") s, peak $(mb "$(jget "$f" server_rss_peak_kb)") MB$([ "$bad" != none ] && printf '; failed: %s' "$bad")${STOP_NOTE:+ ($STOP_NOTE)}")
        csv_row anchors.csv "many$n-$s,,$(jget "$f" ok),$(jget "$f" wall_s),$(jget "$f" server_rss_peak_kb)"
    done
    row "$n concurrent 1 s requests, a connection each|-|${cells[0]}|${cells[1]}|${cells[2]}|within ${ANCHOR_GOAL_WALL} s; peak RSS 05 <= 32 MiB, 06 <= 64 MiB"
}
