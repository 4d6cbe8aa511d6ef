#!/usr/bin/env bash
# s6-tick: 04's select() wakes every 100 ms instead of at the next deadline, and the bills end late
# needs: 04-select
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet --delay-ms 10
ms=$(ex_time_ms ex_post "$PORT" exchange_sync 5)
msg="a sync request of 5 bills at --delay-ms 10 took $ms ms (want at least 300: each bill waits for a 100 ms tick)"
ex_verdict "$msg" [ "$ms" -ge 300 ]
