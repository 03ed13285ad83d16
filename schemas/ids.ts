import { z } from 'zod';

/** A host id becomes a NATS subject token and a folder name: no dots, wildcards, slashes or spaces. */
export const HostId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a host id is 1-63 characters of a-z, 0-9 and "-", starting with a letter or digit');
export type HostId = z.infer<typeof HostId>;

/** A guest (domain) name becomes a file name under /etc/xen and an argv element for xl/xm. */
export const GuestName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a guest name is 1-64 characters of letters, digits, "_", "." and "-"')
  .refine((s) => !s.includes('..'), 'a guest name must not contain ".."');
export type GuestName = z.infer<typeof GuestName>;

/** An operation id keys the agent's idempotency journal: a retry with the same id never repeats an effect. */
export const OpId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:/#@-]{0,199}$/, 'an operation id is 1-200 characters of letters, digits and _.:/#@-');
export type OpId = z.infer<typeof OpId>;

/** Kernel module / driver names as the kernel spells them. */
export const DriverName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a driver name is 1-64 characters of letters, digits, "_" and "-"');
export type DriverName = z.infer<typeof DriverName>;

/**
 * Who asked for an operation: the NATS/Temporal identity of the CLI user (e.g. `operator-alice`),
 * optionally `@` the OS user that ran it. Recorded in workflow inputs and the agent's audit events.
 */
export const Requester = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/, 'a requester is 1-128 characters of letters, digits and _.@-');
export type Requester = z.infer<typeof Requester>;
