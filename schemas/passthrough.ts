import { z } from 'zod';
import { ErrorInfo } from './errors.js';
import { GuestName, HostId } from './ids.js';
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

export const PassthroughRequest = z
  .object({
    hostId: HostId,
    bdf: PciAddress,
    guest: GuestName,
    strategy: BindStrategy.default('auto'),
    allowInsecurePV: z.boolean().default(false).describe('permit PV passthrough (gives the guest DMA reach into dom0)'),
  })
  .strict();
export type PassthroughRequest = z.infer<typeof PassthroughRequest>;
export type PassthroughRequestInput = z.input<typeof PassthroughRequest>;

export const PassthroughStep = z.enum(['preflight', 'hide', 'bind', 'verify', 'attach', 'compensate']);
export type PassthroughStep = z.infer<typeof PassthroughStep>;

export const Outcome = z.enum(['attached', 'refused', 'failed', 'compensated', 'needs-attention']);
export type Outcome = z.infer<typeof Outcome>;

export const StepRecord = z.object({
  step: PassthroughStep,
  detail: z.string(),
});
export type StepRecord = z.infer<typeof StepRecord>;

export const PassthroughResult = z.object({
  hostId: HostId,
  bdf: PciAddress,
  guest: GuestName,
  outcome: Outcome,
  strategy: z.enum(['dynamic', 'reload', 'reboot']).nullable(),
  mode: AttachMode.nullable(),
  guestRebootNeeded: z.boolean(),
  steps: z.array(StepRecord),
  error: ErrorInfo.nullable(),
});
export type PassthroughResult = z.infer<typeof PassthroughResult>;
