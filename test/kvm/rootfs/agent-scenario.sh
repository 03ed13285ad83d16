#!/bin/sh
# L1's scenario for the agent end-to-end run (test/kvm/agent-e2e.mjs puts it into the overlay as
# /opt/ptctl-test/scenario.sh): start libvirtd and ptctl's own agent (linux backend: on a host
# without /proc/xen that is the KVM backend, vfio-pci + libvirt), then do only what the host asks for,
# one step at a time, from a fixed list: what an operator would do at L1's console (define and start
# the nested domain, show a file or the device's state, play a naive tool). Every passthrough effect
# goes through the agent over NATS. Each step prints "@@PTC step-done NAME rc=N"; "done" ends the run.
. /usr/lib/ptc/ptc-lib.sh
. /etc/ptctl/agent.env # HOST_ID NATS_URL STEP_ADDR HEARTBEAT_MS
VIRSH="timeout 120 virsh -c qemu:///system"
fact "versions $(tr '\n' ' ' </etc/ptc-kvm/versions)"

t=$(now)
libvirtd >/run/libvirtd.log 2>&1 &
echo $! >/run/libvirtd.pid
i=0
until $VIRSH version >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 150 ] && break
  kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null || { fact "libvirtd-exited"; sed 's/^/[libvirtd-log] /' /run/libvirtd.log; break; }
  sleep 1
done
fact "libvirtd-up tries=$i from=$t to=$(now)"
start_agent

# one step from the host (step_loop): sets rc
on_step() {
  name=$1; shift
  case $name in
    define-nested) run define $VIRSH define /etc/ptc-kvm/nested.xml; rc=$? ;;
    start-nested) # start-nested paused|running
      if [ "$1" = paused ]; then run start $VIRSH start --paused nested; rc=$?; else run start $VIRSH start nested; rc=$?; fi
      fact "domstate $($VIRSH domstate nested | head -n1)" ;;
    resume-nested) run resume $VIRSH resume nested; rc=$?; fact "domstate $($VIRSH domstate nested | head -n1)" ;;
    dumpxml) # the nested domain's live hostdevs
      $VIRSH dumpxml nested >/run/dump.xml 2>&1; rc=$?
      sed -n '/<hostdev/,/<\/hostdev>/p' /run/dump.xml | sed 's/^/[dumpxml] /'
      fact "hostdevs count=$(grep -c '<hostdev' /run/dump.xml) state=$($VIRSH domstate nested | head -n1)" ;;
    show-hide) # the agent's persistent override files
      for f in /etc/udev/rules.d/60-ptctl-vfio-pci.rules /etc/modules-load.d/ptctl-vfio-pci.conf; do
        if [ -e "$f" ]; then sed "s|^|[file $f] |" "$f"; fact "file $f lines=$(wc -l <"$f")"; else fact "file $f absent"; fi
      done ;;
    show-state) # show-state BDF: driver link, driver_override, /dev/vfio
      if valid_bdf "$1"; then
        d=/sys/bus/pci/devices/$1
        fact "state $1 driver=$(drv "$1") link=$(readlink "$d/driver") override=$(cat "$d/driver_override") group=$(basename "$(readlink "$d/iommu_group")") vfio=$(ls /dev/vfio | tr '\n' ' ')"
      else rc=2; fi ;;
    naive-new-id) # naive-new-id BDF: how many guides bind to vfio-pci: unbind, then new_id (no driver_override)
      if valid_bdf "$1"; then
        d=/sys/bus/pci/devices/$1
        ven=$(sed 's/^0x//' "$d/vendor"); dev=$(sed 's/^0x//' "$d/device")
        [ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
        echo "$ven $dev" >/sys/bus/pci/drivers/vfio-pci/new_id; rc=$?
        fact "naive-new-id $1 id=$ven:$dev rc=$rc driver=$(drv "$1") override=$(cat "$d/driver_override") other=$(drv 0000:00:06.0)"
      else rc=2; fi ;;
    remove-id) # remove-id BDF: the naive tool's dynamic id taken out again (clean-up)
      if valid_bdf "$1"; then
        d=/sys/bus/pci/devices/$1
        echo "$(sed 's/^0x//' "$d/vendor") $(sed 's/^0x//' "$d/device")" >/sys/bus/pci/drivers/vfio-pci/remove_id; rc=$?
      else rc=2; fi ;;
    *) fact "unknown step $name"; rc=2 ;;
  esac
}
step_loop on_step

stop_agent
run virsh-list-end $VIRSH list --all
$VIRSH destroy nested >/dev/null 2>&1
kill "$(cat /run/libvirtd.pid)" 2>/dev/null
grep -E ' (error|warning) : ' /run/libvirtd.log | tail -n 20 | sed 's/^/[libvirtd-log] /'
