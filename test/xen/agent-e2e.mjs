#!/usr/bin/env node
// Real-Xen end-to-end of ptctl's OWN agent (issue #7): the agent (linux backend, bundled into one
// file) runs inside a real Xen 4.17 dom0 booted under QEMU, and this script drives it from the host
// over NATS with AgentClient, as the orchestrator identity, then judges by the agent's replies and
// by dom0's / the guests' console. One PASS/FAIL line per check; exit 1 on any FAIL.
//
//   node test/xen/agent-e2e.mjs [--timeout SEC] [--verbose] [--no-fetch] [--no-build] [--no-tsc]
//
// What it sets up on the host (all on 127.0.0.1): nats-server with JetStream and the generated nkey
// users (DevStack with agents: false: no simulated agent for the host id), a step server that dom0's
// scenario asks for its next step. QEMU's user network (restrict=on) carries two guestfwd addresses:
// 10.0.2.100:4222 -> NATS, 10.0.2.101:4223 -> the step server (both through relay.mjs).
// Env: PTC_XEN_CACHE, PTC_XEN_TIMEOUT (whole QEMU run, default 1500 s), PTC_XEN_QEMU, PTC_XEN_VERBOSE.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendOverlay, brief, cliArgs, createReport, devOf, newLogPath, phase, secs, startQemu, startStepServer, unsafeQemuPath } from '../realsys/harness.mjs';
import { agentOverlay, buildAgentBundle, firstInventory, runScenario, startHostNats } from '../realsys/agent-run.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const cache = process.env.PTC_XEN_CACHE ?? path.join(repo, '.cache', 'xen');
const boot = path.join(cache, 'boot');
const { flag, opt } = cliArgs();
const timeoutSec = Number(opt('--timeout', process.env.PTC_XEN_TIMEOUT ?? '1500'));
const verbose = flag('--verbose') || process.env.PTC_XEN_VERBOSE === '1';
const qemuBin = process.env.PTC_XEN_QEMU ?? 'qemu-system-x86_64';

const HOST_ID = 'xen-dom0';
const BDF = '0000:00:04.0'; // e1000: the passthrough candidate
const UPLINK_BDF = '0000:00:05.0'; // virtio-net: dom0's uplink to NATS
const BRIDGE_NIC_BDF = '0000:00:06.0'; // rtl8139 (8139cp): the only NIC port of xenbr1, which carries pvhot's vif
const BRIDGE = 'xenbr1';
const NODRV_BDF = '0000:00:07.0'; // QEMU's edu (1234:11e8): no Linux driver binds it
const NATS_FWD = '10.0.2.100:4222';
const STEP_FWD = '10.0.2.101:4223';
const KMOD_FILE = '/etc/modprobe.d/ptctl-pciback.conf';

const report = createReport('xen-agent');
const { check, note, timings } = report;

// --- 1. build: TypeScript, the agent bundle, the Debian packages, the initramfs --------------------
const agentDir = path.join(cache, 'agent');
if (!flag('--no-build')) await buildAgentBundle(report, { repo, agentDir, noTsc: flag('--no-tsc') });
const xenPhase = (name, script, limitSec, env = {}) => phase(report, name, ['bash', path.join(repo, 'scripts', 'xen', script)], { limitSec, cwd: repo, env: { PTC_XEN_CACHE: cache, ...env } });
if (!flag('--no-fetch') && !xenPhase('fetch', 'fetch.sh', 900)) await report.finish(1);
if (!flag('--no-build') && !xenPhase('initrd', 'build-initrd.sh', 600, { PTC_XEN_AGENT_DIR: agentDir })) await report.finish(1);
for (const f of ['xen', 'vmlinuz', 'dom0.img']) {
  if (!existsSync(path.join(boot, f))) {
    check('boot-files', false, `${path.join(boot, f)} missing`);
    await report.finish(1);
  }
}

