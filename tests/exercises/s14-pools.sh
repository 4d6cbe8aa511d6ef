#!/usr/bin/env bash
# s14-pools: examples/pools.c has a fourth mode, "serial": one client
# sending every request in turn, as the series' plain loop of requests.get.
B=${B:-build}
out=$(mktemp)
"$B/05-epoll-callbacks" --quiet --port 0 --delay-ms 0 >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
port=
for _ in $(seq 50); do
    port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "s14-pools: 05 did not start"; exit 1; }
got=$(timeout 30 "$B/examples/pools" "http://127.0.0.1:$port/api/exchange_sync" 20 4 2>&1)
if grep -Eq '^serial +20 requests, .* 20 answered 200$' <<<"$got"; then
    echo "s14-pools: $(grep '^serial' <<<"$got")"
    exit 0
fi
echo "s14-pools: looked for a 'serial ... 20 answered 200' line from $B/examples/pools; got: $(tr '\n' ' ' <<<"$got")"
exit 1
