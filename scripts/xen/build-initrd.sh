#!/usr/bin/env bash
# Build the boot files for the real-Xen harness (issue #7) from the sysroot that fetch.sh unpacked:
#
#   .cache/xen/boot/xen         Xen 4.17 (multiboot ELF, unzipped from xen-4.17-amd64.gz)
#   .cache/xen/boot/vmlinuz     Debian's Linux 6.1 (dom0 and the PV guest use the same kernel)
#   .cache/xen/boot/dom0.img    dom0 initramfs: busybox + kmod + Xen tools and libraries + modules
#                               + this machine's node + /opt/ptctl + the harness's /init
#   .cache/xen/boot/guest.img   PV guest initramfs: busybox + xen-pcifront + e1000 + guest /init
#
# The guest files are also inside dom0.img (/var/lib/ptc-xen/), where `xl create` finds them.
# Needs root (device nodes in the initramfs, chroot to check the dynamic libraries).
#
#   scripts/xen/build-initrd.sh                  # build (skips when nothing changed)
#   PTC_XEN_FORCE=1 scripts/xen/build-initrd.sh  # rebuild anyway
#   PTC_XEN_AGENT_DIR=dir ...                    # copy dir's contents into dom0's /opt/ptctl
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PTC_XEN_CACHE:-$repo/.cache/xen}
sysroot=$cache/sysroot
rootfs=$repo/test/xen/rootfs
out=$cache/boot
work=$cache/build

# shellcheck source=../lib/initrd.sh
source "$repo/scripts/lib/initrd.sh" # log die initrd_begin skeleton busybox_links install_modules install_node check_libs make_cpio
initrd_begin scripts/xen/fetch.sh # XEN, KABI, KVER
node_bin=$(readlink -f "$(command -v node)") || die "node not found on PATH"
agent_dir=${PTC_XEN_AGENT_DIR:-$rootfs/opt-ptctl}

# Modules loaded by name in dom0 and in the guest (their dependencies are added automatically).
DOM0_MODULES=(xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-pciback e1000 virtio_pci virtio_net 8139cp bridge xen-netback)
GUEST_MODULES=(xen-pcifront e1000)

# --- skip when nothing changed ------------------------------------------------------------------
stamp_input() {
  cat "$sysroot/.ptc-manifest" "$0" "$repo/scripts/lib/initrd.sh"
  printf '%s\n' "$node_bin" "$(node -v)" "${DOM0_MODULES[*]}" "${GUEST_MODULES[*]}"
  find "$rootfs" "$repo/test/realsys/rootfs" "$agent_dir" -type f -print0 | sort -z | xargs -0 sha256sum
  stat -c '%s %Y' "$node_bin"
}
stamp=$(stamp_input | sha256sum | cut -d' ' -f1)
initrd_skip_if_current "$stamp" "${PTC_XEN_FORCE:-}"

# --- the kernel modules the sysroot has ----------------------------------------------------------
initrd_modules_index

# --- PV guest initramfs ---------------------------------------------------------------------------
g=$work/guest
skeleton "$g"
busybox_links "$g"
install_modules "$g" "${GUEST_MODULES[@]}"
install -m 755 "$rootfs/guest-init" "$g/init"
make_cpio "$g" "$work/guest.cpio"
gzip -1 -n -c "$work/guest.cpio" >"$out.tmp/guest.img"
log "guest initramfs: $(du -h "$out.tmp/guest.img" | cut -f1)"

# --- dom0 initramfs -----------------------------------------------------------------------------
d=$work/dom0
skeleton "$d"
# Everything the packages ship, except the kernel, its modules, docs and Python bits (pygrub etc.).
copy_sysroot "$d" --exclude='./usr/lib/python3*' --exclude=./usr/lib/xen-4.17/lib/python
# The Debian wrappers (/usr/sbin/xl -> xen-utils-wrapper) pick /usr/lib/xen-<ver>/bin at run time;
# point the links straight at the 4.17 binaries instead.
for f in "$d"/usr/sbin/* "$d"/usr/bin/*; do
  if [[ -L $f && $(readlink "$f") == *xen-utils-wrapper ]]; then
    b=${f##*/}
    [[ -x $d/usr/lib/xen-4.17/bin/$b ]] && ln -sfn "../lib/xen-4.17/bin/$b" "$f"
  fi
done
busybox_links "$d"
install_modules "$d" "${DOM0_MODULES[@]}"

install_node "$d"

mkdir -p "$d/opt/ptctl" "$d/opt/ptctl-test" "$d/var/lib/ptc-xen" "$d/var/lib/xen" \
  "$d/var/log/xen/console" "$d/var/lib/xenstored" "$d/etc/xen/auto"
cp -a "$agent_dir/." "$d/opt/ptctl/"
install -m 755 "$rootfs/dom0-init" "$d/init"
install -D -m 644 "$repo/test/realsys/rootfs/ptc-lib.sh" "$d/usr/lib/ptc/ptc-lib.sh"
install -m 755 "$rootfs/dom0-scenario.sh" "$d/opt/ptctl-test/scenario.sh"
install -m 644 "$rootfs/pvguest.cfg" "$d/etc/xen/pvguest.cfg"
install -m 644 "$sysroot/boot/vmlinuz-$kver" "$d/var/lib/ptc-xen/vmlinuz"
install -m 644 "$out.tmp/guest.img" "$d/var/lib/ptc-xen/guest.img"
printf 'xen=%s\nkernel=%s (%s)\nnode=%s\n' "$XEN" "$kver" "$KVER" "$(node -v)" >"$d/etc/ptc-xen-versions"

# Every dynamically linked binary we rely on must resolve all its libraries inside the initramfs.
check_libs "$d" /usr/lib/xen-4.17/bin/{xl,xenstored,xenconsoled,xen-init-dom0,xenconsole,libxl-save-helper} \
  /usr/bin/xenstore-read /usr/bin/xenstore-ls /usr/bin/kmod /usr/bin/node ||
  die "fix the package list in scripts/xen/fetch.sh (which package ships the .so: apt-file or packages.debian.org)"

make_cpio "$d" "$out.tmp/dom0.img"
log "dom0 initramfs: $(du -h "$out.tmp/dom0.img" | cut -f1) (uncompressed cpio)"

zcat "$sysroot/boot/xen-4.17-amd64.gz" >"$out.tmp/xen"
initrd_publish "$stamp"
log "ok: $out/{xen,vmlinuz,dom0.img,guest.img}"
