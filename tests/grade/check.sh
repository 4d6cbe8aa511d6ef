#!/usr/bin/env bash
# make grade-check: the grader is proven, as a lab driver must be (a check
# that cannot say "wrong" is not a check).
#
#   1. The reference stages 04, 05 and 06 score full marks; so does each
#      lab of labs/ once solved, and as written it scores what its
#      manifest expects (nothing: its stubs stop the server).
#   2. Each wrong implementation in tests/grade/wrong/*.patch scores what
#      its header says, part by part (and every grade takes under 2
#      minutes, its build included):
#
#        Wrong: what it is and which checks it fails, in a few lines
#        Lab: 04-select                     (optional: see below)
#        Grade: STAGE=4 DIR=01-blocking     (the make grade arguments)
#        Expect: correctness=40 concurrency=0 robustness=20
#        ---
#        diff --git a/... b/...              (unified diff, -p1)
#
# A patch may hand one stage in for another (01-blocking renamed 04-select
# and graded with DIR=01-blocking: make grade's DIR path, as a student's
# lab folder is built). With a Lab header it is a student's wrong answer
# to that lab: the lab is written and solved first (tools/lab.sh), and the
# patch changes the solved lab's files (lab/04-select/evconn.c). The tracked files are copied into a scratch tree
# (build/grade-check/tree, only what changed, so its build stays
# incremental); each patch is applied there, graded, and reverted.
#
#   GRADE_CHECK='busy-*'   only the labs (lab-04-select...) and wrong
#                          implementations matching the glob (the
#                          references are graded unless it is set)
set -uo pipefail
unset MAKEFLAGS MAKELEVEL MFLAGS # a make of its own
cd "$(dirname "$0")/../.."

ROOT=$PWD
TREE=build/grade-check/tree
LOG=build/grade-check/log
JOBS=${GRADE_JOBS:-2}
start=$SECONDS

# shellcheck source=../scratch_tree.sh
. tests/scratch_tree.sh

header() { sed -n "s/^$2: *//p" "$1" | head -1; }

# "correctness=40 concurrency=0 robustness=20" from make grade's last line,
# {"scores": {"correctness": 40, ...}}; empty if there is none.
scores_of() {
    tail -n 1 | sed -n 's/^{"scores": {\(.*\)}}$/\1/p' |
        sed 's/"//g; s/: /=/g; s/, / /g'
}

declare -a bad=()
# grade NAME EXPECTED MAKE-ARGS...: grades in the scratch tree and compares.
grade() {
    local name=$1 want=$2 t0=$SECONDS out got
    shift 2
    echo "== $name: make grade $*" >>"$LOG"
    out=$(cd "$TREE" && make -s -j"$JOBS" grade "$@" 2>>"$ROOT/$LOG")
    local rc=$?
    printf '%s\n' "$out" >>"$LOG"
    got=$(printf '%s\n' "$out" | scores_of)
    [ -z "$got" ] && [ $rc -ne 0 ] && got="does not build or run"
    if [ $((SECONDS - t0)) -ge 120 ]; then
        bad+=("$name: graded in $((SECONDS - t0)) s; a stage grades in under 2 minutes")
    fi
    if [ "$got" = "$want" ]; then
        printf '  %-30s %-46s ok    %3d s\n' "$name" "$got" $((SECONDS - t0))
    else
        printf '  %-30s %-46s WRONG %3d s (expected %s)\n' "$name" \
            "${got:-no score}" $((SECONDS - t0)) "$want"
        bad+=("$name: got '${got:-no score}', expected '$want' (see $LOG)")
    fi
}

shopt -s nullglob
mkdir -p build/grade-check
: >"$LOG"
echo "grade-check: syncing the scratch tree $TREE and building it"
git ls-files -z --cached | scratch_sync "$TREE" 0
if ! make -C "$TREE" -s -j"$JOBS" all build/grade/grade >>"$LOG" 2>&1; then
    echo "grade-check: the tree does not build; see $LOG"
    exit 1
fi

