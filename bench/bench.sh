#!/usr/bin/env bash
# The benchmarks behind `make bench`: every built stage, started quietly on a
# free port, measured with build/loadgen, stopped with SIGTERM. Prints one
# markdown table per scenario (a row per stage) and writes the same tables
# to bench/results/bench.md, one CSV per scenario beside it and, when
# gnuplot is installed, a PNG chart per scenario.
#
#   1 overlap       100 concurrent sync requests, 1 bill, 100 ms delay:
#                   wall time against the ideal of one delay
#   2 throughput    delay 0, 64 keep-alive connections, GET / and the sync
#                   route: requests/s and p99 (and wrk on GET /, if present)
#   3 many clients  BENCH_CONC (default 5000) concurrent sync requests with a
#                   1 s delay: completed, failures by kind, peak memory
#   4 slow clients  200 stalled connections while GET / is measured
#   5 cpu           server CPU time per request, a new connection each
#                   (Stevens' comparison of server designs)
#   6 06 pitfall    06 normal, --blocking-bug, --cpu-ms, --cpu-ms --offload
#   7 designs       UNP's designs as options (02 --prefork, 03 --pool, 05/06
#                   --workers 2) and nginx with 1 and 2 workers: CPU per
#                   request (new connection each), GET / keep-alive req/s,
#                   accepts per worker (bench/designs.sh)
#   anchors         04-06 beside nginx (GET /) and the seed's FastAPI app
#                   (sync route), interleaved rounds, ratio columns
#                   (bench/anchors.sh)
#   bytes           1000, 10,000 and 100,000 clients at once, one 1 s
#                   request each, against 05 and 06 (--workers past one
#                   process's descriptors): all answered? and the server's
#                   memory per client (bench/scale.sh)
#   latency         an open loop (loadgen --rate) against 04-06, and a
#                   stall of 06 measured by a closed and an open loop
#                   (bench/latency.sh)
#   switch          06's --switch setjmp against --switch swapcontext: ns a
#                   switch (examples/switch_cost) and GET / req/s; then a
#                   resume's cost against the bytes --stack shared copies
#                   (examples/stack_cost)
#   cost            CPU us, system calls and context switches per request,
#                   keep-alive and a new connection each (bench/cost.sh)
#   uring           readiness against completion: 05 and 06 on epoll and
#                   on io_uring beside nginx, system calls and CPU per
#                   keep-alive request, 5 interleaved rounds (bench/uring.sh)
#
# Usage: bench/bench.sh [BUILD_DIR]          (make bench passes build/)
# Environment: BENCH_QUICK=1 (about 3 minutes), BENCH_CONC=N (scenario 3),
# BENCH_STAGES=01-blocking,05-epoll-callbacks (only those),
# BENCH_SCENARIOS=1,2 (only those), BENCH_RESULTS=DIR (default bench/results),
# BENCH_THREADS=N (loadgen threads for throughput, default 1),
# BENCH_ENGINE=curl|raw (loadgen's engine for throughput, default raw),
# BENCH_ROUNDS=N (interleaved rounds of the anchors, bytes and latency
# tables, default 5; quick 2), BENCH_SCALE_SIZES and BENCH_SCALE_EXTRA
# (bench/scale.sh); BENCH_SCENARIOS takes the names anchors, bytes,
# latency, cost, uring and switch too. Exits 1 when a bytes row did not answer
# every client, or when bench/ calls a name nothing defines. Every process
# it starts is stopped again, also on Ctrl-C.
set -u

B=${1:-build}
LG=$B/loadgen
BENCH_DIR=$(cd "$(dirname "$0")" && pwd) # bench/: the scenario files
RESULTS=${BENCH_RESULTS:-bench/results}
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 0 ] && QUICK=
ALL_STAGES=(01-blocking 02-fork 03-threads 04-select 05-epoll-callbacks 06-coroutines)

# Sizes: the full run takes about 10 minutes with six stages, the anchors,
# the bytes and latency tables and the cost table (326 s on 2026-11-27
# before the bytes and latency tables, which took 157 s and 60 s on
# 2026-12-07), the quick one about 3 minutes (171 s on 2026-12-07, on a
# loaded machine). 01 is always the slow row: it is bounded by time
# budgets.
if [ -n "$QUICK" ]; then
    OVERLAP_N=20 TP_GET_S=1 TP_SYNC_S=0.5 WRK_S=1
    CONC=${BENCH_CONC:-500} MANY_BUDGET_MS=2500
    STALLS=200 SLOW_S=0.8 CPU_N=1000
    PIT_DELAY=100 PIT_CPU=50 PIT_PROBE_S=1.2
