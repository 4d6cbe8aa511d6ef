#!/usr/bin/env bash
# make fresh-check: README.md's quick start, run as written on a machine
# that has nothing: a minimal Debian bookworm (debootstrap --variant=minbase,
# from Debian's package registry), a clean clone of this repository's HEAD
# in it, and, inside it with chroot, each command of the quick start's
# block in turn, timed. The first command (tools/deps.sh) installs; every
# later one runs in a private network namespace, with its own loopback, so
# the tests' fixed ports (8001..8006, 3001) are free whatever else runs on
# this machine, and so that anything still downloading would fail.
#
# The Dockerfile's RUN lines must be those same commands in the same order
# (and .devcontainer/devcontainer.json must build that Dockerfile): this
# checks that first (tests/fresh/check.sh --recipes does only that).
#
# Root only (debootstrap, chroot, mounts); minutes and downloads; not part
# of make test. The mounts (/proc, /sys, /dev) are made in a mount
# namespace of their own and unmounted on the way out, whatever happens.
# The tree is build/fresh/root (FRESH_DIR=... elsewhere), removed after a
# pass and kept after a failure; FRESH_MIRROR picks the mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
FRESH_DIR=${FRESH_DIR:-$top/build/fresh}
FRESH_MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
root=$FRESH_DIR/root
clone=/root/progressive-servers # in the tree

say() { echo "fresh-check: $*"; }
die() { echo "fresh-check: $*" >&2; exit 1; }

# The quick start's commands, in the order a new user on a minimal system
# types them. The section "## Quick start" holds the two commands (make
# demo, make test) in its first sh block and, in a later one, the command a
# system without make needs before them (tools/deps.sh). Comments dropped.
readme_blocks() {
    awk '/^## Quick start/ { h = 1; next }
         h && /^## / { exit }
         h && /^```sh/ { b = 1; n++; next }
         b && /^```/ { b = 0; next }
         b { sub(/[ \t]*#.*/, ""); if ($0 !~ /^[ \t]*$/) print n "\t" $0 }' README.md
}
readme_commands() {
    local blocks
    blocks=$(readme_blocks)
    awk -F '\t' '$1 != 1 { print $2 }' <<<"$blocks"
    awk -F '\t' '$1 == 1 { print $2 }' <<<"$blocks"
}

# The Dockerfile's RUN lines, in order.
docker_commands() {
    sed -n 's/^RUN[[:space:]]\{1,\}//p' Dockerfile
}

check_recipes() {
    local readme docker
    readme=$(readme_commands)
    docker=$(docker_commands)
    [ -n "$readme" ] || die "README.md has no sh block under '## Quick start'"
    if [ "$readme" != "$docker" ]; then
        echo "fresh-check: the Dockerfile's RUN lines are not README.md's quick start:" >&2
        diff <(echo "$readme") <(echo "$docker") | sed 's/^/  /' >&2 || true
        exit 1
    fi
    grep -q '"dockerfile": *"\.\./Dockerfile"' .devcontainer/devcontainer.json ||
        die ".devcontainer/devcontainer.json does not build ../Dockerfile"
    say "the Dockerfile runs README.md's quick start, and the devcontainer builds it:"
    sed 's/^/  /' <<<"$readme"
}

if [ "${1:-}" = --recipes ]; then
    check_recipes
    exit 0
fi

# ---- inside the mount namespace (the outer part re-runs us there) ----

# Stops what a command left running in the tree (by pid: only processes
# whose root is the tree, which only we started), then unmounts what we
# mounted, deepest first. The namespace would drop the mounts when it
# ends, but a process left behind would keep it alive.
unmount_all() {
    local m p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] &&
            kill -KILL "${p#/proc/}" 2>/dev/null
    done
    for m in dev sys proc; do
        if mountpoint -q "$root/$m"; then
            umount -R "$root/$m" 2>/dev/null || umount -R -l "$root/$m" ||
                echo "fresh-check: could not unmount $root/$m" >&2
        fi
    done
}

# Each README command as a new user types it in the clone, with a clean
# environment; the first command, the install, with the network, the rest
# in a network namespace of their own.
run_in_tree() {
    local cmd=$1 net=$2
    local env=(env -i HOME=/root TERM=dumb LANG=C.UTF-8
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    local in_tree=(chroot "$root" "${env[@]}" bash -c "cd $clone && $cmd")
    if [ "$net" = offline ]; then
        # ip is this machine's: the tree has none. A new namespace has
        # only its loopback, down, and no listener: every port is free.
        unshare -n sh -c 'ip link set lo up || exit 1
            if grep -q " 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
                echo "fresh-check: a port is taken in a new namespace" >&2
                exit 1
            fi
            exec "$@"' fresh "${in_tree[@]}"
    else
        "${in_tree[@]}"
    fi
}

inside() {
    trap unmount_all EXIT
    local t0=$SECONDS times=()
    say "debootstrap --variant=minbase $SUITE $root $FRESH_MIRROR"
    debootstrap --variant=minbase "$SUITE" "$root" "$FRESH_MIRROR" \
        >"$FRESH_DIR/debootstrap.log" 2>&1 ||
        { tail -20 "$FRESH_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    times+=("$(printf '%5d s  %s' $((SECONDS - t0)) "debootstrap --variant=minbase $SUITE")")
    say "${times[-1]}"

    t0=$SECONDS
    git clone -q --single-branch "$top" "$root$clone"
    [ "$(git -C "$root$clone" rev-parse HEAD)" = "$(git rev-parse HEAD)" ] ||
        die "the clone's HEAD is not this repository's"
    times+=("$(printf '%5d s  %s' $((SECONDS - t0)) "git clone (HEAD $(git rev-parse --short HEAD))")")
    say "${times[-1]}"

    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"

    local cmd net rc
    while IFS= read -r cmd; do
        case $cmd in
        *tools/deps.sh*) net=online ;;
        *) net=offline ;;
        esac
        echo
        say "\$ $cmd    ($( [ $net = online ] && echo "with the network" || echo "private network namespace, no network"))"
        t0=$SECONDS
        rc=0
        run_in_tree "$cmd" "$net" || rc=$?
        times+=("$(printf '%5d s  %s' $((SECONDS - t0)) "$cmd")")
        say "${times[-1]}"
        if [ $rc -ne 0 ]; then
            printf '%s\n' "${times[@]}" >&2
            die "'$cmd' failed (exit $rc) in $root$clone"
        fi
    done < <(readme_commands)

    echo
    say "passed; the time of each command:"
    printf '%s\n' "${times[@]}"
}

if [ "${1:-}" = --inside ]; then
    inside
    exit 0
fi

# ---- outside ----

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts): sudo make fresh-check"
check_recipes
git diff --quiet HEAD -- || say "note: uncommitted changes are not in the clone (it is HEAD's)"
./tools/deps.sh --fresh || die "could not install debootstrap and ip"
# Nothing may be mounted under the old tree before it is removed.
if grep -q " $FRESH_DIR/" /proc/self/mounts; then
    die "something is still mounted under $FRESH_DIR; unmount it first"
fi
rm -rf --one-file-system "$FRESH_DIR"
mkdir -p "$FRESH_DIR"
start=$SECONDS
if unshare --mount --propagation private -- "$0" --inside; then
    say "total $((SECONDS - start)) s; removing $root"
    rm -rf --one-file-system "$FRESH_DIR"
else
    say "FAILED after $((SECONDS - start)) s; the tree is kept: $root"
    exit 1
fi
