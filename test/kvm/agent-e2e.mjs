#!/usr/bin/env node
// Real-KVM end-to-end of ptctl's OWN agent (issue 16): the agent (linux backend, bundled into one
// file) runs inside L1, a Debian 12 KVM host booted under QEMU/TCG with an emulated Intel IOMMU,
// next to libvirtd and QEMU; this script drives it from the host over NATS with AgentClient, as the
// orchestrator identity, and judges by the agent's replies and by L1's console (what L1's shell
// shows of sysfs, /dev/vfio, udev rules and `virsh dumpxml`). One PASS/FAIL line per check; exit 1
// on any FAIL.
//
//   node test/kvm/agent-e2e.mjs [--timeout SEC] [--verbose] [--no-fetch] [--no-build] [--no-tsc]
//
// On the host (all on 127.0.0.1): nats-server with JetStream and nkey users for the orchestrator and
// the host `kvm-host` only (DevStack, no Temporal, no simulated agent), and the step server L1's
// scenario asks for its next step. L1's uplink (user net, restrict=on) has two guestfwd addresses:
// 10.0.2.100:4222 -> NATS, 10.0.2.101:4223 -> the step server (both through test/realsys/relay.mjs).
// Env: PTC_KVM_CACHE, PTC_KVM_TIMEOUT (whole QEMU run, default 1500 s), PTC_KVM_QEMU, PTC_KVM_VERBOSE.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { appendOverlay, brief, cliArgs, createReport, devOf, newLogPath, secs, startQemu, startStepServer, unsafeQemuPath } from '../realsys/harness.mjs';
import { agentOverlay, buildAgentBundle, firstInventory, runScenario, startHostNats } from '../realsys/agent-run.mjs';
import { BDF, OTHER_BDF, UPLINK_BDF, boot, buildL1, cache, l1QemuArgs, qemuBin, relay, repo } from './l1.mjs';

const { flag, opt } = cliArgs();
const timeoutSec = Number(opt('--timeout', process.env.PTC_KVM_TIMEOUT ?? '1500'));
const verbose = flag('--verbose') || process.env.PTC_KVM_VERBOSE === '1';
const report = createReport('kvm-agent');
const { check, note, timings } = report;

const HOST_ID = 'kvm-host';
const GUEST = 'nested';
const NATS_FWD = '10.0.2.100:4222';
const STEP_FWD = '10.0.2.101:4223';
const RULES_FILE = '/etc/udev/rules.d/60-ptctl-vfio-pci.rules';

// --- 1. build: TypeScript, the agent bundle, the Debian packages, L1's initramfs -------------------
const agentDir = path.join(cache, 'agent');
if (!flag('--no-build')) await buildAgentBundle(report, { repo, agentDir, noTsc: flag('--no-tsc') });
if (!buildL1(report, { fetch: !flag('--no-fetch'), build: !flag('--no-build'), agentDir })) await report.finish(1);
if (!existsSync(path.join(boot, 'l1.img'))) {
  check('boot-files', false, `${path.join(boot, 'l1.img')} missing`);
  await report.finish(1);
}

// --- 2. NATS on loopback (nkey users for the orchestrator and kvm-host only), 3. the step server,
// 4. L1's overlay: the host's seed, the agent's settings, the scenario ----------------------------
const stackDir = path.join(cache, 'stack');
const { natsPort, kv, call, HOSTS_BUCKET } = await startHostNats(report, { repo, stackDir, hostId: HOST_ID, name: 'ptc-kvm-e2e' });
let con = null;
const steps = await startStepServer(report, () => con);
const step = steps.step;
const overlay = path.join(cache, 'run', 'agent-overlay');
await agentOverlay({ repo, overlay, stackDir, hostId: HOST_ID, natsFwd: NATS_FWD, stepFwd: STEP_FWD, scenario: path.join(repo, 'test', 'kvm', 'rootfs', 'agent-scenario.sh') });
const img = path.join(cache, 'run', 'l1-agent.img');
if (!appendOverlay(path.join(boot, 'l1.img'), overlay, img)) {
  check('overlay', false, `could not append ${overlay} to l1.img`);
  await report.finish(1);
}

