# Sourced by bench/bench.sh (scenario "uring"): readiness against
# completion (issue 26). GET /, delay 0, 64 keep-alive connections
# (loadgen --engine raw, one thread, as wrk -t1), for five servers side by
# side:
#
#   nginx        1 worker: the readiness anchor (epoll, bench/nginx.conf)
#   05, 06       --backend epoll: readiness, a recv and a send per request
#   05, 06       --backend uring: completion, one io_uring_enter per turn
#
# Rounds interleaved (every target once per round, in the same order), so
# the machine's drift hits all alike; the table gives the median over the
# rounds with the smallest and largest in brackets. Each target and round
# is two runs:
#
#   CPU us/request   the server's user+system time (/proc/PID/stat: every
#                    thread, io_uring's workers included) over a clean run
#                    of URING_S seconds, per request; nginx's is its
#                    worker's
#   syscalls/request a second run of URING_N requests with the system
#                    calls counted (perf stat -e raw_syscalls:sys_enter on
#                    the server, else strace -c -f, whose slowing the table
#                    names)
#
# The goals (issue 26): at most 0.5 system calls per request on io_uring,
# and CPU per request at most 0.8x nginx's. Uses bench.sh's helpers (say,
# note, row, table_start, csv_*, lg, jget, num, start_stage, stop_stage,
# failures), cost.sh's cost_counter, cost_count and cost_cpu, and
# anchors.sh's anchor_nginx, anchor_stop and median.

URING_GOAL_SYSCALLS=0.5
URING_GOAL_CPU=0.8

# uring_range FILE: "median (min-max)" of the numbers in FILE, with
# printf format $2; "-" when empty.
uring_range() {
    [ -s "$1" ] || { printf -- '-'; return; }
    local m lo hi
    m=$(median "$1")
    lo=$(grep . "$1" | sort -g | head -1)
    hi=$(grep . "$1" | sort -g | tail -1)
    printf '%s (%s-%s)' "$(num "$2" "$m")" "$(num "$2" "$lo")" "$(num "$2" "$hi")"
}

# uring_measure NAME PID PORT: one round for one target: a clean run for
# CPU, a counted run for system calls; appends to $TMP/uring-{cpu,sys,rps}-NAME.
uring_measure() {
    local name=$1 pid=$2 port=$3
    local f=$TMP/uring-$name.json t0 t1 req
    t0=$(cost_cpu "$pid")
    lg "$f" --engine raw -c 64 -d "$URING_S" --timeout-ms 10000 \
        "http://127.0.0.1:$port/"
    t1=$(cost_cpu "$pid")
    req=$(jget "$f" requests)
    [ "${req:-0}" = 0 ] && req=1
    num %.2f "($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / $req" >>"$TMP/uring-cpu-$name"
    echo >>"$TMP/uring-cpu-$name"
    jget "$f" rps >>"$TMP/uring-rps-$name"
    echo >>"$TMP/uring-rps-$name"
    local bad
    bad=$(failures "$f")
    [ "$bad" != none ] && note "  $name: $bad"
    local n=$URING_N
    [ "$URING_COUNTER" = strace ] && n=$((URING_N / 4))
    cost_count "$URING_COUNTER" "$pid" "$TMP/uring-count" --engine raw -c 64 \
        -n "$n" --timeout-ms 30000 "http://127.0.0.1:$port/"
    local sys
    read -r sys _ <"$TMP/uring-count"
    num %.3f "${sys:-0} / $n" >>"$TMP/uring-sys-$name"
    echo >>"$TMP/uring-sys-$name"
}

