#!/bin/sh
# Makes sure the libraries the build needs are installed: cJSON, libcurl and
# Check, found through pkg-config. On Debian/Ubuntu it installs what is
# missing (with sudo when not root); elsewhere it prints what to install.
# Usage: tools/deps.sh [--optional]   (--optional adds wrk, gnuplot and the
# bench's anchors: nginx, FastAPI on uvicorn; used by make bench but not
# required by it)
set -u

need_pkgs=""
pc_ok() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }

command -v pkg-config >/dev/null 2>&1 || need_pkgs="$need_pkgs pkg-config"
pc_ok libcjson || need_pkgs="$need_pkgs libcjson-dev"
pc_ok libcurl  || need_pkgs="$need_pkgs libcurl4-openssl-dev"
pc_ok check    || need_pkgs="$need_pkgs check"
command -v cc >/dev/null 2>&1 || need_pkgs="$need_pkgs gcc"
if [ "${1:-}" = "--optional" ]; then
    command -v wrk >/dev/null 2>&1 || need_pkgs="$need_pkgs wrk"
    command -v gnuplot >/dev/null 2>&1 || need_pkgs="$need_pkgs gnuplot-nox"
fi

# The bench's anchors (bench/anchors.sh): nginx with one worker, and the
# seed's FastAPI service on uvicorn with uvloop and httptools, all from
# Debian; and a system call counter for its cost table (perf or strace).
# Optional like the rest: bench reports a missing anchor and goes on.
if [ "${1:-}" = "--optional" ]; then
    { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 ||
        need_pkgs="$need_pkgs nginx-light"
    for m in fastapi uvicorn uvloop httptools; do
        /usr/bin/python3 -c "import $m" >/dev/null 2>&1 ||
            need_pkgs="$need_pkgs python3-$m"
    done
    { command -v perf || command -v strace; } >/dev/null 2>&1 ||
        need_pkgs="$need_pkgs strace"
fi

[ -z "$need_pkgs" ] && exit 0

echo "deps: missing Debian packages:$need_pkgs" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: no apt-get here. Install the equivalents of:$need_pkgs" >&2
    echo "deps: e.g. on Debian/Ubuntu: sudo apt-get install$need_pkgs" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "deps: not root and no sudo; run as root: apt-get install -y$need_pkgs" >&2
        exit 1
    fi
fi
echo "deps: installing with: $SUDO apt-get install -y$need_pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || echo "deps: apt-get update failed; trying the install anyway" >&2
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y -qq $need_pkgs >&2; then
    echo "deps: install failed. Run by hand: $SUDO apt-get install -y$need_pkgs" >&2
    exit 1
fi
echo "deps: done" >&2
