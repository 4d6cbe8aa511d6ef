#!/usr/bin/env bash
# make check-exercise [EX=<id>]: runs one exercise's check
# (tests/exercises/<id>.sh) against the build B, or lists the ids with the
# one-line title each check carries on its second line ("# <id>: title").
# Usage: tests/exercises/run.sh B [ID]
set -u
cd "$(dirname "$0")/../.."
B=${1:-build}
ID=${2:-}
if [ -z "$ID" ]; then
    echo "exercises (make check-exercise EX=<id>; sN-... is in LECTURE section N):"
    for f in $(printf "%s\n" tests/exercises/s[0-9]*-*.sh | sort -V); do
        line=$(sed -n '2s/^# \([^:]*\): *\(.*\)/\1\t\2/p' "$f")
        printf '  %-13s %s\n' "${line%%$'\t'*}" "${line#*$'\t'}"
    done
    exit 0
fi
if [ ! -f "tests/exercises/$ID.sh" ]; then
    echo "no exercise '$ID'; make check-exercise lists them" >&2
    exit 2
fi
B=$B exec bash "tests/exercises/$ID.sh"
