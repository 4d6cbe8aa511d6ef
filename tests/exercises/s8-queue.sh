#!/usr/bin/env bash
# s8-queue: examples/queue.c's queue holds one item (maxsize=1), so the
# producer waits after its second put until the consumer's first get.
B=${B:-build}
got=$(timeout 10 "$B/examples/queue" 2>&1 | head -3 | tr '\n' ' ')
if [ "$got" = "put 0 put 1 got 0 " ]; then
    echo "s8-queue: put 0, put 1, got 0: the queue holds one item"
    exit 0
fi
echo "s8-queue: looked for 'put 0, put 1, got 0' from $B/examples/queue; got: $got"
exit 1
