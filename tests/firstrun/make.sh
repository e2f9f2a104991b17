#!/usr/bin/env bash
# Two fresh Debian 12 (bookworm) roots, as a newcomer and a server have them:
#   root/  debootstrap minbase plus what README's Prerequisites name from apt (python3,
#          python3-venv, zstd, git, ca-certificates): no pyenv, no compiler, no mirror of anything.
#          README's first command and the unit part of its second run there.
#   bare/  debootstrap minbase alone: no Python at all. The bundle built in root/ starts there.
# tests/integration/test_firstrun.py uses both.
#
#   tests/firstrun/make.sh        -> prints the cache folder; made once, then reused
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/bundler-tests/bookworm (about 500 MB); the first run
# needs Debian's mirror and a few minutes.
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/bundler-tests/bookworm
debian=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

make_root() {  # NAME [PACKAGES]
    local root=$cache/$1
    [ -e "$root/.ready" ] && return
    rm -rf "$root" "$root.partial"
    debootstrap --variant=minbase ${2:+--include=$2} bookworm "$root.partial" "$debian" \
        >"$cache/debootstrap-$1.log" 2>&1 || { tail -20 "$cache/debootstrap-$1.log" >&2; exit 1; }
    chroot "$root.partial" /bin/sh -c 'apt-get clean' >/dev/null 2>&1 || true
    mv "$root.partial" "$root"
    touch "$root/.ready"
}

make_root root python3,python3-venv,zstd,git,ca-certificates
make_root bare
echo "$cache"
