import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { fixtureHandlerContext } from '../helpers/handler-context.js';
import { ExecRunner, RecordingRunner, UnexpectedCommandError } from '../../agent/linux/command-runner.js';
import { parseOsRelease, parseRedhatRelease } from '../../agent/linux/host-release.js';
import { parseIpAddr, parseProcMounts, parseProcNetRoute } from '../../agent/linux/host-usage.js';
import { LinuxHost, type LinuxHostOptions } from '../../agent/linux/linux-host.js';
import { parseAssignableList, parseDomainList, parseGuestPciList, parseVirtCaps } from '../../agent/linux/xen-toolstack.js';
import { effectiveHidden, KMOD_DIALECT, type ModprobeDialect, parseModprobeConf, RHEL5_DIALECT } from '../../agent/modprobe-conf.js';
import type { ScannedDevice } from '../../agent/backend.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { buildFixtureHost, type FixtureHost, type FixtureHostSpec } from '../helpers/sysfs-fixture.js';

// ---------------------------------------------------------------------------------------------
// Canned toolstack output. The xl samples are from a real Xen 4.17 / Debian 12 dom0 (DESIGN §9);
// the xm ones follow xend's xm/main.py formats.
// ---------------------------------------------------------------------------------------------

const XL_INFO = `host                   : dom0
release                : 6.1.0-56-amd64
machine                : x86_64
nr_cpus                : 2
virt_caps              : pv pv_directio iommu_hap_pt_share gnttab-v1 gnttab-v2
total_memory           : 2047
xen_major              : 4
xen_minor              : 17
xen_version            : 4.17.7
xen_commandline        : console=com1 dom0_mem=1024M,max:1024M iommu=1
xend_config_format     : 4
`;
const XL_INFO_NO_IOMMU = XL_INFO.replace('pv pv_directio iommu_hap_pt_share', 'pv hvm hap');
const XL_LIST = `Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----     105.5
pvguest                                      1   256     1     -b----       3.2
hvmguest                                     2   512     1     --p---       0.0
`;
const XL_PCI_LIST = 'Vdev Device\n00.0 0000:00:04.0\n';

const XM_INFO = `host                   : rhel5-dom0
release                : 2.6.18-164.el5xen
nr_cpus                : 4
xen_major              : 3
xen_minor              : 1
xen_extra              : .2-164.el5
virt_caps              : hvm hvm_directio
xend_config_format     : 2
`;
const XM_LIST = `Name                                      ID Mem(MiB) VCPUs State   Time(s)
Domain-0                                   0     3456     4 r-----   8123.4
vm-hvm                                     3     1024     1 -b----    201.7
vm-pv                                      4      512     1 -b----     88.0
vm-pv6                                     5      512     1 r-----     70.2
vm-off                                          512     1 ------      0.0
`;
const XM_PCI_LIST = 'VSlt VFn domain bus  slot func\n0x05 0x0 0x0000 0x0c 0x00 0x0\n';

