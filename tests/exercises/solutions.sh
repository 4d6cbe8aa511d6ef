#!/usr/bin/env bash
# Every solutions/<id>.patch against its check (tests/test_solutions.c runs
# this): the check must FAIL on this tree as it is (build B, already built
# by make test) and PASS on a scratch copy with the patch applied and
# rebuilt (only the binaries named on the check's "# needs:" line). The
# scratch copy is build/solutions/tree: the first run copies the tracked
# sources and the built objects with their times kept, so only the files a
# patch changes recompile; each patch is reverted (git apply -R) after its
# check. The checks on the unchanged tree run meanwhile, in the background
# (they mostly wait on servers' timers). Prints "FAIL <id>: why" per failure, "ok <id>" per pass.
# Usage: tests/exercises/solutions.sh B [ID...]
set -u
unset MAKEFLAGS MAKELEVEL MFLAGS # a make of its own, not a submake
cd "$(dirname "$0")/../.."
B=${1:-build}
shift
TREE=build/solutions/tree
LOG=build/solutions/log
mkdir -p "$TREE"
: >"$LOG"
: >"$LOG.unchanged"
# git apply inside this repository's build/ would patch nothing (paths
# outside the current directory are skipped): stop it finding the repo.
export GIT_CEILING_DIRECTORIES=$PWD/build/solutions

# The tracked (and new, not ignored) files; a fresh tree keeps their times
# so the copied objects stay newer, a later sync gives a changed file a
# fresh time so make rebuilds from it.
fresh=0
[ -d "$TREE/build/obj" ] || fresh=1
# shellcheck source=../scratch_tree.sh
. tests/scratch_tree.sh
git ls-files -z --cached --others --exclude-standard | scratch_sync "$TREE" $fresh
if [ $fresh = 1 ]; then
    mkdir -p "$TREE/build"
    for e in "$B"/*; do
        case ${e##*/} in asan | tsan | solutions | mutants | demo) continue ;; esac
        cp -a "$e" "$TREE/build/"
    done
fi

ids=("$@")
if [ ${#ids[@]} -eq 0 ]; then
    for p in solutions/*.patch; do ids+=("$(basename "$p" .patch)"); done
fi
rc=0
# The ids whose check passes on the unchanged tree (it must fail there).
for id in "${ids[@]}"; do
    [ -f "tests/exercises/$id.sh" ] &&
        B=$B bash "tests/exercises/$id.sh" >>"$LOG.unchanged" 2>&1 && echo "$id"
done >"$LOG.passing" &
unchanged=$!
for id in "${ids[@]}"; do
    check=tests/exercises/$id.sh
    if [ ! -f "$check" ]; then
        echo "FAIL $id: no check $check"; rc=1; continue
    fi
    if ! (cd "$TREE" && git apply -p1 "$OLDPWD/solutions/$id.patch") >>"$LOG" 2>&1; then
        echo "FAIL $id: solutions/$id.patch no longer applies"; rc=1; continue
    fi
    # Only what the check starts ("# needs: BIN..." on its third line).
    targets=$(sed -n '3s/^# needs: *//p' "$check")
    targets=${targets:+$(printf 'build/%s ' $targets)}
    if ! make -C "$TREE" -j2 ${targets:-all examples} >>"$LOG" 2>&1; then
        echo "FAIL $id: the tree with solutions/$id.patch does not build (see $LOG)"
        rc=1
    elif out=$(cd "$TREE" && B=build bash "$check" 2>&1); then
        echo "ok $id"
    else
        echo "FAIL $id: its check fails with the solution: $out"; rc=1
    fi
    (cd "$TREE" && git apply -R -p1 "$OLDPWD/solutions/$id.patch") >>"$LOG" 2>&1 ||
        { echo "FAIL $id: could not revert its patch"; rm -rf "$TREE"; exit 1; }
done
wait "$unchanged"
while read -r id; do
    echo "FAIL $id: its check passes on the unchanged tree"; rc=1
done <"$LOG.passing"
exit $rc
