#!/usr/bin/env bash
# s4-gil: 06's worker pool has one thread (CO_DEFAULT_WORKERS 1), so after
# offloaded work the server has two threads: the loop's and one worker.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s4-gil "$B/06-coroutines" --delay-ms 0 --cpu-ms 20 --offload
"$B/loadgen" -c 4 -n 8 --url "http://127.0.0.1:$port/api/exchange_sync" --bills 1 --quiet >/dev/null 2>&1
threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$pid/status")
if [ -n "$threads" ] && [ "$threads" -le 2 ]; then
    echo "s4-gil: 06 runs offloaded work on $threads threads in all: one worker"
    exit 0
fi
echo "s4-gil: looked for at most 2 threads in 06 after offloaded work; found ${threads:-none}"
exit 1
