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

log() { printf 'fetch: %s\n' "$*"; }

# --- host tools ---------------------------------------------------------------------------------
missing=()
for t in "${HOST_TOOLS[@]}"; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if ((${#missing[@]})); then
  log "installing host tools: ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2; then
    echo "fetch: could not install ${missing[*]} with apt-get (this needs root and a reachable Debian mirror); install them yourself and rerun." >&2
    exit 1
  fi
fi

# --- downloads ----------------------------------------------------------------------------------
mkdir -p "$cache/debs"
deb_file() { # name version -> path of the downloaded .deb, or empty
  local enc=${2//:/%3a}
  compgen -G "$cache/debs/${1}_${enc}_*.deb" | head -n1 || true
}

need=()
for pin in "${PINS[@]}"; do
  [[ -n $(deb_file "${pin%%=*}" "${pin#*=}") ]] || need+=("$pin")
done
if ((${#need[@]})); then
  # Make sure apt knows the pinned versions (a fresh machine may never have run apt-get update).
  # (apt-cache show exits 0 even for an unknown version: count the stanzas it prints instead.)
  known() { [[ $(apt-cache show "$@" 2>/dev/null | grep -c '^Package:') == "$#" ]]; }
  if ! known "${need[@]}"; then
    log "apt-get update"
    apt-get update -qq >&2 || true
    for pin in "${need[@]}"; do
      if ! known "$pin"; then
        echo "fetch: Debian no longer offers ${pin%%=*} version ${pin#*=}; the mirror has: $(apt-cache madison "${pin%%=*}" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); printf "%s ", $2}')— update the pin in $0." >&2
        exit 1
      fi
    done
  fi
  log "downloading ${#need[@]} packages into $cache/debs"
  (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "${need[@]}" >&2)
  for pin in "${need[@]}"; do
    [[ -n $(deb_file "${pin%%=*}" "${pin#*=}") ]] || { echo "fetch: download of $pin produced no .deb" >&2; exit 1; }
  done
fi

# --- unpack into the sysroot (rebuilt only when the pin list changes) ----------------------------
manifest=$(printf '%s\n' "${PINS[@]}" | sort)
sysroot="$cache/sysroot"
if [[ -f $sysroot/.ptc-manifest && $(cat "$sysroot/.ptc-manifest") == "$manifest" ]]; then
  log "sysroot up to date ($sysroot)"
else
  log "unpacking ${#PINS[@]} packages into $sysroot"
  rm -rf "$sysroot.tmp" "$sysroot"
  mkdir -p "$sysroot.tmp"
  for pin in "${PINS[@]}"; do
    dpkg -x "$(deb_file "${pin%%=*}" "${pin#*=}")" "$sysroot.tmp"
  done
  printf '%s\n' "$manifest" >"$sysroot.tmp/.ptc-manifest"
  printf 'XEN=%s\nKABI=%s\nKVER=%s\n' "$XEN" "$KABI" "$KVER" >"$sysroot.tmp/.ptc-versions"
  mv "$sysroot.tmp" "$sysroot"
fi
log "ok: $(ls "$cache/debs" | wc -l) packages, kernel $KABI-amd64 ($KVER), xen $XEN"
