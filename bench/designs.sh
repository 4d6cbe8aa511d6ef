# designs.sh: scenario 7 of bench/bench.sh ("designs"),
# sourced by it: its own file so bench.sh stays readable. It uses bench.sh's
# helpers (start_stage, stop_stage, lg, jget, failures, say, row, num, note,
# table_start, csv_start, csv_row, chart, not_built, selected) and its
# variables (B, LG, TMP, PIDS, SETSID, CPU_N, TP_GET_S, STARTS).
# shellcheck shell=bash

# tree_cpu_ticks PID: user+system clock ticks of PID (its reaped children
# included) plus those of its live children: a prefork child or a worker
# process is reaped only at the stop, after the run is measured.
tree_cpu_ticks() {
    local total=0 c t
    for c in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' /proc/"$c"/stat 2>/dev/null)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# free_port: a port nobody listens on now, for nginx (the stages take 0).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null
}

# start_nginx WORKERS: nginx in the foreground answering GET / with a fixed
# JSON body, like the stages' GET /; sets SPID and SPORT, or returns 1.
start_nginx() {
    local d=$TMP/nginx$1
    SPORT=$(free_port)
    [ -n "$SPORT" ] || return 1
    mkdir -p "$d/logs" || return 1
    cat >"$d/nginx.conf" <<EOF
worker_processes $1;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000; # the stages never close a busy connection
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$SPORT;
        location = / {
            default_type application/json;
            return 200 '{"message":"nginx","stage":"nginx"}';
        }
    }
}
EOF
    $SETSID nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' 2>"$d/logs/stderr" &
    SPID=$!
    PIDS+=("$SPID")
    for _ in $(seq 100); do
        "$LG" --quiet -n 1 "http://127.0.0.1:$SPORT/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    kill -KILL -- "-$SPID" "$SPID" 2>/dev/null
    return 1
}

# designs_scenario: one row per server design, UNP's comparison (chapter
# 30) made with the stages' options: the server's CPU per request when
# every request opens a new connection (accept, fork or hand-off included),
# GET / keep-alive requests/s, and how the connections were spread over
# prefork children or worker processes. nginx with 1 and 2 workers is the
# anchor when it is installed.
designs_scenario() {
    local tck n rows r label bin args f g per rps acc empty log t0 t1 x2= ng2=
    tck=$(getconf CLK_TCK)
    n=$CPU_N
    note "7/7 designs: $n GET / with a new connection each, then GET / keep-alive for ${TP_GET_S} s"
    say "## 7. Designs: UNP's server designs, and the second core"
    say ""
    say "Per row: $n GET / with a new connection each (8 clients; the server's CPU over them, its live children and workers included, per request), then GET / on 64 keep-alive connections for ${TP_GET_S} s (loadgen --engine raw, 1 thread). Accepts per worker or child count both runs; in brackets, a prefork child's wake-ups that found nothing to accept. On $(nproc) cores the client competes with the server for them: a design that uses a second core takes it from the client, so an x2 row measures less than twice. Clock ticks are 10 ms, so small CPU totals are coarse."
    say ""
    table_start "design|options|server us/request (new conn.)|GET / keep-alive req/s|accepts per worker (empty wake-ups)|failures"
    csv_start 7-designs.csv "design,options,server_us_per_request,get_keepalive_rps"
    rows=(
        "01|01-blocking|"
        "02|02-fork|"
        "02 prefork|02-fork|--prefork 4"
        "02 prefork, lock|02-fork|--prefork 4 --accept-lock"
        "03|03-threads|"
        "03 pool|03-threads|--pool 64"
        "04|04-select|"
        "05|05-epoll-callbacks|"
        "05 x2|05-epoll-callbacks|--workers 2"
        "05 x2 shared|05-epoll-callbacks|--workers 2 --shared-listener"
        "06|06-coroutines|"
        "06 x2|06-coroutines|--workers 2"
        "nginx 1|nginx|1"
        "nginx 2|nginx|2"
    )
    for r in "${rows[@]}"; do
        IFS='|' read -r label bin args <<<"$r"
        if [ "$bin" = nginx ]; then
            selected nginx "${BENCH_STAGES:-}" || continue
            command -v nginx >/dev/null 2>&1 || { row "$label|worker_processes $args|not installed|||"; continue; }
            note "  $label"
            if ! start_nginx "$args"; then row "$label|worker_processes $args|did not start|||"; continue; fi
            log=
        else
            selected "$bin" "${BENCH_STAGES:-}" || continue
            not_built "$bin" 6 && continue
            note "  $label"
            # shellcheck disable=SC2086 # args are words on purpose
            if ! start_stage "$bin" --delay-ms 0 $args; then row "$label|$args|$START_ERR|||"; continue; fi
            log=$TMP/$bin.$STARTS.log
        fi
        f=$TMP/7-$STARTS-$label-cpu.json g=$TMP/7-$STARTS-$label-get.json
        f=${f// /_} g=${g// /_}
        t0=$(tree_cpu_ticks "$SPID")
        lg "$f" -n "$n" -c 8 --no-keepalive --timeout-ms 10000 "http://127.0.0.1:$SPORT/"
        t1=$(tree_cpu_ticks "$SPID")
        lg "$g" --engine raw -t 1 -c 64 -d "$TP_GET_S" --timeout-ms 10000 "http://127.0.0.1:$SPORT/"
        stop_stage
        per=$(num %.0f "($t1 - $t0) / $tck * 1e6 / ($(jget "$f" requests) > 0 ? $(jget "$f" requests) : 1)")
        rps=$(num %.0f "$(jget "$g" rps)")
        acc=-
        if [ -n "$log" ]; then
            acc=$(sed -n 's/.*accepts per \(worker\|child\):\([0-9 ]*\).*/\2/p' "$log" | head -1)
            empty=$(sed -n 's/.*empty wake-ups per child:\([0-9 ]*\).*/\1/p' "$log" | head -1)
            acc=${acc# }
            acc=${acc% }
            empty=${empty# } empty=${empty% }
            [ -n "$empty" ] && acc="$acc ($empty)"
            [ -z "$acc" ] && acc="one process"
        fi
        [ "$label" = "05 x2" ] && x2=$rps
        [ "$label" = "nginx 2" ] && ng2=$rps
        row "$label|${args:--}|$per|$rps|$acc|new conn.: $(failures "$f"); keep-alive: $(failures "$g")${STOP_NOTE:+ ($STOP_NOTE)}"
        csv_row 7-designs.csv "$label,$args,$per,$rps"
    done
    say ""
    if [ -n "$x2" ] && [ -n "$ng2" ] && [ "$ng2" != 0 ]; then
        say "05 x2 over nginx with 2 workers, GET / keep-alive, in this run: $(num %.2f "$x2 / $ng2")x."
        say ""
    fi
    chart 7-designs.csv 7-designs.png "Designs: GET / keep-alive" "requests/s" "" "4:GET / keep-alive req/s"
}
