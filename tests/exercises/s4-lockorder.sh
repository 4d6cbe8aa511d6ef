#!/usr/bin/env bash
# s4-lockorder: examples/deadlock takes its two mutexes in one order in both threads and finishes
# needs: examples/deadlock
. "$(dirname "$0")/lib.sh"
# Finishing proves little: a run can be lucky (no pause between the two
# locks, or the threads one after the other) with the orders still
# opposed. ThreadSanitizer records every thread's lock order and reports
# an inversion even in a lucky run, so the program is built with it here.
bin=$EX_DIR/deadlock
${CC:-cc} -fsanitize=thread -g -pthread examples/deadlock.c -o "$bin" 2>"$EX_DIR/cc.log" ||
    ex_fail "could not build examples/deadlock.c with -fsanitize=thread: $(head -3 "$EX_DIR/cc.log")"
out=$(timeout 20 "$bin" 2>&1)
rc=$?
out2=$(timeout 20 "$bin" --one-at-a-time 2>&1)
rc2=$?
inversions=$(grep -c 'WARNING: ThreadSanitizer: lock-order-inversion' <<<"$out"$'\n'"$out2")
msg="examples/deadlock under ThreadSanitizer exited $rc, and $rc2 with --one-at-a-time; '$(grep -m1 -E '^(no )?deadlock' <<<"$out")'; $inversions lock-order inversion(s) reported (want 0, 0, 'no deadlock', and no inversion)"
[ $rc = 0 ] && [ $rc2 = 0 ] && grep -q '^no deadlock' <<<"$out" && [ "$inversions" = 0 ] && ex_pass "$msg"
ex_fail "$msg"