else
    OVERLAP_N=100 TP_GET_S=3 TP_SYNC_S=3 WRK_S=3
    CONC=${BENCH_CONC:-5000} MANY_BUDGET_MS=10000
    STALLS=200 SLOW_S=3 CPU_N=4000
    PIT_DELAY=200 PIT_CPU=100 PIT_PROBE_S=3
fi
PIT_N=10
# The headline tables (anchors, bytes, latency) are medians of interleaved
# rounds: every target once per round, so the machine's drift hits all.
ROUNDS=${BENCH_ROUNDS:-5}
[ -n "$QUICK" ] && ROUNDS=${BENCH_ROUNDS:-2}
# Throughput runs loadgen's raw engine on one thread, as wrk -t1 runs: curl
# costs about twice wrk's CPU per request, and on a small machine the
# client's CPU is taken from the server, so with curl loadgen would measure
# itself (see "Is the client the bottleneck?" in bench/README.md). Other
# scenarios use curl.
TP_THREADS=${BENCH_THREADS:-1}
TP_ENGINE=${BENCH_ENGINE:-raw}

if [ ! -x "$LG" ]; then
    echo "bench: $LG is missing; build it first (make, or make bench)" >&2
    exit 1
fi
case "$CONC" in '' | *[!0-9]*) echo "bench: BENCH_CONC must be a number" >&2; exit 2 ;; esac
case "$ROUNDS" in '' | 0 | *[!0-9]*) echo "bench: BENCH_ROUNDS must be a number > 0" >&2; exit 2 ;; esac
case "$TP_ENGINE" in curl | raw) ;; *) echo "bench: BENCH_ENGINE must be curl or raw" >&2; exit 2 ;; esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
# A name that is neither a command nor a function here is a bug in
# bench/ (tools are looked for with command -v first): it would leave
# empty cells that pass for a result. Say so, and fail at the end.
command_not_found_handle() {
    echo "bench: BUG: '$1' is not a command or a function of bench/" >&2
    echo "$1" >>"$TMP/bugs"
    return 127
}
PIDS=() CLIENTS=()
cleanup() {
    local p
    for p in "${CLIENTS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 30); do
        local alive=
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    # Stages run in their own process group (setsid): take 02's children too.
    for p in "${PIDS[@]}"; do kill -KILL -- "-$p" "$p" 2>/dev/null; done
    for p in "${CLIENTS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}

# client CMD...: runs a client (loadgen, wrk) in the background and waits
# for it. In the foreground, Ctrl-C would reach the client and bash would
# wait for it to finish (and skip its trap if the client handled SIGINT,
# as wrk does); a trapped signal interrupts `wait` at once.
client() {
    "$@" &
    local pid=$!
    CLIENTS+=("$pid")
    wait "$pid"
}
trap cleanup EXIT
# The trap may run while a client's output is redirected to a file: it
# writes to the script's own stderr, saved as fd 3.
exec 3>&2
trap 'echo >&3; echo "bench: interrupted; stopping everything it started" >&3; exit 130' INT TERM

# Servers and their children may need thousands of descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$RESULTS" || exit 1
REPORT=$RESULTS/bench.md
: >"$REPORT"

say() { printf '%s\n' "$*" | tee -a "$REPORT"; }
note() { printf 'bench: %s\n' "$*" >&2; }
# num FORMAT EXPRESSION: awk arithmetic, printed with a printf format.
num() { awk -v f="$1" "BEGIN { printf f, ($2) }"; }

selected() {
    [ -z "${2:-}" ] && return 0
    case ",$2," in *",$1,"*) return 0 ;; esac
    return 1
}

# ---- stages ---------------------------------------------------------------

SELECTED=() BUILT=() MISSING=()
for s in "${ALL_STAGES[@]}"; do
    selected "$s" "${BENCH_STAGES:-}" || continue
    SELECTED+=("$s")
    if [ -x "$B/$s" ]; then BUILT+=("$s"); else MISSING+=("$s"); fi
done

STARTS=0 SETSID=
command -v setsid >/dev/null 2>&1 && SETSID=setsid

# start_stage NAME ARGS...: starts it on a free port; sets SPID and SPORT.
# Returns 1 (with the reason in START_ERR) when it does not come up.
start_stage() {
    local name=$1
    shift
    # A new file per start: reading a previous run's port would be a race.
    STARTS=$((STARTS + 1))
    local out=$TMP/$name.$STARTS.out log=$TMP/$name.$STARTS.log
    SECRET_TOKEN=bench-token $SETSID "$B/$name" --port 0 --quiet \
        --main-service http://127.0.0.1:9 "$@" >"$out" 2>"$log" &
    SPID=$!
    PIDS+=("$SPID")
    SPORT=$("$BENCH_DIR/../tools/announced-port" "$out" "$SPID") && return 0
    START_ERR="did not start: $(tail -1 "$log" 2>/dev/null)"
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    return 1
}

