#!/usr/bin/env bash
# s14-pin: each of 05's --workers runs on a CPU of its own (sched_setaffinity), chosen among those the process may use
# needs: 05-epoll-callbacks
. "$(dirname "$0")/lib.sh"
# workers_cpus [taskset -c LIST]: each worker's Cpus_allowed_list, one a line.
workers_cpus() {
    ex_start s "$@" "$B/05-epoll-callbacks" --quiet --workers 2
    sleep 0.2
    for p in $(ex_children "$PID"); do
        awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$p/status"
    done
    ex_stop "$PID"
}
lists=$(workers_cpus | tr '\n' ' ')
single=$(tr ' ' '\n' <<<"$lists" | grep -c '^[0-9][0-9]*$')
distinct=$(tr ' ' '\n' <<<"$lists" | grep . | sort -u | wc -l)
want=2
[ "$(nproc)" -lt 2 ] && want=1
# Started with one CPU allowed (the last), both workers must stay on it:
# "the i-th CPU the process may use", not CPU number i.
last=$(tr ',' '\n' <<<"$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)" | tail -1)
last=${last##*-}
narrowed=$(workers_cpus taskset -c "$last" | tr '\n' ' ')
msg="05 --workers 2: the workers may run on CPUs '$lists' (want 2 workers, each on one CPU, $want distinct); started under taskset -c $last, on '$narrowed' (want '$last $last ')"
[ "$single" = 2 ] && [ "$distinct" -ge "$want" ] && [ "$narrowed" = "$last $last " ] && ex_pass "$msg"
ex_fail "$msg"
