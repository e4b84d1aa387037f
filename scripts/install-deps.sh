#!/bin/sh
# Install the Debian packages given as arguments that are not installed yet.
# Used by the Makefile so that `make test` and `make demo` work on a fresh
# Debian 12 machine.  Does nothing (and needs no privileges) when all are
# present.
set -eu

missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
        grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "warmexec: missing Debian packages:$missing" >&2
    echo "warmexec: install them as root: apt-get install$missing" >&2
    exit 1
fi

echo "warmexec: installing missing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
