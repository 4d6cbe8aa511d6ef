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
# The ids are shared among LANES scratch copies (build/solutions/tree0,
# tree1...; SOLUTION_LANES, default 2), which work at the same time: the
# checks mostly wait on servers' timers, so two lanes take about half the
# time on two cores. A lane's first run copies the tracked sources and the
# built objects with their times kept, so only the files a patch changes
# recompile; each patch is reverted (git apply -R) after its check. The
# checks on the unchanged tree run meanwhile, in the background. A check
# that exits 77 has skipped (a tool it needs is missing; it says which):
# the id is then reported as skipped, not failed.
# Prints "FAIL <id>: why" per failure, "ok <id> (N s)" per passing id (and
# "ok <id> wrong <slug>: ..." per wrong answer rejected), then with --wrong
# a table of every id and its answers.
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
LANES=${SOLUTION_LANES:-2}
DIR=build/solutions
LOG=$DIR/log
mkdir -p "$DIR"
# One run at a time on the scratch trees (make test and make
# exercises-check may be started together): the second waits.
exec 9>"$DIR/lock"
flock 9
rm -f "$LOG".*
rm -rf "$DIR/tree" # the single scratch tree of earlier versions
# git apply inside this repository's build/ would patch nothing (paths
# outside the current directory are skipped): stop it finding the repo.
export GIT_CEILING_DIRECTORIES=$PWD/$DIR
# shellcheck source=../scratch_tree.sh
. tests/scratch_tree.sh

# prepare TREE: the tracked (and new, not ignored) files copied in; a fresh
# tree keeps their times so the copied objects stay newer, a later sync
# gives a changed file a fresh time so make rebuilds from it.
prepare() {
    local tree=$1 fresh=0 e
    [ -d "$tree/build/obj" ] || fresh=1
    git ls-files -z --cached --others --exclude-standard | scratch_sync "$tree" $fresh
    if [ $fresh = 1 ]; then
        mkdir -p "$tree/build"
        for e in "$B"/*; do
            case ${e##*/} in asan | tsan | solutions | mutants | demo | fuzz) continue ;; esac
            cp -a "$e" "$tree/build/"
        done
    fi
}

