#!/usr/bin/env bash
# trimtab's two entry points on a fresh Debian/Ubuntu machine:
#   ./run.sh demo   installs what the cockpit needs and starts the demo fleet with the window
#   ./run.sh lint   checks the layering contracts (import-linter) and runs ruff
#   ./run.sh test   installs everything the tests need (haproxy, redis-server, promtool, Qt's
#                   libraries, Python packages) and runs the full suite headless
set -euo pipefail
cd "$(dirname "$0")"

QT_LIBS="libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6 libdbus-1-3
 libglib2.0-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1"
# dnsmasq-base: the dnsmasq binary alone (the DNS discovery tests run it on a loopback port);
# the "dnsmasq" package would also start a system resolver on port 53. nodejs: the service
# behind the sidecar in examples/sidecar.
TEST_PKGS="haproxy redis-server prometheus victoria-metrics dnsmasq-base nginx-light nodejs"
PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "run.sh: installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

python_env() {
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "run.sh: trimtab needs Python 3.11+ (found $("$PY" --version 2>&1)); set PYTHON=" >&2; exit 1; }
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # The parser's C helpers (collectors/exposition/_native.c) are built at install: a C compiler
  # and Python's headers. Without them the install goes on and parses in Python (slower).
  command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev
  "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || apt_install python3-dev
  # The agent is its own distribution (trimtab-agent, packaging/agent); the cockpit pins it, so
  # both go in one command: pip takes the agent from this checkout, never from an index.
  .venv/bin/python -m pip install -q -e ./packaging/agent -e ".$1"
}

case "${1:-}" in
  demo)
    shift
    # shellcheck disable=SC2086
    apt_install $QT_LIBS
    python_env ""
    exec .venv/bin/trimtab demo "$@"
    ;;
  lint)
    shift
    python_env "[test]"
    .venv/bin/python .ci/lint_imports.py
    exec .venv/bin/ruff check "$@" .
    ;;
  test)
    shift
    # shellcheck disable=SC2086
    apt_install $QT_LIBS $TEST_PKGS
    python_env "[test]"
    export QT_QPA_PLATFORM=offscreen
    exec .venv/bin/python -m pytest -q "$@"
    ;;
  *)
    echo "usage: ./run.sh demo [--screenshot PNG --after SECONDS] | ./run.sh lint | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
