#!/usr/bin/env bash
# A fresh Debian 12 (bookworm) as a newcomer has it: debootstrap minbase plus python3,
# python3-venv and git from apt, nothing else (no pyenv, no zstd, no compiler). README's first
# command is tried there by tests/integration/test_firstrun.py.
#
#   tests/firstrun/make.sh        -> prints the cache folder; made once, then reused
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/bundler-tests/bookworm/root (about 300 MB); the
# first run needs Debian's mirror and a few minutes.
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/bundler-tests/bookworm
root=$cache/root
debian=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ ! -e "$root/.ready" ]; then
    rm -rf "$root" "$root.partial"
    debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates \
        bookworm "$root.partial" "$debian" >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    chroot "$root.partial" /bin/sh -c 'apt-get clean' >/dev/null 2>&1 || true
    mv "$root.partial" "$root"
    touch "$root/.ready"
fi
echo "$cache"
