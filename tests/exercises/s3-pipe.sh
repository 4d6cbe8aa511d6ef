#!/usr/bin/env bash
# s3-pipe: examples/pipe_bills waits its 3 bills in 3 child processes, gets their subtotals back through a pipe, and reaps them
# needs: examples/pipe_bills
. "$(dirname "$0")/lib.sh"
# Run under a subreaper, which counts the children the program left behind.
ex_subreaper
out=$(timeout 10 "$EX_DIR/subreaper" "$B/examples/pipe_bills" 2>&1)
rc=$?
me=$(sed -n 's/^program pid: //p' <<<"$out")
left=$(sed -n 's/^left behind: //p' <<<"$out")
bills=$(sed -n 's/^bill \([0-9]\): \([0-9.]*\) RUB (pid [0-9]*)$/\1:\2/p' <<<"$out" | tr '\n' ' ')
pids=$(sed -n 's/^bill [0-9]: .* (pid \([0-9]*\))$/\1/p' <<<"$out" | grep -vx "${me:-x}" | sort -u | wc -l)
ms=$(sed -n 's/^total 130.00 RUB in \([0-9]*\) ms$/\1/p' <<<"$out")
msg="examples/pipe_bills printed bills '$bills' from $pids pids other than its own, the total in ${ms:-?} ms, exited $rc and left ${left:-?} children behind (want '1:20.00 2:80.00 3:30.00 ' in the request's order, 3 child pids, 280 to 450 ms: the longest bill, 0 and 0)"
[ "$bills" = "1:20.00 2:80.00 3:30.00 " ] && [ "$pids" = 3 ] && [ "$rc" = 0 ] && [ "$left" = 0 ] &&
    [ "${ms:-0}" -ge 280 ] && [ "${ms:-0}" -le 450 ] && ex_pass "$msg"
ex_fail "$msg"