# stop_stage: SIGTERM, up to 20 s for in-flight work, then SIGKILL. Sets
# STOP_NOTE when the exit was not a clean 0.
stop_stage() {
    STOP_NOTE=
    if ! kill -0 "$SPID" 2>/dev/null; then
        wait "$SPID" 2>/dev/null
        STOP_NOTE="died during the run (exit $?)"
        return
    fi
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 200); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SPID" 2>/dev/null; then
        kill -KILL -- "-$SPID" "$SPID" 2>/dev/null
        STOP_NOTE="did not stop within 20 s of SIGTERM"
    fi
    wait "$SPID" 2>/dev/null
    local rc=$?
    [ -z "$STOP_NOTE" ] && [ "$rc" -ne 0 ] && STOP_NOTE="exit $rc after SIGTERM"
}

# ---- loadgen results ------------------------------------------------------

# lg FILE ARGS...: loadgen --json into FILE. Returns loadgen's status.
lg() {
    local f=$1
    shift
    client "$LG" --json --quiet "$@" >"$f" 2>"$f.err"
    local rc=$?
    if [ $rc -gt 1 ]; then
        note "loadgen exited $rc: $(head -2 "$f.err")"
        : >"$f"
    fi
    return $rc
}

# jget FILE KEY: the value of one key (loadgen prints every key once).
jget() {
    local v
    v=$(sed -n "s/^  \"$2\": \\(.*\\),\$/\\1/p" "$1" 2>/dev/null | head -1)
    printf '%s' "${v:-0}"
}

# failures FILE: "none", or "503 x4744, timeout 12" from loadgen's JSON.
failures() {
    local f=$1 out="" k v
    for k in refused timeout reset closed other_errors; do
        v=$(jget "$f" "$k")
        [ "$v" != 0 ] && out="$out, ${k/other_errors/other} $v"
    done
    v=$(sed -n 's/^  "status_counts": {\(.*\)},$/\1/p' "$f" | tr -d '" ' | tr ',' '\n' |
        awk -F: '$1 !~ /^2/ && $2 { printf ", %s x%s", $1, $2 }')
    out="$out$v"
    [ -z "$out" ] && out=", none"
    printf '%s' "${out#, }"
}

ms() { num %.1f "$1"; }
mb() { num %.1f "$1 / 1024"; }

