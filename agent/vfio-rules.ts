import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import type { HideConfig } from './backend.js';

/**
 * How a KVM host keeps a device for vfio-pci across reboots: a udev rule per device that sets its
 * `driver_override` as the device appears, before udev loads the host driver by modalias (rules run
 * in file-name order; 60 is before systemd's 80-drivers.rules), and loads vfio-pci, which then probes
 * it. driverctl does the same per device. The alternative, `options vfio-pci ids=VENDOR:DEVICE` with a
 * softdep, claims every device with that id: the second, identical NIC that carries the host's
 * traffic goes too, which is what users of id-based setups report. So ptctl never writes ids.
 */
export const VFIO_RULES_FILE = '/etc/udev/rules.d/60-ptctl-vfio-pci.rules';
/** driverctl's saved overrides, one file per device (`pci-0000:01:00.0` holding a driver name); its rule runs after ours. */
export const DRIVERCTL_DIR = '/etc/driverctl.d';

const BEGIN = '# BEGIN ptctl managed block: devices kept for vfio-pci; ptctl rewrites these lines, edit them with ptctl';
const END = '# END ptctl managed block';
const RULE = /^ACTION=="add", SUBSYSTEM=="pci", KERNEL=="([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])", ATTR\{driver_override\}="vfio-pci", RUN\{builtin\}\+="kmod load vfio-pci"$/;

export function vfioRule(bdf: PciAddress): string {
  return `ACTION=="add", SUBSYSTEM=="pci", KERNEL=="${bdf}", ATTR{driver_override}="vfio-pci", RUN{builtin}+="kmod load vfio-pci"`;
}

function malformed(message: string): PtcError {
  return new PtcError(ErrorCode.COMMAND_FAILED, `${VFIO_RULES_FILE} cannot be edited safely: ${message}`);
}

export interface VfioRules {
  readonly before: string;
  readonly after: string;
  readonly hidden: readonly PciAddress[];
}

/** Splits the file around ptctl's block; text outside it is kept byte for byte. */
export function parseVfioRules(text: string): VfioRules {
  const lines = text.split('\n');
  const beginIdx = lines.indexOf(BEGIN);
  if (beginIdx < 0) {
    if (lines.includes(END)) throw malformed('an END marker without its BEGIN marker');
    return { before: text, after: '', hidden: [] };
  }
  const endIdx = lines.indexOf(END, beginIdx + 1);
  if (endIdx < 0) throw malformed('the BEGIN marker has no END marker');
  const hidden: PciAddress[] = [];
  for (const line of lines.slice(beginIdx + 1, endIdx)) {
    const m = RULE.exec(line);
    const parsed = PciAddressSchema.safeParse(m?.[1]);
    if (!parsed.success) throw malformed(`unexpected line inside the ptctl block: ${JSON.stringify(line)}`);
    hidden.push(parsed.data);
  }
  const before = lines.slice(0, beginIdx).join('\n') + (beginIdx > 0 ? '\n' : '');
  return { before, after: lines.slice(endIdx + 1).join('\n'), hidden: [...new Set(hidden)].sort(compareBdf) };
}

export function renderVfioRules(rules: VfioRules): string {
  if (rules.hidden.length === 0) return rules.before + rules.after;
  const block = [BEGIN, ...[...new Set(rules.hidden)].sort(compareBdf).map(vfioRule), END].join('\n');
  return `${rules.before}${block}\n${rules.after}`;
}

/** ptctl's block of udev rules as the host's hide configuration on KVM. */
export const VFIO_HIDE_CONFIG: HideConfig = {
  file: VFIO_RULES_FILE,
  hidden: (text) => [...parseVfioRules(text).hidden],
  withHidden: (text, bdf) => {
    const addr = PciAddressSchema.safeParse(bdf);
    if (!addr.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${JSON.stringify(bdf)} is not a PCI address`);
    const rules = parseVfioRules(text);
    return renderVfioRules({ ...rules, hidden: [...rules.hidden, addr.data] });
  },
  withoutHidden: (text, bdf) => {
    const rules = parseVfioRules(text);
    return renderVfioRules({ ...rules, hidden: rules.hidden.filter((b) => b !== bdf) });
  },
};