// Which modules of the WHOLE Debian kernel (not only the few in dom0's initramfs) claim a modalias:
// kmod's depmod over a tree of links to the sysroot's modules, then `modprobe -R`. null: no lookup.
const sysroot = path.join(cache, 'sysroot');
let aliasTree = null;
function kernelModulesFor(modalias) {
  const kver = (() => {
    try {
      const v = readFileSync(path.join(sysroot, '.ptc-versions'), 'utf8').match(/^KABI=(\S+)/m)?.[1];
      return v ? `${v}-amd64` : null;
    } catch {
      return null;
    }
  })();
  if (!kver) return null;
  const lib = path.join(sysroot, 'lib', 'x86_64-linux-gnu');
  const kmod = (argv0, argv) => spawnSync(path.join(lib, 'ld-linux-x86-64.so.2'), ['--library-path', `${lib}:${path.join(sysroot, 'usr', 'lib', 'x86_64-linux-gnu')}`, '--argv0', argv0, path.join(sysroot, 'bin', 'kmod'), ...argv], { encoding: 'utf8', timeout: 60_000 });
  if (aliasTree === null) {
    const t = path.join(cache, 'modalias');
    rmSync(t, { recursive: true, force: true });
    mkdirSync(path.join(t, 'lib', 'modules'), { recursive: true });
    const cp = spawnSync('cp', ['-as', path.join(sysroot, 'lib', 'modules', kver), path.join(t, 'lib', 'modules')], { timeout: 60_000 });
    const dm = cp.status === 0 ? kmod('depmod', ['-b', t, kver]) : null;
    if (dm?.status !== 0) return null;
    aliasTree = t;
  }
  const r = kmod('modprobe', ['-d', aliasTree, '-S', kver, '-R', modalias]);
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean) : /not found/.test(r.stderr) ? [] : null;
}

// --- 2. NATS on loopback, with nkey users for the orchestrator and xen-dom0 only, 3. the step server
const stackDir = path.join(cache, 'stack');
const { natsPort, kv, call, HOSTS_BUCKET } = await startHostNats(report, { repo, stackDir, hostId: HOST_ID, name: 'ptc-xen-e2e' });
let con = null;
const steps = await startStepServer(report, () => con);
const step = steps.step;

// --- 4. dom0 overlay: the host's seed, the agent's settings, the guests, the scenario -------------
const overlay = path.join(cache, 'run', 'agent-overlay');
await agentOverlay({ repo, overlay, stackDir, hostId: HOST_ID, natsFwd: NATS_FWD, stepFwd: STEP_FWD, scenario: path.join(here, 'rootfs', 'agent-scenario.sh') });
mkdirSync(path.join(overlay, 'etc/xen/scripts'), { recursive: true });
copyFileSync(path.join(here, 'rootfs', 'vif-ptc-bridge'), path.join(overlay, 'etc/xen/scripts/vif-ptc-bridge'));
chmodSync(path.join(overlay, 'etc/xen/scripts/vif-ptc-bridge'), 0o755);
const guestBase = (name, extra, more = '') => [
  `# PV guest for ptctl's agent (test/xen/agent-e2e.mjs): ${more ? 'hotplug target' : 'cold attach target (the agent writes pci=)'}`,
  `name = "${name}"`, 'type = "pv"', 'kernel = "/var/lib/ptc-xen/vmlinuz"', 'ramdisk = "/var/lib/ptc-xen/guest.img"',
  `extra = "console=hvc0 rdinit=/init ${extra}"`, 'memory = 256', 'vcpus = 1',
  'on_poweroff = "destroy"', 'on_reboot = "destroy"', 'on_crash = "destroy"', more, '',
].join('\n');
writeFileSync(path.join(overlay, 'etc/xen/pvguest'), guestBase('pvguest', 'ptc.wait=60'));
// pvhot also has a vif on xenbr1 (the guests-only bridge over the rtl8139): while it runs, that NIC is in use.
writeFileSync(path.join(overlay, 'etc/xen/pvhot'), guestBase('pvhot', 'ptc.wait=300 ptc.hold=240', `passthrough = "enabled"\nvif = [ 'bridge=${BRIDGE},script=vif-ptc-bridge' ]`));
const dom0Img = path.join(cache, 'run', 'dom0-agent.img');
if (!appendOverlay(path.join(boot, 'dom0.img'), overlay, dom0Img)) {
  check('overlay', false, `could not append ${overlay} to dom0.img`);
  await report.finish(1);
}

