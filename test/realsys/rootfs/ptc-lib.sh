# Shell helpers for the init and scenario scripts of the real-system harnesses (sourced; busybox ash).
set -o pipefail # run() reports the command's exit code, not sed's
# Facts for the host are lines "@@PTC ..." on the console; the host scripts judge them.
fact() { echo "@@PTC $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
# drv BDF: the driver bound to a PCI device, or "none"
drv() {
  if [ -e "/sys/bus/pci/devices/$1/driver" ]; then basename "$(readlink "/sys/bus/pci/devices/$1/driver")"; else echo none; fi
}
# run TAG CMD...: the command's output prefixed with [TAG], then "@@PTC rc TAG=N took=S"
run() {
  tag=$1; shift
  echo "@@PTC run $tag: $*"
  t_run=$(now)
  "$@" 2>&1 | sed "s/^/[$tag] /"
  rc=$?
  fact "rc $tag=$rc took=$(awk -v a="$t_run" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }')"
  return $rc
}
# Prefixing with the shell's echo (not sed, whose output to the console is block-buffered) keeps
# the live lines live: the host waits for some of them.
follow() { # follow TAG FILE
  CR=$(printf '\r')
  tail -F "$2" 2>/dev/null | while IFS= read -r l; do echo "[$1] ${l%"$CR"}"; done
}
valid_bdf() { echo "$1" | grep -qE '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$'; }

# uplink_up BDF: the NIC at BDF gets 10.0.2.15/24 and the default route via 10.0.2.2 (QEMU user
# networking); sets UPLINK to its interface name.
uplink_up() {
  UPLINK=
  i=0
  while [ -z "$UPLINK" ] && [ $i -lt 10 ]; do
    for n in /sys/class/net/*; do
      [ -e "$n/device" ] || continue
      [ "$(basename "$(readlink -f "$n/device/..")")" = "$1" ] && UPLINK=$(basename "$n")
      [ "$(basename "$(readlink -f "$n/device")")" = "$1" ] && UPLINK=$(basename "$n")
    done
    [ -n "$UPLINK" ] || { sleep 1; i=$((i + 1)); }
  done
  if [ -n "$UPLINK" ]; then
    ip link set "$UPLINK" up
    ip addr add 10.0.2.15/24 dev "$UPLINK"
    ip route add default via 10.0.2.2 dev "$UPLINK"
    fact "uplink $UPLINK $(ip -4 addr show dev "$UPLINK" | awk '/inet /{print $2}') default=$(ip route show default | head -n1)"
  else
    fact "uplink none"
  fi
  export UPLINK
}

# base_mounts: proc, sys, devtmpfs, devpts, tmpfs /run and /tmp; the console as stdio
base_mounts() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  exec </dev/console >/dev/console 2>&1
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts
  mount -t tmpfs tmpfs /dev/shm
  mount -t tmpfs tmpfs /run
  mkdir -p /run/lock
  mount -t tmpfs tmpfs /tmp
  ip link set lo up
}

# cmdline_opts: ptc.net= ptc.probe= ptc.scenario= from the kernel command line
cmdline_opts() {
  PTC_NET= ; PTC_PROBE= ; PTC_SCENARIO=/opt/ptctl-test/scenario.sh
  for w in $(cat /proc/cmdline); do
    case $w in
      ptc.net=*) PTC_NET=${w#ptc.net=} ;;
      ptc.probe=*) PTC_PROBE=${w#ptc.probe=} ;;
      ptc.scenario=*) PTC_SCENARIO=${w#ptc.scenario=} ;;
    esac
  done
  export PTC_NET PTC_PROBE PTC_SCENARIO
}

# run_scenario: the scenario script, then its exit code as a fact
run_scenario() {
  if [ -x "$PTC_SCENARIO" ]; then
    "$PTC_SCENARIO"
    fact "scenario-exit rc=$?"
  else
    fact "scenario-missing $PTC_SCENARIO"
  fi
}

poweroff_now() {
  fact "init-done uptime=$(now)"
  sync
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger
}
