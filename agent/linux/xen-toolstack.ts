import type { GuestName } from '../../schemas/ids.js';
import { GuestName as GuestNameSchema } from '../../schemas/ids.js';
import { type GuestState, type GuestVirt, OsRelease } from '../../schemas/inventory.js';
import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../../schemas/pci-address.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import { UNKNOWN_OS } from './host-release.js';

/** xl (Xen ≥ 4.1) or xm (xend, RHEL 5's Xen 3.x); both take the same verbs for what ptctl does, but print differently. */
export type ToolstackName = 'xl' | 'xm';

export interface DomainListEntry {
  name: string;
  /** Domain id; null for a domain xend knows but has not started (xm lists those too). */
  id: number | null;
  state: GuestState;
}

const FLAGS = /^[rbpscd-]{6}$/;

/**
 * Rows of `xl list` / `xm list`: Name, ID, Mem, VCPUs, State, Time(s). xm leaves ID empty for a
 * managed domain that is not running. Returns [] for empty output; rows it cannot read are skipped.
 */
export function parseDomainList(text: string): DomainListEntry[] {
  const out: DomainListEntry[] = [];
  for (const line of text.split('\n')) {
    const tokens = line.trim().split(/\s+/);
    const name = tokens[0];
    if (!name || name === 'Name') continue;
    const flagsAt = tokens.findIndex((t, i) => i > 0 && FLAGS.test(t));
    if (flagsAt < 0) continue;
    const numbers = tokens.slice(1, flagsAt);
    if (!numbers.every((t) => /^\d+$/.test(t)) || (numbers.length !== 2 && numbers.length !== 3)) continue;
    const id = numbers.length === 3 ? Number(numbers[0]) : null;
    out.push({ name, id, state: domainState(tokens[flagsAt] ?? '------', id) });
  }
  return out;
}

function domainState(flags: string, id: number | null): GuestState {
  if (flags.includes('p')) return 'paused';
  if (flags.includes('r') || flags.includes('b')) return 'running';
  if (/[scd]/.test(flags)) return 'stopped';
  // All dashes: a live domain waiting for a CPU is running; a domain without an id was never started.
  return id === null ? 'stopped' : 'running';
}

const BDF_TOKEN = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

function bdf(text: string): PciAddress | null {
  const parsed = PciAddressSchema.safeParse(text);
  return parsed.success ? parsed.data : null;
}

/**
 * Devices of a guest from `xl pci-list` ("Vdev Device" / "00.0 0000:00:04.0") or `xm pci-list`
 * ("[VSlt VFn ]domain bus slot func" / "0x0000 0x09 0x00 0x0", older xm pads with spaces). Returns
 * [] for empty output (xm prints nothing for a guest without devices).
 */
