#!/usr/bin/env bash
# An older system to prove bundles on: a Debian 11 (bullseye, glibc 2.31) root made with
# debootstrap, and a CPython compiled inside it from Debian's own python3.9 source package, made
# self-contained (its libssl, libsqlite3, libffi... in its lib/, RUNPATH $ORIGIN/../lib) and packed
# as a python-build-standalone `install_only` archive with a SHA256SUMS file (a mirror folder).
#
#   tests/oldsys/make.sh PATCHELF     -> prints the cache folder; made once, then reused
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/bundler-tests/bullseye: root/ (the system, about
# 400 MB) and mirror/ (the archive). The first run needs Debian's mirror and about 10 minutes.
set -euo pipefail

patchelf=${1:?usage: make.sh PATCHELF}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/bundler-tests/bullseye
root=$cache/root
mirror=$cache/mirror
debian=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
prefix=/opt/python3.9
archive=cpython-3.9.2+bullseye-x86_64-unknown-linux-gnu-install_only.tar.gz
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ ! -e "$root/.ready" ]; then
    rm -rf "$root" "$root.partial"
    debootstrap --variant=minbase \
        --include=build-essential,dpkg-dev,libssl-dev,libsqlite3-dev,libffi-dev,zlib1g-dev,libbz2-dev,liblzma-dev,uuid-dev,xz-utils,procps \
        bullseye "$root.partial" "$debian" >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    mv "$root.partial" "$root"
    touch "$root/.ready"
fi

if [ ! -e "$mirror/SHA256SUMS" ]; then
    echo "deb-src $debian bullseye main" >"$root/etc/apt/sources.list.d/src.list"
    chroot "$root" /bin/sh -ec "
        export LC_ALL=C DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        rm -rf /build && mkdir /build && cd /build
        apt-get source --download-only -qq python3.9
        tar xf python3.9_*.orig.tar.xz
        cd Python-3.9*/
        ./configure -q --prefix=$prefix --enable-shared LDFLAGS=-Wl,-rpath=$prefix/lib
        make -s -j\$(nproc)
        rm -rf $prefix && make -s install
        ldd $prefix/bin/python3.9 $prefix/lib/python3.9/lib-dynload/*.so \
            | awk '/=> \\// {print \$3}' | sort -u >/build/needed
    " >"$cache/python.log" 2>&1 || { tail -30 "$cache/python.log" >&2; exit 1; }
    # Self-contained: every library it loads, except glibc's own, travels in its lib/.
    stage=$cache/stage
    rm -rf "$stage" && mkdir -p "$stage"
    cp -a "$root$prefix" "$stage/python"
    grep -vE '/(libc|libm|libdl|libpthread|librt|libutil|libresolv|libcrypt|ld-linux[^/]*)\.so' \
        "$root/build/needed" | while read -r lib; do
        cp -L "$root$lib" "$stage/python/lib/"
    done
    for f in "$stage"/python/bin/python3.9 "$stage"/python/lib/*.so*; do
        [ -L "$f" ] || "$patchelf" --set-rpath '$ORIGIN/../lib' "$f"
    done
    for f in "$stage"/python/lib/python3.9/lib-dynload/*.so; do
        "$patchelf" --set-rpath '$ORIGIN/../..' "$f"
    done
    for f in "$stage"/python/lib/lib{ssl,crypto,sqlite3,ffi,z,bz2,lzma,uuid}*.so*; do
        [ -L "$f" ] || "$patchelf" --set-rpath '$ORIGIN' "$f"
    done
    rm -rf "$stage/python/lib/python3.9/test"
    mkdir -p "$mirror.partial"
    tar -C "$stage" -czf "$mirror.partial/$archive" python
    (cd "$mirror.partial" && sha256sum "$archive" >SHA256SUMS)
    rm -rf "$stage" "$mirror" && mv "$mirror.partial" "$mirror"
fi
echo "$cache"
