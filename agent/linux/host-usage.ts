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
/** Interfaces the toolstack or a hypervisor makes for guests: Xen's `vifD.N` and `tapD.N`, KVM's `vnetN` and `macvtapN`. */
const GUEST_INTERFACE = /^(?:vif\d+\.\d+|tap\d+\.\d+|vnet\d+|macvtap\d+)$/;

/**
 * The guest behind a guest interface: libvirt's domain XML names its `vnetN` (`owners`); a Xen
 * backend interface carries its domain id (`vif2.0` → domain 2).
 */
function guestOf(iface: string, domains: ReadonlyMap<number, string>, owners: ReadonlyMap<string, string>): string | null {
  const owner = owners.get(iface);
  if (owner !== undefined) return owner;
  const m = /^(?:vif|tap)(\d+)\./.exec(iface);
  return m ? (domains.get(Number(m[1])) ?? null) : null;
}

export async function readNetworkUse(
  tree: HostTree,
  runner: CommandRunner,
  uplinks: readonly string[],
  domains: ReadonlyMap<number, string> = new Map(),
  owners: ReadonlyMap<string, string> = new Map(),
): Promise<NetworkUse> {
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

  // Open vSwitch: every port's `master` is the datapath device `ovs-system`, whatever its bridge, and
  // OVS has no brif/: only ovs-vsctl knows which bridge a port is on and what else that bridge carries.
  // Asked once per scan; when it cannot answer, an OVS port counts as in use (fail closed).
  let ovs: Promise<{ bridges: Map<string, string[]> } | { error: string }> | null = null;
  const ovsBridges = (): Promise<{ bridges: Map<string, string[]> } | { error: string }> =>
    (ovs ??= (async () => {
      const lastLine = (text: string, code: number): string => text.trim().split('\n').pop() || `exit ${code}`;
      const brs = await runner.run(['ovs-vsctl', 'list-br']);
      if (brs.code !== 0) return { error: `ovs-vsctl list-br failed: ${lastLine(brs.stderr, brs.code)}` };
      const bridges = new Map<string, string[]>();
      for (const br of brs.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '')) {
        const ports = await runner.run(['ovs-vsctl', 'list-ports', br]);
        if (ports.code !== 0) return { error: `ovs-vsctl list-ports ${br} failed: ${lastLine(ports.stderr, ports.code)}` };
        bridges.set(br, ports.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== ''));
      }
      return { bridges };
    })());
  const isOvsPort = async (iface: string): Promise<boolean> => (await tree.linkName(`/sys/class/net/${iface}/master`)) === 'ovs-system';

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

  // A bridge's ports that are guests' interfaces: hiding a NIC under it cuts those guests off, even
  // when neither the NIC nor the bridge has a dom0 address.
  const guestPorts = async (name: string): Promise<string[]> => (await tree.list(`/sys/class/net/${name}/brif`)).filter((p) => GUEST_INTERFACE.test(p));
  const named = (ports: readonly string[]): string =>
    ports
      .map((p) => {
        const guest = guestOf(p, domains, owners);
        return guest === null ? p : `${p} (${guest})`;
      })
      .join(', ');

  return {
    async reason(iface) {
      const seen = new Set<string>();
      const walk = async (name: string, depth: number): Promise<string | null> => {
        if (seen.has(name) || depth > 4) return null;
        seen.add(name);
        // A macvtap is a guest's NIC on the wire of its lower device, whatever it was renamed to: the
        // kernel shows its tap character device as `macvtap/tapN`.
        if (name !== iface && (GUEST_INTERFACE.test(name) || (await tree.exists(`/sys/class/net/${name}/macvtap`)))) return `${iface} carries ${named([name])}, a guest's interface`;
        const why = await direct(name);
        if (why !== null) return name === iface ? `${iface} ${why}` : `${iface} is part of ${name}, which ${why}`;
        const ports = await guestPorts(name);
        if (ports.length > 0) return name === iface ? `${iface} is a bridge carrying guests' interfaces ${named(ports)}` : `${iface} is a port of bridge ${name}, which carries guests' interfaces ${named(ports)}`;
        if (await isOvsPort(name)) {
          const found = await ovsBridges();
          if ('error' in found) return `${iface} is a port of Open vSwitch and its bridge cannot be read (${found.error}), so it counts as in use`;
          const bridge = [...found.bridges].find(([br, ports]) => br === name || ports.includes(name));
          if (bridge === undefined) return `${iface} is a port of Open vSwitch that no bridge ovs-vsctl lists, so it counts as in use`;
          const [br, ports] = bridge;
          const guests = ports.filter((p) => GUEST_INTERFACE.test(p));
          if (guests.length > 0) return `${iface} is a port of Open vSwitch bridge ${br}, which carries guests' interfaces ${named(guests)}`;
          // The bridge's own (internal) interface may carry the host's addresses.
          if (br !== name) {
            const brWhy = await walk(br, depth + 1);
            if (brWhy !== null) return brWhy;
          }
        }
        for (const upper of await uppers(name)) {
          // A macvlan or VLAN moved into a container's network namespace keeps its `upper_` link here,
          // but the host's /sys/class/net no longer shows it: what runs there cannot be seen, so it counts.
          if (!(await tree.exists(`/sys/class/net/${upper}`))) return `${iface} carries ${upper}, which is in another network namespace (a container's or a guest's), so it counts as in use`;
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
/** A guest's block device as its config names it (`phy:/dev/guests/vm-hvm`). */
export interface GuestDisk {
  guest: string;
  path: string;
}

/** The `phy:` disks of an xm/xl guest config (`phy:sdb1` means /dev/sdb1); [] when it has none. */
export function guestPhyDisks(guest: string, config: string): GuestDisk[] {
  return [...config.matchAll(/["'\s,[]phy:([^,"'\s\]]+)/g)].flatMap((m) => {
    const raw = m[1] ?? '';
    return raw === '' ? [] : [{ guest, path: raw.startsWith('/') ? raw : `/dev/${raw}` }];
  });
}

/** LVM's device-mapper name `vg-lv` (a '-' inside either is doubled) → [vg, lv]; null for another name. */
export function splitLvmName(dmName: string): [vg: string, lv: string] | null {
  const m = /^((?:[^-]|--)+)-((?:[^-]|--)+)$/.exec(dmName);
  return m ? [(m[1] ?? '').replace(/--/g, '-'), (m[2] ?? '').replace(/--/g, '-')] : null;
}

export interface StorageUse {
  /** Why the host or its guests need each storage controller. */
  byController: Map<PciAddress, string>;
  /** Guests' disks that could not be traced to a controller: then every storage controller counts as in use. */
  unmapped: string[];
}

/** The vdev paths per pool of `zpool status -P` ("/dev/sdc1", "/dev/disk/by-id/…"); an empty map for empty output. */
export function parseZpoolStatus(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let pool: string | null = null;
  for (const line of text.split('\n')) {
    const head = /^\s*pool:\s*(\S+)/.exec(line);
    if (head?.[1]) {
      pool = head[1];
      out.set(pool, []);
      continue;
    }
    const vdev = /^\s+(\/\S+)\s+\S+/.exec(line);
    if (pool !== null && vdev?.[1]) out.get(pool)?.push(vdev[1]);
  }
  return out;
}

export async function readStorageUse(tree: HostTree, guestDisks: readonly GuestDisk[] = [], runner?: CommandRunner): Promise<StorageUse> {
  const blocks = await tree.list('/sys/block');
  // Native NVMe multipath: the head (nvme0n1) is a virtual disk whose `multipath/` links name the
  // hidden per-controller paths (nvme0c0n1); what holds or mounts the head uses every path's controller.
  const headOf = new Map<string, string>();
  const pathsOf = new Map<string, string[]>();
  for (const disk of blocks) {
    const paths = await tree.list(`/sys/block/${disk}/multipath`);
    if (paths.length === 0) continue;
    pathsOf.set(disk, paths);
    for (const p of paths) headOf.set(p, disk);
  }

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
    const slaves = [...(await tree.list(`/sys/block/${disk}/slaves`)), ...(pathsOf.get(disk) ?? [])];
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

  const byController = new Map<PciAddress, Map<string, string[]>>();
  const add = async (disk: string, what: string): Promise<void> => {
    const bdf = lastBdf(await tree.realHostPath(`/sys/block/${disk}/device`));
    if (!bdf) return;
    const disks = byController.get(bdf) ?? new Map<string, string[]>();
    disks.set(disk, [...(disks.get(disk) ?? []), what]);
    byController.set(bdf, disks);
  };
  for (const [disk, u] of use) {
    await add(disk, [...(u.mounts.length > 0 ? [`mounted on ${u.mounts.join(' and ')}`] : []), ...(u.swap ? ['used as swap'] : [])].join(' and '));
  }

  // What holds a disk or its partitions (LVM, md, multipath, dm-crypt): the data is in use by whatever
  // sits on top, mounted in dom0 or not.
  const describeHolder = async (holder: string): Promise<{ kind: string; name: string }> => {
    const dmName = (await tree.text(`/sys/block/${holder}/dm/name`))?.trim();
    const uuid = (await tree.text(`/sys/block/${holder}/dm/uuid`))?.trim() ?? '';
    if (dmName !== undefined && uuid.startsWith('LVM-')) {
      const split = splitLvmName(dmName);
      if (split) return { kind: `a physical volume of LVM volume group ${split[0]}`, name: split[1] };
    }
    if (dmName !== undefined && uuid.startsWith('mpath-')) return { kind: 'a path of multipath device', name: dmName };
    if (dmName !== undefined) return { kind: 'held by device-mapper device', name: dmName };
    if (/^md\d+/.test(holder)) return { kind: 'a member of RAID array', name: holder };
    return { kind: 'held by', name: holder };
  };
  for (const disk of blocks) {
    const head = pathsOf.has(disk);
    if (!head && !lastBdf(await tree.realHostPath(`/sys/block/${disk}/device`))) continue;
    const holders = [...(await tree.list(`/sys/block/${disk}/holders`))];
    for (const part of await tree.list(`/sys/block/${disk}`)) {
      if (part.startsWith(disk)) holders.push(...(await tree.list(`/sys/block/${disk}/${part}/holders`)));
    }
    const kinds = new Map<string, string[]>();
    for (const h of [...new Set(holders)]) {
      const { kind, name } = await describeHolder(h);
      kinds.set(kind, [...(kinds.get(kind) ?? []), name]);
    }
    for (const [kind, names] of kinds) {
      const what = kind.startsWith('a physical volume') ? `${kind} (logical volumes ${names.join(', ')})` : `${kind} ${names.join(', ')}`;
      for (const target of head ? (pathsOf.get(disk) ?? []) : [disk]) await add(target, what);
    }
  }

  const unmapped: string[] = [];
  const member = async (name: string, what: string, unmappedAs: string): Promise<void> => {
    const block = await blockName(name.startsWith('/') ? name : `/dev/${name}`, null);
    const disks = block === null ? [] : await disksUnder(block, 0);
    if (disks.length === 0) unmapped.push(unmappedAs);
    for (const disk of disks) await add(disk, what);
  };

  // ZFS opens its vdevs without holders/ links and mounts datasets by name, not by device: only
  // `zpool status -P` names the disks of the pools the kernel module has imported. A pool whose
  // vdevs cannot be listed makes every storage controller count as in use (fail closed).
  const pools = [];
  for (const p of await tree.list('/proc/spl/kstat/zfs')) if (await tree.exists(`/proc/spl/kstat/zfs/${p}/state`)) pools.push(p);
  if (pools.length > 0) {
    const status = runner ? await runner.run(['zpool', 'status', '-P']) : null;
    const vdevs = status?.code === 0 ? parseZpoolStatus(status.stdout) : new Map<string, string[]>();
    for (const pool of pools) {
      const paths = vdevs.get(pool) ?? [];
      if (paths.length === 0) unmapped.push(`ZFS pool ${pool} (its vdevs could not be listed: zpool status -P ${status === null ? 'was not run' : `exited ${status.code}${status.stderr.trim() ? `: ${status.stderr.trim().split('\n').pop() ?? ''}` : ''}`})`);
      for (const path of paths) await member(path, `a member of ZFS pool ${pool}`, `ZFS pool ${pool}'s vdev ${path}`);
    }
  }

  // btrfs: /sys/fs/btrfs/<uuid> exists while the filesystem is mounted and links each member device;
  // /proc/mounts names only one of them.
  for (const uuid of await tree.list('/sys/fs/btrfs')) {
    const devices = await tree.list(`/sys/fs/btrfs/${uuid}/devices`);
    const label = (await tree.text(`/sys/fs/btrfs/${uuid}/label`))?.trim() || uuid;
    for (const dev of devices) await member(dev, `a member of mounted btrfs filesystem ${label}`, `btrfs filesystem ${label}'s device ${dev}`);
  }

  // Guests' phy: disks: a controller under one serves a running or startable guest. One that cannot
  // be traced to a disk makes every storage controller count as in use (fail closed).
  const guestsByDisk = new Map<string, Set<string>>();
  for (const { guest, path } of guestDisks) {
    const name = await blockName(path, null);
    const disks = name === null ? [] : await disksUnder(name, 0);
    if (disks.length === 0) unmapped.push(`guest ${guest}'s phy: disk ${path}`);
    for (const disk of disks) guestsByDisk.set(disk, new Set([...(guestsByDisk.get(disk) ?? []), guest]));
  }
  for (const [disk, guests] of guestsByDisk) await add(disk, `backing phy: disks of guest${guests.size > 1 ? 's' : ''} ${[...guests].join(', ')}`);
  const label = (disk: string): string => (headOf.has(disk) ? `${disk} (a path of NVMe multipath head ${headOf.get(disk) ?? ''})` : disk);
  const sentence = (disks: Map<string, string[]>): string => `it controls ${[...disks].map(([disk, whats]) => `${label(disk)}, ${whats.join(', ')}`).join('; ')}`;
  return { byController: new Map([...byController].map(([bdf, disks]) => [bdf, sentence(disks)])), unmapped };
}

// ---------------------------------------------------------------------------------------------
// GPUs: device nodes that processes hold open
// ---------------------------------------------------------------------------------------------

/**
 * For each GPU whose device nodes (`/dev/dri/card*`, `/dev/dri/renderD*`, `/dev/nvidia<minor>`) a
 * process holds open, the sentence naming the processes: unbinding it under an X server or a CUDA
 * job crashes them or the driver. `/dev/nvidiactl` and the other shared nvidia nodes count for every
 * GPU of that driver. Only when a node exists are `/proc/*\/fd` read; then a process whose fds cannot
 * be read makes every GPU with a node count as in use (fail closed). An empty map without nodes.
 */
export async function readOpenGpuNodes(tree: HostTree): Promise<Map<PciAddress, string>> {
  const owners = new Map<string, PciAddress[]>();
  const own = (node: string, bdf: PciAddress): void => {
    owners.set(node, [...new Set([...(owners.get(node) ?? []), bdf])]);
  };
  for (const minor of await tree.list('/sys/class/drm')) {
    if (!/^(?:card|renderD)\d+$/.test(minor)) continue;
    const bdf = lastBdf(await tree.realHostPath(`/sys/class/drm/${minor}/device`));
    if (bdf) own(`/dev/dri/${minor}`, bdf);
  }
  const nvidia: PciAddress[] = [];
  for (const entry of await tree.list('/proc/driver/nvidia/gpus')) {
    const bdf = lastBdf(`/${entry}`);
    if (!bdf) continue;
    nvidia.push(bdf);
    const minor = /Device Minor:\s*(\d+)/.exec((await tree.text(`/proc/driver/nvidia/gpus/${entry}/information`)) ?? '')?.[1];
    if (minor !== undefined) own(`/dev/nvidia${minor}`, bdf);
  }
  for (const shared of ['nvidiactl', 'nvidia-modeset', 'nvidia-uvm']) for (const bdf of nvidia) own(`/dev/${shared}`, bdf);
  const present = [];
  for (const node of owners.keys()) if (await tree.exists(node)) present.push(node);
  if (present.length === 0) return new Map();

  const holders = new Map<PciAddress, Map<string, Set<string>>>();
  const unreadable: string[] = [];
  for (const pid of (await tree.list('/proc')).filter((p) => /^\d+$/.test(p))) {
    const fds = await tree.listReadable(`/proc/${pid}/fd`);
    if (fds === null) {
      unreadable.push(pid);
      continue;
    }
    for (const fd of fds) {
      const node = await tree.realHostPath(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (node === null || !owners.has(node)) continue;
      const comm = (await tree.text(`/proc/${pid}/comm`))?.trim();
      for (const bdf of owners.get(node) ?? []) {
        const byNode = holders.get(bdf) ?? new Map<string, Set<string>>();
        byNode.set(node, new Set([...(byNode.get(node) ?? []), comm ? `${pid} (${comm})` : pid]));
        holders.set(bdf, byNode);
      }
    }
  }
  const out = new Map<PciAddress, string>();
  for (const [bdf, byNode] of holders) {
    out.set(bdf, [...byNode].map(([node, pids]) => `its device node ${node} is open by process${pids.size > 1 ? 'es' : ''} ${[...pids].join(', ')}`).join('; '));
  }
  if (unreadable.length > 0) {
    for (const node of present) {
      for (const bdf of owners.get(node) ?? []) {
        if (!out.has(bdf)) out.set(bdf, `its device node ${node} exists and the open files of process${unreadable.length > 1 ? 'es' : ''} ${unreadable.slice(0, 5).join(', ')} cannot be read, so it counts as in use`);
      }
    }
  }
  return out;
}
