import type { GuestName } from '../../schemas/ids.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { type GuestState, OsRelease } from '../../schemas/inventory.js';
import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../../schemas/pci-address.js';
import { type CommandRunner, commandFailed, mustRun } from './command-runner.js';
import { UNKNOWN_OS } from './host-release.js';
import { TOOLSTACK_TIMEOUTS_MS } from './xen-toolstack.js';

/** libvirt's connection for the host's system domains: the one a KVM host's guests live in. */
export const LIBVIRT_URI = 'qemu:///system';
/** Where the agent keeps the hostdev XML it hands to `virsh attach-device` (virsh takes a file). */
export const HOSTDEV_XML_DIR = '/var/lib/ptctl/hostdev';

export interface LibvirtDomain {
  name: string;
  /** Domain id while it runs; null when it is shut off. */
  id: number | null;
  state: GuestState;
}

/**
 * `virsh list --all`: " Id   Name   State" rows, "-" as the id of a domain that is shut off. Rows it
 * cannot read are skipped; [] for a host without domains.
 */
export function parseVirshList(text: string): LibvirtDomain[] {
  const out: LibvirtDomain[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+|-)\s+(\S+)\s+(.+?)\s*$/.exec(line);
    if (!m?.[1] || !m[2] || !m[3]) continue;
    out.push({ name: m[2], id: m[1] === '-' ? null : Number(m[1]), state: domainState(m[3]) });
  }
  return out;
}

/** libvirt's state words (`virsh domstate`) → the inventory's three states. */
export function domainState(text: string): GuestState {
  const s = text.trim().toLowerCase();
  if (s === 'paused' || s === 'pmsuspended') return 'paused';
  if (s === 'running' || s === 'idle' || s === 'blocked' || s === 'in shutdown') return 'running';
  return 'stopped';
}

