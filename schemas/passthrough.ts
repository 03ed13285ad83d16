import { z } from 'zod';
import { ErrorInfo } from './errors.js';
import { GuestName, HostId, Requester } from './ids.js';
import { PciAddress } from './pci-address.js';

/**
 * How a hidden device gets bound to pciback: `dynamic` rebinds it through sysfs now, `reload` reloads
 * its driver module, `reboot` restarts the host. `auto` lets policy pick the least disruptive safe one.
 */
export const BindStrategy = z.enum(['auto', 'dynamic', 'reload', 'reboot']);
export type BindStrategy = z.infer<typeof BindStrategy>;
export type ConcreteBindStrategy = Exclude<BindStrategy, 'auto'>;

/** `hot` plugs into the running guest, `cold` edits its config for the next boot; `both` does both. */
export const AttachMode = z.enum(['hot', 'cold', 'both']);
export type AttachMode = z.infer<typeof AttachMode>;

export const MAX_HOTPLUG_BUDGET = 256;

/** How many hotplugs of one device an operation may cause per sliding window (DESIGN §3). */
export const ThrottleSettings = z
  .object({
    budget: z.number().int().min(1).max(MAX_HOTPLUG_BUDGET, `a hotplug budget above ${MAX_HOTPLUG_BUDGET} is never allowed (512 in a brief period can crash the kernel)`).default(32),
    windowMs: z.number().int().min(1000).max(24 * 60 * 60_000).default(10 * 60_000),
  })
  .strict();
export type ThrottleSettings = z.infer<typeof ThrottleSettings>;

const operationFields = {
  hostId: HostId,
  bdf: PciAddress,
  guest: GuestName,
  deadlineMs: z
    .number()
    .int()
    .min(1000)
    .max(7 * 24 * 60 * 60_000)
    .default(30 * 60_000)
    .describe('how long the operation may wait for a throttle slot or a reboot before it ends throttled or timed out'),
  throttle: ThrottleSettings.default({ budget: 32, windowMs: 10 * 60_000 }),
  requestedBy: Requester.optional().describe('the identity that asked for the operation (recorded in the workflow input and the agent audit events)'),
};

export const PassthroughRequest = z
  .object({
    ...operationFields,
    strategy: BindStrategy.default('auto'),
    allowInsecurePV: z.boolean().default(false).describe('permit PV passthrough (gives the guest DMA reach into dom0)'),
  })
  .strict();
export type PassthroughRequest = z.infer<typeof PassthroughRequest>;
export type PassthroughRequestInput = z.input<typeof PassthroughRequest>;

/** Gives a device back to the host: detach from the guest, rebind its original driver, unhide. */
export const ReleaseRequest = z.object(operationFields).strict();
export type ReleaseRequest = z.infer<typeof ReleaseRequest>;
export type ReleaseRequestInput = z.input<typeof ReleaseRequest>;

export const OperationKind = z.enum(['attach', 'detach']);
export type OperationKind = z.infer<typeof OperationKind>;

/** What the host entity queues: one attach or detach, with the op id the CLI will follow. */
const operationEnvelope = {
  workflowId: z.string().min(1).max(300),
  notify: z.string().min(1).max(300).optional().describe('workflow to signal (operation-ended) when the operation ends, so it waits without polling'),
  rollout: z.string().min(1).max(63).optional().describe('the rollout it belongs to, for its PtcRollout search attribute (a rollout in a window is not named by its workflow id)'),
};
export const HostOperation = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('attach'), ...operationEnvelope, request: PassthroughRequest }).strict(),
  z.object({ kind: z.literal('detach'), ...operationEnvelope, request: ReleaseRequest }).strict(),
]);
export type HostOperation = z.infer<typeof HostOperation>;
export type HostOperationInput = z.input<typeof HostOperation>;

export const PassthroughStep = z.enum(['preflight', 'hide', 'bind', 'reboot', 'verify', 'throttle', 'attach', 'detach', 'unbind', 'unhide', 'compensate']);
export type PassthroughStep = z.infer<typeof PassthroughStep>;

export const Outcome = z.enum(['attached', 'released', 'refused', 'failed', 'throttled', 'compensated', 'needs-attention', 'cancelled']);
export type Outcome = z.infer<typeof Outcome>;

export const StepRecord = z.object({
  step: PassthroughStep,
  detail: z.string(),
});
export type StepRecord = z.infer<typeof StepRecord>;

export const PassthroughResult = z.object({
  kind: OperationKind,
  hostId: HostId,
  bdf: PciAddress,
  guest: GuestName,
  outcome: Outcome,
  strategy: z.enum(['dynamic', 'reload', 'reboot']).nullable(),
  mode: AttachMode.nullable(),
  guestRebootNeeded: z.boolean(),
  steps: z.array(StepRecord),
  /** Epoch ms of every hotplug this operation caused, for the host entity's ledger. */
  hotplugs: z.array(z.number()),
  error: ErrorInfo.nullable(),
});
export type PassthroughResult = z.infer<typeof PassthroughResult>;
