# Sourced by tests/mutants/run.sh and tests/exercises/solutions.sh: both
# keep a scratch copy of the source tree in step with this one, apply a
# patch there, and rebuild only what the patch touched.

# scratch_sync TREE KEEP_TIMES: copies into TREE every file named on stdin
# (NUL-separated, relative to the top) that differs from TREE's copy, with
# its modification time when KEEP_TIMES is 1 (a fresh tree whose copied
# objects must stay newer than their sources), else with a fresh one (so
# make rebuilds from it); then removes from TREE, outside its build/, every
# file not named, which the Makefile's wildcards would still compile.
scratch_sync() {
    local tree=$1 keep=$2 list f
    list=$(mktemp) || return 1
    mkdir -p "$tree"
    while IFS= read -r -d '' f; do
        [ -f "$f" ] || continue
        printf '%s\n' "$f" >>"$list"
        cmp -s "$f" "$tree/$f" && continue
        mkdir -p "$tree/$(dirname "$f")"
        if [ "$keep" = 1 ]; then cp -p "$f" "$tree/$f"; else cp "$f" "$tree/$f"; fi
    done
    (cd "$tree" && find . -path ./build -prune -o -type f -print) |
        sed 's|^\./||' | grep -vxF -f "$list" |
        while IFS= read -r f; do rm -f "$tree/$f"; done
    rm -f "$list"
}
