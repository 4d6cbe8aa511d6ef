#!/usr/bin/env bash
# s8-timeout: examples/cancel_timeout runs three 100 ms steps under one 250 ms deadline: two done, the third timed out
# needs: examples/cancel_timeout
. "$(dirname "$0")/lib.sh"
out=$(timeout 20 "$B/examples/cancel_timeout" 2>&1)
line=$(grep '^deadline: ' <<<"$out")
ms=$(sed -n 's/^deadline: 2 of 3 steps done, co_join returned -ETIMEDOUT after \([0-9]*\) ms$/\1/p' <<<"$line")
msg="looked for 'deadline: 2 of 3 steps done, co_join returned -ETIMEDOUT after N ms' with N from 240 to 350; got: ${line:-no deadline line}"
[ -n "$ms" ] && [ "$ms" -ge 240 ] && [ "$ms" -le 350 ] && ex_pass "$msg"
ex_fail "$msg"
