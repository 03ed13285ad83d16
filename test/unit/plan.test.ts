import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { PLAN_EXIT_OK, PLAN_EXIT_REFUSED, parsePlanFile, planExitCode, renderPlan, writePlan } from '../../cli/commands/plan.js';
import { STREAM_BATCH } from '../../cli/stream-output.js';
import { PLAN_REFERENCE_FILE, renderPlanReference } from '../../cli/plan-reference.js';
import { planHasRefusals, resolveHost, resolvePlan, toRolloutInput } from '../../policy/plan-resolution.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import type { Guest, HostInventory, PciDevice } from '../../schemas/inventory.js';
import { type AssignmentResolution, type Plan, type PlanInput, PlanCode, PlanResolution, validatePlan } from '../../schemas/plan.js';
import { parseDuration } from '../../schemas/duration.js';
import { RolloutInput } from '../../schemas/rollout.js';
import { rhel5XenInventory } from '../helpers/inventory-fixture.js';
import { SlowReader } from '../helpers/slow-reader.js';

// Compiled to dist/test/unit/: the repository root is three levels up.
const ROOT = new URL('../../../', import.meta.url);

const UPLINK = '0000:01:00.0';
const ROOT_DISK = '0000:03:00.0';
const IDLE_BNX2 = '0000:09:00.0';
const E1000_A = '0000:0a:04.0';
const E1000_B = '0000:0a:04.1';
const E1000E = '0000:0b:00.0';

interface HostPatch {
  host?: Partial<Omit<HostInventory, 'hostId' | 'devices' | 'guests'>>;
  devices?: Record<string, Partial<PciDevice>>;
  guests?: Record<string, Partial<Guest>>;
}

/** A rhel5-xen host (DESIGN §5) with changes to the host, single devices or single guests. */
function host(hostId: string, patch: HostPatch = {}): HostInventory {
  const base = rhel5XenInventory(hostId, patch.host ?? {});
  return {
    ...base,
    devices: base.devices.map((d) => ({ ...d, ...(patch.devices?.[d.bdf] ?? {}) })),
    guests: base.guests.map((g) => ({ ...g, ...(patch.guests?.[g.name] ?? {}) })),
  };
}

/** `bdf` already passed through to `guest`: on pciback, hidden, in the guest's config and live. */
function attached(bdf: string, guest: string): HostPatch {
  return { devices: { [bdf]: { driver: 'pciback', hidden: true, assignedTo: guest } }, guests: { [guest]: { configDevices: [bdf], liveDevices: [bdf] } } };
}

/** A valid plan: targets every host unless told otherwise. */
function plan(input: Partial<PlanInput> & Pick<PlanInput, 'assignments'>): Plan {
  return validatePlan({ name: 'test', hosts: { idPattern: '*' }, ...input }, 'test');
}

/** The whole human plan output, as renderPlan streams it piece by piece. */
const planText = (r: PlanResolution): string => [...renderPlan(r)].join('');

function only(p: Plan, inv: HostInventory): AssignmentResolution {
  const [a, ...rest] = resolveHost(p, inv).assignments;
  assert.ok(a && rest.length === 0, 'expected one assignment');
  return a;
}

/** The PtcError message a plan file gets, or a failure if it parses. */
function problemsOf(text: string, source = 'plan.yaml'): string {
  try {
    parsePlanFile(text, source);
  } catch (err) {
    assert.ok(isPtcError(err, ErrorCode.INVALID_INPUT), `expected INVALID_INPUT, got ${String(err)}`);
    return err.message;
  }
  return assert.fail('expected the plan file to be refused');
}

// ---------------------------------------------------------------------------------------------

