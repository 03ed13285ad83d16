import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';

/**
 * The `pci = [ '…' ]` line of an xm/xl guest config. Only that line is touched; every other byte of
 * the file is kept, and removing the last device removes the line so the file returns to its bytes.
 */
// xl's lexer skips blanks anywhere, and a later `pci =` (or `pci +=`) setting replaces (extends) an
// earlier one: an indented line is still the pci setting, and must not get a second line appended.
const PCI_LINE = /^\s*pci\s*=\s*\[(.*)\]\s*$/;
const PCI_LINE_START = /^\s*pci\s*\+?=/;

export interface GuestConfig {
  readonly lines: readonly string[];
  readonly pciLineIndex: number | null;
  readonly devices: readonly PciAddress[];
}

function invalid(message: string): PtcError {
  return new PtcError(ErrorCode.COMMAND_FAILED, `guest config cannot be edited safely: ${message}`);
}

export function parseGuestConfig(text: string): GuestConfig {
  const lines = text.split('\n');
  const idx = lines.findIndex((l) => PCI_LINE_START.test(l));
  if (idx < 0) return { lines, pciLineIndex: null, devices: [] };
  if (lines.slice(idx + 1).some((l) => PCI_LINE_START.test(l))) throw invalid('more than one pci = line');
  const m = PCI_LINE.exec(lines[idx] ?? '');
  if (!m) throw invalid("the pci setting must be one line of the form pci = [ '…', … ]");
  const body = (m[1] ?? '').trim();
  const devices =
    body === ''
      ? []
      : body.split(',').map((raw) => {
          const item = raw.trim().replace(/^(['"])(.*)\1$/, '$2');
          // xl allows per-device options after '@' or ','; ptctl only writes and understands plain BDFs.
          const parsed = PciAddressSchema.safeParse(item);
          if (!parsed.success) throw invalid(`"${item}" in pci = is not a plain PCI address`);
          return parsed.data;
        });
  return { lines, pciLineIndex: idx, devices };
}

export function renderGuestConfig(conf: GuestConfig): string {
  const lines = [...conf.lines];
  const line = conf.devices.length === 0 ? null : `pci = [ ${conf.devices.map((d) => `'${d}'`).join(', ')} ]`;
  if (conf.pciLineIndex === null) {
    if (line === null) return lines.join('\n');
    // Append before the final empty element that a trailing newline produces.
    const hasTrailingNewline = lines.length > 0 && lines[lines.length - 1] === '';
    if (hasTrailingNewline) lines.splice(lines.length - 1, 0, line);
    else lines.push(line);
    return lines.join('\n');
  }
  if (line === null) lines.splice(conf.pciLineIndex, 1);
  else lines[conf.pciLineIndex] = line;
  return lines.join('\n');
}

export function withGuestDevice(conf: GuestConfig, bdf: PciAddress): GuestConfig {
  // The address is written between quotes into a file xl parses: refuse anything but a plain BDF.
  const addr = PciAddressSchema.safeParse(bdf);
  if (!addr.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${JSON.stringify(bdf)} is not a PCI address`);
  if (conf.devices.includes(addr.data)) return conf;
  return { ...conf, devices: [...conf.devices, addr.data].sort(compareBdf) };
}

export function withoutGuestDevice(conf: GuestConfig, bdf: PciAddress): GuestConfig {
  return { ...conf, devices: conf.devices.filter((d) => d !== bdf) };
}
