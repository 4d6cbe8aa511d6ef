# Sourced by bench/bench.sh (scenario "cost"): what one request costs each
# stage, for GET / on keep-alive connections and GET / on a new connection
# each:
#
#   CPU us      the server's user+system time over the run (its /proc stat:
#               every thread, and children it reaped; read half a second
#               after the run, so 02's children for keep-alive connections
#               have exited and been reaped) per request
#   syscalls    system calls per request, counted by perf stat (the
#               raw_syscalls:sys_enter tracepoint, threads and children
#               included) when perf can, else by strace -c -f (which slows
#               the server: its run is shorter); the table says which
#   ctx vol/inv voluntary and involuntary context switches per request,
#               from /proc (every task of every live process in the
#               server's process group, before and after). /proc keeps no
#               count for a task that is gone: where tasks come and go
#               (02's children, 03's thread per connection) the figure
#               covers the live ones only ("-" if fewer were counted after
#               than before), and perf's count, given beside it, is the
#               whole one
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
    # cat, not awk FILES: a task may end between the glob and the read, and
    # mawk stops at a file it cannot open.
    cat "${files[@]}" 2>/dev/null |
        awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { printf "%d %d\n", v, n }'
}

# cost_cpu PID: user+system clock ticks of PID, its threads and the
# children it reaped (fields 14-17 of /proc/PID/stat).
cost_cpu() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cost_delta BEFORE AFTER FIELD N: (after - before) / N for one field of
# two "vol invol" samples, or "-" when tasks that were counted are gone.
cost_delta() {
    local b a
    b=$(echo "$1" | cut -d' ' -f"$3") a=$(echo "$2" | cut -d' ' -f"$3")
    if [ "$a" -lt "$b" ]; then printf -- '-'; else num %.3f "($a - $b) / $4"; fi
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
    say "GET /, delay 0: $n_ka requests on 64 keep-alive connections, then $n_new on a new connection each (8 at a time); loadgen --engine raw. CPU: the server's user+system time (/proc: its threads and reaped children) per request. System calls: $(case $counter in perf) echo "perf stat -e raw_syscalls:sys_enter on the server's pid (threads and children included), in a second run" ;; strace) echo "strace -c -f on the server, in a second run of a quarter the size (strace slows the server, and a slower server batches more per epoll_wait)" ;; *) echo "neither perf nor strace is installed: not counted" ;; esac). Context switches: voluntary/involuntary from /proc/PID/task/*/status over the server's live processes and threads (a task that ended takes its count with it: for 02's children and 03's threads per connection see perf's)$([ "$counter" = perf ] && echo ", and perf's count (every task, ended ones included)"). Clock ticks are 10 ms: small totals are coarse. Syscalls per request is the figure to look at."
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
            local f=$TMP/cost-$s-$mode.json before after t0 t1
            before=$(cost_ctx "$SPID") t0=$(cost_cpu "$SPID")
            lg "$f" --engine raw -n "$n" "${args[@]}" --timeout-ms 10000 \
                "http://127.0.0.1:$SPORT/"
            after=$(cost_ctx "$SPID")
            sleep 0.5 # 02: the keep-alive children exit and are reaped
            t1=$(cost_cpu "$SPID")
            local cn=$n
            [ "$counter" = strace ] && cn=$((n / 4))
            cost_count "$counter" "$SPID" "$TMP/cost-count" --engine raw -n "$cn" \
                "${args[@]}" --timeout-ms 30000 "http://127.0.0.1:$SPORT/"
            stop_stage
            local req cpu sys cperf vol inv
            req=$(jget "$f" requests)
            [ "$req" = 0 ] && req=1
            cpu=$(num %.1f "($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / $req")
            read -r sys cperf <"$TMP/cost-count"
            sys=$(num %.2f "${sys:-0} / $cn")
            cperf=$([ "$counter" = perf ] && num %.3f "${cperf:-0} / $cn" || echo -)
            [ "$counter" = none ] && sys=-
            vol=$(cost_delta "$before" "$after" 1 "$req")
            inv=$(cost_delta "$before" "$after" 2 "$req")
            local conn=$mode
            [ "$s" = 01-blocking ] && [ "$mode" = keep-alive ] && conn="keep-alive asked (01 closes)"
            row "$s|$conn|$(jget "$f" requests)|$cpu|$sys|$vol|$inv|$cperf|$(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}"
            csv_row cost.csv "$s,$mode,$(jget "$f" requests),$cpu,$sys,$vol,$inv,$cperf"
        done
    done
    say ""
}
