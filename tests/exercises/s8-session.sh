#!/usr/bin/env bash
# s8-session: examples/session_closed.c awaits its task before freeing the session: ASan and LeakSanitizer stay silent
# needs: examples/session_closed
. "$(dirname "$0")/lib.sh"
# Built here with -fsanitize=address: the use-after-free is what it shows.
bin=$EX_DIR/session_closed
${CC:-cc} -fsanitize=address -g examples/session_closed.c -o "$bin" 2>/dev/null ||
    ex_fail "could not build examples/session_closed.c with -fsanitize=address"
out=$("$bin" 2>&1)
rc=$?
[ $rc -eq 0 ] && grep -q '^GET http' <<<"$out" && ! grep -q 'ERROR: .*Sanitizer' <<<"$out" &&
    ex_pass "the task ran before the session closed; ASan and LeakSanitizer are silent"
ex_fail "looked for a clean ASan run (no use after free, no leak) of examples/session_closed.c printing 'GET http...'; got status $rc, '$(grep -m1 '^GET' <<<"$out")', '$(grep -m1 -o 'ERROR: [A-Za-z]*Sanitizer: [a-z -]*' <<<"$out")'"
