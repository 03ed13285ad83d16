#!/bin/sh
# The harness's scenario inside dom0 (issue #7 step 1): xl works, node runs, the uplink reaches the
# host, and the e1000 at 0000:00:04.0 goes dom0 -> pciback -> PV guest (pci=[...]) -> back to e1000.
# It only prints facts ("@@PTC ..." lines and the raw tool output, prefixed); test/xen/run.mjs
# reads the console log and decides PASS/FAIL.
. /usr/lib/ptc/ptc-lib.sh # fact now drv run (and set -o pipefail)
BDF=0000:00:04.0
GUEST=pvguest

fact "versions $(tr '\n' ' ' </etc/ptc-xen-versions)"
run xl-info xl info
run node node /opt/ptctl/hello.mjs

# --- uplink to the host (QEMU user networking; the host relays 10.0.2.100:4222 to its loopback) ---
run ip-route ip route show
if [ -n "$PTC_NET" ]; then
  reply=$(echo "ptc-ping from dom0" | timeout 20 nc "${PTC_NET%:*}" "${PTC_NET#*:}" 2>&1)
  fact "net-reply rc=$? reply=$(echo "$reply" | tr '\n' ' ')"
else
  fact "net-reply skipped (no ptc.net= on the kernel command line)"
fi
# The netdev is restricted: the slirp host alias (10.0.2.2 -> the host's loopback when unrestricted)
# must not answer. The packets never leave QEMU.
if [ -n "$PTC_PROBE" ]; then
  out=$(echo "ptc-probe from dom0" | timeout 5 nc "${PTC_PROBE%:*}" "${PTC_PROBE#*:}" 2>&1)
  fact "net-probe rc=$? out=$(echo "$out" | tr '\n' ' ')"
fi

# --- passthrough of the e1000 -----------------------------------------------------------------------
for dev in /sys/bus/pci/devices/*; do
  d=none; [ -e "$dev/driver" ] && d=$(basename "$(readlink "$dev/driver")")
  echo "[lspci] $(basename "$dev") $(cat "$dev/vendor"):$(cat "$dev/device") class=$(cat "$dev/class") driver=$d"
done
fact "pci-before bdf=$BDF driver=$(drv)"
run modprobe-pciback modprobe xen-pciback
run assignable-add xl pci-assignable-add $BDF
fact "pci-after-add driver=$(drv) slots=$(tr '\n' ' ' </sys/bus/pci/drivers/pciback/slots 2>/dev/null)"
run assignable-list xl pci-assignable-list

cp /etc/xen/pvguest.cfg /run/pvguest.cfg
echo "pci = [ '$BDF' ]" >>/run/pvguest.cfg
t0=$(now)
run guest-create xl create /run/pvguest.cfg
run guest-pci-list xl pci-list $GUEST
i=0
while xl list $GUEST >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 300 ] && { fact "guest-timeout after 300s"; xl destroy $GUEST; break; }
  sleep 1
done
fact "guest-ended after=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s"
sed 's/\r$//; s/^/[guest] /' /var/log/xen/console/guest-$GUEST.log
run xl-list-after xl list

run assignable-remove xl pci-assignable-remove -r $BDF
fact "pci-after-remove driver=$(drv)"
run assignable-list-after xl pci-assignable-list