// --- 5. boot --------------------------------------------------------------------------------------
const relay = path.join(here, '..', 'realsys', 'relay.mjs');
if (unsafeQemuPath(relay, process.execPath, boot, dom0Img)) {
  check('paths', false, 'QEMU options cannot carry spaces or commas in paths');
  await report.finish(1);
}
report.logPath = newLogPath(path.join(cache, 'logs'), 'agent');
const qemuArgs = [
  '-machine', 'q35,accel=tcg', '-cpu', 'Nehalem', '-m', '2048', '-smp', '2',
  '-device', 'intel-iommu,intremap=on',
  '-device', 'e1000,addr=04.0,romfile=',
  '-netdev', `user,id=uplink,restrict=on,guestfwd=tcp:${NATS_FWD}-cmd:${process.execPath} ${relay} ${natsPort},guestfwd=tcp:${STEP_FWD}-cmd:${process.execPath} ${relay} ${steps.port}`,
  '-device', 'virtio-net-pci,netdev=uplink,addr=05.0,romfile=',
  '-device', 'rtl8139,addr=06.0,romfile=', // no network peer: dom0 makes it xenbr1's port
  '-device', 'edu,addr=07.0', // no host driver
  '-kernel', path.join(boot, 'xen'),
  '-append', 'console=com1 dom0_mem=1024M,max:1024M iommu=1',
  '-initrd', `${path.join(boot, 'vmlinuz')} console=hvc0,${dom0Img}`,
  '-nographic', '-no-reboot',
];
note(`booting Xen under QEMU (TCG), console log: ${report.logPath}`);
con = startQemu(report, { bin: qemuBin, args: qemuArgs, logPath: report.logPath, verbose, timeoutSec });
const bootStart = con.started;
const waitConsole = (re, ms, from) => con.waitConsole(re, ms, from);
const mark = () => con.mark();
const since = (from, re) => con.since(from, re);

