#!/usr/bin/env bash
# s14-pools: examples/pools.c has a fourth mode, "serial": one client
# sending every request in turn, as the series' plain loop of requests.get.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s14-pools "$B/05-epoll-callbacks" --delay-ms 0
got=$(timeout 30 "$B/examples/pools" "http://127.0.0.1:$port/api/exchange_sync" 20 4 2>&1)
if grep -Eq '^serial +20 requests, .* 20 answered 200$' <<<"$got"; then
    echo "s14-pools: $(grep '^serial' <<<"$got")"
    exit 0
fi
echo "s14-pools: looked for a 'serial ... 20 answered 200' line from $B/examples/pools; got: $(tr '\n' ' ' <<<"$got")"
exit 1
