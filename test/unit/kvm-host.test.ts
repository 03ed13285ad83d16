import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { SimHost, type SimFaultsInput } from '../../agent/sim/sim-host.js';
import { SIM_PROFILES } from '../../agent/sim/profiles.js';
import { VFIO_RULES_FILE } from '../../agent/vfio-rules.js';
import { checkGuestAccepts, preflight } from '../../policy/passthrough-policy.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import type { HostInventory } from '../../schemas/inventory.js';
import { fixtureHandlerContext } from '../helpers/handler-context.js';

// rhel9-kvm (agent/sim/profiles.ts): the real linux backend over a simulated KVM kernel and libvirt.
const UPLINK = '0000:02:00.0';
const ROOT_PORT = '0000:00:01.0';
const GPU = '0000:01:00.0';
const GPU_AUDIO = '0000:01:00.1';
const IGB = '0000:03:00.0';
const BRIDGED = '0000:04:00.0';
const E1000E = '0000:05:00.0';

const dirs: string[] = [];
const hosts: SimHost[] = [];
after(async () => {
  for (const h of hosts) await h.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Kvm {
  host: SimHost;
  ctx: HandlerContext;
  hostDir: string;
  inspect(): Promise<HostInventory>;
  file(path: string): string | null;
  driverOf(bdf: string): string | null;
  override(bdf: string): string;
}

async function kvmHost(faults: SimFaultsInput = {}): Promise<Kvm> {
  const dir = mkdtempSync(join(tmpdir(), 'ptctl-kvm-'));
  dirs.push(dir);
  const hostDir = join(dir, 'hosts', 'kvm1');
  const host = await SimHost.open({ hostDir, hostId: 'kvm1', profile: 'rhel9-kvm', faults });
  hosts.push(host);
  const ctx = await fixtureHandlerContext(host, join(dir, 'state'), { hostId: 'kvm1', hotplugCap: { max: 256, windowMs: 600_000 } });
  const file = (path: string): string | null => (existsSync(join(hostDir, path)) ? readFileSync(join(hostDir, path), 'utf8') : null);
  return {
    host,
    ctx,
    hostDir,
    inspect: () => commandHandlers.inspect(ctx, {}),
    file,
    driverOf: (bdf) => host.kernel.tree.kernel.driverOf(bdf),
    override: (bdf) => (file(`${host.kernel.tree.deviceDir(bdf)}/driver_override`) ?? '').trim(),
  };
}

/** The simulated boot timer does not keep the process alive (an agent's would): hold it open until the boot. */
async function rebootAndWait(k: Kvm): Promise<void> {
  const keepAlive = setInterval(() => undefined, 20);
  try {
    const booted = new Promise<void>((resolve) => k.host.onBoot(resolve));
    await commandHandlers.reboot(k.ctx, {});
    await booted;
  } finally {
    clearInterval(keepAlive);
  }
}

async function rejects(work: Promise<unknown>, code: ErrorCode, text?: RegExp): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(isPtcError(err), `expected a PtcError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (text) assert.match(err.message, text);
    return true;
  });
}

void describe('KVM host (rhel9-kvm): vfio-pci and libvirt under the linux backend', () => {
  void it('inspects: kvm with an IOMMU, what the host uses, libvirt guests and their acpiphp', async () => {
    const k = await kvmHost();
    const inv = await k.inspect();
    assert.equal(inv.hypervisor, 'kvm');
    assert.equal(inv.iommu, true);
    assert.deepEqual(inv.capabilities, ['dynamic-bind', 'reboot', 'hotplug']);
    const used = Object.fromEntries(inv.devices.filter((d) => d.inUse !== null).map((d) => [d.bdf, d.inUse]));
    assert.deepEqual(Object.keys(used).sort(), Object.keys(SIM_PROFILES['rhel9-kvm']?.inUse ?? {}).sort());
    assert.match(used[BRIDGED] ?? '', /br0.*vnet0 \(vm-kvm\)/);
    assert.match(used[UPLINK] ?? '', /default route/);
    const byName = Object.fromEntries(inv.guests.map((g) => [g.name, g]));
    assert.deepEqual(byName['vm-kvm'] && { virt: byName['vm-kvm'].virt, os: byName['vm-kvm'].os, state: byName['vm-kvm'].state, acpiphp: byName['vm-kvm'].acpiphp }, { virt: 'kvm', os: { name: 'rhel', version: '9.2' }, state: 'running', acpiphp: true });
    assert.equal(byName['vm-kvm5']?.acpiphp, false, 'the guest agent says acpiphp is not loaded in the RHEL 5 guest');
    assert.equal(inv.devices.find((d) => d.bdf === GPU)?.iommuGroup, 1);
  });

  void it('hide, bind, verify, hot attach, refuse save, detach, release: vfio-pci by driver_override, checked by state', async () => {
    const k = await kvmHost();
    const hidden = await commandHandlers.hide(k.ctx, { bdf: IGB });
    assert.deepEqual(hidden, { bdf: IGB, changed: true, file: VFIO_RULES_FILE, driver: null });
    assert.match(k.file(VFIO_RULES_FILE) ?? '', /KERNEL=="0000:03:00.0", ATTR\{driver_override\}="vfio-pci"/);
    assert.equal((await k.inspect()).devices.find((d) => d.bdf === IGB)?.hidden, true);

    const bound = await commandHandlers.bind(k.ctx, { bdf: IGB, strategy: 'dynamic' });
    assert.deepEqual(bound, { bdf: IGB, changed: true, driver: 'vfio-pci', originalDriver: 'igb' });
    assert.equal(k.override(IGB), 'vfio-pci');
    assert.ok(existsSync(join(k.hostDir, 'dev/vfio/12')), '/dev/vfio/<group> exists once the device is on vfio-pci');
    assert.deepEqual(await commandHandlers.verify(k.ctx, { bdf: IGB, expect: 'pciback' }), { bdf: IGB, driver: 'vfio-pci', inPcibackSlots: true, assignable: true });

    const attached = await commandHandlers.attach(k.ctx, { bdf: IGB, guest: 'vm-kvm', mode: 'both', allowInsecurePV: false });
    assert.equal(attached.hot && attached.cold && attached.hotplugged, true);
    assert.match(k.file('/etc/libvirt/qemu/vm-kvm.xml') ?? '', /<hostdev mode='subsystem' type='pci' managed='no'>[\s\S]*bus='0x03' slot='0x00' function='0x0'/);
    await rejects(commandHandlers.save(k.ctx, { guest: 'vm-kvm' }), ErrorCode.GUEST_PINNED);
    await rejects(commandHandlers.unbind(k.ctx, { bdf: IGB, driver: null }), ErrorCode.DEVICE_ASSIGNED);

    const detached = await commandHandlers.detach(k.ctx, { bdf: IGB, guest: 'vm-kvm', mode: 'both' });
    assert.equal(detached.hot || detached.cold, false);
    assert.doesNotMatch(k.file('/etc/libvirt/qemu/vm-kvm.xml') ?? '', /hostdev/);
    assert.deepEqual(await commandHandlers.unbind(k.ctx, { bdf: IGB, driver: null }), { bdf: IGB, changed: true, driver: 'igb' });
    assert.equal(k.override(IGB), '(null)', 'the override is cleared on release');
    assert.equal(existsSync(join(k.hostDir, 'dev/vfio/12')), false);
    await commandHandlers.unhide(k.ctx, { bdf: IGB });
    assert.equal(k.file(VFIO_RULES_FILE), '');
    await commandHandlers.verify(k.ctx, { bdf: IGB, expect: 'host' });
  });

  void it('a bridge or root port in the IOMMU group stays on pcieport; the endpoints are companions and the group must be viable', async () => {
    const k = await kvmHost();
    const inv = await k.inspect();
    const plan = preflight(inv, { bdf: GPU, guest: 'vm-kvm', strategy: 'auto', allowInsecurePV: false });
    assert.ok(plan.ok, plan.ok ? '' : plan.message);
    assert.deepEqual(plan.plan.devicesToHide, [GPU, GPU_AUDIO], 'the root port 00:01.0 is not a companion');
    // The GPU alone on vfio-pci: its group still has the audio function on snd_hda_intel, so not viable.
    await commandHandlers.hide(k.ctx, { bdf: GPU });
    await commandHandlers.bind(k.ctx, { bdf: GPU, strategy: 'dynamic' });
    await rejects(commandHandlers.verify(k.ctx, { bdf: GPU, expect: 'pciback' }), ErrorCode.VERIFY_FAILED, /group viable with its \/dev\/vfio node: false/);
    await rejects(commandHandlers.attach(k.ctx, { bdf: GPU, guest: 'vm-kvm', mode: 'hot', allowInsecurePV: false }), ErrorCode.ATTACH_FAILED, /not viable/);
    await commandHandlers.hide(k.ctx, { bdf: GPU_AUDIO });
    await commandHandlers.bind(k.ctx, { bdf: GPU_AUDIO, strategy: 'dynamic' });
    await commandHandlers.verify(k.ctx, { bdf: GPU, expect: 'pciback' });
    assert.equal(k.driverOf(ROOT_PORT), 'pcieport');
    const attached = await commandHandlers.attach(k.ctx, { bdf: GPU, guest: 'vm-kvm', mode: 'hot', allowInsecurePV: false });
    assert.equal(attached.hot, true);
  });

  void it('catches a new_id bind and still gives the device back to its driver', async () => {
    const k = await kvmHost();
    // What a naive tool does: unbind from igb, teach vfio-pci the id. Both igb NICs match it now.
    await commandHandlers.hide(k.ctx, { bdf: IGB });
    const tree = k.host.kernel.tree;
    tree.kernel.loadVfio();
    tree.kernel.observer({ path: `/sys/bus/pci/devices/${IGB}/driver/unbind`, data: `${IGB}\n` });
    tree.kernel.observer({ path: '/sys/bus/pci/drivers/vfio-pci/new_id', data: '8086 1533\n' });
    assert.equal(k.driverOf(IGB), 'vfio-pci');
    await rejects(commandHandlers.verify(k.ctx, { bdf: IGB, expect: 'pciback' }), ErrorCode.VERIFY_FAILED, /without an override, as new_id/);
    // Giving it back names igb for the reprobe: vfio-pci's dynamic id cannot take it again.
    const back = await commandHandlers.unbind(k.ctx, { bdf: IGB, driver: 'igb' });
    assert.equal(back.driver, 'igb');
    assert.equal(k.override(IGB), '(null)');
  });

  void it('a failed bind is rolled back to the original driver, override included', async () => {
    const k = await kvmHost({ refuseWrites: [{ path: '/sys/bus/pci/drivers_probe', code: 'EIO' }] });
    await commandHandlers.hide(k.ctx, { bdf: IGB });
    await rejects(commandHandlers.bind(k.ctx, { bdf: IGB, strategy: 'dynamic' }), ErrorCode.COMMAND_FAILED, /rolled back: 0000:03:00.0 is on igb again/);
    assert.equal(k.driverOf(IGB), 'igb');
    assert.equal(k.override(IGB), '(null)');
  });

  void it('refuses reload on KVM, and hotplug into a RHEL 5 guest without acpiphp (cold attach, guest reboot needed)', async () => {
    const k = await kvmHost();
    await commandHandlers.hide(k.ctx, { bdf: IGB });
    await rejects(commandHandlers.bind(k.ctx, { bdf: IGB, strategy: 'reload' }), ErrorCode.STRATEGY_UNSUPPORTED);
    await commandHandlers.bind(k.ctx, { bdf: IGB, strategy: 'dynamic' });
    const inv = await k.inspect();
    const plan = preflight(inv, { bdf: IGB, guest: 'vm-kvm5', strategy: 'auto', allowInsecurePV: false });
    assert.ok(plan.ok);
    assert.equal(plan.plan.mode, 'cold');
    assert.equal(plan.plan.guestRebootNeeded, true);
    assert.match(plan.plan.attachNote ?? '', /acpiphp is not loaded in vm-kvm5/);
    await rejects(commandHandlers.attach(k.ctx, { bdf: IGB, guest: 'vm-kvm5', mode: 'hot', allowInsecurePV: false }), ErrorCode.HOTPLUG_UNSUPPORTED, /acpiphp/);
    const cold = await commandHandlers.attach(k.ctx, { bdf: IGB, guest: 'vm-kvm5', mode: 'cold', allowInsecurePV: false });
    assert.deepEqual([cold.hot, cold.cold, cold.guestRebootNeeded], [false, true, true]);
  });

  void it('the override rules bind the device at boot; without them it boots on its driver', async () => {
    const k = await kvmHost({ rebootMs: 1 });
    await commandHandlers.hide(k.ctx, { bdf: E1000E });
    await rebootAndWait(k);
    assert.equal(k.driverOf(E1000E), 'vfio-pci');
    await commandHandlers.verify(k.ctx, { bdf: E1000E, expect: 'pciback' });
    await commandHandlers.unhide(k.ctx, { bdf: E1000E });
    await rebootAndWait(k);
    assert.equal(k.driverOf(E1000E), 'e1000e');
  });

  void it('a driverctl override for the device wins over ptctl\'s rule: NOT_HIDDEN, nothing written', async () => {
    const k = await kvmHost();
    mkdirSync(join(k.hostDir, 'etc/driverctl.d'), { recursive: true });
    writeFileSync(join(k.hostDir, 'etc/driverctl.d', `pci-${IGB}`), 'igb\n');
    await rejects(commandHandlers.hide(k.ctx, { bdf: IGB }), ErrorCode.NOT_HIDDEN, /driverctl/);
    assert.equal(k.file(VFIO_RULES_FILE), null);
    await commandHandlers.hide(k.ctx, { bdf: E1000E });
  });

  void it('a device without a reset goes to a second guest only after a host reboot', async () => {
    const k = await kvmHost({ rebootMs: 1 });
    const USB = '0000:06:00.0';
    assert.equal((await k.inspect()).devices.find((d) => d.bdf === USB)?.resettable, false);
    assert.equal((await k.inspect()).devices.find((d) => d.bdf === IGB)?.resettable, true);
    await commandHandlers.hide(k.ctx, { bdf: USB });
    await commandHandlers.bind(k.ctx, { bdf: USB, strategy: 'dynamic' });
    await commandHandlers.attach(k.ctx, { bdf: USB, guest: 'vm-kvm', mode: 'both', allowInsecurePV: false });
    await commandHandlers.detach(k.ctx, { bdf: USB, guest: 'vm-kvm', mode: 'both' });
    const inv = await k.inspect();
    assert.equal(inv.devices.find((d) => d.bdf === USB)?.lastGuest, 'vm-kvm');
    const refused = preflight(inv, { bdf: USB, guest: 'vm-kvm5', strategy: 'auto', allowInsecurePV: false });
    assert.equal(refused.ok ? null : refused.code, ErrorCode.DEVICE_NOT_RESETTABLE);
    assert.match(refused.ok ? '' : refused.message, /held vm-kvm's data since the host booted.*Reboot kvm1/);
    await rejects(commandHandlers.attach(k.ctx, { bdf: USB, guest: 'vm-kvm5', mode: 'cold', allowInsecurePV: false }), ErrorCode.DEVICE_NOT_RESETTABLE);
    assert.ok(preflight(inv, { bdf: USB, guest: 'vm-kvm', strategy: 'auto', allowInsecurePV: false }).ok, 'the same guest may take it back');
    await rebootAndWait(k);
    assert.ok(preflight(await k.inspect(), { bdf: USB, guest: 'vm-kvm5', strategy: 'auto', allowInsecurePV: false }).ok, 'a boot reset the buses');
  });

  void it('a KVM guest needs an IOMMU', async () => {
    const k = await kvmHost();
    const inv = { ...(await k.inspect()), iommu: false };
    const guest = inv.guests.find((g) => g.name === 'vm-kvm');
    const dev = inv.devices.find((d) => d.bdf === IGB);
    assert.ok(guest && dev);
    const verdict = checkGuestAccepts(inv, guest, dev, false);
    assert.equal(verdict.ok ? null : verdict.code, ErrorCode.IOMMU_REQUIRED);
  });
});