void describe('plan file parsing', () => {
  void it('fills every default from a minimal YAML plan', () => {
    const p = parsePlanFile('name: nic\nhosts:\n  names: [sim-1]\nassignments:\n  - device: "0000:09:00.0"\n    guest: vm-hvm\n', 'min.yaml');
    assert.deepEqual(p, {
      name: 'nic',
      hosts: { names: ['sim-1'] },
      assignments: [{ device: IDLE_BNX2, guest: 'vm-hvm' }],
      strategy: 'auto',
      allowReboot: false,
      rebootsOnlyInWindows: false,
      allowInsecurePV: false,
      deadline: 30 * 60_000,
      rollout: { canary: 1, maxParallel: 1, maxFailures: { count: 0 } },
    });
  });

  void it('reads durations, throttle, rollout options and matches, and lower-cases PCI ids', () => {
    const p = parsePlanFile(
      [
        'name: fleet',
        'hosts: { idPattern: "rack?-*", os: rhel, osVersionAtLeast: "5.4", hypervisor: xen }',
        'assignments:',
        '  - { device: "0000:0A:04.0", guest: vm-hvm }',
        '  - { match: { vendor: "8086", device: 10D3, class: "02" }, guest: vm-hvm }',
        'strategy: reload',
        'allowReboot: true',
        'allowInsecurePV: true',
        'deadline: 1.5h',
        'throttle: { budget: 256, window: 90s }',
        'rollout: { canary: 2, maxParallel: 8, maxFailures: "12.5%" }',
      ].join('\n'),
      'full.yaml',
    );
    assert.deepEqual(p.hosts, { names: [], idPattern: 'rack?-*', os: 'rhel', osVersionAtLeast: '5.4', hypervisor: 'xen' });
    assert.deepEqual(p.assignments, [
      { device: E1000_A, guest: 'vm-hvm' },
      { match: { vendor: '8086', device: '10d3', class: '02' }, guest: 'vm-hvm' },
    ]);
    assert.equal(p.strategy, 'reload');
    assert.equal(p.deadline, 90 * 60_000);
    assert.deepEqual(p.throttle, { budget: 256, window: 90_000 });
    assert.deepEqual(p.rollout, { canary: 2, maxParallel: 8, maxFailures: { percent: 12.5 } });
    assert.deepEqual(parsePlanFile('{"name":"j","hosts":{"names":["a"]},"assignments":[{"device":"0000:09:00.0","guest":"g"}],"rollout":{"maxFailures":3}}', 'p.json').rollout.maxFailures, {
      count: 3,
    });
  });

  void it('lists every problem at once, as `path: message` lines in file order with their lines', () => {
    const text = [
      'name: Bad_Name',
      'hosts: {}',
      'assignments:',
      '  - device: 0000:zz:00.0',
      '    guest: vm-hvm',
      '    match: { vendor: 8086 }',
      '  - guest: "x y"',
      '  - match: {}',
      '    guest: vm-pv',
      'allowreboot: true',
      'strategy: fast',
      'deadline: 9d',
      'rollout: { maxFailures: "200%", maxParallel: 0, canary: -1 }',
      'throttle: { budget: 512, window: soon }',
      'osVersionAtLeast: "5.4"',
    ].join('\n');
    assert.equal(
      problemsOf(text, 'bad.yaml'),
      [
        'plan file bad.yaml has 17 problems:',
        '  name: a rollout name is 1-63 characters of a-z, 0-9 and "-" (line 1)',
        '  hosts: name at least one host (names) or give a selector (idPattern, os, osVersionAtLeast, hypervisor) (line 2)',
        '  assignments.0.device: expected a PCI address like 0000:09:00.0 (domain:bus:device.function, hex) (line 4)',
        '  assignments.0.match.vendor: write it in quotes, e.g. "8086" (YAML reads bare digits as a number) (line 6)',
        '  assignments.0.match: give either device or match, not both (line 6)',
        '  assignments.1.guest: a guest name is 1-64 characters of letters, digits, "_", "." and "-" (line 7)',
        '  assignments.1.device: required: give device (an address) or match (PCI ids) (line 7)',
        '  assignments.2.match: give at least one of vendor, device, class (line 8)',
        '  allowreboot: unknown key (did you mean allowReboot?) (line 10)',
        '  strategy: Invalid option: expected one of "auto"|"dynamic"|"reload"|"reboot" (line 11)',
        '  deadline: at most 7d (line 12)',
        '  rollout.canary: Too small: expected number to be >=0 (line 13)',
        '  rollout.maxParallel: Too small: expected number to be >=1 (line 13)',
        '  rollout.maxFailures: a percentage is at most 100% (line 13)',
        '  throttle.budget: a hotplug budget above 256 is never allowed (512 in a brief period can crash the kernel) (line 14)',
        '  throttle.window: expected a duration like 90s, 30m, 2h or 1d (line 14)',
        '  osVersionAtLeast: unknown key (expected one of name, hosts, assignments, strategy, allowReboot, rebootsOnlyInWindows, allowInsecurePV, deadline, throttle, rollout) (line 15)',
      ].join('\n'),
    );
  });

  void it('says which keys are required, and that an empty file is empty', () => {
    assert.equal(problemsOf('strategy: auto\n'), ['plan file plan.yaml has 3 problems:', '  name: required', '  hosts: required', '  assignments: required'].join('\n'));
    assert.equal(problemsOf(''), 'plan file plan.yaml has 1 problem:\n  (plan): the file is empty; a plan needs at least name, hosts and assignments');
    assert.match(problemsOf('name: x\nhosts: {names: [a]}\nassignments: []\n'), /assignments: a plan needs at least one assignment \(line 3\)/);
    assert.match(problemsOf('- just\n- a list\n'), /\(plan\): Invalid input: expected object, received array/);
  });

  void it('reports YAML syntax errors and duplicate keys by line and column', () => {
    assert.equal(
      problemsOf('name: x\nhosts:\n  names: [a, b\nassignments: []\n'),
      'plan file plan.yaml has 1 problem:\n  line 4, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
    assert.match(problemsOf('name: x\nname: y\n'), /^plan file plan\.yaml has 1 problem:\n {2}line 2, column 1: Map keys must be unique$/);
  });

  void it('asks for quotes where YAML would turn an id or a version into a number', () => {
    assert.match(problemsOf('name: x\nhosts: { osVersionAtLeast: 5.10 }\nassignments: [{ match: { class: 200 }, guest: g }]\n'), /hosts\.osVersionAtLeast: write it in quotes, e.g\. "5\.4"/);
  });

  for (const [text, ms] of [
    ['250ms', 250],
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['1.5h', 5_400_000],
    ['7d', 604_800_000],
    ['30', null],
    ['1h30m', null],
    ['-5m', null],
    ['5 m', null],
  ] as const) {
    void it(`duration ${JSON.stringify(text)} → ${String(ms)}`, () => assert.equal(parseDuration(text), ms));
  }

  const examples = readdirSync(new URL('examples/', ROOT)).filter((f) => /\.(ya?ml|json)$/.test(f));
  void it('ships example plans', () => assert.ok(examples.length >= 3, `examples/: ${examples.join(', ')}`));
  for (const file of examples) {
    void it(`examples/${file} parses and plans cleanly on a fresh simulated fleet`, () => {
      const p = parsePlanFile(readFileSync(new URL(`examples/${file}`, ROOT), 'utf8'), `examples/${file}`);
      const fleet = ['sim-1', 'sim-2', 'sim-3'].map((id) => host(id));
      const r = resolvePlan(p, fleet);
      assert.ok(r.hosts.length > 0, 'targets at least one simulated host');
      assert.equal(planHasRefusals(r), false, planText(r));
      assert.ok(r.summary.changes > 0);
      RolloutInput.parse(toRolloutInput(p, r));
    });
  }
});

// ---------------------------------------------------------------------------------------------

interface ResolutionCase {
  name: string;
  plan: Partial<PlanInput>;
  device?: string;
  guest?: string;
  host?: HostPatch;
  want: Partial<Record<string, unknown>>;
  /** Words the refusal message must contain. */
  mentions?: string[];
}

const NO_DYNAMIC: HostPatch = { host: { capabilities: ['reload', 'reboot', 'hotplug'] } };

const RESOLUTION_CASES: ResolutionCase[] = [
  {
    name: 'an idle NIC to the HVM guest: hide, dynamic bind, hot + cold attach',
    plan: {},
    want: { status: 'change', bdf: IDLE_BNX2, driver: 'bnx2', hide: true, companions: [], strategy: 'dynamic', rebootNeeded: false, mode: 'both', guestRebootNeeded: false, attachNote: null },
  },
  { name: 'the management uplink is refused: in use', plan: {}, device: UPLINK, want: { status: 'refused', code: ErrorCode.DEVICE_IN_USE }, mentions: [UPLINK, 'uplink'] },
  { name: 'the root disk controller is refused: in use', plan: {}, device: ROOT_DISK, want: { status: 'refused', code: ErrorCode.DEVICE_IN_USE }, mentions: [ROOT_DISK] },
  { name: 'a PV guest without allowInsecurePV is refused', plan: {}, guest: 'vm-pv', want: { status: 'refused', code: ErrorCode.PV_INSECURE }, mentions: ['vm-pv', 'allowInsecurePV'] },
  { name: 'a PV guest with allowInsecurePV is planned', plan: { allowInsecurePV: true }, guest: 'vm-pv', want: { status: 'change', guest: 'vm-pv', strategy: 'dynamic' } },
  { name: 'a RHEL 6 PV guest is refused even with allowInsecurePV', plan: { allowInsecurePV: true }, guest: 'vm-pv6', want: { status: 'refused', code: ErrorCode.PV_UNSUPPORTED }, mentions: ['vm-pv6'] },
  { name: 'no IOMMU: the HVM guest is refused', plan: {}, host: { host: { iommu: false } }, want: { status: 'refused', code: ErrorCode.IOMMU_REQUIRED }, mentions: ['IOMMU'] },
  {
    name: 'no dynamic bind: a driver whose other device is an idle companion is reloaded',
    plan: {},
    device: E1000_A,
    host: NO_DYNAMIC,
    want: { status: 'change', strategy: 'reload', rebootNeeded: false },
  },
  {
    name: 'no dynamic bind, reload unsafe (bnx2 carries the uplink): reboot needed, refused without allowReboot',
    plan: {},
    host: NO_DYNAMIC,
    want: { status: 'refused', code: PlanCode.REBOOT_NOT_ALLOWED },
    mentions: ['needs a host reboot', 'reloading bnx2 would also drop 0000:01:00.0', 'allowReboot: true'],
  },
  { name: 'the same with allowReboot: a change that reboots the host', plan: { allowReboot: true }, host: NO_DYNAMIC, want: { status: 'change', strategy: 'reboot', rebootNeeded: true } },
  {
    name: 'strategy reboot without allowReboot is refused',
    plan: { strategy: 'reboot' },
    want: { status: 'refused', code: PlanCode.REBOOT_NOT_ALLOWED },
    mentions: ['the plan\'s strategy is reboot'],
  },
  { name: 'strategy reload of bnx2 is refused: it would drop the uplink', plan: { strategy: 'reload' }, want: { status: 'refused', code: ErrorCode.RELOAD_UNSAFE }, mentions: [UPLINK] },
  { name: 'already on pciback and attached to the guest: done', plan: {}, host: attached(IDLE_BNX2, 'vm-hvm'), want: { status: 'done', bdf: IDLE_BNX2 } },
  {
    name: 'attached to another guest: refused',
    plan: {},
    host: attached(IDLE_BNX2, 'vm-pv'),
    want: { status: 'refused', code: ErrorCode.DEVICE_ASSIGNED },
    mentions: ['vm-pv'],
  },
  {
    name: 'hidden and on pciback but not attached: no hide, attach',
    plan: {},
    host: { devices: { [IDLE_BNX2]: { driver: 'pciback', hidden: true } } },
    want: { status: 'change', hide: false, driver: 'pciback', mode: 'both' },
  },
  { name: 'an IOMMU group member takes its companion along', plan: {}, device: E1000_A, want: { status: 'change', companions: [E1000_B] } },
  { name: 'the other member of the group, likewise', plan: {}, device: E1000_B, want: { status: 'change', companions: [E1000_A] } },
  {
    name: 'a stopped guest: cold attach, no guest reboot needed',
    plan: {},
    host: { guests: { 'vm-hvm': { state: 'stopped' } } },
    want: { status: 'change', mode: 'cold', guestRebootNeeded: false },
  },
  {
    name: 'a host that cannot hotplug: cold attach, guest reboot needed',
    plan: {},
    host: { host: { capabilities: ['dynamic-bind', 'reload', 'reboot'] } },
    want: { status: 'change', mode: 'cold', guestRebootNeeded: true, attachNote: 'the host cannot hotplug PCI devices' },
  },
  { name: 'an unknown device is refused', plan: {}, device: '0000:42:00.0', want: { status: 'refused', code: ErrorCode.DEVICE_NOT_FOUND }, mentions: ['0000:42:00.0'] },
  { name: 'an unknown guest is refused', plan: {}, guest: 'vm-nope', want: { status: 'refused', code: ErrorCode.GUEST_NOT_FOUND }, mentions: ['vm-nope'] },
];

void describe('resolveHost: one assignment against one host', () => {
  for (const c of RESOLUTION_CASES) {
    void it(c.name, () => {
      const p = plan({ ...c.plan, assignments: [{ device: c.device ?? IDLE_BNX2, guest: c.guest ?? 'vm-hvm' }] });
      const a = only(p, host('h1', c.host));
      const got = Object.fromEntries(Object.keys(c.want).map((k) => [k, (a as unknown as Record<string, unknown>)[k]]));
      assert.deepEqual(got, c.want, a.status === 'refused' ? `${a.code}: ${a.message}` : JSON.stringify(a));
      if (a.status === 'refused') {
        assert.doesNotMatch(a.message, /\n|undefined|\[object |NaN/);
        for (const m of c.mentions ?? []) assert.ok(a.message.includes(m), `message must mention ${m}: ${a.message}`);
      }
    });
  }
});

void describe('resolveHost: device matches and conflicting claims', () => {
  const statusOf = (as: readonly AssignmentResolution[]) => as.map((a) => `${a.status} ${a.bdf ?? '-'} → ${a.guest}${a.status === 'refused' ? ` ${a.code}` : ''}`);

  void it('a match picks the first idle device, with its IOMMU companion', () => {
    const a = only(plan({ assignments: [{ match: { vendor: '8086', device: '107c' }, guest: 'vm-hvm' }] }), host('h1'));
    assert.equal(a.status, 'change');
    assert.equal(a.bdf, E1000_A);
    assert.equal(a.selector, 'match vendor 8086, device 107c');
    assert.deepEqual(a.status === 'change' && a.companions, [E1000_B]);
  });

  void it('a match skips devices the host uses', () => {
    assert.equal(only(plan({ assignments: [{ match: { vendor: '14e4', class: '02' }, guest: 'vm-hvm' }] }), host('h1')).bdf, IDLE_BNX2);
  });

  void it('matches in order each take the next free device; a group stays with one guest', () => {
    const p = plan({
      allowInsecurePV: true,
      assignments: [
        { match: { vendor: '8086' }, guest: 'vm-hvm' },
        { match: { vendor: '8086' }, guest: 'vm-pv' },
        { match: { vendor: '8086' }, guest: 'vm-hvm' },
        { match: { vendor: '8086' }, guest: 'vm-hvm' },
      ],
    });
    assert.deepEqual(statusOf(resolveHost(p, host('h1')).assignments), [
      `change ${E1000_A} → vm-hvm`,
      // 0a:04.1 shares vm-hvm's group, so vm-pv gets the e1000e.
      `change ${E1000E} → vm-pv`,
      `change ${E1000_B} → vm-hvm`,
      'refused - → vm-hvm DEVICE_NOT_FOUND',
    ]);
  });

  void it('a match resolves to the device the guest already holds, so an applied plan shows as done', () => {
    const a = only(plan({ assignments: [{ match: { vendor: '8086' }, guest: 'vm-hvm' }] }), host('h1', attached(E1000E, 'vm-hvm')));
    assert.deepEqual([a.status, a.bdf], ['done', E1000E]);
  });

  void it('a match that finds nothing says what it looked for and why each candidate is out', () => {
    const none = only(plan({ assignments: [{ match: { vendor: 'dead' }, guest: 'vm-hvm' }] }), host('h1'));
    assert.deepEqual(none.status === 'refused' && [none.code, none.bdf, none.message], [ErrorCode.DEVICE_NOT_FOUND, null, 'no device on h1 matches vendor dead']);
    const busy = only(plan({ assignments: [{ match: { vendor: '1000' }, guest: 'vm-hvm' }] }), host('h1'));
    assert.equal(busy.status === 'refused' && busy.message, 'no idle device on h1 matches vendor 1000: 0000:03:00.0 is used by the host (root-disk in use); 0000:04:00.0 is used by the host (guests-storage in use)');
  });

  void it('explicit addresses are claimed before matches', () => {
    const p = plan({
      allowInsecurePV: true,
      assignments: [
        { match: { vendor: '14e4' }, guest: 'vm-hvm' },
        { device: IDLE_BNX2, guest: 'vm-pv' },
      ],
    });
    const [m, d] = resolveHost(p, host('h1')).assignments;
    assert.equal(d?.status, 'change');
    assert.equal(m?.status === 'refused' && m.message, `no idle device on h1 matches vendor 14e4: ${UPLINK} is used by the host (uplink in use); ${IDLE_BNX2} is claimed by assignments.1`);
  });

  void it('two assignments claiming one device are both refused', () => {
    const p = plan({
      allowInsecurePV: true,
      assignments: [
        { device: IDLE_BNX2, guest: 'vm-hvm' },
        { device: E1000E, guest: 'vm-hvm' },
        { device: IDLE_BNX2, guest: 'vm-pv' },
      ],
    });
    const as = resolveHost(p, host('h1')).assignments;
    assert.deepEqual(statusOf(as), [`refused ${IDLE_BNX2} → vm-hvm PLAN_CONFLICT`, `change ${E1000E} → vm-hvm`, `refused ${IDLE_BNX2} → vm-pv PLAN_CONFLICT`]);
    assert.equal(as[0]?.status === 'refused' && as[0].message, `${IDLE_BNX2} is claimed by assignments.0 (→ vm-hvm) and assignments.2 (→ vm-pv); a device goes to one guest: keep one of these assignments`);
  });

  void it('an IOMMU group split between two guests is refused; one guest taking the whole group is fine', () => {
    const split = plan({
      allowInsecurePV: true,
      assignments: [
        { device: E1000_A, guest: 'vm-hvm' },
        { device: E1000_B, guest: 'vm-pv' },
      ],
    });
    const as = resolveHost(split, host('h1')).assignments;
    assert.deepEqual(statusOf(as), [`refused ${E1000_A} → vm-hvm PLAN_CONFLICT`, `refused ${E1000_B} → vm-pv PLAN_CONFLICT`]);
    assert.equal(as[0]?.status === 'refused' && as[0].message, `${E1000_A} (→ vm-hvm) and ${E1000_B} of assignments.1 (→ vm-pv) share IOMMU group 2592; a group goes to one guest as a whole`);
    const whole = plan({
      assignments: [
        { device: E1000_A, guest: 'vm-hvm' },
        { device: E1000_B, guest: 'vm-hvm' },
      ],
    });
    assert.deepEqual(statusOf(resolveHost(whole, host('h1')).assignments), [`change ${E1000_A} → vm-hvm`, `change ${E1000_B} → vm-hvm`]);
  });
});

void describe('resolvePlan: which hosts', () => {
  const fleet = [host('sim-10'), host('sim-2'), host('sim-1', { host: { os: { name: 'rhel', version: '5.3' } } }), host('kvm-1', { host: { hypervisor: 'kvm' } }), host('deb-1', { host: { os: { name: 'debian', version: '12' } } })];
  const ids = (r: PlanResolution) => r.hosts.map((h) => h.hostId);
  const assignments = [{ device: IDLE_BNX2, guest: 'vm-hvm' }];

  void it('orders hosts the way people count', () => {
    assert.deepEqual(ids(resolvePlan(plan({ assignments, hosts: { idPattern: 'sim-*' } }), fleet)), ['sim-1', 'sim-2', 'sim-10']);
  });

  void it('selects by glob, OS, version and hypervisor, all of which must hold', () => {
    const sel = (hosts: PlanInput['hosts']) => ids(resolvePlan(plan({ assignments, hosts }), fleet));
    assert.deepEqual(sel({ idPattern: 'sim-?' }), ['sim-1', 'sim-2']);
    assert.deepEqual(sel({ os: 'RHEL' }), ['kvm-1', 'sim-1', 'sim-2', 'sim-10']);
    assert.deepEqual(sel({ os: 'rhel', osVersionAtLeast: '5.4' }), ['kvm-1', 'sim-2', 'sim-10']);
    assert.deepEqual(sel({ hypervisor: 'xen', osVersionAtLeast: '5.4' }), ['deb-1', 'sim-2', 'sim-10']);
    assert.deepEqual(sel({ names: ['sim-2', 'deb-1'] }), ['deb-1', 'sim-2']);
  });

  void it('lists named hosts nobody reports as unknown, and named hosts a selector rules out as excluded', () => {
    const r = resolvePlan(plan({ assignments, hosts: { names: ['sim-2', 'sim-9', 'kvm-1', 'sim-1'], hypervisor: 'xen', osVersionAtLeast: '5.4' } }), fleet);
    assert.deepEqual(ids(r), ['sim-2']);
    assert.deepEqual(r.unknown, ['sim-9']);
    assert.deepEqual(r.excluded, [
      { hostId: 'kvm-1', reason: 'it runs kvm, the plan wants xen' },
      { hostId: 'sim-1', reason: 'it runs rhel 5.3, older than 5.4' },
    ]);
    assert.equal(r.summary.unknown, 1);
    assert.equal(planHasRefusals(r), true, 'an unknown host makes the plan exit 2');
    assert.equal(planExitCode(r), PLAN_EXIT_REFUSED);
  });

  void it('exits 0 when everything can be done or is done', () => {
    const r = resolvePlan(plan({ assignments, hosts: { names: ['sim-2', 'sim-10'] } }), [host('sim-2'), host('sim-10', attached(IDLE_BNX2, 'vm-hvm'))]);
    assert.deepEqual(r.summary, { toChange: 1, alreadyDone: 1, refused: 0, unknown: 0, rebootNeeded: 0, changes: 1 });
    assert.equal(planExitCode(r), PLAN_EXIT_OK);
  });
});

// ---------------------------------------------------------------------------------------------

/** The mixed fleet of the snapshot: every kind of line `ptctl plan` prints. */
function mixedFleet(): { plan: Plan; inventories: HostInventory[] } {
  const p = parsePlanFile(
    [
      'name: mixed',
      'hosts:',
      '  names: [sim-1, sim-2, sim-3, sim-4, sim-9, sim-10, kvm-1]',
      '  hypervisor: xen',
      'assignments:',
      '  - device: "0000:09:00.0"',
      '    guest: vm-hvm',
      '  - match: { vendor: "8086", device: "107c" }',
      '    guest: vm-hvm',
      'rollout: { canary: 1, maxParallel: 2, maxFailures: "25%" }',
    ].join('\n'),
    'mixed.yaml',
  );
  return {
    plan: p,
    inventories: [
      host('sim-1'),
      host('sim-2', {
        devices: {
          [IDLE_BNX2]: { driver: 'pciback', hidden: true, assignedTo: 'vm-hvm' },
          [E1000_A]: { driver: 'pciback', hidden: true, assignedTo: 'vm-hvm' },
          [E1000_B]: { driver: 'pciback', hidden: true },
        },
        guests: { 'vm-hvm': { configDevices: [IDLE_BNX2, E1000_A], liveDevices: [IDLE_BNX2, E1000_A] } },
      }),
      host('sim-3', NO_DYNAMIC),
      host('sim-4', { host: { iommu: false } }),
      host('sim-10', { guests: { 'vm-hvm': { state: 'stopped' } } }),
      host('kvm-1', { host: { hypervisor: 'kvm' } }),
      host('sim-11'),
    ],
  };
}

/** `ptctl plan` of mixedFleet(), as it was printed before the output was streamed. */
const MIXED_PLAN_TEXT = `sim-1:
  + hide 0000:09:00.0 (bnx2) → bind dynamic to pciback → attach both to vm-hvm
  + hide 0000:0a:04.0 (e1000) → bind dynamic to pciback → attach both to vm-hvm
      also hides 0000:0a:04.1 (same IOMMU group)
sim-2:
  = 0000:09:00.0 already attached to vm-hvm
  = 0000:0a:04.0 already attached to vm-hvm
sim-3:
  ! 0000:09:00.0 → vm-hvm refused: REBOOT_NOT_ALLOWED: binding 0000:09:00.0 on sim-3 needs a host reboot (no dynamic bind on this host; reloading bnx2 would also drop 0000:01:00.0, which the host uses), and the plan does not allow reboots; set allowReboot: true to let sim-3 reboot
  + hide 0000:0a:04.0 (e1000) → bind reload to pciback → attach both to vm-hvm
      also hides 0000:0a:04.1 (same IOMMU group)
sim-4:
  ! 0000:09:00.0 → vm-hvm refused: IOMMU_REQUIRED: passthrough to fully virtualized guest vm-hvm needs an IOMMU; enable VT-d/AMD-Vi (iommu=1) on sim-4
  ! 0000:0a:04.0 → vm-hvm refused: IOMMU_REQUIRED: passthrough to fully virtualized guest vm-hvm needs an IOMMU; enable VT-d/AMD-Vi (iommu=1) on sim-4
sim-10:
  + hide 0000:09:00.0 (bnx2) → bind dynamic to pciback → attach cold to vm-hvm
      note: vm-hvm is stopped: the device is added to its config for its next start
  + hide 0000:0a:04.0 (e1000) → bind dynamic to pciback → attach cold to vm-hvm
      also hides 0000:0a:04.1 (same IOMMU group)
      note: vm-hvm is stopped: the device is added to its config for its next start
? sim-9: unknown host: no agent reports it (\`ptctl hosts\` lists the known hosts)
- kvm-1: excluded: it runs kvm, the plan wants xen

Plan mixed: 3 hosts to change, 1 already done, 2 refused, 1 unknown.
`;

void describe('ptctl plan output', () => {
  void it('renders a mixed fleet host by host, like a terraform plan', () => {
    const { plan: p, inventories } = mixedFleet();
    assert.equal(
      planText(resolvePlan(p, inventories)),
      MIXED_PLAN_TEXT,
    );
  });

  void it('shows reboots in the summary, and says when nothing matches', () => {
    const { plan: p, inventories } = mixedFleet();
    const r = resolvePlan({ ...p, allowReboot: true, hosts: { names: ['sim-3'] } }, inventories);
    assert.equal(
      planText(r),
      `sim-3:
  + hide 0000:09:00.0 (bnx2) → bind reboot to pciback → attach both to vm-hvm
      reboot needed: sim-3 reboots so pciback claims the device at boot
  + hide 0000:0a:04.0 (e1000) → bind reload to pciback → attach both to vm-hvm
      also hides 0000:0a:04.1 (same IOMMU group)

Plan mixed: 1 host to change (1 host reboot), 0 already done, 0 refused, 0 unknown.
`,
    );
    assert.equal(planText(resolvePlan({ ...p, hosts: { names: [], idPattern: 'db-*' } }, inventories)), 'Plan mixed: no host in the inventory matches the plan\'s hosts.\n');
  });

  void it('is written to stdout exactly as rendered, host by host, into a slow reader', async () => {
    const { plan: p, inventories } = mixedFleet();
    const text = new SlowReader(8);
    assert.equal(await writePlan(resolvePlan(p, inventories), false, text), 'written');
    assert.equal(text.text(), MIXED_PLAN_TEXT);
    const json = new SlowReader(8);
    await writePlan(resolvePlan(p, inventories), true, json);
    assert.equal(json.text(), `${JSON.stringify(resolvePlan(p, inventories), null, 2)}\n`, 'the document printJson printed');
  });

  void it('--json is the PlanResolution, summary included', () => {
    const { plan: p, inventories } = mixedFleet();
    const r = resolvePlan(p, inventories);
    assert.deepEqual(r.summary, { toChange: 3, alreadyDone: 1, refused: 2, unknown: 1, rebootNeeded: 0, changes: 5 });
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r, 'plain JSON');
    assert.deepEqual(PlanResolution.parse(r), r, 'what the PlanResolution schema describes');
  });
});

// ---------------------------------------------------------------------------------------------

void describe('toRolloutInput', () => {
  void it('keeps only hosts with changes, pins the strategy plan showed and maps the plan\'s settings', () => {
    const { plan: p, inventories } = mixedFleet();
    const input = toRolloutInput({ ...p, deadline: 3_600_000, throttle: { budget: 8, window: 120_000 } }, resolvePlan(p, inventories));
    assert.deepEqual(
      input.hosts.map((h) => [h.hostId, h.requests.map((r) => `${r.bdf} → ${r.guest} ${r.strategy}`)]),
      [
        ['sim-1', [`${IDLE_BNX2} → vm-hvm dynamic`, `${E1000_A} → vm-hvm dynamic`]],
        ['sim-3', [`${E1000_A} → vm-hvm reload`]],
        ['sim-10', [`${IDLE_BNX2} → vm-hvm dynamic`, `${E1000_A} → vm-hvm dynamic`]],
      ],
    );
    assert.deepEqual(input.hosts[0]?.requests[0], {
      hostId: 'sim-1',
      bdf: IDLE_BNX2,
      guest: 'vm-hvm',
      strategy: 'dynamic',
      allowInsecurePV: false,
      deadlineMs: 3_600_000,
      throttle: { budget: 8, windowMs: 120_000 },
    });
    assert.equal(input.name, 'mixed');
    assert.deepEqual(input.options, { canary: 1, maxParallel: 2, maxFailures: { percent: 25 } });
    assert.deepEqual(RolloutInput.parse(input), input, 'a valid RolloutInput');
  });

  void it('uses the host defaults for an absent throttle, and yields no hosts when nothing is to change', () => {
    const p = plan({ assignments: [{ device: IDLE_BNX2, guest: 'vm-hvm' }] });
    assert.deepEqual(toRolloutInput(p, resolvePlan(p, [host('h1')])).hosts[0]?.requests[0]?.throttle, { budget: 32, windowMs: 600_000 });
    const nothing = toRolloutInput(p, resolvePlan(p, [host('h1', attached(IDLE_BNX2, 'vm-hvm')), host('h2', { host: { iommu: false } })]));
    assert.deepEqual(nothing.hosts, []);
  });
});

/** A large fleet where, of every ten hosts, one has no IOMMU, one has the NIC attached already and one cannot bind dynamically. */
const fleetOfTenKinds = (hosts: number): HostInventory[] =>
  Array.from({ length: hosts }, (_, i) => {
    const id = `sim-${i + 1}`;
    if (i % 10 === 0) return host(id, { host: { iommu: false } });
    if (i % 10 === 1) return host(id, attached(IDLE_BNX2, 'vm-hvm'));
    if (i % 10 === 2) return host(id, NO_DYNAMIC);
    return host(id);
  });

void describe('10,000 hosts', () => {
  void it('resolves a 10,000-host fleet and builds its rollout input in well under a few seconds', (t) => {
    const inventories = fleetOfTenKinds(10_000);
    const p = plan({ hosts: { idPattern: 'sim-*' }, assignments: [{ device: IDLE_BNX2, guest: 'vm-hvm' }, { match: { vendor: '8086', device: '107c' }, guest: 'vm-hvm' }] });
    const t0 = performance.now();
    const r = resolvePlan(p, inventories);
    const resolved = performance.now();
    const input = toRolloutInput(p, r);
    const elapsed = performance.now() - t0;
    t.diagnostic(`resolvePlan ${(resolved - t0).toFixed(0)} ms, toRolloutInput ${(elapsed - (resolved - t0)).toFixed(0)} ms`);
    // 1,000 without IOMMU: both refused. 1,000 with the NIC in place: the e1000 only. 1,000 without
    // dynamic bind: the NIC needs a reboot (refused), the e1000 reloads. 7,000: both dynamic.
    assert.deepEqual(r.summary, { toChange: 9000, alreadyDone: 0, refused: 2000, unknown: 0, rebootNeeded: 0, changes: 7000 * 2 + 1000 + 1000 });
    assert.equal(r.hosts.length, 10_000);
    assert.equal(input.hosts.length, 9000);
    assert.equal(
      input.hosts.reduce((n, h) => n + h.requests.length, 0),
      16_000,
    );
    assert.equal(r.hosts[9_999]?.hostId, 'sim-10000');
    // 3 s, not 2: the rhel5-xen host grew from 6 to 10 devices (issue 10), so each host costs ~1.6× as much.
    assert.ok(elapsed < 3000, `took ${elapsed.toFixed(0)} ms`);
  });
});

void describe('docs/plan-reference.md', () => {
  void it('is what the generator makes from the schema (run `node scripts/gen-plan-reference.mjs` after a build to update it)', () => {
    const committed = readFileSync(new URL(PLAN_REFERENCE_FILE, ROOT), 'utf8');
    assert.equal(renderPlanReference(), committed);
  });

  void it('documents every key of the plan file', () => {
    const doc = renderPlanReference();
    for (const key of ['name', 'hosts', 'names', 'idPattern', 'os', 'osVersionAtLeast', 'hypervisor', 'assignments', 'device', 'match', 'vendor', 'class', 'guest', 'strategy', 'allowReboot', 'allowInsecurePV', 'deadline', 'throttle', 'budget', 'window', 'rollout', 'canary', 'maxParallel', 'maxFailures']) {
      assert.match(doc, new RegExp(`^\\| \`${key}\` \\| [^|]+ \\| [^|]+ \\| \\S`, 'm'), `row for ${key} with a type, a default and a description`);
    }
  });
});

void describe('20,000 hosts, streamed', () => {
  void it('streams `plan --json` of a 20,000-host resolution as one document equal to the resolution, a batch at a time', async () => {
    const inventories = fleetOfTenKinds(20_000);
    const p = plan({ hosts: { idPattern: 'sim-*' }, assignments: [{ device: IDLE_BNX2, guest: 'vm-hvm' }, { match: { vendor: '8086', device: '107c' }, guest: 'vm-hvm' }] });
    const r = resolvePlan(p, inventories);
    assert.equal(r.hosts.length, 20_000);
    const reader = new SlowReader(1024);
    assert.equal(await writePlan(r, true, reader), 'written');
    assert.deepEqual(JSON.parse(reader.text()), JSON.parse(JSON.stringify(r)));
    assert.ok(reader.text().length > 10 * STREAM_BATCH, `${reader.text().length} characters`);
    // Written as it was produced: the stream never held more than a couple of batches.
    assert.ok(reader.maxQueued <= 2 * STREAM_BATCH, `at most ${reader.maxQueued} characters queued at once`);
  });
});
