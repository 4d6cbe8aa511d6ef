#!/usr/bin/env bash
# s12-body: a body of 16 KiB is taken, one byte more gets 413 whose detail says 16 KiB (the limit was 64 KiB)
# needs: 04-select
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet --delay-ms 0
# A valid request padded with spaces (JSON allows them) to exactly N bytes:
# the limit's two sides, 16384 and 16385 (16 KiB, not 16 kB).
json=$(ex_bills 1)
send() {
    printf '%*s%s' $(($1 - ${#json})) '' "$json" |
        curl -s -m 5 -o "$EX_DIR/body" -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' --data-binary @- \
            "http://127.0.0.1:$PORT/api/exchange_sync"
}
at=$(send 16384)
over=$(send 16385)
detail=$(cat "$EX_DIR/body")
msg="a body of 16384 bytes answered $at (want 200), one of 16385 bytes $over $detail (want 413 whose detail names the limit: 16 KiB, or 16384 bytes)"
[ "$at" = 200 ] && [ "$over" = 413 ] && grep -Eq '16 ?KiB|16384' <<<"$detail" && ex_pass "$msg"
ex_fail "$msg"
