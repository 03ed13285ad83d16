import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkGuestAccepts,
  checkHideable,
  checkReloadSafe,
  chooseAttachMode,
  chooseStrategy,
  findDevice,
  findGuest,
  iommuCompanions,
  preflight,
  refuse,
  type Verdict,
} from '../../policy/passthrough-policy.js';
import { ErrorCode } from '../../schemas/errors.js';
import { type Guest, type HostCapability, HostInventory, type PciDevice } from '../../schemas/inventory.js';
import type { BindStrategy } from '../../schemas/passthrough.js';

// ---------------------------------------------------------------------------------------------
// Fixture: the rhel5-xen host of DESIGN §5, written out here (not taken from the simulator's
// profile) so the policy is checked against the design, not against another module.
// ---------------------------------------------------------------------------------------------

const UPLINK = '0000:01:00.0';
const ROOT_DISK = '0000:03:00.0';
const IDLE_BNX2 = '0000:09:00.0';
const E1000_A = '0000:0a:04.0';
const E1000_B = '0000:0a:04.1';
const E1000E = '0000:0b:00.0';
const ALL_CAPS: HostCapability[] = ['dynamic-bind', 'reload', 'reboot', 'hotplug'];

function nic(bdf: string, driver: string, netdev: string, iommuGroup: number, inUse: string | null = null): PciDevice {
  return {
    bdf,
    vendor: driver === 'bnx2' ? '14e4' : '8086',
    device: driver === 'bnx2' ? '164c' : '107c',
    class: '0200',
    description: `${driver} NIC (${netdev})`,
    driver,
    hostDriver: driver,
    iommuGroup,
    netdev,
    inUse,
    hidden: false,
    assignedTo: null,
  };
}

function guest(name: string, virt: Guest['virt'], version: string, extra: Partial<Guest> = {}): Guest {
  return { name, virt, os: { name: 'rhel', version }, state: 'running', liveDevices: [], configDevices: [], acpiphp: true, ...extra };
}

interface HostPatch {
  host?: Partial<Omit<HostInventory, 'devices' | 'guests'>>;
  devices?: Record<string, Partial<PciDevice>>;
  guests?: Record<string, Partial<Guest>>;
}

/** The rhel5-xen host, with optional changes to the host, single devices or single guests. */
function rhel5Xen(patch: HostPatch = {}): HostInventory {
  const devices: PciDevice[] = [
    nic(UPLINK, 'bnx2', 'eth0', 1, 'eth0 carries the management uplink'),
    {
      ...nic(ROOT_DISK, 'megaraid_sas', 'none', 3, 'root filesystem is mounted from it'),
      class: '0104',
      netdev: null,
      vendor: '1000',
      device: '0060',
      description: 'LSI MegaRAID SAS (root disk)',
    },
    nic(IDLE_BNX2, 'bnx2', 'eth2', 9),
    nic(E1000_A, 'e1000', 'eth5', 10),
    nic(E1000_B, 'e1000', 'eth3', 10),
    { ...nic(E1000E, 'e1000e', 'eth4', 11), device: '10d3' },
  ];
  const guests: Guest[] = [
    guest('vm-hvm', 'hvm', '5.4'),
    guest('vm-pv', 'pv', '5'),
    guest('vm-pv6', 'pv', '6'),
    guest('vm-kvm5', 'kvm', '5.4', { acpiphp: false }),
  ];
  const inv: HostInventory = {
    hostId: 'h1',
    bootId: 'boot-1',
    agentVersion: 'test',
    os: { name: 'rhel', version: '5.4' },
    hypervisor: 'xen',
    iommu: true,
    capabilities: [...ALL_CAPS],
    devices: devices.map((d) => ({ ...d, ...(patch.devices?.[d.bdf] ?? {}) })),
    guests: guests.map((g) => ({ ...g, ...(patch.guests?.[g.name] ?? {}) })),
    seenAt: new Date(0).toISOString(),
    ...(patch.host ?? {}),
  };
  // The fixture must be a valid inventory, or the tests would check the policy against nonsense.
  return HostInventory.parse(inv);
}

function dev(inv: HostInventory, bdf: string): PciDevice {
  const d = inv.devices.find((x) => x.bdf === bdf);
  assert.ok(d, `fixture has no device ${bdf}`);
  return d;
}

