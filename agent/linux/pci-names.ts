import type { HostTree } from './host-tree.js';

/** Where distributions keep the PCI ID database (hwdata on RHEL, pciutils/pci.ids on Debian). */
const PCI_IDS_PATHS = ['/usr/share/hwdata/pci.ids', '/usr/share/misc/pci.ids', '/usr/share/pci.ids'];

const CLASS_NAMES: Readonly<Record<string, string>> = {
  '0100': 'SCSI storage controller',
  '0101': 'IDE interface',
  '0104': 'RAID bus controller',
  '0106': 'SATA controller',
  '0107': 'Serial Attached SCSI controller',
  '0108': 'Non-Volatile memory controller',
  '0200': 'Ethernet controller',
  '0207': 'Infiniband controller',
  '0280': 'Network controller',
  '0300': 'VGA compatible controller',
  '0302': '3D controller',
  '0403': 'Audio device',
  '0600': 'Host bridge',
  '0601': 'ISA bridge',
  '0604': 'PCI bridge',
  '0c03': 'USB controller',
  '0c04': 'Fibre Channel',
  '0c05': 'SMBus',
};

export interface PciIds {
  vendors: Map<string, string>;
  devices: Map<string, string>;
}

/** Vendor and device names from a pci.ids text (subsystem and class sections are skipped). */
export function parsePciIds(text: string): PciIds {
  const vendors = new Map<string, string>();
  const devices = new Map<string, string>();
  let vendor: string | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('C ')) break;
    const v = /^([0-9a-f]{4})\s+(.+)$/.exec(line);
    if (v?.[1] && v[2]) {
      vendor = v[1];
      vendors.set(vendor, v[2].trim());
      continue;
    }
    const d = /^\t([0-9a-f]{4})\s+(.+)$/.exec(line);
    if (d?.[1] && d[2] && vendor) devices.set(`${vendor}:${d[1]}`, d[2].trim());
  }
  return { vendors, devices };
}

/**
 * Human names for devices: "Intel Corporation 82540EM Gigabit Ethernet Controller" when the host has
 * a pci.ids, else "Ethernet controller 8086:100e". The database is read once per agent.
 */
export class PciNames {
  private ids: Promise<PciIds | null> | null = null;

  constructor(private readonly tree: HostTree) {}

  private load(): Promise<PciIds | null> {
    this.ids ??= (async () => {
      for (const path of PCI_IDS_PATHS) {
        const text = await this.tree.text(path);
        if (text !== null) return parsePciIds(text);
      }
      return null;
    })();
    return this.ids;
  }

  /** A description of at most 200 characters; never empty. */
  async describe(vendor: string, device: string, pciClass: string): Promise<string> {
    const ids = await this.load();
    const vendorName = ids?.vendors.get(vendor);
    const deviceName = ids?.devices.get(`${vendor}:${device}`);
    const text = vendorName && deviceName ? `${vendorName} ${deviceName}` : `${CLASS_NAMES[pciClass] ?? `PCI class ${pciClass} device`} ${vendor}:${device}`;
    return text.slice(0, 200);
  }
}