const IP_ADDR_RHEL5 = `1: lo    inet 127.0.0.1/8 scope host lo
4: eth0    inet 192.168.1.10/24 brd 192.168.1.255 scope global eth0
7: eth3    inet 10.1.0.5/24 brd 10.1.0.255 scope global eth3
8: eth4    inet6 fe80::21b:21ff:fe3a:1/64 scope link \\       valid_lft forever preferred_lft forever
`;
const IP_ADDR_DEBIAN = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
3: eth1    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth1\\       valid_lft forever preferred_lft forever
3: eth1    inet6 fe80::5054:ff:fe12:3457/64 scope link \\       valid_lft forever preferred_lft forever
4: eth2    inet6 fe80::5054:ff:fe12:3458/64 scope link \\       valid_lft forever preferred_lft forever
`;

// ---------------------------------------------------------------------------------------------
// Fixture hosts
// ---------------------------------------------------------------------------------------------

/** (1) RHEL 5.4 dom0, Xen 3.1 with xm, /etc/modprobe.conf, module `pciback` (already loaded), kernel 2.6.18 sysfs. */
const RHEL5: FixtureHostSpec = {
  redhatRelease: 'Red Hat Enterprise Linux Server release 5.4 (Tikanga)',
  xen: true,
  kernelRelease: '2.6.18-164.el5xen',
  modules: ['/lib/modules/2.6.18-164.el5xen/kernel/drivers/xen/pciback/pciback.ko'],
  legacyNetLinks: true,
  // pciback read hide= at boot, but bnx2 loaded first (no install line), so 09:00.0 is in slots and on bnx2.
  pciback: { slots: ['0000:09:00.0', '0000:0c:00.0'] },
  devices: [
    { bdf: '0000:00:00.0', vendor: '8086', device: '3406', class: '060000' },
    { bdf: '0000:01:00.0', vendor: '14e4', device: '164c', class: '020000', driver: 'bnx2', net: ['peth0'] },
    { bdf: '0000:03:00.0', vendor: '1000', device: '0060', class: '010400', driver: 'megaraid_sas', disks: [{ name: 'sda', partitions: ['sda1', 'sda2'] }] },
    { bdf: '0000:09:00.0', vendor: '14e4', device: '164c', class: '020000', driver: 'bnx2', net: ['eth2'] },
    { bdf: '0000:0a:04.0', vendor: '8086', device: '107c', class: '020000', driver: 'e1000', net: ['eth5'] },
    { bdf: '0000:0a:04.1', vendor: '8086', device: '107c', class: '020000', driver: 'e1000', net: ['eth3'] },
    { bdf: '0000:0b:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth4'] },
    { bdf: '0000:0c:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'pciback', hostDriver: 'e1000e', net: ['eth6'] },
  ],
  // Xen 3.x network-bridge: the physical NIC becomes peth0, enslaved to the bridge eth0 that has the address.
  interfaces: {
    eth0: { operstate: 'up' },
    peth0: { operstate: 'up', master: 'eth0' },
    eth2: { operstate: 'down' },
    eth3: { operstate: 'up' },
    eth4: { operstate: 'up' },
    eth5: { operstate: 'down' },
  },
  routes: [
    ['eth0', '192.168.1.0/24'],
    ['eth0', 'default'],
  ],
  deviceMappers: [{ name: 'dm-0', mapperName: 'VolGroup00-LogVol00', slaves: ['sda2'] }],
  mounts: [
    ['/dev/mapper/VolGroup00-LogVol00', '/', 'ext3'],
    ['/dev/sda1', '/boot', 'ext3'],
  ],
  files: {
    '/etc/modprobe.conf': 'alias eth0 bnx2\nalias eth2 bnx2\nalias scsi_hostadapter megaraid_sas\noptions pciback hide=(0000:09:00.0)(0000:0a:04.0)(0000:0c:00.0)\n',
    '/usr/sbin/xm': '',
  },
  guests: {
    'vm-hvm': 'name = "vm-hvm"\nbuilder = "hvm"\n# ptctl-os: rhel 5.4\nmemory = 1024\n',
    'vm-pv': "name = 'vm-pv'\n# ptctl-os: rhel 5\nbootloader = '/usr/bin/pygrub'\npci = [ '0000:0c:00.0' ]\n",
    'vm-pv6': 'name = "vm-pv6"\n# ptctl-os: RHEL 6\n',
    'vm-off': 'name = "vm-off"\n',
  },
};

/** (2) Debian 12 dom0, Xen 4.17 with xl, /etc/modprobe.d, module `xen-pciback` (not loaded yet): the QEMU machine of DESIGN §9. */
const DEBIAN12: FixtureHostSpec = {
  osRelease: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n',
  xen: true,
  kernelRelease: '6.1.0-56-amd64',
  modules: ['kernel/drivers/xen/xen-pciback/xen-pciback.ko', 'kernel/drivers/net/ethernet/intel/e1000/e1000.ko'],
  devices: [
    { bdf: '0000:00:00.0', vendor: '8086', device: '29c0', class: '060000' },
    { bdf: '0000:00:01.0', vendor: '1234', device: '1111', class: '030000' },
    { bdf: '0000:00:04.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth0'] },
    { bdf: '0000:00:05.0', vendor: '1af4', device: '1000', class: '020000', driver: 'virtio-pci', net: ['eth1'], netParent: 'virtio0' },
    { bdf: '0000:00:06.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth2'] },
    { bdf: '0000:00:1f.2', vendor: '8086', device: '2922', class: '010601', driver: 'ahci', disks: [{ name: 'sda', partitions: ['sda1'] }] },
  ],
  interfaces: { eth0: { operstate: 'down' }, eth1: { operstate: 'up' }, eth2: { operstate: 'up' } },
  routes: [
    ['eth1', 'default'],
    ['eth1', '10.0.2.0/24'],
  ],
  mounts: [['/dev/sda1', '/', 'ext4']],
  files: {
    '/usr/sbin/xl': '',
    '/etc/xen/xl.conf': '#autoballoon="off"\n',
    '/etc/xen/scripts/vif-bridge': '#!/bin/sh\n',
    '/usr/share/misc/pci.ids': '8086  Intel Corporation\n\t100e  82540EM Gigabit Ethernet Controller\n\t\t8086 001e  PRO/1000 MT Desktop Adapter\n1af4  Red Hat, Inc.\nC 02  Network controller\n',
  },
  guests: {
    pvguest: 'name = "pvguest"\n# ptctl-os: debian 12\nkernel = "/boot/vmlinuz"\nmemory = 256\n',
    hvmguest: 'name = "hvmguest"\ntype = "hvm"\n# ptctl-os: rhel 6.2\n',
    'vm-cold': "name = 'vm-cold'\nbuilder = 'hvm'\n",
    'xlexample.hvm': 'name = "example.hvm"\ntype = "hvm"\n',
  },
};

/** (3) Xen without an IOMMU (virt_caps has no directio), pciback built in and old enough to lack remove_slot. */
const NO_IOMMU: FixtureHostSpec = {
  osRelease: 'ID=debian\nVERSION_ID="11"\n',
  xen: true,
  kernelRelease: '5.10.0-28-amd64',
  pciback: { slots: [], removeSlot: false },
  devices: [
    { bdf: '0000:02:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth0'] },
    { bdf: '0000:03:00.0', vendor: '8086', device: '1533', class: '020000', driver: 'igb', net: ['eth1'] },
  ],
  interfaces: { eth0: { operstate: 'up' }, eth1: { operstate: 'down' } },
  routes: [['eth0', 'default']],
  files: { '/usr/sbin/xl': '', '/usr/sbin/xm': '' },
};

/** (4) A KVM host: IOMMU groups in sysfs, no Xen toolstack at all. */
const KVM: FixtureHostSpec = {
  osRelease: 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n',
  devices: [
    { bdf: '0000:00:00.0', vendor: '8086', device: '3e30', class: '060000', iommuGroup: 0 },
    { bdf: '0000:01:00.0', vendor: '8086', device: '1533', class: '020000', driver: 'igb', net: ['enp1s0'], iommuGroup: 12 },
    { bdf: '0000:02:00.0', vendor: '144d', device: 'a808', class: '010802', driver: 'nvme', iommuGroup: 13, disks: [{ name: 'nvme0n1', dev: '259:0', partitions: ['nvme0n1p1', 'nvme0n1p2'] }] },
  ],
  interfaces: { enp1s0: { operstate: 'down' } },
  mounts: [['/dev/nvme0n1p2', '/', 'ext4']],
  swaps: ['/dev/nvme0n1p1'],
};

const fixtures: FixtureHost[] = [];
const tempDirs: string[] = [];
after(() => {
  for (const f of fixtures) f.cleanup();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

interface TestHost {
  fx: FixtureHost;
  runner: RecordingRunner;
  host: LinuxHost;
}

const isScanCommand = (argv: readonly string[]): boolean =>
  argv[0] === 'ip' || ((argv[0] === 'xl' || argv[0] === 'xm') && ['list', 'info', 'pci-list', 'pci-assignable-list', 'pci-list-assignable-devices'].includes(argv[1] ?? ''));

function hiddenIn(fx: FixtureHost, file: string, dialect: ModprobeDialect): string[] {
  return effectiveHidden(parseModprobeConf(fx.read(file) ?? '', dialect));
}

/** Canned answers a dom0 gives; `xl pci-assignable-list` is computed from the fake kernel's state. */
function rhel5Host(options: Partial<LinuxHostOptions> = {}): TestHost {
  const fx = buildFixtureHost(RHEL5);
  fixtures.push(fx);
  const pcibackDevices = (): string => RHEL5.devices.filter((d) => fx.kernel.driverOf(d.bdf) === 'pciback').map((d) => `${d.bdf}\n`).join('');
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: IP_ADDR_RHEL5 } },
    { match: ['xm', 'info'], result: { stdout: XM_INFO } },
    { match: ['xm', 'list'], result: { stdout: XM_LIST } },
    { match: ['xm', 'pci-list', 'vm-pv'], result: { stdout: XM_PCI_LIST } },
    { match: (a) => a[0] === 'xm' && a[1] === 'pci-list', result: { stdout: '' } },
    { match: ['xm', 'pci-list-assignable-devices'], result: () => ({ stdout: pcibackDevices() }) },
    { match: ['/sbin/modprobe', '-r', 'e1000'], result: () => (fx.kernel.unloadDriver('e1000'), {}) },
    { match: ['/sbin/modprobe', 'e1000'], result: () => (fx.kernel.loadDriver('e1000'), {}) },
  ]);
  const host = new LinuxHost({ root: fx.root, runner, uplinkInterfaces: ['eth4'], onSysfsWrite: fx.kernel.observer, ...options });
  return { fx, runner, host };
}

const MODPROBE_D = '/etc/modprobe.d/ptctl-pciback.conf';

function debianHost(options: Partial<LinuxHostOptions> = {}): TestHost {
  const fx = buildFixtureHost(DEBIAN12);
  fixtures.push(fx);
  const pcibackDevices = (): string => DEBIAN12.devices.filter((d) => fx.kernel.driverOf(d.bdf) === 'pciback').map((d) => `${d.bdf} \n`).join('');
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: IP_ADDR_DEBIAN } },
    { match: ['xl', 'info'], result: { stdout: XL_INFO } },
    { match: ['xl', 'list'], result: { stdout: XL_LIST } },
    { match: (a) => a[0] === 'xl' && a[1] === 'pci-list', result: { stdout: '' } },
    { match: ['xl', 'pci-assignable-list'], result: () => ({ stdout: pcibackDevices() }) },
    { match: ['/sbin/modprobe', 'xen-pciback'], result: () => (fx.kernel.loadPciback(hiddenIn(fx, MODPROBE_D, KMOD_DIALECT)), {}) },
    { match: ['/sbin/modprobe', '-r', 'e1000'], result: () => (fx.kernel.unloadDriver('e1000'), {}) },
    { match: ['/sbin/modprobe', 'e1000'], result: () => (fx.kernel.loadDriver('e1000'), {}) },
  ]);
  const host = new LinuxHost({ root: fx.root, runner, toolstack: 'xl', onSysfsWrite: fx.kernel.observer, ...options });
  return { fx, runner, host };
}

function noIommuHost(): TestHost {
  const fx = buildFixtureHost(NO_IOMMU);
  fixtures.push(fx);
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: '2: eth0    inet 172.16.0.4/16 brd 172.16.255.255 scope global eth0\n' } },
    { match: ['xl', 'info'], result: { stdout: XL_INFO_NO_IOMMU } },
    { match: ['xl', 'list'], result: { stdout: 'Name   ID   Mem VCPUs\tState\tTime(s)\nDomain-0   0  1024     2     r-----     5.5\n' } },
    { match: ['xl', 'pci-assignable-list'], result: { stdout: '' } },
  ]);
  const host = new LinuxHost({ root: fx.root, runner, onSysfsWrite: fx.kernel.observer });
  return { fx, runner, host };
}

function kvmHost(): TestHost {
  const fx = buildFixtureHost(KVM);
  fixtures.push(fx);
  const runner = new RecordingRunner([{ match: ['ip', '-o', 'addr', 'show'], result: { stdout: '' } }]);
  return { fx, runner, host: new LinuxHost({ root: fx.root, runner }) };
}

function byBdf(devices: readonly ScannedDevice[], bdf: string): ScannedDevice {
  const d = devices.find((x) => x.bdf === bdf);
  assert.ok(d, `scan has no ${bdf}`);
  return d;
}

function ptcError(code: ErrorCode, ...mentions: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isPtcError(err), `expected a PtcError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const m of mentions) assert.ok(err.message.includes(m), `${code} message should mention "${m}": ${err.message}`);
    return true;
  };
}

