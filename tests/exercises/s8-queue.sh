#!/usr/bin/env bash
# s8-queue: examples/queue's queue holds one item (maxsize=1): put 0, put 1, then got 0
# needs: examples/queue
. "$(dirname "$0")/lib.sh"
got=$(timeout 10 "$B/examples/queue" 2>&1 | head -3 | tr '\n' ' ')
[ "$got" = "put 0 put 1 got 0 " ] && ex_pass "put 0, put 1, got 0: the queue holds one item"
ex_fail "looked for 'put 0, put 1, got 0' from $B/examples/queue; got: $got"
