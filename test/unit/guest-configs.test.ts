import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureHandlerContext } from '../helpers/handler-context.js';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { readInventory } from '../../agent/host-inventory.js';
import { RecordingRunner } from '../../agent/linux/command-runner.js';
import { LinuxHost } from '../../agent/linux/linux-host.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { buildFixtureHost, type FixtureHost, type FixtureHostSpec } from '../helpers/sysfs-fixture.js';

/** A Debian dom0 with xl whose guest configs use every place and spelling xl accepts, and one broken file. */
const SPEC: FixtureHostSpec = {
  osRelease: 'ID=debian\nVERSION_ID="12"\n',
  xen: true,
  kernelRelease: '6.1.0-56-amd64',
  pciback: { slots: [] },
  devices: [
    { bdf: '0000:00:00.0', vendor: '8086', device: '29c0', class: '060000' },
    { bdf: '0000:02:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'pciback' },
    { bdf: '0000:03:00.0', vendor: '10de', device: '1234', class: '030000', driver: 'pciback' },
    { bdf: '0000:04:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'pciback' },
    { bdf: '0000:05:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'pciback' },
  ],
  files: {
    '/usr/sbin/xl': '',
    '/etc/xen/xl.conf': '#autoballoon="off"\n',
    // A stopped guest in a .cfg file, its list over several lines with options, a VSLOT and a short BDF.
    '/etc/xen/vm-cfg.cfg': "name = 'vm-cfg'\nbuilder = 'hvm'\n# ptctl-os: rhel 6.2\npci = [\n    '03:00.0@4,permissive=1', # gpu\n]\n",
    // A guest defined only by its autostart entry.
    '/etc/xen/auto/vm-auto.cfg': 'name = "vm-auto"\ntype = "hvm"\n# ptctl-os: rhel 6.2\n',
    // A file ptctl cannot parse: its guest is fenced, nobody else.
    '/etc/xen/vm-bad': "name = 'vm-bad'\ntype = 'hvm'\npci = [ '0000:04:00.0' '0000:05:00.0' ]\n",
    '/etc/xen/configs/vm-link.cfg': "name = 'vm-link'\ntype = 'hvm'\n# ptctl-os: rhel 6.2\n",
  },
};
const XL_INFO = 'host : dom0\nvirt_caps              : pv hvm hvm_directio pv_directio\n';
const XL_LIST = 'Name   ID   Mem VCPUs\tState\tTime(s)\nDomain-0   0  1024     2     r-----     5.5\nvm-run   3  512  1  -b----  1.0\n';

const cleanup: string[] = [];
const fixtures: FixtureHost[] = [];
after(() => {
  for (const f of fixtures) rmSync(f.root, { recursive: true, force: true });
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

async function setup(): Promise<{ fx: FixtureHost; host: LinuxHost; ctx: HandlerContext }> {
  const fx = buildFixtureHost(SPEC);
  fixtures.push(fx);
  // Autostart entries are usually links into /etc/xen; this one points at a config in a sub-folder.
  symlinkSync('../configs/vm-link.cfg', join(fx.root, 'etc/xen/auto/vm-link'));
  fx.write('/etc/xen/vm-run.cfg', "name = 'vm-run'\ntype = 'hvm'\n# ptctl-os: rhel 6.2\n");
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: '' } },
    { match: ['xl', 'info'], result: { stdout: XL_INFO } },
    { match: ['xl', 'list'], result: { stdout: XL_LIST } },
    { match: (a) => a[0] === 'xl' && a[1] === 'pci-list', result: { stdout: '' } },
    { match: (a) => a[0] === 'xl' && a[1] === 'block-list', result: { stdout: '' } },
    { match: ['xl', 'pci-assignable-list'], result: { stdout: '0000:02:00.0\n0000:03:00.0\n0000:04:00.0\n0000:05:00.0\n' } },
    { match: (a) => a[0] === 'xl' && a[1] === 'pci-attach', result: {} },
  ]);
  const host = new LinuxHost({ root: fx.root, runner, toolstack: 'xl', onSysfsWrite: fx.kernel.observer });
  const stateDir = mkdtempSync(join(tmpdir(), 'ptctl-guest-configs-'));
  cleanup.push(stateDir);
  const ctx = await fixtureHandlerContext(host, stateDir);
  return { fx, host, ctx };
}

void describe('guest configs where xl keeps them, and a config that cannot be parsed', () => {
  void it('finds guests in <name>.cfg and /etc/xen/auto/, and counts a stopped guest’s configured devices', async () => {
    const { host, ctx } = await setup();
    assert.equal(host.guestConfigPath('vm-cfg'), '/etc/xen/vm-cfg.cfg');
    assert.equal(host.guestConfigPath('vm-auto'), '/etc/xen/auto/vm-auto.cfg');
    // An autostart link is followed: an atomic write must replace the file, not the link.
    assert.equal(host.guestConfigPath('vm-link'), '/etc/xen/configs/vm-link.cfg');
    const inv = await readInventory('dom0', host, ctx.records);
    assert.deepEqual(inv.guests.map((g) => [g.name, g.state]).sort(), [['vm-auto', 'stopped'], ['vm-bad', 'stopped'], ['vm-cfg', 'stopped'], ['vm-link', 'stopped'], ['vm-run', 'running']]);
    const cfg = inv.guests.find((g) => g.name === 'vm-cfg');
    assert.deepEqual(cfg?.configDevices, ['0000:03:00.0']);
    assert.equal(cfg?.configProblem, null);
    assert.equal(inv.devices.find((d) => d.bdf === '0000:03:00.0')?.assignedTo, 'vm-cfg');
    // Rule 5: the stopped guest's device cannot go to a second guest.
    await assert.rejects(commandHandlers.attach(ctx, { bdf: '0000:03:00.0', guest: 'vm-auto', mode: 'cold', allowInsecurePV: false }), (e) => isPtcError(e, ErrorCode.DEVICE_ASSIGNED));
  });

  void it('fences only the guest whose file cannot be parsed: reported, refused for attach, its addresses held; everything else works', async () => {
    const { fx, ctx } = await setup();
    const inv = await readInventory('dom0', ctx.backend, ctx.records);
    const bad = inv.guests.find((g) => g.name === 'vm-bad');
    assert.match(bad?.configProblem ?? '', /separated by commas/);
    assert.deepEqual(bad?.configDevices, ['0000:04:00.0', '0000:05:00.0']);
    assert.equal(inv.devices.find((d) => d.bdf === '0000:04:00.0')?.assignedTo, 'vm-bad');
    const before = fx.read('/etc/xen/vm-bad');
    await assert.rejects(
      commandHandlers.attach(ctx, { bdf: '0000:02:00.0', guest: 'vm-bad', mode: 'cold', allowInsecurePV: false }),
      (e) => isPtcError(e, ErrorCode.GUEST_CONFIG_INVALID) && /vm-bad/.test(e.message) && /\/etc\/xen\/vm-bad/.test(e.message),
    );
    assert.equal(fx.read('/etc/xen/vm-bad'), before, 'the unparseable file is untouched');
    // Fail closed: what the broken file names is not handed to another guest.
    await assert.rejects(commandHandlers.attach(ctx, { bdf: '0000:05:00.0', guest: 'vm-auto', mode: 'cold', allowInsecurePV: false }), (e) => isPtcError(e, ErrorCode.DEVICE_ASSIGNED));
    // Other guests are served: a cold attach to the autostart guest edits its file, keeping the rest.
    const attached = await commandHandlers.attach(ctx, { bdf: '0000:02:00.0', guest: 'vm-auto', mode: 'cold', allowInsecurePV: false });
    assert.equal(attached.cold, true);
    assert.equal(fx.read('/etc/xen/auto/vm-auto.cfg'), "name = \"vm-auto\"\ntype = \"hvm\"\n# ptctl-os: rhel 6.2\npci = [ '0000:02:00.0' ]\n");
    // Editing the multi-line list keeps the other device's options and comment.
    await commandHandlers.detach(ctx, { bdf: '0000:02:00.0', guest: 'vm-auto', mode: 'cold' });
    assert.equal(fx.read('/etc/xen/vm-cfg.cfg'), SPEC.files?.['/etc/xen/vm-cfg.cfg']);
    const inspected = await commandHandlers.inspect(ctx, {});
    assert.equal(inspected.hostId, 'dom0');
  });

  void it('writes through an autostart link into the file it points at', async () => {
    const { fx, ctx } = await setup();
    await commandHandlers.attach(ctx, { bdf: '0000:02:00.0', guest: 'vm-link', mode: 'cold', allowInsecurePV: false });
    assert.match(fx.read('/etc/xen/configs/vm-link.cfg') ?? '', /pci = \[ '0000:02:00.0' \]/);
    assert.equal(fx.read('/etc/xen/auto/vm-link'), fx.read('/etc/xen/configs/vm-link.cfg'), 'still a link to the file');
  });
});
