#!/usr/bin/env bash
# Fetch the pinned Debian bookworm packages for the real-KVM harness (issue 16) and unpack them into
# a sysroot under .cache/kvm/. The pins are scripts/kvm/packages.lock (name=version, one a line):
# the dependency closure of the packages below, resolved once by apt with a private, empty dpkg
# status (so the host's own state is neither read nor touched) and committed.
#
#   scripts/kvm/fetch.sh            # download exactly the locked versions + unpack (idempotent)
#   scripts/kvm/fetch.sh --lock     # re-resolve the closure with apt and rewrite packages.lock
#   PTC_KVM_CACHE=/some/dir ...     # another cache directory (default: <repo>/.cache/kvm)
#
# Nothing is installed into the host except the host tools (qemu-system-x86, cpio) when missing.
# Debian removes superseded versions from its mirrors; the fetch then names the pin that is gone and
# what the mirror has: run --lock (and commit the new lock) or edit the line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PTC_KVM_CACHE:-$repo/.cache/kvm}
lock=$here/packages.lock

# The kernel is the one scripts/xen/fetch.sh pins (the same ABI and Debian version).
KABI=6.1.0-56
# What L1 (the KVM host) needs; --lock adds their whole Depends/Pre-Depends closure.
ROOTS=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
  kmod busybox-static "linux-image-$KABI-amd64"
)

# shellcheck source=../lib/debs.sh
source "$repo/scripts/lib/debs.sh"

if [[ ${1:-} == --lock ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  : >"$tmp/status"
  mkdir -p "$tmp/cache/archives/partial"
  # -s: simulate only (nothing downloaded or installed); an empty status = a bare system.
  apt-get -s -q install --no-install-recommends -o Dir::State::status="$tmp/status" \
    -o Dir::State::extended_states="$tmp/ext" -o Dir::Cache="$tmp/cache" -o Debug::NoLocking=1 \
    "${ROOTS[@]}" >"$tmp/plan" || { cat "$tmp/plan" >&2; exit 1; }
  {
    echo "# scripts/kvm/fetch.sh --lock on $(date -u +%Y-%m-%d): closure of ${ROOTS[*]}"
    echo "# (Debian 12 bookworm + bookworm-security, amd64, --no-install-recommends). name=version"
    awk '$1 == "Inst" { v = $3; sub(/^\(/, "", v); print $2 "=" v }' "$tmp/plan" | LC_ALL=C sort
  } >"$lock.tmp"
  mv "$lock.tmp" "$lock"
  echo "fetch: wrote $lock ($(grep -vc '^#' "$lock") packages)"
  exit 0
fi

[[ -f $lock ]] || { echo "fetch: $lock missing: run $0 --lock" >&2; exit 1; }
mapfile -t PINS < <(grep -v '^#' "$lock" | grep .)
KVER=$(printf '%s\n' "${PINS[@]}" | sed -n "s/^linux-image-$KABI-amd64=//p")
[[ -n $KVER ]] || { echo "fetch: $lock has no linux-image-$KABI-amd64" >&2; exit 1; }
LIBVIRT=$(printf '%s\n' "${PINS[@]}" | sed -n 's/^libvirt-daemon=//p')
QEMU=$(printf '%s\n' "${PINS[@]}" | sed -n 's/^qemu-system-x86=//p')

debs_host_tools fetch qemu-system-x86_64:qemu-system-x86 cpio:cpio
debs_fetch fetch "$cache" "$lock" "${PINS[@]}"
DEBS_VERSIONS=$(printf 'KABI=%s\nKVER=%s\nLIBVIRT=%s\nQEMU=%s\n' "$KABI" "$KVER" "$LIBVIRT" "$QEMU") \
  debs_unpack fetch "$cache" "${PINS[@]}"
echo "fetch: ok: ${#PINS[@]} packages, kernel $KABI-amd64 ($KVER), libvirt $LIBVIRT, qemu $QEMU"