const w = (path: string, bdf: string): { path: string; data: string } => ({ path, data: `${bdf}\n` });

// ---------------------------------------------------------------------------------------------
// Command runner
// ---------------------------------------------------------------------------------------------

void describe('ExecRunner', () => {
  const runner = new ExecRunner();

  void it('passes arguments as an array: shell syntax reaches the program literally', async () => {
    const r = await runner.run(['echo', '$HOME;', 'a b', '`id`', '|', 'x']);
    assert.deepEqual(r, { code: 0, stdout: '$HOME; a b `id` | x\n', stderr: '' });
  });

  void it('returns the exit code and captured stderr of a failing program', async () => {
    const r = await runner.run([process.execPath, '-e', 'process.stdout.write("out"); process.stderr.write("first\\nlast line\\n"); process.exit(3)']);
    assert.deepEqual(r, { code: 3, stdout: 'out', stderr: 'first\nlast line\n' });
  });

  void it('turns a program that cannot start into code 127 with the reason in stderr', async () => {
    const r = await runner.run(['/nonexistent/ptctl-no-such-tool', 'x']);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /ptctl-no-such-tool.*ENOENT/);
    assert.equal((await runner.run([])).code, 127);
  });

  void it('kills a program that overruns its timeout', async () => {
    const started = Date.now();
    const r = await runner.run([process.execPath, '-e', 'setTimeout(() => {}, 30000)'], { timeoutMs: 300 });
    assert.equal(r.code, 124);
    assert.match(r.stderr, /killed after 300 ms/);
    assert.ok(Date.now() - started < 5000);
  });
});

void describe('RecordingRunner', () => {
  void it('records every argv, answers the first match, honours times, and lets on() override', async () => {
    const runner = new RecordingRunner([
      { match: ['xl', 'list'], result: { stdout: 'first' }, times: 1 },
      { match: (a) => a[0] === 'xl', result: { code: 1, stderr: 'generic' } },
    ]);
    assert.deepEqual(await runner.run(['xl', 'list']), { code: 0, stdout: 'first', stderr: '' });
    assert.deepEqual(await runner.run(['xl', 'list']), { code: 1, stdout: '', stderr: 'generic' });
    runner.on(['xl', 'list'], { stdout: 'override' });
    assert.equal((await runner.run(['xl', 'list'])).stdout, 'override');
    assert.deepEqual(runner.calls, [['xl', 'list'], ['xl', 'list'], ['xl', 'list']]);
  });

  void it('throws on a command nobody expected, and still records it', async () => {
    const runner = new RecordingRunner();
    await assert.rejects(runner.run(['rm', '-rf', '/']), UnexpectedCommandError);
    assert.deepEqual(runner.calls, [['rm', '-rf', '/']]);
  });
});

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

