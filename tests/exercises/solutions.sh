#!/usr/bin/env bash
# The exercises' checks against right and wrong answers. For every id (a
# check tests/exercises/<id>.sh with its solutions/<id>.patch):
#   - the check must FAIL on this tree as it is (build B, already built);
#   - it must PASS on a scratch copy with solutions/<id>.patch applied and
#     rebuilt (only the binaries named on the check's "# needs:" line);
#   - with --wrong, it must FAIL on the scratch copy with each known-wrong
#     answer applied, tests/exercises/wrong/<id>--<slug>.patch (a plausible
#     mistake: a wrong answer that passes is a bug in the check); without
#     --wrong, each wrong answer must still apply (git apply --check), which
#     costs nothing and says early that one needs regenerating;
#   - and every id has at least one wrong answer and its answers to read,
#     solutions/<id>.md.
# tests/test_solutions.c (make test) runs it without --wrong; make
# exercises-check runs it with --wrong (minutes: every wrong answer is
# built and checked) and .ci/run calls that.
# The scratch copy is build/solutions/tree: the first run copies the
# tracked sources and the built objects with their times kept, so only the
# files a patch changes recompile; each patch is reverted (git apply -R)
# after its check. The checks on the unchanged tree run meanwhile, in the
# background (they mostly wait on servers' timers). A check that exits 77
# has skipped (a tool it needs is missing; it says which): the id is then
# reported as skipped, not failed.
# Prints "FAIL <id>: why" per failure, "ok <id>" per passing id (and
# "ok <id> wrong <slug>" per wrong answer rejected), then with --wrong a
# table of every id and its answers.
# Usage: tests/exercises/solutions.sh [--wrong] B [ID...]
set -u
unset MAKEFLAGS MAKELEVEL MFLAGS # a make of its own, not a submake
cd "$(dirname "$0")/../.."
WRONG=0
if [ "${1:-}" = --wrong ]; then
    WRONG=1
    shift
fi
B=${1:-build}
shift
TREE=build/solutions/tree
LOG=build/solutions/log
mkdir -p "$TREE"
# One run at a time on the scratch tree (make test and make
# exercises-check may be started together): the second waits.
exec 9>build/solutions/lock
flock 9
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
# The ids whose check passes (0) or skips (77) on the unchanged tree (it
# must fail there), one "id status" a line.
for id in "${ids[@]}"; do
    [ -f "tests/exercises/$id.sh" ] || continue
    B=$B bash "tests/exercises/$id.sh" >>"$LOG.unchanged" 2>&1
    s=$?
    [ $s = 0 ] || [ $s = 77 ] && echo "$id $s"
done >"$LOG.passing" &
unchanged=$!

# try ID PATCH: applies PATCH to the scratch tree, builds what the check
# needs and runs it; sets out (the check's output) and returns its status
# (0 pass, 77 skipped, else failed), or 200 if the patch does not apply,
# 201 if the tree does not build. The patch is reverted afterwards.
try() {
    local id=$1 patch=$2 check=tests/exercises/$1.sh targets s
    out=""
    if ! (cd "$TREE" && git apply -p1 "$OLDPWD/$patch") >>"$LOG" 2>&1; then
        return 200
    fi
    # Only what the check starts ("# needs: BIN..." on its third line).
    targets=$(sed -n '3s/^# needs: *//p' "$check")
    targets=${targets:+$(printf 'build/%s ' $targets)}
    if ! make -C "$TREE" -j2 ${targets:-all examples} >>"$LOG" 2>&1; then
        s=201
    else
        out=$(cd "$TREE" && B=build bash "$check" 2>&1)
        s=$?
    fi
    (cd "$TREE" && git apply -R -p1 "$OLDPWD/$patch") >>"$LOG" 2>&1 ||
        { echo "FAIL $id: could not revert $patch"; rm -rf "$TREE"; exit 1; }
    return $s
}

declare -A verdict=() wrongs=() took=()
for id in "${ids[@]}"; do
    t0=$SECONDS
    check=tests/exercises/$id.sh
    if [ ! -f "$check" ]; then
        echo "FAIL $id: no check $check"; rc=1; verdict[$id]="no check"; continue
    fi
    [ -f "solutions/$id.md" ] ||
        { echo "FAIL $id: no answers to read, solutions/$id.md"; rc=1; }
    wrong_patches=(tests/exercises/wrong/"$id"--*.patch)
    [ -f "${wrong_patches[0]}" ] ||
        { echo "FAIL $id: no known-wrong answer tests/exercises/wrong/$id--<slug>.patch"; rc=1; wrong_patches=(); }
    try "$id" "solutions/$id.patch"
    case $? in
    0) echo "ok $id"; verdict[$id]=pass ;;
    77) echo "skip $id: $out"; verdict[$id]=skipped; took[$id]=$((SECONDS - t0)); continue ;;
    200) echo "FAIL $id: solutions/$id.patch no longer applies"; rc=1; verdict[$id]="does not apply" ;;
    201) echo "FAIL $id: the tree with solutions/$id.patch does not build (see $LOG)"; rc=1; verdict[$id]="does not build" ;;
    *) echo "FAIL $id: its check fails with the solution: $out"; rc=1; verdict[$id]=FAILS ;;
    esac
    list=""
    for w in "${wrong_patches[@]}"; do
        slug=$(basename "$w" .patch)
        slug=${slug#"$id"--}
        if [ $WRONG = 0 ]; then
            (cd "$TREE" && git apply --check -p1 "$OLDPWD/$w") >>"$LOG" 2>&1 ||
                { echo "FAIL $id: wrong answer $w no longer applies"; rc=1; }
            list="$list $slug"
            continue
        fi
        try "$id" "$w"
        case $? in
        0) echo "FAIL $id: wrong answer $slug passes the check: $out"; rc=1; list="$list $slug(PASSES)" ;;
        77) echo "skip $id wrong $slug: $out"; list="$list $slug(skipped)" ;;
        200) echo "FAIL $id: wrong answer $w no longer applies"; rc=1; list="$list $slug(does-not-apply)" ;;
        201) echo "FAIL $id: the tree with wrong answer $w does not build (see $LOG)"; rc=1; list="$list $slug(does-not-build)" ;;
        *) echo "ok $id wrong $slug: $(grep -m1 '^FAIL ' <<<"$out" || echo "${out##*$'\n'}")"; list="$list $slug" ;;
        esac
    done
    wrongs[$id]=${list# }
    took[$id]=$((SECONDS - t0))
done
wait "$unchanged"
declare -A unchanged_passes=()
while read -r id s; do
    if [ "$s" = 77 ]; then
        echo "skip $id: its check skipped on the unchanged tree"
        unchanged_passes[$id]=skipped
    else
        echo "FAIL $id: its check passes on the unchanged tree"; rc=1
        unchanged_passes[$id]=PASSES
    fi
done <"$LOG.passing"

if [ $WRONG = 1 ]; then
    echo
    printf '%-13s %-10s %-10s %5s  %s\n' exercise unchanged solution "s" "wrong answers (each must fail)"
    for id in "${ids[@]}"; do
        printf '%-13s %-10s %-10s %5s  %s\n' "$id" "${unchanged_passes[$id]:-fails}" \
            "${verdict[$id]:-?}" "${took[$id]:-}" "${wrongs[$id]:-}"
    done
fi
exit $rc
