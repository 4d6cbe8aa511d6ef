#!/usr/bin/env bash
# s8-cancel: examples/cancel_timeout's worker awaits 50 ms in its cleanup; the cancel's co_join waits for it
# needs: examples/cancel_timeout
. "$(dirname "$0")/lib.sh"
# The cleanup must wait by parking (co_sleep), not by blocking the thread
# (usleep looks the same in the output): the blocking sleeps are counted.
ex_sleep_counter
out=$(LD_PRELOAD=$EX_DIR/sleeps.so timeout 20 "$B/examples/cancel_timeout" 2>&1)
ms=$(sed -n 's/^cancel: worker returned -ECANCELED after \([0-9]*\) ms$/\1/p' <<<"$out")
sleeps=$(sed -n 's/^blocking sleeps: //p' <<<"$out")
done_first=$(sed -n '/cleanup done/{p;q}; /^cancel: /q' <<<"$out")
msg="cancel: '$(grep -m1 '^cancel: ' <<<"$out")'; '${done_first:-no cleanup done line}' before it; ${sleeps:-?} blocking sleeps (want -ECANCELED after 140 to 300 ms, the cleanup done before co_join returns, and 0 blocking sleeps: co_sleep parks)"
[ -n "$ms" ] && [ "$ms" -ge 140 ] && [ "$ms" -le 300 ] && [ -n "$done_first" ] && [ "$sleeps" = 0 ] && ex_pass "$msg"
ex_fail "$msg"
