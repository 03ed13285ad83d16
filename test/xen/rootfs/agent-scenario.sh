#!/bin/sh
# dom0's scenario for the agent end-to-end run (test/xen/agent-e2e.mjs puts it into the overlay as
# /opt/ptctl-test/scenario.sh): start ptctl's own agent (linux backend, the bundled
# /opt/ptctl/ptctl-agent.mjs) against the host's NATS server, then do only what the host asks for,
# one step at a time, from a fixed list: the host drives the passthrough through the agent over
# NATS and uses these steps only for what a human would do on the dom0 (start a guest, show a file,
# play a naive tool). Each step prints "@@PTC step-done NAME rc=N"; "done" ends the run.
. /usr/lib/ptc/ptc-lib.sh # fact now drv run follow valid_bdf start_agent stop_agent next_step
. /etc/ptctl/agent.env # HOST_ID NATS_URL STEP_ADDR HEARTBEAT_MS
# kmod's modprobe by path: this busybox's ash runs its own applets before $PATH (a bare `modprobe`
# in this script would be busybox's, which has no -c and reads its config differently); the agent
# (execFile, no shell) finds /usr/sbin/modprobe -> kmod through $PATH.
MODPROBE=/usr/sbin/modprobe
valid_guest() { case $1 in pvguest|pvhot) return 0 ;; esac; return 1; }

fact "versions $(tr '\n' ' ' </etc/ptc-xen-versions)"
run xl-info xl info

# --- the agent, then steps from the host ---------------------------------------------------------------
start_agent
# one step from the host (step_loop): sets rc
on_step() {
  name=$1; shift
  case $name in
    create) # create GUEST: xl create /etc/xen/GUEST (the config the agent edits), follow its console
      if valid_guest "$1"; then
        sed "s/^/[cfg:$1] /" "/etc/xen/$1"
        run "create-$1" xl create "/etc/xen/$1"; rc=$?
        follow "guest:$1" "/var/log/xen/console/guest-$1.log" &
      else rc=2; fi ;;
    wait-guest) # wait-guest GUEST SEC: until the guest is gone
      if valid_guest "$1"; then
        i=0; lim=${2:-300}
        while xl list "$1" >/dev/null 2>&1; do
          i=$((i + 1)); [ $i -gt "$lim" ] && { fact "guest-timeout $1"; xl destroy "$1"; rc=1; break; }
          sleep 1
        done
        fact "guest-ended $1 after=${i}s"
      else rc=2; fi ;;
    show-modprobe) # the files and what kmod really reads (modprobe -c)
      for f in /etc/modprobe.d/ptctl-pciback.conf /etc/modprobe.conf; do
        if [ -e "$f" ]; then sed "s|^|[file $f] |" "$f"; fact "file $f lines=$(wc -l <"$f")"; else fact "file $f absent"; fi
      done
      $MODPROBE -c >/run/modprobe-c.txt 2>&1; mrc=$?
      grep -i pciback /run/modprobe-c.txt | sed 's/^/[modprobe-c] /'
      [ $mrc -eq 0 ] || tail -n 3 /run/modprobe-c.txt | sed 's/^/[modprobe-c-err] /'
      fact "modprobe-c rc=$mrc lines=$(wc -l </run/modprobe-c.txt) pciback-lines=$(grep -ci pciback /run/modprobe-c.txt)" ;;
    write-modprobe-conf) # write-modprobe-conf BDF: the hide line in the file current kmod ignores
      if valid_bdf "$1"; then
        printf 'options xen-pciback hide=(%s)\n' "$1" >/etc/modprobe.conf
        fact "wrote /etc/modprobe.conf"
      else rc=2; fi ;;
    naive-reload) # naive-reload BDF: a tool that trusts exit codes: reload pciback and e1000
      if valid_bdf "$1"; then
        $MODPROBE -r xen-pciback; r1=$?
        $MODPROBE -r e1000; r2=$?
        $MODPROBE xen-pciback; r3=$?
        $MODPROBE e1000; r4=$?
        sleep 1
        fact "naive-reload exit-codes=$r1,$r2,$r3,$r4 driver=$(drv "$1") slots=$(tr '\n' ' ' </sys/bus/pci/drivers/pciback/slots 2>/dev/null)"
        rc=$((r1 + r2 + r3 + r4))
      else rc=2; fi ;;
    show-bridge) # show-bridge BRIDGE: its ports (brif/) and each port's master link, as dom0's sysfs has them
      if echo "$1" | grep -qE '^[a-z0-9]{1,15}$' && [ -d "/sys/class/net/$1/brif" ]; then
        ports=$(ls "/sys/class/net/$1/brif" | tr '\n' ' ')
        for p in $ports; do fact "bridge-port $1 $p master=$(basename "$(readlink "/sys/class/net/$p/master")") brport=$([ -d "/sys/class/net/$p/brport" ] && echo yes || echo no) operstate=$(cat "/sys/class/net/$p/operstate")"; done
        fact "bridge $1 ports=$ports"
        ip -o addr show 2>&1 | grep -E " ($(echo $ports $1 | tr ' ' '|'))[: ]" | sed 's/^/[ip-addr] /'
      else fact "bridge $1 absent"; rc=1; fi ;;
    pci-facts) # pci-facts BDF: ids, the driver link, the modalias the kernel matches modules by
      if valid_bdf "$1" && [ -d "/sys/bus/pci/devices/$1" ]; then
        d=/sys/bus/pci/devices/$1
        fact "pci-facts $1 vendor=$(cat $d/vendor) device=$(cat $d/device) class=$(cat $d/class) driver-link=$([ -e $d/driver ] && echo present || echo absent) driver=$(drv "$1") modalias=$(cat $d/modalias)"
        $MODPROBE -R "$(cat $d/modalias)" >/run/alias.txt 2>&1; fact "pci-alias $1 rc=$? modules=$(tr '\n' ' ' </run/alias.txt | cut -c1-120)"
      else rc=2; fi ;;
    driver) # driver BDF: what sysfs says, for the log
      valid_bdf "$1" && fact "driver $1=$(drv "$1")" || rc=2 ;;
    *) fact "unknown step $name"; rc=2 ;;
  esac
}
step_loop on_step

stop_agent
run xl-list-end xl list
