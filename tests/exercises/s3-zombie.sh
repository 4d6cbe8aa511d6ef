#!/usr/bin/env bash
# s3-zombie: 02-fork no longer reaps its children, so finished children
# stay in the process table as zombies (state Z) under the parent.
B=${B:-build}
. "$(dirname "$0")/lib/serve.sh"
serve s3-zombie "$B/02-fork" --delay-ms 0
for i in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
sleep 0.5
z=$(ps -o stat= --ppid "$pid" | grep -c '^Z')
if [ "$z" -ge 1 ]; then
    echo "s3-zombie: $z zombie children under 02-fork after 3 requests: done"
    exit 0
fi
echo "s3-zombie: looked for zombie (Z) children under 02-fork after 3 requests: none (the parent still reaps them)"
exit 1
