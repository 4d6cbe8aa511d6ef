#!/usr/bin/env bash
# s6-spin: the spinning reader of examples/eagain_spin sleeps between tries and uses under 50% cpu
# needs: examples/eagain_spin
. "$(dirname "$0")/lib.sh"
line=$(timeout 20 "$B/examples/eagain_spin" 2>&1 | grep '^spin')
cpu=$(sed -n 's/.*cpu *\([0-9]*\)%.*/\1/p' <<<"$line")
[ -n "$cpu" ] && [ "$cpu" -lt 50 ] && ex_pass "the spinning reader used $cpu% cpu"
ex_fail "looked for a 'spin' line under 50% cpu from $B/examples/eagain_spin; got: ${line:-nothing}"