# median FILE: the median of the numbers in FILE (one a line; blank lines
# are skipped), 0 when there is none.
median() {
    awk 'NF' "$1" 2>/dev/null | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread FILE FORMAT [SCALE]: "12.3 (11.9-12.8)", the median of the
# numbers in FILE and their range, each times SCALE (default 1), in
# FORMAT; just the number when there is one, "-" when none.
spread() {
    awk 'NF' "$1" 2>/dev/null | sort -g | awk -v f="$2" -v k="${3:-1}" '
        { v[NR] = $1 * k }
        END {
            if (NR == 0) { print "-"; exit }
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            out = sprintf(f, m)
            if (NR > 1) out = out " (" sprintf(f, v[1]) "-" sprintf(f, v[NR]) ")"
            print out
        }'
}

# ---- tables, CSV, charts --------------------------------------------------

# table_start "col|col|..." : the heading row and the separator.
table_start() {
    local cols=$1 sep="|" rest=$1
    while :; do
        sep="$sep---|"
        [ "$rest" = "${rest#*|}" ] && break
        rest=${rest#*|}
    done
    say "| ${cols//|/ | } |"
    say "$sep"
}
row() { say "| ${1//|/ | } |"; }

# csv_start FILE "a,b,c" / csv_row FILE "v,v,v"
csv_start() { printf '%s\n' "$2" >"$RESULTS/$1"; }
csv_row() { printf '%s\n' "$2" >>"$RESULTS/$1"; }

# chart CSV PNG TITLE YLABEL LOGSCALE COL:TITLE...: a bar chart per stage.
chart() {
    command -v gnuplot >/dev/null 2>&1 || return 0
    local csv=$RESULTS/$1 png=$RESULTS/$2 title=$3 ylabel=$4 log=$5
    shift 5
    [ "$(wc -l <"$csv")" -gt 1 ] || return 0
    local plot="" c
    for c in "$@"; do
        plot="$plot${plot:+, }'$csv' every ::1 using ${c%%:*}:xtic(1) title '${c#*:}'"
    done
    local ymin=0 term="pngcairo size 900,420 font ',10'"
    [ -n "$log" ] && ymin=0.001
    gnuplot -e "set terminal pngcairo" >/dev/null 2>&1 || term="png size 900,420"
    gnuplot >/dev/null 2>"$TMP/gnuplot.err" <<EOF || note "gnuplot failed for $2: $(head -1 "$TMP/gnuplot.err")"
set terminal $term
set output '$png'
set datafile separator ','
set title '$title'
set ylabel '$ylabel'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set grid ytics
set yrange [$ymin:*]
${log:+set logscale y}
set xtics rotate by -20
plot $plot
EOF
}

# ---- the machine ----------------------------------------------------------

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
[ -z "$cpu_model" ] && cpu_model=$(uname -m)
START_S=$(date +%s)

say "# progressive-servers benchmarks"
say ""
say "- date: $(date '+%Y-%m-%d %H:%M %Z')"
say "- machine: $cpu_model, $(nproc) cores, Linux $(uname -r)"
say "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes every figure noisy)"
say "- client: $("$LG" --version 2>/dev/null | head -1): one event loop, libcurl engine, keep-alive unless said; throughput: --engine $TP_ENGINE on $TP_THREADS thread(s)"
mode=full
[ -n "$QUICK" ] && mode="quick (BENCH_QUICK=1)"
say "- mode: $mode; many clients: $CONC; headline tables: medians of $ROUNDS interleaved rounds"
say "- stages: ${BUILT[*]:-none}${MISSING[*]:+; not built: ${MISSING[*]}}"
say ""
if [ ${#BUILT[@]} -eq 0 ]; then
    say "No stage is built: run make first."
    exit 1
fi

# not_built STAGE NCOLS: for a stage that is not built, prints its row
# ("not built") and succeeds, so a loop can `continue`.
not_built() {
    [ -x "$B/$1" ] && return 1
    local fill="" i
    for ((i = 2; i < $2; i++)); do fill="$fill|"; done
    row "$1|not built$fill"
}

# scenario N: true when scenario N is selected; notes how long the
# previous one took.
scenario() {
    [ -n "${SCEN_T0:-}" ] && note "  (took $(($(date +%s) - SCEN_T0)) s)"
    SCEN_T0=
    selected "$1" "${BENCH_SCENARIOS:-}" || return 1
    SCEN_T0=$(date +%s)
}

# ---- 1. overlap -----------------------------------------------------------

if scenario 1; then
    note "1/6 overlap: $OVERLAP_N concurrent sync requests, 1 bill, 100 ms"
    say "## 1. Overlap: $OVERLAP_N concurrent sync requests, one bill of 100 ms"
    say ""
    say "Ideal: every request waits its 100 ms at the same time, so the wall time is one delay."
    say ""
    table_start "stage|ok|failed|wall (s)|ideal (s)|x ideal|p50 (ms)|max (ms)"
    csv_start 1-overlap.csv "stage,ok,failed,wall_s,ideal_s,p50_ms,max_ms"
    for s in "${SELECTED[@]}"; do
        not_built "$s" 8 && continue
        note "  $s"
        if ! start_stage "$s" --delay-ms 100; then row "$s|$START_ERR|||||| "; continue; fi
        f=$TMP/1-$s.json
        lg "$f" -n "$OVERLAP_N" -c "$OVERLAP_N" --bills 1 --timeout-ms 60000 \
            "http://127.0.0.1:$SPORT/api/exchange_sync"
        stop_stage
        wall=$(jget "$f" wall_s)
        row "$s|$(jget "$f" ok)|$(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}|$(num %.2f "$wall")|0.10|$(num %.1f "$wall / 0.1")|$(ms "$(jget "$f" p50_ms)")|$(ms "$(jget "$f" max_ms)")"
        csv_row 1-overlap.csv "$s,$(jget "$f" ok),$(jget "$f" failed),$wall,0.1,$(jget "$f" p50_ms),$(jget "$f" max_ms)"
    done
    say ""
    chart 1-overlap.csv 1-overlap.png "Overlap: $OVERLAP_N concurrent requests of 100 ms" "seconds (log)" log \
        "4:wall time" "5:ideal"
fi

# ---- 2. throughput --------------------------------------------------------

if scenario 2; then
    have_wrk=
    command -v wrk >/dev/null 2>&1 && have_wrk=1
    note "2/6 throughput: delay 0, 64 connections, GET / and sync${have_wrk:+ (and wrk)}"
    say "## 2. Throughput: delay 0, 64 connections"
    say ""
    say "GET / for ${TP_GET_S} s and the sync route (one bill) for ${TP_SYNC_S} s, keep-alive (01 closes every connection itself); loadgen --engine $TP_ENGINE on $TP_THREADS thread(s)."
    [ -n "$have_wrk" ] && say "wrk -t1 -c64 on GET / for ${WRK_S} s is the reference client: the last column is loadgen's rate over wrk's."
    say ""
    table_start "stage|connections|GET / req/s|GET / p99 (ms)|sync req/s|sync p99 (ms)|wrk GET / req/s|loadgen/wrk|failures"
    csv_start 2-throughput.csv "stage,get_rps,get_p99_ms,sync_rps,sync_p99_ms,wrk_get_rps"
    for s in "${SELECTED[@]}"; do
        not_built "$s" 9 && continue
        note "  $s"
        if ! start_stage "$s" --delay-ms 0; then row "$s|$START_ERR||||||| "; continue; fi
        g=$TMP/2-$s-get.json y=$TMP/2-$s-sync.json
        lg "$g" --engine "$TP_ENGINE" -t "$TP_THREADS" -c 64 -d "$TP_GET_S" \
            --timeout-ms 10000 "http://127.0.0.1:$SPORT/"
        lg "$y" --engine "$TP_ENGINE" -t "$TP_THREADS" -c 64 -d "$TP_SYNC_S" \
            --timeout-ms 10000 --bills 1 "http://127.0.0.1:$SPORT/api/exchange_sync"
        wrk_rps=0 ratio=-
        if [ -n "$have_wrk" ]; then
            client wrk -t1 -c64 -d"${WRK_S}s" "http://127.0.0.1:$SPORT/" \
                >"$TMP/wrk.txt" 2>/dev/null
            wrk_rps=$(awk '/^Requests\/sec/ { print $2 }' "$TMP/wrk.txt")
            wrk_rps=${wrk_rps:-0}
            ratio=$(num %.2f "$wrk_rps > 0 ? $(jget "$g" rps) / $wrk_rps : 0")
        fi
        stop_stage
        conn="keep-alive"
        [ "$s" = 01-blocking ] && conn="closed by server"
        fails="GET: $(failures "$g"); sync: $(failures "$y")"
        [ "$fails" = "GET: none; sync: none" ] && fails=none
        row "$s|$conn|$(num %.0f "$(jget "$g" rps)")|$(ms "$(jget "$g" p99_ms)")|$(num %.0f "$(jget "$y" rps)")|$(ms "$(jget "$y" p99_ms)")|$(num %.0f "$wrk_rps")|$ratio|$fails${STOP_NOTE:+ ($STOP_NOTE)}"
        csv_row 2-throughput.csv "$s,$(jget "$g" rps),$(jget "$g" p99_ms),$(jget "$y" rps),$(jget "$y" p99_ms),$wrk_rps"
    done
    say ""
    chart 2-throughput.csv 2-throughput.png "Throughput, delay 0, 64 connections" "requests/s" "" \
        "2:GET / (loadgen)" "4:sync, 1 bill (loadgen)" "6:GET / (wrk)"
fi

# ---- 3. many clients ------------------------------------------------------

if scenario 3; then
    budget_s=$(num %g "$MANY_BUDGET_MS / 1000")
    note "3/6 many clients: $CONC concurrent sync requests, 1 s delay, ${budget_s} s budget"
    say "## 3. Many clients: $CONC concurrent sync requests, one bill of 1 s"
    say ""
    say "Every request has ${budget_s} s (connect included); 'peak' is the server's memory (VmRSS summed over its processes, sampled every 50 ms; forked children share pages, so 02's sum overstates) and its threads and processes."
    say ""
    table_start "stage|ok|failed (how)|wall (s)|peak RSS (MB)|peak threads|peak processes"
    csv_start 3-many-clients.csv "stage,ok,failed,wall_s,peak_rss_mb,peak_threads,peak_procs"
    for s in "${SELECTED[@]}"; do
        not_built "$s" 7 && continue
        note "  $s"
        if ! start_stage "$s" --delay-ms 1000; then row "$s|$START_ERR||||| "; continue; fi
        f=$TMP/3-$s.json
        lg "$f" -n "$CONC" -c "$CONC" --bills 1 --timeout-ms "$MANY_BUDGET_MS" \
            --watch-pid "$SPID" "http://127.0.0.1:$SPORT/api/exchange_sync"
        stop_stage
        row "$s|$(jget "$f" ok)|$(jget "$f" failed): $(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}|$(num %.2f "$(jget "$f" wall_s)")|$(mb "$(jget "$f" server_rss_peak_kb)")|$(jget "$f" server_threads_peak)|$(jget "$f" server_procs_peak)"
        csv_row 3-many-clients.csv "$s,$(jget "$f" ok),$(jget "$f" failed),$(jget "$f" wall_s),$(mb "$(jget "$f" server_rss_peak_kb)"),$(jget "$f" server_threads_peak),$(jget "$f" server_procs_peak)"
    done
    say ""
    chart 3-many-clients.csv 3-many-clients.png "$CONC concurrent clients, 1 s each: answered" "requests" "" \
        "2:answered 200" "3:failed"
fi

# ---- 4. slow clients ------------------------------------------------------

if scenario 4; then
    note "4/6 slow clients: $STALLS stalled connections, GET / measured for ${SLOW_S} s"
    say "## 4. Slow clients: $STALLS stalled connections"
    say ""
    say "$STALLS connections send half a request and go quiet (default idle timeout, 10 s); meanwhile 8 clients measure GET / for ${SLOW_S} s, 2 s allowed per request."
    say ""
    table_start "stage|stalls held|dropped by server|ok|failed|p50 (ms)|p99 (ms)|peak threads|peak processes"
    csv_start 4-slow-clients.csv "stage,ok,failed,p50_ms,p99_ms,peak_threads,peak_procs"
    for s in "${SELECTED[@]}"; do
        not_built "$s" 9 && continue
        note "  $s"
        if ! start_stage "$s" --delay-ms 0; then row "$s|$START_ERR||||||| "; continue; fi
        f=$TMP/4-$s.json
        lg "$f" --stall "$STALLS" -c 8 -d "$SLOW_S" --timeout-ms 2000 \
            --watch-pid "$SPID" "http://127.0.0.1:$SPORT/"
        stop_stage
        p50=- p99=-
        if [ "$(jget "$f" ok)" != 0 ]; then p50=$(ms "$(jget "$f" p50_ms)") p99=$(ms "$(jget "$f" p99_ms)"); fi
        row "$s|$(jget "$f" stall_connected)|$(jget "$f" stall_dropped)|$(jget "$f" ok)|$(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}|$p50|$p99|$(jget "$f" server_threads_peak)|$(jget "$f" server_procs_peak)"
        csv_row 4-slow-clients.csv "$s,$(jget "$f" ok),$(jget "$f" failed),$(jget "$f" p50_ms),$(jget "$f" p99_ms),$(jget "$f" server_threads_peak),$(jget "$f" server_procs_peak)"
    done
    say ""
    chart 4-slow-clients.csv 4-slow-clients.png "GET / answered while $STALLS connections stall" "requests" "" \
        "2:answered" "3:failed"
fi

# ---- 5. cpu per request ---------------------------------------------------

if scenario 5; then
    note "5/6 cpu: $CPU_N sync requests, a new connection each"
    say "## 5. CPU per request: $CPU_N sync requests (one bill, delay 0), a new connection each"
    say ""
    say "The server's user+system time (its /proc stat, children it reaped included) over the run, per request; 8 clients. The design's own cost, as in Stevens' comparison of server designs (UNP, chapter 30). Clock ticks are 10 ms, so small totals are coarse."
    say ""
    table_start "stage|requests|req/s|server CPU (s)|server us/request|loadgen us/request|failures"
    csv_start 5-cpu.csv "stage,requests,rps,server_cpu_s,server_us_per_request,client_us_per_request"
    for s in "${SELECTED[@]}"; do
        not_built "$s" 7 && continue
        note "  $s"
        if ! start_stage "$s" --delay-ms 0; then row "$s|$START_ERR||||| "; continue; fi
        f=$TMP/5-$s.json
        lg "$f" -n "$CPU_N" -c 8 --no-keepalive --bills 1 --timeout-ms 10000 \
            --watch-pid "$SPID" "http://127.0.0.1:$SPORT/api/exchange_sync"
        stop_stage
        n=$(jget "$f" requests)
        [ "$n" = 0 ] && n=1
        per=$(num %.0f "$(jget "$f" server_cpu_s) * 1e6 / $n")
        cper=$(num %.0f "$(jget "$f" client_cpu_s) * 1e6 / $n")
        row "$s|$(jget "$f" requests)|$(num %.0f "$(jget "$f" rps)")|$(jget "$f" server_cpu_s)|$per|$cper|$(failures "$f")${STOP_NOTE:+ ($STOP_NOTE)}"
        csv_row 5-cpu.csv "$s,$(jget "$f" requests),$(jget "$f" rps),$(jget "$f" server_cpu_s),$per,$cper"
    done
    say ""
    chart 5-cpu.csv 5-cpu.png "Server CPU per request (new connection each)" "microseconds" "" \
        "5:server" "6:loadgen"
fi

# ---- 6. the 06 pitfall ----------------------------------------------------

if scenario 6; then
    say "## 6. The 06 pitfall: blocking calls and CPU work inside coroutines"
    say ""
    if [[ " ${BUILT[*]} " != *" 06-coroutines "* ]]; then
        say "06-coroutines is not built: skipped."
        say ""
    else
        note "6/6 pitfall: 06 normal, --blocking-bug, --cpu-ms $PIT_CPU, --cpu-ms $PIT_CPU --offload"
        say "$PIT_N concurrent sync requests (one bill of $PIT_DELAY ms) while one client keeps asking GET / for ${PIT_PROBE_S} s: does the loop stay responsive?"
        say ""
        # The ideal with CPU work: the delay, and the requests' CPU shared
        # by the cores (waits overlap, CPU work only as far as cores go).
        cores=$(nproc 2>/dev/null || echo 1)
        cpu_ideal_ms=$(num %.0f "$PIT_DELAY + $PIT_N * $PIT_CPU / $cores")
        say "Ideal if concurrent: the delay; with CPU work, the delay plus $PIT_N requests' CPU shared by $cores cores ($PIT_DELAY + $PIT_N x $PIT_CPU / $cores ms)."
        say ""
        table_start "variant|sync wall (s)|ideal if concurrent (s)|sync ok|GET / answered|GET / p50 (ms)|GET / p99 (ms)|GET / max (ms)"
        csv_start 6-pitfall.csv "variant,sync_wall_s,ideal_s,get_p50_ms,get_p99_ms,get_max_ms"
        for v in normal blocking-bug cpu cpu-offload; do
            note "  06-coroutines $v"
            args=(--delay-ms "$PIT_DELAY") ideal_ms=$PIT_DELAY label="normal"
            case $v in
            blocking-bug) args+=(--blocking-bug) label="--blocking-bug" ;;
            cpu) args+=(--cpu-ms "$PIT_CPU") ideal_ms=$cpu_ideal_ms label="--cpu-ms $PIT_CPU" ;;
            cpu-offload) args+=(--cpu-ms "$PIT_CPU" --offload) ideal_ms=$cpu_ideal_ms label="--cpu-ms $PIT_CPU --offload" ;;
            esac
            if ! start_stage 06-coroutines "${args[@]}"; then row "$label|$START_ERR|||||| "; continue; fi
            p=$TMP/6-$v-probe.json f=$TMP/6-$v-sync.json
            "$LG" --json --quiet -c 1 -d "$PIT_PROBE_S" --timeout-ms 10000 \
                "http://127.0.0.1:$SPORT/" >"$p" 2>"$p.err" &
            probe=$!
            CLIENTS+=("$probe")
            sleep 0.2
            lg "$f" -n "$PIT_N" -c "$PIT_N" --bills 1 --timeout-ms 30000 \
                "http://127.0.0.1:$SPORT/api/exchange_sync"
            wait "$probe"
            stop_stage
            ideal=$(num %.2f "$ideal_ms / 1000")
            row "$label|$(num %.2f "$(jget "$f" wall_s)")|$ideal|$(jget "$f" ok)|$(jget "$p" ok)|$(ms "$(jget "$p" p50_ms)")|$(ms "$(jget "$p" p99_ms)")|$(ms "$(jget "$p" max_ms)")${STOP_NOTE:+ ($STOP_NOTE)}"
            csv_row 6-pitfall.csv "$label,$(jget "$f" wall_s),$ideal,$(jget "$p" p50_ms),$(jget "$p" p99_ms),$(jget "$p" max_ms)"
        done
        say ""
        chart 6-pitfall.csv 6-pitfall.png "06: GET / latency while $PIT_N sync requests run" "milliseconds (log)" log \
            "5:GET / p99" "6:GET / max"
    fi
fi

# ---- 7. designs: bench/designs.sh ------------------------------------------

# shellcheck source=bench/designs.sh
. "$BENCH_DIR/designs.sh"
if scenario 7; then
    designs_scenario
fi

# ---- anchors, bytes per client, latency, cost per request ------------------
# Their own files beside this one, sourced: "anchors" (04-06 beside nginx
# and FastAPI, ratio columns), "bytes" (1000 to 100,000 clients at once,
# the server's memory per client), "latency" (an open loop, and a stall
# seen by a closed and an open loop) and "cost" (CPU, system calls and
# context switches per request, every stage).

# shellcheck source=bench/anchors.sh
. "$BENCH_DIR/anchors.sh"
# shellcheck source=bench/scale.sh
. "$BENCH_DIR/scale.sh"
# shellcheck source=bench/latency.sh
. "$BENCH_DIR/latency.sh"
# shellcheck source=bench/cost.sh
. "$BENCH_DIR/cost.sh"
SCALE_FAILED=
if scenario anchors; then bench_anchors; fi
if scenario bytes; then bench_scale; fi
if scenario latency; then bench_latency; fi
if scenario cost; then bench_cost; fi

# ---- readiness against completion -----------------------------------------
# Its own file, sourced: "uring" (05 and 06 on epoll and on io_uring beside
# nginx: system calls and CPU per keep-alive request, interleaved rounds).
# shellcheck source=bench/uring.sh
. "$BENCH_DIR/uring.sh"
if scenario uring; then bench_uring; fi

# ---- the switch ------------------------------------------------------------
# 06's two ways to switch coroutines, side by side: the bare switch timed by
# examples/switch_cost, then 06 itself with each, GET / on 64 keep-alive
# connections. glibc's swapcontext restores the signal mask: one system
# call a switch, which _setjmp/_longjmp skip.

if scenario switch; then
    note "switch: 06 --switch setjmp and --switch swapcontext"
    say "## The switch: 06 with _setjmp/_longjmp and with swapcontext"
    say ""
    say "ns per switch from build/examples/switch_cost (a ping-pong between two contexts, on the scheduler's own code for setjmp); then 06 serving GET / on 64 keep-alive connections for ${TP_GET_S} s with each switch (loadgen --engine raw, 1 thread)."
    say ""
    table_start "switch|ns per switch|06 GET / req/s|06 GET / p99 (ms)|failures"
    sc=$B/examples/switch_cost
    [ -x "$sc" ] && "$sc" >"$TMP/switch.txt" 2>/dev/null
    for sw in setjmp swapcontext; do
        ns=$(awk -v k="$sw" '$1 == k { print $2 }' "$TMP/switch.txt" 2>/dev/null)
        START_ERR="06-coroutines not selected"
        if ! selected 06-coroutines "${BENCH_STAGES:-}" ||
           ! start_stage 06-coroutines --delay-ms 0 --switch "$sw"; then
            row "$sw|${ns:--}|-|-|$START_ERR"
            continue
        fi
        g=$TMP/switch-$sw.json
        lg "$g" --engine raw -c 64 -d "$TP_GET_S" --timeout-ms 10000 \
            "http://127.0.0.1:$SPORT/"
        stop_stage
        row "$sw|${ns:--}|$(num %.0f "$(jget "$g" rps)")|$(ms "$(jget "$g" p99_ms)")|$(failures "$g")"
    done
    say ""
    # The shared stack's price (06 --stack shared): a resume copies the
    # parked frames back in, so it grows with the bytes saved.
    say "ns per resume against the bytes a parked coroutine saved, from build/examples/stack_cost (100 coroutines taking turns through the scheduler, setjmp; medians of 5 rounds, min-max): a stack each against 06's --stack shared, which copies those bytes out and back in."
    say ""
    table_start "frames beyond the minimum (bytes)|copied (bytes)|stack each (ns per resume)|shared stack (ns per resume)"
    st=$B/examples/stack_cost
    if [ -x "$st" ] && "$st" setjmp >"$TMP/stack.txt" 2>/dev/null; then
        awk '$1 ~ /^[0-9]+$/ && NF >= 6 { printf "%s|%s|%s %s|%s %s\n", $1, $2, $3, $4, $5, $6 }' \
            "$TMP/stack.txt" | while IFS= read -r r; do row "$r"; done
        say ""
        say "$(grep '^a parked coroutine' "$TMP/stack.txt")"
    else
        row "-|-|-|$st did not run"
    fi
    say ""
fi

scenario done
charts=
command -v gnuplot >/dev/null 2>&1 && charts=" and PNG charts"
say "Finished in $(($(date +%s) - START_S)) s. Tables in $REPORT; CSV files$charts beside it."
if [ -s "$TMP/bugs" ]; then
    note "BUG: bench/ called $(sort -u "$TMP/bugs" | tr '\n' ' ')which nothing defines: some cells are empty"
    exit 1
fi
if [ -n "$SCALE_FAILED" ]; then
    note "a bytes-per-client row did not answer every client (see its row)"
    exit 1
fi
