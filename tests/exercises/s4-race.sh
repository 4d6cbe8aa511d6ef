#!/usr/bin/env bash
# s4-race: examples/race holds a mutex across its read, yield and write: no update lost
# needs: examples/race
. "$(dirname "$0")/lib.sh"
line=$(timeout 10 "$B/examples/race" 2>&1 | grep '^counter: ')
lost=$(sed -n 's/^counter: [0-9]* of 20000, \([0-9]*\) updates lost$/\1/p' <<<"$line")
msg="$B/examples/race said '${line:-nothing}' (want 0 of its 20000 additions lost)"
ex_verdict "$msg" [ "${lost:-x}" = 0 ]
