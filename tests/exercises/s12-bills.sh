#!/usr/bin/env bash
# s12-bills: a request may carry at most 10 bills; an 11th gets 400 whose detail names the limit
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
ex_start s "$B/05-epoll-callbacks" --quiet --delay-ms 0
ten=$(ex_post "$PORT" exchange_sync 10 -o /dev/null -w '%{http_code}')
eleven=$(ex_post "$PORT" exchange_sync 11 -w ' %{http_code}')
detail=${eleven% *}
eleven=${eleven##* }
msg="10 bills answered $ten (want 200), 11 bills answered $eleven $detail (want 400 whose detail says 'at most 10')"
[ "$ten" = 200 ] && [ "$eleven" = 400 ] && grep -q 'at most 10 ' <<<"$detail" && ex_pass "$msg"
ex_fail "$msg"
