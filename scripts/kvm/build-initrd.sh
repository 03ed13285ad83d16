#!/usr/bin/env bash
# Build the boot files for the real-KVM harness (issue 16) from the sysroot scripts/kvm/fetch.sh
# unpacked:
#
#   .cache/kvm/boot/vmlinuz   Debian's Linux 6.1 (the same pinned kernel as the Xen harness)
#   .cache/kvm/boot/l1.img    L1's initramfs (uncompressed cpio): busybox + kmod + libvirt (libvirtd,
#                             virsh, the qemu driver only) + qemu-system-x86 for the nested guest +
#                             their libraries + the needed modules + this machine's node +
#                             /opt/ptctl + the harness's /init and scenario
#
# Needs root (device nodes in the initramfs, chroot to check the dynamic libraries).
#
#   scripts/kvm/build-initrd.sh                  # build (skips when nothing changed)
#   PTC_KVM_FORCE=1 scripts/kvm/build-initrd.sh  # rebuild anyway
#   PTC_KVM_AGENT_DIR=dir ...                    # copy dir's contents into L1's /opt/ptctl
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PTC_KVM_CACHE:-$repo/.cache/kvm}
sysroot=$cache/sysroot
rootfs=$repo/test/kvm/rootfs
shared=$repo/test/realsys/rootfs
out=$cache/boot
work=$cache/build

# shellcheck source=../lib/initrd.sh
source "$repo/scripts/lib/initrd.sh" # log die initrd_begin skeleton busybox_links install_modules install_node check_libs make_cpio
initrd_begin scripts/kvm/fetch.sh # KABI KVER LIBVIRT QEMU
agent_dir=${PTC_KVM_AGENT_DIR:-$repo/test/xen/rootfs/opt-ptctl}

# Modules loaded by name in L1 (their dependencies are added automatically). vfio_iommu_type1 is
# what vfio loads for a type-1 container; libvirt/QEMU open /dev/vfio/vfio.
L1_MODULES=(e1000 virtio_pci virtio_net vfio vfio_pci vfio_iommu_type1)
# libvirt's connection drivers other than qemu (network, nodedev, storage, ...) are left out: they
# want dnsmasq, udevd, firewall tools, and slow libvirtd's start under TCG.
DROP_DRIVERS=(interface network nodedev nwfilter secret storage)

# --- skip when nothing changed ------------------------------------------------------------------
stamp_input() {
  cat "$sysroot/.ptc-manifest" "$0" "$repo/scripts/lib/initrd.sh"
  printf '%s\n' "$(readlink -f "$(command -v node)")" "$(node -v)" "${L1_MODULES[*]}" "${DROP_DRIVERS[*]}"
  find "$rootfs" "$shared" "$agent_dir" -type f -print0 | sort -z | xargs -0 sha256sum
}
stamp=$(stamp_input | sha256sum | cut -d' ' -f1)
initrd_skip_if_current "$stamp" "${PTC_KVM_FORCE:-}"

initrd_modules_index

d=$work/l1
skeleton "$d"
# Everything the packages ship, except the kernel, its modules, docs, locales, the initramfs tools.
copy_sysroot "$d" --exclude=./usr/share/initramfs-tools --exclude=./etc/initramfs-tools
for drv in "${DROP_DRIVERS[@]}"; do
  rm -f "$d/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_$drv.so"
done
busybox_links "$d"
install_modules "$d" "${L1_MODULES[@]}"
install_node "$d"

mkdir -p "$d/opt/ptctl" "$d/opt/ptctl-test" "$d/usr/lib/ptc" "$d/etc/ptc-kvm" \
  "$d/var/lib/libvirt/qemu" "$d/var/cache/libvirt/qemu" "$d/var/log/libvirt/qemu" "$d/etc/libvirt/qemu"
cp -a "$agent_dir/." "$d/opt/ptctl/"
install -m 755 "$rootfs/l1-init" "$d/init"
install -m 644 "$shared/ptc-lib.sh" "$d/usr/lib/ptc/ptc-lib.sh"
install -m 755 "$rootfs/tools-scenario.sh" "$d/opt/ptctl-test/scenario.sh"
install -m 644 "$rootfs/libvirtd.conf" "$d/etc/libvirt/libvirtd.conf"
install -m 644 "$rootfs/qemu.conf" "$d/etc/libvirt/qemu.conf"
install -m 755 "$rootfs/agent-scenario.sh" "$d/opt/ptctl-test/agent-scenario.sh"
install -m 644 "$rootfs"/nested.xml "$rootfs"/nested-acpi.xml "$rootfs"/hostdev.xml "$rootfs"/hostdev-rootport.xml "$d/etc/ptc-kvm/"
# libvirt resolves its build-time default user and group (libvirt-qemu, kvm) before it reads qemu.conf
# (which says root): they must exist.
printf 'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n' >>"$d/etc/passwd"
printf 'kvm:x:993:\nlibvirt-qemu:x:64055:\nlibvirt:x:994:\n' >>"$d/etc/group"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$d/etc/nsswitch.conf"
printf '127.0.0.1 localhost l1\n' >"$d/etc/hosts"
printf 'kernel=%s (%s)\nlibvirt=%s\nqemu=%s\nnode=%s\n' "$kver" "$KVER" "$LIBVIRT" "$QEMU" "$(node -v)" >"$d/etc/ptc-kvm/versions"

check_libs "$d" /usr/sbin/libvirtd /usr/bin/virsh /usr/bin/qemu-system-x86_64 /usr/bin/kmod /usr/bin/node \
  /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ||
  die "fix the closure: scripts/kvm/fetch.sh --lock (or add the package that ships the .so to ROOTS)"

make_cpio "$d" "$out.tmp/l1.img"
log "L1 initramfs: $(du -h "$out.tmp/l1.img" | cut -f1) (uncompressed cpio)"
initrd_publish "$stamp"
log "ok: $out/{vmlinuz,l1.img}"