// --- 5. boot ------------------------------------------------------------------------------------
if (unsafeQemuPath(relay, process.execPath, boot, img)) {
  check('paths', false, 'QEMU options cannot carry spaces or commas in paths');
  await report.finish(1);
}
report.logPath = newLogPath(path.join(cache, 'logs'), 'agent');
note(`booting L1 under QEMU (TCG), console log: ${report.logPath}`);
con = startQemu(report, {
  bin: qemuBin, args: l1QemuArgs({ img, fwds: [[NATS_FWD, natsPort], [STEP_FWD, steps.port]] }), logPath: report.logPath, verbose, timeoutSec,
  milestones: [['l1-init', /@@PTC init-start/], ['libvirtd-up', /@@PTC libvirtd-up/], ['agent-started', /@@PTC agent-started/]],
});
const since = (from, re) => con.since(from, re);
const fact = (from, re) => since(from, re)[0]?.match(re) ?? null;

// --- 6. drive the agent ---------------------------------------------------------------------------
async function scenario() {
  {
    const m = await con.waitConsole(/^@@PTC init-start kernel=(\S+) uptime=(\S+)/, 180_000);
    const up = await con.waitConsole(/^@@PTC libvirtd-up tries=(\d+) from=(\S+) to=(\S+)/, 300_000);
    const v = con.find(/^@@PTC versions (.*)$/);
    const groups = con.find(/^@@PTC modules (.*)$/);
    check('kvm-version', !!m && !!up && Number(up[1]) <= 150 && !con.find(/@@PTC libvirtd-exited/),
      m ? `L1 kernel ${m[1]} at +${secs(con.seenAt['l1-init'] ?? 0)}s; ${v ? v[1].trim() : '?'}; libvirtd answered after ${up ? `${(Number(up[3]) - Number(up[2])).toFixed(1)}s` : 'never'}; vfio modules loaded: ${groups ? groups[1].split(' ').filter((x) => x.startsWith('vfio')).join(' ') : '?'}`
        : 'L1 never reached /init');
    if (!m || !up) return;
  }
  let inv = null;
  {
    inv = await firstInventory(kv, HOST_ID, con);
    timings.agentUp = Date.now() - con.started;
    const dev = devOf(inv, BDF);
    check('agent-inventory', !!inv && inv.hypervisor === 'kvm' && inv.iommu === true,
      inv ? `agent in L1 published ${HOST_ID} to KV ${HOSTS_BUCKET} at +${secs(timings.agentUp)}s: hypervisor ${inv.hypervisor}, iommu ${inv.iommu}, capabilities [${inv.capabilities.join(' ')}], ${inv.devices.length} PCI devices, agent ${inv.agentVersion}; e1000 ${dev ? `driver ${dev.driver}` : 'missing'}`
        : `no inventory for ${HOST_ID} in KV ${HOSTS_BUCKET} within 400 s (agent log: "[agent]" lines in ${report.logPath})`);
    if (!inv) return;
  }
  {
    const d = await step('define-nested');
    const s = await step('start-nested paused', 180_000);
    const state = fact(s.from, /^@@PTC domstate (\S+)/)?.[1];
    const r = await call('inspect', {});
    const e = r.ok ? devOf(r.result, BDF) : null;
    const o = r.ok ? devOf(r.result, OTHER_BDF) : null;
    const up = r.ok ? devOf(r.result, UPLINK_BDF) : null;
    const g = r.ok ? r.result.guests.filter((x) => x.name === GUEST) : [];
    const ok = r.ok && e?.driver === 'e1000' && e.iommuGroup !== null && !e.inUse && !!up?.inUse && o?.driver === 'e1000' && g.length === 1 && g[0].state === 'paused';
    check('inspect', ok, r.ok
      ? `${BDF} ${e ? `${e.vendor}:${e.device} driver=${e.driver} iommuGroup=${e.iommuGroup} inUse=${e.inUse}` : 'not found'}; ${OTHER_BDF} driver=${o?.driver ?? '?'}; uplink ${UPLINK_BDF} ${up ? `driver=${up.driver} inUse="${up.inUse}"` : 'not found'}; guests [${r.result.guests.map((x) => `${x.name}:${x.state}`).join(' ')}] (virsh define rc=${d.rc}, start --paused rc=${s.rc}, domstate ${state ?? '?'})`
      : brief(r));
  }
  {
    const r = await call('hide', { bdf: UPLINK_BDF });
    check('refuse-hide-uplink', !r.ok && r.code === 'DEVICE_IN_USE', r.ok ? `agent hid the uplink NIC ${UPLINK_BDF}: ${JSON.stringify(r.result)}` : `hide ${UPLINK_BDF} -> ${brief(r)}`);
  }
  {
    const r = await call('hide', { bdf: BDF });
    const s = await step('show-hide');
    const rule = since(s.from, new RegExp(`^\\[file ${RULES_FILE.replace(/\./g, '\\.')}\\] .*${BDF.replace(/\./g, '\\.')}.*vfio-pci`))[0];
    const modules = since(s.from, /^@@PTC file \/etc\/modules-load\.d\/ptctl-vfio-pci\.conf (.*)$/)[0];
    const after = await call('inspect', {});
    const hidden = after.ok ? devOf(after.result, BDF)?.hidden : undefined;
    check('hide', r.ok && r.result.file === RULES_FILE && !!rule && hidden === true, r.ok
      ? `file ${r.result.file} (changed ${r.result.changed}); L1 reads back "${rule ? rule.replace(/^\[file [^\]]+\] /, '') : `no rule for ${BDF}`}"; ${modules ? modules.replace('@@PTC file ', '') : ''}; inventory hidden=${hidden}`
      : brief(r));
  }
  {
    const r = await call('bind', { bdf: BDF, strategy: 'dynamic' });
    const v = await call('verify', { bdf: BDF, expect: 'pciback' });
    const s = await step(`show-state ${BDF}`);
    const st = fact(s.from, /^@@PTC state \S+ driver=(\S+) link=(\S*) override=(\S*) group=(\S*) vfio=(.*)$/);
    const byState = st?.[1] === 'vfio-pci' && st[3] === 'vfio-pci' && st[5].trim().split(/\s+/).includes(st[4]);
    const ok = r.ok && r.result.driver === 'vfio-pci' && r.result.originalDriver === 'e1000' && v.ok && byState;
    check('bind-dynamic', ok, `bind dynamic -> ${r.ok ? `driver ${r.result.driver} (was ${r.result.originalDriver}, changed ${r.result.changed})` : brief(r)}; verify pciback -> ${v.ok ? `driver ${v.result.driver}, override ${v.result.inPcibackSlots}, assignable ${v.result.assignable}` : brief(v)}; L1: ${st ? `driver link ${st[2]}, driver_override ${st[3]}, /dev/vfio: ${st[5].trim()} (group ${st[4]})` : 'no state'}`);
  }
  // hot attach/detach, first into the paused domain (libvirt's QEMU is live: `virsh attach-device
  // --live` works there, test/kvm/run.mjs --tools shows it), then once more after `virsh resume`
  // (the guest runs SeaBIOS, which finds no boot device and halts: nested.xml has rebootTimeout=-1)
  for (const phase of ['paused', 'running']) {
    const suffix = phase === 'paused' ? '' : '-running';
    if (phase === 'running') {
      const s = await step('resume-nested', 120_000);
      note(`nested resumed: rc=${s.rc}, ${fact(s.from, /^@@PTC domstate (\S+)/)?.[1] ?? '?'}`);
    }
    const r = await call('attach', { bdf: BDF, guest: GUEST, mode: 'hot' }, 180_000);
    const s = await step('dumpxml');
    const n = fact(s.from, /^@@PTC hostdevs count=(\d+) state=(\S+)/);
    const src = since(s.from, /^\[dumpxml\] .*<address domain='0x0000' bus='0x00' slot='0x04' function='0x0'\/>/).length;
    const st = await call('guest-status', { guest: GUEST });
    check(`attach-hot${suffix}`, r.ok && r.result.hot === true && n?.[1] === '1' && src === 1, `${GUEST} ${phase}: attach hot -> ${r.ok ? `hot ${r.result.hot}, cold ${r.result.cold}, hotplugged ${r.result.hotplugged}, changed ${r.result.changed}` : brief(r)}; virsh dumpxml ${GUEST}: ${n ? `${n[1]} hostdev(s)${src ? ` with source ${BDF}` : ''}, ${n[2]}` : 'no answer'}; guest-status -> ${st.ok ? `${st.result.state}, live [${st.result.liveDevices.join(' ')}]` : brief(st)}`);
    const d = await call('detach', { bdf: BDF, guest: GUEST, mode: 'hot' }, 180_000);
    const s2 = await step('dumpxml');
    const n2 = fact(s2.from, /^@@PTC hostdevs count=(\d+) state=(\S+)/);
    // hotplugged: the agent really unplugged (a detach of a device that was never attached proves nothing)
    check(`detach-hot${suffix}`, d.ok && d.result.hot === false && d.result.hotplugged === true && n2?.[1] === '0', `${GUEST} ${phase}: detach hot -> ${d.ok ? `hot ${d.result.hot}, hotplugged ${d.result.hotplugged}, changed ${d.result.changed}` : brief(d)}; virsh dumpxml ${GUEST}: ${n2 ? `${n2[1]} hostdev(s), ${n2[2]}` : 'no answer'}`);
  }
  {
    const u = await call('unbind', { bdf: BDF, driver: null });
    const h = await call('unhide', { bdf: BDF });
    const v = await call('verify', { bdf: BDF, expect: 'host' });
    const s = await step('show-hide');
    const left = since(s.from, new RegExp(`^\\[file [^\\]]+\\] .*${BDF.replace(/\./g, '\\.')}`)).length;
    const ok = u.ok && u.result.driver === 'e1000' && h.ok && v.ok && v.result.driver === 'e1000' && left === 0;
    check('release', ok, `unbind (recorded driver) -> ${u.ok ? `driver ${u.result.driver}` : brief(u)}; unhide -> ${h.ok ? `${h.result.file} changed ${h.result.changed}` : brief(h)}; rules for ${BDF} left in L1's files: ${left}; verify host -> ${v.ok ? `driver ${v.result.driver}` : brief(v)}`);
  }
  {
    const n = await step(`naive-new-id ${BDF}`);
    const nf = fact(n.from, /^@@PTC naive-new-id \S+ id=(\S+) rc=(\d+) driver=(\S+) override=(\S+) other=(\S+)/);
    const v = await call('verify', { bdf: BDF, expect: 'pciback' });
    const u = await call('unbind', { bdf: BDF, driver: null });
    const s = await step(`show-state ${BDF}`);
    const st = fact(s.from, /^@@PTC state \S+ driver=(\S+) link=(\S*) override=(\S*)/);
    // When the agent could not give it back with driver null, say whether naming e1000 does (for the
    // record: the check fails either way), so L1 also ends clean.
    const named = u.ok ? null : await call('unbind', { bdf: BDF, driver: 'e1000' });
    await step(`remove-id ${BDF}`);
    const ok = nf?.[3] === 'vfio-pci' && !v.ok && v.code === 'VERIFY_FAILED' && u.ok && u.result.driver === 'e1000' && st?.[1] === 'e1000';
    check('new-id-caught', ok,
      `a naive tool (unbind + echo ${nf?.[1]?.replace(':', ' ') ?? '?'} > vfio-pci/new_id, rc=${nf?.[2] ?? '?'}): ${BDF} on ${nf?.[3] ?? '?'} with driver_override ${nf?.[4] ?? '?'} (${OTHER_BDF} stays ${nf?.[5] ?? '?'}); agent verify pciback -> ${v.ok ? `PASSED (driver ${v.result.driver})` : brief(v)}; agent unbind -> ${u.ok ? `driver ${u.result.driver}` : brief(u)}; L1: driver ${st?.[1] ?? '?'}, driver_override ${st?.[3] ?? '?'}${named ? `; then unbind {driver: 'e1000'} -> ${named.ok ? `driver ${named.result.driver}` : brief(named)}` : ''}`);
  }
}

await runScenario(report, { con, steps, scenario, timeoutSec, qemuBin, who: 'L1' });