export function parseGuestPciList(text: string): PciAddress[] {
  const out: PciAddress[] = [];
  for (const line of text.split('\n')) {
    const tokens = line.trim().split(/\s+/).filter((t) => t !== '');
    if (tokens.length === 0) continue;
    const full = tokens.find((t) => BDF_TOKEN.test(t));
    if (full) {
      const b = bdf(full);
      if (b) out.push(b);
      continue;
    }
    // xm: the last four columns are domain, bus, slot and function in hex.
    const last = tokens.slice(-4);
    if (last.length !== 4 || !last.every((t) => /^(0x)?[0-9a-fA-F]+$/.test(t))) continue;
    const [domain, bus, slot, func] = last.map((t) => parseInt(t, 16)) as [number, number, number, number];
    const b = bdf(`${hex(domain, 4)}:${hex(bus, 2)}:${hex(slot, 2)}.${func.toString(16)}`);
    if (b) out.push(b);
  }
  return [...new Set(out)].sort(compareBdf);
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** `xl pci-assignable-list` / `xm pci-list-assignable-devices`: one BDF first on each line; [] for empty output. */
export function parseAssignableList(text: string): PciAddress[] {
  const out = text.split('\n').flatMap((line) => {
    const first = line.trim().split(/\s+/)[0] ?? '';
    const b = BDF_TOKEN.test(first) ? bdf(first) : null;
    return b ? [b] : [];
  });
  return [...new Set(out)].sort(compareBdf);
}

/** Backend paths (`/local/domain/0/backend/vbd/2/51712`) in `xl block-list` / `xm block-list` output; [] for none. */
export function parseBlockList(text: string): string[] {
  return [...text.matchAll(/(\/local\/domain\/\d+\/backend\/(?:vbd|qdisk|tap2?)\/\d+\/\d+)\s*$/gm)].map((m) => m[1] ?? '').filter((p) => p !== '');
}

/** The `virt_caps` words of `xl info` / `xm info`; null when the line is missing (old xend). */
export function parseVirtCaps(text: string): string[] | null {
  const m = /^virt_caps\s*:(.*)$/m.exec(text);
  return m ? (m[1] ?? '').trim().split(/\s+/).filter((w) => w !== '') : null;
}

/** HVM when the config says `builder = "hvm"` or `type = "hvm"`; otherwise PV (the stricter policy applies). */
export function guestVirtFromConfig(text: string | null): GuestVirt {
  if (text === null) return 'pv';
  return /^\s*(?:builder|type)\s*=\s*["']hvm["']/m.test(text) ? 'hvm' : 'pv';
}

/** The guest's OS from an annotation line `# ptctl-os: rhel 6.2` in its config; unknown 0 without one. */
export function guestOsFromConfig(text: string | null): OsRelease {
  const m = text === null ? null : /^#\s*ptctl-os:\s*(\S+)\s+(\S+)\s*$/m.exec(text);
  if (!m) return UNKNOWN_OS;
  const parsed = OsRelease.safeParse({ name: (m[1] ?? '').toLowerCase(), version: m[2] });
  return parsed.success ? parsed.data : UNKNOWN_OS;
}

/** Whether a guest name can be used as a file name and an argv element (the schema's rule). */
export function isGuestName(name: string): name is GuestName {
  return GuestNameSchema.safeParse(name).success;
}

/**
 * How long each toolstack verb may run before it is killed. The 60 s default suits queries; `save`
 * writes the guest's whole memory to disk and `migrate` sends it over the network (minutes for a big
 * guest), and killing them half-way leaves a guest paused or half-moved. The systemd unit's
 * TimeoutStopSec is above the longest of these so a stop lets the step finish.
 */
export const TOOLSTACK_TIMEOUTS_MS = {
  pciAttach: 120_000,
  save: 20 * 60_000,
  restore: 20 * 60_000,
  migrate: 30 * 60_000,
} as const;

/**
 * Commands of one toolstack. Queries whose failure can be read safely return null (callers decide
 * how to fail safe); those whose failure cannot be papered over throw COMMAND_FAILED.
 */
export class XenToolstack {
  constructor(
    private readonly runner: CommandRunner,
    readonly name: ToolstackName,
  ) {}

  private async query(argv: readonly string[]): Promise<string | null> {
    const result = await this.runner.run(argv);
    return result.code === 0 ? result.stdout : null;
  }

  /**
   * Domains other than Domain-0; [] when there are none. Throws COMMAND_FAILED when the list cannot
   * be read (xend down): without it the agent cannot tell which devices guests hold.
   */
  async domains(): Promise<DomainListEntry[]> {
    return parseDomainList(await mustRun(this.runner, [this.name, 'list'])).filter((d) => d.name !== 'Domain-0');
  }

  /** Devices live in a guest. Throws COMMAND_FAILED when the list cannot be read: an empty list would be a lie that lets a device be given away twice. */
  async guestDevices(guest: GuestName): Promise<PciAddress[]> {
    return parseGuestPciList(await mustRun(this.runner, [this.name, 'pci-list', guest]));
  }

  /**
   * The host block devices a running guest uses now, as its backends show them: `xl|xm block-list`
   * gives each vbd's backend path, whose `params` in xenstore is the device (a disk attached with
   * `block-attach` is in no config file). Null when either command fails: the caller fails closed.
   */
  async blockDevices(guest: GuestName): Promise<string[] | null> {
    const list = await this.query([this.name, 'block-list', guest]);
    if (list === null) return null;
    const out: string[] = [];
    for (const backend of parseBlockList(list)) {
      const params = await this.query(['xenstore-read', `${backend}/params`]);
      if (params === null) return null;
      const path = params.trim();
      // A phy: backend's params is the device; file: backends (loop devices over image files) are not a controller's disks.
      if (path.startsWith('/dev/')) out.push(path);
    }
    return out;
  }

  /** Devices the toolstack can assign; null when the command failed. */
  async assignable(): Promise<PciAddress[] | null> {
    const text = await this.query(this.name === 'xl' ? ['xl', 'pci-assignable-list'] : ['xm', 'pci-list-assignable-devices']);
    return text === null ? null : parseAssignableList(text);
  }

  /** `virt_caps` words; null when `info` failed or has no such line. */
  async virtCaps(): Promise<string[] | null> {
    const text = await this.query([this.name, 'info']);
    return text === null ? null : parseVirtCaps(text);
  }

  async attach(guest: GuestName, device: PciAddress): Promise<void> {
    await mustRun(this.runner, [this.name, 'pci-attach', guest, device], { timeoutMs: TOOLSTACK_TIMEOUTS_MS.pciAttach });
  }

  async detach(guest: GuestName, device: PciAddress): Promise<void> {
    await mustRun(this.runner, [this.name, 'pci-detach', guest, device], { timeoutMs: TOOLSTACK_TIMEOUTS_MS.pciAttach });
  }

  async save(guest: GuestName, file: string): Promise<void> {
    await mustRun(this.runner, [this.name, 'save', guest, file], { timeoutMs: TOOLSTACK_TIMEOUTS_MS.save });
  }

  async restore(file: string): Promise<void> {
    await mustRun(this.runner, [this.name, 'restore', file], { timeoutMs: TOOLSTACK_TIMEOUTS_MS.restore });
  }

  async migrate(guest: GuestName, target: string): Promise<void> {
    await mustRun(this.runner, [this.name, 'migrate', guest, target], { timeoutMs: TOOLSTACK_TIMEOUTS_MS.migrate });
  }
}
