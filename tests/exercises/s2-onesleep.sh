#!/usr/bin/env bash
# s2-onesleep: 01 waits once for all of a request's bills, not once per bill
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --quiet --delay-ms 300
ms=$(ex_time_ms ex_post "$PORT" exchange_sync 4)
msg="a sync request of 4 bills at --delay-ms 300 took $ms ms (want under 700: one wait, not four)"
ex_verdict "$msg" [ "$ms" -lt 700 ]
