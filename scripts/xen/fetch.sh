#!/usr/bin/env bash
# Fetch the pinned Debian bookworm packages for the real-Xen harness (issue #7) and unpack them
# into a sysroot under .cache/xen/. Idempotent: a second run downloads nothing and unpacks nothing.
# Nothing is installed into the host's /boot or /lib; only the host tools QEMU and cpio are
# installed with apt-get when missing.
#
#   scripts/xen/fetch.sh            # download + unpack (and install qemu-system-x86/cpio if missing)
#   PTC_XEN_CACHE=/some/dir ...     # use another cache directory (default: <repo>/.cache/xen)
#
# Pins: the versions `apt-cache policy` showed as candidates on Debian 12 (bookworm +
# bookworm-security). Debian removes superseded versions from its mirrors; if a pin is no longer
# downloadable this script says so and lists what the mirror has: update the pin here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PTC_XEN_CACHE:-$repo/.cache/xen}

XEN=4.17.7+13-g2445b30a44-0+deb12u1
KABI=6.1.0-56
KVER=6.1.192-2

# name=version. The first block is what DESIGN §9 names; the rest is what `ld.so --list` of the
# unpacked binaries (xl, xenstored, xenconsoled, xenstore-*, kmod) needs. node's libraries come
# from this machine (see build-initrd.sh).
PINS=(
  "xen-hypervisor-4.17-amd64=$XEN"
  "xen-utils-4.17=$XEN"
  "xen-utils-common=$XEN"
  "xenstore-utils=$XEN"
  "libxenmisc4.17=$XEN"
  "libxencall1=$XEN"
  "libxendevicemodel1=$XEN"
  "libxenevtchn1=$XEN"
  "libxenforeignmemory1=$XEN"
  "libxengnttab1=$XEN"
  "libxenhypfs1=$XEN"
  "libxenstore4=$XEN"
  "libxentoolcore1=$XEN"
  "libxentoollog1=$XEN"
  "linux-image-$KABI-amd64=$KVER"
  "kmod=30+20221128-1"
  "libkmod2=30+20221128-1"
  "busybox-static=1:1.35.0-4+deb12u1+b1"
  "libyajl2=2.1.0-3+deb12u2"
  "libgcc-s1=12.2.0-14+deb12u1"
  "libc6=2.36-9+deb12u14"
  "libncurses6=6.4-4"
  "libtinfo6=6.4-4"
  "libext2fs2=1.47.0-2+b2"
  "libcom-err2=1.47.0-2+b2"
  "liblzma5=5.4.1-1+deb12u2"
  "libuuid1=2.38.1-5+deb12u3"
  "libzstd1=1.5.4+dfsg2-5"
  "zlib1g=1:1.2.13.dfsg-1"
  "libssl3=3.0.22-1~deb12u2"
)

HOST_TOOLS=(qemu-system-x86_64:qemu-system-x86 cpio:cpio)

# shellcheck source=../lib/debs.sh
source "$repo/scripts/lib/debs.sh"
debs_host_tools fetch "${HOST_TOOLS[@]}"
debs_fetch fetch "$cache" "$0" "${PINS[@]}"
DEBS_VERSIONS=$(printf 'XEN=%s\nKABI=%s\nKVER=%s\n' "$XEN" "$KABI" "$KVER") debs_unpack fetch "$cache" "${PINS[@]}"
echo "fetch: ok: $(ls "$cache/debs" | wc -l) packages, kernel $KABI-amd64 ($KVER), xen $XEN"
