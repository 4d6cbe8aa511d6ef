#!/usr/bin/env bash
# s9-fds: examples/fd_limit raises its soft descriptor limit to the hard one first: about 500 connections under a hard limit of 1024, not 60
# needs: examples/fd_limit
. "$(dirname "$0")/lib.sh"
# Started with a soft limit of 128 under a hard one of 1024 (lowered in a
# subshell: any process may lower its limits, and its children inherit
# them). Raised, it opens about (1024 - the few already open) / 2
# connections, both ends being its own; not raised, about 60.
out=$( (ulimit -Sn 128 && ulimit -Hn 1024 && exec timeout 20 "$B/examples/fd_limit") 2>&1)
limit=$(grep '^limit: ' <<<"$out")
line=$(grep ' connections (' <<<"$out")
n=$(sed -n 's/^\([0-9]*\) connections (.*/\1/p' <<<"$line")
msg="under soft 128, hard 1024: '${limit:-no limit line}'; '${line:-no connections line}' (want 'limit: soft 1024, hard 1024' and 480 to 511 connections, then accept: EMFILE)"
[ "$limit" = "limit: soft 1024, hard 1024" ] && [ "${n:-0}" -ge 480 ] && [ "${n:-0}" -le 511 ] &&
    grep -q 'then accept: .*(EMFILE)$' <<<"$line" && ex_pass "$msg"
ex_fail "$msg"
