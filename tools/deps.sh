#!/bin/sh
# The one list of Debian packages this project uses, and what installs
# them. make runs it when a library is missing, README's quick start runs it
# first, .ci/run, the Dockerfile and make cross run it with their group.
# On Debian/Ubuntu it installs what is missing (with sudo when not root);
# elsewhere it prints what to install.
#
# Usage: tools/deps.sh [GROUP...]
#   (none)         what make, make demo and make test need: the compiler,
#                  make, pkg-config, cJSON, libcurl, Check, and git, curl
#                  and python3 for the tests of the documents and exercises;
#                  and liburing, tried (without it the io_uring backend of
#                  05 and 06 is compiled out: --backend uring runs on epoll)
#   --optional     those, and make bench's: wrk, gnuplot, the anchors
#                  (nginx, FastAPI on uvicorn, httpx for its callbacks in
#                  bench/crash.sh and the traced demo), a system call counter
#   --ci           those, and .ci/run's: valgrind, clang and its fuzzer
#                  runtime; chromium, gnuplot and zlib where they install
#                  (without them test_trace skips its browser check)
#   --cross ARCH   those, and ARCH's cross compiler, the libraries' -dev
#                  packages for ARCH (multiarch, beside the host's: nothing
#                  of the host's set is removed) and qemu-user (make cross,
#                  make test-cross; ARCH=arm64)
#   --fresh        those, and what make fresh-check needs on the host:
#                  debootstrap, and ip (a private loopback for the tests)
#   --list         prints the packages of the groups given, installs nothing
set -u

# group     package               installed when (any one of them holds)
# A check is cmd:NAME (a command), pc:MODULE (pkg-config), py:MODULE
# (Debian's python3 imports it), file:PATH or deb:PACKAGE (dpkg says so).
# Groups lib-try and ci-try are tried and may fail; "lib" rows are the
# libraries the build links, installed for ARCH too by --cross.
PACKAGES='
base        make                  cmd:make
base        gcc                   cmd:cc
base        pkg-config            cmd:pkg-config
lib         libcjson-dev          pc:libcjson
lib         libcurl4-openssl-dev  pc:libcurl
lib         check                 pc:check
lib-try     liburing-dev          pc:liburing
base        git                   cmd:git
base        curl                  cmd:curl
base        python3               cmd:python3
bench       wrk                   cmd:wrk
bench       gnuplot-nox           cmd:gnuplot
bench       nginx-light           cmd:nginx file:/usr/sbin/nginx
bench       python3-fastapi       py:fastapi
bench       python3-uvicorn       py:uvicorn
bench       python3-uvloop        py:uvloop
bench       python3-httptools     py:httptools
bench       python3-httpx         py:httpx
bench       strace                cmd:perf cmd:strace
ci          valgrind              cmd:valgrind
ci          clang                 cmd:clang
ci          libclang-rt-dev       deb:libclang-rt-dev
fresh       debootstrap           cmd:debootstrap
fresh       iproute2              cmd:ip
ci-try      chromium              cmd:chromium
ci-try      gnuplot-nox           cmd:gnuplot
ci-try      zlib1g-dev            pc:zlib
'
# Why the base group has git, curl and python3: test_solutions applies the
# exercises' patches with git apply; the documents' command blocks, which
# test_doc_blocks runs, use curl and python3.

# ARCH -> its GNU triplet and qemu's name for it (only arm64 is tried).
cross_triplet() {
    case $1 in
    arm64) echo aarch64-linux-gnu ;;
    *) return 1 ;;
    esac
}
cross_qemu() {
    case $1 in
    arm64) echo aarch64 ;;
    *) return 1 ;;
    esac
}

groups="base lib lib-try"
cross=""
list_only=""
while [ $# -gt 0 ]; do
    case $1 in
    --optional) groups="$groups bench" ;;
    --ci) groups="$groups ci ci-try" ;;
    --fresh) groups="$groups fresh" ;;
    --cross)
        cross=${2:-}
        cross_triplet "$cross" >/dev/null || {
            echo "deps: --cross takes arm64 (got '$cross')" >&2
            exit 2
        }
        shift
        ;;
    --list) list_only=1 ;;
    *)
        echo "usage: tools/deps.sh [--optional] [--ci] [--fresh] [--cross ARCH] [--list]" >&2
        exit 2
        ;;
    esac
    shift
done

