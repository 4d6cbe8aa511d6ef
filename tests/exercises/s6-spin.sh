#!/usr/bin/env bash
# s6-spin: the spinning reader of examples/eagain_spin sleeps between tries: under 50% cpu and under 20000 reads in its second
# needs: examples/eagain_spin
. "$(dirname "$0")/lib.sh"
# Both: on a loaded machine a reader that still spins gets a small share of
# a core (14% was seen), yet makes hundreds of thousands of reads; one that
# sleeps 1 ms between tries makes about a thousand.
line=$(timeout 20 "$B/examples/eagain_spin" 2>&1 | grep '^spin')
cpu=$(sed -n 's/.*cpu *\([0-9]*\)%.*/\1/p' <<<"$line")
calls=$(sed -n 's/.*, \([0-9]*\) system calls.*/\1/p' <<<"$line")
[ -n "$cpu" ] && [ -n "$calls" ] && [ "$cpu" -lt 50 ] && [ "$calls" -lt 20000 ] &&
    ex_pass "the spinning reader used $cpu% cpu, $calls reads"
ex_fail "looked for a 'spin' line under 50% cpu and 20000 reads from $B/examples/eagain_spin; got: ${line:-nothing}"
