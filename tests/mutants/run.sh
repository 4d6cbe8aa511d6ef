#!/usr/bin/env bash
# make mutants: every protection has a test that fails without it (issue 19).
#
# Each tests/mutants/*.patch removes or weakens exactly one protection and
# names, in its header, the tests that must then fail:
#
#   Mutant: what the patch breaks, in one line
#   Test: test_http CK_RUN_CASE=limits
#   Test: test_stages STAGES=04-select CK_RUN_CASE=bad input
#
# A Test line is a test program of build/tests/ and the environment it runs
# with. The patch follows the header (unified diff, paths a/... b/...).
#
# The tracked files are copied once into a scratch tree (build/mutants/tree,
# only files that changed are copied, so its build stays incremental); each
# mutant is applied there, built, its tests run, and reverted. A mutant is
# killed when at least one of its tests fails. The run fails listing every
# mutant that survived, no longer applies, or does not build, and every Test
# line that runs no test at all.
#
#   MUTANTS='guard-*'     only the mutants whose names match the glob
#   MUTANT_SHARE=K/N      only every N-th mutant, starting at the K-th (1..N):
#                         a rotating share for a CI that cannot run them all
#   MUTANT_JOBS=2         make -j for the scratch builds
#   MUTANT_BASELINE=1     first run every Test line on the unmutated tree:
#                         a test that fails anyway would "kill" every mutant
#                         (CI runs make test before, which says the same)
set -uo pipefail
# A make of its own: not a submake of the make that called us.
unset MAKEFLAGS MAKELEVEL MFLAGS
cd "$(dirname "$0")/../.."

ROOT=$PWD
DIR=tests/mutants
TREE=build/mutants/tree
JOBS=${MUTANT_JOBS:-2}
LOG=build/mutants/log
start=$SECONDS

# shellcheck source=../scratch_tree.sh
. tests/scratch_tree.sh
# The tracked files but the mutants themselves, times fresh: make rebuilds
# what a sync changed.
sync_tree() {
    git ls-files -z --cached | grep -zv '^tests/mutants/' | scratch_sync "$TREE" 0
}

header() { sed -n "s/^$2: *//p" "$1" | sed '/^$/d'; }

# The test programs every mutant names, to build them once up front.
all_tests() {
    local p
    for p in "$@"; do header "$p" Test | awk '{print "build/tests/" $1}'; done |
        sort -u
}

build() { make -C "$TREE" -j"$JOBS" all "$@" >>"$LOG" 2>&1; }

# Runs one Test line in the scratch tree; 0 = passed, 1 = failed,
# 2 = ran no test (a Test line that names no case cannot kill anything).
run_test() {
    local line=$1 bin env out rc
    bin=${line%% *}
    env=""
    [ "$bin" != "$line" ] && env=${line#* }
    # The environment words may contain spaces inside a value only as
    # CK_RUN_CASE=... (the last word): everything after it is its value.
    local -a vars=()
    local rest=$env
    while [ -n "$rest" ]; do
        case $rest in
            CK_RUN_CASE=*) vars+=("$rest"); rest="" ;;
            *' '*) vars+=("${rest%% *}"); rest=${rest#* } ;;
            *) vars+=("$rest"); rest="" ;;
        esac
    done
    out=$(cd "$TREE" && env "${vars[@]}" STAGE_BIN_DIR=build \
        timeout 600 "build/tests/$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out" >>"$LOG"
    if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q 'Checks: 0,'; then
        return 2
    fi
    [ $rc -eq 0 ] && return 0 || return 1
}

shopt -s nullglob
patches=()
for p in "$DIR"/*.patch; do
    name=$(basename "$p" .patch)
    # shellcheck disable=SC2053
    [[ -n ${MUTANTS:-} && $name != ${MUTANTS} ]] && continue
    patches+=("$p")
done
if [ -n "${MUTANT_SHARE:-}" ]; then
    k=${MUTANT_SHARE%/*}
    n=${MUTANT_SHARE#*/}
    share=()
    for i in "${!patches[@]}"; do
        [ $((i % n)) -eq $((k - 1)) ] && share+=("${patches[$i]}")
    done
    patches=("${share[@]}")
fi
[ ${#patches[@]} -gt 0 ] || { echo "mutants: none selected"; exit 1; }

mkdir -p build/mutants
: >"$LOG"
echo "mutants: syncing the scratch tree $TREE and building it"
sync_tree
# shellcheck disable=SC2046
if ! build $(all_tests "${patches[@]}"); then
    echo "mutants: the unmutated tree does not build; see $LOG"
    exit 1
fi

declare -a bad=()
killed=0
if [ -n "${MUTANT_BASELINE:-}" ]; then
    while IFS= read -r t; do
        run_test "$t"
        case $? in
            1) bad+=("baseline: $t fails without any mutant") ;;
            2) bad+=("baseline: $t runs no test") ;;
        esac
    done < <(for p in "${patches[@]}"; do header "$p" Test; done | sort -u)
    if [ ${#bad[@]} -gt 0 ]; then
        printf 'mutants: %s\n' "${bad[@]}"
        exit 1
    fi
    echo "mutants: baseline passes"
fi
for p in "${patches[@]}"; do
    name=$(basename "$p" .patch)
    t0=$SECONDS
    echo "== mutant $name" >>"$LOG"
    if ! (cd "$TREE" && patch -p1 -F0 -s --dry-run --no-backup-if-mismatch \
            <"$ROOT/$p") >>"$LOG" 2>&1; then
        bad+=("$name: no longer applies")
        printf '  %-40s NO LONGER APPLIES\n' "$name"
        continue
    fi
    (cd "$TREE" && patch -p1 -F0 -s --no-backup-if-mismatch <"$ROOT/$p")
    # shellcheck disable=SC2046
    if ! build $(all_tests "$p"); then
        verdict="DOES NOT BUILD"
        bad+=("$name: does not build (see $LOG)")
    else
        verdict=SURVIVED
        empty=""
        while IFS= read -r t; do
            run_test "$t"
            case $? in
                1) verdict=killed ;;
                2) empty+=" [$t runs no test]" ;;
            esac
            [ "$verdict" = killed ] && break
        done < <(header "$p" Test)
        if [ -n "$empty" ]; then
            verdict="BAD TEST LINE"
            bad+=("$name:$empty")
        elif [ "$verdict" = SURVIVED ]; then
            bad+=("$name: survived ($(header "$p" Test | paste -sd';' -))")
        else
            killed=$((killed + 1))
        fi
    fi
    if ! (cd "$TREE" && patch -p1 -R -F0 -s --no-backup-if-mismatch \
            <"$ROOT/$p") >>"$LOG" 2>&1; then
        bad+=("$name: could not be reverted; the scratch tree was synced again")
        sync_tree
    fi
    printf '  %-40s %-16s %4d s\n' "$name" "$verdict" $((SECONDS - t0))
done

took=$((SECONDS - start))
echo "mutants: $killed of ${#patches[@]} killed in $took s (log: $LOG)"
if [ ${#bad[@]} -gt 0 ]; then
    echo "mutants: FAILED:"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
