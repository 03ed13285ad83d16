import { z } from 'zod';
import { ErrorInfo } from './errors.js';
import { DriverName, GuestName, HostId, OpId, Requester } from './ids.js';
import { HostInventory } from './inventory.js';
import { PciAddress } from './pci-address.js';
import { AttachMode } from './passthrough.js';

/** Subjects are a public API: bump the version segment for any incompatible change. */
export const SUBJECT_PREFIX = 'ptc.v1';
export const agentSubject = (hostId: HostId, command: AgentCommand): string => `${SUBJECT_PREFIX}.agent.${hostId}.${command}`;
export const agentSubjectWildcard = (hostId: HostId): string => `${SUBJECT_PREFIX}.agent.${hostId}.*`;
export const eventSubject = (hostId: HostId, kind: EventKind): string => `${SUBJECT_PREFIX}.events.${hostId}.${kind}`;
export const HOSTS_BUCKET = 'ptc_hosts';
export const EVENTS_STREAM = 'PTC_EVENTS';

/** Requests larger than this are refused unread: no legitimate command comes near it. */
export const MAX_REQUEST_BYTES = 16 * 1024;

const bdfArgs = z.object({ bdf: PciAddress }).strict();
const guestArgs = z.object({ guest: GuestName }).strict();

/** Arguments of each command. The map is the single source of the command list. */
export const CommandArgs = {
  inspect: z.object({}).strict(),
  hide: bdfArgs,
  unhide: bdfArgs,
  bind: z.object({ bdf: PciAddress, strategy: z.enum(['dynamic', 'reload']) }).strict(),
  unbind: z.object({ bdf: PciAddress, driver: DriverName.nullable().describe('driver to give the device back to') }).strict(),
  reboot: z.object({}).strict(),
  // `pciback` is the protocol's name for the host's stub driver: pciback on Xen, vfio-pci on KVM (STUB_DRIVER).
  verify: z.object({ bdf: PciAddress, expect: z.enum(['pciback', 'host']) }).strict(),
  attach: z
    .object({ bdf: PciAddress, guest: GuestName, mode: AttachMode, allowInsecurePV: z.boolean().default(false) })
    .strict(),
  detach: z.object({ bdf: PciAddress, guest: GuestName, mode: AttachMode }).strict(),
  'guest-status': guestArgs,
  // Refused while the guest holds a passed-through device (rule 6): it is tied to this host's hardware.
  save: guestArgs,
  restore: guestArgs,
  migrate: z.object({ guest: GuestName, target: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/, 'a target host name') }).strict(),
} as const;
export type AgentCommand = keyof typeof CommandArgs;
export const AGENT_COMMANDS = Object.keys(CommandArgs) as AgentCommand[];
export type CommandArgsOf<C extends AgentCommand> = z.infer<(typeof CommandArgs)[C]>;
export type CommandArgsInput<C extends AgentCommand> = z.input<(typeof CommandArgs)[C]>;

export function isAgentCommand(value: string): value is AgentCommand {
  return Object.hasOwn(CommandArgs, value);
}

/** Replies of each command. `changed` says whether this call altered the host (false on a repeat). */
export const HideResult = z.object({
  bdf: PciAddress,
  changed: z.boolean(),
  file: z.string().describe('the file the host reads at boot: the modprobe file (Xen), the vfio-pci override rules (KVM)'),
  driver: DriverName.nullable().describe('Xen: driver whose loading goes through pciback (install line); null for a device no host driver holds, and on KVM'),
});
export const BindResult = z.object({
  bdf: PciAddress,
  changed: z.boolean(),
  driver: DriverName,
  originalDriver: DriverName.nullable().describe('driver the device had before; compensation rebinds exactly this one'),
});
export const UnbindResult = z.object({ bdf: PciAddress, changed: z.boolean(), driver: DriverName.nullable() });
export const RebootResult = z.object({ previousBootId: z.string() });
export const VerifyResult = z.object({
  bdf: PciAddress,
  driver: DriverName.nullable(),
  inPcibackSlots: z.boolean().describe("Xen: in pciback's slots; KVM: driver_override is vfio-pci"),
  assignable: z.boolean().describe('Xen: in the toolstack\'s assignable list; KVM: /dev/vfio/<group> exists and every endpoint of the group is on vfio-pci or no driver'),
});
export const AttachResult = z.object({
  bdf: PciAddress,
  guest: GuestName,
  hot: z.boolean().describe('device is in the running guest'),
  cold: z.boolean().describe('device is in the guest config'),
  changed: z.boolean(),
  /** A hotplug (xl pci-attach/-detach into the running guest) happened in this call: it counts against the throttle. */
  hotplugged: z.boolean(),
  guestRebootNeeded: z.boolean(),
});
export const DetachResult = AttachResult;
export const GuestStatusResult = z.object({
  guest: GuestName,
  state: z.string(),
  liveDevices: z.array(PciAddress),
  configDevices: z.array(PciAddress),
  pinned: z.boolean(),
});

export const GuestLifecycleResult = z.object({ guest: GuestName, action: z.enum(['save', 'restore', 'migrate']), state: z.string() });

export const CommandResults = {
  inspect: HostInventory,
  hide: HideResult,
  unhide: HideResult,
  bind: BindResult,
  unbind: UnbindResult,
  reboot: RebootResult,
  verify: VerifyResult,
  attach: AttachResult,
  detach: DetachResult,
  'guest-status': GuestStatusResult,
  save: GuestLifecycleResult,
  restore: GuestLifecycleResult,
  migrate: GuestLifecycleResult,
} as const satisfies Record<AgentCommand, z.ZodType>;
export type CommandResultOf<C extends AgentCommand> = z.infer<(typeof CommandResults)[C]>;

/** Every request: who asks for what, keyed by an operation id for idempotency. */
export const AgentRequest = z
  .object({
    opId: OpId,
    hostId: HostId,
    issuedAt: z.iso.datetime(),
    args: z.unknown(),
    /** Optional (older clients omit it): the identity that asked for the operation, copied into the audit events. */
    requestedBy: Requester.optional(),
  })
  .strict();
export type AgentRequest = z.infer<typeof AgentRequest>;

export const AgentReply = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), bootId: z.string(), result: z.unknown() }),
  z.object({ ok: z.literal(false), bootId: z.string(), error: ErrorInfo }),
]);
export type AgentReply = z.infer<typeof AgentReply>;

/** Audit record kinds on `ptc.v1.events.<hostId>.<kind>`. */
export const EventKind = z.enum(['received', 'applied', 'replayed', 'refused', 'failed', 'boot', 'hotplug', 'heartbeat-lost']);
export type EventKind = z.infer<typeof EventKind>;

export const AuditEvent = z.object({
  hostId: HostId,
  kind: EventKind,
  bootId: z.string(),
  at: z.iso.datetime(),
  opId: OpId.nullable(),
  command: z.string().max(40).nullable(),
  /** Who asked for the command (from the request), null when unknown or not a command event. */
  requestedBy: Requester.nullable().default(null),
  detail: z.record(z.string(), z.unknown()),
});
export type AuditEvent = z.infer<typeof AuditEvent>;
export type AuditEventInput = z.input<typeof AuditEvent>;
