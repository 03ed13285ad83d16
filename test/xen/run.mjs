#!/usr/bin/env node
// Real-Xen harness (issue #7): fetch the pinned Debian packages, build dom0's and the PV guest's
// initramfs, boot Xen 4.17 + a Linux 6.1 PV dom0 under QEMU (TCG), and judge the run by reading
// the serial console log. One line per check (PASS/FAIL + what was seen); exit 1 on any FAIL.
//
//   node test/xen/run.mjs [--timeout SEC] [--verbose] [--no-fetch] [--no-build]
//
// Env: PTC_XEN_CACHE (default <repo>/.cache/xen), PTC_XEN_TIMEOUT (QEMU run, default 900 s),
// PTC_XEN_QEMU (default qemu-system-x86_64), PTC_XEN_AGENT_DIR (contents of dom0's /opt/ptctl).
// Needs root (apt-get for missing host tools, device nodes and chroot in the initramfs build).
// Node built-ins only.
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { appendOverlay, cliArgs, createReport, newLogPath, phase, secs, startQemu, unsafeQemuPath } from '../realsys/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const cache = process.env.PTC_XEN_CACHE ?? path.join(repo, '.cache', 'xen');
const boot = path.join(cache, 'boot');
const { flag, opt } = cliArgs();
const timeoutSec = Number(opt('--timeout', process.env.PTC_XEN_TIMEOUT ?? '900'));
const verbose = flag('--verbose') || process.env.PTC_XEN_VERBOSE === '1';
const qemuBin = process.env.PTC_XEN_QEMU ?? 'qemu-system-x86_64';

// The guest address dom0 connects to; QEMU's slirp hands each connection to relay.mjs, which
// connects to the host's 127.0.0.1:<port>. restrict=on: dom0 can reach nothing else.
const GUEST_FWD_ADDR = '10.0.2.100:4222';
const BDF = '0000:00:04.0';

const report = createReport('xen');
const { check, timings } = report;
let con = null;
const finish = () => report.finish(undefined, con ? Object.entries(con.seenAt).map(([k, v]) => `${k} +${secs(v)}s`) : []);

// --- 1. fetch and 2. build ----------------------------------------------------------------------
const xenPhase = (name, script, limitSec) => phase(report, name, ['bash', path.join(repo, 'scripts', 'xen', script)], { limitSec, cwd: repo, env: { PTC_XEN_CACHE: cache } });
if (!flag('--no-fetch') && !xenPhase('fetch', 'fetch.sh', 900)) await finish();
if (!flag('--no-build') && !xenPhase('build', 'build-initrd.sh', 600)) await finish();
for (const f of ['xen', 'vmlinuz', 'dom0.img']) {
  if (!existsSync(path.join(boot, f))) {
    check('boot-files', false, `${path.join(boot, f)} missing: run scripts/xen/fetch.sh and scripts/xen/build-initrd.sh`);
    await finish();
  }
}

// --- host side of the uplink check: a TCP server on loopback only --------------------------------
const nonce = randomBytes(6).toString('hex');
const received = [];
const server = net.createServer((sock) => {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    buf += d;
    if (buf.includes('\n')) {
      received.push(buf.trim());
      sock.end(`ptc-pong ${nonce}\n`);
    }
  });
  sock.on('error', () => {});
});
await new Promise((resolve, reject) => server.listen(0, '127.0.0.1', resolve).on('error', reject));
const hostPort = server.address().port;

