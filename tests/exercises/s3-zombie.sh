#!/usr/bin/env bash
# s3-zombie: 02's parent stops reaping, and its dead children stay zombies
# needs: 02-fork
. "$(dirname "$0")/lib.sh"
ex_start s "$B/02-fork" --quiet
for i in 1 2 3; do curl -s -m 5 -o /dev/null "http://127.0.0.1:$PORT/"; done
sleep 0.3
z=$(ex_children "$PID" Z | wc -l)
# The parent still drains the SIGCHLD pipe: otherwise the pipe stays
# readable and its poll() returns at once, for ever. Its CPU time over an
# idle second tells: none when it sleeps in poll(), tens of clock ticks
# when it spins (still 5 or more with ten other programs on the 2 cores).
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$PID/stat"; }
c0=$(cpu)
sleep 1
ticks=$(( $(cpu) - c0 ))
# A parent that never reaps waits out its whole stop grace (15 s) for
# children it cannot see die: this one needs no clean stop.
kill -KILL "$PID"
msg="after 3 requests to 02, $z of its children are zombies (state Z; want 3), and the idle parent used $ticks clock ticks of CPU in a second (want under 5: asleep in poll)"
ex_verdict "$msg" [ "$z" = 3 -a "$ticks" -lt 5 ]