// --- 6. drive the agent ---------------------------------------------------------------------------
async function scenario() {
  {
    const m = await waitConsole(/\(XEN\) (Xen version 4\.17\S*) \(Debian ([^)]+)\)/, 120_000);
    check('xen-version', !!m, m ? `"${m[1]} (Debian ${m[2]})" at +${secs(Date.now() - bootStart)}s` : 'no "(XEN) Xen version 4.17" line');
    if (!m) return;
  }
  // The agent's first inventory in KV ptc_hosts (the run's NATS store is fresh).
  let inv = null;
  {
    inv = await firstInventory(kv, HOST_ID, con);
    timings.agentUp = Date.now() - bootStart;
    const dev = devOf(inv, BDF);
    check('agent-inventory', !!inv && inv.hypervisor === 'xen',
      inv ? `agent in dom0 published ${HOST_ID} to KV ${HOSTS_BUCKET} at +${secs(timings.agentUp)}s: hypervisor ${inv.hypervisor}, iommu ${inv.iommu}, capabilities [${inv.capabilities.join(' ')}], ${inv.devices.length} PCI devices, agent ${inv.agentVersion}; e1000 ${dev ? `driver ${dev.driver}` : 'missing'}`
        : `no inventory for ${HOST_ID} in KV ${HOSTS_BUCKET} within 400 s (agent log: "[agent]" lines in ${report.logPath})`);
    if (!inv) return;
  }
  {
    const r = await call('inspect', {});
    const e = r.ok ? devOf(r.result, BDF) : null;
    const up = r.ok ? devOf(r.result, UPLINK_BDF) : null;
    const ok = r.ok && e?.driver === 'e1000' && e.vendor === '8086' && !!up?.inUse && !e.inUse;
    check('inspect', ok, r.ok
      ? `${BDF} ${e ? `${e.vendor ?? '?'}:${e.device ?? '?'} driver=${e.driver} inUse=${e.inUse}` : 'not found'}; uplink ${UPLINK_BDF} ${up ? `driver=${up.driver} inUse="${up.inUse}"` : 'not found'}`
      : brief(r));
  }
  // The rtl8139 under xenbr1 before any guest has a vif there: a port of a bridge no guest uses is idle.
  // The edu device: no driver link in dom0's sysfs, and no module of the whole Debian kernel aliases it
  // (the rtl8139's modalias, looked up the same way, finds 8139cp: the lookup works).
  {
    const s = await step('show-bridge ' + BRIDGE);
    const ports = since(s.from, new RegExp(`^@@PTC bridge ${BRIDGE} ports=`))[0] ?? 'no bridge';
    const f = await step(`pci-facts ${NODRV_BDF}`);
    const fb = await step(`pci-facts ${BRIDGE_NIC_BDF}`);
    const facts = since(f.from, /^@@PTC pci-facts /)[0]?.match(/vendor=(\S+) device=(\S+) class=\S+ driver-link=(\S+) driver=\S+ modalias=(\S+)/);
    const bfacts = since(fb.from, /^@@PTC pci-facts /)[0]?.match(/modalias=(\S+)/);
    const mods = facts ? kernelModulesFor(facts[4]) : null;
    const bmods = bfacts ? kernelModulesFor(bfacts[1]) : null;
    const r = await call('inspect', {});
    const b = r.ok ? devOf(r.result, BRIDGE_NIC_BDF) : null;
    const n = r.ok ? devOf(r.result, NODRV_BDF) : null;
    check('inspect-bridge-port-idle', !!b && b.driver === '8139cp' && !!b.netdev && b.inUse === null && ports.replace(/^.*ports=/, '').split(' ').includes(b.netdev),
      `dom0: "${ports.replace(/^@@PTC /, '')}"; agent: ${BRIDGE_NIC_BDF} ${b ? `${b.vendor}:${b.device} driver=${b.driver} netdev=${b.netdev} inUse=${JSON.stringify(b.inUse)}` : r.ok ? 'not found' : brief(r)}`);
    check('inspect-no-driver', !!n && n.vendor === '1234' && n.device === '11e8' && n.driver === null && n.hostDriver === null && n.inUse === null && facts?.[3] === 'absent' && Array.isArray(mods) && mods.length === 0 && Array.isArray(bmods) && bmods.includes('8139cp'),
      `dom0: ${NODRV_BDF} ${facts ? `${facts[1]}:${facts[2]} driver link ${facts[3]}, modalias ${facts[4]}` : 'no pci-facts'}; modules of the whole Debian kernel aliasing it: ${mods === null ? 'lookup failed' : `[${mods.join(' ')}]`} (the rtl8139's: [${bmods?.join(' ') ?? 'lookup failed'}]); agent: ${n ? `${n.vendor}:${n.device} driver=${n.driver} hostDriver=${n.hostDriver} inUse=${JSON.stringify(n.inUse)}` : r.ok ? 'not found' : brief(r)}`);
  }
  {
    const r = await call('hide', { bdf: UPLINK_BDF });
    check('refuse-hide-uplink', !r.ok && r.code === 'DEVICE_IN_USE', r.ok ? `agent hid the uplink NIC ${UPLINK_BDF}: ${JSON.stringify(r.result)}` : `hide ${UPLINK_BDF} -> ${brief(r)}`);
  }
  // hide -> the file kmod reads, with the module name the kernel knows
  {
    const r = await call('hide', { bdf: BDF });
    const s = await step('show-modprobe');
    const fileLine = since(s.from, /^\[file \/etc\/modprobe\.d\/ptctl-pciback\.conf\] options xen-pciback hide=\(0000:00:04\.0\)/)[0];
    const kmod = since(s.from, /^\[modprobe-c\] options xen_pciback hide=\(0000:00:04\.0\)/)[0];
    const after = await call('inspect', {});
    const hidden = after.ok ? devOf(after.result, BDF)?.hidden : undefined;
    const ok = r.ok && r.result.file === KMOD_FILE && r.result.driver === 'e1000' && !!fileLine && !!kmod && hidden === true;
    check('hide', ok, r.ok
      ? `file ${r.result.file} (changed ${r.result.changed}); dom0 reads back "${fileLine ? fileLine.replace(/^\[file [^\]]+\] /, '') : 'no hide= line'}"; kmod's modprobe -c: "${kmod ? kmod.replace('[modprobe-c] ', '') : 'no xen_pciback options'}"; inventory hidden=${hidden}`
      : brief(r));
  }
  // bind by reload while pciback is not loaded: kmod must read hide= from the file as pciback loads
  {
    const r = await call('bind', { bdf: BDF, strategy: 'reload' });
    const v = await call('verify', { bdf: BDF, expect: 'pciback' });
    const ok = r.ok && r.result.driver === 'pciback' && r.result.originalDriver === 'e1000' && v.ok && v.result.inPcibackSlots && v.result.assignable;
    check('bind-reload', ok, `bind reload -> ${r.ok ? `driver ${r.result.driver} (was ${r.result.originalDriver})` : brief(r)}; verify pciback -> ${v.ok ? `driver ${v.result.driver}, in slots ${v.result.inPcibackSlots}, assignable ${v.result.assignable}` : brief(v)}`);
    const u = await call('unbind', { bdf: BDF, driver: 'e1000' });
    const vh = await call('verify', { bdf: BDF, expect: 'host' });
    check('release-after-reload', u.ok && u.result.driver === 'e1000' && vh.ok, `unbind -> ${u.ok ? `driver ${u.result.driver}` : brief(u)}; verify host -> ${vh.ok ? `driver ${vh.result.driver}, in slots ${vh.result.inPcibackSlots}` : brief(vh)}`);
  }
  // bind dynamic (the device stays hidden in the file: that is what a plan does)
  {
    const r = await call('bind', { bdf: BDF, strategy: 'dynamic' });
    const v = await call('verify', { bdf: BDF, expect: 'pciback' });
    const ok = r.ok && r.result.driver === 'pciback' && r.result.originalDriver === 'e1000' && v.ok && v.result.inPcibackSlots && v.result.assignable;
    check('bind-dynamic', ok, `bind dynamic -> ${r.ok ? `driver ${r.result.driver} (was ${r.result.originalDriver}, changed ${r.result.changed})` : brief(r)}; verify pciback -> ${v.ok ? `driver ${v.result.driver}, in slots ${v.result.inPcibackSlots}, assignable ${v.result.assignable}` : brief(v)}`);
  }
  // cold attach: pci=[...] in /etc/xen/pvguest, then dom0 starts the guest from that file
  {
    const r = await call('attach', { bdf: BDF, guest: 'pvguest', mode: 'cold', allowInsecurePV: true });
    const c = await step('create pvguest', 180_000);
    const cfg = since(c.from, /^\[cfg:pvguest\] pci\s*=/)[0];
    const st = await call('guest-status', { guest: 'pvguest' });
    const ok = r.ok && r.result.cold && c.rc === 0 && st.ok && st.result.state === 'running' && st.result.liveDevices.includes(BDF);
    check('attach-cold', ok, `attach cold -> ${r.ok ? `cold ${r.result.cold}, hot ${r.result.hot}` : brief(r)}; config line "${cfg ? cfg.replace('[cfg:pvguest] ', '') : 'none'}"; xl create rc=${c.rc}; guest-status -> ${st.ok ? `${st.result.state}, live [${st.result.liveDevices.join(' ')}], pinned ${st.result.pinned}` : brief(st)}`);
    const g = await waitConsole(/^\[guest:pvguest\] @@GUEST done/, 240_000, c.from);
    const w = await step('wait-guest pvguest 240', 300_000);
    const glines = since(c.from, /^\[guest:pvguest\] /);
    const pcifront = glines.find((l) => /pcifront pci-\d+: (Installing PCI frontend|Creating PCI Frontend Bus)/.test(l));
    const dev = glines.map((l) => l.match(/@@GUEST pci (\S+) vendor=0x8086 device=0x100e class=\S+ driver=(\S+)/)).find(Boolean);
    const nic = glines.map((l) => l.match(/e1000 (\S+) (eth\d+): Intel\(R\) PRO\/1000 Network Connection/)).find(Boolean);
    check('guest-cold-sees-device', !!g && !!pcifront && dev?.[2] === 'e1000', [
      pcifront ? `guest: "${pcifront.replace(/^\[guest:pvguest\] (\[[^\]]*\] )?/, '')}"` : 'guest: no pcifront line',
      dev ? `guest sees ${dev[1]} 8086:100e driver=${dev[2]}` : 'guest: e1000 not seen/bound',
      nic ? `${nic[2]} on ${nic[1]}` : '', `guest ended rc=${w.rc}`,
    ].filter(Boolean).join('; '));
    const d = await call('detach', { bdf: BDF, guest: 'pvguest', mode: 'cold' });
    const st2 = await call('guest-status', { guest: 'pvguest' });
    check('detach-cold', d.ok && !d.result.cold && st2.ok && !st2.result.pinned, `detach cold -> ${d.ok ? `cold ${d.result.cold}, changed ${d.result.changed}` : brief(d)}; guest-status -> ${st2.ok ? `${st2.result.state}, config [${st2.result.configDevices.join(' ')}], pinned ${st2.result.pinned}` : brief(st2)}`);
  }
  // hot attach: a running guest created with passthrough="enabled" and no pci=
  {
    const c = await step('create pvhot', 180_000);
    const waiting = await waitConsole(/^\[guest:pvhot\] @@GUEST waiting-for-pci/, 240_000, c.from);
    // pvhot runs with its vif on xenbr1: the rtl8139 under that bridge now carries a guest, so hiding
    // it is refused (DESIGN §4 rule 1), with nothing written to dom0's files.
    {
      const sb = await step('show-bridge ' + BRIDGE);
      const vif = since(sb.from, new RegExp(`^@@PTC bridge-port ${BRIDGE} (vif\\d+\\.\\d+) master=${BRIDGE}`))[0]?.match(/(vif\d+\.\d+)/)?.[1] ?? null;
      const hotplug = since(c.from, /^@@PTC vif-hotplug online /)[0];
      const before = await step('show-modprobe');
      const fileBefore = since(before.from, /^\[file |^@@PTC file /);
      const r = await call('hide', { bdf: BRIDGE_NIC_BDF });
      const after = await step('show-modprobe');
      const fileAfter = since(after.from, /^\[file |^@@PTC file /);
      const same = fileBefore.length > 0 && fileBefore.join('\n') === fileAfter.join('\n') && !fileAfter.some((l) => l.includes(BRIDGE_NIC_BDF) || /8139/.test(l));
      const names = (text) => !!vif && text.includes(BRIDGE) && text.includes(vif) && text.includes('pvhot');
      check('refuse-hide-bridge-vif', !!vif && !r.ok && r.code === 'DEVICE_IN_USE' && names(r.message) && same,
        `dom0: ${vif ? `${vif} is a port of ${BRIDGE}` : `no vif on ${BRIDGE}`}${hotplug ? ` ("${hotplug.replace(/^@@PTC /, '')}")` : ''}; hide ${BRIDGE_NIC_BDF} -> ${r.ok ? `HIDDEN: ${JSON.stringify(r.result)}` : brief(r)}; ${KMOD_FILE} and /etc/modprobe.conf ${same ? `unchanged (${fileAfter.filter((l) => l.startsWith('@@PTC')).map((l) => l.replace(/^@@PTC file /, '')).join(', ')})` : `CHANGED or unreadable: before [${fileBefore.join(' | ')}] after [${fileAfter.join(' | ')}]`}`);
      const i = await call('inspect', {});
      const b = i.ok ? devOf(i.result, BRIDGE_NIC_BDF) : null;
      check('inspect-bridge-vif', !!b && typeof b.inUse === 'string' && names(b.inUse), i.ok ? `${BRIDGE_NIC_BDF} inUse=${b ? JSON.stringify(b.inUse) : "not found"}` : brief(i));
    }
    const r = waiting ? await call('attach', { bdf: BDF, guest: 'pvhot', mode: 'hot', allowInsecurePV: true }, 180_000) : { ok: false, code: 'NOT_RUN', message: 'guest pvhot never reached its wait for PCI' };
    check('attach-hot', r.ok && r.result.hot && r.result.hotplugged && !r.result.cold, `xl create pvhot rc=${c.rc}; attach hot -> ${r.ok ? `hot ${r.result.hot}, cold ${r.result.cold}, hotplugged ${r.result.hotplugged}` : brief(r)}`);
    const held = await waitConsole(/^\[guest:pvhot\] @@GUEST (holding|done)/, 240_000, c.from);
    const glines = since(c.from, /^\[guest:pvhot\] /);
    const pcifront = glines.find((l) => /pcifront pci-\d+: (Installing PCI frontend|Creating PCI Frontend Bus)/.test(l));
    const dev = glines.map((l) => l.match(/@@GUEST pci (\S+) vendor=0x8086 device=0x100e class=\S+ driver=(\S+)/)).find(Boolean);
    check('guest-hot-sees-device', !!held && !!pcifront && dev?.[2] === 'e1000', [
      pcifront ? `guest: "${pcifront.replace(/^\[guest:pvhot\] (\[[^\]]*\] )?/, '')}"` : 'guest: no pcifront line',
      dev ? `guest sees ${dev[1]} 8086:100e driver=${dev[2]} after the hotplug` : 'guest: e1000 not seen/bound',
    ].join('; '));
    const from = mark();
    const d = held?.[1] === 'holding' ? await call('detach', { bdf: BDF, guest: 'pvhot', mode: 'hot' }, 180_000) : { ok: false, code: 'NOT_RUN', message: 'guest did not hold the device' };
    const removed = d.ok ? await waitConsole(/^\[guest:pvhot\] @@GUEST (device-removed after=\S+|hold-timeout)/, 120_000, from) : null;
    const w = await step('wait-guest pvhot 300', 360_000);
    check('detach-hot', d.ok && !d.result.hot && removed?.[1]?.startsWith('device-removed'), `detach hot -> ${d.ok ? `hot ${d.result.hot}, hotplugged ${d.result.hotplugged}` : brief(d)}; guest: ${removed ? `"${removed[1]}"` : 'no report'}; guest ended rc=${w.rc}`);
  }
  // release: back to the recorded driver (driver: null -> the agent's record says e1000), unhide
  {
    const u = await call('unbind', { bdf: BDF, driver: null });
    const h = await call('unhide', { bdf: BDF });
    const s = await step('show-modprobe');
    const stillHidden = since(s.from, /^\[(file \/etc\/modprobe\.d\/ptctl-pciback\.conf|modprobe-c)\] .*hide=/);
    const v = await call('verify', { bdf: BDF, expect: 'host' });
    const ok = u.ok && u.result.driver === 'e1000' && h.ok && h.result.changed && stillHidden.length === 0 && v.ok && v.result.driver === 'e1000';
    check('release-unhide', ok, `unbind (recorded driver) -> ${u.ok ? `driver ${u.result.driver}` : brief(u)}; unhide -> ${h.ok ? `${h.result.file} changed ${h.result.changed}` : brief(h)}; hide= lines left in the file or in kmod's config: ${stillHidden.length}; verify host -> ${v.ok ? `driver ${v.result.driver}, in slots ${v.result.inPcibackSlots}, assignable ${v.result.assignable}` : brief(v)}`);
  }
  // pvhot is gone, and its vif with it: the rtl8139 is idle again.
  {
    const i = await call('inspect', {});
    const b = i.ok ? devOf(i.result, BRIDGE_NIC_BDF) : null;
    check('bridge-port-idle-after-guest', !!b && b.inUse === null && b.driver === '8139cp', i.ok ? `${BRIDGE_NIC_BDF} driver=${b?.driver} inUse=${b ? JSON.stringify(b.inUse) : "not found"}` : brief(i));
  }
  // A device no host driver holds: hidden with no install line, bound dynamically, given back to no driver.
  {
    const h = await call('hide', { bdf: NODRV_BDF });
    const s = await step('show-modprobe');
    const file = since(s.from, /^\[file \/etc\/modprobe\.d\/ptctl-pciback\.conf\] /).map((l) => l.replace(/^\[file [^\]]+\] /, ''));
    const hideLine = file.find((l) => new RegExp(`^options xen-pciback hide=\\(${NODRV_BDF.replace(/\./g, '\\.')}\\)`).test(l));
    const installs = file.filter((l) => /^\s*install\s/.test(l));
    check('hide-no-driver', h.ok && h.result.driver === null && h.result.file === KMOD_FILE && !!hideLine && installs.length === 0,
      `hide ${NODRV_BDF} -> ${h.ok ? `driver ${JSON.stringify(h.result.driver)}, file ${h.result.file} changed ${h.result.changed}` : brief(h)}; dom0's ${KMOD_FILE}: [${file.join(' | ')}]; install lines: ${installs.length}`);
    const b = await call('bind', { bdf: NODRV_BDF, strategy: 'dynamic' });
    const v = await call('verify', { bdf: NODRV_BDF, expect: 'pciback' });
    check('bind-no-driver', b.ok && b.result.driver === 'pciback' && b.result.originalDriver === null && v.ok && v.result.inPcibackSlots && v.result.assignable,
      `bind dynamic -> ${b.ok ? `driver ${b.result.driver} (was ${JSON.stringify(b.result.originalDriver)})` : brief(b)}; verify pciback -> ${v.ok ? `driver ${v.result.driver}, in slots ${v.result.inPcibackSlots}, assignable ${v.result.assignable}` : brief(v)}`);
    const u = await call('unbind', { bdf: NODRV_BDF, driver: null });
    const uh = await call('unhide', { bdf: NODRV_BDF });
    const s2 = await step('show-modprobe');
    const left = since(s2.from, /^\[(file \/etc\/modprobe\.d\/ptctl-pciback\.conf|modprobe-c)\] .*hide=/);
    const vh = await call('verify', { bdf: NODRV_BDF, expect: 'host' });
    const f = await step(`pci-facts ${NODRV_BDF}`);
    const link = since(f.from, /^@@PTC pci-facts /)[0]?.match(/driver-link=(\S+)/)?.[1];
    check('release-no-driver', u.ok && u.result.driver === null && uh.ok && uh.result.changed && left.length === 0 && vh.ok && vh.result.driver === null && !vh.result.inPcibackSlots && link === 'absent',
      `unbind {driver:null} -> ${u.ok ? `driver ${JSON.stringify(u.result.driver)}` : brief(u)}; unhide -> ${uh.ok ? `changed ${uh.result.changed}` : brief(uh)}; hide= lines left: ${left.length}; verify host -> ${vh.ok ? `driver ${JSON.stringify(vh.result.driver)}, in slots ${vh.result.inPcibackSlots}` : brief(vh)}; dom0: driver link ${link ?? '?'}`);
  }
  // negative: the hide line in /etc/modprobe.conf, which kmod ignores
  {
    await step('write-modprobe-conf 0000:00:04.0');
    const s = await step('show-modprobe');
    const kmodHide = since(s.from, /^\[modprobe-c\] options xen_pciback .*hide=/).length;
    const kmodRc = since(s.from, /^@@PTC modprobe-c rc=(\d+)/)[0]?.match(/rc=(\d+)/)?.[1];
    const r = await call('bind', { bdf: BDF, strategy: 'reload' });
    check('modprobe-conf-not-hidden', kmodRc === '0' && kmodHide === 0 && !r.ok && (r.code === 'NOT_HIDDEN' || r.code === 'VERIFY_FAILED'),
      `/etc/modprobe.conf has "options xen-pciback hide=(${BDF})", kmod's modprobe -c (rc=${kmodRc ?? '?'}) has ${kmodHide} xen_pciback hide= options; agent bind reload -> ${r.ok ? `SUCCESS (driver ${r.result.driver})` : brief(r)}`);
    const n = await step(`naive-reload ${BDF}`);
    const nl = since(n.from, /^@@PTC naive-reload exit-codes=(\S+) driver=(\S+)/)[0]?.match(/exit-codes=(\S+) driver=(\S+)/);
    const v = await call('verify', { bdf: BDF, expect: 'pciback' });
    check('naive-reload-caught', !!nl && nl[1] === '0,0,0,0' && nl[2] === 'e1000' && !v.ok && v.code === 'VERIFY_FAILED',
      `a tool trusting /etc/modprobe.conf: modprobe -r/modprobe exit codes ${nl?.[1] ?? '?'} ("success"), device on ${nl?.[2] ?? '?'}; agent verify pciback -> ${v.ok ? `PASSED (driver ${v.result.driver})` : brief(v)}`);
  }
}

await runScenario(report, { con, steps, scenario, timeoutSec, qemuBin, who: 'dom0' });
