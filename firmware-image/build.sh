#!/usr/bin/env bash
# Builds a root filesystem tarball for an ARM gateway with InterLog installed:
#   firmware-image/build.sh --arch arm64|armhf --out DIR
# Debian trixie (Node 20.19 from Debian's nodejs) by foreign debootstrap, InterLog's compiled
# output and production dependencies in /opt/interlog, fs-ext cross-compiled for the target, the
# systemd unit enabled, /etc/interlog/config.json, /var/lib/interlog and an `interlog` user.
# Writes DIR/interlog-ARCH.tar.gz (reproducible: sorted, fixed owners and times from the last
# commit) and leaves the unpacked tree in DIR/rootfs-ARCH for smoke.sh.
#
# Needs (Debian): debootstrap qemu-user-static g++-aarch64-linux-gnu (arm64) or
# g++-arm-linux-gnueabihf (armhf), and a built checkout (npm ci). See ../shared/TOOLCHAIN.md:
# binfmt_misc is not mounted here, so debootstrap's second stage cannot run; the packages are
# unpacked with dpkg-deb instead, which is enough to run Node.
set -euo pipefail

arch=arm64
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "build.sh: --out DIR is required" >&2; exit 2; }
case "$arch" in
  arm64) cross=aarch64-linux-gnu; gyp_arch=arm64 ;;
  armhf) cross=arm-linux-gnueabihf; gyp_arch=arm ;;
  *) echo "build.sh: --arch must be arm64 or armhf" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
rootfs="$out/rootfs-$arch"
stage="$out/stage-$arch"
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

for tool in debootstrap dpkg-deb "$cross-g++"; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install debootstrap g++-$cross)" >&2; exit 2; }
done
[ -f "$repo/dist/cli/main.js" ] || { echo "build.sh: build the checkout first (npm ci)" >&2; exit 2; }

step() { echo "build.sh [$arch]: $*"; }

# 1. The Debian root filesystem, with Debian's nodejs (cached: reused when already unpacked).
if [ ! -x "$rootfs/usr/bin/node" ]; then
  step "debootstrap trixie from $mirror"
  rm -rf "$rootfs"
  debootstrap --arch="$arch" --foreign --variant=minbase --include=nodejs,ca-certificates trixie "$rootfs" "$mirror" >"$out/debootstrap-$arch.log"
  step "unpacking $(ls "$rootfs"/var/cache/apt/archives/*.deb | wc -l) packages"
  for deb in "$rootfs"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  rm -f "$rootfs"/var/cache/apt/archives/*.deb
fi

# 2. InterLog: compiled output and production dependencies, fs-ext cross-compiled.
step "staging InterLog (production dependencies)"
rm -rf "$stage"
mkdir -p "$stage"
cp -r "$repo/dist" "$repo/docs" "$repo/web" "$repo/package.json" "$repo/package-lock.json" "$stage/"
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null 2>&1)
# cbor-extract is an optional native speed-up of cbor-x; without it cbor-x uses its JavaScript decoder.
rm -rf "$stage/node_modules/cbor-extract" "$stage/node_modules/@cbor-extract"
# The compiler and Node's types build the package at install (npm's prepare); the image ships dist/ built.
rm -rf "$stage/node_modules/typescript" "$stage/node_modules/@types"
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
step "cross-compiling fs-ext with $cross-g++"
(cd "$stage/node_modules/fs-ext" && CC="$cross-gcc" CXX="$cross-g++" LINK="$cross-g++" \
  node "$gyp" rebuild --arch="$gyp_arch" --nodedir="${NODEDIR:-/usr}" >"$out/fs-ext-$arch.log" 2>&1)
rm -f "$stage/package-lock.json"
rm -rf "$rootfs/opt/interlog"
mkdir -p "$rootfs/opt"
cp -r "$stage" "$rootfs/opt/interlog"

# 3. Service, configuration, user and data directory.
step "service, configuration, user"
mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants" "$rootfs/etc/interlog" "$rootfs/var/lib/interlog" "$rootfs/usr/local/bin"
cp "$repo/daemon/interlog.service" "$rootfs/etc/systemd/system/interlog.service"
ln -sf ../interlog.service "$rootfs/etc/systemd/system/multi-user.target.wants/interlog.service"
cat >"$rootfs/etc/interlog/config.json" <<'JSON'
{
  "data": "/var/lib/interlog",
  "broker": "none",
  "logs": ["main"],
  "durability": "interval",
  "intervalMs": 200
}
JSON
cat >"$rootfs/usr/local/bin/interlog" <<'SH'
#!/bin/sh
exec node /opt/interlog/dist/cli/main.js "$@"
SH
chmod 755 "$rootfs/usr/local/bin/interlog"
# debootstrap's second stage (which would run base-passwd's setup) cannot run here: seed the files.
[ -f "$rootfs/etc/passwd" ] || cp "$rootfs/usr/share/base-passwd/passwd.master" "$rootfs/etc/passwd"
[ -f "$rootfs/etc/group" ] || cp "$rootfs/usr/share/base-passwd/group.master" "$rootfs/etc/group"
grep -q '^interlog:' "$rootfs/etc/passwd" || echo 'interlog:x:990:990:InterLog daemon:/var/lib/interlog:/usr/sbin/nologin' >>"$rootfs/etc/passwd"
grep -q '^interlog:' "$rootfs/etc/group" || echo 'interlog:x:990:' >>"$rootfs/etc/group"
chown -R 990:990 "$rootfs/var/lib/interlog"
chmod 750 "$rootfs/var/lib/interlog"

# 4. A reproducible tarball.
step "tarball"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --exclude=./var/lib/interlog --exclude=./proc --exclude=./sys --exclude=./dev \
  -C "$rootfs" -cf - . | gzip -n >"$out/interlog-$arch.tar.gz"
step "wrote $out/interlog-$arch.tar.gz ($(du -h "$out/interlog-$arch.tar.gz" | cut -f1)); unpacked tree in $rootfs"
