#!/usr/bin/env bash
# s7-turns: the event loop counts its turns (epoll_wait calls) and 05 logs "loop: N turns" at its stop
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
ex_start s "$B/05-epoll-callbacks"
for i in 1 2 3; do curl -s -m 5 -o /dev/null "http://127.0.0.1:$PORT/"; done
sleep 1 # idle: a loop that sleeps until something happens makes no turn
ex_stop "$PID"
# One line, when the loop returns (a line per turn would flood the log).
lines=$(grep -c 'loop: [0-9]* turns' "$EX_DIR/s.log")
line=$(grep -Eo 'loop: [0-9]+ turns' "$EX_DIR/s.log" | tail -1)
n=${line//[^0-9]/}
msg="05 after 3 GET / and an idle second logged $lines 'loop: N turns' line(s), the last '${line:-none}' (want one, N from 3 to 30)"
[ "$lines" = 1 ] && [ -n "$n" ] && [ "$n" -ge 3 ] && [ "$n" -le 30 ] && ex_pass "$msg"
ex_fail "$msg"
