#!/usr/bin/env bash
# Runs the test programs given as arguments, JOBS at a time (make test:
# TEST_JOBS, default 2). Most of a test's time is spent waiting on servers'
# timers and deadlines, not on the CPU, so two at a time roughly halve the
# wait on two cores. Each program's output goes to a log and is printed
# whole when it ends, so outputs never interleave; the summary lists the
# failures. Usage: tests/run_tests.sh JOBS test-binary...
set -u
jobs=${1:-2}
shift
logdir=$(mktemp -d "${TMPDIR:-/tmp}/make-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT
declare -A started=()
failed=()
start=$SECONDS

# Prints one finished program's log and records its verdict.
finish() {
    local pid=$1 rc=$2 t=${started[$1]}
    local name
    name=$(basename "$t")
    echo "== $t ($((SECONDS - ${started_at[$pid]})) s)"
    cat "$logdir/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name")
    unset "started[$pid]"
}

declare -A started_at=()
for t in "$@"; do
    while [ "${#started[@]}" -ge "$jobs" ]; do
        wait -n -p done_pid
        rc=$?
        finish "$done_pid" "$rc"
    done
    "$t" >"$logdir/$(basename "$t").log" 2>&1 &
    started[$!]=$t
    started_at[$!]=$SECONDS
done
while [ "${#started[@]}" -gt 0 ]; do
    wait -n -p done_pid
    rc=$?
    finish "$done_pid" "$rc"
done

echo "make test: $# programs in $((SECONDS - start)) s, $jobs at a time"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "make test: FAILED: ${failed[*]}"
    exit 1
fi
