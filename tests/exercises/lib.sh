# Shared by the exercise checks (tests/exercises/<id>.sh), sourced, never
# run. A check starts what it needs on port 0, looks at the answer, the log
# or the timing, prints one line and exits 0 (change made) or 1 (not yet),
# or 77 when a tool it needs is missing (it says which). Every figure it
# looks at has bounds on both sides, and every check keeps the plausible
# mistakes it must reject beside it, in wrong/<id>--<slug>.patch
# (solutions.sh --wrong, make exercises-check, runs them).
B=${B:-build}
EX_ID=$(basename "$0" .sh)
EX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/exercise.XXXXXX")
EX_PIDS=()

ex_cleanup() {
    local pid
    for pid in "${EX_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${EX_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$EX_DIR"
}
trap ex_cleanup EXIT

ex_pass() { echo "PASS $EX_ID: $*"; exit 0; }
ex_fail() { echo "FAIL $EX_ID: $*"; exit 1; }
ex_skip() { echo "SKIP $EX_ID: $*"; exit 77; }
# ex_verdict MSG TEST...: passes if the command TEST... succeeds.
ex_verdict() {
    local msg=$1
    shift
    if "$@"; then ex_pass "$msg"; fi
    ex_fail "$msg"
}

# ex_start NAME BIN ARGS...: starts BIN on a free port with its log in
# $EX_DIR/NAME.log; sets PORT and PID (and NAME_port in the environment's
# sense: the caller keeps PORT if it needs two servers).
ex_start() {
    local name=$1; shift
    command -v "$1" >/dev/null || ex_fail "$1 is not built (run make all examples)"
    # Emptied here, before the server starts: a NAME used twice must not
    # hand the waiter the previous server's announced port (the child's
    # own truncation may come after the first look).
    : >"$EX_DIR/$name.out"
    "$@" --port 0 >>"$EX_DIR/$name.out" 2>"$EX_DIR/$name.log" &
    PID=$!
    EX_PIDS+=("$PID")
    PORT=$("$(dirname "${BASH_SOURCE[0]}")/../../tools/announced-port" \
        "$EX_DIR/$name.out" "$PID" 5) && return 0
    ex_fail "$1 did not start: $(tail -2 "$EX_DIR/$name.log")"
}

# ex_stop PID: SIGTERM and wait (its log is then complete).
ex_stop() {
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

# ex_bills N: a request body with N bills.
ex_bills() {
    local i bills=""
    for i in $(seq "$1"); do
        bills="$bills${bills:+,}{\"denomination_id\":$i,\"denomination\":10.0,\"count\":1}"
    done
    printf '{"request_id":"ex%s","exchange_rate":2,"bills":[%s]}' "$RANDOM" "$bills"
}

# ex_post PORT ROUTE N [CURL ARGS...]: POSTs N bills to /api/ROUTE, prints
# the body.
ex_post() {
    local port=$1 route=$2 n=$3; shift 3
    curl -s -m 20 -X POST "http://127.0.0.1:$port/api/$route" \
        -H 'Content-Type: application/json' -d "$(ex_bills "$n")" "$@"
}

# ex_time_ms CMD...: runs CMD, prints how long it took in ms.
ex_time_ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

# ex_children PID [STATE]: the pids of PID's children (in STATE only, e.g.
# Z for zombies), one a line, read from /proc/*/stat (after "pid (comm) ",
# the state and the parent's pid).
ex_children() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v ppid="$1" -v st="${2:-}" '
        { pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
          if (f[2] == ppid && (st == "" || f[1] == st)) print pid }'
}

# ex_sleep_counter: builds $EX_DIR/sleeps.so, which, preloaded
# (LD_PRELOAD), counts the calls to the blocking sleeps a coroutine must
# not make (sleep, usleep, nanosleep, clock_nanosleep) and prints
# "blocking sleeps: N" to standard error at exit. A coroutine's wait that
# blocks the thread looks the same in a program's output as one that
# parks: only the count tells them apart. It also prints "pipe waits: N",
# the polls of one pipe with a timeout: a blocking stage's sleep that a
# stop may cut short (common/shutdown.h, shutdown_sleep_ms) is one.
ex_sleep_counter() {
    cat >"$EX_DIR/sleeps.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static atomic_long calls, pipe_waits;
static void report(void)
{
    fprintf(stderr, "blocking sleeps: %ld\npipe waits: %ld\n", atomic_load(&calls),
            atomic_load(&pipe_waits));
}
__attribute__((constructor)) static void start(void) { atexit(report); }
#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))
unsigned sleep(unsigned s) { calls++; return REAL(sleep)(s); }
int usleep(useconds_t us) { calls++; return REAL(usleep)(us); }
int nanosleep(const struct timespec *t, struct timespec *left) { calls++; return REAL(nanosleep)(t, left); }
int clock_nanosleep(clockid_t c, int f, const struct timespec *t, struct timespec *left)
{ calls++; return REAL(clock_nanosleep)(c, f, t, left); }
int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    struct stat st;
    if (n == 1 && timeout > 0 && fstat(fds[0].fd, &st) == 0 && S_ISFIFO(st.st_mode))
        pipe_waits++;
    return REAL(poll)(fds, n, timeout);
}
C
    ${CC:-cc} -shared -fPIC -O2 "$EX_DIR/sleeps.c" -o "$EX_DIR/sleeps.so" -ldl 2>"$EX_DIR/sleeps.log" ||
        ex_fail "could not build the sleep counter: $(head -3 "$EX_DIR/sleeps.log")"
}

# ex_subreaper: builds $EX_DIR/subreaper, which runs a program as its
# child, waits for it, then collects every process the program left
# behind (PR_SET_CHILD_SUBREAPER: orphans come to it, not to init) and
# prints "program pid: P" and "left behind: N" to standard error. A
# program that forgot to wait for its children leaves them as zombies;
# once it exits they are gone from view, except to a subreaper.
ex_subreaper() {
    cat >"$EX_DIR/subreaper.c" <<'C'
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc < 2 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return 126;
    pid_t p = fork();
    if (p == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int status = 0, left = 0;
    waitpid(p, &status, 0);
    while (wait(NULL) > 0)
        left++;
    fprintf(stderr, "program pid: %d\nleft behind: %d\n", (int)p, left);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
C
    ${CC:-cc} -O2 "$EX_DIR/subreaper.c" -o "$EX_DIR/subreaper" 2>"$EX_DIR/subreaper.log" ||
        ex_fail "could not build the subreaper: $(head -3 "$EX_DIR/subreaper.log")"
}
