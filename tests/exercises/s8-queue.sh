#!/usr/bin/env bash
# s8-queue: examples/queue's queue holds one item (maxsize=1): put 0, put 1, got 0, then each put waits for a got
# needs: examples/queue
. "$(dirname "$0")/lib.sh"
# The whole run, not its start: every item must come out once, in order,
# and the producer may run at most one item ahead of what the consumer holds.
got=$(timeout 10 "$B/examples/queue" 2>&1 | tr '\n' ' ')
want="put 0 put 1 got 0 put 2 got 1 put 3 got 2 put 4 got 3 put 5 got 4 got 5 "
[ "$got" = "$want" ] && ex_pass "the queue holds one item: $got"
ex_fail "looked for '$want' from $B/examples/queue; got: $got"
