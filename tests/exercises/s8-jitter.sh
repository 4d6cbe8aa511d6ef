#!/usr/bin/env bash
# s8-jitter: examples/tasks_gather gathers 300, 200, 100 ms and prints each as it finishes: finished 100 200 300, results 300 200 100
# needs: examples/tasks_gather
. "$(dirname "$0")/lib.sh"
out=$(timeout 20 "$B/examples/tasks_gather" 2>&1)
# Only what follows the one-by-one round: the gathered tasks.
rest=$(sed -n '/^awaited one by one/,$p' <<<"$out" | sed 1d)
finished=$(sed -n 's/^finished \([0-9]*\)$/\1/p' <<<"$rest" | tr '\n' ' ')
results=$(sed -n 's/^gathered: results \([0-9 ]*\) in .*/\1/p' <<<"$rest")
ms=$(sed -n 's/^gathered: results .* in \([0-9]*\) ms$/\1/p' <<<"$rest")
msg="gathered round: finished in the order '${finished:-no finished lines}', results '${results:-none}' in ${ms:-?} ms (want finished '100 200 300 ', results '300 200 100', in 290 to 450 ms: the three overlap)"
[ "$finished" = "100 200 300 " ] && [ "$results" = "300 200 100" ] &&
    [ "${ms:-0}" -ge 290 ] && [ "${ms:-0}" -le 450 ] && ex_pass "$msg"
ex_fail "$msg"
