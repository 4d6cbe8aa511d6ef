#!/usr/bin/env bash
# s7-chain: examples/callback_chain ends each fetch once, by its error path or its 500 ms deadline, closes what it opened, and its loop returns
# needs: examples/callback_chain 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
ex_start s "$B/05-epoll-callbacks" --quiet
ok_port=$PORT
# A server that accepts (the kernel completes the handshake) and never
# answers; and port 1, where nobody listens.
cat >"$EX_DIR/silent.py" <<'PY'
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print("listening on http://127.0.0.1:%d" % s.getsockname()[1], flush=True)
time.sleep(60)
PY
python3 "$EX_DIR/silent.py" >"$EX_DIR/silent.out" 2>"$EX_DIR/silent.log" &
EX_PIDS+=($!)
silent=$(tools/announced-port "$EX_DIR/silent.out" $! 5) || ex_fail "the silent server did not start"
out=$(timeout 5 "$B/examples/callback_chain" "$ok_port" 1 "$silent" 2>&1)
rc=$?
one=$(grep -c '^fetch 1 ' <<<"$out")
two=$(grep -c '^fetch 2 ' <<<"$out")
three=$(grep -c '^fetch 3 ' <<<"$out")
read -r ms before after <<<"$(sed -n 's/^3 fetches ended in \([0-9]*\) ms; descriptors: \([0-9]*\) before, \([0-9]*\) after$/\1 \2 \3/p' <<<"$out")"
msg="callback_chain (a server, a refused port, a silent server) exited $rc with $one, $two, $three lines for fetches 1-3: $(tr '\n' '|' <<<"$out") (want status 0, one line each: HTTP/1.1 200 OK, 'error: connect: Connection refused', 'error: no answer in 500 ms'; all ended in 480 to 900 ms, as many descriptors after as before)"
[ "$rc" = 0 ] && [ "$one$two$three" = 111 ] &&
    grep -q '^fetch 1 .*: HTTP/1.1 200 OK,' <<<"$out" &&
    grep -q '^fetch 2 .*: error: connect: Connection refused,' <<<"$out" &&
    grep -q '^fetch 3 .*: error: no answer in 500 ms,' <<<"$out" &&
    [ "${ms:-0}" -ge 480 ] && [ "${ms:-0}" -le 900 ] && [ -n "$before" ] && [ "$before" = "$after" ] &&
    ex_pass "$msg"
ex_fail "$msg"
