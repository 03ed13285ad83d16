import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode } from '../../schemas/errors.js';
import { VFIO_RULES_FILE } from '../../agent/vfio-rules.js';
import { type TestStack, runCli, snapshotFiles, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

const PLAN = fileURLToPath(new URL('../../../examples/mixed-xen-kvm.yaml', import.meta.url));

/**
 * Issue 16 on a real `ptctl dev` stack: one Xen host (rhel5-xen) and one KVM host (rhel9-kvm), both the
 * linux backend over a simulated kernel; the KVM host's toolstack is a simulated libvirt (virsh).
 */
void describe('a mixed Xen + KVM fleet through the CLI', () => {
  let t: TestStack;
  const cliEnv: NodeJS.ProcessEnv = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: 2, fleet: { hosts: { 'sim-1': {}, 'sim-2': { profile: 'rhel9-kvm' } } } });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('refuses the NIC under br0 (vm-kvm\'s vnet0) with DEVICE_IN_USE, and changes nothing', async () => {
    const beforeFiles = await snapshotFiles(t.hostRoot('sim-2'));
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-2', '--device', '0000:04:00.0', '--guest', 'vm-kvm', '--wait'], cliEnv);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr.trim(), new RegExp(`^ptctl: ${ErrorCode.DEVICE_IN_USE}: 0000:04:00.0 is in use by host sim-2: eno3 is a port of bridge br0, which carries guests' interfaces vnet0 \\(vm-kvm\\)`));
    const afterFiles = await snapshotFiles(t.hostRoot('sim-2'));
    for (const [path, bytes] of beforeFiles) if (!path.startsWith('var/lib/ptctl/')) assert.equal(afterFiles.get(path), bytes, `${path} changed`);
  });

  void it('plans and rolls out one plan over both: pciback on the Xen host, vfio-pci and libvirt hostdevs on the KVM host', async () => {
    const planned = await runCli(['plan', PLAN, '--dir', t.dir, '--json'], cliEnv);
    assert.equal(planned.code, 0, planned.stderr);
    const resolution = JSON.parse(planned.stdout) as { hosts: { hostId: string; assignments: { status: string; bdf: string; companions?: string[] }[] }[] };
    const byHost = Object.fromEntries(resolution.hosts.map((h) => [h.hostId, h.assignments]));
    assert.deepEqual(byHost['sim-1']?.map((a) => [a.status, a.bdf]), [['change', '0000:09:00.0']]);
    assert.deepEqual(byHost['sim-2']?.map((a) => [a.status, a.bdf, a.companions]), [
      ['change', '0000:03:00.0', []],
      ['change', '0000:01:00.0', ['0000:01:00.1']],
    ]);

    const applied = await runCli(['apply', PLAN, '--dir', t.dir, '--wait', '--json'], cliEnv);
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);

    const kvm = (await t.agents.call('sim-2', 'inspect', {}, { opId: 'it-kvm-inspect', timeoutMs: 10_000 })).result;
    const vmKvm = kvm.guests.find((g) => g.name === 'vm-kvm');
    assert.deepEqual(vmKvm?.liveDevices, ['0000:01:00.0', '0000:03:00.0']);
    assert.deepEqual(vmKvm?.configDevices, ['0000:01:00.0', '0000:03:00.0']);
    for (const bdf of ['0000:01:00.0', '0000:01:00.1', '0000:03:00.0']) assert.equal(kvm.devices.find((d) => d.bdf === bdf)?.driver, 'vfio-pci', bdf);
    assert.equal(kvm.devices.find((d) => d.bdf === '0000:00:01.0')?.driver, 'pcieport', 'the root port in the GPU\'s group stays on its driver');
    const rules = await readFile(join(t.hostRoot('sim-2'), VFIO_RULES_FILE), 'utf8');
    assert.deepEqual([...rules.matchAll(/KERNEL=="([^"]+)"/g)].map((m) => m[1]), ['0000:01:00.0', '0000:01:00.1', '0000:03:00.0']);
    const domain = await readFile(join(t.hostRoot('sim-2'), 'etc/libvirt/qemu/vm-kvm.xml'), 'utf8');
    assert.equal([...domain.matchAll(/<hostdev mode='subsystem' type='pci' managed='no'>/g)].length, 2, domain);

    const xen = (await t.agents.call('sim-1', 'inspect', {}, { opId: 'it-xen-inspect', timeoutMs: 10_000 })).result;
    assert.equal(xen.devices.find((d) => d.bdf === '0000:09:00.0')?.driver, 'pciback');
    assert.deepEqual(xen.guests.find((g) => g.name === 'vm-hvm')?.liveDevices, ['0000:09:00.0']);
  });

  void it('attaches cold to the RHEL 5 KVM guest without acpiphp and says it must reboot', async () => {
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-2', '--device', '0000:05:00.0', '--guest', 'vm-kvm5', '--wait', '--json'], cliEnv);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /"guestRebootNeeded":\s*true/);
    const inv = (await t.agents.call('sim-2', 'inspect', {}, { opId: 'it-kvm5-inspect', timeoutMs: 10_000 })).result;
    const vm = inv.guests.find((g) => g.name === 'vm-kvm5');
    assert.deepEqual([vm?.liveDevices, vm?.configDevices], [[], ['0000:05:00.0']]);
  });
});
