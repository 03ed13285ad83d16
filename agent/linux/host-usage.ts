import { basename } from 'node:path';
import type { PciAddress } from '../../schemas/pci-address.js';
import type { CommandRunner } from './command-runner.js';
import type { HostTree } from './host-tree.js';
import { lastBdf } from './pci-sysfs.js';

// ---------------------------------------------------------------------------------------------
// Parsers (pure): /proc/net/route, /proc/net/ipv6_route, `ip -o addr show`, /proc/mounts, /proc/swaps
// ---------------------------------------------------------------------------------------------

export interface Route {
  iface: string;
  /** CIDR, e.g. "10.0.2.0/24"; "default" for the default route. */
  destination: string;
}

function ipv4FromProcHex(hexLe: string): string {
  // /proc/net/route prints addresses in host byte order: little-endian on x86.
  const n = parseInt(hexLe, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

function prefixLength(maskHexLe: string): number {
  let n = parseInt(maskHexLe, 16) >>> 0;
  let bits = 0;
  while (n) {
    bits += n & 1;
    n >>>= 1;
  }
  return bits;
}

const RTF_UP = 0x1;
const RTF_REJECT = 0x200;

/** Usable routes of /proc/net/route; [] for empty text. */
export function parseProcNetRoute(text: string): Route[] {
  return text.split('\n').flatMap((line) => {
    const f = line.trim().split(/\s+/);
    const [iface, dest, , flags, , , , mask] = f;
    if (!iface || iface === 'Iface' || !dest || !flags || !mask || !/^[0-9A-Fa-f]{8}$/.test(dest)) return [];
    const fl = parseInt(flags, 16);
    if (!(fl & RTF_UP) || fl & RTF_REJECT) return [];
    const destination = dest === '00000000' && mask === '00000000' ? 'default' : `${ipv4FromProcHex(dest)}/${prefixLength(mask)}`;
    return [{ iface, destination }];
  });
}

/** Usable routes of /proc/net/ipv6_route except loopback and link-local ones; [] for empty text. */
export function parseIpv6Route(text: string): Route[] {
  return text.split('\n').flatMap((line) => {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) return [];
    const [dest, plen, , , , , , , flags, iface] = f;
    if (!dest || !plen || !flags || !iface || iface === 'lo') return [];
    const fl = parseInt(flags, 16);
    if (!(fl & RTF_UP) || fl & RTF_REJECT) return [];
    // fe80::/64 and multicast ff00::/8 exist on every up interface: they say nothing about use.
    if (dest.startsWith('fe80') || dest.startsWith('ff')) return [];
    const prefix = parseInt(plen, 16);
    if (prefix === 0 && /^0+$/.test(dest)) return [{ iface, destination: 'default' }];
    const groups = (dest.match(/.{4}/g) ?? []).map((g) => g.replace(/^0+(?=.)/, ''));
    return [{ iface, destination: `${groups.join(':')}/${prefix}` }];
  });
}

/**
 * Global addresses per interface from `ip -o addr show`; link- and host-scope addresses (fe80::,
 * 169.254/16, 127/8) are left out because every up interface has them. An empty map for empty output.
 */
export function parseIpAddr(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet6?\s+(\S+)(.*)$/.exec(line.trim());
    if (!m?.[1] || !m[2]) continue;
    const scope = /\bscope\s+(\S+)/.exec(m[3] ?? '')?.[1] ?? 'global';
    if (scope === 'link' || scope === 'host') continue;
    out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

function unescapeMount(field: string): string {
  // The kernel escapes space, tab, newline and backslash in /proc/mounts as octal.
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Block-device mounts of /proc/mounts (source under /dev); [] for empty text. */
export function parseProcMounts(text: string): { source: string; target: string }[] {
  return text.split('\n').flatMap((line) => {
    const [source, target] = line.trim().split(/\s+/);
    if (!source?.startsWith('/dev/') || !target) return [];
    return [{ source: unescapeMount(source), target: unescapeMount(target) }];
  });
}

/** Swap partitions of /proc/swaps (swap files live on a mounted filesystem, which already counts); [] for empty text. */
export function parseProcSwaps(text: string): string[] {
  return text.split('\n').flatMap((line) => {
    const [source, type] = line.trim().split(/\s+/);
    return source?.startsWith('/dev/') && type === 'partition' ? [unescapeMount(source)] : [];
  });
}

/** `/proc/net/vlan/config` (kernels without upper_* links): VLAN interface → its parent. */
export function parseVlanConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [vlan, , parent] = line.split('|').map((s) => s.trim());
    if (vlan && parent && !/^VLAN Dev name/i.test(vlan) && !/^Name-Type/i.test(vlan)) out.set(vlan, parent);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Network: why an interface is needed by the host
// ---------------------------------------------------------------------------------------------

export interface NetworkUse {
  /** Why the host needs this interface (or one stacked on it); null when idle. */
  reason(iface: string): Promise<string | null>;
}

/**
 * Reads the host's network facts once per scan. An interface is needed when it (or a bridge, bond or
 * VLAN stacked on it) carries the default route, is one of the agent's uplinks, or is up with a
 * global address or a route (rule 1). When `ip` fails, every up interface counts as in use: a device
 * is never called idle on facts that could not be read.
 */
export async function readNetworkUse(tree: HostTree, runner: CommandRunner, uplinks: readonly string[]): Promise<NetworkUse> {
  const routes = [...parseProcNetRoute((await tree.text('/proc/net/route')) ?? ''), ...parseIpv6Route((await tree.text('/proc/net/ipv6_route')) ?? '')];
  const ip = await runner.run(['ip', '-o', 'addr', 'show']);
  const addresses = ip.code === 0 ? parseIpAddr(ip.stdout) : null;
  const vlanParents = parseVlanConfig((await tree.text('/proc/net/vlan/config')) ?? '');

  const isUp = async (iface: string): Promise<boolean> => {
    const operstate = (await tree.text(`/sys/class/net/${iface}/operstate`))?.trim();
    // "unknown" is what drivers without link detection (and old kernels) report for an up interface.
    if (operstate === 'up' || operstate === 'unknown') return true;
    const flags = (await tree.text(`/sys/class/net/${iface}/flags`))?.trim();
    return flags !== undefined && (parseInt(flags, 16) & 0x1) === 1;
  };

  const uppers = async (iface: string): Promise<string[]> => {
    const base = `/sys/class/net/${iface}`;
    const found = new Set<string>();
    const master = (await tree.linkName(`${base}/master`)) ?? (await tree.linkName(`${base}/brport/bridge`));
    if (master) found.add(master);
    for (const entry of await tree.list(base)) if (entry.startsWith('upper_')) found.add(entry.slice('upper_'.length));
    for (const [vlan, parent] of vlanParents) if (parent === iface) found.add(vlan);
    return [...found];
  };

  const direct = async (iface: string): Promise<string | null> => {
    const own = routes.filter((r) => r.iface === iface);
    if (own.some((r) => r.destination === 'default')) return "carries the host's default route";
    if (uplinks.includes(iface)) return "carries the agent's own uplink (NATS)";
    if (!(await isUp(iface))) return null;
    if (addresses === null) return `is up and its addresses could not be read (ip -o addr show failed: ${ip.stderr.trim().split('\n').pop() ?? ''})`;
    const addrs = addresses.get(iface) ?? [];
    if (addrs.length > 0) return `is up with address ${addrs.join(', ')}`;
    if (own.length > 0) return `is up and carries routes to ${own.map((r) => r.destination).join(', ')}`;
    return null;
  };

  return {
    async reason(iface) {
      const seen = new Set<string>();
      const walk = async (name: string, depth: number): Promise<string | null> => {
        if (seen.has(name) || depth > 4) return null;
        seen.add(name);
        const why = await direct(name);
        if (why !== null) return name === iface ? `${iface} ${why}` : `${iface} is part of ${name}, which ${why}`;
        for (const upper of await uppers(name)) {
          const upperWhy = await walk(upper, depth + 1);
          if (upperWhy !== null) return upperWhy;
        }
        return null;
      };
      return walk(iface, 0);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Storage: which PCI controller holds a mounted filesystem or an active swap
// ---------------------------------------------------------------------------------------------

interface DiskUse {
  mounts: string[];
  swap: boolean;
}

/**
 * For each PCI controller that holds a mounted filesystem or an active swap partition, the sentence
 * saying so ("it controls sda, mounted on /"). Partitions map to their disk, device-mapper and md
 * devices to the disks under them. An empty map when nothing mounted sits on a PCI controller.
 */
export async function readStorageUse(tree: HostTree): Promise<Map<PciAddress, string>> {
  const blocks = await tree.list('/sys/block');

  const parentDisk = async (name: string): Promise<string | null> => {
    if (blocks.includes(name)) return name;
    // Partitions are directories of their disk (sda/sda1), each with a `dev` file.
    for (const disk of blocks) if (name.startsWith(disk) && (await tree.exists(`/sys/block/${disk}/${name}/dev`))) return disk;
    return null;
  };

  const byNumber = async (number: string | null): Promise<string | null> => {
    if (number === null) return null;
    for (const disk of blocks) {
      if ((await tree.text(`/sys/block/${disk}/dev`))?.trim() === number) return disk;
      for (const part of await tree.list(`/sys/block/${disk}`)) {
        if (part.startsWith(disk) && (await tree.text(`/sys/block/${disk}/${part}/dev`))?.trim() === number) return part;
      }
    }
    return null;
  };

  const blockName = async (source: string, mountPoint: string | null): Promise<string | null> => {
    // /dev/sda1; /dev/mapper/vg-root (a link to ../dm-0 under udev, a device node on RHEL 5); /dev/vg/lv.
    const real = await tree.realHostPath(source);
    for (const candidate of [real === null ? null : basename(real), basename(source)]) {
      if (candidate && (await parentDisk(candidate)) !== null) return candidate;
    }
    const byNode = await byNumber(await tree.blockDeviceNumber(source));
    if (byNode !== null) return byNode;
    if (source.startsWith('/dev/mapper/')) {
      const dmName = basename(source);
      for (const disk of blocks) if ((await tree.text(`/sys/block/${disk}/dm/name`))?.trim() === dmName) return disk;
    }
    // `/dev/root` (a kernel booted without an initramfs) names no node: the mounted filesystem's own
    // device number says which disk it is.
    return mountPoint === null ? null : byNumber(await tree.fileSystemDeviceNumber(mountPoint));
  };

  const disksUnder = async (name: string, depth: number): Promise<string[]> => {
    const disk = depth > 8 ? null : await parentDisk(name);
    if (disk === null) return [];
    const slaves = await tree.list(`/sys/block/${disk}/slaves`);
    if (slaves.length === 0) return [disk];
    return (await Promise.all(slaves.map((s) => disksUnder(s, depth + 1)))).flat();
  };

  const use = new Map<string, DiskUse>();
  const note = async (source: string, mountPoint: string | null, apply: (u: DiskUse) => void): Promise<void> => {
    const name = await blockName(source, mountPoint);
    if (name === null) return;
    for (const disk of await disksUnder(name, 0)) {
      const u = use.get(disk) ?? { mounts: [], swap: false };
      apply(u);
      use.set(disk, u);
    }
  };
  for (const { source, target } of parseProcMounts((await tree.text('/proc/mounts')) ?? '')) {
    await note(source, target, (u) => {
      if (!u.mounts.includes(target)) u.mounts.push(target);
    });
  }
  for (const source of parseProcSwaps((await tree.text('/proc/swaps')) ?? '')) {
    await note(source, null, (u) => {
      u.swap = true;
    });
  }

  const byController = new Map<PciAddress, string[]>();
  for (const [disk, u] of use) {
    const bdf = lastBdf(await tree.realHostPath(`/sys/block/${disk}/device`));
    if (!bdf) continue;
    const what = [...(u.mounts.length > 0 ? [`mounted on ${u.mounts.join(' and ')}`] : []), ...(u.swap ? ['used as swap'] : [])].join(' and ');
    byController.set(bdf, [...(byController.get(bdf) ?? []), `${disk}, ${what}`]);
  }
  return new Map([...byController].map(([bdf, entries]) => [bdf, `it controls ${entries.join('; ')}`]));
}