// --- 3. boot ------------------------------------------------------------------------------------
report.logPath = newLogPath(path.join(cache, 'logs'), 'boot');
const relay = path.join(here, '..', 'realsys', 'relay.mjs');
// PTC_XEN_OVERLAY=dir: files for this run only (credentials, config) go into dom0 without a rebuild:
// the kernel unpacks concatenated cpio archives, so dir's cpio is appended to a copy of dom0.img.
let dom0Img = path.join(boot, 'dom0.img');
if (process.env.PTC_XEN_OVERLAY) {
  const overlay = path.resolve(process.env.PTC_XEN_OVERLAY);
  dom0Img = path.join(cache, 'run', 'dom0-run.img');
  if (!appendOverlay(path.join(boot, 'dom0.img'), overlay, dom0Img)) {
    check('overlay', false, `could not append ${overlay} to dom0.img`);
    await finish();
  }
  report.note(`overlay ${overlay} appended to dom0's initramfs`);
}
const qemuArgs = [
  '-machine', 'q35,accel=tcg', '-cpu', 'Nehalem', '-m', '2048', '-smp', '2',
  '-device', 'intel-iommu,intremap=on',
  // the passthrough candidate (no network peer: it only has to exist and bind e1000)
  '-device', 'e1000,addr=04.0,romfile=',
  // dom0's uplink: virtio-net on user networking, restricted to the one forwarded loopback port
  '-netdev', `user,id=uplink,restrict=on,guestfwd=tcp:${GUEST_FWD_ADDR}-cmd:${process.execPath} ${relay} ${hostPort}`,
  '-device', 'virtio-net-pci,netdev=uplink,addr=05.0,romfile=',
  '-kernel', path.join(boot, 'xen'),
  '-append', 'console=com1 dom0_mem=1024M,max:1024M iommu=1',
  '-initrd', `${path.join(boot, 'vmlinuz')} console=hvc0 ptc.net=${GUEST_FWD_ADDR} ptc.probe=10.0.2.2:${hostPort},${dom0Img}`,
  '-nographic', '-no-reboot',
];
if (unsafeQemuPath(relay, process.execPath, boot, dom0Img)) {
  check('paths', false, `QEMU options cannot carry spaces or commas in paths: ${relay}, ${boot}`);
  await finish();
}

const milestones = [
  ['xen', /\(XEN\) Xen version/],
  ['dom0-init', /@@PTC init-start/],
  ['guest-create', /@@PTC run guest-create/],
  ['guest-ended', /@@PTC guest-(ended|timeout)/],
  ['init-done', /@@PTC init-done/],
];
report.note(`booting Xen under QEMU (TCG), console log: ${report.logPath}`);
con = startQemu(report, { bin: qemuBin, args: qemuArgs, logPath: report.logPath, verbose, timeoutSec, milestones });
const exit = await con.exit;
timings.boot = Date.now() - con.started;
server.close();
const seenAt = con.seenAt;
const timedOut = con.timedOut();

// --- judge the console log ----------------------------------------------------------------------
const log = con.lines;
const find = (re) => {
  for (const l of log) {
    const m = l.match(re);
    if (m) return m;
  }
  return null;
};
const all = (re) => log.filter((l) => re.test(l));
const rc = (tag) => {
  const m = find(new RegExp(`^@@PTC rc ${tag}=(\\d+)`));
  return m ? Number(m[1]) : null;
};
const took = (tag) => {
  const m = find(new RegExp(`^@@PTC rc ${tag}=\\d+ took=(\\S+)`));
  return m ? m[1] : '?';
};
const at = (name) => (seenAt[name] !== undefined ? ` (+${secs(seenAt[name])}s)` : '');

if (exit.error) check('qemu', false, `${qemuBin} did not start: ${exit.error.message}`);