void describe('toolstack output parsers', () => {
  void it('reads xl list and xm list, skipping nothing but the header (Domain-0 is the caller’s to drop)', () => {
    assert.deepEqual(parseDomainList(XL_LIST), [
      { name: 'Domain-0', id: 0, state: 'running' },
      { name: 'pvguest', id: 1, state: 'running' },
      { name: 'hvmguest', id: 2, state: 'paused' },
    ]);
    assert.deepEqual(parseDomainList(XM_LIST).slice(1), [
      { name: 'vm-hvm', id: 3, state: 'running' },
      { name: 'vm-pv', id: 4, state: 'running' },
      { name: 'vm-pv6', id: 5, state: 'running' },
      { name: 'vm-off', id: null, state: 'stopped' },
    ]);
    assert.deepEqual(parseDomainList('Name ID Mem VCPUs State Time(s)\nvm 7 512 1 ------ 0.1\nvm2 8 512 1 ---s-- 0.1\nvm3 9 512 1 ----c- 1.0\n'), [
      { name: 'vm', id: 7, state: 'running' },
      { name: 'vm2', id: 8, state: 'stopped' },
      { name: 'vm3', id: 9, state: 'stopped' },
    ]);
    assert.deepEqual(parseDomainList(''), []);
  });

  void it('reads the guest device list of xl and of both xm generations', () => {
    assert.deepEqual(parseGuestPciList(XL_PCI_LIST), ['0000:00:04.0']);
    assert.deepEqual(parseGuestPciList(XM_PCI_LIST), ['0000:0c:00.0']);
    assert.deepEqual(parseGuestPciList('domain bus  slot func\n0x0000 0x0a 0x04 0x1\n0x0000 0x09 0x00 0x0\n'), ['0000:09:00.0', '0000:0a:04.1']);
    assert.deepEqual(parseGuestPciList('VSlt VFn domain bus  slot func\n-    -   0x0000 0x0b 0x00 0x0\n'), ['0000:0b:00.0']);
    assert.deepEqual(parseGuestPciList('domain   bus   slot   func\n0x0    0xc   0x0    0x0    \n'), ['0000:0c:00.0']);
    assert.deepEqual(parseGuestPciList(''), []);
    assert.deepEqual(parseGuestPciList('Vdev Device\n'), []);
  });

  void it('reads assignable lists and virt_caps', () => {
    assert.deepEqual(parseAssignableList('0000:00:04.0 \n0000:0A:04.1 vm1\n\n'), ['0000:00:04.0', '0000:0a:04.1']);
    assert.deepEqual(parseAssignableList(''), []);
    assert.deepEqual(parseVirtCaps(XL_INFO), ['pv', 'pv_directio', 'iommu_hap_pt_share', 'gnttab-v1', 'gnttab-v2']);
    assert.deepEqual(parseVirtCaps(XM_INFO), ['hvm', 'hvm_directio']);
    assert.equal(parseVirtCaps('host : x\n'), null);
  });

  void it('reads release files', () => {
    assert.deepEqual(parseRedhatRelease('Red Hat Enterprise Linux Server release 5.4 (Tikanga)\n'), { os: { name: 'rhel', version: '5.4' }, rhel5: true });
    assert.deepEqual(parseRedhatRelease('CentOS release 5.11 (Final)'), { os: { name: 'centos', version: '5.11' }, rhel5: true });
    assert.deepEqual(parseRedhatRelease('Red Hat Enterprise Linux Server release 6.2 (Santiago)'), { os: { name: 'rhel', version: '6.2' }, rhel5: false });
    assert.equal(parseRedhatRelease('garbage'), null);
    assert.deepEqual(parseOsRelease(DEBIAN12.osRelease ?? ''), { os: { name: 'debian', version: '12' }, rhel5: false });
    assert.deepEqual(parseOsRelease('ID=arch\n'), { os: { name: 'arch', version: '0' }, rhel5: false });
  });

  void it('reads /proc/net/route, ip -o addr and /proc/mounts', () => {
    assert.deepEqual(parseProcNetRoute('Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth1\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n'), [
      { iface: 'eth1', destination: 'default' },
      { iface: 'eth1', destination: '10.0.2.0/24' },
    ]);
    assert.deepEqual([...parseIpAddr(IP_ADDR_DEBIAN)], [['eth1', ['10.0.2.15/24']]]);
    assert.deepEqual([...parseIpAddr('9: eth0.100@eth0    inet 10.9.0.1/24 scope global eth0.100\n')], [['eth0.100', ['10.9.0.1/24']]]);
    assert.deepEqual(parseProcMounts('rootfs / rootfs rw 0 0\n/dev/sdb1 /srv/my\\040data xfs rw 0 0\n'), [{ source: '/dev/sdb1', target: '/srv/my data' }]);
  });
});

// ---------------------------------------------------------------------------------------------
// (1) RHEL 5.4, xm, /etc/modprobe.conf, pciback
// ---------------------------------------------------------------------------------------------

