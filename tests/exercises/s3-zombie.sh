#!/usr/bin/env bash
# s3-zombie: 02's parent stops reaping, and its dead children stay zombies
# needs: 02-fork
. "$(dirname "$0")/lib.sh"
ex_start s "$B/02-fork" --quiet
for i in 1 2 3; do curl -s -m 5 -o /dev/null "http://127.0.0.1:$PORT/"; done
sleep 0.3
z=$(ex_children "$PID" Z | wc -l)
msg="after 3 requests to 02, $z of its children are zombies (state Z; want 3)"
ex_verdict "$msg" [ "$z" -ge 3 ]
