#!/usr/bin/env bash
# s12-body: a body over 16 KiB gets 413 (not 64 KiB)
# needs: 04-select
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet --delay-ms 0
# A valid request padded with spaces (JSON allows them) to N bytes.
padded() { printf '%*s%s' "$1" '' "$(ex_bills 1)"; }
small=$(padded 15000 | curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @- \
    "http://127.0.0.1:$PORT/api/exchange_sync")
big=$(padded 20000 | curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @- \
    "http://127.0.0.1:$PORT/api/exchange_sync")
msg="a body of about 15 KB answered $small (want 200), one of about 20 KB $big (want 413)"
[ "$small" = 200 ] && [ "$big" = 413 ] && ex_pass "$msg"
ex_fail "$msg"
