#!/usr/bin/env node
// Real-KVM platform check (issue 16, step 1): fetch the pinned Debian packages, build L1's
// initramfs, boot L1 (Debian Linux 6.1 under QEMU/TCG with an emulated Intel IOMMU) and judge its
// serial console: the shell scenario test/kvm/rootfs/tools-scenario.sh binds the e1000 to vfio-pci the
// libvirt way, starts libvirtd, a paused nested domain, hot-attaches and detaches the device with
// virsh, releases it, and reproduces the new_id hazard. One PASS/FAIL line per check; exit 1 on any FAIL.
//
//   node test/kvm/run.mjs [--tools] [--timeout SEC] [--verbose] [--no-fetch] [--no-build]
//
// Env: PTC_KVM_CACHE (default <repo>/.cache/kvm), PTC_KVM_TIMEOUT (QEMU run, default 600 s),
// PTC_KVM_QEMU. Needs root (apt-get for missing host tools, device nodes and chroot in the build).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cliArgs, createReport, newLogPath, secs, startQemu, unsafeQemuPath } from '../realsys/harness.mjs';
import { BDF, OTHER_BDF, boot, buildL1, cache, l1QemuArgs, qemuBin, relay } from './l1.mjs';

const { flag, opt } = cliArgs();
const timeoutSec = Number(opt('--timeout', process.env.PTC_KVM_TIMEOUT ?? '600'));
const verbose = flag('--verbose') || process.env.PTC_KVM_VERBOSE === '1';
const report = createReport('kvm');
const { check } = report;

if (!buildL1(report, { fetch: !flag('--no-fetch'), build: !flag('--no-build') })) await report.finish(1);
const img = path.join(boot, 'l1.img');
if (!existsSync(img)) {
  check('boot-files', false, `${img} missing: run scripts/kvm/fetch.sh and scripts/kvm/build-initrd.sh`);
  await report.finish(1);
}
if (unsafeQemuPath(relay, process.execPath, boot)) {
  check('paths', false, 'QEMU options cannot carry spaces or commas in paths');
  await report.finish(1);
}
report.logPath = newLogPath(path.join(cache, 'logs'), 'tools');
report.note(`booting L1 under QEMU (TCG), console log: ${report.logPath}`);
const con = startQemu(report, {
  bin: qemuBin, args: l1QemuArgs({ img }), logPath: report.logPath, verbose, timeoutSec,
  milestones: [['l1-init', /@@PTC init-start/], ['libvirtd-up', /@@PTC libvirtd-up/], ['init-done', /@@PTC init-done/]],
});
const exit = await con.exit;
report.timings.boot = Date.now() - con.started;

const find = (re) => con.find(re);
const rc = (tag) => {
  const m = find(new RegExp(`^@@PTC rc ${tag}=(\\d+)`));
  return m ? Number(m[1]) : null;
};
const took = (tag) => find(new RegExp(`^@@PTC rc ${tag}=\\d+ took=(\\S+)`))?.[1] ?? '?';
const lines = (tag) => con.lines.filter((l) => l.startsWith(`[${tag}] `)).map((l) => l.slice(tag.length + 3).trim()).filter(Boolean);
const up = (a, b) => `${(Number(b) - Number(a)).toFixed(1)}s`;

