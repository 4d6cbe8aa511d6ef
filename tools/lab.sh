#!/bin/sh
# lab.sh: writes a lab, a copy of a stage whose model's core is cut out for
# a student to write (make lab STAGE=N), and puts the stage's code back
# into one (the reference handed in as a solution: make grade-check).
#
#   tools/lab.sh new labs/04-select.lab [--force]   writes lab/04-select/
#   tools/lab.sh solve labs/04-select.lab           restores its cut
#                                                   functions from the stage
#   tools/lab.sh check labs/04-select.lab           writes it in a scratch
#                                                   folder only: does the
#                                                   manifest still match?
#
# The stages carry no lab markers: students read them, and other work edits
# them. A manifest (labs/*.lab) names the functions to cut instead:
#
#   stage 04-select               the stage copied: its .c and .h files
#   own common/evconn.c           a file of common/ the lab gets its own copy
#                                 of (the build links it instead of
#                                 common's: a folder's file named like one
#                                 of common/'s replaces it)
#   expect correctness=0 ...      what make grade gives the lab as written
#   about                         what the lab is about (indented lines
#                                 follow), for the lab's README.md
#   cut server.c serve_one_turn -- LECTURE.md section 6
#                                 that function's body in the lab's
#                                 server.c becomes a stub; the indented
#                                 lines that follow are its TODO comment
#
# A stub keeps the function's comment and signature and stops the server
# when it is called: "TODO: write serve_one_turn (LECTURE.md section 6)"
# on stderr, then abort(). A function is found by the project's layout: a
# line at column 0 naming it, then a line "{", its body up to the first
# line "}". A function that is not found exactly once stops the
# generator, naming it: a rename breaks the lab loudly, never silently.
#
# `new` refuses to write over a lab folder that exists (a student's work)
# unless --force (make lab FORCE=1). `solve` puts every cut body back from
# the stage and then checks that each lab file is the stage's file with
# the lab's banner on top: nothing but the cut bodies was changed.
set -eu

usage() {
    echo "usage: tools/lab.sh new|solve|check labs/NN-name.lab [--force]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
mode=$1
manifest=$2
force=${3:-}
case $mode in new | solve | check) ;; *) usage ;; esac
[ -z "$force" ] || [ "$force" = --force ] || usage
cd "$(dirname "$0")/.."

if [ ! -f "$manifest" ]; then
    labs=
    for m in labs/*.lab; do
        m=$(basename "$m" .lab)
        labs="${labs:+$labs, }STAGE=$(echo "$m" | sed 's/^0*\([0-9]*\)-.*/\1/') ($m)"
    done
    echo "make lab: there is no $manifest; the labs are $labs" >&2
    exit 2
fi

# One directive of the manifest, by name: its arguments, one line each.
directive() { awk -v d="$1" '/^[^ \t]/ && $1 == d { sub(/^[^ ]+ +/, ""); print }' "$manifest"; }

stage=$(directive stage)
name=$(basename "$manifest" .lab)
if [ "$stage" != "$name" ] || [ ! -d "$stage" ]; then
    echo "lab.sh: $manifest: 'stage $stage' is not its stage's folder ($name)" >&2
    exit 1
fi
if ! directive cut | awk -v m="$manifest" 'NF < 4 || $3 != "--" {
        printf "lab.sh: %s: a cut is \"cut FILE FUNCTION -- WHERE\", not \"cut %s\"\n", m, $0
        bad = 1 } END { exit bad }' >&2; then
    exit 1
fi
number=$(echo "$stage" | sed 's/^0*\([0-9]*\)-.*/\1/')
dest=lab/$stage
cut_files=$(directive cut | awk '{ print $1 }' | sort -u)

# The original of a lab file: the stage's, or common/'s for an own file.
source_of() {
    for own in $(directive own); do
        if [ "$(basename "$own")" = "$1" ]; then
            echo "$own"
            return
        fi
    done
    echo "$stage/$1"
}