# True if one of the checks holds ($cross_pc: pkg-config's folders for
# ARCH's libraries).
present() {
    for c in "$@"; do
        arg=${c#*:}
        case $c in
        cmd:*) command -v "$arg" >/dev/null 2>&1 && return 0 ;;
        pc:*)
            command -v pkg-config >/dev/null 2>&1 || continue
            if [ -n "${cross_pc:-}" ]; then
                PKG_CONFIG_LIBDIR=$cross_pc pkg-config --exists "$arg"
            else
                pkg-config --exists "$arg"
            fi 2>/dev/null && return 0
            ;;
        py:*) /usr/bin/python3 -c "import $arg" >/dev/null 2>&1 && return 0 ;;
        file:*) [ -e "$arg" ] && return 0 ;;
        deb:*)
            dpkg-query -W -f '${Status}' "$arg" 2>/dev/null |
                grep -q 'ok installed' && return 0
            ;;
        esac
    done
    return 1
}

# Prints the packages of group g (its argument) missing here; with
# --list, all of them.
missing_of() {
    echo "$PACKAGES" | while read -r g pkg checks; do
        [ "$g" = "$1" ] || continue
        # shellcheck disable=SC2086
        if [ -n "$list_only" ] || ! present $checks; then
            echo "$pkg"
        fi
    done
}

# The same for ARCH: its compiler, qemu, and every "lib" row as pkg:ARCH.
missing_cross() {
    triplet=$(cross_triplet "$cross")
    qarch=$(cross_qemu "$cross")
    { [ -n "$list_only" ] || ! present "cmd:$triplet-gcc"; } &&
        echo "crossbuild-essential-$cross"
    { [ -n "$list_only" ] || ! present "cmd:qemu-$qarch"; } &&
        echo "qemu-user"
    cross_pc=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig
    echo "$PACKAGES" | while read -r g pkg checks; do
        [ "$g" = lib ] || continue
        # shellcheck disable=SC2086
        if [ -n "$list_only" ] || ! present $checks; then
            echo "$pkg:$cross"
        fi
    done
}

need_pkgs=""
try_pkgs=""
for g in $groups; do
    case $g in
    *-try) try_pkgs="$try_pkgs $(missing_of "$g" | tr '\n' ' ')" ;;
    *) need_pkgs="$need_pkgs $(missing_of "$g" | tr '\n' ' ')" ;;
    esac
done
[ -n "$cross" ] && need_pkgs="$need_pkgs $(missing_cross | tr '\n' ' ')"
# One space between names, none at the ends.
need_pkgs=$(echo $need_pkgs)
try_pkgs=$(echo $try_pkgs)

if [ -n "$list_only" ]; then
    echo $need_pkgs $try_pkgs
    exit 0
fi
[ -z "$need_pkgs$try_pkgs" ] && exit 0

[ -n "$need_pkgs" ] && echo "deps: missing Debian packages: $need_pkgs" >&2
[ -n "$try_pkgs" ] && echo "deps: missing, tried but not required: $try_pkgs" >&2
# What to do where nothing can be installed: fail if something required
# is missing, go on without the optional ones.
cannot_install() {
    echo "deps: $1" >&2
    [ -z "$need_pkgs" ] && exit 0
    echo "deps: install the equivalents of: $need_pkgs" >&2
    exit 1
}
command -v apt-get >/dev/null 2>&1 || cannot_install "no apt-get here"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        cannot_install "not root and no sudo (as root: apt-get install -y $need_pkgs $try_pkgs)"
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$cross" ] && ! dpkg --print-foreign-architectures | grep -qx "$cross"; then
    echo "deps: adding the $cross architecture: ${SUDO:+$SUDO }dpkg --add-architecture $cross" >&2
    $SUDO dpkg --add-architecture "$cross" || exit 1
fi
$SUDO apt-get update -qq >&2 || echo "deps: apt-get update failed; trying the install anyway" >&2
# --no-remove: a package for ARCH that would replace one of the host's
# aborts the install instead.
if [ -n "$need_pkgs" ]; then
    echo "deps: installing with: ${SUDO:+$SUDO }apt-get install -y --no-remove $need_pkgs" >&2
    # shellcheck disable=SC2086
    if ! $SUDO apt-get install -y -qq --no-remove $need_pkgs >&2; then
        echo "deps: install failed. Run by hand: ${SUDO:+$SUDO }apt-get install -y $need_pkgs" >&2
        exit 1
    fi
fi
if [ -n "$try_pkgs" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-remove $try_pkgs >&2 ||
        echo "deps: could not install $try_pkgs; the checks that need them will say SKIPPED" >&2
fi
echo "deps: done" >&2
