#!/usr/bin/env bash
# s8-gen: examples/gen_sched runs a third task, C, counting to 4, interleaved with A and B
# needs: examples/gen_sched
. "$(dirname "$0")/lib.sh"
# C counts one step further than A and B, so its last line comes alone,
# after the others have ended: a scheduler that stops when two tasks have
# ended, or a C that shares another task's callee, shows a different text.
# Built here with AddressSanitizer and UBSan too: a third task indexing a
# callee array of two prints the right text while writing past its end.
bin=$EX_DIR/gen_sched
${CC:-cc} -fsanitize=address,undefined -fno-sanitize-recover=all -g examples/gen_sched.c \
    -o "$bin" 2>"$EX_DIR/cc.log" ||
    ex_fail "could not build examples/gen_sched.c with -fsanitize=address,undefined: $(head -3 "$EX_DIR/cc.log")"
out=$(timeout 10 "$bin" 2>&1)
rc=$?
got=$(grep -E '^[A-Z] [0-9]+ [0-9]+$' <<<"$out" | tr '\n' ' ')
want="A 0 0 B 0 0 C 0 0 A 1 1 B 1 1 C 1 1 A 2 3 B 2 3 C 2 3 C 3 6 "
report=$(grep -m1 -o 'ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|runtime error: .*' <<<"$out")
[ "$got" = "$want" ] && [ "$rc" = 0 ] && [ -z "$report" ] && ex_pass "three tasks interleave, no sanitizer report: $got"
ex_fail "looked for '$want' from examples/gen_sched.c (built with ASan and UBSan), exit status 0 and no report; got: '$got', status $rc${report:+, $report}"