ids=("$@")
if [ ${#ids[@]} -eq 0 ]; then
    for p in solutions/*.patch; do ids+=("$(basename "$p" .patch)"); done
fi

# The ids whose check passes (0) or skips (77) on the unchanged tree (it
# must fail there), one "id status" a line.
for id in "${ids[@]}"; do
    [ -f "tests/exercises/$id.sh" ] || continue
    B=$B bash "tests/exercises/$id.sh" >>"$LOG.unchanged" 2>&1
    s=$?
    [ $s = 0 ] || [ $s = 77 ] && echo "$id $s"
done >"$LOG.passing" &
unchanged=$!

# try TREE ID PATCH: applies PATCH to TREE, builds what the check needs and
# runs it; sets out (the check's output) and returns its status (0 pass,
# 77 skipped, else failed), or 200 if the patch does not apply, 201 if the
# tree does not build. The patch is reverted afterwards.
try() {
    local tree=$1 id=$2 patch=$3 check=tests/exercises/$2.sh targets s
    out=""
    if ! (cd "$tree" && git apply -p1 "$OLDPWD/$patch") >>"$LOG.$lane" 2>&1; then
        return 200
    fi
    # Only what the check starts ("# needs: BIN..." on its third line).
    targets=$(sed -n '3s/^# needs: *//p' "$check")
    targets=${targets:+$(printf 'build/%s ' $targets)}
    if ! make -C "$tree" -j2 ${targets:-all examples} >>"$LOG.$lane" 2>&1; then
        s=201
    else
        out=$(cd "$tree" && B=build bash "$check" 2>&1)
        s=$?
    fi
    (cd "$tree" && git apply -R -p1 "$OLDPWD/$patch") >>"$LOG.$lane" 2>&1 ||
        { echo "FAIL $id: could not revert $patch"; rm -rf "$tree"; exit 1; }
    return $s
}

# one ID, in TREE: its lines on stdout, then its row "id|verdict|s|wrongs"
# appended to $LOG.rows.
one() {
    local tree=$1 id=$2 t0=$SECONDS check=tests/exercises/$2.sh verdict list w slug
    if [ ! -f "$check" ]; then
        echo "FAIL $id: no check $check"
        echo "$id|no check||" >>"$LOG.rows"
        return
    fi
    [ -f "solutions/$id.md" ] || echo "FAIL $id: no answers to read, solutions/$id.md"
    local wrong_patches=(tests/exercises/wrong/"$id"--*.patch)
    [ -f "${wrong_patches[0]}" ] || {
        echo "FAIL $id: no known-wrong answer tests/exercises/wrong/$id--<slug>.patch"
        wrong_patches=()
    }
    try "$tree" "$id" "solutions/$id.patch"
    case $? in
    0) echo "ok $id ($((SECONDS - t0)) s)"; verdict=pass ;;
    77) echo "skip $id: $out"; echo "$id|skipped|$((SECONDS - t0))|" >>"$LOG.rows"; return ;;
    200) echo "FAIL $id: solutions/$id.patch no longer applies"; verdict="does not apply" ;;
    201) echo "FAIL $id: the tree with solutions/$id.patch does not build (see $LOG.$lane)"; verdict="does not build" ;;
    *) echo "FAIL $id: its check fails with the solution: $out"; verdict=FAILS ;;
    esac
    list=""
    for w in "${wrong_patches[@]}"; do
        slug=$(basename "$w" .patch)
        slug=${slug#"$id"--}
        if [ $WRONG = 0 ]; then
            (cd "$tree" && git apply --check -p1 "$OLDPWD/$w") >>"$LOG.$lane" 2>&1 ||
                echo "FAIL $id: wrong answer $w no longer applies"
            list="$list $slug"
            continue
        fi
        try "$tree" "$id" "$w"
        case $? in
        0) echo "FAIL $id: wrong answer $slug passes the check: $out"; list="$list $slug(PASSES)" ;;
        77) echo "skip $id wrong $slug: $out"; list="$list $slug(skipped)" ;;
        200) echo "FAIL $id: wrong answer $w no longer applies"; list="$list $slug(does-not-apply)" ;;
        201) echo "FAIL $id: the tree with wrong answer $w does not build (see $LOG.$lane)"; list="$list $slug(does-not-build)" ;;
        *) echo "ok $id wrong $slug: $(grep -m1 '^FAIL ' <<<"$out" || echo "${out##*$'\n'}")"; list="$list $slug" ;;
        esac
    done
    echo "$id|$verdict|$((SECONDS - t0))|${list# }" >>"$LOG.rows"
}

# The lanes: lane k takes every LANES-th id from the k-th; each prints
# its lines to $LOG.out.k as it goes.
lanes=()
for ((lane = 0; lane < LANES; lane++)); do
    (
        tree=$DIR/tree$lane
        prepare "$tree"
        for ((i = lane; i < ${#ids[@]}; i += LANES)); do
            one "$tree" "${ids[$i]}"
        done
    ) >"$LOG.out.$lane" 2>&1 &
    lanes+=($!)
done
wait "${lanes[@]}"
wait "$unchanged"
for ((lane = 0; lane < LANES; lane++)); do cat "$LOG.out.$lane"; done
declare -A unchanged_passes=()
while read -r id s; do
    if [ "$s" = 77 ]; then
        echo "skip $id: its check skipped on the unchanged tree"
        unchanged_passes[$id]=skipped
    else
        echo "FAIL $id: its check passes on the unchanged tree"
        unchanged_passes[$id]=PASSES
    fi
done <"$LOG.passing"
rc=0
grep -q '^FAIL ' "$LOG".out.* && rc=1
[ -n "${unchanged_passes[*]:-}" ] && grep -q PASSES <<<"${unchanged_passes[*]}" && rc=1

if [ $WRONG = 1 ]; then
    declare -A verdict=() took=() wrongs=()
    while IFS='|' read -r id v s w; do
        verdict[$id]=$v took[$id]=$s wrongs[$id]=$w
    done <"$LOG.rows"
    echo
    printf '%-13s %-10s %-10s %5s  %s\n' exercise unchanged solution "s" "wrong answers (each must fail)"
    for id in "${ids[@]}"; do
        printf '%-13s %-10s %-10s %5s  %s\n' "$id" "${unchanged_passes[$id]:-fails}" \
            "${verdict[$id]:-?}" "${took[$id]:-}" "${wrongs[$id]:-}"
    done
fi
exit $rc
