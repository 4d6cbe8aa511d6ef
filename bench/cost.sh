# Sourced by tools/bench.sh (scenario "cost"): what one request costs each
# stage, for GET / on keep-alive connections and GET / on a new connection
# each (issue 14, item 7):
#
#   CPU us      the server's user+system time over the run (its /proc stat,
#               reaped children included) per request
#   syscalls    system calls per request, counted by perf stat (the
#               raw_syscalls:sys_enter tracepoint, threads and children
#               included) when perf can, else by strace -c -f (which slows
#               the server: its run is shorter); the table says which
#   ctx vol/inv voluntary and involuntary context switches per request,
#               from /proc (every task of every live process in the
#               server's process group, before and after; children that
#               exited meanwhile are not there: 02's figure is its
#               parent's, and perf's count is given beside it)
#
# Two runs per row: one clean (CPU, /proc), one under the counter. Uses
# bench.sh's helpers (say, note, row, table_start, csv_*, lg, jget, num,
# start_stage, stop_stage) and its B, LG, TMP, QUICK, SELECTED.

# cost_ctx PGID: "voluntary involuntary" summed over the group's tasks.
cost_ctx() {
    local p files=()
    for p in $(pgrep -g "$1" 2>/dev/null); do
        files+=(/proc/"$p"/task/*/status)
    done
    [ ${#files[@]} -eq 0 ] && { echo "0 0"; return; }
    awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }' "${files[@]}" 2>/dev/null
}

# cost_counter: which counter this machine has: perf, strace or none.
cost_counter() {
    if command -v perf >/dev/null 2>&1 &&
        perf stat -e raw_syscalls:sys_enter,context-switches -x, -- true >/dev/null 2>&1; then
        echo perf
    elif command -v strace >/dev/null 2>&1 && strace -c -o /dev/null true >/dev/null 2>&1; then
        echo strace
    else
        echo none
    fi
}

# cost_count COUNTER PID OUT ARGS...: runs loadgen ARGS under the counter
# attached to PID; OUT gets "syscalls [context-switches]".
cost_count() {
    local counter=$1 pid=$2 out=$3
    shift 3
    local raw=$TMP/cost-counter.txt cpid
    : >"$raw"
    case $counter in
    perf) perf stat -e raw_syscalls:sys_enter,context-switches -x, -o "$raw" -p "$pid" 2>/dev/null & ;;
    strace) strace -c -f -o "$raw" -p "$pid" 2>/dev/null & ;;
    *) echo "0" >"$out"; return ;;
    esac
    cpid=$!
    CLIENTS+=("$cpid")
    sleep 0.5 # attached before the first request
    lg "$TMP/cost-counted.json" "$@"
    kill -INT "$cpid" 2>/dev/null
    wait "$cpid" 2>/dev/null
    case $counter in
    perf) awk -F, '$3 ~ /raw_syscalls:sys_enter/ { s = $1 } $3 ~ /context-switches/ { c = $1 } END { print s + 0, c + 0 }' "$raw" >"$out" ;;
    strace) awk '$NF == "total" { print $4 + 0 }' "$raw" >"$out" ;;
    esac
}

bench_cost() {
    local n_ka=20000 n_new=4000 counter
    [ -n "$QUICK" ] && n_ka=4000 n_new=1000
    counter=$(cost_counter)
    note "cost: per request, $n_ka keep-alive and $n_new new-connection GET /, counted by $counter"
    say "## Cost per request: CPU, system calls, context switches"
    say ""
    say "GET /, delay 0: $n_ka requests on 64 keep-alive connections, then $n_new on a new connection each (8 at a time); loadgen --engine raw. CPU: the server's user+system time (/proc, reaped children included) per request. System calls: $(case $counter in perf) echo "perf stat -e raw_syscalls:sys_enter on the server's pid (threads and children included), in a second run" ;; strace) echo "strace -c -f on the server, in a second run of a quarter the size (strace slows the server, and a slower server batches more per epoll_wait)" ;; *) echo "neither perf nor strace is installed: not counted" ;; esac). Context switches: voluntary/involuntary from /proc/PID/task/*/status over the server's process group$([ "$counter" = perf ] && echo ", and perf's count (children that exited included)"). Syscalls per request is the figure to look at."
    say ""
    table_start "stage|connection|requests|CPU us/request|syscalls/request|ctx vol/request|ctx invol/request|ctx (perf)/request|failures"
    csv_start cost.csv "stage,connection,requests,cpu_us,syscalls,ctx_vol,ctx_invol,ctx_perf"
    local s mode
    for s in "${SELECTED[@]}"; do
        not_built "$s" 9 && continue
        for mode in keep-alive new; do
            note "  $s $mode"
            if ! start_stage "$s" --delay-ms 0; then row "$s|$mode|$START_ERR|||||| "; continue; fi
            local n=$n_ka args=(-c 64)
            [ "$mode" = new ] && n=$n_new args=(-c 8 --no-keepalive)
            local f=$TMP/cost-$s-$mode.json before after
            before=$(cost_ctx "$SPID")
            lg "$f" --engine raw -n "$n" "${args[@]}" --timeout-ms 10000 \
                --watch-pid "$SPID" "http://127.0.0.1:$SPORT/"
            after=$(cost_ctx "$SPID")
            local cn=$n
            [ "$counter" = strace ] && cn=$((n / 4))
            cost_count "$counter" "$SPID" "$TMP/cost-count" --engine raw -n "$cn" \
                "${args[@]}" --timeout-ms 30000 "http://127.0.0.1:$SPORT/"
            stop_stage
            local req cpu sys cperf vol inv
            req=$(jget "$f" requests)
            [ "$req" = 0 ] && req=1
            cpu=$(num %.1f "$(jget "$f" server_cpu_s) * 1e6 / $req")
            read -r sys cperf <"$TMP/cost-count"
            sys=$(num %.2f "${sys:-0} / $cn")
            cperf=$([ "$counter" = perf ] && num %.3f "${cperf:-0} / $cn" || echo -)
            [ "$counter" = none ] && sys=-
            vol=$(num %.3f "($(echo "$after" | cut -d' ' -f1) - $(echo "$before" | cut -d' ' -f1)) / $req")
            inv=$(num %.3f "($(echo "$after" | cut -d' ' -f2) - $(echo "$before" | cut -d' ' -f2)) / $req")
            local conn=$mode
            [ "$s" = 01-blocking ] && [ "$mode" = keep-alive ] && conn="keep-alive asked (01 closes)"
            row "$s|$conn|$(jget "$f" requests)|$cpu|$sys|$vol|$inv|$cperf|$(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}"
            csv_row cost.csv "$s,$mode,$(jget "$f" requests),$cpu,$sys,$vol,$inv,$cperf"
        done
    done
    say ""
}
