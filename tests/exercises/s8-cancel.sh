#!/usr/bin/env bash
# s8-cancel: examples/cancel_timeout's worker awaits 50 ms in its cleanup; the cancel's co_join waits for it
# needs: examples/cancel_timeout
. "$(dirname "$0")/lib.sh"
out=$(timeout 20 "$B/examples/cancel_timeout" 2>&1)
ms=$(sed -n 's/^cancel: worker returned -ECANCELED after \([0-9]*\) ms$/\1/p' <<<"$out")
msg="cancel: co_join of the worker cancelled at 100 ms returned after ${ms:-no} ms (want 140 or more: its cleanup awaits 50 ms, and co_join waits for the cleanup)"
[ -n "$ms" ] && [ "$ms" -ge 140 ] && ex_pass "$msg"
ex_fail "$msg"
