#!/usr/bin/env bash
# s6-spin: the spinning reader of examples/eagain_spin.c sleeps between
# tries, so it no longer burns a core (its cpu falls below 50%).
B=${B:-build}
line=$(timeout 20 "$B/examples/eagain_spin" 2>&1 | grep '^spin')
cpu=$(sed -n 's/.*cpu *\([0-9]*\)%.*/\1/p' <<<"$line")
if [ -n "$cpu" ] && [ "$cpu" -lt 50 ]; then
    echo "s6-spin: the spinning reader used $cpu% cpu: done"
    exit 0
fi
echo "s6-spin: looked for a 'spin' line under 50% cpu from $B/examples/eagain_spin; got: ${line:-nothing}"
exit 1
