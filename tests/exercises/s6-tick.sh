#!/usr/bin/env bash
# s6-tick: 04's select() wakes every 100 ms instead of at the next deadline, and the bills end late
# needs: 04-select
. "$(dirname "$0")/lib.sh"
ex_start s "$B/04-select" --quiet --delay-ms 10
# Each 10 ms bill is noticed at the next tick: about 100 ms a bill, 0.5 s
# for five. On time (no tick, or a tick that only caps the timeout) they
# take 50 ms; a tick much longer than 100 ms takes seconds.
ms=$(ex_time_ms ex_post "$PORT" exchange_sync 5)
msg="a sync request of 5 bills at --delay-ms 10 took $ms ms (want 300 to 900: each bill waits for a 100 ms tick)"
ex_verdict "$msg" [ "$ms" -ge 300 -a "$ms" -le 900 ]
