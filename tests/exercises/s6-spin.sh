#!/usr/bin/env bash
# s6-spin: the spinning reader of examples/eagain_spin sleeps 1 ms between tries: about a thousand reads in its second
# needs: examples/eagain_spin
. "$(dirname "$0")/lib.sh"
# The reads counted, not the CPU share: under load a reader that still
# spins gets a small share of a core (14% was seen) yet makes hundreds of
# thousands of reads. One that sleeps 1 ms after each EAGAIN makes about
# a thousand in the second it waits (fewer when the machine is busy and
# the sleeps overrun); one that sleeps 1 us, some twenty thousand.
line=$(timeout 20 "$B/examples/eagain_spin" 2>&1 | grep '^spin')
calls=$(sed -n 's/.*, \([0-9]*\) system calls.*/\1/p' <<<"$line")
msg="the spinning reader said '${line:-nothing}' (want 200 to 1500 system calls: a 1 ms sleep after each EAGAIN)"
ex_verdict "$msg" [ "${calls:-0}" -ge 200 -a "${calls:-0}" -le 1500 ]
