#!/usr/bin/env bash
# s14-pin: each of 05's --workers runs on a CPU of its own (sched_setaffinity)
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
ex_start s "$B/05-epoll-callbacks" --quiet --workers 2
sleep 0.2
lists=()
for p in $(ex_children "$PID"); do
    lists+=("$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$p/status")")
done
single=0
for l in "${lists[@]}"; do
    case $l in *[,-]* | "") ;; *) single=$((single + 1)) ;; esac
done
distinct=$(printf '%s\n' "${lists[@]}" | sort -u | wc -l)
want=2
[ "$(nproc)" -lt 2 ] && want=1
msg="05 --workers 2: the workers may run on CPUs '${lists[*]}' (want 2 workers, each on one CPU, $want distinct)"
[ "${#lists[@]}" = 2 ] && [ "$single" = 2 ] && [ "$distinct" -ge "$want" ] && ex_pass "$msg"
ex_fail "$msg"
