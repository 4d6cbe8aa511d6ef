# Sourced by bench/bench.sh (scenario "anchors"). The event-driven stages
# beside two anchors measured in the same run, the rounds interleaved
# (every target once per round, medians over rounds, the range beside) so
# the machine's drift hits all alike:
#
#   GET /, 64 and 1000 keep-alive connections   against nginx, 1 worker,
#                                               serving the same JSON
#                                               (bench/nginx.conf)
#   POST /api/exchange_sync, delay 0, 64 conns  against the seed's FastAPI
#                                               service on uvicorn (uvloop,
#                                               httptools): bench/exchange_app.py
#
# (Many clients at once, 10,000 to 100,000, are the "bytes" scenario,
# bench/scale.sh.) An anchor that is not installed is reported in the
# table, never fatal (make deps installs them: nginx-light, python3-fastapi,
# python3-uvicorn, python3-uvloop, python3-httptools). The client is
# loadgen --engine raw on one thread, as wrk -t1 (bench/README.md says why
# it may stand in for wrk).
# Uses bench.sh's helpers: say, note, row, table_start, csv_*, lg, jget,
# num, median, spread, start_stage, stop_stage, client, and its PIDS, TMP,
# LG, QUICK, ROUNDS.

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

# anchor_cell WORK NAME ANCHOR_MEDIAN: "146.0k (140.1-150.3), 1.01x":
# the median rate in thousands a second and its range over the rounds,
# then the median over the anchor's median; "-" when not run.
anchor_cell() {
    local m f=$TMP/anchor-$1-$2
    [ -s "$f" ] || { printf -- '-'; return; }
    m=$(median "$f")
    spread "$f" %.1f 0.001 | sed 's/^[0-9.]*/&k/' | tr -d '\n'
    [ "$(num %.0f "$3")" != 0 ] && printf ', %sx' "$(num %.2f "$m / $3")"
}

bench_anchors() {
    local rounds=$ROUNDS
    ANCHOR_S=2
    [ -n "$QUICK" ] && ANCHOR_S=1
    local stages=() s
    for s in 04-select 05-epoll-callbacks 06-coroutines; do
        selected "$s" "${BENCH_STAGES:-}" && [ -x "$B/$s" ] && stages+=("$s")
    done
    note "anchors: nginx and FastAPI beside ${stages[*]:-no stage}, $rounds round(s) of ${ANCHOR_S} s"
    say "## Anchors: the event-driven stages beside nginx and FastAPI"
    say ""
    say "Same run, rounds interleaved (each target once per round): medians of $rounds rounds, the range in brackets, then the median over the anchor's median. loadgen --engine raw, one thread (as wrk -t1), keep-alive, ${ANCHOR_S} s a run. Anchors: nginx with 1 worker serving the same GET / JSON (bench/nginx.conf); the seed's FastAPI service (bench/exchange_app.py) on uvicorn with uvloop and httptools."
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

    local ng fa a
    table_start "work|anchor|04-select|05-epoll-callbacks|06-coroutines"
    csv_start anchors.csv "work,anchor_rps,04_rps,05_rps,06_rps"
    ng=$(median "$TMP/anchor-get64-nginx")
    a=${ANCHOR_NGINX_WHY:-nginx 1 worker $(anchor_cell get64 nginx 0)}
    row "GET /, 64 connections|$a|$(anchor_cell get64 04-select "$ng")|$(anchor_cell get64 05-epoll-callbacks "$ng")|$(anchor_cell get64 06-coroutines "$ng")"
    csv_row anchors.csv "get64,$ng,$(median "$TMP/anchor-get64-04-select"),$(median "$TMP/anchor-get64-05-epoll-callbacks"),$(median "$TMP/anchor-get64-06-coroutines")"
    ng=$(median "$TMP/anchor-get1000-nginx")
    a=${ANCHOR_NGINX_WHY:-nginx 1 worker $(anchor_cell get1000 nginx 0)}
    row "GET /, 1000 connections|$a|-|$(anchor_cell get1000 05-epoll-callbacks "$ng")|$(anchor_cell get1000 06-coroutines "$ng")"
    csv_row anchors.csv "get1000,$ng,,$(median "$TMP/anchor-get1000-05-epoll-callbacks"),$(median "$TMP/anchor-get1000-06-coroutines")"
    fa=$(median "$TMP/anchor-sync-fastapi")
    a=${ANCHOR_FASTAPI_WHY:-FastAPI on uvicorn $(anchor_cell sync fastapi 0)}
    row "POST /api/exchange_sync, delay 0, 64 connections|$a|$(anchor_cell sync 04-select "$fa")|$(anchor_cell sync 05-epoll-callbacks "$fa")|$(anchor_cell sync 06-coroutines "$fa")"
    csv_row anchors.csv "sync,$fa,$(median "$TMP/anchor-sync-04-select"),$(median "$TMP/anchor-sync-05-epoll-callbacks"),$(median "$TMP/anchor-sync-06-coroutines")"
    say ""
}