if (exit.error) check('qemu', false, `${qemuBin} did not start: ${exit.error.message}`);
{
  const m = find(/^@@PTC init-start kernel=(\S+) uptime=(\S+)/);
  const v = find(/^@@PTC versions (.*)$/);
  check('l1-boot', !!m && m[1].startsWith('6.1.'), m ? `L1 kernel ${m[1]} ran /init at uptime ${m[2]}s (+${secs(con.seenAt['l1-init'])}s after QEMU start); ${v ? v[1].trim() : ''}` : 'L1 never reached /init');
}
{
  const m = find(/^@@PTC iommu-groups count=(\d+) bdf-group=(\S*)/);
  const dmar = lines('dmesg');
  const ok = !!m && Number(m[1]) > 0 && m[2] !== '' && dmar.some((l) => l.includes('IOMMU enabled'));
  const members = find(/^@@PTC group-members (\S+): (.*)$/);
  check('iommu', ok, m ? `${m[1]} IOMMU groups, ${BDF} in group ${m[2] || 'none'} (members: ${members?.[2]?.trim() ?? '?'}); ${dmar.map((l) => `"${l.replace(/^\[ *[\d.]+\] /, '')}"`).join(', ')}` : 'no iommu facts');
}
{
  const m = find(/^@@PTC vfio-bind driver=(\S+) override=(\S+) devnode=(.*) took-from=(\S+) to=(\S+)/);
  const group = find(/^@@PTC iommu-groups count=\d+ bdf-group=(\S+)/)?.[1];
  const nodes = m ? m[3].trim().split(/\s+/) : [];
  const ok = !!m && m[1] === 'vfio-pci' && m[2] === 'vfio-pci' && !!group && nodes.includes(group) && nodes.includes('vfio') && rc('modprobe-vfio') === 0;
  check('vfio-bind', ok, m ? `driver_override=${m[2]}, unbind, drivers_probe: driver ${m[1]}; /dev/vfio: ${m[3].trim()} (group ${group}) in ${up(m[4], m[5])}` : 'no vfio-bind fact');
}
{
  const m = find(/^@@PTC libvirtd-up tries=(\d+) from=(\S+) to=(\S+)/);
  const hv = lines('virsh-version').find((l) => l.startsWith('Running hypervisor'));
  const lib = lines('virsh-version').find((l) => l.startsWith('Using library'));
  check('libvirtd', !!m && !!hv, m ? `libvirtd answered virsh version after ${up(m[2], m[3])}: "${lib ?? '?'}", "${hv ?? 'no hypervisor line'}"` : 'libvirtd never answered');
}
const variant = (v) => ({
  start: rc(`start-${v}`),
  state: find(new RegExp(`^@@PTC domstate-${v} (\\S+)`))?.[1],
  attach: rc(`attach-${v}`),
  attachOut: lines(`attach-${v}`).join(' '),
  detachOut: lines(`detach-${v}`).join(' '),
  after: find(new RegExp(`^@@PTC hostdev-after-attach ${v} count=(\\d+)`))?.[1],
  addr: lines(`dump-after-attach-${v}`).find((l) => l.startsWith("<address type='pci'")),
  gone: find(new RegExp(`^@@PTC hostdev-after-detach ${v} count=(\\d+) waited=(\\S+)`)),
  detach: rc(`detach-${v}`),
});
{
  const v = variant('bridge');
  check('domain-paused', rc('define-bridge') === 0 && v.start === 0 && v.state === 'paused', `virsh define rc=${rc('define-bridge')}, start --paused rc=${v.start} (${took('start-bridge')}), domstate ${v.state ?? '?'}`);
  check('attach-hot', v.attach === 0 && v.after === '1', `attach-device --live rc=${v.attach} (${took('attach-bridge')}) "${v.attachOut}"; dumpxml has ${v.after ?? '?'} hostdev ${v.addr ?? ''}`);
  check('detach-hot', v.detach === 0 && v.gone?.[1] === '0', `detach-device --live rc=${v.detach} (${took('detach-bridge')}) "${v.detachOut}"; dumpxml has ${v.gone?.[1] ?? '?'} hostdev (waited ${v.gone?.[2] ?? '?'})`);
}
{
  const v = variant('rootport');
  check('rootport-attach-detach', v.attach === 0 && v.after === '1' && v.detach === 0 && v.gone?.[1] === '0',
    `explicit address on the empty pcie-root-port: attach rc=${v.attach} ${v.addr ?? ''}, detach rc=${v.detach}, hostdev left: ${v.gone?.[1] ?? '?'} (waited ${v.gone?.[2] ?? '?'})`);
}
{
  const v = variant('acpi');
  check('acpi-unplug-pending', v.attach === 0 && v.after === '1' && v.gone?.[1] === '1',
    `QEMU's default ACPI hotplug on q35: attach rc=${v.attach}, detach rc=${v.detach} "${v.detachOut}", hostdev still in dumpxml after ${v.gone?.[2] ?? '?'}: ${v.gone?.[1] === '1' ? 'yes (the unplug waits for a guest OS)' : 'no'}`);
}
{
  const m = find(/^@@PTC release driver=(\S+) override=(\S+)/);
  check('release', m?.[1] === 'e1000', m ? `driver_override cleared (${m[2]}), unbind, bind e1000: driver ${m[1]}` : 'no release fact');
}
{
  const added = find(/^@@PTC new-id-added \S+=(\S+) \S+=(\S+)/);
  const reprobe = find(/^@@PTC new-id-reprobe driver=(\S+) override=(\S+)/);
  const fix = find(/^@@PTC new-id-override driver=(\S+) override=(\S+)/);
  const removed = find(/^@@PTC new-id-removed \S+=(\S+) \S+=(\S+)/);
  check('new-id-hazard', added?.[1] === 'e1000' && added?.[2] === 'e1000' && reprobe?.[1] === 'vfio-pci',
    `new_id 8086 100e on vfio-pci: bound devices stay (${BDF} ${added?.[1] ?? '?'}, ${OTHER_BDF} ${added?.[2] ?? '?'}); unbind ${BDF} + drivers_probe with no override -> ${reprobe?.[1] ?? '?'}`);
  check('new-id-override-fix', fix?.[1] === 'e1000' && fix?.[2] === 'e1000' && removed?.[1] === 'e1000' && removed?.[2] === 'e1000',
    `driver_override=e1000 + drivers_probe -> ${fix?.[1] ?? '?'}; after remove_id: ${BDF} ${removed?.[1] ?? '?'}, ${OTHER_BDF} ${removed?.[2] ?? '?'}`);
}
{
  const done = find(/^@@PTC init-done/);
  check('clean-poweroff', !con.timedOut() && !!done && exit.code === 0, con.timedOut() ? `QEMU killed after ${timeoutSec}s` : `L1 ${done ? 'reached poweroff -f' : 'never finished /init'}, QEMU exit ${exit.code ?? exit.signal}`);
}
await report.finish(undefined, Object.entries(con.seenAt).map(([k, v]) => `${k} +${secs(v)}s`));