bench_uring() {
    local rounds=5
    URING_S=3 URING_N=40000
    [ -n "$QUICK" ] && rounds=1 URING_S=1 URING_N=10000
    URING_COUNTER=$(cost_counter)
    local targets=() s b
    for s in 05-epoll-callbacks 06-coroutines; do
        selected "$s" "${BENCH_STAGES:-}" && [ -x "$B/$s" ] || continue
        for b in epoll uring; do targets+=("$s:$b"); done
    done
    note "uring: nginx and ${targets[*]:-no stage}, $rounds round(s) of ${URING_S} s, system calls by $URING_COUNTER"
    say "## Readiness against completion: epoll and io_uring beside nginx (issue 26)"
    say ""
    say "GET /, delay 0, 64 keep-alive connections, loadgen --engine raw on one thread. Rounds interleaved (each target once per round), $rounds round(s); the median, and in brackets the smallest and largest. CPU: the server's user+system time from /proc over a ${URING_S} s run, per request (nginx: its one worker). System calls: a second run of $URING_N requests counted by $(case $URING_COUNTER in perf) echo "perf stat -e raw_syscalls:sys_enter on the server" ;; strace) echo "strace -c -f on the server (a quarter of the requests: strace slows it)" ;; *) echo "nothing: neither perf nor strace is installed" ;; esac). Goals: io_uring at most $URING_GOAL_SYSCALLS system calls per request and at most ${URING_GOAL_CPU}x nginx's CPU per request."
    say ""
    local nginx_worker=
    if anchor_nginx; then
        nginx_worker=$(pgrep -P "$NGINX_PID" | head -1)
    else
        note "  $ANCHOR_NGINX_WHY"
    fi
    local -A port pid
    local t
    for t in "${targets[@]}"; do
        if start_stage "${t%%:*}" --delay-ms 0 --backend "${t##*:}"; then
            port[$t]=$SPORT pid[$t]=$SPID
            grep -q "running on epoll" "$TMP/${t%%:*}.$STARTS.log" 2>/dev/null &&
                note "  $t: io_uring refused here: $(grep 'no io_uring' "$TMP/${t%%:*}.$STARTS.log" | tail -1)"
        else
            note "  $t: $START_ERR"
        fi
    done
    local r
    for ((r = 1; r <= rounds; r++)); do
        note "  round $r/$rounds"
        [ -n "$nginx_worker" ] && uring_measure nginx "$nginx_worker" "$NGINX_PORT"
        for t in "${targets[@]}"; do
            [ -n "${pid[$t]:-}" ] && uring_measure "$t" "${pid[$t]}" "${port[$t]}"
        done
    done
    for t in "${targets[@]}"; do
        [ -n "${pid[$t]:-}" ] || continue
        SPID=${pid[$t]}
        stop_stage
        [ -n "$STOP_NOTE" ] && note "  $t: $STOP_NOTE"
    done
    anchor_stop "$NGINX_PID"

    local ng
    ng=$(median "$TMP/uring-cpu-nginx")
    table_start "server|model|req/s|CPU us/request|CPU vs nginx|syscalls/request"
    csv_start uring.csv "server,model,rps,cpu_us,cpu_us_min,cpu_us_max,syscalls,syscalls_min,syscalls_max"
    local name model
    for name in nginx "${targets[@]}"; do
        [ -s "$TMP/uring-cpu-$name" ] || continue
        case $name in
        nginx) model="epoll (readiness), 1 worker" ;;
        *:epoll) model="--backend epoll (readiness)" ;;
        *:uring) model="--backend uring (completion)" ;;
        esac
        local cpu ratio=-
        cpu=$(median "$TMP/uring-cpu-$name")
        [ "$(num %.0f "$ng * 100")" != 0 ] && ratio="$(num %.2f "$cpu / $ng")x"
        row "${name%%:*}|$model|$(num %.1fk "$(median "$TMP/uring-rps-$name") / 1000")|$(uring_range "$TMP/uring-cpu-$name" %.1f)|$ratio|$(uring_range "$TMP/uring-sys-$name" %.2f)"
        csv_row uring.csv "${name%%:*},${name##*:},$(median "$TMP/uring-rps-$name"),$cpu,$(grep . "$TMP/uring-cpu-$name" | sort -g | head -1),$(grep . "$TMP/uring-cpu-$name" | sort -g | tail -1),$(median "$TMP/uring-sys-$name"),$(grep . "$TMP/uring-sys-$name" | sort -g | head -1),$(grep . "$TMP/uring-sys-$name" | sort -g | tail -1)"
    done
    say ""
}
