import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ErrorCode, PtcError, describeZodError } from '../../schemas/errors.js';
import { HostId } from '../../schemas/ids.js';
import { SimFaults, type SimFaultsInput } from './sim-host.js';
import { DEFAULT_PROFILE } from './profiles.js';

const SimHostSpec = z
  .object({
    profile: z.string().min(1).optional().describe('simulated host profile, e.g. rhel5-xen or rhel5-xen-noiommu'),
    faults: SimFaults.partial().optional().describe('fault injection for this host (latencies, failures, crashes)'),
  })
  .strict();

/** A simulated fleet: which profile and faults each host gets (DESIGN §5). */
export const FleetFile = z
  .object({
    defaults: SimHostSpec.default({}).describe('applied to every host, then overridden per host'),
    hosts: z.record(HostId, SimHostSpec).default({}).describe('per-host settings, keyed by host id'),
  })
  .strict();
export type FleetFile = z.infer<typeof FleetFile>;
export type FleetFileInput = z.input<typeof FleetFile>;

export async function readFleetFile(path: string): Promise<FleetFile> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(path, 'utf8'));
  } catch (err) {
    throw new PtcError(ErrorCode.INVALID_INPUT, `cannot read fleet file ${path}: ${(err as Error).message}`);
  }
  const parsed = FleetFile.safeParse(raw ?? {});
  if (!parsed.success) throw new PtcError(ErrorCode.INVALID_INPUT, `fleet file ${path}: ${describeZodError(parsed.error, 'fleet')}`);
  return parsed.data;
}

/** The profile and faults of one host: the host's own settings over the defaults over the caller's. */
export function hostSettings(fleet: FleetFile | undefined, hostId: string, fallback: { profile?: string | undefined; faults?: SimFaultsInput | undefined }): { profile: string; faults: SimFaultsInput } {
  const own = fleet?.hosts[hostId];
  return {
    profile: own?.profile ?? fleet?.defaults.profile ?? fallback.profile ?? DEFAULT_PROFILE,
    faults: { ...fallback.faults, ...fleet?.defaults.faults, ...own?.faults },
  };
}