# The awk program that finds the cut functions in one file. Reads the
# manifest (only the cuts of FILE), then, for `new`, the original, writing
# it with stubs for bodies and the banner on top; for `solve`, the original
# (to keep its bodies) and then the lab's file, writing it with those
# bodies in the stubs' place. Exit status 1, naming them, if a function is
# not found exactly once.
# shellcheck disable=SC2016 # an awk program: its $ are awk's
CUT_AWK='
function emit_banner(    words, n, k, line) {
    print "/* lab: `make lab STAGE=" number "` wrote this file from " src ","
    print " * with the bodies of these functions cut out for you to write:"
    n = split(list, words, " ")
    line = " *"
    for (k = 1; k <= n; k++) {
        if (length(line) + 1 + length(words[k]) > 76) {
            print line
            line = " *"
        }
        line = line " " words[k]
    }
    print line "."
    print " * Each stub says what its function must do and where to read; make"
    print " * grade STAGE=" number " DIR=" dest " grades the lab (its README.md). */"
    print "#include \"lab.h\""
    print ""
}
function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
# The stub of n: its TODO comment, then the call that stops the server.
function stub(n,    k, out) {
    out = "    /* TODO: write " n ".\n     * Read: " where[n] ".\n     *"
    for (k = 1; k <= ntext[n]; k++)
        out = out "\n    " (text[n, k] == "" ? " *" : " * " text[n, k])
    return out "\n     */\n    lab_todo(\"" n "\", \"" esc(where[n]) "\");"
}
# Which wanted function a line at column 0 names, "" if none.
function names_one(line,    n) {
    if (line !~ /^[A-Za-z_]/)
        return ""
    for (n in where)
        if (line ~ ("(^|[^A-Za-z0-9_])" n "\\("))
            return n
    return ""
}
# One line of a C file: stays, or opens a signature, or is part of a body.
# keep: the bodies are stored (solve reading the original), not written.
function scan(line, keep,    more) {
    if (state == "body") {
        if (line == "}") {
            state = ""
            if (!keep) {
                print (mode == "new" ? stub(cur) : body[cur])
                print line
            }
        } else if (keep) {      # (mawk makes body[cur] before the test)
            more = (cur in body)
            body[cur] = more ? body[cur] "\n" line : line
        }
        return
    }
    if (state == "sig") {
        sig = sig "\n" line
        if (line == "{") {      # a definition: its body follows
            state = "body"
            found[cur, keep]++
            if (!keep)
                print sig
        } else if (line ~ /;[ \t]*$/ || ++siglines > 8) {
            state = ""          # a declaration, or not a function
            if (!keep)
                print sig
        }
        return
    }
    cur = names_one(line)
    if (cur != "" && line !~ /;[ \t]*$/) {
        state = "sig"
        sig = line
        siglines = 1
    } else if (!keep) {
        print line
    }
}
FNR == 1 { input++ }
input == 1 {                    # the manifest
    if ($0 ~ /^[^ \t#]/)
        at = ""
    if ($0 ~ /^cut / && $2 == file) {
        at = $3
        w = $0
        sub(/^[^-]*-- */, "", w)
        where[at] = w
        ntext[at] = 0
        blanks = 0
        list = list (list == "" ? "" : ", ") at
    } else if (at != "" && $0 ~ /^[ \t]*$/) {
        blanks++
    } else if (at != "" && $0 ~ /^[ \t]/) {
        for (; blanks > 0; blanks--)
            text[at, ++ntext[at]] = ""
        t = $0                  # the block indent off, the rest kept
        if (!sub(/^    /, "", t))
            sub(/^\t/, "", t)
        text[at, ++ntext[at]] = t
    }
    next
}
input == 2 && mode == "new" && FNR == 1 { emit_banner() }
input == 2 { scan($0, mode == "solve"); next }
{ scan($0, 0) }
function missing(n, where_, count) {
    printf "lab.sh: %s: %s has %s definition of %s() at column 0 " \
           "(renamed or moved? update the manifest)\n", manifest, where_,
           count == 0 ? "no" : count " instead of one", n > "/dev/stderr"
    bad = 1
}
END {
    for (n in where) {
        if (mode == "solve" && found[n, 1] != 1)
            missing(n, src, found[n, 1] + 0)
        if (found[n, 0] != 1)
            missing(n, mode == "solve" ? labfile : src, found[n, 0] + 0)
    }
    exit bad
}'

# cut_file FILE OUT: runs CUT_AWK on the lab's FILE, writing OUT (check
# cuts as new does).
cut_file() {
    src=$(source_of "$1")
    lab_copy=
    [ "$mode" != solve ] || lab_copy=$dest/$1
    awk -v mode="$(echo "$mode" | sed s/check/new/)" -v file="$1" \
        -v src="$src" -v labfile="$dest/$1" -v number="$number" \
        -v dest="$dest" -v manifest="$manifest" \
        "$CUT_AWK" "$manifest" "$src" ${lab_copy:+"$lab_copy"} >"$2"
}

if [ "$mode" = solve ]; then
    [ -d "$dest" ] || { echo "lab.sh: no $dest to solve (make lab STAGE=$number)" >&2; exit 1; }
    for f in $cut_files; do
        cut_file "$f" "$dest/.$f.solved" || { rm -f "$dest/.$f.solved"; exit 1; }
        mv "$dest/.$f.solved" "$dest/$f"
        # The banner off, the file must be the original, byte for byte.
        if ! sed '1,/^#include "lab\.h"$/d' "$dest/$f" | tail -n +2 |
            cmp -s - "$(source_of "$f")"; then
            echo "lab.sh: $dest/$f is not $(source_of "$f") once solved:" \
                "the lab changed more than the cut bodies" >&2
            exit 1
        fi
    done
    echo "lab.sh: $dest: the cut functions of $(echo "$cut_files" | paste -sd' ' -) restored from $stage"
    exit 0
fi

if [ "$mode" = new ] && [ -z "$force" ] &&
    { [ -f "$dest" ] || [ -n "$(ls -A "$dest" 2>/dev/null)" ]; }; then
    echo "make lab: $dest exists and may hold your work: not written." >&2
    echo "make lab: to start it again from $stage, losing what is in it: make lab STAGE=$number FORCE=1" >&2
    exit 1
fi

# Written beside the old folder, then moved in place: a manifest that no
# longer matches its stage leaves whatever was there untouched. (check:
# written in a scratch folder, then thrown away.)
if [ "$mode" = check ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/lab.XXXXXX")
else
    tmp=lab/.$stage.new
    rm -rf "$tmp"
    mkdir -p "$tmp"
fi
trap 'rm -rf "$tmp"' EXIT
cp "$stage"/*.c "$tmp"/
cp "$stage"/*.h "$tmp"/ 2>/dev/null || true
for own in $(directive own); do
    cp "$own" "$tmp"/
done
status=0
for f in $cut_files; do
    [ -f "$tmp/$f" ] || { echo "lab.sh: $manifest: cut in $f, which $stage does not have" >&2; exit 1; }
    cut_file "$f" "$tmp/.$f.cut" || status=1
    mv "$tmp/.$f.cut" "$tmp/$f"
done
[ $status -eq 0 ] || { echo "lab.sh: $dest not written" >&2; exit 1; }
if [ "$mode" = check ]; then
    echo "lab.sh: $manifest matches $stage: $(directive cut | wc -l) functions cut"
    exit 0
fi

cat >"$tmp/lab.h" <<'EOF'
/* lab.h: what make lab adds to a lab's files (tools/lab.sh).
 *
 * lab_todo is a stub's body: it says which function is still to be
 * written and where to read, on stderr (make grade shows it), and stops
 * the server there, with abort() so that a debugger shows who called it.
 *
 * Until the cut functions are written, the helpers they would call are
 * unused and their parameters too, and -Werror would refuse to build
 * the lab: these two warnings are off in its files. */
#ifndef LAB_H
#define LAB_H

#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"

static inline _Noreturn void lab_todo(const char *fn, const char *where)
{
    fprintf(stderr, "TODO: write %s (%s)\n", fn, where);
    abort();
}

#endif
EOF

# The lab's README.md: the about text, the functions to write, how to grade.
sources="[$stage/](../../$stage/)"
for own in $(directive own); do
    sources="$sources and [$own](../../$own)"
done
{
    echo "# $dest: write ${stage}'s core yourself"
    echo
    echo "\`make lab STAGE=$number\` wrote this folder from $sources,"
    echo "as [$manifest](../../$manifest) says: the same files, with the bodies of"
    echo "the functions below cut out."
    echo
    awk '$1 == "about" { on = 1; next } /^[^ \t]/ { on = 0 }
         on && /^[ \t]*$/ { blanks++; next }
         on { for (; blanks > 0; blanks--) print ""; sub(/^    /, ""); print }' "$manifest"
    echo
    echo "To write, in this order (each function's comment says what it must"
    echo "do, and its stub where to read):"
    echo
    directive cut | awk '{ w = $0; sub(/^[^-]*-- */, "", w)
        printf "%d. `%s` in %s: %s.\n", NR, $2, $1, w }'
    echo
    echo "Grade it (docs/grading.md says what each check asks):"
    echo
    echo '```sh'
    echo "make grade STAGE=$number DIR=$dest"
    echo '```'
    echo
    echo "As written, the server starts, then stops at the first stub it"
    echo "calls, saying which (\`TODO: write ...\`): it scores nothing. Once"
    echo "every function is written, it scores what $stage scores: 100."
    for own in $(directive own); do
        echo
        echo "\`$(basename "$own")\` is this lab's own copy of [$own](../../$own):"
        echo "a file of this folder named like one of common/'s replaces it in"
        echo "the lab's build."
    done
    echo
    echo "\`make lab STAGE=$number\` again does not write over this folder;"
    echo "\`make lab STAGE=$number FORCE=1\` starts it again (what is here is lost)."
} >"$tmp/README.md"

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "make lab: wrote $dest from $stage: $(directive cut | wc -l) functions to write ($dest/README.md says which)"
echo "make lab: grade it with: make grade STAGE=$number DIR=$dest"