/** Attributes of one XML start tag (`domain='0x0000' bus="0x01"`). */
function attributes(tag: string): Map<string, string> {
  return new Map([...tag.matchAll(/([A-Za-z_:][\w:.-]*)\s*=\s*(?:'([^']*)'|"([^"]*)")/g)].map((m) => [m[1] ?? '', m[2] ?? m[3] ?? '']));
}

/** The elements named `name` in a document, with their start tag and body (libvirt's XML nests no element in one of the same name). */
function elements(xml: string, name: string): { attrs: Map<string, string>; body: string }[] {
  const re = new RegExp(`<${name}\\b([^>]*?)(?:/>|>([\\s\\S]*?)</${name}>)`, 'g');
  return [...xml.matchAll(re)].map((m) => ({ attrs: attributes(m[1] ?? ''), body: m[2] ?? '' }));
}

/** `<address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/>` → 0000:01:00.1; null for another address. */
function pciAddressOf(attrs: Map<string, string>): PciAddress | null {
  const field = (k: string): number | null => {
    const v = attrs.get(k);
    return v === undefined || !/^(0x)?[0-9a-fA-F]+$/.test(v) ? null : parseInt(v, 16);
  };
  const [domain, bus, slot, fn] = [field('domain') ?? 0, field('bus'), field('slot'), field('function')];
  if (bus === null || slot === null || fn === null) return null;
  const text = `${domain.toString(16).padStart(4, '0')}:${bus.toString(16).padStart(2, '0')}:${slot.toString(16).padStart(2, '0')}.${fn.toString(16)}`;
  const parsed = PciAddressSchema.safeParse(text);
  return parsed.success ? parsed.data : null;
}

/** Host PCI devices a domain XML gives its guest (`<hostdev type='pci'>`'s `<source><address/>`), sorted. */
export function hostdevsOf(xml: string): PciAddress[] {
  const out: PciAddress[] = [];
  for (const hostdev of elements(xml, 'hostdev')) {
    if (hostdev.attrs.get('type') !== 'pci') continue;
    const source = elements(hostdev.body, 'source')[0];
    const address = source ? elements(source.body, 'address')[0] : undefined;
    const bdf = address ? pciAddressOf(address.attrs) : null;
    if (bdf) out.push(bdf);
  }
  return [...new Set(out)].sort(compareBdf);
}

/** Host interfaces a running domain's NICs use (`<interface><target dev='vnet0'/>`). */
export function interfacesOf(xml: string): string[] {
  return elements(xml, 'interface').flatMap((i) => elements(i.body, 'target').flatMap((t) => t.attrs.get('dev') ?? []));
}

/** Host block devices a domain's disks are (`<disk type='block'><source dev='/dev/…'/>`). */
export function blockDisksOf(xml: string): string[] {
  return elements(xml, 'disk')
    .filter((d) => d.attrs.get('type') === 'block')
    .flatMap((d) => elements(d.body, 'source').flatMap((s) => s.attrs.get('dev') ?? []));
}

/**
 * The guest OS virt-install and virt-manager record (`<libosinfo:os id='http://redhat.com/rhel/5.4'/>`):
 * distribution and version from the id's last two path parts; unknown 0 without one.
 */
export function guestOsOf(xml: string): OsRelease {
  const id = /<libosinfo:os\b[^>]*\bid\s*=\s*['"]([^'"]+)['"]/.exec(xml)?.[1];
  const m = id ? /\/([a-z][a-z0-9-]*)\/(\d+(?:\.\d+)*)\/?$/i.exec(id) : null;
  if (!m) return UNKNOWN_OS;
  const parsed = OsRelease.safeParse({ name: (m[1] ?? '').toLowerCase(), version: m[2] });
  return parsed.success ? parsed.data : UNKNOWN_OS;
}

/**
 * The hostdev ptctl attaches: `managed='no'`, because ptctl binds the device itself (verified by state,
 * with an undo) and libvirt's managed mode would rebind it behind ptctl's back at detach.
 */
export function hostdevXml(bdf: PciAddress): string {
  const [domain = '0000', bus = '00', slotFn = '00.0'] = bdf.split(':');
  const [slot = '00', fn = '0'] = slotFn.split('.');
  return [
    "<hostdev mode='subsystem' type='pci' managed='no'>",
    '  <source>',
    `    <address domain='0x${domain}' bus='0x${bus}' slot='0x${slot}' function='0x${fn}'/>`,
    '  </source>',
    '</hostdev>',
    '',
  ].join('\n');
}

/** How long a live detach may take to show in the domain's XML (the guest acknowledges the unplug). */
export const LIVE_DETACH_WAIT_MS = 30_000;

/**
 * libvirt through `virsh -c qemu:///system` with argument arrays. Queries whose failure must not pass
 * for "nothing there" throw COMMAND_FAILED; the caller judges every effect by state afterwards.
 */
export class LibvirtToolstack {
  constructor(
    private readonly runner: CommandRunner,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  private virsh(...args: string[]): string[] {
    return ['virsh', '-c', LIBVIRT_URI, ...args];
  }

  /** Every defined or running domain. Throws COMMAND_FAILED when libvirt cannot list them. */
  async domains(): Promise<LibvirtDomain[]> {
    return parseVirshList(await mustRun(this.runner, this.virsh('list', '--all')));
  }

  /** The running domain's XML (what QEMU has now). Throws COMMAND_FAILED when it cannot be read. */
  async liveXml(guest: GuestName): Promise<string> {
    return mustRun(this.runner, this.virsh('dumpxml', guest));
  }

  /** The persistent definition (what the next start uses); null when the domain is not defined, with the reason otherwise. */
  async configXml(guest: GuestName): Promise<{ xml: string } | { problem: string } | null> {
    const argv = this.virsh('dumpxml', '--inactive', guest);
    const result = await this.runner.run(argv);
    if (result.code === 0) return { xml: result.stdout };
    if (/failed to get domain|Domain not found/i.test(result.stderr)) return null;
    return { problem: commandFailed(argv, result).message };
  }

  /** `virsh attach-device DOM FILE --live|--config`. */
  async attach(guest: GuestName, file: string, where: 'live' | 'config'): Promise<void> {
    await mustRun(this.runner, this.virsh('attach-device', guest, file, `--${where}`), { timeoutMs: TOOLSTACK_TIMEOUTS_MS.pciAttach });
  }

  /**
   * `virsh detach-device DOM FILE --live|--config`. A live detach returns once QEMU was asked ("detach
   * request sent"): the guest acknowledges later, so this waits until the device has left the live XML.
   */
  async detach(guest: GuestName, file: string, bdf: PciAddress, where: 'live' | 'config'): Promise<void> {
    await mustRun(this.runner, this.virsh('detach-device', guest, file, `--${where}`), { timeoutMs: TOOLSTACK_TIMEOUTS_MS.pciAttach });
    if (where === 'config') return;
    for (let waited = 0; hostdevsOf(await this.liveXml(guest)).includes(bdf); waited += 500) {
      if (waited >= LIVE_DETACH_WAIT_MS) {
        throw new PtcError(ErrorCode.COMMAND_FAILED, `${guest} did not release ${bdf} within ${LIVE_DETACH_WAIT_MS / 1000} s of the unplug request; the guest must acknowledge it (is its OS running and does it handle PCI hotplug?)`);
      }
      await this.sleep(500);
    }
  }

  /**
   * Whether acpiphp is loaded in the guest, asked through the QEMU guest agent (its sysfs directory
   * `/sys/module/acpiphp` exists only when it is loaded as a module, or built in). Null when the guest
   * agent does not answer: nobody can tell.
   */
  async acpiphpLoaded(guest: GuestName): Promise<boolean | null> {
    const open = await this.runner.run(this.virsh('qemu-agent-command', guest, JSON.stringify({ execute: 'guest-file-open', arguments: { path: '/sys/module/acpiphp/uevent', mode: 'r' } })));
    if (open.code !== 0) return /No such file or directory/i.test(open.stderr) ? false : null;
    const handle = /"return"\s*:\s*(\d+)/.exec(open.stdout)?.[1];
    if (handle !== undefined) await this.runner.run(this.virsh('qemu-agent-command', guest, JSON.stringify({ execute: 'guest-file-close', arguments: { handle: Number(handle) } })));
    return true;
  }

  async save(guest: GuestName, file: string): Promise<void> {
    await mustRun(this.runner, this.virsh('save', guest, file), { timeoutMs: TOOLSTACK_TIMEOUTS_MS.save });
  }

  async restore(file: string): Promise<void> {
    await mustRun(this.runner, this.virsh('restore', file), { timeoutMs: TOOLSTACK_TIMEOUTS_MS.restore });
  }

  async migrate(guest: GuestName, target: string): Promise<void> {
    await mustRun(this.runner, this.virsh('migrate', '--live', '--persistent', '--undefinesource', guest, `qemu+ssh://${target}/system`), { timeoutMs: TOOLSTACK_TIMEOUTS_MS.migrate });
  }
}
