#!/usr/bin/env bash
# s3-crash: a 02 child that aborts on GET /crash dies alone; the parent logs the signal and serves on
# needs: 02-fork
. "$(dirname "$0")/lib.sh"
ex_start s "$B/02-fork"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/crash")
sleep 0.2
after=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")
sig=$(grep -c 'killed by signal 6' "$EX_DIR/s.log")
msg="GET /crash answered '$code' (want no answer: 000), the parent logged 'killed by signal 6' $sig time(s) (want 1), GET / then answered $after (want 200)"
[ "$code" = 000 ] && [ "$sig" = 1 ] && [ "$after" = 200 ] && ex_pass "$msg"
ex_fail "$msg"
