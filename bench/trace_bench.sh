#!/usr/bin/env bash
# The cost of --trace, measured the way LECTURE.md states it: two
# servers at once, A and B, driven in turn (A B, then B A, ...) with GET /
# keep-alive by loadgen --engine raw -c C for DUR seconds each; per run,
# requests/s and the server's CPU time per request (utime + stime from
# /proc/PID/stat before and after), which a shared machine disturbs far
# less than requests/s.
#
# Usage: bench/trace_bench.sh A_CMD B_CMD [PAIRS] [DUR]
#   e.g. C=64 bench/trace_bench.sh build/05-epoll-callbacks \
#          "build/05-epoll-callbacks --trace /tmp/t.trace" 5 3
# Both commands get --port 0 --quiet. LG=path/to/loadgen (build/loadgen),
# C=connections (8). A trace grows by about 50 MB a run: write it under
# /tmp. Prints "A RPS CPU_US B RPS CPU_US" per pair, then medians
# [min..max].
set -u
[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
LG=${LG:-build/loadgen}; PAIRS=${3:-8}; DUR=${4:-2}; C=${C:-8}
T=$(mktemp -d)
trap 'kill $A $B 2>/dev/null; wait; rm -rf "$T"' EXIT
$1 --port 0 --quiet > $T/a.out 2>/dev/null & A=$!
$2 --port 0 --quiet > $T/b.out 2>/dev/null & B=$!
sleep 0.5
pa=$(sed -n 's/.*:\([0-9]*\)$/\1/p' $T/a.out); pb=$(sed -n 's/.*:\([0-9]*\)$/\1/p' $T/b.out)
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
run() { # pid port -> "rps us_cpu_per_request"
  local c0 n c1; c0=$(cpu $1)
  n=$($LG --engine raw --keepalive --quiet --json -c $C -d $DUR http://127.0.0.1:$2/ | sed -n 's/.*"requests": *\([0-9]*\).*/\1/p')
  c1=$(cpu $1)
  awk -v n=$n -v d=$DUR -v c=$((c1 - c0)) -v hz=$(getconf CLK_TCK) 'BEGIN { printf "%.0f %.2f", n / d, c * 1e6 / hz / n }'
}
for i in $(seq $PAIRS); do
  if [ $((i % 2)) = 1 ]; then a=$(run $A $pa); b=$(run $B $pb); else b=$(run $B $pb); a=$(run $A $pa); fi
  echo "A $a B $b"
done | tee "$T/runs"
awk '{ ra[NR] = $2; ca[NR] = $3; rb[NR] = $5; cb[NR] = $6; q[NR] = $6 / $3 }
function med(v, n,   i, j, t, w) { for (i = 1; i <= n; i++) w[i] = v[i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (w[j] < w[i]) { t = w[i]; w[i] = w[j]; w[j] = t }
    return sprintf("%.2f [%.2f..%.2f]", n % 2 ? w[(n + 1) / 2] : (w[n / 2] + w[n / 2 + 1]) / 2, w[1], w[n]) }
END { print "CPU us/request: A " med(ca, NR) ", B " med(cb, NR) ", B/A " med(q, NR)
      print "requests/s:     A " med(ra, NR) ", B " med(rb, NR) }' "$T/runs"
