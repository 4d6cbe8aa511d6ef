# Sourced by the exercise checks that need a server: serve ID BIN ARGS...
# starts BIN --quiet --port 0 ARGS in the background, sets $pid and $port
# (read from its "listening on" line), and stops it when the check exits.
# If it does not listen within 5 s, the check prints why and exits 1.
serve() {
    local id=$1 bin=$2
    shift 2
    serve_out=$(mktemp)
    "$bin" --quiet --port 0 "$@" >"$serve_out" 2>&1 &
    pid=$!
    trap '{ kill -9 $pid; wait $pid; } 2>/dev/null; rm -f "$serve_out"' EXIT
    port=
    for _ in $(seq 50); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$serve_out")
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "$id: $bin did not start"
    exit 1
}