function gst(inv: HostInventory, name: string): Guest {
  const g = inv.guests.find((x) => x.name === name);
  assert.ok(g, `fixture has no guest ${name}`);
  return g;
}

/** A refusal with the code, and a message that is one non-empty sentence naming its subject(s). */
function assertRefused(verdict: Verdict, code: ErrorCode, ...subjects: string[]): void {
  if (verdict.ok) assert.fail(`expected a ${code} refusal, got ok: ${JSON.stringify(verdict)}`);
  assert.equal(verdict.code, code, verdict.message);
  const { message } = verdict;
  assert.equal(typeof message, 'string');
  assert.ok(message.trim().length > 10, `refusal message too short: ${JSON.stringify(message)}`);
  assert.equal(message, message.trim(), 'no stray whitespace around the message');
  assert.doesNotMatch(message, /\n/, 'one line');
  assert.doesNotMatch(message, /undefined|\[object |NaN/, `message leaks a programming value: ${message}`);
  assert.ok(subjects.length > 0, 'test bug: name the subject the message must mention');
  for (const s of subjects) assert.ok(message.includes(s), `${code} message must name ${s}: ${JSON.stringify(message)}`);
}

function assertOk<T extends object>(verdict: Verdict<T>): T {
  if (!verdict.ok) assert.fail(`expected ok, got ${verdict.code}: ${verdict.message}`);
  return verdict;
}

// ---------------------------------------------------------------------------------------------

void describe('refuse', () => {
  void it('builds a refusal verdict', () => {
    assert.deepEqual(refuse(ErrorCode.DEVICE_IN_USE, 'x is busy'), { ok: false, code: 'DEVICE_IN_USE', message: 'x is busy' });
  });
});

void describe('findDevice / findGuest', () => {
  const inv = rhel5Xen();
  void it('finds every device of the host by its address', () => {
    for (const bdf of [UPLINK, ROOT_DISK, IDLE_BNX2, E1000_A, E1000_B, E1000E]) {
      assert.equal(assertOk(findDevice(inv, bdf)).device.bdf, bdf);
    }
  });
  void it('refuses an unknown device with DEVICE_NOT_FOUND naming it', () => {
    assertRefused(findDevice(inv, '0000:0c:00.0'), ErrorCode.DEVICE_NOT_FOUND, '0000:0c:00.0', 'h1');
  });
  void it('finds a guest by name', () => {
    const g = assertOk(findGuest(inv, 'vm-pv6')).guest;
    assert.equal(g.name, 'vm-pv6');
    assert.equal(g.virt, 'pv');
  });
  void it('refuses an unknown guest with GUEST_NOT_FOUND naming it and the known ones', () => {
    assertRefused(findGuest(inv, 'vm-nope'), ErrorCode.GUEST_NOT_FOUND, 'vm-nope', 'vm-hvm', 'vm-pv6');
  });
  void it('an empty host says it has no guests', () => {
    assertRefused(findGuest({ ...inv, guests: [] }, 'vm-hvm'), ErrorCode.GUEST_NOT_FOUND, 'vm-hvm', 'none');
  });
});

void describe('iommuCompanions (rule 10)', () => {
  const inv = rhel5Xen();
  const cases: readonly (readonly [string, string[]])[] = [
    [E1000_A, [E1000_B]],
    [E1000_B, [E1000_A]],
    [IDLE_BNX2, []],
    [E1000E, []],
    [UPLINK, []],
  ];
  for (const [bdf, companions] of cases) {
    void it(`${bdf} moves with [${companions.join(', ')}]`, () => {
      assert.deepEqual(
        iommuCompanions(inv, dev(inv, bdf)).map((d) => d.bdf),
        companions,
      );
    });
  }
  void it('returns companions in address order', () => {
    const three = rhel5Xen({ devices: { [E1000E]: { iommuGroup: 10 }, [IDLE_BNX2]: { iommuGroup: 10 } } });
    assert.deepEqual(
      iommuCompanions(three, dev(three, E1000_B)).map((d) => d.bdf),
      [IDLE_BNX2, E1000_A, E1000E],
    );
  });
  void it('has no companions without an IOMMU (groups unknown), even when every group is null', () => {
    const noGroups = rhel5Xen({ host: { iommu: false } });
    const nulled = { ...noGroups, devices: noGroups.devices.map((d) => ({ ...d, iommuGroup: null })) };
    assert.deepEqual(iommuCompanions(nulled, dev(nulled, E1000_A)), []);
  });
});

void describe('checkHideable (rules 1 and 10)', () => {
  const inv = rhel5Xen();
  void it('refuses the management uplink with DEVICE_IN_USE', () => {
    assertRefused(checkHideable(inv, dev(inv, UPLINK)), ErrorCode.DEVICE_IN_USE, UPLINK);
  });
  void it('refuses the root disk controller with DEVICE_IN_USE', () => {
    assertRefused(checkHideable(inv, dev(inv, ROOT_DISK)), ErrorCode.DEVICE_IN_USE, ROOT_DISK);
  });
  void it('says why the host uses the device', () => {
    const v = checkHideable(inv, dev(inv, ROOT_DISK));
    assert.ok(!v.ok && v.message.includes('root filesystem is mounted from it'), JSON.stringify(v));
  });
  for (const bdf of [IDLE_BNX2, E1000_A, E1000_B, E1000E]) {
    void it(`allows the idle device ${bdf}`, () => {
      assertOk(checkHideable(inv, dev(inv, bdf)));
    });
  }
  void it('refuses a device whose IOMMU group holds a device in use (IOMMU_GROUP_IN_USE)', () => {
    const busyGroup = rhel5Xen({ devices: { [E1000_B]: { inUse: 'eth3 has address 10.0.0.3/24' } } });
    assertRefused(checkHideable(busyGroup, dev(busyGroup, E1000_A)), ErrorCode.IOMMU_GROUP_IN_USE, E1000_A, E1000_B);
    // The busy member itself is refused as in use.
    assertRefused(checkHideable(busyGroup, dev(busyGroup, E1000_B)), ErrorCode.DEVICE_IN_USE, E1000_B);
    // Other groups are unaffected.
    assertOk(checkHideable(busyGroup, dev(busyGroup, E1000E)));
  });
});

void describe('checkReloadSafe (rule 2)', () => {
  const inv = rhel5Xen();
  void it('refuses reloading bnx2 for 09:00.0: it would drop the uplink 01:00.0', () => {
    assertRefused(checkReloadSafe(inv, dev(inv, IDLE_BNX2)), ErrorCode.RELOAD_UNSAFE, IDLE_BNX2, UPLINK, 'bnx2');
  });
  for (const bdf of [E1000E, E1000_A, E1000_B]) {
    void it(`allows reloading the driver of ${bdf}: no other device of it is in use`, () => {
      assertOk(checkReloadSafe(inv, dev(inv, bdf)));
    });
  }
  void it('allows reloading bnx2 once the uplink is not in use', () => {
    const quiet = rhel5Xen({ devices: { [UPLINK]: { inUse: null } } });
    assertOk(checkReloadSafe(quiet, dev(quiet, IDLE_BNX2)));
  });
  void it('ignores an in-use device that is not bound to the driver right now', () => {
    const moved = rhel5Xen({ devices: { [UPLINK]: { driver: 'tg3' } } });
    assertOk(checkReloadSafe(moved, dev(moved, IDLE_BNX2)));
  });
  void it('refuses a device without a host driver', () => {
    const orphan = rhel5Xen({ devices: { [E1000E]: { hostDriver: null, driver: null } } });
    assertRefused(checkReloadSafe(orphan, dev(orphan, E1000E)), ErrorCode.RELOAD_UNSAFE, E1000E);
  });
});

void describe('chooseStrategy (rule 2 + capabilities)', () => {
  type Case = { name: string; bdf: string; caps: HostCapability[]; requested: BindStrategy; want: 'dynamic' | 'reload' | 'reboot' | ErrorCode };
  const cases: Case[] = [
    { name: 'auto picks dynamic when the host can dynamic-bind', bdf: IDLE_BNX2, caps: ALL_CAPS, requested: 'auto', want: 'dynamic' },
    { name: 'auto picks dynamic for a reload-safe device too', bdf: E1000E, caps: ALL_CAPS, requested: 'auto', want: 'dynamic' },
    { name: 'auto picks reload when only reload (safe) and reboot exist', bdf: E1000E, caps: ['reload', 'reboot'], requested: 'auto', want: 'reload' },
    { name: 'auto never picks reload for 09:00.0 (bnx2 drives the uplink): reboot', bdf: IDLE_BNX2, caps: ['reload', 'reboot'], requested: 'auto', want: 'reboot' },
    { name: 'auto never picks reload for 09:00.0 even with hotplug', bdf: IDLE_BNX2, caps: ['reload', 'reboot', 'hotplug'], requested: 'auto', want: 'reboot' },
    { name: 'auto picks reboot when that is all the host can do', bdf: E1000E, caps: ['reboot'], requested: 'auto', want: 'reboot' },
    { name: 'auto refuses when reload is unsafe and nothing else exists', bdf: IDLE_BNX2, caps: ['reload'], requested: 'auto', want: ErrorCode.STRATEGY_UNSUPPORTED },
    { name: 'auto refuses on a host without any bind capability', bdf: E1000E, caps: ['hotplug'], requested: 'auto', want: ErrorCode.STRATEGY_UNSUPPORTED },
    { name: 'auto refuses on a host without capabilities', bdf: E1000E, caps: [], requested: 'auto', want: ErrorCode.STRATEGY_UNSUPPORTED },
    { name: 'explicit reload of 09:00.0 is RELOAD_UNSAFE', bdf: IDLE_BNX2, caps: ALL_CAPS, requested: 'reload', want: ErrorCode.RELOAD_UNSAFE },
    { name: 'explicit reload of 0b:00.0 is allowed', bdf: E1000E, caps: ALL_CAPS, requested: 'reload', want: 'reload' },
    { name: 'explicit dynamic is allowed where supported', bdf: IDLE_BNX2, caps: ALL_CAPS, requested: 'dynamic', want: 'dynamic' },
    { name: 'explicit reboot is allowed where supported', bdf: IDLE_BNX2, caps: ALL_CAPS, requested: 'reboot', want: 'reboot' },
    { name: 'explicit dynamic without dynamic-bind is STRATEGY_UNSUPPORTED', bdf: E1000E, caps: ['reload', 'reboot'], requested: 'dynamic', want: ErrorCode.STRATEGY_UNSUPPORTED },
    { name: 'explicit reload without the capability is STRATEGY_UNSUPPORTED', bdf: E1000E, caps: ['dynamic-bind', 'reboot'], requested: 'reload', want: ErrorCode.STRATEGY_UNSUPPORTED },
    { name: 'explicit reboot without the capability is STRATEGY_UNSUPPORTED', bdf: E1000E, caps: ['dynamic-bind'], requested: 'reboot', want: ErrorCode.STRATEGY_UNSUPPORTED },
  ];
  for (const c of cases) {
    void it(`${c.name} (${c.bdf}, [${c.caps.join(',')}], ${c.requested} → ${c.want})`, () => {
      const inv = rhel5Xen({ host: { capabilities: c.caps } });
      const verdict = chooseStrategy(inv, dev(inv, c.bdf), c.requested);
      if (c.want === 'dynamic' || c.want === 'reload' || c.want === 'reboot') assert.equal(assertOk(verdict).strategy, c.want);
      else assertRefused(verdict, c.want, c.bdf);
    });
  }
  void it('auto on a full-capability host never chooses reload for any device', () => {
    for (const caps of [ALL_CAPS, ['reload', 'reboot'] as HostCapability[], ['reload', 'reboot', 'hotplug'] as HostCapability[]]) {
      const inv = rhel5Xen({ host: { capabilities: caps } });
      const v = chooseStrategy(inv, dev(inv, IDLE_BNX2), 'auto');
      assert.ok(!v.ok || v.strategy !== 'reload', `auto chose reload for ${IDLE_BNX2} with [${caps.join(',')}]`);
    }
  });
});

void describe('checkGuestAccepts (rules 3, 4, 5)', () => {
  type Case = { name: string; patch?: HostPatch; guest: string; bdf?: string; allowInsecurePV: boolean; want: 'ok' | ErrorCode; names: string[] };
  const cases: Case[] = [
    { name: 'HVM guest on a RHEL 5.4 host with IOMMU', guest: 'vm-hvm', allowInsecurePV: false, want: 'ok', names: [] },
    { name: 'RHEL 6 PV guest is refused', guest: 'vm-pv6', allowInsecurePV: false, want: ErrorCode.PV_UNSUPPORTED, names: ['vm-pv6'] },
    { name: 'RHEL 6 PV guest is refused even with allowInsecurePV', guest: 'vm-pv6', allowInsecurePV: true, want: ErrorCode.PV_UNSUPPORTED, names: ['vm-pv6'] },
    { name: 'RHEL 6.5 PV guest is refused', patch: { guests: { 'vm-pv6': { os: { name: 'rhel', version: '6.5' } } } }, guest: 'vm-pv6', allowInsecurePV: true, want: ErrorCode.PV_UNSUPPORTED, names: ['vm-pv6'] },
    { name: 'RHEL 5 PV guest without the flag is PV_INSECURE', guest: 'vm-pv', allowInsecurePV: false, want: ErrorCode.PV_INSECURE, names: ['vm-pv'] },
    { name: 'RHEL 5 PV guest with allowInsecurePV is accepted', guest: 'vm-pv', allowInsecurePV: true, want: 'ok', names: [] },
    { name: 'RHEL 5.11 PV guest with the flag is accepted (numeric versions)', patch: { guests: { 'vm-pv': { os: { name: 'rhel', version: '5.11' } } } }, guest: 'vm-pv', allowInsecurePV: true, want: 'ok', names: [] },
    { name: 'PV passthrough does not need an IOMMU', patch: { host: { iommu: false } }, guest: 'vm-pv', allowInsecurePV: true, want: 'ok', names: [] },
    { name: 'HVM guest on a RHEL 5.3 host is HVM_UNSUPPORTED', patch: { host: { os: { name: 'rhel', version: '5.3' } } }, guest: 'vm-hvm', allowInsecurePV: false, want: ErrorCode.HVM_UNSUPPORTED, names: ['vm-hvm'] },
    { name: 'HVM guest on a RHEL 5 host is HVM_UNSUPPORTED', patch: { host: { os: { name: 'rhel', version: '5' } } }, guest: 'vm-hvm', allowInsecurePV: false, want: ErrorCode.HVM_UNSUPPORTED, names: ['vm-hvm'] },
    { name: 'HVM guest on a RHEL 5.10 host is accepted (5.10 > 5.4)', patch: { host: { os: { name: 'rhel', version: '5.10' } } }, guest: 'vm-hvm', allowInsecurePV: false, want: 'ok', names: [] },
    { name: 'HVM guest on a host without IOMMU is IOMMU_REQUIRED', patch: { host: { iommu: false } }, guest: 'vm-hvm', allowInsecurePV: false, want: ErrorCode.IOMMU_REQUIRED, names: ['vm-hvm'] },
    { name: 'a device assigned to another guest is DEVICE_ASSIGNED', patch: { devices: { [IDLE_BNX2]: { assignedTo: 'vm-pv' } } }, guest: 'vm-hvm', allowInsecurePV: false, want: ErrorCode.DEVICE_ASSIGNED, names: [IDLE_BNX2, 'vm-pv'] },
    { name: 'a device already assigned to this guest is accepted', patch: { devices: { [IDLE_BNX2]: { assignedTo: 'vm-hvm' } } }, guest: 'vm-hvm', allowInsecurePV: false, want: 'ok', names: [] },
    { name: 'DEVICE_ASSIGNED comes before the PV checks', patch: { devices: { [IDLE_BNX2]: { assignedTo: 'vm-hvm' } } }, guest: 'vm-pv', allowInsecurePV: true, want: ErrorCode.DEVICE_ASSIGNED, names: [IDLE_BNX2, 'vm-hvm'] },
  ];
  for (const c of cases) {
    void it(`${c.name} → ${c.want}`, () => {
      const inv = rhel5Xen(c.patch);
      const verdict = checkGuestAccepts(inv, gst(inv, c.guest), dev(inv, c.bdf ?? IDLE_BNX2), c.allowInsecurePV);
      if (c.want === 'ok') assertOk(verdict);
      else assertRefused(verdict, c.want, ...c.names);
    });
  }
});

void describe('chooseAttachMode (rule 7 and guest state)', () => {
  const inv = rhel5Xen();
  void it('KVM RHEL 5 guest without acpiphp: cold attach and the guest must reboot', () => {
    const r = chooseAttachMode(gst(inv, 'vm-kvm5'), true);
    assert.equal(r.mode, 'cold');
    assert.equal(r.guestRebootNeeded, true);
    assert.ok(r.reason !== null && r.reason.includes('acpiphp') && r.reason.includes('vm-kvm5'), String(r.reason));
  });
  void it('KVM RHEL 5 guest with acpiphp loaded: hot and cold', () => {
    const loaded = rhel5Xen({ guests: { 'vm-kvm5': { acpiphp: true } } });
    assert.deepEqual(chooseAttachMode(gst(loaded, 'vm-kvm5'), true), { mode: 'both', guestRebootNeeded: false, reason: null });
  });
  void it('KVM RHEL 6 guest does not need acpiphp for hotplug', () => {
    const six = rhel5Xen({ guests: { 'vm-kvm5': { os: { name: 'rhel', version: '6.1' } } } });
    assert.equal(chooseAttachMode(gst(six, 'vm-kvm5'), true).mode, 'both');
  });
  void it('running HVM guest: both, no reboot, no note', () => {
    assert.deepEqual(chooseAttachMode(gst(inv, 'vm-hvm'), true), { mode: 'both', guestRebootNeeded: false, reason: null });
  });
  void it('running PV guest: both', () => {
    assert.equal(chooseAttachMode(gst(inv, 'vm-pv'), true).mode, 'both');
  });
  void it('stopped guest: cold, no reboot needed (it picks the device up at its next start)', () => {
    const stopped = rhel5Xen({ guests: { 'vm-hvm': { state: 'stopped' }, 'vm-kvm5': { state: 'stopped' } } });
    for (const name of ['vm-hvm', 'vm-kvm5']) {
      const r = chooseAttachMode(gst(stopped, name), true);
      assert.equal(r.mode, 'cold');
      assert.equal(r.guestRebootNeeded, false);
      assert.ok(r.reason === null || (r.reason.includes(name) && !/reboot/i.test(r.reason)), String(r.reason));
    }
  });
  void it('a host that cannot hotplug: cold and the running guest must reboot', () => {
    const r = chooseAttachMode(gst(inv, 'vm-hvm'), false);
    assert.equal(r.mode, 'cold');
    assert.equal(r.guestRebootNeeded, true);
    assert.ok(r.reason !== null && r.reason.length > 0);
  });
});

void describe('preflight (every rule, in order)', () => {
  const req = (bdf: string, guestName: string, strategy: BindStrategy = 'auto', allowInsecurePV = false) => ({ bdf, guest: guestName, strategy, allowInsecurePV });

  void it('plans 09:00.0 → vm-hvm: dynamic bind, hot+cold attach, hide just the device', () => {
    const plan = assertOk(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-hvm'))).plan;
    assert.deepEqual(plan, { strategy: 'dynamic', mode: 'both', guestRebootNeeded: false, attachNote: null, devicesToHide: [IDLE_BNX2], alreadyDone: false });
  });
  void it('hides the whole IOMMU group for 0a:04.0 (companion 0a:04.1), sorted', () => {
    assert.deepEqual(assertOk(preflight(rhel5Xen(), req(E1000_A, 'vm-hvm'))).plan.devicesToHide, [E1000_A, E1000_B]);
    assert.deepEqual(assertOk(preflight(rhel5Xen(), req(E1000_B, 'vm-hvm'))).plan.devicesToHide, [E1000_A, E1000_B]);
  });
  void it('refuses the uplink and the root disk controller with DEVICE_IN_USE', () => {
    assertRefused(preflight(rhel5Xen(), req(UPLINK, 'vm-hvm')), ErrorCode.DEVICE_IN_USE, UPLINK);
    assertRefused(preflight(rhel5Xen(), req(ROOT_DISK, 'vm-hvm')), ErrorCode.DEVICE_IN_USE, ROOT_DISK);
  });
  void it('refuses a device whose group member is in use with IOMMU_GROUP_IN_USE', () => {
    const inv = rhel5Xen({ devices: { [E1000_B]: { inUse: 'eth3 is up with 10.0.0.3/24' } } });
    assertRefused(preflight(inv, req(E1000_A, 'vm-hvm')), ErrorCode.IOMMU_GROUP_IN_USE, E1000_A, E1000_B);
  });
  void it('refuses an explicit reload for 09:00.0 with RELOAD_UNSAFE', () => {
    assertRefused(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-hvm', 'reload')), ErrorCode.RELOAD_UNSAFE, IDLE_BNX2);
  });
  void it('auto picks reboot for 09:00.0 on a reload+reboot host, reload for 0b:00.0', () => {
    const inv = rhel5Xen({ host: { capabilities: ['reload', 'reboot', 'hotplug'] } });
    assert.equal(assertOk(preflight(inv, req(IDLE_BNX2, 'vm-hvm'))).plan.strategy, 'reboot');
    assert.equal(assertOk(preflight(inv, req(E1000E, 'vm-hvm'))).plan.strategy, 'reload');
  });
  void it('refuses a guest whose config cannot be read with GUEST_CONFIG_INVALID, as the agent does; a replayed history without the rule does not', () => {
    const inv = rhel5Xen({ guests: { 'vm-hvm': { configProblem: 'line 4: unterminated string' } } });
    assertRefused(preflight(inv, req(IDLE_BNX2, 'vm-hvm')), ErrorCode.GUEST_CONFIG_INVALID, 'vm-hvm', 'line 4: unterminated string');
    assertOk(preflight(inv, req(IDLE_BNX2, 'vm-hvm'), { guestConfig: false, sriov: true }));
    assertOk(preflight(rhel5Xen({ guests: { 'vm-hvm': { configProblem: null } } }), req(IDLE_BNX2, 'vm-hvm')));
  });
  void it('refuses an unsupported explicit strategy', () => {
    const inv = rhel5Xen({ host: { capabilities: ['reboot', 'hotplug'] } });
    assertRefused(preflight(inv, req(E1000E, 'vm-hvm', 'dynamic')), ErrorCode.STRATEGY_UNSUPPORTED, E1000E);
  });
  void it('refuses vm-pv6 even with allowInsecurePV, vm-pv only without it', () => {
    assertRefused(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-pv6', 'auto', true)), ErrorCode.PV_UNSUPPORTED, 'vm-pv6');
    assertRefused(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-pv', 'auto', false)), ErrorCode.PV_INSECURE, 'vm-pv');
    assert.equal(assertOk(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-pv', 'auto', true))).plan.strategy, 'dynamic');
  });
  void it('refuses HVM on a RHEL 5.3 host and without IOMMU', () => {
    assertRefused(preflight(rhel5Xen({ host: { os: { name: 'rhel', version: '5.3' } } }), req(IDLE_BNX2, 'vm-hvm')), ErrorCode.HVM_UNSUPPORTED, 'vm-hvm');
    // The RHEL 5.4 floor does not apply to other distributions (a Debian 12 / Xen 4.17 dom0): only the IOMMU does.
    const debian = preflight(rhel5Xen({ host: { os: { name: 'debian', version: '12' } } }), req(IDLE_BNX2, 'vm-hvm'));
    assert.equal(debian.ok, true);
    assertRefused(preflight(rhel5Xen({ host: { os: { name: 'debian', version: '12' }, iommu: false } }), req(IDLE_BNX2, 'vm-hvm')), ErrorCode.IOMMU_REQUIRED, 'vm-hvm');
    assertRefused(preflight(rhel5Xen({ host: { iommu: false } }), req(IDLE_BNX2, 'vm-hvm')), ErrorCode.IOMMU_REQUIRED, 'vm-hvm');
  });
  void it('refuses a device assigned to another guest', () => {
    const inv = rhel5Xen({ devices: { [IDLE_BNX2]: { driver: 'pciback', assignedTo: 'vm-pv' } }, guests: { 'vm-pv': { configDevices: [IDLE_BNX2], liveDevices: [IDLE_BNX2] } } });
    assertRefused(preflight(inv, req(IDLE_BNX2, 'vm-hvm')), ErrorCode.DEVICE_ASSIGNED, IDLE_BNX2, 'vm-pv');
  });
  void it('refuses unknown devices and guests', () => {
    assertRefused(preflight(rhel5Xen(), req('0000:0c:00.0', 'vm-hvm')), ErrorCode.DEVICE_NOT_FOUND, '0000:0c:00.0');
    assertRefused(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-gone')), ErrorCode.GUEST_NOT_FOUND, 'vm-gone');
  });
  void it('plans cold attach with a guest reboot for the KVM RHEL 5 guest without acpiphp', () => {
    const plan = assertOk(preflight(rhel5Xen(), req(IDLE_BNX2, 'vm-kvm5'))).plan;
    assert.equal(plan.mode, 'cold');
    assert.equal(plan.guestRebootNeeded, true);
    assert.ok(plan.attachNote?.includes('acpiphp'), String(plan.attachNote));
  });
  void it('plans cold attach without a reboot for a stopped guest', () => {
    const plan = assertOk(preflight(rhel5Xen({ guests: { 'vm-hvm': { state: 'stopped' } } }), req(IDLE_BNX2, 'vm-hvm'))).plan;
    assert.equal(plan.mode, 'cold');
    assert.equal(plan.guestRebootNeeded, false);
  });
  void it('alreadyDone when the device is on pciback, in the config and live in the running guest', () => {
    const done = rhel5Xen({
      devices: { [IDLE_BNX2]: { driver: 'pciback', hidden: true, assignedTo: 'vm-hvm', netdev: null } },
      guests: { 'vm-hvm': { configDevices: [IDLE_BNX2], liveDevices: [IDLE_BNX2] } },
    });
    const plan = assertOk(preflight(done, req(IDLE_BNX2, 'vm-hvm'))).plan;
    assert.equal(plan.alreadyDone, true);
    assert.deepEqual(plan.devicesToHide, [IDLE_BNX2]);
  });
  void it('alreadyDone for a stopped guest when the device is in its config', () => {
    const done = rhel5Xen({
      devices: { [IDLE_BNX2]: { driver: 'pciback', hidden: true, assignedTo: 'vm-hvm', netdev: null } },
      guests: { 'vm-hvm': { state: 'stopped', configDevices: [IDLE_BNX2] } },
    });
    assert.equal(assertOk(preflight(done, req(IDLE_BNX2, 'vm-hvm'))).plan.alreadyDone, true);
  });
  void it('not alreadyDone when a piece is missing', () => {
    const variants: HostPatch[] = [
      // in config, but not live in the running guest
      { devices: { [IDLE_BNX2]: { driver: 'pciback', assignedTo: 'vm-hvm' } }, guests: { 'vm-hvm': { configDevices: [IDLE_BNX2] } } },
      // live, but not in the config (lost at the next guest boot)
      { devices: { [IDLE_BNX2]: { driver: 'pciback', assignedTo: 'vm-hvm' } }, guests: { 'vm-hvm': { liveDevices: [IDLE_BNX2] } } },
      // in config and live, but the host driver holds it (state says it is not passed through)
      { devices: { [IDLE_BNX2]: { assignedTo: 'vm-hvm' } }, guests: { 'vm-hvm': { configDevices: [IDLE_BNX2], liveDevices: [IDLE_BNX2] } } },
      // on pciback, nowhere in the guest
      { devices: { [IDLE_BNX2]: { driver: 'pciback' } } },
    ];
    for (const patch of variants) {
      const plan = assertOk(preflight(rhel5Xen(patch), req(IDLE_BNX2, 'vm-hvm'))).plan;
      assert.equal(plan.alreadyDone, false, JSON.stringify(patch));
    }
  });
  void it('alreadyDone does not excuse a guest the rules refuse', () => {
    const done = rhel5Xen({
      devices: { [IDLE_BNX2]: { driver: 'pciback', assignedTo: 'vm-pv6' } },
      guests: { 'vm-pv6': { configDevices: [IDLE_BNX2], liveDevices: [IDLE_BNX2] } },
    });
    assertRefused(preflight(done, req(IDLE_BNX2, 'vm-pv6', 'auto', true)), ErrorCode.PV_UNSUPPORTED, 'vm-pv6');
  });
});
