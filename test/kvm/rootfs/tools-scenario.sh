#!/bin/sh
# L1's platform scenario (test/kvm/run.mjs --tools): IOMMU, vfio-pci the libvirt way, libvirtd, a
# paused nested domain, hostdev hot attach/detach with virsh, release, and the new_id hazard.
# Prints facts only; the host script judges them.
. /usr/lib/ptc/ptc-lib.sh
BDF=0000:00:04.0
OTHER=0000:00:06.0
DEV=/sys/bus/pci/devices/$BDF
VIRSH="timeout 120 virsh -c qemu:///system"
fact "versions $(tr '\n' ' ' </etc/ptc-kvm/versions)"

# --- IOMMU --------------------------------------------------------------------------------------
fact "iommu-groups count=$(ls /sys/kernel/iommu_groups | wc -l) bdf-group=$(basename "$(readlink "$DEV/iommu_group" 2>/dev/null)" 2>/dev/null)"
grep -o 'intel_iommu=[^ ]*' /proc/cmdline | sed 's/^/[cmdline] /'
dmesg | grep -iE 'DMAR: (IOMMU enabled|Intel\(R\) Virtualization|Interrupt remapping enabled)|DMAR-IR' | head -5 | sed 's/^/[dmesg] /'
GROUP=$(basename "$(readlink "$DEV/iommu_group")")
fact "group-members $GROUP: $(ls /sys/kernel/iommu_groups/$GROUP/devices | tr '\n' ' ')"
fact "pci-before $BDF=$(drv $BDF) $OTHER=$(drv $OTHER)"

# --- bind to vfio-pci the libvirt way -------------------------------------------------------------
t=$(now)
run modprobe-vfio /usr/sbin/modprobe vfio-pci
echo vfio-pci >"$DEV/driver_override"
echo "$BDF" >"$DEV/driver/unbind"
echo "$BDF" >/sys/bus/pci/drivers_probe
fact "vfio-bind driver=$(drv $BDF) override=$(cat "$DEV/driver_override") devnode=$(ls /dev/vfio | tr '\n' ' ') took-from=$t to=$(now)"

# --- libvirtd -----------------------------------------------------------------------------------
t=$(now)
libvirtd >/run/libvirtd.log 2>&1 &
echo $! >/run/libvirtd.pid
i=0
until $VIRSH version >/run/virsh-version.txt 2>&1; do
  i=$((i + 1)); [ $i -gt 150 ] && break
  kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null || { fact "libvirtd-exited"; break; }
  sleep 1
done
sed 's/^/[virsh-version] /' /run/virsh-version.txt
fact "libvirtd-up tries=$i from=$t to=$(now)"

# --- a paused nested domain with a hostdev hot-(un)plugged ----------------------------------------
# variant NAME DOMAIN-XML HOSTDEV-XML: a fresh paused domain, attach, dumpxml, detach, dumpxml, destroy
variant() {
  run "define-$1" $VIRSH define "$2"
  run "start-$1" $VIRSH start --paused nested
  fact "domstate-$1 $($VIRSH domstate nested | head -n1)"
  run "attach-$1" $VIRSH attach-device nested "$3" --live
  $VIRSH dumpxml nested >/run/dump1.xml 2>&1
  sed -n '/<hostdev/,/<\/hostdev>/p' /run/dump1.xml | sed "s/^/[dump-after-attach-$1] /"
  fact "hostdev-after-attach $1 count=$(grep -c '<hostdev' /run/dump1.xml) driver=$(drv $BDF)"
  run "detach-$1" $VIRSH detach-device nested "$3" --live
  i=0
  # (files, not a pipe: with pipefail, grep -q's early exit would make the pipe "fail")
  while $VIRSH dumpxml nested >/run/dump2.xml 2>&1 && grep -q '<hostdev' /run/dump2.xml && [ $i -lt 10 ]; do
    sleep 1; i=$((i + 1))
  done
  fact "hostdev-after-detach $1 count=$(grep -c '<hostdev' /run/dump2.xml) waited=${i}s"
  grep -o -- "-global [^ ]*" /var/log/libvirt/qemu/nested.log 2>/dev/null | tail -n 1 | sed "s/^/[qemu-global-$1] /"
  tail -n 3 /var/log/libvirt/qemu/nested.log 2>/dev/null | sed "s/^/[qemu-log-$1] /"
  run "destroy-$1" $VIRSH destroy nested
  run "undefine-$1" $VIRSH undefine nested
}
# (a) libvirt picks the slot (the e1000 is conventional PCI: the bridge's SHPC slot), native hotplug
variant bridge /etc/ptc-kvm/nested.xml /etc/ptc-kvm/hostdev.xml
# (b) at an explicit address: the empty pcie-root-port (bus 3), native hotplug
variant rootport /etc/ptc-kvm/nested.xml /etc/ptc-kvm/hostdev-rootport.xml
# (c) QEMU's default ACPI hotplug on q35, the same explicit root-port address: the unplug waits for
# a guest OS (for the record; the run judges it as "pending")
variant acpi /etc/ptc-kvm/nested-acpi.xml /etc/ptc-kvm/hostdev-rootport.xml

# --- release: back to e1000 ------------------------------------------------------------------------
echo >"$DEV/driver_override"
echo "$BDF" >"$DEV/driver/unbind"
echo "$BDF" >/sys/bus/pci/drivers/e1000/bind
fact "release driver=$(drv $BDF) override=$(cat "$DEV/driver_override")"

# --- the new_id hazard ---------------------------------------------------------------------------
# vfio-pci was loaded before e1000 (l1-init), so the bus tries it first: with a dynamic id for
# 8086:100e, a plain reprobe of an e1000 lands on vfio-pci; driver_override=e1000 overrides the ids.
echo 8086 100e >/sys/bus/pci/drivers/vfio-pci/new_id
fact "new-id-added $BDF=$(drv $BDF) $OTHER=$(drv $OTHER)"
echo "$BDF" >"$DEV/driver/unbind"
echo "$BDF" >/sys/bus/pci/drivers_probe
fact "new-id-reprobe driver=$(drv $BDF) override=$(cat "$DEV/driver_override")"
echo e1000 >"$DEV/driver_override"
echo "$BDF" >"$DEV/driver/unbind"
echo "$BDF" >/sys/bus/pci/drivers_probe
fact "new-id-override driver=$(drv $BDF) override=$(cat "$DEV/driver_override")"
echo 8086 100e >/sys/bus/pci/drivers/vfio-pci/remove_id
echo >"$DEV/driver_override"
fact "new-id-removed $BDF=$(drv $BDF) $OTHER=$(drv $OTHER) override=$(cat "$DEV/driver_override")"

kill "$(cat /run/libvirtd.pid)" 2>/dev/null
sed 's/^/[libvirtd-log] /' /run/libvirtd.log | tail -n 30