void describe('linux backend on RHEL 5.4 with xm', () => {
  void it('reads /etc/modprobe.conf with the pciback dialect, and the host facts', async () => {
    const { host } = rhel5Host();
    assert.deepEqual(host.modprobe(), { file: '/etc/modprobe.conf', dialect: RHEL5_DIALECT });
    assert.equal(host.toolstack.name, 'xm', 'auto picks xm on RHEL 5');
    const scan = await host.scan();
    assert.deepEqual(scan.os, { name: 'rhel', version: '5.4' });
    assert.equal(scan.hypervisor, 'xen');
    assert.equal(scan.iommu, true, 'xm info virt_caps has hvm_directio');
    assert.deepEqual(scan.capabilities, ['dynamic-bind', 'reload', 'reboot', 'hotplug']);
    assert.equal(host.guestConfigPath('vm-hvm'), '/etc/xen/vm-hvm');
  });

  void it('scans drivers, net:<if> links, slots, the assignable list and why devices are in use', async () => {
    const { host } = rhel5Host();
    const { devices } = await host.scan();
    assert.deepEqual(
      devices.map((d) => d.bdf),
      ['0000:00:00.0', '0000:01:00.0', '0000:03:00.0', '0000:09:00.0', '0000:0a:04.0', '0000:0a:04.1', '0000:0b:00.0', '0000:0c:00.0'],
    );
    const idle = byBdf(devices, '0000:09:00.0');
    assert.deepEqual(idle, {
      bdf: '0000:09:00.0',
      vendor: '14e4',
      device: '164c',
      class: '0200',
      description: 'Ethernet controller 14e4:164c (eth2)',
      driver: 'bnx2',
      hostDriver: 'bnx2',
      iommuGroup: null,
      netdev: 'eth2',
      inUse: null,
      inPcibackSlots: true,
      assignable: false,
      resettable: null,
    });
    assert.equal(byBdf(devices, '0000:01:00.0').inUse, "peth0 is part of eth0, which carries the host's default route");
    assert.equal(byBdf(devices, '0000:0a:04.1').inUse, 'eth3 is up with address 10.1.0.5/24');
    assert.equal(byBdf(devices, '0000:0b:00.0').inUse, "eth4 carries the agent's own uplink (NATS)");
    assert.equal(byBdf(devices, '0000:03:00.0').inUse, 'it controls sda, mounted on / and /boot, held by device-mapper device VolGroup00-LogVol00');
    assert.match(byBdf(devices, '0000:00:00.0').inUse ?? '', /bridge \(class 0600\)/);
    assert.equal(byBdf(devices, '0000:0a:04.0').inUse, null);
    const held = byBdf(devices, '0000:0c:00.0');
    assert.deepEqual([held.driver, held.hostDriver, held.netdev, held.inUse, held.inPcibackSlots, held.assignable], ['pciback', null, null, null, true, true]);
  });

  void it('lists guests from xm list and xm pci-list, with virt and OS from their configs', async () => {
    const { host, runner } = rhel5Host();
    const { guests } = await host.scan();
    assert.deepEqual(guests, [
      { name: 'vm-hvm', virt: 'hvm', os: { name: 'rhel', version: '5.4' }, state: 'running', acpiphp: true, liveDevices: [] },
      { name: 'vm-pv', virt: 'pv', os: { name: 'rhel', version: '5' }, state: 'running', acpiphp: true, liveDevices: ['0000:0c:00.0'] },
      { name: 'vm-pv6', virt: 'pv', os: { name: 'rhel', version: '6' }, state: 'running', acpiphp: true, liveDevices: [] },
      { name: 'vm-off', virt: 'pv', os: { name: 'unknown', version: '0' }, state: 'stopped', acpiphp: true, liveDevices: [] },
    ]);
    assert.ok(!runner.calls.some((c) => c[1] === 'pci-list' && c[2] === 'vm-off'), 'no pci-list for a domain that is not running');
  });

  void it('bindPciback: unbind, no new_slot for an address already in slots, bind; no commands with pciback loaded', async () => {
    const { host, runner, fx } = rhel5Host();
    await host.bindStub('0000:09:00.0');
    assert.deepEqual(runner.calls, []);
    assert.deepEqual(fx.kernel.writes, [w('/sys/bus/pci/devices/0000:09:00.0/driver/unbind', '0000:09:00.0'), w('/sys/bus/pci/drivers/pciback/bind', '0000:09:00.0')]);
    assert.equal(fx.read('/sys/bus/pci/drivers/bnx2/unbind'), '0000:09:00.0\n');
    assert.equal(fx.read('/sys/bus/pci/drivers/pciback/new_slot'), '', 'rule 13: the kernel does not take it twice');
    assert.equal(fx.read('/sys/bus/pci/drivers/pciback/bind'), '0000:09:00.0\n');
    assert.equal(fx.kernel.driverOf('0000:09:00.0'), 'pciback');
    // Idempotent: on pciback already, nothing is written.
    await host.bindStub('0000:09:00.0');
    assert.equal(fx.kernel.writes.length, 2);
    await assert.rejects(host.bindStub('0000:77:00.0'), ptcError(ErrorCode.DEVICE_NOT_FOUND, '0000:77:00.0'));
  });

  void it('reloadDriver with pciback loaded: modprobe -r, new_slot and bind for the hidden device only, modprobe', async () => {
    const { host, runner, fx } = rhel5Host();
    await host.reloadDriver('e1000');
    assert.deepEqual(runner.calls, [
      ['/sbin/modprobe', '-r', 'e1000'],
      ['/sbin/modprobe', 'e1000'],
    ]);
    assert.deepEqual(fx.kernel.writes, [w('/sys/bus/pci/drivers/pciback/new_slot', '0000:0a:04.0'), w('/sys/bus/pci/drivers/pciback/bind', '0000:0a:04.0')]);
    assert.equal(fx.kernel.driverOf('0000:0a:04.0'), 'pciback');
    assert.equal(fx.kernel.driverOf('0000:0a:04.1'), 'e1000', 'the device that is not hidden goes back to e1000');
    assert.deepEqual(fx.kernel.slots(), ['0000:09:00.0', '0000:0c:00.0', '0000:0a:04.0']);
  });

  void it('reloadDriver loads the driver again even when moving a hidden device failed', async () => {
    const { host, runner, fx } = rhel5Host();
    // A modprobe -r that reports success but leaves the devices on e1000: pciback's bind is refused (EBUSY).
    runner.on(['/sbin/modprobe', '-r', 'e1000'], {});
    await assert.rejects(host.reloadDriver('e1000'), ptcError(ErrorCode.COMMAND_FAILED, '/sys/bus/pci/drivers/pciback/bind', 'EBUSY'));
    assert.deepEqual(runner.calls, [
      ['/sbin/modprobe', '-r', 'e1000'],
      ['/sbin/modprobe', 'e1000'],
    ]);
    assert.equal(fx.kernel.driverOf('0000:0a:04.1'), 'e1000');
  });

  void it('reloadDriver: a failing modprobe -r throws COMMAND_FAILED with the command and stderr’s last line', async () => {
    const { host, runner, fx } = rhel5Host();
    runner.on(['/sbin/modprobe', '-r', 'e1000'], { code: 1, stderr: 'ERROR: Removing e1000\nFATAL: Module e1000 is in use.\n' });
    await assert.rejects(host.reloadDriver('e1000'), ptcError(ErrorCode.COMMAND_FAILED, '/sbin/modprobe -r e1000', 'FATAL: Module e1000 is in use.'));
    assert.deepEqual(runner.calls, [['/sbin/modprobe', '-r', 'e1000']]);
    assert.deepEqual(fx.kernel.writes, []);
  });

  void it('hotplug and hotunplug run xm pci-attach / pci-detach; a failure is COMMAND_FAILED', async () => {
    const { host, runner } = rhel5Host();
    runner.on((a) => a[0] === 'xm' && (a[1] === 'pci-attach' || a[1] === 'pci-detach'), {});
    await host.hotplug('vm-hvm', '0000:0a:04.0');
    await host.hotunplug('vm-hvm', '0000:0a:04.0');
    assert.deepEqual(runner.calls, [
      ['xm', 'pci-attach', 'vm-hvm', '0000:0a:04.0'],
      ['xm', 'pci-detach', 'vm-hvm', '0000:0a:04.0'],
    ]);
    runner.on(['xm', 'pci-attach', 'vm-pv', '0000:0a:04.0'], { code: 1, stderr: 'Error: Timed out waiting for device model action\n' });
    await assert.rejects(host.hotplug('vm-pv', '0000:0a:04.0'), ptcError(ErrorCode.COMMAND_FAILED, 'xm pci-attach vm-pv 0000:0a:04.0', 'Timed out waiting for device model action'));
  });
});

// ---------------------------------------------------------------------------------------------
// (2) Debian 12, xl, /etc/modprobe.d, xen-pciback
// ---------------------------------------------------------------------------------------------