{
  const m = find(/\(XEN\) (Xen version 4\.17\S*) \(Debian ([^)]+)\)/);
  check('xen-version', !!m, m ? `"${m[1]} (Debian ${m[2]})"${at('xen')}` : 'no "(XEN) Xen version 4.17" line in the console log');
}
{
  const m = find(/^@@PTC init-start kernel=(\S+) uptime=(\S+)/);
  check('dom0-init', !!m && m[1].startsWith('6.1.'), m ? `dom0 kernel ${m[1]} ran /init at dom0 uptime ${m[2]}s${at('dom0-init')}` : 'dom0 never reached /init');
}
{
  const v = find(/^\[xl-info\] xen_version\s*:\s*(\S+)/);
  const c = find(/^\[xl-info\] nr_cpus\s*:\s*(\S+)/);
  const ok = rc('xl-info') === 0 && !!v && v[1].startsWith('4.17');
  check('xl-info', ok, ok ? `xen_version ${v[1]}, nr_cpus ${c ? c[1] : '?'}` : `rc=${rc('xl-info')}, xen_version ${v ? v[1] : 'missing'}`);
}
{
  const m = find(/^\[node\] (node ok .*)$/);
  check('node-in-dom0', !!m && rc('node') === 0, m ? `"${m[1]}" (node start to exit in dom0: ${took('node')})` : `no "node ok" (rc=${rc('node')})`);
}
{
  const up = find(/^@@PTC uplink (\S+) (\S+) default=(.*)$/);
  const route = find(/^\[ip-route\] (default via 10\.0\.2\.2 dev \S+)/);
  check('dom0-uplink', !!up && !!route, up ? `${up[1]} ${up[2]} (virtio-net at 0000:00:05.0), "${route ? route[1] : 'no default route'}"` : 'no uplink configured in dom0');
  const probe = find(/^@@PTC net-probe rc=(\d+)/);
  const leaked = received.filter((r) => r.includes('ptc-probe'));
  check('dom0-net-restricted', !!probe && leaked.length === 0,
    !probe ? 'dom0 did not run the probe' : leaked.length ? `host loopback got ${JSON.stringify(leaked[0])} through 10.0.2.2: the uplink is not restricted` : `10.0.2.2:${hostPort} unreachable from dom0 (nc rc=${probe[1]}); only the forwarded port works`);
  const reply = find(/^@@PTC net-reply rc=(\d+) reply=(.*)$/);
  const ok = !!reply && reply[2].includes(`ptc-pong ${nonce}`) && received.some((r) => r.includes('ptc-ping from dom0'));
  check('dom0-to-host-tcp', ok,
    `host 127.0.0.1:${hostPort} got ${received.length ? JSON.stringify(received[0]) : 'nothing'}; dom0 got ${reply ? JSON.stringify(reply[2].trim()) : 'nothing'} (via ${GUEST_FWD_ADDR})`);
}
{
  const before = find(/^@@PTC pci-before bdf=\S+ driver=(\S+)/);
  const after = find(/^@@PTC pci-after-add driver=(\S+) slots=(.*)$/);
  const listed = all(/^\[assignable-list\] /).map((l) => l.replace('[assignable-list] ', '').trim());
  const ok = before?.[1] === 'e1000' && rc('modprobe-pciback') === 0 && rc('assignable-add') === 0 &&
    after?.[1] === 'pciback' && after[2].includes(BDF) && listed.includes(BDF);
  check('pci-assignable-add', ok,
    `driver ${before?.[1] ?? '?'} -> ${after?.[1] ?? '?'}, pciback slots "${after?.[2]?.trim() ?? ''}", assignable-list [${listed.join(' ')}], rc modprobe=${rc('modprobe-pciback')} add=${rc('assignable-add')} (${took('assignable-add')})`);
}
{
  const guest = log.filter((l) => l.startsWith('[guest] '));
  const pcifront = guest.find((l) => /pcifront pci-\d+: (Installing PCI frontend|Creating PCI Frontend Bus)/.test(l));
  const dev = guest.map((l) => l.match(/@@GUEST pci (\S+) vendor=0x8086 device=0x100e class=\S+ driver=(\S+)/)).find(Boolean);
  const nic = guest.map((l) => l.match(/e1000 (\S+) (eth\d+): Intel\(R\) PRO\/1000 Network Connection/)).find(Boolean);
  const ended = find(/^@@PTC guest-ended after=(\S+)/);
  const pciList = find(/^\[guest-pci-list\] (\S+ 0000:00:04\.0)/);
  const zombie = all(/^\[xl-list-after\] /).some((l) => l.includes('pvguest'));
  const ok = rc('guest-create') === 0 && !!pcifront && dev?.[2] === 'e1000' && !!ended && !zombie;
  check('pv-guest-passthrough', ok, [
    `xl create rc=${rc('guest-create')}`,
    pciList ? `xl pci-list "${pciList[1]}"` : 'no pci-list',
    pcifront ? `guest: "${pcifront.replace(/^\[guest\] (\[[^\]]*\] )?/, '')}"` : 'guest: no pcifront line',
    dev ? `guest sees ${dev[1]} 8086:100e driver=${dev[2]}` : 'guest: e1000 device not seen/bound',
    nic ? `${nic[2]} up on ${nic[1]}` : '',
    ended ? `guest ran ${ended[1]}` : 'guest did not end',
    zombie ? 'pvguest still listed after destroy (zombie)' : 'destroyed cleanly',
  ].filter(Boolean).join('; '));
}
{
  const after = find(/^@@PTC pci-after-remove driver=(\S+)/);
  const listed = all(/^\[assignable-list-after\] /).filter((l) => l.includes(BDF));
  const ok = rc('assignable-remove') === 0 && after?.[1] === 'e1000' && listed.length === 0;
  check('pci-assignable-remove', ok, `xl pci-assignable-remove -r rc=${rc('assignable-remove')}; dom0 driver now ${after?.[1] ?? '?'}; assignable-list ${listed.length ? 'still has it' : 'empty'}`);
}
{
  const done = find(/^@@PTC init-done/);
  const ok = !timedOut && !!done && exit.code === 0;
  check('clean-poweroff', ok, timedOut ? `QEMU killed after ${timeoutSec}s` : `dom0 ${done ? 'reached poweroff -f' : 'never finished /init'}, QEMU exit ${exit.code ?? exit.signal}`);
}
await finish();
