#!/usr/bin/env bash
# make test-cross ARCH=arm64: the test programs of a cross build, run on
# this machine under qemu-user.
#
# Without binfmt_misc the kernel cannot exec an arm64 program, so every
# program of the build gets a wrapper in B/run/ (same name, same folder
# layout) that runs it under qemu-user, and the tests are pointed there
# with STAGE_BIN_DIR, the variable the harness already takes its programs
# from. A server's wrapper execs qemu in place, so the pid a test started
# is the server's (tests read /proc/PID) and it dies with its test
# (PR_SET_PDEATHSIG, set before the exec, survives it); a CPU-time limit
# stops one that spins. A test program's wrapper runs it under timeout.
# qemu runs without -L: the multiarch loader and libraries are found at
# their own paths, and -L /usr/aarch64-linux-gnu (another libc) leaves
# forked children spinning.
#
# What qemu itself cannot do is skipped by name, with the reason, from the
# table below (a test program is not run; a single test is named in
# HARNESS_SKIP, see tests/harness.h); everything else must pass.
# Programs run TEST_JOBS at a time (make test-cross: 1, as under TSan).
# Usage: tests/cross/run.sh ARCH B TEST_PROGRAM...
set -u

# name                                   why qemu-user (7.2) cannot run it
SLOW="qemu runs the CPU about 10 times slower than the host (a printf loop: 0.9 s here, 11 s under qemu-aarch64), and this test's time bound is a real CPU's: under emulation it passes or fails with the machine's load"
SKIPS="
test_doc_blocks                          qemu has no PR_SET_CHILD_SUBREAPER (prctl fails with EINVAL), and the block runner adopts what each block leaves behind with it
test_solutions                           it builds patched copies of the tree and runs their programs from shell scripts: without binfmt_misc only the build's own programs, through their wrappers, run under qemu
exclusive_listener_wakes_one_loop        (test_pools) /proc/self/task/N/syscall shows the host's number of the call qemu is blocked in, not arm64's
many_sync_requests_one_thread_one_delay  (test_select_epoll) qemu runs a thread of its own in every process, so a one-thread server counts 2 in /proc/PID/status
slow_requests_overlap_on_one_thread      (test_tiny) the same: a tiny one-thread server counts 2 threads under qemu
two_thousand_sync_requests_take_about_one_delay  (test_coroutines) $SLOW
offloaded_cpu_work_keeps_the_loop_responsive     (test_coroutines) $SLOW
timeline_draws_a_wall_for_a_concurrent_server    (test_loadgen) $SLOW
sigint_stops_the_run_and_still_reports           (test_loadgen) $SLOW
"

arch=$1 b=$2
shift 2
case $arch in
arm64) qemu="qemu-aarch64" ;;
*) echo "test-cross: no qemu known for ARCH=$arch" >&2; exit 2 ;;
esac
command -v "$qemu" >/dev/null || {
    echo "test-cross: $qemu is missing (tools/deps.sh --cross $arch installs it)" >&2
    exit 2
}
TEST_TIMEOUT_S=${TEST_TIMEOUT_S:-900} # one test program, under emulation
CPU_LIMIT_S=600                       # CPU seconds of one server or tool

top=$(pwd)
run=$b/run
rm -rf "$run"
# One wrapper per program of the build: B/NAME -> B/run/NAME.
wrap() {
    local bin=$1 out=$run/${1#"$b"/} how
    mkdir -p "$(dirname "$out")"
    case $bin in
    */tests/*) how="exec timeout -k 10 $TEST_TIMEOUT_S" ;;
    *) how="ulimit -t $CPU_LIMIT_S; exec" ;;
    esac
    # shellcheck disable=SC2016 # "$0" and "$@" are the wrapper's own
    printf '#!/bin/sh\n# %s under qemu-user (tests/cross/run.sh)\n%s %s -0 "$0" %s "$@"\n' \
        "$bin" "$how" "$qemu" "$top/$bin" >"$out"
    chmod +x "$out"
}
while IFS= read -r -d '' f; do
    wrap "$f"
done < <(find "$b" -path "$run" -prune -o -path "$b/obj" -prune -o \
    -type f -perm -u+x -print0)

echo "test-cross: $b under $("$qemu" --version | head -1)"
echo "test-cross: skipped, as qemu cannot run them:"
skip_tests=""
while read -r name why; do
    [ -n "$name" ] || continue
    echo "  SKIP $name: $why"
    case $name in
    test_*) ;;
    *) skip_tests="$skip_tests $name" ;;
    esac
done <<<"$SKIPS"
tests=()
for t in "$@"; do
    grep -q "^${t##*/} " <<<"$SKIPS" || tests+=("$run/${t#"$b"/}")
done
HARNESS_SKIP=${skip_tests# } STAGE_BIN_DIR=$run \
    exec ./tests/run_tests.sh "${TEST_JOBS:-1}" "${tests[@]}"