void describe('linux backend on Debian 12 with xl', () => {
  void it('writes /etc/modprobe.d with the xen-pciback dialect: kmod ignores /etc/modprobe.conf', async () => {
    const { host } = debianHost();
    assert.deepEqual(host.modprobe(), { file: '/etc/modprobe.d/ptctl-pciback.conf', dialect: KMOD_DIALECT });
    const scan = await host.scan();
    assert.deepEqual(scan.os, { name: 'debian', version: '12' });
    assert.equal(scan.iommu, true, 'pv_directio');
    assert.deepEqual(scan.capabilities, ['dynamic-bind', 'reload', 'reboot', 'hotplug'], 'xen-pciback is in modules.dep');
  });

  void it('scans: default-route NIC and root-disk controller in use, idle and up-without-address NICs idle, pci.ids names', async () => {
    const { host } = debianHost();
    const { devices } = await host.scan();
    const eth0 = byBdf(devices, '0000:00:04.0');
    assert.deepEqual(eth0, {
      bdf: '0000:00:04.0',
      vendor: '8086',
      device: '100e',
      class: '0200',
      description: 'Intel Corporation 82540EM Gigabit Ethernet Controller (eth0)',
      driver: 'e1000',
      hostDriver: 'e1000',
      iommuGroup: null,
      netdev: 'eth0',
      inUse: null,
      inPcibackSlots: false,
      assignable: false,
      resettable: null,
    });
    // virtio keeps the interface under <bdf>/virtio0/net: found through /sys/class/net/eth1/device.
    assert.equal(byBdf(devices, '0000:00:05.0').inUse, "eth1 carries the host's default route");
    assert.equal(byBdf(devices, '0000:00:05.0').netdev, 'eth1');
    assert.equal(byBdf(devices, '0000:00:06.0').inUse, null, 'up with only a link-local address is idle');
    assert.equal(byBdf(devices, '0000:00:1f.2').inUse, 'it controls sda, mounted on /');
    assert.equal(byBdf(devices, '0000:00:1f.2').class, '0106');
    const vga = byBdf(devices, '0000:00:01.0');
    assert.deepEqual([vga.driver, vga.hostDriver, vga.inUse, vga.description], [null, null, null, 'VGA compatible controller 1234:1111']);
  });

  void it('finds the disk behind /dev/root by the mounted filesystem’s device number', async () => {
    const { host, fx } = debianHost();
    const dev = BigInt(statSync(fx.root).dev);
    const number = `${((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)}:${(dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)}`;
    fx.write(`${fx.blockPath('sda1')}/dev`, `${number}\n`);
    fx.write('/proc/mounts', 'rootfs / rootfs rw 0 0\n/dev/root / ext3 rw 0 0\n');
    assert.equal(byBdf((await host.scan()).devices, '0000:00:1f.2').inUse, 'it controls sda, mounted on /');
  });

  void it('marks the uplink interfaces given to the backend as in use', async () => {
    const { host } = debianHost({ uplinkInterfaces: ['eth0'] });
    assert.equal(byBdf((await host.scan()).devices, '0000:00:04.0').inUse, "eth0 carries the agent's own uplink (NATS)");
  });

  void it('lists guests from xl list and xl pci-list, plus stopped guests defined in /etc/xen', async () => {
    const { host, runner } = debianHost();
    runner.on(['xl', 'pci-list', 'pvguest'], { stdout: XL_PCI_LIST });
    const { guests } = await host.scan();
    assert.deepEqual(guests, [
      { name: 'pvguest', virt: 'pv', os: { name: 'debian', version: '12' }, state: 'running', acpiphp: true, liveDevices: ['0000:00:04.0'] },
      { name: 'hvmguest', virt: 'hvm', os: { name: 'rhel', version: '6.2' }, state: 'paused', acpiphp: true, liveDevices: [] },
      { name: 'vm-cold', virt: 'hvm', os: { name: 'unknown', version: '0' }, state: 'stopped', acpiphp: true, liveDevices: [] },
    ]);
    assert.deepEqual(
      runner.calls.filter((c) => c[0] === 'xl'),
      [['xl', 'list'], ['xl', 'pci-list', 'pvguest'], ['xl', 'pci-list', 'hvmguest'], ['xl', 'pci-assignable-list'], ['xl', 'info']],
    );
  });

  void it('fails the scan when a running guest’s device list cannot be read, rather than report it empty', async () => {
    const { host, runner } = debianHost();
    runner.on(['xl', 'pci-list', 'hvmguest'], { code: 1, stderr: 'libxl: error: domain 2 not found\n' });
    await assert.rejects(host.scan(), ptcError(ErrorCode.COMMAND_FAILED, 'xl pci-list hvmguest', 'domain 2 not found'));
  });

  void it('bindPciback loads xen-pciback when absent, then unbind, new_slot, bind: exact argv and bytes', async () => {
    const { host, runner, fx } = debianHost();
    assert.equal(fx.kernel.pcibackLoaded(), false);
    await host.bindStub('0000:00:04.0');
    assert.deepEqual(runner.calls, [['/sbin/modprobe', 'xen-pciback']]);
    assert.deepEqual(fx.kernel.writes, [
      w('/sys/bus/pci/devices/0000:00:04.0/driver/unbind', '0000:00:04.0'),
      w('/sys/bus/pci/drivers/pciback/new_slot', '0000:00:04.0'),
      w('/sys/bus/pci/drivers/pciback/bind', '0000:00:04.0'),
    ]);
    assert.equal(fx.read('/sys/bus/pci/drivers/e1000/unbind'), '0000:00:04.0\n');
    assert.equal(fx.read('/sys/bus/pci/drivers/pciback/new_slot'), '0000:00:04.0\n');
    assert.equal(fx.read('/sys/bus/pci/drivers/pciback/bind'), '0000:00:04.0\n');
    assert.equal(fx.kernel.driverOf('0000:00:04.0'), 'pciback');
    const scanned = byBdf((await host.scan()).devices, '0000:00:04.0');
    assert.deepEqual([scanned.driver, scanned.hostDriver, scanned.netdev, scanned.inPcibackSlots, scanned.assignable], ['pciback', null, null, true, true]);
  });

  void it('bindHostDriver with a recorded driver: pciback/unbind, remove_slot, <driver>/bind', async () => {
    const { host, runner, fx } = debianHost();
    await host.bindStub('0000:00:04.0');
    fx.kernel.writes.length = 0;
    runner.clear();
    await host.bindHostDriver('0000:00:04.0', 'e1000');
    assert.deepEqual(runner.calls, []);
    assert.deepEqual(fx.kernel.writes, [
      w('/sys/bus/pci/drivers/pciback/unbind', '0000:00:04.0'),
      w('/sys/bus/pci/drivers/pciback/remove_slot', '0000:00:04.0'),
      w('/sys/bus/pci/drivers/e1000/bind', '0000:00:04.0'),
    ]);
    assert.equal(fx.kernel.driverOf('0000:00:04.0'), 'e1000');
    assert.deepEqual(fx.kernel.slots(), []);
    assert.equal(byBdf((await host.scan()).devices, '0000:00:04.0').netdev, 'eth0', 'the interface is back');
    // Idempotent: already on e1000.
    await host.bindHostDriver('0000:00:04.0', 'e1000');
    assert.equal(fx.kernel.writes.length, 3);
  });

  void it('bindHostDriver without a driver asks the kernel to probe (drivers_probe)', async () => {
    const { host, fx } = debianHost();
    await host.bindStub('0000:00:04.0');
    fx.kernel.writes.length = 0;
    await host.bindHostDriver('0000:00:04.0', null);
    assert.deepEqual(fx.kernel.writes, [
      w('/sys/bus/pci/drivers/pciback/unbind', '0000:00:04.0'),
      w('/sys/bus/pci/drivers/pciback/remove_slot', '0000:00:04.0'),
      w('/sys/bus/pci/drivers_probe', '0000:00:04.0'),
    ]);
    assert.equal(fx.read('/sys/bus/pci/drivers_probe'), '0000:00:04.0\n');
    assert.equal(fx.kernel.driverOf('0000:00:04.0'), 'e1000');
  });

  void it('reloadDriver with pciback not loaded loads it between modprobe -r and modprobe (busybox ignores install lines)', async () => {
    const { host, runner, fx } = debianHost();
    fx.write(MODPROBE_D, 'options xen-pciback hide=(0000:00:04.0)\n');
    await host.reloadDriver('e1000');
    assert.deepEqual(runner.calls, [
      ['/sbin/modprobe', '-r', 'e1000'],
      ['/sbin/modprobe', 'xen-pciback'],
      ['/sbin/modprobe', 'e1000'],
    ]);
    assert.deepEqual(fx.kernel.writes, []);
    assert.equal(fx.kernel.driverOf('0000:00:04.0'), 'pciback');
  });

  void it('reloadDriver of a driver with no hidden device is modprobe -r and modprobe only', async () => {
    const { host, runner, fx } = debianHost();
    await host.reloadDriver('e1000');
    assert.deepEqual(runner.calls, [
      ['/sbin/modprobe', '-r', 'e1000'],
      ['/sbin/modprobe', 'e1000'],
    ]);
    assert.equal(fx.kernel.driverOf('0000:00:04.0'), 'e1000');
  });

  void it('hotplug and hotunplug run xl pci-attach / pci-detach', async () => {
    const { host, runner } = debianHost();
    runner.on((a) => a[0] === 'xl' && (a[1] === 'pci-attach' || a[1] === 'pci-detach'), {});
    await host.hotplug('pvguest', '0000:00:04.0');
    await host.hotunplug('pvguest', '0000:00:04.0');
    assert.deepEqual(runner.calls, [
      ['xl', 'pci-attach', 'pvguest', '0000:00:04.0'],
      ['xl', 'pci-detach', 'pvguest', '0000:00:04.0'],
    ]);
  });

  void it('reboot runs /sbin/reboot and returns; the boot id comes from procfs', async () => {
    const { host, runner } = debianHost();
    runner.on(['/sbin/reboot'], {});
    assert.equal(await host.bootId(), '2d6c6a0e-6f5b-4c55-9a57-0d6ab3b1f7a1');
    assert.equal(host.responsive(), true);
    host.onBoot(() => assert.fail('a real host never calls onBoot listeners'));
    await host.reboot();
    assert.deepEqual(runner.calls, [['/sbin/reboot']]);
    assert.equal(host.responsive(), false, 'the host is going down');
    await host.close();
  });

  void it('a failing /sbin/reboot is COMMAND_FAILED and the host stays responsive', async () => {
    const { host, runner } = debianHost();
    runner.on(['/sbin/reboot'], { code: 1, stderr: 'Failed to connect to bus\n' });
    await assert.rejects(host.reboot(), ptcError(ErrorCode.COMMAND_FAILED, '/sbin/reboot', 'Failed to connect to bus'));
    assert.equal(host.responsive(), true);
  });
});