full="correctness=40 concurrency=40 robustness=20"
if [ -z "${GRADE_CHECK:-}" ]; then
    for n in 4 5 6; do
        grade "reference 0$n" "$full" STAGE=$n
    done
fi

# The labs (labs/*.lab, make lab): each, as written, scores what its
# manifest expects (its stubs stop the server); make lab does not write
# over it again unless FORCE=1; and once its cut functions are put back
# from the stage (tools/lab.sh solve: the reference handed in as the
# solution, which also checks that the lab changed nothing else), it
# scores full marks.
rm -rf "$TREE/lab"
for m in labs/*.lab; do
    lab=$(basename "$m" .lab)
    name=lab-$lab
    n=${lab:1:1}
    # shellcheck disable=SC2053
    [[ -n ${GRADE_CHECK:-} && $name != ${GRADE_CHECK} ]] && continue
    echo "== $name: make lab STAGE=$n, twice, then FORCE=1" >>"$LOG"
    if ! (cd "$TREE" && make -s lab STAGE="$n") >>"$LOG" 2>&1; then
        printf '  %-30s make lab FAILED\n' "$name"
        bad+=("$name: make lab STAGE=$n failed (see $LOG)")
        continue
    fi
    touch "$TREE/lab/$lab/mine.c"
    if (cd "$TREE" && make -s lab STAGE="$n") >>"$LOG" 2>&1 ||
        [ ! -e "$TREE/lab/$lab/mine.c" ]; then
        bad+=("$name: a second make lab STAGE=$n wrote over the lab")
    fi
    if ! (cd "$TREE" && make -s lab STAGE="$n" FORCE=1) >>"$LOG" 2>&1 ||
        [ -e "$TREE/lab/$lab/mine.c" ]; then
        bad+=("$name: make lab STAGE=$n FORCE=1 did not write the lab again")
    fi
    grade "$name" "$(sed -n 's/^expect *//p' "$m")" STAGE="$n" DIR="lab/$lab"
    if (cd "$TREE" && ./tools/lab.sh solve "$m") >>"$LOG" 2>&1; then
        grade "$name solved" "$full" STAGE="$n" DIR="lab/$lab"
    else
        printf '  %-30s DOES NOT SOLVE\n' "$name solved"
        bad+=("$name: tools/lab.sh solve $m failed (see $LOG)")
    fi
done

for p in tests/grade/wrong/*.patch; do
    name=$(basename "$p" .patch)
    # shellcheck disable=SC2053
    [[ -n ${GRADE_CHECK:-} && $name != ${GRADE_CHECK} ]] && continue
    lab=$(header "$p" Lab)
    if [ -n "$lab" ] && ! (cd "$TREE" && rm -rf "lab/$lab" &&
            ./tools/lab.sh new "labs/$lab.lab" && ./tools/lab.sh solve \
            "labs/$lab.lab") >>"$LOG" 2>&1; then
        printf '  %-30s CANNOT WRITE ITS LAB\n' "$name"
        bad+=("$name: tools/lab.sh could not write and solve lab/$lab (see $LOG)")
        continue
    fi
    if ! (cd "$TREE" && patch -p1 -F0 -s --no-backup-if-mismatch \
            <"$ROOT/$p") >>"$LOG" 2>&1; then
        printf '  %-30s NO LONGER APPLIES\n' "$name"
        bad+=("$name: no longer applies (regenerate it: same change, new place)")
        git ls-files -z --cached | scratch_sync "$TREE" 0
        continue
    fi
    # shellcheck disable=SC2046
    grade "$name" "$(header "$p" Expect)" $(header "$p" Grade)
    if ! (cd "$TREE" && patch -p1 -R -F0 -s --no-backup-if-mismatch \
            <"$ROOT/$p") >>"$LOG" 2>&1; then
        bad+=("$name: could not be reverted; the scratch tree was synced again")
        git ls-files -z --cached | scratch_sync "$TREE" 0
    fi
done

echo "grade-check: done in $((SECONDS - start)) s (log: $LOG)"
if [ ${#bad[@]} -gt 0 ]; then
    echo "grade-check: FAILED:"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
