# Shell helpers for the init and scenario scripts of the real-system harnesses (sourced; busybox ash).
set -o pipefail # run() reports the command's exit code, not sed's
# Facts for the host are lines "@@PTC ..." on the console; the host scripts judge them.
fact() { echo "@@PTC $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
# drv [BDF]: the driver bound to a PCI device (default $BDF), or "none"
drv() {
  set -- "${1:-$BDF}"
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

# iface_of BDF: the interface whose device (or its parent, for virtio) is BDF
iface_of() {
  for n in /sys/class/net/*; do
    [ -e "$n/device" ] || continue
    [ "$(basename "$(readlink -f "$n/device/..")")" = "$1" ] && basename "$n" && return 0
    [ "$(basename "$(readlink -f "$n/device")")" = "$1" ] && basename "$n" && return 0
  done
  return 1
}

# uplink_up BDF: the NIC at BDF gets 10.0.2.15/24 and the default route via 10.0.2.2 (QEMU user
# networking); sets UPLINK to its interface name.
uplink_up() {
  UPLINK=
  i=0
  while [ -z "$UPLINK" ] && [ $i -lt 10 ]; do
    UPLINK=$(iface_of "$1")
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

# start_agent: ptctl's agent (linux backend, /opt/ptctl/ptctl-agent.mjs) against the host's NATS
# server, from /etc/ptctl/agent.env (HOST_ID NATS_URL HEARTBEAT_MS), its log followed as [agent].
# Restarted when it exits with an error, as deploy/ptctl-agent.service does (Restart=always): under
# TCG the first NATS handshake (nkey signature) can overrun nats-server's authentication timeout, and
# the agent gives up on a failed first connect. stop_agent ends it.
start_agent() {
  mkdir -p /var/lib/ptctl
  (
    n=0
    while [ $n -lt 5 ]; do
      n=$((n + 1))
      node /opt/ptctl/ptctl-agent.mjs --backend linux --host-id "$HOST_ID" --nats-url "$NATS_URL" \
        --nats-creds /etc/ptctl/host.creds --root / --state-dir /var/lib/ptctl --toolstack auto \
        --heartbeat "$HEARTBEAT_MS" >>/run/agent.log 2>&1 &
      echo $! >/run/agent.pid
      wait $!
      rc=$?
      echo "@@PTC agent-exit rc=$rc start=$n"
      [ $rc -eq 0 ] || [ -e /run/agent.stop ] && break
      sleep 3
    done
  ) &
  sleep 1
  fact "agent-started pid=$(cat /run/agent.pid) uptime=$(now)"
  follow agent /run/agent.log &
}
stop_agent() {
  touch /run/agent.stop
  AGENT=$(cat /run/agent.pid)
  kill "$AGENT" 2>/dev/null
  i=0
  while kill -0 "$AGENT" 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
  fact "agent-stopped after=${i}s"
}

# next_step: sends the last step's result ($last) to the host's step server (STEP_ADDR) and reads the
# next step into $step; false when the channel is lost (more than 10 failed tries).
next_step() {
  misses=0
  while :; do
    step=$(echo "${last:-start}" | timeout 1200 nc "${STEP_ADDR%:*}" "${STEP_ADDR#*:}" 2>/dev/null | head -n 1)
    [ -n "$step" ] && return 0
    misses=$((misses + 1))
    [ $misses -gt 10 ] && { fact "step-channel-lost"; return 1; }
    sleep 2
  done
}

# step_loop HANDLER: the host's steps until "done": HANDLER NAME ARGS... performs one and sets rc
# (2: a step it does not know); each ends with "@@PTC step-done NAME rc=N".
step_loop() {
  handler=$1
  last=start
  while next_step; do
    set -- $step
    name=$1; shift
    fact "step-begin $name $*"
    [ "$name" = done ] && { fact "step-done done rc=0"; break; }
    rc=0
    "$handler" "$name" "$@"
    fact "step-done $name rc=$rc"
    last="$name $rc"
  done
}