// ---------------------------------------------------------------------------------------------
// (3) Xen without IOMMU; (4) KVM
// ---------------------------------------------------------------------------------------------

void describe('linux backend on a Xen host without IOMMU', () => {
  void it('reports iommu false when virt_caps has no directio, dynamic-bind from a loaded pciback', async () => {
    const { host } = noIommuHost();
    assert.equal(host.toolstack.name, 'xl', 'auto picks xl off RHEL 5 when both are installed');
    const scan = await host.scan();
    assert.equal(scan.iommu, false);
    assert.deepEqual(scan.capabilities, ['dynamic-bind', 'reload', 'reboot', 'hotplug']);
    assert.deepEqual(scan.guests, []);
    assert.equal(byBdf(scan.devices, '0000:02:00.0').inUse, "eth0 carries the host's default route");
    assert.equal(byBdf(scan.devices, '0000:03:00.0').inUse, null);
  });

  void it('writes new_slot for an address not in slots, and skips remove_slot where pciback has none', async () => {
    const { host, runner, fx } = noIommuHost();
    await host.bindStub('0000:03:00.0');
    await host.bindHostDriver('0000:03:00.0', 'igb');
    assert.deepEqual(runner.calls, []);
    assert.deepEqual(fx.kernel.writes, [
      w('/sys/bus/pci/devices/0000:03:00.0/driver/unbind', '0000:03:00.0'),
      w('/sys/bus/pci/drivers/pciback/new_slot', '0000:03:00.0'),
      w('/sys/bus/pci/drivers/pciback/bind', '0000:03:00.0'),
      w('/sys/bus/pci/drivers/pciback/unbind', '0000:03:00.0'),
      w('/sys/bus/pci/drivers/igb/bind', '0000:03:00.0'),
    ]);
    assert.equal(fx.kernel.driverOf('0000:03:00.0'), 'igb');
  });

  void it('counts every up interface as in use when ip cannot list addresses', async () => {
    const { host, runner, fx } = noIommuHost();
    fx.write('/sys/class/net/eth1/operstate', 'up\n');
    assert.equal(byBdf((await host.scan()).devices, '0000:03:00.0').inUse, null, 'up without an address is idle');
    runner.on(['ip', '-o', 'addr', 'show'], { code: 127, stderr: 'ip: ENOENT' });
    assert.equal(byBdf((await host.scan()).devices, '0000:03:00.0').inUse, 'eth1 is up and its addresses could not be read (ip -o addr show failed: ip: ENOENT)');
    fx.write('/sys/class/net/eth1/operstate', 'down\n');
    assert.equal(byBdf((await host.scan()).devices, '0000:03:00.0').inUse, null, 'a down interface is still idle');
  });

  void it('needs no unbind for a driverless device, and surfaces a kernel that refuses a write as COMMAND_FAILED', async () => {
    const { host, fx } = noIommuHost();
    fx.kernel.setDriver('0000:03:00.0', null);
    fx.write('/sys/bus/pci/drivers/pciback/slots', '0000:03:00.0\n');
    await host.bindStub('0000:03:00.0');
    assert.deepEqual(fx.kernel.writes, [w('/sys/bus/pci/drivers/pciback/bind', '0000:03:00.0')]);
    // e1000e is registered but does not match an igb device: the kernel answers ENODEV.
    await assert.rejects(host.bindHostDriver('0000:03:00.0', 'e1000e'), ptcError(ErrorCode.COMMAND_FAILED, 'writing 0000:03:00.0 to /sys/bus/pci/drivers/e1000e/bind failed', 'ENODEV'));
    await assert.rejects(host.bindHostDriver('0000:02:00.0', 'igb'), ptcError(ErrorCode.COMMAND_FAILED, 'bound to e1000e, not pciback'));
  });
});

