#!/usr/bin/env bash
# s8-session: examples/session_closed.c awaits its task before the
# session is freed, so AddressSanitizer finds no use-after-free.
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
if ! ${CC:-cc} -fsanitize=address -g examples/session_closed.c -o "$bin" 2>/dev/null; then
    echo "s8-session: could not build examples/session_closed.c with -fsanitize=address"
    exit 1
fi
out=$("$bin" 2>&1)
if [ $? -eq 0 ] && grep -q '^GET http' <<<"$out" && ! grep -q AddressSanitizer <<<"$out"; then
    echo "s8-session: the task ran before the session closed; ASan is silent"
    exit 0
fi
echo "s8-session: looked for a clean ASan run of examples/session_closed.c printing 'GET http...'; got: $(head -2 <<<"$out")"
exit 1