void describe('linux backend on a KVM host', () => {
  void it('reads IOMMU groups, NVMe root and swap, and runs no Xen toolstack command', async () => {
    const { host, runner } = kvmHost();
    const scan = await host.scan();
    assert.equal(scan.hypervisor, 'kvm');
    assert.equal(scan.iommu, true);
    assert.deepEqual(scan.capabilities, []);
    assert.deepEqual(scan.guests, []);
    assert.deepEqual(
      scan.devices.map((d) => [d.bdf, d.iommuGroup]),
      [
        ['0000:00:00.0', 0],
        ['0000:01:00.0', 12],
        ['0000:02:00.0', 13],
      ],
    );
    assert.equal(byBdf(scan.devices, '0000:02:00.0').inUse, 'it controls nvme0n1, mounted on / and used as swap');
    assert.equal(byBdf(scan.devices, '0000:01:00.0').inUse, null);
    assert.deepEqual(runner.calls, [['ip', '-o', 'addr', 'show']]);
    await assert.rejects(host.hotplug('vm1', '0000:01:00.0'), ptcError(ErrorCode.COMMAND_FAILED, 'virsh is not installed'));
  });
});

// ---------------------------------------------------------------------------------------------
// The agent's command handlers on fixture host (2)
// ---------------------------------------------------------------------------------------------

async function handlerContext(host: LinuxHost): Promise<HandlerContext> {
  const stateDir = mkdtempSync(join(tmpdir(), 'ptctl-linux-agent-'));
  tempDirs.push(stateDir);
  return fixtureHandlerContext(host, stateDir);
}

const NIC = '0000:00:04.0';

void describe('agent command handlers on the linux backend (Debian 12 fixture)', () => {
  void it('hide writes /etc/modprobe.d/ptctl-pciback.conf with the xen-pciback hide= line and the install line', async () => {
    const { host, fx, runner } = debianHost();
    const ctx = await handlerContext(host);
    const result = await commandHandlers.hide(ctx, { bdf: NIC });
    assert.deepEqual(result, { bdf: NIC, changed: true, file: MODPROBE_D, driver: 'e1000' });
    assert.equal(
      fx.read(MODPROBE_D),
      [
        '# BEGIN ptctl managed block: ptctl rewrites these lines, edit them with ptctl',
        'install e1000 /sbin/modprobe xen-pciback; /sbin/modprobe --first-time --ignore-install e1000',
        'options xen-pciback hide=(0000:00:04.0)',
        '# END ptctl managed block',
        '',
      ].join('\n'),
    );
    assert.equal(fx.read('/etc/modprobe.conf'), null, 'nothing goes to the file kmod ignores');
    assert.deepEqual(runner.callsExcept(isScanCommand), [], 'hiding is configuration only');
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
  });

  void it('bind (dynamic) with a kernel that obeys: ok, verified by state; verify and unbind give it back', async () => {
    const { host, fx, runner } = debianHost();
    const ctx = await handlerContext(host);
    await commandHandlers.hide(ctx, { bdf: NIC });
    const bound = await commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' });
    assert.deepEqual(bound, { bdf: NIC, changed: true, driver: 'pciback', originalDriver: 'e1000' });
    assert.deepEqual(runner.callsExcept(isScanCommand), [['/sbin/modprobe', 'xen-pciback']]);
    // pciback loaded with hide=(…) already lists the address, so no new_slot (rule 13).
    assert.deepEqual(fx.kernel.writes, [w(`/sys/bus/pci/devices/${NIC}/driver/unbind`, NIC), w('/sys/bus/pci/drivers/pciback/bind', NIC)]);
    assert.deepEqual(await commandHandlers.verify(ctx, { bdf: NIC, expect: 'pciback' }), { bdf: NIC, driver: 'pciback', inPcibackSlots: true, assignable: true });
    assert.equal(ctx.records.originalDriver(NIC), 'e1000');

    const back = await commandHandlers.unbind(ctx, { bdf: NIC, driver: null });
    assert.deepEqual(back, { bdf: NIC, changed: true, driver: 'e1000' });
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
    assert.equal(ctx.records.originalDriver(NIC), undefined);
  });

  void it('bind (dynamic) with a kernel that ignores the writes: VERIFY_FAILED, the device is still on its host driver', async () => {
    const { host, fx } = debianHost();
    const ctx = await handlerContext(host);
    await commandHandlers.hide(ctx, { bdf: NIC });
    fx.kernel.mode = 'ignore';
    await assert.rejects(commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' }), ptcError(ErrorCode.VERIFY_FAILED, 'reported success', NIC, 'e1000'));
    assert.equal(fx.kernel.writes.length, 2, 'the writes were made');
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
  });

  void it('hide of the default-route NIC is DEVICE_IN_USE and writes no file', async () => {
    const { host, fx, runner } = debianHost();
    const ctx = await handlerContext(host);
    await assert.rejects(commandHandlers.hide(ctx, { bdf: '0000:00:05.0' }), ptcError(ErrorCode.DEVICE_IN_USE, '0000:00:05.0', 'default route'));
    assert.equal(fx.read(MODPROBE_D), null);
    assert.equal(fx.exists('/etc/modprobe.d'), false);
    assert.deepEqual(runner.callsExcept(isScanCommand), []);
    assert.deepEqual(fx.kernel.writes, []);
  });
});

void describe('linux backend: guests that change under a scan', () => {
  void it('reports a guest that powered off between `xl list` and `xl pci-list` as stopped, not as a failed scan', async () => {
    const { runner, host } = debianHost();
    const gone = 'Name   ID   Mem VCPUs\tState\tTime(s)\nDomain-0   0  1024     2     r-----     5.5\nhvmguest   2   512     1     --p---       0.0\n';
    // First listing still shows pvguest; its pci-list fails because it is gone; the second listing agrees.
    runner.on(['xl', 'list'], { stdout: gone });
    runner.on(['xl', 'list'], { stdout: XL_LIST }, 1);
    runner.on(['xl', 'pci-list', 'pvguest'], { code: 1, stderr: 'pvguest is an invalid domain identifier' });
    const scan = await host.scan();
    const pv = scan.guests.find((g) => g.name === 'pvguest');
    assert.equal(pv?.state, 'stopped');
    assert.deepEqual(pv?.liveDevices, []);
  });

  void it('still fails the scan when a running guest\'s devices cannot be listed', async () => {
    const { runner, host } = debianHost();
    runner.on(['xl', 'pci-list', 'pvguest'], { code: 1, stderr: 'libxl: cannot talk to xenstore' });
    await assert.rejects(host.scan(), /pci-list pvguest/);
  });
});
